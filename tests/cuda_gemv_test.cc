// The decode GEMV (codegen/ops_gemv.cuh, chosen by runtime/cuda/gemv_choice.h inside
// CudaBackend::Linear and LmHead) against the CPU backend: every variant forced in turn and the
// rule, at every token count 1..16, f16 and bf16 weights, f16 and f32 outputs, no bias and f32 /
// f16 / bf16 biases, on shapes with rows that are not a multiple of 16, widths that are not a
// multiple of 64 (the zero-filled tail chunk), fewer chunks than warps and uneven chunk ranges
// per warp. The activations are exact in the weight's type, so the bound is the f32 sum's
// rounding (plus the f16 output's). The rule's range is checked without a GPU, the rest skips
// there; the NVRTC compile of every variant without spills is cuda_backend_test's
// CudaOpsKernelsTest (the GEMV is part of the ops program).
#include <algorithm>
#include <memory>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codegen/ops_kernels.h"
#include "gtest/gtest.h"
#include "ir/half.h"
#include "ir/status_macros.h"
#include "runtime/cpu_backend.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/gemv_choice.h"
#include "runtime/cuda/kernel_tuning.h"
#include "tests/cuda_fixture.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using ir::DType;

// Every backend of this process compiles into its own kernel cache, never a warm one.
const std::string& kKernelCacheDir = testing::FreshKernelCacheDir();

TEST(GemvChoiceTest, TheRulePicksAVariantThatTakesTheBatch) {
  const auto& variants = codegen::GemvVariants();
  for (auto [in, out] : {std::pair<int64_t, int64_t>{4096, 12288}, {4096, 4096}, {4096, 22016},
                         {11008, 4096}, {4096, 32000}, {64, 8}, {172, 64}, {64, 512}}) {
    for (bool aligned : {true, false}) {
      for (int64_t t = 1; t <= codegen::kGemvMaxTokens; ++t) {
        const int v = GemvVariantFor(t, in, out, aligned);
        ASSERT_LT(v, static_cast<int>(variants.size()));
        if (v >= 0) {
          EXPECT_TRUE(GemvVariantTakes(variants[v], t, in, out, aligned))
              << in << "x" << out << " T" << t;
        }
        // Tiny weights never go to cuBLASLt: the small kernel takes any shape.
        if (in * out <= kGemvTinyElements) {
          EXPECT_GE(v, 0) << in << "x" << out << " T" << t;
        }
      }
    }
  }
  EXPECT_EQ(GemvVariantFor(codegen::kGemvMaxTokens + 1, 4096, 4096, true), -1);
  EXPECT_EQ(GemvVariantFor(0, 4096, 4096, true), -1);
  EXPECT_EQ(GemvVariantFor(1, 4100, 4096, true), -1);  // rows not 16-byte multiples, not tiny
  EXPECT_EQ(GemvVariantFor(1, 4096, 4096, false), -1);  // a misaligned operand, not tiny
  const auto& names = codegen::OpsKernelNames();
  for (const codegen::GemvVariant& v : variants) {
    EXPECT_LE(v.max_tokens(), codegen::kGemvMaxTokens) << v.Suffix();
    for (const char* w : {"f16", "bf16"}) {
      EXPECT_NE(std::find(names.begin(), names.end(), absl::StrCat("kvcc_gemv_", w, "_", v.Suffix())),
                names.end())
          << v.Suffix();
    }
    EXPECT_EQ(GemvVariantTakes(v, 1, 172, 64, true), v.small) << v.Suffix();
  }
  EXPECT_EQ(GemvGrid(variants[0], 12288), 768u);
}

