// What every kvcc subcommand shares beyond its flags: one format for reporting a failure, the
// model's tokenizer on its own, and the progress bar that long runs draw on stderr.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace kvcc::tools {

// Prints "kvcc <command>: <message>" on stderr and returns `exit_code`, so a command can
// `return Fail("ppl", status);`.
int Fail(absl::string_view command, const absl::Status& status, int exit_code = 1);

// The model's tokenizer (tokenizer.json preferred, else tokenizer.model).
absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> OpenTokenizer(const std::string& model);

// A dataset's text as ids the way ppl, calibrate and kvcompare window it: no BOS or EOS (the
// windows add BOS themselves) and special-token spellings tokenized as plain text.
absl::StatusOr<std::vector<int32_t>> EncodeDatasetText(const tokenizer::Tokenizer& tok,
                                                       absl::string_view text);

// A runtime::Generate on_token callback that prints each token's text to stdout as soon as
// `stream` makes it final (the caller prints stream.Finish() after generation).
std::function<absl::Status(int32_t)> PrintToStdout(tokenizer::StreamDecoder& stream);

// "[####....] done/total <unit>  <detail>" on stderr: redrawn in place on a terminal, and in
// logs one line per tenth of the work (so a redirected run is not flooded).
void DrawProgress(int64_t done, int64_t total, absl::string_view detail,
                  absl::string_view unit = "windows");

// --device, or the GPU when one is present and the CPU otherwise.
std::string DeviceFromFlags();

}  // namespace kvcc::tools
