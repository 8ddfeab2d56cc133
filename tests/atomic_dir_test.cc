// Atomic directory replacement: a new directory, an earlier one replaced whole (no stale file
// survives), unrelated directories and files refused, and concurrent writers each leaving one
// complete directory.
#include "ir/atomic_dir.h"

#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "ir/atomic_file.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

namespace fs = std::filesystem;

std::set<std::string> Names(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

absl::Status WriteDir(const std::string& target, const std::vector<std::string>& files,
                      const std::string& content) {
  auto out = AtomicDirectory::Create(target, "marker");
  if (!out.ok()) return out.status();
  for (const std::string& f : files) {
    absl::Status s = WriteFileAtomically((*out)->path() + "/" + f, content);
    if (!s.ok()) return s;
  }
  return (*out)->Commit();
}

TEST(AtomicDirTest, CreatesThenReplacesWhole) {
  const std::string root = testing::TempDir("atomic_dir_replace");
  const std::string target = root + "/out";
  KVCC_ASSERT_OK(WriteDir(target, {"marker", "stale.json", "a"}, "one"));
  EXPECT_EQ(Names(target), (std::set<std::string>{"marker", "stale.json", "a"}));
  KVCC_ASSERT_OK(WriteDir(target + "/", {"marker", "a"}, "two"));
  EXPECT_EQ(Names(target), (std::set<std::string>{"marker", "a"}));  // stale.json is gone
  EXPECT_EQ(testing::ReadFileBytes(target + "/a"), "two");
  EXPECT_EQ(Names(root), (std::set<std::string>{"out"}));  // no temporary left
  // An empty directory is replaced too; parents are created.
  fs::create_directories(root + "/empty");
  KVCC_ASSERT_OK(WriteDir(root + "/empty", {"marker"}, "x"));
  KVCC_ASSERT_OK(WriteDir(root + "/p/q/r", {"marker"}, "x"));
  EXPECT_TRUE(fs::exists(root + "/p/q/r/marker"));
}

TEST(AtomicDirTest, AbandonedWriteLeavesTheOldDirectory) {
  const std::string root = testing::TempDir("atomic_dir_abandon");
  KVCC_ASSERT_OK(WriteDir(root + "/out", {"marker", "a"}, "old"));
  {
    KVCC_ASSERT_OK_AND_ASSIGN(out, AtomicDirectory::Create(root + "/out", "marker"));
    KVCC_ASSERT_OK(WriteFileAtomically(out->path() + "/a", "new"));
  }
  EXPECT_EQ(testing::ReadFileBytes(root + "/out/a"), "old");
  EXPECT_EQ(Names(root), (std::set<std::string>{"out"}));
}

TEST(AtomicDirTest, RefusesWhatIsNotAnEarlierOutput) {
  const std::string root = testing::TempDir("atomic_dir_refuse");
  fs::create_directories(root + "/home");
  KVCC_ASSERT_OK(WriteFileAtomically(root + "/home/notes.txt", "mine"));
  auto s = AtomicDirectory::Create(root + "/home", "marker").status();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no marker"), std::string::npos) << s;
  EXPECT_EQ(testing::ReadFileBytes(root + "/home/notes.txt"), "mine");
  KVCC_ASSERT_OK(WriteFileAtomically(root + "/file", "f"));
  s = AtomicDirectory::Create(root + "/file", "marker").status();
  EXPECT_NE(s.message().find("not a directory"), std::string::npos) << s;
  EXPECT_EQ(Names(root), (std::set<std::string>{"home", "file"}));
}

TEST(AtomicDirTest, SymlinkedTargetIsWrittenThrough) {
  const std::string root = testing::TempDir("atomic_dir_symlink");
  KVCC_ASSERT_OK(WriteDir(root + "/real", {"marker", "old"}, "x"));
  fs::create_directory_symlink("real", root + "/link");
  KVCC_ASSERT_OK(WriteDir(root + "/link", {"marker", "new"}, "y"));
  EXPECT_TRUE(fs::is_symlink(root + "/link"));
  EXPECT_EQ(Names(root + "/real"), (std::set<std::string>{"marker", "new"}));
}

// Writers racing on one target: afterwards it holds exactly one writer's complete set of files.
TEST(AtomicDirTest, ConcurrentWritersNeverMix) {
  const std::string root = testing::TempDir("atomic_dir_race");
  const std::string target = root + "/out";
  for (int round = 0; round < 10; ++round) {
    std::vector<std::thread> writers;
    std::vector<absl::Status> results(4);
    for (int w = 0; w < 4; ++w) {
      writers.emplace_back([&, w] {
        std::vector<std::string> files = {"marker"};
        for (int i = 0; i < 5; ++i) files.push_back("w" + std::to_string(w) + "_" + std::to_string(i));
        results[w] = WriteDir(target, files, std::to_string(w));
      });
    }
    for (auto& t : writers) t.join();
    for (const absl::Status& s : results) KVCC_ASSERT_OK(s);
    const std::set<std::string> names = Names(target);
    ASSERT_EQ(names.size(), 6u);
    const std::string winner = testing::ReadFileBytes(target + "/marker");
    for (int i = 0; i < 5; ++i) {
      EXPECT_TRUE(names.count("w" + winner + "_" + std::to_string(i))) << "round " << round;
    }
    EXPECT_EQ(Names(root), (std::set<std::string>{"out"}));
  }
}

}  // namespace
}  // namespace kvcc::ir
