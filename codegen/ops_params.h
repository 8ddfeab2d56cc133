// The one argument of each ops kernel (ops_elementwise.cuh, ops_rmsnorm.cuh, ops_random.cuh),
// filled by runtime/cuda/cuda_backend.cc. Host and device compile this same header, so the two
// sides cannot disagree on the arguments. Plain C++ and CUDA without includes: NVRTC receives it
// as an embedded header. Activations are f32 [rows, features]; weights and cast operands are
// f32, f16 or bf16 by the entry point (kvcc_rms_norm_f16, ...), hence untyped here.
#ifndef KVCC_CODEGEN_OPS_PARAMS_H_
#define KVCC_CODEGEN_OPS_PARAMS_H_

namespace kvcc::kernels {

struct CastParams {
  const void* x;
  void* y;
  long long n;
};
static_assert(sizeof(CastParams) == 24, "host and device layouts must agree");

struct EmbeddingParams {
  const int* ids;     // [tokens]
  const void* table;  // [vocab, hidden]
  float* out;         // [tokens, hidden]
  int* error;         // set to 1 when an id lies outside [0, vocab)
  int tokens;
  int hidden;
  int vocab;
};
static_assert(sizeof(EmbeddingParams) == 48, "host and device layouts must agree");

struct AddBiasParams {
  float* y;  // [rows, cols], in place
  const void* bias;
  long long rows;
  int cols;
};
static_assert(sizeof(AddBiasParams) == 32, "host and device layouts must agree");

// out = a + b, and out = silu(a) * b (a the gate, b the up projection).
struct BinaryParams {
  const float* a;
  const float* b;
  float* out;
  long long n;
};
static_assert(sizeof(BinaryParams) == 32, "host and device layouts must agree");

struct GatherRowsParams {
  const float* x;   // [rows, cols]
  const int* rows;  // [num_rows]
  float* out;       // [num_rows, cols]
  int num_rows;
  int cols;
};
static_assert(sizeof(GatherRowsParams) == 32, "host and device layouts must agree");

struct RotaryEmbeddingParams {
  const float* x;  // [tokens, heads * head_dim]
  float* out;
  const int* positions;   // [tokens]
  const float* inv_freq;  // head_dim / 2 floats, one row per token when freq_stride > 0
  int freq_stride;
  int tokens;
  int heads;
  int head_dim;
};
static_assert(sizeof(RotaryEmbeddingParams) == 48, "host and device layouts must agree");

struct RmsNormParams {
  const float* x;      // [rows, n]
  const void* weight;  // [n]
  float* out;
  int n;
  float eps;
};
static_assert(sizeof(RmsNormParams) == 32, "host and device layouts must agree");

// sum = x + residual, out = rms_norm(sum).
struct AddRmsNormParams {
  const float* x;
  const float* residual;
  const void* weight;
  float* sum;
  float* out;
  int n;
  float eps;
};
static_assert(sizeof(AddRmsNormParams) == 48, "host and device layouts must agree");

struct FillNormalParams {
  void* out;
  long long n;
  unsigned long long seed;
  float mean;
  float stddev;
};
static_assert(sizeof(FillNormalParams) == 32, "host and device layouts must agree");

}  // namespace kvcc::kernels

#endif  // KVCC_CODEGEN_OPS_PARAMS_H_
