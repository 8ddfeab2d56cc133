#include "runtime/cuda/cuda_w4_linear.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "codegen/kernel_cache.h"
#include "codegen/w4_kernels.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/op_operands.h"
#include "runtime/w4_repack.h"

namespace kvcc::runtime {

absl::StatusOr<std::shared_ptr<CudaW4Linear>> CudaW4Linear::Create(
    std::shared_ptr<CudaContext> ctx, codegen::KernelStore* store) {
  std::shared_ptr<CudaW4Linear> k(new CudaW4Linear(ctx));
  KVCC_ASSIGN_OR_RETURN(codegen::BuiltW4Kernels built,
                        codegen::BuildW4Kernels(ctx->target(), store));
  KVCC_ASSIGN_OR_RETURN(cudaLibrary_t library, ctx->LoadLibrary(built.compiled.cubin));
  for (auto [kernel, name] : {std::pair{&k->gemv_, "kvcc_w4_gemv"},
                              std::pair{&k->dequant_, "kvcc_w4_dequant_f16"}}) {
    KVCC_ASSIGN_OR_RETURN(kernel->fn, ctx->GetKernel(library, name));
    kernel->name = name;
  }
  for (int h = 0; h < 2; ++h) {
    for (int n = 0; n < 4; ++n) {
      const std::string name = absl::StrCat("kvcc_w4_mma_n", 1 << n, h ? "_h" : "");
      KVCC_ASSIGN_OR_RETURN(k->mma_[h][n].fn, ctx->GetKernel(library, name));
      k->mma_[h][n].name = name;
    }
  }
  for (auto [kernel, name] : {std::pair{&k->fill_, "kvcc_w4_fill"},
                              std::pair{&k->repack_, "kvcc_w4_repack"},
                              std::pair{&k->unpack_, "kvcc_w4_unpack_f16"}}) {
    KVCC_ASSIGN_OR_RETURN(kernel->fn, ctx->GetKernel(library, name));
    kernel->name = name;
  }
  static constexpr const char* kStreamSuffix[3] = {"", "_h", "_hz"};
  for (int h = 0; h < 3; ++h) {
    for (int n = 0; n < 2; ++n) {
      for (int si = 0; si < 2; ++si) {
        const std::string name =
            absl::StrCat("kvcc_w4_stream_n", 1 << n, "_s", 1 << si, kStreamSuffix[h]);
        TypedKernel<kernels::W4PackedParams>& kernel = k->stream_[h][n][si];
        KVCC_ASSIGN_OR_RETURN(kernel.fn, ctx->GetKernel(library, name));
        kernel.name = name;
      }
    }
  }
  for (int f = 0; f < 2; ++f) {
    for (int n = 0; n < 2; ++n) {
      const std::string name = absl::StrCat("kvcc_w4_stripe_n", 1 << n, f ? "_z" : "");
      KVCC_ASSIGN_OR_RETURN(k->stripe_[f][n].fn, ctx->GetKernel(library, name));
      k->stripe_[f][n].name = name;
    }
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx->device()) ==
          cudaSuccess &&
      sms > 0) {
    k->sms_ = sms;
  }
  return k;
}

absl::Status CudaW4Linear::Supports(const QuantizedWeight& w) {
  const int64_t in = w.codes->dim(1);
  if (w.scales->dtype() != ir::DType::kF16 || in % 8 != 0 || w.group_size % 8 != 0 ||
      w.codes->dim(0) > (int64_t{1} << 30) || in > (int64_t{1} << 30)) {
    return absl::UnimplementedError(absl::StrCat(
        "cuda backend: the 4-bit kernels need f16 scales and an input width and group size "
        "that are multiples of 8; got ", w.codes->ToString(), ", scales ", w.scales->ToString(),
        ", group_size ", w.group_size));
  }
  return absl::OkStatus();
}

kernels::W4LinearParams CudaW4Linear::Params(const QuantizedWeight& w) const {
  kernels::W4LinearParams p{};
  p.codes = static_cast<const unsigned char*>(w.codes->raw());
  p.scales = w.scales->raw();
  p.zeros = w.zeros != nullptr ? static_cast<const unsigned char*>(w.zeros->raw()) : nullptr;
  p.out = static_cast<int>(w.codes->dim(0));
  p.in = static_cast<int>(w.codes->dim(1));
  p.group_size = static_cast<int>(w.group_size);
  return p;
}

