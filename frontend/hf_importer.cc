#include "frontend/hf_importer.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "frontend/hf_config.h"
#include "frontend/w4_checkpoint_format.h"
#include "ir/builder.h"
#include "ir/half.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "ir/verifier.h"

namespace kvcc::frontend {
namespace {

using ir::AttributeMap;
using ir::DType;
using ir::Value;

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// HF tensor names of one layer. InternLM2 keeps its original (non-LLaMA) module names and a
// fused, interleaved wqkv.
struct LayerNames {
  std::string input_norm, post_norm;
  std::string q, k, v, qkv;  // qkv set only for InternLM2
  std::string o, gate, up, down;
};

struct ModelNames {
  std::string embed, norm, lm_head;
};

bool IsInternLM2(const ir::ModelConfig& c) { return c.architecture == "InternLM2ForCausalLM"; }

ModelNames NamesOf(const ir::ModelConfig& c) {
  if (IsInternLM2(c)) return {"model.tok_embeddings.weight", "model.norm.weight", "output.weight"};
  return {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
}

LayerNames LayerNamesOf(const ir::ModelConfig& c, int64_t i) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  LayerNames n;
  if (IsInternLM2(c)) {
    n.input_norm = p + "attention_norm";
    n.post_norm = p + "ffn_norm";
    n.qkv = p + "attention.wqkv";
    n.o = p + "attention.wo";
    n.gate = p + "feed_forward.w1";
    n.up = p + "feed_forward.w3";
    n.down = p + "feed_forward.w2";
    return n;
  }
  n.input_norm = p + "input_layernorm";
  n.post_norm = p + "post_attention_layernorm";
  n.q = p + "self_attn.q_proj";
  n.k = p + "self_attn.k_proj";
  n.v = p + "self_attn.v_proj";
  n.o = p + "self_attn.o_proj";
  n.gate = p + "mlp.gate_proj";
  n.up = p + "mlp.up_proj";
  n.down = p + "mlp.down_proj";
  return n;
}

class Importer {
 public:
  Importer(const ir::ModelConfig& config, const Checkpoint& checkpoint, std::string config_file,
           const QuantizationConfig& quant, ir::Module* module)
      : c_(config),
        ckpt_(checkpoint),
        quant_(quant),
        config_file_(std::move(config_file)),
        m_(module),
        g_(module->graph),
        b_(&module->graph) {}

  absl::Status Run();

 private:
  // The checkpoint tensor `name`, checked to exist with `shape` (explained by `from`, the
  // config keys it derives from) and a float dtype.
  absl::StatusOr<SafetensorsTensor> Fetch(const std::string& name,
                                          const std::vector<int64_t>& shape, int64_t layer,
                                          absl::string_view from) const;
  absl::StatusOr<Value*> Weight(const std::string& name, const std::vector<int64_t>& shape,
                                int64_t layer, absl::string_view from);
  absl::StatusOr<Value*> Node(const std::string& op, const std::string& name,
                              std::vector<Value*> inputs, AttributeMap attrs = {});
  absl::StatusOr<Value*> Linear(const std::string& node, Value* x, const std::string& module,
                                int64_t out, int64_t in, bool bias, int64_t layer,
                                absl::string_view from);
  // A linear the quantization config converts: 4-bit codes, scales, zeros (ir/group_quant.h).
  absl::StatusOr<Value*> QuantizedLinear(const std::string& node, Value* x,
                                         const std::string& module, int64_t out, int64_t in,
                                         bool bias, int64_t layer, absl::string_view from);
  absl::StatusOr<Value*> Layer(int64_t i, Value* h, Value* positions);
  // InternLM2's wqkv as q, k, v linears fused: one linear + split.
  absl::StatusOr<std::vector<Value*>> FusedQkv(int64_t i, const LayerNames& n, Value* x);
  AttributeMap Rotary(int64_t heads) const;

