// The CUDA backend against the CPU backend (the oracle): every op on fresh random inputs with
// fp16-sized error bounds, the paged cache written by both (f16 bytes identical, quantized
// codes within one step) and attention read from the same bytes, full-model logits for
// stories260K (head_dim 8) and synth checkpoints (head_dim 64/128, GQA, biases) with the fp16
// and the int8 cache, greedy generation, pool exhaustion, and Hugging Face transformers run on
// the GPU (tests/python/hf_logits_cuda.py, under KVCC_PYTHON). Kernel compilation is checked
// without a GPU; everything else skips when no device is present.
#include "runtime/backend_factory.h"
#include "runtime/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include "absl/strings/str_cat.h"
#include "codegen/ops_kernels.h"
#include "frontend/model_loader.h"
#include "testing/synth.h"
#include "gtest/gtest.h"
#include "passes/execution_fusions.h"
#include "passes/kv_calibration_pass.h"
#include "calibration/kv_calibrator.h"
#include "passes/kv_quantize.h"
#include "runtime/cpu_backend.h"
#include "runtime/cuda/cuda_context.h"
#include "tests/cuda_fixture.h"
#include "tests/gpu_skip.h"
#include "runtime/engine.h"
#include "ir/half.h"
#include "ir/kv_quant.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using kvcc::testing::Floats;
using kvcc::testing::ScaledError;

using ir::DType;
using kvcc::testing::SourcePath;

// ---- helpers ----

Tensor RandomHost(DType dtype, std::vector<int64_t> shape, std::mt19937& rng, float stddev = 1.0f,
                  float mean = 0.0f) {
  Tensor t = Tensor::HostZeros(dtype, shape);
  std::normal_distribution<float> normal(mean, stddev);
  for (int64_t i = 0; i < t.NumElements(); ++i) {
    const float f = normal(rng);
    if (dtype == DType::kF32) t.data<float>()[i] = f;
    if (dtype == DType::kF16) t.data<uint16_t>()[i] = ir::FloatToHalf(f);
    if (dtype == DType::kBF16) t.data<uint16_t>()[i] = ir::FloatToBf16(f);
  }
  return t;
}



// Every backend of this process compiles into its own kernel cache, never a warm one.
const std::string& kKernelCacheDir = testing::FreshKernelCacheDir();

class CudaOpsTest : public kvcc::testing::CudaBackendTest {
 protected:
  Tensor Up(const Tensor& host) {
    auto t = gpu_->FromHost(host);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : Tensor();
  }
  std::vector<float> Down(const absl::StatusOr<Tensor>& t) {
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return {};
    auto h = gpu_->ToHost(*t);
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? Floats(*h) : std::vector<float>();
  }
  // Down of an f32 or f16 device activation (ToF32 first).
  std::vector<float> Down32(const absl::StatusOr<Tensor>& t) {
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return {};
    return Down(gpu_->ToF32(*t));
  }
  std::vector<float> Ref(const absl::StatusOr<Tensor>& t) {
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? Floats(*t) : std::vector<float>();
  }

  CpuBackend cpu_{2};
  std::mt19937 rng_{20261125};
};

// ---- kernels compile without a GPU ----

TEST(CudaOpsKernelsTest, CompileForHopperAndAmpereWithoutSpills) {
  for (auto [arch, specific] : {std::pair<int, bool>{90, true}, {80, false}}) {
    codegen::OpsKernelSpec spec;
    spec.arch = arch;
    spec.arch_specific = specific;
    auto built = codegen::BuildOpsKernels(spec, nullptr);
    ASSERT_TRUE(built.ok()) << built.status();
    EXPECT_FALSE(built->compiled.cubin.empty());
    for (const std::string& name : codegen::OpsKernelNames()) {
      // The entry point is in the cubin's symbol table.
      EXPECT_NE(built->compiled.cubin.find(name), std::string::npos) << name;
      // ptxas's -v report (absent from some NVRTC builds' logs for sm_90a): no spills.
      codegen::ResourceUsage u = codegen::ParsePtxasReport(built->compiled.log, name);
      EXPECT_EQ(u.spill_store_bytes, 0) << name << " on " << spec.ArchName();
    }
  }
}

TEST(CudaOpsKernelsTest, BadSpecIsRefused) {
  codegen::OpsKernelSpec spec;
  spec.threads = 48;
  EXPECT_FALSE(codegen::RenderOpsKernels(spec).ok());
  spec.threads = 256;
  spec.arch = 70;
  EXPECT_FALSE(codegen::RenderOpsKernels(spec).ok());
}

TEST(CudaBackendCreateTest, WithoutGpuTheErrorSaysToUseTheCpu) {
  auto b = CreateBackend("cuda");
  if (CudaDeviceAvailable()) {
    EXPECT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(DefaultDeviceName(), "cuda");
  } else {
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(b.status().message().find("--device cpu"), absl::string_view::npos)
        << b.status();
    EXPECT_EQ(DefaultDeviceName(), "cpu");
  }
}

// ---- ops against the CPU backend ----

TEST_F(CudaOpsTest, EmbeddingForEveryTableDtype) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    Tensor table = RandomHost(d, {300, 72}, rng_);
    Tensor ids = Tensor::HostZeros(DType::kI32, {9});
    for (int i = 0; i < 9; ++i) ids.data<int32_t>()[i] = (i * 37 + 5) % 300;
    ids.data<int32_t>()[4] = 299;
    EXPECT_EQ(ScaledError(Down(gpu_->Embedding(Up(ids), Up(table))),
                          Ref(cpu_.Embedding(ids, table))),
              0.0)
        << ir::DTypeName(d);
  }
}

