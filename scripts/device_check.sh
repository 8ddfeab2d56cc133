#!/usr/bin/env bash
# Run ON THE DEVICE MACHINE (after scripts/device_stage.sh here, carrying device_libs/): the
# GPU tests and the attention benchmarks (kvcc's NVRTC kernels and the PyTorch peer), logs under
# $OUT. Prints a short summary last.
#   usage: scripts/device_check.sh [tests|bench|all]   (default all)
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
OUT=${OUT:-/tmp/kvcc-device-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/device_libs/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export KVCC_CACHE_DIR=${KVCC_CACHE_DIR:-/tmp/kvcc-kernel-cache}
export PYTHONUNBUFFERED=1
BIN=device_libs/bin
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1

if [ "$MODE" = all ] || [ "$MODE" = tests ]; then
  for t in codegen_sha256_test codegen_kernel_cache_test cuda_attention_test; do
    if "$BIN/$t" > "$OUT/$t.log" 2>&1; then
      echo "PASS $t ($(grep -c '^\[       OK' "$OUT/$t.log") ok)"
    else
      echo "FAIL $t"; status=1
      grep -E 'Failure|Expected|Which is|actual|error|FAILED' "$OUT/$t.log" | head -40
    fi
  done
fi

if [ "$MODE" = all ] || [ "$MODE" = bench ]; then
  "$BIN/kvcc" bench attention --attn_splits="${ATTN_SPLITS:-auto,1,2,4}" \
    --attn_caches="${ATTN_CACHES:-f16,i8,i4,i8_online,i4_online}" \
    --attn_vec_bytes="${ATTN_VEC:-0}" 2>&1 | tee "$OUT/bench.log" || status=1
  python3 -W ignore bench/attention_peer.py 2>&1 | tee -a "$OUT/bench.log" || status=1
  # GQA 4:1 (32 query heads over 8 kv heads) and a small batch, where the split matters.
  "$BIN/kvcc" bench attention --attn_kv_heads=8 --attn_caches=f16,i8 --attn_splits=auto,1 \
    2>&1 | tee -a "$OUT/bench.log" || status=1
  python3 -W ignore bench/attention_peer.py --kv-heads 8 2>&1 | tee -a "$OUT/bench.log" || status=1
  "$BIN/kvcc" bench attention --attn_batch=4 --attn_caches=f16,i8 --attn_splits=auto,1 \
    2>&1 | tee -a "$OUT/bench.log" || status=1
  python3 -W ignore bench/attention_peer.py --batch 4 2>&1 | tee -a "$OUT/bench.log" || status=1
fi
exit $status