  const ir::ModelConfig& c_;
  const Checkpoint& ckpt_;
  const QuantizationConfig& quant_;
  std::string config_file_;
  ir::Module* m_;
  ir::Graph& g_;
  ir::Builder b_;
};

std::string LayerText(int64_t layer) {
  return layer < 0 ? std::string() : absl::StrCat(" (layer ", layer, ")");
}

// Beyond this magnitude a value is no trained LLaMA-family weight: most likely the bytes are
// another dtype than the header says, or corrupt.
constexpr double kAbsurdWeight = double{1 << 24};

// The first element of a float tensor that is NaN, infinite or absurdly large, found from the
// exponent bits alone (one pass, no conversion): its index and value.
template <typename Bits, int kExponentShift, int kExponentBits, int kBias>
std::optional<std::pair<size_t, double>> FirstBadElement(const uint8_t* bytes, size_t n,
                                                         double (*value)(Bits)) {
  constexpr Bits kMask = static_cast<Bits>(((Bits{1} << kExponentBits) - 1) << kExponentShift);
  // Biased exponent of kAbsurdWeight (2^24); float16 (bias 15) cannot reach it, only Inf/NaN.
  constexpr Bits kAbsurd = static_cast<Bits>(
      std::min<int>(kBias + 24, (1 << kExponentBits) - 1) << kExponentShift);
  for (size_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, bytes + i * sizeof(Bits), sizeof(Bits));
    if ((b & kMask) >= kAbsurd) return std::make_pair(i, value(b));
  }
  return std::nullopt;
}

double F32Value(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}
double F16Value(uint16_t b) { return ir::HalfToFloat(b); }
double Bf16Value(uint16_t b) { return ir::Bf16ToFloat(b); }

// NaN/Inf (or absurd) weights would only surface as NaN logits at sampling time.
absl::Status CheckWeightValues(const SafetensorsTensor& t, int64_t layer) {
  std::optional<std::pair<size_t, double>> bad;
  switch (t.dtype) {
    case DType::kF32:
      bad = FirstBadElement<uint32_t, 23, 8, 127>(t.data.bytes, t.data.size / 4, &F32Value);
      break;
    case DType::kF16:
      bad = FirstBadElement<uint16_t, 10, 5, 15>(t.data.bytes, t.data.size / 2, &F16Value);
      break;
    case DType::kBF16:
      bad = FirstBadElement<uint16_t, 7, 8, 127>(t.data.bytes, t.data.size / 2, &Bf16Value);
      break;
    default:
      return absl::OkStatus();
  }
  if (!bad) return absl::OkStatus();
  const double x = bad->second;
  const std::string what = std::isnan(x)   ? "NaN"
                           : std::isinf(x) ? absl::StrCat(x > 0 ? "+" : "-", "Inf")
                                           : absl::StrCat("the absurd value ", x);
  return absl::InvalidArgumentError(absl::StrCat(
      t.file, ": tensor '", t.name, "'", LayerText(layer), " (", ir::DTypeName(t.dtype),
      ") holds ", what, " at element ", bad->first,
      std::isfinite(x) ? "; its bytes are probably another dtype than the header says"
                       : "; the checkpoint is corrupt"));
}

absl::StatusOr<SafetensorsTensor> Importer::Fetch(const std::string& name,
                                                  const std::vector<int64_t>& shape,
                                                  int64_t layer, absl::string_view from) const {
  if (!ckpt_.Has(name)) {
    return absl::NotFoundError(absl::StrCat(ckpt_.dir(), ": tensor '", name, "'",
                                            LayerText(layer), " is missing; ", config_file_,
                                            " implies shape ", ShapeText(shape), " (", from,
                                            ")"));
  }
  KVCC_ASSIGN_OR_RETURN(auto t, ckpt_.Get(name));
  if (t.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        t.file, ": tensor '", name, "'", LayerText(layer), " has shape ", ShapeText(t.shape),
        ", expected ", ShapeText(shape), " from ", config_file_, " (", from, ")"));
  }
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(t.file, ": tensor '", name, "'", LayerText(layer), " has dtype ",
                     ir::DTypeName(t.dtype), ", expected f32, f16 or bf16"));
  }
  const int64_t bytes = ir::DTypeBytes(t.dtype, ir::TensorType{t.dtype, shape}.NumElements());
  if (t.data.bytes == nullptr || static_cast<int64_t>(t.data.size) != bytes) {
    return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", name, "' holds ",
                                                   t.data.size, " bytes, expected ", bytes));
  }
  KVCC_RETURN_IF_ERROR(CheckWeightValues(t, layer));
  // safetensors does not align tensors: one at an odd offset is copied so element loads are.
  t.data = t.data.Aligned(static_cast<size_t>(ir::DTypeBytes(t.dtype, 1)));
  return t;
}

