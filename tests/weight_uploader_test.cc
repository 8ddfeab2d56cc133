#include "runtime/cuda/weight_uploader.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "ir/mapped_file.h"
#include "ir/xxhash64.h"
#include "runtime/cuda/cuda_memory.h"
#include "tests/gpu_skip.h"
#include "tests/test_util.h"

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
  bad = {};
  bad.pinned_bytes = 0;
  s = UploadWeights(nullptr, {{"a", &byte, 1}}, bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("pinned"), std::string::npos) << s.status();
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
  setenv("KVCC_UPLOAD_PINNED_MIB", "256", 1);
  EXPECT_EQ(WeightUploadOptions::FromEnvironment().pinned_bytes, int64_t{256} << 20);
  for (const char* bad : {"0", "-1", "y", "5000", ""}) {
    setenv("KVCC_UPLOAD_PINNED_MIB", bad, 1);
    EXPECT_EQ(WeightUploadOptions::FromEnvironment().pinned_bytes,
              WeightUploadOptions{}.pinned_bytes)
        << bad;
  }
  unsetenv("KVCC_UPLOAD_PINNED_MIB");
}

// Odd sizes across chunk boundaries, more chunks than buffers (buffers are reused after their
// copy is done), and the padding zeroed: the device holds exactly the packed bytes.
TEST(WeightUploader, UploadsBitExact) {
  SKIP_WITHOUT_GPU();
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

// A weights file as kvcc writes one: items at 64-byte aligned offsets (the padding here is
// random, not zero, so an upload that zeroes it instead of copying the file shows), with
// digests per `chunk` bytes.
struct WeightsFile {
  std::string path;
  std::string bytes;
  std::vector<int64_t> sizes, offsets;
  std::shared_ptr<ir::MappedFile> file;
  std::vector<uint64_t> digests;

  WeightsFile(const std::string& name, int64_t chunk) {
    path = testing::TempDir(name) + "/model.weights";
    sizes = {1, 63, 0, 65, 3 << 16 | 7, 4096, 100000, 12345, 1 << 16};
    int64_t total = 0;
    offsets = PackWeightOffsets(sizes, &total);
    std::mt19937 rng(11);
    bytes.resize(total);
    for (char& c : bytes) c = static_cast<char>(rng() | 1);
    std::ofstream(path, std::ios::binary) << bytes;
    for (int64_t at = 0; at < total; at += chunk) {
      digests.push_back(ir::Xxh64Hash(bytes.data() + at, std::min(chunk, total - at)));
    }
    auto f = ir::MappedFile::Open(path);
    EXPECT_TRUE(f.ok()) << f.status();
    if (f.ok()) file = *f;
  }
  std::vector<WeightUploadItem> Items() const {
    std::vector<WeightUploadItem> items;
    for (size_t i = 0; i < sizes.size(); ++i) {
      items.push_back({"w" + std::to_string(i), file->data() + offsets[i], sizes[i]});
    }
    return items;
  }
};

TEST(WeightUploader, RecognisesTheFileLayout) {
  WeightsFile w("uploader_layout", 8192);
  ASSERT_NE(w.file, nullptr);
  ir::WeightsChunkDigests digests(w.file, 8192, w.digests, "model.onnx");
  std::vector<WeightUploadItem> items = w.Items();
  EXPECT_TRUE(ItemsAreFileLayout(items, w.offsets, digests));
  // An item missing shifts the packing of those after it away from the file's offsets.
  std::vector<WeightUploadItem> fewer = items;
  fewer.erase(fewer.begin() + 4);
  int64_t total = 0;
  EXPECT_FALSE(ItemsAreFileLayout(fewer, PackWeightOffsets({1, 63, 0, 65, 4096, 100000, 12345,
                                                            1 << 16}, &total), digests));
  // Bytes outside the file, or one item reaching past its end.
  std::vector<uint8_t> heap(64);
  std::vector<WeightUploadItem> outside = items;
  outside[0].host = heap.data();
  EXPECT_FALSE(ItemsAreFileLayout(outside, w.offsets, digests));
  std::vector<WeightUploadItem> longer = items;
  longer.back().bytes += 4096;
  EXPECT_FALSE(ItemsAreFileLayout(longer, w.offsets, digests));
}

// The verifying upload copies the file (padding included), checks every chunk while staging
// it, and refuses a chunk whose digest differs, naming the file and the chunk; items not in the
// file's layout upload as before and leave the digests to the caller.
TEST(WeightUploader, VerifiesTheChunkDigestsWhileUploading) {
  SKIP_WITHOUT_GPU();
  auto ctx = CudaContext::Create(0);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  WeightsFile w("uploader_verify", 8192);
  ASSERT_NE(w.file, nullptr);
  const std::vector<WeightUploadItem> items = w.Items();
  for (const WeightUploadOptions& o : {WeightUploadOptions{3, 2, 4096},
                                       WeightUploadOptions{1, 1, 65536},
                                       WeightUploadOptions{}}) {
    ir::WeightsChunkDigests digests(w.file, 8192, w.digests, "model.onnx");
    auto up = UploadWeights(*ctx, items, o, &digests);
    ASSERT_TRUE(up.ok()) << up.status();
    EXPECT_TRUE(up->verified);
    EXPECT_TRUE(digests.verified());
    ASSERT_EQ(up->buffer.NumBytes(), static_cast<int64_t>(w.bytes.size()));
    auto host = CopyToHost(*ctx, up->buffer);
    ASSERT_TRUE(host.ok()) << host.status();
    EXPECT_EQ(std::memcmp(host->raw(), w.bytes.data(), w.bytes.size()), 0)
        << "readers " << o.readers << " chunk " << o.chunk_bytes;
  }
  // The prepinned staging: taken by the next verifying upload (bit-exact), once.
  PrepinWeightStaging();
  for (const bool expect_prepinned : {true, false}) {
    ir::WeightsChunkDigests digests(w.file, 8192, w.digests, "model.onnx");
    auto up = UploadWeights(*ctx, items, WeightUploadOptions{3, 2, 4096}, &digests);
    ASSERT_TRUE(up.ok()) << up.status();
    EXPECT_TRUE(up->verified);
    EXPECT_EQ(up->prepinned, expect_prepinned);
    auto host = CopyToHost(*ctx, up->buffer);
    ASSERT_TRUE(host.ok()) << host.status();
    EXPECT_EQ(std::memcmp(host->raw(), w.bytes.data(), w.bytes.size()), 0);
  }
  std::vector<uint64_t> wrong = w.digests;
  wrong[2] ^= 1;
  ir::WeightsChunkDigests bad(w.file, 8192, wrong, "model.onnx");
  auto up = UploadWeights(*ctx, items, WeightUploadOptions{3, 2, 4096}, &bad);
  ASSERT_FALSE(up.ok());
  EXPECT_TRUE(absl::IsDataLoss(up.status())) << up.status();
  EXPECT_NE(up.status().message().find(w.path), std::string::npos) << up.status();
  EXPECT_NE(up.status().message().find("chunk 2 (bytes 16384..24576)"), std::string::npos)
      << up.status();
  EXPECT_FALSE(bad.verified());

  std::vector<WeightUploadItem> fewer = items;
  fewer.erase(fewer.begin() + 4);
  auto plain = UploadWeights(*ctx, fewer, WeightUploadOptions{}, &bad);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->verified);
  EXPECT_FALSE(bad.verified());
}

}  // namespace
}  // namespace kvcc::runtime
