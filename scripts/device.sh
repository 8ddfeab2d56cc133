#!/usr/bin/env bash
# The GPU machine's checks in one script.
#
#   scripts/device.sh stage [BUILD_DIR]   # HERE: copy kvcc, the GPU tests and the shared
#                                         # libraries the device image lacks into device_stage/
#   scripts/device.sh STAGE...            # THERE (the run tool, carry=["device_stage"]):
#                                         # stages tests, bench, e2e, serve, decode, or all
#                                         # (= tests bench e2e)
#
# `stage` copies (and strips) BUILD_DIR/tools/kvcc and the GPU test binaries, with the Abseil,
# SentencePiece, protobuf, ONNX, RE2, GoogleTest, cpp-httplib and Brotli shared libraries they link (the device has
# CUDA 13 of its own), into device_stage/, which .gitignore ignores; build them first
# (ninja -C build kvcc cuda_attention_test ...: the names are in STAGE_TESTS below).
#
# On the device every stage writes $OUT/<stage>.log (OUT defaults to ./out; a stage named twice,
# e.g. `tests tests` to check that a warm kernel cache changes nothing, writes <stage>.2.log),
# all stages share one kernel cache ($KVCC_CACHE_DIR, default /tmp/kvcc-kernel-cache), and
# $OUT/summary.txt ends with one line and exit code per stage; the script exits non-zero if any
# stage failed. Tests read their data from this checkout ($KVCC_SOURCE_DIR), so no link to the
# build path is needed.
#
# Environment: GTEST_FILTER (tests), TEST_TIMEOUT (seconds per test binary, default 600),
# TEST_PARALLEL (1: run the test binaries at once), KVCC_SOURCE_DIR (the tests' data root),
# BENCH_ATTENTION (full: every scheme and split, GQA 4:1 and batch 4, the default; defaults:
# one `kvcc bench attention` at its defaults), BENCH_PEER (1: also time PyTorch's attention, bench/attention_peer.py; default 1),
# BENCH_MEMORY_CONFIGS (models/configs names for `kvcc bench memory`, default
# "internlm-chat-7b llama-7b"; empty skips), KVCC_PYTHON (default python3).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
STAGE_DIR=device_stage
STAGE_TESTS="cuda_attention_test cuda_kivi_test cuda_backend_test codegen_kernels_test codegen_kernel_cache_test
  codegen_sha256_test kv_pool_budget_test cuda_sampling_test cuda_step_test cuda_w4_linear_test
  artifact_compiler_test cuda_decode_graph_test weight_uploader_test lazy_library_test
  cublaslt_gemm_test gemm_autotune_test cuda_backend_reductions_test"

if [[ ${1:-} == stage ]]; then
  set -e
  build=${2:-build}
  rm -rf "$STAGE_DIR" && mkdir -p "$STAGE_DIR/bin" "$STAGE_DIR/lib"
  for b in "$build/tools/kvcc" $(printf "$build/tests/%s " $STAGE_TESTS); do
    [[ -x $b ]] || { echo "missing $b: build it first" >&2; exit 1; }
    strip -o "$STAGE_DIR/bin/$(basename "$b")" "$b"
  done
  for b in "$STAGE_DIR"/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -E 'libabsl_|libsentencepiece|libprotobuf|libonnx|libre2|libgtest|libcpp-httplib|libbrotli' |
    while read -r lib; do cp -L "$lib" "$STAGE_DIR/lib/"; done
  du -sh "$STAGE_DIR"
  exit 0
fi

[[ -d $STAGE_DIR/bin ]] || { echo "no $STAGE_DIR/: run 'scripts/device.sh stage' here and carry it" >&2; exit 2; }
OUT=${OUT:-$root/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$root/$STAGE_DIR/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export KVCC_CACHE_DIR=${KVCC_CACHE_DIR:-/tmp/kvcc-kernel-cache}
export KVCC_SOURCE_DIR=${KVCC_SOURCE_DIR:-$root}
export KVCC_PYTHON=${KVCC_PYTHON:-python3}
export PYTHONUNBUFFERED=1
BIN=$root/$STAGE_DIR/bin
K=$BIN/kvcc

# The GPU tests, one binary after another (all at once with TEST_PARALLEL=1: they share the
# GPU, which has room for all), their output appended to the log $1 in a fixed order; prints
# one PASS/FAIL line each.
stage_tests() {
  local log=$1 status=0 t rc tmp
  tmp=$(mktemp -d)
  for t in $STAGE_TESTS; do
    ( timeout "${TEST_TIMEOUT:-600}" "$BIN/$t" ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER} \
        > "$tmp/$t.out" 2>&1
      echo $? > "$tmp/$t.rc" ) &
    [[ ${TEST_PARALLEL:-0} == 1 ]] || wait
  done
  wait
  for t in $STAGE_TESTS; do
    rc=$(cat "$tmp/$t.rc")
    { echo "---- $t (exit $rc)"; cat "$tmp/$t.out"; } >> "$log"
    if (( rc == 0 )); then
      echo "PASS $t: $(grep -c '^\[       OK \]' "$tmp/$t.out") ok, $(grep -c '^\[  SKIPPED \]' "$tmp/$t.out") skipped"
    else
      echo "FAIL $t (exit $rc)"
      grep -E '^\[  FAILED|Failure|Expected|Which is|actual' "$tmp/$t.out" | head -n 20
      status=1
    fi
  done
  rm -rf "$tmp"
  return $status
}

