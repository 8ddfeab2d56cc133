// ONNX artifact serialization: printer-equal round trips, the on-disk layout (64-byte aligned
// external data), the PyPI onnx checker, and clean errors for corrupt artifacts.
#include "ir/onnx_io.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "frontend/hf_importer.h"
#include "gtest/gtest.h"
#include "ir/artifact_manifest.h"
#include "ir/atomic_file.h"
#include "ir/builder.h"
#include "ir/op_schema.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "ir/xxhash64.h"
#include "onnx/onnx.pb.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

namespace fs = std::filesystem;

// Seeded bytes, so a weight that comes back shuffled or shifted is noticed.
WeightData RandomBytes(const TensorType& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(static_cast<size_t>(t.NumBytes()));
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  return WeightData::FromVector(std::move(bytes));
}

Value* Weight(Graph& g, const std::string& name, DType dt, std::vector<int64_t> shape) {
  TensorType t{dt, std::move(shape)};
  auto v = g.AddWeight(name, t, RandomBytes(t, static_cast<uint32_t>(g.weights().size() + 1)));
  EXPECT_TRUE(v.ok()) << v.status();
  return *v;
}

// One decoder layer at toy sizes using every op, every weight dtype, a bias, a fused qkv and
// gate_up with split, group-quantized linears with and without zeros (an omitted optional
// operand in the middle), and double attributes float32 cannot hold.
void BuildEverything(Module& m) {
  m.config = testing::TinyLlamaConfig(1);
  ModelConfig& c = m.config;
  c.max_position = 8192;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.rope_scaling.original_max_position = 8192;
  m.metadata["calibration.dataset"] = "wikitext-2, 128 samples";
  m.metadata["pass_history"] = "import\nkv-quantize --quant-policy 4\n";
  m.metadata["tokenizer"] = std::string(200, 'x');  // longer than the printer shows

  Graph& g = m.graph;
  Builder b(&g);
  auto add = [&](const std::string& op, const std::string& name, std::vector<Value*> in,
                 AttributeMap attrs = {}) {
    auto out = b.Add(op, name, std::move(in), std::move(attrs));
    EXPECT_TRUE(out.ok()) << out.status();
    return *out;
  };
  Value* ids = *g.AddInput("input_ids", {DType::kI32, {kDynamic}});
  Value* pos = *g.AddInput("positions", {DType::kI32, {kDynamic}});
  Value* h = add("embedding", "embed",
                 {ids, Weight(g, "model.embed_tokens.weight", DType::kF16, {32, 16})})[0];
  Value* n1 = add("rms_norm", "layers.0.input_norm",
                  {h, Weight(g, "model.layers.0.input_layernorm.weight", DType::kF32, {16})},
                  {{"eps", 1e-5}})[0];
  Value* qkv = add("linear", "layers.0.qkv",
                   {n1, Weight(g, "model.layers.0.qkv.weight", DType::kBF16, {32, 16}),
                    Weight(g, "model.layers.0.qkv.bias", DType::kF32, {32})})[0];
  auto parts =
      add("split", "layers.0.qkv_split", {qkv}, {{"sizes", std::vector<int64_t>{16, 8, 8}}});
  AttributeMap rope = {{"head_dim", int64_t{4}},
                       {"theta", 500000.0},
                       {"scaling", std::string("llama3")},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position", int64_t{8192}}};
  AttributeMap qrope = rope, krope = rope;
  qrope["heads"] = int64_t{4};
  krope["heads"] = int64_t{2};
  Value* q = add("rotary", "layers.0.q_rope", {parts[0], pos}, qrope)[0];
  Value* k = add("rotary", "layers.0.k_rope", {parts[1], pos}, krope)[0];
  Value* cache =
      add("kv_cache_write", "layers.0.kv_cache", {k, parts[2]},
          {{"layer", int64_t{0}},
           {"kv_heads", int64_t{2}},
           {"head_dim", int64_t{4}},
           {"cache_dtype", std::string("i8")},
           {"kv_scheme", std::string("per_head")},
           {"k_zp", std::vector<double>{0.1, -1.0 / 3}},
           {"k_scale", std::vector<double>{0.0123456789012345, 2.0 / 7}},
           {"v_zp", std::vector<double>{-0.0, 1e-300}},
           {"v_scale", std::vector<double>{2.2250738585072014e-308, 1.7976931348623157e308}}})[0];
  Value* att = add("attention", "layers.0.attention", {q, cache},
                   {{"layer", int64_t{0}},
                    {"heads", int64_t{4}},
                    {"kv_heads", int64_t{2}},
                    {"head_dim", int64_t{4}},
                    {"causal", int64_t{1}},
                    {"scale", 1.0 / std::sqrt(3.0)}})[0];
  Value* o =
      add("linear", "layers.0.o_proj",
          {att, Weight(g, "model.layers.0.self_attn.o_proj.weight", DType::kFP8E4M3, {16, 16})})[0];
  Value* r1 = add("add", "layers.0.attn_residual", {h, o},
                  {{"note", std::string("non-ASCII text: \xc3\xa9\xe2\x82\xac")},
                   {"empty_ints", std::vector<int64_t>{}},
                   {"empty_doubles", std::vector<double>{}},
                   {"infinities", std::vector<double>{INFINITY, -INFINITY}},
                   {"big_int", std::numeric_limits<int64_t>::min()}})[0];
  Value* n2 =
      add("rms_norm", "layers.0.post_norm",
          {r1, Weight(g, "model.layers.0.post_attention_layernorm.weight", DType::kF16, {16})},
          {{"eps", 1e-5}})[0];
  Value* gate_up = add("linear", "layers.0.gate_up",
                       {n2, Weight(g, "model.layers.0.gate_up.qweight", DType::kI4, {48, 16}),
                        nullptr, Weight(g, "model.layers.0.gate_up.scales", DType::kF16, {48, 2}),
                        Weight(g, "model.layers.0.gate_up.zeros", DType::kF16, {48, 2})},
                       {{"group_size", int64_t{8}}})[0];
  auto gu =
      add("split", "layers.0.gate_up_split", {gate_up}, {{"sizes", std::vector<int64_t>{24, 24}}});
  Value* act = add("silu_mul", "layers.0.silu_mul", {gu[0], gu[1]})[0];
  Value* down = add("linear", "layers.0.down",
                    {act, Weight(g, "model.layers.0.down.qweight", DType::kU8, {16, 24}), nullptr,
                     Weight(g, "model.layers.0.down.scales", DType::kF32, {16, 3})},
                    {{"group_size", int64_t{8}}})[0];
  // The residual add fused with the final norm: a two-output node.
  Value* n3 = add("add_rms_norm", "final_norm",
                  {r1, down, Weight(g, "model.norm.weight", DType::kF32, {16})},
                  {{"eps", 1e-5}})[1];
  Value* logits =
      add("lm_head", "lm_head", {n3, Weight(g, "lm_head.weight", DType::kF32, {32, 16})})[0];
  g.AddOutput(logits);
  // The remaining dtypes, an odd i4 element count (a half-filled last byte) and an empty tensor.
  Weight(g, "extra.i8", DType::kI8, {4, 4});
  Weight(g, "extra.i32", DType::kI32, {3});
  Weight(g, "extra.odd_i4", DType::kI4, {3, 3});
  Weight(g, "extra.empty", DType::kF32, {0});
}

onnx::ModelProto LoadProto(const std::string& dir) {
  onnx::ModelProto model;
  std::ifstream in(dir + "/" + kOnnxFileName, std::ios::binary);
  EXPECT_TRUE(model.ParseFromIstream(&in));
  return model;
}

// Saves an edited model.onnx with a manifest that vouches for it, as a hand-crafted (rather than
// damaged) artifact would be, so the reader's own checks are what the edit meets.
void SaveProto(const onnx::ModelProto& model, const std::string& dir) {
  std::string bytes;
  ASSERT_TRUE(model.SerializeToString(&bytes));
  KVCC_ASSERT_OK(WriteFileAtomically(dir + "/" + kOnnxFileName, bytes));
  KVCC_ASSERT_OK(
      WriteFileAtomically(dir + "/" + kManifestFileName, ManifestToJson(ManifestOf(bytes))));
}

onnx::TensorProto* FindInitializer(onnx::ModelProto& model, const std::string& name) {
  for (auto& t : *model.mutable_graph()->mutable_initializer()) {
    if (t.name() == name) return &t;
  }
  ADD_FAILURE() << "no initializer " << name;
  return nullptr;
}

void SetExternal(onnx::TensorProto* t, const std::string& key, const std::string& value) {
  for (auto& e : *t->mutable_external_data()) {
    if (e.key() == key) e.set_value(value);
  }
}

std::string ExternalValue(const onnx::TensorProto& t, const std::string& key) {
  for (const auto& e : t.external_data()) {
    if (e.key() == key) return e.value();
  }
  return "";
}

// Writes the full test module and returns its directory.
std::string WriteEverything(const std::string& name, std::string* printed = nullptr) {
  Module m;
  BuildEverything(m);
  EXPECT_TRUE(Verify(m).ok()) << Verify(m);
  std::string dir = kvcc::testing::TempDir(name);
  absl::Status s = WriteOnnx(m, dir);
  EXPECT_TRUE(s.ok()) << s;
  if (printed != nullptr) *printed = Print(m);
  return dir;
}

// The read must fail with a message naming the file and containing `needle`.
void ExpectReadError(const std::string& dir, const std::string& needle) {
  auto m = ReadOnnx(dir);
  ASSERT_FALSE(m.ok()) << "read succeeded; expected an error about " << needle;
  EXPECT_NE(m.status().message().find(needle), std::string::npos) << m.status();
  EXPECT_NE(m.status().message().find(dir), std::string::npos) << m.status();
}

TEST(OnnxIoTest, RoundTripIsPrinterEqualAndBytesIdentical) {
  Module m;
  BuildEverything(m);
  KVCC_ASSERT_OK(Verify(m));
  std::string dir = kvcc::testing::TempDir("artifact");
  KVCC_ASSERT_OK(WriteOnnx(m, dir));
  KVCC_ASSERT_OK_AND_ASSIGN(back, ReadOnnx(dir));
  EXPECT_EQ(Print(*back), Print(m));
  EXPECT_EQ(back->metadata, m.metadata);
  EXPECT_EQ(back->config.ToJson(), m.config.ToJson());
  ASSERT_EQ(back->graph.weights().size(), m.graph.weights().size());
  for (size_t i = 0; i < m.graph.weights().size(); ++i) {
    const WeightData& a = *m.graph.weights()[i]->weight;
    const WeightData& b = *back->graph.weights()[i]->weight;
    ASSERT_EQ(a.size, b.size) << m.graph.weights()[i]->name;
    if (a.size > 0) {
      EXPECT_EQ(std::memcmp(a.bytes, b.bytes, a.size), 0) << m.graph.weights()[i]->name;
    }
  }
  // The omitted operand stays in place, trailing ones stay absent.
  const Node* down = back->graph.FindNode("layers.0.down");
  ASSERT_EQ(down->inputs.size(), 4u);
  EXPECT_EQ(down->inputs[2], nullptr);
  EXPECT_EQ(down->inputs[3]->name, "model.layers.0.down.scales");
}

TEST(OnnxIoTest, DoublesSurviveExactly) {
  Module m;
  BuildEverything(m);
  std::string dir = kvcc::testing::TempDir("artifact");
  KVCC_ASSERT_OK(WriteOnnx(m, dir));
  KVCC_ASSERT_OK_AND_ASSIGN(back, ReadOnnx(dir));
  for (const char* node : {"layers.0.kv_cache", "layers.0.attention", "layers.0.input_norm",
                           "layers.0.q_rope", "layers.0.attn_residual"}) {
    const AttributeMap& want = m.graph.FindNode(node)->attrs;
    const AttributeMap& got = back->graph.FindNode(node)->attrs;
    EXPECT_TRUE(want == got) << node;  // exact, bit for bit apart from -0 == 0
  }
  const auto& v_zp =
      std::get<std::vector<double>>(back->graph.FindNode("layers.0.kv_cache")->attrs.at("v_zp"));
  EXPECT_TRUE(std::signbit(v_zp[0]));
  EXPECT_EQ(back->config.rms_norm_eps, 1e-5);
  // The text form is the readable one: Netron shows these strings.
  onnx::ModelProto model = LoadProto(dir);
  bool saw_eps = false;
  for (const auto& node : model.graph().node()) {
    if (node.name() != "layers.0.input_norm") continue;
    for (const auto& a : node.attribute()) {
      if (a.name() != "eps") continue;
      saw_eps = true;
      EXPECT_EQ(a.type(), onnx::AttributeProto::STRING);
      EXPECT_EQ(a.s(), "1e-05");
      EXPECT_EQ(a.doc_string(), kDoubleAttrDoc);
    }
  }
  EXPECT_TRUE(saw_eps);
}

TEST(OnnxIoTest, ModelProtoDeclaresDomainsTypesAndAlignedExternalData) {
  std::string dir = WriteEverything("artifact");
  onnx::ModelProto model = LoadProto(dir);
  EXPECT_EQ(model.ir_version(), kOnnxIrVersion);
  EXPECT_EQ(model.producer_name(), "kvcc");
  std::map<std::string, int64_t> opsets;
  for (const auto& o : model.opset_import()) opsets[o.domain()] = o.version();
  EXPECT_EQ(opsets,
            (std::map<std::string, int64_t>{{"", kOnnxDefaultOpset}, {kOpDomain, kOpsetVersion}}));
  for (const auto& node : model.graph().node()) EXPECT_EQ(node.domain(), kOpDomain) << node.name();

  const uint64_t file_size = fs::file_size(dir + "/" + kWeightsFileName);
  std::ifstream weights(dir + "/" + kWeightsFileName, std::ios::binary);
  std::string blob((std::istreambuf_iterator<char>(weights)), std::istreambuf_iterator<char>());
  Module original;
  BuildEverything(original);
  std::map<std::string, int32_t> elem_types;
  uint64_t previous_end = 0;
  for (const auto& t : model.graph().initializer()) {
    SCOPED_TRACE(t.name());
    EXPECT_EQ(t.data_location(), onnx::TensorProto::EXTERNAL);
    EXPECT_FALSE(t.has_raw_data());
    EXPECT_EQ(ExternalValue(t, "location"), kWeightsFileName);
    uint64_t offset = std::stoull(ExternalValue(t, "offset"));
    uint64_t length = std::stoull(ExternalValue(t, "length"));
    EXPECT_EQ(offset % 64, 0u);
    EXPECT_GE(offset, previous_end);
    EXPECT_LT(offset - previous_end, 64u);  // no more padding than alignment needs
    previous_end = offset + length;
    ASSERT_LE(offset + length, file_size);
    const Value* w = original.graph.FindValue(t.name());
    ASSERT_NE(w, nullptr);
    ASSERT_EQ(length, w->weight->size);
    if (length > 0) {
      EXPECT_EQ(std::memcmp(blob.data() + offset, w->weight->bytes, length), 0);
    }
    elem_types[t.name()] = t.data_type();
  }
  EXPECT_EQ(elem_types["model.embed_tokens.weight"], 10);
  EXPECT_EQ(elem_types["model.layers.0.qkv.weight"], 16);
  EXPECT_EQ(elem_types["model.layers.0.self_attn.o_proj.weight"], 17);
  EXPECT_EQ(elem_types["model.layers.0.gate_up.qweight"], 22);
  EXPECT_EQ(elem_types["model.layers.0.down.qweight"], 2);
  EXPECT_EQ(elem_types["extra.i8"], 3);
  EXPECT_EQ(elem_types["extra.i32"], 6);
  EXPECT_EQ(elem_types["lm_head.weight"], 1);

  // Every node output is typed; the token dimension is the named "tokens".
  std::set<std::string> typed;
  for (const auto& vi : model.graph().value_info()) typed.insert(vi.name());
  for (const auto& vi : model.graph().output()) typed.insert(vi.name());
  for (const auto& node : model.graph().node()) {
    for (const auto& out : node.output()) EXPECT_TRUE(typed.count(out)) << out;
  }
  const auto& ids = model.graph().input(0);
  EXPECT_EQ(ids.name(), "input_ids");
  EXPECT_EQ(ids.type().tensor_type().elem_type(), 6);
  EXPECT_EQ(ids.type().tensor_type().shape().dim(0).dim_param(), "tokens");

  std::map<std::string, std::string> props;
  for (const auto& p : model.metadata_props()) props[p.key()] = p.value();
  EXPECT_EQ(props[kConfigMetadataKey], original.config.ToJson());
  EXPECT_EQ(props["kvcc.meta.pass_history"], original.metadata["pass_history"]);
}

TEST(OnnxIoTest, RewritingTheArtifactItWasReadFromKeepsItIntact) {
  std::string printed;
  std::string dir = WriteEverything("artifact", &printed);
  KVCC_ASSERT_OK_AND_ASSIGN(m, ReadOnnx(dir));
  // The module's weights are views into dir/model.weights while it is replaced.
  m->metadata["pass_history"] += "rewrite\n";
  KVCC_ASSERT_OK(WriteOnnx(*m, dir));
  KVCC_ASSERT_OK_AND_ASSIGN(back, ReadOnnx(dir));
  EXPECT_EQ(Print(*back), Print(*m));
  EXPECT_NE(Print(*back), printed);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{kManifestFileName, kOnnxFileName,
                                             kWeightsFileName}));  // no temp files
}

