#!/usr/bin/env bash
# Steers the TCP proxies of a netns cluster started with `netns-cluster.sh up N --proxy`. Node
# I's proxy carries every peer connection node I opens (its Raft RPCs, forwarded writes and
# read-index requests, snapshots) and the answers on them; connections other nodes open to node
# I pass through their own proxies. So `proxy.sh 2 refuse` cuts what node 2 sends (and asks)
# while the others still reach node 2.
#
#   proxy.sh <node|all> latency MS[:JITTER] [up|down|both]
#                                   delay every chunk forwarded from now on by MS plus uniform
#                                   0..JITTER ms (order kept); up = node I to its peers, down =
#                                   the answers; default both
#   proxy.sh <node|all> drop        reset (RST) every connection the proxy carries now
#   proxy.sh <node|all> refuse [S]  reset new connections at once, for S seconds or until clean
#   proxy.sh <node|all> blackhole [S]
#                                   accept new connections but never forward them (the node's
#                                   handshake times out), for S seconds or until clean
#   proxy.sh <node|all> clean       no latency, new connections forwarded again (existing ones
#                                   are kept; blackholed ones are reset)
#   proxy.sh <node|all> status      print each proxy's settings and counters (JSON per line)
#
# Latencies and jitters are whole milliseconds up to 60000. The command goes to the proxy's
# control port, 127.0.0.1:8100 inside the node's namespace. Quiet on success (but `status`);
# exit 1 if a proxy does not answer or refuses, 2 on a usage error.
set -euo pipefail
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/netns-lib.sh"
DVT_USAGE="proxy.sh <node|all> latency MS[:JITTER] [up|down|both] | drop | refuse [S] | blackhole [S] | clean | status"

[ $# -ge 2 ] || dvt_usage_error "expected a node and a command"
target="$1"
shift
case "$1" in
  latency)
    if [ $# -lt 2 ] || [ $# -gt 3 ]; then
      dvt_usage_error "latency takes MS[:JITTER] and an optional direction"
    fi
    ms="${2%%:*}"
    jitter=0
    [[ "$2" != *:* ]] || jitter="${2#*:}"
    dvt_in_range "$ms" 0 60000 || dvt_usage_error "latency '$ms' is not a number of ms in 0..60000"
    dvt_in_range "$jitter" 0 60000 || dvt_usage_error "jitter '$jitter' is not a number of ms in 0..60000"
    direction="${3:-both}"
    case "$direction" in up|down|both) ;; *) dvt_usage_error "direction '$direction' is not up, down or both" ;; esac
    command="latency $direction $((10#$ms)) $((10#$jitter))"
    ;;
  drop|clean|status)
    [ $# = 1 ] || dvt_usage_error "$1 takes no arguments"
    command="$1"
    ;;
  refuse|blackhole)
    [ $# -le 2 ] || dvt_usage_error "$1 takes at most a number of seconds"
    if [ $# = 2 ]; then
      dvt_in_range "$2" 1 60 || dvt_usage_error "'$2' is not a number of seconds in 1..60"
      command="$1 $((10#$2))"
    else
      command="$1"
    fi
    ;;
  *) dvt_usage_error "unknown command '$1'" ;;
esac

dvt_require_root
dvt_proxy_enabled || dvt_die "the cluster runs without proxies (start it with netns-cluster.sh up N --proxy)"
ids="$(dvt_node_ids "$target")"
status=0
for i in $ids; do
  if answer="$(dvt_proxy_ctl "$i" "$command")"; then
    [ "$command" != status ] || echo "node $i: $answer"
  else
    status=1
  fi
done
exit "$status"
