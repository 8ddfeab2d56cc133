// Sessions over stories260K and synth checkpoints: prefill-then-decode equals the
// full-sequence forward, chunked prefill equals one step, batched multi-session decode equals
// single-session decode, chat turns reuse the cache, pool exhaustion and context overflow are
// clean errors that leave other sessions intact.
#include "runtime/engine.h"

#include <cmath>

#include "frontend/hf_importer.h"
#include "testing/synth.h"
#include "runtime/cpu_backend.h"
#include "runtime/log_softmax.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using kvcc::testing::SourcePath;

std::shared_ptr<const ir::Module> Stories() {
  static std::shared_ptr<const ir::Module> m = [] {
    auto r = frontend::ImportHfCheckpoint(SourcePath("models/stories260K"));
    EXPECT_TRUE(r.ok()) << r.status();
    return std::shared_ptr<const ir::Module>(std::move(*r));
  }();
  return m;
}

std::unique_ptr<Engine> MakeEngine(std::shared_ptr<const ir::Module> m, EngineOptions o = {}) {
  auto e = Engine::Create(std::move(m), std::make_unique<CpuBackend>(2), o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

double MaxDiff(const std::vector<float>& a, const float* b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max<double>(worst, std::fabs(a[i] - b[i]));
  return worst;
}

const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378, 432, 269, 300, 353, 286, 270,
                                      1, 266, 360, 293, 480, 323, 339, 273, 265, 290};

// Checks that feeding `tokens` as a prefill of `split` tokens followed by single-token decode
// steps gives the same logits as one full-sequence prefill.
void ExpectIncrementalEqualsFull(std::shared_ptr<const ir::Module> m,
                                 const std::vector<int32_t>& tokens, size_t split, double tol) {
  auto full = MakeEngine(m);
  ASSERT_NE(full, nullptr);
  const int64_t vocab = full->vocab_size();
  KVCC_ASSERT_OK_AND_ASSIGN(s, full->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(all, full->PrefillAll(s, tokens));
  ASSERT_EQ(all.size(), tokens.size() * vocab);

  auto inc = MakeEngine(m);
  KVCC_ASSERT_OK_AND_ASSIGN(t, inc->CreateSession());
  std::vector<int32_t> head(tokens.begin(), tokens.begin() + split);
  KVCC_ASSERT_OK_AND_ASSIGN(last, inc->Prefill(t, head));
  EXPECT_LE(MaxDiff(last, all.data() + (split - 1) * vocab), tol);
  for (size_t i = split; i < tokens.size(); ++i) {
    KVCC_ASSERT_OK_AND_ASSIGN(step, inc->Decode({{t, tokens[i]}}));
    ASSERT_EQ(step.size(), 1u);
    EXPECT_LE(MaxDiff(step[0], all.data() + i * vocab), tol) << "token " << i;
  }
  EXPECT_EQ(inc->SessionLength(t), static_cast<int64_t>(tokens.size()));
}

TEST(EngineTest, PrefillThenDecodeEqualsFullSequenceStories260K) {
  ExpectIncrementalEqualsFull(Stories(), kPrompt, 5, 1e-5);
}

TEST(EngineTest, PrefillThenDecodeEqualsFullSequenceOnSynthCheckpoints) {
  for (const char* config : {"llama-hd64-mha", "mistral-gqa", "qwen2-bias-tied", "internlm2-gqa"}) {
    SCOPED_TRACE(config);
    const std::string dir = kvcc::testing::TempDir(config);
    testing::SynthOptions o;
    o.seed = 3;
    KVCC_ASSERT_OK(testing::SynthesizeCheckpoint(
                       SourcePath(std::string("models/configs/") + config + ".json"), dir, o)
                       .status());
    KVCC_ASSERT_OK_AND_ASSIGN(m, frontend::ImportHfCheckpoint(dir));
    std::vector<int32_t> tokens;
    for (int i = 0; i < 24; ++i) tokens.push_back((i * 37 + 5) % 512);
    ExpectIncrementalEqualsFull(std::shared_ptr<const ir::Module>(std::move(m)), tokens, 9, 1e-4);
  }
}

TEST(EngineTest, ChunkedPrefillEqualsOneStep) {
  EngineOptions chunked;
  chunked.prefill_chunk = 4;
  auto a = MakeEngine(Stories());
  auto b = MakeEngine(Stories(), chunked);
  KVCC_ASSERT_OK_AND_ASSIGN(sa, a->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(sb, b->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(la, a->PrefillAll(sa, kPrompt));
  KVCC_ASSERT_OK_AND_ASSIGN(lb, b->PrefillAll(sb, kPrompt));
  EXPECT_LE(MaxDiff(la, lb.data()), 1e-5);
  KVCC_ASSERT_OK_AND_ASSIGN(last, b->Prefill(sb, {300, 301}));
  KVCC_ASSERT_OK_AND_ASSIGN(one, a->Prefill(sa, {300, 301}));
  EXPECT_LE(MaxDiff(last, one.data()), 1e-5);
}

// PrefillNll (the backend's TargetNll of each chunk's logits) gives exactly the next-token
// log-likelihoods of PrefillAll's logits, across chunk boundaries.
TEST(EngineTest, PrefillNllEqualsTheLogSoftmaxOfEveryLogitRow) {
  EngineOptions chunked;
  chunked.prefill_chunk = 4;
  auto a = MakeEngine(Stories());
  auto b = MakeEngine(Stories(), chunked);
  const int64_t vocab = a->vocab_size();
  KVCC_ASSERT_OK_AND_ASSIGN(sa, a->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(sb, b->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(logits, a->PrefillAll(sa, kPrompt));
  KVCC_ASSERT_OK_AND_ASSIGN(nll, b->PrefillNll(sb, kPrompt));
  ASSERT_EQ(nll.size(), kPrompt.size() - 1);
  for (size_t i = 0; i + 1 < kPrompt.size(); ++i) {
    const float* row = logits.data() + i * vocab;
    EXPECT_NEAR(nll[i], LogSumExp(row, vocab) - row[kPrompt[i + 1]], 1e-4) << "token " << i;
  }
  EXPECT_EQ(b->SessionLength(sb), static_cast<int64_t>(kPrompt.size()));
  KVCC_ASSERT_OK_AND_ASSIGN(one, b->PrefillNll(sb, {300}));
  EXPECT_TRUE(one.empty());  // a single token predicts nothing
}

TEST(EngineTest, BatchedDecodeEqualsSingleSessionDecode) {
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 403, 407, 261}, {1, 266, 360, 293, 480, 323, 339}, {1, 300}};
  // Reference: each session alone in its own engine, greedy.
  std::vector<std::vector<std::vector<float>>> alone(3);
  std::vector<std::vector<int32_t>> next(3);
  for (int p = 0; p < 3; ++p) {
    auto e = MakeEngine(Stories());
    KVCC_ASSERT_OK_AND_ASSIGN(s, e->CreateSession());
    KVCC_ASSERT_OK_AND_ASSIGN(l, e->Prefill(s, prompts[p]));
    for (int step = 0; step < 12; ++step) {
      const int32_t tok = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
      next[p].push_back(tok);
      KVCC_ASSERT_OK_AND_ASSIGN(d, e->Decode({{s, tok}}));
      l = d[0];
      alone[p].push_back(l);
    }
  }
  // All three in one engine, decoded together in every step.
  auto e = MakeEngine(Stories());
  std::vector<int64_t> ids;
  for (int p = 0; p < 3; ++p) {
    KVCC_ASSERT_OK_AND_ASSIGN(s, e->CreateSession());
    ids.push_back(s);
    KVCC_ASSERT_OK(e->Prefill(s, prompts[p]).status());
  }
  for (int step = 0; step < 12; ++step) {
    std::vector<std::pair<int64_t, int32_t>> batch;
    for (int p = 2; p >= 0; --p) batch.push_back({ids[p], next[p][step]});
    KVCC_ASSERT_OK_AND_ASSIGN(out, e->Decode(batch));
    for (int p = 0; p < 3; ++p) {
      EXPECT_LE(MaxDiff(out[2 - p], alone[p][step].data()), 1e-5) << "session " << p << " step " << step;
    }
  }
}

TEST(EngineTest, ChatTurnsKeepTheCache) {
  auto e = MakeEngine(Stories());
  KVCC_ASSERT_OK_AND_ASSIGN(s, e->CreateSession());
  std::vector<int32_t> turn1(kPrompt.begin(), kPrompt.begin() + 8);
  std::vector<int32_t> turn2(kPrompt.begin() + 8, kPrompt.end());
  KVCC_ASSERT_OK(e->Prefill(s, turn1).status());
  KVCC_ASSERT_OK_AND_ASSIGN(second, e->Prefill(s, turn2));
  EXPECT_EQ(e->SessionLength(s), static_cast<int64_t>(kPrompt.size()));
  auto fresh = MakeEngine(Stories());
  KVCC_ASSERT_OK_AND_ASSIGN(f, fresh->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(whole, fresh->Prefill(f, kPrompt));
  EXPECT_LE(MaxDiff(second, whole.data()), 1e-5);
}

TEST(EngineTest, PoolExhaustionFailsCleanlyAndCloseFreesBlocks) {
  EngineOptions o;
  o.block_size = 16;
  o.cache_tokens = 64;  // 4 blocks
  auto e = MakeEngine(Stories(), o);
  KVCC_ASSERT_OK_AND_ASSIGN(a, e->CreateSession());
  KVCC_ASSERT_OK_AND_ASSIGN(b, e->CreateSession());
  std::vector<int32_t> long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt.push_back(kPrompt[i % kPrompt.size()]);
  KVCC_ASSERT_OK(e->Prefill(a, long_prompt).status());  // 3 blocks
  EXPECT_EQ(e->cache().blocks().free_blocks(), 1);
  auto refused = e->Prefill(b, kPrompt);  // 21 tokens need 2 blocks
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(e->SessionLength(b), 0);
  // Session a is untouched: its next step matches an engine that never saw session b.
  KVCC_ASSERT_OK_AND_ASSIGN(next_a, e->Decode({{a, 300}}));
  auto solo = MakeEngine(Stories(), o);
  KVCC_ASSERT_OK_AND_ASSIGN(sa, solo->CreateSession());
  KVCC_ASSERT_OK(solo->Prefill(sa, long_prompt).status());
  KVCC_ASSERT_OK_AND_ASSIGN(want, solo->Decode({{sa, 300}}));
  EXPECT_LE(MaxDiff(next_a[0], want[0].data()), 1e-6);
  KVCC_ASSERT_OK(e->CloseSession(a));
  EXPECT_EQ(e->SessionLength(a), -1);
  EXPECT_EQ(e->cache().blocks().free_blocks(), 4);
  KVCC_ASSERT_OK(e->Prefill(b, kPrompt).status());
  EXPECT_EQ(e->CloseSession(a).code(), absl::StatusCode::kNotFound);
}

TEST(EngineTest, ContextOverflowAndBadRequestsAreErrors) {
  EngineOptions o;
  o.max_context = 24;
  auto e = MakeEngine(Stories(), o);
  KVCC_ASSERT_OK_AND_ASSIGN(s, e->CreateSession());
  KVCC_ASSERT_OK(e->Prefill(s, kPrompt).status());  // 21 tokens
  auto over = e->Prefill(s, {1, 2, 3, 4});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(over.status().message().find("context length of 24"), std::string::npos) << over.status();
  EXPECT_EQ(e->SessionLength(s), 21);
  for (int i = 0; i < 3; ++i) KVCC_ASSERT_OK(e->Decode({{s, 300}}).status());
  EXPECT_EQ(e->Decode({{s, 300}}).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(e->Prefill(s, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Prefill(999, {1}).status().code(), absl::StatusCode::kNotFound);
  KVCC_ASSERT_OK_AND_ASSIGN(t, e->CreateSession());
  EXPECT_EQ(e->Decode({{t, 1}, {t, 2}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Decode({}).status().code(), absl::StatusCode::kInvalidArgument);
  // The model's own context (stories260K: 512) is the default.
  auto d = MakeEngine(Stories());
  EXPECT_EQ(d->max_context(), 512);
}

}  // namespace
}  // namespace kvcc::runtime