// Values exact in `d` (f16 or bf16), as f32 and as `d`.
struct HostPair {
  Tensor f32, typed;
};
HostPair Random(DType d, std::vector<int64_t> shape, std::mt19937& rng, float stddev) {
  HostPair h{Tensor::HostZeros(DType::kF32, shape), Tensor::HostZeros(d, shape)};
  std::normal_distribution<float> normal(0.0f, stddev);
  for (int64_t i = 0; i < h.f32.NumElements(); ++i) {
    const float f = normal(rng);
    uint16_t bits = 0;
    float exact = 0;
    if (d == DType::kF16) {
      bits = ir::FloatToHalf(f);
      exact = ir::HalfToFloat(bits);
    } else {
      bits = ir::FloatToBf16(f);
      exact = ir::Bf16ToFloat(bits);
    }
    h.f32.data<float>()[i] = exact;
    h.typed.data<uint16_t>()[i] = bits;
  }
  return h;
}

// f32 elements of a host f32 or f16 tensor.
std::vector<float> AsFloats(const Tensor& host) {
  if (host.dtype() == DType::kF32) return testing::Floats(host);
  std::vector<float> v(host.NumElements());
  for (int64_t i = 0; i < host.NumElements(); ++i) v[i] = ir::HalfToFloat(host.data<uint16_t>()[i]);
  return v;
}

class CudaGemvTest : public testing::CudaBackendTest {
 protected:
  CpuBackend cpu_{2};
};

TEST_F(CudaGemvTest, EveryVariantMatchesTheCpuBackend) {
  struct Case {
    int64_t out, in;
  };
  // 1 row and 8 inputs; rows not a multiple of 16; a 64-wide tail of 8 inputs; one chunk for 8
  // warps; 1..2 chunks per warp (520); uneven chunk ranges (11008 = 172 chunks); many CTAs;
  // widths that are not multiples of 8 (stories260K's 172-wide down projection; only the
  // small kernel takes them, forced tensor-core variants fall back to cuBLASLt).
  const Case cases[] = {{1, 8},      {17, 72},   {33, 64},  {100, 520}, {48, 11008},
                        {1000, 256}, {40, 4096}, {64, 172}, {13, 7},    {512, 64}};
  const int variants = static_cast<int>(codegen::GemvVariants().size());
  std::mt19937 rng(11);
  for (DType wd : {DType::kF16, DType::kBF16}) {
    for (const Case& c : cases) {
      HostPair w = Random(wd, {c.out, c.in}, rng, 1.0f / std::sqrt(float(c.in)));
      KVCC_ASSERT_OK_AND_ASSIGN(dw, gpu_->FromHost(w.typed));
      for (int64_t tokens = 1; tokens <= codegen::kGemvMaxTokens; ++tokens) {
        HostPair x = Random(wd, {tokens, c.in}, rng, 1.0f);
        // A bias in each dtype in turn (and none), by the token count.
        const int bias_kind = tokens % 4;  // 0 none, 1 f32, 2 f16, 3 bf16
        const HostPair bias =
            Random(bias_kind == 3 ? DType::kBF16 : DType::kF16, {c.out}, rng, 0.5f);
        const Tensor* hb = bias_kind == 0 ? nullptr : bias_kind == 1 ? &bias.f32 : &bias.typed;
        KVCC_ASSERT_OK_AND_ASSIGN(want_t, cpu_.Linear(x.f32, w.f32, nullptr));
        std::vector<float> want = testing::Floats(want_t);
        for (int64_t i = 0; hb != nullptr && i < tokens * c.out; ++i) {
          want[i] += bias.f32.data<float>()[i % c.out];
        }
        // The backend's activations are f32 or f16: bf16 x goes up as f32 (exact) and is cast.
        KVCC_ASSERT_OK_AND_ASSIGN(dx, gpu_->FromHost(wd == DType::kBF16 ? x.f32 : x.typed));
        Tensor db;
        if (hb != nullptr) {
          KVCC_ASSERT_OK_AND_ASSIGN(up, gpu_->FromHost(*hb));
          db = up;
        }
        for (bool half : {false, true}) {
          gpu_->SetHalfActivations(half);
          // f16 output only for f16 weights; 2^-11 for its rounding.
          const bool f16_out = half && wd == DType::kF16;
          const double tol = f16_out ? 1e-3 : 1e-4;
          for (int v = kGemvByRule; v < variants; ++v) {
            if (v >= 0 && codegen::GemvVariants()[v].max_tokens() < tokens) continue;
            SCOPED_TRACE(absl::StrCat(ir::DTypeName(wd), " ", c.out, "x", c.in, " T", tokens,
                                      " bias ", bias_kind, half ? " f16 out" : " f32 out",
                                      " variant ", v));
            gpu_->set_gemv_choice(v);
            KVCC_ASSERT_OK_AND_ASSIGN(dy, gpu_->Linear(dx, dw, hb != nullptr ? &db : nullptr));
            EXPECT_EQ(dy.dtype(), f16_out ? DType::kF16 : DType::kF32);
            KVCC_ASSERT_OK_AND_ASSIGN(got, gpu_->ToHost(dy));
            EXPECT_LE(testing::ScaledError(AsFloats(got), want), tol);
          }
        }
        gpu_->set_gemv_choice(kGemvByRule);
      }
    }
  }
}

