#include "tools/kv_calibration_job.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "calibration/calibration_data.h"
#include "calibration/kv_calibrator.h"
#include "ir/status_macros.h"
#include "pipeline/model_opener.h"
#include "tools/cli_support.h"

namespace kvcc::tools {

absl::StatusOr<passes::KvParams> RunKvCalibration(const KvCalibrationJob& job) {
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  KVCC_ASSIGN_OR_RETURN(std::string text_path,
                        calibration::ResolveCalibrationDataset(job.dataset));
  // The graph generate runs, with a full-precision cache: calibration observes what the cache
  // will receive.
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> loaded,
                        pipeline::LoadModelChecked(job.model_dir));
  // The file is matched against the weights as loaded (the kv-calibrate pass runs before the
  // fusions make new weights), so the identity is taken before lowering.
  const passes::KvModelIdentity identity = passes::IdentityOf(*loaded);
  KVCC_RETURN_IF_ERROR(
      pipeline::LowerForExecution(*loaded, job.model_dir, pipeline::LowerOptions{}).status());
  std::shared_ptr<const ir::Module> module = std::move(loaded);
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<tokenizer::Tokenizer> tokenizer,
                        OpenTokenizer(job.model_dir));
  KVCC_ASSIGN_OR_RETURN(std::string text, calibration::ReadCalibrationText(text_path));
  KVCC_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, EncodeDatasetText(*tokenizer, text));
  const int32_t bos = static_cast<int32_t>(module->config.bos_token_id);
  auto windows = calibration::DrawCalibrationWindows(tokens, job.seqlen, job.samples,
                                                     static_cast<uint64_t>(job.seed), bos);
  if (!windows.ok()) {
    return absl::Status(windows.status().code(),
                        absl::StrCat(text_path, ": ", windows.status().message()));
  }
  std::fprintf(stderr, "calibrating %s on %s (%zu tokens): %zu windows of %lld tokens, seed %lld\n",
               job.model_dir.c_str(), text_path.c_str(), tokens.size(), windows->size(),
               static_cast<long long>(job.seqlen), static_cast<long long>(job.seed));
  calibration::KvCalibrationRun run;
  run.device = job.device;
  run.progress = [&](int64_t done, int64_t total) {
    DrawProgress(done, total, absl::StrFormat("%.1f s", elapsed()));
  };
  run.progress(0, windows->size());
  passes::KvCalibrationInfo info{job.dataset, 0, job.seqlen, job.seed};
  KVCC_ASSIGN_OR_RETURN(passes::KvParams params,
                        calibration::CalibrateKv(module, *windows, info, run));
  params.model = identity;
  return params;
}

}  // namespace kvcc::tools
