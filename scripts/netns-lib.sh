# shellcheck shell=bash
# Shared functions of the fault-injection scripts (netns-cluster.sh, partition.sh, heal.sh,
# kill.sh, pause.sh, resume.sh, restart.sh). Sourced, never run.
#
# The network: one namespace per node, `dvt1`..`dvtN`, each with a veth pair whose outer end
# hangs on the bridge `dvtbr0` in the root namespace (10.77.0.1/24); node i is 10.77.0.(10+i)
# inside its namespace, API on port 7001, peer listener on 7101. Clients (the Jepsen runner, the
# tests, a shell) stay in the root namespace and reach every node over the bridge.
#
# The state directory, $DOVETAIL_NETNS_DIR (default /tmp/dovetail-netns), holds:
#   env            the cluster secret and both tokens as `export` lines (mode 600; `source` it)
#   nodes, groups  the node count and the group count of the cluster that is up
#   node<I>/       cmd (the exact launch command, shell-quoted), pid, node.log, data/
#   proxy          present when the cluster runs with `up --proxy`: then node<I>/ also holds
#                  proxy.cmd, proxy.pid and proxy.log of the TCP proxy in namespace dvtI, through
#                  which node I reaches every peer (see proxy.sh)
#
# Every script is meant for other programs as much as for people: quiet on success (except the
# summary of `netns-cluster.sh up`), errors on stderr, exit code 0 on success, 1 when the
# operation failed, 2 on a usage error.

# A failure inside $(...) stops the script too.
shopt -s inherit_errexit

# Constants, used by the scripts that source this file.
# shellcheck disable=SC2034
{
  DVT_DIR="${DOVETAIL_NETNS_DIR:-/tmp/dovetail-netns}"
  DVT_BRIDGE=dvtbr0
  DVT_BRIDGE_ADDR=10.77.0.1
  DVT_API_PORT=7001
  DVT_PEER_PORT=7101
  # The chain that holds a partition's DROP rules in each node's namespace; the comment that tags
  # those rules and the INPUT jump to the chain; the comment that tags the FORWARD rule `up` adds
  # in the root namespace.
  DVT_CHAIN=DOVETAIL-NEMESIS
  DVT_NEMESIS_TAG=dovetail-nemesis
  DVT_NETNS_TAG=dovetail-netns
  # Node addresses are 10.77.0.(10+i); the limit keeps them below the broadcast address.
  DVT_MAX_NODES=200
  # With `up --proxy`: in every namespace the proxy's control port is 127.0.0.1:8100 and node
  # j's peer listener is reached through 127.0.0.1:(8100+j).
  DVT_PROXY_PORT_BASE=8100
}
DVT_SCRIPT="$(basename "$0")"

dvt_die() {
  echo "$DVT_SCRIPT: $*" >&2
  exit 1
}

dvt_usage_error() {
  echo "$DVT_SCRIPT: $*" >&2
  echo "usage: $DVT_USAGE" >&2
  exit 2
}

# Whether $1 is a decimal number in $2..$3.
dvt_in_range() {
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  [ "$((10#$1))" -ge "$2" ] && [ "$((10#$1))" -le "$3" ]
}

dvt_ns() { echo "dvt$1"; }
dvt_ip() { echo "10.77.0.$((10 + $1))"; }
dvt_api() { echo "$(dvt_ip "$1"):$DVT_API_PORT"; }
dvt_node_dir() { echo "$DVT_DIR/node$1"; }

# Whether the cluster that is up runs the peer proxies (`netns-cluster.sh up --proxy`).
dvt_proxy_enabled() { [ -e "$DVT_DIR/proxy" ]; }

# The peer address other nodes are given for node i: its proxy route on the loopback (the same
# string names the local proxy in every namespace) with --proxy, else its own peer listener.
dvt_peer_addr() {
  if dvt_proxy_enabled; then
    echo "127.0.0.1:$((DVT_PROXY_PORT_BASE + $1))"
  else
    echo "$(dvt_ip "$1"):$DVT_PEER_PORT"
  fi
}

dvt_require_root() {
  [ "$(id -u)" = 0 ] || dvt_die "must run as root (network namespaces and iptables)"
  command -v ip >/dev/null 2>&1 || dvt_die "the 'ip' command (iproute2) is missing"
}

# Installs iptables through apt-get when it is missing; quiet unless that fails.
dvt_ensure_iptables() {
  command -v iptables >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || dvt_die "iptables is missing and apt-get is not available"
  local log
  log="$(mktemp)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables \
         || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables; }; } \
       >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    rm -f "$log"
    dvt_die "could not install iptables"
  fi
  rm -f "$log"
}

# The namespaces of this cluster that exist now (dvt<number>), one per line, in node order.
dvt_namespaces() {
  ip netns list 2>/dev/null | awk '$1 ~ /^dvt[0-9]+$/ { print $1 }' | sort -V
}

