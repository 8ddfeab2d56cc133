// The W4A16 GPU linear (runtime/cuda/cuda_w4_linear, codegen/w4_stripe.cuh, w4_stream.cuh,
// w4_mma.cuh, w4_gemv.cuh) against the CPU backend's exact dequantize-then-matmul: the GPU
// repack against the host's (runtime/w4_repack.h), the packed tensor-core linears at every token
// tile (1..64 tokens; the stripe kernels at 1..16 with strips whole in one warp and split
// between many, so their workspace must come back to zero between calls; split-K mma) and the
// packed unpack + GEMM of prefill, group sizes 16..1024, biases, no
// zeros; the packed weights of a compiled artifact adopted as uploaded, with f32 and f16
// activations; shapes the packed layout cannot hold on the plain-layout GEMV (f32 activations,
// so within f32 rounding) and dequantize + GEMM; and a whole AWQ model's logits on both
// backends, plain and packed.
// The NVRTC compile runs without a GPU; everything else skips there.
#include "runtime/cuda/cuda_w4_linear.h"

#include <cmath>
#include <cstring>
#include <random>

#include "codegen/w4_kernels.h"
#include "frontend/model_loader.h"
#include "gtest/gtest.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "runtime/cpu_backend.h"
#include "runtime/engine.h"
#include "runtime/cuda/cuda_backend.h"
#include "pipeline/w4_packing.h"
#include "runtime/w4_repack.h"
#include "tests/awq_checkpoint.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/cuda_fixture.h"
#include "tests/gpu_skip.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

// Every backend of this process compiles into its own kernel cache, never a warm one.
const std::string& kKernelCacheDir = testing::FreshKernelCacheDir();

TEST(CudaW4LinearTest, KernelsCompileForHopperAndAmpere) {
  for (codegen::GpuTarget t : {codegen::GpuTarget{90, true}, codegen::GpuTarget{80, false}}) {
    KVCC_ASSERT_OK_AND_ASSIGN(src, codegen::RenderW4Kernels(t));
    const std::string arch = absl::StrCat("sm_", t.arch, t.arch_specific ? "a" : "");
    KVCC_ASSERT_OK_AND_ASSIGN(built, codegen::CompileCuda("w4.cu", src, "kvcc_w4_gemv", arch));
    EXPECT_FALSE(built.cubin.empty()) << arch;
    // Every entry point is in the program, none spills (the mma kernels keep their f32
    // accumulators and fragments in registers).
    for (const std::string& name : codegen::W4KernelNames()) {
      EXPECT_NE(built.log.find(absl::StrCat("entry function '", name, "'")), std::string::npos)
          << name;
    }
    size_t reports = 0, clean = 0;
    for (size_t at = 0; (at = built.log.find("bytes spill stores", at)) != std::string::npos; ++at) {
      ++reports;
    }
    for (size_t at = 0; (at = built.log.find(" 0 bytes spill stores, 0 bytes spill loads", at)) !=
                        std::string::npos;
         ++at) {
      ++clean;
    }
    EXPECT_EQ(reports, codegen::W4KernelNames().size()) << built.log;
    EXPECT_EQ(clean, reports) << built.log;
  }
  EXPECT_FALSE(codegen::RenderW4Kernels(codegen::GpuTarget{75, false}).ok());
}

// Host tensors of a random 4-bit linear.
struct HostW4 {
  Tensor codes, scales, zeros, bias;
};

