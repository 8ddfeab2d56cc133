// `kvcc compile <model> -o <artifact> [--quant-policy 4 | --kv-quant SCHEME]
//  [--calib-dataset D --calib-samples N --calib-seqlen L | --kv-params FILE] [--arch sm_90a,sm_80]
//  [--max-batch N] [--max-len L] [--autotune] [--device cuda|cpu]`: a checkpoint to a
// deployable artifact (pipeline/artifact_compiler.h): lowered graph, cubins for each arch,
// tuning.json, side files and a checked manifest. Opening it runs no pass and no NVRTC.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "codegen/kernel_cache.h"
#include "ir/status_macros.h"
#include "pipeline/artifact_compiler.h"
#include "runtime/cuda/decode_autotune.h"
#include "runtime/cuda/gemm_autotune.h"
#include "runtime/cuda/kernel_plan.h"
#include "runtime/engine.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/flags.h"
#include "tools/kv_calibration_job.h"
#include "tools/text_model.h"

ABSL_FLAG(std::string, arch, "",
          "compile: GPU arches for the kernels, e.g. sm_90a,sm_80 (default: the present GPU's, "
          "else sm_90a,sm_80)");
// Shared with `kvcc serve` (defined there): the largest decode batch, which --autotune measures.
ABSL_DECLARE_FLAG(int32_t, max_batch);
ABSL_FLAG(bool, autotune, false,
          "compile: time decode-attention configurations on this GPU and store the winners");

namespace kvcc::tools {
namespace {

constexpr char kUsage[] =
    "usage: kvcc compile <model> -o <artifact> [--model-format hf|awq|gptq] "
    "[--quant-policy 4 | --kv-quant SCHEME] "
    "[--calib-dataset D --calib-samples N --calib-seqlen L | --kv-params FILE] "
    "[--arch sm_90a,sm_80] [--max-batch N] [--max-len L] [--autotune] [--device cuda|cpu]\n";

int RunCompile(const std::vector<std::string>& args) {
  const std::string out = absl::GetFlag(FLAGS_o);
  if (args.size() != 1 || out.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  pipeline::CompileOptions options;
  options.model_path = args[0];
  options.out_dir = out;
  options.lower = LowerOptionsFromFlags();
  const std::string device = DeviceFromFlags();
  for (absl::string_view arch :
       absl::StrSplit(absl::GetFlag(FLAGS_arch), ',', absl::SkipWhitespace())) {
    options.arches.emplace_back(arch);
  }
  KvCalibrationJob job;
  job.model_dir = options.model_path;
  job.dataset = absl::GetFlag(FLAGS_calib_dataset);
  job.samples = absl::GetFlag(FLAGS_calib_samples);
  job.seqlen = absl::GetFlag(FLAGS_calib_seqlen);
  job.seed = absl::GetFlag(FLAGS_seed);
  job.device = device;
  options.calibrate = [&] { return RunKvCalibration(job); };
  const int max_batch = absl::GetFlag(FLAGS_max_batch);
  const int64_t max_len = absl::GetFlag(FLAGS_max_len);
  if (max_batch <= 0 || max_len <= 0) {
    return Fail("compile", absl::InvalidArgumentError("--max-batch and --max-len must be positive"),
                2);
  }
  options.recorded_options = {
      {"model_format", options.lower.model_format},
      {"quant_policy", absl::StrCat(options.lower.quant_policy)},
      {"kv_quant", options.lower.kv_quant},
      {"kv_params", options.lower.kv_params},
      {"calib", absl::StrCat(job.dataset, " x", job.samples, " seqlen ", job.seqlen, " seed ",
                             job.seed)},
      {"arch", absl::StrJoin(options.arches, ",")},
      {"max_batch", absl::StrCat(max_batch)},
      {"max_len", absl::StrCat(max_len)},
      {"autotune", absl::GetFlag(FLAGS_autotune) ? "true" : "false"},
      {"device", device}};
  if (absl::GetFlag(FLAGS_autotune)) {
    if (device != "cuda") {
      return Fail("compile", absl::FailedPreconditionError(
                                 "--autotune times kernels on the GPU: it needs --device cuda"),
                  2);
    }
    options.autotune = [&](const ir::Module& module) -> absl::StatusOr<runtime::KernelTuning> {
      KVCC_ASSIGN_OR_RETURN(
          std::vector<runtime::CudaAttentionConfig> configs,
          runtime::PlanAttentionConfigs(module, runtime::EngineOptions{}.block_size, {}));
      runtime::DecodeAutotuneOptions tune;
      tune.max_batch = max_batch;
      tune.max_context = static_cast<int>(std::min<int64_t>(max_len, 1 << 20));
      tune.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
      codegen::KernelCache cache(codegen::KernelCache::DefaultDir());
      KVCC_ASSIGN_OR_RETURN(runtime::KernelTuning tuning,
                            runtime::AutotuneDecode(configs, tune, &cache));
      runtime::GemmAutotuneOptions gemm;
      gemm.max_batch = max_batch;
      gemm.prefill_chunk = runtime::EngineOptions{}.prefill_chunk;
      gemm.log = tune.log;
      KVCC_RETURN_IF_ERROR(
          runtime::AutotuneGemms(runtime::PlanGemmShapes(module), gemm, &tuning));
      return tuning;
    };
  }
  options.kernel_progress = [](int64_t done, int64_t total) {
    DrawProgress(done, total, "", "kernels");
  };
  auto result = pipeline::CompileArtifact(options);
  if (!result.ok()) return Fail("compile", result.status());
  std::printf("%s\n",
              absl::StrCat("compiled ", options.model_path, " to ", out, ": KV cache ",
                           result->manifest.kv_scheme,
                           result->kv_params_source.empty()
                               ? ""
                               : absl::StrCat(" (parameters from ", result->kv_params_source, ")"),
                           ", ", result->kernels, " kernels for ",
                           absl::StrJoin(result->manifest.arches, ","), " (",
                           result->nvrtc_compiles, " compiled with NVRTC, the rest from the "
                           "kernel cache), ", result->manifest.files.size() + 2, " files",
                           result->manifest.w4_layout.empty()
                               ? ""
                               : absl::StrCat("; 4-bit linears ", result->manifest.w4_layout))
                  .c_str());
  for (const std::string& plain : result->w4_plain) {
    std::printf("  kept in the plain 4-bit layout: %s\n", plain.c_str());
  }
  return 0;
}

}  // namespace

KVCC_COMMAND(compile,
             "compile <model> -o <artifact> [--model-format hf|awq|gptq] [--quant-policy 4 | "
             "--kv-quant S] [--kv-params F] "
             "[--arch sm_90a,sm_80] [--autotune]",
             RunCompile);

}  // namespace kvcc::tools