# The node count of the cluster: $DOVETAIL_NETNS_NODES if set (lets partition.sh's dry run work
# without a cluster), else what `up` recorded.
dvt_nodes() {
  local n="${DOVETAIL_NETNS_NODES:-}"
  if [ -z "$n" ]; then
    [ -r "$DVT_DIR/nodes" ] || dvt_die "no cluster is up (no $DVT_DIR/nodes; run netns-cluster.sh up N)"
    n="$(<"$DVT_DIR/nodes")"
  fi
  dvt_in_range "$n" 1 "$DVT_MAX_NODES" || dvt_die "bad node count '$n'"
  echo "$n"
}

# Expands a <node> argument into node ids, one per line: a number in 1..N, or `all`.
dvt_node_ids() {
  local arg="$1" n
  n="$(dvt_nodes)"
  if [ "$arg" = all ]; then
    seq 1 "$n"
  elif dvt_in_range "$arg" 1 "$n"; then
    echo "$((10#$arg))"
  else
    dvt_usage_error "no node '$arg' (expected 1..$n or all)"
  fi
}

# The kernel's one-letter state of a process (R, S, D, T, t, Z, ...), or nothing if it is gone.
dvt_proc_state() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  # The command name (field 2) may hold spaces; the state follows its closing parenthesis.
  stat="${stat##*) }"
  echo "${stat%% *}"
}

# The pid of node i's process if it is alive (a zombie is not) and lives in the node's namespace
# (a recycled pid does not); nothing otherwise.
dvt_pid() {
  local pidfile pid state
  pidfile="$(dvt_node_dir "$1")/pid"
  [ -r "$pidfile" ] || return 0
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  state="$(dvt_proc_state "$pid")"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] || return 0
  [ "$(ip netns identify "$pid" 2>/dev/null)" = "$(dvt_ns "$1")" ] || return 0
  echo "$pid"
}

# The pid of the proxy in node i's namespace if it is alive there; nothing otherwise.
dvt_proxy_pid() {
  local pidfile pid state
  pidfile="$(dvt_node_dir "$1")/proxy.pid"
  [ -r "$pidfile" ] || return 0
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  state="$(dvt_proc_state "$pid")"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] || return 0
  [ "$(ip netns identify "$pid" 2>/dev/null)" = "$(dvt_ns "$1")" ] || return 0
  echo "$pid"
}

# Waits until a process is gone (or a zombie), at most $2 seconds; fails if it is still there.
dvt_wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2)) state
  while :; do
    state="$(dvt_proc_state "$pid")"
    if [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]; then return 0; fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# Starts node i from its saved command line, with the env file's secrets in its environment,
# detached (own session, SIGHUP ignored, stdin from /dev/null), output appended to node.log.
# `ip netns exec`, setsid (not a group leader here, so it does not fork) and nohup each exec the
# next program, so $! is the node's own pid.
dvt_launch() {
  local dir cmd
  dir="$(dvt_node_dir "$1")"
  [ -r "$dir/cmd" ] || dvt_die "node $1 has no saved command ($dir/cmd)"
  [ -r "$DVT_DIR/env" ] || dvt_die "no $DVT_DIR/env"
  eval "cmd=($(<"$dir/cmd"))"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $DVT_SCRIPT: launching node $1" >>"$dir/node.log"
  (
    # shellcheck source=/dev/null
    . "$DVT_DIR/env"
    "${cmd[@]}" </dev/null >>"$dir/node.log" 2>&1 &
    echo "$!" >"$dir/pid"
  )
}

# Starts the proxy of node i's namespace from its saved command line (node<I>/proxy.cmd),
# detached like a node, output appended to proxy.log, and waits (5 s) until its control port
# answers.
dvt_launch_proxy() {
  local dir cmd deadline
  dir="$(dvt_node_dir "$1")"
  [ -r "$dir/proxy.cmd" ] || dvt_die "node $1 has no saved proxy command ($dir/proxy.cmd)"
  eval "cmd=($(<"$dir/proxy.cmd"))"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $DVT_SCRIPT: launching the proxy of node $1" >>"$dir/proxy.log"
  "${cmd[@]}" </dev/null >>"$dir/proxy.log" 2>&1 &
  echo "$!" >"$dir/proxy.pid"
  deadline=$((SECONDS + 5))
  until dvt_proxy_ctl "$1" status >/dev/null 2>&1; do
    [ -n "$(dvt_proxy_pid "$1")" ] || {
      tail -n 5 "$dir/proxy.log" >&2 || true
      dvt_die "the proxy of node $1 exited (log: $dir/proxy.log)"
    }
    [ "$SECONDS" -lt "$deadline" ] || dvt_die "the proxy of node $1 does not answer (log: $dir/proxy.log)"
    sleep 0.05
  done
}

