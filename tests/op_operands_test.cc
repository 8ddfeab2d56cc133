// The operand checks shared by the CPU and CUDA backends: placement, dtype and shape errors,
// with the same message whichever backend reports them.
#include "runtime/op_operands.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using ir::DType;

// Metadata-only tensors: the checks never read the bytes, so device tensors can point at host
// memory here.
Tensor On(Device device, DType dtype, std::vector<int64_t> shape) {
  static std::vector<uint8_t> bytes(1 << 16);
  return Tensor::View(dtype, std::move(shape), device, bytes.data(), nullptr);
}

void ExpectError(const absl::Status& s, const std::string& fragment) {
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(fragment), std::string::npos) << s;
}

TEST(OpOperandsTest, PlacementNamesTheBackend) {
  ExpectError(CheckActivation(On(Device::kCpu, DType::kF32, {2, 4}), Device::kCuda, "x"),
              "cuda backend: x f32[2,4]@cpu is not in device memory");
  ExpectError(CheckWeight(On(Device::kCuda, DType::kF16, {4}), Device::kCpu, "w"),
              "cpu backend: w f16[4]@cuda is not in host memory");
  Tensor empty = Tensor::View(DType::kF32, {2, 4}, Device::kCpu, nullptr, nullptr);
  ExpectError(CheckResident(empty, Device::kCpu, "x"), "cpu backend: x has no data");
}

TEST(OpOperandsTest, DTypesAndRanks) {
  for (Device d : {Device::kCpu, Device::kCuda}) {
    KVCC_ASSERT_OK(CheckActivation(On(d, DType::kF32, {3, 8}), d, "x"));
    ExpectError(CheckActivation(On(d, DType::kF16, {3, 8}), d, "x"), "must be f32[tokens, n]");
    ExpectError(CheckActivation(On(d, DType::kF32, {24}), d, "x"), "must be f32[tokens, n]");
    for (DType w : {DType::kF32, DType::kF16, DType::kBF16}) {
      KVCC_ASSERT_OK(CheckWeight(On(d, w, {8}), d, "w"));
    }
    absl::Status s = CheckWeight(On(d, DType::kI8, {8}), d, "w");
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
    ExpectError(s, "dtype i8 is not supported (f32, f16, bf16)");
  }
}

TEST(OpOperandsTest, OpShapes) {
  const Device d = Device::kCpu;
  Tensor x = On(d, DType::kF32, {3, 8});
  KVCC_ASSERT_OK(CheckRmsNormOperands(x, On(d, DType::kF16, {8}), d));
  ExpectError(CheckRmsNormOperands(x, On(d, DType::kF16, {7}), d),
              "rms_norm: weight f16[7]@cpu does not match input f32[3,8]@cpu");
  KVCC_ASSERT_OK(CheckAddRmsNormOperands(x, x, On(d, DType::kBF16, {8}), d));
  ExpectError(CheckAddRmsNormOperands(x, On(d, DType::kF32, {2, 8}), On(d, DType::kBF16, {8}), d),
              "add_rms_norm: input f32[3,8]@cpu vs residual f32[2,8]@cpu");
  KVCC_ASSERT_OK(CheckSplitOperands(x, {4, 2, 2}, d));
  ExpectError(CheckSplitOperands(x, {4, 2}, d), "split: sizes sum to 6 but input is f32[3,8]@cpu");
  ExpectError(CheckSplitOperands(x, {10, -2}, d), "split: sizes must be positive");
  ExpectError(CheckElementwiseOperands("add", x, "add lhs", On(d, DType::kF32, {3, 4}),
                                       "add rhs", d),
              "add: f32[3,8]@cpu vs f32[3,4]@cpu");
  KVCC_ASSERT_OK(CheckEmbeddingOperands(On(d, DType::kI32, {3}), On(d, DType::kF16, {16, 8}), d));
  ExpectError(CheckEmbeddingOperands(On(d, DType::kF32, {3}), On(d, DType::kF16, {16, 8}), d),
              "must be i32[T] and [vocab, hidden]");
}

TEST(OpOperandsTest, RotaryCacheWriteAndAttentionAgainstTheLayout) {
  const Device d = Device::kCuda;
  KvCacheLayout layout;
  layout.num_layers = 2;
  layout.kv_heads = 2;
  layout.head_dim = 4;
  Tensor kv = On(d, DType::kF32, {3, 8});
  KVCC_ASSERT_OK(CheckKvCacheWriteOperands(kv, kv, 1, 3, layout, d));
  ExpectError(CheckKvCacheWriteOperands(kv, On(d, DType::kF32, {3, 6}), 1, 3, layout, d),
              "kv_cache_write layer 1: k f32[3,8]@cuda and v f32[3,6]@cuda must be [3, 8]");
  ExpectError(CheckKvCacheWriteOperands(kv, kv, 0, 2, layout, d), "must be [2, 8]");

  RotaryParams rope;
  rope.heads = 2;
  rope.head_dim = 4;
  StepBatch step;
  step.sessions = {0, 0, 1};
  step.positions = {0, 1, 0};
  step.ComputeSeqLens();
  KVCC_ASSERT_OK(CheckRotaryOperands(kv, rope, step, d));
  rope.head_dim = 3;
  ExpectError(CheckRotaryOperands(kv, rope, step, d), "rotary: 2 heads x 3 do not match");
  rope.head_dim = 4;
  step.positions.pop_back();
  ExpectError(CheckRotaryOperands(kv, rope, step, d), "rotary: 3 tokens but the step has 2");

  AttentionParams p;
  p.layer = 1;
  p.heads = 4;
  p.kv_heads = 2;
  p.head_dim = 4;
  Tensor q = On(d, DType::kF32, {3, 16});
  KVCC_ASSERT_OK(CheckAttentionOperands(q, p, 3, layout, d));
  ExpectError(CheckAttentionOperands(q, p, 2, layout, d), "attention: q has 3 tokens, the step 2");
  AttentionParams bad = p;
  bad.layer = 2;
  ExpectError(CheckAttentionOperands(q, bad, 3, layout, d), "do not fit q");
  bad = p;
  bad.heads = 3;
  ExpectError(CheckAttentionOperands(q, bad, 3, layout, d), "3 heads / 2 kv heads");
  bad = p;
  bad.causal = false;
  EXPECT_EQ(CheckAttentionOperands(q, bad, 3, layout, d).code(),
            absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace kvcc::runtime
