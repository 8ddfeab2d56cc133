// pipeline/compiled_artifact: opening what `kvcc compile` wrote refuses every damaged or
// foreign part with an error naming the file (a truncated or edited cubin, an edited kernel
// manifest, another kvcc version, tuning for kernels the model lacks, a lowered graph without
// its manifest), and the artifact's kernel store serves its cubins, refusing misses without JIT.
#include "pipeline/compiled_artifact.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "codegen/kernel_cache.h"
#include "codegen/kernel_store_artifact.h"
#include "pipeline/artifact_compiler.h"
#include "pipeline/model_opener.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/test_util.h"

namespace kvcc::pipeline {
namespace {
namespace fs = std::filesystem;

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Records the file's new digest in kvcc_artifact.json, as a forger would.
void Redigest(const std::string& dir, const std::string& name) {
  auto m = ReadCompiledManifest(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  auto d = DigestFile(dir, name);
  ASSERT_TRUE(d.ok()) << d.status();
  m->files[name] = *d;
  WriteText(dir + "/" + kCompiledManifestName, CompiledManifestToJson(*m));
}

class CompiledArtifactTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::FreshKernelCacheDir();
    base_ = new std::string(fs::path(KVCC_BINARY_DIR) / "test_tmp" / "compiled_artifact_base");
    fs::remove_all(*base_);
    CompileOptions o;
    o.model_path = testing::SourcePath("models/stories260K");
    o.out_dir = *base_;
    o.lower.kv_quant = "int8-online";
    o.arches = {"sm_80"};
    auto r = CompileArtifact(o);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  // A private copy of the compiled artifact to damage.
  std::string Copy() {
    const std::string dir = testing::TempDir("art");
    fs::copy(*base_, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    return dir;
  }
  static codegen::KernelManifest Kernels(const std::string& dir) {
    const std::string path = dir + "/kernels/manifest.json";
    auto m = codegen::ParseKernelManifest(testing::ReadFileBytes(path), path);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : codegen::KernelManifest{};
  }
  static std::string* base_;
};
std::string* CompiledArtifactTest::base_ = nullptr;

TEST_F(CompiledArtifactTest, TheIntactArtifactChecks) {
  auto ok = CheckCompiledArtifact(*base_);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(*ok);
  auto plain = CheckCompiledArtifact(testing::SourcePath("models/stories260K"));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(*plain);
  auto described = DescribeCompiledArtifact(*base_);
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_TRUE(absl::StrContains(*described, "int8-online")) << *described;
  EXPECT_TRUE(absl::StrContains(*described, "sm_80")) << *described;
  EXPECT_FALSE(absl::StrContains(*described, "MISMATCH")) << *described;
}

TEST_F(CompiledArtifactTest, ATruncatedCubinIsNamed) {
  const std::string dir = Copy();
  const std::string cubin = Kernels(dir).kernels.at(1).cubin_file;
  fs::resize_file(dir + "/kernels/" + cubin, 100);
  auto s = CheckCompiledArtifact(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "kernels/" + cubin)) << s;
  EXPECT_FALSE(LoadForExecution(dir, LowerOptions{}).ok());
  auto described = DescribeCompiledArtifact(dir);
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_TRUE(absl::StrContains(*described, "MISMATCH")) << *described;
}

// Even with kvcc_artifact.json rewritten to match, an edited cubin fails its sha256 in
// kernels/manifest.json when the store serves it: the builder never gets the bytes.
TEST_F(CompiledArtifactTest, AnEditedCubinIsRefusedByTheKernelStore) {
  const std::string dir = Copy();
  const codegen::StoredKernel k = Kernels(dir).kernels.at(0);
  const std::string path = dir + "/kernels/" + k.cubin_file;
  std::string bytes = testing::ReadFileBytes(path);
  bytes[bytes.size() / 2] ^= 0x40;
  WriteText(path, bytes);
  Redigest(dir, "kernels/" + k.cubin_file);
  ASSERT_TRUE(CheckCompiledArtifact(dir).ok());
  auto store = codegen::ArtifactKernelStore::Open(dir + "/kernels", nullptr, true, "");
  ASSERT_TRUE(store.ok()) << store.status();
  auto hit = (*store)->Lookup(k.key);
  EXPECT_EQ(hit.status().code(), absl::StatusCode::kDataLoss) << hit.status();
  EXPECT_TRUE(absl::StrContains(hit.status().message(), k.cubin_file)) << hit.status();
  EXPECT_TRUE(absl::StrContains(hit.status().message(), "sha256")) << hit.status();
}

TEST_F(CompiledArtifactTest, AnEditedKernelManifestIsNamed) {
  const std::string dir = Copy();
  const std::string path = dir + "/kernels/manifest.json";
  WriteText(path, absl::StrReplaceAll(testing::ReadFileBytes(path),
                                      {{"\"spill_store_bytes\": 0", "\"spill_store_bytes\": 1"}}));
  auto s = CheckCompiledArtifact(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "kernels/manifest.json")) << s;
}

TEST_F(CompiledArtifactTest, AnArtifactOfAnotherKvccVersionIsRefused) {
  const std::string dir = Copy();
  const std::string path = dir + "/" + kCompiledManifestName;
  WriteText(path, absl::StrReplaceAll(testing::ReadFileBytes(path),
                                      {{absl::StrCat("\"", kKvccVersion, "\""), "\"0.0.1\""}}));
  auto s = CheckCompiledArtifact(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), kCompiledManifestName)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "kvcc 0.0.1")) << s;
  OpenOptions o;
  o.model_path = dir;
  EXPECT_EQ(OpenModel(o).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CompiledArtifactTest, TuningForAnUnknownKernelIsNamed) {
  const std::string dir = Copy();
  runtime::KernelTuning t;
  runtime::DecodeTuning d;
  d.kernel = "heads=32 kv_heads=8 head_dim=128 block_size=64 cache=f16/none io=f32";
  d.vec_bytes = 16;
  t.decode.push_back(d);
  WriteText(dir + "/tuning.json", runtime::TuningToJson(t));
  Redigest(dir, "tuning.json");
  ASSERT_TRUE(CheckCompiledArtifact(dir).ok());
  auto module = LoadModelChecked(dir);
  ASSERT_TRUE(module.ok()) << module.status();
  auto s = ReadArtifactTuning(dir, **module).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "tuning.json")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), d.kernel)) << s;
  OpenOptions o;
  o.model_path = dir;
  EXPECT_FALSE(OpenModel(o).ok());
}

