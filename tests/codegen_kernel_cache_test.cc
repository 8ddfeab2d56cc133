// The on-disk kernel cache: hits, misses, keys, corrupt and truncated entries rebuilt, and
// concurrent writers (threads and processes) never exposing a half-written entry.
#include "codegen/kernel_cache.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "codegen/kernel_builder.h"
#include "codegen/kernel_store.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::codegen {
namespace {

using testing::ReadFileBytes;

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::string Payload(int seed, size_t size) {
  std::string p(size, '\0');
  uint32_t x = 2463534242u + seed;
  for (char& c : p) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return p;
}

TEST(KernelCache, MissThenHit) {
  KernelCache cache(testing::TempDir("kc_hit") + "/nested/dir");
  const std::string key = KernelCache::Key("src", "opts", "sm_90a", "13.0");
  auto miss = cache.Lookup(key);
  ASSERT_TRUE(miss.ok());
  EXPECT_FALSE(miss->has_value());
  const std::string payload = Payload(1, 10000);
  KVCC_ASSERT_OK(cache.Store(key, payload));
  auto hit = cache.Lookup(key);
  ASSERT_TRUE(hit.ok());
  ASSERT_TRUE(hit->has_value());
  EXPECT_EQ(**hit, payload);
  EXPECT_EQ(cache.hits(), 1);
  EXPECT_EQ(cache.misses(), 1);
}

TEST(KernelCache, KeyCoversEveryField) {
  const std::string base = KernelCache::Key("src", "opts", "sm_90a", "13.0");
  EXPECT_EQ(base.size(), 64u);
  EXPECT_EQ(base, KernelCache::Key("src", "opts", "sm_90a", "13.0"));
  EXPECT_NE(base, KernelCache::Key("src2", "opts", "sm_90a", "13.0"));
  EXPECT_NE(base, KernelCache::Key("src", "opts2", "sm_90a", "13.0"));
  EXPECT_NE(base, KernelCache::Key("src", "opts", "sm_80", "13.0"));
  EXPECT_NE(base, KernelCache::Key("src", "opts", "sm_90a", "13.1"));
  // Field boundaries matter: moving a byte from one field to the next changes the key.
  EXPECT_NE(KernelCache::Key("ab", "c", "x", "y"), KernelCache::Key("a", "bc", "x", "y"));
}

TEST(KernelCache, CorruptAndTruncatedEntriesAreDiscarded) {
  KernelCache cache(testing::TempDir("kc_corrupt"));
  const std::string key = KernelCache::Key("k", "", "sm_90a", "13.0");
  const std::string payload = Payload(2, 4096);
  KVCC_ASSERT_OK(cache.Store(key, payload));
  const std::string path = cache.EntryPath(key);
  std::string bytes = ReadFileBytes(path);
  ASSERT_GT(bytes.size(), payload.size());

  std::string flipped = bytes;
  flipped[flipped.size() - 100] ^= 0x40;
  WriteFile(path, flipped);
  auto r = cache.Lookup(key);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(cache.corrupt(), 1);
  EXPECT_FALSE(std::ifstream(path).good()) << "corrupt entry should be removed";

  WriteFile(path, bytes.substr(0, bytes.size() / 2));
  r = cache.Lookup(key);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(cache.corrupt(), 2);

  WriteFile(path, "junk");
  r = cache.Lookup(key);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(cache.corrupt(), 3);
}

TEST(KernelCache, BuilderRebuildsACorruptEntryAndThenHits) {
  KernelCache cache(testing::TempDir("kc_builder"));
  KernelSpec spec;
  spec.op = KernelOp::kDecodeMerge;
  spec.head_dim = 8;
  spec.heads = 8;
  spec.kv_heads = 4;
  spec.arch = 80;
  auto first = BuildKernel(spec, &cache);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->compiled.from_cache);
  auto second = BuildKernel(spec, &cache);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->compiled.from_cache);
  EXPECT_EQ(second->compiled.cubin, first->compiled.cubin);
  EXPECT_EQ(second->compiled.usage.registers, first->compiled.usage.registers);

  const std::string path = cache.EntryPath(first->cache_key);
  std::string bytes = ReadFileBytes(path);
  bytes[bytes.size() / 2] ^= 1;
  WriteFile(path, bytes);
  auto third = BuildKernel(spec, &cache);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_FALSE(third->compiled.from_cache);
  EXPECT_EQ(third->compiled.cubin, first->compiled.cubin);
  auto fourth = BuildKernel(spec, &cache);
  ASSERT_TRUE(fourth.ok());
  EXPECT_TRUE(fourth->compiled.from_cache);

  // A different spec is a different entry.
  spec.head_dim = 16;
  auto other = BuildKernel(spec, &cache);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->compiled.from_cache);
  EXPECT_NE(other->cache_key, first->cache_key);
}

