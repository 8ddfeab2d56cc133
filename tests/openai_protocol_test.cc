// serving/openai_protocol: request parsing (every field, defaults, unknown fields ignored, wrong
// types and ranges refused naming the field, bounded depth) and the shapes of responses,
// chunks, model lists and errors.
#include "serving/openai_protocol.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::serving {
namespace {

absl::StatusOr<OpenAiRequest> Completion(const std::string& body) {
  return ParseOpenAiRequest(body, Endpoint::kCompletions);
}
absl::StatusOr<OpenAiRequest> Chat(const std::string& body) {
  return ParseOpenAiRequest(body, Endpoint::kChat);
}
void ExpectRefused(const absl::StatusOr<OpenAiRequest>& r, const std::string& names) {
  ASSERT_FALSE(r.ok()) << names;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(names), std::string::npos) << r.status();
}

TEST(OpenAiProtocolTest, CompletionFieldsAndDefaults) {
  KVCC_ASSERT_OK_AND_ASSIGN(
      r, Completion(R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0.5,"top_p":0.9,
                       "top_k":40,"repetition_penalty":1.1,"seed":-3,"stop":["a","bc"],"n":2,
                       "stream":true,"stream_options":{"include_usage":true},"ignore_eos":true,
                       "logprobs":3,"user":"ignored","frequency_penalty":0})"));
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.prompt, "hi");
  EXPECT_FALSE(r.prompt_is_ids);
  EXPECT_EQ(*r.max_tokens, 5);
  EXPECT_DOUBLE_EQ(r.sampling.temperature, 0.5);
  EXPECT_DOUBLE_EQ(r.sampling.top_p, 0.9);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_DOUBLE_EQ(r.sampling.repetition_penalty, 1.1);
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.sampling.seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.top_logprobs, 3);

  KVCC_ASSERT_OK_AND_ASSIGN(d, Completion(R"({"model":"m","prompt":"hi","top_k":-1,"stop":null})"));
  EXPECT_EQ(*d.max_tokens, 16);
  EXPECT_DOUBLE_EQ(d.sampling.temperature, 1.0);
  EXPECT_EQ(d.sampling.top_k, 0);
  EXPECT_FALSE(d.seed_given);
  EXPECT_TRUE(d.stop.empty());
  EXPECT_EQ(d.n, 1);
  EXPECT_FALSE(d.stream);
  EXPECT_EQ(d.top_logprobs, -1);
  KVCC_ASSERT_OK_AND_ASSIGN(s, Completion(R"({"model":"m","prompt":"x","stop":"\n"})"));
  EXPECT_EQ(s.stop, std::vector<std::string>{"\n"});
}

TEST(OpenAiProtocolTest, PromptForms) {
  KVCC_ASSERT_OK_AND_ASSIGN(a, Completion(R"({"model":"m","prompt":[1,2,3]})"));
  EXPECT_TRUE(a.prompt_is_ids);
  EXPECT_EQ(a.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  KVCC_ASSERT_OK_AND_ASSIGN(b, Completion(R"({"model":"m","prompt":[[4,5]]})"));
  EXPECT_EQ(b.prompt_ids, (std::vector<int32_t>{4, 5}));
  KVCC_ASSERT_OK_AND_ASSIGN(c, Completion(R"({"model":"m","prompt":["text"]})"));
  EXPECT_EQ(c.prompt, "text");
  ExpectRefused(Completion(R"({"model":"m","prompt":["a","b"]})"), "one prompt per request");
  ExpectRefused(Completion(R"({"model":"m","prompt":[1,-2]})"), "prompt[1]");
  ExpectRefused(Completion(R"({"model":"m","prompt":[1,"a"]})"), "prompt[1]");
  ExpectRefused(Completion(R"({"model":"m","prompt":[1.5]})"), "prompt[0]");
  ExpectRefused(Completion(R"({"model":"m","prompt":[]})"), "'prompt'");
  ExpectRefused(Completion(R"({"model":"m","prompt":7})"), "'prompt'");
  ExpectRefused(Completion(R"({"model":"m"})"), "'prompt' is required");
}

TEST(OpenAiProtocolTest, ChatMessages) {
  KVCC_ASSERT_OK_AND_ASSIGN(
      r, Chat(R"({"model":"m","messages":[{"role":"developer","content":"be brief"},
                  {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                  {"role":"assistant","content":null}],"max_completion_tokens":9,"max_tokens":3,
                  "logprobs":true,"top_logprobs":4})"));
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(*r.max_tokens, 9);
  EXPECT_EQ(r.top_logprobs, 4);
  KVCC_ASSERT_OK_AND_ASSIGN(d, Chat(R"({"model":"m","messages":[{"role":"user","content":"x"}]})"));
  EXPECT_FALSE(d.max_tokens.has_value());  // chat runs to the end of the context by default
  EXPECT_EQ(d.top_logprobs, -1);
  ExpectRefused(Chat(R"({"model":"m","messages":[{"role":"tool","content":"x"}]})"),
                "messages[0].role");
  ExpectRefused(Chat(R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]})"),
                "messages[0].content[0].type");
  ExpectRefused(Chat(R"({"model":"m","messages":[{"role":"user","content":5}]})"),
                "messages[0].content");
  ExpectRefused(Chat(R"({"model":"m","messages":[]})"), "'messages'");
  ExpectRefused(Chat(R"({"model":"m","messages":["hi"]})"), "messages[0]");
  ExpectRefused(Chat(R"({"model":"m","messages":[{"content":"x"}]})"), "role");
  ExpectRefused(Chat(R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2})"),
                "'top_logprobs' needs 'logprobs'");
}

