#!/usr/bin/env bash
# KV-cache accuracy of every scheme on one model: calibrates once (PTB valid, --calib-samples
# windows of --calib-seqlen tokens, default 128 x 512, into OUT/cal<seqlen>) unless --kv-params
# names a calibration, then runs one `kvcc kvcompare` over every text, window length and scheme
# (the engines start once; perplexity, mean KL of the next-token distribution against the fp16
# cache and greedy agreement per cell) and prints one markdown table per window length. Each
# perplexity change carries its standard error over the windows (kvcompare's ppl_change_se).
# docs/accuracy.md holds the results and the exact commands.
#
#   scripts/accuracy.sh [--device cuda|cpu] [--samples "60 15"] [--seqlens "512 2048"]
#                       [--datasets "FILE|ptb|wikitext2 ..."] [--schemes "int8-per-head ..."]
#                       [--model DIR] [--kvcc PATH] [--out DIR] [--kv-params FILE]
#                       [--timeout SECONDS] [--calib-seqlen 512] [--calib-samples 128]
#                       [--tables-only]
# --samples: windows per text, one value for every length or one per --seqlens entry (0: every
# whole window). Results stream to OUT/results.jsonl as each text and length finishes (lengths
# outermost); with --timeout the comparison stops after that long and the tables show what
# finished ("-" for the rest). --tables-only skips calibration and kvcompare and prints the
# tables of an existing OUT/results.jsonl (e.g. one a device run brought back), for the given
# --datasets, --seqlens and --schemes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
device=cuda
samples="60 15"
seqlens="512 2048"
model="$root/../shared/models/wiki-gutenberg-29M"
heldout="$root/../shared/data/wiki-gutenberg-heldout"
datasets="$heldout/wikipedia.heldout.txt $heldout/gutenberg.heldout.txt ptb wikitext2"
schemes="int8-per-layer int8-per-head int8-online fp8-per-tensor fp8-per-head fp8-kchannel k8v4 k8v4-online int4-per-head int4-per-head-clip int4-online int4-kchannel int4-kivi"
kvcc="$root/build/tools/kvcc"
out="$root/out/accuracy"
params=""
limit=0
calib_seqlen=512
calib_samples=128
tables_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --samples) samples=$2; shift 2 ;;
    --seqlens) seqlens=$2; shift 2 ;;
    --datasets) datasets=$2; shift 2 ;;
    --schemes) schemes=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --kvcc) kvcc=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --kv-params) params=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --calib-seqlen) calib_seqlen=$2; shift 2 ;;
    --calib-samples) calib_samples=$2; shift 2 ;;
    --tables-only) tables_only=1; shift ;;
    *) echo "accuracy.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
command -v jq > /dev/null || { echo "accuracy.sh: needs jq to read kvcompare's JSON" >&2; exit 2; }
results="$out/results.jsonl"
status=0
if [[ $tables_only == 1 ]]; then
  [[ -f "$results" ]] || { echo "accuracy.sh: --tables-only: no $results" >&2; exit 2; }
else
[[ -x "$kvcc" ]] || { echo "accuracy.sh: no kvcc at $kvcc (build it, or pass --kvcc)" >&2; exit 2; }
[[ -d "$model" ]] || { echo "accuracy.sh: no model directory $model" >&2; exit 2; }
mkdir -p "$out"
if [[ -z "$params" ]]; then
  cal="$out/cal$calib_seqlen"
  params="$cal/kv_params.json"
  if [[ ! -f "$params" ]]; then
    echo "+ $kvcc calibrate $model --calib-dataset ptb --calib-samples $calib_samples --calib-seqlen $calib_seqlen --work-dir $cal --seed 0 --device $device" >&2
    "$kvcc" calibrate "$model" --calib-dataset ptb --calib-samples "$calib_samples" \
      --calib-seqlen "$calib_seqlen" --work-dir "$cal" --seed 0 --device "$device" >&2
  fi
fi
csv() { echo "$1" | tr ' ' '\n' | grep -v '^$' | paste -sd, -; }
echo "+ $kvcc kvcompare $model --eval-dataset $(csv "$datasets") --eval-seqlen $(csv "$seqlens") --eval-samples $(csv "$samples") --kv-quant $(csv "$schemes") --kv-params $params --device $device" >&2
timeout "$limit" "$kvcc" kvcompare "$model" --eval-dataset "$(csv "$datasets")" \
  --eval-seqlen "$(csv "$seqlens")" --eval-samples "$(csv "$samples")" \
  --kv-quant "$(csv "$schemes")" --kv-params "$params" --device "$device" \
  > "$results" 2> "$out/kvcompare.log" || status=$?
if [[ $status != 0 ]]; then
  echo "accuracy.sh: kvcompare stopped (exit $status$([[ $status == 124 ]] && echo ", --timeout $limit s")); the tables hold what finished:" >&2
  grep -v '^ *\[' "$out/kvcompare.log" | tail -5 >&2 || true
fi
fi

# One table per window length: the fp16 perplexity, then per scheme its perplexity change with
# its standard error over windows, the mean KL (nats) and greedy agreement against fp16.
for seqlen in $seqlens; do
  echo
  echo "seqlen $seqlen (device $device)"
  echo
  header="| scheme |"
  rule="|---|"
  for dataset in $datasets; do header="$header $(basename "$dataset" .txt) |"; rule="$rule---:|"; done
  echo "$header"
  echo "$rule"
  for scheme in fp16 $schemes; do
    row="| $scheme |"
    for dataset in $datasets; do
      cell=$(jq -rs --arg d "$dataset" --argjson n "$seqlen" --arg s "$scheme" '
        map(select(.text == $d and .seqlen == $n)) as $rows |
        ($rows | map(select(.candidate == $s)) | first) as $c |
        if $s == "fp16" then
          (($rows | first) as $r | if $r == null then "-" else
             ($r.baseline_ppl * 1000 | round / 1000 | tostring) + " (" + ($r.windows | tostring) + " x " + ($n | tostring) + ")" end)
        elif $c == null then "-"
        else ((($c.candidate_ppl / $c.baseline_ppl - 1) * 100 * 100 | round / 100) as $pct |
              (if $c.ppl_change_se == null then "" else
                 " ±" + (($c.ppl_change_se * 100 * 100 | round / 100) | tostring) end) as $se |
              (if $pct >= 0 then "+" else "" end) + ($pct | tostring) + "%" + $se + " (KL " +
              ($c.mean_kl * 100000 | round / 100000 | tostring) + ", agree " +
              ($c.greedy_agreement * 1000 | round / 10 | tostring) + "%)")
        end' "$results")
      row="$row $cell |"
    done
    echo "$row"
  done
done
exit "$status"
