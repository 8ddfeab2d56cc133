// Encoding of one head's row of one token (head_dim values) into the paged cache's storage
// format and back, for every cache scheme of ir/kv_cache_scheme.h. This is the bit-exact
// definition the CPU backend uses and the CUDA kernels are checked against.
#pragma once

#include <cstdint>

#include "ir/kv_cache_scheme.h"
#include "runtime/kv_cache_layout.h"

namespace kvcc::runtime {

// Writes `row` (RowBytes of the part) and, when the part is online, `params` (two fp16 values:
// scale, zero). `head` selects per-head (and per-channel) parameters. `params` may be null for
// other schemes.
void EncodeKvRow(const ir::KvCacheScheme& scheme, KvPart part, int head, const float* in,
                 int head_dim, uint8_t* row, uint16_t* params);
// Inverse of EncodeKvRow: the values attention reads.
void DecodeKvRow(const ir::KvCacheScheme& scheme, KvPart part, int head, const uint8_t* row,
                 const uint16_t* params, int head_dim, float* out);

// A block_channel (KIVI) K: quantizes the `count` f16 rows of one head of one block (`staged`,
// head_dim apart) per channel, into `rows` (row_bytes apart) and `params` (head_dim (scale,
// zero) fp16 pairs). DecodeKvRow reads such a row with `params` pointing at the block's pairs.
void EncodeKvBlockChannel(const uint16_t* staged, int count, int head_dim, uint8_t* rows,
                          int64_t row_bytes, uint16_t* params);

// DecodeKvRow over `count` consecutive slots of one head, stored `row_bytes` apart (params two
// fp16 values apart; a block_channel K's pairs are the block's, shared): an unquantized run converts as one contiguous array.
void DecodeKvRows(const ir::KvCacheScheme& scheme, KvPart part, int head, const uint8_t* rows,
                  int64_t row_bytes, const uint16_t* params, int head_dim, int count, float* out);

}  // namespace kvcc::runtime
