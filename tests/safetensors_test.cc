// The safetensors reader and writer: bounds checks on every corrupt-input case (files built
// from raw bytes, not with the writer), writer/reader round trips, sharded checkpoints.
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "frontend/safetensors.h"
#include "testing/safetensors_writer.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::frontend {
namespace {

using testing::ReadFileBytes;

namespace fs = std::filesystem;
using ::kvcc::testing::TempDir;

std::string LengthPrefix(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file as raw bytes: length prefix, header text, data section.
std::string RawSafetensors(const std::string& header, const std::string& data) {
  return LengthPrefix(header.size()) + header + data;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Opens `bytes` as a safetensors file and expects an error naming the file and every one of
// `needles`.
void ExpectOpenError(const std::string& bytes, const std::vector<std::string>& needles) {
  const std::string path = TempDir("bad") + "/bad.safetensors";
  WriteBytes(path, bytes);
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok()) << "accepted a corrupt file";
  const std::string message(file.status().message());
  EXPECT_NE(message.find(path), std::string::npos) << message;
  for (const std::string& needle : needles) {
    EXPECT_NE(message.find(needle), std::string::npos)
        << "message lacks '" << needle << "': " << message;
  }
}

TEST(SafetensorsTest, RejectsFilesShorterThanTheLengthPrefix) {
  ExpectOpenError("", {"truncated", "8-byte"});
  ExpectOpenError(std::string("\x05\x00\x00", 3), {"truncated", "3 bytes"});
}

TEST(SafetensorsTest, RejectsHeaderLengthPastEndOfFile) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string bytes = LengthPrefix(header.size() + 100) + header + "abcd";
  ExpectOpenError(bytes, {"header length", "past the end"});
}

TEST(SafetensorsTest, RejectsAbsurdHeaderLength) {
  ExpectOpenError(LengthPrefix(uint64_t{1} << 60) + "{}", {"absurd"});
  ExpectOpenError(LengthPrefix(~uint64_t{0}) + "{}", {"absurd"});
}

TEST(SafetensorsTest, RejectsHeaderThatIsNotJson) {
  ExpectOpenError(RawSafetensors("{\"a\": {\"dtype\": ", ""), {"not valid JSON"});
}

TEST(SafetensorsTest, RejectsHeaderThatIsNotAnObject) {
  ExpectOpenError(RawSafetensors("[1, 2, 3]", ""), {"must be a JSON object"});
  ExpectOpenError(RawSafetensors("\"text\"", ""), {"must be a JSON object"});
}

TEST(SafetensorsTest, RejectsUnsupportedDTypeNamingTheTensor) {
  ExpectOpenError(
      RawSafetensors(R"({"w.f64":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
                     std::string(8, '\0')),
      {"'w.f64'", "F64", "F32 F16 BF16 I32 I8 U8"});
  ExpectOpenError(
      RawSafetensors(R"({"w.bool":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})",
                     std::string(1, '\0')),
      {"'w.bool'", "BOOL"});
}

TEST(SafetensorsTest, RejectsNegativeDimension) {
  ExpectOpenError(
      RawSafetensors(R"({"neg":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,8]}})",
                     std::string(8, '\0')),
      {"'neg'", "negative dimension -1"});
}

TEST(SafetensorsTest, RejectsNonIntegerAndHugeShapes) {
  ExpectOpenError(
      RawSafetensors(R"({"f":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})",
                     std::string(4, '\0')),
      {"'f'", "shape"});
  // The product overflows 64 bits; must not wrap around to a small byte count.
  ExpectOpenError(
      RawSafetensors(
          R"({"big":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
      {"'big'", "too large"});
}

TEST(SafetensorsTest, RejectsMalformedDataOffsets) {
  const std::string data(16, '\0');
  ExpectOpenError(
      RawSafetensors(R"({"one":{"dtype":"U8","shape":[4],"data_offsets":[4]}})", data),
      {"'one'", "[begin, end]"});
  ExpectOpenError(
      RawSafetensors(R"({"str":{"dtype":"U8","shape":[4],"data_offsets":"0-4"}})", data),
      {"'str'", "[begin, end]"});
  ExpectOpenError(
      RawSafetensors(R"({"neg":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}})", data),
      {"'neg'", "non-negative"});
}

TEST(SafetensorsTest, RejectsOffsetsOutsideTheDataSection) {
  ExpectOpenError(
      RawSafetensors(R"({"late":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                     std::string(16, '\0')),
      {"'late'", "past the data section of 16 bytes"});
}

TEST(SafetensorsTest, RejectsBeginAfterEnd) {
  ExpectOpenError(
      RawSafetensors(R"({"rev":{"dtype":"U8","shape":[4],"data_offsets":[8,4]}})",
                     std::string(16, '\0')),
      {"'rev'", "begin > end"});
}

TEST(SafetensorsTest, RejectsDTypeShapeByteLengthMismatch) {
  ExpectOpenError(
      RawSafetensors(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})",
                     std::string(16, '\0')),
      {"'w'", "needs 16 bytes", "span 8"});
  ExpectOpenError(
      RawSafetensors(R"({"h":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})",
                     std::string(16, '\0')),
      {"'h'", "needs 6 bytes"});
}

TEST(SafetensorsTest, RejectsOverlappingTensors) {
  ExpectOpenError(
      RawSafetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     std::string(16, '\0')),
      {"'b'", "overlap", "'a'"});
  // One tensor nested entirely inside a longer one.
  ExpectOpenError(
      RawSafetensors(R"({"outer":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                     R"("inner":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})",
                     std::string(16, '\0')),
      {"'inner'", "overlap", "'outer'"});
}

