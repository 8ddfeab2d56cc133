// GPU attention over the paged KV cache: the NVRTC-generated kernels of codegen/ (decode with
// split-sequence merge, causal prefill, rotary fused with the quantized cache write) behind a
// self-contained API of device pointers and a stream, for the CUDA backend to call per layer.
// Layouts: runtime/kv_cache_layout.h (cache), ir/kv_quant.h (quantization).
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codegen/attention_params.h"
#include "codegen/kernel_builder.h"
#include "codegen/kernel_store.h"
#include "ir/dtype.h"
#include "ir/kv_cache_scheme.h"
#include "runtime/cuda/kernel_tuning.h"
#include "runtime/cuda/typed_kernel.h"

namespace kvcc::runtime {

struct CudaAttentionConfig {
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int block_size = 64;
  // K's storage (f16 | i8 | i4 | fp8e4m3) and V's when it differs (absent: like K).
  ir::DType cache_dtype = ir::DType::kF16;
  ir::KvGranularity granularity = ir::KvGranularity::kNone;
  std::optional<ir::KvStorage> v_storage;
  ir::DType io_dtype = ir::DType::kF16;  // q, k, v and out: f16 | f32
  int device = 0;
  // Decode kernel tuning (0: the codegen default), for benchmarks and tests.
  int decode_threads = 0;
  int decode_vec_bytes = 0;
  int decode_unroll = 0;
  int decode_min_blocks = 0;
  int decode_prefetch = -1;
  int decode_kv_tile = 0;  // tensor-core decode: tokens per softmax step (16, 32)
  // The tensor-core decode kernel: -1 where codegen/decode_attention_tc.h prefers it, 0 never,
  // 1 wherever it applies.
  int decode_tc = -1;
  std::vector<DecodeSplitBucket> decode_splits;  // empty: the occupancy heuristic
  // The split merge by programmatic dependent launch on sm_90+ (its launch overlapping the
  // decode kernel; codegen/decode_combine.cuh); false: an ordinary launch after it.
  bool decode_pdl = true;
  // Prefill on the tensor-core kernel where it supports the shape (false: the scalar one).
  bool prefill_tensor_cores = true;
  int prefill_threads = 0;  // prefill CTA size and cache tokens per tile (0: the defaults)
  int prefill_kv_tile = 0;
  int prefill_q_tile = 0;  // tensor-core prefill: queries a CTA, threads / 2 or threads (0: default)

  ir::KvStorage k() const { return {cache_dtype, granularity}; }
  ir::KvStorage v() const { return v_storage.value_or(k()); }
  // K's and V's storage as `scheme` has them.
  void SetStorage(const ir::KvCacheScheme& scheme);
};

// A layer's calibrated zp/scale lists back to back (k_zp, k_scale, v_zp, v_scale), for one
// upload; `offset[i]` is where list i starts, `offset[4]` the total. Lists of parts without
// calibrated parameters are empty.
struct PackedKvParams {
  std::vector<float> values;
  size_t offset[5] = {0, 0, 0, 0, 0};
};
PackedKvParams PackKvParams(const ir::KvCacheScheme& scheme);

// One layer's cache on the device.
struct CudaKvLayer {
  void* k = nullptr;  // [num_blocks][kv_heads][block_size][row bytes]
  void* v = nullptr;
  uint16_t* k_params = nullptr;  // online schemes: [num_blocks][kv_heads][block_size] (scale, zero)
  uint16_t* v_params = nullptr;
  // Calibrated parts: device float arrays of 1 (per_layer), kv_heads (per_head) or
  // kv_heads * head_dim (per_channel) entries.
  const float* k_zp = nullptr;
  const float* k_scale = nullptr;
  const float* v_zp = nullptr;
  const float* v_scale = nullptr;
};

// One query token per session attending to all of its `seq_lens[b]` cached tokens.
struct DecodeArgs {
  const void* q = nullptr;  // [batch, heads, head_dim] io dtype
  void* out = nullptr;      // [batch, heads, head_dim] io dtype
  const int32_t* block_tables = nullptr;  // [batch, max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  const int32_t* seq_lens = nullptr;  // [batch]; 0 leaves the session's output zero
  int batch = 0;
  int max_seq_len = 0;    // host-side bound on seq_lens, sizes the split
  float scale = 0.f;      // softmax scale, usually 1/sqrt(head_dim)
  int splits = 0;         // 0: DecodeSplits(batch, max_seq_len)
  void* workspace = nullptr;  // DecodeWorkspaceBytes(batch, splits) bytes when splits > 1
  size_t workspace_bytes = 0;
};

// The new tokens of each session (already in the cache) attend causally to its cache.
struct PrefillArgs {
  const void* q = nullptr;  // [num_tokens, heads, head_dim], sessions back to back
  void* out = nullptr;
  const int32_t* block_tables = nullptr;
  int max_blocks_per_seq = 0;
  const int32_t* seq_lens = nullptr;  // [batch] cached tokens including the new ones
  const int32_t* q_start = nullptr;   // [batch + 1] offsets of each session's new tokens
  int batch = 0;
  int max_q_len = 0;  // host-side bound on q_start[b+1] - q_start[b]
  float scale = 0.f;
};

// Rotary on K (and Q, in place, when q is set) and the K/V rows written into the cache.
struct RotaryWriteArgs {
  const void* k = nullptr;  // token t's K row at k + t * k_stride elements, [kv_heads, head_dim]
  int k_stride = 0;
  const void* v = nullptr;
  int v_stride = 0;
  void* q = nullptr;  // optional, [heads, head_dim] per token at q + t * q_stride
  int q_stride = 0;
  int num_tokens = 0;
  const int32_t* positions = nullptr;     // [num_tokens]
  const int32_t* slot_mapping = nullptr;  // [num_tokens] block * block_size + slot; < 0 skips
  const float* inv_freq = nullptr;        // [head_dim / 2] (runtime/rotary.h RotaryInvFreq)
};

class CudaAttention {
 public:
  // Builds (or takes from `cache`, which may be null) the kernels for `config` on its device.
  static absl::StatusOr<std::unique_ptr<CudaAttention>> Create(const CudaAttentionConfig& config,
                                                               codegen::KernelStore* cache);
  // The kernels Create builds for `config` on `target`: decode, merge, prefill, rotary write
  // (`kvcc compile` builds the same list ahead of time, runtime/cuda/kernel_plan.h).
  static std::array<codegen::KernelSpec, 4> KernelSpecs(const CudaAttentionConfig& config,
                                                        const codegen::GpuTarget& target);
  ~CudaAttention();
  CudaAttention(const CudaAttention&) = delete;
  CudaAttention& operator=(const CudaAttention&) = delete;

