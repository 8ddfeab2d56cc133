// The op-level interface every execution backend implements (the CPU reference and CUDA;
// runtime/backend_factory.h picks one): memory for tensors and the KV cache, and one call per
// op of the kvcc op domain.
// Activations are f32 [tokens, features] in the interface's reference semantics; a device
// backend may store them narrower between its own ops (the CUDA backend's f16 activations), and
// ToF32 gives them back as f32. Weights arrive in their checkpoint dtype (f32, f16, bf16) and are
// read in place. Ops allocate their results on the backend's device.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ir/weights_digest.h"
#include "runtime/kv_cache.h"
#include "runtime/rotary.h"
#include "runtime/sampler.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

// The tokens of one executor step, on the host: which session each token belongs to and its
// position there. Backends use it for rotary (dynamic scaling), cache writes and attention.
struct StepBatch {
  std::vector<int64_t> sessions;   // per token
  std::vector<int32_t> positions;  // per token
  // Per token: the highest position its session reaches in this step + 1 (the sequence length
  // transformers' dynamic rotary scaling sees).
  std::vector<int64_t> seq_lens;

  int64_t size() const { return static_cast<int64_t>(positions.size()); }
  // Fills seq_lens from sessions and positions.
  void ComputeSeqLens();
};

struct AttentionParams {
  int layer = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  bool causal = true;
  float scale = 1.0f;
};

// A group-quantized linear weight in the layout of ir/group_quant.h: codes i4 [out, in],
// scales f16 (or f32) [out, in / group_size], zeros i4 [out, in / group_size] or null (z = 8).
struct QuantizedWeight {
  const Tensor* codes = nullptr;
  const Tensor* scales = nullptr;
  const Tensor* zeros = nullptr;
  int64_t group_size = 0;
  // The packed layout of ir/group_quant.h: codes the i32 [out, in / 8] code words, scales the
  // i32 [out, in / group_size] scale/zero words, no zeros.
  bool packed = false;

  int64_t out() const { return codes->dim(0); }
  int64_t in() const { return packed ? codes->dim(1) * 8 : codes->dim(1); }
};

// Per column of an f32 [rows, cols] tensor: min, max and max |x| over its finite values (min
// +inf, max -inf, absmax 0 where there are none) and how many values were NaN or Inf.
struct ColumnStats {
  std::vector<float> min, max, absmax;
  std::vector<int64_t> nonfinite;
};

// OK when `logits` is f32 [targets.size(), vocab] and every target is a token id or -1: the
// operands of Backend::TargetNll.
absl::Status CheckNllTargets(const Tensor& logits, const std::vector<int32_t>& targets);

