// 4-bit checkpoint import: quantization_config parsing and --model-format, AutoAWQ-GEMM export
// -> import round trips, errors naming the tensor, and (under KVCC_PYTHON) AWQ and GPTQ
// checkpoints packed by the independent tests/python/awq_reference.py: every dequantized weight
// the CPU backend computes equals the reference's, and the AWQ model's logits match
// transformers on the dequantized weights.
#include "frontend/w4_checkpoint_format.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "frontend/hf_importer.h"
#include "frontend/model_loader.h"
#include "gtest/gtest.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "ir/op_names.h"
#include "runtime/cpu_backend.h"
#include "runtime/engine.h"
#include "testing/safetensors_writer.h"
#include "testing/synth.h"
#include "tests/test_util.h"

namespace kvcc::frontend {
namespace {

using ir::Json;

absl::StatusOr<QuantizationConfig> Parse(const Json& q) {
  return ParseQuantizationConfig(Json{{"quantization_config", q}}, "/m/config.json");
}

void ExpectError(const Json& q, const std::string& needle) {
  auto r = Parse(q);
  ASSERT_FALSE(r.ok()) << q.dump();
  EXPECT_NE(std::string(r.status().message()).find(needle), std::string::npos) << r.status();
}

TEST(QuantizationConfigTest, ReadsAwqAndGptq) {
  KVCC_ASSERT_OK_AND_ASSIGN(none, ParseQuantizationConfig(Json::object(), "c"));
  EXPECT_FALSE(none.quantized());
  KVCC_ASSERT_OK_AND_ASSIGN(
      awq, Parse({{"quant_method", "awq"}, {"version", "GEMM"}, {"bits", 4}, {"group_size", 64},
                  {"zero_point", true}, {"modules_to_not_convert", {"down_proj"}}}));
  EXPECT_EQ(awq.format, ModelFormat::kAwq);
  EXPECT_EQ(awq.group_size, 64);
  EXPECT_TRUE(awq.Converts("model.layers.0.mlp.up_proj"));
  EXPECT_FALSE(awq.Converts("model.layers.0.mlp.down_proj"));
  // AutoAWQ's older spelling.
  KVCC_ASSERT_OK_AND_ASSIGN(old, Parse({{"quant_method", "awq"}, {"w_bit", 4},
                                        {"q_group_size", 128}, {"zero_point", true}}));
  EXPECT_EQ(old.group_size, 128);
  KVCC_ASSERT_OK_AND_ASSIGN(gptq, Parse({{"quant_method", "gptq"}, {"bits", 4},
                                         {"group_size", -1}, {"desc_act", false}, {"sym", true}}));
  EXPECT_EQ(gptq.format, ModelFormat::kGptq);
  EXPECT_EQ(gptq.GroupFor(4096), 4096);
  EXPECT_TRUE(gptq.zeros_minus_one);
  EXPECT_FALSE(gptq.zero_point);
  KVCC_ASSERT_OK_AND_ASSIGN(v2, Parse({{"quant_method", "gptq"}, {"bits", 4},
                                       {"checkpoint_format", "gptq_v2"}}));
  EXPECT_FALSE(v2.zeros_minus_one);
}

TEST(QuantizationConfigTest, RefusesWhatItWouldMisread) {
  const Json awq = {{"quant_method", "awq"}, {"bits", 4}, {"group_size", 128}};
  Json j = awq;
  j["version"] = "gemv";
  ExpectError(j, "quantization_config.version");
  j = awq;
  j["bits"] = 8;
  ExpectError(j, "only 4-bit AWQ");
  j = awq;
  j["group_size"] = 100;
  ExpectError(j, "multiple of 8");
  j = awq;
  j["zero_point"] = false;
  ExpectError(j, "zero_point");
  j = awq;
  j["exotic_packing"] = true;
  ExpectError(j, "quantization_config.exotic_packing");
  ExpectError({{"quant_method", "gptq"}, {"bits", 4}, {"desc_act", true}}, "desc_act");
  ExpectError({{"quant_method", "bitsandbytes"}}, "\"awq\" or \"gptq\"");
  ExpectError({{"quant_method", "awq"}, {"bits", 4}, {"group_size", 32},
               {"modules_to_not_convert", {1}}}, "modules_to_not_convert");
  EXPECT_FALSE(ParseModelFormat("int4").ok());
  EXPECT_EQ(*ParseModelFormat(""), ModelFormat::kAuto);
}

// A random linear in the kvcc layout.
W4Linear RandomLinear(int64_t out, int64_t in, int64_t group, uint32_t seed) {
  std::mt19937 rng(seed);
  W4Linear w;
  w.out = out;
  w.in = in;
  w.group_size = group;
  const int64_t groups = in / group;
  std::vector<uint8_t> codes(ir::DTypeBytes(ir::DType::kI4, out * in));
  std::vector<uint8_t> zeros(ir::DTypeBytes(ir::DType::kI4, out * groups));
  std::vector<uint8_t> scales(out * groups * 2);
  for (int64_t i = 0; i < out * in; ++i) ir::SetI4(codes.data(), i, int(rng() % 16) - 8);
  for (int64_t i = 0; i < out * groups; ++i) {
    ir::SetI4(zeros.data(), i, int(rng() % 16) - 8);
    const uint16_t h = ir::FloatToHalf(0.001f * (1 + rng() % 20));
    std::memcpy(scales.data() + 2 * i, &h, 2);
  }
  w.codes = ir::WeightData::FromVector(codes);
  w.zeros = ir::WeightData::FromVector(zeros);
  w.scales = ir::WeightData::FromVector(scales);
  return w;
}

std::vector<uint8_t> Bytes(const ir::WeightData& d) {
  return std::vector<uint8_t>(d.bytes, d.bytes + d.size);
}

class W4CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = kvcc::testing::TempDir("w4_checkpoint"); }
  // Writes `tensors` as dir_/model.safetensors and opens it.
  std::unique_ptr<Checkpoint> Write(const std::vector<SafetensorsTensor>& tensors) {
    auto s = kvcc::testing::WriteSafetensors(dir_ + "/model.safetensors", tensors);
    EXPECT_TRUE(s.ok()) << s;
    auto c = Checkpoint::Open(dir_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }
  std::string dir_;
};

TEST_F(W4CheckpointTest, AwqExportImportRoundTrips) {
  const W4Linear w = RandomLinear(24, 64, 32, 5);
  KVCC_ASSERT_OK_AND_ASSIGN(tensors, ExportAwqGemm(w, "m.q_proj"));
  ASSERT_EQ(tensors.size(), 3u);
  EXPECT_EQ(tensors[0].shape, (std::vector<int64_t>{64, 3}));
  EXPECT_EQ(tensors[1].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(tensors[2].shape, (std::vector<int64_t>{2, 24}));
  auto ckpt = Write(tensors);
  ASSERT_NE(ckpt, nullptr);
  QuantizationConfig q;
  q.format = ModelFormat::kAwq;
  q.bits = 4;
  q.group_size = 32;
  KVCC_ASSERT_OK_AND_ASSIGN(back, ImportW4Linear(*ckpt, q, "m.q_proj", 24, 64, "test"));
  EXPECT_EQ(Bytes(back.codes), Bytes(w.codes));
  EXPECT_EQ(Bytes(back.zeros), Bytes(w.zeros));
  EXPECT_EQ(Bytes(back.scales), Bytes(w.scales));
  // The published nibble order: output 1 of input 0 sits in nibble 4 of word 0.
  uint32_t word;
  std::memcpy(&word, tensors[0].data.bytes, 4);
  EXPECT_EQ(int((word >> 16) & 0xF), ir::I4ToCode(ir::GetI4(w.codes.bytes, 1 * 64 + 0)));
  EXPECT_EQ(int((word >> 4) & 0xF), ir::I4ToCode(ir::GetI4(w.codes.bytes, 2 * 64 + 0)));
}

TEST_F(W4CheckpointTest, MismatchesNameTheTensor) {
  const W4Linear w = RandomLinear(16, 64, 32, 6);
  KVCC_ASSERT_OK_AND_ASSIGN(tensors, ExportAwqGemm(w, "m.up_proj"));
  auto ckpt = Write(tensors);
  ASSERT_NE(ckpt, nullptr);
  QuantizationConfig q;
  q.format = ModelFormat::kAwq;
  q.bits = 4;
  q.group_size = 32;
  auto expect = [&](const QuantizationConfig& qc, int64_t out, int64_t in,
                    const std::string& needle) {
    auto r = ImportW4Linear(*ckpt, qc, "m.up_proj", out, in, "ctx");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(std::string(r.status().message()).find(needle), std::string::npos) << r.status();
  };
  expect(q, 16, 128, "'m.up_proj.qweight' has shape [64,2], expected [128,2]");
  expect(q, 24, 64, "'m.up_proj.qweight' has shape [64,2], expected [64,3]");
  expect(q, 16, 48, "modules_to_not_convert");  // 32 does not divide 48
  QuantizationConfig g64 = q;
  g64.group_size = 64;
  expect(g64, 16, 64, "'m.up_proj.qzeros' has shape [2,2], expected [1,2]");
  QuantizationConfig gptq = q;
  gptq.format = ModelFormat::kGptq;
  expect(gptq, 16, 64, "'m.up_proj.qweight' has shape [64,2], expected [8,16]");
  auto missing = ImportW4Linear(*ckpt, q, "m.down_proj", 16, 64, "ctx");
  EXPECT_NE(std::string(missing.status().message()).find("'m.down_proj.qweight' is missing"),
            std::string::npos) << missing.status();
  // Wrong dtype: scales stored as f32.
  std::vector<SafetensorsTensor> bad = tensors;
  std::vector<uint8_t> f32(bad[2].data.size * 2);
  bad[2] = {bad[2].name, ir::DType::kF32, bad[2].shape, ir::WeightData::FromVector(f32), ""};
  auto ckpt2 = Write(bad);
  auto r = ImportW4Linear(*ckpt2, q, "m.up_proj", 16, 64, "ctx");
  EXPECT_NE(std::string(r.status().message()).find("'m.up_proj.scales' has dtype f32, expected f16"),
            std::string::npos) << r.status();
}

TEST_F(W4CheckpointTest, GptqActOrderIsRefused) {
  // GPTQ tensors of a [8, 16] linear with g_idx that permutes groups.
  std::vector<SafetensorsTensor> t;
  t.push_back({"m.qweight", ir::DType::kI32, {2, 8}, ir::WeightData::FromVector(std::vector<uint8_t>(64)), ""});
  t.push_back({"m.qzeros", ir::DType::kI32, {2, 1}, ir::WeightData::FromVector(std::vector<uint8_t>(8)), ""});
  t.push_back({"m.scales", ir::DType::kF16, {2, 8}, ir::WeightData::FromVector(std::vector<uint8_t>(32)), ""});
  std::vector<uint8_t> g_idx(64);
  for (int i = 0; i < 16; ++i) {
    const int32_t g = 1 - i / 8;
    std::memcpy(g_idx.data() + 4 * i, &g, 4);
  }
  t.push_back({"m.g_idx", ir::DType::kI32, {16}, ir::WeightData::FromVector(g_idx), ""});
  auto ckpt = Write(t);
  ASSERT_NE(ckpt, nullptr);
  QuantizationConfig q;
  q.format = ModelFormat::kGptq;
  q.bits = 4;
  q.group_size = 8;
  auto r = ImportW4Linear(*ckpt, q, "m", 8, 16, "ctx");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("'m.g_idx' maps input 0 to group 1"),
            std::string::npos) << r.status();
}

// ---- against the Python reference ----

struct Reference {
  bool ran = false;
  std::string error, dir;
  std::vector<int32_t> ids;
};

const Reference& GetReference() {
  static Reference* ref = [] {
    auto* r = new Reference();
    const char* python = std::getenv("KVCC_PYTHON");
    if (python == nullptr || *python == '\0') return r;
    r->ran = true;
    r->dir = kvcc::testing::TempDir("w4_reference");
    kvcc::testing::SynthOptions so;
    so.seed = 31;
    so.dtype = ir::DType::kF32;
    auto s = kvcc::testing::SynthesizeCheckpoint(
        kvcc::testing::SourcePath("models/configs/llama-hd64-mha.json"), r->dir + "/src", so);
    if (!s.ok()) {
      r->error = std::string(s.status().message());
      return r;
    }
    for (int i = 0; i < 24; ++i) r->ids.push_back((i * 37 + 11) % 512);
    std::ofstream(r->dir + "/ids", std::ios::binary)
        .write(reinterpret_cast<const char*>(r->ids.data()), r->ids.size() * 4);
    // AWQ g32 (688-wide down_proj not divisible: kept float), GPTQ g16 with every linear.
    const std::string cmd = std::string("\"") + python + "\" " +
                            kvcc::testing::SourcePath("tests/python/awq_reference.py") + " " +
                            r->dir + "/src " + r->dir + " 32 16 7 mlp.down_proj > " + r->dir +
                            "/python.log 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      r->error = "reference failed: " + cmd + "\n" + kvcc::testing::ReadFileBytes(r->dir + "/python.log");
    }
    return r;
  }();
  return *ref;
}

