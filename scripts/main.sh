#!/usr/bin/env bash
# The main job on the embedded default model (models/stories260K): set up and build, import
# it into an artifact, inspect it, generate with the fp16 cache, then compile a deployable
# artifact with the seed's int8 cache (--quant-policy 4, calibrated on the bundled PTB text;
# kernels for this GPU or sm_90a+sm_80) and generate and chat from it.
# Uses the GPU when one is present, the CPU otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
KVCC=build/tools/kvcc
MODEL=models/stories260K
OUT=out/stories260K
COMPILED=out/stories260K-int8
PROMPT="Once upon a time"

$KVCC import "$MODEL" -o "$OUT"
$KVCC inspect "$OUT" --max-len 512
echo "== generate, fp16 KV cache"
$KVCC generate "$OUT" --prompt "$PROMPT" --max-new-tokens 96
echo "== compile, int8 KV cache (--quant-policy 4) calibrated on models/data/ptb.valid.txt"
$KVCC compile "$MODEL" -o "$COMPILED" --quant-policy 4 \
  --calib-dataset models/data/ptb.valid.txt --calib-samples 128 --calib-seqlen 512
$KVCC inspect "$COMPILED" --max-len 512 | grep -E "^(kv-cache scheme|compiled artifact|  (KV|arches|kernels|tuning))"
echo "== generate from the compiled artifact"
$KVCC generate "$COMPILED" --prompt "$PROMPT" --max-new-tokens 96
echo "== chat from the compiled artifact (one scripted turn)"
echo "Tell me a story about a cat." | $KVCC chat "$COMPILED" --chat-template llama2 --max-new-tokens 64
