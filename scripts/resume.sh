#!/usr/bin/env bash
# SIGCONT a node of the netns cluster paused by pause.sh. Waits until the kernel no longer shows
# the process stopped. A named node that is not running is an error; `all` resumes the running
# ones (resuming a node that is not paused is harmless).
#
#   resume.sh <node|all>
set -euo pipefail
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/netns-lib.sh"
DVT_USAGE="resume.sh <node|all>"

[ $# = 1 ] || dvt_usage_error "expected one node"
dvt_require_root
ids="$(dvt_node_ids "$1")"
for i in $ids; do
  pid="$(dvt_pid "$i")"
  if [ -z "$pid" ]; then
    [ "$1" = all ] || dvt_die "node $i is not running"
    continue
  fi
  kill -CONT "$pid"
  deadline=$((SECONDS + 5))
  while [ "$(dvt_proc_state "$pid")" = T ]; do
    [ "$SECONDS" -lt "$deadline" ] || dvt_die "node $i (pid $pid) is still stopped"
    sleep 0.02
  done
done
