// The one argument of the W4A16 kernels (codegen/w4_gemv.cuh), filled by
// runtime/cuda/cuda_w4_linear.cc; host and device compile this same header. Plain C++ and CUDA
// without includes (NVRTC receives it as an embedded header). The weight is in the layout of
// ir/group_quant.h: codes i4 [out, in] (two per byte, low nibble first, q - 8), scales f16 and
// zeros i4 [out, in / group_size].
#ifndef KVCC_CODEGEN_W4_PARAMS_H_
#define KVCC_CODEGEN_W4_PARAMS_H_

namespace kvcc::kernels {

struct W4LinearParams {
  const float* x;              // [tokens, in] (gemv)
  float* y;                    // [tokens, out] (gemv)
  const unsigned char* codes;  // i4 [out, in]
  const void* scales;          // f16 [out, in / group_size]
  const unsigned char* zeros;  // i4 [out, in / group_size]; null: zero point 0 (i.e. q = 8)
  void* w16;                   // f16 [out, in] (dequantize)
  const float* bias;           // [out] or null (gemv)
  int tokens;
  int in;  // a multiple of 8
  int out;
  int group_size;  // a multiple of 8 dividing in
};
static_assert(sizeof(W4LinearParams) == 72, "host and device layouts must agree");

// The repacked layout the tensor-core kernels (codegen/w4_mma.cuh, w4_stream.cuh,
// w4_stripe.cuh) read, made once per weight (layout version 2). The weight [out, in] is cut
// into 16-row strips (mt) and 64-input chunks (kc); chunk kc of strip mt is 32 lanes x 4 words
// (one 512-byte run, one 128-bit load per lane), word j holding lane's A fragment of
// mma.m16n8k16 tile j of the chunk. Lane (g = lane / 4, t = lane % 4) owns the 16 contiguous
// inputs 16 t .. 16 t + 15 of the chunk: tile j's mma k index 2t + e (e = 0, 1) is input
// 16 t + 4 j + e and k index 2t + 8 + e is input 16 t + 4 j + 2 + e. So the B fragment of a
// token for all four tiles is that token's activations at 16 t .. 16 t + 15 (two 16-byte
// loads of f16), and the sum over k is unchanged (the same permutation on both operands).
// In word j, nibble n (the unsigned code q) is row g + 8 (n & 1), input
// 16 t + 4 j + 2 ((n >> 1) & 1) + (n >> 2) of the chunk, so (word >> 4i) & 0x000F000F |
// 0x64006400 is fragment register i as two halves 1024 + q. Scales and zeros: one word per
// (strip, group, row): low half the f16 scale, high half 1024 + z (z = 8 without zeros) as
// f16; w = ((1024 + q) - (1024 + z)) * s. (Version 1 held k index k at input 16 j + k, which
// needed eight 4-byte activation loads per chunk and lane.)
#define KVCC_W4_STRIP 16
#define KVCC_W4_CHUNK 64
#define KVCC_W4_TILE_K 16
// The stripe kernels (codegen/w4_stripe.cuh): warps per CTA and cp.async ring stages per warp
// (16 x 768 bytes: a CTA's 48 KiB of static shared memory).
#define KVCC_W4_STRIPE_WARPS 4
#define KVCC_W4_STRIPE_STAGES 16
// Shared memory for the activations of one mma CTA: tokens x k_split inputs in f16.
#define KVCC_W4_X_BYTES 32768

#if defined(__CUDACC__)
#define KVCC_W4_HD __host__ __device__ inline
#else
#define KVCC_W4_HD inline
#endif

// Word index of (strip, chunk, lane, j) in the packed codes of a weight with `in` inputs.
KVCC_W4_HD long long W4PackedWord(long long strip, int chunk, int lane, int j, int in) {
  return ((strip * (in / KVCC_W4_CHUNK) + chunk) * 32 + lane) * 4 + j;
}
// Row within the strip and input within the 64-wide chunk of nibble n of `lane`'s word j.
KVCC_W4_HD int W4NibbleRow(int lane, int n) { return (lane >> 2) + 8 * (n & 1); }
KVCC_W4_HD int W4NibbleCol(int lane, int j, int n) {
  return 16 * (lane & 3) + 4 * j + 2 * ((n >> 1) & 1) + (n >> 2);
}
// Word index of (strip, group, row) in the packed scale/zero words.
KVCC_W4_HD long long W4PackedScale(long long strip, int group, int row, int groups) {
  return (strip * groups + group) * KVCC_W4_STRIP + row;
}

struct W4PackedParams {
  const float* x;              // f32 [tokens, in] (f16 in the stream kernels' _h entries)
  float* y;                    // f32 [tokens, out] (f16 in the _h entries)
  const unsigned* codes;       // packed codes, out * in / 8 words (repack: written)
  const unsigned* sz;          // packed scale/zero words, out / 16 * groups * 16 (repack: written)
  const float* bias;           // [out] or null
  void* w16;                   // f16 [out, in] (unpack)
  const unsigned char* src_codes;  // i4 [out, in] of ir/group_quant.h (repack)
  const void* src_scales;          // f16 [out, in / group_size] (repack)
  const unsigned char* src_zeros;  // i4 [out, in / group_size] or null (repack)
  int tokens;
  int in;          // a multiple of KVCC_W4_CHUNK
  int out;         // a multiple of KVCC_W4_STRIP
  int group_size;  // a multiple of KVCC_W4_TILE_K dividing in
  int k_split;     // inputs per CTA (a multiple of KVCC_W4_CHUNK); gridDim.z CTAs cover `in`
  int strips_per_warp;  // strips each warp computes, one after the other
  // The stripe kernels (codegen/w4_stripe.cuh): per strip 32 lanes x 8 f32 partial sums and
  // one arrival counter, both all zero between calls (the last warp of a strip leaves them so).
  float* ws;
  unsigned* counters;
  int warps;  // warps sharing the chunks, at most strips * chunks
  int pad;
};
static_assert(sizeof(W4PackedParams) == 120, "host and device layouts must agree");

}  // namespace kvcc::kernels

#endif  // KVCC_CODEGEN_W4_PARAMS_H_
