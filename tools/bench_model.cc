#include "tools/bench_model.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "frontend/model_loader.h"
#include "frontend/safetensors.h"
#include "ir/kv_cache_scheme.h"
#include "ir/op_names.h"
#include "ir/half.h"
#include "ir/status_macros.h"
#include "pipeline/w4_packing.h"
#include "runtime/cuda/cuda_memory.h"

ABSL_FLAG(int64_t, w4_group_size, 0,
          "bench decode/memory: decoder linears in 4 bits (AWQ GEMM) at this group size; 0: 16 bits");

namespace kvcc::tools {

namespace {

// A decoder-layer linear the shape-only AWQ checkpoint stores in 4 bits: its module name.
std::optional<std::string> W4Module(const testing::SynthTensor& t) {
  constexpr absl::string_view kSuffix = ".weight";
  if (t.shape.size() != 2 || !absl::StrContains(t.name, ".layers.") ||
      !absl::EndsWith(t.name, kSuffix) || absl::StrContains(t.name, "wqkv")) {
    return std::nullopt;
  }
  return t.name.substr(0, t.name.size() - kSuffix.size());
}

}  // namespace

std::string BenchCheckpointDir(const std::string& bench, const std::string& config_path,
                               int64_t w4_group_size) {
  std::string name = absl::StrCat("kvcc-bench-", bench, "-",
                                  std::filesystem::path(config_path).stem().string());
  if (w4_group_size > 0) absl::StrAppend(&name, "-w4g", w4_group_size);
  return (std::filesystem::temp_directory_path() / name).string();
}

std::string W4Label(int64_t w4_group_size) {
  return w4_group_size > 0 ? absl::StrCat(" (W4 AWQ g", w4_group_size, ")") : std::string();
}

absl::StatusOr<testing::SynthPlan> WriteShapeOnlyCheckpoint(const std::string& config_path,
                                                             const std::string& dir,
                                                             int64_t w4_group_size) {
  std::ifstream in(config_path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config ", config_path));
  std::stringstream text;
  text << in.rdbuf();
  KVCC_ASSIGN_OR_RETURN(auto plan, testing::PlanSynthCheckpoint(text.str(), config_path));
  const ir::DType dtype =
      plan.config_dtype == ir::DType::kF32 ? ir::DType::kF16 : plan.config_dtype;
  KVCC_ASSIGN_OR_RETURN(auto dtype_name, frontend::SafetensorsDTypeName(dtype));
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  auto add = [&](const std::string& name, const std::string& type, std::vector<int64_t> shape,
                 uint64_t element_bytes) {
    uint64_t bytes = element_bytes;
    for (int64_t d : shape) bytes *= static_cast<uint64_t>(d);
    header[name] = {{"dtype", type}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  };
  for (const testing::SynthTensor& t : plan.tensors) {
    const std::optional<std::string> w4 = w4_group_size > 0 ? W4Module(t) : std::nullopt;
    if (!w4) {
      add(t.name, dtype_name, t.shape, static_cast<uint64_t>(ir::DTypeBytes(dtype, 1)));
      continue;
    }
    const int64_t out = t.shape[0], in = t.shape[1];
    if (out % 8 != 0 || in % w4_group_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          config_path, ": ", t.name, " [", out, ", ", in, "] has no 4-bit AWQ layout at group size ",
          w4_group_size, " (out must be a multiple of 8, in of the group size)"));
    }
    add(*w4 + ".qweight", "I32", {in, out / 8}, 4);
    add(*w4 + ".qzeros", "I32", {in / w4_group_size, out / 8}, 4);
    add(*w4 + ".scales", "F16", {in / w4_group_size, out}, 2);
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  nlohmann::json config = nlohmann::json::parse(text.str(), nullptr, false);
  if (config.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, " is not valid JSON"));
  }
  config["torch_dtype"] = dtype == ir::DType::kBF16 ? "bfloat16" : "float16";
  if (w4_group_size > 0) {
    nlohmann::json skip = nlohmann::json::array();
    if (plan.architecture == "InternLM2ForCausalLM") skip.push_back("wqkv");
    config["quantization_config"] = {{"quant_method", "awq"}, {"version", "gemm"},
                                     {"bits", 4},             {"group_size", w4_group_size},
                                     {"zero_point", true},    {"modules_to_not_convert", skip}};
  }
  {
    std::ofstream c(dir + "/config.json");
    c << config.dump(2);
    if (!c) return absl::InternalError(absl::StrCat("cannot write ", dir, "/config.json"));
  }
  const std::string path = dir + "/model.safetensors";
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", path));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((h.size() >> (8 * i)) & 0xff);
  bool ok = ::write(fd, len, 8) == 8 &&
            ::write(fd, h.data(), h.size()) == static_cast<ssize_t>(h.size()) &&
            ::ftruncate(fd, static_cast<off_t>(8 + h.size() + offset)) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok) return absl::InternalError(absl::StrCat("cannot write the sparse checkpoint ", path));
  return plan;
}

