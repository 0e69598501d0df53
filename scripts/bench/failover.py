#!/usr/bin/env python3
"""Failover time: kill -9 of a group leader -> the next append acknowledged through a survivor.

Usage: scripts/bench/failover.py [TRIALS=20]  (as README "Performance" says; needs ports
7001-7003/7101-7103 free; each trial a fresh `dovetail dev --nodes 3` under /tmp/devt;
$DOVETAIL_BIN, default target/release/dovetail). Prints each trial and the median/min/max.
"""
import os, subprocess, sys, time, statistics, signal
from dvt_http import request as req
BIN = os.path.abspath(os.environ.get("DOVETAIL_BIN", "target/release/dovetail"))
def env():
    e = {}
    for l in open("/tmp/devt/data/dev.env"):
        if l.startswith("export "):
            k, v = l[7:].strip().split("=", 1); e[k] = v.strip("'\"")
    return e
results = []
for trial in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
    subprocess.run(f"pkill -9 -f '{BIN} (dev|serve)'; sleep 0.5; rm -rf /tmp/devt; mkdir -p /tmp/devt", shell=True)
    dev = subprocess.Popen([BIN, "dev", "--nodes", "3", "--data-dir", "/tmp/devt/data"], cwd="/tmp/devt",
        stdout=open("/tmp/devt/dev.log", "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    for _ in range(120):
        if os.path.exists("/tmp/devt/dev.log") and "Ctrl-C" in open("/tmp/devt/dev.log").read(): break
        time.sleep(0.25)
    e = env(); ct, at = e["DOVETAIL_CLIENT_TOKEN"], e["DOVETAIL_ADMIN_TOKEN"]
    user = f"fo{trial}"
    created = req(7001, "POST", f"/v1/users/{user}/mailboxes", ct, {"name": "INBOX"})
    assert created[0] == 201, created
    seq = [0]
    def append(port, timeout=10):
        seq[0] += 1
        return req(port, "POST", f"/v1/users/{user}/mailboxes/INBOX/messages", ct,
                   {"messages": [{"guid": f"{trial:08x}{seq[0]:024x}", "size": 10}], "client_id": f"fo-{trial}", "request_seq": seq[0]}, timeout)
    s, v = append(7001); group = v["group"]
    time.sleep(3)  # let the rebalancer settle
    s, st = req(7001, "GET", "/admin/status", at)
    leader = [g for g in st["groups"] if g["group"] == group][0]["leader"]
    writer = 1 if leader != 1 else 2
    assert append(7000 + writer)[0] == 200
    pid = int(subprocess.check_output(["pgrep", "-f", f"{BIN} serve --node-id {leader} "]).split()[0])
    killed = time.monotonic(); os.kill(pid, signal.SIGKILL)
    while True:
        s, v = append(7000 + writer, timeout=10)
        if s == 200: break
        time.sleep(0.01)
    took = time.monotonic() - killed
    results.append(took)
    print(f"trial {trial}: group {group} leader {leader} killed, write through node {writer} acknowledged after {took*1000:.0f} ms", flush=True)
    os.killpg(dev.pid, signal.SIGTERM); dev.wait(timeout=20)
results.sort()
print(f"failover over {len(results)} trials: median {statistics.median(results)*1000:.0f} ms, max {max(results)*1000:.0f} ms, min {min(results)*1000:.0f} ms")
