// pipeline/artifact_compiler: `kvcc compile` of stories260K on the CPU for sm_90a and sm_80
// (the CI path): the artifact holds the lowered graph and a cubin per kernel and arch, opening
// it runs no pass and gives the JIT path's logits exactly, conflicting flags are refused, an
// unrelated -o directory is refused, and a compile killed midway leaves the target as it was.
// An AWQ checkpoint's artifact lists the W4A16 program and (--model-format awq) generates with
// the checkpoint's logits. On a GPU: opening either artifact makes no NVRTC call.
#include "pipeline/artifact_compiler.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "calibration/awq_quantizer.h"
#include "calibration/kv_calibrator.h"
#include "codegen/kernel_spec.h"
#include "codegen/kernel_store_manifest.h"
#include "codegen/nvrtc_compiler.h"
#include "frontend/model_loader.h"
#include "ir/group_quant.h"
#include "ir/json_reader.h"
#include "ir/onnx_io.h"
#include "ir/status_macros.h"
#include "pipeline/compiled_artifact.h"
#include "pipeline/model_opener.h"
#include "pipeline/w4_packing.h"
#include "runtime/cuda/cuda_attention.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/kernel_plan.h"
#include "runtime/engine.h"
#include "testing/safetensors_writer.h"
#include "testing/synth.h"
#include "tests/awq_checkpoint.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/gpu_skip.h"
#include "tests/test_util.h"

namespace kvcc::pipeline {
namespace {
namespace fs = std::filesystem;

std::string Stories() { return testing::SourcePath("models/stories260K"); }

// Parameters from a few random windows, made as `kvcc calibrate` makes them.
absl::StatusOr<passes::KvParams> QuickCalibration() {
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> m, frontend::LoadModel(Stories()));
  const passes::KvModelIdentity identity = passes::IdentityOf(*m);
  KVCC_RETURN_IF_ERROR(LowerForExecution(*m, Stories(), LowerOptions{}).status());
  auto windows = testing::RandomTokenWindows(4, 64, 512, 7);
  KVCC_ASSIGN_OR_RETURN(
      passes::KvParams params,
      calibration::CalibrateKv(std::shared_ptr<const ir::Module>(std::move(m)), windows,
                               {"random", 0, 64, 7}));
  params.model = identity;
  return params;
}

CompileOptions Int8Options(const std::string& out) {
  CompileOptions o;
  o.model_path = Stories();
  o.out_dir = out;
  o.lower.quant_policy = 4;
  o.calibrate = QuickCalibration;
  o.arches = {"sm_90a", "sm_80"};
  return o;
}

class ArtifactCompilerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::FreshKernelCacheDir();
    dir_ = new std::string(fs::path(KVCC_BINARY_DIR) / "test_tmp" / "artifact_compiler_int8");
    fs::remove_all(*dir_);
    auto r = CompileArtifact(Int8Options(*dir_));
    ASSERT_TRUE(r.ok()) << r.status();
    result_ = new CompileResult(*r);
  }
  static std::string* dir_;
  static CompileResult* result_;
};
std::string* ArtifactCompilerTest::dir_ = nullptr;
CompileResult* ArtifactCompilerTest::result_ = nullptr;

