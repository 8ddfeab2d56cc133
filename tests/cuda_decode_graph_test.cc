// CUDA graphs for decode steps (runtime/cuda/decode_graph.h) on stories260K: a replay computes
// bit for bit what the eager step computes at the same batch; padded buckets match the eager
// step and read none of the blocks their sessions do not own (NaN-filled); sessions joining
// and leaving between replays get the eager logits; replays allocate nothing; graphs can be
// turned off. Skips without a device.
#include "runtime/cuda/decode_graph.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/gemv_choice.h"
#include "tests/gpu_skip.h"
#include "runtime/engine.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/kv_poison.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

const std::string& kKernelCacheDir = testing::FreshKernelCacheDir();

using Logits = std::vector<std::vector<float>>;
using StepTokens = std::vector<std::pair<int64_t, int32_t>>;

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = 1 + (i * 37 + salt * 11) % 500;
  return ids;
}

CudaBackend* Cuda(Engine& e) { return dynamic_cast<CudaBackend*>(&e.backend()); }
CudaDecodeGraphs* Graphs(Engine& e) {
  return dynamic_cast<CudaDecodeGraphs*>(Cuda(e)->decode_graphs());
}

bool BitEqual(const Logits& a, const Logits& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size() ||
        std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

// Largest |a - b| relative to the largest |b|, and whether everything is finite.
double RelDiff(const Logits& a, const Logits& b, bool* finite) {
  double diff = 0, scale = 1e-30;
  *finite = true;
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a[i].size(); ++j) {
      *finite = *finite && std::isfinite(a[i][j]);
      diff = std::max(diff, double(std::fabs(a[i][j] - b[i][j])));
      scale = std::max(scale, double(std::fabs(b[i][j])));
    }
  }
  return diff / scale;
}

// `n` sessions with prompts of different lengths (interleaved block tables).
std::vector<int64_t> OpenSessions(Engine& e, int n) {
  std::vector<int64_t> s;
  for (int i = 0; i < n; ++i) s.push_back(*e.CreateSession());
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < n; ++i) EXPECT_TRUE(e.Prefill(s[i], Prompt(9 + 5 * i, round * 7 + i)).ok());
  }
  return s;
}

// Decodes `step`, then forgets the appended tokens so the same step can run again.
Logits DecodeAndRewind(Engine& e, const StepTokens& step) {
  auto out = e.Decode(step);
  EXPECT_TRUE(out.ok()) << out.status();
  for (const auto& [session, token] : step) {
    EXPECT_TRUE(e.TruncateSession(session, e.SessionLength(session) - 1).ok());
  }
  return out.ok() ? *out : Logits{};
}

TEST(CudaDecodeGraphTest, ReplayIsBitIdenticalToTheEagerStepAtEveryBucketSize) {
  SKIP_WITHOUT_GPU();
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_NE(gpu, nullptr);
  std::vector<int64_t> s = OpenSessions(*gpu, 8);
  for (int n : {1, 2, 4, 8}) {
    StepTokens step;
    for (int i = 0; i < n; ++i) step.push_back({s[i], 261 + 3 * i});
    Cuda(*gpu)->EnableDecodeGraphs(false);
    const Logits eager = DecodeAndRewind(*gpu, step);
    Cuda(*gpu)->EnableDecodeGraphs(true);
    const int64_t captures = Graphs(*gpu)->stats().captures;
    const Logits first = DecodeAndRewind(*gpu, step);  // captured, then replayed
    const Logits again = DecodeAndRewind(*gpu, step);  // replayed
    ASSERT_TRUE(Graphs(*gpu)->disabled().ok()) << Graphs(*gpu)->disabled();
    EXPECT_EQ(Graphs(*gpu)->stats().captures, captures + 1) << "batch " << n;
    EXPECT_TRUE(BitEqual(first, eager)) << "batch " << n;
    EXPECT_TRUE(BitEqual(again, eager)) << "batch " << n;
  }
}