class W4ReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GetReference().ran) GTEST_SKIP() << "KVCC_PYTHON is not set";
    ASSERT_TRUE(GetReference().error.empty()) << GetReference().error;
  }
};

// W^T of every 4-bit linear of `module` through the CPU backend (identity input), against the
// reference's f32 tensor `<module>.<suffix>` of the dequantized checkpoint: bit for bit.
void ExpectDequantizedWeights(const ir::Module& module, const std::string& suffix, int expected) {
  const Reference& ref = GetReference();
  KVCC_ASSERT_OK_AND_ASSIGN(deq, Checkpoint::Open(ref.dir + "/dequant"));
  runtime::CpuBackend cpu(2);
  int checked = 0;
  for (const auto& node : module.graph.nodes()) {
    if (node->op != ir::op::kLinear || node->input(1)->type.dtype != ir::DType::kI4) continue;
    const ir::Value* codes = node->input(1);
    const std::string name = codes->name.substr(0, codes->name.size() - strlen(".qweight"));
    const int64_t out = codes->type.shape[0], in = codes->type.shape[1];
    auto view = [](const ir::Value* v) {
      return runtime::Tensor::View(v->type.dtype, v->type.shape, runtime::Device::kCpu,
                                   const_cast<uint8_t*>(v->weight->bytes), v->weight->owner);
    };
    runtime::Tensor c = view(codes), s = view(node->input(3)), z = view(node->input(4));
    runtime::Tensor eye = runtime::Tensor::HostZeros(ir::DType::kF32, {in, in});
    for (int64_t i = 0; i < in; ++i) eye.data<float>()[i * in + i] = 1.0f;
    runtime::QuantizedWeight w{&c, &s, &z, *node->Int("group_size")};
    KVCC_ASSERT_OK_AND_ASSIGN(wt, cpu.QuantizedLinear(eye, w, nullptr));
    KVCC_ASSERT_OK_AND_ASSIGN(want, deq->Get(name + "." + suffix));
    ASSERT_EQ(want.shape, (std::vector<int64_t>{out, in})) << name;
    const float* ref_w = reinterpret_cast<const float*>(want.data.bytes);
    int64_t mismatches = 0;
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) mismatches += wt.data<float>()[i * out + o] != ref_w[o * in + i];
    }
    EXPECT_EQ(mismatches, 0) << name;
    ++checked;
  }
  EXPECT_EQ(checked, expected);
}