HostW4 RandomW4(int64_t out, int64_t in, int64_t group, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t groups = in / group;
  HostW4 h;
  h.codes = Tensor::HostZeros(ir::DType::kI4, {out, in});
  h.zeros = Tensor::HostZeros(ir::DType::kI4, {out, groups});
  h.scales = Tensor::HostZeros(ir::DType::kF16, {out, groups});
  h.bias = Tensor::HostZeros(ir::DType::kF16, {out});
  auto* c = static_cast<uint8_t*>(h.codes.raw());
  auto* z = static_cast<uint8_t*>(h.zeros.raw());
  auto* s = static_cast<uint16_t*>(h.scales.raw());
  auto* b = static_cast<uint16_t*>(h.bias.raw());
  for (int64_t i = 0; i < out * in; ++i) ir::SetI4(c, i, int(rng() % 16) - 8);
  for (int64_t i = 0; i < out * groups; ++i) {
    ir::SetI4(z, i, int(rng() % 16) - 8);
    s[i] = ir::FloatToHalf(0.002f * (1 + rng() % 16));
  }
  for (int64_t o = 0; o < out; ++o) b[o] = ir::FloatToHalf(0.01f * (int(rng() % 21) - 10));
  return h;
}

class CudaW4Test : public kvcc::testing::CudaBackendTest {
 protected:
  CpuBackend cpu_{2};
};

TEST_F(CudaW4Test, MatchesTheCpuBackend) {
  struct Case {
    int64_t out, in, group, tokens;
    bool zeros, bias;
  };
  const Case cases[] = {
      // Packed: mma_n1, n2, n4, n8 (split-K over 4096 and 11008 inputs), prefill unpack.
      {256, 512, 128, 1, true, false},   {64, 4096, 128, 16, true, false},
      {512, 256, 32, 8, false, true},    {96, 512, 128, 17, true, true},
      {128, 1024, 64, 64, true, false},  {4096, 4096, 128, 1, true, true},
      {256, 11008, 128, 5, true, false}, {48, 11008, 64, 12, true, true},
      {1024, 4096, 32, 32, true, false}, {160, 4096, 128, 40, false, false},
      {272, 2048, 16, 3, true, true},    {256, 4096, 128, 130, true, true},
      {64, 640, 64, 2048, true, false},
      // Plain layout: out not a multiple of 16, in not of 64, group not of 16, group 96 (a
      // 64-input chunk would straddle two groups).
      {136, 384, 64, 3, true, true},     {24, 192, 64, 7, true, false},
      {64, 96, 32, 2, true, true},       {32, 192, 24, 4, true, false},
      {136, 384, 64, 33, true, true},    {32, 384, 96, 5, true, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.out, "x", c.in, " g", c.group, " T", c.tokens));
    HostW4 h = RandomW4(c.out, c.in, c.group, static_cast<uint32_t>(c.out + c.in + c.tokens));
    Tensor x = Tensor::HostZeros(ir::DType::kF32, {c.tokens, c.in});
    std::mt19937 rng(9);
    std::normal_distribution<float> nd;
    for (int64_t i = 0; i < c.tokens * c.in; ++i) x.data<float>()[i] = nd(rng);
    QuantizedWeight hw{&h.codes, &h.scales, c.zeros ? &h.zeros : nullptr, c.group};
    const bool packed = CheckW4Packable(hw, "w").ok();
    KVCC_ASSERT_OK_AND_ASSIGN(want, cpu_.QuantizedLinear(x, hw, c.bias ? &h.bias : nullptr));
    KVCC_ASSERT_OK_AND_ASSIGN(dc, gpu_->FromHost(h.codes));
    KVCC_ASSERT_OK_AND_ASSIGN(ds, gpu_->FromHost(h.scales));
    KVCC_ASSERT_OK_AND_ASSIGN(dz, gpu_->FromHost(h.zeros));
    KVCC_ASSERT_OK_AND_ASSIGN(db, gpu_->FromHost(h.bias));
    KVCC_ASSERT_OK_AND_ASSIGN(dx, gpu_->FromHost(x));
    QuantizedWeight dw{&dc, &ds, c.zeros ? &dz : nullptr, c.group};
    KVCC_ASSERT_OK_AND_ASSIGN(dy, gpu_->QuantizedLinear(dx, dw, c.bias ? &db : nullptr));
    KVCC_ASSERT_OK_AND_ASSIGN(got, gpu_->ToHost(dy));
    ASSERT_EQ(got.shape(), want.shape());
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < want.NumElements(); ++i) {
      worst = std::max(worst, std::fabs(double{got.data<float>()[i]} - want.data<float>()[i]));
      scale = std::max(scale, std::fabs(double{want.data<float>()[i]}));
    }
    // The plain GEMV keeps f32 activations; the tensor cores and the f16 GEMM round them (and
    // the packed dequantization rounds (q - z) * s) to f16.
    EXPECT_LE(worst / scale, !packed && c.tokens <= kW4GemvMaxTokens ? 1e-5 : 3e-3);
  }
}