// Programmatic dependent launch (on by default on sm_90+) changes when kernels start, never
// what they compute: with the rule's GEMVs and with the tensor-core GEMV forced (its weight
// chunks loaded, and more prefetched into the L2, before the dependency wait), eager steps and
// replays with it give the logits of ordinary launches bit for bit.
TEST(CudaDecodeGraphTest, ProgrammaticLaunchesGiveTheLogitsOfOrdinaryOnes) {
  SKIP_WITHOUT_GPU();
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_NE(gpu, nullptr);
  std::vector<int64_t> s = OpenSessions(*gpu, 4);
  CudaBackend* cuda = Cuda(*gpu);
  for (int gemv : {kGemvByRule, 0}) {
    for (int n : {1, 4}) {
      StepTokens step;
      for (int i = 0; i < n; ++i) step.push_back({s[i], 77 + 5 * i});
      cuda->set_gemv_choice(gemv);
      cuda->set_programmatic_launch(false);
      cuda->EnableDecodeGraphs(false);
      const Logits ordinary = DecodeAndRewind(*gpu, step);
      for (int l2 : {0, 64}) {
        SCOPED_TRACE(::testing::Message() << "gemv " << gemv << " batch " << n << " l2 " << l2);
        cuda->set_programmatic_launch(true);
        cuda->set_gemv_l2_prefetch(l2);
        cuda->EnableDecodeGraphs(false);
        EXPECT_TRUE(BitEqual(DecodeAndRewind(*gpu, step), ordinary));
        cuda->EnableDecodeGraphs(true);
        const Logits first = DecodeAndRewind(*gpu, step);
        const Logits again = DecodeAndRewind(*gpu, step);
        ASSERT_TRUE(Graphs(*gpu)->disabled().ok()) << Graphs(*gpu)->disabled();
        EXPECT_TRUE(BitEqual(first, ordinary));
        EXPECT_TRUE(BitEqual(again, ordinary));
      }
    }
  }
  cuda->set_gemv_choice(kGemvByRule);
}

TEST(CudaDecodeGraphTest, PaddedBucketsMatchTheEagerStepAndNeverReadOtherBlocks) {
  SKIP_WITHOUT_GPU();
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_NE(gpu, nullptr);
  std::vector<int64_t> s = OpenSessions(*gpu, 6);
  // Sessions 0, 2, 4: a batch of 3 in the bucket of 4.
  const StepTokens step = {{s[0], 261}, {s[2], 378}, {s[4], 42}};
  Cuda(*gpu)->EnableDecodeGraphs(false);
  const Logits eager = DecodeAndRewind(*gpu, step);
  Cuda(*gpu)->EnableDecodeGraphs(true);
  const Logits before = DecodeAndRewind(*gpu, step);
  ASSERT_TRUE(Graphs(*gpu)->disabled().ok()) << Graphs(*gpu)->disabled();
  bool finite = false;
  EXPECT_LE(RelDiff(before, eager, &finite), 1e-3);
  EXPECT_TRUE(finite);

  // NaN (0xffff in f16) in every block the step's sessions do not own, in every layer.
  auto poisoned = testing::PoisonBlocksExcept(*gpu, {s[0], s[2], s[4]});
  ASSERT_TRUE(poisoned.ok()) << poisoned.status();
  EXPECT_GT(*poisoned, 3);
  const int64_t replays = Graphs(*gpu)->stats().replays;
  const Logits after = DecodeAndRewind(*gpu, step);
  EXPECT_EQ(Graphs(*gpu)->stats().replays, replays + 1);
  EXPECT_TRUE(BitEqual(after, before));
  EXPECT_LE(RelDiff(after, eager, &finite), 1e-3);
  EXPECT_TRUE(finite);
}