absl::StatusOr<Value*> Importer::Weight(const std::string& name,
                                        const std::vector<int64_t>& shape, int64_t layer,
                                        absl::string_view from) {
  KVCC_ASSIGN_OR_RETURN(auto t, Fetch(name, shape, layer, from));
  return g_.AddWeight(name, {t.dtype, t.shape}, std::move(t.data));
}

absl::StatusOr<Value*> Importer::Node(const std::string& op, const std::string& name,
                                      std::vector<Value*> inputs, AttributeMap attrs) {
  auto v = b_.Add1(op, name, std::move(inputs), std::move(attrs));
  if (!v.ok()) {
    return absl::InternalError(absl::StrCat(ckpt_.dir(), ": building ", name, ": ",
                                            v.status().message()));
  }
  return v;
}

absl::StatusOr<Value*> Importer::Linear(const std::string& node, Value* x,
                                        const std::string& module, int64_t out, int64_t in,
                                        bool bias, int64_t layer, absl::string_view from) {
  if (quant_.Converts(module)) return QuantizedLinear(node, x, module, out, in, bias, layer, from);
  KVCC_ASSIGN_OR_RETURN(auto w, Weight(module + ".weight", {out, in}, layer, from));
  std::vector<Value*> inputs = {x, w};
  if (bias) {
    KVCC_ASSIGN_OR_RETURN(auto b,
                          Weight(module + ".bias", {out}, layer, absl::StrCat("bias of ", from)));
    inputs.push_back(b);
  }
  return Node(ir::op::kLinear, node, std::move(inputs));
}

absl::StatusOr<Value*> Importer::QuantizedLinear(const std::string& node, Value* x,
                                                 const std::string& module, int64_t out,
                                                 int64_t in, bool bias, int64_t layer,
                                                 absl::string_view from) {
  KVCC_ASSIGN_OR_RETURN(W4Linear w, ImportW4Linear(ckpt_, quant_, module, out, in,
                                                   absl::StrCat(from, LayerText(layer))));
  const int64_t groups = in / w.group_size;
  KVCC_ASSIGN_OR_RETURN(auto codes,
                        g_.AddWeight(module + ".qweight", {DType::kI4, {out, in}}, w.codes));
  Value* b = nullptr;
  if (bias) {
    KVCC_ASSIGN_OR_RETURN(b, Weight(module + ".bias", {out}, layer, absl::StrCat("bias of ", from)));
  }
  KVCC_ASSIGN_OR_RETURN(auto scales,
                        g_.AddWeight(module + ".scales", {DType::kF16, {out, groups}}, w.scales));
  KVCC_ASSIGN_OR_RETURN(auto zeros,
                        g_.AddWeight(module + ".qzeros", {DType::kI4, {out, groups}}, w.zeros));
  return Node(ir::op::kLinear, node, {x, codes, b, scales, zeros},
              {{"group_size", w.group_size}});
}

AttributeMap Importer::Rotary(int64_t heads) const {
  const ir::RopeScaling& s = c_.rope_scaling;
  return {{"heads", heads},
          {"head_dim", c_.head_dim},
          {"theta", c_.rope_theta},
          {"scaling", s.type},
          {"factor", s.factor},
          {"low_freq_factor", s.low_freq_factor},
          {"high_freq_factor", s.high_freq_factor},
          {"original_max_position", s.original_max_position},
          {"max_position", c_.max_position}};
}

