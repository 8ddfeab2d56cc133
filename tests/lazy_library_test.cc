// ir/lazy_library: a library that is present opens (also after Preload) and resolves its
// symbols; a missing one is an error naming it, the purpose, the fix and the fallback path
// tried beside a linked library, and its symbols are null (never a crash).
#include "ir/lazy_library.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace kvcc::ir {
namespace {

TEST(LazyLibrary, OpensAndResolves) {
  LazyLibrary lib("libm.so.6", "maths", "install libc");
  lib.Preload();
  lib.Preload();
  ASSERT_TRUE(lib.Loaded().ok()) << lib.Loaded();
  auto* cosine = reinterpret_cast<double (*)(double)>(lib.Symbol("cos"));
  ASSERT_NE(cosine, nullptr);
  EXPECT_EQ(cosine(0.0), 1.0);
  EXPECT_EQ(lib.Symbol("kvcc_no_such_symbol"), nullptr);
}

TEST(LazyLibrary, AMissingLibraryIsNamed) {
  LazyLibrary lib("libkvcc_missing.so.1", "a test library", "build it first",
                  reinterpret_cast<const void*>(&std::fopen));
  const absl::Status s = lib.Loaded();
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "libkvcc_missing.so.1")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "a test library")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "build it first")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "nor /")) << s;  // the libc directory was tried
  EXPECT_EQ(lib.Symbol("anything"), nullptr);
}

}  // namespace
}  // namespace kvcc::ir