TEST(OnnxIoTest, RefusesToWriteAnInvalidModule) {
  Module m;
  BuildEverything(m);
  m.graph.FindNode("layers.0.input_norm")->attrs.erase("eps");
  std::string dir = kvcc::testing::TempDir("artifact");
  absl::Status s = WriteOnnx(m, dir);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("eps"), std::string::npos) << s;
  EXPECT_FALSE(fs::exists(dir + "/" + kOnnxFileName));
}

TEST(OnnxIoTest, Stories260KRoundTrips) {
  std::string model_dir = kvcc::testing::SharedPath("models/stories260K");
  KVCC_ASSERT_OK_AND_ASSIGN(m, frontend::ImportHfCheckpoint(model_dir));
  std::string dir = kvcc::testing::TempDir("stories260K");
  KVCC_ASSERT_OK(WriteOnnx(*m, dir));
  KVCC_ASSERT_OK_AND_ASSIGN(back, ReadOnnx(dir));
  EXPECT_EQ(Print(*back), Print(*m));
  EXPECT_GT(back->graph.nodes().size(), 10u);
  for (size_t i = 0; i < m->graph.weights().size(); ++i) {
    const WeightData& a = *m->graph.weights()[i]->weight;
    const WeightData& b = *back->graph.weights()[i]->weight;
    ASSERT_EQ(a.size, b.size);
    EXPECT_EQ(std::memcmp(a.bytes, b.bytes, a.size), 0) << m->graph.weights()[i]->name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.bytes) % 64, 0u);  // mmap-aligned in memory too
  }
}