# Decode attention (see bench_attention_full), then `kvcc bench memory` for the configured
# models.
stage_bench() {
  local status=0 config
  if [[ ${BENCH_ATTENTION:-full} == defaults ]]; then
    "$K" bench attention || status=1
  else
    bench_attention_full || status=1
  fi
  for config in ${BENCH_MEMORY_CONFIGS-internlm-chat-7b llama-7b}; do
    timeout 300 "$K" bench memory --config "models/configs/$config.json" --batches 8,16,32,48 \
      --max-len 2048 --quant-policies 0,4 || status=1
  done
  stage_decode || status=1
  return $status
}

# `kvcc bench decode` beside the graph-captured transformers peer (bench/decode_peer.py) for
# each of BENCH_DECODE_CONFIGS (default "llama-7b internlm-chat-7b").
stage_decode() {
  local status=0 config batches=${BENCH_DECODE_BATCHES:-1,8,32,64}
  for config in ${BENCH_DECODE_CONFIGS-llama-7b internlm-chat-7b}; do
    timeout 300 "$K" bench decode --config "models/configs/$config.json" --batches "$batches" \
      --context 2048 --caches f16,i8,i4 || status=1
    [[ ${BENCH_PEER:-1} == 1 ]] && { timeout 300 $KVCC_PYTHON -W ignore bench/decode_peer.py \
      --config "models/configs/$config.json" --batches "$batches" --context 2048 || status=1; }
  done
  return $status
}

# kvcc's decode kernels for every cache scheme and split, GQA 4:1 and a small batch, each
# beside PyTorch's SDPA (bench/attention_peer.py).
bench_attention_full() {
  local status=0 peer=${BENCH_PEER:-1}
  "$K" bench attention --attn_splits=auto,1,2,4 --attn_caches=f16,i8,i4,i8_online,i4_online || status=1
  [[ $peer == 1 ]] && { $KVCC_PYTHON -W ignore bench/attention_peer.py || status=1; }
  "$K" bench attention --attn_kv_heads=8 --attn_caches=f16,i8 --attn_splits=auto,1 || status=1
  [[ $peer == 1 ]] && { $KVCC_PYTHON -W ignore bench/attention_peer.py --kv-heads 8 || status=1; }
  "$K" bench attention --attn_batch=4 --attn_caches=f16,i8 --attn_splits=auto,1 || status=1
  [[ $peer == 1 ]] && { $KVCC_PYTHON -W ignore bench/attention_peer.py --batch 4 || status=1; }
  return $status
}

# The main job on the GPU with stories260K: import, generate, calibrate, generate and chat with
# the int8 cache, perplexity on GPU and CPU with fp16 and int8 caches.
stage_e2e() {
  local status=0 A=/tmp/kvcc-e2e/stories260K dev qp
  rm -rf "$A"
  "$K" import models/stories260K -o "$A" || return 1
  "$K" inspect "$A" --max-len 512 | tail -n 5 || status=1
  echo "== generate, fp16 cache"
  "$K" generate "$A" --prompt "Once upon a time" --max-new-tokens 96 || status=1
  echo "== calibrate (cuda)"
  "$K" calibrate models/stories260K --calib-dataset models/data/ptb.valid.txt --calib-samples 128 \
    --calib-seqlen 512 --work-dir "$A" --device cuda 2>&1 | tail -n 3 || status=1
  echo "== generate, int8 cache (--quant-policy 4)"
  "$K" generate "$A" --prompt "Once upon a time" --max-new-tokens 96 --quant-policy 4 || status=1
  echo "== chat, int8 cache"
  printf 'Tell me a story about a cat.\nWhat did the cat do next?\n' |
    "$K" chat "$A" --quant-policy 4 --max-new-tokens 64 --chat-template llama2 || status=1
  for dev in cpu cuda; do
    for qp in 0 4; do
      echo "== ppl device=$dev quant-policy=$qp"
      "$K" ppl "$A" --dataset models/data/ptb.valid.txt --seqlen 512 --samples 40 --device $dev \
        --quant-policy $qp 2>&1 | tail -n 1 || status=1
    done
  done
  return $status
}

