#include "runtime/cuda/kernel_tuning.h"

#include "absl/strings/str_cat.h"
#include "ir/artifact_manifest.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {
namespace {

constexpr char kFormat[] = "kvcc-tuning";
constexpr int kVersion = 1;

}  // namespace

const DecodeTuning* KernelTuning::Find(absl::string_view key) const {
  for (const DecodeTuning& d : decode) {
    if (d.kernel == key) return &d;
  }
  return nullptr;
}

std::string TuningToJson(const KernelTuning& t) {
  nlohmann::ordered_json decode = nlohmann::ordered_json::array();
  for (const DecodeTuning& d : t.decode) {
    nlohmann::ordered_json buckets = nlohmann::ordered_json::array();
    for (const TunedBucket& b : d.buckets) {
      buckets.push_back({{"max_batch", b.bucket.max_batch},
                         {"max_context", b.bucket.max_context},
                         {"splits", b.bucket.splits},
                         {"us", b.us}});
    }
    decode.push_back({{"kernel", d.kernel},
                      {"threads", d.threads},
                      {"vec_bytes", d.vec_bytes},
                      {"unroll", d.unroll},
                      {"buckets", buckets}});
  }
  nlohmann::ordered_json j = {{"format", kFormat},     {"version", kVersion},
                              {"device", t.device},    {"autotuned", t.autotuned},
                              {"decode_attention", decode}};
  return j.dump(1) + "\n";
}

absl::StatusOr<KernelTuning> ParseTuning(absl::string_view text, const std::string& source) {
  KVCC_ASSIGN_OR_RETURN(ir::Json j, ir::ParseArtifactJson(text, source, kFormat, kVersion, 8,
                                                          1 << 22));
  ir::JsonReader top(j, source);
  KernelTuning t;
  KVCC_ASSIGN_OR_RETURN(t.device, top.String("device"));
  KVCC_ASSIGN_OR_RETURN(t.autotuned, top.Bool("autotuned"));
  if (!top.Has("decode_attention") || !top.At("decode_attention").is_array()) {
    return top.Missing("decode_attention", "an array of kernel entries");
  }
  const ir::Json& list = top.At("decode_attention");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = absl::StrCat("decode_attention[", i, "].");
    if (!list[i].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", path, " is not an object"));
    }
    ir::JsonReader e(list[i], source, path);
    DecodeTuning d;
    KVCC_ASSIGN_OR_RETURN(d.kernel, e.String("kernel"));
    if (t.Find(d.kernel) != nullptr) {
      return e.Bad("kernel", e.At("kernel"), "a kernel not listed before");
    }
    KVCC_ASSIGN_OR_RETURN(int64_t threads, e.Int("threads", 0, 1024));
    KVCC_ASSIGN_OR_RETURN(int64_t vec_bytes, e.Int("vec_bytes", 0, 16));
    KVCC_ASSIGN_OR_RETURN(int64_t unroll, e.Int("unroll", 0, 8));
    d.threads = static_cast<int>(threads);
    d.vec_bytes = static_cast<int>(vec_bytes);
    d.unroll = static_cast<int>(unroll);
    if (!e.Has("buckets") || !e.At("buckets").is_array()) {
      return e.Missing("buckets", "an array of {max_batch, max_context, splits, us}");
    }
    const ir::Json& buckets = e.At("buckets");
    for (size_t b = 0; b < buckets.size(); ++b) {
      const std::string bpath = absl::StrCat(path, "buckets[", b, "].");
      if (!buckets[b].is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": ", bpath, " is not an object"));
      }
      ir::JsonReader r(buckets[b], source, bpath);
      TunedBucket tb;
      KVCC_ASSIGN_OR_RETURN(int64_t max_batch, r.Int("max_batch", 1, 1 << 20));
      KVCC_ASSIGN_OR_RETURN(int64_t max_context, r.Int("max_context", 1, 1 << 24));
      KVCC_ASSIGN_OR_RETURN(int64_t splits, r.Int("splits", 1, 65535));
      KVCC_ASSIGN_OR_RETURN(tb.us, r.Float("us", 0, false, 1e12, 0.0));
      tb.bucket = {static_cast<int>(max_batch), static_cast<int>(max_context),
                   static_cast<int>(splits)};
      d.buckets.push_back(tb);
    }
    t.decode.push_back(std::move(d));
  }
  return t;
}

}  // namespace kvcc::runtime