// Runs tests/python/check_onnx.py (the PyPI onnx checker plus kvcc's layout promises) on dir;
// its output goes to *log.
int RunCheckOnnx(const char* python, const std::string& dir, std::string* log) {
  const std::string log_path = dir + ".check.log";
  std::string cmd = std::string("\"") + python + "\" \"" +
                    kvcc::testing::SourcePath("tests/python/check_onnx.py") + "\" \"" + dir +
                    "\" >\"" + log_path + "\" 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream in(log_path);
  log->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return rc;
}

TEST(OnnxIoTest, PassesOnnxChecker) {
  const char* python = std::getenv("KVCC_PYTHON");
  if (python == nullptr || *python == '\0') GTEST_SKIP() << "KVCC_PYTHON is not set";
  std::string dir = WriteEverything("artifact");
  std::string log;
  EXPECT_EQ(RunCheckOnnx(python, dir, &log), 0) << log;
}

TEST(OnnxIoTest, Stories260KPassesOnnxChecker) {
  const char* python = std::getenv("KVCC_PYTHON");
  if (python == nullptr || *python == '\0') GTEST_SKIP() << "KVCC_PYTHON is not set";
  KVCC_ASSERT_OK_AND_ASSIGN(
      m, frontend::ImportHfCheckpoint(kvcc::testing::SharedPath("models/stories260K")));
  std::string dir = kvcc::testing::TempDir("stories260K");
  KVCC_ASSERT_OK(WriteOnnx(*m, dir));
  std::string log;
  EXPECT_EQ(RunCheckOnnx(python, dir, &log), 0) << log;
}