// Every packed kernel forced in turn (the stream kernels at 1 and 2 strips per CTA with f32
// and f16 activations, one token tile or several, and the split-K mma kernels) against the CPU: uneven chunk ranges per
// warp (11008 inputs), warps without chunks (64 inputs), tail CTAs (3 strips), groups of 64,
// 128, 192 and the whole row.
TEST_F(CudaW4Test, EveryPackedKernelMatchesTheCpuBackend) {
  struct Case {
    int64_t out, in, group;
    bool zeros, bias;
  };
  const Case cases[] = {{256, 4096, 128, true, true},  {48, 11008, 128, true, false},
                        {80, 640, 64, false, true},    {32, 64, 64, true, true},
                        {112, 768, 192, true, false},  {64, 1024, 1024, true, true}};
  KVCC_ASSERT_OK_AND_ASSIGN(w4, CudaW4Linear::Create(gpu_->context(), nullptr));
  for (const Case& c : cases) {
    HostW4 h = RandomW4(c.out, c.in, c.group, static_cast<uint32_t>(3 * c.out + c.in));
    QuantizedWeight hw{&h.codes, &h.scales, c.zeros ? &h.zeros : nullptr, c.group};
    ASSERT_TRUE(CheckW4Packable(hw, "w").ok());
    KVCC_ASSERT_OK_AND_ASSIGN(dc, gpu_->FromHost(h.codes));
    KVCC_ASSERT_OK_AND_ASSIGN(ds, gpu_->FromHost(h.scales));
    KVCC_ASSERT_OK_AND_ASSIGN(dz, gpu_->FromHost(h.zeros));
    Tensor bias32 = Tensor::HostZeros(ir::DType::kF32, {c.out});
    for (int64_t o = 0; o < c.out; ++o) {
      bias32.data<float>()[o] = ir::HalfToFloat(static_cast<uint16_t*>(h.bias.raw())[o]);
    }
    KVCC_ASSERT_OK_AND_ASSIGN(db, gpu_->FromHost(bias32));
    QuantizedWeight dw{&dc, &ds, c.zeros ? &dz : nullptr, c.group};
    KVCC_ASSERT_OK_AND_ASSIGN(pw, w4->Packed(dw));
    ASSERT_NE(pw, nullptr);
    for (int64_t tokens : {1, 3, 8, 9, 16, 17, 40, 64}) {
      Tensor x = Tensor::HostZeros(ir::DType::kF32, {tokens, c.in});
      std::mt19937 rng(static_cast<uint32_t>(tokens * 7 + c.in));
      std::normal_distribution<float> nd;
      for (int64_t i = 0; i < tokens * c.in; ++i) x.data<float>()[i] = nd(rng);
      KVCC_ASSERT_OK_AND_ASSIGN(want, cpu_.QuantizedLinear(x, hw, c.bias ? &h.bias : nullptr));
      KVCC_ASSERT_OK_AND_ASSIGN(dx, gpu_->FromHost(x));
      KVCC_ASSERT_OK_AND_ASSIGN(dx16, gpu_->Cast(dx, ir::DType::kF16));
      struct Run {
        W4KernelChoice choice;
        bool f16;
      };
      std::vector<Run> runs = {{{W4KernelChoice::kMma, 0}, false}, {{W4KernelChoice::kMma, 0}, true}};
      for (bool f16 : {false, true}) {
        for (int s : {1, 2}) {
          runs.push_back({{W4KernelChoice::kStream, s, false}, f16});
          if (f16) runs.push_back({{W4KernelChoice::kStream, s, true}, f16});
        }
        runs.push_back({{W4KernelChoice::kAuto, 0}, f16});
      }
      if (tokens <= kW4StripeMaxTokens && c.group % 64 == 0) {
        // The stripe kernels, zero subtracted and folded, with every SM's 4 CTAs (the small
        // shapes then split each strip between several warps: the ws / counter path) and with
        // one CTA per SM (longer stripes, some strips whole in one warp).
        for (bool fold : {false, true}) {
          for (int per_sm : {0, 1}) {
            runs.push_back({{W4KernelChoice::kStripe, 0, fold, per_sm}, true});
          }
        }
      }
      for (const Run& r : runs) {
        SCOPED_TRACE(absl::StrCat(c.out, "x", c.in, " g", c.group, " T", tokens, " path ",
                                  r.choice.path, " strips ", r.choice.strips, " per SM ",
                                  r.choice.ctas_per_sm,
                                  r.choice.fold ? " folded" : "", r.f16 ? " f16" : " f32"));
        // f16 activations in: f16 out from the stream kernels (a half-activation model's), f32
        // from the split-K mma kernels; f32 in, f32 out.
        w4->set_choice(r.choice);
        const bool f16_out = r.f16 && w4->Streams(tokens, c.group);
        KVCC_ASSERT_OK_AND_ASSIGN(
            dy, gpu_->Allocate(f16_out ? ir::DType::kF16 : ir::DType::kF32, {tokens, c.out}));
        KVCC_ASSERT_OK(gpu_->FillNormal(dy, 1, 100.0f, 1.0f));  // garbage the kernel must overwrite
        KVCC_ASSERT_OK(w4->PackedLinear(r.f16 ? dx16 : dx, *pw, dw,
                                        c.bias ? db.data<float>() : nullptr, &dy));
        KVCC_ASSERT_OK_AND_ASSIGN(dy32, gpu_->Cast(dy, ir::DType::kF32));
        KVCC_ASSERT_OK_AND_ASSIGN(got, gpu_->ToHost(dy32));
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < want.NumElements(); ++i) {
          worst = std::max(worst, std::fabs(double{got.data<float>()[i]} - want.data<float>()[i]));
          scale = std::max(scale, std::fabs(double{want.data<float>()[i]}));
        }
        // f16 activations (rounded by the kernel or beforehand); the mma path also rounds the
        // dequantized weight to f16.
        EXPECT_LE(worst / scale, 3e-3);
      }
    }
  }
  w4->set_choice({});
  // Refusals: an f16 output where only the mma kernels fit (they write f32), strips the
  // kernels lack, an f32 output of the f16 stream kernels.
  HostW4 h = RandomW4(64, 256, 32, 2);
  KVCC_ASSERT_OK_AND_ASSIGN(dc, gpu_->FromHost(h.codes));
  KVCC_ASSERT_OK_AND_ASSIGN(ds, gpu_->FromHost(h.scales));
  QuantizedWeight dw{&dc, &ds, nullptr, 32};
  KVCC_ASSERT_OK_AND_ASSIGN(pw, w4->Packed(dw));
  ASSERT_NE(pw, nullptr);
  KVCC_ASSERT_OK_AND_ASSIGN(x16, gpu_->Allocate(ir::DType::kF16, {2, 256}));
  KVCC_ASSERT_OK_AND_ASSIGN(dy16, gpu_->Allocate(ir::DType::kF16, {2, 64}));
  KVCC_ASSERT_OK_AND_ASSIGN(dy, gpu_->Allocate(ir::DType::kF32, {2, 64}));
  EXPECT_FALSE(w4->PackedLinear(x16, *pw, dw, nullptr, &dy16).ok());
  KVCC_ASSERT_OK(w4->PackedLinear(x16, *pw, dw, nullptr, &dy));
  w4->set_choice({W4KernelChoice::kStream, 1});
  EXPECT_FALSE(w4->PackedLinear(x16, *pw, dw, nullptr, &dy16).ok());  // group 32
  w4->set_choice({W4KernelChoice::kStream, 4});
  KVCC_ASSERT_OK_AND_ASSIGN(x32, gpu_->Allocate(ir::DType::kF32, {2, 256}));
  HostW4 h128 = RandomW4(64, 256, 128, 2);
  KVCC_ASSERT_OK_AND_ASSIGN(dc128, gpu_->FromHost(h128.codes));
  KVCC_ASSERT_OK_AND_ASSIGN(ds128, gpu_->FromHost(h128.scales));
  QuantizedWeight dw128{&dc128, &ds128, nullptr, 128};
  KVCC_ASSERT_OK_AND_ASSIGN(pw128, w4->Packed(dw128));
  ASSERT_NE(pw128, nullptr);
  EXPECT_FALSE(w4->PackedLinear(x32, *pw128, dw128, nullptr, &dy).ok());  // no 4-strip kernel
  w4->set_choice({W4KernelChoice::kStream, 1});
  KVCC_ASSERT_OK(w4->PackedLinear(x32, *pw128, dw128, nullptr, &dy));
  KVCC_ASSERT_OK_AND_ASSIGN(x16b, gpu_->Allocate(ir::DType::kF16, {2, 256}));
  EXPECT_FALSE(w4->PackedLinear(x16b, *pw128, dw128, nullptr, &dy).ok());  // f16 in, f32 out
  // The stripe kernels: f16 activations only, up to 16 tokens, 1 to 4 CTAs per SM.
  w4->set_choice({W4KernelChoice::kStripe});
  KVCC_ASSERT_OK_AND_ASSIGN(dy16b, gpu_->Allocate(ir::DType::kF16, {2, 64}));
  EXPECT_FALSE(w4->PackedLinear(x32, *pw128, dw128, nullptr, &dy).ok());
  KVCC_ASSERT_OK(w4->PackedLinear(x16b, *pw128, dw128, nullptr, &dy16b));
  KVCC_ASSERT_OK_AND_ASSIGN(x16c, gpu_->Allocate(ir::DType::kF16, {17, 256}));
  KVCC_ASSERT_OK_AND_ASSIGN(dy16c, gpu_->Allocate(ir::DType::kF16, {17, 64}));
  EXPECT_FALSE(w4->PackedLinear(x16c, *pw128, dw128, nullptr, &dy16c).ok());
  w4->set_choice({W4KernelChoice::kStripe, 0, true, 5});
  EXPECT_FALSE(w4->PackedLinear(x16b, *pw128, dw128, nullptr, &dy16b).ok());
  w4->set_choice({});
}