# Sends one command line to the proxy in node i's namespace (its control port on that
# namespace's loopback) and prints the answer without its leading "ok"; fails (the answer on
# stderr) unless the answer starts with "ok".
#   dvt_proxy_ctl I COMMAND...
dvt_proxy_ctl() {
  local ns answer
  ns="$(dvt_ns "$1")"
  shift
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  answer="$(timeout 5 ip netns exec "$ns" bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "%s\n" "$2" >&3
    cat <&3' _ "$DVT_PROXY_PORT_BASE" "$*" 2>/dev/null)" || {
    echo "$DVT_SCRIPT: the proxy of node ${ns#dvt} does not answer" >&2
    return 1
  }
  case "$answer" in
    ok) ;;
    "ok "*) echo "${answer#ok }" ;;
    *) echo "$DVT_SCRIPT: the proxy of node ${ns#dvt} answered: $answer" >&2; return 1 ;;
  esac
}

# One HTTP/1.1 request from the root namespace through bash's /dev/tcp (curl may be missing),
# bounded by `timeout`. Prints the status code on the first line and the body after it; fails
# if the node cannot be reached. The token travels in the environment, not on a command line.
#   dvt_http METHOD HOST:PORT PATH TOKEN [BODY]
dvt_http() {
  local response status_line status
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  response="$(DVT_TOKEN="$4" DVT_BODY="${5-}" LC_ALL=C timeout "${DVT_HTTP_TIMEOUT_S:-5}" bash -c '
    exec 3<>"/dev/tcp/${2%:*}/${2##*:}" || exit 1
    printf "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" \
      "$1" "$3" "$2" "$DVT_TOKEN" "${#DVT_BODY}" "$DVT_BODY" >&3
    cat <&3' _ "$1" "$2" "$3" 2>/dev/null)" || return 1
  status_line="${response%%$'\r\n'*}"
  status="${status_line#HTTP/1.? }"
  status="${status:0:3}"
  [[ "$status" =~ ^[0-9]{3}$ ]] || return 1
  echo "$status"
  printf '%s\n' "${response#*$'\r\n\r\n'}"
}

# Loads the admin token from the env file into DVT_ADMIN_TOKEN.
dvt_load_admin_token() {
  [ -r "$DVT_DIR/env" ] || dvt_die "no $DVT_DIR/env (is a cluster up?)"
  DVT_ADMIN_TOKEN="$(
    # shellcheck source=/dev/null
    . "$DVT_DIR/env"
    echo "$DOVETAIL_ADMIN_TOKEN"
  )"
}

# Node i's /admin/status body if it answers 200 (needs DVT_ADMIN_TOKEN).
dvt_status() {
  local out
  out="$(dvt_http GET "$(dvt_api "$1")" /admin/status "$DVT_ADMIN_TOKEN")" || return 1
  [ "${out%%$'\n'*}" = 200 ] || return 1
  echo "${out#*$'\n'}"
}

# Whether node i's /admin/status shows a leader for every one of $2 groups. The body is compact
# JSON from serde: one `"leader":<id>` or `"leader":null` per group (`"role":"leader"` does not
# match the pattern).
dvt_has_leaders() {
  local body with_leader
  body="$(dvt_status "$1")" || return 1
  with_leader="$(grep -o '"leader":[0-9]' <<<"$body" | wc -l || true)"
  [ "$with_leader" -eq "$2" ]
}

# Runs iptables in node i's namespace; with DOVETAIL_NEMESIS_DRY_RUN=1, prints the command
# instead.
dvt_iptables() {
  local ns
  ns="$(dvt_ns "$1")"
  shift
  if [ "${DOVETAIL_NEMESIS_DRY_RUN:-0}" = 1 ]; then
    echo "ip netns exec $ns iptables -w $*"
  else
    ip netns exec "$ns" iptables -w "$@"
  fi
}

# Removes every nemesis rule from namespace $1 (a name): the jumps to the chain (and any other
# rule tagged with the nemesis comment) in INPUT and OUTPUT, then the chain itself.
dvt_heal_namespace() {
  local ns="$1" chain rule rules
  local -a words
  for chain in INPUT OUTPUT; do
    rules="$(ip netns exec "$ns" iptables -w -S "$chain" 2>/dev/null)" || continue
    while read -r rule; do
      [[ "$rule" == *"--comment $DVT_NEMESIS_TAG "* ]] || continue
      # `-S` prints each rule as the arguments that append it; the same ones with -D delete it.
      read -ra words <<<"$rule"
      words[0]=-D
      ip netns exec "$ns" iptables -w "${words[@]}"
    done <<<"$rules"
  done
  if ip netns exec "$ns" iptables -w -S "$DVT_CHAIN" >/dev/null 2>&1; then
    ip netns exec "$ns" iptables -w -F "$DVT_CHAIN"
    ip netns exec "$ns" iptables -w -X "$DVT_CHAIN"
  fi
}
