// Test helper: renders chat-template cases with Python jinja2 as transformers does
// (tests/python/render_chat_oracle.py under $KVCC_PYTHON). Callers skip when $KVCC_PYTHON is
// unset or lacks jinja2; a failing script fails the test.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace kvcc::testing {

// The Python interpreter to run the oracle with, or null when none has jinja2.
inline const char* JinjaOraclePython() {
  const char* py = std::getenv("KVCC_PYTHON");
  if (py == nullptr || *py == '\0') return nullptr;
  static const bool has_jinja = std::system(absl::StrCat("'", py, "' -c 'import jinja2' 2>/dev/null").c_str()) == 0;
  return has_jinja ? py : nullptr;
}

// `cases` as the script's REQUEST "cases"; returns its RESULT list.
inline absl::StatusOr<nlohmann::ordered_json> RunRenderChatOracle(const nlohmann::ordered_json& cases,
                                                                   const std::string& dir) {
  const std::string req = dir + "/render_request.json", res = dir + "/render_result.json";
  {
    std::ofstream out(req, std::ios::binary);
    out << nlohmann::ordered_json{{"cases", cases}}.dump();
  }
  const std::string cmd = absl::StrCat("'", JinjaOraclePython(), "' '", SourcePath("tests/python/render_chat_oracle.py"),
                                       "' '", req, "' '", res, "' 2>", dir, "/render_stderr.txt");
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream err(dir + "/render_stderr.txt");
    std::stringstream msg;
    msg << err.rdbuf();
    return absl::InternalError(absl::StrCat("render_chat_oracle failed: ", cmd, "\n", msg.str()));
  }
  std::ifstream in(res, std::ios::binary);
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array() || j.size() != cases.size()) {
    return absl::InternalError("render_chat_oracle wrote malformed JSON");
  }
  return j;
}

}  // namespace kvcc::testing
