#!/usr/bin/env bash
# End-to-end check on a GPU machine: the main job's steps on the GPU, chat with the int8 cache,
# perplexity on GPU vs CPU with fp16 and int8 caches (figures in docs/performance.md).
#   scripts/device_e2e.sh prepare   # here: copy build/tools/kvcc and the libraries the device
#                                   # lacks into device_run/ (listed in .git/info/exclude)
#   scripts/device_e2e.sh run       # there, with device_run carried
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-run} == prepare ]]; then
  rm -rf device_run && mkdir -p device_run/bin device_run/lib
  cp build/tools/kvcc device_run/bin/
  ldd build/tools/kvcc | awk '/=> \//{print $3}' | grep -E 'libabsl_|libsentencepiece' | sort -u |
    xargs -I{} cp -L {} device_run/lib/
  exit 0
fi
export LD_LIBRARY_PATH=$PWD/device_run/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KVCC_CACHE_DIR=/tmp/kvcc-cache
K=device_run/bin/kvcc
A=/tmp/stories
nvidia-smi --query-gpu=name,memory.total --format=csv
$K import models/stories260K -o $A
$K inspect $A --max-len 512 | tail -5
echo "== generate fp16 cache (default device)"
$K generate $A --prompt "Once upon a time" --max-new-tokens 96
echo "== calibrate (cuda)"
time $K calibrate models/stories260K --calib-dataset models/data/ptb.valid.txt --calib-samples 128 --calib-seqlen 512 --work-dir $A --device cuda 2>&1 | tail -3
echo "== generate int8 cache (--quant-policy 4)"
$K generate $A --prompt "Once upon a time" --max-new-tokens 96 --quant-policy 4
echo "== chat int8 cache"
printf 'Tell me a story about a cat.\nWhat did the cat do next?\n' | $K chat $A --quant-policy 4 --max-new-tokens 64 --chat-template llama2
for dev in cpu cuda; do for qp in 0 4; do
  echo "== ppl device=$dev quant-policy=$qp"
  $K ppl $A --dataset models/data/ptb.valid.txt --seqlen 512 --samples 40 --device $dev --quant-policy $qp 2>&1 | tail -1
done; done