TEST_F(CudaOpsTest, EmbeddingRejectsAnIdOutsideTheVocabulary) {
  Tensor table = RandomHost(DType::kF16, {50, 8}, rng_);
  Tensor ids = Tensor::HostZeros(DType::kI32, {3});
  ids.data<int32_t>()[1] = 50;
  // The step does not wait for the kernel: the bad id is reported at the next sync, once.
  auto out = gpu_->Embedding(Up(ids), Up(table));
  ASSERT_TRUE(out.ok()) << out.status();
  auto host = gpu_->ToHost(*out);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(host.status().message().find("token id 50 at index 1"), absl::string_view::npos)
      << host.status();
  EXPECT_TRUE(gpu_->Synchronize().ok());
}

TEST_F(CudaOpsTest, RmsNormForEveryWeightDtype) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t n : {8, 64, 1000}) {
      Tensor x = RandomHost(DType::kF32, {7, n}, rng_, 3.0f);
      Tensor w = RandomHost(d, {n}, rng_, 0.2f, 1.0f);
      EXPECT_LT(ScaledError(Down(gpu_->RmsNorm(Up(x), Up(w), 1e-5f)),
                            Ref(cpu_.RmsNorm(x, w, 1e-5f))),
                1e-5)
          << ir::DTypeName(d) << " n=" << n;
    }
  }
}

// The fused residual add + RMSNorm: the sum is exact (one f32 add, as the CPU's), the norm
// within RmsNorm's bound; odd widths and more rows than one wave of CTAs included.
TEST_F(CudaOpsTest, AddRmsNormForEveryWeightDtype) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (auto [tokens, n] : {std::pair<int64_t, int64_t>{1, 8}, {7, 64}, {3, 1000}, {300, 72}}) {
      Tensor x = RandomHost(DType::kF32, {tokens, n}, rng_, 3.0f);
      Tensor r = RandomHost(DType::kF32, {tokens, n}, rng_, 2.0f);
      Tensor w = RandomHost(d, {n}, rng_, 0.2f, 1.0f);
      auto got = gpu_->AddRmsNorm(Up(x), Up(r), Up(w), 1e-5f);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->size(), 2u);
      auto want = cpu_.AddRmsNorm(x, r, w, 1e-5f);
      ASSERT_TRUE(want.ok()) << want.status();
      EXPECT_EQ(Down((*got)[0]), Ref((*want)[0])) << ir::DTypeName(d) << " n=" << n;
      EXPECT_LT(ScaledError(Down((*got)[1]), Ref((*want)[1])), 1e-5)
          << ir::DTypeName(d) << " " << tokens << "x" << n;
    }
  }
  Tensor x = RandomHost(DType::kF32, {2, 16}, rng_);
  EXPECT_FALSE(gpu_->AddRmsNorm(Up(x), Up(RandomHost(DType::kF32, {2, 15}, rng_)),
                                Up(RandomHost(DType::kF16, {16}, rng_)), 1e-5f)
                   .ok());
  EXPECT_FALSE(gpu_->AddRmsNorm(Up(x), Up(x), Up(RandomHost(DType::kF16, {15}, rng_)), 1e-5f)
                   .ok());
}

TEST_F(CudaOpsTest, LinearInHalfPrecisionWithAndWithoutBias) {
  // f16 GEMM inputs (the activation is rounded to f16) with f32 accumulation.
  for (DType d : {DType::kF16, DType::kBF16, DType::kF32}) {
    for (auto [tokens, in, out] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 172},
                                   {13, 256, 96}, {64, 512, 1024}}) {
      Tensor x = RandomHost(DType::kF32, {tokens, in}, rng_);
      Tensor w = RandomHost(d, {out, in}, rng_, 1.0f / std::sqrt(float(in)));
      Tensor b = RandomHost(d, {out}, rng_);
      const double tol = d == DType::kBF16 ? 1.5e-2 : 2e-3;
      EXPECT_LT(ScaledError(Down(gpu_->Linear(Up(x), Up(w), nullptr)),
                            Ref(cpu_.Linear(x, w, nullptr))),
                tol)
          << ir::DTypeName(d) << " " << tokens << "x" << in << "x" << out;
      Tensor gb = Up(b);
      EXPECT_LT(ScaledError(Down(gpu_->Linear(Up(x), Up(w), &gb)), Ref(cpu_.Linear(x, w, &b))),
                tol)
          << ir::DTypeName(d) << " with bias";
      EXPECT_LT(ScaledError(Down(gpu_->LmHead(Up(x), Up(w))), Ref(cpu_.LmHead(x, w))), tol);
    }
  }
}

TEST_F(CudaOpsTest, LinearRejectsMismatchedShapes) {
  Tensor x = RandomHost(DType::kF32, {2, 16}, rng_);
  Tensor w = RandomHost(DType::kF16, {8, 15}, rng_);
  auto out = gpu_->Linear(Up(x), Up(w), nullptr);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  // A host tensor is refused, not dereferenced.
  EXPECT_FALSE(gpu_->Linear(x, Up(w), nullptr).ok());
}

TEST_F(CudaOpsTest, SplitAddSiluMulAndGatherAreExact) {
  Tensor x = RandomHost(DType::kF32, {11, 40}, rng_);
  Tensor y = RandomHost(DType::kF32, {11, 40}, rng_);
  auto gs = gpu_->Split(Up(x), {8, 24, 8});
  auto cs = cpu_.Split(x, {8, 24, 8});
  ASSERT_TRUE(gs.ok() && cs.ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ScaledError(Down((*gs)[i]), Floats((*cs)[i])), 0.0);
  EXPECT_EQ(ScaledError(Down(gpu_->Add(Up(x), Up(y))), Ref(cpu_.Add(x, y))), 0.0);
  EXPECT_LT(ScaledError(Down(gpu_->SiluMul(Up(x), Up(y))), Ref(cpu_.SiluMul(x, y))), 1e-6);
  const std::vector<int64_t> rows = {10, 0, 3, 3};
  EXPECT_EQ(ScaledError(Down(gpu_->GatherRows(Up(x), rows)), Ref(cpu_.GatherRows(x, rows))), 0.0);
  EXPECT_FALSE(gpu_->GatherRows(Up(x), {11}).ok());
  EXPECT_FALSE(gpu_->Split(Up(x), {8, 8}).ok());
  EXPECT_FALSE(gpu_->Add(Up(x), Up(RandomHost(DType::kF32, {11, 39}, rng_))).ok());
}

