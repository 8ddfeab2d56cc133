// The paged KV-cache memory layout, identical on the CPU backend and the GPU so that the CPU
// backend can act as a bit-exact oracle for the CUDA kernels.
//
// The pool is `num_blocks` blocks of `block_size` tokens. For each layer l there are two arrays,
// K and V, each laid out [num_blocks][kv_heads][block_size][head_dim] in its part's dtype (K and
// V may differ, e.g. int8 K with int4 V):
//   f16: 2 bytes/element; i8 and fp8e4m3: 1 byte; i4: two elements per byte, element 2j in the
//   low nibble.
// A part with an online scheme additionally stores, per layer, [num_blocks][kv_heads][block_size]
// pairs (scale, zero) as two fp16 values.
// A K part with the block_channel (KIVI) scheme stores, per layer, [num_blocks][kv_heads][head_dim]
// pairs (scale, zero) as fp16, one per channel of each sealed block, and a staging area of
// `staging_blocks` f16 K blocks [staging_blocks][kv_heads][block_size][head_dim]: a block's rows
// live there, unquantized, until its last slot is written (ir/kv_cache_scheme.h); a session's
// first block (the attention sink) stays there for good. A session so holds two staging blocks
// at most; the pool holds one per kKiviBlocksPerStaging blocks (enough for sessions of at least
// 2 * kKiviBlocksPerStaging blocks on average), and TotalBytes counts them.
// A session owns a block table (block ids, in token order); token t of the session lives in block
// table[t / block_size], slot t % block_size.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ir/dtype.h"
#include "ir/kv_cache_scheme.h"

namespace kvcc::runtime {

using ir::KvPart;

// Blocks of the pool per f16 staging block of a block_channel K cache.
inline constexpr int64_t kKiviBlocksPerStaging = 16;

struct KvCacheLayout {
  int num_layers = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int block_size = 64;
  int64_t num_blocks = 0;
  ir::DType dtype = ir::DType::kF16;    // K's storage
  bool online = false;                  // K keeps per-token (scale, zero) pairs beside its values
  ir::DType v_dtype = ir::DType::kF16;  // V's storage
  bool v_online = false;
  bool block_channel = false;  // K is block_channel (KIVI): per-block channel params, staging
  int64_t staging_blocks = 0;  // f16 K blocks for unfilled blocks (block_channel only)

  // The storage dtypes and online flags of `scheme` (other fields unchanged).
  void SetStorage(const ir::KvCacheScheme& scheme) {
    dtype = scheme.dtype;
    online = scheme.granularity == ir::KvGranularity::kOnline;
    v_dtype = scheme.v_dtype;
    v_online = scheme.v_granularity == ir::KvGranularity::kOnline;
    block_channel = scheme.granularity == ir::KvGranularity::kBlockChannel;
  }
  // The staging blocks a block_channel pool of `num_blocks` holds: one per kKiviBlocksPerStaging
  // blocks, and never fewer than `min_staging` (two per session the pool is sized for: a session
  // holds its sink block and its unfilled block), up to one per block.
  void SetStagingFor(int64_t blocks, int64_t min_staging = 2) {
    const int64_t share = (blocks + kKiviBlocksPerStaging - 1) / kKiviBlocksPerStaging;
    staging_blocks = block_channel ? std::min(blocks, std::max(share, min_staging)) : 0;
  }
  ir::DType DTypeOf(KvPart p) const { return p == KvPart::kKey ? dtype : v_dtype; }
  bool OnlineOf(KvPart p) const { return p == KvPart::kKey ? online : v_online; }
  bool any_online() const { return online || v_online; }

  // Bytes of one head's row of one token (head_dim elements, packed).
  int64_t RowBytes(KvPart p) const { return ir::DTypeBytes(DTypeOf(p), head_dim); }
  // Bytes of K (or V) of one block of one layer.
  int64_t BlockBytes(KvPart p) const { return int64_t{kv_heads} * block_size * RowBytes(p); }
  // Bytes of the online (scale, zero) pairs of one block of one layer, for K (or V), or of the
  // per-channel pairs of a block_channel K.
  int64_t BlockParamBytes(KvPart p) const {
    if (p == KvPart::kKey && block_channel) return int64_t{kv_heads} * head_dim * 2 * 2;
    return OnlineOf(p) ? int64_t{kv_heads} * block_size * 2 * 2 : 0;
  }
  bool HasParams(KvPart p) const { return OnlineOf(p) || (p == KvPart::kKey && block_channel); }
  // Bytes of one f16 staging block of one layer (K rows of every head).
  int64_t StagingBlockBytes() const { return int64_t{kv_heads} * block_size * head_dim * 2; }
  // Byte offset of (block, head, slot) inside one layer's K (or V) array.
  int64_t RowOffset(KvPart p, int64_t block, int head, int slot) const {
    return ((block * kv_heads + head) * block_size + slot) * RowBytes(p);
  }
  // Index, in fp16 values, of the online (scale, zero) pair of (block, head, slot) inside one
  // layer's K (or V) params.
  int64_t ParamIndex(int64_t block, int head, int slot) const {
    return ((block * kv_heads + head) * block_size + slot) * 2;
  }
  // Index, in fp16 values, of the first per-channel pair of (block, head) of a block_channel K.
  int64_t ChannelParamIndex(int64_t block, int head) const {
    return (block * kv_heads + head) * int64_t{head_dim} * 2;
  }
  // Total bytes of the pool: all layers, K and V, values, params and staging.
  int64_t TotalBytes() const {
    int64_t per_block = 0;
    for (KvPart p : {KvPart::kKey, KvPart::kValue}) per_block += BlockBytes(p) + BlockParamBytes(p);
    return int64_t{num_layers} * (num_blocks * per_block + staging_blocks * StagingBlockBytes());
  }
};

}  // namespace kvcc::runtime
