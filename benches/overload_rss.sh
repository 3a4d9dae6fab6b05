#!/usr/bin/env bash
# RSS under sustained overload: verdict pinned to CPU 0 with small queues
# (64 batches), a load generator on CPU 1 offering RATE spans/s (open loop,
# 256 requests in flight at most) over 200 releases, retrying refusals.
# Samples VmRSS every second; the steady value is the median of seconds
# 5-15, the goal is max <= 1.5 x steady over the whole run.
#
# The generator is the project's examples/verdict_load, or the independent
# otlp-load when OTLP_LOAD points at its binary (cheaper per request, so it
# pushes harder).
#
# verdict ingests faster than one core of load can generate, so HOGS busy
# loops (default 2) share CPU 0 with it: with a third of a core its capacity
# is about a third of what the generator sends, i.e. 3x overload.
#
# usage: [HOGS=2] benches/overload_rss.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-60}
BIN=${VERDICT_BIN:-target/release/verdict}
LOAD=${LOAD_BIN:-target/release/examples/verdict_load}
[ -x "$BIN" ] && [ -x "$LOAD" ] || cargo build --release --bin verdict --example verdict_load
cfg=$(mktemp)
sed -e 's/queue_size: 4096/queue_size: 64/' -e 's/max_inflight_bytes: 256MiB/max_inflight_bytes: 64MiB/' \
  benches/ingest.yaml >"$cfg"
taskset -c 0 "$BIN" run -c "$cfg" >/dev/null 2>&1 &
pid=$!
hogs=()
for _ in $(seq "${HOGS:-2}"); do
  taskset -c 0 bash -c 'while :; do :; done' &
  hogs+=($!)
done
trap 'kill -TERM $pid "${hogs[@]}" 2>/dev/null || true; rm -f "$cfg"' EXIT
sleep 1
if [ -n "${OTLP_LOAD:-}" ]; then
  taskset -c 1 "$OTLP_LOAD" --protocol grpc --signal traces --batch 1000 --concurrency 256 \
    --connections 8 --duration "$DUR" --warmup 0 --services 50 --versions 4 --backoff-ms 5 \
    --rate "${RATE:-1500000}" \
    >/tmp/overload_rss_load.json 2>&1 &
else
  taskset -c 1 "$LOAD" --protocol grpc --batch 1000 --concurrency 256 --connections 8 \
    --duration "$DUR" --warmup 0 --services 50 --versions 4 --rate "${RATE:-1500000}" \
    --json >/tmp/overload_rss_load.json &
fi
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
echo "load:"; grep -E "spans|requests|throttling" /tmp/overload_rss_load.json || cat /tmp/overload_rss_load.json
