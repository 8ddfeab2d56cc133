// runtime/cuda/kernel_tuning: tuning.json round trips, and malformed files are refused with
// errors naming the file and the key.
#include "runtime/cuda/kernel_tuning.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"

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

}  // namespace
}  // namespace kvcc::runtime
