#!/usr/bin/env bash
# The main job on the embedded default model (models/stories260K): set up, build, then
# import it into an artifact and inspect it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
KVCC=build/tools/kvcc
MODEL=models/stories260K
OUT=out/stories260K
$KVCC import "$MODEL" -o "$OUT"
$KVCC inspect "$OUT" --max-len 512
