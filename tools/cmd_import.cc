// `kvcc import <hf_dir> -o <out_dir>`: a Hugging Face checkpoint to a kvcc artifact.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "frontend/model_loader.h"
#include "frontend/model_summary.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/flags.h"

namespace kvcc::tools {
namespace {

int RunImport(const std::vector<std::string>& args) {
  const std::string out = absl::GetFlag(FLAGS_o);
  if (args.size() != 1 || out.empty()) {
    std::fprintf(stderr, "usage: kvcc import <hf_dir> -o <out_dir> [--model-format awq|gptq|hf]\n");
    return 2;
  }
  auto format = frontend::ParseModelFormat(absl::GetFlag(FLAGS_model_format));
  if (!format.ok()) return Fail("import", format.status());
  auto module = frontend::ImportToArtifact(args[0], out, *format);
  if (!module.ok()) return Fail("import", module.status());
  const ir::ModelConfig& c = (*module)->config;
  for (const std::string& w : c.warnings) {
    std::fprintf(stderr, "kvcc import: warning: %s\n", w.c_str());
  }
  int64_t bytes = 0;
  for (const ir::Value* w : (*module)->graph.weights()) bytes += w->weight->size;
  std::printf("%s\n",
              absl::StrCat("imported ", c.architecture, " from ", args[0], " to ", out, ": ",
                           c.num_layers, " layers, ", (*module)->graph.nodes().size(), " nodes, ",
                           (*module)->graph.weights().size(), " weights (",
                           frontend::FormatBytes(bytes), ")")
                  .c_str());
  return 0;
}

}  // namespace

KVCC_COMMAND(import, "import <hf_dir> -o <out_dir>", RunImport);

}  // namespace kvcc::tools
