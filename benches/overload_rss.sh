#!/usr/bin/env bash
# RSS under sustained overload: verdict pinned to CPU 0 with small queues,
# the project's load generator (examples/verdict_load) on CPU 1 sending at
# about 3x what the server accepts, retrying refusals with backoff. Samples
# VmRSS every second; the steady value is the median of seconds 5-15, the
# goal is max <= 1.5 x steady over the whole run.
#
# usage: benches/overload_rss.sh [SECONDS] [RATE_SPANS_PER_S]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-60}
RATE=${2:-3000000}
BIN=${VERDICT_BIN:-target/release/verdict}
LOAD=${LOAD_BIN:-target/release/examples/verdict_load}
[ -x "$BIN" ] && [ -x "$LOAD" ] || cargo build --release --bin verdict --example verdict_load
cfg=$(mktemp)
sed -e 's/queue_size: 4096/queue_size: 64/' benches/ingest.yaml >"$cfg"
taskset -c 0 "$BIN" run -c "$cfg" >/dev/null 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -f "$cfg"' EXIT
sleep 1
taskset -c 1 "$LOAD" --protocol grpc --batch 1000 --concurrency 64 --connections 4 \
  --rate "$RATE" --duration "$DUR" --warmup 0 --services 50 --versions 4 --json >/tmp/overload_rss_load.json &
load=$!
samples=()
for _ in $(seq "$DUR"); do
  samples+=("$(awk '/VmRSS/ {print $2}' /proc/$pid/status)")
  sleep 1
done
wait $load || true
steady=$(printf '%s\n' "${samples[@]:5:10}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)
echo "rss_kib_steady=$steady rss_kib_max=$max ratio=$(awk -v m="$max" -v s="$steady" 'BEGIN {printf "%.2f", m/s}')"
echo "load: $(cat /tmp/overload_rss_load.json)"
