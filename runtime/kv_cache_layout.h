// The paged KV-cache memory layout, identical on the CPU backend and the GPU so that the CPU
// backend can act as a bit-exact oracle for the CUDA kernels.
//
// The pool is `num_blocks` blocks of `block_size` tokens. For each layer l there are two arrays,
// K and V, each laid out [num_blocks][kv_heads][block_size][head_dim] in the cache dtype:
//   f16: 2 bytes/element; i8: 1 byte; i4: two elements per byte, element 2j in the low nibble.
// Online schemes additionally store, per layer and for K and V, [num_blocks][kv_heads][block_size]
// pairs (scale, zero) as two fp16 values.
// A session owns a block table (block ids, in token order); token t of the session lives in block
// table[t / block_size], slot t % block_size.
#pragma once

#include <cstdint>

#include "ir/dtype.h"

namespace kvcc::runtime {

struct KvCacheLayout {
  int num_layers = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int block_size = 64;
  int64_t num_blocks = 0;
  ir::DType dtype = ir::DType::kF16;
  bool online = false;  // per-token (scale, zero) pairs stored beside the values

  // Bytes of one head's row of one token (head_dim elements, packed).
  int64_t RowBytes() const { return ir::DTypeBytes(dtype, head_dim); }
  // Bytes of K (or V) of one block of one layer.
  int64_t BlockBytes() const { return int64_t{kv_heads} * block_size * RowBytes(); }
  // Bytes of the online (scale, zero) pairs of one block of one layer, for K (or V).
  int64_t BlockParamBytes() const {
    return online ? int64_t{kv_heads} * block_size * 2 * 2 : 0;
  }
  // Byte offset of (block, head, slot) inside one layer's K (or V) array.
  int64_t RowOffset(int64_t block, int head, int slot) const {
    return ((block * kv_heads + head) * block_size + slot) * RowBytes();
  }
  // Index, in fp16 values, of the online (scale, zero) pair of (block, head, slot) inside one
  // layer's K (or V) params.
  int64_t ParamIndex(int64_t block, int head, int slot) const {
    return ((block * kv_heads + head) * block_size + slot) * 2;
  }
  // Total bytes of the pool: all layers, K and V, values and online params.
  int64_t TotalBytes() const {
    return int64_t{2} * num_layers * num_blocks * (BlockBytes() + BlockParamBytes());
  }
};

}  // namespace kvcc::runtime
