// The fuse-add-norm pass: each `rms_norm` reading an `add` becomes one two-output
// `add_rms_norm` whose sum carries the residual stream on; the fused stories260K computes
// bit-identical logits on the CPU backend.
#include "ir/op_names.h"
#include "passes/fuse_add_norm.h"

#include <memory>
#include <string>
#include <vector>

#include "frontend/model_loader.h"
#include "gtest/gtest.h"
#include "ir/builder.h"
#include "ir/verifier.h"
#include "tests/test_util.h"

namespace kvcc::passes {
namespace {

using ir::DType;
using ir::Node;
using ir::Value;

int CountOps(const ir::Module& m, const std::string& op) {
  int n = 0;
  for (const auto& node : m.graph.nodes()) n += node->op == op;
  return n;
}

Value* Weight(ir::Graph& g, const std::string& name, DType dt, std::vector<int64_t> shape) {
  ir::TensorType t{dt, std::move(shape)};
  return *g.AddWeight(name, t, ir::WeightData::FromVector(std::vector<uint8_t>(t.NumBytes(), 0)));
}

// Two residual steps at toy sizes (hidden 16): h -> s1 = h + x1 -> norm1 -> x2,
// s2 = s1 + x2 -> final norm -> logits. `second_norm` adds another norm of s1.
void BuildResidualChain(ir::Module& m, bool second_norm) {
  m.config = testing::TinyLlamaConfig(1);
  ir::Graph& g = m.graph;
  ir::Builder b(&g);
  Value* ids = *g.AddInput("input_ids", {DType::kI32, {ir::kDynamic}});
  *g.AddInput("positions", {DType::kI32, {ir::kDynamic}});
  Value* emb = Weight(g, "embed", DType::kF16, {32, 16});
  Value* h = *b.Add1(ir::op::kEmbedding, "h0", {ids, emb});
  Value* n0 = *b.Add1(ir::op::kRmsNorm, "norm0", {h, Weight(g, "ln0", DType::kF32, {16})},
                      {{"eps", 1e-5}});
  Value* x1 = *b.Add1(ir::op::kLinear, "proj1", {n0, Weight(g, "w1", DType::kF16, {16, 16})});
  Value* s1 = *b.Add1(ir::op::kAdd, "resid1", {h, x1});
  Value* n1 = *b.Add1(ir::op::kRmsNorm, "norm1", {s1, Weight(g, "ln1", DType::kBF16, {16})},
                      {{"eps", 1e-6}});
  Value* x2 = *b.Add1(ir::op::kLinear, "proj2", {n1, Weight(g, "w2", DType::kF16, {16, 16})});
  if (second_norm) {
    Value* n1b = *b.Add1(ir::op::kRmsNorm, "norm1b", {s1, Weight(g, "ln1b", DType::kF32, {16})},
                         {{"eps", 1e-5}});
    x2 = *b.Add1(ir::op::kAdd, "mix", {x2, n1b});
  }
  Value* s2 = *b.Add1(ir::op::kAdd, "resid2", {s1, x2});
  Value* nf = *b.Add1(ir::op::kRmsNorm, "final_norm", {s2, Weight(g, "lnf", DType::kF32, {16})},
                      {{"eps", 1e-5}});
  g.AddOutput(*b.Add1(ir::op::kLmHead, "logits", {nf, emb}));
}

TEST(FuseAddNormTest, FusesEachAddWithTheNormReadingItAndRewiresTheResidual) {
  ir::Module m;
  BuildResidualChain(m, false);
  KVCC_ASSERT_OK(ir::Verify(m));
  FuseAddNormPass pass;
  KVCC_ASSERT_OK(pass.Run(m));
  KVCC_ASSERT_OK(ir::Verify(m));
  EXPECT_EQ(pass.fused(), 2);
  EXPECT_EQ(CountOps(m, "add"), 0);
  EXPECT_EQ(CountOps(m, "rms_norm"), 1);  // norm0 reads the embedding, not an add
  EXPECT_EQ(CountOps(m, "add_rms_norm"), 2);
  const ir::Graph& g = m.graph;
  EXPECT_EQ(g.FindNode("resid1"), nullptr);
  EXPECT_EQ(g.FindNode("norm1"), nullptr);

  const Node* f1 = g.FindValue("proj2")->producer->input(0)->producer;
  ASSERT_EQ(f1->op, "add_rms_norm");
  ASSERT_EQ(f1->outputs.size(), 2u);
  EXPECT_EQ(f1->input(0), g.FindValue("h0"));
  EXPECT_EQ(f1->input(1), g.FindValue("proj1"));
  EXPECT_EQ(f1->input(2), g.FindValue("ln1"));
  EXPECT_EQ(*f1->Float("eps"), 1e-6);
  // The residual stream continues from the first output into the second fused node.
  const Node* f2 = g.FindValue("logits")->producer->input(0)->producer;
  ASSERT_EQ(f2->op, "add_rms_norm");
  EXPECT_EQ(f2->input(0), f1->output(0));
  EXPECT_EQ(f2->input(1), g.FindValue("proj2"));
  EXPECT_EQ(f2->input(2), g.FindValue("lnf"));
  EXPECT_EQ(g.FindValue("logits")->producer->input(0), f2->output(1));
  EXPECT_TRUE(f2->output(0)->users.empty());  // the last sum is read by nobody

  FuseAddNormPass again;
  KVCC_ASSERT_OK(again.Run(m));
  EXPECT_EQ(again.fused(), 0);
}

TEST(FuseAddNormTest, ASecondNormOfTheSameSumReadsTheFusedSum) {
  ir::Module m;
  BuildResidualChain(m, true);
  FuseAddNormPass pass;
  KVCC_ASSERT_OK(pass.Run(m));
  KVCC_ASSERT_OK(ir::Verify(m));
  // resid1 fuses with norm1 (its first norm); `mix` is an add read by no norm; resid2 fuses.
  EXPECT_EQ(pass.fused(), 2);
  const Node* other = m.graph.FindNode("norm1b");
  ASSERT_NE(other, nullptr);
  const Node* fused = other->input(0)->producer;
  ASSERT_EQ(fused->op, "add_rms_norm");
  EXPECT_EQ(other->input(0), fused->output(0));
  EXPECT_EQ(fused->input(2), m.graph.FindValue("ln1"));
  EXPECT_NE(m.graph.FindNode("mix"), nullptr);
}

std::vector<float> Stories260KLogits(bool fused) {
  std::unique_ptr<ir::Module> m = testing::LoadStories260K();
  if (m == nullptr) return {};
  if (fused) {
    FuseAddNormPass pass;
    EXPECT_TRUE(pass.Run(*m).ok());
    // Per layer the post-attention norm, per later layer the input norm, and the final norm.
    EXPECT_EQ(pass.fused(), 2 * m->config.num_layers);
    EXPECT_TRUE(ir::Verify(*m).ok());
  }
  return testing::CpuLogits(std::move(m), testing::RandomTokenWindows(1, 24, 512, 7)[0],
                            {99, 300, 4});
}

TEST(FuseAddNormTest, FusedStories260KGivesBitIdenticalLogitsOnTheCpu) {
  const std::vector<float> plain = Stories260KLogits(false);
  const std::vector<float> fused = Stories260KLogits(true);
  ASSERT_FALSE(plain.empty());
  ASSERT_EQ(plain.size(), fused.size());
  size_t differ = 0;
  for (size_t i = 0; i < plain.size(); ++i) differ += plain[i] != fused[i];
  EXPECT_EQ(differ, 0u);
}

}  // namespace
}  // namespace kvcc::passes