// InternLM2 groups wqkv rows per kv head: [q heads of the group, k, v] x head_dim, i.e.
// "(h gs d)" with gs = H/KVH + 2. Rows are moved into [all q | all k | all v].
std::vector<uint8_t> DeinterleaveQkv(const uint8_t* src, int64_t heads, int64_t kv_heads,
                                     int64_t head_dim, int64_t row_bytes) {
  const int64_t group = heads / kv_heads;
  const int64_t block = head_dim * row_bytes;  // one head's rows
  std::vector<uint8_t> dst(static_cast<size_t>((heads + 2 * kv_heads) * block));
  for (int64_t h = 0; h < kv_heads; ++h) {
    const uint8_t* g = src + h * (group + 2) * block;
    for (int64_t j = 0; j < group; ++j) {
      std::memcpy(dst.data() + (h * group + j) * block, g + j * block, block);
    }
    std::memcpy(dst.data() + (heads + h) * block, g + group * block, block);
    std::memcpy(dst.data() + (heads + kv_heads + h) * block, g + (group + 1) * block, block);
  }
  return dst;
}

absl::StatusOr<std::vector<Value*>> Importer::FusedQkv(int64_t i, const LayerNames& n,
                                                       Value* x) {
  const int64_t H = c_.num_heads, KVH = c_.num_kv_heads, d = c_.head_dim;
  const int64_t rows = (H + 2 * KVH) * d;
  const std::string from = absl::StrCat("(num_attention_heads ", H, " + 2 * num_key_value_heads ",
                                        KVH, ") * head_dim ", d);
  std::vector<Value*> inputs = {x};
  for (bool bias : {false, true}) {
    if (bias && !c_.qkv_bias) break;
    const std::string name = n.qkv + (bias ? ".bias" : ".weight");
    std::vector<int64_t> shape = bias ? std::vector<int64_t>{rows}
                                      : std::vector<int64_t>{rows, c_.hidden_size};
    KVCC_ASSIGN_OR_RETURN(
        auto t,
        Fetch(name, shape, i,
              bias ? "bias of " + from : absl::StrCat(from, ", hidden_size ", c_.hidden_size)));
    const int64_t row_bytes = ir::DTypeBytes(t.dtype, bias ? 1 : c_.hidden_size);
    auto data = ir::WeightData::FromVector(DeinterleaveQkv(t.data.bytes, H, KVH, d, row_bytes));
    KVCC_ASSIGN_OR_RETURN(auto w, g_.AddWeight(name, {t.dtype, shape}, std::move(data)));
    inputs.push_back(w);
  }
  const std::string node = absl::StrCat("layers.", i, ".qkv_proj");
  KVCC_ASSIGN_OR_RETURN(auto qkv, Node(ir::op::kLinear, node, std::move(inputs)));
  KVCC_ASSIGN_OR_RETURN(auto parts,
                        b_.Add(ir::op::kSplit, node + ".split", {qkv},
                               {{"sizes", std::vector<int64_t>{H * d, KVH * d, KVH * d}}}));
  return parts;
}

