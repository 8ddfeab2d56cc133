#!/usr/bin/env bash
# A bounded soak of `kvcc serve`: rounds of `kvcc bench serve` (random prompts, streaming,
# some clients disconnecting early) against one server for SOAK_SECONDS (default 600), printing
# after each round the server's resident memory and its KV blocks in use, which must come back
# to zero and stay flat. Exits non-zero on a failed request, a block left in use, or resident
# memory growing by more than SOAK_RSS_SLACK_MIB (default 64) from the end of the first round.
#   bash bench/serve_soak.sh MODEL [serve flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
K=${KVCC:-build/tools/kvcc}
model=${1:?usage: bench/serve_soak.sh MODEL [serve flags...]}
shift
port=${SOAK_PORT:-23533}
seconds=${SOAK_SECONDS:-600}
slack=${SOAK_RSS_SLACK_MIB:-64}
"$K" serve "$model" --port "$port" --model-name soak "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
rss() { awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status"; }
start=$SECONDS round=0 base=0 status=0
printf '%6s %8s %10s %10s %8s %9s\n' round seconds "rss MiB" "blocks used" failed "req/s"
while (( SECONDS - start < seconds )); do
  round=$(( round + 1 ))
  out=$("$K" bench serve --base_url "http://127.0.0.1:$port" --model soak --num_prompts 48 \
    --max_concurrency 16 --random_input_len 48 --random_output_len 24 --random_range_ratio 0.5 \
    --random_vocab "${SOAK_VOCAB:-512}" --seed "$round" 2>&1) || status=1
  # A client that goes away mid-stream: its blocks must come back.
  curl -sN -m 0.3 "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"soak","prompt":[5,6,7],"max_tokens":200,"stream":true,"ignore_eos":true}' \
    >/dev/null 2>&1 || true
  sleep 0.5
  failed=$(awk -F: '/^Failed requests/ {gsub(/ /, "", $2); print $2}' <<< "$out")
  rate=$(awk -F: '/^Request throughput/ {gsub(/ /, "", $2); print $2}' <<< "$out")
  used=$(metric kvcc_kv_blocks_used)
  mem=$(rss)
  (( round == 1 )) && base=$mem
  printf '%6d %8d %10d %10s %8s %9s\n' "$round" $(( SECONDS - start )) "$mem" "$used" \
    "${failed:-?}" "${rate:-?}"
  [[ $failed == 0 && $used == 0 ]] || status=1
done
echo "first round ${base} MiB, last $(rss) MiB, $(metric kvcc_preemptions_total) preemptions"
(( $(rss) - base <= slack )) || { echo "resident memory grew by more than $slack MiB" >&2; status=1; }
exit $status
