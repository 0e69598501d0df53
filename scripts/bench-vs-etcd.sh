#!/usr/bin/env bash
# Dovetail appends vs etcd puts (or linearizable reads of each), both driven by the same external
# client (wrk) on this machine.
#
#   scripts/bench-vs-etcd.sh [--duration 15] [--connections "1 16 64 256"] [--json FILE]
#                            [--mode writes|reads] [--target all|one] [--threads 2] [--warmup 3]
#                            [--bin PATH] [--groups 16[,256,...]] [--users 64] [--etcd-port 23790]
#                            [--dovetail-port 7300] [--server-threads N] [--repeat 1]
#                            [--skip-etcd] [--skip-dovetail] [--keep]
#
# What it does, one system at a time (never both running at once):
#  1. Installs Debian's etcd-server, etcd-client and wrk with apt-get when missing (needs root).
#  2. etcd 3.4: a 3-member cluster on 127.0.0.1 (client ports P+1..P+3, peer ports P+11..P+13),
#     data under a temporary directory on disk, durable (no --unsafe-no-fsync: the WAL is
#     fsync'd before a put is acknowledged). Driven through its JSON gateway: POST /v3/kv/put of
#     a distinct key and a 100-byte value per request (scripts/bench/etcd-put.lua).
#  3. Dovetail: a 3-node `dovetail dev --base-port D --groups G` (API ports D+1..D+3, peer ports
#     D+101..D+103, node 1 bootstraps, fresh secret and tokens; scripts/dev-lib.sh), data under
#     the temporary directory; `--users` users get an INBOX first; then it waits (up to 60 s) until the
#     groups' leaders are spread evenly over the nodes (node 1 bootstraps and leads most groups
#     at first, the rebalancer moves one every 2 s), so no leader moves during a run; then
#     appends of one message each with a GUID no other request uses, users in turn, so the
#     load spreads over the groups
#     (scripts/bench/dovetail-append.lua). Release build: target/release/dovetail (built with
#     `cargo build --release` when missing) or --bin.
#  --mode reads measures linearizable reads instead, of data written before the runs: etcd
#     POST /v3/kv/range of one of --users keys it put first (100-byte values; etcd's default,
#     serializable false: a read index from the leader before the answer;
#     scripts/bench/etcd-range.lua) against Dovetail GET /v1/users/<user>/mailboxes/INBOX?
#     consistency=linearizable (the mailbox's status; the node asks the group's leader for a read
#     index and waits until it has applied that far; scripts/bench/dovetail-status.lua), keys and
#     users in the same turn, through any node as the writes are.
#  --groups 16,256,1024 sweeps Dovetail's group count: within each run etcd is measured once, then
#     Dovetail once per group count on fresh data (with the clean-up and pause between), and the
#     tables have one row per group count and connection count (a first "groups" column), each
#     Dovetail row against the same etcd figures. With more groups than --users only --users
#     groups get requests. The rebalancer moves one leader every 2 s, so from a few hundred
#     groups on the leaders are not spread when the 60 s wait ends (256 groups: 198/29/29 led by
#     nodes 1/2/3, 1,024: 923/66/35 on the 2-core machine) and node 1 leads most of them.
#  4. For each connection count N: `wrk -c N -d <duration> --latency --timeout 10s`. With
#     --target all (default) the N connections are split over one wrk process per node (3
#     processes once N >= 3; each with max(1, threads/3) threads) and the results are summed:
#     requests/s added, percentiles merged from each process's percentile grid (written by the
#     Lua done(), 1% steps up to p99, 0.1% to p99.9). With --target one a single wrk (threads =
#     min(--threads, N)) sends everything to node 1 / member 1; a follower then forwards every
#     etcd put to the leader, and Dovetail forwards each append to its group's leader (about
#     two thirds of them with 3 nodes), the same as with --target all, but one node also does
#     all the HTTP work.
#  With --server-threads N every server process runs N threads of its own: etcd with
#     GOMAXPROCS=N, Dovetail with --worker-threads N (its tokio runtime; its log flusher and
#     sled's IO threads are extra, as etcd's blocked-in-syscall threads are). Default: neither is
#     set, each uses one per CPU.
#  Between the systems etcd's data directories are removed, `sync` runs and the script waits 5 s,
#     so Dovetail does not start while etcd's files are still being written back or freed.
#  With --repeat N the whole sequence (etcd, then Dovetail, each on fresh data) runs N times,
#     with the same clean-up and pause between runs; each run prints its own tables, and a last
#     table gives per connection count the median over the runs of each system's figures and of
#     the runs' ratios (each ratio from one run's pair of measurements, minutes apart), with the
#     ratios' range. On a shared machine whose speed drifts by tens of percent within minutes,
#     the median of paired ratios is the figure to quote.
#  5. Per system and N it also measures the CPU used by the 3 server processes and by wrk
#     (cores busy on average: CPU seconds / wall seconds, from /proc and `times`) and the log
#     fsyncs of all nodes (count per second and mean duration, from each system's /metrics);
#     for Dovetail also the log entries its leaders proposed per second and the requests each
#     carried on average (dovetail_proposal_batch_requests: one entry per replication round of a
#     group, so requests per entry is the batch a round shares its cost over).
#
# Output: the side-by-side table (ratios are Dovetail / etcd: > 1 means Dovetail has more
# throughput or higher latency), a resources table, and with --json FILE the same as JSON.
# Every figure printed (sums over the wrk processes, merged percentiles, per-second rates,
# ratios, medians) is computed by scripts/bench/vs_etcd_table.py from the files this script
# writes (`vs_etcd_table.py --self-test` checks it); this script starts processes and reads
# counters.
# Any non-2xx answer or socket error (connect, read, write, timeout) is flagged in the table
# with "!" and listed below it, and `"clean": false` in the JSON; the exit code stays 0 then.
# Exit 1 on a failure to set up, 2 on a usage error. Every process it started is stopped on
# exit (trap), and nothing else; the temporary directory is removed unless --keep (or a set-up
# failed: then it is kept, with the logs, and named).
set -euo pipefail
# shellcheck source=dev-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/dev-lib.sh"

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "bench-vs-etcd: $*" >&2
  exit 1
}

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LUA_DIR="$ROOT/scripts/bench"
TABLE="$ROOT/scripts/bench/vs_etcd_table.py"   # every sum, percentile, ratio and median printed
DURATION=15
CONNECTIONS="1 16 64 256"
JSON_OUT=""
TARGET=all
THREADS=2
WARMUP=3
BIN=""
GROUPS_LIST=16   # Dovetail's group counts, comma-separated: one Dovetail cluster each
MODE=writes
USERS=64
ETCD_PORT=23790
DVT_PORT=7300
RUN_ETCD=1
RUN_DOVETAIL=1
KEEP=0
SERVER_THREADS=""
SETTLE=5         # seconds of quiet after etcd's clean-up, before Dovetail starts
REPEAT=1

