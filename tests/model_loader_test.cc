// Model paths: artifact vs checkpoint detection, `kvcc import` (ImportToArtifact) round trip on
// stories260K, tokenizer directory lookup and side-file copies.
#include "frontend/model_loader.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <sstream>

#include "frontend/hf_config.h"
#include "frontend/hf_importer.h"
#include "testing/synth.h"
#include "gtest/gtest.h"
#include "ir/onnx_io.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "tests/test_util.h"

namespace kvcc::frontend {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ModelLoaderTest, ClassifiesDirectories) {
  const std::string hf = testing::SourcePath("models/stories260K");
  KVCC_ASSERT_OK_AND_ASSIGN(kind, ClassifyModelDir(hf));
  EXPECT_EQ(kind, ModelDirKind::kHfCheckpoint);

  const std::string empty = testing::TempDir("empty");
  auto none = ClassifyModelDir(empty);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(std::string(none.status().message()).find(empty), std::string::npos);
  EXPECT_NE(std::string(none.status().message()).find("model.onnx"), std::string::npos);
  auto missing = LoadModel(empty + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("nope"), std::string::npos);
}

TEST(ModelLoaderTest, ImportWritesAnArtifactThatLoadsBackIdentical) {
  const std::string hf = testing::SourcePath("models/stories260K");
  const std::string out = testing::TempDir("artifact");
  KVCC_ASSERT_OK_AND_ASSIGN(imported, ImportToArtifact(hf, out));
  for (const char* name : {"model.onnx", "model.weights", "tokenizer.json", "tokenizer.model",
                           "tokenizer_config.json", "special_tokens_map.json",
                           "generation_config.json", "config.json"}) {
    EXPECT_TRUE(fs::is_regular_file(fs::path(out) / name)) << name;
  }
  // Side files are byte copies; no temporary files are left behind.
  EXPECT_EQ(ReadAll(out + "/tokenizer.model"), ReadAll(hf + "/tokenizer.model"));
  EXPECT_EQ(ReadAll(out + "/config.json"), ReadAll(hf + "/config.json"));
  for (const auto& entry : fs::directory_iterator(out)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos)
        << entry.path();
  }

  KVCC_ASSERT_OK_AND_ASSIGN(kind, ClassifyModelDir(out));
  EXPECT_EQ(kind, ModelDirKind::kArtifact);
  KVCC_ASSERT_OK_AND_ASSIGN(loaded, LoadModel(out));
  KVCC_ASSERT_OK(ir::Verify(*loaded));
  EXPECT_EQ(ir::Print(*loaded), ir::Print(*imported));
  KVCC_ASSERT_OK_AND_ASSIGN(direct, LoadModel(hf));
  EXPECT_EQ(ir::Print(*direct), ir::Print(*imported));

  KVCC_ASSERT_OK_AND_ASSIGN(tok_dir, FindTokenizerDir(out));
  EXPECT_EQ(tok_dir, out);
  KVCC_ASSERT_OK_AND_ASSIGN(tok_dir2, FindTokenizerDir(hf));
  EXPECT_EQ(tok_dir2, hf);
  KVCC_ASSERT_OK_AND_ASSIGN(tok_dir3, FindTokenizerDir(hf + "/config.json"));
  EXPECT_EQ(tok_dir3, hf);
}