TEST(CudaDecodeGraphTest, SessionsJoiningAndLeavingBetweenReplaysGetTheEagerLogits) {
  SKIP_WITHOUT_GPU();
  auto graphs = testing::Stories260KEngine("cuda");
  auto eager = testing::Stories260KEngine("cuda");
  ASSERT_NE(graphs, nullptr);
  ASSERT_NE(eager, nullptr);
  Cuda(*eager)->EnableDecodeGraphs(false);
  // The same sessions (same ids, prompts and order) in both engines.
  std::vector<int64_t> sg = OpenSessions(*graphs, 7), se = OpenSessions(*eager, 7);
  ASSERT_EQ(sg, se);
  std::vector<int32_t> next(7, 100);
  // Which sessions step together, changing between steps; 6 and 1 close on the way.
  const std::vector<std::vector<int>> plan = {{0, 1, 2}, {0, 1, 2}, {0, 2, 3, 4, 5}, {2, 5},
                                              {0, 2, 3, 4, 5, 6}, {2, 3, 4, 5, 6}, {3},
                                              {0, 2, 3, 4, 5}, {0, 2, 3, 4, 5}};
  for (size_t k = 0; k < plan.size(); ++k) {
    for (auto [at, closing] : {std::pair<size_t, int>{5, 1}, {7, 6}}) {
      if (k == at) {
        ASSERT_TRUE(graphs->CloseSession(sg[closing]).ok());
        ASSERT_TRUE(eager->CloseSession(se[closing]).ok());
      }
    }
    StepTokens step;
    for (int i : plan[k]) step.push_back({sg[i], next[i]});
    auto a = graphs->Decode(step);
    auto b = eager->Decode(step);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    bool finite = false;
    EXPECT_LE(RelDiff(*a, *b, &finite), 1e-3) << "step " << k;
    EXPECT_TRUE(finite) << "step " << k;
    const size_t n = step.size();
    if (n == 1 || n == 2 || n == 4 || n == 8) {
      EXPECT_TRUE(BitEqual(*a, *b)) << "step " << k;
    }
    for (size_t r = 0; r < n; ++r) {
      const std::vector<float>& row = (*b)[r];
      next[plan[k][r]] =
          static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
    }
  }
  ASSERT_TRUE(Graphs(*graphs)->disabled().ok()) << Graphs(*graphs)->disabled();
  EXPECT_GE(Graphs(*graphs)->stats().replays, static_cast<int64_t>(plan.size()));
}

TEST(CudaDecodeGraphTest, ReplaysAllocateNothing) {
  SKIP_WITHOUT_GPU();
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_NE(gpu, nullptr);
  std::vector<int64_t> s = OpenSessions(*gpu, 3);
  StepTokens step = {{s[0], 5}, {s[1], 6}, {s[2], 7}};
  auto decode = [&]() {
    auto out = gpu->Decode(step);
    ASSERT_TRUE(out.ok()) << out.status();
  };
  decode();
  decode();
  const int64_t misses = Cuda(*gpu)->block_stats().misses;
  const int64_t pool_misses = Graphs(*gpu)->pool_stats().misses;
  const int64_t captures = Graphs(*gpu)->stats().captures;
  for (int i = 0; i < 4; ++i) decode();
  EXPECT_EQ(Cuda(*gpu)->block_stats().misses, misses);
  EXPECT_EQ(Graphs(*gpu)->pool_stats().misses, pool_misses);
  EXPECT_EQ(Graphs(*gpu)->stats().captures, captures);
  EXPECT_GE(Graphs(*gpu)->stats().replays, 6);
}

TEST(CudaDecodeGraphTest, GraphsCanBeTurnedOffAndPrefillStaysEager) {
  SKIP_WITHOUT_GPU();
  auto gpu = testing::Stories260KEngine("cuda");
  ASSERT_NE(gpu, nullptr);
  std::vector<int64_t> s = OpenSessions(*gpu, 1);  // prefill: not a decode step
  EXPECT_EQ(Graphs(*gpu)->stats().captures, 0);
  EXPECT_EQ(Graphs(*gpu)->stats().replays, 0);
  Cuda(*gpu)->EnableDecodeGraphs(false);
  EXPECT_EQ(Cuda(*gpu)->decode_graphs(), nullptr);
  ASSERT_TRUE(gpu->Decode({{s[0], 9}}).ok());
  Cuda(*gpu)->EnableDecodeGraphs(true);
  EXPECT_EQ(Graphs(*gpu)->stats().replays, 0);
  ASSERT_TRUE(gpu->Decode({{s[0], 9}}).ok());
  EXPECT_EQ(Graphs(*gpu)->stats().replays, 1);
}

}  // namespace
}  // namespace kvcc::runtime
