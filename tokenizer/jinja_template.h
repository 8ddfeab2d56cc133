// A Jinja2 template interpreter for the chat templates models ship (the subset of jinja2 that
// transformers' apply_chat_template runs: for/if/set/macro, namespace(), loop variables, the
// common filters, tests and str/dict methods, raise_exception, strftime_now), bounded so that a
// hostile template can neither hang, crash nor exhaust memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenizer/jinja_parser.h"
#include "tokenizer/jinja_value.h"

namespace kvcc::tokenizer::jinja {

struct TemplateLimits {
  int64_t max_output_bytes = int64_t{16} << 20;  // the rendered text, any captured block or string
  int64_t max_alloc_bytes = int64_t{1} << 30;    // strings and lists built, summed over the render
  int64_t max_steps = 50'000'000;                // statements and expressions evaluated
  int64_t max_items = 1 << 20;                   // elements of one list (range(), split(), ...)
  int max_call_depth = 24;                       // nested macro calls
};

class Template {
 public:
  // `name` (e.g. the file the template came from) prefixes every error, parse and render.
  static absl::StatusOr<Template> Parse(absl::string_view source, std::string name,
                                        const TemplateLimits& limits = {});

  // Renders with `globals` (messages, add_generation_prompt, bos_token, ...) on top of the
  // builtins (range, namespace, raise_exception, strftime_now, dict). A raise_exception(msg)
  // is an error carrying msg; so is anything unsupported, naming the line and column.
  absl::StatusOr<std::string> Render(const ValueDict& globals) const;

 private:
  Template() = default;
  std::string name_;
  TemplateLimits limits_;
  std::shared_ptr<const NodeList> root_;
};

}  // namespace kvcc::tokenizer::jinja
