// The arguments of the int4-kivi (block_channel K) kernels of codegen/kivi_cache.cuh, filled by
// runtime/cuda/cuda_kivi.cc. Host and device compile this same header. Plain C++ and CUDA
// without includes: NVRTC receives it as an embedded header. Layout: runtime/kv_cache_layout.h
// (K values and per-block channel pairs, f16 staging blocks); `staging_map` is the device copy
// of KvCache::StagingOf for one layer ([num_blocks], -1: the block is quantized).
#ifndef KVCC_CODEGEN_KIVI_PARAMS_H_
#define KVCC_CODEGEN_KIVI_PARAMS_H_

namespace kvcc::kernels {

// One layer's block_channel cache as the kivi kernels see it.
struct KiviCacheView {
  unsigned char* k;           // [num_blocks][kv_heads][block_size][head_dim / 2] i4 codes
  unsigned short* k_params;   // [num_blocks][kv_heads][head_dim] (scale, zero) fp16
  unsigned short* staging;    // [staging_blocks][kv_heads][block_size][head_dim] f16
  int* staging_map;           // [num_blocks] staging block of each pool block, -1: quantized
  unsigned char* v;           // [num_blocks][kv_heads][block_size][head_dim / 2] i4 online
  unsigned short* v_params;   // [num_blocks][kv_heads][block_size] (scale, zero) fp16
};

// Tokens [first, first + count) of a step: K rows (already rotated) into their staging blocks,
// V rows quantized online into the cache.
struct KiviWriteParams {
  KiviCacheView cache;
  const void* k;          // token t's K at k + t * k_stride elements, [kv_heads, head_dim]
  const void* v;
  const int* slots;       // [tokens] block * block_size + slot; < 0 skips
  const int* staging;     // [tokens] staging block of the token's K row
  int k_stride;
  int v_stride;
  int first;
  int count;
};
static_assert(sizeof(KiviWriteParams) == 96, "host and device layouts must agree");

// A filled block quantized per channel from its staging block (seal), or the first `rows` rows
// of a quantized block dequantized back into a staging block (reopen).
struct KiviBlockParams {
  KiviCacheView cache;
  int block;
  int staging;
  int rows;
  int pad;
};
static_assert(sizeof(KiviBlockParams) == 64, "host and device layouts must agree");

// Causal attention of each entry's query tokens over its session's cache (prefill chunks and
// decode tokens alike: a decode token is an entry of one query).
struct KiviAttentionParams {
  KiviCacheView cache;
  const void* q;            // [tokens, heads, head_dim], entries back to back
  void* out;                // [tokens, heads, head_dim]
  const int* block_tables;  // [entries, max_blocks]
  const int* seq_lens;      // [entries] cached tokens of the entry's session, its queries included
  const int* q_start;       // [entries + 1] first query token of each entry
  int max_blocks;
  float softmax_scale;
};
static_assert(sizeof(KiviAttentionParams) == 96, "host and device layouts must agree");

}  // namespace kvcc::kernels

#endif  // KVCC_CODEGEN_KIVI_PARAMS_H_
