#include "testing/synth.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <new>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ir/atomic_file.h"
#include "ir/status_macros.h"
#include "testing/safetensors_writer.h"
#include "ir/mapped_file.h"
#include "ir/half.h"
#include <nlohmann/json.hpp>

namespace kvcc::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// ---- Config reading: only what decides tensor names and shapes. ----

// A config value for an error message. Structured values are only named, never dumped: dump()
// recurses, and a hostile config could nest deep enough to overflow the stack.
std::string Describe(const Json& v) {
  return v.is_primitive() ? v.dump() : std::string("a JSON ") + v.type_name();
}

class ConfigReader {
 public:
  ConfigReader(const Json& j, absl::string_view file) : j_(j), file_(file) {}

  // A present, non-null key.
  bool Has(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }

  absl::StatusOr<int64_t> PositiveInt(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_, ": missing required key \"", key, "\""));
    }
    if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          file_, ": \"", key, "\" must be a positive integer, got ", Describe(*it)));
    }
    return it->get<int64_t>();
  }

  absl::StatusOr<int64_t> PositiveIntOr(const char* key, int64_t fallback) const {
    if (!Has(key)) return fallback;
    return PositiveInt(key);
  }

  absl::StatusOr<bool> BoolOr(const char* key, bool fallback) const {
    if (!Has(key)) return fallback;
    const Json& v = j_.at(key);
    if (!v.is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_, ": \"", key, "\" must be true or false, got ", Describe(v)));
    }
    return v.get<bool>();
  }

  absl::string_view file() const { return file_; }

 private:
  const Json& j_;
  absl::string_view file_;
};

struct Dims {
  int64_t hidden, layers, heads, kv_heads, head_dim, inter, vocab;
  bool tied;
};

enum class Family { kLlamaNames, kInternLM2Names };

struct ArchInfo {
  const char* name;
  Family family;
};
constexpr ArchInfo kArchs[] = {
    {"LlamaForCausalLM", Family::kLlamaNames},
    {"MistralForCausalLM", Family::kLlamaNames},
    {"Qwen2ForCausalLM", Family::kLlamaNames},
    {"InternLMForCausalLM", Family::kLlamaNames},
    {"InternLM2ForCausalLM", Family::kInternLM2Names},
};

absl::StatusOr<std::string> Architecture(const Json& j, absl::string_view file) {
  auto it = j.find("architectures");
  if (it == j.end() || !it->is_array() || it->size() != 1 || !(*it)[0].is_string()) {
    std::string got = "nothing";
    if (it != j.end()) {
      got = it->is_array() ? absl::StrCat("a list of ", it->size()) : Describe(*it);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": \"architectures\" must be a list with one architecture name, got ", got));
  }
  std::string arch = (*it)[0].get<std::string>();
  for (const ArchInfo& a : kArchs) {
    if (arch == a.name) return arch;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      file, ": \"architectures\" value \"", arch,
      "\" is not supported; synth knows LlamaForCausalLM, MistralForCausalLM, "
      "Qwen2ForCausalLM, InternLM2ForCausalLM, InternLMForCausalLM"));
}