// A store of payloads in memory that says its kernels came from NVRTC `version`, as an
// artifact's manifest does, and records the keys asked for.
class VersionedStore : public KernelStore {
 public:
  explicit VersionedStore(std::string version) : version_(std::move(version)) {}
  absl::StatusOr<std::optional<std::string>> Lookup(absl::string_view key) override {
    looked_up.emplace_back(key);
    auto it = payloads.find(std::string(key));
    if (it == payloads.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  absl::Status Store(absl::string_view key, absl::string_view payload) override {
    payloads[std::string(key)] = std::string(payload);
    return absl::OkStatus();
  }
  std::string KeyNvrtcVersion() override { return version_; }
  std::map<std::string, std::string> payloads;
  std::vector<std::string> looked_up;

 private:
  std::string version_;
};

// Kernels from a store made by another NVRTC are found under that NVRTC's keys without
// compiling (so opening an artifact needs no NVRTC); what this process compiles on a miss goes
// by its own NVRTC's key.
TEST(KernelCache, BuilderKeysByTheStoresNvrtcVersion) {
  KernelSpec spec;
  spec.op = KernelOp::kDecodeMerge;
  spec.head_dim = 8;
  spec.heads = 8;
  spec.kv_heads = 4;
  spec.arch = 80;
  VersionedStore same("");
  auto here = BuildKernel(spec, &same);
  ASSERT_TRUE(here.ok()) << here.status();
  ASSERT_EQ(same.looked_up.size(), 1u);
  EXPECT_EQ(same.looked_up[0], here->cache_key);

  VersionedStore other("12.4");
  auto miss = BuildKernel(spec, &other);
  ASSERT_TRUE(miss.ok()) << miss.status();
  EXPECT_FALSE(miss->compiled.from_cache);
  ASSERT_EQ(other.looked_up.size(), 2u);
  const std::string old_key = other.looked_up[0];
  EXPECT_NE(old_key, here->cache_key);
  EXPECT_EQ(other.looked_up[1], here->cache_key);
  EXPECT_EQ(miss->cache_key, here->cache_key);
  ASSERT_EQ(other.payloads.count(here->cache_key), 1u);

  other.payloads.clear();
  other.looked_up.clear();
  other.payloads[old_key] = EncodeKernelPayload(here->compiled);
  const int64_t compiles = NvrtcCompileCount();
  auto hit = BuildKernel(spec, &other);
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_TRUE(hit->compiled.from_cache);
  EXPECT_EQ(hit->cache_key, old_key);
  EXPECT_EQ(hit->compiled.cubin, here->compiled.cubin);
  EXPECT_EQ(NvrtcCompileCount(), compiles);
  EXPECT_EQ(other.looked_up.size(), 1u);
}

// The options follow the NVRTC version they are asked for, without loading NVRTC for it.
TEST(KernelCache, OptionsFollowTheNvrtcVersion) {
  auto has_no_cache = [](const std::vector<std::string>& o) {
    return std::find(o.begin(), o.end(), "--no-cache") != o.end();
  };
  EXPECT_TRUE(has_no_cache(NvrtcOptions("sm_90a", "13.0")));
  EXPECT_TRUE(has_no_cache(NvrtcOptions("sm_90a", "12.9")));
  EXPECT_FALSE(has_no_cache(NvrtcOptions("sm_90a", "12.4")));
  EXPECT_FALSE(has_no_cache(NvrtcOptions("sm_80", "unknown")));
  EXPECT_EQ(NvrtcOptions("sm_80", NvrtcVersion()), NvrtcOptions("sm_80"));
}

// Writers race on one key while readers poll it: a reader sees either nothing or one complete
// payload, never a partial one (which the checksum would report as corrupt).
TEST(KernelCache, ConcurrentWritersAndReadersFromThreads) {
  const std::string dir = testing::TempDir("kc_threads");
  const std::string key = KernelCache::Key("race", "", "sm_90a", "13.0");
  const std::string a = Payload(3, 1 << 20), b = Payload(4, 1 << 20);
  KernelCache reader_cache(dir);
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      KernelCache cache(dir);
      for (int i = 0; i < 20; ++i) ASSERT_TRUE(cache.Store(key, w == 0 ? a : b).ok());
    });
  }
  int seen = 0;
  threads.emplace_back([&] {
    for (int i = 0; i < 200; ++i) {
      auto r = reader_cache.Lookup(key);
      ASSERT_TRUE(r.ok());
      if (r->has_value()) {
        ASSERT_TRUE(**r == a || **r == b);
        ++seen;
      }
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(reader_cache.corrupt(), 0);
  auto final_entry = reader_cache.Lookup(key);
  ASSERT_TRUE(final_entry.ok());
  ASSERT_TRUE(final_entry->has_value());
  EXPECT_TRUE(**final_entry == a || **final_entry == b);
}

TEST(KernelCache, ConcurrentWritersFromProcesses) {
  const std::string dir = testing::TempDir("kc_procs");
  const std::string key = KernelCache::Key("procs", "", "sm_90a", "13.0");
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      KernelCache cache(dir);
      const std::string payload = Payload(10 + p, 1 << 19);
      for (int i = 0; i < 30; ++i) {
        if (!cache.Store(key, payload).ok()) _exit(1);
        auto r = cache.Lookup(key);
        if (!r.ok() || !r->has_value()) continue;  // the other process may be mid-rename
        if (**r != Payload(10, 1 << 19) && **r != Payload(11, 1 << 19)) _exit(2);
      }
      _exit(cache.corrupt() == 0 ? 0 : 3);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  KernelCache cache(dir);
  auto r = cache.Lookup(key);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_TRUE(**r == Payload(10, 1 << 19) || **r == Payload(11, 1 << 19));
}

TEST(KernelCache, DefaultDirFollowsTheEnvironment) {
  setenv("KVCC_CACHE_DIR", "/tmp/kvcc-explicit", 1);
  EXPECT_EQ(KernelCache::DefaultDir(), "/tmp/kvcc-explicit");
  unsetenv("KVCC_CACHE_DIR");
  setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
  EXPECT_EQ(KernelCache::DefaultDir(), "/tmp/xdg/kvcc");
  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", "/home/someone", 1);
  EXPECT_EQ(KernelCache::DefaultDir(), "/home/someone/.cache/kvcc");
}

}  // namespace
}  // namespace kvcc::codegen
