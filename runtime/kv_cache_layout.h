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
// A session owns a block table (block ids, in token order); token t of the session lives in block
// table[t / block_size], slot t % block_size.
#pragma once

#include <cstdint>

#include "ir/dtype.h"
#include "ir/kv_cache_scheme.h"

namespace kvcc::runtime {

using ir::KvPart;

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

  // The storage dtypes and online flags of `scheme` (other fields unchanged).
  void SetStorage(const ir::KvCacheScheme& scheme) {
    dtype = scheme.dtype;
    online = scheme.granularity == ir::KvGranularity::kOnline;
    v_dtype = scheme.v_dtype;
    v_online = scheme.v_granularity == ir::KvGranularity::kOnline;
  }
  ir::DType DTypeOf(KvPart p) const { return p == KvPart::kKey ? dtype : v_dtype; }
  bool OnlineOf(KvPart p) const { return p == KvPart::kKey ? online : v_online; }
  bool any_online() const { return online || v_online; }

  // Bytes of one head's row of one token (head_dim elements, packed).
  int64_t RowBytes(KvPart p) const { return ir::DTypeBytes(DTypeOf(p), head_dim); }
  // Bytes of K (or V) of one block of one layer.
  int64_t BlockBytes(KvPart p) const { return int64_t{kv_heads} * block_size * RowBytes(p); }
  // Bytes of the online (scale, zero) pairs of one block of one layer, for K (or V).
  int64_t BlockParamBytes(KvPart p) const {
    return OnlineOf(p) ? int64_t{kv_heads} * block_size * 2 * 2 : 0;
  }
  // Byte offset of (block, head, slot) inside one layer's K (or V) array.
  int64_t RowOffset(KvPart p, int64_t block, int head, int slot) const {
    return ((block * kv_heads + head) * block_size + slot) * RowBytes(p);
  }
  // Index, in fp16 values, of the online (scale, zero) pair of (block, head, slot) inside one
  // layer's K (or V) params.
  int64_t ParamIndex(int64_t block, int head, int slot) const {
    return ((block * kv_heads + head) * block_size + slot) * 2;
  }
  // Total bytes of the pool: all layers, K and V, values and online params.
  int64_t TotalBytes() const {
    int64_t per_block = 0;
    for (KvPart p : {KvPart::kKey, KvPart::kValue}) per_block += BlockBytes(p) + BlockParamBytes(p);
    return int64_t{num_layers} * num_blocks * per_block;
  }
};

}  // namespace kvcc::runtime