// The LM head (f32 logits) takes the GEMV too, and cuBLASLt (forced) agrees with it.
TEST_F(CudaGemvTest, LmHeadAndCublasLtAgree) {
  std::mt19937 rng(5);
  HostPair w = Random(DType::kF16, {1000, 512}, rng, 1.0f / std::sqrt(512.0f));
  KVCC_ASSERT_OK_AND_ASSIGN(dw, gpu_->FromHost(w.typed));
  for (int64_t tokens : {1, 5, 16}) {
    HostPair x = Random(DType::kF16, {tokens, 512}, rng, 1.0f);
    KVCC_ASSERT_OK_AND_ASSIGN(dx, gpu_->FromHost(x.typed));
    gpu_->set_gemv_choice(kGemvByRule);
    KVCC_ASSERT_OK_AND_ASSIGN(a, gpu_->LmHead(dx, dw));
    gpu_->set_gemv_choice(kGemvOff);
    KVCC_ASSERT_OK_AND_ASSIGN(b, gpu_->LmHead(dx, dw));
    gpu_->set_gemv_choice(kGemvByRule);
    KVCC_ASSERT_OK_AND_ASSIGN(ha, gpu_->ToHost(a));
    KVCC_ASSERT_OK_AND_ASSIGN(hb, gpu_->ToHost(b));
    EXPECT_EQ(ha.dtype(), DType::kF32);
    EXPECT_LE(testing::ScaledError(testing::Floats(ha), testing::Floats(hb)), 1e-4) << tokens;
  }
}