TEST_F(CudaW4Test, RepackMatchesTheHostPacking) {
  KVCC_ASSERT_OK_AND_ASSIGN(w4, CudaW4Linear::Create(gpu_->context(), nullptr));
  for (bool zeros : {true, false}) {
    HostW4 h = RandomW4(48, 320, 32, zeros ? 3u : 4u);
    QuantizedWeight hw{&h.codes, &h.scales, zeros ? &h.zeros : nullptr, 32};
    KVCC_ASSERT_OK_AND_ASSIGN(want, PackW4(hw, "w"));
    KVCC_ASSERT_OK_AND_ASSIGN(dc, gpu_->FromHost(h.codes));
    KVCC_ASSERT_OK_AND_ASSIGN(ds, gpu_->FromHost(h.scales));
    KVCC_ASSERT_OK_AND_ASSIGN(dz, gpu_->FromHost(h.zeros));
    QuantizedWeight dw{&dc, &ds, zeros ? &dz : nullptr, 32};
    KVCC_ASSERT_OK_AND_ASSIGN(pw, w4->Packed(dw));
    ASSERT_NE(pw, nullptr);
    KVCC_ASSERT_OK_AND_ASSIGN(codes, gpu_->ToHost(pw->codes));
    KVCC_ASSERT_OK_AND_ASSIGN(sz, gpu_->ToHost(pw->sz));
    ASSERT_EQ(static_cast<size_t>(codes.NumElements()), want.codes.size());
    ASSERT_EQ(static_cast<size_t>(sz.NumElements()), want.sz.size());
    EXPECT_EQ(0, std::memcmp(codes.raw(), want.codes.data(), want.codes.size() * 4));
    EXPECT_EQ(0, std::memcmp(sz.raw(), want.sz.data(), want.sz.size() * 4));
    // A second call reuses the copy.
    KVCC_ASSERT_OK_AND_ASSIGN(again, w4->Packed(dw));
    EXPECT_EQ(again, pw);
  }
}

