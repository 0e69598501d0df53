#!/bin/bash
# scripts/bench/idle.sh GROUPS [MAILBOXES]: a 3-node `dovetail dev` (release, $DOVETAIL_BIN) with GROUPS
# groups in a new temporary directory; once every group has a leader (and MAILBOXES mailboxes are
# created, fill_mailboxes.py) and 15 s passed, the CPU (cores, from /proc) each node uses over 20 s
# and its RSS. Needs ports 7001-7003, 7101-7103, 7201-7203 and 7301-7303 free, or those from
# $DVT_IDLE_BASE_PORT (as `dev --base-port`; default 7000) on. README
# "Performance". Stops only what it started (scripts/dev-lib.sh).
set -euo pipefail
# shellcheck source=../dev-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/../dev-lib.sh"
g=${1:?usage: idle.sh GROUPS [MAILBOXES]}; mailboxes=${2:-0}; bin="$(realpath "${DOVETAIL_BIN:-target/release/dovetail}")"
work="$(mktemp -d "${TMPDIR:-/tmp}/dovetail-idle.XXXXXX")"
trap 'dvt_dev_down; rm -rf "$work"' EXIT
t0=$SECONDS
export DVT_IDLE_BASE_PORT="${DVT_IDLE_BASE_PORT:-7000}"
dvt_dev_up "$bin" "$work/data" --nodes 3 --groups "$g" --base-port "$DVT_IDLE_BASE_PORT"
ready=$((SECONDS-t0))
if [ "$mailboxes" -gt 0 ]; then
  python3 "$(dirname "$0")/fill_mailboxes.py" "$mailboxes"
fi
sleep 15
pids=("${DVT_DEV_NODE_PIDS[@]}")
cpu() { local t=0 p; for p in "${pids[@]}"; do t=$((t + $(cut -d' ' -f14,15 "/proc/$p/stat" | tr ' ' '+'))); done; echo $t; }
c0=$(cpu); sleep 20; c1=$(cpu)
rss=$(for p in "${pids[@]}"; do grep VmRSS "/proc/$p/status" | awk '{print $2}'; done | tr '\n' ' ')
echo "groups=$g mailboxes=$mailboxes ready_in=${ready}s cpu_cores_per_node=$(python3 -c "print(round(($c1-$c0)/$(getconf CLK_TCK)/20/3,3))") rss_kib=[$rss]"
