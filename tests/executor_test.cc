// The executor on real and hand-built graphs: stories260K logits against the independent
// float64 reference (../shared/models/stories260K-reference), greedy continuation, the KV
// observer hook, and clear errors for graphs the runtime cannot run.
#include "ir/op_names.h"
#include "runtime/executor.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "frontend/hf_importer.h"
#include "gtest/gtest.h"
#include "ir/builder.h"
#include "ir/kv_cache_scheme.h"
#include "runtime/cpu_backend.h"
#include "ir/kv_quant.h"
#include "passes/execution_fusions.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using kvcc::testing::SharedPath;
using kvcc::testing::SourcePath;

struct Reference {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;  // <s> then 48 greedy tokens
  std::vector<float> logits;    // [31][512]
};

Reference LoadReference() {
  Reference r;
  std::ifstream f(SharedPath("models/stories260K-reference/reference.json"));
  nlohmann::json j = nlohmann::json::parse(f);
  r.prompt = j["prompt_ids_with_bos"].get<std::vector<int32_t>>();
  r.greedy = j["greedy_from_bos_ids"].get<std::vector<int32_t>>();
  std::ifstream lf(SharedPath("models/stories260K-reference/prompt_logits.f32"), std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
  r.logits.resize(bytes.size() / 4);
  std::memcpy(r.logits.data(), bytes.data(), r.logits.size() * 4);
  return r;
}

// One session's cache with room for `tokens` tokens.
std::unique_ptr<KvCache> MakeCache(const ir::Module& m, bool full_precision, int64_t tokens) {
  auto spec = KvCacheSpecFromModule(m, 16, (tokens + 15) / 16, full_precision);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto cache = KvCache::CreateHost(*spec);
  EXPECT_TRUE(cache.ok()) << cache.status();
  EXPECT_TRUE((*cache)->blocks().AddSession(7).ok());
  EXPECT_TRUE((*cache)->blocks().Reserve(7, tokens).ok());
  return *std::move(cache);
}

StepBatch Positions(int64_t session, int64_t start, int64_t n) {
  StepBatch b;
  for (int64_t i = 0; i < n; ++i) {
    b.sessions.push_back(session);
    b.positions.push_back(static_cast<int32_t>(start + i));
  }
  b.ComputeSeqLens();
  return b;
}

class Stories260KTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = frontend::ImportHfCheckpoint(SourcePath("models/stories260K"));
    ASSERT_TRUE(m.ok()) << m.status();
    module_ = *std::move(m);
    ref_ = LoadReference();
    ASSERT_EQ(ref_.prompt.size(), 31u);
    ASSERT_EQ(ref_.logits.size(), 31u * 512u);
  }
  std::unique_ptr<ir::Module> module_;
  Reference ref_;
  CpuBackend backend_{2};
};

TEST_F(Stories260KTest, PromptLogitsMatchFloat64Reference) {
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend_));
  auto cache = MakeCache(*module_, /*full_precision=*/true, 64);
  KVCC_ASSERT_OK_AND_ASSIGN(logits, exec->Run(ref_.prompt, Positions(7, 0, 31), cache.get()));
  ASSERT_EQ(logits.shape(), (std::vector<int64_t>{31, 512}));
  double worst = 0;
  for (int64_t i = 0; i < 31 * 512; ++i) {
    const double ref = ref_.logits[i];
    const double err = std::fabs(logits.data<float>()[i] - ref) / std::max(1.0, std::fabs(ref));
    worst = std::max(worst, err);
  }
  EXPECT_LE(worst, 1e-4) << "max abs error (relative beyond |logit| 1)";
  std::printf("stories260K vs float64 reference: max error %.3g\n", worst);
}

TEST_F(Stories260KTest, F16CacheStaysCloseAndKeepsArgmax) {
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend_));
  auto cache = MakeCache(*module_, /*full_precision=*/false, 64);
  EXPECT_EQ(cache->layout().dtype, ir::DType::kF16);
  KVCC_ASSERT_OK_AND_ASSIGN(logits, exec->Run(ref_.prompt, Positions(7, 0, 31), cache.get()));
  double worst = 0;
  for (int64_t t = 0; t < 31; ++t) {
    const float* row = logits.data<float>() + t * 512;
    const float* ref = ref_.logits.data() + t * 512;
    EXPECT_EQ(std::max_element(row, row + 512) - row, std::max_element(ref, ref + 512) - ref)
        << "position " << t;
    for (int v = 0; v < 512; ++v) worst = std::max<double>(worst, std::fabs(row[v] - ref[v]));
  }
  EXPECT_LE(worst, 2e-2);
  std::printf("stories260K with the f16 cache: max abs error %.3g\n", worst);
}

