#!/usr/bin/env bash
# Starts a node of the netns cluster again (after kill.sh, or a crash) from its saved command
# line, in its namespace, with its data as it was; a node that is running is left as it is (a
# paused one is an error: resume.sh it). Then waits until the node's API answers /admin/status
# from the root namespace: 30 s, or $DOVETAIL_NETNS_WAIT_S. In a cluster with --proxy, the
# node's proxy is started again too if it is not running (its settings start clean).
#
#   restart.sh <node|all>
set -euo pipefail
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/netns-lib.sh"
DVT_USAGE="restart.sh <node|all>"

[ $# = 1 ] || dvt_usage_error "expected one node"
dvt_require_root
ids="$(dvt_node_ids "$1")"
for i in $ids; do
  proxy_pid=""
  if dvt_proxy_enabled; then
    proxy_pid="$(dvt_proxy_pid "$i")"
    [ -n "$proxy_pid" ] || { dvt_launch_proxy "$i"; proxy_pid="$(dvt_proxy_pid "$i")"; }
  fi
  pid="$(dvt_pid "$i")"
  if [ -z "$pid" ]; then
    others="$(ip netns pids "$(dvt_ns "$i")" 2>/dev/null | grep -vx "$proxy_pid" || true)"
    [ -n "$others" ] \
      && dvt_die "node $i has no live pid but its namespace $(dvt_ns "$i") still runs processes"
    dvt_launch "$i"
  elif [ "$(dvt_proc_state "$pid")" = T ]; then
    dvt_die "node $i (pid $pid) is paused; resume.sh $i"
  fi
done

dvt_load_admin_token
wait_s="${DOVETAIL_NETNS_WAIT_S:-30}"
deadline=$((SECONDS + wait_s))
for i in $ids; do
  until dvt_status "$i" >/dev/null; do
    if [ -z "$(dvt_pid "$i")" ]; then
      tail -n 20 "$(dvt_node_dir "$i")/node.log" >&2 || true
      dvt_die "node $i exited after restart (log: $(dvt_node_dir "$i")/node.log)"
    fi
    [ "$SECONDS" -lt "$deadline" ] \
      || dvt_die "node $i's API did not answer within ${wait_s}s (log: $(dvt_node_dir "$i")/node.log)"
    sleep 0.1
  done
done
