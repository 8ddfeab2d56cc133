// The Jinja interpreter's pieces (lexer whitespace control, values' Python semantics, parser
// errors, limits) and, against Python jinja2 as transformers configures it, byte-identical
// output over snippets exercising each statement, operator, filter, test and method.
#include "tokenizer/jinja_template.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/render_chat_oracle.h"
#include "tests/test_util.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/jinja_value.h"

namespace kvcc::tokenizer::jinja {
namespace {

using ojson = nlohmann::ordered_json;

const char* kData = R"({
  "messages": [{"role": "system", "content": " Be brief. "},
               {"role": "user", "content": "Hi \u00e9\u4e2d \ud83d\ude00\n"},
               {"role": "assistant", "content": "Hello", "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "a": [true, null, 2.5]}}}]},
               {"role": "user", "content": ""}],
  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather \"now\"", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
  "n": 7, "f": 2.5, "s": "a,b,,c", "flag": true, "nothing": null
})";

ValueDict Globals() {
  const ojson data = ojson::parse(kData);
  ValueDict g;
  for (auto it = data.begin(); it != data.end(); ++it) g.emplace_back(it.key(), FromJson(it.value()));
  g.emplace_back("bos_token", Value::String("<s>"));
  g.emplace_back("eos_token", Value::String("</s>"));
  return g;
}

absl::StatusOr<std::string> Render(const std::string& src, const TemplateLimits& limits = {}) {
  auto t = Template::Parse(src, "t.jinja", limits);
  if (!t.ok()) return t.status();
  return t->Render(Globals());
}

// Snippets whose output (or failure) must match jinja2's exactly.
const std::vector<std::string> kSnippets = {
    // whitespace control, trim_blocks / lstrip_blocks, comments, trailing newline
    "  {% if true %}\n  x\n  {% endif %}\n  y\n",
    "a  {%- if true -%}  b  {%- endif -%}  c",
    "a\n  {#- c -#}\n  b\n",
    "{% for m in messages %}\n    {{ m.role }}\n{% endfor %}\n",
    "{%+ if true %}x{% endif +%}\ny",
    "  {{ 'v' }}  \n{% if true %}  \n{% endif %}",
    "line1\r\nline2\r\n{% if true %}\r\nz{% endif %}",
    "{{- ' a ' -}}\n\n{{ 'b' }}",
    // literals, str() and repr()
    "{{ none }} {{ true }} {{ 1.0 }} {{ 1e20 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 1_000 }} {{ [1, 'a', none, [2.5]] }}",
    "{{ {'k': \"q'\", 'u': '\\u00e9\\n\\t\\x01'} }} {{ ('a',) }} {{ () }} {{ \"it's\" }} {{ ['it\\'s', 'a\"b'] }}",
    "{{ 'a' 'b' }} {{ \"\\\\n\" }} {{ '\\q' }}",
    // arithmetic, concatenation, comparison, logic
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 1 + 2.5 }} {{ -n }}",
    "{{ 'x' ~ 1 ~ none ~ true ~ nope }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ 'ab' * 3 }} {{ [0] * 2 }}",
    "{{ 1 == 1.0 }} {{ true == 1 }} {{ [1] == [1.0] }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 5 }} {{ {'a': 1} == {'a': 1} }}",
    "{{ 1 and 'x' }} {{ 0 or '' or 'z' }} {{ not none }} {{ 'a' in 'cat' }} {{ 'r' not in {'r': 1} }} {{ 2 in [1, 2] }}",
    "{{ 'y' if flag else 'n' }} {{ 'y' if not flag }}|{{ 'a' if n > 5 else 'b' if n > 2 else 'c' }}",
    "{{ 'a' + 1 }}",
    "{{ 1 / 0 }}",
    "{{ nope.attr }}",
    "{{ nope + 'x' }}",
    // subscripts, slices, attributes, undefined
    "{{ messages[0]['role'] }} {{ messages[-1].role }} {{ messages[9] }}|{{ messages[0].nope }}|{{ s[1:] }} {{ s[::-1] }} {{ s[-3:-1] }} {{ messages[1:][0].role }}",
    "{{ messages[1].content[1] }} {{ messages[1].content[:4] }} {{ [1, 2, 3, 4][::2] }} {{ [1, 2, 3][5:] }} {{ (1, 2, 3)[1:] }}",
    "{{ x is defined }} {{ x is undefined }} {{ x }}|{{ x | length }} {{ nothing is none }} {{ n is number }} {{ f is float }} {{ n is integer }}",
    // tests
    "{{ s is string }} {{ messages is iterable }} {{ messages[0] is mapping }} {{ s is sequence }} {{ flag is boolean }} {{ flag is true }} {{ flag is false }}",
    "{{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }} {{ n is eq 7 }} {{ n is equalto(7) }} {{ n is ne 7 }} {{ n is gt 3 }} {{ n is lt(3) }} {{ n is ge 7 }} {{ n is le 6 }}",
    "{{ 'abc' is lower }} {{ 'ABC' is upper }} {{ none is sameas none }} {{ flag is sameas true }} {{ 'a' is in 'abc' }} {{ range is callable }} {{ n is not none }}",
    // filters
    "{{ ' x ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ messages | length }} {{ s | count }} {{ 'AbC' | lower }} {{ 'abc' | upper }} {{ 'hello world' | capitalize }} {{ 'hello wORLD a-b' | title }}",
    "{{ ['a', 'b'] | join(', ') }} {{ [1, none] | join }} {{ messages | map(attribute='role') | join('/') }} {{ messages | first | tojson }} {{ s | last }}",
    "{{ x | default('d') }} {{ '' | default('e', true) }} {{ none | d('n') }} {{ messages | items | list if false else 'z' }} {{ {'a': 1, 'b': [2]} | items | list }}",
    "{{ 'abc' | list }} {{ {'k': 1} | list }} {{ 42 | string }} {{ '12' | int + 1 }} {{ '3.7' | int }} {{ 'x' | int }} {{ 'x' | int(5) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ true | int }}",
    "{{ 'aXbX' | replace('X', '-') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'ab' | replace('', '.') }} {{ '<&>' | safe }} {{ '<a href=\"x\">' | e }} {{ [3, 1, 2] | reverse | list }} {{ 'abc' | reverse }}",
    "{{ ['b', 'A', 'c'] | sort | list }} {{ [3, 1, 2] | sort(reverse=true) | list }} {{ messages | sort(attribute='role') | map(attribute='role') | list }} {{ [1, 2, 1, 3] | unique | list }} {{ -3 | abs }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }} {{ messages | selectattr('tool_calls') | list | length }}",
    "{{ messages | selectattr('tool_calls', 'undefined') | list | length }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ [0, 1, '', 'a'] | select | list }} {{ [1, 2, 3] | reject('gt', 1) | list }} {{ ['a', 'B'] | map('upper') | list }}",
    "{{ tools | tojson }}\n{{ tools[0] | tojson(indent=2) }}\n{{ messages[2].tool_calls[0].function.arguments | tojson(sort_keys=true) }} {{ 'é\"\\n' | tojson }} {{ 'é' | tojson(ensure_ascii=true) }} {{ [1, 2] | tojson(separators=(',', ':')) }} {{ 1.5 | tojson }} {{ none | tojson }}",
    "{{ {'a': {}, 'b': []} | tojson(indent=4) }} {{ {'x': 1} | tojson(indent='\\t') }}",
    "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}",
    // string methods
    "{{ ' a b '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'aBc'.upper() }} {{ 'aBc'.lower() }} {{ 'ab cd'.title() }} {{ 'ab cd'.capitalize() }}",
    "{{ s.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ s.split(',', 2) }} {{ 'a-b'.replace('-', '+') }} {{ '-'.join(['x', 'y']) }} {{ 'hello'.find('l') }} {{ 'hello'.find('z') }}",
    // dict methods
    "{% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %} {{ messages[0].keys() | list }} {{ messages[0].values() | list }} {{ messages[0].get('role') }} {{ messages[0].get('x', 'dflt') }} {{ messages[0].get('x') }}",
    // loops
    "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{% if not loop.first %}{{ loop.previtem.role }}{% endif %}{% if not loop.last %}{{ loop.nextitem.role }}{% endif %}{{ loop.cycle('a', 'b') }};{% endfor %}",
    "{% for m in messages if m.role == 'user' %}{{ loop.index }}/{{ loop.length }} {% endfor %}{% for x in [] %}no{% else %}empty{% endfor %}",
    "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %} {{ range(2, 8, 3) | list }} {{ range(5, 0, -2) | list }}",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %} {% for c in 'hé' %}[{{ c }}]{% endfor %} {% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}",
    "{% for i in [1, 2] %}{% for j in [3, 4] %}{{ loop.index }}{{ i * j }} {% endfor %}{{ loop.index }}|{% endfor %}",
    // scoping, set, namespace
    "{% set c = 0 %}{% for i in range(3) %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}",
    "{% set ns = namespace(count=0, found=false) %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{% if m.role == 'assistant' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = (1, 'x') %}{{ t }} {% set block %}in {{ n }}\n{% endset %}[{{ block }}]",
    "{% set messages = messages[1:] %}{{ messages | length }} {{ messages[0].role }}",
    "{% set d = dict(a=1, b='x') %}{{ d }} {{ namespace(a=1).a }}",
    // macros
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(name='C', punct='.') }} {{ greet() }}",
    "{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * (fact(k - 1) | int) }}{% endif %}{% endmacro %}{{ fact(5) }}",
    "{% macro m() %}{{ n }}{% endmacro %}{% for n in [1] %}{{ m() }}{% endfor %}",
    // raise_exception and errors
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}",
    "{% if messages[1].role == 'user' %}{{ raise_exception('unicode é ' ~ n) }}{% endif %}",
    "{{ messages[0].content | trim | upper }}{{ bos_token + '[INST] ' + messages[1]['content'].strip() + ' [/INST]' + eos_token }}",
};