TEST_F(Stories260KTest, GreedyContinuationMatchesReference) {
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend_));
  auto cache = MakeCache(*module_, /*full_precision=*/false, 64);
  std::vector<int32_t> tokens = {ref_.greedy[0]};
  for (size_t step = 1; step < ref_.greedy.size(); ++step) {
    const int64_t pos = static_cast<int64_t>(tokens.size()) - 1;
    KVCC_ASSERT_OK_AND_ASSIGN(logits, exec->Run({tokens.back()}, Positions(7, pos, 1), cache.get()));
    const float* row = logits.data<float>();
    tokens.push_back(static_cast<int32_t>(std::max_element(row, row + 512) - row));
  }
  EXPECT_EQ(tokens, ref_.greedy);
}

TEST_F(Stories260KTest, MixedStepOfPrefillAndDecodeEqualsSeparateSteps) {
  // One step holding session 1's next token (position 5) and session 2's 3-token prompt
  // (positions 0..2), in interleaved order, against each computed on its own.
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend_));
  auto spec = KvCacheSpecFromModule(*module_, 4, 16);
  KVCC_ASSERT_OK(spec.status());
  KVCC_ASSERT_OK_AND_ASSIGN(mixed, KvCache::CreateHost(*spec));
  KVCC_ASSERT_OK_AND_ASSIGN(alone, KvCache::CreateHost(*spec));
  for (KvCache* c : {mixed.get(), alone.get()}) {
    for (int64_t s : {1, 2}) {
      KVCC_ASSERT_OK(c->blocks().AddSession(s));
      KVCC_ASSERT_OK(c->blocks().Reserve(s, 8));
    }
  }
  const std::vector<int32_t> first(ref_.prompt.begin(), ref_.prompt.begin() + 5);
  KVCC_ASSERT_OK(exec->Run(first, Positions(1, 0, 5), mixed.get()).status());
  KVCC_ASSERT_OK(exec->Run(first, Positions(1, 0, 5), alone.get()).status());
  StepBatch step;
  step.sessions = {2, 1, 2, 2};
  step.positions = {0, 5, 1, 2};
  step.ComputeSeqLens();
  const std::vector<int32_t> ids = {1, ref_.prompt[5], 266, 360};
  KVCC_ASSERT_OK_AND_ASSIGN(together, exec->Run(ids, step, mixed.get()));
  KVCC_ASSERT_OK_AND_ASSIGN(decode, exec->Run({ref_.prompt[5]}, Positions(1, 5, 1), alone.get()));
  KVCC_ASSERT_OK_AND_ASSIGN(prefill, exec->Run({1, 266, 360}, Positions(2, 0, 3), alone.get()));
  auto row = [](const Tensor& t, int r) { return t.data<float>() + r * 512; };
  for (int v = 0; v < 512; ++v) {
    EXPECT_NEAR(row(together, 1)[v], row(decode, 0)[v], 1e-5);
    EXPECT_NEAR(row(together, 0)[v], row(prefill, 0)[v], 1e-5);
    EXPECT_NEAR(row(together, 2)[v], row(prefill, 1)[v], 1e-5);
    EXPECT_NEAR(row(together, 3)[v], row(prefill, 2)[v], 1e-5);
  }
}

// Counts the fused ops the executor's plan calls.
class CountingCpuBackend : public CpuBackend {
 public:
  using CpuBackend::CpuBackend;
  absl::StatusOr<Tensor> RotaryQkvCacheWrite(const Tensor& qkv, int64_t q_width, int64_t kv_width,
                                             const RotaryParams& q_rotary,
                                             const RotaryParams& k_rotary, int layer,
                                             const StepBatch& batch, KvCache* cache) override {
    ++qkv_calls;
    return CpuBackend::RotaryQkvCacheWrite(qkv, q_width, kv_width, q_rotary, k_rotary, layer,
                                           batch, cache);
  }
  absl::StatusOr<Tensor> SiluMulHalves(const Tensor& x) override {
    ++silu_calls;
    return CpuBackend::SiluMulHalves(x);
  }
  int qkv_calls = 0, silu_calls = 0;
};

