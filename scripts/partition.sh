#!/usr/bin/env bash
# Partitions the netns cluster (netns-cluster.sh) with iptables, the way Jepsen's nemeses do:
# a spec becomes a *grudge* (each node -> the nodes it must not hear from), and each grudge entry
# is one DROP rule in the receiving node's namespace: INPUT, source address of the snubbed node.
# Every spec below is a symmetric grudge except `ring` on 3 nodes (as in Jepsen), so a cut pair
# is cut both ways by the rules at its two ends; OUTPUT is left alone. (A one-way cut still
# breaks TCP both ways, since the answers are dropped: on 3 nodes the ring leaves no two nodes
# connected, in Jepsen too.) A new partition replaces the previous one (the rules are healed
# first); heal.sh removes them.
#
#   partition.sh <spec>
#
# Specs (nodes are numbers 1..N):
#   I | isolate:I           node I alone vs the rest
#   halves                  Jepsen's partition-halves: 1..floor(N/2) vs the rest
#   halves:A|B[|C...]       explicit components, e.g. halves:1,2|3,4,5; together they must name
#                           every node once; no node hears from outside its own component
#   ring | ring:ORDER       Jepsen's majorities-ring: every node sees a majority (itself
#                           included) and no two nodes see the same one. Nodes sit on a ring in
#                           ORDER (a permutation such as 3,1,5,2,4; default 1..N); with
#                           m = floor(N/2)+1, for N <= 5 the node in the middle of each run of m
#                           consecutive ring nodes sees exactly that run (Jepsen's
#                           majorities-ring-perfect: N=5 -> each node sees its two ring
#                           neighbours); for N > 5, where Jepsen uses a randomized construction,
#                           each node sees its ceil((m-1)/2) = floor(m/2) ring neighbours on
#                           either side, which meets the same definition. Needs N >= 3.
#   bridge | bridge:A|B|C   Jepsen's bridge: A and C cannot talk, the nodes of B talk to
#                           everyone. Default: A = 1..floor(N/2), B = the next node, C = the rest
#                           (N=5: bridge:1,2|3|4,5). Together A, B, C must name every node once.
#
# Rules live in the chain DOVETAIL-NEMESIS of each namespace, jumped to from INPUT by a rule
# tagged `-m comment --comment dovetail-nemesis` (each DROP carries the same comment), so heal.sh
# removes exactly them. Only node addresses (10.77.0.11..) are ever dropped: the root namespace
# (10.77.0.1, where clients and the Jepsen runner live) always reaches every node. Node-to-node
# API calls are cut along with peer traffic (the rules match the address, not the port).
#
# DOVETAIL_NEMESIS_DRY_RUN=1 prints the commands that would install the rules, one per line,
# instead of running them; the node count then comes from DOVETAIL_NETNS_NODES when set, so no
# cluster (and no root) is needed.
set -euo pipefail
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/netns-lib.sh"
DVT_USAGE="partition.sh <I | isolate:I | halves[:A|B...] | ring[:ORDER] | bridge[:A|B|C]>   (A, B, C: comma-separated node lists)"

