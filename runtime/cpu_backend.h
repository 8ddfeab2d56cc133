// The CPU reference backend: fp32 arithmetic over f32/f16/bf16 weights read in place (rows
// converted into per-thread scratch as they are used), work split over a thread pool (GEMM
// rows, attention heads), inner loops written so the compiler vectorizes them. It is the
// oracle the CUDA backend is tested against, so every op follows transformers' arithmetic.
#pragma once

#include <functional>
#include <memory>

#include "runtime/backend.h"
#include "runtime/thread_pool.h"

namespace kvcc::runtime {

class CpuBackend : public Backend {
 public:
  // `threads` <= 0 uses every core.
  explicit CpuBackend(int threads = 0);

  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::kCpu; }
  int num_threads() const { return pool_.num_threads(); }

  absl::StatusOr<Tensor> Allocate(ir::DType dtype, std::vector<int64_t> shape) override;
  absl::StatusOr<Tensor> FromHost(const Tensor& host) override;
  absl::StatusOr<Tensor> ToHost(const Tensor& t) override;
  absl::StatusOr<std::unique_ptr<KvCache>> CreateKvCache(const KvCacheSpec& spec) override;

  absl::StatusOr<Tensor> Embedding(const Tensor& ids, const Tensor& table) override;
  absl::StatusOr<Tensor> RmsNorm(const Tensor& x, const Tensor& weight, float eps) override;
  absl::StatusOr<std::vector<Tensor>> AddRmsNorm(const Tensor& x, const Tensor& residual,
                                                 const Tensor& weight, float eps) override;
  absl::StatusOr<Tensor> Linear(const Tensor& x, const Tensor& weight, const Tensor* bias) override;
  absl::StatusOr<Tensor> QuantizedLinear(const Tensor& x, const QuantizedWeight& weight,
                                         const Tensor* bias) override;
  absl::StatusOr<std::vector<Tensor>> Split(const Tensor& x,
                                            const std::vector<int64_t>& sizes) override;
  absl::StatusOr<Tensor> Rotary(const Tensor& x, const RotaryParams& params,
                                const StepBatch& batch) override;
  absl::Status KvCacheWrite(const Tensor& k, const Tensor& v, int layer, const StepBatch& batch,
                            KvCache* cache) override;
  absl::StatusOr<Tensor> Attention(const Tensor& q, const KvCache& cache,
                                   const AttentionParams& params, const StepBatch& batch) override;
  absl::StatusOr<Tensor> SiluMul(const Tensor& gate, const Tensor& up) override;
  absl::StatusOr<Tensor> Add(const Tensor& a, const Tensor& b) override;
  absl::StatusOr<Tensor> LmHead(const Tensor& x, const Tensor& weight) override;
  absl::StatusOr<Tensor> GatherRows(const Tensor& x, const std::vector<int64_t>& rows) override;

 private:
  // An f32 result tensor whose every element the op writes (no zero-fill).
  absl::StatusOr<Tensor> Output(std::vector<int64_t> shape);
  // Weight rows [r0, r1) as f32 [r1 - r0, in]: a view, or converted into `scratch` (room for
  // 16 rows).
  using RowSource = std::function<const float*(int64_t r0, int64_t r1, float* scratch)>;
  // x f32 [T, in] times the out_f weight rows `rows` gives, plus bias (the GEMM of both linears).
  absl::StatusOr<Tensor> LinearRows(const Tensor& x, int64_t out_f, const Tensor* bias,
                                    const RowSource& rows);

  ThreadPool pool_;
};

}  // namespace kvcc::runtime
