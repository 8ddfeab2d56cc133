// XXH64: the reference's published values, incremental == one-shot at every split, and the
// system's libxxhash (when installed) as an oracle over random lengths.
#include "ir/xxhash64.h"

#include <dlfcn.h>

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace kvcc::ir {
namespace {

TEST(Xxh64Test, KnownValues) {
  EXPECT_EQ(Xxh64Hash("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(Xxh64Hash("a", 1), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(Xxh64Hash("abc", 3), 0x44BC2CF5AD770999ull);
  const std::string s = "Nobody inspects the spammish repetition";  // 39 bytes: one stripe
  EXPECT_EQ(Xxh64Hash(s.data(), s.size()), 0xFBCEA83C8A378BF1ull);
  EXPECT_EQ(Xxh64Hex(0xFBCEA83C8A378BF1ull), "fbcea83c8a378bf1");
  EXPECT_EQ(Xxh64Hex(1), "0000000000000001");
}

TEST(Xxh64Test, IncrementalMatchesOneShotAtEverySplit) {
  std::mt19937 rng(5);
  std::string data(300, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t len : {0, 1, 7, 31, 32, 33, 64, 100, 300}) {
    const uint64_t want = Xxh64Hash(data.data(), len, 42);
    for (size_t a = 0; a <= len; a += 3) {
      for (size_t b = a; b <= len; b += 11) {
        Xxh64 h(42);
        h.Update(data.data(), a);
        h.Update(data.data() + a, b - a);
        h.Update(data.data() + b, len - b);
        ASSERT_EQ(h.Digest(), want) << len << " split at " << a << ", " << b;
      }
    }
  }
}

TEST(Xxh64Test, AgreesWithTheSystemLibrary) {
  void* lib = dlopen("libxxhash.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) GTEST_SKIP() << "libxxhash.so.0 is not installed";
  using Fn = unsigned long long (*)(const void*, size_t, unsigned long long);
  auto ref = reinterpret_cast<Fn>(dlsym(lib, "XXH64"));
  ASSERT_NE(ref, nullptr);
  std::mt19937_64 rng(9);
  for (int trial = 0; trial < 500; ++trial) {
    std::string data(rng() % (trial < 400 ? 200 : 100000), '\0');
    for (char& c : data) c = static_cast<char>(rng());
    const uint64_t seed = trial % 3 == 0 ? 0 : rng();
    ASSERT_EQ(Xxh64Hash(data.data(), data.size(), seed), ref(data.data(), data.size(), seed))
        << "length " << data.size();
  }
  dlclose(lib);
}

}  // namespace
}  // namespace kvcc::ir
