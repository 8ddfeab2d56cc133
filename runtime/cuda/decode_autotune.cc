#include "runtime/cuda/decode_autotune.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "codegen/kernel_spec.h"
#include "ir/status_macros.h"
#include "runtime/cuda/autotune_timing.h"
#include "runtime/cuda/kernel_plan.h"

namespace kvcc::runtime {
namespace {

constexpr absl::string_view kTuner = "autotune";

absl::Status Cuda(cudaError_t err, absl::string_view what) {
  return AutotuneCudaStatus(err, kTuner, what);
}

struct Bucket {
  int batch = 0;
  int context = 0;
};

std::vector<Bucket> Buckets(const DecodeAutotuneOptions& o) {
  std::vector<int> batches, contexts;
  for (int b : {1, 4, 16, 64}) {
    if (b < o.max_batch) batches.push_back(b);
  }
  batches.push_back(o.max_batch);
  for (int c : {512, 2048, 8192}) {
    if (c < o.max_context) contexts.push_back(c);
  }
  contexts.push_back(o.max_context);
  std::vector<Bucket> out;
  for (int b : batches) {
    for (int c : contexts) out.push_back({b, c});
  }
  return out;
}

// A zero-filled cache for `batch` sessions of `context` tokens, and the decode arguments over
// it (the kernels' time depends on the shapes, not on the values). Small buckets get several
// copies of the sessions' blocks, one per call in turn, so their K/V come from memory as in a
// real step instead of staying in L2 (where a batch-1 decode of 2048 tokens would fit).
class DecodeBench {
 public:
  absl::Status Init(const CudaAttentionConfig& c, const Bucket& bucket, int max_splits) {
    config_ = c;
    KvCacheLayout l;
    l.kv_heads = c.kv_heads;
    l.head_dim = c.head_dim;
    l.block_size = c.block_size;
    l.dtype = c.k().dtype;
    l.online = c.k().granularity == ir::KvGranularity::kOnline;
    l.v_dtype = c.v().dtype;
    l.v_online = c.v().granularity == ir::KvGranularity::kOnline;
    const int blocks_per_seq = (bucket.context + c.block_size - 1) / c.block_size;
    set_blocks_ = int64_t{blocks_per_seq} * bucket.batch;
    const int64_t set_bytes =
        (l.BlockBytes(KvPart::kKey) + l.BlockBytes(KvPart::kValue)) * set_blocks_;
    sets_ = static_cast<int>(std::clamp<int64_t>(
        (L2BustBytes() + set_bytes - 1) / std::max<int64_t>(set_bytes, 1), 1,
        std::max<int64_t>(1, std::min<int64_t>(32, (int64_t{4} << 30) / std::max<int64_t>(set_bytes, 1)))));
    l.num_blocks = set_blocks_ * sets_;
    KVCC_RETURN_IF_ERROR(k_.Allocate(l.BlockBytes(KvPart::kKey) * l.num_blocks, 0, kTuner));
    KVCC_RETURN_IF_ERROR(v_.Allocate(l.BlockBytes(KvPart::kValue) * l.num_blocks, 0, kTuner));
    KVCC_RETURN_IF_ERROR(kp_.Allocate(l.BlockParamBytes(KvPart::kKey) * l.num_blocks, 0, kTuner));
    KVCC_RETURN_IF_ERROR(vp_.Allocate(l.BlockParamBytes(KvPart::kValue) * l.num_blocks, 0, kTuner));
    // Room for per-channel parameters, the largest calibrated granularity.
    const size_t params = size_t(c.kv_heads) * c.head_dim;
    KVCC_RETURN_IF_ERROR(zp_.Allocate(sizeof(float) * params, 0, kTuner));
    std::vector<float> ones(params, 1.f);
    KVCC_RETURN_IF_ERROR(scale_.Allocate(sizeof(float) * params, 0, kTuner));
    KVCC_RETURN_IF_ERROR(Cuda(cudaMemcpy(scale_.p, ones.data(), sizeof(float) * ones.size(),
                                         cudaMemcpyHostToDevice), "scales"));
    const size_t qbytes = size_t(bucket.batch) * c.heads * c.head_dim * sizeof(float);
    KVCC_RETURN_IF_ERROR(q_.Allocate(qbytes, 0, kTuner));
    KVCC_RETURN_IF_ERROR(out_.Allocate(qbytes, 0, kTuner));
    // Set s's tables name blocks s * set_blocks_ ..
    std::vector<int32_t> tables(size_t(set_blocks_) * sets_);
    for (size_t i = 0; i < tables.size(); ++i) tables[i] = static_cast<int32_t>(i);
    std::vector<int32_t> lens(bucket.batch, bucket.context);
    KVCC_RETURN_IF_ERROR(tables_.Allocate(tables.size() * 4, 0, kTuner));
    KVCC_RETURN_IF_ERROR(lens_.Allocate(lens.size() * 4, 0, kTuner));
    KVCC_RETURN_IF_ERROR(Cuda(cudaMemcpy(tables_.p, tables.data(), tables.size() * 4,
                                         cudaMemcpyHostToDevice), "block tables"));
    KVCC_RETURN_IF_ERROR(Cuda(cudaMemcpy(lens_.p, lens.data(), lens.size() * 4,
                                         cudaMemcpyHostToDevice), "seq lens"));
    workspace_bytes_ = size_t(bucket.batch) * c.heads * max_splits * (c.head_dim + 2) * 4;
    KVCC_RETURN_IF_ERROR(workspace_.Allocate(workspace_bytes_, 0, kTuner));
    layer_.k = k_.p;
    layer_.v = v_.p;
    layer_.k_params = static_cast<uint16_t*>(kp_.p);
    layer_.v_params = static_cast<uint16_t*>(vp_.p);
    layer_.k_zp = layer_.v_zp = static_cast<const float*>(zp_.p);
    layer_.k_scale = layer_.v_scale = static_cast<const float*>(scale_.p);
    args_.q = q_.p;
    args_.out = out_.p;
    args_.block_tables = static_cast<const int32_t*>(tables_.p);
    args_.max_blocks_per_seq = blocks_per_seq;
    args_.seq_lens = static_cast<const int32_t*>(lens_.p);
    args_.batch = bucket.batch;
    args_.max_seq_len = bucket.context;
    args_.scale = 1.f;
    args_.workspace = workspace_.p;
    args_.workspace_bytes = workspace_bytes_;
    return absl::OkStatus();
  }

