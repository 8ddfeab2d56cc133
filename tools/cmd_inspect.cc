// `kvcc inspect <hf_dir|artifact|config.json> [--max-len N] [--cache-dtype f16|i8|i4]`; for a
// compiled artifact also its scheme, arches, kernels, tuning and file checksums.
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "frontend/model_summary.h"
#include "ir/dtype.h"
#include "pipeline/compiled_artifact.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/flags.h"

namespace kvcc::tools {
namespace {

int RunInspect(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::fprintf(stderr,
                 "usage: kvcc inspect <hf_dir|artifact|config.json> [--max-len N] "
                 "[--cache-dtype f16|i8|i4]\n");
    return 2;
  }
  std::optional<ir::DType> cache_dtype;
  if (const std::string name = absl::GetFlag(FLAGS_cache_dtype); !name.empty()) {
    auto dtype = ir::ParseDType(name);
    if (!dtype.ok()) {
      const std::string why = absl::StrCat("--cache-dtype: ", dtype.status().message());
      return Fail("inspect", absl::InvalidArgumentError(why), 2);
    }
    cache_dtype = *dtype;
  }
  auto summary = frontend::SummarizeModel(args[0]);
  if (!summary.ok()) return Fail("inspect", summary.status());
  for (const std::string& w : summary->config.warnings) {
    std::fprintf(stderr, "kvcc inspect: warning: %s\n", w.c_str());
  }
  auto text = frontend::FormatModelSummary(*summary, absl::GetFlag(FLAGS_max_len), cache_dtype);
  if (!text.ok()) return Fail("inspect", text.status(), 2);
  std::fputs(text->c_str(), stdout);
  auto compiled = pipeline::CheckCompiledArtifact(args[0]);
  if (compiled.ok() && !*compiled) return 0;
  // A damaged compiled artifact is still described (the report marks the bad files), then
  // the check's error fails the command.
  auto described = pipeline::DescribeCompiledArtifact(args[0]);
  if (!described.ok()) return Fail("inspect", described.status());
  std::fputs(described->c_str(), stdout);
  if (!compiled.ok()) return Fail("inspect", compiled.status());
  return 0;
}

}  // namespace

KVCC_COMMAND(inspect, "inspect <hf_dir|artifact|config.json> [--max-len N] [--cache-dtype f16|i8|i4]",
             RunInspect);

}  // namespace kvcc::tools
