#include "ir/weights_digest.h"

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ir/mapped_file.h"
#include "ir/xxhash64.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

// A file of `size` seeded bytes and its digests per `chunk` bytes.
std::shared_ptr<MappedFile> WriteFile(const std::string& path, int64_t size, int64_t chunk,
                                      std::vector<uint64_t>* digests) {
  std::mt19937 rng(3);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  std::ofstream(path, std::ios::binary) << bytes;
  digests->clear();
  for (int64_t at = 0; at < size; at += chunk) {
    digests->push_back(Xxh64Hash(bytes.data() + at, std::min(chunk, size - at)));
  }
  auto file = MappedFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  return file.ok() ? *file : nullptr;
}

TEST(WeightsChunkDigests, ChecksEveryChunkAndNamesTheBadOne) {
  const std::string path = testing::TempDir("weights_digest") + "/model.weights";
  std::vector<uint64_t> digests;
  auto file = WriteFile(path, 5 * 1000 + 17, 1000, &digests);
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(digests.size(), 6u);
  WeightsChunkDigests good(file, 1000, digests, "x/model.onnx");
  EXPECT_EQ(good.ChunkEnd(5), 5017);
  EXPECT_FALSE(good.verified());
  EXPECT_TRUE(good.CheckChunk(5, digests[5]).ok());
  EXPECT_TRUE(good.CheckAll().ok());
  EXPECT_TRUE(good.verified());

  std::vector<uint64_t> wrong = digests;
  wrong[3] ^= 1;
  WeightsChunkDigests bad(file, 1000, wrong, "x/model.onnx");
  const absl::Status s = bad.CheckAll();
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  for (const std::string& needle :
       {path, std::string("chunk 3 (bytes 3000..4000)"), std::string("x/model.onnx")}) {
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  }
  EXPECT_FALSE(bad.verified());
  EXPECT_FALSE(bad.CheckChunk(6, 0).ok());  // no such chunk
  EXPECT_FALSE(bad.CheckChunk(-1, 0).ok());
}

}  // namespace
}  // namespace kvcc::ir