// A chain of dependent linears, norms and residual adds, each ops kernel launched
// programmatically (sm_90+): every GEMV starts its weight loads (and L2 prefetches) while the
// kernel before it still writes the GEMV's input, so a missing dependency wait would read a
// stale or half-written activation. The chain gives the ordinary launches' result bit for
// bit at every L2 prefetch depth, and the CPU backend's within the f16 activations' rounding.
TEST_F(CudaGemvTest, DependentLaunchesGiveTheOrdinaryResult) {
  constexpr int64_t kHidden = 2048, kLayers = 6;
  std::mt19937 rng(23);
  std::vector<HostPair> w;
  std::vector<Tensor> dw;
  for (int64_t l = 0; l < kLayers; ++l) {
    w.push_back(Random(DType::kF16, {kHidden, kHidden}, rng, 1.0f / std::sqrt(float(kHidden))));
    KVCC_ASSERT_OK_AND_ASSIGN(d, gpu_->FromHost(w.back().typed));
    dw.push_back(d);
  }
  HostPair norm = Random(DType::kF16, {kHidden}, rng, 1.0f);
  KVCC_ASSERT_OK_AND_ASSIGN(dnorm, gpu_->FromHost(norm.typed));
  gpu_->SetHalfActivations(true);
  for (int64_t tokens : {1, 5, 16}) {
    HostPair x = Random(DType::kF16, {tokens, kHidden}, rng, 1.0f);
    // h = x; per layer: y = norm(h) W^T; h = h + y.
    auto run = [&](Backend& b, const Tensor& x0, const std::vector<Tensor>& ws,
                   const Tensor& nw) -> absl::StatusOr<std::vector<float>> {
      Tensor h = x0;
      for (int64_t l = 0; l < kLayers; ++l) {
        KVCC_ASSIGN_OR_RETURN(auto n, b.RmsNorm(h, nw, 1e-5f));
        KVCC_ASSIGN_OR_RETURN(auto y, b.Linear(n, ws[l], nullptr));
        KVCC_ASSIGN_OR_RETURN(h, b.Add(h, y));
      }
      KVCC_ASSIGN_OR_RETURN(auto host, b.ToHost(h));
      return AsFloats(host);
    };
    std::vector<Tensor> cpu_w;
    for (const HostPair& p : w) cpu_w.push_back(p.f32);
    KVCC_ASSERT_OK_AND_ASSIGN(want, run(cpu_, x.f32, cpu_w, norm.f32));
    KVCC_ASSERT_OK_AND_ASSIGN(dx, gpu_->FromHost(x.f32));
    gpu_->set_programmatic_launch(false);
    KVCC_ASSERT_OK_AND_ASSIGN(ordinary, run(*gpu_, dx, dw, dnorm));
    EXPECT_LE(testing::ScaledError(ordinary, want), 1e-2) << tokens;
    for (int l2 : {0, 4, 1000}) {
      gpu_->set_programmatic_launch(true);
      gpu_->set_gemv_l2_prefetch(l2);
      KVCC_ASSERT_OK_AND_ASSIGN(got, run(*gpu_, dx, dw, dnorm));
      EXPECT_EQ(got, ordinary) << "T" << tokens << " l2 " << l2;
    }
  }
}

// A tuning that timed a shape decides it (its GEMV variant, or cuBLASLt where cuBLASLt won);
// shapes it did not time, or timed before the GEMV was a candidate, follow the rule.
TEST_F(CudaGemvTest, TheTuningsChoiceOverridesTheRule) {
  auto tuning = std::make_shared<KernelTuning>();
  tuning->device = gpu_->context()->device_name();
  tuning->autotuned = true;
  GemmTuning lt;  // cuBLASLt won at 1 x 4096 -> 4096
  lt.m = 1;
  lt.n = 4096;
  lt.k = 4096;
  lt.gemv_timed = true;
  GemmTuning gv = lt;  // a named variant at 2 tokens
  gv.m = 2;
  gv.gemv = codegen::GemvVariants()[0].Suffix();
  GemmTuning old = lt;  // no GEMV timing at 4 tokens
  old.m = 4;
  old.gemv_timed = false;
  tuning->gemm = {lt, gv, old};
  KVCC_ASSERT_OK_AND_ASSIGN(tuned, CudaBackend::Create(0, CudaKernelSource{nullptr, tuning}));
  EXPECT_EQ(tuned->DefaultGemvVariant(1, 4096, 4096, DType::kF16), -1);
  EXPECT_EQ(tuned->DefaultGemvVariant(2, 4096, 4096, DType::kF16), 0);
  EXPECT_EQ(tuned->DefaultGemvVariant(4, 4096, 4096, DType::kF16),
            GemvVariantFor(4, 4096, 4096, true));
  EXPECT_EQ(tuned->DefaultGemvVariant(1, 4096, 4096, DType::kBF16),
            GemvVariantFor(1, 4096, 4096, true));
  EXPECT_EQ(gpu_->DefaultGemvVariant(1, 4096, 4096, DType::kF16),
            GemvVariantFor(1, 4096, 4096, true));
  // A tuned variant the operands cannot take (misaligned) gives way to the rule.
  EXPECT_EQ(tuned->DefaultGemvVariant(2, 4096, 4096, DType::kF16, false),
            GemvVariantFor(2, 4096, 4096, false));
}

}  // namespace
}  // namespace kvcc::runtime