TEST(JinjaTemplateTest, SnippetsMatchPythonJinja2) {
  if (kvcc::testing::JinjaOraclePython() == nullptr) GTEST_SKIP() << "KVCC_PYTHON is unset or lacks jinja2";
  const ojson data = ojson::parse(kData);
  ojson cases = ojson::array();
  for (const std::string& s : kSnippets) {
    ojson c = {{"template", s}, {"messages", data["messages"]}, {"tools", nullptr}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
    cases.push_back(c);
  }
  // The oracle passes only messages/tools/specials; the snippets' other variables go through
  // a prelude of {% set %}s that both sides render. The whitespace-control snippets (the first
  // kWhitespaceSnippets) go without, so they also start the template.
  const std::string prelude =
      "{% set tools = " + data["tools"].dump() + " %}{% set n = 7 %}{% set f = 2.5 %}{% set s = 'a,b,,c' %}"
      "{% set flag = true %}{% set nothing = none %}";
  constexpr size_t kWhitespaceSnippets = 8;
  for (size_t i = kWhitespaceSnippets; i < cases.size(); ++i) {
    cases[i]["template"] = prelude + cases[i]["template"].get<std::string>();
  }
  auto want = kvcc::testing::RunRenderChatOracle(cases, kvcc::testing::TempDir("jinja_snippets"));
  ASSERT_TRUE(want.ok()) << want.status();
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(kSnippets[i]);
    auto got = Render(cases[i]["template"].get<std::string>());
    const ojson& w = (*want)[i];
    if (w["ok"].get<bool>()) {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, w["text"].get<std::string>());
    } else {
      EXPECT_FALSE(got.ok()) << "jinja2 failed with: " << w["error"] << "\nkvcc rendered: " << *got;
      if (w["raised"].get<bool>() && !got.ok()) {
        EXPECT_NE(got.status().message().find(w["error"].get<std::string>()), std::string::npos) << got.status();
      }
    }
  }
}

