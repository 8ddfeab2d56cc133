// Tests for ir/file_read: regular files only (FIFOs, devices and directories refused without
// blocking, each named for what it is), size caps, and NotFound for a missing path.
#include "ir/file_read.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

void ExpectRefused(const absl::StatusOr<std::string>& read, absl::StatusCode code,
                   const std::vector<std::string>& needles) {
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), code) << read.status();
  for (const std::string& n : needles) {
    EXPECT_NE(read.status().message().find(n), std::string::npos) << read.status();
  }
}

TEST(FileReadTest, ReadsARegularFileWhole) {
  const std::string path = testing::TempDir("regular") + "/f.txt";
  std::ofstream(path, std::ios::binary) << std::string("a\0b", 3);
  KVCC_ASSERT_OK_AND_ASSIGN(text, ReadRegularFile(path, 3, "config"));
  EXPECT_EQ(text, std::string("a\0b", 3));
  ExpectRefused(ReadRegularFile(path, 2, "config"), absl::StatusCode::kInvalidArgument,
                {"config ", path, "3 bytes", "limit of 2"});
  const std::string empty = testing::TempDir("regular") + "/empty";
  std::ofstream(empty).flush();
  KVCC_ASSERT_OK_AND_ASSIGN(none, ReadRegularFile(empty, 0));
  EXPECT_TRUE(none.empty());
}

TEST(FileReadTest, MissingPathIsNotFound) {
  ExpectRefused(ReadRegularFile("/nonexistent/kv_params.json", 10, "kv_params"),
                absl::StatusCode::kNotFound, {"kv_params /nonexistent/kv_params.json"});
}

TEST(FileReadTest, NonRegularFilesAreNamedAndNeverBlock) {
  const std::string dir = testing::TempDir("special");
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // No writer ever opens the FIFO: a blocking open or read would hang here.
  ExpectRefused(ReadRegularFile(fifo, 100, "kv_params"), absl::StatusCode::kInvalidArgument,
                {fifo, "is a FIFO", "expected a regular file"});
  ExpectRefused(ReadRegularFile(dir, 100), absl::StatusCode::kInvalidArgument, {"is a directory"});
  ExpectRefused(ReadRegularFile("/dev/zero", 100), absl::StatusCode::kInvalidArgument,
                {"is a character device"});
  // A symlink is followed to what it names: /dev/zero is never read without bound.
  const std::string link = dir + "/kv_params.json";
  std::filesystem::create_symlink("/dev/zero", link);
  ExpectRefused(ReadRegularFile(link, 100), absl::StatusCode::kInvalidArgument,
                {"is a character device"});
  auto fd = OpenRegularFile(fifo, "weights");
  ASSERT_FALSE(fd.ok());
  EXPECT_NE(fd.status().message().find("weights"), std::string::npos);
}

TEST(FileReadTest, NonRegularKindNamesEachKind) {
  EXPECT_EQ(NonRegularKind(S_IFREG), "");
  EXPECT_EQ(NonRegularKind(S_IFDIR), "a directory");
  EXPECT_EQ(NonRegularKind(S_IFIFO), "a FIFO");
  EXPECT_EQ(NonRegularKind(S_IFCHR), "a character device");
  EXPECT_EQ(NonRegularKind(S_IFBLK), "a block device");
  EXPECT_EQ(NonRegularKind(S_IFSOCK), "a socket");
}

}  // namespace
}  // namespace kvcc::ir