// `kvcc import` on stories260K and on every small synth config (full-size ones would write
// gigabytes): the artifact reads back printer-identical with identical weight bytes, and when
// the test runner provides KVCC_PYTHON, PyPI onnx's checker accepts it.
TEST(ModelLoaderTest, ArtifactsOfStoriesAndSynthConfigsReadBackIdentical) {
  std::vector<std::pair<std::string, std::string>> sources = {
      {"stories260K", testing::SourcePath("models/stories260K")}};
  const fs::path configs = testing::SourcePath("models/configs");
  if (fs::is_directory(configs)) {
    for (const auto& entry : fs::directory_iterator(configs)) {
      if (entry.path().extension() != ".json") continue;
      KVCC_ASSERT_OK_AND_ASSIGN(config, LoadHfConfig(entry.path().string()));
      if (config.NumParameters() > 50'000'000) continue;
      const std::string name = entry.path().stem().string();
      const std::string hf = testing::TempDir("hf-" + name);
      testing::SynthOptions options;
      options.seed = 3;
      KVCC_ASSERT_OK(testing::SynthesizeCheckpoint(entry.path().string(), hf, options).status());
      sources.emplace_back(name, hf);
    }
  }
  const char* python = std::getenv("KVCC_PYTHON");
  for (const auto& [name, hf] : sources) {
    SCOPED_TRACE(name);
    const std::string out = testing::TempDir("artifact-" + name);
    KVCC_ASSERT_OK_AND_ASSIGN(imported, ImportToArtifact(hf, out));
    KVCC_ASSERT_OK_AND_ASSIGN(loaded, LoadModel(out));
    EXPECT_EQ(ir::Print(*loaded), ir::Print(*imported));
    ASSERT_EQ(loaded->graph.weights().size(), imported->graph.weights().size());
    for (size_t i = 0; i < imported->graph.weights().size(); ++i) {
      const ir::WeightData& a = *imported->graph.weights()[i]->weight;
      const ir::WeightData& b = *loaded->graph.weights()[i]->weight;
      ASSERT_EQ(a.size, b.size);
      EXPECT_EQ(std::memcmp(a.bytes, b.bytes, a.size), 0) << imported->graph.weights()[i]->name;
    }
    if (python != nullptr && *python != '\0') {
      const std::string cmd = std::string("\"") + python + "\" \"" +
                              testing::SourcePath("tests/python/check_onnx.py") + "\" \"" +
                              out + "\"";
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
  }
  EXPECT_GE(sources.size(), 2u);
}

TEST(ModelLoaderTest, ImportRefusesBadInputs) {
  const std::string out = testing::TempDir("out");
  // Importing an artifact, or into the checkpoint's own directory.
  const std::string hf = testing::TempDir("hf");
  for (const auto& entry : fs::directory_iterator(testing::SourcePath("models/stories260K"))) {
    fs::copy_file(entry.path(), fs::path(hf) / entry.path().filename());
  }
  auto same = ImportToArtifact(hf, hf);
  ASSERT_FALSE(same.ok());
  EXPECT_NE(std::string(same.status().message()).find("must differ"), std::string::npos);
  EXPECT_FALSE(fs::exists(fs::path(hf) / "model.onnx"));
  KVCC_ASSERT_OK(ImportToArtifact(hf, out).status());
  auto again = ImportToArtifact(out, testing::TempDir("out2"));
  ASSERT_FALSE(again.ok());
  EXPECT_NE(std::string(again.status().message()).find("already a kvcc artifact"),
            std::string::npos);

  // A failing import leaves no artifact behind.
  const std::string broken = testing::TempDir("broken");
  fs::copy_file(fs::path(hf) / "config.json", fs::path(broken) / "config.json");
  const std::string out3 = testing::TempDir("out3");
  auto bad = ImportToArtifact(broken, out3);
  ASSERT_FALSE(bad.ok());
  EXPECT_FALSE(fs::exists(fs::path(out3) / "model.onnx"));
}

TEST(ModelLoaderTest, TokenizerDirMissing) {
  const std::string dir = testing::TempDir("notok");
  std::ofstream(dir + "/config.json") << "{}";
  auto tok = FindTokenizerDir(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(std::string(tok.status().message()).find(dir), std::string::npos);
  EXPECT_NE(std::string(tok.status().message()).find("tokenizer.model"), std::string::npos);
}

TEST(ModelLoaderTest, CopiesOnlyPresentSideFiles) {
  const std::string from = testing::TempDir("from"), to = testing::TempDir("to");
  std::ofstream(from + "/tokenizer.json") << "{\"model\": {}}";
  std::ofstream(from + "/config.json") << "{\"a\": 1}";
  std::ofstream(from + "/unrelated.txt") << "x";
  KVCC_ASSERT_OK_AND_ASSIGN(copied, CopyModelSideFiles(from, to));
  EXPECT_EQ(copied, (std::vector<std::string>{"tokenizer.json", "config.json"}));
  EXPECT_EQ(ReadAll(to + "/tokenizer.json"), "{\"model\": {}}");
  EXPECT_FALSE(fs::exists(fs::path(to) / "unrelated.txt"));
  EXPECT_FALSE(fs::exists(fs::path(to) / "tokenizer.model"));
}

}  // namespace
}  // namespace kvcc::frontend