absl::Status CudaW4Linear::Gemv(const Tensor& x, const QuantizedWeight& w, const float* bias32,
                                Tensor* y) {
  kernels::W4LinearParams p = Params(w);
  p.x = x.data<float>();
  p.y = y->data<float>();
  p.bias = bias32;
  p.tokens = static_cast<int>(x.dim(0));
  const dim3 grid((p.out + codegen::kW4GemvRows - 1) / codegen::kW4GemvRows,
                  (p.tokens + codegen::kW4GemvTokens - 1) / codegen::kW4GemvTokens);
  return ctx_->Launch(gemv_, grid, dim3(codegen::kW4Threads), p);
}

absl::Status CudaW4Linear::Dequantize(const QuantizedWeight& w, Tensor* w16) {
  kernels::W4LinearParams p = Params(w);
  p.w16 = w16->raw();
  const int64_t chunks = int64_t{p.out} * (p.in / 8);
  const int64_t blocks =
      std::min<int64_t>((chunks + codegen::kW4Threads - 1) / codegen::kW4Threads, sms_ * 8);
  return ctx_->Launch(dequant_, dim3(static_cast<unsigned>(blocks)), dim3(codegen::kW4Threads), p);
}

kernels::W4PackedParams CudaW4Linear::PackedParams(const PackedW4Device& pw,
                                                   const QuantizedWeight& w) const {
  kernels::W4PackedParams p{};
  p.codes = static_cast<const unsigned*>(pw.codes.raw());
  p.sz = static_cast<const unsigned*>(pw.sz.raw());
  p.out = static_cast<int>(w.out());
  p.in = static_cast<int>(w.in());
  p.group_size = static_cast<int>(w.group_size);
  return p;
}

// Grid-stride launches: enough CTAs to fill the GPU, never more than the work.
static dim3 FlatGrid(int64_t work, int sms) {
  return dim3(static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((work + codegen::kW4Threads - 1) / codegen::kW4Threads,
                                             int64_t{sms} * 8))));
}

absl::StatusOr<const PackedW4Device*> CudaW4Linear::Packed(const QuantizedWeight& w) {
  if (w.packed) {
    return absl::InvalidArgumentError("w4 linear: the weight is packed already (use Adopt)");
  }
  if (!CheckW4Packable(w, "linear weight").ok()) return nullptr;
  const void* key = w.codes->raw();
  auto it = packed_.find(key);
  const auto& owner = w.codes->owner();
  // The entry holds only a weak reference: an upload that was freed (and whose address a new
  // one took) no longer matches its owner, so its stale copy is replaced.
  if (it != packed_.end() && !it->second.owner.expired() &&
      !it->second.owner.owner_before(owner) && !owner.owner_before(it->second.owner)) {
    return &it->second;
  }
  for (auto e = packed_.begin(); e != packed_.end();) {
    e = e->second.owner.expired() ? packed_.erase(e) : std::next(e);
  }
  PackedW4Device pw;
  pw.owner = owner;
  const int64_t out = w.codes->dim(0), in = w.codes->dim(1);
  KVCC_ASSIGN_OR_RETURN(pw.codes, AllocateDeviceTensor(ctx_, ir::DType::kI32, {out * in / 8}, false));
  KVCC_ASSIGN_OR_RETURN(pw.sz, AllocateDeviceTensor(ctx_, ir::DType::kI32,
                                                    {out * (in / w.group_size)}, false));
  kernels::W4PackedParams p = PackedParams(pw, w);
  p.src_codes = static_cast<const unsigned char*>(w.codes->raw());
  p.src_scales = w.scales->raw();
  p.src_zeros = w.zeros != nullptr ? static_cast<const unsigned char*>(w.zeros->raw()) : nullptr;
  KVCC_RETURN_IF_ERROR(
      ctx_->Launch(repack_, FlatGrid(out * in / 8, sms_), dim3(codegen::kW4Threads), p));
  PackedW4Device& slot = packed_[key];
  slot = std::move(pw);
  return &slot;
}

