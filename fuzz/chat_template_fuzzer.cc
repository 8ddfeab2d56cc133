// libFuzzer target for the Jinja chat-template interpreter (tokenizer/jinja_*). Input: template
// text, rendered over a fixed conversation (system, user, assistant with a tool call, tool,
// empty and unicode content) with tools and both generation-prompt settings, under small
// limits. Any crash, sanitizer report, hang or runaway memory is a finding; so is an error
// with an empty message, or a render exceeding the output limit.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "nlohmann/json.hpp"
#include "tokenizer/jinja_template.h"
#include "tokenizer/jinja_value.h"

namespace {

using kvcc::tokenizer::jinja::FromJson;
using kvcc::tokenizer::jinja::Template;
using kvcc::tokenizer::jinja::TemplateLimits;
using kvcc::tokenizer::jinja::Value;
using kvcc::tokenizer::jinja::ValueDict;

void Die(const std::string& what) {
  std::fprintf(stderr, "chat_template_fuzzer: %s\n", what.c_str());
  std::abort();
}

const ValueDict& Globals() {
  static const ValueDict* globals = [] {
    const auto data = nlohmann::ordered_json::parse(R"({
      "messages": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Hi \u00e9 \ud83d\ude00\n"},
                   {"role": "assistant", "content": "", "tool_calls": [{"id": "abc123xyz", "type": "function",
                     "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": [1, 2.5, true, null]}}}]},
                   {"role": "tool", "tool_call_id": "abc123xyz", "content": "22"},
                   {"role": "user", "content": ""}],
      "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})");
    auto* g = new ValueDict;
    g->emplace_back("messages", FromJson(data["messages"]));
    g->emplace_back("tools", FromJson(data["tools"]));
    g->emplace_back("bos_token", Value::String("<s>"));
    g->emplace_back("eos_token", Value::String("</s>"));
    return g;
  }();
  return *globals;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  TemplateLimits limits;
  limits.max_steps = 200000;
  limits.max_output_bytes = 1 << 18;
  limits.max_alloc_bytes = 1 << 24;
  limits.max_items = 1 << 14;
  auto t = Template::Parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.jinja", limits);
  if (!t.ok()) {
    if (t.status().message().empty()) Die("parse error without a message");
    return 0;
  }
  for (bool gen : {false, true}) {
    ValueDict globals = Globals();
    globals.emplace_back("add_generation_prompt", Value::Bool(gen));
    auto out = t->Render(globals);
    if (!out.ok()) {
      if (out.status().message().empty()) Die("render error without a message");
    } else if (static_cast<int64_t>(out->size()) > limits.max_output_bytes) {
      Die("render exceeded the output limit");
    }
  }
  return 0;
}