while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:?}"; shift 2 ;;
    --connections) CONNECTIONS="${2:?}"; shift 2 ;;
    --json) JSON_OUT="${2:?}"; shift 2 ;;
    --target) TARGET="${2:?}"; shift 2 ;;
    --threads) THREADS="${2:?}"; shift 2 ;;
    --warmup) WARMUP="${2:?}"; shift 2 ;;
    --bin) BIN="${2:?}"; shift 2 ;;
    --groups) GROUPS_LIST="${2:?}"; shift 2 ;;
    --mode) MODE="${2:?}"; shift 2 ;;
    --users) USERS="${2:?}"; shift 2 ;;
    --etcd-port) ETCD_PORT="${2:?}"; shift 2 ;;
    --dovetail-port) DVT_PORT="${2:?}"; shift 2 ;;
    --skip-etcd) RUN_ETCD=0; shift ;;
    --skip-dovetail) RUN_DOVETAIL=0; shift ;;
    --keep) KEEP=1; shift ;;
    --server-threads) SERVER_THREADS="${2:?}"; shift 2 ;;
    --repeat) REPEAT="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
case "$TARGET" in all|one) ;; *) usage ;; esac
case "$MODE" in
  writes) ETCD_SCRIPT=etcd-put.lua; DVT_SCRIPT=dovetail-append.lua ;;
  reads) ETCD_SCRIPT=etcd-range.lua; DVT_SCRIPT=dovetail-status.lua ;;
  *) usage ;;
