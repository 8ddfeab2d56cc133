// libFuzzer target for config.json and generation_config.json parsing (frontend/hf_config.cc,
// frontend/generation_config.cc, frontend/quantization_config.cc): the input is the file's
// text, given to all three parsers. Any
// crash or sanitizer report is a finding, and so is an error without the file's name, an
// accepted config whose shapes or rope settings the runtime would refuse, or one that does not
// survive the artifact's metadata round trip.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "frontend/generation_config.h"
#include "frontend/hf_config.h"
#include "frontend/quantization_config.h"

namespace {

constexpr char kFile[] = "fuzz/config.json";

void Die(const std::string& what) {
  std::fprintf(stderr, "hf_config_fuzzer: %s\n", what.c_str());
  std::abort();
}

void CheckConfig(absl::string_view text) {
  auto c = kvcc::frontend::ParseHfConfig(text, kFile);
  if (!c.ok()) {
    if (std::string(c.status().message()).find(kFile) == std::string::npos) {
      Die("error without the file name: " + std::string(c.status().message()));
    }
    return;
  }
  if (c->hidden_size <= 0 || c->num_layers <= 0 || c->num_heads <= 0 || c->num_kv_heads <= 0 ||
      c->num_heads % c->num_kv_heads != 0 || c->head_dim <= 0 || c->head_dim % 2 != 0 ||
      c->vocab_size <= 0 || c->max_position <= 0 || c->intermediate_size <= 0) {
    Die("accepted a shape the runtime cannot run: " + c->ToJson(-1));
  }
  const kvcc::ir::RopeScaling& s = c->rope_scaling;
  if (!(c->rope_theta > 0) || !(s.factor > 0) ||
      (s.type != "none" && s.type != "linear" && s.type != "dynamic" && s.type != "llama3") ||
      (s.type == "llama3" && !(s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0 &&
                               s.original_max_position > 0))) {
    Die("accepted rope settings the rotary kernels refuse: " + c->ToJson(-1));
  }
  for (int64_t id : c->eos_token_ids) {
    if (id < 0 || id >= c->vocab_size) Die("eos id outside the vocabulary: " + c->ToJson(-1));
  }
  for (const std::string& w : c->warnings) {
    if (w.find(kFile) == std::string::npos) Die("warning without the file name: " + w);
  }
  auto back = kvcc::ir::ModelConfig::FromJson(c->ToJson());
  if (!back.ok() || back->ToJson() != c->ToJson()) Die("metadata round trip: " + c->ToJson(-1));
}

void CheckGenerationConfig(absl::string_view text) {
  constexpr int64_t kVocab = 1000;
  auto g = kvcc::frontend::ParseGenerationConfig(text, kFile, kVocab);
  if (!g.ok()) {
    if (std::string(g.status().message()).find(kFile) == std::string::npos) {
      Die("generation config error without the file name");
    }
    return;
  }
  for (int64_t id : g->eos_token_ids) {
    if (id < 0 || id >= kVocab) Die("generation eos id outside the vocabulary");
  }
  if ((g->temperature && !(*g->temperature >= 0)) || (g->top_k && *g->top_k < 0) ||
      (g->top_p && !(*g->top_p > 0 && *g->top_p <= 1)) ||
      (g->repetition_penalty && !(*g->repetition_penalty > 0))) {
    Die("accepted sampling defaults the sampler refuses");
  }
}

// A quantized config the importer accepts must describe a packing it can read.
void CheckQuantizationConfig(absl::string_view text) {
  auto j = kvcc::ir::ParseJson(text, kFile);
  if (!j.ok() || !j->is_object()) return;
  auto q = kvcc::frontend::ParseQuantizationConfig(*j, kFile);
  if (!q.ok()) {
    if (std::string(q.status().message()).find(kFile) == std::string::npos) {
      Die("quantization_config error without the file name");
    }
    return;
  }
  if (q->quantized() &&
      (q->bits != 4 || q->group_size < 0 || (q->group_size > 0 && q->group_size % 8 != 0))) {
    Die("accepted a 4-bit packing the importer cannot read");
  }
  for (const std::string& m : q->modules_to_not_convert) {
    if (m.empty()) Die("an empty modules_to_not_convert entry would skip every linear");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  CheckConfig(text);
  CheckGenerationConfig(text);
  CheckQuantizationConfig(text);
  return 0;
}
