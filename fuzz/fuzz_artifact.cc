#include "fuzz/fuzz_artifact.h"

#include "ir/builder.h"
#include "ir/onnx_io.h"

namespace kvcc::fuzz {
namespace {

using ir::AttributeMap;
using ir::DType;
using ir::Value;

Value* Weight(ir::Graph& g, const std::string& name, DType dtype, std::vector<int64_t> shape) {
  ir::TensorType type{dtype, std::move(shape)};
  std::vector<uint8_t> bytes(static_cast<size_t>(type.NumBytes()));
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 131 + name.size());
  return *g.AddWeight(name, type, ir::WeightData::FromVector(std::move(bytes)));
}

}  // namespace

void BuildFuzzModule(ir::Module* m) {
  ir::ModelConfig& c = m->config;
  c.architecture = "LlamaForCausalLM";
  c.hidden_size = 8;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 4;
  c.intermediate_size = 8;
  c.vocab_size = 16;
  c.max_position = 64;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  m->metadata["note"] = "fuzz seed";

  ir::Graph& g = m->graph;
  ir::Builder b(&g);
  Value* ids = *g.AddInput("input_ids", {DType::kI32, {ir::kDynamic}});
  Value* pos = *g.AddInput("positions", {DType::kI32, {ir::kDynamic}});
  Value* embed = Weight(g, "embed", DType::kF16, {16, 8});
  Value* h = *b.Add1("embedding", "embed_lookup", {ids, embed});
  Value* n = *b.Add1("rms_norm", "norm0", {h, Weight(g, "ln0", DType::kF32, {8})}, {{"eps", 1e-5}});
  Value* qkv =
      *b.Add1("linear", "qkv",
              {n, Weight(g, "wqkv", DType::kBF16, {16, 8}), Weight(g, "bqkv", DType::kF32, {16})});
  auto parts = *b.Add("split", "qkv_split", {qkv}, {{"sizes", std::vector<int64_t>{8, 4, 4}}});
  AttributeMap rope = {
      {"head_dim", int64_t{4}}, {"theta", 500000.0}, {"scaling", std::string("none")}};
  AttributeMap qrope = rope, krope = rope;
  qrope["heads"] = int64_t{2};
  krope["heads"] = int64_t{1};
  Value* q = *b.Add1("rotary", "q_rope", {parts[0], pos}, qrope);
  Value* k = *b.Add1("rotary", "k_rope", {parts[1], pos}, krope);
  Value* cache = *b.Add1("kv_cache_write", "cache", {k, parts[2]},
                         {{"layer", int64_t{0}},
                          {"kv_heads", int64_t{1}},
                          {"head_dim", int64_t{4}},
                          {"cache_dtype", std::string("i8")},
                          {"kv_scheme", std::string("per_layer")},
                          {"k_zp", std::vector<double>{0.1}},
                          {"k_scale", std::vector<double>{0.03}},
                          {"v_zp", std::vector<double>{-0.2}},
                          {"v_scale", std::vector<double>{0.01}}});
  Value* att = *b.Add1("attention", "attn", {q, cache},
                       {{"layer", int64_t{0}},
                        {"heads", int64_t{2}},
                        {"kv_heads", int64_t{1}},
                        {"head_dim", int64_t{4}},
                        {"causal", int64_t{1}},
                        {"scale", 0.5}});
  Value* o = *b.Add1("linear", "o_proj", {att, Weight(g, "wo", DType::kFP8E4M3, {8, 8})});
  Value* r = *b.Add1("add", "resid", {h, o});
  Value* gu =
      *b.Add1("linear", "gate_up",
              {r, Weight(g, "wgu", DType::kI4, {16, 8}), nullptr,
               Weight(g, "sgu", DType::kF16, {16, 1}), Weight(g, "zgu", DType::kF16, {16, 1})},
              {{"group_size", int64_t{8}}});
  auto gate_up = *b.Add("split", "gate_up_split", {gu}, {{"sizes", std::vector<int64_t>{8, 8}}});
  Value* act = *b.Add1("silu_mul", "act", {gate_up[0], gate_up[1]});
  Value* down = *b.Add1(
      "linear", "down",
      {act, Weight(g, "wd", DType::kU8, {8, 8}), nullptr, Weight(g, "sd", DType::kF32, {8, 1})},
      {{"group_size", int64_t{8}}});
  Value* r2 = *b.Add1("add", "resid2", {r, down});
  Value* logits = *b.Add1("lm_head", "logits", {r2, embed});
  g.AddOutput(logits);
  Weight(g, "extra_i8", DType::kI8, {3});
  Weight(g, "extra_i32", DType::kI32, {2});
}

absl::Status WriteFuzzArtifact(const std::string& dir) {
  ir::Module m;
  BuildFuzzModule(&m);
  return ir::WriteOnnx(m, dir);
}

}  // namespace kvcc::fuzz
