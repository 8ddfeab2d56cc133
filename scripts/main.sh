#!/usr/bin/env bash
# The main job on the embedded default model (models/stories260K): set up and build, import
# it into an artifact, inspect it, generate with the fp16 cache, calibrate K/V on the bundled
# PTB text, then generate again with the seed's int8 cache (--quant-policy 4).
# Uses the GPU when one is present, the CPU otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
KVCC=build/tools/kvcc
MODEL=models/stories260K
OUT=out/stories260K
PROMPT="Once upon a time"

$KVCC import "$MODEL" -o "$OUT"
$KVCC inspect "$OUT" --max-len 512
echo "== generate, fp16 KV cache"
$KVCC generate "$OUT" --prompt "$PROMPT" --max-new-tokens 96
echo "== calibrate K/V on models/data/ptb.valid.txt"
$KVCC calibrate "$MODEL" --calib-dataset models/data/ptb.valid.txt --calib-samples 128 \
  --calib-seqlen 512 --work-dir "$OUT"
echo "== generate, int8 KV cache (--quant-policy 4)"
$KVCC generate "$OUT" --prompt "$PROMPT" --max-new-tokens 96 --quant-policy 4
$KVCC inspect "$OUT" --max-len 512 --cache-dtype i8 | tail -4