TEST_F(CompiledArtifactTest, ALoweredGraphWithoutItsManifestIsRefused) {
  const std::string dir = Copy();
  fs::remove(dir + "/" + kCompiledManifestName);
  auto s = LoadForExecution(dir, LowerOptions{}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), kCompiledManifestName)) << s;
}

TEST_F(CompiledArtifactTest, TheKernelStoreServesItsCubinsAndRefusesMissesWithoutJit) {
  const codegen::KernelManifest km = Kernels(*base_);
  const std::string kernels = *base_ + "/kernels";
  auto store = codegen::ArtifactKernelStore::Open(kernels, nullptr, false, "sm_80");
  ASSERT_TRUE(store.ok()) << store.status();
  auto hit = (*store)->Lookup(km.kernels.at(0).key);
  ASSERT_TRUE(hit.ok()) << hit.status();
  ASSERT_TRUE(hit->has_value());
  codegen::CompiledKernel k;
  ASSERT_TRUE(codegen::DecodeKernelPayload(**hit, km.kernels.at(0).entry, &k));
  EXPECT_EQ(k.cubin, testing::ReadFileBytes(kernels + "/" + km.kernels.at(0).cubin_file));
  EXPECT_EQ(k.usage.registers, km.kernels.at(0).registers);
  EXPECT_EQ((*store)->from_artifact(), 1);
  auto miss = (*store)->Lookup(std::string(64, 'a'));
  EXPECT_EQ(miss.status().code(), absl::StatusCode::kFailedPrecondition) << miss.status();
  EXPECT_TRUE(absl::StrContains(miss.status().message(), "--no-jit")) << miss.status();

  // An arch the artifact lacks: refused without JIT, a warning (and the fallback) with it.
  auto other = codegen::ArtifactKernelStore::Open(kernels, nullptr, false, "sm_90a");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition) << other.status();
  EXPECT_TRUE(absl::StrContains(other.status().message(), "sm_90a")) << other.status();
  EXPECT_TRUE(absl::StrContains(other.status().message(), "manifest.json")) << other.status();
  auto cache = std::make_shared<codegen::KernelCache>(testing::TempDir("cache"));
  auto jit = codegen::ArtifactKernelStore::Open(kernels, cache, true, "sm_90a");
  ASSERT_TRUE(jit.ok()) << jit.status();
  auto fallback = (*jit)->Lookup(std::string(64, 'a'));
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_FALSE(fallback->has_value());  // the builder compiles it then
}

}  // namespace
}  // namespace kvcc::pipeline