// As the reference library: the tensors tile the data section exactly. A header length two
// bytes short on a bf16 checkpoint leaves the tensors one element off the real data (and
// nonsense generated with exit 0) unless a longer data section is refused.
TEST(SafetensorsTest, TensorsMustCoverTheDataSectionExactly) {
  const std::string header = R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})";
  ExpectOpenError(RawSafetensors(header, std::string(6, '\0')),
                  {"cover 4 bytes", "holds 6", "header length"});
  // The header length prefix two bytes short: the last two header bytes become data.
  const std::string good = RawSafetensors(header + "  ", std::string(4, '\0'));
  std::string shifted = good;
  shifted.replace(0, 8, LengthPrefix(header.size()));
  ExpectOpenError(shifted, {"cover 4 bytes", "holds 6"});
  ExpectOpenError(RawSafetensors(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                 R"("b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
                                 std::string(6, '\0')),
                  {"'b'", "starts at byte 4", "end at 2", "without gaps"});
  ExpectOpenError(RawSafetensors(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                                 std::string(4, '\0')),
                  {"'a'", "starts at byte 2"});
  ExpectOpenError(RawSafetensors(R"({"__metadata__":{}})", "x"), {"cover 0 bytes", "holds 1"});
  // Exact coverage, empty tensors included, opens.
  const std::string path = TempDir("exact") + "/ok.safetensors";
  WriteBytes(path, RawSafetensors(R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                                  R"("a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                  R"("z":{"dtype":"F32","shape":[0],"data_offsets":[2,2]}})",
                                  "ab"));
  KVCC_ASSERT_OK(SafetensorsFile::Open(path).status());
}

// A FIFO, a directory or a device in place of a shard is refused without blocking.
TEST(SafetensorsTest, RefusesNonRegularFilesWithoutBlocking) {
  const std::string dir = TempDir("fifo");
  const std::string fifo = dir + "/model.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto opened = SafetensorsFile::Open(fifo);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("is a FIFO"), std::string::npos) << opened.status();
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_FALSE(ckpt.ok());
  std::filesystem::remove(fifo);
  ASSERT_EQ(::mkfifo((dir + "/model.safetensors.index.json").c_str(), 0600), 0);
  ckpt = Checkpoint::Open(dir);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_NE(ckpt.status().message().find("model.safetensors.index.json is a FIFO"), std::string::npos)
      << ckpt.status();
  auto dev = SafetensorsFile::Open("/dev/zero");
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.status().message().find("a character device"), std::string::npos) << dev.status();
  auto directory = SafetensorsFile::Open(dir);
  ASSERT_FALSE(directory.ok());
  EXPECT_NE(directory.status().message().find("a directory"), std::string::npos);
}

