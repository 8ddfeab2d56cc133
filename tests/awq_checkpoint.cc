#include "tests/awq_checkpoint.h"

#include <filesystem>

#include "calibration/awq_quantizer.h"
#include "ir/json_reader.h"
#include "ir/status_macros.h"
#include "ir/atomic_file.h"
#include "testing/safetensors_writer.h"
#include "testing/synth.h"
#include "testing/synth_tokenizer.h"
#include "tests/test_util.h"

namespace kvcc::testing {

absl::StatusOr<std::string> WriteAwqCheckpoint(const std::string& config, const std::string& dir,
                                               int64_t group_size, uint64_t seed) {
  SynthOptions so;
  so.seed = seed;
  KVCC_RETURN_IF_ERROR(SynthesizeCheckpoint(SourcePath(config), dir + "/src", so).status());
  calibration::AwqOptions o;
  o.rtn = true;
  o.group_size = group_size;
  KVCC_ASSIGN_OR_RETURN(calibration::AwqResult r, calibration::QuantizeAwq(dir + "/src", {}, o));
  std::filesystem::create_directories(dir + "/awq");
  KVCC_ASSIGN_OR_RETURN(ir::Json j, ir::ReadJsonFile(dir + "/src/config.json"));
  KVCC_RETURN_IF_ERROR(ir::WriteFileAtomically(
      dir + "/awq/config.json", calibration::AwqCheckpointConfig(j, r, group_size).dump(1)));
  KVCC_RETURN_IF_ERROR(WriteSafetensors(dir + "/awq/model.safetensors", r.tensors));
  // A tokenizer, so the checkpoint and its artifacts open as a user's would.
  KVCC_RETURN_IF_ERROR(WriteSynthTokenizer(dir + "/src/config.json", dir + "/awq"));
  return dir + "/awq";
}

}  // namespace kvcc::testing