TEST_F(ArtifactCompilerTest, WritesEveryKernelForEachArchWithoutAGpu) {
  ASSERT_NE(result_, nullptr);
  EXPECT_EQ(result_->kv_scheme, passes::KvQuantScheme::kInt8PerLayer);
  EXPECT_EQ(result_->kv_params_source, "calibration");
  const std::string manifest_path = *dir_ + "/kernels/manifest.json";
  auto km = codegen::ParseKernelManifest(testing::ReadFileBytes(manifest_path), manifest_path);
  ASSERT_TRUE(km.ok()) << km.status();
  EXPECT_EQ(km->nvrtc_version, codegen::NvrtcVersion());
  // Per arch: the ops program and, for the cache write (4 heads) and the attention (8 heads
  // over 4 kv heads), decode, merge, prefill and rotary write.
  EXPECT_EQ(km->kernels.size(), 18u);
  std::map<std::string, int> per_arch;
  for (const codegen::StoredKernel& k : km->kernels) {
    ++per_arch[k.arch];
    EXPECT_GT(k.registers, 0) << k.spec;
    EXPECT_GT(fs::file_size(*dir_ + "/kernels/" + k.cubin_file), 1000u) << k.cubin_file;
  }
  EXPECT_EQ(per_arch["sm_90a"], 9);
  EXPECT_EQ(per_arch["sm_80"], 9);
  for (const char* f : {"kv_params.json", "tuning.json", "tokenizer.model", "config.json",
                        "generation_config.json", "kvcc_artifact.json", "model.onnx"}) {
    EXPECT_TRUE(fs::exists(*dir_ + "/" + f)) << f;
  }
  auto m = ReadCompiledManifest(*dir_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->kv_scheme, "int8-per-layer");
  EXPECT_EQ(m->arches, (std::vector<std::string>{"sm_90a", "sm_80"}));
  EXPECT_TRUE(m->files.count("kernels/manifest.json"));
  EXPECT_FALSE(m->files.count("model.weights"));  // bound by model.onnx's digest instead
}

TEST_F(ArtifactCompilerTest, OpeningRunsNoPassAndMatchesTheJitPathExactly) {
  ASSERT_NE(result_, nullptr);
  auto compiled = LoadModelChecked(*dir_);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ((*compiled)->metadata.at(kLoweredMetadataKey), "int8-per-layer");
  const size_t lowered_nodes = (*compiled)->graph.nodes().size();
  auto scheme = LowerForExecution(**compiled, *dir_, LowerOptions{});
  ASSERT_TRUE(scheme.ok()) << scheme.status();
  EXPECT_EQ(*scheme, passes::KvQuantScheme::kInt8PerLayer);
  EXPECT_EQ((*compiled)->graph.nodes().size(), lowered_nodes);  // no pass ran

  LowerOptions jit;
  jit.quant_policy = 4;
  jit.kv_params = *dir_ + "/kv_params.json";
  auto reference = LoadForExecution(Stories(), jit);
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_EQ((*reference)->graph.nodes().size(), lowered_nodes);
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 27};
  const std::vector<int32_t> decode = {75, 290, 10};
  const std::vector<float> want = testing::CpuLogits(std::move(*reference), prompt, decode);
  const std::vector<float> got = testing::CpuLogits(std::move(*compiled), prompt, decode);
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(got, want);
}

// The lowered graph (fused ops, calibrated scheme attributes, the marker) is still valid ONNX.
TEST_F(ArtifactCompilerTest, TheLoweredGraphPassesTheOnnxChecker) {
  ASSERT_NE(result_, nullptr);
  const char* python = std::getenv("KVCC_PYTHON");
  if (python == nullptr || *python == '\0') GTEST_SKIP() << "KVCC_PYTHON is not set";
  const std::string log = *dir_ + ".check.log";
  const std::string cmd = std::string("\"") + python + "\" \"" +
                          testing::SourcePath("tests/python/check_onnx.py") + "\" \"" + *dir_ +
                          "\" >\"" + log + "\" 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << testing::ReadFileBytes(log);
}

TEST_F(ArtifactCompilerTest, ConflictingSchemeFlagsAreRefused) {
  ASSERT_NE(result_, nullptr);
  LowerOptions same;
  same.quant_policy = 4;
  EXPECT_TRUE(LoadForExecution(*dir_, same).ok());
  LowerOptions other;
  other.kv_quant = "int4-online";
  auto s = LoadForExecution(*dir_, other).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "compiled with the KV cache scheme "
                                                             "int8-per-layer")) << s;
  LowerOptions params;
  params.kv_params = "/tmp/kv_params.json";
  s = LoadForExecution(*dir_, params).status();
  EXPECT_TRUE(absl::StrContains(s.message(), "--kv-params")) << s;
}

