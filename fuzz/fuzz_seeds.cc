// Writes the fuzzers' seed corpora from valid files:
//   fuzz_seeds OUT_DIR [FILE.safetensors...]
// OUT_DIR/onnx_reader/ gets the fuzz artifact's model.onnx, OUT_DIR/artifact_manifest/ its
// model.manifest.json, OUT_DIR/kv_params/ a kv_params.json calibrated (from synthetic K/V) for
// it; OUT_DIR/safetensors_header/ gets, for each checkpoint given, its data-section size and
// header in the fuzzer's input format, plus a small hand-written header. OUT_DIR/tokenizer_json/
// gets tests/data/tokenizers/*.json and models/stories260K/tokenizer.json, OUT_DIR/sentencepiece/
// that model's tokenizer.model.
// OUT_DIR/hf_config/ gets the golden configs of tests/data/configs and the generation_config.json
// files of models/ and a sampling one.
// OUT_DIR/openai_request/ gets request bodies of both endpoints (first byte '0':
// completions, '1': chat).
// OUT_DIR/chat_template/ gets the published chat templates of tests/data/chat_templates/.
// OUT_DIR/kernel_manifest/, tuning/ and compiled_manifest/ get a compiled artifact's
// kernels/manifest.json, tuning.json and kvcc_artifact.json as kvcc compile writes them.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_artifact.h"
#include "ir/artifact_manifest.h"
#include "ir/onnx_io.h"
#include "codegen/kernel_store_manifest.h"
#include "passes/kv_params.h"
#include "pipeline/compiled_manifest.h"
#include "runtime/cuda/kernel_tuning.h"

namespace {

namespace fs = std::filesystem;

std::string LittleEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

bool WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  return static_cast<bool>(out);
}

// A safetensors file as fuzzer input: the header with the size of the data behind it.
bool HeaderSeed(const std::string& checkpoint, const fs::path& out) {
  std::ifstream in(checkpoint, std::ios::binary);
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (file.size() < 8) return false;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(file[i]);
  if (header_len > file.size() - 8) return false;
  return WriteFile(out, LittleEndian64(file.size() - 8 - header_len) + file.substr(8, header_len));
}

// The manifests and tuning file of a compiled two-kernel artifact, as kvcc compile writes them.
bool CompiledArtifactSeeds(const fs::path& out) {
  kvcc::codegen::KernelManifest km;
  km.nvrtc_version = "13.0";
  for (const char* arch : {"sm_90a", "sm_80"}) {
    kvcc::codegen::StoredKernel k;
    k.key = std::string(63, 'a') + arch[3];
    k.spec = std::string("ops threads=256 arch=") + arch;
    k.arch = arch;
    k.entry = "kvcc_cast_f32_f16";
    k.cubin_file = std::string("kvcc_ops_") + arch + ".cubin";
    k.log_file = std::string("kvcc_ops_") + arch + ".log";
    k.cubin_sha256 = std::string(64, '0');
    k.log_sha256 = std::string(64, 'f');
    k.registers = 12;
    km.kernels.push_back(k);
  }
  kvcc::runtime::KernelTuning t;
  t.device = "NVIDIA H200";
  t.autotuned = true;
  kvcc::runtime::DecodeTuning d;
  d.kernel = "heads=8 kv_heads=4 head_dim=8 block_size=64 cache=i8/per_layer io=f32";
  d.threads = 128;
  d.vec_bytes = 8;
  d.unroll = 4;
  d.buckets = {{{1, 512, 1}, 5.5}, {{64, 2048, 4}, 120.25}};
  t.decode.push_back(d);
  t.cublaslt_version = 120903;
  kvcc::runtime::GemmTuning g;
  g.m = 4;
  g.n = 1536;
  g.k = 512;
  g.heuristic = false;
  g.algo = {66, 31, 19, 1, 0, 1, 0, 3, 2};
  g.workspace = 4096;
  g.us = 6.5;
  g.heuristic_us = 8.25;
  g.candidates = 8;
  t.gemm.push_back(g);
  g.m = 512;
  g.heuristic = true;
  g.us = g.heuristic_us = 30;
  t.gemm.push_back(g);
  kvcc::pipeline::CompiledManifest cm;
  cm.source = "models/stories260K";
  cm.source_fingerprint = "config:fnv1a64:00ea893a14644570 weights:xxh64:a92da249e9ca77a6";
  cm.kv_scheme = "int8-per-layer";
  cm.arches = {"sm_90a", "sm_80"};
  cm.options = {{"quant_policy", "4"}, {"arch", "sm_90a,sm_80"}};
  cm.files = {{"kernels/manifest.json", {1234, 0x1bd4b7ef0dd93fe6}},
              {"tuning.json", {438, 0xb7d642be3b6c4b10}}};
  for (const char* dir : {"kernel_manifest", "tuning", "compiled_manifest"}) {
    fs::create_directories(out / dir);
  }
  return WriteFile(out / "kernel_manifest" / "two.json", kvcc::codegen::KernelManifestToJson(km)) &&
         WriteFile(out / "tuning" / "tuned.json", kvcc::runtime::TuningToJson(t)) &&
         WriteFile(out / "compiled_manifest" / "stories.json",
                   kvcc::pipeline::CompiledManifestToJson(cm));
}