  // Microseconds per decode call with `splits` (0: the kernel's heuristic).
  absl::StatusOr<double> Time(CudaAttention& attn, int splits, int iters) {
    DecodeArgs a = args_;
    a.splits = splits;
    const auto* tables = static_cast<const int32_t*>(tables_.p);
    int call = 0;
    auto next = [&] {
      a.block_tables = tables + (call++ % sets_) * set_blocks_;
      return attn.Decode(layer_, a, nullptr);
    };
    return TimeCalls(nullptr, 3, iters, next, kTuner);
  }

 private:
  CudaAttentionConfig config_;
  int64_t set_blocks_ = 0;  // blocks of one copy of the sessions
  int sets_ = 1;            // copies cycled through
  AutotuneScratch k_, v_, kp_, vp_, zp_, scale_, q_, out_, tables_, lens_, workspace_;
  size_t workspace_bytes_ = 0;
  CudaKvLayer layer_;
  DecodeArgs args_;
};

struct Candidate {
  CudaAttentionConfig config;
  std::unique_ptr<CudaAttention> attn;
  std::vector<double> best_us;   // per bucket
  std::vector<int> best_splits;  // per bucket
};

constexpr int kSplitChoices[] = {1, 2, 4, 8, 16, 32};

}  // namespace

absl::StatusOr<KernelTuning> AutotuneDecode(const std::vector<CudaAttentionConfig>& configs,
                                            const DecodeAutotuneOptions& options,
                                            codegen::KernelStore* store) {
  if (options.max_batch <= 0 || options.max_context <= 0 || options.iters <= 0) {
    return absl::InvalidArgumentError(
        "autotune: max batch, max context and iters must be positive");
  }
  KVCC_ASSIGN_OR_RETURN(codegen::GpuTarget target, codegen::DetectGpuTarget(0));
  cudaDeviceProp prop;
  KVCC_RETURN_IF_ERROR(Cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties"));
  KernelTuning tuning;
  tuning.device = prop.name;
  tuning.autotuned = true;
  const std::vector<Bucket> buckets = Buckets(options);
  const int max_splits = kSplitChoices[std::size(kSplitChoices) - 1];
  for (const CudaAttentionConfig& base : configs) {
    KVCC_ASSIGN_OR_RETURN(
        codegen::KernelSpec def,
        codegen::ResolveDefaults(CudaAttention::KernelSpecs(base, target)[0]));
    // The heuristic first (index 0): the reference every other candidate must not lose to.
    std::vector<Candidate> candidates;
    std::vector<std::pair<int, int>> tiles = {{def.vec_bytes, def.unroll}};
    for (int vec : {def.vec_bytes / 2, def.vec_bytes, def.vec_bytes * 2}) {
      for (int unroll : {2, 4, 8}) {
        if (vec >= 1 && vec <= 16 && !(vec == def.vec_bytes && unroll == def.unroll)) {
          tiles.push_back({vec, unroll});
        }
      }
    }
    for (const auto& [vec, unroll] : tiles) {
      Candidate c;
      c.config = base;
      c.config.decode_splits.clear();
      c.config.decode_threads = def.threads;
      c.config.decode_vec_bytes = vec;
      c.config.decode_unroll = unroll;
      auto attn = CudaAttention::Create(c.config, store);
      if (!attn.ok()) continue;  // not a valid specialization for this shape
      c.attn = std::move(*attn);
      candidates.push_back(std::move(c));
    }
    if (candidates.empty()) {
      return absl::InternalError(absl::StrCat("autotune: no decode kernel builds for [",
                                              DecodeTuningKey(base), "]"));
    }
    std::vector<double> heuristic_us;
    for (size_t b = 0; b < buckets.size(); ++b) {
      DecodeBench bench;
      KVCC_RETURN_IF_ERROR(bench.Init(base, buckets[b], max_splits));
      KVCC_ASSIGN_OR_RETURN(double h, bench.Time(*candidates[0].attn, 0, options.iters));
      heuristic_us.push_back(h);
      for (Candidate& c : candidates) {
        double best = std::numeric_limits<double>::infinity();
        int best_splits = 1;
        for (int splits : kSplitChoices) {
          if (splits > 1 && buckets[b].context / splits < 64) break;
          KVCC_ASSIGN_OR_RETURN(double us, bench.Time(*c.attn, splits, options.iters));
          if (us < best) {
            best = us;
            best_splits = splits;
          }
        }
        c.best_us.push_back(best);
        c.best_splits.push_back(best_splits);
      }
    }
    // The candidate with the least total time among those never more than 2% slower than the
    // heuristic (the heuristic kernel with its best splits always qualifies).
    const Candidate* win = nullptr;
    double win_total = std::numeric_limits<double>::infinity();
    for (const Candidate& c : candidates) {
      double total = 0;
      bool ok = true;
      for (size_t b = 0; b < buckets.size(); ++b) {
        total += c.best_us[b];
        ok = ok && c.best_us[b] <= heuristic_us[b] * 1.02;
      }
      if (ok && total < win_total) {
        win = &c;
        win_total = total;
      }
    }
    if (win == nullptr) win = &candidates[0];
    DecodeTuning d;
    d.kernel = DecodeTuningKey(base);
    d.threads = win->config.decode_threads;
    d.vec_bytes = win->config.decode_vec_bytes;
    d.unroll = win->config.decode_unroll;
    for (size_t b = 0; b < buckets.size(); ++b) {
      d.buckets.push_back({{buckets[b].batch, buckets[b].context, win->best_splits[b]},
                           win->best_us[b]});
      if (options.log) {
        options.log(absl::StrFormat(
            "autotune [%s] batch %d context %d: vec %d unroll %d splits %d %.1f us "
            "(heuristic %.1f us, %.2fx)",
            d.kernel, buckets[b].batch, buckets[b].context, d.vec_bytes, d.unroll,
            win->best_splits[b], win->best_us[b], heuristic_us[b],
            heuristic_us[b] / win->best_us[b]));
      }
    }
    tuning.decode.push_back(std::move(d));
  }
  return tuning;
}

}  // namespace kvcc::runtime