TEST_F(W4ReferenceTest, AwqDequantizesLikeTheReference) {
  KVCC_ASSERT_OK_AND_ASSIGN(m, LoadModel(GetReference().dir + "/awq", ModelFormat::kAwq));
  // 2 layers x (q, k, v, o, gate, up); down_proj is in modules_to_not_convert.
  ExpectDequantizedWeights(*m, "weight", 12);
  EXPECT_EQ(m->metadata.at("model_format"), "awq");
}

TEST_F(W4ReferenceTest, GptqDequantizesLikeTheReference) {
  KVCC_ASSERT_OK_AND_ASSIGN(m, LoadModel(GetReference().dir + "/gptq"));
  // The reference stores GPTQ's variant beside AWQ's under another name; down_proj is float.
  ExpectDequantizedWeights(*m, "gptq_weight", 12);
}

TEST_F(W4ReferenceTest, ModelFormatMustMatchTheCheckpoint) {
  auto hf = LoadModel(GetReference().dir + "/awq", ModelFormat::kHf);
  ASSERT_FALSE(hf.ok());
  EXPECT_NE(std::string(hf.status().message()).find("describes awq-quantized weights"),
            std::string::npos) << hf.status();
  auto awq = LoadModel(GetReference().dir + "/dequant", ModelFormat::kAwq);
  ASSERT_FALSE(awq.ok());
  EXPECT_NE(std::string(awq.status().message()).find("float weights"), std::string::npos)
      << awq.status();
}