absl::StatusOr<std::unique_ptr<ir::Module>> LoadBenchModule(const std::string& dir,
                                                            const std::string& kind) {
  KVCC_ASSIGN_OR_RETURN(auto module, frontend::LoadModel(dir));
  KVCC_RETURN_IF_ERROR(pipeline::PackW4Linears(*module).status());
  if (kind == "f16") return module;
  if (kind != "i8" && kind != "i4") {
    return absl::InvalidArgumentError(absl::StrCat("cache '", kind, "' is not f16, i8 or i4"));
  }
  // Zero point 0 and range +-4 over the code range.
  const bool i4 = kind == "i4";
  for (const auto& n : module->graph.nodes()) {
    if (n->op != ir::op::kKvCacheWrite) continue;
    ir::KvCacheScheme s = ir::KvCacheScheme::Uniform(
        {i4 ? ir::DType::kI4 : ir::DType::kI8,
         i4 ? ir::KvGranularity::kPerHead : ir::KvGranularity::kPerLayer});
    const size_t entries = i4 ? static_cast<size_t>(n->IntOr("kv_heads", 0)) : 1;
    if (entries == 0) {
      return absl::InvalidArgumentError(absl::StrCat("kv_cache_write '", n->name,
                                                     "' has no kv_heads attribute"));
    }
    s.k_zp = s.v_zp = std::vector<float>(entries, 0.0f);
    s.k_scale = s.v_scale = std::vector<float>(entries, i4 ? 8.0f / 15.0f : 8.0f / 255.0f);
    ir::WriteKvCacheScheme(s, n.get());
    n->output()->type.dtype = s.dtype;
  }
  return module;
}