TEST_F(ArtifactCompilerTest, OpensWithTheTokenizerOnTheCpu) {
  ASSERT_NE(result_, nullptr);
  OpenOptions o;
  o.model_path = *dir_;
  auto opened = OpenModel(o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->kv_scheme, passes::KvQuantScheme::kInt8PerLayer);
  EXPECT_TRUE(opened->tokenizer.has_value());
}

// A copy of the artifact with one byte of model.weights flipped, in chunk 0.
std::string DamagedCopy(const std::string& from, const std::string& name) {
  const std::string to = testing::TempDir(name) + "/art";
  fs::copy(from, to, fs::copy_options::recursive);
  std::fstream f(to + "/" + ir::kWeightsFileName, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(100);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(100);
  f.write(&c, 1);
  return to;
}

void ExpectOpenRefusesDamagedWeights(const std::string& dir, const std::string& device) {
  OpenOptions o;
  o.model_path = dir;
  o.engine.device = device;
  auto opened = OpenModel(o);
  ASSERT_FALSE(opened.ok()) << "opened an artifact with damaged weights on " << device;
  EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();
  EXPECT_TRUE(absl::StrContains(opened.status().message(), dir + "/model.weights chunk 0"))
      << opened.status();
}

// Opening defers the weights' chunk digests to their first reader (on the CPU the executor
// checks them before any step): a damaged byte is still refused, naming the file and chunk.
TEST_F(ArtifactCompilerTest, DamagedWeightsAreRefusedAtOpen) {
  ASSERT_NE(result_, nullptr);
  ExpectOpenRefusesDamagedWeights(DamagedCopy(*dir_, "damaged_cpu"), "cpu");
}

// --autotune may keep the heuristic decode configuration, spelled out (threads, vector width
// and unroll at their defaults: the tuned plan's kernel then has another plan key but the
// same cache key), and change another: each cache key is stored once, so the manifest reads
// back (on the H200 a llama-7b artifact listed its decode kernel twice and could not be opened).
TEST(ArtifactCompilerTuned, EachKernelIsStoredOnceWhenTuningSharesKernels) {
  testing::FreshKernelCacheDir();
  CompileOptions o;
  o.model_path = Stories();
  o.out_dir = testing::TempDir("tuned_shared") + "/art";
  o.arches = {"sm_80"};
  o.autotune = [](const ir::Module& module) -> absl::StatusOr<runtime::KernelTuning> {
    KVCC_ASSIGN_OR_RETURN(std::vector<runtime::CudaAttentionConfig> configs,
                          runtime::PlanAttentionConfigs(module,
                                                        runtime::EngineOptions{}.block_size, {}));
    runtime::KernelTuning t;
    t.device = "test";
    t.autotuned = true;
    for (size_t i = 0; i < configs.size(); ++i) {
      runtime::DecodeTuning d;
      d.kernel = runtime::DecodeTuningKey(configs[i]);
      d.vec_bytes = 4;
      d.unroll = 2;
      if (i == 0) {
        KVCC_ASSIGN_OR_RETURN(codegen::KernelSpec def,
                              codegen::ResolveDefaults(runtime::CudaAttention::KernelSpecs(
                                  configs[i], codegen::GpuTarget{80, false})[0]));
        d.threads = def.threads;
        d.vec_bytes = def.vec_bytes;
        d.unroll = def.unroll;
      }
      t.decode.push_back(d);
    }
    return t;
  };
  auto r = CompileArtifact(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string manifest_path = o.out_dir + "/kernels/manifest.json";
  auto km = codegen::ParseKernelManifest(testing::ReadFileBytes(manifest_path), manifest_path);
  ASSERT_TRUE(km.ok()) << km.status();
  std::set<std::string> keys;
  for (const codegen::StoredKernel& k : km->kernels) EXPECT_TRUE(keys.insert(k.key).second);
  // The heuristic set (ops + two attention sets of 4) and the tuned decode kernels.
  EXPECT_GT(km->kernels.size(), 9u);
  EXPECT_TRUE(CheckCompiledArtifact(o.out_dir).ok());
}

TEST(ArtifactCompilerRefusals, AnUnrelatedOutputDirectoryIsLeftAlone) {
  const std::string out = testing::TempDir("out");
  { std::ofstream(out + "/notes.txt") << "mine"; }
  CompileOptions o = Int8Options(out);
  auto r = CompileArtifact(o);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), out)) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "refusing to replace")) << r.status();
  EXPECT_EQ(testing::ReadFileBytes(out + "/notes.txt"), "mine");
}

