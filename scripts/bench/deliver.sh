#!/usr/bin/env bash
# Deliveries with bodies against the disk's floor and against index-only appends (issue "Message
# bodies", Performance).
#
#   scripts/bench/deliver.sh [--duration 10] [--sizes "4k 100k 1m"] [--connections "1 16"]
#                            [--groups 16] [--base-port 7500] [--bin PATH] [--keep]
#
# A 3-node `dovetail dev` from a release build (target/release/dovetail, built when missing, or
# --bin; API ports P+1..P+3, peer ports P+101..P+103), data in a new temporary directory under
# $TMPDIR (default /var/tmp); it waits (up to 30 s) until the groups' leaders are spread over the
# nodes. Then, for each size: the floor (`dovetail bench --workload fsync-floor`: files of that
# size written and fsync'd one after another in the same temporary directory, so on the nodes'
# filesystem, while the cluster is idle), then `--workload deliver --size S` at each connection
# count; then index-only appends (`--workload append`) at each connection count. Each run is
# --duration seconds after a 1 s warm-up. The table (scripts/bench/deliver_table.py) gives per
# size and connections messages/s, MB/s, the floor's MB/s and the ratio to it (target >= 0.3
# for 1 MiB), and for 4 KiB the ratio to appends (target >= 0.5). Every report's JSON is kept in
# the work directory with --keep. Stops only what it started (scripts/dev-lib.sh); exit 1 when a
# run fails.
set -euo pipefail
# shellcheck source=../dev-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/../dev-lib.sh"

usage() {
  sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DURATION=10
SIZES="4k 100k 1m"
CONNECTIONS="1 16"
GROUPS_N=16
BASE_PORT=7500
BIN=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:?}"; shift 2 ;;
    --sizes) SIZES="${2:?}"; shift 2 ;;
    --connections) CONNECTIONS="${2:?}"; shift 2 ;;
    --groups) GROUPS_N="${2:?}"; shift 2 ;;
    --base-port) BASE_PORT="${2:?}"; shift 2 ;;
    --bin) BIN="${2:?}"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
for n in $DURATION $CONNECTIONS $GROUPS_N $BASE_PORT; do
  [[ "$n" =~ ^[0-9]+$ ]] || usage
done

if [ -z "$BIN" ]; then
  BIN="$ROOT/target/release/dovetail"
  if [ ! -x "$BIN" ]; then
    echo "building target/release/dovetail ..." >&2
    (cd "$ROOT" && cargo build --release --quiet --bin dovetail)
  fi
fi
BIN="$(realpath "$BIN")"

WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/dvt-deliver.XXXXXX")"
OUT="$WORK/reports"
mkdir -p "$OUT"
cleanup() {
  local status=$?
  dvt_dev_down
  if [ "$KEEP" = 1 ] || [ "$status" != 0 ]; then
    echo "deliver.sh: data, logs and reports kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dvt_dev_up "$BIN" "$WORK/data" --nodes 3 --groups "$GROUPS_N" --base-port "$BASE_PORT"
NODES="http://127.0.0.1:$((BASE_PORT + 1)),http://127.0.0.1:$((BASE_PORT + 2)),http://127.0.0.1:$((BASE_PORT + 3))"

# Groups led per node from node 1's /admin/status: "<max - min> <n1>/<n2>/<n3>", or nothing.
leader_spread() {
  curl -s -m 2 -H "Authorization: Bearer $DOVETAIL_ADMIN_TOKEN" "http://127.0.0.1:$((BASE_PORT + 1))/admin/status" | python3 -c '
import json, sys
try:
    groups = json.load(sys.stdin)["groups"]
except Exception:
    sys.exit(0)
led = {1: 0, 2: 0, 3: 0}
for g in groups:
    if g.get("leader") not in led:
        sys.exit(0)
    led[g["leader"]] += 1
print(max(led.values()) - min(led.values()), "/".join(str(led[n]) for n in (1, 2, 3)))
'
}
spread=""
for _ in $(seq 1 60); do
  spread="$(leader_spread)"
  if [ -n "$spread" ] && [ "${spread%% *}" -le 1 ]; then break; fi
  sleep 0.5
done
echo "deliver.sh: $("$BIN" --version), 3 nodes, $GROUPS_N groups (led per node: ${spread#* }), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), work dir $WORK on $(df -P "$WORK" | awk 'NR == 2 { print $1 }')" >&2

bench() {
  local out="$1"
  shift
  "$BIN" bench --duration "$DURATION" --warmup 1 --no-progress --json "$@" >"$OUT/$out.json"
}

for size in $SIZES; do
  bytes="$(python3 -c 'import sys; s = sys.argv[1].lower(); m = {"k": 1 << 10, "m": 1 << 20}; print(int(s[:-1]) * m[s[-1]] if s[-1] in m else int(s))' "$size")"
  echo "deliver.sh: floor, $size" >&2
  bench "floor-$bytes" --workload fsync-floor --size "$size" --dir "$WORK"
  for conns in $CONNECTIONS; do
    echo "deliver.sh: deliver $size at $conns connections" >&2
    bench "deliver-$bytes-$conns" --nodes "$NODES" --workload deliver --size "$size" --concurrency "$conns"
  done
done
for conns in $CONNECTIONS; do
  echo "deliver.sh: index-only appends at $conns connections" >&2
  bench "append-$conns" --nodes "$NODES" --workload append --concurrency "$conns"
done
du -sh "$WORK/data" >&2
python3 "$ROOT/scripts/bench/deliver_table.py" "$OUT"