absl::StatusOr<Dims> ReadDims(const ConfigReader& c, const std::string& arch) {
  Dims d;
  KVCC_ASSIGN_OR_RETURN(d.hidden, c.PositiveInt("hidden_size"));
  KVCC_ASSIGN_OR_RETURN(d.layers, c.PositiveInt("num_hidden_layers"));
  KVCC_ASSIGN_OR_RETURN(d.heads, c.PositiveInt("num_attention_heads"));
  KVCC_ASSIGN_OR_RETURN(d.inter, c.PositiveInt("intermediate_size"));
  KVCC_ASSIGN_OR_RETURN(d.vocab, c.PositiveInt("vocab_size"));
  // InternLM (v1) has no GQA: its modeling code ignores num_key_value_heads.
  if (arch == "InternLMForCausalLM") {
    d.kv_heads = d.heads;
  } else {
    KVCC_ASSIGN_OR_RETURN(d.kv_heads, c.PositiveIntOr("num_key_value_heads", d.heads));
  }
  // Llama, Mistral and Qwen2 honour an explicit head_dim; the InternLMs derive it.
  const bool explicit_head_dim = arch == "LlamaForCausalLM" || arch == "MistralForCausalLM" ||
                                 arch == "Qwen2ForCausalLM";
  if (explicit_head_dim && c.Has("head_dim")) {
    KVCC_ASSIGN_OR_RETURN(d.head_dim, c.PositiveInt("head_dim"));
  } else {
    if (d.hidden % d.heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          c.file(), ": \"hidden_size\" ", d.hidden, " is not divisible by \"num_attention_heads\" ",
          d.heads, " and no \"head_dim\" is given"));
    }
    d.head_dim = d.hidden / d.heads;
  }
  // Bounds that no real decoder approaches; past them the plan or its buffers would not fit
  // in memory, and the products below could overflow.
  constexpr int64_t kMaxDim = int64_t{1} << 24, kMaxLayers = 4096;
  for (auto [key, value] : {std::pair<const char*, int64_t>{"hidden_size", d.hidden},
                            {"num_attention_heads", d.heads},
                            {"num_key_value_heads", d.kv_heads},
                            {"head_dim", d.head_dim},
                            {"intermediate_size", d.inter},
                            {"vocab_size", d.vocab}}) {
    if (value > kMaxDim) {
      return absl::InvalidArgumentError(absl::StrCat(c.file(), ": \"", key, "\" ", value,
                                                     " is beyond synth's limit of ", kMaxDim));
    }
  }
  if (d.layers > kMaxLayers) {
    return absl::InvalidArgumentError(absl::StrCat(c.file(), ": \"num_hidden_layers\" ",
                                                   d.layers, " is beyond synth's limit of ",
                                                   kMaxLayers));
  }
  if (d.heads % d.kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        c.file(), ": \"num_attention_heads\" ", d.heads,
        " is not a multiple of \"num_key_value_heads\" ", d.kv_heads));
  }
  KVCC_ASSIGN_OR_RETURN(d.tied, c.BoolOr("tie_word_embeddings", false));
  return d;
}

// ---- Tensor plan ----

class PlanBuilder {
 public:
  explicit PlanBuilder(std::vector<SynthTensor>* out) : out_(out) {}
  // `seed` names the tensor whose random stream is used (the LLaMA name for InternLM2).
  void Linear(const std::string& name, int64_t out, int64_t in, bool bias,
              const std::string& seed = "") {
    out_->push_back({name + ".weight", {out, in}, 0.0f, LinearStd(in),
                     seed.empty() ? "" : seed + ".weight", std::nullopt});
    // Biases are small but far from zero, so a dropped or misplaced bias changes the output.
    if (bias) {
      out_->push_back({name + ".bias", {out}, 0.0f, kBiasStd,
                       seed.empty() ? "" : seed + ".bias", std::nullopt});
    }
  }
  // InternLM2's wqkv from the q/k/v projections named by `prefix` + q_proj etc.
  void FusedQkv(const std::string& name, const std::string& prefix, const Dims& d, bool bias) {
    const int64_t rows = (d.heads + 2 * d.kv_heads) * d.head_dim;
    auto fused = [&](const char* suffix) {
      return SynthTensor::FusedQkv{prefix + "q_proj" + suffix, prefix + "k_proj" + suffix,
                                   prefix + "v_proj" + suffix, d.kv_heads,
                                   d.heads / d.kv_heads, d.head_dim};
    };
    out_->push_back({name + ".weight", {rows, d.hidden}, 0.0f, LinearStd(d.hidden), "",
                     fused(".weight")});
    if (bias) out_->push_back({name + ".bias", {rows}, 0.0f, kBiasStd, "", fused(".bias")});
  }
  void Norm(const std::string& name, int64_t size, const std::string& seed = "") {
    out_->push_back({name + ".weight", {size}, 1.0f, 0.1f, seed.empty() ? "" : seed + ".weight",
                     std::nullopt});
  }
  void Embedding(const std::string& name, int64_t vocab, int64_t hidden, float stddev,
                 const std::string& seed = "") {
    out_->push_back({name + ".weight", {vocab, hidden}, 0.0f, stddev,
                     seed.empty() ? "" : seed + ".weight", std::nullopt});
  }