TEST(ArtifactCompilerRefusals, ABadArchIsNamed) {
  CompileOptions o = Int8Options(testing::TempDir("out") + "/art");
  o.arches = {"sm_75"};
  auto r = CompileArtifact(o);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "sm_75")) << r.status();
  EXPECT_FALSE(fs::exists(o.out_dir));
}

// A compile killed at a kernel (SIGKILL from the progress callback: no destructor runs)
// leaves the earlier artifact in place, complete and loadable, and nothing else that loads.
TEST(ArtifactCompilerRefusals, AKilledCompileLeavesTheEarlierArtifact) {
  testing::FreshKernelCacheDir();
  const std::string root = testing::TempDir("root");
  const std::string out = root + "/art";
  CompileOptions fp16;
  fp16.model_path = Stories();
  fp16.out_dir = out;
  fp16.arches = {"sm_80"};
  auto first = CompileArtifact(fp16);
  ASSERT_TRUE(first.ok()) << first.status();
  std::fflush(nullptr);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    alarm(300);  // a child stuck on a lock inherited from the fork fails the test, never hangs
    CompileOptions o = Int8Options(out);
    o.arches = {"sm_80"};
    o.kernel_progress = [](int64_t done, int64_t) {
      if (done == 3) raise(SIGKILL);
    };
    (void)CompileArtifact(o);
    _exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  auto still = ReadCompiledManifest(out);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->kv_scheme, "fp16");
  EXPECT_TRUE(CheckCompiledArtifact(out).ok());
  EXPECT_TRUE(LoadForExecution(out, LowerOptions{}).ok());
  // The killed compile's temporary sibling is not a model directory anyone opens by name,
  // and holds no manifest: it never got that far.
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.path() == fs::path(out)) continue;
    EXPECT_TRUE(absl::StartsWith(e.path().filename().string(), ".art.tmp.")) << e.path();
    EXPECT_FALSE(fs::exists(e.path() / kCompiledManifestName));
  }
}

// Options compiling a fresh synthetic AWQ (g64) checkpoint for `arches` into <tmp>/art.
absl::StatusOr<CompileOptions> AwqOptions(const std::string& name,
                                          std::vector<std::string> arches) {
  const std::string dir = testing::TempDir(name);
  CompileOptions o;
  KVCC_ASSIGN_OR_RETURN(o.model_path, testing::WriteAwqCheckpoint(
                                          "models/configs/llama-hd128-gqa.json", dir, 64, 2));
  o.out_dir = dir + "/art";
  o.arches = std::move(arches);
  return o;
}