// The fuzz module's KV parameters from a few synthetic K/V rows of mixed sign and scale.
std::string KvParamsSeed() {
  kvcc::ir::Module m;
  kvcc::fuzz::BuildFuzzModule(&m);
  const kvcc::ir::ModelConfig& c = m.config;
  kvcc::passes::KvStatsAccumulator acc(c.num_layers, c.num_kv_heads, c.head_dim);
  const int64_t width = c.num_kv_heads * c.head_dim, tokens = 3;
  std::vector<float> k(tokens * width), v(tokens * width);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = (static_cast<float>(i % 7) - 3.0f) * 1.25f;
    v[i] = static_cast<float>(i % 5) * -0.03125f + 0.01f;
  }
  for (int l = 0; l < c.num_layers; ++l) {
    if (!acc.Observe(l, k.data(), v.data(), tokens, c.num_kv_heads, c.head_dim).ok()) return "";
  }
  kvcc::passes::KvParams p;
  p.model = kvcc::passes::IdentityOf(m);
  p.calibration = {"ptb", 1, tokens, 0};
  p.layers = acc.layers();
  return kvcc::passes::KvParamsToJson(p);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fuzz_seeds OUT_DIR [FILE.safetensors...]\n");
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out / "onnx_reader");
  fs::create_directories(out / "safetensors_header");
  fs::create_directories(out / "openai_request");
  fs::create_directories(out / "artifact_manifest");
  fs::create_directories(out / "kv_params");
  fs::create_directories(out / "tokenizer_json");
  fs::create_directories(out / "sentencepiece");
  const fs::path root = KVCC_SOURCE_DIR;
  for (const auto& entry : fs::directory_iterator(root / "tests/data/tokenizers")) {
    if (entry.path().extension() == ".json") {
      fs::copy_file(entry.path(), out / "tokenizer_json" / entry.path().filename(),
                    fs::copy_options::overwrite_existing);
    }
  }
  fs::copy_file(root / "models/stories260K/tokenizer.json",
                out / "tokenizer_json" / "stories260K.json", fs::copy_options::overwrite_existing);
  fs::copy_file(root / "models/stories260K/tokenizer.model",
                out / "sentencepiece" / "stories260K.model", fs::copy_options::overwrite_existing);
  fs::create_directories(out / "hf_config");
  fs::create_directories(out / "chat_template");
  std::error_code template_ec;
  for (const auto& entry : fs::directory_iterator(root / "tests/data/chat_templates", template_ec)) {
    if (entry.path().extension() == ".jinja") {
      fs::copy_file(entry.path(), out / "chat_template" / entry.path().filename(), fs::copy_options::overwrite_existing);
    }
  }
  if (template_ec || fs::is_empty(out / "chat_template")) {
    std::fprintf(stderr, "fuzz_seeds: no chat templates in %s/tests/data/chat_templates\n", KVCC_SOURCE_DIR);
    return 1;
  }

  const fs::path artifact = out / "artifact";
  if (auto s = kvcc::fuzz::WriteFuzzArtifact(artifact.string()); !s.ok()) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  fs::copy_file(artifact / kvcc::ir::kOnnxFileName, out / "onnx_reader" / "tiny.onnx",
                fs::copy_options::overwrite_existing);
  fs::copy_file(artifact / kvcc::ir::kManifestFileName, out / "artifact_manifest" / "tiny.json",
                fs::copy_options::overwrite_existing);
  fs::remove_all(artifact);
  if (!CompiledArtifactSeeds(out)) {
    std::fprintf(stderr, "fuzz_seeds: cannot write the compiled artifact seeds\n");
    return 1;
  }
  const std::string kv_params = KvParamsSeed();
  if (kv_params.empty() || !WriteFile(out / "kv_params" / "tiny.json", kv_params)) {
    std::fprintf(stderr, "fuzz_seeds: cannot write the kv_params seed\n");
    return 1;
  }

  bool ok =
      WriteFile(out / "safetensors_header" / "tiny.bin",
                LittleEndian64(40) + R"({"__metadata__":{"format":"pt"},)"
                                     R"("a":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]},)"
                                     R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]},)"
                                     R"("c":{"dtype":"I8","shape":[3],"data_offsets":[24,27]},)"
                                     R"("d":{"dtype":"U8","shape":[1],"data_offsets":[27,28]},)"
                                     R"("e":{"dtype":"I32","shape":[1],"data_offsets":[28,32]},)"
                                     R"("f":{"dtype":"F32","shape":[2],"data_offsets":[32,40]},)"
                                     R"("g":{"dtype":"F32","shape":[0],"data_offsets":[40,40]}})");
  for (int i = 2; i < argc; ++i) {
    const fs::path seed = out / "safetensors_header" /
                          (fs::path(argv[i]).stem().string() + "_" + std::to_string(i) + ".bin");
    if (!HeaderSeed(argv[i], seed)) {
      std::fprintf(stderr, "fuzz_seeds: %s is not a readable safetensors file\n", argv[i]);
      ok = false;
    }
  }
  const fs::path source = KVCC_SOURCE_DIR;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(source / "tests/data/configs", ec)) {
    fs::copy_file(e.path(), out / "hf_config" / e.path().filename(),
                  fs::copy_options::overwrite_existing, ec);
    ok = ok && !ec;
  }
  ok = ok && !ec;
  fs::copy_file(source / "models/stories260K/generation_config.json",
                out / "hf_config" / "stories260K.generation_config.json",
                fs::copy_options::overwrite_existing, ec);
  ok = ok && !ec &&
       WriteFile(out / "hf_config" / "sampling.generation_config.json",
                 R"({"do_sample": true, "eos_token_id": [1, 2], "temperature": 0.6, )"
                 R"("top_k": 20, "top_p": 0.9, "repetition_penalty": 1.05})");
  ok = ok &&
       WriteFile(out / "hf_config" / "awq.config.json",
                 R"({"quantization_config": {"quant_method": "awq", "version": "gemm", "bits": 4, )"
                 R"("group_size": 128, "zero_point": true, "modules_to_not_convert": ["down_proj"]}})") &&
       WriteFile(out / "hf_config" / "gptq.config.json",
                 R"({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": -1, )"
                 R"("desc_act": false, "sym": true, "checkpoint_format": "gptq"}})");
  if (!ok) std::fprintf(stderr, "fuzz_seeds: could not write the hf_config seeds\n");
  const char* requests[][2] = {
      {"completion.bin",
       "0{\"model\":\"m\",\"prompt\":\"Once upon a time\",\"max_tokens\":16,"
       "\"temperature\":0.7,\"top_p\":0.9,\"top_k\":40,\"seed\":1,\"n\":2,"
       "\"stop\":[\"\\n\",\"end\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
       "\"logprobs\":2,\"ignore_eos\":false,\"repetition_penalty\":1.1}"},
      {"completion_ids.bin", "0{\"model\":\"m\",\"prompt\":[[1,2,3]],\"stop\":\"x\"}"},
      {"chat.bin",
       "1{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]},"
       "{\"role\":\"assistant\",\"content\":null}],\"max_completion_tokens\":8,"
       "\"logprobs\":true,\"top_logprobs\":3,\"seed\":-5}"},
  };
  for (const auto& [name, body] : requests) {
    ok = WriteFile(out / "openai_request" / name, body) && ok;
  }
  return ok ? 0 : 1;
}