TEST_F(CudaW4Test, RefusesWhatTheKernelsCannotRead) {
  HostW4 h = RandomW4(16, 36, 18, 1);  // group 18: not a multiple of 8
  Tensor x = Tensor::HostZeros(ir::DType::kF32, {1, 36});
  KVCC_ASSERT_OK_AND_ASSIGN(dc, gpu_->FromHost(h.codes));
  KVCC_ASSERT_OK_AND_ASSIGN(ds, gpu_->FromHost(h.scales));
  KVCC_ASSERT_OK_AND_ASSIGN(dx, gpu_->FromHost(x));
  QuantizedWeight dw{&dc, &ds, nullptr, 18};
  auto y = gpu_->QuantizedLinear(dx, dw, nullptr);
  ASSERT_FALSE(y.ok());
  EXPECT_EQ(y.status().code(), absl::StatusCode::kUnimplemented) << y.status();
}

// A compiled artifact's packed weights (pipeline/w4_packing.h) uploaded as they are: every
// path of CudaBackend::QuantizedLinear (stream kernels at group 128, split-K mma at group 32,
// the unpack + GEMM of prefill) with f32 activations and with half activations (f16 in and
// out) against the CPU's linear on the same words.
TEST_F(CudaW4Test, AdoptedPackedWeightsMatchTheCpuInF32AndF16) {
  for (int64_t group : {128, 32}) {
    const int64_t out = 256, in = 1024;
    HostW4 h = RandomW4(out, in, group, static_cast<uint32_t>(group));
    QuantizedWeight hw{&h.codes, &h.scales, &h.zeros, group};
    KVCC_ASSERT_OK_AND_ASSIGN(p, PackW4(hw, "w"));
    Tensor words = Tensor::HostZeros(ir::DType::kI32, {out, in / 8});
    Tensor sz = Tensor::HostZeros(ir::DType::kI32, {out, in / group});
    std::memcpy(words.raw(), p.codes.data(), p.codes.size() * 4);
    std::memcpy(sz.raw(), p.sz.data(), p.sz.size() * 4);
    QuantizedWeight host_packed{&words, &sz, nullptr, group, true};
    KVCC_ASSERT_OK_AND_ASSIGN(dwords, gpu_->FromHost(words));
    KVCC_ASSERT_OK_AND_ASSIGN(dsz, gpu_->FromHost(sz));
    KVCC_ASSERT_OK_AND_ASSIGN(dbias, gpu_->FromHost(h.bias));
    QuantizedWeight dw{&dwords, &dsz, nullptr, group, true};
    for (bool half : {false, true}) {
      gpu_->SetHalfActivations(half);
      for (int64_t tokens : {1, 8, 17, 64, 100}) {
        SCOPED_TRACE(absl::StrCat("g", group, " T", tokens, half ? " f16" : " f32"));
        Tensor x = Tensor::HostZeros(ir::DType::kF32, {tokens, in});
        std::mt19937 rng(static_cast<uint32_t>(tokens + group));
        std::normal_distribution<float> nd;
        for (int64_t i = 0; i < tokens * in; ++i) x.data<float>()[i] = nd(rng);
        KVCC_ASSERT_OK_AND_ASSIGN(want, cpu_.QuantizedLinear(x, host_packed, &h.bias));
        KVCC_ASSERT_OK_AND_ASSIGN(dx32, gpu_->FromHost(x));
        Tensor dx = dx32;
        if (half) {
          KVCC_ASSERT_OK_AND_ASSIGN(dx16, gpu_->Cast(dx32, ir::DType::kF16));
          dx = dx16;
        }
        KVCC_ASSERT_OK_AND_ASSIGN(dy, gpu_->QuantizedLinear(dx, dw, &dbias));
        EXPECT_EQ(dy.dtype(), half ? ir::DType::kF16 : ir::DType::kF32);
        KVCC_ASSERT_OK_AND_ASSIGN(dy32, gpu_->ToF32(dy));
        KVCC_ASSERT_OK_AND_ASSIGN(got, gpu_->ToHost(dy32));
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < want.NumElements(); ++i) {
          worst = std::max(worst, std::fabs(double{got.data<float>()[i]} - want.data<float>()[i]));
          scale = std::max(scale, std::fabs(double{want.data<float>()[i]}));
        }
        EXPECT_LE(worst / scale, 4e-3);
      }
    }
  }
  gpu_->SetHalfActivations(false);
}