TEST_F(CudaOpsTest, RotaryForEveryScaling) {
  StepBatch batch;
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 5; ++i) {
      batch.sessions.push_back(s);
      batch.positions.push_back(s * 700 + i * 131);
    }
  }
  batch.ComputeSeqLens();
  for (const char* scaling : {"none", "linear", "dynamic", "llama3"}) {
    for (int d : {8, 64, 128}) {
      RotaryParams p;
      p.heads = 3;
      p.head_dim = d;
      p.theta = 10000.0;
      p.scaling = scaling;
      p.factor = 4.0;
      p.original_max_position = 512;
      p.max_position = 2048;
      Tensor x = RandomHost(DType::kF32, {batch.size(), 3 * d}, rng_);
      EXPECT_LT(ScaledError(Down(gpu_->Rotary(Up(x), p, batch)), Ref(cpu_.Rotary(x, p, batch))),
                1e-5)
          << scaling << " d=" << d;
    }
  }
}

// Host f32 values that f16 represents exactly, so an f16 upload and the CPU's f32 copy agree.
Tensor HalfExact(DType dtype, std::vector<int64_t> shape, std::mt19937& rng, float stddev = 1.0f) {
  Tensor t = RandomHost(DType::kF32, shape, rng, stddev);
  Tensor h = Tensor::HostZeros(DType::kF16, shape);
  for (int64_t i = 0; i < t.NumElements(); ++i) {
    h.data<uint16_t>()[i] = ir::FloatToHalf(t.data<float>()[i]);
    t.data<float>()[i] = ir::HalfToFloat(h.data<uint16_t>()[i]);
  }
  return dtype == DType::kF16 ? h : t;
}

// With half activations (what model runs use) the results that feed a GEMM or attention are
// f16, within f16 rounding (2^-11 relative) of the CPU's f32; the residual stream is f32 and
// exact; ops take f16 and f32 operands alike.
TEST_F(CudaOpsTest, HalfActivationsMatchTheCpuWithinF16Rounding) {
  gpu_->SetHalfActivations(true);
  constexpr int64_t kT = 5, kN = 256, kOut = 96;
  Tensor x = RandomHost(DType::kF32, {kT, kN}, rng_, 2.0f);
  Tensor r = RandomHost(DType::kF32, {kT, kN}, rng_);
  Tensor w = RandomHost(DType::kF16, {kN}, rng_, 0.2f, 1.0f);
  auto norm = gpu_->RmsNorm(Up(x), Up(w), 1e-5f);
  ASSERT_TRUE(norm.ok()) << norm.status();
  EXPECT_EQ(norm->dtype(), DType::kF16);
  EXPECT_LT(ScaledError(Down32(norm), Ref(cpu_.RmsNorm(x, w, 1e-5f))), 1e-3);

  // A GEMM reads the f16 norm as it is and writes f16.
  Tensor wl = RandomHost(DType::kF16, {kOut, kN}, rng_, 1.0f / 16);
  Tensor norm_host = Tensor::HostZeros(DType::kF32, {kT, kN});
  {
    std::vector<float> v = Down32(norm);
    ASSERT_EQ(v.size(), static_cast<size_t>(kT * kN));
    std::memcpy(norm_host.raw(), v.data(), v.size() * sizeof(float));
  }
  auto y = gpu_->Linear(*norm, Up(wl), nullptr);
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->dtype(), DType::kF16);
  EXPECT_LT(ScaledError(Down32(y), Ref(cpu_.Linear(norm_host, wl, nullptr))), 2e-3);
  auto logits = gpu_->LmHead(*norm, Up(wl));
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_EQ(logits->dtype(), DType::kF32);

  // add_rms_norm of an f16 GEMM output and the f32 residual: an exact f32 sum, an f16 norm;
  // with an f32 x (a 4-bit linear's output) the same.
  Tensor xh = HalfExact(DType::kF16, {kT, kN}, rng_, 2.0f);
  Tensor xf = Tensor::HostZeros(DType::kF32, {kT, kN});
  for (int64_t i = 0; i < xf.NumElements(); ++i) {
    xf.data<float>()[i] = ir::HalfToFloat(xh.data<uint16_t>()[i]);
  }
  auto want = cpu_.AddRmsNorm(xf, r, w, 1e-5f);
  ASSERT_TRUE(want.ok()) << want.status();
  for (const Tensor* in : {&xh, &xf}) {
    auto got = gpu_->AddRmsNorm(Up(*in), Up(r), Up(w), 1e-5f);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ((*got)[0].dtype(), DType::kF32);
    EXPECT_EQ((*got)[1].dtype(), DType::kF16);
    EXPECT_EQ(Down((*got)[0]), Ref((*want)[0])) << ir::DTypeName(in->dtype());
    EXPECT_LT(ScaledError(Down32((*got)[1]), Ref((*want)[1])), 1e-3);
  }
  auto sum = gpu_->Add(Up(xh), Up(r));
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->dtype(), DType::kF32);
  EXPECT_EQ(Down(*sum), Ref(cpu_.Add(xf, r)));

  // silu_mul of separate halves and of one fused gate/up projection, in f16.
  Tensor gu = HalfExact(DType::kF16, {kT, 2 * kN}, rng_);
  Tensor gu32 = HalfExact(DType::kF32, {kT, 2 * kN}, rng_);
  for (int64_t i = 0; i < gu32.NumElements(); ++i) {
    gu32.data<float>()[i] = ir::HalfToFloat(gu.data<uint16_t>()[i]);
  }
  auto fused = gpu_->SiluMulHalves(Up(gu));
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ(fused->dtype(), DType::kF16);
  const std::vector<float> want_act = Ref(cpu_.SiluMulHalves(gu32));
  EXPECT_LT(ScaledError(Down32(fused), want_act), 1e-3);
  auto parts = gpu_->Split(Up(gu), {kN, kN});
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_EQ(Down32(gpu_->SiluMul((*parts)[0], (*parts)[1])), Down32(fused));
  EXPECT_FALSE(gpu_->SiluMulHalves(Up(RandomHost(DType::kF32, {2, 7}, rng_))).ok());
  // Rows of f16 activations are gathered as they are.
  const std::vector<int64_t> rows = {4, 0, 4};
  EXPECT_EQ(Down32(gpu_->GatherRows(Up(gu), rows)), Ref(cpu_.GatherRows(gu32, rows)));
}

