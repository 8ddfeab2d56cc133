// calibration/awq_quantizer: round-to-nearest stays within half a quantization step (the f16
// rounding of the scale aside) of every weight and keeps widths no group divides in 16 bits;
// the written AutoAWQ checkpoint loads back; AWQ's searches give stories260K a lower held-out
// perplexity than RTN at the same group size, and close at least a fifth of RTN's gap on
// wiki-gutenberg-29M (WikiText-2).
#include "calibration/awq_quantizer.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "calibration/calibration_data.h"
#include "frontend/hf_config.h"
#include "frontend/model_loader.h"
#include "gtest/gtest.h"
#include "ir/half.h"
#include "ir/op_names.h"
#include "runtime/cpu_backend.h"
#include "runtime/engine.h"
#include "runtime/perplexity.h"
#include "testing/safetensors_writer.h"
#include "testing/synth.h"
#include "tests/test_util.h"
#include "tokenizer/tokenizer_loader.h"

namespace kvcc::calibration {
namespace {

namespace fs = std::filesystem;

// Writes `r` as an AutoAWQ checkpoint beside the float model's side files.
void WriteCheckpoint(const std::string& from, const AwqResult& r, int64_t group,
                     const std::string& out) {
  fs::create_directories(out);
  KVCC_ASSERT_OK(frontend::CopyModelSideFiles(from, out).status());
  KVCC_ASSERT_OK_AND_ASSIGN(j, ir::ReadJsonFile(from + "/config.json"));
  std::ofstream(out + "/config.json") << AwqCheckpointConfig(j, r, group).dump(1);
  KVCC_ASSERT_OK(kvcc::testing::WriteSafetensors(out + "/model.safetensors", r.tensors));
}

TEST(AwqQuantizerTest, RtnIsWithinHalfAStepAndLoads) {
  const std::string dir = kvcc::testing::TempDir("awq_rtn");
  kvcc::testing::SynthOptions so;
  so.seed = 3;
  so.dtype = ir::DType::kF32;
  KVCC_ASSERT_OK(kvcc::testing::SynthesizeCheckpoint(
                     kvcc::testing::SourcePath("models/configs/llama-hd64-mha.json"),
                     dir + "/src", so)
                     .status());
  AwqOptions o;
  o.rtn = true;
  o.group_size = 32;
  KVCC_ASSERT_OK_AND_ASSIGN(r, QuantizeAwq(dir + "/src", {}, o));
  // 688-wide down projections: 32 does not divide them.
  EXPECT_EQ(r.converted, 12);
  EXPECT_EQ(r.not_converted,
            (std::vector<std::string>{"model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"}));
  WriteCheckpoint(dir + "/src", r, 32, dir + "/awq");
  KVCC_ASSERT_OK_AND_ASSIGN(q, frontend::LoadModel(dir + "/awq", frontend::ModelFormat::kAwq));
  KVCC_ASSERT_OK_AND_ASSIGN(f, frontend::LoadModel(dir + "/src"));
  runtime::CpuBackend cpu(2);
  auto view = [](const ir::Value* v) {
    return runtime::Tensor::View(v->type.dtype, v->type.shape, runtime::Device::kCpu,
                                 const_cast<uint8_t*>(v->weight->bytes), v->weight->owner);
  };
  int checked = 0;
  for (const auto& node : q->graph.nodes()) {
    if (node->op != ir::op::kLinear || node->input(1)->type.dtype != ir::DType::kI4) continue;
    const std::string module = node->input(1)->name.substr(0, node->input(1)->name.size() - 8);
    const ir::Value* orig = f->graph.FindValue(module + ".weight");
    ASSERT_NE(orig, nullptr) << module;
    const int64_t out = orig->type.shape[0], in = orig->type.shape[1];
    runtime::Tensor c = view(node->input(1)), s = view(node->input(3)), z = view(node->input(4));
    runtime::Tensor eye = runtime::Tensor::HostZeros(ir::DType::kF32, {in, in});
    for (int64_t i = 0; i < in; ++i) eye.data<float>()[i * in + i] = 1.0f;
    KVCC_ASSERT_OK_AND_ASSIGN(
        wt, cpu.QuantizedLinear(eye, runtime::QuantizedWeight{&c, &s, &z, 32}, nullptr));
    const float* w = reinterpret_cast<const float*>(orig->weight->bytes);
    for (int64_t o2 = 0; o2 < out; ++o2) {
      for (int64_t g = 0; g < in; g += 32) {
        float mx = w[o2 * in + g], mn = mx;
        for (int64_t j = g; j < g + 32; ++j) {
          mx = std::max(mx, w[o2 * in + j]);
          mn = std::min(mn, w[o2 * in + j]);
        }
        const float half_step = (mx - mn) / 15 / 2 * 1.03f + 1e-6f;
        for (int64_t j = g; j < g + 32; ++j) {
          ASSERT_LE(std::fabs(wt.data<float>()[j * out + o2] - w[o2 * in + j]), half_step)
              << module << " [" << o2 << "," << j << "]";
        }
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 12);
}

TEST(AwqQuantizerTest, RefusesBadOptions) {
  AwqOptions o;
  o.group_size = 100;
  EXPECT_FALSE(QuantizeAwq(kvcc::testing::SourcePath("models/stories260K"), {}, o).ok());
  o.group_size = 32;
  o.w_bits = 3;
  EXPECT_FALSE(QuantizeAwq(kvcc::testing::SourcePath("models/stories260K"), {}, o).ok());
  o.w_bits = 4;
  auto none = QuantizeAwq(kvcc::testing::SourcePath("models/stories260K"), {}, o);
  ASSERT_FALSE(none.ok());  // AWQ without calibration windows
  EXPECT_NE(std::string(none.status().message()).find("calibration"), std::string::npos);
  // Windows longer than the model's 512 positions: refused as the KV calibrator refuses them.
  auto long_windows = QuantizeAwq(kvcc::testing::SourcePath("models/stories260K"),
                                  {std::vector<int32_t>(600, 5)}, o);
  ASSERT_FALSE(long_windows.ok());
  EXPECT_NE(std::string(long_windows.status().message()).find("exceed the model's context"),
            std::string::npos)
      << long_windows.status();
}

double HeldOutPpl(const std::string& model, const std::vector<std::vector<int32_t>>& windows,
                  int64_t context = 256) {
  auto m = frontend::LoadModel(model);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return 0;
  runtime::EngineOptions eo;
  eo.cache_tokens = context;
  eo.max_context = context;
  auto e = runtime::Engine::Create(std::shared_ptr<const ir::Module>(std::move(*m)),
                                   std::make_unique<runtime::CpuBackend>(2), eo);
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return 0;
  auto p = runtime::Perplexity(**e, windows);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? p->ppl : 0;
}

TEST(AwqQuantizerTest, AwqBeatsRtnOnStories260K) {
  const std::string model = kvcc::testing::SourcePath("models/stories260K");
  const std::string dir = kvcc::testing::TempDir("awq_stories");
  KVCC_ASSERT_OK_AND_ASSIGN(tok, tokenizer::LoadTokenizer(model));
  KVCC_ASSERT_OK_AND_ASSIGN(path, ResolveDataset("tinystories", DatasetSplit::kValidation));
  KVCC_ASSERT_OK_AND_ASSIGN(text, ReadCalibrationText(path));
  tokenizer::EncodeOptions plain;
  plain.add_special_tokens = false;
  // Calibration on the first half of the text, evaluation on windows of the second.
  const std::string first = text.substr(0, text.size() / 2), second = text.substr(text.size() / 2);
  KVCC_ASSERT_OK_AND_ASSIGN(calib_tokens, tok.tokenizer->Encode(first, plain));
  KVCC_ASSERT_OK_AND_ASSIGN(eval_tokens, tok.tokenizer->Encode(second, plain));
  KVCC_ASSERT_OK_AND_ASSIGN(calib, DrawCalibrationWindows(calib_tokens, 256, 8, 0, 1));
  KVCC_ASSERT_OK_AND_ASSIGN(eval, ConsecutiveWindows(eval_tokens, 256, 16, 1));
  AwqOptions o;
  o.group_size = 32;
  o.threads = 2;
  KVCC_ASSERT_OK_AND_ASSIGN(awq, QuantizeAwq(model, calib, o));
  o.rtn = true;
  KVCC_ASSERT_OK_AND_ASSIGN(rtn, QuantizeAwq(model, {}, o));
  WriteCheckpoint(model, awq, 32, dir + "/awq");
  WriteCheckpoint(model, rtn, 32, dir + "/rtn");
  const double base = HeldOutPpl(model, eval);
  const double p_awq = HeldOutPpl(dir + "/awq", eval);
  const double p_rtn = HeldOutPpl(dir + "/rtn", eval);
  std::printf("stories260K held-out ppl: float %.4f, RTN g32 %.4f, AWQ g32 %.4f\n", base, p_rtn,
              p_awq);
  EXPECT_GT(p_rtn, base);
  EXPECT_LT(p_awq, p_rtn);
}

// The accuracy model (bf16, GQA, every linear quantized at g128), calibrated on
// WikiText-2 validation and evaluated on WikiText-2 test windows: AWQ (block-output scale search
// and clipping) must close at least 20% of round-to-nearest's perplexity gap (measured: bf16
// 99.67, RTN 104.21, AWQ 102.74, 32%). The settings are smaller than docs/awq.md's (4 x 512
// calibration, 1024 search tokens; there AWQ closes 81%) to keep the test short.
TEST(AwqQuantizerTest, AwqClosesRtnGapOnWikiGutenberg29M) {
  const std::string model = kvcc::testing::SharedPath("models/wiki-gutenberg-29M");
  const std::string dir = kvcc::testing::TempDir("awq_wg29m");
  KVCC_ASSERT_OK_AND_ASSIGN(tok, tokenizer::LoadTokenizer(model));
  KVCC_ASSERT_OK_AND_ASSIGN(calib_path, ResolveDataset("wikitext2", DatasetSplit::kValidation));
  KVCC_ASSERT_OK_AND_ASSIGN(eval_path, ResolveDataset("wikitext2", DatasetSplit::kTest));
  KVCC_ASSERT_OK_AND_ASSIGN(calib_text, ReadCalibrationText(calib_path));
  KVCC_ASSERT_OK_AND_ASSIGN(eval_text, ReadCalibrationText(eval_path));
  tokenizer::EncodeOptions plain;
  plain.add_special_tokens = false;
  KVCC_ASSERT_OK_AND_ASSIGN(calib_tokens, tok.tokenizer->Encode(calib_text, plain));
  // The first 100 KB hold the evaluation windows with room to spare.
  KVCC_ASSERT_OK_AND_ASSIGN(eval_tokens, tok.tokenizer->Encode(eval_text.substr(0, 100000), plain));
  KVCC_ASSERT_OK_AND_ASSIGN(calib, DrawCalibrationWindows(calib_tokens, 512, 4, 0, 1));
  KVCC_ASSERT_OK_AND_ASSIGN(eval, ConsecutiveWindows(eval_tokens, 512, 4, 1));
  AwqOptions o;
  o.group_size = 128;
  o.threads = 2;
  o.search_tokens = 1024;
  o.clip_tokens = 1024;
  KVCC_ASSERT_OK_AND_ASSIGN(awq, QuantizeAwq(model, calib, o));
  EXPECT_EQ(awq.converted, 56);
  o.rtn = true;
  KVCC_ASSERT_OK_AND_ASSIGN(rtn, QuantizeAwq(model, {}, o));
  WriteCheckpoint(model, awq, 128, dir + "/awq");
  WriteCheckpoint(model, rtn, 128, dir + "/rtn");
  const double base = HeldOutPpl(model, eval, 512);
  const double p_awq = HeldOutPpl(dir + "/awq", eval, 512);
  const double p_rtn = HeldOutPpl(dir + "/rtn", eval, 512);
  std::printf("wiki-gutenberg-29M WikiText-2 test ppl: bf16 %.4f, RTN g128 %.4f, AWQ g128 %.4f\n",
              base, p_rtn, p_awq);
  EXPECT_GT(p_rtn, base);
  EXPECT_LE(p_awq - base, 0.8 * (p_rtn - base));
}

}  // namespace
}  // namespace kvcc::calibration
