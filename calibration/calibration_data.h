// Calibration and evaluation text: resolving a dataset name to a local file (never downloaded),
// drawing reproducible random token windows for calibration and consecutive windows for
// evaluation.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcc::calibration {

// Directories searched for the named corpora, in order: $KVCC_DATA_DIR, ./shared/data,
// ../shared/data (from the working directory), then shared/data beside the checkout holding
// the kvcc executable (<exe>/../../../shared/data).
std::vector<std::string> CalibrationDataDirs();

// Which part of a corpus: calibration reads validation text so that the test text that
// perplexity is measured on stays unseen.
enum class DatasetSplit { kValidation, kTest };

// Validation: ptb -> ptb/ptb.valid.txt, wikitext2 -> wikitext-2/wiki.valid.tokens (no raw
// validation file is available). Test: ptb -> ptb/ptb.test.txt, wikitext2 ->
// wikitext-2-raw/wiki.test.raw. tinystories -> tinystories/TinyStories-valid.txt for both (the
// only TinyStories text there is). Any other name is a file path. c4 is rejected: no C4 text
// is available offline. `dirs` defaults to CalibrationDataDirs().
absl::StatusOr<std::string> ResolveDataset(const std::string& name, DatasetSplit split,
                                           std::vector<std::string> dirs = {});
inline absl::StatusOr<std::string> ResolveCalibrationDataset(const std::string& name,
                                                             std::vector<std::string> dirs = {}) {
  return ResolveDataset(name, DatasetSplit::kValidation, std::move(dirs));
}

// The whole file as text; an empty file is an error.
absl::StatusOr<std::string> ReadCalibrationText(const std::string& path);

// Windows of `seqlen` tokens from `tokens` (the tokenized text), as in GPTQ/LMDeploy: each
// starts at a uniformly random offset drawn from a 64-bit Mersenne Twister seeded with `seed`
// (implemented here so the draw is the same with every standard library). When `bos` >= 0,
// each window is `bos` followed by seqlen-1 text tokens, as every cache holds BOS at
// position 0 in use. The count is min(max_samples, text tokens / text tokens per window), at
// least 1; a text shorter than one window is an error.
absl::StatusOr<std::vector<std::vector<int32_t>>> DrawCalibrationWindows(
    const std::vector<int32_t>& tokens, int64_t seqlen, int64_t max_samples, uint64_t seed,
    int32_t bos);

// Consecutive, non-overlapping windows of the text for evaluation, laid out like the
// calibration windows (`bos`, when >= 0, then seqlen-1 text tokens); at most `max_windows`
// (<= 0: all whole windows). A text shorter than one window is an error.
absl::StatusOr<std::vector<std::vector<int32_t>>> ConsecutiveWindows(
    const std::vector<int32_t>& tokens, int64_t seqlen, int64_t max_windows, int32_t bos);

}  // namespace kvcc::calibration