TEST(SafetensorsTest, RejectsDuplicateTensorNames) {
  ExpectOpenError(
      RawSafetensors(R"({"dup":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                     R"("dup":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                     std::string(4, '\0')),
      {"'dup'", "more than once"});
}

TEST(SafetensorsTest, RejectsDeeplyNestedHeadersWithoutRecursing) {
  // A million nested arrays would overflow the stack in any recursive JSON walk.
  const int n = 1000000;
  const std::string shape = std::string(n, '[') + std::string(n, ']');
  ExpectOpenError(
      RawSafetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":" + shape +
                         ",\"data_offsets\":[0,4]}}",
                     std::string(4, '\0')),
      {"nests JSON deeper"});
  // Brackets inside strings are not nesting.
  const std::string name = std::string(50, '[') + "\\\"" + std::string(50, '{');
  const std::string path = TempDir("strings") + "/ok.safetensors";
  WriteBytes(path, RawSafetensors("{\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[1],"
                                  "\"data_offsets\":[0,1]}}",
                                  "x"));
  KVCC_ASSERT_OK_AND_ASSIGN(file, SafetensorsFile::Open(path));
  EXPECT_TRUE(file->Has(std::string(50, '[') + "\"" + std::string(50, '{')));
}

TEST(SafetensorsTest, RejectsMissingFieldsAndBadMetadata) {
  const std::string data(4, '\0');
  ExpectOpenError(RawSafetensors(R"({"nodt":{"shape":[4],"data_offsets":[0,4]}})", data),
                  {"'nodt'", "\"dtype\""});
  ExpectOpenError(
      RawSafetensors(R"({"noshape":{"dtype":"U8","shape":4,"data_offsets":[0,4]}})", data),
      {"'noshape'", "\"shape\""});
  ExpectOpenError(RawSafetensors(R"({"scalar":5})", data), {"'scalar'", "not a JSON object"});
  ExpectOpenError(RawSafetensors(R"({"__metadata__":{"format":1}})", data),
                  {"__metadata__", "'format'"});
}

TEST(SafetensorsTest, EveryTruncationOfAGoodFileIsRejected) {
  const std::string dir = TempDir("trunc");
  std::vector<float> a = {1, 2, 3, 4};
  std::vector<uint8_t> b = {9, 8, 7};
  SafetensorsTensor ta{"a", ir::DType::kF32, {2, 2}, {}, ""};
  ta.data.bytes = reinterpret_cast<const uint8_t*>(a.data());
  ta.data.size = 16;
  SafetensorsTensor tb{"b", ir::DType::kU8, {3}, {}, ""};
  tb.data.bytes = b.data();
  tb.data.size = 3;
  const std::string good = dir + "/good.safetensors";
  KVCC_ASSERT_OK(testing::WriteSafetensors(good, {ta, tb}));
  const std::string bytes = ReadFileBytes(good);
  KVCC_ASSERT_OK(SafetensorsFile::Open(good).status());
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string path = dir + "/cut.safetensors";
    WriteBytes(path, bytes.substr(0, n));
    auto file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok()) << "a file cut to " << n << " of " << bytes.size()
                            << " bytes was accepted";
    EXPECT_NE(file.status().message().find(path), std::string::npos) << file.status();
  }
}

