#include "serving/openai_protocol.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::serving {
namespace {

constexpr const char* kSource = "request body";

absl::Status BadField(const std::string& field, const ir::Json& value,
                      absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat(kSource, ": '", field, "' is ",
                                                 ir::ShowJson(value), ", expected ", expected));
}

absl::StatusOr<std::vector<int32_t>> TokenIds(const ir::Json& array, const std::string& field,
                                              const ProtocolLimits& limits) {
  if (static_cast<int64_t>(array.size()) > limits.max_prompt_ids) {
    return absl::InvalidArgumentError(absl::StrCat(kSource, ": '", field, "' has ", array.size(),
                                                   " token ids, more than the limit of ",
                                                   limits.max_prompt_ids));
  }
  std::vector<int32_t> ids;
  ids.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const ir::Json& v = array[i];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
        v.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return BadField(absl::StrCat(field, "[", i, "]"), v, "a token id (a non-negative integer)");
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

absl::Status ParsePrompt(const ir::Json& body, const ProtocolLimits& limits, OpenAiRequest& r) {
  if (!body.contains("prompt") || body["prompt"].is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(kSource, ": 'prompt' is required"));
  }
  const ir::Json& p = body["prompt"];
  const char* expected = "a string, a list of token ids, or a list holding one of those";
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
    return absl::OkStatus();
  }
  if (!p.is_array() || p.empty()) return BadField("prompt", p, expected);
  if (p[0].is_number()) {
    KVCC_ASSIGN_OR_RETURN(r.prompt_ids, TokenIds(p, "prompt", limits));
    r.prompt_is_ids = true;
    return absl::OkStatus();
  }
  if (p.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        kSource, ": 'prompt' holds ", p.size(), " prompts; send one prompt per request"));
  }
  if (p[0].is_string()) {
    r.prompt = p[0].get<std::string>();
    return absl::OkStatus();
  }
  if (p[0].is_array() && !p[0].empty()) {
    KVCC_ASSIGN_OR_RETURN(r.prompt_ids, TokenIds(p[0], "prompt[0]", limits));
    r.prompt_is_ids = true;
    return absl::OkStatus();
  }
  return BadField("prompt", p, expected);
}

absl::StatusOr<std::string> MessageContent(const ir::Json& content, const std::string& field) {
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return BadField(field, content, "a string or a list of text parts");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const ir::Json& part = content[i];
    const std::string name = absl::StrCat(field, "[", i, "]");
    if (!part.is_object()) return BadField(name, part, "a content part object");
    ir::JsonReader reader(part, kSource, name + ".");
    KVCC_ASSIGN_OR_RETURN(std::string type, reader.String("type"));
    if (type != "text") {
      return absl::InvalidArgumentError(absl::StrCat(
          kSource, ": '", name, ".type' is \"", type, "\"; this model takes only text parts"));
    }
    KVCC_ASSIGN_OR_RETURN(std::string t, reader.String("text"));
    text += t;
  }
  return text;
}