  // Sequence splits the decode kernel uses for this batch (enough CTAs for several waves).
  int DecodeSplits(int batch, int max_seq_len) const;
  size_t DecodeWorkspaceBytes(int batch, int splits) const;

  absl::Status Decode(const CudaKvLayer& layer, const DecodeArgs& args, cudaStream_t stream);
  absl::Status Prefill(const CudaKvLayer& layer, const PrefillArgs& args, cudaStream_t stream);
  absl::Status RotaryCacheWrite(const CudaKvLayer& layer, const RotaryWriteArgs& args,
                                cudaStream_t stream);

  const CudaAttentionConfig& config() const { return config_; }
  // The compiled decode kernel (spec, ptxas report) for reports.
  const codegen::BuiltKernel& decode_kernel() const { return decode_.built; }
  const codegen::BuiltKernel& prefill_kernel() const { return prefill_.built; }
  // The loaded decode kernel's attributes as the driver reports them (registers, local memory),
  // to check the compile-time report against.
  absl::StatusOr<cudaFuncAttributes> DecodeAttributes() const;

 private:
  // One kernel of the set, compiled, loaded, and its handle resolved once at Create.
  template <typename P>
  struct Kernel {
    codegen::BuiltKernel built;
    cudaLibrary_t library = nullptr;
    TypedKernel<P> fn;
    int shared_bytes = 0;  // dynamic shared memory per launch
  };

  explicit CudaAttention(const CudaAttentionConfig& config) : config_(config) {}
  // Builds `spec` (through `cache`), loads its cubin and resolves its entry point into `k`.
  template <typename P>
  static absl::Status Load(const codegen::KernelSpec& spec, codegen::KernelStore* cache,
                           Kernel<P>* k);
  // `programmatic`: TypedKernel::Launch's programmatic stream serialization.
  template <typename P>
  static absl::Status Launch(const Kernel<P>& k, dim3 grid, const P& params, cudaStream_t stream,
                             bool programmatic = false);
  absl::Status CheckLayer(const CudaKvLayer& layer) const;
  // The merge after the decode kernel, programmatically dependent on it where that applies.
  absl::Status LaunchMerge(dim3 grid, const kernels::DecodeMergeParams& params,
                           cudaStream_t stream);

  CudaAttentionConfig config_;
  Kernel<kernels::DecodeAttentionParams> decode_;
  Kernel<kernels::DecodeMergeParams> merge_;
  Kernel<kernels::PrefillAttentionParams> prefill_;  // scalar or tensor-core (same params)
  Kernel<kernels::RotaryCacheWriteParams> rotary_;
  int sm_count_ = 0;
  int decode_ctas_per_sm_ = 1;
  bool pdl_ = false;  // config_.decode_pdl on a device of compute capability 9.0 or later
};

}  // namespace kvcc::runtime
