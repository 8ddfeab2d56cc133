// `kvcc lite auto-awq <model> --work-dir OUT [--calib-dataset ptb|wikitext2|FILE]
//  [--calib-samples 128] [--calib-seqlen 2048] [--w-bits 4] [--w-group-size 128]
//  [--search-scale] [--rtn]` (LMDeploy's spelling; also `kvcc quantize awq ...`): 4-bit AWQ of a
// float checkpoint (calibration/awq_quantizer.h), written as a standard AutoAWQ-GEMM checkpoint
// (model.safetensors + config.json with quantization_config + the tokenizer files).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "calibration/awq_quantizer.h"
#include "calibration/calibration_data.h"
#include "frontend/hf_config.h"
#include "frontend/model_loader.h"
#include "ir/atomic_file.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"
#include "testing/safetensors_writer.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/flags.h"

// Shared with `kvcc calibrate` (tools/cmd_calibrate.cc defines them).
ABSL_DECLARE_FLAG(std::string, calib_dataset);
ABSL_DECLARE_FLAG(int64_t, calib_samples);
ABSL_DECLARE_FLAG(int64_t, calib_seqlen);
ABSL_DECLARE_FLAG(std::string, work_dir);

ABSL_FLAG(int32_t, w_bits, 4, "auto-awq: weight bits (4)");
ABSL_FLAG(int64_t, w_group_size, 128, "auto-awq: input features per scale/zero group");
ABSL_FLAG(bool, search_scale, true, "auto-awq: search the activation-aware scales and clipping");
ABSL_FLAG(bool, rtn, false, "auto-awq: plain round-to-nearest (no calibration, no search)");
ABSL_FLAG(int64_t, search_tokens, 4096,
          "auto-awq: calibration tokens (whole windows) on which the scale search measures each "
          "group's block output");
ABSL_FLAG(bool, apply_clip, true, "auto-awq: search the weight clipping (AutoAWQ's apply_clip)");
ABSL_FLAG(int64_t, clip_tokens, 4096, "auto-awq: calibration tokens the clipping search reads");

