// Tests for ir/json_reader: bounded parsing (depth, size) with line and column in syntax
// errors, bounded rendering of values, and typed key access whose errors name file and key.
#include "ir/json_reader.h"

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

std::string Nested(int levels) { return std::string(levels, '[') + std::string(levels, ']'); }

TEST(JsonReaderTest, SyntaxErrorsGiveFileLineAndColumn) {
  auto j = ParseJson("{\n  \"a\": 1,\n  \"b\": trux\n}", "dir/config.json");
  ASSERT_FALSE(j.ok());
  const std::string msg(j.status().message());
  EXPECT_NE(msg.find("dir/config.json: invalid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("column"), std::string::npos) << msg;
}

TEST(JsonReaderTest, DepthIsBoundedWithoutRecursion) {
  JsonLimits limits;
  limits.max_depth = 8;
  KVCC_ASSERT_OK(ParseJson(Nested(8), "f", limits).status());
  auto deep = ParseJson(Nested(9), "f", limits);
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("nested deeper than 8"), std::string::npos);
  KVCC_ASSERT_OK(ParseJson(Nested(128), "f").status());
  // 86,000 levels (the issue's crash) stop at the default bound, objects as well as arrays.
  EXPECT_FALSE(ParseJson(Nested(86000), "f").ok());
  std::string objects;
  for (int i = 0; i < 86000; ++i) objects += "{\"k\":";
  objects += "1" + std::string(86000, '}');
  auto o = ParseJson(objects, "f");
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("nested deeper"), std::string::npos);
}

TEST(JsonReaderTest, SizeIsBounded) {
  JsonLimits limits;
  limits.max_bytes = 4;
  EXPECT_FALSE(ParseJson("[1,2]", "f", limits).ok());
  KVCC_ASSERT_OK(ParseJson("[12]", "f", limits).status());
  const std::string path = testing::TempDir("size") + "/big.json";
  std::ofstream(path) << "[1, 2, 3]";
  auto read = ReadJsonFile(path, limits, "kv_params");
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("limit of 4"), std::string::npos);
  EXPECT_FALSE(ReadJsonFile("/dev/zero").ok());
}

TEST(JsonReaderTest, ShowJsonIsShortAndNeverRecurses) {
  EXPECT_EQ(ShowJson(Json(5.5)), "5.5");
  EXPECT_EQ(ShowJson(Json::parse("[1,2]")), "[1,2]");
  EXPECT_EQ(ShowJson(Json::parse("[[1],2]")), "an array of 2 values");
  EXPECT_EQ(ShowJson(Json::parse("{\"a\":{}}")), "an object of 1 keys");
  EXPECT_LE(ShowJson(Json(std::string(1000, 'x'))).size(), 80u);
  EXPECT_EQ(ShowJson(Json(std::string("\xff"))), "\"\xEF\xBF\xBD\"");  // invalid UTF-8 replaced
}

TEST(JsonReaderTest, TypedAccessNamesFileAndKeyPath) {
  const Json j = Json::parse(R"({"i": 5, "f": 5.5, "whole": 5.0, "big": 18446744073709551615,
                                 "neg": -3, "s": "x", "b": true, "n": null, "o": {"k": "v"}})");
  const JsonReader r(j, "m/config.json");
  EXPECT_EQ(*r.Int("i", 0, 10), 5);
  EXPECT_EQ(*r.Int("absent", 0, 10, 7), 7);
  EXPECT_EQ(*r.Int("n", 0, 10, 7), 7);  // null reads as absent
  for (const char* key : {"f", "whole", "big", "neg", "s"}) {
    auto v = r.Int(key, 0, 10);
    ASSERT_FALSE(v.ok()) << key;
    EXPECT_NE(v.status().message().find(absl::StrCat("m/config.json: key '", key, "'")),
              std::string::npos)
        << v.status();
  }
  EXPECT_NE(r.Int("f", 0, 10).status().message().find("is 5.5, expected an integer in [0, 10]"),
            std::string::npos);
  EXPECT_NE(r.Int("absent", 0, 1).status().message().find("'absent' is missing"), std::string::npos);
  EXPECT_NE(r.Int("n", 0, 1).status().message().find("'n' is null"), std::string::npos);
  EXPECT_DOUBLE_EQ(*r.Float("f", 0, true, 10), 5.5);
  EXPECT_FALSE(r.Float("f", 5.5, true, 10).ok());
  EXPECT_TRUE(r.Float("f", 5.5, false, 10).ok());
  EXPECT_FALSE(r.Float("s", 0, false, 10).ok());
  EXPECT_TRUE(*r.Bool("b"));
  EXPECT_FALSE(r.Bool("i").ok());
  EXPECT_EQ(*r.String("s"), "x");
  EXPECT_FALSE(r.String("i").ok());
  KVCC_ASSERT_OK_AND_ASSIGN(o, r.Object("o"));
  auto k = o.Int("k", 0, 1);
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("key 'o.k' is \"v\""), std::string::npos) << k.status();
  EXPECT_FALSE(r.Object("s").ok());
}

}  // namespace
}  // namespace kvcc::ir