TEST(JinjaLexerTest, WhitespaceControlAndTokens) {
  auto t = Lex("a \n  {%- if x -%}\n b {{ 'q}}' ~ 1.5e3 }}{# c #}\n{% endif %}\n");
  ASSERT_TRUE(t.ok()) << t.status();
  std::vector<std::string> texts;
  for (const Token& tok : *t) {
    if (tok.type == TokenType::kText || tok.type == TokenType::kString || tok.type == TokenType::kName) texts.push_back(tok.text);
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"a", "if", "x", "b ", "q}}", "endif"}));
  EXPECT_EQ((*t)[9].type, TokenType::kFloat);
  EXPECT_EQ((*t)[9].number, 1500);
  auto err = Lex("{{ 'open");
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("line 1, column 4"), std::string::npos) << err.status();
  EXPECT_FALSE(Lex("x\n{% if a %}\n{{ a ) }}").ok());
  EXPECT_FALSE(Lex("\xff").ok());
  EXPECT_FALSE(Lex("{# never closed").ok());
}

TEST(JinjaValueTest, PythonSemantics) {
  EXPECT_EQ(PyFloatRepr(0.1), "0.1");
  EXPECT_EQ(PyFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PyFloatRepr(123456789012345.0), "123456789012345.0");
  EXPECT_EQ(PyFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(PyFloatRepr(-2.5e-7), "-2.5e-07");
  EXPECT_EQ(PyRepr(Value::String("it's")), "\"it's\"");
  EXPECT_TRUE(Equal(Value::Int(1), Value::Float(1.0)));
  EXPECT_TRUE(Equal(Value::Bool(true), Value::Int(1)));
  EXPECT_FALSE(Truthy(Value::Undefined()));
  EXPECT_FALSE(Compare(Value::Int(1), Value::String("a")).ok());
  EXPECT_EQ(PyStrip("\u3000 x\t\n", true, true), "x");
  // Lists nest boundedly; namespaces stay out of containers, so values are always trees.
  Value v = Value::Int(0);
  for (int i = 0; i < kMaxValueDepth; ++i) v = *Value::List({v});
  EXPECT_FALSE(Value::List({v}).ok());
  Value ns = Value::Namespace({});
  EXPECT_FALSE(Value::List({ns}).ok());
  EXPECT_FALSE(ns.SetNamespaceAttr("self", ns).ok());
  JsonDumpOptions o;
  o.indent = 2;
  EXPECT_EQ(*JsonDumps(*Value::Dict({{"a", *Value::List({Value::Int(1)})}}), o), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_FALSE(JsonDumps(Value::Undefined(), o).ok());
}

TEST(JinjaTemplateTest, ErrorsNameTheLineAndColumn) {
  auto unknown_tag = Template::Parse("ok\n{% include 'x' %}", "cfg.json");
  ASSERT_FALSE(unknown_tag.ok());
  EXPECT_NE(unknown_tag.status().message().find("cfg.json: chat template line 2, column 4"), std::string::npos)
      << unknown_tag.status();
  EXPECT_NE(unknown_tag.status().message().find("include"), std::string::npos);
  auto filter = Template::Parse("{{ x | wordwrap }}", "t");
  ASSERT_FALSE(filter.ok());
  EXPECT_NE(filter.status().message().find("unsupported filter 'wordwrap'"), std::string::npos) << filter.status();
  EXPECT_FALSE(Template::Parse("{{ x is frobbed }}", "t").ok());
  EXPECT_FALSE(Template::Parse("{% for x in y %}never closed", "t").ok());
  EXPECT_FALSE(Template::Parse("{% if %}{% endif %}", "t").ok());
  auto raised = Render("line1\n  {{ raise_exception('Only user and assistant roles are supported!') }}");
  ASSERT_FALSE(raised.ok());
  EXPECT_NE(raised.status().message().find("line 2"), std::string::npos) << raised.status();
  EXPECT_NE(raised.status().message().find("Only user and assistant roles are supported!"), std::string::npos);
  // transformers' {% generation %} (assistant masks) renders its body in place.
  EXPECT_EQ(*Render("a{% generation %}g{{ n }}{% endgeneration %}b"), "ag7b");
  auto undefined = Render("{{ messages[0].nope.deeper }}");
  ASSERT_FALSE(undefined.ok());
  EXPECT_NE(undefined.status().message().find("nope"), std::string::npos) << undefined.status();
}

TEST(JinjaTemplateTest, HostileTemplatesHitLimitsNotTheMachine) {
  TemplateLimits small;
  small.max_steps = 100000;
  small.max_output_bytes = 1 << 16;
  small.max_alloc_bytes = 1 << 22;
  // Unbounded work: nested loops, deep macro recursion, exponential strings, huge ranges.
  for (const char* src : {
           "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
           "{% macro r(k) %}{{ r(k + 1) }}{% endmacro %}{{ r(0) }}",
           "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
           "{{ 'x' * 100000000 }}",
           "{{ range(1000000000) | length }}",
           "{% for i in range(60000) %}{{ 'yy' }}{% endfor %}",
           "{% set ns = namespace(l=[]) %}{% for i in range(300) %}{% set ns.l = [ns.l] %}{% endfor %}",
           "{{ ([1] * 1000000000) | length }}",
       }) {
    SCOPED_TRACE(src);
    auto out = Render(src, small);
    EXPECT_FALSE(out.ok());
    EXPECT_FALSE(out.status().message().empty());
  }
  // Deep nesting is refused at parse time, before any recursion could overflow the stack.
  EXPECT_FALSE(Template::Parse("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}", "t").ok());
  EXPECT_FALSE(Template::Parse("{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}", "t").ok());
  EXPECT_FALSE(Template::Parse("{{ 1" + [] { std::string s; for (int i = 0; i < 3000; ++i) s += " + 1"; return s; }() + " }}", "t").ok());
  EXPECT_FALSE(Template::Parse("{{ x" + std::string(3000, '.') + " }}", "t").ok());
  std::string attrs = "{{ x";
  for (int i = 0; i < 3000; ++i) attrs += ".a";
  EXPECT_FALSE(Template::Parse(attrs + " }}", "t").ok());
  std::string blocks;
  for (int i = 0; i < 500; ++i) blocks += "{% if true %}";
  EXPECT_FALSE(Template::Parse(blocks, "t").ok());
}

}  // namespace
}  // namespace kvcc::tokenizer::jinja
