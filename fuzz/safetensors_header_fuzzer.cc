// libFuzzer target for the safetensors header parser. Input: 8 bytes little-endian size of the
// data section, then the header JSON. Any crash or sanitizer report is a finding, and so is an
// accepted header whose entries are out of range, sized unlike dtype x shape, or do not tile
// the data section exactly (contiguous from 0 to its end, as the reference library demands).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "frontend/safetensors.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "safetensors_header_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t data_size = 0;
  for (int i = 7; i >= 0; --i) data_size = (data_size << 8) | data[i];
  absl::string_view header(reinterpret_cast<const char*>(data) + 8, size - 8);
  auto entries = kvcc::frontend::ParseSafetensorsHeader(header, data_size, "fuzz.safetensors");
  if (!entries.ok()) {
    if (entries.status().message().empty()) Die("error without a message");
    return 0;
  }
  uint64_t furthest = 0;
  for (const auto& e : *entries) {
    if (e.begin > e.end || e.end > data_size) Die("entry '" + e.name + "' lies outside the data");
    int64_t count = 1;
    for (int64_t d : e.shape) {
      if (d < 0) Die("entry '" + e.name + "' has a negative dimension");
      if (d != 0 && count > (int64_t{1} << 56) / d) {
        Die("entry '" + e.name + "' is huge yet accepted");
      }
      count *= d;
    }
    if (static_cast<uint64_t>(kvcc::ir::DTypeBytes(e.dtype, count)) != e.end - e.begin) {
      Die("entry '" + e.name + "' byte length disagrees with dtype x shape");
    }
    // Entries come back in data order, each starting where the previous one ended.
    if (e.begin != furthest) Die("entry '" + e.name + "' leaves a gap or overlaps");
    furthest = e.end;
  }
  if (furthest != data_size) Die("accepted tensors that do not cover the data section");
  return 0;
}