// ---- the paged cache and attention ----

struct CacheCase {
  const char* name;
  int heads, kv_heads, head_dim;
  ir::KvStorage k, v;
};

constexpr ir::KvStorage kF16{DType::kF16, ir::KvGranularity::kNone};
constexpr ir::KvStorage kI8Layer{DType::kI8, ir::KvGranularity::kPerLayer};
constexpr ir::KvStorage kI8Head{DType::kI8, ir::KvGranularity::kPerHead};
constexpr ir::KvStorage kI4Head{DType::kI4, ir::KvGranularity::kPerHead};
constexpr ir::KvStorage kI8Online{DType::kI8, ir::KvGranularity::kOnline};
constexpr ir::KvStorage kI4Online{DType::kI4, ir::KvGranularity::kOnline};
constexpr ir::KvStorage kI4Channel{DType::kI4, ir::KvGranularity::kPerChannel};
constexpr ir::KvStorage kFp8Layer{DType::kFP8E4M3, ir::KvGranularity::kPerLayer};
constexpr ir::KvStorage kFp8Head{DType::kFP8E4M3, ir::KvGranularity::kPerHead};
constexpr ir::KvStorage kFp8Channel{DType::kFP8E4M3, ir::KvGranularity::kPerChannel};

ir::KvCacheScheme MakeScheme(const CacheCase& c, std::mt19937& rng) {
  ir::KvCacheScheme s;
  s.SetPart(KvPart::kKey, c.k);
  s.SetPart(KvPart::kValue, c.v);
  std::uniform_real_distribution<float> spread(2.0f, 5.0f), shift(-0.5f, 0.5f);
  for (KvPart part : {KvPart::kKey, KvPart::kValue}) {
    const ir::KvStorage st = s.Part(part);
    auto& zps = part == KvPart::kKey ? s.k_zp : s.v_zp;
    auto& scales = part == KvPart::kKey ? s.k_scale : s.v_scale;
    for (size_t i = 0; i < ir::KvParamCount(st, c.kv_heads, c.head_dim); ++i) {
      const float lo = -spread(rng) + shift(rng), hi = spread(rng) + shift(rng);
      // Per-channel fp8 is centred (fp8-kchannel), so its non-zero zp is exercised too.
      const ir::ZpScale p =
          st.dtype != DType::kFP8E4M3 ? ir::CalibratedParams(lo, hi, st.dtype == DType::kI8 ? 255 : 15)
          : st.granularity == ir::KvGranularity::kPerChannel ? ir::Fp8CenteredParams(lo, hi, 1.0f)
                                                             : ir::Fp8Params(std::max(-lo, hi));
      zps.push_back(p.zp);
      scales.push_back(p.scale);
    }
  }
  return s;
}

class CudaCacheTest : public CudaOpsTest, public ::testing::WithParamInterface<CacheCase> {};