TEST(OnnxIoTest, CheckerScriptRejectsAMisalignedArtifact) {
  const char* python = std::getenv("KVCC_PYTHON");
  if (python == nullptr || *python == '\0') GTEST_SKIP() << "KVCC_PYTHON is not set";
  std::string dir = WriteEverything("artifact");
  onnx::ModelProto model = LoadProto(dir);
  onnx::TensorProto* t = FindInitializer(model, "model.norm.weight");
  SetExternal(t, "offset", std::to_string(std::stoull(ExternalValue(*t, "offset")) + 4));
  SaveProto(model, dir);
  std::string log;
  EXPECT_NE(RunCheckOnnx(python, dir, &log), 0) << log;
  EXPECT_NE(log.find("'model.norm.weight' offset"), std::string::npos) << log;
  EXPECT_NE(log.find("is not 64-byte aligned"), std::string::npos) << log;
}

// ---- corrupt artifacts: each a clean error naming the file and the culprit -------------------

TEST(OnnxIoTest, TruncatedModelFile) {
  std::string dir = WriteEverything("artifact");
  std::string path = dir + "/" + kOnnxFileName;
  uintmax_t size = fs::file_size(path);
  for (uintmax_t keep : {size - 1, size * 3 / 4, size / 2, uintmax_t{7}, uintmax_t{0}}) {
    fs::resize_file(path, keep);
    auto m = ReadOnnx(dir);
    EXPECT_FALSE(m.ok()) << "kept " << keep << " bytes";
    if (!m.ok()) {
      EXPECT_NE(m.status().message().find(kOnnxFileName), std::string::npos) << m.status();
    }
  }
}

