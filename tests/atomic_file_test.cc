// Atomic file writes: a new or replaced regular file, symlinks written through, non-regular
// targets (devices, FIFOs, directories) refused and left alone, and write errors (EFBIG past
// RLIMIT_FSIZE) reported with the path and no temporary file left behind.
#include "ir/atomic_file.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

namespace fs = std::filesystem;

// Names in `dir` other than `keep`: a leftover temporary shows up here.
std::vector<std::string> Others(const std::string& dir, const std::vector<std::string>& keep) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (std::find(keep.begin(), keep.end(), name) == keep.end()) out.push_back(name);
  }
  return out;
}

void ExpectError(const absl::Status& s, const std::string& needle) {
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
}

TEST(AtomicFileTest, CreatesAndReplacesKeepingPermissions) {
  const std::string dir = testing::TempDir("atomic_file_replace");
  const std::string path = dir + "/out.txt";
  KVCC_ASSERT_OK(WriteFileAtomically(path, "first"));
  EXPECT_EQ(testing::ReadFileBytes(path), "first");
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  KVCC_ASSERT_OK(WriteFileAtomically(path, "second, longer"));
  EXPECT_EQ(testing::ReadFileBytes(path), "second, longer");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(Others(dir, {"out.txt"}).empty());
}

TEST(AtomicFileTest, UncommittedWriteLeavesTheOldFile) {
  const std::string dir = testing::TempDir("atomic_file_abandon");
  const std::string path = dir + "/out.txt";
  KVCC_ASSERT_OK(WriteFileAtomically(path, "old"));
  {
    KVCC_ASSERT_OK_AND_ASSIGN(f, AtomicFile::Create(path));
    KVCC_ASSERT_OK(f->Write("new but never committed"));
  }
  EXPECT_EQ(testing::ReadFileBytes(path), "old");
  EXPECT_TRUE(Others(dir, {"out.txt"}).empty());
}

TEST(AtomicFileTest, WritesThroughSymlinks) {
  const std::string dir = testing::TempDir("atomic_file_symlink");
  fs::create_directories(dir + "/real");
  KVCC_ASSERT_OK(WriteFileAtomically(dir + "/real/target.bin", "old"));
  // A relative link, and a link to that link.
  fs::create_symlink("real/target.bin", dir + "/link.bin");
  fs::create_symlink(dir + "/link.bin", dir + "/link2.bin");
  KVCC_ASSERT_OK(WriteFileAtomically(dir + "/link2.bin", "through two links"));
  EXPECT_TRUE(fs::is_symlink(dir + "/link.bin"));
  EXPECT_TRUE(fs::is_symlink(dir + "/link2.bin"));
  EXPECT_EQ(testing::ReadFileBytes(dir + "/real/target.bin"), "through two links");
  // A dangling link creates the file it names.
  fs::create_symlink("real/new.bin", dir + "/dangling.bin");
  KVCC_ASSERT_OK(WriteFileAtomically(dir + "/dangling.bin", "created"));
  EXPECT_TRUE(fs::is_symlink(dir + "/dangling.bin"));
  EXPECT_EQ(testing::ReadFileBytes(dir + "/real/new.bin"), "created");
  EXPECT_TRUE(Others(dir + "/real", {"target.bin", "new.bin"}).empty());
  // A link loop is an error, not a hang.
  fs::create_symlink("loop_b", dir + "/loop_a");
  fs::create_symlink("loop_a", dir + "/loop_b");
  ExpectError(WriteFileAtomically(dir + "/loop_a", "x"), "symlink hops");
}

TEST(AtomicFileTest, RefusesNonRegularTargets) {
  const std::string dir = testing::TempDir("atomic_file_nonregular");
  // A character device (as root the old writer replaced /dev/full with a regular file).
  ExpectError(WriteFileAtomically("/dev/null", "x"), "/dev/null: it is a character device");
  struct stat st;
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  // A link to one.
  fs::create_symlink("/dev/full", dir + "/to_full");
  ExpectError(WriteFileAtomically(dir + "/to_full", "x"), "character device");
  // A FIFO and a directory.
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0644), 0);
  ExpectError(WriteFileAtomically(dir + "/fifo", "x"), "it is a FIFO");
  EXPECT_TRUE(fs::is_fifo(dir + "/fifo"));
  fs::create_directories(dir + "/sub");
  ExpectError(WriteFileAtomically(dir + "/sub", "x"), "it is a directory");
  EXPECT_TRUE(fs::is_directory(dir + "/sub"));
  EXPECT_TRUE(Others(dir, {"to_full", "fifo", "sub"}).empty());
}

TEST(AtomicFileTest, MissingDirectoryNamesThePath) {
  ExpectError(WriteFileAtomically("/nonexistent-dir-kvcc/x.bin", "x"), "/nonexistent-dir-kvcc/x.bin");
}

// `ulimit -f`: with SIGXFSZ ignored (as kvcc's main does) the write fails with EFBIG.
TEST(AtomicFileTest, FileSizeLimitIsAReportedErrorWithNoTemporaryLeft) {
  const std::string dir = testing::TempDir("atomic_file_efbig");
  const std::string path = dir + "/big.bin";
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  absl::Status s = WriteFileAtomically(path, std::string(10000, 'x'));
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  std::signal(SIGXFSZ, old_handler);
  ExpectError(s, "writing " + path);
  ExpectError(s, "File too large");
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(Others(dir, {}).empty());
}

}  // namespace
}  // namespace kvcc::ir
