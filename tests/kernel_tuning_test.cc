// runtime/cuda/kernel_tuning: tuning.json round trips (decode entries and cuBLASLt algorithms
// per GEMM shape), files without GEMM entries still read, and malformed files are refused with
// errors naming the file and the key.
#include "runtime/cuda/kernel_tuning.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kvcc::runtime {
namespace {

TEST(KernelTuningTest, RoundTripsAndRefusesBadFiles) {
  KernelTuning t;
  t.device = "NVIDIA H200";
  t.autotuned = true;
  DecodeTuning d;
  d.kernel = "heads=8 kv_heads=4 head_dim=8 block_size=64 cache=i8/online io=f32";
  d.threads = 128;
  d.vec_bytes = 8;
  d.unroll = 4;
  d.buckets = {{{1, 512, 1}, 3.5}, {{64, 2048, 8}, 120}};
  t.decode.push_back(d);
  auto back = ParseTuning(TuningToJson(t), "tuning.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->device, t.device);
  ASSERT_EQ(back->decode.size(), 1u);
  EXPECT_EQ(back->decode[0].buckets[1].bucket.splits, 8);
  EXPECT_EQ(back->decode[0].buckets[1].us, 120);
  ASSERT_NE(back->Find(d.kernel), nullptr);

  const std::string good = TuningToJson(t);
  const std::pair<std::string, std::string> bad[] = {
      {"[]", "not a JSON object"},
      {absl::StrReplaceAll(good, {{"\"vec_bytes\": 8", "\"vec_bytes\": 32"}}), "vec_bytes"},
      {absl::StrReplaceAll(good, {{"\"splits\": 8", "\"splits\": 0"}}), "splits"},
      {absl::StrReplaceAll(good, {{"kvcc-tuning", "other"}}), "format"},
  };
  for (const auto& [text, what] : bad) {
    auto s = ParseTuning(text, "art/tuning.json").status();
    EXPECT_FALSE(s.ok()) << text;
    EXPECT_TRUE(absl::StrContains(s.message(), "art/tuning.json")) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), what)) << s;
  }
  KernelTuning twice = t;
  twice.decode.push_back(d);
  EXPECT_FALSE(ParseTuning(TuningToJson(twice), "t.json").ok());
}

KernelTuning WithGemms() {
  KernelTuning t;
  t.device = "NVIDIA H200";
  t.autotuned = true;
  t.cublaslt_version = 120903;
  GemmTuning tuned;
  tuned.m = 4;
  tuned.n = 12288;
  tuned.k = 4096;
  tuned.heuristic = false;
  tuned.algo = {66, 31, 19, 4, 1, 1, 2, 3, 7};
  tuned.workspace = 1 << 20;
  tuned.us = 21.5;
  tuned.heuristic_us = 30.25;
  tuned.candidates = 8;
  tuned.gemv_timed = true;
  tuned.gemv = "n1_s1_d4";
  tuned.gemv_us = 18.75;
  GemmTuning kept;
  kept.m = 512;
  kept.n = 32000;
  kept.k = 4096;
  kept.dtype = ir::DType::kBF16;
  kept.us = kept.heuristic_us = 410;
  kept.candidates = 5;
  t.gemm = {tuned, kept};
  return t;
}

TEST(KernelTuningTest, GemmAlgorithmsRoundTrip) {
  const KernelTuning t = WithGemms();
  auto back = ParseTuning(TuningToJson(t), "tuning.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->cublaslt_version, 120903);
  ASSERT_EQ(back->gemm.size(), 2u);
  const GemmTuning* g = back->FindGemm(4, 12288, 4096, ir::DType::kF16);
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(g->heuristic);
  EXPECT_TRUE(g->algo == t.gemm[0].algo);
  EXPECT_EQ(g->algo.cluster_shape, 7);
  EXPECT_EQ(g->workspace, 1 << 20);
  EXPECT_EQ(g->us, 21.5);
  EXPECT_EQ(g->heuristic_us, 30.25);
  EXPECT_EQ(g->candidates, 8);
  EXPECT_TRUE(g->gemv_timed);
  EXPECT_EQ(g->gemv, "n1_s1_d4");
  EXPECT_EQ(g->gemv_us, 18.75);
  const GemmTuning* kept = back->FindGemm(512, 32000, 4096, ir::DType::kBF16);
  ASSERT_NE(kept, nullptr);
  EXPECT_TRUE(kept->heuristic);
  EXPECT_FALSE(kept->gemv_timed);  // no "gemv" key: the backend's rule decides
  // Another shape or dtype finds nothing: the runtime asks the heuristic.
  EXPECT_EQ(back->FindGemm(4, 12288, 4096, ir::DType::kBF16), nullptr);
  EXPECT_EQ(back->FindGemm(8, 12288, 4096, ir::DType::kF16), nullptr);
  EXPECT_EQ(TuningToJson(*back), TuningToJson(t));

  // A file without GEMM entries (before they existed) reads with none.
  KernelTuning plain = t;
  plain.gemm.clear();
  plain.cublaslt_version = 0;
  const std::string text = TuningToJson(plain);
  EXPECT_FALSE(absl::StrContains(text, "gemm"));
  auto old = ParseTuning(text, "tuning.json");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_TRUE(old->gemm.empty());
}

TEST(KernelTuningTest, BadGemmEntriesAreNamed) {
  const std::string good = TuningToJson(WithGemms());
  const std::pair<std::string, std::string> bad[] = {
      {absl::StrReplaceAll(good, {{"\"dtype\": \"bf16\"", "\"dtype\": \"f32\""}}),
       "gemm[1].dtype"},
      {absl::StrReplaceAll(good, {{"\"splitk\": 4", "\"splitk\": 0"}}), "gemm[0].algo.splitk"},
      {absl::StrReplaceAll(good, {{"\"m\": 512", "\"m\": 4"}, {"\"n\": 32000", "\"n\": 12288"},
                                  {"\"dtype\": \"bf16\"", "\"dtype\": \"f16\""}}),
       "not listed before"},
      {absl::StrReplaceAll(good, {{"\"m\": 4,", "\"m\": 0,"}}), "gemm[0].m"},
      {absl::StrReplaceAll(good, {{"\"us\": 21.5", "\"us\": -1"}}), "gemm[0].us"},
      {absl::StrReplaceAll(good, {{"\"gemv_us\": 18.75", "\"gemv_us\": -2"}}),
       "gemm[0].gemv_us"},
  };
  for (const auto& [text, what] : bad) {
    auto s = ParseTuning(text, "art/tuning.json").status();
    EXPECT_FALSE(s.ok()) << text;
    EXPECT_TRUE(absl::StrContains(s.message(), "art/tuning.json")) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), what)) << s;
  }
  // A tuned entry without its algorithm; "gemm" not an array.
  nlohmann::json j = nlohmann::json::parse(good);
  j["gemm"][0].erase("algo");
  auto s = ParseTuning(j.dump(), "t.json").status();
  EXPECT_TRUE(absl::StrContains(s.message(), "gemm[0].algo")) << s;
  j = nlohmann::json::parse(good);
  j["gemm"] = 3;
  s = ParseTuning(j.dump(), "t.json").status();
  EXPECT_TRUE(absl::StrContains(s.message(), "gemm")) << s;
}

}  // namespace
}  // namespace kvcc::runtime