 private:
  static constexpr float kBiasStd = 0.1f;
  static float LinearStd(int64_t fan_in) {
    return static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
  }
  std::vector<SynthTensor>* out_;
};

}  // namespace

absl::StatusOr<SynthPlan> PlanSynthCheckpoint(absl::string_view config_json,
                                              absl::string_view file) {
  Json j = Json::parse(config_json.begin(), config_json.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  }
  SynthPlan plan;
  KVCC_ASSIGN_OR_RETURN(plan.architecture, Architecture(j, file));
  const std::string& arch = plan.architecture;
  ConfigReader c(j, file);
  if (auto it = j.find("torch_dtype"); it != j.end() && it->is_string()) {
    const std::string name = it->get<std::string>();
    if (name == "bfloat16") plan.config_dtype = ir::DType::kBF16;
    if (name == "float32") plan.config_dtype = ir::DType::kF32;
  }
  Dims d;
  KVCC_ASSIGN_OR_RETURN(d, ReadDims(c, arch));

  // Biases exactly as each modeling file declares them.
  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  if (arch == "LlamaForCausalLM") {
    KVCC_ASSIGN_OR_RETURN(qkv_bias, c.BoolOr("attention_bias", false));
    o_bias = qkv_bias;
    KVCC_ASSIGN_OR_RETURN(mlp_bias, c.BoolOr("mlp_bias", false));
  } else if (arch == "Qwen2ForCausalLM") {
    qkv_bias = true;
  } else if (arch == "InternLMForCausalLM" || arch == "InternLM2ForCausalLM") {
    // Both configuration classes default `bias` to true.
    KVCC_ASSIGN_OR_RETURN(qkv_bias, c.BoolOr("bias", true));
    o_bias = qkv_bias;
  }

  const int64_t q_rows = d.heads * d.head_dim, kv_rows = d.kv_heads * d.head_dim;
  // Target a logit standard deviation of about 2 from a unit-RMS final hidden state.
  const float head_std = static_cast<float>(2.0 / std::sqrt(static_cast<double>(d.hidden)));
  PlanBuilder b(&plan.tensors);
  if (arch == "InternLM2ForCausalLM") {
    b.Embedding("model.tok_embeddings", d.vocab, d.hidden, d.tied ? head_std : 1.0f,
                "model.embed_tokens");
    for (int64_t i = 0; i < d.layers; ++i) {
      const std::string p = absl::StrCat("model.layers.", i, ".");
      b.Norm(p + "attention_norm", d.hidden, p + "input_layernorm");
      b.FusedQkv(p + "attention.wqkv", p + "self_attn.", d, qkv_bias);
      b.Linear(p + "attention.wo", d.hidden, q_rows, o_bias, p + "self_attn.o_proj");
      b.Norm(p + "ffn_norm", d.hidden, p + "post_attention_layernorm");
      b.Linear(p + "feed_forward.w1", d.inter, d.hidden, false, p + "mlp.gate_proj");
      b.Linear(p + "feed_forward.w3", d.inter, d.hidden, false, p + "mlp.up_proj");
      b.Linear(p + "feed_forward.w2", d.hidden, d.inter, false, p + "mlp.down_proj");
    }
    b.Norm("model.norm", d.hidden);
    if (!d.tied) b.Embedding("output", d.vocab, d.hidden, head_std, "lm_head");
  } else {
    b.Embedding("model.embed_tokens", d.vocab, d.hidden, d.tied ? head_std : 1.0f);
    for (int64_t i = 0; i < d.layers; ++i) {
      const std::string p = absl::StrCat("model.layers.", i, ".");
      b.Norm(p + "input_layernorm", d.hidden);
      b.Linear(p + "self_attn.q_proj", q_rows, d.hidden, qkv_bias);
      b.Linear(p + "self_attn.k_proj", kv_rows, d.hidden, qkv_bias);
      b.Linear(p + "self_attn.v_proj", kv_rows, d.hidden, qkv_bias);
      b.Linear(p + "self_attn.o_proj", d.hidden, q_rows, o_bias);
      b.Norm(p + "post_attention_layernorm", d.hidden);
      b.Linear(p + "mlp.gate_proj", d.inter, d.hidden, mlp_bias);
      b.Linear(p + "mlp.up_proj", d.inter, d.hidden, mlp_bias);
      b.Linear(p + "mlp.down_proj", d.hidden, d.inter, mlp_bias);
    }
    b.Norm("model.norm", d.hidden);
    if (!d.tied) b.Embedding("lm_head", d.vocab, d.hidden, head_std);
  }
  // One tensor is generated in memory at a time; refuse what cannot be (2^36 elements is
  // 128 GiB of f16, far past any real model's largest matrix).
  for (const SynthTensor& t : plan.tensors) {
    const unsigned __int128 n = static_cast<unsigned __int128>(t.shape[0]) *
                                static_cast<uint64_t>(t.shape.size() > 1 ? t.shape[1] : 1);
    if (n > (static_cast<unsigned __int128>(1) << 36)) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor '", t.name, "' would have ", static_cast<uint64_t>(n),
          " elements, beyond synth's limit of 2^36"));
    }
  }
  return plan;
}

