// libFuzzer target for the OpenAI request parser of `kvcc serve` (serving/openai_protocol.cc).
// Input: one byte choosing the endpoint (even: completions, odd: chat), then the request body.
// Any crash or sanitizer report is a finding, and so is an accepted request outside the
// limits, with sampling settings the sampler refuses, or whose echo into response JSON fails.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "serving/openai_protocol.h"

namespace {

void Die(const std::string& what) {
  std::fprintf(stderr, "openai_request_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvcc::serving;
  if (size < 1) return 0;
  const Endpoint endpoint = data[0] % 2 == 0 ? Endpoint::kCompletions : Endpoint::kChat;
  const ProtocolLimits limits;
  absl::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto r = ParseOpenAiRequest(body, endpoint, limits);
  if (!r.ok()) {
    if (r.status().message().empty()) Die("error without a message");
    if (r.status().code() != absl::StatusCode::kInvalidArgument) Die("error is not a 400");
    return 0;
  }
  if (r->n < 1 || r->n > limits.max_n) Die("n out of range");
  if (static_cast<int>(r->stop.size()) > limits.max_stop) Die("too many stop strings");
  for (const std::string& s : r->stop) {
    if (s.empty() || static_cast<int>(s.size()) > limits.max_stop_bytes) Die("bad stop string");
  }
  if (r->max_tokens.has_value() && (*r->max_tokens < 1 || *r->max_tokens > limits.max_tokens)) {
    Die("max_tokens out of range");
  }
  if (r->top_logprobs < -1 || r->top_logprobs > 20) Die("top_logprobs out of range");
  if (!r->sampling.Validate().ok()) Die("accepted sampling settings the sampler refuses");
  if (endpoint == Endpoint::kChat) {
    if (r->messages.empty() || static_cast<int>(r->messages.size()) > limits.max_messages) {
      Die("message count out of range");
    }
  } else if (r->prompt_is_ids && (r->prompt_ids.empty() ||
                                  static_cast<int64_t>(r->prompt_ids.size()) > limits.max_prompt_ids)) {
    Die("prompt id count out of range");
  }
  // Whatever text a request carries must survive the trip into response JSON (the server
  // echoes model names and, through the model, arbitrary bytes).
  ChoiceOutput c;
  c.text = endpoint == Endpoint::kChat ? r->messages.back().content : r->prompt;
  c.has_logprobs = true;
  c.logprobs.push_back({r->model, -1.0f, {{c.text, -2.0f}}});
  const ResponseHeader h{"id", 0, r->model};
  if (DumpJson(ResponseJson(endpoint, h, {c}, {1, 1})).empty()) Die("empty response JSON");
  if (DumpJson(ChunkJson(endpoint, h, {c}, true, std::nullopt)).empty()) Die("empty chunk JSON");
  if (ErrorJson(400, r->model).empty()) Die("empty error JSON");
  return 0;
}
