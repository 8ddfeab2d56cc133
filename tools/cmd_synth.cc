// `kvcc synth`: writes a Hugging Face checkpoint with seeded random weights at a config's exact
// shapes (see testing/synth.h).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ir/dtype.h"
#include "testing/synth.h"
#include "testing/synth_tokenizer.h"
#include "tools/cli_support.h"
#include "tools/command.h"
#include "tools/flags.h"

ABSL_FLAG(std::string, config, "", "synth: config.json to generate weights for");
ABSL_FLAG(std::string, dtype, "",
          "synth: weight dtype, f16, bf16 or f32 (default: the config's torch_dtype, else f16)");
ABSL_FLAG(uint64_t, shard_bytes, uint64_t{2} << 30,
          "synth: split checkpoints larger than this many bytes into indexed shards");
ABSL_FLAG(int32_t, threads, 0, "synth: generator threads (0 = all cores; output is the same)");

namespace kvcc::tools {
namespace {

int RunSynth(const std::vector<std::string>& args) {
  const std::string config = absl::GetFlag(FLAGS_config);
  const std::string out = absl::GetFlag(FLAGS_o);
  if (!args.empty() || config.empty() || out.empty()) {
    std::fprintf(stderr,
                 "usage: kvcc synth --config FILE -o DIR --seed N [--dtype f16|bf16|f32] "
                 "[--shard-bytes N]\n");
    return 2;
  }
  testing::SynthOptions options;
  if (const std::string name = absl::GetFlag(FLAGS_dtype); !name.empty()) {
    auto dtype = ir::ParseDType(name);
    if (!dtype.ok()) {
      const std::string why = absl::StrCat("--dtype: ", dtype.status().message());
      return Fail("synth", absl::InvalidArgumentError(why), 2);
    }
    options.dtype = *dtype;
  }
  options.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  options.shard_bytes = absl::GetFlag(FLAGS_shard_bytes);
  options.threads = absl::GetFlag(FLAGS_threads);

  const auto start = std::chrono::steady_clock::now();
  auto result = testing::SynthesizeCheckpoint(config, out, options);
  if (!result.ok()) return Fail("synth", result.status());
  // Random weights emit any id, so the tokenizer covers the whole vocabulary.
  if (absl::Status s = testing::WriteSynthTokenizer(config, out); !s.ok()) {
    return Fail("synth", s);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %zu tensors, %.3f GiB of %s weights in %zu file(s) under %s (%.1f s)\n",
              result->plan.architecture.c_str(), result->plan.tensors.size(),
              static_cast<double>(result->weight_bytes) / (1u << 30),
              std::string(ir::DTypeName(result->dtype)).c_str(), result->files.size(),
              out.c_str(), seconds);
  return 0;
}

}  // namespace

KVCC_COMMAND(synth, "synth --config FILE -o DIR --seed N [--dtype f16|bf16] [--shard-bytes N]",
             RunSynth);

}  // namespace kvcc::tools