// On the fused graph (q/k/v and gate/up merged) each layer's split + rotary + cache write and
// split + silu_mul run as one fused step each; with a KV observer (which needs K and V apart)
// the split ops run instead, and the logits are the same bit for bit.
TEST_F(Stories260KTest, FusedPlanStepsEqualTheSplitOps) {
  KVCC_ASSERT_OK(passes::ApplyExecutionFusions(*module_));
  CountingCpuBackend backend(2);
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend));
  auto fused_cache = MakeCache(*module_, false, 64);
  auto split_cache = MakeCache(*module_, false, 64);
  KVCC_ASSERT_OK_AND_ASSIGN(fused, exec->Run(ref_.prompt, Positions(7, 0, 31), fused_cache.get()));
  const int layers = static_cast<int>(module_->config.num_layers);
  EXPECT_EQ(backend.qkv_calls, layers);
  EXPECT_EQ(backend.silu_calls, layers);
  int observed = 0;
  exec->SetKvObserver([&](int, const float*, const float*, int64_t, int, int) { ++observed; });
  KVCC_ASSERT_OK_AND_ASSIGN(split, exec->Run(ref_.prompt, Positions(7, 0, 31), split_cache.get()));
  EXPECT_EQ(observed, layers);
  EXPECT_EQ(backend.qkv_calls, layers);
  EXPECT_EQ(backend.silu_calls, layers);
  ASSERT_EQ(fused.NumBytes(), split.NumBytes());
  EXPECT_EQ(std::memcmp(fused.raw(), split.raw(), fused.NumBytes()), 0);
}

TEST_F(Stories260KTest, LogitRowsSelectTokens) {
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend_));
  auto cache = MakeCache(*module_, true, 64);
  KVCC_ASSERT_OK_AND_ASSIGN(all, exec->Run(ref_.prompt, Positions(7, 0, 31), cache.get()));
  std::vector<int64_t> rows = {30, 4};
  KVCC_ASSERT_OK_AND_ASSIGN(some, exec->Run(ref_.prompt, Positions(7, 0, 31), cache.get(), &rows));
  ASSERT_EQ(some.shape(), (std::vector<int64_t>{2, 512}));
  for (int v = 0; v < 512; ++v) {
    EXPECT_EQ(some.data<float>()[v], all.data<float>()[30 * 512 + v]);
    EXPECT_EQ(some.data<float>()[512 + v], all.data<float>()[4 * 512 + v]);
  }
}

TEST_F(Stories260KTest, KvObserverSeesExactlyWhatTheCacheStores) {
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend_));
  auto cache = MakeCache(*module_, /*full_precision=*/true, 64);
  std::vector<int> layers;
  std::vector<std::vector<float>> ks, vs;
  exec->SetKvObserver([&](int layer, const float* k, const float* v, int64_t tokens, int kv_heads,
                          int head_dim) {
    layers.push_back(layer);
    ks.emplace_back(k, k + tokens * kv_heads * head_dim);
    vs.emplace_back(v, v + tokens * kv_heads * head_dim);
    EXPECT_EQ(tokens, 5);
    EXPECT_EQ(kv_heads, 4);
    EXPECT_EQ(head_dim, 8);
  });
  std::vector<int32_t> ids(ref_.prompt.begin(), ref_.prompt.begin() + 5);
  KVCC_ASSERT_OK(exec->Run(ids, Positions(7, 0, 5), cache.get()).status());
  ASSERT_EQ(layers, (std::vector<int>{0, 1, 2, 3, 4}));
  const std::vector<int32_t>& table = **cache->blocks().Table(7);
  for (int layer = 0; layer < 5; ++layer) {
    for (int t = 0; t < 5; ++t) {
      for (int h = 0; h < 4; ++h) {
        float k[8], v[8];
        cache->ReadRow(layer, KvPart::kKey, table[t / 16], h, t % 16, k);
        cache->ReadRow(layer, KvPart::kValue, table[t / 16], h, t % 16, v);
        for (int j = 0; j < 8; ++j) {
          EXPECT_EQ(k[j], ks[layer][(t * 4 + h) * 8 + j]);
          EXPECT_EQ(v[j], vs[layer][(t * 4 + h) * 8 + j]);
        }
      }
    }
  }
}

