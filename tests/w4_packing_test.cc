// pipeline/w4_packing: the linears the packed layout can hold are rewritten to it (named and
// versioned, the plain weights gone), the others are listed and left alone, the CPU logits do
// not change by a bit, and the executor refuses a packed linear of an unknown layout version
// or of the wrong shape, naming the node and tensor.
#include "pipeline/w4_packing.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "ir/group_quant.h"
#include "ir/op_names.h"
#include "ir/verifier.h"
#include "pipeline/model_opener.h"
#include "runtime/cpu_backend.h"
#include "runtime/executor.h"
#include "tests/awq_checkpoint.h"
#include "tests/test_util.h"

namespace kvcc::pipeline {
namespace {

// hd64-mha at group 16: the 688-wide down projection's input is no multiple of 64, so it stays
// plain; every other linear packs.
absl::StatusOr<std::string> Checkpoint(const std::string& name) {
  return testing::WriteAwqCheckpoint("models/configs/llama-hd64-mha.json", testing::TempDir(name),
                                     16, 4);
}

TEST(W4PackingTest, PacksWhatTheKernelsReadAndKeepsTheRest) {
  KVCC_ASSERT_OK_AND_ASSIGN(awq, Checkpoint("w4_packing"));
  KVCC_ASSERT_OK_AND_ASSIGN(plain, LoadForExecution(awq, LowerOptions{}));
  KVCC_ASSERT_OK_AND_ASSIGN(packed, LoadForExecution(awq, LowerOptions{}));
  const W4LinearCounts before = CountW4Linears(*plain);
  EXPECT_EQ(before.packed, 0);
  KVCC_ASSERT_OK_AND_ASSIGN(summary, PackW4Linears(*packed));
  EXPECT_GT(summary.packed, 0);
  ASSERT_EQ(summary.plain.size(), 2u);  // one down projection per layer
  for (const std::string& why : summary.plain) {
    EXPECT_TRUE(absl::StrContains(why, "down")) << why;
    EXPECT_TRUE(absl::StrContains(why, "688")) << why;
  }
  const W4LinearCounts after = CountW4Linears(*packed);
  EXPECT_EQ(after.packed, summary.packed);
  EXPECT_EQ(after.plain, 2);
  EXPECT_EQ(before.plain, after.packed + after.plain);
  EXPECT_TRUE(ir::Verify(*packed).ok());
  int64_t i4_weights = 0;
  for (const ir::Value* w : packed->graph.weights()) {
    i4_weights += w->type.dtype == ir::DType::kI4;
    EXPECT_FALSE(w->users.empty()) << w->name;  // the plain copies are gone
  }
  EXPECT_EQ(i4_weights, 4);  // the down projections' codes and zeros
  for (const auto& n : packed->graph.nodes()) {
    if (!n->Has(ir::kW4LayoutAttr)) continue;
    EXPECT_EQ(n->StrOr(ir::kW4LayoutAttr, ""), ir::kW4PackedLayout);
    EXPECT_EQ(n->IntOr(ir::kW4LayoutVersionAttr, 0), ir::kW4PackedLayoutVersion);
    ASSERT_EQ(n->inputs.size(), 4u);
    const int64_t in = n->input(0)->type.shape[1];
    EXPECT_EQ(n->input(1)->type.dtype, ir::DType::kI32);
    EXPECT_EQ(n->input(1)->type.shape[1], in / 8);
    EXPECT_EQ(n->input(3)->type.shape[1], in / n->IntOr("group_size", 0));
  }
  // Packing again changes nothing.
  KVCC_ASSERT_OK_AND_ASSIGN(again, PackW4Linears(*packed));
  EXPECT_EQ(again.packed, 0);

  const std::vector<int32_t> prompt = {1, 40, 41, 26, 37, 27, 300, 8};
  const std::vector<int32_t> decode = {75, 29, 10};
  const std::vector<float> want = testing::CpuLogits(std::move(plain), prompt, decode);
  const std::vector<float> got = testing::CpuLogits(std::move(packed), prompt, decode);
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(got, want);
}

// The first packed linear of `m`.
ir::Node* FirstPacked(ir::Module& m) {
  for (const auto& n : m.graph.nodes()) {
    if (n->Has(ir::kW4LayoutAttr)) return n.get();
  }
  return nullptr;
}

TEST(W4PackingTest, TheExecutorRefusesUnknownLayoutsAndWrongShapesByName) {
  KVCC_ASSERT_OK_AND_ASSIGN(awq, Checkpoint("w4_packing_bad"));
  runtime::CpuBackend cpu(1);
  auto refused = [&](const std::function<void(ir::Module&, ir::Node*)>& edit,
                     const std::vector<std::string>& names) {
    auto m = LoadForExecution(awq, LowerOptions{});
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_TRUE(PackW4Linears(**m).ok());
    ir::Node* n = FirstPacked(**m);
    ASSERT_NE(n, nullptr);
    const std::string node = n->name;
    edit(**m, n);
    auto e = runtime::Executor::Create(m->get(), &cpu);
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << e.status();
    EXPECT_TRUE(absl::StrContains(e.status().message(), node)) << e.status();
    for (const std::string& want : names) {
      EXPECT_TRUE(absl::StrContains(e.status().message(), want)) << e.status();
    }
  };
  // An artifact of the first layout (each lane's inputs strided by 8, before version 2).
  refused([](ir::Module&, ir::Node* n) { n->attrs[ir::kW4LayoutVersionAttr] = int64_t{1}; },
          {"version 1", "recompile"});
  refused([](ir::Module&, ir::Node* n) { n->attrs[ir::kW4LayoutAttr] = std::string("marlin"); },
          {"'marlin'"});
  // Code words for half the inputs.
  refused(
      [](ir::Module& m, ir::Node* n) {
        const ir::Value* codes = n->input(1);
        const std::vector<int64_t> shape = {codes->type.shape[0], codes->type.shape[1] / 2};
        auto w = m.graph.AddWeight(
            codes->name + ".half", ir::TensorType{ir::DType::kI32, shape},
            ir::WeightData::FromVector(std::vector<uint8_t>(shape[0] * shape[1] * 4)));
        ASSERT_TRUE(w.ok()) << w.status();
        m.graph.SetInput(n, 1, *w);
      },
      {"code words", ".half"});
  // Scale/zero words of f16.
  refused(
      [](ir::Module& m, ir::Node* n) {
        const ir::Value* sz = n->input(3);
        const std::vector<int64_t> shape = sz->type.shape;
        auto w = m.graph.AddWeight(
            sz->name + ".f16", ir::TensorType{ir::DType::kF16, shape},
            ir::WeightData::FromVector(std::vector<uint8_t>(shape[0] * shape[1] * 2)));
        ASSERT_TRUE(w.ok()) << w.status();
        m.graph.SetInput(n, 3, *w);
      },
      {"scale/zero words", ".f16"});
}

}  // namespace
}  // namespace kvcc::pipeline