absl::StatusOr<Value*> Importer::Layer(int64_t i, Value* h, Value* positions) {
  const LayerNames n = LayerNamesOf(c_, i);
  const std::string p = absl::StrCat("layers.", i, ".");
  const int64_t H = c_.num_heads, KVH = c_.num_kv_heads, d = c_.head_dim;
  const int64_t hidden = c_.hidden_size, inter = c_.intermediate_size;

  // Shape explanations with the config's values, for mismatch messages.
  const std::string hid = absl::StrCat("hidden_size ", hidden);
  const std::string q_out = absl::StrCat("num_attention_heads ", H, " * head_dim ", d);
  const std::string kv_out = absl::StrCat("num_key_value_heads ", KVH, " * head_dim ", d);
  const std::string mlp = absl::StrCat("intermediate_size ", inter);

  KVCC_ASSIGN_OR_RETURN(Value* ln1w, Weight(n.input_norm + ".weight", {hidden}, i, hid));
  KVCC_ASSIGN_OR_RETURN(Value* x, Node(ir::op::kRmsNorm, p + "input_layernorm", {h, ln1w}, {{"eps", c_.rms_norm_eps}}));

  Value *q = nullptr, *k = nullptr, *v = nullptr;
  if (!n.qkv.empty()) {
    if (quant_.Converts(n.qkv)) {
      return absl::UnimplementedError(absl::StrCat(
          ckpt_.dir(), ": '", n.qkv, "' is quantized; kvcc imports InternLM2's interleaved wqkv "
          "only in 16 bits (list it in quantization_config.modules_to_not_convert)"));
    }
    KVCC_ASSIGN_OR_RETURN(auto parts, FusedQkv(i, n, x));
    q = parts[0];
    k = parts[1];
    v = parts[2];
  } else {
    KVCC_ASSIGN_OR_RETURN(Value* q_, Linear(p + "q_proj", x, n.q, H * d, hidden, c_.qkv_bias, i,
                        absl::StrCat(q_out, ", ", hid)));
    KVCC_ASSIGN_OR_RETURN(Value* k_, Linear(p + "k_proj", x, n.k, KVH * d, hidden, c_.qkv_bias, i,
                        absl::StrCat(kv_out, ", ", hid)));
    KVCC_ASSIGN_OR_RETURN(Value* v_, Linear(p + "v_proj", x, n.v, KVH * d, hidden, c_.qkv_bias, i,
                        absl::StrCat(kv_out, ", ", hid)));
    q = q_;
    k = k_;
    v = v_;
  }
  KVCC_ASSIGN_OR_RETURN(Value* q_rot, Node(ir::op::kRotary, p + "q_rotary", {q, positions}, Rotary(H)));
  KVCC_ASSIGN_OR_RETURN(Value* k_rot, Node(ir::op::kRotary, p + "k_rotary", {k, positions}, Rotary(KVH)));
  KVCC_ASSIGN_OR_RETURN(Value* cache, Node(ir::op::kKvCacheWrite, p + "kv_cache_write", {k_rot, v},
                       {{"layer", i},
                        {"kv_heads", KVH},
                        {"head_dim", d},
                        {"cache_dtype", std::string("f16")},
                        {"kv_scheme", std::string("none")}}));
  KVCC_ASSIGN_OR_RETURN(Value* att, Node(ir::op::kAttention, p + "attention", {q_rot, cache},
                     {{"layer", i},
                      {"heads", H},
                      {"kv_heads", KVH},
                      {"head_dim", d},
                      {"causal", int64_t{1}},
                      {"scale", 1.0 / std::sqrt(static_cast<double>(d))}}));
  KVCC_ASSIGN_OR_RETURN(Value* o, Linear(p + "o_proj", att, n.o, hidden, H * d, c_.o_bias, i,
                     absl::StrCat(hid, ", ", q_out)));
  KVCC_ASSIGN_OR_RETURN(Value* h1, Node(ir::op::kAdd, p + "attn_residual", {h, o}));

  KVCC_ASSIGN_OR_RETURN(Value* ln2w, Weight(n.post_norm + ".weight", {hidden}, i, hid));
  KVCC_ASSIGN_OR_RETURN(Value* y, Node(ir::op::kRmsNorm, p + "post_attention_layernorm", {h1, ln2w},
                   {{"eps", c_.rms_norm_eps}}));
  KVCC_ASSIGN_OR_RETURN(Value* gate, Linear(p + "gate_proj", y, n.gate, inter, hidden, false, i,
                        absl::StrCat(mlp, ", ", hid)));
  KVCC_ASSIGN_OR_RETURN(Value* up, Linear(p + "up_proj", y, n.up, inter, hidden, false, i,
                      absl::StrCat(mlp, ", ", hid)));
  KVCC_ASSIGN_OR_RETURN(Value* act, Node(ir::op::kSiluMul, p + "silu_mul", {gate, up}));
  KVCC_ASSIGN_OR_RETURN(Value* down, Linear(p + "down_proj", act, n.down, hidden, inter, false, i,
                        absl::StrCat(hid, ", ", mlp)));
  return Node(ir::op::kAdd, p + "mlp_residual", {h1, down});
}