absl::Status ParseMessages(const ir::Json& body, const ProtocolLimits& limits, OpenAiRequest& r) {
  if (!body.contains("messages") || body["messages"].is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(kSource, ": 'messages' is required"));
  }
  const ir::Json& m = body["messages"];
  if (!m.is_array() || m.empty()) return BadField("messages", m, "a non-empty list of messages");
  if (static_cast<int>(m.size()) > limits.max_messages) {
    return absl::InvalidArgumentError(absl::StrCat(kSource, ": 'messages' has ", m.size(),
                                                   " messages, more than the limit of ",
                                                   limits.max_messages));
  }
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string name = absl::StrCat("messages[", i, "]");
    if (!m[i].is_object()) return BadField(name, m[i], "a message object");
    ir::JsonReader reader(m[i], kSource, name + ".");
    KVCC_ASSIGN_OR_RETURN(std::string role, reader.String("role"));
    // "developer" is the newer name of the system role.
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat(
          kSource, ": '", name, ".role' is \"", role, "\", expected system, user or assistant"));
    }
    const ir::Json null_content;
    const ir::Json& content = m[i].contains("content") ? m[i]["content"] : null_content;
    KVCC_ASSIGN_OR_RETURN(std::string text, MessageContent(content, name + ".content"));
    r.messages.push_back({role, std::move(text)});
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const ir::Json& body, const ProtocolLimits& limits, OpenAiRequest& r) {
  if (!body.contains("stop") || body["stop"].is_null()) return absl::OkStatus();
  const ir::Json& s = body["stop"];
  std::vector<const ir::Json*> items;
  if (s.is_string()) {
    items.push_back(&s);
  } else if (s.is_array()) {
    for (const ir::Json& v : s) items.push_back(&v);
  } else {
    return BadField("stop", s, "a string or a list of strings");
  }
  if (static_cast<int>(items.size()) > limits.max_stop) {
    return absl::InvalidArgumentError(absl::StrCat(kSource, ": 'stop' has ", items.size(),
                                                   " strings, more than the limit of ",
                                                   limits.max_stop));
  }
  for (const ir::Json* v : items) {
    if (!v->is_string() || v->get<std::string>().empty() ||
        static_cast<int>(v->get<std::string>().size()) > limits.max_stop_bytes) {
      return BadField("stop", *v,
                      absl::StrCat("non-empty strings of at most ", limits.max_stop_bytes,
                                   " bytes"));
    }
    r.stop.push_back(v->get<std::string>());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(absl::string_view body, Endpoint endpoint,
                                                 const ProtocolLimits& limits) {
  ir::JsonLimits json_limits;
  json_limits.max_depth = limits.max_json_depth;
  KVCC_ASSIGN_OR_RETURN(ir::Json j, ir::ParseJson(body, kSource, json_limits));
  if (!j.is_object()) return BadField("(body)", j, "a JSON object");
  OpenAiRequest r;
  r.endpoint = endpoint;
  ir::JsonReader reader(j, kSource);
  KVCC_ASSIGN_OR_RETURN(r.model, reader.String("model"));
  if (endpoint == Endpoint::kCompletions) {
    KVCC_RETURN_IF_ERROR(ParsePrompt(j, limits, r));
  } else {
    KVCC_RETURN_IF_ERROR(ParseMessages(j, limits, r));
  }
  const char* max_key = endpoint == Endpoint::kChat && reader.Has("max_completion_tokens")
                            ? "max_completion_tokens"
                            : "max_tokens";
  if (reader.Has(max_key)) {
    KVCC_ASSIGN_OR_RETURN(int64_t m, reader.Int(max_key, 1, limits.max_tokens));
    r.max_tokens = static_cast<int>(m);
  } else if (endpoint == Endpoint::kCompletions) {
    r.max_tokens = 16;  // OpenAI's default for completions; chat runs to the context's end
  }
  KVCC_ASSIGN_OR_RETURN(r.sampling.temperature, reader.Float("temperature", 0, false, 2, 1.0));
  KVCC_ASSIGN_OR_RETURN(r.sampling.top_p, reader.Float("top_p", 0, true, 1, 1.0));
  // vLLM spells "off" -1; the sampler 0.
  KVCC_ASSIGN_OR_RETURN(int64_t top_k, reader.Int("top_k", -1, 1 << 20, 0));
  r.sampling.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);
  KVCC_ASSIGN_OR_RETURN(r.sampling.repetition_penalty,
                        reader.Float("repetition_penalty", 0, true, 100, 1.0));
  if (reader.Has("seed")) {
    KVCC_ASSIGN_OR_RETURN(int64_t seed, reader.Int("seed", std::numeric_limits<int64_t>::min(),
                                                   std::numeric_limits<int64_t>::max()));
    r.sampling.seed = static_cast<uint64_t>(seed);
    r.seed_given = true;
  }
  KVCC_ASSIGN_OR_RETURN(int64_t n, reader.Int("n", 1, limits.max_n, 1));
  r.n = static_cast<int>(n);
  KVCC_RETURN_IF_ERROR(ParseStop(j, limits, r));
  KVCC_ASSIGN_OR_RETURN(r.stream, reader.Bool("stream", false));
  if (reader.Has("stream_options")) {
    KVCC_ASSIGN_OR_RETURN(ir::JsonReader options, reader.Object("stream_options"));
    KVCC_ASSIGN_OR_RETURN(r.include_usage, options.Bool("include_usage", false));
  }
  KVCC_ASSIGN_OR_RETURN(r.ignore_eos, reader.Bool("ignore_eos", false));
  if (endpoint == Endpoint::kCompletions) {
    if (reader.Has("logprobs")) {
      KVCC_ASSIGN_OR_RETURN(int64_t lp, reader.Int("logprobs", 0, 20));
      r.top_logprobs = static_cast<int>(lp);
    }
    if (reader.Has("echo")) {
      KVCC_ASSIGN_OR_RETURN(bool echo, reader.Bool("echo"));
      if (echo) {
        return absl::InvalidArgumentError(absl::StrCat(kSource, ": 'echo' is not supported"));
      }
    }
  } else {
    KVCC_ASSIGN_OR_RETURN(bool logprobs, reader.Bool("logprobs", false));
    KVCC_ASSIGN_OR_RETURN(int64_t top, reader.Int("top_logprobs", 0, 20, 0));
    if (reader.Has("top_logprobs") && !logprobs) {
      return absl::InvalidArgumentError(
          absl::StrCat(kSource, ": 'top_logprobs' needs 'logprobs': true"));
    }
    if (logprobs) r.top_logprobs = static_cast<int>(top);
  }
  if (reader.Has("best_of")) {
    KVCC_ASSIGN_OR_RETURN(int64_t best_of, reader.Int("best_of", 1, limits.max_n));
    if (best_of != r.n) {
      return absl::InvalidArgumentError(
          absl::StrCat(kSource, ": 'best_of' ", best_of, " differs from 'n' ", r.n,
                       "; best_of is not supported"));
    }
  }
  KVCC_RETURN_IF_ERROR(r.sampling.Validate());
  return r;
}

std::string DumpJson(const ir::Json& j) {
  return j.dump(-1, ' ', false, ir::Json::error_handler_t::replace);
}

std::string ErrorJson(int http_status, absl::string_view message) {
  const char* type = http_status == 401   ? "authentication_error"
                     : http_status == 404 ? "not_found_error"
                     : http_status == 429 ? "rate_limit_error"
                     : http_status >= 500 ? "server_error"
                                          : "invalid_request_error";
  ir::Json e = {{"message", std::string(message)},
                {"type", type},
                {"param", nullptr},
                {"code", nullptr}};
  return DumpJson(ir::Json{{"error", e}});
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

namespace {

ir::Json LogprobsJson(Endpoint endpoint, const ChoiceOutput& c) {
  if (!c.has_logprobs) return nullptr;
  if (endpoint == Endpoint::kCompletions) {
    ir::Json tokens = ir::Json::array(), lps = ir::Json::array(), tops = ir::Json::array(),
             offsets = ir::Json::array();
    int64_t offset = 0;
    for (const LogprobEntry& e : c.logprobs) {
      tokens.push_back(e.token);
      lps.push_back(e.logprob);
      ir::Json top = ir::Json::object();
      for (const auto& [t, lp] : e.top) top[t] = lp;
      tops.push_back(top);
      offsets.push_back(offset);
      offset += static_cast<int64_t>(e.token.size());
    }
    return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops},
            {"text_offset", offsets}};
  }
  auto bytes = [](const std::string& s) {
    ir::Json b = ir::Json::array();
    for (unsigned char ch : s) b.push_back(static_cast<int>(ch));
    return b;
  };
  ir::Json content = ir::Json::array();
  for (const LogprobEntry& e : c.logprobs) {
    ir::Json top = ir::Json::array();
    for (const auto& [t, lp] : e.top) {
      top.push_back({{"token", t}, {"logprob", lp}, {"bytes", bytes(t)}});
    }
    content.push_back(
        {{"token", e.token}, {"logprob", e.logprob}, {"bytes", bytes(e.token)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

// What a choice carries in responses and chunks alike; completions put the text here too.
ir::Json ChoiceBase(Endpoint endpoint, const ChoiceOutput& c) {
  ir::Json choice = {{"index", c.index},
                     {"logprobs", LogprobsJson(endpoint, c)},
                     {"finish_reason", c.finish_reason.empty() ? ir::Json(nullptr)
                                                               : ir::Json(c.finish_reason)}};
  if (endpoint == Endpoint::kCompletions) choice["text"] = c.text;
  return choice;
}

ir::Json UsageJson(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

ir::Json Envelope(Endpoint endpoint, const ResponseHeader& h, bool chunk) {
  const char* object = endpoint == Endpoint::kCompletions ? "text_completion"
                       : chunk                            ? "chat.completion.chunk"
                                                          : "chat.completion";
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

}  // namespace

ir::Json ResponseJson(Endpoint endpoint, const ResponseHeader& header,
                      const std::vector<ChoiceOutput>& choices, const Usage& usage) {
  ir::Json j = Envelope(endpoint, header, false);
  ir::Json list = ir::Json::array();
  for (const ChoiceOutput& c : choices) {
    ir::Json choice = ChoiceBase(endpoint, c);
    if (endpoint == Endpoint::kChat) choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    list.push_back(choice);
  }
  j["choices"] = list;
  j["usage"] = UsageJson(usage);
  return j;
}

ir::Json ChunkJson(Endpoint endpoint, const ResponseHeader& header,
                   const std::vector<ChoiceOutput>& choices, bool first,
                   const std::optional<Usage>& usage) {
  ir::Json j = Envelope(endpoint, header, true);
  ir::Json list = ir::Json::array();
  for (const ChoiceOutput& c : choices) {
    ir::Json choice = ChoiceBase(endpoint, c);
    if (endpoint == Endpoint::kChat) {
      ir::Json delta = ir::Json::object();
      if (first) delta["role"] = "assistant";
      if (!c.text.empty() || first) delta["content"] = c.text;
      choice["delta"] = delta;
    }
    list.push_back(choice);
  }
  j["choices"] = list;
  j["usage"] = usage ? UsageJson(*usage) : ir::Json(nullptr);
  return j;
}

ir::Json ModelsJson(const std::string& model_name, int64_t created) {
  ir::Json model = {{"id", model_name}, {"object", "model"}, {"created", created},
                    {"owned_by", "kvcc"}};
  return {{"object", "list"}, {"data", ir::Json::array({model})}};
}

}  // namespace kvcc::serving
