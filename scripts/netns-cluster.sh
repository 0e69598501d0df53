#!/usr/bin/env bash
# A Dovetail cluster with one network namespace per node, for fault injection by hand and by the
# Jepsen runner (see netns-lib.sh for the layout).
#
#   netns-cluster.sh up N [--groups G] [--bin PATH] [--proxy [--proxy-bin PATH]] [-- extra serve flags...]
#   netns-cluster.sh down
#
# `up` creates the bridge dvtbr0 (10.77.0.1/24) in the root namespace and, per node i, the
# namespace dvtI with a veth pair (node at 10.77.0.(10+i)/24, lo up), then starts node i inside
# it (node 1 with --bootstrap), and waits (60 s, or $DOVETAIL_NETNS_WAIT_S) until node 1's
# /admin/status, asked from the root namespace, shows a leader for every group and every node's
# API answers. Node data, logs and the saved command lines go under $DOVETAIL_NETNS_DIR (default
# /tmp/dovetail-netns); its node directories are wiped first, so every `up` is a fresh cluster.
# The cluster secret and the tokens are taken from DOVETAIL_CLUSTER_SECRET,
# DOVETAIL_CLIENT_TOKEN and DOVETAIL_ADMIN_TOKEN when set, else generated, and written to
# <dir>/env (mode 600). --bin defaults to $DOVETAIL_BIN, else target/release/dovetail, else
# target/debug/dovetail. Flags after `--` go to every node's `serve`. If `up` fails, it tears
# down what it built (the logs stay) and exits 1.
#
# --proxy puts a TCP proxy (`dovetail-jepsen proxy`) in every node's namespace, started before
# the nodes: in namespace i it listens on 127.0.0.1:(8100+j) for every node j and forwards to
# 10.77.0.(10+j):7101, and every node is given 127.0.0.1:(8100+j) as peer j's address (its own
# --peer-advertise too), so all of a node's outgoing peer traffic passes through its local proxy,
# which proxy.sh steers (latency, dropped and refused connections); partitions work as before.
# --proxy-bin defaults to $DOVETAIL_JEPSEN_BIN, else target/release/dovetail-jepsen, else
# target/debug/dovetail-jepsen.
#
# `down` kills every node (SIGCONT, then SIGKILL), deletes the namespaces, the veths and the
# bridge, and removes the root-namespace iptables rule `up` added. Safe when nothing is up and
# safe to repeat. The state directory stays (logs, data) until the next `up`.
set -euo pipefail
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/netns-lib.sh"
DVT_USAGE="netns-cluster.sh up N [--groups G] [--bin PATH] [--proxy [--proxy-bin PATH]] [-- serve flags...] | netns-cluster.sh down"

# The rule that lets bridged traffic between the namespaces through the root namespace's FORWARD
# chain: with br_netfilter loaded, frames crossing dvtbr0 traverse it, and a host firewall with
# a DROP policy there would otherwise cut every node off from every other.
forward_rule=(FORWARD -i "$DVT_BRIDGE" -o "$DVT_BRIDGE" -m comment --comment "$DVT_NETNS_TAG" -j ACCEPT)

random_hex() {
  od -An -tx1 -N24 /dev/urandom | tr -d ' \n'
}