TEST(SafetensorsTest, RoundTripsEveryDTypeByteForByte) {
  const std::string path = TempDir("rt") + "/model.safetensors";
  std::vector<SafetensorsTensor> tensors;
  std::vector<std::vector<uint8_t>> storage;
  auto add = [&](const std::string& name, ir::DType dtype, std::vector<int64_t> shape,
                 size_t bytes) {
    std::vector<uint8_t> data(bytes);
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(i * 37 + name.size());
    storage.push_back(std::move(data));
    SafetensorsTensor t{name, dtype, std::move(shape), {}, ""};
    t.data.bytes = storage.back().data();
    t.data.size = storage.back().size();
    tensors.push_back(std::move(t));
  };
  storage.reserve(8);
  add("layers.0.f32", ir::DType::kF32, {3, 5}, 60);
  add("layers.0.f16", ir::DType::kF16, {7}, 14);
  add("layers.0.bf16", ir::DType::kBF16, {2, 3}, 12);
  add("i32", ir::DType::kI32, {4}, 16);
  add("i8", ir::DType::kI8, {3}, 3);
  add("u8", ir::DType::kU8, {1, 1, 5}, 5);
  add("empty", ir::DType::kF32, {0, 4}, 0);
  add("scalar", ir::DType::kF32, {}, 4);
  KVCC_ASSERT_OK(testing::WriteSafetensors(path, tensors, {{"format", "pt"}}));

  // The data section starts 8-byte aligned, as the reference writer lays it out.
  const std::string bytes = ReadFileBytes(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u);

  KVCC_ASSERT_OK_AND_ASSIGN(file, SafetensorsFile::Open(path));
  EXPECT_EQ(file->metadata().at("format"), "pt");
  ASSERT_EQ(file->entries().size(), tensors.size());
  for (const SafetensorsTensor& want : tensors) {
    KVCC_ASSERT_OK_AND_ASSIGN(got, file->Get(want.name));
    EXPECT_EQ(got.dtype, want.dtype) << want.name;
    EXPECT_EQ(got.shape, want.shape) << want.name;
    EXPECT_EQ(got.file, path);
    ASSERT_EQ(got.data.size, want.data.size) << want.name;
    // memcmp is undefined for null pointers even at size 0 (the empty tensor has none).
    if (want.data.size > 0) {
      EXPECT_EQ(std::memcmp(got.data.bytes, want.data.bytes, want.data.size), 0) << want.name;
    }
  }
  auto missing = file->Get("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("'nope'"), std::string::npos);

  // Writing the read tensors again reproduces the file exactly.
  std::vector<SafetensorsTensor> again;
  for (const SafetensorsTensor& want : tensors) again.push_back(*file->Get(want.name));
  const std::string copy = TempDir("rt2") + "/model.safetensors";
  KVCC_ASSERT_OK(testing::WriteSafetensors(copy, again, {{"format", "pt"}}));
  EXPECT_EQ(ReadFileBytes(copy), bytes);
}

TEST(SafetensorsTest, ReadsTheEmbeddedStoriesCheckpoint) {
  const std::string dir = ::kvcc::testing::SourcePath("models/stories260K");
  auto config = nlohmann::json::parse(ReadFileBytes(dir + "/config.json"));
  KVCC_ASSERT_OK_AND_ASSIGN(ckpt, Checkpoint::Open(dir));
  KVCC_ASSERT_OK_AND_ASSIGN(embed, ckpt->Get("model.embed_tokens.weight"));
  EXPECT_EQ(embed.shape, (std::vector<int64_t>{config["vocab_size"].get<int64_t>(),
                                               config["hidden_size"].get<int64_t>()}));
  const int64_t layers = config["num_hidden_layers"].get<int64_t>();
  EXPECT_TRUE(ckpt->Has("model.layers." + std::to_string(layers - 1) + ".mlp.down_proj.weight"));
  EXPECT_FALSE(ckpt->Has("model.layers." + std::to_string(layers) + ".mlp.down_proj.weight"));
}

class WriterTest : public ::testing::Test {
 protected:
  std::vector<testing::SafetensorsTensorSpec> specs_ = {{"a", ir::DType::kF32, {2}},
                                               {"b", ir::DType::kU8, {3}}};
};

TEST_F(WriterTest, LeavesNoFileUntilFinished) {
  const std::string dir = TempDir("w");
  const std::string path = dir + "/out.safetensors";
  {
    KVCC_ASSERT_OK_AND_ASSIGN(writer, testing::SafetensorsWriter::Create(path, specs_));
    EXPECT_EQ(writer->data_bytes(), 11u);
    KVCC_ASSERT_OK(writer->Append("12345678", 8));
    EXPECT_FALSE(fs::exists(path));
    // Finishing early fails and publishes nothing.
    auto early = writer->Finish();
    EXPECT_FALSE(early.ok());
    EXPECT_NE(early.message().find("8 of 11"), std::string::npos) << early;
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir)) << "temporary file left behind";
}

TEST_F(WriterTest, RefusesExtraBytesAndKeepsTheOldFile) {
  const std::string path = TempDir("w") + "/out.safetensors";
  WriteBytes(path, "old contents");
  {
    KVCC_ASSERT_OK_AND_ASSIGN(writer, testing::SafetensorsWriter::Create(path, specs_));
    EXPECT_FALSE(writer->Append("123456789012", 12).ok());
  }
  EXPECT_EQ(ReadFileBytes(path), "old contents");
}