TEST_F(Stories260KTest, KvObserverSeesKAfterRotary) {
  // Layer 0's K of a token depends only on the token and its position, so for the same token
  // at positions 0 (no rotation) and 3, K must differ by exactly the rotation.
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend_));
  auto cache = MakeCache(*module_, true, 16);
  std::vector<float> k0;
  exec->SetKvObserver([&](int layer, const float* k, const float*, int64_t tokens, int kv_heads,
                          int head_dim) {
    if (layer == 0) k0.assign(k, k + tokens * kv_heads * head_dim);
  });
  KVCC_ASSERT_OK(exec->Run({403, 403, 403, 403}, Positions(7, 0, 4), cache.get()).status());
  ASSERT_EQ(k0.size(), 4u * 32u);
  std::vector<float> rotated(k0.begin(), k0.begin() + 32);
  auto params = RotaryParams::FromNode(*module_->graph.FindNode("layers.0.k_rotary"));
  KVCC_ASSERT_OK(params.status());
  std::vector<float> inv = RotaryInvFreq(*params, 4);
  for (int h = 0; h < 4; ++h) ApplyRotary(inv.data(), 8, 3, rotated.data() + h * 8);
  double diff = 0, moved = 0;
  for (int j = 0; j < 32; ++j) {
    diff = std::max<double>(diff, std::fabs(rotated[j] - k0[3 * 32 + j]));
    moved = std::max<double>(moved, std::fabs(k0[j] - k0[3 * 32 + j]));
  }
  EXPECT_LE(diff, 1e-5);
  EXPECT_GT(moved, 1e-3) << "position 3 must rotate K";
}

TEST_F(Stories260KTest, QuantizedCacheSchemesRunEndToEnd) {
  // The f32-cache logits, and the per-layer K/V ranges the calibrated schemes need.
  KVCC_ASSERT_OK_AND_ASSIGN(exact_exec, Executor::Create(module_.get(), &backend_));
  std::vector<float> kmin(5, 1e30f), kmax(5, -1e30f), vmin(5, 1e30f), vmax(5, -1e30f);
  exact_exec->SetKvObserver([&](int layer, const float* k, const float* v, int64_t tokens,
                                int kv_heads, int head_dim) {
    for (int64_t i = 0; i < tokens * kv_heads * head_dim; ++i) {
      kmin[layer] = std::min(kmin[layer], k[i]);
      kmax[layer] = std::max(kmax[layer], k[i]);
      vmin[layer] = std::min(vmin[layer], v[i]);
      vmax[layer] = std::max(vmax[layer], v[i]);
    }
  });
  auto exact_cache = MakeCache(*module_, true, 64);
  KVCC_ASSERT_OK_AND_ASSIGN(exact, exact_exec->Run(ref_.prompt, Positions(7, 0, 31), exact_cache.get()));
  auto error_with = [&](ir::DType dtype, ir::KvGranularity g) {
    for (const auto& node : module_->graph.nodes()) {
      if (node->op != ir::op::kKvCacheWrite) continue;
      const int layer = static_cast<int>(*node->Int("layer"));
      ir::KvCacheScheme scheme = ir::KvCacheScheme::Uniform({dtype, g});
      if (g == ir::KvGranularity::kPerLayer) {
        const int levels = dtype == ir::DType::kI8 ? 255 : 15;
        ir::ZpScale kp = ir::CalibratedParams(kmin[layer], kmax[layer], levels);
        ir::ZpScale vp = ir::CalibratedParams(vmin[layer], vmax[layer], levels);
        scheme.k_zp = {kp.zp};
        scheme.k_scale = {kp.scale};
        scheme.v_zp = {vp.zp};
        scheme.v_scale = {vp.scale};
      }
      ir::WriteKvCacheScheme(scheme, node.get());
    }
    auto exec = Executor::Create(module_.get(), &backend_);
    EXPECT_TRUE(exec.ok()) << exec.status();
    auto cache = MakeCache(*module_, false, 64);
    EXPECT_EQ(cache->layout().dtype, dtype);
    auto logits = (*exec)->Run(ref_.prompt, Positions(7, 0, 31), cache.get());
    EXPECT_TRUE(logits.ok()) << logits.status();
    // Mean absolute logit error, and positions whose argmax matches the f32-cache run.
    double sum = 0;
    int agree = 0;
    for (int64_t t = 0; t < 31; ++t) {
      const float* row = logits->data<float>() + t * 512;
      const float* want = exact.data<float>() + t * 512;
      for (int v = 0; v < 512; ++v) sum += std::fabs(row[v] - want[v]);
      agree += std::max_element(row, row + 512) - row == std::max_element(want, want + 512) - want;
    }
    return std::make_pair(sum / (31 * 512), agree);
  };
  const auto i8_layer = error_with(ir::DType::kI8, ir::KvGranularity::kPerLayer);
  const auto i8_online = error_with(ir::DType::kI8, ir::KvGranularity::kOnline);
  const auto i4_online = error_with(ir::DType::kI4, ir::KvGranularity::kOnline);
  std::printf("mean |logit error| vs f32 cache (argmax agreement of 31): i8 per_layer %.3g (%d), "
              "i8 online %.3g (%d), i4 online %.3g (%d)\n",
              i8_layer.first, i8_layer.second, i8_online.first, i8_online.second,
              i4_online.first, i4_online.second);
  // Quantization shows (non-zero error), 8 bits keep the predictions, 4 bits lose more.
  EXPECT_GT(i8_layer.first, 0.0);
  EXPECT_GT(i8_online.first, 0.0);
  EXPECT_LT(i8_layer.first, 0.2);
  EXPECT_LT(i8_online.first, 0.1);
  EXPECT_GE(i8_layer.second, 30);
  EXPECT_GE(i8_online.second, 30);
  EXPECT_GT(i4_online.first, i8_online.first);
}

