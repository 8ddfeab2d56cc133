// The W4A16 linear on the GPU: the NVRTC kernels of codegen/w4_stripe.cuh, codegen/w4_mma.cuh,
// codegen/w4_stream.cuh and codegen/w4_gemv.cuh loaded for one CudaContext from the backend's kernel store. A compiled
// artifact stores its weights in the packed layout (pipeline/w4_packing.h), used straight from
// the upload (Adopt); a checkpoint's weight the layout can hold (runtime/w4_repack.h) is
// repacked once, on its first call, and kept while its upload lives. Up to kW4MmaMaxTokens
// tokens then run the tensor-core linear from the packed codes, more (prefill) unpack it to f16
// for the cuBLASLt GEMM. Other weights take the plain-layout GEMV (up to kW4GemvMaxTokens
// tokens) or dequantize + GEMM.
// CudaBackend::QuantizedLinear (defined in the .cc) dispatches.
#pragma once

#include <functional>
#include <map>
#include <memory>

#include "absl/status/statusor.h"
#include "codegen/kernel_store.h"
#include "codegen/w4_params.h"
#include "runtime/backend.h"
#include "runtime/cuda/cuda_context.h"

namespace kvcc::runtime {

// Plain-layout batches above this go through dequantize + GEMM.
inline constexpr int64_t kW4GemvMaxTokens = 16;
// Packed batches above this unpack to f16 and take the GEMM.
inline constexpr int64_t kW4MmaMaxTokens = 64;

// Packed batches up to kW4StreamMaxTokens with a group size that is a multiple of 64 take the
// stream kernels (codegen/w4_stream.cuh; above 16 tokens in tiles of 16 that each re-read the
// weight from the L2: still faster than the split-K mma kernels at 32 and 64 tokens on the
// H200), others the split-K mma kernels.
inline constexpr int64_t kW4StreamMaxTokens = 64;

// Packed batches up to this with f16 activations and a group size that is a multiple of 64
// can take the stripe kernels (codegen/w4_stripe.cuh) when W4KernelChoice::kStripe asks: the
// stream kernels beat them on the H200, so kAuto never does.
inline constexpr int64_t kW4StripeMaxTokens = 16;

// Which packed kernel PackedLinear runs; the bench and tests force each one.
struct W4KernelChoice {
  enum Path { kAuto, kStream, kMma, kStripe } path = kAuto;
  int strips = 0;  // stream kernels: strips per CTA (1 or 2); 0 picks by shape
  // Stream and stripe kernels with f16 activations: the zero point folded out of the
  // dequantization (the _hz / _z entries, codegen/w4_stream.cuh FOLD), or subtracted.
  bool fold = true;
  // Stripe kernels: CTAs launched per SM (1..4; 0: the default, 4).
  int ctas_per_sm = 0;
};

// A weight's packed copy on the device.
struct PackedW4Device {
  std::weak_ptr<const void> owner;  // the codes upload it was made from (a repacked copy)
  Tensor codes, sz;
};

class CudaW4Linear {
 public:
  // `store` may be null (always compile).
  static absl::StatusOr<std::shared_ptr<CudaW4Linear>> Create(std::shared_ptr<CudaContext> ctx,
                                                              codegen::KernelStore* store);

  // Why the kernels cannot take `w` (f16 scales, widths and group size multiples of 8 needed),
  // or OK.
  static absl::Status Supports(const QuantizedWeight& w);

  // y f32 [T, out] = x f32 [T, in] times the dequantized weight, plus `bias32` (f32 [out]) when
  // set; y must be allocated. Plain layout.
  absl::Status Gemv(const Tensor& x, const QuantizedWeight& w, const float* bias32, Tensor* y);
  // The weight as f16 [out, in] into w16 (allocated). Plain layout.
  absl::Status Dequantize(const QuantizedWeight& w, Tensor* w16);

  // The packed copy of plain device weight `w` (made on the first call for its upload), or null
  // when the packed layout cannot hold it.
  absl::StatusOr<const PackedW4Device*> Packed(const QuantizedWeight& w);
  // Packed weight `w` (QuantizedWeight::packed, on the device) as the kernels take it: views of
  // its words, no copy.
  static PackedW4Device Adopt(const QuantizedWeight& w);
  // As Gemv, from the packed copy, for up to kW4MmaMaxTokens tokens or more (the weight is then
  // read once per 64 tokens). x may also be f16: the stream kernels then write y in f16, the
  // split-K mma kernels (Streams() false) in f32.
  absl::Status PackedLinear(const Tensor& x, const PackedW4Device& pw, const QuantizedWeight& w,
                            const float* bias32, Tensor* y);
  // The packed weight as f16 [out, in] in a scratch tensor reused by the next call.
  absl::StatusOr<Tensor> Unpack(const PackedW4Device& pw, const QuantizedWeight& w);
  // Whether PackedLinear takes `tokens` tokens of a weight of `group_size` to the stream
  // kernels (under the current choice).
  bool Streams(int64_t tokens, int64_t group_size) const {
    return tokens <= kW4StreamMaxTokens && group_size % KVCC_W4_CHUNK == 0 &&
           choice_.path != W4KernelChoice::kMma;
  }

  // The f32 bias the kernels add: `bias` itself when f32, else its copy made by `cast` on the
  // first call for its upload and kept while the upload lives (a decode step casts no bias).
  absl::StatusOr<const float*> Bias32(const Tensor& bias,
                                      const std::function<absl::StatusOr<Tensor>()>& cast);

  void set_choice(W4KernelChoice c) { choice_ = c; }
  const W4KernelChoice& choice() const { return choice_; }

 private:
  explicit CudaW4Linear(std::shared_ptr<CudaContext> ctx) : ctx_(std::move(ctx)) {}
  kernels::W4LinearParams Params(const QuantizedWeight& w) const;
  kernels::W4PackedParams PackedParams(const PackedW4Device& pw, const QuantizedWeight& w) const;

  std::shared_ptr<CudaContext> ctx_;
  TypedKernel<kernels::W4LinearParams> gemv_, dequant_;
  absl::Status StreamLinear(kernels::W4PackedParams p, bool x_f16);
  absl::Status MmaLinear(kernels::W4PackedParams p, bool x_f16);
  absl::Status StripeLinear(kernels::W4PackedParams p);
  // Whether PackedLinear takes this call to the stripe kernels.
  bool Stripes(int64_t tokens, int64_t group_size, bool x_f16) const;

  // mma_[f32 x, f16 x][n1, n2, n4, n8].
  TypedKernel<kernels::W4PackedParams> mma_[2][4], fill_, repack_, unpack_;
  // stream_[f32, f16, f16 folded][n1, n2][s1, s2].
  TypedKernel<kernels::W4PackedParams> stream_[3][2][2];
  // stripe_[subtracted zero, folded][n1, n2], and their partial sums and arrival counters
  // (zero between calls; sized for stripe_strips_ strips, never shrunk).
  TypedKernel<kernels::W4PackedParams> stripe_[2][2];
  Tensor stripe_ws_, stripe_counters_;
  int64_t stripe_strips_ = 0;
  W4KernelChoice choice_;
  std::map<const void*, PackedW4Device> packed_;  // by the codes' device address
  struct Bias32Copy {
    std::weak_ptr<const void> owner;  // the bias upload
    Tensor f32;
  };
  std::map<const void*, Bias32Copy> bias32_;  // by the bias' device address
  Tensor scratch16_;
  int sms_ = 132;
};

}  // namespace kvcc::runtime