TEST(OpenAiProtocolTest, WrongTypesAndRangesNameTheField) {
  const std::string base = R"({"model":"m","prompt":"p",)";
  for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
           {"temperature", "\"hot\""}, {"temperature", "3"}, {"temperature", "-1"},
           {"top_p", "0"}, {"top_p", "1.5"}, {"top_k", "2.5"}, {"max_tokens", "0"},
           {"max_tokens", "\"5\""}, {"n", "0"}, {"n", "17"}, {"seed", "1.5"},
           {"stream", "1"}, {"ignore_eos", "\"yes\""}, {"logprobs", "21"},
           {"repetition_penalty", "0"}, {"stop", "[1]"}, {"stop", "[\"\"]"}, {"stop", "5"},
           {"stream_options", "[]"}, {"best_of", "3"}, {"echo", "true"}}) {
    SCOPED_TRACE(field + "=" + value);
    ExpectRefused(Completion(base + "\"" + field + "\":" + value + "}"), field);
  }
  ExpectRefused(Completion(R"({"prompt":"p"})"), "model");
  ExpectRefused(Completion(R"({"model":5,"prompt":"p"})"), "model");
  ExpectRefused(Completion("[1,2]"), "JSON object");
  EXPECT_FALSE(Completion("{\"model\":").ok());
  EXPECT_FALSE(Completion("").ok());
  std::string deep(100, '[');
  ExpectRefused(Completion(R"({"model":"m","prompt":"p","x":)" + deep), "nested deeper");
  std::string many = R"({"model":"m","prompt":"p","stop":[)";
  for (int i = 0; i < 17; ++i) many += std::string(i ? "," : "") + "\"s\"";
  ExpectRefused(Completion(many + "]}"), "'stop'");
}

TEST(OpenAiProtocolTest, ResponseAndChunkShapes) {
  ResponseHeader h{"cmpl-1", 123, "m"};
  ChoiceOutput c;
  c.text = "hello";
  c.finish_reason = "stop";
  c.has_logprobs = true;
  c.logprobs = {{"he", -0.5f, {{"he", -0.5f}, {"ha", -1.0f}}}, {"llo", -0.25f, {}}};
  ir::Json r = ResponseJson(Endpoint::kCompletions, h, {c}, {3, 2});
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["choices"][0]["text"], "hello");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(r["choices"][0]["logprobs"]["tokens"], (ir::Json{"he", "llo"}));
  EXPECT_EQ(r["choices"][0]["logprobs"]["text_offset"], (ir::Json{0, 2}));
  EXPECT_EQ(r["choices"][0]["logprobs"]["top_logprobs"][0]["ha"], -1.0);
  EXPECT_EQ(r["usage"]["total_tokens"], 5);
  ir::Json chat = ResponseJson(Endpoint::kChat, h, {c}, {3, 2});
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(chat["choices"][0]["logprobs"]["content"][0]["bytes"], (ir::Json{104, 101}));
  EXPECT_EQ(chat["choices"][0]["logprobs"]["content"][0]["top_logprobs"][1]["token"], "ha");

  ChoiceOutput d;
  d.index = 1;
  ir::Json first = ChunkJson(Endpoint::kChat, h, {d}, true, std::nullopt);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first["usage"].is_null());
  ir::Json usage = ChunkJson(Endpoint::kCompletions, h, {}, false, Usage{4, 6});
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 6);
  EXPECT_EQ(ModelsJson("m", 1)["data"][0]["id"], "m");
}

TEST(OpenAiProtocolTest, ErrorsAndStatuses) {
  ir::Json e = ir::Json::parse(ErrorJson(429, "slow down"));
  EXPECT_EQ(e["error"]["message"], "slow down");
  EXPECT_EQ(e["error"]["type"], "rate_limit_error");
  EXPECT_EQ(HttpStatusFor(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusFor(absl::ResourceExhaustedError("x")), 429);
  EXPECT_EQ(HttpStatusFor(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusFor(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusFor(absl::InternalError("x")), 500);
  // Invalid UTF-8 in a token text is replaced, not a failure.
  EXPECT_FALSE(DumpJson(ir::Json{{"t", std::string("\xff")}}).empty());
}

}  // namespace
}  // namespace kvcc::serving