TEST_P(CudaCacheTest, WritesMatchTheCpuAndAttentionReadsTheSameValues) {
  const CacheCase& c = GetParam();
  KvCacheSpec spec;
  spec.layout.num_layers = 2;
  spec.layout.kv_heads = c.kv_heads;
  spec.layout.head_dim = c.head_dim;
  spec.layout.block_size = 16;
  spec.layout.num_blocks = 24;
  spec.schemes = {MakeScheme(c, rng_), MakeScheme(c, rng_)};
  spec.layout.SetStorage(spec.schemes[0]);
  auto cpu_cache = cpu_.CreateKvCache(spec);
  auto gpu_cache = gpu_->CreateKvCache(spec);
  ASSERT_TRUE(cpu_cache.ok()) << cpu_cache.status();
  ASSERT_TRUE(gpu_cache.ok()) << gpu_cache.status();
  KvCache& hc = **cpu_cache;
  KvCache& dc = **gpu_cache;
  const int64_t width = int64_t{c.kv_heads} * c.head_dim, qwidth = int64_t{c.heads} * c.head_dim;
  const int layer = 1;
  AttentionParams ap{layer, c.heads, c.kv_heads, c.head_dim, true,
                     1.0f / std::sqrt(float(c.head_dim))};

  // Step 1: prefill chunks of two sessions (37 and 20 tokens) in one step; step 2: one decode
  // token each plus a third session's first token.
  StepBatch prefill, decode;
  for (int64_t s : {1, 2, 3}) {
    ASSERT_TRUE(hc.blocks().AddSession(s).ok());
    ASSERT_TRUE(dc.blocks().AddSession(s).ok());
  }
  for (int i = 0; i < 37; ++i) prefill.sessions.push_back(1), prefill.positions.push_back(i);
  for (int i = 0; i < 20; ++i) prefill.sessions.push_back(2), prefill.positions.push_back(i);
  decode.sessions = {2, 1, 3};
  decode.positions = {20, 37, 0};
  prefill.ComputeSeqLens();
  decode.ComputeSeqLens();
  for (KvCache* cache : {&hc, &dc}) {
    ASSERT_TRUE(cache->blocks().Reserve({{1, 38}, {2, 21}, {3, 1}}).ok());
  }
  for (const StepBatch* step : {&prefill, &decode}) {
    Tensor k = RandomHost(DType::kF32, {step->size(), width}, rng_, 1.5f);
    Tensor v = RandomHost(DType::kF32, {step->size(), width}, rng_, 1.5f);
    Tensor q = RandomHost(DType::kF32, {step->size(), qwidth}, rng_);
    KVCC_ASSERT_OK(cpu_.KvCacheWrite(k, v, layer, *step, &hc));
    KVCC_ASSERT_OK(gpu_->KvCacheWrite(Up(k), Up(v), layer, *step, &dc));
    // The slots this step wrote (the host pool is not zero-filled, so only those compare).
    const KvCacheLayout& l = spec.layout;
    std::vector<std::pair<int32_t, int>> slots;  // (block, slot)
    for (int64_t t = 0; t < step->size(); ++t) {
      auto table = hc.blocks().Table(step->sessions[t]);
      ASSERT_TRUE(table.ok());
      const int32_t pos = step->positions[t];
      slots.push_back({(**table)[pos / l.block_size], pos % l.block_size});
    }
    // Stored codes: identical for f16 (both round to nearest even), at most one quantization
    // step apart otherwise (an f32 division on either side may land on the other side of a
    // rounding tie); online (scale, zero) pairs identical. fp8 codes: one e4m3 step (adjacent
    // magnitudes of one sign).
    cudaStream_t stream = gpu_->context()->stream();
    for (KvPart part : {KvPart::kKey, KvPart::kValue}) {
      const bool online = l.OnlineOf(part);
      const DType dtype = l.DTypeOf(part);
      const bool is_signed = !online;  // calibrated codes are signed, online ones unsigned
      auto code8 = [&](int byte) { return is_signed ? int(int8_t(byte)) : byte; };
      auto code4 = [&](int nib) { return is_signed && nib >= 8 ? nib - 16 : nib; };
      auto got = gpu_->ToHost(dc.values(layer, part));
      ASSERT_TRUE(got.ok()) << got.status();
      const Tensor& want = hc.values(layer, part);
      ASSERT_EQ(got->NumBytes(), want.NumBytes());
      Tensor got_params;
      if (online) {
        auto gp = gpu_->ToHost(dc.params(layer, part));
        ASSERT_TRUE(gp.ok()) << gp.status();
        got_params = *gp;
      }
      int64_t far = 0;
      for (auto [block, slot] : slots) {
        for (int h = 0; h < l.kv_heads; ++h) {
          const int64_t off = l.RowOffset(part, block, h, slot);
          const uint8_t* g = got->data<uint8_t>() + off;
          const uint8_t* w = want.data<uint8_t>() + off;
          for (int64_t i = 0; i < l.RowBytes(part); ++i) {
            const int a = g[i], b = w[i];
            if (dtype == DType::kF16) {
              far += a != b;
            } else if (dtype == DType::kFP8E4M3) {
              far += (a & 0x80) != (b & 0x80) || std::abs((a & 0x7f) - (b & 0x7f)) > 1;
            } else if (dtype == DType::kI8) {
              far += std::abs(code8(a) - code8(b)) > 1;
            } else {
              far += std::abs(code4(a & 15) - code4(b & 15)) > 1 ||
                     std::abs(code4(a >> 4) - code4(b >> 4)) > 1;
            }
          }
          if (online) {
            const int64_t pi = ((int64_t{block} * l.kv_heads + h) * l.block_size + slot) * 2;
            const uint16_t* want_params = hc.params(layer, part).data<uint16_t>();
            EXPECT_EQ(got_params.data<uint16_t>()[pi], want_params[pi]);
            EXPECT_EQ(got_params.data<uint16_t>()[pi + 1], want_params[pi + 1]);
          }
        }
      }
      EXPECT_EQ(far, 0) << c.name;
      // Attention below reads the CPU's bytes on both sides (copied on the backend's stream,
      // which does not synchronize with the legacy default stream).
      ASSERT_EQ(cudaMemcpyAsync(dc.values(layer, part).raw(), want.raw(), want.NumBytes(),
                                cudaMemcpyHostToDevice, stream),
                cudaSuccess);
      if (online) {
        ASSERT_EQ(cudaMemcpyAsync(dc.params(layer, part).raw(), hc.params(layer, part).raw(),
                                  hc.params(layer, part).NumBytes(), cudaMemcpyHostToDevice,
                                  stream),
                  cudaSuccess);
      }
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    }
    // Decode and the scalar prefill compute in f32 like the CPU. The tensor-core prefill
    // (head_dim a multiple of 32) feeds its MMAs f16 Q, K/V and softmax weights: each rounding
    // is within 2^-11 relative (~4.9e-4), so its error is a few of those of the output scale.
    const bool tensor_core_prefill = step == &prefill && c.head_dim % 32 == 0;
    EXPECT_LT(ScaledError(Down(gpu_->Attention(Up(q), dc, ap, *step)),
                          Ref(cpu_.Attention(q, hc, ap, *step))),
              tensor_core_prefill ? 2e-3 : 1e-4)
        << c.name << (step == &prefill ? " prefill" : " decode");
  }
  // A position outside the reserved blocks is refused.
  StepBatch beyond;
  beyond.sessions = {3};
  beyond.positions = {16};
  beyond.ComputeSeqLens();
  Tensor k = RandomHost(DType::kF32, {1, width}, rng_);
  EXPECT_EQ(gpu_->KvCacheWrite(Up(k), Up(k), layer, beyond, &dc).code(),
            absl::StatusCode::kOutOfRange);
}

