// `kvcc calibrate <model> --calib-dataset ptb|wikitext2|tinystories|c4|FILE --calib-samples N
//  --calib-seqlen N [--work-dir DIR] [--seed N] [--device cpu|cuda]`: runs the model over random
// windows of the calibration text, observing K (after rotary) and V at every layer, and writes
// the KV parameter file (kv_params.json) that --quant-policy 4 / --kv-quant pick up.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "passes/kv_params.h"
#include "ir/kv_quant.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/flags.h"
#include "tools/kv_calibration_job.h"

ABSL_FLAG(std::string, calib_dataset, "ptb",
          "calibrate: ptb | wikitext2 | tinystories | a text file (c4 is not available offline)");
ABSL_FLAG(int64_t, calib_samples, 128, "calibrate: at most this many windows");
ABSL_FLAG(int64_t, calib_seqlen, 2048, "calibrate: tokens per window (BOS included)");
ABSL_FLAG(std::string, work_dir, "",
          "calibrate: directory for kv_params.json (default: the model directory)");

namespace kvcc::tools {
namespace {

int RunCalibrate(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::fprintf(stderr,
                 "usage: kvcc calibrate <model_dir> --calib-dataset ptb|wikitext2|tinystories|"
                 "FILE [--calib-samples 128] [--calib-seqlen 2048] [--work-dir DIR] [--seed N]\n");
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const std::string model_dir = args[0];
  KvCalibrationJob job;
  job.model_dir = model_dir;
  job.dataset = absl::GetFlag(FLAGS_calib_dataset);
  job.samples = absl::GetFlag(FLAGS_calib_samples);
  job.seqlen = absl::GetFlag(FLAGS_calib_seqlen);
  job.seed = absl::GetFlag(FLAGS_seed);
  job.device = DeviceFromFlags();
  std::string work_dir = absl::GetFlag(FLAGS_work_dir);
  if (work_dir.empty()) work_dir = model_dir;
  auto params = RunKvCalibration(job);
  if (!params.ok()) return Fail("calibrate", params.status());

  // Created only now, so a failed calibration leaves no empty directory behind.
  std::error_code ec;
  std::filesystem::create_directories(work_dir, ec);
  if (ec) {
    return Fail("calibrate", absl::InvalidArgumentError(absl::StrCat(
                                 "cannot create --work-dir ", work_dir, ": ", ec.message())));
  }
  const std::string out = passes::KvParamsPath(work_dir);
  if (auto s = passes::WriteKvParams(*params, out); !s.ok()) return Fail("calibrate", s);
  std::printf("layer  K min       K max       K zp        K scale     V min       V max       "
              "V zp        V scale\n");
  for (size_t l = 0; l < params->layers.size(); ++l) {
    const passes::KvLayerStats& s = params->layers[l];
    const ir::ZpScale k = ir::CalibratedParams(s.k.layer.min, s.k.layer.max, 255);
    const ir::ZpScale v = ir::CalibratedParams(s.v.layer.min, s.v.layer.max, 255);
    std::printf("%5zu  %-10.5g  %-10.5g  %-10.5g  %-10.5g  %-10.5g  %-10.5g  %-10.5g  %-10.5g\n", l,
                s.k.layer.min, s.k.layer.max, k.zp, k.scale, s.v.layer.min, s.v.layer.max, v.zp,
                v.scale);
  }
  std::printf("wrote %s (%lld windows x %lld tokens) in %.2f s\n", out.c_str(),
              static_cast<long long>(params->calibration.samples), static_cast<long long>(job.seqlen),
              elapsed());
  return 0;
}

}  // namespace

KVCC_COMMAND(calibrate,
             "calibrate <model_dir> --calib-dataset ptb|wikitext2|tinystories|FILE "
             "[--calib-samples 128] [--calib-seqlen 2048] [--work-dir DIR] [--seed N]",
             RunCalibrate);

}  // namespace kvcc::tools
