// The one argument of each attention kernel (decode_attention.cuh, decode_merge.cuh,
// prefill_attention.cuh, rotary_cache_write.cuh), filled by runtime/cuda/cuda_attention.cc.
// Host and device compile this same header, so the two sides cannot disagree on the arguments.
// Plain C++ and CUDA without includes: NVRTC receives it as an embedded header. Layouts:
// runtime/kv_cache_layout.h (cache), ir/kv_quant.h (quantization parameters).
#ifndef KVCC_CODEGEN_ATTENTION_PARAMS_H_
#define KVCC_CODEGEN_ATTENTION_PARAMS_H_

namespace kvcc::kernels {

// One layer's paged cache as the attention kernels read it.
struct CacheReadView {
  const unsigned char* k;  // [num_blocks][kv_heads][block_size][row bytes]
  const unsigned char* v;
  const unsigned short* k_params;  // online schemes: (scale, zero) per cached row
  const unsigned short* v_params;
  const float* k_zp;  // calibrated schemes: 1 (per_layer) or kv_heads (per_head) entries
  const float* k_scale;
  const float* v_zp;
  const float* v_scale;
};

// Activations (q, k, v, out) are f16 or f32 by the kernel's specialization (io dtype), hence
// untyped here; the kernel reads them as its io_t.
struct DecodeAttentionParams {
  const void* q;  // [batch, heads, head_dim]
  CacheReadView cache;
  const int* block_tables;  // [batch, max_blocks]
  const int* seq_lens;      // [batch]
  void* out;                // [batch, heads, head_dim] (one split)
  float* partial_out;       // [batch, heads, splits, head_dim] (several splits)
  float* partial_ml;        // [batch, heads, splits, 2]
  int max_blocks;
  float softmax_scale;
  int tokens_per_split;
};
static_assert(sizeof(DecodeAttentionParams) == 128, "host and device layouts must agree");

struct DecodeMergeParams {
  const float* partial_out;  // [batch, heads, splits, head_dim]
  const float* partial_ml;   // [batch, heads, splits, 2] (max in log2 units, sum)
  void* out;                 // [batch, heads, head_dim]
  int splits;
};
static_assert(sizeof(DecodeMergeParams) == 32, "host and device layouts must agree");

struct PrefillAttentionParams {
  const void* q;  // [tokens, heads, head_dim], sessions back to back
  CacheReadView cache;
  const int* block_tables;  // [batch, max_blocks]
  const int* seq_lens;      // [batch] cached tokens, the new ones included
  const int* q_start;       // [batch + 1] first query token of each session
  void* out;                // [tokens, heads, head_dim]
  int max_blocks;
  float softmax_scale;
};
static_assert(sizeof(PrefillAttentionParams) == 112, "host and device layouts must agree");

struct RotaryCacheWriteParams {
  const void* k;  // token t's K at k + t * k_stride elements, [kv_heads, head_dim]
  const void* v;
  void* q;                  // nullable; rotated in place, [heads, head_dim] per token
  const int* positions;     // [tokens]
  const int* slot_mapping;  // [tokens] block * block_size + slot; < 0 skips
  const float* inv_freq;    // [head_dim / 2]
  unsigned char* k_cache;
  unsigned char* v_cache;
  unsigned short* k_params;  // online schemes: written beside each row
  unsigned short* v_params;
  const float* k_zp;
  const float* k_scale;
  const float* v_zp;
  const float* v_scale;
  int k_stride;
  int v_stride;
  int q_stride;
  int num_tokens;
};
static_assert(sizeof(RotaryCacheWriteParams) == 128, "host and device layouts must agree");

}  // namespace kvcc::kernels

#endif  // KVCC_CODEGEN_ATTENTION_PARAMS_H_
