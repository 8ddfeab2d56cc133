#!/usr/bin/env bash
# KV-cache accuracy of every scheme on one model: calibrates once (PTB valid, 128 x 512), then per
# evaluation text and window length runs `kvcc ppl` for each scheme and one `kvcc kvcompare`
# (KL divergence and greedy agreement against the fp16 cache), and prints a markdown table of
# perplexity changes. docs/accuracy.md holds the results and the exact commands.
#
#   scripts/accuracy.sh [--device cuda|cpu] [--samples N] [--seqlens "512 2048"]
#                       [--datasets "FILE|ptb|wikitext2 ..."] [--schemes "fp16 int8-per-head ..."]
#                       [--model DIR] [--kvcc PATH] [--out DIR] [--no-ppl]
#                       [--cpu-schemes "int4-kivi"] [--cpu-samples N]
# --samples 0 evaluates every whole window; --no-ppl skips the per-scheme `kvcc ppl` runs and
# takes the perplexities from kvcompare (the same windows and numbers, one baseline pass).
# --cpu-schemes are schemes without CUDA kernels: with --device cuda they are measured by one
# extra `kvcc kvcompare --device cpu` per text and window length over the first --cpu-samples
# windows (default 10), against its own fp16 baseline on those windows; their table cells say
# "(cpu, N windows)". With --device cpu they are simply more schemes. Default: int4-kivi.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
device=cuda
samples=0
seqlens="512 2048"
model="$root/../shared/models/wiki-gutenberg-29M"
heldout="$root/../shared/data/wiki-gutenberg-heldout"
datasets="$heldout/wikipedia.heldout.txt $heldout/gutenberg.heldout.txt ptb wikitext2"
schemes="fp16 int8-per-layer int8-per-head int8-online int4-per-head int4-online k8v4 k8v4-online fp8-per-tensor fp8-per-head int4-kchannel int4-per-head-clip"
cpu_schemes="int4-kivi"
cpu_samples=10
kvcc="$root/build/tools/kvcc"
out="$root/out/accuracy"
run_ppl=1
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
    --no-ppl) run_ppl=0; shift ;;
    --cpu-schemes) cpu_schemes=$2; shift 2 ;;
    --cpu-samples) cpu_samples=$2; shift 2 ;;
    *) echo "accuracy.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [[ $device == cpu ]]; then schemes="$schemes $cpu_schemes"; cpu_schemes=""; fi
[[ -x "$kvcc" ]] || { echo "accuracy.sh: no kvcc at $kvcc (build it, or pass --kvcc)" >&2; exit 2; }
[[ -d "$model" ]] || { echo "accuracy.sh: no model directory $model" >&2; exit 2; }
command -v jq > /dev/null || { echo "accuracy.sh: needs jq to read kvcompare's JSON" >&2; exit 2; }
mkdir -p "$out"
params="$out/kv_params.json"
if [[ ! -f "$params" ]]; then
  echo "+ $kvcc calibrate $model --calib-dataset ptb --calib-samples 128 --calib-seqlen 512 --work-dir $out --seed 0 --device $device" >&2
  "$kvcc" calibrate "$model" --calib-dataset ptb --calib-samples 128 --calib-seqlen 512 \
    --work-dir "$out" --seed 0 --device "$device" >&2
