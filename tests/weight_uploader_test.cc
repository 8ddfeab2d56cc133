#include "runtime/cuda/weight_uploader.h"

#include <cstdlib>
#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "runtime/cuda/cuda_memory.h"

namespace kvcc::runtime {
namespace {

TEST(WeightUploader, PacksAtAlignedOffsets) {
  int64_t total = 0;
  const std::vector<int64_t> offsets = PackWeightOffsets({1, 0, 64, 65, 3}, &total);
  EXPECT_EQ(offsets, (std::vector<int64_t>{0, 64, 64, 128, 256}));
  EXPECT_EQ(total, 320);
  EXPECT_TRUE(PackWeightOffsets({}, &total).empty());
  EXPECT_EQ(total, 0);
}

TEST(WeightUploader, RefusesBadItemsAndOptions) {
  const uint8_t byte = 7;
  auto s = UploadWeights(nullptr, {{"a", &byte, 1}, {"blk.0.wq", nullptr, 16}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("blk.0.wq"), std::string::npos) << s.status();
  s = UploadWeights(nullptr, {{"neg", &byte, -1}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("neg"), std::string::npos) << s.status();
  WeightUploadOptions bad;
  bad.chunk_bytes = 4096 + 1;
  EXPECT_FALSE(UploadWeights(nullptr, {{"a", &byte, 1}}, bad).ok());
  bad = {};
  bad.readers = 0;
  EXPECT_FALSE(UploadWeights(nullptr, {{"a", &byte, 1}}, bad).ok());
  bad = {};
  bad.buffers = 0;
  EXPECT_FALSE(UploadWeights(nullptr, {{"a", &byte, 1}}, bad).ok());
  // Good items reach the context check (never a crash without one).
  EXPECT_FALSE(UploadWeights(nullptr, {{"a", &byte, 1}}).ok());
}

TEST(WeightUploader, ReadersFromTheEnvironment) {
  setenv("KVCC_UPLOAD_THREADS", "3", 1);
  EXPECT_EQ(WeightUploadOptions::FromEnvironment().readers, 3);
  for (const char* bad : {"0", "-2", "x", "1000", ""}) {
    setenv("KVCC_UPLOAD_THREADS", bad, 1);
    EXPECT_EQ(WeightUploadOptions::FromEnvironment().readers, WeightUploadOptions{}.readers) << bad;
  }
  unsetenv("KVCC_UPLOAD_THREADS");
}

// Odd sizes across chunk boundaries, more chunks than buffers (buffers are reused after their
// copy is done), and the padding zeroed: the device holds exactly the packed bytes.
TEST(WeightUploader, UploadsBitExact) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto ctx = CudaContext::Create(0);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  std::mt19937 rng(5);
  const std::vector<int64_t> sizes = {1, 63, 0, 65, 3 << 20 | 7, 4096, 100000, 12345, 1 << 20};
  std::vector<std::vector<uint8_t>> data;
  std::vector<WeightUploadItem> items;
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<uint8_t> d(sizes[i]);
    for (uint8_t& b : d) b = static_cast<uint8_t>(rng() | 1);  // never 0, unlike padding
    data.push_back(std::move(d));
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    items.push_back({"w" + std::to_string(i), data[i].data(), sizes[i]});
  }
  for (const WeightUploadOptions& o : {WeightUploadOptions{3, 2, 8192},
                                       WeightUploadOptions{1, 1, 65536},
                                       WeightUploadOptions{}}) {
    auto up = UploadWeights(*ctx, items, o);
    ASSERT_TRUE(up.ok()) << up.status();
    int64_t total = 0;
    EXPECT_EQ(up->offsets, PackWeightOffsets(sizes, &total));
    ASSERT_EQ(up->buffer.NumBytes(), total);
    auto host = CopyToHost(*ctx, up->buffer);
    ASSERT_TRUE(host.ok()) << host.status();
    const auto* got = static_cast<const uint8_t*>(host->raw());
    std::vector<uint8_t> want(total, 0);
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] > 0) std::memcpy(want.data() + up->offsets[i], data[i].data(), sizes[i]);
    }
    EXPECT_EQ(std::memcmp(got, want.data(), total), 0) << "chunk " << o.chunk_bytes;
    int64_t sum = 0;
    for (int64_t b : sizes) sum += b;
    EXPECT_EQ(up->bytes, sum);
    EXPECT_GT(up->chunks, 0);
  }
}

}  // namespace
}  // namespace kvcc::runtime
