// serving::StopMatcher: text that could start a stop string is held back across pieces, the
// earliest match wins and nothing after it is released, and Finish releases what was held.
#include "serving/stop_matcher.h"

#include "gtest/gtest.h"

namespace kvcc::serving {
namespace {

TEST(StopMatcherTest, HoldsBackAPossibleStartAcrossPieces) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.Put("abc E"), "abc ");
  EXPECT_EQ(m.Put("N"), "");
  EXPECT_EQ(m.Put("D tail"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Put("more"), "");
  EXPECT_EQ(m.Finish(), "");
}

TEST(StopMatcherTest, ReleasesAFalseStartOnceItDiverges) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.Put("xEN"), "x");
  EXPECT_EQ(m.Put("x"), "ENx");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Put("E"), "");
  EXPECT_EQ(m.Finish(), "E");
}

TEST(StopMatcherTest, EarliestMatchOfSeveralWins) {
  StopMatcher m({"world", "lo w"});
  EXPECT_EQ(m.Put("hello world"), "hel");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, NoStopsPassesEverything) {
  StopMatcher m({});
  EXPECT_EQ(m.Put("abc"), "abc");
  EXPECT_EQ(m.Finish(), "");
}

TEST(StopMatcherTest, MatchInsideOnePieceAndAtTheStart) {
  StopMatcher m({"\n\n"});
  EXPECT_EQ(m.Put("\n"), "");
  EXPECT_EQ(m.Put("\nrest"), "");
  EXPECT_TRUE(m.stopped());
}

}  // namespace
}  // namespace kvcc::serving