TEST(OnnxIoTest, RandomBytesAsModelFile) {
  std::string dir = WriteEverything("artifact");
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::string junk(1 + rng() % 4096, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    std::ofstream(dir + "/" + kOnnxFileName, std::ios::binary | std::ios::trunc) << junk;
    auto m = ReadOnnx(dir);
    EXPECT_FALSE(m.ok()) << "trial " << trial;
  }
}

TEST(OnnxIoTest, FlippedBytesInModelFileNeverCrash) {
  std::string dir = WriteEverything("artifact");
  std::string path = dir + "/" + kOnnxFileName;
  std::ifstream in(path, std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::mt19937 rng(11);
  int failures = 0;
  for (int trial = 0; trial < 200; ++trial) {
    std::string bad = good;
    for (int flips = 0; flips < 4; ++flips)
      bad[rng() % bad.size()] ^= static_cast<char>(1 + rng() % 255);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    auto m = ReadOnnx(dir);
    if (!m.ok()) {
      ++failures;
      EXPECT_NE(m.status().message().find(kOnnxFileName), std::string::npos) << m.status();
    } else {
      EXPECT_TRUE(Verify(**m).ok());  // whatever still reads is a valid module
    }
  }
  EXPECT_GT(failures, 100);
}

TEST(OnnxIoTest, TruncatedWeightsFile) {
  std::string dir = WriteEverything("artifact");
  std::string path = dir + "/" + kWeightsFileName;
  // Cuts into the last non-empty tensor (extra.odd_i4, 5 bytes at the last 64-byte slot).
  fs::resize_file(path, fs::file_size(path) - 62);
  ExpectReadError(dir, "initializer 'extra.odd_i4'");
  ExpectReadError(dir, "lie outside");
}

TEST(OnnxIoTest, MissingWeightsFile) {
  std::string dir = WriteEverything("artifact");
  fs::remove(dir + "/" + kWeightsFileName);
  ExpectReadError(dir, kWeightsFileName);
}

TEST(OnnxIoTest, MissingModelFile) {
  std::string dir = WriteEverything("artifact");
  fs::remove(dir + "/" + kOnnxFileName);
  auto m = ReadOnnx(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find(kOnnxFileName), std::string::npos) << m.status();
}

// Edits the written ModelProto, saves it, and expects a read error containing `needle`.
template <typename Edit>
void ExpectEditRejected(const std::string& name, Edit edit, const std::string& needle) {
  SCOPED_TRACE(name);
  std::string dir = WriteEverything(name);
  onnx::ModelProto model = LoadProto(dir);
  edit(model);
  SaveProto(model, dir);
  ExpectReadError(dir, needle);
}

TEST(OnnxIoTest, BadExternalData) {
  const std::string norm = "model.norm.weight";
  ExpectEditRejected(
      "offset_out_of_range",
      [&](onnx::ModelProto& m) { SetExternal(FindInitializer(m, norm), "offset", "1048576"); },
      "initializer 'model.norm.weight': bytes [1048576, 1048640) lie outside");
  ExpectEditRejected(
      "offset_huge",
      [&](onnx::ModelProto& m) {
        SetExternal(FindInitializer(m, norm), "offset", "18446744073709551552");
      },
      "bytes [18446744073709551552, 18446744073709551552+64) lie outside");
  ExpectEditRejected(
      "misaligned",
      [&](onnx::ModelProto& m) {
        onnx::TensorProto* t = FindInitializer(m, norm);
        SetExternal(t, "offset", std::to_string(std::stoull(ExternalValue(*t, "offset")) + 2));
      },
      "is not 64-byte aligned");
  ExpectEditRejected(
      "offset_not_a_number",
      [&](onnx::ModelProto& m) { SetExternal(FindInitializer(m, norm), "offset", "-64"); },
      "offset '-64' is not a number");
  ExpectEditRejected(
      "wrong_length",
      [&](onnx::ModelProto& m) { SetExternal(FindInitializer(m, norm), "length", "32"); },
      "length 32 but f32[16] needs 64 bytes");
  ExpectEditRejected(
      "missing_external_data",
      [&](onnx::ModelProto& m) { FindInitializer(m, norm)->clear_external_data(); },
      "initializer 'model.norm.weight': external data has no location");
  ExpectEditRejected(
      "inline_data",
      [&](onnx::ModelProto& m) {
        onnx::TensorProto* t = FindInitializer(m, norm);
        t->clear_external_data();
        t->clear_data_location();
        t->set_raw_data(std::string(64, '\0'));
      },
      "data must be external data");
  ExpectEditRejected(
      "other_location",
      [&](onnx::ModelProto& m) {
        SetExternal(FindInitializer(m, norm), "location", "../../etc/passwd");
      },
      "location '../../etc/passwd' is not model.weights");
}

TEST(OnnxIoTest, BadTypes) {
  ExpectEditRejected(
      "wrong_elem_type",
      [](onnx::ModelProto& m) { FindInitializer(m, "lm_head.weight")->set_data_type(7); },
      "initializer 'lm_head.weight': unsupported elem_type 7");
  ExpectEditRejected(
      "elem_type_mismatch",  // a valid dtype whose size disagrees with the stored length
      [](onnx::ModelProto& m) { FindInitializer(m, "lm_head.weight")->set_data_type(10); },
      "initializer 'lm_head.weight': length 2048 but f16[32,16] needs 1024 bytes");
  ExpectEditRejected(
      "value_info_elem_type",
      [](onnx::ModelProto& m) {
        m.mutable_graph()
            ->mutable_value_info(0)
            ->mutable_type()
            ->mutable_tensor_type()
            ->set_elem_type(99);
      },
      "unsupported elem_type 99");
  ExpectEditRejected(
      "value_info_wrong_shape",
      [](onnx::ModelProto& m) {
        for (auto& vi : *m.mutable_graph()->mutable_value_info()) {
          if (vi.name() == "layers.0.qkv") {
            vi.mutable_type()
                ->mutable_tensor_type()
                ->mutable_shape()
                ->mutable_dim(1)
                ->set_dim_value(31);
          }
        }
      },
      "output 'layers.0.qkv' is typed f32[?,31]");
  ExpectEditRejected(
      "missing_value_info",
      [](onnx::ModelProto& m) { m.mutable_graph()->mutable_value_info()->RemoveLast(); },
      "has no value_info");
  ExpectEditRejected(
      "negative_value_dim",
      [](onnx::ModelProto& m) {
        m.mutable_graph()
            ->mutable_value_info(0)
            ->mutable_type()
            ->mutable_tensor_type()
            ->mutable_shape()
            ->mutable_dim(1)
            ->set_dim_value(-8);
      },
      "has negative dimension -8");
  ExpectEditRejected(
      "graph_output_type_mismatch",
      [](onnx::ModelProto& m) {
        onnx::GraphProto* g = m.mutable_graph();
        *g->add_value_info() = g->output(0);  // the node's type stays right
        g->mutable_output(0)
            ->mutable_type()
            ->mutable_tensor_type()
            ->mutable_shape()
            ->mutable_dim(1)
            ->set_dim_value(31);
      },
      "graph output 'lm_head' is declared f32[?,31] but the value is f32[?,32]");
  ExpectEditRejected(
      "negative_dim",
      [](onnx::ModelProto& m) { FindInitializer(m, "lm_head.weight")->set_dims(0, -32); },
      "negative dimension -32");
}

TEST(OnnxIoTest, BadGraphStructure) {
  ExpectEditRejected(
      "unknown_op",
      [](onnx::ModelProto& m) { m.mutable_graph()->mutable_node(1)->set_op_type("LayerNorm"); },
      "node 'layers.0.input_norm' (LayerNorm): unknown op");
  ExpectEditRejected(
      "unknown_domain",
      [](onnx::ModelProto& m) { m.mutable_graph()->mutable_node(1)->set_domain(""); },
      "node 'layers.0.input_norm' (rms_norm): domain '' is not ai.kvcc");
  ExpectEditRejected(
      "dangling_input",
      [](onnx::ModelProto& m) { m.mutable_graph()->mutable_node(1)->set_input(0, "nowhere"); },
      "input 0 'nowhere' is not defined before this node");
  ExpectEditRejected(
      "nodes_out_of_order",
      [](onnx::ModelProto& m) { m.mutable_graph()->mutable_node()->SwapElements(0, 1); },
      "input 0 'embed' is not defined before this node");
  ExpectEditRejected(
      "duplicate_node_name",
      [](onnx::ModelProto& m) {
        m.mutable_graph()->mutable_node(2)->set_name("layers.0.input_norm");
      },
      "node name 'layers.0.input_norm' is empty or taken");
  ExpectEditRejected(  // found by the fuzzer: Graph::AddNode aborted on it
      "duplicate_output_in_one_node",
      [](onnx::ModelProto& m) {
        for (auto& node : *m.mutable_graph()->mutable_node()) {
          if (node.name() == "layers.0.qkv_split") node.set_output(2, node.output(1));
        }
      },
      "node 'layers.0.qkv_split' (split): output 'layers.0.qkv_split.1' repeats");
  ExpectEditRejected(
      "duplicate_value_name",
      [](onnx::ModelProto& m) {
        m.mutable_graph()->mutable_initializer(1)->set_name("model.embed_tokens.weight");
      },
      "value 'model.embed_tokens.weight' is defined twice");
  ExpectEditRejected(
      "stray_value_info",
      [](onnx::ModelProto& m) {
        auto* vi = m.mutable_graph()->add_value_info();
        *vi = m.graph().value_info(0);
        vi->set_name("ghost");
      },
      "value_info 'ghost' names no node output");
  ExpectEditRejected(
      "untyped_graph_output",
      [](onnx::ModelProto& m) { m.mutable_graph()->mutable_output(0)->set_name("ghost"); },
      "output 'lm_head' has no value_info");
  ExpectEditRejected(
      "undefined_graph_output",
      [](onnx::ModelProto& m) {
        auto* out = m.mutable_graph()->add_output();
        *out = m.graph().output(0);
        out->set_name("ghost");
      },
      "graph output 'ghost' is not defined");
  ExpectEditRejected(
      "repeated_attribute",
      [](onnx::ModelProto& m) {
        onnx::NodeProto* node = m.mutable_graph()->mutable_node(1);
        *node->add_attribute() = node->attribute(0);
      },
      "node 'layers.0.input_norm' (rms_norm): attribute 'eps' repeats");
  ExpectEditRejected(
      "bad_double_text",
      [](onnx::ModelProto& m) {
        for (auto& a : *m.mutable_graph()->mutable_node(1)->mutable_attribute()) {
          if (a.name() == "eps") a.set_s("tiny");
        }
      },
      "attribute 'eps': 'tiny' is not a number");
  ExpectEditRejected(
      "no_kvcc_opset", [](onnx::ModelProto& m) { m.mutable_opset_import()->RemoveLast(); },
      "no opset_import for domain ai.kvcc");
  ExpectEditRejected(
      "future_opset",
      [](onnx::ModelProto& m) { m.mutable_opset_import(1)->set_version(kOpsetVersion + 1); },
      "opset version 2 is not supported");
  ExpectEditRejected(
      "no_config", [](onnx::ModelProto& m) { m.mutable_metadata_props()->DeleteSubrange(0, 1); },
      "has no kvcc.config metadata");
  ExpectEditRejected(
      "broken_config",
      [](onnx::ModelProto& m) { m.mutable_metadata_props(0)->set_value("{\"architecture\": 1}"); },
      "kvcc.config: ");
}

// ---- integrity: digests bind model.onnx, model.weights and the manifest ----------------------

// Replaces `key`'s value in the config JSON of kvcc.config.
void EditConfig(onnx::ModelProto& m, const std::string& key, const std::string& value) {
  for (auto& prop : *m.mutable_metadata_props()) {
    if (prop.key() != kConfigMetadataKey) continue;
    std::string json = prop.value();
    const size_t at = json.find("\"" + key + "\"");
    ASSERT_NE(at, std::string::npos) << key;
    const size_t begin = json.find(':', at) + 1, end = json.find_first_of(",}", begin);
    json.replace(begin, end - begin, " " + value);
    prop.set_value(json);
  }
}

TEST(OnnxIoTest, WritesAManifestAndAWeightsDigest) {
  std::string dir = WriteEverything("artifact");
  onnx::ModelProto model = LoadProto(dir);
  bool has_digest = false;
  for (const auto& prop : model.metadata_props()) has_digest |= prop.key() == kWeightsDigestKey;
  EXPECT_TRUE(has_digest);
  KVCC_ASSERT_OK_AND_ASSIGN(
      manifest, ParseManifest(testing::ReadFileBytes(dir + "/" + kManifestFileName), "m"));
  KVCC_ASSERT_OK(
      CheckManifest(manifest, testing::ReadFileBytes(dir + "/" + kOnnxFileName), "model.onnx"));
}

TEST(OnnxIoTest, FlippedBitsInAnyFileAreRefused) {
  const std::string dir = WriteEverything("artifact");
  for (const char* file : {kOnnxFileName, kWeightsFileName, kManifestFileName}) {
    const std::string path = dir + "/" + file;
    const std::string good = testing::ReadFileBytes(path);
    std::mt19937 rng(17);
    for (int trial = 0; trial < 40; ++trial) {
      std::string bad = good;
      bad[rng() % bad.size()] ^= static_cast<char>(1 << (rng() % 8));
      KVCC_ASSERT_OK(WriteFileAtomically(path, bad));
      auto m = ReadOnnx(dir);
      EXPECT_FALSE(m.ok()) << file << " trial " << trial;
    }
    KVCC_ASSERT_OK(WriteFileAtomically(path, good));
  }
  KVCC_ASSERT_OK(ReadOnnx(dir).status());
  // The attention scale flip the issue saw run silently (0.57735 -> another double).
  onnx::ModelProto model = LoadProto(dir);
  std::string bytes;
  ASSERT_TRUE(model.SerializeToString(&bytes));
  const size_t at = bytes.find("0.57735");
  ASSERT_NE(at, std::string::npos);
  bytes[at] ^= 2;  // '0' -> '2'
  KVCC_ASSERT_OK(WriteFileAtomically(dir + "/" + kOnnxFileName, bytes));
  ExpectReadError(dir, "has XXH64");
}

TEST(OnnxIoTest, RefusesFilesMixedFromTwoArtifacts) {
  const std::string a = WriteEverything("artifact_a");
  Module other;
  BuildEverything(other);
  Weight(other.graph, "extra.more", DType::kF32, {1000});  // larger weights
  const std::string b = kvcc::testing::TempDir("artifact_b");
  KVCC_ASSERT_OK(WriteOnnx(other, b));
  const std::string a_weights = testing::ReadFileBytes(a + "/" + kWeightsFileName);
  // A's graph with B's weights.
  fs::copy_file(b + "/" + kWeightsFileName, a + "/" + kWeightsFileName,
                fs::copy_options::overwrite_existing);
  ExpectReadError(a, "the weights are damaged or belong to another model");
  KVCC_ASSERT_OK(WriteFileAtomically(a + "/" + kWeightsFileName, a_weights));
  KVCC_ASSERT_OK(ReadOnnx(a).status());
  // A's model.onnx with B's manifest, and A's graph + manifest with B's weights.
  fs::copy_file(b + "/" + kManifestFileName, a + "/" + kManifestFileName,
                fs::copy_options::overwrite_existing);
  ExpectReadError(a, "from another artifact");
  fs::copy_file(a + "/" + kOnnxFileName, b + "/" + kOnnxFileName,
                fs::copy_options::overwrite_existing);
  fs::copy_file(a + "/" + kManifestFileName, b + "/" + kManifestFileName,
                fs::copy_options::overwrite_existing);
  fs::remove(a + "/" + kManifestFileName);
  ExpectReadError(a, "has no readable model.manifest.json");
}

TEST(OnnxIoTest, ConfigMustMatchTheGraph) {
  const std::vector<std::tuple<std::string, std::string, std::string>> edits = {
      {"num_layers", "2", "no attention node for layer 1"},
      {"num_layers", "1000000000000", "but the graph has only"},
      {"num_heads", "8", "(rotary) has heads 4 but kvcc.config has num_heads / num_kv_heads 8 / 2"},
      {"num_kv_heads", "1", "(rotary) has heads 2 but kvcc.config has num_heads / num_kv_heads 4 / 1"},
      {"head_dim", "8", "has head_dim 4 but kvcc.config has head_dim 8"},
      {"vocab_size", "64", "vocab_size 64"},
      {"hidden_size", "32", "hidden_size 32"},
      {"eos_token_id", "32", "eos_token_id 32, outside vocab_size 32"},
      {"rms_norm_eps", "1e-06", "has eps 1e-05 but kvcc.config has rms_norm_eps 1e-06"},
      {"rope_theta", "10000", "has theta 500000 but kvcc.config has rope_theta 10000"},
  };
  for (const auto& [key, value, needle] : edits) {
    ExpectEditRejected(
        "config_" + key, [&, k = key, v = value](onnx::ModelProto& m) { EditConfig(m, k, v); },
        needle);
  }
}


// model.weights carries an XXH64 per chunk (checked on several threads); a chunk list with
// small chunks verifies, and a wrong digest, a wrong count or a malformed list is refused with
// the key or the chunk's bytes named.
TEST(OnnxIoTest, ChecksTheWeightsChunkDigests) {
  const std::string dir = WriteEverything("chunk_digests");
  onnx::ModelProto model = LoadProto(dir);
  onnx::StringStringEntryProto* chunks = nullptr;
  for (auto& p : *model.mutable_metadata_props()) {
    if (p.key() == "kvcc.weights_xxh64_chunks") chunks = &p;
  }
  ASSERT_NE(chunks, nullptr);
  const std::string weights = testing::ReadFileBytes(dir + "/" + kWeightsFileName);
  ASSERT_GT(weights.size(), 3 * 64u);
  EXPECT_EQ(chunks->value(), absl::StrCat(int64_t{256} << 20, ":",
                                          Xxh64Hex(Xxh64Hash(weights.data(), weights.size()))));
  std::vector<std::string> digests;
  for (size_t at = 0; at < weights.size(); at += 64) {
    digests.push_back(
        Xxh64Hex(Xxh64Hash(weights.data() + at, std::min<size_t>(64, weights.size() - at))));
  }
  chunks->set_value("64:" + absl::StrJoin(digests, ","));
  SaveProto(model, dir);
  KVCC_ASSERT_OK(ReadOnnx(dir).status());
  std::vector<std::string> wrong = digests;
  wrong[1] = Xxh64Hex(1);
  chunks->set_value("64:" + absl::StrJoin(wrong, ","));
  SaveProto(model, dir);
  ExpectReadError(dir, "chunk 1 (bytes 64..128) has XXH64");
  wrong.pop_back();
  chunks->set_value("64:" + absl::StrJoin(wrong, ","));
  SaveProto(model, dir);
  ExpectReadError(dir, "chunks of 64");
  for (const char* bad : {"64:zz", "x:0000000000000000", "0:", "-64:", "64"}) {
    chunks->set_value(bad);
    SaveProto(model, dir);
    ExpectReadError(dir, "kvcc.weights_xxh64_chunks");
  }
}

}  // namespace
}  // namespace kvcc::ir