fi
candidates=$(echo "$schemes" | tr ' ' '\n' | grep -v '^fp16$' | paste -sd, -)
results="$out/results.jsonl"
: > "$results"
for seqlen in $seqlens; do
  for dataset in $datasets; do
    if [[ $run_ppl == 1 ]]; then
      for scheme in $schemes; do
        echo "+ $kvcc ppl $model --dataset $dataset --seqlen $seqlen --samples $samples --kv-quant $scheme --kv-params $params --device $device" >&2
        line=$("$kvcc" ppl "$model" --dataset "$dataset" --seqlen "$seqlen" --samples "$samples" \
                 --kv-quant "$scheme" --kv-params "$params" --device "$device")
        ppl=$(echo "$line" | sed -n 's/^ppl \([0-9.]*\).*/\1/p')
        jq -nc --arg d "$dataset" --argjson n "$seqlen" --arg s "$scheme" --argjson p "$ppl" \
          '{kind: "ppl", dataset: $d, seqlen: $n, scheme: $s, ppl: $p}' >> "$results"
      done
    fi
    if [[ -n "$candidates" ]]; then
      echo "+ $kvcc kvcompare $model --eval-dataset $dataset --eval-seqlen $seqlen --eval-samples $samples --kv-quant $candidates --kv-params $params --device $device" >&2
      "$kvcc" kvcompare "$model" --eval-dataset "$dataset" --eval-seqlen "$seqlen" \
        --eval-samples "$samples" --kv-quant "$candidates" --kv-params "$params" \
        --device "$device" | jq -c '. + {kind: "compare"}' >> "$results"
    fi
    if [[ -n "$cpu_schemes" ]]; then
      cpu_list=$(echo "$cpu_schemes" | tr ' ' ',')
      echo "+ $kvcc kvcompare $model --eval-dataset $dataset --eval-seqlen $seqlen --eval-samples $cpu_samples --kv-quant $cpu_list --kv-params $params --device cpu" >&2
      "$kvcc" kvcompare "$model" --eval-dataset "$dataset" --eval-seqlen "$seqlen" \
        --eval-samples "$cpu_samples" --kv-quant "$cpu_list" --kv-params "$params" \
        --device cpu | jq -c '. + {kind: "compare_cpu"}' >> "$results"
    fi
  done
done

# One table per window length: perplexity of fp16, then each scheme's change (from kvcc ppl
# when it ran, else kvcompare) with mean KL (nats) and greedy agreement.
for seqlen in $seqlens; do
  echo
  echo "seqlen $seqlen (device $device, samples $samples)"
  echo
  header="| scheme |"
  rule="|---|"
  for dataset in $datasets; do header="$header $(basename "$dataset" .txt) |"; rule="$rule---:|"; done
  echo "$header"
  echo "$rule"
  for scheme in $schemes $cpu_schemes; do
    row="| $scheme |"
    for dataset in $datasets; do
      cell=$(jq -rs --arg d "$dataset" --argjson n "$seqlen" --arg s "$scheme" '
        def base: (map(select(.kind == "ppl" and .dataset == $d and .seqlen == $n and .scheme == "fp16")) | first | .ppl)
                  // (map(select(.kind == "compare" and (.dataset | endswith($d | split("/") | last)) and .seqlen == $n)) | first | .baseline_ppl);
        def mine: (map(select(.kind == "ppl" and .dataset == $d and .seqlen == $n and .scheme == $s)) | first | .ppl)
                  // (map(select(.kind == "compare" and (.dataset | endswith($d | split("/") | last)) and .seqlen == $n and .candidate == $s)) | first | .candidate_ppl);
        def cpu: map(select(.kind == "compare_cpu" and (.dataset | endswith($d | split("/") | last)) and .seqlen == $n and .candidate == $s)) | first;
        def cmp: map(select(.kind == "compare" and (.dataset | endswith($d | split("/") | last)) and .seqlen == $n and .candidate == $s)) | first;
        cpu as $u | base as $b | mine as $m | cmp as $c |
        if $u != null then ((($u.candidate_ppl / $u.baseline_ppl - 1) * 100 * 100 | round / 100) as $pct |
              (if $pct >= 0 then "+" else "" end) + ($pct | tostring) + "% (KL " +
              ($u.mean_kl * 10000 | round / 10000 | tostring) + ", agree " +
              ($u.greedy_agreement * 1000 | round / 10 | tostring) + "%; cpu, " +
              ($u.windows | tostring) + " windows)")
        elif $s == "fp16" then ($b * 1000 | round / 1000 | tostring)
        elif $m == null then "-"
        else ((($m / $b - 1) * 100 * 100 | round / 100) as $pct |
              (if $pct >= 0 then "+" else "" end) + ($pct | tostring) + "%" +
              (if $c == null then "" else
                 " (KL " + ($c.mean_kl * 10000 | round / 10000 | tostring) + ", agree " +
                 ($c.greedy_agreement * 1000 | round / 10 | tostring) + "%)" end))
        end' "$results")
      row="$row $cell |"
    done
    echo "$row"
  done
done
