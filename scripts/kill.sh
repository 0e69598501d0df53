#!/usr/bin/env bash
# kill -9 a node of the netns cluster (its data stays; restart.sh brings it back). Waits until
# the process is gone. A node that is not running is left as it is.
#
#   kill.sh <node|all>
set -euo pipefail
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/netns-lib.sh"
DVT_USAGE="kill.sh <node|all>"

[ $# = 1 ] || dvt_usage_error "expected one node"
dvt_require_root
ids="$(dvt_node_ids "$1")"
for i in $ids; do
  pid="$(dvt_pid "$i")"
  [ -n "$pid" ] || continue
  kill -KILL "$pid" 2>/dev/null || true
  dvt_wait_gone "$pid" 10 || dvt_die "node $i (pid $pid) is still there 10 s after SIGKILL"
done
