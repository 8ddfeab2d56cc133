// Graph building, schema inference, verification and printing of the IR core.
#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"
#include "ir/builder.h"
#include "ir/op_names.h"
#include "ir/op_schema.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "tests/test_util.h"

namespace kvcc::ir {
namespace {

WeightData Zeros(const TensorType& t) {
  return WeightData::FromVector(std::vector<uint8_t>(t.NumBytes(), 0));
}

Value* Weight(Graph& g, const std::string& name, DType dt, std::vector<int64_t> shape) {
  TensorType t{dt, std::move(shape)};
  return *g.AddWeight(name, t, Zeros(t));
}

// One attention block at toy sizes: 4 heads, 2 kv heads, head_dim 4, hidden 16.
void BuildTiny(Module& m) {
  m.config = testing::TinyLlamaConfig(1);
  Graph& g = m.graph;
  Builder b(&g);
  Value* ids = *g.AddInput("input_ids", {DType::kI32, {kDynamic}});
  Value* pos = *g.AddInput("positions", {DType::kI32, {kDynamic}});
  Value* emb = Weight(g, "embed", DType::kF16, {32, 16});
  Value* h = *b.Add1(ir::op::kEmbedding, "h0", {ids, emb});
  Value* n = *b.Add1(ir::op::kRmsNorm, "norm", {h, Weight(g, "ln", DType::kF32, {16})},
                     {{"eps", 1e-5}});
  Value* q = *b.Add1(ir::op::kLinear, "q", {n, Weight(g, "wq", DType::kF16, {16, 16})});
  Value* kv = *b.Add1(ir::op::kLinear, "kv", {n, Weight(g, "wkv", DType::kF16, {16, 16})});
  auto parts = *b.Add(ir::op::kSplit, "kv_split", {kv}, {{"sizes", std::vector<int64_t>{8, 8}}});
  AttributeMap rope = {{"theta", 10000.0}, {"scaling", std::string("none")}, {"head_dim", int64_t{4}}};
  AttributeMap qrope = rope, krope = rope;
  qrope["heads"] = int64_t{4};
  krope["heads"] = int64_t{2};
  Value* qr = *b.Add1(ir::op::kRotary, "q_rope", {q, pos}, qrope);
  Value* kr = *b.Add1(ir::op::kRotary, "k_rope", {parts[0], pos}, krope);
  Value* cache = *b.Add1(ir::op::kKvCacheWrite, "cache0", {kr, parts[1]},
                         {{"layer", int64_t{0}}, {"kv_heads", int64_t{2}}, {"head_dim", int64_t{4}}});
  Value* att = *b.Add1(ir::op::kAttention, "attn0", {qr, cache},
                       {{"layer", int64_t{0}}, {"heads", int64_t{4}}, {"kv_heads", int64_t{2}},
                        {"head_dim", int64_t{4}}, {"causal", int64_t{1}}, {"scale", 0.5}});
  Value* r = *b.Add1(ir::op::kAdd, "resid", {h, att});
  Value* logits = *b.Add1(ir::op::kLmHead, "logits", {r, emb});
  g.AddOutput(logits);
}

TEST(IrTest, BuildsAndVerifiesTinyBlock) {
  Module m;
  BuildTiny(m);
  KVCC_ASSERT_OK(Verify(m));
  EXPECT_EQ(m.graph.FindValue("logits")->type.ToString(), "f32[?,32]");
  EXPECT_EQ(m.graph.FindValue("cache0")->type.ToString(), "f16[2,4]");
  EXPECT_EQ(m.graph.FindValue("embed")->users.size(), 2u);  // tied: embedding and lm_head
}

TEST(IrTest, PrinterIsDeterministicAndComplete) {
  Module a, b;
  BuildTiny(a);
  BuildTiny(b);
  std::string text = Print(a);
  EXPECT_EQ(text, Print(b));
  EXPECT_NE(text.find("%kv_split:f32[?,8], %kv_split.1:f32[?,8] = split(%kv) {sizes=[8,8]}"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("weight %embed : f16[32,16]"), std::string::npos);
  EXPECT_NE(text.find("output %logits"), std::string::npos);
}

TEST(IrTest, BuilderRejectsShapeMismatchAndLeavesGraphUntouched) {
  Module m;
  BuildTiny(m);
  Builder b(&m.graph);
  size_t nodes = m.graph.nodes().size();
  auto bad = b.Add1(ir::op::kLinear, "bad", {m.graph.FindValue("h0"),
                                      Weight(m.graph, "wbad", DType::kF16, {8, 12})});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("expects 12 input features"), std::string::npos)
      << bad.status();
  EXPECT_EQ(m.graph.nodes().size(), nodes);
}

TEST(IrTest, VerifierCatchesWrongOutputType) {
  Module m;
  BuildTiny(m);
  m.graph.FindValue("q")->type.shape[1] = 15;
  absl::Status s = Verify(m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("output 'q'"), std::string::npos) << s;
}

TEST(IrTest, VerifierCatchesUseBeforeDefinition) {
  Module m;
  BuildTiny(m);
  // Feed the first norm from a value produced later: a cycle in dataflow order.
  Node* norm = m.graph.FindNode("norm");
  m.graph.SetInput(norm, 0, m.graph.FindValue("resid"));
  absl::Status s = Verify(m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not defined before use"), std::string::npos) << s;
}

TEST(IrTest, VerifierCatchesMissingAttribute) {
  Module m;
  BuildTiny(m);
  m.graph.FindNode("norm")->attrs.erase("eps");
  absl::Status s = Verify(m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing attribute 'eps'"), std::string::npos) << s;
}

TEST(IrTest, VerifierCatchesWrongWeightSize) {
  Module m;
  BuildTiny(m);
  m.graph.FindValue("ln")->weight->size = 3;
  EXPECT_FALSE(Verify(m).ok());
}

TEST(IrTest, AttentionMustReadItsOwnLayerCache) {
  Module m;
  BuildTiny(m);
  m.graph.FindNode("attn0")->attrs["layer"] = int64_t{1};
  EXPECT_FALSE(Verify(m).ok());
}

TEST(IrTest, RemoveNodeKeepsUseListsConsistent) {
  Module m;
  BuildTiny(m);
  Graph& g = m.graph;
  // Route the residual around attention, then drop the attention node.
  g.SetInput(g.FindNode("resid"), 1, g.FindValue("h0"));
  KVCC_ASSERT_OK(g.RemoveNode(g.FindNode("attn0")));
  KVCC_ASSERT_OK(g.RemoveNode(g.FindNode("q_rope")));
  EXPECT_FALSE(g.RemoveNode(g.FindNode("h0")).ok());  // still used
  KVCC_ASSERT_OK(Verify(m));
}

TEST(IrTest, DTypeSizes) {
  EXPECT_EQ(DTypeBytes(DType::kI4, 7), 4);
  EXPECT_EQ(DTypeBytes(DType::kBF16, 3), 6);
  EXPECT_EQ(*ParseDType("fp8e4m3"), DType::kFP8E4M3);
  EXPECT_FALSE(ParseDType("f64").ok());
}

TEST(IrTest, ModelConfigJsonRoundTrip) {
  ModelConfig c;
  c.architecture = "Qwen2ForCausalLM";
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 1;
  c.head_dim = 16;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.qkv_bias = true;
  KVCC_ASSERT_OK_AND_ASSIGN(back, ModelConfig::FromJson(c.ToJson()));
  EXPECT_EQ(back.ToJson(), c.ToJson());
  EXPECT_FALSE(ModelConfig::FromJson("{\"architecture\": 3}").ok());
  EXPECT_FALSE(ModelConfig::FromJson("not json").ok());
}

TEST(IrTest, KvBytesPerSessionFor7B) {
  ModelConfig c;
  c.num_layers = 32;
  c.num_kv_heads = 32;
  c.head_dim = 128;
  EXPECT_EQ(c.KvBytesPerSession(2048, DType::kF16), int64_t{1} << 30);
  EXPECT_EQ(c.KvBytesPerSession(2048, DType::kI8), int64_t{1} << 29);
}

TEST(IrTest, AddNodeRejectsRepeatedOutputNames) {
  Graph g;
  Value* x = *g.AddInput("x", {DType::kF32, {kDynamic, 4}});
  auto node = g.AddNode("add", "n", {x, x}, {{"y", x->type}, {"y", x->type}});
  ASSERT_FALSE(node.ok());
  EXPECT_NE(node.status().message().find("'y'"), std::string::npos) << node.status();
  EXPECT_EQ(g.FindValue("y"), nullptr);
  EXPECT_TRUE(g.nodes().empty());
}

TEST(IrTest, PrintsSubnormalAndExtremeDoubles) {
  // Printed text reads back to the same double, subnormals included, and stays short when it can.
  for (double v : {5e-324, 2.2250738585072014e-308, 1e-5, 0.1, 1.0 / 3.0, 1e300, -0.0}) {
    std::string text = AttributeToString(Attribute{v});
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
  EXPECT_EQ(AttributeToString(Attribute{1e-5}), "1e-05");
  EXPECT_EQ(AttributeToString(Attribute{0.5}), "0.5");
}

TEST(IrTest, ModelConfigRejectsNonIntegerCounts) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  std::string json = c.ToJson();
  const std::string key = "\"hidden_size\": 0";
  size_t at = json.find(key);
  ASSERT_NE(at, std::string::npos) << json;
  json.replace(at, key.size(), "\"hidden_size\": 1e300");
  auto back = ModelConfig::FromJson(json);
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("hidden_size must be an integer"), std::string::npos)
      << back.status();
}

TEST(IrTest, HugeHeadAttributesAreRejectedNotOverflowed) {
  Module m;
  BuildTiny(m);
  m.graph.FindNode("q_rope")->attrs["heads"] = int64_t{1} << 62;
  absl::Status s = Verify(m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("attribute 'heads'"), std::string::npos) << s;
}

// add_rms_norm has two outputs (the residual sum, then its norm), both typed like x; the
// verifier checks the operands like add's and the weight like rms_norm's.
TEST(IrTest, AddRmsNormInfersTwoOutputsAndChecksOperands) {
  Module m;
  BuildTiny(m);
  Builder b(&m.graph);
  Value* h = m.graph.FindValue("h0");
  Value* r = m.graph.FindValue("resid");
  Value* w = Weight(m.graph, "ln2", DType::kBF16, {16});
  KVCC_ASSERT_OK_AND_ASSIGN(outs, b.Add(ir::op::kAddRmsNorm, "add_norm", {h, r, w}, {{"eps", 1e-6}}));
  ASSERT_EQ(outs.size(), 2u);
  EXPECT_EQ(outs[0]->name, "add_norm");
  EXPECT_EQ(outs[0]->type.ToString(), "f32[?,16]");
  EXPECT_EQ(outs[1]->type.ToString(), "f32[?,16]");
  KVCC_ASSERT_OK(Verify(m));

  auto bad_weight = b.Add(ir::op::kAddRmsNorm, "bad_w",
                          {h, r, Weight(m.graph, "ln3", DType::kF32, {8})}, {{"eps", 1e-6}});
  ASSERT_FALSE(bad_weight.ok());
  EXPECT_NE(bad_weight.status().message().find("does not match input"), std::string::npos)
      << bad_weight.status();
  auto any_residual = b.Add(ir::op::kAddRmsNorm, "any_r", {h, m.graph.FindValue("q_rope"), w},
                            {{"eps", 1e-6}});
  EXPECT_TRUE(any_residual.ok()) << any_residual.status();  // any f32 [tokens, 16] works
  auto bad_shape = b.Add(ir::op::kAddRmsNorm, "bad_s", {h, m.graph.FindValue("k_rope"), w},
                         {{"eps", 1e-6}});
  ASSERT_FALSE(bad_shape.ok());
  EXPECT_NE(bad_shape.status().message().find("operand shapes differ"), std::string::npos)
      << bad_shape.status();
  auto no_eps = b.Add(ir::op::kAddRmsNorm, "no_eps", {h, r, w});
  ASSERT_FALSE(no_eps.ok());
  EXPECT_NE(no_eps.status().message().find("missing attribute 'eps'"), std::string::npos);
  auto two_inputs = b.Add(ir::op::kAddRmsNorm, "two", {h, r}, {{"eps", 1e-6}});
  ASSERT_FALSE(two_inputs.ok());
  EXPECT_NE(two_inputs.status().message().find("takes 3..3 inputs"), std::string::npos);

  // A node claiming one output is caught by the verifier.
  m.graph.FindNode("add_norm")->outputs.pop_back();
  EXPECT_FALSE(Verify(m).ok());
}

}  // namespace
}  // namespace kvcc::ir
