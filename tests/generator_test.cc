// The generation loop and perplexity on stories260K: greedy output equals the reference
// continuation, stop tokens and limits end generation, seeded sampling repeats, and the
// perplexity of the reference prompt equals the reference's mean NLL.
#include "runtime/generator.h"

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "frontend/hf_importer.h"
#include "gtest/gtest.h"
#include "runtime/cpu_backend.h"
#include "runtime/perplexity.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using kvcc::testing::SharedPath;
using kvcc::testing::SourcePath;

nlohmann::json Reference() {
  std::ifstream f(SharedPath("models/stories260K-reference/reference.json"));
  return nlohmann::json::parse(f);
}

std::unique_ptr<Engine> MakeEngine(int64_t max_context = 0) {
  auto m = frontend::ImportHfCheckpoint(SourcePath("models/stories260K"));
  EXPECT_TRUE(m.ok()) << m.status();
  EngineOptions o;
  o.max_context = max_context;
  o.full_precision_cache = true;
  auto e = Engine::Create(std::shared_ptr<const ir::Module>(std::move(*m)),
                          std::make_unique<CpuBackend>(2), o);
  EXPECT_TRUE(e.ok()) << e.status();
  return *std::move(e);
}

absl::Status Keep(std::vector<int32_t>* out, int32_t id) {
  out->push_back(id);
  return absl::OkStatus();
}

TEST(GeneratorTest, GreedyFromBosEqualsReferenceAndStreamsEveryToken) {
  const std::vector<int32_t> want = Reference()["greedy_from_bos_ids"].get<std::vector<int32_t>>();
  auto engine = MakeEngine();
  KVCC_ASSERT_OK_AND_ASSIGN(s, engine->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(sampler, Sampler::Create(SamplingParams()));
  GenerateOptions o;
  o.max_new_tokens = static_cast<int>(want.size()) - 1;
  std::vector<int32_t> history, streamed;
  KVCC_ASSERT_OK_AND_ASSIGN(r, Generate(*engine, s, {want[0]}, sampler, o, &history,
                                        [&](int32_t id) { return Keep(&streamed, id); }));
  EXPECT_EQ(history, want);
  EXPECT_EQ(streamed, std::vector<int32_t>(want.begin() + 1, want.end()));
  EXPECT_EQ(r.tokens, streamed);
  EXPECT_FALSE(r.stopped);
  // Every generated token but the last was fed back into the cache.
  EXPECT_EQ(engine->SessionLength(s), static_cast<int64_t>(want.size()) - 1);
}

TEST(GeneratorTest, StopsAtStopTokensLimitsAndContext) {
  const std::vector<int32_t> want = Reference()["greedy_from_bos_ids"].get<std::vector<int32_t>>();
  auto engine = MakeEngine(/*max_context=*/12);
  KVCC_ASSERT_OK_AND_ASSIGN(sampler, Sampler::Create(SamplingParams()));
  std::vector<int32_t> history, streamed;
  auto keep = [&](int32_t id) { return Keep(&streamed, id); };
  GenerateOptions o;
  o.max_new_tokens = 100;
  o.stop_tokens = {want[4]};  // the 4th generated token
  KVCC_ASSERT_OK_AND_ASSIGN(s, engine->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(stopped, Generate(*engine, s, {want[0]}, sampler, o, &history, keep));
  EXPECT_TRUE(stopped.stopped);
  EXPECT_EQ(stopped.tokens, std::vector<int32_t>(want.begin() + 1, want.begin() + 4));

  o.stop_tokens.clear();
  KVCC_ASSERT_OK_AND_ASSIGN(t, engine->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(full, Generate(*engine, t, {want[0]}, sampler, o, &history, keep));
  EXPECT_TRUE(full.context_full);
  EXPECT_EQ(full.tokens.size(), 12u);  // 11 fed back + the last sampled one
  EXPECT_EQ(engine->SessionLength(t), 12);

  KVCC_ASSERT_OK_AND_ASSIGN(u, engine->CreateSession());
  EXPECT_EQ(Generate(*engine, u, {}, sampler, o, &history, keep).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> too_long(13, 300);
  EXPECT_EQ(Generate(*engine, u, too_long, sampler, o, &history, keep).status().code(),
            absl::StatusCode::kOutOfRange);
  // A callback error stops generation with that error.
  auto fail = Generate(*engine, u, {1}, sampler, o, &history,
                       [](int32_t) { return absl::CancelledError("reader went away"); });
  EXPECT_EQ(fail.status().code(), absl::StatusCode::kCancelled);
}

TEST(GeneratorTest, SeededSamplingIsReproducible) {
  auto run = [](uint64_t seed) {
    auto engine = MakeEngine();
    SamplingParams p;
    p.temperature = 0.9;
    p.top_p = 0.95;
    p.top_k = 40;
    p.seed = seed;
    Sampler sampler = *Sampler::Create(p);
    std::vector<int32_t> history, out;
    GenerateOptions o;
    o.max_new_tokens = 40;
    int64_t s = *engine->CreateSession();
    EXPECT_TRUE(Generate(*engine, s, {1, 403}, sampler, o, &history,
                         [&](int32_t id) { return Keep(&out, id); })
                    .ok());
    return out;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

// Without a logits callback the backend samples (Backend::SampleRows); with one the generator
// samples the copied logits itself. Both take the same draws, so they continue identically.
TEST(GeneratorTest, SamplingOnTheBackendEqualsSamplingTheHostLogits) {
  auto run = [](bool host_logits) {
    auto engine = MakeEngine();
    SamplingParams p;
    p.temperature = 0.8;
    p.top_p = 0.9;
    p.top_k = 30;
    p.repetition_penalty = 1.2;
    p.seed = 17;
    Sampler sampler = *Sampler::Create(p);
    std::vector<int32_t> history, out;
    GenerateOptions o;
    o.max_new_tokens = 40;
    int64_t seen = 0;
    if (host_logits) o.on_logits = [&](const float*, int64_t) { ++seen; };
    int64_t s = *engine->CreateSession();
    EXPECT_TRUE(Generate(*engine, s, {1, 403, 407}, sampler, o, &history,
                         [&](int32_t id) { return Keep(&out, id); })
                    .ok());
    EXPECT_EQ(seen, host_logits ? static_cast<int64_t>(out.size()) : 0);
    return out;
  };
  const std::vector<int32_t> on_backend = run(false);
  EXPECT_EQ(on_backend.size(), 40u);
  EXPECT_EQ(on_backend, run(true));
}

TEST(PerplexityTest, EqualsTheReferenceMeanNll) {
  nlohmann::json ref = Reference();
  auto engine = MakeEngine();
  const std::vector<int32_t> prompt = ref["prompt_ids_with_bos"].get<std::vector<int32_t>>();
  KVCC_ASSERT_OK_AND_ASSIGN(r, Perplexity(*engine, {prompt, prompt}));
  EXPECT_EQ(r.windows, 2);
  EXPECT_EQ(r.tokens, 60);
  EXPECT_NEAR(r.nll, ref["prompt_mean_nll_nats"].get<double>(), 1e-5);
  EXPECT_NEAR(r.ppl, ref["prompt_ppl"].get<double>(), 1e-5);
  EXPECT_EQ(engine->cache().blocks().Sessions().size(), 0u);  // every window's session closed
  EXPECT_FALSE(Perplexity(*engine, {}).ok());
  EXPECT_FALSE(Perplexity(*engine, {{1}}).ok());
}

}  // namespace
}  // namespace kvcc::runtime