// A whole AWQ model on both backends: the checkpoint's plain weights with f32 activations on
// the GPU, and the packed weights `kvcc compile` stores with the half activations models run
// with, each against the CPU's logits of the plain checkpoint.
TEST_F(CudaW4Test, AwqModelLogitsMatchTheCpu) {
  KVCC_ASSERT_OK_AND_ASSIGN(awq, kvcc::testing::WriteAwqCheckpoint(
                                     "models/configs/llama-hd128-gqa.json",
                                     kvcc::testing::TempDir("cuda_w4_model"), 64, 5));
  std::vector<int32_t> prompt;
  for (int i = 0; i < 80; ++i) prompt.push_back((i * 53 + 7) % 512);
  // Prefill (unpack + GEMM) then decode steps (the stream kernels).
  auto logits = [&](std::unique_ptr<Backend> backend, bool pack) {
    auto m = frontend::LoadModel(awq);
    EXPECT_TRUE(m.ok()) << m.status();
    if (pack) {
      auto packed = pipeline::PackW4Linears(**m);
      EXPECT_TRUE(packed.ok() && packed->packed > 0) << packed.status();
    }
    EngineOptions eo;
    eo.cache_tokens = 256;
    eo.max_context = 256;
    auto e = Engine::Create(std::shared_ptr<const ir::Module>(std::move(*m)), std::move(backend), eo);
    EXPECT_TRUE(e.ok()) << e.status();
    std::vector<float> all;
    auto s = (*e)->CreateSession();
    auto p = (*e)->PrefillAll(*s, prompt);
    EXPECT_TRUE(p.ok()) << p.status();
    all = *p;
    for (int32_t tok : {5, 77, 300}) {
      auto d = (*e)->Decode({{*s, tok}});
      EXPECT_TRUE(d.ok()) << d.status();
      all.insert(all.end(), (*d)[0].begin(), (*d)[0].end());
    }
    return all;
  };
  const std::vector<float> want = logits(std::make_unique<CpuBackend>(2), false);
  auto check = [&](std::unique_ptr<Backend> backend, bool pack, const char* what) {
    SCOPED_TRACE(what);
    const std::vector<float> got = logits(std::move(backend), pack);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, std::fabs(double{got[i]} - want[i]) / std::max(1.0, std::fabs(double{want[i]})));
    }
    // f16 activations in the GEMMs (and everywhere with half activations) and the f16 cache
    // on both sides bound the agreement.
    EXPECT_LE(worst, 2e-2);
  };
  check(std::move(gpu_), false, "plain f32");
  auto half = CudaBackend::Create(0);
  ASSERT_TRUE(half.ok()) << half.status();
  (*half)->SetHalfActivations(true);
  check(*std::move(half), true, "packed f16");
}

}  // namespace
}  // namespace kvcc::runtime