TEST_F(WriterTest, RejectsBadDeclarations) {
  const std::string path = TempDir("w") + "/out.safetensors";
  auto dup = testing::SafetensorsWriter::Create(path, {{"x", ir::DType::kU8, {1}}, {"x", ir::DType::kU8, {1}}});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("'x'"), std::string::npos);
  auto neg = testing::SafetensorsWriter::Create(path, {{"n", ir::DType::kU8, {-2}}});
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.status().message().find("'n'"), std::string::npos);
  auto i4 = testing::SafetensorsWriter::Create(path, {{"q", ir::DType::kI4, {8}}});
  ASSERT_FALSE(i4.ok());
  EXPECT_NE(i4.status().message().find("'q'"), std::string::npos);
  SafetensorsTensor short_data{"s", ir::DType::kF32, {4}, {}, ""};
  uint8_t four[4] = {};
  short_data.data.bytes = four;
  short_data.data.size = 4;
  auto bad = testing::WriteSafetensors(path, {short_data});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'s'"), std::string::npos);
  EXPECT_FALSE(fs::exists(path));
}

// ---- Checkpoint directories ----

void WriteTensorFile(const std::string& path, const std::vector<std::string>& names) {
  std::vector<SafetensorsTensor> tensors;
  static const std::vector<uint8_t> kBytes = {1, 2, 3, 4, 5, 6, 7, 8};
  for (const std::string& n : names) {
    SafetensorsTensor t{n, ir::DType::kF16, {2, 2}, {}, ""};
    t.data.bytes = kBytes.data();
    t.data.size = 8;
    tensors.push_back(t);
  }
  ASSERT_TRUE(testing::WriteSafetensors(path, tensors).ok());
}

void WriteIndex(const std::string& dir, const nlohmann::json& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  WriteBytes(dir + "/model.safetensors.index.json", index.dump());
}

void ExpectCheckpointError(const std::string& dir, const std::vector<std::string>& needles) {
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_FALSE(ckpt.ok()) << "accepted a bad checkpoint in " << dir;
  const std::string message(ckpt.status().message());
  for (const std::string& needle : needles) {
    EXPECT_NE(message.find(needle), std::string::npos)
        << "message lacks '" << needle << "': " << message;
  }
}

