// The OpenAI wire format of `kvcc serve`: request bodies of /v1/completions and
// /v1/chat/completions parsed and validated (wrong types and ranges refused, naming the field;
// unknown fields ignored), and the response, chunk, model-list and error JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/json_reader.h"
#include "runtime/sampler.h"
#include "tokenizer/chat_template.h"

namespace kvcc::serving {

enum class Endpoint { kCompletions, kChat };

// Bounds on what one request may ask for (the HTTP layer bounds the body's bytes).
struct ProtocolLimits {
  int max_n = 16;
  int max_stop = 16;              // stop strings
  int max_stop_bytes = 256;       // per stop string
  int max_messages = 1024;
  int64_t max_prompt_ids = 1 << 20;  // a prompt given as token ids
  int max_tokens = 1 << 20;
  int max_json_depth = 32;
};

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  // Completions: the prompt as text, or as token ids when `prompt_is_ids`.
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  bool prompt_is_ids = false;
  // Chat: the conversation (content parts of type "text" joined).
  std::vector<tokenizer::ChatMessage> messages;

  std::optional<int> max_tokens;  // max_completion_tokens wins over max_tokens
  runtime::SamplingParams sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;
  // -1: no logprobs; else the number of alternatives per token (completions' `logprobs`,
  // chat's `top_logprobs` with `logprobs: true`).
  int top_logprobs = -1;
};

// Parses one request body. Errors are InvalidArgument with the field named (the HTTP status is
// 400 for all of them).
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(absl::string_view body, Endpoint endpoint,
                                                 const ProtocolLimits& limits = {});

// {"error": {"message", "type", "param", "code"}} with the type OpenAI uses for `http_status`.
std::string ErrorJson(int http_status, absl::string_view message);
// The HTTP status for a Status from parsing, tokenizing or submitting a request.
int HttpStatusFor(const absl::Status& status);

// nlohmann dump that replaces invalid UTF-8 instead of failing (token texts may be partial).
std::string DumpJson(const ir::Json& j);

// One generated token's log-probability and its most likely alternatives, as text.
struct LogprobEntry {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

// One choice of a response or a chunk: `text` is the whole text (response) or the delta
// (chunk); `finish_reason` empty while running.
struct ChoiceOutput {
  int index = 0;
  std::string text;
  std::vector<LogprobEntry> logprobs;
  bool has_logprobs = false;
  std::string finish_reason;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

struct ResponseHeader {
  std::string id;
  int64_t created = 0;
  std::string model;
};

// The full (non-streaming) response.
ir::Json ResponseJson(Endpoint endpoint, const ResponseHeader& header,
                      const std::vector<ChoiceOutput>& choices, const Usage& usage);
// One streaming chunk. For chat, `first` adds the assistant role to the delta. `usage` set gives
// the final usage-only chunk (choices empty) of stream_options.include_usage.
ir::Json ChunkJson(Endpoint endpoint, const ResponseHeader& header,
                   const std::vector<ChoiceOutput>& choices, bool first,
                   const std::optional<Usage>& usage);
// GET /v1/models.
ir::Json ModelsJson(const std::string& model_name, int64_t created);

}  // namespace kvcc::serving