absl::Status CudaW4Linear::PackedLinear(const Tensor& x, const PackedW4Device& pw,
                                        const QuantizedWeight& w, const float* bias32,
                                        Tensor* y) {
  kernels::W4PackedParams p = PackedParams(pw, w);
  p.x = static_cast<const float*>(x.raw());
  p.y = static_cast<float*>(y->raw());
  p.bias = bias32;
  p.tokens = static_cast<int>(x.dim(0));
  const bool x_f16 = x.dtype() == ir::DType::kF16;
  const bool stream = Streams(p.tokens, p.group_size);
  if (choice_.path == W4KernelChoice::kStream && !stream) {
    return absl::InvalidArgumentError(absl::StrCat(
        "w4 linear: the stream kernels take up to ", kW4StreamMaxTokens,
        " tokens and group sizes that are multiples of 64; got ", p.tokens, " tokens, group ",
        p.group_size));
  }
  const ir::DType y_dtype = stream ? x.dtype() : ir::DType::kF32;
  if ((!x_f16 && x.dtype() != ir::DType::kF32) || y->dtype() != y_dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        "w4 linear: activations must be f32 or f16 and the output ", ir::DTypeName(y_dtype),
        " (", stream ? "stream kernels: the input's dtype" : "mma kernels: f32", "); got ",
        x.ToString(), " and ", y->ToString()));
  }
  if (choice_.path == W4KernelChoice::kStripe && !Stripes(p.tokens, p.group_size, x_f16)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "w4 linear: the stripe kernels take up to ", kW4StripeMaxTokens,
        " tokens of f16 activations and group sizes that are multiples of 64; got ", p.tokens,
        " tokens of ", x.ToString(), ", group ", p.group_size));
  }
  if (Stripes(p.tokens, p.group_size, x_f16)) return StripeLinear(p);
  if (stream) return StreamLinear(p, x_f16);
  return MmaLinear(p, x_f16);
}

bool CudaW4Linear::Stripes(int64_t tokens, int64_t group_size, bool x_f16) const {
  // Only when asked for: on the H200 the stream kernels took 62-84% of the stripe kernels' time
  // at every 7B shape and batch 1-16 (docs/performance.md, "W4A16 stripe kernels").
  return x_f16 && tokens <= kW4StripeMaxTokens && group_size % KVCC_W4_CHUNK == 0 &&
         choice_.path == W4KernelChoice::kStripe;
}

absl::Status CudaW4Linear::StripeLinear(kernels::W4PackedParams p) {
  const int64_t strips = p.out / KVCC_W4_STRIP;
  const int64_t units = strips * (p.in / KVCC_W4_CHUNK);
  const int per_sm = choice_.ctas_per_sm == 0 ? 4 : choice_.ctas_per_sm;
  if (per_sm < 1 || per_sm > 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "w4 linear: the stripe kernels run 1 to 4 CTAs per SM; got ", choice_.ctas_per_sm));
  }
  if (stripe_strips_ < strips) {
    // Sized for every layer of a 7B-13B model at once, so that a CUDA graph captured after the
    // first layers ran never sees the buffer move; zeroed once, the kernels keep it zero.
    const int64_t n = std::max<int64_t>(strips, 4096);
    stripe_ws_ = Tensor();
    stripe_counters_ = Tensor();
    KVCC_ASSIGN_OR_RETURN(stripe_ws_, AllocateDeviceTensor(ctx_, ir::DType::kF32, {n * 32 * 8}, true));
    KVCC_ASSIGN_OR_RETURN(stripe_counters_, AllocateDeviceTensor(ctx_, ir::DType::kI32, {n}, true));
    stripe_strips_ = n;
  }
  p.ws = static_cast<float*>(stripe_ws_.raw());
  p.counters = static_cast<unsigned*>(stripe_counters_.raw());
  // Equal stripes of the unit run for every warp the launch keeps resident, never more warps
  // than units.
  const int64_t warps = std::min<int64_t>(units, int64_t{sms_} * per_sm * KVCC_W4_STRIPE_WARPS);
  p.warps = static_cast<int>(warps);
  const dim3 grid(static_cast<unsigned>((warps + KVCC_W4_STRIPE_WARPS - 1) / KVCC_W4_STRIPE_WARPS));
  const int n = p.tokens <= 8 ? 0 : 1;
  return ctx_->Launch(stripe_[choice_.fold ? 1 : 0][n], grid, dim3(KVCC_W4_STRIPE_WARPS * 32), p);
}

