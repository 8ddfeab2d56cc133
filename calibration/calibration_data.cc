#include "calibration/calibration_data.h"

#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <random>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/file_read.h"
#include "ir/status_macros.h"

namespace kvcc::calibration {
namespace {

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string ExecutableDir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string path(buf, static_cast<size_t>(n));
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

struct NamedDataset {
  const char* name;
  const char* validation;
  const char* test;
};
constexpr NamedDataset kDatasets[] = {
    {"ptb", "ptb/ptb.valid.txt", "ptb/ptb.test.txt"},
    {"wikitext2", "wikitext-2/wiki.valid.tokens", "wikitext-2-raw/wiki.test.raw"},
    {"tinystories", "tinystories/TinyStories-valid.txt", "tinystories/TinyStories-valid.txt"},
};

}  // namespace

std::vector<std::string> CalibrationDataDirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("KVCC_DATA_DIR"); env != nullptr && *env != '\0') {
    dirs.push_back(env);
  }
  dirs.push_back("shared/data");
  dirs.push_back("../shared/data");
  if (std::string exe = ExecutableDir(); !exe.empty()) {
    dirs.push_back(exe + "/../../../shared/data");
  }
  return dirs;
}

absl::StatusOr<std::string> ResolveDataset(const std::string& name, DatasetSplit split,
                                           std::vector<std::string> dirs) {
  if (name.empty()) return absl::InvalidArgumentError("no dataset given");
  if (name == "c4") {
    return absl::NotFoundError(
        "dataset c4 is not available: kvcc never downloads data and no C4 text is "
        "bundled (see shared/data/README.md); use ptb, wikitext2, tinystories or a text FILE");
  }
  if (dirs.empty()) dirs = CalibrationDataDirs();
  for (const NamedDataset& d : kDatasets) {
    if (name != d.name) continue;
    const char* rel = split == DatasetSplit::kTest ? d.test : d.validation;
    for (const std::string& dir : dirs) {
      std::string path = absl::StrCat(dir, "/", rel);
      if (IsFile(path)) return path;
    }
    return absl::NotFoundError(absl::StrCat("dataset ", name, ": ", rel,
                                            " not found under any of ",
                                            absl::StrJoin(dirs, ", "),
                                            " (set KVCC_DATA_DIR to the data directory)"));
  }
  if (IsFile(name)) return name;
  return absl::NotFoundError(absl::StrCat(
      "dataset '", name,
      "' is neither ptb, wikitext2, tinystories nor an existing file"));
}

absl::StatusOr<std::string> ReadCalibrationText(const std::string& path) {
  // Regular files only (a FIFO would block), capped: the text is tokenized whole in memory.
  constexpr int64_t kMaxCalibrationTextBytes = int64_t{512} << 20;
  KVCC_ASSIGN_OR_RETURN(std::string text,
                        ir::ReadRegularFile(path, kMaxCalibrationTextBytes, "calibration text"));
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("calibration text ", path, " is empty"));
  }
  return text;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> DrawCalibrationWindows(
    const std::vector<int32_t>& tokens, int64_t seqlen, int64_t max_samples, uint64_t seed,
    int32_t bos) {
  if (seqlen < 2) {
    return absl::InvalidArgumentError(absl::StrCat("--calib-seqlen must be >= 2, got ", seqlen));
  }
  if (max_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--calib-samples must be >= 1, got ", max_samples));
  }
  const int64_t text_len = bos >= 0 ? seqlen - 1 : seqlen;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < text_len) {
    return absl::InvalidArgumentError(absl::StrCat("calibration text has ", n,
                                                   " tokens, fewer than one window of ",
                                                   text_len, " text tokens"));
  }
  const int64_t count = std::min(max_samples, n / text_len);
  std::mt19937_64 rng(seed);
  const uint64_t starts = static_cast<uint64_t>(n - text_len + 1);
  std::vector<std::vector<int32_t>> windows;
  windows.reserve(count);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t start = static_cast<int64_t>(rng() % starts);
    std::vector<int32_t> w;
    w.reserve(seqlen);
    if (bos >= 0) w.push_back(bos);
    w.insert(w.end(), tokens.begin() + start, tokens.begin() + start + text_len);
    windows.push_back(std::move(w));
  }
  return windows;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> ConsecutiveWindows(
    const std::vector<int32_t>& tokens, int64_t seqlen, int64_t max_windows, int32_t bos) {
  if (seqlen < 2) return absl::InvalidArgumentError(absl::StrCat("--seqlen must be >= 2, got ", seqlen));
  const int64_t text_len = bos >= 0 ? seqlen - 1 : seqlen;
  const int64_t n = static_cast<int64_t>(tokens.size());
  int64_t count = n / text_len;
  if (count == 0) {
    return absl::InvalidArgumentError(absl::StrCat("the text has ", n,
                                                   " tokens, fewer than one window of ",
                                                   text_len, " text tokens"));
  }
  if (max_windows > 0) count = std::min(count, max_windows);
  std::vector<std::vector<int32_t>> windows(count);
  for (int64_t i = 0; i < count; ++i) {
    if (bos >= 0) windows[i].push_back(bos);
    windows[i].insert(windows[i].end(), tokens.begin() + i * text_len,
                      tokens.begin() + (i + 1) * text_len);
  }
  return windows;
}

}  // namespace kvcc::calibration
