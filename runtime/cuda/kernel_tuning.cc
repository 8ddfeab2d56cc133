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

bool GemmAlgo::operator==(const GemmAlgo& o) const {
  return id == o.id && tile == o.tile && stages == o.stages && splitk == o.splitk &&
         reduction == o.reduction && swizzle == o.swizzle && custom == o.custom &&
         inner_shape == o.inner_shape && cluster_shape == o.cluster_shape;
}

const GemmTuning* KernelTuning::FindGemm(int64_t m, int64_t n, int64_t k,
                                         ir::DType dtype) const {
  for (const GemmTuning& g : gemm) {
    if (g.m == m && g.n == n && g.k == k && g.dtype == dtype) return &g;
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
  nlohmann::ordered_json gemm = nlohmann::ordered_json::array();
  for (const GemmTuning& g : t.gemm) {
    nlohmann::ordered_json e = {{"m", g.m},
                                {"n", g.n},
                                {"k", g.k},
                                {"dtype", std::string(ir::DTypeName(g.dtype))},
                                {"heuristic", g.heuristic}};
    if (!g.heuristic) {
      const GemmAlgo& a = g.algo;
      e["algo"] = {{"id", a.id},         {"tile", a.tile},         {"stages", a.stages},
                   {"splitk", a.splitk}, {"reduction", a.reduction}, {"swizzle", a.swizzle},
                   {"custom", a.custom}, {"inner_shape", a.inner_shape},
                   {"cluster_shape", a.cluster_shape}};
      e["workspace"] = g.workspace;
    }
    e["us"] = g.us;
    e["heuristic_us"] = g.heuristic_us;
    e["candidates"] = g.candidates;
    if (g.gemv_timed) {
      e["gemv"] = g.gemv;
      e["gemv_us"] = g.gemv_us;
    }
    gemm.push_back(std::move(e));
  }
  nlohmann::ordered_json j = {{"format", kFormat},     {"version", kVersion},
                              {"device", t.device},    {"autotuned", t.autotuned},
                              {"decode_attention", decode}};
  if (!t.gemm.empty() || t.cublaslt_version != 0) {
    j["cublaslt_version"] = t.cublaslt_version;
    j["gemm"] = std::move(gemm);
  }
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
  // Files from before GEMM tuning have neither key.
  KVCC_ASSIGN_OR_RETURN(t.cublaslt_version, top.Int("cublaslt_version", 0, int64_t{1} << 40, 0));
  if (!top.Has("gemm")) return t;
  if (!top.At("gemm").is_array()) return top.Bad("gemm", top.At("gemm"), "an array of shapes");
  const ir::Json& gemm = top.At("gemm");
  for (size_t i = 0; i < gemm.size(); ++i) {
    const std::string path = absl::StrCat("gemm[", i, "].");
    if (!gemm[i].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", path, " is not an object"));
    }
    ir::JsonReader e(gemm[i], source, path);
    GemmTuning g;
    constexpr int64_t kMaxDim = int64_t{1} << 24;
    KVCC_ASSIGN_OR_RETURN(g.m, e.Int("m", 1, kMaxDim));
    KVCC_ASSIGN_OR_RETURN(g.n, e.Int("n", 1, kMaxDim));
    KVCC_ASSIGN_OR_RETURN(g.k, e.Int("k", 1, kMaxDim));
    KVCC_ASSIGN_OR_RETURN(std::string dtype, e.String("dtype"));
    if (dtype == ir::DTypeName(ir::DType::kF16)) {
      g.dtype = ir::DType::kF16;
    } else if (dtype == ir::DTypeName(ir::DType::kBF16)) {
      g.dtype = ir::DType::kBF16;
    } else {
      return e.Bad("dtype", e.At("dtype"), "\"f16\" or \"bf16\"");
    }
    if (t.FindGemm(g.m, g.n, g.k, g.dtype) != nullptr) {
      return e.Bad("m", e.At("m"), "a shape (m, n, k, dtype) not listed before");
    }
    KVCC_ASSIGN_OR_RETURN(g.heuristic, e.Bool("heuristic"));
    if (!g.heuristic) {
      KVCC_ASSIGN_OR_RETURN(ir::JsonReader a, e.Object("algo"));
      struct Field {
        const char* key;
        int* slot;
        int64_t lo, hi;
      };
      const Field fields[] = {{"id", &g.algo.id, 0, 1 << 20},
                              {"tile", &g.algo.tile, 0, 1 << 16},
                              {"stages", &g.algo.stages, 0, 1 << 16},
                              {"splitk", &g.algo.splitk, 1, 1 << 16},
                              {"reduction", &g.algo.reduction, 0, 1 << 16},
                              {"swizzle", &g.algo.swizzle, 0, 1 << 16},
                              {"custom", &g.algo.custom, 0, 1 << 16},
                              {"inner_shape", &g.algo.inner_shape, 0, 65535},
                              {"cluster_shape", &g.algo.cluster_shape, 0, 65535}};
      for (const Field& f : fields) {
        KVCC_ASSIGN_OR_RETURN(int64_t v, a.Int(f.key, f.lo, f.hi));
        *f.slot = static_cast<int>(v);
      }
      KVCC_ASSIGN_OR_RETURN(g.workspace, e.Int("workspace", 0, int64_t{1} << 32));
    }
    KVCC_ASSIGN_OR_RETURN(g.us, e.Float("us", 0, false, 1e12));
    KVCC_ASSIGN_OR_RETURN(g.heuristic_us, e.Float("heuristic_us", 0, false, 1e12));
    KVCC_ASSIGN_OR_RETURN(int64_t candidates, e.Int("candidates", 0, 1024));
    g.candidates = static_cast<int>(candidates);
    // Files from before the GEMV was a candidate have no "gemv".
    if (e.Has("gemv")) {
      g.gemv_timed = true;
      KVCC_ASSIGN_OR_RETURN(g.gemv, e.String("gemv"));
      KVCC_ASSIGN_OR_RETURN(g.gemv_us, e.Float("gemv_us", 0, false, 1e12));
    }
    t.gemm.push_back(g);
  }
  return t;
}

}  // namespace kvcc::runtime