esac
[[ "$GROUPS_LIST" =~ ^[0-9]+(,[0-9]+)*$ ]] || usage
IFS=, read -r -a GROUP_COUNTS <<<"$GROUPS_LIST"
for n in "${GROUP_COUNTS[@]}"; do [ "$n" -ge 1 ] || usage; done
for n in $DURATION $THREADS $WARMUP $USERS $ETCD_PORT $DVT_PORT $CONNECTIONS $SERVER_THREADS $REPEAT; do
  [[ "$n" =~ ^[0-9]+$ ]] || usage
done
if [ "$THREADS" -lt 1 ] || [ "$DURATION" -lt 1 ] || [ "$USERS" -lt 1 ] || [ "$REPEAT" -lt 1 ]; then usage; fi
if [ -n "$SERVER_THREADS" ] && [ "$SERVER_THREADS" -lt 1 ]; then usage; fi

# --- processes and clean-up ---------------------------------------------------------------------

PIDS=()          # server processes (etcd members, dovetail nodes) of the running system
                 # (Dovetail's are started and stopped by `dovetail dev`: dvt_dev_up/down)
WRK_SHELLS=()    # subshells running wrk
WORK=""
FAILED=1         # cleared at the normal end; a failure keeps the temporary directory

stop_pids() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  local shell
  for shell in "${WRK_SHELLS[@]}"; do
    pkill -TERM -P "$shell" 2>/dev/null || true
  done
  [ ${#WRK_SHELLS[@]} -eq 0 ] || stop_pids "${WRK_SHELLS[@]}"
  dvt_dev_down
  [ ${#PIDS[@]} -eq 0 ] || stop_pids "${PIDS[@]}"
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP" = 1 ] || [ "$FAILED" = 1 ]; then
      echo "bench-vs-etcd: data and logs kept in $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools --------------------------------------------------------------------------------------

install_missing() {
  local missing=()
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]} and not root: install them with apt-get"
  local log
  log="$(mktemp)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
         || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; }; } \
       >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    rm -f "$log"
    die "could not install ${missing[*]}"
  fi
  rm -f "$log"
}
[ "$RUN_ETCD" = 0 ] || install_missing
command -v wrk >/dev/null 2>&1 || install_missing

if [ "$RUN_DOVETAIL" = 1 ]; then
  if [ -z "$BIN" ]; then
    BIN="$ROOT/target/release/dovetail"
    if [ ! -x "$BIN" ]; then
      echo "building target/release/dovetail ..." >&2
      (cd "$ROOT" && cargo build --release --quiet --bin dovetail) || die "cargo build --release failed"
    fi
  fi
  [ -x "$BIN" ] || die "no dovetail binary at $BIN"
fi