// ---- Random values ----

namespace {

constexpr uint64_t kBlockElements = uint64_t{1} << 16;

inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// xoshiro256**: fast, and every output bit is usable (both halves feed Box-Muller).
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (uint64_t& w : s_) w = SplitMix64(seed);
  }
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

 private:
  uint64_t s_[4];
};

uint64_t HashName(absl::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (char c : name) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

template <typename Store>
void FillBlock(uint64_t block_seed, float mean, float stddev, uint64_t count, Store store) {
  Xoshiro256 rng(block_seed);
  constexpr float kTwoPi = 6.283185307179586f;
  constexpr float kInv32 = 1.0f / 4294967296.0f;
  for (uint64_t i = 0; i < count; i += 2) {
    const uint64_t r = rng.Next();
    // u1 in (0, 1] keeps log finite; u2 in [0, 1).
    const float u1 = (static_cast<float>(r >> 32) + 1.0f) * kInv32;
    const float u2 = static_cast<float>(r & 0xffffffffu) * kInv32;
    const float radius = std::sqrt(-2.0f * std::log(std::min(u1, 1.0f)));
    const float angle = kTwoPi * u2;
    store(i, mean + stddev * radius * std::cos(angle));
    if (i + 1 < count) store(i + 1, mean + stddev * radius * std::sin(angle));
  }
}

void FillRange(const SynthTensor& t, uint64_t tensor_seed, ir::DType dtype, uint8_t* out,
               uint64_t count, uint64_t block) {
  const uint64_t first = block * kBlockElements;
  const uint64_t n = std::min(kBlockElements, count - first);
  uint64_t mix = tensor_seed ^ (block * 0xd1b54a32d192ed03ull);
  const uint64_t block_seed = SplitMix64(mix);
  switch (dtype) {
    case ir::DType::kF16: {
      uint8_t* base = out + first * 2;
      FillBlock(block_seed, t.mean, t.stddev, n, [base](uint64_t i, float v) {
        const uint16_t h = ir::FloatToHalf(v);
        std::memcpy(base + i * 2, &h, 2);
      });
      break;
    }
    case ir::DType::kBF16: {
      uint8_t* base = out + first * 2;
      FillBlock(block_seed, t.mean, t.stddev, n, [base](uint64_t i, float v) {
        const uint16_t h = ir::FloatToBf16(v);
        std::memcpy(base + i * 2, &h, 2);
      });
      break;
    }
    default: {  // f32, checked by the caller
      uint8_t* base = out + first * 4;
      FillBlock(block_seed, t.mean, t.stddev, n,
                [base](uint64_t i, float v) { std::memcpy(base + i * 4, &v, 4); });
      break;
    }
  }
}

absl::Status CheckDType(ir::DType dtype) {
  if (dtype == ir::DType::kF16 || dtype == ir::DType::kBF16 || dtype == ir::DType::kF32) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "synth writes f16, bf16 or f32 weights, not ", ir::DTypeName(dtype)));
}

const char* TorchDTypeName(ir::DType dtype) {
  switch (dtype) {
    case ir::DType::kBF16: return "bfloat16";
    case ir::DType::kF32: return "float32";
    default: return "float16";
  }
}

uint64_t ElementCount(const SynthTensor& t) {
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

}  // namespace

