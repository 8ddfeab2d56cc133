// Model paths: artifact vs checkpoint detection, `kvcc import` (ImportToArtifact) round trip on
// stories260K, tokenizer directory lookup and side-file copies.
#include "frontend/model_loader.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "frontend/hf_config.h"
#include "frontend/hf_importer.h"
#include "testing/synth.h"
#include "gtest/gtest.h"
#include "ir/artifact_manifest.h"
#include "ir/atomic_file.h"
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

// A copy of stories260K without tokenizer.json and with another generation_config.json: a
// second checkpoint whose side files differ, recorded under another source path.
std::string StoriesVariant(const std::string& name) {
  const std::string dir = testing::TempDir(name);
  for (const auto& entry : fs::directory_iterator(testing::SourcePath("models/stories260K"))) {
    if (entry.path().filename() == "tokenizer.json") continue;
    fs::copy_file(entry.path(), fs::path(dir) / entry.path().filename());
  }
  std::ofstream(dir + "/generation_config.json", std::ios::trunc) << "{\"eos_token_id\": 2}";
  return dir;
}

TEST(ModelLoaderTest, ReimportLeavesNoStaleFiles) {
  const std::string out = testing::TempDir("reimport");
  KVCC_ASSERT_OK(ImportToArtifact(testing::SourcePath("models/stories260K"), out).status());
  ASSERT_TRUE(fs::exists(out + "/tokenizer.json"));
  KVCC_ASSERT_OK(ir::WriteFileAtomically(out + "/kv_params.json", "{}"));
  const std::string variant = StoriesVariant("variant");
  KVCC_ASSERT_OK(ImportToArtifact(variant, out).status());
  // The earlier import's tokenizer.json would win over tokenizer.model; calibration of the
  // earlier weights would be reused.
  EXPECT_FALSE(fs::exists(out + "/tokenizer.json"));
  EXPECT_FALSE(fs::exists(out + "/kv_params.json"));
  EXPECT_EQ(ReadAll(out + "/generation_config.json"), ReadAll(variant + "/generation_config.json"));
  KVCC_ASSERT_OK(LoadModel(out).status());
  for (const auto& entry : fs::directory_iterator(fs::path(out).parent_path())) {
    EXPECT_EQ(entry.path().filename().string().find(".reimport.tmp"), std::string::npos);
  }
}

TEST(ModelLoaderTest, ImportRefusesADirectoryOfOtherFiles) {
  const std::string out = testing::TempDir("not_an_artifact");
  std::ofstream(out + "/notes.txt") << "mine";
  auto s = ImportToArtifact(testing::SourcePath("models/stories260K"), out).status();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("refusing to replace it"), std::string::npos) << s;
  EXPECT_EQ(ReadAll(out + "/notes.txt"), "mine");
  EXPECT_FALSE(fs::exists(out + "/model.onnx"));
}

// Two imports into one directory at once: it ends up holding one of the two models, complete
// (every side file from the checkpoint that model came from), never a mix.
TEST(ModelLoaderTest, ConcurrentImportsLeaveOneCompleteModel) {
  const std::string a = testing::SourcePath("models/stories260K");
  const std::string b = StoriesVariant("race_variant");
  const std::string out = testing::TempDir("race") + "/out";
  for (int round = 0; round < 4; ++round) {
    std::vector<absl::Status> results(2);
    std::thread ta([&] { results[0] = ImportToArtifact(a, out).status(); });
    std::thread tb([&] { results[1] = ImportToArtifact(b, out).status(); });
    ta.join();
    tb.join();
    KVCC_ASSERT_OK(results[0]);
    KVCC_ASSERT_OK(results[1]);
    KVCC_ASSERT_OK_AND_ASSIGN(loaded, LoadModel(out));
    const std::string source = loaded->metadata["source"];
    ASSERT_TRUE(source == a || source == b) << source;
    for (const char* name : kModelSideFiles) {
      const bool in_source = fs::exists(fs::path(source) / name);
      EXPECT_EQ(fs::exists(fs::path(out) / name), in_source) << name << " round " << round;
      if (in_source) EXPECT_EQ(ReadAll(out + "/" + name), ReadAll(source + "/" + name)) << name;
    }
  }
}

// Single-bit flips anywhere in a stories260K artifact: each one is refused when the artifact is
// opened, or the model's logits stay bit-identical. KVCC_BITFLIPS sets the count (docs/fuzzing.md
// records a 600-flip run).
TEST(ModelLoaderTest, BitFlipsAreRefusedOrHarmless) {
  const std::string out = testing::TempDir("bitflip");
  KVCC_ASSERT_OK(ImportToArtifact(testing::SourcePath("models/stories260K"), out).status());
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 100, 70};
  const std::vector<int32_t> decode = {300, 12};
  KVCC_ASSERT_OK_AND_ASSIGN(pristine, LoadModel(out));
  const std::vector<float> want = testing::CpuLogits(std::move(pristine), prompt, decode);
  ASSERT_FALSE(want.empty());
  const char* env = std::getenv("KVCC_BITFLIPS");
  const int flips = env != nullptr && *env != '\0' ? std::atoi(env) : 64;
  // Half in the graph, a quarter each in the weights and the manifest: the graph is small but
  // holds what a flip silently changed before (an attention scale, a shape).
  const std::vector<std::string> files = {ir::kOnnxFileName, ir::kOnnxFileName,
                                          ir::kWeightsFileName, ir::kManifestFileName};
  std::map<std::string, std::string> good;
  for (const std::string& f : files) good[f] = ReadAll(out + "/" + f);
  std::mt19937_64 rng(2024);
  int refused = 0, identical = 0;
  for (int i = 0; i < flips; ++i) {
    const std::string& file = files[i % files.size()];
    std::string bytes = good[file];
    const size_t offset = rng() % bytes.size();
    const int bit = static_cast<int>(rng() % 8);
    bytes[offset] = static_cast<char>(bytes[offset] ^ (1 << bit));
    std::ofstream(out + "/" + file, std::ios::binary | std::ios::trunc) << bytes;
    auto loaded = LoadModel(out);
    if (!loaded.ok()) {
      ++refused;
      EXPECT_FALSE(loaded.status().message().empty());
    } else {
      EXPECT_EQ(testing::CpuLogits(*std::move(loaded), prompt, decode), want)
          << file << " byte " << offset << " bit " << bit << " was accepted and changed the output";
      ++identical;
    }
    std::ofstream(out + "/" + file, std::ios::binary | std::ios::trunc) << good[file];
  }
  std::cout << flips << " single-bit flips: " << refused << " refused, " << identical
            << " accepted with bit-identical logits\n";
  EXPECT_EQ(refused + identical, flips);
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