// An AWQ checkpoint's artifact carries the W4A16 program beside the ops and attention kernels.
TEST(ArtifactCompilerW4, AnAwqArtifactCarriesTheW4Kernels) {
  testing::FreshKernelCacheDir();
  KVCC_ASSERT_OK_AND_ASSIGN(o, AwqOptions("awq_compile", {"sm_90a"}));
  auto r = CompileArtifact(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string manifest_path = o.out_dir + "/kernels/manifest.json";
  auto km = codegen::ParseKernelManifest(testing::ReadFileBytes(manifest_path), manifest_path);
  ASSERT_TRUE(km.ok()) << km.status();
  int w4 = 0;
  for (const codegen::StoredKernel& k : km->kernels) {
    if (k.spec != "w4 arch=sm_90a") continue;
    ++w4;
    EXPECT_EQ(k.arch, "sm_90a");
    EXPECT_EQ(k.entry, "kvcc_w4_gemv");
    EXPECT_GT(fs::file_size(o.out_dir + "/kernels/" + k.cubin_file), 1000u);
  }
  EXPECT_EQ(w4, 1);
  // It opens with its tokenizer and runs (on the CPU here).
  OpenOptions open;
  open.model_path = o.out_dir;
  open.engine.device = "cpu";
  open.engine.max_len = 64;
  open.engine.cache_tokens = 256;
  auto opened = OpenModel(open);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto session = opened->engine->CreateSession();
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_TRUE(opened->engine->PrefillAll(*session, {1, 40, 41}).ok());
}

// Opens the artifact in `dir` with --no-jit and an empty kernel cache, then prefills and
// decodes: every kernel must come from the artifact, so NVRTC never runs.
void ExpectRunsWithoutNvrtc(const std::string& dir, const std::vector<int32_t>& prompt) {
  const std::string empty_cache = testing::TempDir("cache");
  setenv("KVCC_CACHE_DIR", empty_cache.c_str(), 1);
  const int64_t before = codegen::NvrtcCompileCount();
  OpenOptions open;
  open.model_path = dir;
  open.engine.device = "cuda";
  open.engine.max_len = 256;
  open.engine.cache_tokens = 4096;
  open.engine.no_jit = true;
  auto opened = OpenModel(open);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto session = opened->engine->CreateSession();
  ASSERT_TRUE(session.ok()) << session.status();
  auto logits = opened->engine->PrefillAll(*session, prompt);
  ASSERT_TRUE(logits.ok()) << logits.status();
  auto next = opened->engine->Decode({{*session, 75}});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(codegen::NvrtcCompileCount(), before);
  EXPECT_TRUE(fs::is_empty(empty_cache));
}

// On the device: with an empty kernel cache, opening the artifact and generating loads every
// kernel from it, so NVRTC never runs (--no-jit makes any miss an error).
TEST(ArtifactCompilerGpu, OpeningTheArtifactMakesNoNvrtcCall) {
  SKIP_WITHOUT_GPU();
  testing::FreshKernelCacheDir();
  CompileOptions o = Int8Options(testing::TempDir("out") + "/art");
  o.arches = DefaultArches();
  auto r = CompileArtifact(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectRunsWithoutNvrtc(o.out_dir, {1, 403, 407, 261});
}

// On the GPU the uploader checks the digests while it stages the weights: the open fails
// there, naming the file and chunk, and no engine is returned.
TEST(ArtifactCompilerGpu, TheUploaderRefusesDamagedWeights) {
  SKIP_WITHOUT_GPU();
  testing::FreshKernelCacheDir();
  CompileOptions o = Int8Options(testing::TempDir("out_damaged") + "/art");
  o.arches = DefaultArches();
  auto r = CompileArtifact(o);
  ASSERT_TRUE(r.ok()) << r.status();
  OpenOptions intact;
  intact.model_path = o.out_dir;
  intact.engine.device = "cuda";
  KVCC_ASSERT_OK(OpenModel(intact).status());
  ExpectOpenRefusesDamagedWeights(DamagedCopy(o.out_dir, "damaged_gpu"), "cuda");
}

// The same for an AWQ model: the 4-bit linears' kernels come from the artifact too (a prompt
// longer than 64 tokens takes the prefill unpack, the decode the tensor-core linear).
TEST(ArtifactCompilerGpu, AnAwqArtifactRunsWithoutNvrtc) {
  SKIP_WITHOUT_GPU();
  testing::FreshKernelCacheDir();
  KVCC_ASSERT_OK_AND_ASSIGN(o, AwqOptions("awq_gpu_compile", DefaultArches()));
  auto r = CompileArtifact(o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 80; ++i) prompt.push_back((i * 37 + 3) % 500);
  ExpectRunsWithoutNvrtc(o.out_dir, prompt);
}

// --model-format awq: an AutoAWQ checkpoint (round-to-nearest of a synthetic model) compiles
// into an artifact whose graph holds the 4-bit linears packed (valid ONNX) and generates on the
// CPU with the logits of the checkpoint opened directly, bit for bit; a format the checkpoint
// is not is refused.
TEST(ArtifactCompilerFormats, AnAwqCheckpointCompilesAndGenerates) {
  testing::FreshKernelCacheDir();
  const std::string dir = testing::TempDir("awq_compile");
  testing::SynthOptions so;
  so.seed = 3;
  so.dtype = ir::DType::kF32;
  KVCC_ASSERT_OK(testing::SynthesizeCheckpoint(
                     testing::SourcePath("models/configs/llama-hd64-mha.json"), dir + "/src", so)
                     .status());
  calibration::AwqOptions ao;
  ao.rtn = true;
  ao.group_size = 32;
  KVCC_ASSERT_OK_AND_ASSIGN(r, calibration::QuantizeAwq(dir + "/src", {}, ao));
  fs::create_directories(dir + "/awq");
  KVCC_ASSERT_OK(frontend::CopyModelSideFiles(dir + "/src", dir + "/awq").status());
  KVCC_ASSERT_OK_AND_ASSIGN(j, ir::ReadJsonFile(dir + "/src/config.json"));
  std::ofstream(dir + "/awq/config.json") << calibration::AwqCheckpointConfig(j, r, 32).dump(1);
  KVCC_ASSERT_OK(testing::WriteSafetensors(dir + "/awq/model.safetensors", r.tensors));

  CompileOptions o;
  o.model_path = dir + "/awq";
  o.out_dir = dir + "/art";
  o.lower.model_format = "gptq";
  o.arches = {"sm_90a"};
  auto refused = CompileArtifact(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "--model-format gptq"))
      << refused.status();
  EXPECT_FALSE(fs::exists(o.out_dir));
  o.lower.model_format = "awq";
  auto compiled = CompileArtifact(o);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ(compiled->manifest.arches, std::vector<std::string>{"sm_90a"});

  // Its 4-bit linears are stored packed (the 688-wide down projections are not quantized at
  // group 32), and the manifest and `kvcc inspect` say so.
  KVCC_ASSERT_OK_AND_ASSIGN(art, LoadModelChecked(o.out_dir));
  const W4LinearCounts counts = CountW4Linears(*art);
  EXPECT_GT(counts.packed, 0);
  EXPECT_EQ(counts.plain, 0);
  EXPECT_TRUE(compiled->w4_plain.empty());
  const std::string layout = absl::StrCat(ir::kW4PackedLayout, " v", ir::kW4PackedLayoutVersion,
                                          ": ", counts.packed, " packed, 0 plain");
  EXPECT_EQ(compiled->manifest.w4_layout, layout);
  KVCC_ASSERT_OK_AND_ASSIGN(described, DescribeCompiledArtifact(o.out_dir));
  EXPECT_TRUE(absl::StrContains(described, absl::StrCat("4-bit linears: ", layout))) << described;
  // Still valid ONNX in the ai.kvcc domain.
  if (const char* python = std::getenv("KVCC_PYTHON"); python != nullptr && *python != '\0') {
    const std::string log = o.out_dir + ".check.log";
    const std::string cmd = std::string("\"") + python + "\" \"" +
                            testing::SourcePath("tests/python/check_onnx.py") + "\" \"" +
                            o.out_dir + "\" >\"" + log + "\" 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << testing::ReadFileBytes(log);
  }
  KVCC_ASSERT_OK_AND_ASSIGN(reference, LoadForExecution(o.model_path, LowerOptions{"awq"}));
  const std::vector<int32_t> prompt = {1, 40, 41, 26, 37, 27};
  const std::vector<int32_t> decode = {75, 29, 10};
  const std::vector<float> want = testing::CpuLogits(std::move(reference), prompt, decode);
  const std::vector<float> got = testing::CpuLogits(std::move(art), prompt, decode);
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace kvcc::pipeline
