#include "tools/bench_cache_kinds.h"

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace kvcc::tools {

bool ParseBenchCacheKind(const std::string& s, BenchCacheKind* out) {
  using ir::DType;
  using G = ir::KvGranularity;
  const ir::KvStorage f16{DType::kF16, G::kNone}, i8{DType::kI8, G::kPerHead},
      i4{DType::kI4, G::kPerHead}, i8o{DType::kI8, G::kOnline}, i4o{DType::kI4, G::kOnline},
      fp8{DType::kFP8E4M3, G::kPerHead}, i4c{DType::kI4, G::kPerChannel};
  if (s == "f16") *out = {s, f16, f16};
  else if (s == "i8") *out = {s, i8, i8};
  else if (s == "i4") *out = {s, i4, i4};
  else if (s == "i8_online") *out = {s, i8o, i8o};
  else if (s == "i4_online") *out = {s, i4o, i4o};
  else if (s == "k8v4") *out = {s, i8, i4o};
  else if (s == "k8v4_online") *out = {s, i8o, i4o};
  else if (s == "fp8") *out = {s, fp8, fp8};
  else if (s == "i4_kchannel") *out = {s, i4c, i4o};
  else return false;
  return true;
}

bool ParseBenchCounts(const char* bench, const char* flag, const std::string& text, int min,
                      std::vector<int>* out) {
  for (absl::string_view s : absl::StrSplit(text, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(s, &v) || v < min) {
      std::fprintf(stderr, "bench %s: bad %s entry '%s' (integers >= %d)\n", bench, flag,
                   std::string(s).c_str(), min);
      return false;
    }
    out->push_back(v);
  }
  return true;
}

}  // namespace kvcc::tools
