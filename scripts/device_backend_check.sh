#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, in one go: the CUDA backend tests (every op and
# the whole models against the CPU backend, and against Hugging Face transformers on the GPU),
# the KV pool sizing tests, and `kvcc bench memory` (the seed's memory table) for
# internlm-chat-7b. Logs go to $OUT (or ./out).
#
#   scripts/device_backend_check.sh prepare [BUILD_DIR]   # here: collect what the device lacks
#   scripts/device_backend_check.sh run [BUILD_DIR]       # there: run everything
#
# Environment for `run`: BENCH_CONFIGS (models/configs names; empty skips the bench),
# GTEST_FILTER, BENCH_TIMEOUT, TEST_TIMEOUT.
#
# `prepare` copies the binaries and the shared libraries the device image lacks (Debian's
# Abseil and SentencePiece; CUDA's own libraries are on the device) into device_libs_backend/
# (list it in .git/info/exclude), which the device call carries. The tests were compiled with this checkout's path
# (/work/main) for their data; `run` links that path to the copy it runs in.
set -uo pipefail
mode=${1:-run}
build=${2:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [[ $mode == prepare ]]; then
  rm -rf device_libs_backend && mkdir -p device_libs_backend/bin device_libs_backend/lib
  bins=("$build/tools/kvcc" "$build/tests/cuda_backend_test" "$build/tests/kv_pool_budget_test")
  cp "${bins[@]}" device_libs_backend/bin/
  for b in "${bins[@]}"; do
    ldd "$b" | awk '/=> \//{print $3}' | grep -E 'libabsl_|libsentencepiece|libprotobuf|libonnx' ||
      true
  done | sort -u | xargs -r -I{} cp -L {} device_libs_backend/lib/
  du -sh device_libs_backend
  exit 0
fi

out=${OUT:-$root/out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$root/device_libs_backend/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export KVCC_CACHE_DIR=/tmp/kvcc-kernel-cache
export KVCC_PYTHON=${KVCC_PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [[ ! -e /work/main ]]; then mkdir -p /work && ln -s "$root" /work/main; fi
mkdir -p "/work/main/$build/tests"
bin=$root/device_libs_backend/bin
status=0
{
  # memory.used: what the device holds before any kvcc process (the bench's peak counts all of it)
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
  $KVCC_PYTHON -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
  ldd "$bin/cuda_backend_test" | grep -E 'not found|cublas|nvrtc|cudart'
} > "$out/device.txt" 2>&1
cat "$out/device.txt"

"$bin/kv_pool_budget_test" > "$out/kv_pool_budget_test.log" 2>&1 || status=1
tail -n 3 "$out/kv_pool_budget_test.log"
for config in ${BENCH_CONFIGS-internlm-chat-7b llama-7b}; do
  timeout ${BENCH_TIMEOUT:-200} "$bin/kvcc" bench memory --config "models/configs/$config.json" \
    --batches 8,16,32,48 --max-len 2048 --quant-policies 0,4 > "$out/bench_memory_$config.log" 2>&1 ||
    status=1
  cat "$out/bench_memory_$config.log"
done
timeout ${TEST_TIMEOUT:-300} "$bin/cuda_backend_test" ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER} \
  > "$out/cuda_backend_test.log" 2>&1 || status=1
grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|Failure|Expected|Which is|actual' \
  "$out/cuda_backend_test.log" | head -n 80
exit $status