# Kills every node, deletes the namespaces, the bridge and the root rule. Never fails on
# something that is already gone.
teardown() {
  local ns pid node_dir i deadline
  # Nodes first, by the namespaces they live in (that catches everything started in them) and by
  # their pid files (a node whose namespace was deleted by hand keeps running outside it).
  local -a pids=()
  for ns in $(dvt_namespaces); do
    while read -r pid; do
      [ -n "$pid" ] && pids+=("$pid")
    done < <(ip netns pids "$ns" 2>/dev/null || true)
  done
  for node_dir in "$DVT_DIR"/node*; do
    [ -r "$node_dir/pid" ] || continue
    pid="$(<"$node_dir/pid")"
    i="${node_dir##*/node}"
    # Only a process that still is this node (a recycled pid is someone else's).
    if [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$i" =~ ^[0-9]+$ ]] \
       && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- " serve --node-id $i "; then
      pids+=("$pid")
    fi
    # The same for the node's proxy.
    [ -r "$node_dir/proxy.pid" ] || continue
    pid="$(<"$node_dir/proxy.pid")"
    if [[ "$pid" =~ ^[0-9]+$ ]] \
       && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- " proxy --control "; then
      pids+=("$pid")
    fi
  done
  if [ "${#pids[@]}" -gt 0 ]; then
    kill -CONT "${pids[@]}" 2>/dev/null || true
    kill -KILL "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
      dvt_wait_gone "$pid" 10 || echo "$DVT_SCRIPT: process $pid did not exit after SIGKILL" >&2
    done
  fi
  rm -f "$DVT_DIR"/node*/pid "$DVT_DIR"/node*/proxy.pid "$DVT_DIR/nodes" "$DVT_DIR/proxy"
  for ns in $(dvt_namespaces); do
    ip netns del "$ns" 2>/dev/null || true
  done
  # Deleting a namespace destroys its end of the veth pair and with it the root end; a root end
  # left over from a half-finished `up` goes here.
  for ns in $(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | sed 's/@.*//' | grep -E '^dvtv[0-9]+$' || true); do
    ip link del "$ns" 2>/dev/null || true
  done
  ip link del "$DVT_BRIDGE" 2>/dev/null || true
  if command -v iptables >/dev/null 2>&1; then
    while iptables -w -C "${forward_rule[@]}" 2>/dev/null; do
      iptables -w -D "${forward_rule[@]}"
    done
  fi
  deadline=$((SECONDS + 5))
  while [ -n "$(dvt_namespaces)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  [ -z "$(dvt_namespaces)" ] || dvt_die "namespaces left over: $(dvt_namespaces | tr '\n' ' ')"
}

# The EXIT trap of `up` while it builds: a failed `up` leaves nothing behind but the logs.
teardown_on_failure() {
  local status=$?
  [ "$status" = 0 ] || teardown || true
}

# The binary named $2 from $1 if set, else from target/release, else from target/debug.
default_bin() {
  local root
  root="$(cd "$(dirname "$0")/.." && pwd)"
  if [ -n "$1" ]; then
    echo "$1"
  elif [ -x "$root/target/release/$2" ]; then
    echo "$root/target/release/$2"
  else
    echo "$root/target/debug/$2"
  fi
}

# An absolute path of an executable, or a failure naming $2.
absolute_bin() {
  [ -x "$1" ] || dvt_die "no $2 binary at $1 (cargo build, or pass $3)"
  echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

write_env_file() {
  local secret client admin
  secret="${DOVETAIL_CLUSTER_SECRET:-$(random_hex)}"
  client="${DOVETAIL_CLIENT_TOKEN:-$(random_hex)}"
  admin="${DOVETAIL_ADMIN_TOKEN:-$(random_hex)}"
  (
    umask 077
    rm -f "$DVT_DIR/env"
    printf 'export DOVETAIL_CLUSTER_SECRET=%q\nexport DOVETAIL_CLIENT_TOKEN=%q\nexport DOVETAIL_ADMIN_TOKEN=%q\n' \
      "$secret" "$client" "$admin" >"$DVT_DIR/env"
  )
  chmod 600 "$DVT_DIR/env"
}

# Node i's launch command, shell-quoted on one line, into node<I>/cmd.
write_cmd() {
  local i="$1" n="$2" groups="$3" bin="$4" j dir
  shift 4
  dir="$(dvt_node_dir "$i")"
  local -a cmd=(ip netns exec "$(dvt_ns "$i")" setsid nohup "$bin" serve
    --node-id "$i" --data-dir "$dir/data"
    --api-listen "$(dvt_api "$i")" --peer-listen "$(dvt_ip "$i"):$DVT_PEER_PORT"
    --groups "$groups")
  # With the proxy, the address the others know this node by is its route on their loopback.
  ! dvt_proxy_enabled || cmd+=(--peer-advertise "$(dvt_peer_addr "$i")")
  for ((j = 1; j <= n; j++)); do
    [ "$j" = "$i" ] || cmd+=(--peer "$j=$(dvt_peer_addr "$j")/$(dvt_api "$j")")
  done
  [ "$i" != 1 ] || cmd+=(--bootstrap)
  cmd+=("$@")
  printf '%q ' "${cmd[@]}" >"$dir/cmd"
  echo >>"$dir/cmd"
}

# Node i's proxy command, shell-quoted on one line, into node<I>/proxy.cmd: a route to every
# node's peer listener, the control port on the namespace's loopback.
write_proxy_cmd() {
  local i="$1" n="$2" proxy_bin="$3" j dir
  dir="$(dvt_node_dir "$i")"
  local -a cmd=(ip netns exec "$(dvt_ns "$i")" setsid nohup "$proxy_bin" proxy
    --control "127.0.0.1:$DVT_PROXY_PORT_BASE")
  for ((j = 1; j <= n; j++)); do
    cmd+=(--route "127.0.0.1:$((DVT_PROXY_PORT_BASE + j))=$(dvt_ip "$j"):$DVT_PEER_PORT")
  done
  printf '%q ' "${cmd[@]}" >"$dir/proxy.cmd"
  echo >>"$dir/proxy.cmd"
}

up() {
  local n="" groups=16 bin="" proxy=0 proxy_bin="" i ns
  local -a extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --groups) [ $# -ge 2 ] || dvt_usage_error "--groups needs a value"; groups="$2"; shift 2 ;;
      --bin) [ $# -ge 2 ] || dvt_usage_error "--bin needs a value"; bin="$2"; shift 2 ;;
      --proxy) proxy=1; shift ;;
      --proxy-bin) [ $# -ge 2 ] || dvt_usage_error "--proxy-bin needs a value"; proxy_bin="$2"; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      -*) dvt_usage_error "unknown option $1" ;;
      *) [ -z "$n" ] || dvt_usage_error "unexpected argument $1"; n="$1"; shift ;;
    esac
  done
  dvt_in_range "$n" 1 "$DVT_MAX_NODES" || dvt_usage_error "N must be a node count in 1..$DVT_MAX_NODES"
  dvt_in_range "$groups" 1 4096 || dvt_usage_error "--groups must be in 1..4096"
  [ -n "$bin" ] || bin="$(default_bin "${DOVETAIL_BIN:-}" dovetail)"
  bin="$(absolute_bin "$bin" dovetail --bin)"
  if [ "$proxy" = 1 ]; then
    [ -n "$proxy_bin" ] || proxy_bin="$(default_bin "${DOVETAIL_JEPSEN_BIN:-}" dovetail-jepsen)"
    proxy_bin="$(absolute_bin "$proxy_bin" dovetail-jepsen --proxy-bin)"
  elif [ -n "$proxy_bin" ]; then
    dvt_usage_error "--proxy-bin needs --proxy"
  fi

  dvt_require_root
  dvt_ensure_iptables
  if [ -n "$(dvt_namespaces)" ] || ip link show "$DVT_BRIDGE" >/dev/null 2>&1; then
    dvt_die "a cluster is already up ($(dvt_namespaces | tr '\n' ' ')$DVT_BRIDGE); run netns-cluster.sh down first"
  fi
  if [ -n "$(ip -4 route show 10.77.0.0/24)" ]; then
    dvt_die "10.77.0.0/24 is already routed on this host: $(ip -4 route show 10.77.0.0/24)"
  fi

  mkdir -p "$DVT_DIR"
  rm -rf "$DVT_DIR"/node* "$DVT_DIR/nodes" "$DVT_DIR/groups" "$DVT_DIR/proxy"
  write_env_file
  # From here on, a failure takes down whatever was built.
  trap teardown_on_failure EXIT

  ip link add "$DVT_BRIDGE" type bridge
  ip addr add "$DVT_BRIDGE_ADDR/24" dev "$DVT_BRIDGE"
  ip link set "$DVT_BRIDGE" up
  iptables -w -I "${forward_rule[@]:0:1}" 1 "${forward_rule[@]:1}"
  for ((i = 1; i <= n; i++)); do
    ns="$(dvt_ns "$i")"
    ip netns add "$ns"
    ip link add "dvtv$i" type veth peer name eth0 netns "$ns"
    ip link set "dvtv$i" master "$DVT_BRIDGE" up
    ip -n "$ns" addr add "$(dvt_ip "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done

  echo "$n" >"$DVT_DIR/nodes"
  echo "$groups" >"$DVT_DIR/groups"
  if [ "$proxy" = 1 ]; then
    echo "$proxy_bin" >"$DVT_DIR/proxy"
    for ((i = 1; i <= n; i++)); do
      mkdir -p "$(dvt_node_dir "$i")"
      write_proxy_cmd "$i" "$n" "$proxy_bin"
      dvt_launch_proxy "$i"
    done
  fi
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$(dvt_node_dir "$i")/data"
    write_cmd "$i" "$n" "$groups" "$bin" "${extra[@]}"
    dvt_launch "$i"
  done

  dvt_load_admin_token
  local wait_s="${DOVETAIL_NETNS_WAIT_S:-60}" deadline
  deadline=$((SECONDS + wait_s))
  local ready=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    for ((i = 1; i <= n; i++)); do
      [ -n "$(dvt_pid "$i")" ] || {
        tail -n 20 "$(dvt_node_dir "$i")/node.log" >&2 || true
        dvt_die "node $i exited during start-up (log: $(dvt_node_dir "$i")/node.log)"
      }
    done
    if dvt_has_leaders 1 "$groups"; then
      ready=1
      for ((i = 2; i <= n; i++)); do
        dvt_status "$i" >/dev/null || { ready=0; break; }
      done
      [ "$ready" = 0 ] || break
    fi
    sleep 0.2
  done
  if [ "$ready" != 1 ]; then
    tail -n 20 "$(dvt_node_dir 1)/node.log" >&2 || true
    dvt_die "no leader for every group within ${wait_s}s (logs: $DVT_DIR/node*/node.log)"
  fi
  trap - EXIT

  echo "Dovetail netns cluster: $n nodes, $groups groups, state in $DVT_DIR"
  [ "$proxy" = 0 ] || echo "  peer traffic through a TCP proxy per namespace (proxy.sh; logs in node<I>/proxy.log)"
  for ((i = 1; i <= n; i++)); do
    echo "  node $i: http://$(dvt_api "$i")   (namespace $(dvt_ns "$i"), log $(dvt_node_dir "$i")/node.log)"
  done
  echo "Tokens: source $DVT_DIR/env"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down)
    [ $# = 1 ] || dvt_usage_error "down takes no arguments"
    dvt_require_root
    teardown
    ;;
  *) dvt_usage_error "expected up or down" ;;
esac