absl::Status AdoptRandomWeights(const ir::Module& module, const testing::SynthPlan& plan,
                                uint64_t seed, runtime::CudaBackend* backend) {
  std::map<std::string, const testing::SynthTensor*> dist;
  for (const auto& t : plan.tensors) dist[t.name] = &t;
  for (const ir::Value* w : module.graph.weights()) {
    runtime::Tensor host = runtime::Tensor::View(w->type.dtype, w->type.shape,
                                                 runtime::Device::kCpu,
                                                 const_cast<uint8_t*>(w->weight->bytes),
                                                 w->weight->owner);
    KVCC_ASSIGN_OR_RETURN(auto dev, runtime::AllocateDeviceTensor(backend->context(), w->type.dtype,
                                                                  w->type.shape, false));
    const uint64_t stream = seed * 0x9e3779b97f4a7c15ull ^ std::hash<std::string>()(w->name);
    absl::string_view name = w->name;
    if (w->type.dtype == ir::DType::kI32 && absl::ConsumeSuffix(&name, ".w4packed") &&
        absl::ConsumeSuffix(&name, ".scales")) {
      // Packed scale/zero words (ir/group_quant.h): the planned scale (low half), z = 8 (high).
      auto linear = dist.find(absl::StrCat(name, ".weight"));
      const float scale = (linear != dist.end() ? linear->second->stddev : 0.02f) / 4.6f;
      runtime::Tensor words = runtime::Tensor::HostZeros(ir::DType::kI32, w->type.shape);
      const uint32_t word = ir::FloatToHalf(scale) | (0x6400u + 8) << 16;
      std::fill_n(static_cast<uint32_t*>(words.raw()), words.NumElements(), word);
      KVCC_ASSIGN_OR_RETURN(dev, backend->FromHost(words));
      KVCC_RETURN_IF_ERROR(backend->AdoptWeight(host, dev));
      continue;
    }
    if (w->type.dtype == ir::DType::kI4 || w->type.dtype == ir::DType::kI32) {
      // Any bit pattern is a valid code (plain or packed): the bytes of a normal f16 fill
      // serve as nibbles.
      const int64_t halves = dev.NumBytes() / 2;
      if (halves > 0) {
        KVCC_RETURN_IF_ERROR(backend->FillNormal(
            runtime::DeviceView(dev, 0, ir::DType::kF16, {halves}), stream, 0.0f, 1.0f));
      }
      KVCC_RETURN_IF_ERROR(backend->AdoptWeight(host, dev));
      continue;
    }
    float mean = 0.0f, stddev = 0.02f;
    if (auto it = dist.find(w->name); it != dist.end()) {
      mean = it->second->mean;
      stddev = it->second->stddev;
    } else if (absl::ConsumeSuffix(&name, ".scales")) {
      // (q - z) of two uniform nibbles has a standard deviation of about 6.5.
      auto linear = dist.find(absl::StrCat(name, ".weight"));
      mean = (linear != dist.end() ? linear->second->stddev : 0.02f) / 6.5f;
      stddev = 0.0f;
    }
    KVCC_RETURN_IF_ERROR(backend->FillNormal(dev, stream, mean, stddev));
    KVCC_RETURN_IF_ERROR(backend->AdoptWeight(host, dev));
  }
  return absl::OkStatus();
}

absl::Status FillBenchCache(runtime::CudaBackend* backend, const runtime::KvCacheSpec& spec,
                            int64_t batch, int64_t max_len, int64_t fill, uint64_t seed,
                            runtime::KvCache* cache) {
  for (int64_t s = 0; s < batch; ++s) {
    KVCC_RETURN_IF_ERROR(cache->blocks().AddSession(s));
    KVCC_RETURN_IF_ERROR(cache->blocks().Reserve(s, max_len));
  }
  const int width = spec.layout.kv_heads * spec.layout.head_dim;
  constexpr int64_t kChunk = 2048;
  KVCC_ASSIGN_OR_RETURN(auto k_rows, runtime::AllocateDeviceTensor(
                                         backend->context(), ir::DType::kF32, {kChunk, width}, false));
  KVCC_ASSIGN_OR_RETURN(auto v_rows, runtime::AllocateDeviceTensor(
                                         backend->context(), ir::DType::kF32, {kChunk, width}, false));
  KVCC_RETURN_IF_ERROR(backend->FillNormal(k_rows, seed + 1, 0.0f, 1.0f));
  KVCC_RETURN_IF_ERROR(backend->FillNormal(v_rows, seed + 2, 0.0f, 1.0f));
  runtime::StepBatch chunk;
  for (int64_t s = 0; s < batch; ++s) {
    for (int64_t p = 0; p < fill; ++p) {
      chunk.sessions.push_back(s);
      chunk.positions.push_back(static_cast<int32_t>(p));
      if (chunk.size() == kChunk || (s == batch - 1 && p == fill - 1)) {
        chunk.ComputeSeqLens();
        const int64_t n = chunk.size();
        runtime::Tensor k = runtime::DeviceView(k_rows, 0, ir::DType::kF32, {n, width});
        runtime::Tensor v = runtime::DeviceView(v_rows, 0, ir::DType::kF32, {n, width});
        for (int layer = 0; layer < spec.layout.num_layers; ++layer) {
          KVCC_RETURN_IF_ERROR(backend->KvCacheWrite(k, v, layer, chunk, cache));
        }
        chunk = runtime::StepBatch();
      }
    }
  }
  return backend->Synchronize();
}

}  // namespace kvcc::tools