TEST(ExecutorTest, UnknownOpIsAnErrorNamingTheNode) {
  ir::Module m;
  ir::Graph& g = m.graph;
  ir::Value* ids = *g.AddInput("input_ids", {ir::DType::kI32, {ir::kDynamic}});
  *g.AddInput("positions", {ir::DType::kI32, {ir::kDynamic}});
  ir::TensorType et{ir::DType::kF32, {4, 2}};
  ir::Value* emb = *g.AddWeight("embed", et, ir::WeightData::FromVector(std::vector<uint8_t>(32)));
  ir::Builder b(&g);
  ir::Value* h = *b.Add1(ir::op::kEmbedding, "embed_tokens", {ids, emb});
  auto node = g.AddNode("gelu", "layers.0.act", {h}, {{"act", {ir::DType::kF32, {ir::kDynamic, 2}}}});
  ASSERT_TRUE(node.ok());
  g.AddOutput((*node)->output());
  CpuBackend backend(1);
  auto exec = Executor::Create(&m, &backend);
  ASSERT_FALSE(exec.ok());
  EXPECT_NE(exec.status().message().find("layers.0.act"), std::string::npos) << exec.status();
  EXPECT_NE(exec.status().message().find("gelu"), std::string::npos) << exec.status();
}

TEST(ExecutorTest, UnreadableWeightDtypeIsAnErrorNamingTheWeight) {
  ir::Module m;
  ir::Graph& g = m.graph;
  ir::Value* ids = *g.AddInput("input_ids", {ir::DType::kI32, {ir::kDynamic}});
  *g.AddInput("positions", {ir::DType::kI32, {ir::kDynamic}});
  ir::TensorType et{ir::DType::kI8, {4, 2}};
  ir::Value* emb = *g.AddWeight("embed", et, ir::WeightData::FromVector(std::vector<uint8_t>(8)));
  auto node = g.AddNode("embedding", "embed_tokens", {ids, emb},
                        {{"h", {ir::DType::kF32, {ir::kDynamic, 2}}}});
  ASSERT_TRUE(node.ok());
  g.AddOutput((*node)->output());
  CpuBackend backend(1);
  auto exec = Executor::Create(&m, &backend);
  ASSERT_FALSE(exec.ok());
  EXPECT_NE(exec.status().message().find("'embed'"), std::string::npos) << exec.status();
  EXPECT_NE(exec.status().message().find("i8"), std::string::npos) << exec.status();
}

TEST_F(Stories260KTest, StepErrorsNameTheNode) {
  KVCC_ASSERT_OK_AND_ASSIGN(exec, Executor::Create(module_.get(), &backend_));
  auto cache = MakeCache(*module_, false, 16);
  // Token id beyond the vocabulary.
  auto bad = exec->Run({600}, Positions(7, 0, 1), cache.get());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("embed_tokens"), std::string::npos) << bad.status();
  // Position outside the session's reserved blocks.
  auto outside = exec->Run({1}, Positions(7, 40, 1), cache.get());
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.status().message().find("kv_cache_write"), std::string::npos)
      << outside.status();
}

}  // namespace
}  // namespace kvcc::runtime