namespace {

// Draws a plain (unfused) tensor's values from the stream of `seed_name`.
void FillPlain(const SynthTensor& tensor, const std::string& seed_name, uint64_t seed,
               ir::DType dtype, uint8_t* out, int threads) {
  const uint64_t count = ElementCount(tensor);
  uint64_t mix = seed ^ HashName(seed_name);
  const uint64_t tensor_seed = SplitMix64(mix);
  const uint64_t blocks = (count + kBlockElements - 1) / kBlockElements;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(threads), blocks));
  if (threads <= 1) {
    for (uint64_t b = 0; b < blocks; ++b) FillRange(tensor, tensor_seed, dtype, out, count, b);
    return;
  }
  std::atomic<uint64_t> next{0};
  auto worker = [&]() {
    for (uint64_t b = next++; b < blocks; b = next++) {
      FillRange(tensor, tensor_seed, dtype, out, count, b);
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

// InternLM2's wqkv: draws the q, k and v parts as the separate tensors they stand for, then
// interleaves their head-rows per KV group.
void FillFused(const SynthTensor& tensor, uint64_t seed, ir::DType dtype, uint8_t* out,
               int threads) {
  const SynthTensor::FusedQkv& f = *tensor.fused;
  const int64_t cols = tensor.shape.size() == 2 ? tensor.shape[1] : 1;
  const uint64_t head_bytes =
      static_cast<uint64_t>(ir::DTypeBytes(dtype, f.head_dim * cols));
  auto part = [&](const std::string& seed_name, int64_t heads) {
    SynthTensor p = tensor;
    p.fused.reset();
    p.shape[0] = heads * f.head_dim;
    std::vector<uint8_t> bytes(head_bytes * static_cast<uint64_t>(heads));
    FillPlain(p, seed_name, seed, dtype, bytes.data(), threads);
    return bytes;
  };
  const std::vector<uint8_t> q = part(f.q_seed_name, f.kv_heads * f.group);
  const std::vector<uint8_t> k = part(f.k_seed_name, f.kv_heads);
  const std::vector<uint8_t> v = part(f.v_seed_name, f.kv_heads);
  uint8_t* dst = out;
  for (int64_t g = 0; g < f.kv_heads; ++g) {
    for (int64_t j = 0; j < f.group; ++j) {
      std::memcpy(dst, q.data() + (g * f.group + j) * head_bytes, head_bytes);
      dst += head_bytes;
    }
    std::memcpy(dst, k.data() + g * head_bytes, head_bytes);
    dst += head_bytes;
    std::memcpy(dst, v.data() + g * head_bytes, head_bytes);
    dst += head_bytes;
  }
}

}  // namespace

absl::Status FillSynthTensor(const SynthTensor& tensor, uint64_t seed, ir::DType dtype,
                             uint8_t* out, uint64_t out_size, int threads) {
  KVCC_RETURN_IF_ERROR(CheckDType(dtype));
  const uint64_t count = ElementCount(tensor);
  const uint64_t bytes = static_cast<uint64_t>(ir::DTypeBytes(dtype, static_cast<int64_t>(count)));
  if (bytes != out_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", tensor.name, "' needs ", bytes, " bytes, buffer has ", out_size));
  }
  if (tensor.fused) {
    const SynthTensor::FusedQkv& f = *tensor.fused;
    if (tensor.shape.empty() || f.kv_heads <= 0 || f.group <= 0 || f.head_dim <= 0 ||
        tensor.shape[0] != f.kv_heads * (f.group + 2) * f.head_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", tensor.name, "': fused q/k/v rows ", tensor.shape.empty() ? 0 : tensor.shape[0],
          " do not match ", f.kv_heads, " kv heads x (", f.group, " + 2) x head_dim ",
          f.head_dim));
    }
    FillFused(tensor, seed, dtype, out, threads);
    return absl::OkStatus();
  }
  FillPlain(tensor, tensor.seed_name.empty() ? tensor.name : tensor.seed_name, seed, dtype, out,
            threads);
  return absl::OkStatus();
}

// ---- Checkpoint writing ----

