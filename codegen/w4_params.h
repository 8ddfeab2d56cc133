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

}  // namespace kvcc::kernels

#endif  // KVCC_CODEGEN_W4_PARAMS_H_