[ $# = 1 ] || dvt_usage_error "expected one spec"
spec="$1"
n="$(dvt_nodes)"
dry_run="${DOVETAIL_NEMESIS_DRY_RUN:-0}"

# Parses "1,2|3|4,5" into the array `components` (each element a space-separated node list),
# checking that every entry is a node of 1..N and that no node appears twice.
parse_components() {
  local text="$1" part node
  local -A seen=()
  components=()
  IFS='|' read -ra parts <<<"$text"
  [[ "$text" != *'|' ]] || dvt_usage_error "empty component in '$text'"
  for part in "${parts[@]}"; do
    [ -n "$part" ] || dvt_usage_error "empty component in '$text'"
    local list=""
    IFS=',' read -ra nodes <<<"$part"
    [[ "$part" != *',' ]] || dvt_usage_error "empty node in '$part'"
    for node in "${nodes[@]}"; do
      dvt_in_range "$node" 1 "$n" || dvt_usage_error "no node '$node' in '$text' (nodes are 1..$n)"
      node=$((10#$node))
      [ -z "${seen[$node]:-}" ] || dvt_usage_error "node $node appears twice in '$text'"
      seen[$node]=1
      list+="${list:+ }$node"
    done
    components+=("$list")
  done
}

# Fails unless the components name every node.
require_cover() {
  local i missing=""
  local all=" ${components[*]} "
  for ((i = 1; i <= n; i++)); do
    [[ "$all" == *" $i "* ]] || missing+="${missing:+,}$i"
  done
  [ -z "$missing" ] || dvt_usage_error "'$spec' leaves out node(s) $missing (every node must be in a component)"
}

# Prints "receiver sender" for every pair of nodes in different components (Jepsen's
# complete-grudge); takes the components as arguments.
complete_grudge() {
  local a b r s
  local -a comps=("$@")
  for a in "${!comps[@]}"; do
    for b in "${!comps[@]}"; do
      [ "$a" != "$b" ] || continue
      for r in ${comps[a]}; do
        for s in ${comps[b]}; do echo "$r $s"; done
      done
    done
  done
}

# 1..floor(N/2) and the rest, as two components (Jepsen's bisect, smaller half first).
bisect() {
  local half=$((n / 2))
  components=("$(seq -s ' ' 1 "$half")" "$(seq -s ' ' "$((half + 1))" "$n")")
}

# The majorities-ring grudge for the ring order in the array `ring`.
ring_grudge() {
  local m=$((n / 2 + 1)) before after p d r s
  if [ "$n" -le 5 ]; then
    # The window of m ring nodes starting floor(m/2) before the node (its middle element).
    before=$((m / 2))
    after=$((m - 1 - before))
  else
    before=$((m / 2))
    after=$before
  fi
  for ((p = 0; p < n; p++)); do
    r="${ring[p]}"
    local -A sees=()
    for ((d = -before; d <= after; d++)); do
      sees[${ring[((p + d + n) % n)]}]=1
    done
    for s in "${ring[@]}"; do
      [ -n "${sees[$s]:-}" ] || echo "$r $s"
    done
    unset sees
  done
}

case "$spec" in
  isolate:*|[0-9]*)
    node="${spec#isolate:}"
    dvt_in_range "$node" 1 "$n" || dvt_usage_error "no node '$node' (nodes are 1..$n)"
    node=$((10#$node))
    [ "$n" -ge 2 ] || dvt_usage_error "isolating needs at least 2 nodes"
    rest=""
    for ((i = 1; i <= n; i++)); do [ "$i" = "$node" ] || rest+="${rest:+ }$i"; done
    grudge="$(complete_grudge "$node" "$rest")"
    ;;
  halves)
    [ "$n" -ge 2 ] || dvt_usage_error "halves needs at least 2 nodes"
    bisect
    grudge="$(complete_grudge "${components[@]}")"
    ;;
  halves:*)
    parse_components "${spec#halves:}"
    [ "${#components[@]}" -ge 2 ] || dvt_usage_error "halves needs at least two components"
    require_cover
    grudge="$(complete_grudge "${components[@]}")"
    ;;
  ring|ring:*)
    [ "$n" -ge 3 ] || dvt_usage_error "ring needs at least 3 nodes"
    if [ "$spec" = ring ]; then
      read -ra ring <<<"$(seq -s ' ' 1 "$n")"
    else
      parse_components "${spec#ring:}"
      [ "${#components[@]}" = 1 ] || dvt_usage_error "ring:ORDER takes one comma-separated list"
      require_cover
      read -ra ring <<<"${components[0]}"
    fi
    grudge="$(ring_grudge)"
    ;;
  bridge|bridge:*)
    if [ "$spec" = bridge ]; then
      [ "$n" -ge 3 ] || dvt_usage_error "bridge needs at least 3 nodes"
      half=$((n / 2))
      components=("$(seq -s ' ' 1 "$half")" "$((half + 1))" "$(seq -s ' ' "$((half + 2))" "$n")")
    else
      parse_components "${spec#bridge:}"
      [ "${#components[@]}" = 3 ] || dvt_usage_error "bridge takes three components: side|bridge|side"
      require_cover
    fi
    grudge="$(complete_grudge "${components[0]}" "${components[2]}")"
    ;;
  *) dvt_usage_error "unknown spec '$spec'" ;;
esac

if [ "$dry_run" != 1 ]; then
  dvt_require_root
  dvt_ensure_iptables
  [ -n "$(dvt_namespaces)" ] || dvt_die "no cluster is up (no dvt* namespaces)"
  for ns in $(dvt_namespaces); do dvt_heal_namespace "$ns"; done
fi

# The receivers, each with its senders, in node order.
for ((r = 1; r <= n; r++)); do
  senders="$(awk -v r="$r" '$1 == r { print $2 }' <<<"$grudge" | sort -n | uniq)"
  [ -n "$senders" ] || continue
  dvt_iptables "$r" -N "$DVT_CHAIN"
  dvt_iptables "$r" -I INPUT 1 -m comment --comment "$DVT_NEMESIS_TAG" -j "$DVT_CHAIN"
  for s in $senders; do
    dvt_iptables "$r" -A "$DVT_CHAIN" -s "$(dvt_ip "$s")" -m comment --comment "$DVT_NEMESIS_TAG" -j DROP
  done
done
