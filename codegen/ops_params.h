// The one argument of each ops kernel (ops_elementwise.cuh, ops_rmsnorm.cuh, ops_random.cuh,
// ops_sample.cuh, ops_probe.cuh, ops_gemv.cuh),
// filled by runtime/cuda/cuda_backend.cc. Host and device compile this same header, so the two
// sides cannot disagree on the arguments. Plain C++ and CUDA without includes: NVRTC receives it
// as an embedded header. Activations are f32 or f16 [rows, features] and weights and cast
// operands f32, f16 or bf16, by the entry point (kvcc_rms_norm_f16, kvcc_rms_norm_f16_h, ...),
// hence untyped here.
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
  int* error;         // [4]: {1, index, id, vocab} of the first id outside [0, vocab)
  int tokens;
  int hidden;
  int vocab;
};
static_assert(sizeof(EmbeddingParams) == 48, "host and device layouts must agree");

struct AddBiasParams {
  void* y;  // [rows, cols], in place
  const void* bias;
  long long rows;
  int cols;
};
static_assert(sizeof(AddBiasParams) == 32, "host and device layouts must agree");

// out (f32) = a + b.
struct BinaryParams {
  const void* a;
  const void* b;
  float* out;
  long long n;
};
static_assert(sizeof(BinaryParams) == 32, "host and device layouts must agree");

// out[r, c] = silu(a[r * a_stride + c]) * b[r * b_stride + c] (a the gate, b the up
// projection; both halves of one fused projection when the strides are 2 * cols).
struct SiluMulParams {
  const void* a;
  const void* b;
  void* out;  // [rows, cols]
  long long rows;
  int cols;
  int a_stride;
  int b_stride;
  int pad;
};
static_assert(sizeof(SiluMulParams) == 48, "host and device layouts must agree");

struct GatherRowsParams {
  const void* x;    // [rows, cols]
  const int* rows;  // [num_rows]
  void* out;        // [num_rows, cols]
  int num_rows;
  int cols;
};
static_assert(sizeof(GatherRowsParams) == 32, "host and device layouts must agree");

struct RotaryEmbeddingParams {
  const void* x;  // token t's heads * head_dim values at x + t * x_stride
  void* out;      // [tokens, heads * head_dim]
  const int* positions;   // [tokens]
  const float* inv_freq;  // head_dim / 2 floats, one row per token when freq_stride > 0
  int freq_stride;
  int tokens;
  int heads;
  int head_dim;
  long long x_stride;
};
static_assert(sizeof(RotaryEmbeddingParams) == 56, "host and device layouts must agree");

struct RmsNormParams {
  const float* x;      // [rows, n]
  const void* weight;  // [n]
  void* out;
  int n;
  float eps;
};
static_assert(sizeof(RmsNormParams) == 32, "host and device layouts must agree");

// sum = x + residual, out = rms_norm(sum).
struct AddRmsNormParams {
  const void* x;
  const float* residual;
  const void* weight;
  float* sum;
  void* out;
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

// One row of kvcc_sample (ops_sample.cuh): runtime/sampler.h's parameters and the row's draw
// in [0, 1), taken on the host from the request's seeded generator.
struct SampleRowParams {
  double temperature;  // 0: greedy
  double top_p;        // (0, 1]
  double repetition_penalty;
  double uniform;
  int top_k;  // 0: off
  int pad;
};
static_assert(sizeof(SampleRowParams) == 40, "host and device layouts must agree");

// One CTA per row. out[row] is the chosen id, or -1 - i when logit i of the row is NaN.
struct SampleParams {
  const float* logits;            // [rows, vocab]
  const SampleRowParams* rows;    // [rows]
  const int* history_start;       // [rows + 1] into history
  const int* history;             // the repetition penalty's tokens of every row
  int* out;                       // [rows]
  int vocab;                      // <= kSampleMaxVocab
  int num_rows;
};
static_assert(sizeof(SampleParams) == 48, "host and device layouts must agree");

// The largest vocabulary kvcc_sample takes (its seen-token bitmap is static shared memory).
constexpr int kSampleMaxVocab = 1 << 18;

// kvcc_target_nll (ops_sample.cuh): out[r] = logsumexp(logits row r) - logits[r, targets[r]]
// in double precision, 0 where targets[r] is -1.
struct TargetNllParams {
  const float* logits;  // [rows, vocab]
  const int* targets;   // [rows]
  double* out;          // [rows]
  int vocab;
  int num_rows;
};
static_assert(sizeof(TargetNllParams) == 32, "host and device layouts must agree");

// kvcc_column_ranges (ops_reduce.cuh): per column of x f32 [rows, cols], min, max and max |x|
// of the finite values (out[0..cols), out[cols..2 cols), out[2 cols..3 cols)) and the count of
// NaN/Inf values (nonfinite[cols]).
struct ColumnRangesParams {
  const float* x;
  float* out;
  long long* nonfinite;
  long long rows;
  int cols;
  int pad;
};
static_assert(sizeof(ColumnRangesParams) == 40, "host and device layouts must agree");

// kvcc_read_probe (ops_probe.cuh): reads `words` 16-byte words of `data`.
// y [tokens, out] (f16 when y_f16, else f32) = x [tokens, in] . w [out, in]^T + bias, x and w
// both f16 or both bf16 (by the entry point), f32 accumulation (ops_gemv.cuh). in is a multiple
// of 8 and x, w, y 16-byte aligned; tokens <= 8 x the entry point's token tiles.
struct GemvParams {
  const void* x;
  const void* w;
  void* y;
  const void* bias;  // [out] or null
  int tokens;
  int in;
  int out;
  int bias_dtype;  // 0 f32, 1 f16, 2 bf16
  int y_f16;
  // Chunks of 64 inputs per warp, beyond the ones it loads first, to prefetch into the L2
  // before the programmatic-launch wait (0: none; see codegen/ops_gemv.cuh).
  int l2_prefetch;
};
static_assert(sizeof(GemvParams) == 56, "host and device layouts must agree");

struct ReadProbeParams {
  const void* data;  // 16-byte aligned
  unsigned long long* sink;
  long long words;
};
static_assert(sizeof(ReadProbeParams) == 24, "host and device layouts must agree");

}  // namespace kvcc::kernels

#endif  // KVCC_CODEGEN_OPS_PARAMS_H_
