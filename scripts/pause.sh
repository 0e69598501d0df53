#!/usr/bin/env bash
# SIGSTOP a node of the netns cluster (resume.sh sends SIGCONT). Waits until the kernel shows the
# process stopped. A named node that is not running is an error; `all` pauses the running ones.
#
#   pause.sh <node|all>
set -euo pipefail
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/netns-lib.sh"
DVT_USAGE="pause.sh <node|all>"

[ $# = 1 ] || dvt_usage_error "expected one node"
dvt_require_root
ids="$(dvt_node_ids "$1")"
for i in $ids; do
  pid="$(dvt_pid "$i")"
  if [ -z "$pid" ]; then
    [ "$1" = all ] || dvt_die "node $i is not running"
    continue
  fi
  kill -STOP "$pid"
  deadline=$((SECONDS + 5))
  until [ "$(dvt_proc_state "$pid")" = T ]; do
    [ "$SECONDS" -lt "$deadline" ] || dvt_die "node $i (pid $pid) did not stop"
    sleep 0.02
  done
done