port_free() {
  [ -z "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]
}
for i in 1 2 3; do
  if [ "$RUN_ETCD" = 1 ]; then
    if ! port_free $((ETCD_PORT + i)) || ! port_free $((ETCD_PORT + 10 + i)); then
      die "port $((ETCD_PORT + i)) or $((ETCD_PORT + 10 + i)) is in use: pick --etcd-port"
    fi
  fi
  if [ "$RUN_DOVETAIL" = 1 ]; then
    if ! port_free $((DVT_PORT + i)) || ! port_free $((DVT_PORT + 100 + i)); then
      die "port $((DVT_PORT + i)) or $((DVT_PORT + 100 + i)) is in use: pick --dovetail-port"
    fi
  fi
done

WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/dvt-bench.XXXXXX")"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
ALL_RESULTS="$WORK/results-all.tsv"   # every run's lines, prefixed with the run's number
: >"$ALL_RESULTS"
CLK_TCK="$(getconf CLK_TCK)"
# 4 hex digits per run of the script; with the connection count (4 more) it starts every GUID
# and etcd key, so no two runs or levels write the same one.
NONCE_BASE="$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"

# --- measurement helpers ------------------------------------------------------------------------

# Sum of user + system CPU ticks of the given processes.
cpu_ticks() {
  python3 "$TABLE" cpu-ticks "$@"
}

# Sum over the given /metrics URLs of the series named $2 ("count sum" of a histogram $2).
# Usage: metric_pair AUTH_HEADER NAME URL...
metric_pair() {
  local auth="$1" name="$2" url
  shift 2
  for url in "$@"; do
    if [ -n "$auth" ]; then curl -sf -H "$auth" "$url" || true; else curl -sf "$url" || true; fi
  done | python3 "$TABLE" metric-pair "$name"
}

# Runs wrk at N connections against the system's URLs; appends one line to $RESULTS:
#   system conns procs req_per_s requests p50_us p99_us non2xx socket_errors nodes_cpu wrk_cpu
#   fsyncs_per_s fsync_mean_ms entries_per_s requests_per_entry
# (the last two Dovetail's only, from its proposal batches; "-" for etcd)
run_level() {
  local system="$1" conns="$2" script="$3"
  shift 3
  local urls=("$@")
  local procs=1 i
  if [ "$TARGET" = all ]; then procs=$((conns < 3 ? conns : 3)); fi
  local dir="$WORK/$system-c$conns"
  [ "$system" = etcd ] || dir="$WORK/$system-g$CUR_GROUPS-c$conns"
  mkdir -p "$dir"
  local metrics_urls=() auth=""
  if [ "$system" = etcd ]; then
    for i in 1 2 3; do metrics_urls+=("http://127.0.0.1:$((ETCD_PORT + i))/metrics"); done
  else
    auth="Authorization: Bearer $DOVETAIL_ADMIN_TOKEN"
    for i in 1 2 3; do metrics_urls+=("http://127.0.0.1:$((DVT_PORT + i))/metrics"); done
  fi
  local fsync_name=etcd_disk_wal_fsync_duration_seconds
  [ "$system" = dovetail ] && fsync_name=dovetail_log_fsync_seconds
  local fsync_before batch_before="" cpu_before start_ns
  fsync_before="$(metric_pair "$auth" "$fsync_name" "${metrics_urls[@]}")"
  [ "$system" = dovetail ] && batch_before="$(metric_pair "$auth" dovetail_proposal_batch_requests "${metrics_urls[@]}")"
  cpu_before="$(cpu_ticks "${PIDS[@]}")"
  start_ns="$(date +%s%N)"
  WRK_SHELLS=()
  for ((i = 0; i < procs; i++)); do
    local c=$((conns / procs + (i < conns % procs ? 1 : 0)))
    local t=$((THREADS / procs))
    [ "$TARGET" = one ] && t=$THREADS
    [ "$t" -ge 1 ] || t=1
    [ "$t" -le "$c" ] || t=$c
    local args=("$NONCE_BASE$(printf '%04x' "$conns")" "$i")
    if [ "$system" = dovetail ]; then
      args+=("$USER_PREFIX" "$USERS")
    elif [ "$MODE" = reads ]; then
      args+=("$ETCD_READ_PREFIX" "$USERS")
    fi
    (
      WRK_SUMMARY_FILE="$dir/summary-$i" wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout 10s --latency \
        -s "$LUA_DIR/$script" "${urls[$i]}" -- "${args[@]}" >"$dir/wrk-$i.out" 2>&1
      # Line 2 of `times`: CPU of this subshell's children, i.e. of wrk.
      times >"$dir/times-$i"
    ) &
    WRK_SHELLS+=($!)
  done
  for i in "${WRK_SHELLS[@]}"; do wait "$i" || true; done
  WRK_SHELLS=()
  local end_ns cpu_after fsync_after batch_after=""
  end_ns="$(date +%s%N)"
  cpu_after="$(cpu_ticks "${PIDS[@]}")"
  fsync_after="$(metric_pair "$auth" "$fsync_name" "${metrics_urls[@]}")"
  [ "$system" = dovetail ] && batch_after="$(metric_pair "$auth" dovetail_proposal_batch_requests "${metrics_urls[@]}")"

  for ((i = 0; i < procs; i++)); do
    [ -s "$dir/summary-$i" ] || die "wrk produced no summary ($dir/wrk-$i.out): $(tail -n 3 "$dir/wrk-$i.out")"
  done
  # Requests/s and errors summed, percentiles merged from the processes' grids, CPU and fsyncs
  # per second of wall time: scripts/bench/vs_etcd_table.py.
  local batch=()
  [ "$system" = dovetail ] && batch=(--batch "$batch_before" "$batch_after" --groups "$CUR_GROUPS")
  local row
  row="$(python3 "$TABLE" level "$dir" --system "$system" --conns "$conns" --procs "$procs" \
    --start-ns "$start_ns" --end-ns "$end_ns" --cpu-ticks "$cpu_before" "$cpu_after" \
    --clk-tck "$CLK_TCK" --fsync "$fsync_before" "$fsync_after" "${batch[@]}")" \
    || die "could not reduce the results in $dir"
  echo "$row" >>"$RESULTS"
  echo "  $system${CUR_GROUPS:+ ($CUR_GROUPS groups)}, $conns connections: $(tail -n 1 "$RESULTS" | cut -f4) req/s" >&2
}

warm_up() {
  local script="$1" url="$2"
  shift 2
  WRK_SUMMARY_FILE="" wrk -t1 -c4 -d"${WARMUP}s" -s "$LUA_DIR/$script" "$url" -- "$@" >/dev/null 2>&1 || true
}

# --- etcd ---------------------------------------------------------------------------------------

run_etcd() {
  local cluster="" i
  for i in 1 2 3; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$((ETCD_PORT + 10 + i))"
  done
  for i in 1 2 3; do
    local client="http://127.0.0.1:$((ETCD_PORT + i))" peer="http://127.0.0.1:$((ETCD_PORT + 10 + i))"
    ${SERVER_THREADS:+env GOMAXPROCS=$SERVER_THREADS} etcd --name "e$i" --data-dir "$WORK/etcd$i" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "dvt-bench-$NONCE_BASE" >"$WORK/etcd$i.log" 2>&1 &
    PIDS+=($!)
  done
  local up=0
  for _ in $(seq 1 150); do
    up=0
    for i in 1 2 3; do
      curl -sf "http://127.0.0.1:$((ETCD_PORT + i))/health" 2>/dev/null | grep -q '"true"' && up=$((up + 1))
    done
    [ "$up" = 3 ] && break
    sleep 0.2
  done
  [ "$up" = 3 ] || die "etcd did not become healthy (logs: $WORK/etcd*.log)"
  local probe
  probe="$(curl -s -o /dev/null -w '%{http_code}' -XPOST "http://127.0.0.1:$((ETCD_PORT + 1))/v3/kv/put" \
    -d '{"key":"cHJvYmU=","value":"cHJvYmU="}')"
  [ "$probe" = 200 ] || die "etcd's JSON gateway answered $probe to a put"
  local read_args=()
  if [ "$MODE" = reads ]; then
    # The keys the reads ask for, one per "user", each with a 100-byte value as the puts write.
    ETCD_READ_PREFIX="bench-read/$NONCE_BASE/"
    read_args=("$ETCD_READ_PREFIX" "$USERS")
    local value key code
    value="$(printf 'v%.0s' $(seq 1 100) | base64 -w0)"
    for ((i = 0; i < USERS; i++)); do
      key="$(printf '%s' "$ETCD_READ_PREFIX$i" | base64 -w0)"
      code="$(curl -s -o /dev/null -w '%{http_code}' -XPOST "http://127.0.0.1:$((ETCD_PORT + 1 + i % 3))/v3/kv/put" \
        -d "{\"key\":\"$key\",\"value\":\"$value\"}")"
      [ "$code" = 200 ] || die "putting etcd key $ETCD_READ_PREFIX$i: HTTP $code"
    done
  fi
  ETCD_VERSION="$(etcd --version | awk '/etcd Version/ { print $3 }')"
  echo "etcd $ETCD_VERSION: 3 members up on 127.0.0.1:$((ETCD_PORT + 1))-$((ETCD_PORT + 3))" >&2
  local urls=() conns
  for i in 1 2 3; do urls+=("http://127.0.0.1:$((ETCD_PORT + i))"); done
  CUR_GROUPS=""
  warm_up "$ETCD_SCRIPT" "${urls[0]}" "${NONCE_BASE}ffff" 9 "${read_args[@]}"
  for conns in $CONNECTIONS; do run_level etcd "$conns" "$ETCD_SCRIPT" "${urls[@]}"; sleep 1; done
  stop_pids "${PIDS[@]}"
  PIDS=()
  # The next system starts on a quiet disk: etcd's data (its WAL segments are preallocated 64 MB
  # files) is removed and written back before it, not during its first runs.
  rm -rf "$WORK"/etcd1 "$WORK"/etcd2 "$WORK"/etcd3
  sync
  sleep "$SETTLE"
}

