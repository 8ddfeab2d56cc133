// libFuzzer target for the KV parameter file reader (passes::KvParamsFromJson): the input is the
// text of a kv_params.json. Any crash or sanitizer report is a finding (UBSan found a signed
// overflow in its sanity check once), and so is an accepted file that breaks what the reader
// promises: a layer count that matches the entries, finite plausible ranges with min <= max.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "passes/kv_params.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "kv_params_fuzzer: %s\n", what.c_str());
  std::abort();
}

void CheckRange(const kvcc::passes::RangeStat& r) {
  for (float x : {r.min, r.max, r.absmax}) {
    if (!std::isfinite(x) || std::fabs(x) > kvcc::passes::kMaxPlausibleKv) {
      Die("accepted an implausible value");
    }
  }
  if (r.min > r.max) Die("accepted min > max");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto params = kvcc::passes::KvParamsFromJson(text, "fuzz.json");
  if (!params.ok()) {
    if (params.status().message().empty()) Die("error without a message");
    return 0;
  }
  const auto& p = *params;
  if (static_cast<int64_t>(p.layers.size()) != p.model.num_layers) Die("layer count mismatch");
  const size_t channels = static_cast<size_t>(p.model.num_kv_heads * p.model.head_dim);
  for (const auto& layer : p.layers) {
    for (const auto* t : {&layer.k, &layer.v}) {
      if (t->channels.size() != channels) Die("wrong channel count");
      if (t->heads.size() != static_cast<size_t>(p.model.num_kv_heads)) Die("wrong head count");
      CheckRange(t->layer);
      for (const auto& r : t->channels) CheckRange(r);
    }
  }
  return 0;
}