absl::Status CudaW4Linear::StreamLinear(kernels::W4PackedParams p, bool x_f16) {
  const int n = p.tokens <= 8 ? 0 : 1;
  const int64_t strips = p.out / KVCC_W4_STRIP;
  const int64_t tiles = (p.tokens + (8 << n) - 1) / (8 << n);
  int s = choice_.strips;
  if (s == 0) {
    // Whole strips per CTA and no split-K: the grid is out / (16 S) CTAs per token tile, two
    // resident per SM. Two strips per CTA share every activation fragment, scale flush and
    // address update, which the H200 sweep (docs/awq.md) found faster at every shape from 8
    // tokens on, and at every batch where out / 32 CTAs still cover the SMs; below 5 tokens a
    // layer of fewer than 2 x SMs strips (4096 outputs) ran as fast or faster with one.
    s = p.tokens <= 4 && strips < 2 * int64_t{sms_} ? 1 : 2;
  }
  if (s != 1 && s != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("w4 linear: the stream kernels take 1 or 2 strips per CTA; got ", s));
  }
  const int si = s - 1;
  const dim3 grid(static_cast<unsigned>((strips + s - 1) / s * tiles));
  const int variant = x_f16 ? (choice_.fold ? 2 : 1) : 0;
  return ctx_->Launch(stream_[variant][n][si], grid, dim3(codegen::kW4Threads), p);
}

absl::Status CudaW4Linear::MmaLinear(kernels::W4PackedParams p, bool x_f16) {
  // Token tiles of 8, 16, 32 or 64; each warp takes 16 output rows (more strips per warp as the
  // token tile grows, so a CTA's activations serve more rows), and the input dimension is split
  // until the GPU has about two CTAs per SM.
  const int slot = p.tokens <= 8 ? 0 : p.tokens <= 16 ? 1 : p.tokens <= 32 ? 2 : 3;
  const int tile_tokens = 8 << slot;
  const int max_k = KVCC_W4_X_BYTES / (tile_tokens * 2);
  static constexpr int kStripsPerWarp[4] = {1, 2, 2, 4};
  p.strips_per_warp = kStripsPerWarp[slot];
  const int64_t strips = p.out / 16;
  const int64_t cta_x = (strips + 8 * p.strips_per_warp - 1) / (8 * p.strips_per_warp);
  const int64_t cta_y = (p.tokens + tile_tokens - 1) / tile_tokens;
  const int64_t want = (2 * int64_t{sms_} + cta_x * cta_y - 1) / (cta_x * cta_y);
  int64_t k_split = (p.in + want - 1) / want;
  k_split = (k_split + 63) / 64 * 64;
  k_split = std::max<int64_t>(256, std::min<int64_t>(k_split, max_k));
  k_split = std::min<int64_t>(k_split, p.in);
  p.k_split = static_cast<int>(k_split);
  const int64_t splits = (p.in + k_split - 1) / k_split;
  if (splits > 1) {
    KVCC_RETURN_IF_ERROR(ctx_->Launch(fill_, FlatGrid(int64_t{p.tokens} * p.out, sms_),
                                      dim3(codegen::kW4Threads), p));
  }
  const dim3 grid(static_cast<unsigned>(cta_x), static_cast<unsigned>(cta_y),
                  static_cast<unsigned>(splits));
  return ctx_->Launch(mma_[x_f16 ? 1 : 0][slot], grid, dim3(codegen::kW4Threads), p);
}

absl::StatusOr<Tensor> CudaW4Linear::Unpack(const PackedW4Device& pw, const QuantizedWeight& w) {
  const int64_t out = w.out(), in = w.in();
  if (scratch16_.raw() == nullptr || scratch16_.NumElements() < out * in) {
    scratch16_ = Tensor();
    KVCC_ASSIGN_OR_RETURN(scratch16_, AllocateDeviceTensor(ctx_, ir::DType::kF16, {out * in}, false));
  }
  kernels::W4PackedParams p = PackedParams(pw, w);
  p.w16 = scratch16_.raw();
  KVCC_RETURN_IF_ERROR(
      ctx_->Launch(unpack_, FlatGrid(out * in / 8, sms_), dim3(codegen::kW4Threads), p));
  return Tensor::View(ir::DType::kF16, {out, in}, Device::kCuda, scratch16_.raw(),
                      scratch16_.owner());
}

absl::StatusOr<const float*> CudaW4Linear::Bias32(
    const Tensor& bias, const std::function<absl::StatusOr<Tensor>()>& cast) {
  if (bias.dtype() == ir::DType::kF32) return bias.data<float>();
  const auto& owner = bias.owner();
  auto it = bias32_.find(bias.raw());
  if (it != bias32_.end() && !it->second.owner.expired() &&
      !it->second.owner.owner_before(owner) && !owner.owner_before(it->second.owner)) {
    return it->second.f32.data<float>();
  }
  for (auto e = bias32_.begin(); e != bias32_.end();) {
    e = e->second.owner.expired() ? bias32_.erase(e) : std::next(e);
  }
  KVCC_ASSIGN_OR_RETURN(Tensor f32, cast());
  Bias32Copy& slot = bias32_[bias.raw()];
  slot.owner = owner;
  slot.f32 = std::move(f32);
  return slot.f32.data<float>();
}