class DecodeGraphs;  // runtime/decode_graphs.h

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;

  // --- memory ---
  // A zeroed tensor on the backend's device.
  virtual absl::StatusOr<Tensor> Allocate(ir::DType dtype, std::vector<int64_t> shape) = 0;
  // A tensor on the backend's device holding `host`'s bytes (the CPU returns it unchanged).
  virtual absl::StatusOr<Tensor> FromHost(const Tensor& host) = 0;
  // FromHost of every weight of a model at once (`names[i]` names hosts[i] in errors), so a
  // backend can batch the upload; by default one FromHost each. `unverified` (may be null):
  // the digests of the file the weights point into, still to be checked; a backend that reads
  // the bytes anyway may check them on the way (the CUDA uploader does) and MarkVerified,
  // otherwise the caller checks them before computing anything.
  virtual absl::StatusOr<std::vector<Tensor>> FromHostWeights(
      const std::vector<Tensor>& hosts, const std::vector<std::string>& names,
      ir::WeightsChunkDigests* unverified = nullptr);
  // A host tensor holding `t`'s bytes (the CPU returns it unchanged).
  virtual absl::StatusOr<Tensor> ToHost(const Tensor& t) = 0;
  virtual absl::StatusOr<std::unique_ptr<KvCache>> CreateKvCache(const KvCacheSpec& spec) = 0;

  // --- ops (see ir/op_schema.cc for the exact operand conventions) ---
  // ids i32[T], table [vocab, hidden] -> f32[T, hidden]; an id outside the table is an error.
  virtual absl::StatusOr<Tensor> Embedding(const Tensor& ids, const Tensor& table) = 0;
  virtual absl::StatusOr<Tensor> RmsNorm(const Tensor& x, const Tensor& weight, float eps) = 0;
  // {x + residual, RmsNorm(x + residual, weight, eps)}, equal to Add then RmsNorm on the same
  // backend, in one pass over the rows.
  virtual absl::StatusOr<std::vector<Tensor>> AddRmsNorm(const Tensor& x, const Tensor& residual,
                                                         const Tensor& weight, float eps) = 0;
  // x f32[T, in], weight [out, in], optional bias [out] -> f32[T, out]. `bias` may be null.
  virtual absl::StatusOr<Tensor> Linear(const Tensor& x, const Tensor& weight,
                                        const Tensor* bias) = 0;
  // x f32[T, in] times the dequantized weight, plus bias: Linear on (codes - zeros) * scales.
  // Backends without 4-bit kernels return Unimplemented.
  virtual absl::StatusOr<Tensor> QuantizedLinear(const Tensor& x, const QuantizedWeight& weight,
                                                 const Tensor* bias);
  virtual absl::StatusOr<std::vector<Tensor>> Split(const Tensor& x,
                                                    const std::vector<int64_t>& sizes) = 0;
  // x f32[T, heads*head_dim] rotated per token at batch.positions.
  virtual absl::StatusOr<Tensor> Rotary(const Tensor& x, const RotaryParams& params,
                                        const StepBatch& batch) = 0;
  // Writes each token's k, v (f32[T, kv_heads*head_dim]) into `layer` of the cache at its
  // session's position; blocks must already be reserved.
  virtual absl::Status KvCacheWrite(const Tensor& k, const Tensor& v, int layer,
                                    const StepBatch& batch, KvCache* cache) = 0;
  // q f32[T, heads*head_dim] against the cached tokens of each token's own session at
  // positions <= its position (GQA: head h reads kv head h / (heads / kv_heads)).
  virtual absl::StatusOr<Tensor> Attention(const Tensor& q, const KvCache& cache,
                                           const AttentionParams& params,
                                           const StepBatch& batch) = 0;
  virtual absl::StatusOr<Tensor> SiluMul(const Tensor& gate, const Tensor& up) = 0;
  virtual absl::StatusOr<Tensor> Add(const Tensor& a, const Tensor& b) = 0;
  // x f32[T, hidden], weight [vocab, hidden] -> f32[T, vocab].
  virtual absl::StatusOr<Tensor> LmHead(const Tensor& x, const Tensor& weight) = 0;
  // Rows `rows` of x (used to compute logits only where they are needed).
  virtual absl::StatusOr<Tensor> GatherRows(const Tensor& x, const std::vector<int64_t>& rows) = 0;

  // --- fused forms of op sequences (the executor's plan uses them; each equals its sequence) ---
  // The attention block's front on a fused projection qkv [T, q_width + 2 * kv_width] (columns
  // q | k | v): q and k rotated by `q_rotary` / `k_rotary`, k and v written into `layer` of the
  // cache; returns the rotated q [T, q_width]. The default runs Split, Rotary, Rotary and
  // KvCacheWrite; a device backend reads q, k and v in place instead of copying them out, and
  // may rotate q in place in `qkv`, which the call consumes.
  virtual absl::StatusOr<Tensor> RotaryQkvCacheWrite(const Tensor& qkv, int64_t q_width,
                                                     int64_t kv_width, const RotaryParams& q_rotary,
                                                     const RotaryParams& k_rotary, int layer,
                                                     const StepBatch& batch, KvCache* cache);
  // silu(gate) * up of a fused projection x [T, 2n] holding gate, then up: Split then SiluMul.
  virtual absl::StatusOr<Tensor> SiluMulHalves(const Tensor& x);
  // An activation as f32 (a backend that stores activations narrower casts it; by default they
  // already are f32). For observers and for ops that take only f32.
  virtual absl::StatusOr<Tensor> ToF32(const Tensor& x);
  // Whether the backend may store activations in f16 between its ops (the CUDA backend's half
  // activations); set before the first op. The executor turns it off for a module with 4-bit
  // linears, which take and give f32. A backend without narrow activations ignores it.
  virtual void SetHalfActivations(bool) {}

  // --- sampling ---
  // One token per row of logits f32[rows.size(), vocab] on this backend, as Sampler::Pick
  // picks it; only the ids come back. The default copies the logits to the host and runs
  // Sampler::Pick (the oracle); a device backend picks on the device.
  virtual absl::StatusOr<std::vector<int32_t>> SampleRows(const Tensor& logits,
                                                          const std::vector<SampleRow>& rows);

  // The negative log-likelihood of token targets[r] under row r of logits f32[rows, vocab]
  // (log-sum-exp of the row less the target's logit), in double precision; a target of -1
  // gives 0 (a row without a next token). Only the rows' values come back. The default copies
  // the logits to the host (the oracle); a device backend reduces them on the device.
  virtual absl::StatusOr<std::vector<double>> TargetNll(const Tensor& logits,
                                                        const std::vector<int32_t>& targets);

  // The ColumnStats of `x` (f32 [rows, cols] on this backend): only the statistics come back.
  // The default copies `x` to the host (the oracle); a device backend reduces on the device.
  virtual absl::StatusOr<ColumnStats> ColumnRanges(const Tensor& x);

  // --- replayed steps ---
  // Captured decode steps the executor may run decode steps from; null (the default) runs
  // every step op by op.
  virtual DecodeGraphs* decode_graphs() { return nullptr; }
};

}  // namespace kvcc::runtime