INSTANTIATE_TEST_SUITE_P(
    Schemes, CudaCacheTest,
    ::testing::Values(
        CacheCase{"f16_hd8_gqa", 8, 4, 8, kF16, kF16},
        CacheCase{"f16_hd64_mha", 4, 4, 64, kF16, kF16},
        CacheCase{"f16_hd128_gqa", 8, 2, 128, kF16, kF16},
        CacheCase{"i8_layer_hd8", 8, 4, 8, kI8Layer, kI8Layer},
        CacheCase{"i8_layer_hd128", 8, 2, 128, kI8Layer, kI8Layer},
        CacheCase{"i8_head_hd64", 4, 4, 64, kI8Head, kI8Head},
        CacheCase{"i4_head_hd64", 8, 2, 64, kI4Head, kI4Head},
        CacheCase{"i8_online_hd128", 8, 2, 128, kI8Online, kI8Online},
        CacheCase{"k8v4_hd128_gqa", 8, 2, 128, kI8Head, kI4Online},
        CacheCase{"k8_head_v4_head_hd64", 8, 2, 64, kI8Head, kI4Head},
        CacheCase{"k8v4_online_hd64", 4, 4, 64, kI8Online, kI4Online},
        CacheCase{"fp8_tensor_hd128", 8, 2, 128, kFp8Layer, kFp8Layer},
        CacheCase{"fp8_head_hd8", 8, 4, 8, kFp8Head, kFp8Head},
        CacheCase{"i4_kchannel_hd128", 8, 2, 128, kI4Channel, kI4Online},
        CacheCase{"i4_channel_hd64", 4, 4, 64, kI4Channel, kI4Channel},
        CacheCase{"fp8_kchannel_hd128", 8, 2, 128, kFp8Channel, kFp8Head}),
    [](const ::testing::TestParamInfo<CacheCase>& i) { return std::string(i.param.name); });

// The fused front of the attention block (q, k, v read in place in one qkv projection, k
// rotated by the cache-write kernel; a single token's q too, in place) against the CPU's split +
// rotary + rotary + cache write: the rotated q, then attention over what each wrote, for a
// prefill of two sessions and a one-token step, in f32 and with half activations.
TEST_F(CudaOpsTest, RotaryQkvCacheWriteMatchesTheSplitOps) {
  constexpr int kHeads = 4, kKvHeads = 2, kD = 64;
  constexpr int64_t kQw = kHeads * kD, kKvw = kKvHeads * kD;
  StepBatch prefill, one;
  for (int i = 0; i < 21; ++i) prefill.sessions.push_back(1), prefill.positions.push_back(i);
  for (int i = 0; i < 6; ++i) prefill.sessions.push_back(2), prefill.positions.push_back(i);
  prefill.ComputeSeqLens();
  one.sessions = {1};
  one.positions = {21};
  one.ComputeSeqLens();
  RotaryParams qr;
  qr.heads = kHeads;
  qr.head_dim = kD;
  qr.theta = 500000.0;
  RotaryParams kr = qr;
  kr.heads = kKvHeads;
  const AttentionParams ap{0, kHeads, kKvHeads, kD, true, 1.0f / std::sqrt(float(kD))};
  for (bool half : {false, true}) {
    gpu_->SetHalfActivations(half);
    KvCacheSpec spec;
    spec.layout.num_layers = 1;
    spec.layout.kv_heads = kKvHeads;
    spec.layout.head_dim = kD;
    spec.layout.block_size = 16;
    spec.layout.num_blocks = 8;
    spec.schemes = {ir::KvCacheScheme::Uniform(kF16)};
    spec.layout.SetStorage(spec.schemes[0]);
    KVCC_ASSERT_OK_AND_ASSIGN(hc, cpu_.CreateKvCache(spec));
    KVCC_ASSERT_OK_AND_ASSIGN(dc, gpu_->CreateKvCache(spec));
    for (KvCache* c : {hc.get(), dc.get()}) {
      for (int64_t s : {1, 2}) ASSERT_TRUE(c->blocks().AddSession(s).ok());
      ASSERT_TRUE(c->blocks().Reserve({{1, 22}, {2, 6}}).ok());
    }
    for (const StepBatch* step : {&prefill, &one}) {
      Tensor qkv16 = HalfExact(DType::kF16, {step->size(), kQw + 2 * kKvw}, rng_);
      Tensor qkv = Tensor::HostZeros(DType::kF32, qkv16.shape());
      for (int64_t i = 0; i < qkv.NumElements(); ++i) {
        qkv.data<float>()[i] = ir::HalfToFloat(qkv16.data<uint16_t>()[i]);
      }
      auto want_q = cpu_.RotaryQkvCacheWrite(qkv, kQw, kKvw, qr, kr, 0, *step, hc.get());
      auto got_q = gpu_->RotaryQkvCacheWrite(Up(half ? qkv16 : qkv), kQw, kKvw, qr, kr, 0, *step,
                                             dc.get());
      ASSERT_TRUE(want_q.ok() && got_q.ok()) << want_q.status() << got_q.status();
      EXPECT_EQ(got_q->dtype(), half ? DType::kF16 : DType::kF32);
      EXPECT_EQ(got_q->shape(), want_q->shape());
      // The cache-write kernel's rotation (f32 sincosf, not the rotary op's double cos/sin)
      // stays within a few f32 ulps.
      EXPECT_LT(ScaledError(Down32(got_q), Ref(want_q)), half ? 1e-3 : 1e-5)
          << half << " tokens " << step->size();
      EXPECT_LT(ScaledError(Down32(gpu_->Attention(*got_q, *dc, ap, *step)),
                            Ref(cpu_.Attention(*want_q, *hc, ap, *step))),
                4e-3)
          << half << " tokens " << step->size();
    }
    // A projection whose k/v width is not the cache's is refused.
    Tensor wide = RandomHost(DType::kF32, {1, kQw + 2 * (kKvw + 1)}, rng_);
    EXPECT_FALSE(gpu_->RotaryQkvCacheWrite(Up(wide), kQw, kKvw + 1, qr, kr, 0, one, dc.get()).ok());
  }
}

// ---- whole models ----

std::shared_ptr<ir::Module> Load(const std::string& dir) {
  auto m = frontend::LoadModel(dir);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::shared_ptr<ir::Module>(std::move(*m)) : nullptr;
}