# --- dovetail -----------------------------------------------------------------------------------

# Usage: run_dovetail GROUPS
run_dovetail() {
  local i
  CUR_GROUPS="$1"
  local serve_flags=()
  [ -z "$SERVER_THREADS" ] || serve_flags=(-- --worker-threads "$SERVER_THREADS")
  # Every group has a leader once it returns; the tokens are exported.
  DVT_DEV_WAIT_S=90 dvt_dev_up "$BIN" "$WORK/dovetail" --nodes 3 --groups "$CUR_GROUPS" \
    --base-port "$DVT_PORT" "${serve_flags[@]}" \
    || die "dovetail did not elect every group's leader (logs: $WORK/dovetail/node*/node.log)"
  PIDS=("${DVT_DEV_NODE_PIDS[@]}")
  USER_PREFIX="wrk-$NONCE_BASE-"
  for ((i = 0; i < USERS; i++)); do
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' -XPOST \
      "http://127.0.0.1:$((DVT_PORT + 1 + i % 3))/v1/users/$USER_PREFIX$i/mailboxes" \
      -H "Authorization: Bearer $DOVETAIL_CLIENT_TOKEN" -H 'content-type: application/json' \
      -d '{"name":"INBOX"}')"
    [ "$code" = 201 ] || [ "$code" = 409 ] || die "creating the INBOX of $USER_PREFIX$i: HTTP $code"
  done
  # Measure the steady state: node 1 bootstraps and at first leads most groups; the automatic
  # rebalancer hands them over one at a time (every 2 s), and a leader moving during a run
  # would show as a latency spike that a settled cluster does not have.
  local spread="" balanced=0
  for _ in $(seq 1 120); do
    spread="$(leader_spread "http://127.0.0.1:$((DVT_PORT + 1))")"
    if [ -n "$spread" ] && [ "${spread%% *}" -le 1 ]; then
      balanced=1
      break
    fi
    sleep 0.5
  done
  if [ "$balanced" = 1 ]; then
    echo "dovetail: leaders balanced (groups led per node: ${spread#* })" >&2
  else
    echo "dovetail: leaders not balanced after 60 s (groups led per node: ${spread#* }); measuring anyway" >&2
  fi
  echo "dovetail $("$BIN" --version | awk '{ print $2 }'): 3 nodes, $CUR_GROUPS groups, $USERS users on 127.0.0.1:$((DVT_PORT + 1))-$((DVT_PORT + 3))" >&2
  local urls=() conns
  for i in 1 2 3; do urls+=("http://127.0.0.1:$((DVT_PORT + i))"); done
  warm_up "$DVT_SCRIPT" "${urls[0]}" "${NONCE_BASE}ffff" 9 "$USER_PREFIX" "$USERS"
  for conns in $CONNECTIONS; do run_level dovetail "$conns" "$DVT_SCRIPT" "${urls[@]}"; sleep 1; done
  dvt_dev_down
  PIDS=()
}