TEST(CheckpointTest, OpensShardsThroughTheIndex) {
  const std::string dir = TempDir("sharded");
  WriteTensorFile(dir + "/model-00001-of-00002.safetensors", {"a", "b"});
  WriteTensorFile(dir + "/model-00002-of-00002.safetensors", {"c"});
  WriteIndex(dir, {{"a", "model-00001-of-00002.safetensors"},
                   {"b", "model-00001-of-00002.safetensors"},
                   {"c", "model-00002-of-00002.safetensors"}});
  KVCC_ASSERT_OK_AND_ASSIGN(ckpt, Checkpoint::Open(dir));
  EXPECT_EQ(ckpt->Names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ckpt->Files().size(), 2u);
  KVCC_ASSERT_OK_AND_ASSIGN(c, ckpt->Get("c"));
  EXPECT_EQ(c.file, dir + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(c.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(c.data.bytes[7], 8);
  auto missing = ckpt->Get("d");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("'d'"), std::string::npos);
  EXPECT_NE(missing.status().message().find(dir), std::string::npos);
}

TEST(CheckpointTest, TensorsOutliveTheCheckpointObject) {
  const std::string dir = TempDir("owner");
  WriteTensorFile(dir + "/model.safetensors", {"w"});
  SafetensorsTensor w;
  {
    KVCC_ASSERT_OK_AND_ASSIGN(ckpt, Checkpoint::Open(dir));
    KVCC_ASSERT_OK_AND_ASSIGN(got, ckpt->Get("w"));
    w = got;
  }
  ASSERT_EQ(w.data.size, 8u);
  EXPECT_EQ(w.data.bytes[0], 1);  // the mapping is still alive through data.owner
}

TEST(CheckpointTest, MissingShardIsNamed) {
  const std::string dir = TempDir("noshard");
  WriteTensorFile(dir + "/model-00001-of-00002.safetensors", {"a"});
  WriteIndex(dir, {{"a", "model-00001-of-00002.safetensors"},
                   {"b", "model-00002-of-00002.safetensors"}});
  ExpectCheckpointError(dir, {"model-00002-of-00002.safetensors", "absent", "'b'",
                              "model.safetensors.index.json"});
}

TEST(CheckpointTest, TensorMappedToAShardThatLacksItIsNamed) {
  const std::string dir = TempDir("lacks");
  WriteTensorFile(dir + "/model-00001-of-00002.safetensors", {"a"});
  WriteTensorFile(dir + "/model-00002-of-00002.safetensors", {"c"});
  WriteIndex(dir, {{"a", "model-00001-of-00002.safetensors"},
                   {"b", "model-00002-of-00002.safetensors"}});
  ExpectCheckpointError(dir, {"'b'", "model-00002-of-00002.safetensors", "does not contain"});
}

TEST(CheckpointTest, CorruptShardIsNamed) {
  const std::string dir = TempDir("corrupt");
  WriteTensorFile(dir + "/model-00001-of-00002.safetensors", {"a"});
  WriteBytes(dir + "/model-00002-of-00002.safetensors", LengthPrefix(1000) + "{}");
  WriteIndex(dir, {{"a", "model-00001-of-00002.safetensors"},
                   {"b", "model-00002-of-00002.safetensors"}});
  ExpectCheckpointError(dir, {dir + "/model-00002-of-00002.safetensors", "past the end"});
}

TEST(CheckpointTest, MalformedIndexIsRefused) {
  const std::string dir = TempDir("index");
  WriteTensorFile(dir + "/model-00001-of-00001.safetensors", {"a"});
  WriteBytes(dir + "/model.safetensors.index.json", "{\"weight_map\": [1, 2]}");
  ExpectCheckpointError(dir, {"model.safetensors.index.json", "weight_map"});
  WriteBytes(dir + "/model.safetensors.index.json", "not json");
  ExpectCheckpointError(dir, {"model.safetensors.index.json", "invalid JSON", "line 1, column 2"});
  WriteBytes(dir + "/model.safetensors.index.json", "[1]");
  ExpectCheckpointError(dir, {"model.safetensors.index.json", "expected a JSON object"});
  WriteBytes(dir + "/model.safetensors.index.json",
             std::string(100000, '[') + std::string(100000, ']'));
  ExpectCheckpointError(dir, {"model.safetensors.index.json", "nested deeper"});
  WriteIndex(dir, {{"a", "../outside.safetensors"}});
  ExpectCheckpointError(dir, {"'a'", "../outside.safetensors", "inside the checkpoint"});
  WriteIndex(dir, {{"a", 7}});
  ExpectCheckpointError(dir, {"'a'", "not a file name"});
}

TEST(CheckpointTest, PicklesAreRefusedClearly) {
  const std::string dir = TempDir("pickle");
  WriteBytes(dir + "/pytorch_model.bin", "PK\x03\x04 not really a zip");
  WriteBytes(dir + "/config.json", "{}");
  ExpectCheckpointError(dir, {"pytorch_model.bin", "pickles are not loaded",
                              "convert", "safetensors"});
}

TEST(CheckpointTest, EmptyAndMissingDirectoriesAreNamed) {
  const std::string dir = TempDir("empty");
  ExpectCheckpointError(dir, {dir, "no model.safetensors"});
  ExpectCheckpointError(dir + "/absent", {dir + "/absent", "does not exist"});
}

TEST(CheckpointTest, UnindexedFilesWithTheSameTensorAreAmbiguous) {
  const std::string dir = TempDir("ambiguous");
  WriteTensorFile(dir + "/part-a.safetensors", {"w", "x"});
  WriteTensorFile(dir + "/part-b.safetensors", {"w"});
  ExpectCheckpointError(dir, {"'w'", "part-a.safetensors", "part-b.safetensors"});
}

TEST(CheckpointTest, UnindexedFilesAreAllOpened) {
  const std::string dir = TempDir("multi");
  WriteTensorFile(dir + "/part-a.safetensors", {"w"});
  WriteTensorFile(dir + "/part-b.safetensors", {"x"});
  KVCC_ASSERT_OK_AND_ASSIGN(ckpt, Checkpoint::Open(dir));
  EXPECT_EQ(ckpt->Names(), (std::vector<std::string>{"w", "x"}));
}

}  // namespace
}  // namespace kvcc::frontend