std::string SynthDir(const std::string& config) {
  const std::string dir = kvcc::testing::TempDir("cuda_synth_" + config);
  testing::SynthOptions o;
  o.seed = 11;
  auto r = testing::SynthesizeCheckpoint(SourcePath("models/configs/" + config + ".json"), dir, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return dir;
}

// The module with the seed's int8 per-layer cache, calibrated on random tokens through the CPU.
std::shared_ptr<ir::Module> Int8(const std::string& dir) {
  std::shared_ptr<ir::Module> m = Load(dir);
  if (m == nullptr) return nullptr;
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> windows(2, std::vector<int32_t>(48));
  for (auto& w : windows) {
    for (int32_t& t : w) t = static_cast<int32_t>(rng() % m->config.vocab_size);
  }
  auto params = calibration::CalibrateKv(m, windows, passes::KvCalibrationInfo{"random", 2, 48, 5});
  EXPECT_TRUE(params.ok()) << params.status();
  if (!params.ok()) return nullptr;
  EXPECT_TRUE(passes::KvCalibrationPass(*params, "random").Run(*m).ok());
  EXPECT_TRUE(passes::KvQuantizePass(passes::KvQuantScheme::kInt8PerLayer).Run(*m).ok());
  return m;
}

std::unique_ptr<Engine> MakeEngine(std::shared_ptr<ir::Module> m, const std::string& device,
                                   int64_t cache_tokens = 0) {
  auto backend = CreateBackend(device, 2);
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return nullptr;
  EngineOptions o;
  o.block_size = 16;
  o.default_sessions = 2;
  o.cache_tokens = cache_tokens;
  auto e = Engine::Create(std::move(m), *std::move(backend), o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

std::vector<int32_t> RandomIds(int n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(n);
  for (int32_t& t : ids) t = static_cast<int32_t>(rng() % vocab);
  ids[0] = 1;
  return ids;
}

// Prefill logits of every prompt token, then four batched decode steps of two sessions.
// With `unquantized` (the same model with the fp16 cache) the bound also admits half the
// quantized cache's own effect on the CPU's logits: the fp16 GEMMs move a few K/V values across
// a rounding boundary, and each such value moves by a whole quantization step.
void CompareLogits(const std::shared_ptr<ir::Module>& m, const std::string& what, double tol,
                   const std::shared_ptr<ir::Module>& unquantized = nullptr) {
  ASSERT_NE(m, nullptr);
  auto cpu = MakeEngine(m, "cpu");
  auto gpu = MakeEngine(m, "cuda");
  ASSERT_TRUE(cpu && gpu);
  std::unique_ptr<Engine> ref = unquantized ? MakeEngine(unquantized, "cpu") : nullptr;
  const int64_t vocab = cpu->vocab_size();
  const std::vector<int32_t> p1 = RandomIds(45, vocab, 1), p2 = RandomIds(19, vocab, 2);
  std::vector<int64_t> cs, gs, rs;
  for (const auto* p : {&p1, &p2}) {
    KVCC_ASSERT_OK_AND_ASSIGN(c, cpu->CreateSession());
    KVCC_ASSERT_OK_AND_ASSIGN(g, gpu->CreateSession());
    KVCC_ASSERT_OK_AND_ASSIGN(cl, cpu->PrefillAll(c, *p));
    KVCC_ASSERT_OK_AND_ASSIGN(gl, gpu->PrefillAll(g, *p));
    double bound = tol;
    if (ref) {
      KVCC_ASSERT_OK_AND_ASSIGN(r, ref->CreateSession());
      KVCC_ASSERT_OK_AND_ASSIGN(rl, ref->PrefillAll(r, *p));
      bound = std::max(tol, 0.5 * ScaledError(cl, rl));
      rs.push_back(r);
    }
    EXPECT_LT(ScaledError(gl, cl), bound) << what << " prefill of " << p->size();
    cs.push_back(c);
    gs.push_back(g);
  }
  for (int step = 0; step < 4; ++step) {
    const int32_t t1 = (step * 31 + 7) % vocab, t2 = (step * 17 + 3) % vocab;
    KVCC_ASSERT_OK_AND_ASSIGN(cl, cpu->Decode({{cs[0], t1}, {cs[1], t2}}));
    KVCC_ASSERT_OK_AND_ASSIGN(gl, gpu->Decode({{gs[0], t1}, {gs[1], t2}}));
    std::vector<std::vector<float>> rl;
    if (ref) {
      auto r = ref->Decode({{rs[0], t1}, {rs[1], t2}});
      ASSERT_TRUE(r.ok()) << r.status();
      rl = *r;
    }
    for (int i = 0; i < 2; ++i) {
      const double bound = ref ? std::max(tol, 0.5 * ScaledError(cl[i], rl[i])) : tol;
      EXPECT_LT(ScaledError(gl[i], cl[i]), bound) << what << " decode step " << step;
    }
  }
}

TEST(CudaModelTest, Stories260KLogitsMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  auto fp16 = Load(SourcePath("models/stories260K"));
  CompareLogits(fp16, "stories260K f16 cache", 1e-2);
  CompareLogits(Int8(SourcePath("models/stories260K")), "stories260K int8 cache", 2e-2, fp16);
}

TEST(CudaModelTest, SynthCheckpointsLogitsMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  for (const char* config : {"llama-hd64-mha", "llama-hd128-gqa", "qwen2-bias-tied",
                             "internlm-bias", "internlm2-gqa"}) {
    const std::string dir = SynthDir(config);
    auto fp16 = Load(dir);
    CompareLogits(fp16, absl::StrCat(config, " f16 cache"), 1e-2);
    CompareLogits(Int8(dir), absl::StrCat(config, " int8 cache"), 2e-2, fp16);
  }
}

// The modules generate/chat/ppl run: q/k/v, gate/up and add + norm fused (add_rms_norm's kernel
// in every layer), on both backends.
TEST(CudaModelTest, FusedModelsLogitsMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  for (const std::string& dir : {SourcePath("models/stories260K"), SynthDir("llama-hd128-gqa")}) {
    std::shared_ptr<ir::Module> m = Load(dir);
    ASSERT_NE(m, nullptr);
    KVCC_ASSERT_OK(passes::ApplyExecutionFusions(*m));
    CompareLogits(m, absl::StrCat(dir, " fused, f16 cache"), 1e-2);
  }
}

int32_t Argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Greedy continuation on the GPU, each step checked against the CPU fed the same tokens.
// Returns the GPU's tokens; `flips` counts steps whose choice differs from the CPU's, which
// `margin` bounds: a flip is only acceptable where the CPU's top two logits are that close.
std::vector<int32_t> Greedy(const std::shared_ptr<ir::Module>& m, int n, float margin,
                            int* flips) {
  auto cpu = MakeEngine(m, "cpu");
  auto gpu = MakeEngine(m, "cuda");
  EXPECT_TRUE(cpu && gpu);
  if (!cpu || !gpu) return {};
  auto c = cpu->CreateSession();
  auto g = gpu->CreateSession();
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  auto cl = cpu->Prefill(*c, prompt);
  auto gl = gpu->Prefill(*g, prompt);
  EXPECT_TRUE(cl.ok() && gl.ok());
  std::vector<int32_t> out;
  *flips = 0;
  for (int i = 0; i < n && cl.ok() && gl.ok(); ++i) {
    const int32_t want = Argmax(*cl), got = Argmax(*gl);
    if (want != got) {
      ++*flips;
      std::vector<float> sorted = *cl;
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      EXPECT_LT(sorted[0] - sorted[1], margin) << "step " << i << ": gpu " << got << " cpu "
                                               << want;
    }
    out.push_back(got);
    auto cn = cpu->Decode({{*c, got}});
    auto gn = gpu->Decode({{*g, got}});
    EXPECT_TRUE(cn.ok() && gn.ok());
    if (!cn.ok() || !gn.ok()) break;
    cl = (*cn)[0];
    gl = (*gn)[0];
  }
  return out;
}

TEST(CudaModelTest, Stories260KGreedyIsIdenticalFor64Tokens) {
  SKIP_WITHOUT_GPU();
  int flips = 0;
  std::vector<int32_t> tokens = Greedy(Load(SourcePath("models/stories260K")), 64, 0.0f, &flips);
  EXPECT_EQ(tokens.size(), 64u);
  EXPECT_EQ(flips, 0);
}

TEST(CudaModelTest, SynthGreedyDiffersOnlyAtNearTies) {
  SKIP_WITHOUT_GPU();
  for (const char* config : {"llama-hd128-gqa", "qwen2-bias-tied"}) {
    int flips = 0;
    std::vector<int32_t> tokens = Greedy(Load(SynthDir(config)), 64, 0.05f, &flips);
    EXPECT_EQ(tokens.size(), 64u) << config;
    EXPECT_LE(flips, 2) << config;
  }
}

TEST(CudaModelTest, AFullPoolRefusesTheNewSessionAndKeepsTheOthers) {
  SKIP_WITHOUT_GPU();
  auto m = Load(SourcePath("models/stories260K"));
  auto gpu = MakeEngine(m, "cuda", /*cache_tokens=*/64);  // four blocks of 16
  ASSERT_NE(gpu, nullptr);
  KVCC_ASSERT_OK_AND_ASSIGN(a, gpu->CreateSession());
  const std::vector<int32_t> prompt = RandomIds(40, 512, 3);
  KVCC_ASSERT_OK_AND_ASSIGN(first, gpu->Prefill(a, prompt));
  KVCC_ASSERT_OK_AND_ASSIGN(b, gpu->CreateSession());
  auto refused = gpu->Prefill(b, RandomIds(30, 512, 4));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  // Session a's cache is intact: its logits match a fresh engine's.
  KVCC_ASSERT_OK_AND_ASSIGN(next, gpu->Decode({{a, 5}}));
  auto fresh = MakeEngine(m, "cuda");
  KVCC_ASSERT_OK_AND_ASSIGN(f, fresh->CreateSession());
  KVCC_ASSERT_OK(fresh->Prefill(f, prompt).status());
  KVCC_ASSERT_OK_AND_ASSIGN(want, fresh->Decode({{f, 5}}));
  EXPECT_LT(ScaledError(next[0], want[0]), 1e-6);
}

// ---- Hugging Face transformers on the GPU ----

std::vector<float> ReadFloats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

TEST(CudaModelTest, LogitsMatchTransformersOnTheGpu) {
  SKIP_WITHOUT_GPU();
  const char* python = std::getenv("KVCC_PYTHON");
  if (python == nullptr) GTEST_SKIP() << "KVCC_PYTHON is not set";
  for (const std::string& dir :
       {SourcePath("models/stories260K"), SynthDir("llama-hd128-gqa"), SynthDir("qwen2-bias-tied")}) {
    auto m = Load(dir);
    ASSERT_NE(m, nullptr);
    auto gpu = MakeEngine(m, "cuda");
    ASSERT_NE(gpu, nullptr);
    const std::vector<int32_t> ids = RandomIds(40, gpu->vocab_size(), 9);
    KVCC_ASSERT_OK_AND_ASSIGN(s, gpu->CreateSession());
    KVCC_ASSERT_OK_AND_ASSIGN(got, gpu->PrefillAll(s, ids));
    const std::string tmp = kvcc::testing::TempDir("cuda_hf");
    const std::string ids_file = tmp + "/ids.i32", out_file = tmp + "/logits.f32";
    {
      std::ofstream f(ids_file, std::ios::binary);
      f.write(reinterpret_cast<const char*>(ids.data()), ids.size() * 4);
    }
    const std::string cmd = absl::StrCat(python, " ", SourcePath("tests/python/hf_logits_cuda.py"),
                                         " ", dir, " ", ids_file, " ", out_file);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const std::vector<float> want = ReadFloats(out_file);
    ASSERT_EQ(want.size(), got.size()) << dir;
    EXPECT_LT(ScaledError(got, want), 1e-2) << dir;
  }
}

}  // namespace
}  // namespace kvcc::runtime