std::vector<float> Logits(const std::string& dir, const std::vector<int32_t>& ids) {
  auto m = LoadModel(dir);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return {};
  runtime::EngineOptions o;
  o.full_precision_cache = true;  // transformers keeps its cache in fp32
  o.cache_tokens = 256;
  o.max_context = 256;
  auto e = runtime::Engine::Create(std::shared_ptr<const ir::Module>(std::move(*m)),
                                   std::make_unique<runtime::CpuBackend>(2), o);
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return {};
  auto s = (*e)->CreateSession();
  EXPECT_TRUE(s.ok()) << s.status();
  auto logits = (*e)->PrefillAll(*s, ids);
  EXPECT_TRUE(logits.ok()) << logits.status();
  return logits.ok() ? *logits : std::vector<float>{};
}

TEST_F(W4ReferenceTest, AwqLogitsMatchTransformersOnDequantizedWeights) {
  const Reference& ref = GetReference();
  const std::vector<float> awq = Logits(ref.dir + "/awq", ref.ids);
  const std::vector<float> deq = Logits(ref.dir + "/dequant", ref.ids);
  ASSERT_EQ(awq.size(), ref.ids.size() * 512);
  // Dequantizing in the backend is the same f32 GEMM as reading the dequantized weights.
  EXPECT_EQ(awq, deq);
  // The 4-bit linears survive the artifact (ONNX) round trip, format recorded.
  const std::string artifact = ref.dir + "/awq_artifact";
  KVCC_ASSERT_OK(ImportToArtifact(ref.dir + "/awq", artifact, ModelFormat::kAwq).status());
  EXPECT_EQ(Logits(artifact, ref.ids), awq);
  EXPECT_FALSE(LoadModel(artifact, ModelFormat::kGptq).ok());
  if (!std::filesystem::exists(ref.dir + "/logits")) GTEST_SKIP() << "transformers missing";
  std::ifstream f(ref.dir + "/logits", std::ios::binary);
  std::vector<float> want(awq.size());
  f.read(reinterpret_cast<char*>(want.data()), want.size() * 4);
  ASSERT_TRUE(f.good());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::fabs(double{awq[i]} - want[i]) /
                                std::max(1.0, std::fabs(double{want[i]})));
  }
  EXPECT_LE(worst, 1e-3);
}

}  // namespace
}  // namespace kvcc::frontend