namespace kvcc::tools {
namespace {

namespace fs = std::filesystem;

// config.json of `from` with AutoAWQ's quantization_config.
absl::Status WriteAwqConfig(const std::string& from, const std::string& to,
                            const calibration::AwqResult& r, int64_t group) {
  KVCC_ASSIGN_OR_RETURN(ir::Json j, ir::ReadJsonFile(
                                        (fs::path(from) / frontend::kHfConfigFileName).string()));
  return ir::WriteFileAtomically((fs::path(to) / frontend::kHfConfigFileName).string(),
                                 calibration::AwqCheckpointConfig(j, r, group).dump(2) + "\n");
}

int RunAutoAwq(const std::vector<std::string>& args, const char* name) {
  const std::string out = absl::GetFlag(FLAGS_work_dir);
  if (args.size() != 1 || out.empty()) {
    std::fprintf(stderr,
                 "usage: kvcc %s <model_dir> --work-dir OUT [--calib-dataset ptb|wikitext2|FILE] "
                 "[--calib-samples 128] [--calib-seqlen 2048] [--w-bits 4] [--w-group-size 128] "
                 "[--search-scale] [--rtn]\n", name);
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const std::string model_dir = args[0];
  if (std::error_code ec; fs::equivalent(model_dir, out, ec)) {
    return Fail(name, absl::InvalidArgumentError("--work-dir must differ from the model directory"));
  }
  calibration::AwqOptions o;
  o.w_bits = absl::GetFlag(FLAGS_w_bits);
  o.group_size = absl::GetFlag(FLAGS_w_group_size);
  o.search_scale = absl::GetFlag(FLAGS_search_scale);
  o.rtn = absl::GetFlag(FLAGS_rtn);
  o.search_tokens = absl::GetFlag(FLAGS_search_tokens);
  o.apply_clip = absl::GetFlag(FLAGS_apply_clip);
  o.clip_tokens = absl::GetFlag(FLAGS_clip_tokens);
  o.device = DeviceFromFlags();
  std::vector<std::vector<int32_t>> windows;
  if (!o.rtn && o.search_scale) {
    auto text_path = calibration::ResolveCalibrationDataset(absl::GetFlag(FLAGS_calib_dataset));
    if (!text_path.ok()) return Fail(name, text_path.status());
    auto tokenizer = OpenTokenizer(model_dir);
    if (!tokenizer.ok()) return Fail(name, tokenizer.status());
    auto text = calibration::ReadCalibrationText(*text_path);
    if (!text.ok()) return Fail(name, text.status());
    auto tokens = EncodeDatasetText(**tokenizer, *text);
    if (!tokens.ok()) return Fail(name, tokens.status());
    auto config = frontend::LoadHfConfig(model_dir);
    if (!config.ok()) return Fail(name, config.status());
    auto w = calibration::DrawCalibrationWindows(
        *tokens, absl::GetFlag(FLAGS_calib_seqlen), absl::GetFlag(FLAGS_calib_samples),
        static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)),
        static_cast<int32_t>(config->bos_token_id));
    if (!w.ok()) return Fail(name, w.status());
    windows = *std::move(w);
    std::fprintf(stderr, "auto-awq: %s on %s: %zu windows of %lld tokens, group size %lld\n",
                 model_dir.c_str(), text_path->c_str(), windows.size(),
                 static_cast<long long>(absl::GetFlag(FLAGS_calib_seqlen)),
                 static_cast<long long>(o.group_size));
  }
  std::string stage;
  o.progress = [&](int64_t done, int64_t total, const std::string& what) {
    if (what != stage && !stage.empty() && what.rfind("layer", 0) == 0 &&
        stage.rfind("layer", 0) != 0) {
      std::fprintf(stderr, "\n");
    }
    stage = what;
    DrawProgress(done, total, absl::StrFormat("%s, %.1f s", what, elapsed()));
  };
  auto result = calibration::QuantizeAwq(model_dir, windows, o);
  if (!result.ok()) return Fail(name, result.status());
  std::fprintf(stderr, "\n");
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    return Fail(name, absl::InvalidArgumentError(
                          absl::StrCat("cannot create --work-dir ", out, ": ", ec.message())));
  }
  if (auto s = frontend::CopyModelSideFiles(model_dir, out); !s.ok()) return Fail(name, s.status());
  if (auto s = WriteAwqConfig(model_dir, out, *result, o.group_size); !s.ok()) return Fail(name, s);
  if (auto s = testing::WriteSafetensors((fs::path(out) / "model.safetensors").string(),
                                         result->tensors, {{"format", "pt"}});
      !s.ok()) {
    return Fail(name, s);
  }
  std::printf("wrote %s: %lld linears in 4 bits (group %lld, %s)%s in %.1f s\n", out.c_str(),
              static_cast<long long>(result->converted), static_cast<long long>(o.group_size),
              o.rtn || !o.search_scale ? "round-to-nearest" : "AWQ",
              result->not_converted.empty()
                  ? ""
                  : absl::StrCat(", ", result->not_converted.size(),
                                 " kept in 16 bits (modules_to_not_convert)").c_str(),
              elapsed());
  return 0;
}

int RunLite(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "auto-awq") {
    std::fprintf(stderr, "usage: kvcc lite auto-awq <model_dir> --work-dir OUT [...]\n");
    return 2;
  }
  return RunAutoAwq(std::vector<std::string>(args.begin() + 1, args.end()), "lite auto-awq");
}

int RunQuantize(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "awq") {
    std::fprintf(stderr, "usage: kvcc quantize awq <model_dir> --work-dir OUT [...]\n");
    return 2;
  }
  return RunAutoAwq(std::vector<std::string>(args.begin() + 1, args.end()), "quantize awq");
}

}  // namespace

KVCC_COMMAND(lite,
             "lite auto-awq <model_dir> --work-dir OUT [--calib-dataset ptb|wikitext2|FILE] "
             "[--calib-samples 128] [--calib-seqlen 2048] [--w-bits 4] [--w-group-size 128] "
             "[--search-scale] [--rtn]",
             RunLite);
KVCC_COMMAND(quantize, "quantize awq <model_dir> --work-dir OUT [...] (as lite auto-awq)",
             RunQuantize);

}  // namespace kvcc::tools
