// ir/mapped_file: the mapping holds the file's bytes, and WithPagesPopulating runs its function
// once, on the caller's thread, with the same bytes seen whatever the thread count (also for
// an empty file, which maps nothing).
#include "ir/mapped_file.h"

#include <fstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "ir/xxhash64.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

TEST(MappedFile, PopulatingKeepsTheBytesAndRunsTheFunctionOnce) {
  const std::string path = testing::TempDir("mapped") + "/w.bin";
  std::string bytes((size_t{64} << 20) * 2 + 12345, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 2654435761u >> 13);
  { std::ofstream(path, std::ios::binary) << bytes; }
  auto f = MappedFile::Open(path, "test file");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->size(), bytes.size());
  const uint64_t want = Xxh64Hash(bytes.data(), bytes.size());
  for (int threads : {0, 1, 3, 16}) {
    int calls = 0;
    uint64_t got = 0;
    const std::thread::id caller = std::this_thread::get_id();
    (*f)->WithPagesPopulating(threads, [&] {
      ++calls;
      EXPECT_EQ(std::this_thread::get_id(), caller);
      got = Xxh64Hash((*f)->data(), (*f)->size());
    });
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(got, want) << threads << " threads";
  }
}

TEST(MappedFile, AnEmptyFilePopulatesNothing) {
  const std::string path = testing::TempDir("mapped") + "/empty.bin";
  { std::ofstream(path, std::ios::binary); }
  auto f = MappedFile::Open(path, "test file");
  ASSERT_TRUE(f.ok()) << f.status();
  int calls = 0;
  (*f)->WithPagesPopulating(4, [&] { ++calls; });
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace kvcc::ir
