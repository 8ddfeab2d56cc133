#include "tools/cli_support.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/flags/flag.h"
#include "frontend/model_loader.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_context.h"
#include "tokenizer/tokenizer_loader.h"
#include "tools/flags.h"

namespace kvcc::tools {

int Fail(absl::string_view command, const absl::Status& status, int exit_code) {
  std::fprintf(stderr, "kvcc %s: %s\n", std::string(command).c_str(),
               std::string(status.message()).c_str());
  return exit_code;
}

absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> OpenTokenizer(const std::string& model) {
  KVCC_ASSIGN_OR_RETURN(auto dir, frontend::FindTokenizerDir(model));
  KVCC_ASSIGN_OR_RETURN(auto loaded, tokenizer::LoadTokenizer(dir));
  return std::move(loaded.tokenizer);
}

absl::StatusOr<std::vector<int32_t>> EncodeDatasetText(const tokenizer::Tokenizer& tok,
                                                       absl::string_view text) {
  tokenizer::EncodeOptions plain;
  plain.add_special_tokens = false;
  plain.parse_special = false;
  return tok.Encode(text, plain);
}

std::function<absl::Status(int32_t)> PrintToStdout(tokenizer::StreamDecoder& stream) {
  return [&stream](int32_t id) -> absl::Status {
    KVCC_ASSIGN_OR_RETURN(auto text, stream.Put(id));
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    return absl::OkStatus();
  };
}

void DrawProgress(int64_t done, int64_t total, absl::string_view detail,
                  absl::string_view unit) {
  constexpr int kWidth = 30;
  static const bool tty = ::isatty(STDERR_FILENO) != 0;
  if (!tty && done != total && (done * 10 / std::max<int64_t>(total, 1)) ==
                                   ((done - 1) * 10 / std::max<int64_t>(total, 1))) {
    return;
  }
  const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "%s  [%s] %lld/%lld %s%s%s%s", tty ? "\r" : "", bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total),
               std::string(unit).c_str(),
               detail.empty() ? "" : "  ", std::string(detail).c_str(),
               tty && done != total ? "" : "\n");
  std::fflush(stderr);
}

std::string DeviceFromFlags() {
  std::string device = absl::GetFlag(FLAGS_device);
  return device.empty() ? runtime::DefaultDeviceName() : device;
}

}  // namespace kvcc::tools