namespace {

bool IsShardFileName(const std::string& name) {
  int a = 0, b = 0;
  char tail[32] = {0};
  // model-00001-of-00003.safetensors
  return std::sscanf(name.c_str(), "model-%5d-of-%5d.%31s", &a, &b, tail) == 3 &&
         std::string(tail) == "safetensors" && name.size() == 32;
}

}  // namespace

absl::StatusOr<SynthResult> SynthesizeCheckpoint(const std::string& config_path,
                                                 const std::string& out_dir,
                                                 const SynthOptions& options) {
  if (options.dtype) {
    KVCC_RETURN_IF_ERROR(CheckDType(*options.dtype));
  }
  if (options.shard_bytes == 0) {
    return absl::InvalidArgumentError("shard size must be positive");
  }
  KVCC_ASSIGN_OR_RETURN(auto mapped, ir::MappedFile::Open(config_path));
  const std::string text(reinterpret_cast<const char*>(mapped->data()), mapped->size());
  SynthResult result;
  KVCC_ASSIGN_OR_RETURN(result.plan, PlanSynthCheckpoint(text, config_path));
  result.dtype = options.dtype.value_or(result.plan.config_dtype);
  const ir::DType dtype = result.dtype;
  Json config = Json::parse(text, nullptr, /*allow_exceptions=*/false);  // valid: planned above
  config["torch_dtype"] = TorchDTypeName(dtype);

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir)) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create output directory ", out_dir,
                                                    ec ? ": " + ec.message() : ""));
  }
  const fs::path root(out_dir);

  // Group tensors into shards, greedily in model order.
  const std::vector<SynthTensor>& tensors = result.plan.tensors;
  std::vector<uint64_t> sizes;
  for (const SynthTensor& t : tensors) {
    sizes.push_back(static_cast<uint64_t>(
        ir::DTypeBytes(dtype, static_cast<int64_t>(ElementCount(t)))));
    result.weight_bytes += sizes.back();
  }
  std::vector<std::vector<size_t>> shards;
  uint64_t current = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (shards.empty() || (current > 0 && current + sizes[i] > options.shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(i);
    current += sizes[i];
  }
  const bool sharded = shards.size() > 1;

  Json weight_map = Json::object();
  std::vector<uint8_t> buffer;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name =
        sharded ? absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards.size())
                : std::string("model.safetensors");
    const std::string path = (root / name).string();
    std::vector<SafetensorsTensorSpec> specs;
    for (size_t i : shards[s]) {
      specs.push_back({tensors[i].name, dtype, tensors[i].shape});
      weight_map[tensors[i].name] = name;
    }
    KVCC_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(path, specs, {{"format", "pt"}}));
    for (size_t i : shards[s]) {
      try {
        buffer.resize(sizes[i]);
      } catch (const std::bad_alloc&) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "out of memory generating tensor '", tensors[i].name, "' (", sizes[i], " bytes)"));
      }
      if (auto st = FillSynthTensor(tensors[i], options.seed, dtype, buffer.data(),
                                    buffer.size(), options.threads);
          !st.ok()) {
        return st;
      }
      KVCC_RETURN_IF_ERROR(writer->Append(buffer.data(), buffer.size()));
    }
    KVCC_RETURN_IF_ERROR(writer->Finish());
    result.files.push_back(path);
  }

  // Weight files of an earlier run would make the directory ambiguous (an old index shadows a
  // new model.safetensors, or stray shards linger).
  std::set<std::string> written;
  for (const std::string& f : result.files) written.insert(fs::path(f).filename().string());
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    const bool ours = name == "model.safetensors" || IsShardFileName(name) ||
                      (!sharded && name == "model.safetensors.index.json");
    if (ours && written.count(name) == 0) fs::remove(entry.path(), ec);
  }
  if (sharded) {
    Json index;
    index["metadata"] = {{"total_size", result.weight_bytes}};
    index["weight_map"] = std::move(weight_map);
    if (auto st = ir::WriteFileAtomically((root / "model.safetensors.index.json").string(),
                                      index.dump(2) + "\n");
        !st.ok()) {
      return st;
    }
  }
  if (auto st = ir::WriteFileAtomically((root / "config.json").string(), config.dump(2) + "\n");
      !st.ok()) {
    return st;
  }
  return result;
}

}  // namespace kvcc::testing
