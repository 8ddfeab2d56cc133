// The fuse pass: q/k/v and gate/up linears sharing an input become one linear with the members'
// weight (and bias, 4-bit scales and zeros) rows concatenated, followed by a split; incompatible
// groups stay apart.
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "frontend/model_loader.h"
#include "gtest/gtest.h"
#include "ir/builder.h"
#include "ir/op_names.h"
#include "ir/group_quant.h"
#include "ir/verifier.h"
#include "passes/fuse.h"
#include "pipeline/w4_packing.h"
#include "runtime/backend_factory.h"
#include "runtime/backend.h"
#include "runtime/engine.h"
#include "tests/awq_checkpoint.h"
#include "tests/test_util.h"

namespace kvcc::passes {
namespace {

using ir::DType;
using ir::Value;

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

std::vector<uint8_t> Bytes(const Value* w) {
  return std::vector<uint8_t>(w->weight->bytes, w->weight->bytes + w->weight->size);
}

struct TinyOptions {
  bool bias = false;
  DType k_dtype = DType::kF16;  // dtype of the k projection (the others are f16)
};

// One decoder layer at toy sizes (4 heads, 2 kv heads, head_dim 4, hidden 16, ffn 24), with
// separate q/k/v and gate/up projections filled with random bytes-as-f32 weights.
void BuildLayer(ir::Module& m, const TinyOptions& o) {
  m.config = testing::TinyLlamaConfig(1);
  ir::Graph& g = m.graph;
  ir::Builder b(&g);
  uint32_t seed = 1;
  auto weight = [&](const std::string& name, DType dt, std::vector<int64_t> shape) {
    ir::TensorType t{dt, std::move(shape)};
    return *g.AddWeight(name, t, ir::WeightData::FromVector(RandomBytes(t.NumBytes(), seed++)));
  };
  Value* ids = *g.AddInput("input_ids", {DType::kI32, {ir::kDynamic}});
  Value* pos = *g.AddInput("positions", {DType::kI32, {ir::kDynamic}});
  Value* emb = weight("embed", DType::kF16, {32, 16});
  Value* h = *b.Add1(ir::op::kEmbedding, "h0", {ids, emb});
  Value* x = *b.Add1(ir::op::kRmsNorm, "norm", {h, weight("ln", DType::kF32, {16})}, {{"eps", 1e-5}});
  auto proj = [&](const std::string& name, DType dt, int64_t out) {
    std::vector<Value*> in = {x, weight("model.layers.0.self_attn." + name + ".weight", dt,
                                        {out, 16})};
    if (o.bias) {
      in.push_back(weight("model.layers.0.self_attn." + name + ".bias", DType::kF16, {out}));
    }
    return *b.Add1(ir::op::kLinear, "layers.0." + name, in);
  };
  Value* q = proj("q_proj", DType::kF16, 16);
  Value* k = proj("k_proj", o.k_dtype, 8);
  Value* v = proj("v_proj", DType::kF16, 8);
  ir::AttributeMap rope = {{"theta", 10000.0}, {"scaling", std::string("none")},
                           {"head_dim", int64_t{4}}};
  ir::AttributeMap qrope = rope, krope = rope;
  qrope["heads"] = int64_t{4};
  krope["heads"] = int64_t{2};
  Value* qr = *b.Add1(ir::op::kRotary, "layers.0.q_rope", {q, pos}, qrope);
  Value* kr = *b.Add1(ir::op::kRotary, "layers.0.k_rope", {k, pos}, krope);
  Value* cache = *b.Add1(ir::op::kKvCacheWrite, "layers.0.cache", {kr, v},
                         {{"layer", int64_t{0}}, {"kv_heads", int64_t{2}},
                          {"head_dim", int64_t{4}}});
  Value* att = *b.Add1(ir::op::kAttention, "layers.0.attn", {qr, cache},
                       {{"layer", int64_t{0}}, {"heads", int64_t{4}}, {"kv_heads", int64_t{2}},
                        {"head_dim", int64_t{4}}, {"causal", int64_t{1}}, {"scale", 0.5}});
  Value* h1 = *b.Add1(ir::op::kAdd, "layers.0.resid", {h, att});
  Value* gate = *b.Add1(ir::op::kLinear, "layers.0.gate_proj",
                        {h1, weight("model.layers.0.mlp.gate_proj.weight", DType::kF16, {24, 16})});
  Value* up = *b.Add1(ir::op::kLinear, "layers.0.up_proj",
                      {h1, weight("model.layers.0.mlp.up_proj.weight", DType::kF16, {24, 16})});
  Value* act = *b.Add1(ir::op::kSiluMul, "layers.0.act", {gate, up});
  Value* down = *b.Add1(ir::op::kLinear, "layers.0.down_proj",
                        {act, weight("model.layers.0.mlp.down_proj.weight", DType::kF16, {16, 24})});
  Value* h2 = *b.Add1(ir::op::kAdd, "layers.0.resid2", {h1, down});
  g.AddOutput(*b.Add1(ir::op::kLmHead, "logits", {h2, emb}));
}

std::vector<uint8_t> Concat(std::vector<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(FuseTest, FusesQkvAndGateUpWithConcatenatedRows) {
  ir::Module m;
  BuildLayer(m, {});
  KVCC_ASSERT_OK(ir::Verify(m));
  const auto want_qkv = Concat({Bytes(m.graph.FindValue("model.layers.0.self_attn.q_proj.weight")),
                                Bytes(m.graph.FindValue("model.layers.0.self_attn.k_proj.weight")),
                                Bytes(m.graph.FindValue("model.layers.0.self_attn.v_proj.weight"))});
  const auto want_gu = Concat({Bytes(m.graph.FindValue("model.layers.0.mlp.gate_proj.weight")),
                               Bytes(m.graph.FindValue("model.layers.0.mlp.up_proj.weight"))});
  FusePass fuse;
  KVCC_ASSERT_OK(fuse.Run(m));
  KVCC_ASSERT_OK(ir::Verify(m));
  EXPECT_EQ(fuse.fused_qkv(), 1);
  EXPECT_EQ(fuse.fused_gate_up(), 1);

  const Value* wqkv = m.graph.FindValue("model.layers.0.self_attn.qkv_proj.weight");
  ASSERT_NE(wqkv, nullptr);
  EXPECT_EQ(wqkv->type.ToString(), "f16[32,16]");
  EXPECT_EQ(Bytes(wqkv), want_qkv);
  const Value* wgu = m.graph.FindValue("model.layers.0.mlp.gate_up_proj.weight");
  ASSERT_NE(wgu, nullptr);
  EXPECT_EQ(wgu->type.ToString(), "f16[48,16]");
  EXPECT_EQ(Bytes(wgu), want_gu);
  // The separate projections and their weights are gone.
  EXPECT_EQ(m.graph.FindNode("layers.0.q_proj"), nullptr);
  EXPECT_EQ(m.graph.FindValue("model.layers.0.self_attn.k_proj.weight"), nullptr);
  EXPECT_EQ(m.graph.FindNode("layers.0.up_proj"), nullptr);

  // Graph convention: fused linear -> split {sizes=[H*d, KVH*d, KVH*d]} -> rotary / cache.
  const ir::Node* qkv = m.graph.FindNode("layers.0.qkv_proj");
  ASSERT_NE(qkv, nullptr);
  ASSERT_EQ(qkv->output()->users.size(), 1u);
  const ir::Node* split = qkv->output()->users[0];
  EXPECT_EQ(split->op, "split");
  EXPECT_EQ(*split->Ints("sizes"), (std::vector<int64_t>{16, 8, 8}));
  EXPECT_EQ(m.graph.FindNode("layers.0.q_rope")->input(0), split->output(0));
  EXPECT_EQ(m.graph.FindNode("layers.0.k_rope")->input(0), split->output(1));
  EXPECT_EQ(m.graph.FindNode("layers.0.cache")->input(1), split->output(2));
  const ir::Node* act = m.graph.FindNode("layers.0.act");
  ASSERT_NE(act->input(0)->producer, nullptr);
  EXPECT_EQ(act->input(0)->producer->op, "split");
  EXPECT_EQ(act->input(0)->producer, act->input(1)->producer);
  EXPECT_EQ(*act->input(0)->producer->Ints("sizes"), (std::vector<int64_t>{24, 24}));
}

TEST(FuseTest, ConcatenatesBiases) {
  ir::Module m;
  TinyOptions o;
  o.bias = true;
  BuildLayer(m, o);
  const auto want = Concat({Bytes(m.graph.FindValue("model.layers.0.self_attn.q_proj.bias")),
                            Bytes(m.graph.FindValue("model.layers.0.self_attn.k_proj.bias")),
                            Bytes(m.graph.FindValue("model.layers.0.self_attn.v_proj.bias"))});
  FusePass fuse;
  KVCC_ASSERT_OK(fuse.Run(m));
  KVCC_ASSERT_OK(ir::Verify(m));
  const Value* bias = m.graph.FindValue("model.layers.0.self_attn.qkv_proj.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->type.ToString(), "f16[32]");
  EXPECT_EQ(Bytes(bias), want);
  EXPECT_EQ(m.graph.FindNode("layers.0.qkv_proj")->input(2), bias);
}

TEST(FuseTest, LeavesMixedDtypeGroupsApart) {
  ir::Module m;
  TinyOptions o;
  o.k_dtype = DType::kF32;
  BuildLayer(m, o);
  FusePass fuse;
  KVCC_ASSERT_OK(fuse.Run(m));
  KVCC_ASSERT_OK(ir::Verify(m));
  EXPECT_EQ(fuse.fused_qkv(), 0);
  EXPECT_EQ(fuse.fused_gate_up(), 1);
  EXPECT_NE(m.graph.FindNode("layers.0.q_proj"), nullptr);
}

TEST(FuseTest, OptionsSelectThePatterns) {
  ir::Module m;
  BuildLayer(m, {});
  FuseOptions o;
  o.qkv = false;
  FusePass fuse(o);
  KVCC_ASSERT_OK(fuse.Run(m));
  EXPECT_EQ(fuse.fused_qkv(), 0);
  EXPECT_EQ(fuse.fused_gate_up(), 1);
  EXPECT_NE(m.graph.FindNode("layers.0.k_proj"), nullptr);
}

TEST(FuseTest, FusesEveryLayerOfStories260KAndIsIdempotent) {
  auto m = frontend::LoadModel(testing::SourcePath("models/stories260K"));
  ASSERT_TRUE(m.ok()) << m.status();
  ir::Module& mod = **m;
  const int64_t layers = mod.config.num_layers;
  FusePass fuse;
  KVCC_ASSERT_OK(fuse.Run(mod));
  KVCC_ASSERT_OK(ir::Verify(mod));
  EXPECT_EQ(fuse.fused_qkv(), layers);
  EXPECT_EQ(fuse.fused_gate_up(), layers);
  int linears = 0;
  for (const auto& n : mod.graph.nodes()) linears += n->op == ir::op::kLinear;
  EXPECT_EQ(linears, 4 * layers);  // qkv, o, gate_up, down
  FusePass again;
  KVCC_ASSERT_OK(again.Run(mod));
  EXPECT_EQ(again.fused_qkv(), 0);
  EXPECT_EQ(again.fused_gate_up(), 0);
}

// The fused model computes the same function: identical logits on the CPU runtime (each output
// element is the same dot product, whichever GEMM it sits in).
TEST(FuseTest, FusedStories260KGivesTheSameLogits) {
  std::vector<float> logits[2];
  for (int fused = 0; fused < 2; ++fused) {
    auto m = frontend::LoadModel(testing::SourcePath("models/stories260K"));
    ASSERT_TRUE(m.ok()) << m.status();
    if (fused) {
      FusePass fuse;
      KVCC_ASSERT_OK(fuse.Run(**m));
      ASSERT_EQ(fuse.fused_qkv(), (*m)->config.num_layers);
    }
    std::shared_ptr<const ir::Module> module = std::move(*m);
    KVCC_ASSERT_OK_AND_ASSIGN(backend, runtime::CreateBackend("cpu", 1));
    KVCC_ASSERT_OK_AND_ASSIGN(engine, runtime::Engine::Create(module, std::move(backend)));
    KVCC_ASSERT_OK_AND_ASSIGN(session, engine->CreateSession());
    std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 13, 77, 300, 41, 5};
    KVCC_ASSERT_OK_AND_ASSIGN(all, engine->PrefillAll(session, prompt));
    KVCC_ASSERT_OK_AND_ASSIGN(next, engine->Decode({{session, 99}}));
    logits[fused] = all;
    logits[fused].insert(logits[fused].end(), next[0].begin(), next[0].end());
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  size_t differ = 0;
  for (size_t i = 0; i < logits[0].size(); ++i) differ += logits[0][i] != logits[1][i];
  EXPECT_EQ(differ, 0u);
}

// 4-bit linears, plain or packed, fuse like float ones (codes, scales and zeros rows
// concatenated, group size and layout kept) and compute the same logits bit for bit; a layer
// whose projections differ in group size stays apart.
TEST(FuseTest, FusesFourBitLinearsWithTheSameLogits) {
  KVCC_ASSERT_OK_AND_ASSIGN(awq, testing::WriteAwqCheckpoint("models/configs/llama-hd128-gqa.json",
                                                             testing::TempDir("fuse_w4"), 64, 2));
  // 0: as imported; 1: fused; 2: packed (pipeline/w4_packing.h), then fused.
  std::vector<float> logits[3];
  for (int fused = 0; fused < 3; ++fused) {
    auto m = frontend::LoadModel(awq);
    ASSERT_TRUE(m.ok()) << m.status();
    if (fused == 2) {
      KVCC_ASSERT_OK_AND_ASSIGN(packed, pipeline::PackW4Linears(**m));
      EXPECT_GT(packed.packed, 0);
    }
    if (fused) {
      FusePass fuse;
      KVCC_ASSERT_OK(fuse.Run(**m));
      KVCC_ASSERT_OK(ir::Verify(**m));
      EXPECT_EQ(fuse.fused_qkv(), (*m)->config.num_layers);
      EXPECT_EQ(fuse.fused_gate_up(), (*m)->config.num_layers);
      for (const auto& n : (*m)->graph.nodes()) {
        if (n->op != ir::op::kLinear || n->IntOr("group_size", 0) == 0) continue;
        EXPECT_EQ(n->Has(ir::kW4LayoutAttr), fused == 2) << n->name;
        EXPECT_EQ(n->IntOr("group_size", 0), 64) << n->name;
        ASSERT_NE(n->input(3), nullptr);
        EXPECT_EQ(n->input(3)->type.shape[0], n->input(1)->type.shape[0]) << n->name;
        if (n->input(4) != nullptr) {
          EXPECT_EQ(n->input(4)->type.shape[0], n->input(1)->type.shape[0]) << n->name;
        }
      }
    }
    logits[fused] = testing::CpuLogits(std::move(*m), {1, 40, 41, 26, 37, 27, 300}, {75, 29});
  }
  ASSERT_FALSE(logits[0].empty());
  EXPECT_EQ(logits[0], logits[1]);
  EXPECT_EQ(logits[0], logits[2]);

  // A different group size on k: q, k, v stay three linears.
  auto m = frontend::LoadModel(awq);
  ASSERT_TRUE(m.ok()) << m.status();
  for (const auto& n : (*m)->graph.nodes()) {
    if (n->op == ir::op::kLinear && n->name.find("k_proj") != std::string::npos) {
      n->attrs["group_size"] = int64_t{128};
    }
  }
  FusePass fuse;
  KVCC_ASSERT_OK(fuse.Run(**m));
  EXPECT_EQ(fuse.fused_qkv(), 0);
  EXPECT_EQ(fuse.fused_gate_up(), (*m)->config.num_layers);
}

}  // namespace
}  // namespace kvcc::passes