PackedW4Device CudaW4Linear::Adopt(const QuantizedWeight& w) {
  PackedW4Device pw;
  pw.codes = *w.codes;
  pw.sz = *w.scales;
  return pw;
}

// The backend's entry point lives here so cuda_backend.cc only declares it.
absl::StatusOr<Tensor> CudaBackend::QuantizedLinear(const Tensor& x, const QuantizedWeight& w,
                                                    const Tensor* bias) {
  KVCC_RETURN_IF_ERROR(CheckOpActivation(x, Device::kCuda, "linear input"));
  KVCC_RETURN_IF_ERROR(CheckQuantizedWeight(x, w, Device::kCuda));
  if (!w.packed) KVCC_RETURN_IF_ERROR(CudaW4Linear::Supports(w));
  const int64_t tokens = x.dim(0), out = w.out(), in = x.dim(1);
  if (bias != nullptr) {
    KVCC_RETURN_IF_ERROR(CheckWeight(*bias, Device::kCuda, "linear bias"));
    if (bias->NumElements() != out) {
      return absl::InvalidArgumentError(absl::StrCat("linear: bias ", bias->ToString(),
                                                     " must have ", out, " elements"));
    }
  }
  if (w4_ == nullptr) {
    KVCC_ASSIGN_OR_RETURN(w4_, CudaW4Linear::Create(ctx_, kernels_.store.get()));
  }
  // A compiled artifact's weight is packed already and read straight from its upload; a
  // checkpoint's is repacked on its first call (null when the layout cannot hold it).
  PackedW4Device adopted;
  const PackedW4Device* packed = nullptr;
  if (w.packed) {
    adopted = CudaW4Linear::Adopt(w);
    packed = &adopted;
  } else {
    KVCC_ASSIGN_OR_RETURN(packed, w4_->Packed(w));
  }
  if (packed != nullptr && tokens > kW4MmaMaxTokens) {
    // Prefill: the GEMM is compute-bound, so the f16 weight (unpacked into scratch) and the
    // tuned cuBLASLt kernel beat a dequantizing mma loop.
    KVCC_ASSIGN_OR_RETURN(Tensor w16, w4_->Unpack(*packed, w));
    return Linear(x, w16, bias);
  }
  if (packed == nullptr && tokens > kW4GemvMaxTokens) {
    // Prefill and large batches: f16 weight for the tensor cores, freed after the GEMM.
    KVCC_ASSIGN_OR_RETURN(auto w16, AllocateDeviceTensor(ctx_, ir::DType::kF16, {out, in}, false));
    KVCC_RETURN_IF_ERROR(w4_->Dequantize(w, &w16));
    return Linear(x, w16, bias);
  }
  const float* b32 = nullptr;
  if (bias != nullptr) {
    KVCC_ASSIGN_OR_RETURN(b32, w4_->Bias32(*bias, [&] { return Cast(*bias, ir::DType::kF32); }));
  }
  // With half activations the result is f16 like the f16 GEMMs'. The packed kernels read f16
  // activations; the stream kernels also write f16, the mma kernels (split-K: they accumulate
  // into f32) f32, cast after; the plain GEMV takes f32 around casts.
  const ir::DType io = half_ ? ir::DType::kF16 : ir::DType::kF32;
  const ir::DType x_dtype = packed != nullptr ? io : ir::DType::kF32;
  const ir::DType y_dtype =
      packed != nullptr && w4_->Streams(tokens, w.group_size) ? io : ir::DType::kF32;
  Tensor xk = x;
  if (x.dtype() != x_dtype) {
    KVCC_ASSIGN_OR_RETURN(xk, Cast(x, x_dtype));
  }
  KVCC_ASSIGN_OR_RETURN(auto y, AllocateDeviceTensor(ctx_, y_dtype, {tokens, out}, false));
  if (packed != nullptr) {
    KVCC_RETURN_IF_ERROR(w4_->PackedLinear(xk, *packed, w, b32, &y));
  } else {
    KVCC_RETURN_IF_ERROR(w4_->Gemv(xk, w, b32, &y));
  }
  if (y.dtype() != io) return Cast(y, io);
  return y;
}

}  // namespace kvcc::runtime
