// The paged KV cache of one engine: the memory of runtime/kv_cache_layout.h (K and V arrays per
// layer, plus online (scale, zero) pairs), the per-layer storage scheme read from the IR's
// kv_cache_write nodes, and the BlockPool handing blocks to sessions. Storage tensors come from
// the backend (host memory on the CPU, device memory on a GPU); the host-side row accessors
// quantize on write and dequantize on read and need host storage.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/kv_cache_scheme.h"
#include "ir/module.h"
#include "runtime/block_pool.h"
#include "runtime/kv_cache_layout.h"
#include "runtime/kv_row_codec.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

// Allocates `bytes` of cache storage on the backend's device (a u8 tensor; contents need not
// be zeroed: only written slots are ever read).
using KvStorageAllocator = std::function<absl::StatusOr<Tensor>(int64_t bytes)>;

// The cache layout and per-layer schemes a module's kv_cache_write nodes ask for, with
// `num_blocks` blocks of `block_size` tokens. Errors name the node when layers disagree on the
// storage dtype (the paged layout has one) or a scheme is malformed.
struct KvCacheSpec {
  KvCacheLayout layout;
  std::vector<ir::KvCacheScheme> schemes;  // one per layer
};
// `full_precision` stores the layers without a quantization scheme in f32 instead of their
// declared f16, for comparisons against fp32 references (quantized layers are unaffected).
absl::StatusOr<KvCacheSpec> KvCacheSpecFromModule(const ir::Module& module, int block_size,
                                                  int64_t num_blocks, bool full_precision = false);

class KvCache {
 public:
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const KvCacheSpec& spec,
                                                         const KvStorageAllocator& allocate);
  // Host memory (what the CPU backend uses).
  static absl::StatusOr<std::unique_ptr<KvCache>> CreateHost(const KvCacheSpec& spec);

  const KvCacheLayout& layout() const { return spec_.layout; }
  const ir::KvCacheScheme& scheme(int layer) const { return spec_.schemes[layer]; }
  BlockPool& blocks() { return blocks_; }
  const BlockPool& blocks() const { return blocks_; }

  // Raw storage of one layer: values [num_blocks][kv_heads][block_size] rows of RowBytes, and
  // for online schemes [num_blocks][kv_heads][block_size][2] fp16 (scale, zero).
  const Tensor& values(int layer, KvPart part) const { return values_[Index(layer, part)]; }
  const Tensor& params(int layer, KvPart part) const { return params_[Index(layer, part)]; }

  // Quantizes and stores token `position` of `session` for one layer: `k` and `v` hold
  // kv_heads * head_dim floats. The position must lie inside the session's reserved blocks.
  // A block_channel K stages the row in f16 and quantizes the block when its last slot is
  // written (never the session's first block, the attention sink), so writes into one block must come in position order (not concurrently); a write
  // into an already quantized block reopens it (its rows dequantized into staging).
  absl::Status WriteToken(int layer, int64_t session, int64_t position, const float* k,
                          const float* v);
  // Staging area of a block_channel K (f16, layout StagingBlockBytes per staging block), and
  // the staging block holding `block`'s rows, or -1 when the block is quantized.
  const Tensor& staging(int layer) const { return staging_[layer]; }
  int32_t StagingOf(int layer, int32_t block) const {
    return kivi_.empty() ? -1 : kivi_[layer].staging_of[block];
  }
  // The bookkeeping of a block_channel K write of (block, slot), for a backend that moves the
  // rows itself (the CUDA backend; WriteToken uses it too): the staging block that receives the
  // row; `reopen_rows` earlier rows of a quantized block that must first return to staging,
  // dequantized (a session rolled back into it); whether the write fills the block, which is
  // then quantized from that staging block. The state is left as after the write: a sealed
  // block's staging block is free again, so its rows must be quantized before the next write
  // of this layer reuses it. `sink`: the block is the session's first (never sealed).
  struct BlockChannelWrite {
    int32_t staging = -1;
    int reopen_rows = 0;
    bool seal = false;
  };
  absl::StatusOr<BlockChannelWrite> PlanBlockChannelWrite(int layer, int32_t block, int slot,
                                                          bool sink);

  // Dequantized head_dim values of (block, head, slot) of one layer; no bounds checks beyond
  // the layout's (callers walk block tables they obtained from blocks()).
  void ReadRow(int layer, KvPart part, int32_t block, int head, int slot, float* out) const;
  // ReadRow for `count` consecutive slots of one block from `slot` on (slot + count <= block size).
  void ReadRows(int layer, KvPart part, int32_t block, int head, int slot, int count,
                float* out) const;

 private:
  KvCache(KvCacheSpec spec) : spec_(std::move(spec)), blocks_(spec_.layout.num_blocks, spec_.layout.block_size) {}
  static int Index(int layer, KvPart part) { return layer * 2 + (part == KvPart::kValue ? 1 : 0); }

  absl::Status WriteBlockChannelRows(int layer, int32_t block, int slot, bool sink,
                                     const float* k);
  absl::StatusOr<int32_t> AcquireStaging(int layer, int32_t block);

  // Per-layer bookkeeping of a block_channel K: which staging block holds which pool block.
  struct KiviState {
    std::vector<int32_t> staging_of;  // [num_blocks], -1: none
    std::vector<int32_t> block_of;    // [staging_blocks], -1: free
    std::vector<uint8_t> sealed;      // [num_blocks], quantized rows valid
  };

  KvCacheSpec spec_;
  BlockPool blocks_;
  std::vector<Tensor> values_, params_, staging_;
  std::vector<KiviState> kivi_;
};

}  // namespace kvcc::runtime
