// Operand checks every backend runs before an op, so the CPU and CUDA backends reject the same
// malformed input with the same message (prefixed "<device> backend:" for placement and dtype,
// "<op>:" for shapes).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "runtime/backend.h"
#include "runtime/kv_cache_layout.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

// The weight dtypes every backend reads in place: f32, f16, bf16.
bool IsWeightDType(ir::DType dtype);

// `t` lives on `device` and has data.
absl::Status CheckResident(const Tensor& t, Device device, const char* what);
// An f32 [tokens, n] activation on `device`.
absl::Status CheckActivation(const Tensor& t, Device device, const char* what);
// An activation an op reads: f32 [tokens, n], or f16 on the CUDA device (where the backend
// stores activations in f16; its ops take either). The Check*Operands below use it.
absl::Status CheckOpActivation(const Tensor& t, Device device, const char* what);
// An f32/f16/bf16 weight on `device`.
absl::Status CheckWeight(const Tensor& t, Device device, const char* what);

// x f32 [T, in] and a 4-bit weight in the layout of ir/group_quant.h: codes i4 [out, in], a
// positive even group_size dividing in, scales f16/f32 and zeros (optional) i4 [out, in/group].
absl::Status CheckQuantizedWeight(const Tensor& x, const QuantizedWeight& w, Device device);

// ids i32[T] and a [vocab, hidden] table (the ids' range is the backend's to check).
absl::Status CheckEmbeddingOperands(const Tensor& ids, const Tensor& table, Device device);
absl::Status CheckRmsNormOperands(const Tensor& x, const Tensor& weight, Device device);
absl::Status CheckAddRmsNormOperands(const Tensor& x, const Tensor& residual,
                                     const Tensor& weight, Device device);
absl::Status CheckSplitOperands(const Tensor& x, const std::vector<int64_t>& sizes,
                                Device device);
// k and v of one step: [tokens, kv_heads * head_dim] activations matching the cache layout.
absl::Status CheckKvCacheWriteOperands(const Tensor& k, const Tensor& v, int layer,
                                       int64_t tokens, const KvCacheLayout& layout,
                                       Device device);
// x f32 [tokens, heads * head_dim] (even head_dim) with one position per token of the step.
absl::Status CheckRotaryOperands(const Tensor& x, const RotaryParams& p, const StepBatch& batch,
                                 Device device);
// q of one step, f32 [tokens, heads * head_dim], against the cache layout; only causal
// attention exists (decoder graphs).
absl::Status CheckAttentionOperands(const Tensor& q, const AttentionParams& p, int64_t tokens,
                                    const KvCacheLayout& layout, Device device);
// Two activations of one shape for an elementwise op (`op` names it in messages).
absl::Status CheckElementwiseOperands(const char* op, const Tensor& a, const char* a_what,
                                      const Tensor& b, const char* b_what, Device device);

}  // namespace kvcc::runtime
