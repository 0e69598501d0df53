# shellcheck shell=bash
# A local cluster for the shell scripts (bench-vs-etcd.sh, bench/idle.sh), started by
# `dovetail dev`, which computes every node's `serve` command line as the tests' fixture does.
# Sourced, never run.
#
#   dvt_dev_up BIN DATA_DIR [dev flags...] [-- serve flags...]
#       Starts `BIN dev --data-dir DATA_DIR ...` in a session of its own (output in
#       DATA_DIR/dev.log) and waits ($DVT_DEV_WAIT_S, default 120 s) until it wrote
#       DATA_DIR/dev.pids (every group has a leader). Then DVT_DEV_PID is `dev`'s pid,
#       DVT_DEV_NODE_PIDS its nodes' pids in id order, and the tokens and the cluster secret of
#       DATA_DIR/dev.env are exported. Fails, after stopping what it started and printing the
#       end of dev's log, if `dev` exits first or takes longer.
#   dvt_dev_down
#       SIGTERM to `dev`, which stops its nodes (SIGTERM, so they drain) and exits; after 30 s,
#       SIGKILL to its process group (it leads one of its own: only it and its nodes). A node of
#       a `dev` that died without stopping it (found in that group or in dev.pids) is killed by
#       pid, if its command line shows it is a node of this cluster. Nothing else is signalled.
#       Safe to repeat.

DVT_DEV_PID=""
DVT_DEV_DIR=""
DVT_DEV_NODE_PIDS=()

# The kernel's one-letter state of process $1 (R, S, Z, ...), or nothing if it is gone.
dvt_dev_proc_state() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"
  echo "${stat%% *}"
}

# Whether process $1 runs (a zombie does not).
dvt_dev_alive() {
  local state
  state="$(dvt_dev_proc_state "$1")"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

dvt_dev_up() {
  local bin="$1" dir="$2" deadline
  shift 2
  mkdir -p "$dir"
  # Not a process group leader here (no job control in a script), so setsid does not fork and
  # $! is dev's own pid, which is also its new session's and group's id.
  setsid "$bin" dev --data-dir "$dir" "$@" </dev/null >"$dir/dev.log" 2>&1 &
  DVT_DEV_PID=$!
  DVT_DEV_DIR="$dir"
  deadline=$((SECONDS + ${DVT_DEV_WAIT_S:-120}))
  until [ -e "$dir/dev.pids" ]; do
    if ! dvt_dev_alive "$DVT_DEV_PID" || [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$dir/dev.log" >&2 || true
      dvt_dev_down
      echo "dovetail dev did not come up (logs: $dir/dev.log, $dir/node*/node.log)" >&2
      return 1
    fi
    sleep 0.2
  done
  mapfile -t DVT_DEV_NODE_PIDS < <(awk '{ print $2 }' "$dir/dev.pids")
  # shellcheck source=/dev/null
  . "$dir/dev.env"
}

dvt_dev_down() {
  local pid
  [ -n "$DVT_DEV_PID" ] || return 0
  kill -TERM "$DVT_DEV_PID" 2>/dev/null || true
  for _ in $(seq 1 300); do
    dvt_dev_alive "$DVT_DEV_PID" || break
    sleep 0.1
  done
  if dvt_dev_alive "$DVT_DEV_PID"; then
    # Still running, so its pid is still its group's id: that group is dev and its nodes.
    kill -KILL -- "-$DVT_DEV_PID" 2>/dev/null || true
  fi
  wait "$DVT_DEV_PID" 2>/dev/null || true
  # Nodes a dead dev left behind (still in its group, or named in dev.pids), each only if its
  # command line shows it is a node of this cluster.
  for pid in $(pgrep -g "$DVT_DEV_PID" 2>/dev/null || true) "${DVT_DEV_NODE_PIDS[@]}"; do
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -F -- " serve --node-id " \
         | grep -qF -- " --data-dir $DVT_DEV_DIR/node"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  DVT_DEV_PID=""
  DVT_DEV_NODE_PIDS=()
}
