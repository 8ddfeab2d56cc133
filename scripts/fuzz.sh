#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang into build-fuzz/ and runs each for a bounded
# time from seed corpora made of valid files; fails on the first finding (crash, sanitizer
# report, leak, timeout or out-of-memory). The reproducer is left in build-fuzz/findings/.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors_header onnx_reader kv_params artifact_manifest
  tokenizer_json sentencepiece hf_config openai_request
  chat_template kernel_manifest tuning compiled_manifest)
build=${KVCC_FUZZ_BUILD_DIR:-build-fuzz}

CC=clang CXX=clang++ cmake -S fuzz -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"

"$build/fuzz_seeds" "$build/seeds" models/stories260K/model.safetensors
mkdir -p "$build/findings"
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  echo "fuzz: $target for ${budget}s"
  # New inputs go to the first directory (kept between runs); the seeds and the inputs of past
  # findings (fuzz/regressions/, replayed first thing) are read only.
  inputs=("$corpus" "$build/seeds/$target")
  [ -d "fuzz/regressions/$target" ] && inputs+=("fuzz/regressions/$target")
  if ! "$build/${target}_fuzzer" "${inputs[@]}" \
      -dict="fuzz/$target.dict" -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$build/findings/$target-" -print_final_stats=1 \
      >"$build/$target.log" 2>&1; then
    tail -n 60 "$build/$target.log" >&2
    echo "fuzz: $target found a problem; reproduce with $build/${target}_fuzzer <file in $build/findings/>" >&2
    exit 1
  fi
  grep -E "^(stat::number_of_executed_units|stat::new_units_added)|cov: .* ft: " "$build/$target.log" | tail -n 3
done