# Prints "<max - min> <groups led by node 1>/<node 2>/<node 3>" from a node's /admin/status, or
# nothing if the status cannot be read (in 2 s: a curl timeout must not end the script under
# pipefail) or a group has no leader.
leader_spread() {
  { curl -s -m 2 -H "Authorization: Bearer $DOVETAIL_ADMIN_TOKEN" "$1/admin/status" || true; } | python3 -c '
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

ETCD_VERSION=""
USER_PREFIX=""
ETCD_READ_PREFIX=""
CUR_GROUPS=""
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -d ${DURATION}s --latency, $MODE, connections: $CONNECTIONS, target: $TARGET, groups: $GROUPS_LIST; server threads: ${SERVER_THREADS:-one per CPU}; load average $LOADAVG; work dir $WORK" >&2

# --- report -------------------------------------------------------------------------------------

# The table, the resources table, the list of runs with errors, and the JSON (to $2 unless
# empty), from the results file $1.
report() {
  python3 "$TABLE" report "$1" --json "$2" --duration "$DURATION" --target "$TARGET" \
    --etcd-version "$ETCD_VERSION" --connections "$CONNECTIONS" --cores "$(nproc)" --loadavg "$LOADAVG" \
    --mode "$MODE" --groups "$GROUPS_LIST"
}

# With --repeat: per system and connection count the median of each figure over the runs, and
# the median and range of the runs' own ratios; the JSON (to $JSON_OUT) holds the same.
report_medians() {
  python3 "$TABLE" medians "$ALL_RESULTS" --json "$JSON_OUT" --duration "$DURATION" \
    --target "$TARGET" --runs "$REPEAT" --etcd-version "$ETCD_VERSION" \
    --connections "$CONNECTIONS" --cores "$(nproc)" --mode "$MODE" --groups "$GROUPS_LIST"
}
for ((RUN = 1; RUN <= REPEAT; RUN++)); do
  if [ "$RUN" -gt 1 ]; then
    # A fresh start for the next run: new keys and GUIDs, Dovetail's data gone and written back.
    NONCE_BASE="$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
    rm -rf "$WORK/dovetail"
    sync
    sleep "$SETTLE"
  fi
  [ "$REPEAT" = 1 ] || echo "== run $RUN of $REPEAT ($(date -u +%H:%M:%S) UTC)" >&2
  : >"$RESULTS"
  [ "$RUN_ETCD" = 0 ] || run_etcd
  if [ "$RUN_DOVETAIL" = 1 ]; then
    for ((G = 0; G < ${#GROUP_COUNTS[@]}; G++)); do
      if [ "$G" -gt 0 ]; then
        # The next group count on fresh data, after the same clean-up and pause.
        rm -rf "$WORK/dovetail"
        sync
        sleep "$SETTLE"
      fi
      run_dovetail "${GROUP_COUNTS[$G]}"
    done
  fi
  sed "s/^/$RUN\t/" "$RESULTS" >>"$ALL_RESULTS"
  if [ "$REPEAT" -gt 1 ]; then
    echo "run $RUN of $REPEAT:"
    report "$RESULTS" ""
    echo
  fi
done
if [ "$REPEAT" = 1 ]; then
  report "$RESULTS" "$JSON_OUT"
else
  report_medians
fi
FAILED=0
