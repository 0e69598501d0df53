#!/bin/bash
# scripts/bench/idle.sh GROUPS: a 3-node `dovetail dev` (release, $DOVETAIL_BIN) with GROUPS groups under
# /tmp/devt; once every group has a leader and 15 s passed, the CPU (cores, from /proc) each node
# uses over 20 s and its RSS. Needs ports 7001-7003 and 7101-7103 free. README "Performance".
g=${1:?usage: idle.sh GROUPS}; bin="$(realpath "${DOVETAIL_BIN:-target/release/dovetail}")"
pkill -9 -f "$bin (dev|serve)"; sleep 1; rm -rf /tmp/devt; mkdir -p /tmp/devt
( cd /tmp/devt && setsid $bin dev --nodes 3 --groups $g --data-dir /tmp/devt/data > /tmp/devt/dev.log 2>&1 < /dev/null & )
t0=$SECONDS
for i in $(seq 1 240); do grep -q "Ctrl-C" /tmp/devt/dev.log 2>/dev/null && break; sleep 0.5; done
ready=$((SECONDS-t0))
sleep 15
pids=$(pgrep -f "$bin serve" | tr '\n' ' ')
cpu() { local t=0; for p in $pids; do set -- $(cut -d' ' -f14,15 /proc/$p/stat); t=$((t+$1+$2)); done; echo $t; }
c0=$(cpu); sleep 20; c1=$(cpu)
rss=$(for p in $pids; do grep VmRSS /proc/$p/status | awk '{print $2}'; done | tr '\n' ' ')
echo "groups=$g ready_in=${ready}s cpu_cores_per_node=$(python3 -c "print(round(($c1-$c0)/$(getconf CLK_TCK)/20/3,3))") rss_kib=[$rss]"
pkill -f "$bin dev --nodes 3"; pkill -f "$bin serve"; sleep 1