// Extra tensors are ignored (rotary inv_freq buffers and the like), but a layer beyond
// num_hidden_layers means config and weights disagree: importing a truncated model would be
// silent garbage.
absl::Status CheckNoExtraLayers(const ir::ModelConfig& c, const Checkpoint& ckpt,
                                const std::string& config_file) {
  const std::string prefix = "model.layers.";
  for (const std::string& name : ckpt.Names()) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    size_t end = name.find('.', prefix.size());
    int64_t layer = 0;
    if (end == std::string::npos ||
        !absl::SimpleAtoi(absl::string_view(name).substr(prefix.size(), end - prefix.size()),
                          &layer)) {
      continue;
    }
    if (layer >= c.num_layers) {
      auto t = ckpt.Get(name);
      return absl::InvalidArgumentError(absl::StrCat(
          t.ok() ? t->file : ckpt.dir(), ": tensor '", name, "' belongs to layer ", layer,
          " but ", config_file, " has num_hidden_layers ", c.num_layers));
    }
  }
  return absl::OkStatus();
}

absl::Status Importer::Run() {
  KVCC_RETURN_IF_ERROR(CheckNoExtraLayers(c_, ckpt_, config_file_));
  m_->config = c_;
  const ModelNames names = NamesOf(c_);
  KVCC_ASSIGN_OR_RETURN(auto ids, g_.AddInput("input_ids", {DType::kI32, {ir::kDynamic}}));
  KVCC_ASSIGN_OR_RETURN(auto positions, g_.AddInput("positions", {DType::kI32, {ir::kDynamic}}));

  const std::string vocab_hidden =
      absl::StrCat("vocab_size ", c_.vocab_size, ", hidden_size ", c_.hidden_size);
  KVCC_ASSIGN_OR_RETURN(auto embed,
                        Weight(names.embed, {c_.vocab_size, c_.hidden_size}, -1, vocab_hidden));
  // The dtype the checkpoint actually stores (config.json's torch_dtype may be absent).
  m_->config.weight_dtype = embed->type.dtype;
  auto h = Node(ir::op::kEmbedding, "embed_tokens", {ids, embed});
  if (!h.ok()) return h.status();
  for (int64_t i = 0; i < c_.num_layers; ++i) {
    h = Layer(i, *h, positions);
    if (!h.ok()) return h.status();
  }
  auto norm_w =
      Weight(names.norm, {c_.hidden_size}, -1, absl::StrCat("hidden_size ", c_.hidden_size));
  if (!norm_w.ok()) return norm_w.status();
  KVCC_ASSIGN_OR_RETURN(auto x,
                        Node(ir::op::kRmsNorm, "norm", {*h, *norm_w}, {{"eps", c_.rms_norm_eps}}));
  Value* out_w = embed;
  if (!c_.tie_embeddings) {
    KVCC_ASSIGN_OR_RETURN(auto w, Weight(names.lm_head, {c_.vocab_size, c_.hidden_size}, -1,
                                         vocab_hidden + "; tie_word_embeddings is false"));
    out_w = w;
  }
  KVCC_ASSIGN_OR_RETURN(auto logits, Node(ir::op::kLmHead, "logits", {x, out_w}));
  g_.AddOutput(logits);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ir::Module>> BuildHfModule(const ir::ModelConfig& config,
                                                          const Checkpoint& checkpoint,
                                                          const std::string& config_file,
                                                          const QuantizationConfig& quant) {
  auto module = std::make_unique<ir::Module>();
  Importer importer(config, checkpoint, config_file, quant, module.get());
  KVCC_RETURN_IF_ERROR(importer.Run());
  module->metadata["source"] = checkpoint.dir();
  if (auto s = ir::Verify(*module); !s.ok()) {
    return absl::InternalError(absl::StrCat(checkpoint.dir(), ": imported graph does not verify: ",
                                            s.message()));
  }
  return module;
}

absl::StatusOr<std::unique_ptr<ir::Module>> ImportHfCheckpoint(const std::string& dir,
                                                               ModelFormat format) {
  KVCC_ASSIGN_OR_RETURN(auto config, LoadHfConfig(dir));
  KVCC_ASSIGN_OR_RETURN(QuantizationConfig quant, LoadQuantizationConfig(dir, format));
  KVCC_ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::Open(dir));
  const std::string config_file = (std::filesystem::path(dir) / kHfConfigFileName).string();
  KVCC_ASSIGN_OR_RETURN(auto module, BuildHfModule(config, *checkpoint, config_file, quant));
  if (quant.quantized()) module->metadata["model_format"] = std::string(ModelFormatName(quant.format));
  return module;
}

}  // namespace kvcc::frontend