# `kvcc serve` on the GPU with a synthetic internlm-chat-7b (real shapes, seeded weights, a
# byte-level tokenizer over its vocabulary) under one KV byte budget that holds SERVE_FP16_SESSIONS
# (default 32) fp16 sessions of 2048 tokens: `kvcc bench serve` (random 1024-token prompts, 256
# output tokens, EOS ignored) against each cache at each rate in SERVE_RATES (default "inf 4"),
# with goodput for p99 TTFT <= 2 s and mean TPOT <= 50 ms; SERVE_CACHES picks the caches.
stage_serve() {
  local status=0 M=/tmp/kvcc-serve/internlm-chat-7b cache rate tokens port=23433 pid
  local sessions=${SERVE_FP16_SESSIONS:-32}
  mkdir -p /tmp/kvcc-serve
  [[ -f $M/tokenizer.json ]] || "$K" synth --config models/configs/internlm-chat-7b.json -o "$M" \
    --seed 7 || return 1
  for cache in ${SERVE_CACHES:-fp16 int8-per-layer int4-per-head}; do
    # The same bytes for every cache: int8 holds twice the tokens of fp16, int4 four times.
    case $cache in
      fp16) tokens=$(( sessions * 2048 )) ;;
      int8*) tokens=$(( sessions * 2048 * 2 )) ;;
      int4*) tokens=$(( sessions * 2048 * 4 )) ;;
    esac
    if [[ $cache != fp16 && $cache != *online && ! -f $M/kv_params.json ]]; then
      "$K" calibrate "$M" --calib-dataset models/data/ptb.valid.txt --calib-samples 8 \
        --calib-seqlen 512 --work-dir "$M" --device cuda 2>&1 | tail -n 2 || status=1
    fi
    "$K" serve "$M" --device cuda --kv-quant "$cache" --port $port --max-len 2048 \
      --max-batch 256 --max-queue 1024 --cache-tokens $tokens --model-name m &
    pid=$!
    for _ in $(seq 240); do
      curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
      sleep 1
    done
    for rate in ${SERVE_RATES:-inf 4}; do
      echo "== bench serve: cache $cache, $tokens cache tokens, request rate $rate"
      timeout 300 "$K" bench serve --base_url "http://127.0.0.1:$port" --model m \
        --num_prompts ${SERVE_PROMPTS:-128} --request_rate "$rate" --random_input_len 1024 \
        --random_output_len 256 --random_vocab 103168 --ignore_eos \
        --goodput "ttft:2000 tpot:50" --result_json "$OUT/serve-$cache-$rate.json" || status=1
    done
    curl -s "http://127.0.0.1:$port/metrics" | grep -E '^kvcc_(kv_blocks|requests)' || true
    kill -TERM $pid; wait $pid || status=1
  done
  return $status
}

stages=()
for s in "$@"; do
  case $s in
    all) stages+=(tests bench e2e) ;;
    tests | bench | e2e | serve | decode) stages+=("$s") ;;
    *) echo "usage: scripts/device.sh stage [BUILD_DIR] | {tests|bench|e2e|serve|decode|all}..." >&2; exit 2 ;;
  esac
done
(( ${#stages[@]} > 0 )) || { echo "usage: scripts/device.sh stage [BUILD_DIR] | {tests|bench|e2e|serve|decode|all}..." >&2; exit 2; }

summary=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv > "$summary" 2>&1
cat "$summary"
declare -A runs=()
results=()
overall=0
for s in "${stages[@]}"; do
  runs[$s]=$(( ${runs[$s]:-0} + 1 ))
  log=$OUT/$s.log
  (( runs[$s] > 1 )) && log=$OUT/$s.${runs[$s]}.log
  : > "$log"
  echo "==== $s -> $log"
  start=$SECONDS
  if [[ $s == tests ]]; then
    stage_tests "$log" | tee -a "$summary"
  else
    "stage_$s" 2>&1 | tee "$log"
  fi
  rc=$?
  (( rc != 0 )) && overall=1
  results+=("$s: exit $rc, $(( SECONDS - start )) s, log $(basename "$log")")
done
echo "==== summary" | tee -a "$summary"
printf '%s\n' "${results[@]}" | tee -a "$summary"
exit $overall
