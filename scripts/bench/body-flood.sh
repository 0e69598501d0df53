#!/usr/bin/env bash
# Index writes under a flood of message bodies (issue "Message bodies", item 4: append p99 under a
# 100 MB/s body flood at most 1.5x that without it).
#
#   scripts/bench/body-flood.sh [--duration 20] [--rounds 2] [--flood-rate 100] [--flood-size 1m]
#                               [--connections 16] [--groups 16] [--base-port 7600] [--bin PATH]
#
# A 3-node `dovetail dev` from a release build (target/release/dovetail, built when missing, or
# --bin), data in a new temporary directory under $TMPDIR (default /var/tmp). Each round runs
# index-only appends (`dovetail bench --workload append`, --connections clients) for --duration
# seconds alone, then again while a second `dovetail bench --workload deliver --size
# --flood-size --rate --flood-rate` (an open loop: 100 x 1 MiB/s offers 100 MB/s of bodies) runs
# beside it, started 2 s earlier and stopped after. Prints per round the appends' ops/s, p50 and
# p99 alone and under the flood, their ratio, and the bodies/s and MB/s the flood delivered; the
# last line is the median p99 ratio over the rounds. All three nodes share this machine's one
# disk and 2 cores with both load generators: the flood competes for them too, not only for the
# network. Stops only what it started (scripts/dev-lib.sh).
set -euo pipefail
# shellcheck source=../dev-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/../dev-lib.sh"

usage() {
  sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DURATION=20
ROUNDS=2
FLOOD_RATE=100
FLOOD_SIZE=1m
CONNS=16
GROUPS_N=16
BASE_PORT=7600
BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:?}"; shift 2 ;;
    --rounds) ROUNDS="${2:?}"; shift 2 ;;
    --flood-rate) FLOOD_RATE="${2:?}"; shift 2 ;;
    --flood-size) FLOOD_SIZE="${2:?}"; shift 2 ;;
    --connections) CONNS="${2:?}"; shift 2 ;;
    --groups) GROUPS_N="${2:?}"; shift 2 ;;
    --base-port) BASE_PORT="${2:?}"; shift 2 ;;
    --bin) BIN="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
for n in $DURATION $ROUNDS $FLOOD_RATE $CONNS $GROUPS_N $BASE_PORT; do
  [[ "$n" =~ ^[0-9]+$ ]] || usage
done
if [ -z "$BIN" ]; then
  BIN="$ROOT/target/release/dovetail"
  [ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --quiet --bin dovetail)
fi
BIN="$(realpath "$BIN")"

WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/dvt-flood.XXXXXX")"
FLOOD_PID=""
cleanup() {
  local status=$?
  if [ -n "$FLOOD_PID" ]; then kill "$FLOOD_PID" 2>/dev/null || true; wait "$FLOOD_PID" 2>/dev/null || true; fi
  dvt_dev_down
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dvt_dev_up "$BIN" "$WORK/data" --nodes 3 --groups "$GROUPS_N" --base-port "$BASE_PORT"
NODES="http://127.0.0.1:$((BASE_PORT + 1)),http://127.0.0.1:$((BASE_PORT + 2)),http://127.0.0.1:$((BASE_PORT + 3))"
echo "body-flood.sh: $("$BIN" --version), 3 nodes, $GROUPS_N groups, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

appends() {
  "$BIN" bench --nodes "$NODES" --workload append --concurrency "$CONNS" --duration "$DURATION" \
    --warmup 1 --no-progress --json >"$WORK/$1.json"
}

for round in $(seq 1 "$ROUNDS"); do
  appends "alone-$round"
  "$BIN" bench --nodes "$NODES" --workload deliver --size "$FLOOD_SIZE" --rate "$FLOOD_RATE" \
    --concurrency 64 --duration "$((DURATION + 4))" --warmup 0 --no-progress --json \
    >"$WORK/flood-$round.json" &
  FLOOD_PID=$!
  sleep 2
  appends "flooded-$round"
  wait "$FLOOD_PID"
  FLOOD_PID=""
done

python3 - "$WORK" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def op(path):
    report = json.load(open(path))
    (_, o), = report["operations"].items()
    return o
ratios = []
print("round  appends/s alone  flooded   p50 alone  flooded   p99 alone  flooded   p99 ratio   flood bodies/s  MB/s")
for r in range(1, rounds + 1):
    a, f, fl = op(f"{work}/alone-{r}.json"), op(f"{work}/flooded-{r}.json"), op(f"{work}/flood-{r}.json")
    ratio = f["latency_us"]["p99"] / max(a["latency_us"]["p99"], 1)
    ratios.append(ratio)
    print(f"{r:>5}  {a['ops_per_second']:>15.0f}  {f['ops_per_second']:>7.0f}   "
          f"{a['latency_us']['p50']/1000:>7.2f} ms {f['latency_us']['p50']/1000:>6.2f} ms "
          f"{a['latency_us']['p99']/1000:>7.2f} ms {f['latency_us']['p99']/1000:>6.2f} ms "
          f"{ratio:>8.2f}   {fl.get('messages_per_second', 0):>14.1f}  {fl.get('megabytes_per_second', 0):>5.1f}")
print(f"median p99 ratio (flooded / alone): {statistics.median(ratios):.2f} (target <= 1.5)")
PY
