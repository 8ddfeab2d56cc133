// The int4-kivi cache (block_channel K, V i4 online) on the GPU: the kernels of
// codegen/kivi_cache.cuh behind a per-layer API for the CUDA backend. The host side of each
// write is KvCache's bookkeeping (PlanBlockChannelWrite: which f16 staging block takes a row,
// which writes fill a block and seal it, which reopen a quantized one); the device keeps a copy
// of each layer's staging map that the kernels update as they move the rows, so attention
// reads K from staging or from the quantized block exactly as the CPU backend does.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "codegen/kernel_store.h"
#include "codegen/kivi_kernels.h"
#include "codegen/kivi_params.h"
#include "runtime/backend.h"
#include "runtime/cuda/typed_kernel.h"
#include "runtime/kv_cache.h"

namespace kvcc::runtime {

class CudaContext;

// The tokens of one layer's cache write: K (rotated) and V rows on the device, one per token.
struct KiviWriteArgs {
  const void* k = nullptr;  // token t's K row at k + t * k_stride elements
  int k_stride = 0;
  const void* v = nullptr;
  int v_stride = 0;
  std::vector<int32_t> slots;      // per token: block * block_size + slot, < 0 skips
  std::vector<int32_t> positions;  // per token: its position in its session (< block_size: sink)
};

// Causal attention entries: each a run of one session's consecutive query tokens (a prefill
// chunk or one decode token) ending at position seq_lens[e] - 1.
struct KiviAttentionArgs {
  const void* q = nullptr;  // [tokens, heads, head_dim]
  void* out = nullptr;
  const int32_t* block_tables = nullptr;  // [entries, max_blocks]
  const int32_t* seq_lens = nullptr;      // [entries]
  const int32_t* q_start = nullptr;       // [entries + 1]
  int entries = 0;
  int max_blocks = 0;
  int max_q_len = 0;  // host-side bound on the queries of one entry
  float scale = 0.f;
};

// Device view of `layer` of a block_channel `cache` on the GPU whose staging maps (one
// [num_blocks] int32 array per layer, back to back) are at `staging_maps`.
kernels::KiviCacheView KiviView(const KvCache& cache, int layer, int32_t* staging_maps);

// The attention entries of a step: each run of one session's tokens at consecutive positions
// is one entry (a prefill chunk, or a decode token); `idx` packs the entries' block tables
// [entries x max_blocks], then seq_lens [entries], then q_start [entries + 1], for one upload.
// Errors name the session whose position lies outside its blocks.
struct KiviEntries {
  std::vector<int32_t> idx;
  int entries = 0, max_blocks = 1, max_q_len = 1;
};
absl::StatusOr<KiviEntries> KiviAttentionEntries(const KvCache& cache, const StepBatch& batch);

class CudaKivi {
 public:
  // Uploads a step's int32 array and returns its device copy (valid for the step).
  using Upload = absl::FunctionRef<absl::StatusOr<const int32_t*>(std::vector<int32_t>)>;

  static absl::StatusOr<std::unique_ptr<CudaKivi>> Create(const codegen::KiviKernelSpec& spec,
                                                          std::shared_ptr<CudaContext> ctx,
                                                          codegen::KernelStore* store);

  // Both queue on the context's stream.
  // Queues the write of `args`' tokens into `layer` of `cache` (its device view `view`),
  // updating the cache's bookkeeping. A write the bookkeeping refuses (no free staging block)
  // fails after queueing the tokens before it, as the CPU backend leaves them written.
  absl::Status Write(KvCache* cache, int layer, const kernels::KiviCacheView& view,
                     const KiviWriteArgs& args, Upload upload);
  // Prefill chunks and decode tokens alike, through the tiled causal kernel.
  absl::Status Attention(const kernels::KiviCacheView& view, const KiviAttentionArgs& args);

  const codegen::KiviKernelSpec& spec() const { return spec_; }

 private:
  CudaKivi(const codegen::KiviKernelSpec& spec, std::shared_ptr<CudaContext> ctx)
      : spec_(spec), ctx_(std::move(ctx)) {}

  codegen::KiviKernelSpec spec_;
  std::shared_ptr<CudaContext> ctx_;
  TypedKernel<kernels::KiviWriteParams> write_;
  TypedKernel<kernels::KiviBlockParams> seal_, reopen_;
  TypedKernel<kernels::KiviAttentionParams> attention_;
};

}  // namespace kvcc::runtime
