#!/usr/bin/env python3
"""Failover time: kill -9 of a group leader -> the next append acknowledged through a survivor.

Usage: scripts/bench/failover.py [TRIALS=20]  (as README "Performance" says; needs ports
7001-7003/7101-7103 free; each trial a fresh `dovetail dev --nodes 3` in a new temporary
directory; $DOVETAIL_BIN, default target/release/dovetail). Prints each trial and the
median/min/max. Signals only the processes it started (each trial's `dev` and its nodes).
"""
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

from dvt_dev import DevCluster
from dvt_http import request as req

BIN = os.path.abspath(os.environ.get("DOVETAIL_BIN", "target/release/dovetail"))


def trial(number, base):
    with DevCluster(BIN, os.path.join(base, "data"), nodes=3, groups=16, base_port=7000) as cluster:
        ct, at = cluster.client_token, cluster.admin_token
        user = f"fo{number}"
        created = req(7001, "POST", f"/v1/users/{user}/mailboxes", ct, {"name": "INBOX"})
        assert created[0] == 201, created
        seq = [0]

        def append(port, timeout=10):
            seq[0] += 1
            return req(port, "POST", f"/v1/users/{user}/mailboxes/INBOX/messages", ct,
                       {"messages": [{"guid": f"{number:08x}{seq[0]:024x}", "size": 10}],
                        "client_id": f"fo-{number}", "request_seq": seq[0]}, timeout)

        s, v = append(7001)
        group = v["group"]
        time.sleep(3)  # let the rebalancer settle
        s, st = req(7001, "GET", "/admin/status", at)
        leader = [g for g in st["groups"] if g["group"] == group][0]["leader"]
        writer = 1 if leader != 1 else 2
        assert append(7000 + writer)[0] == 200
        killed = time.monotonic()
        os.kill(cluster.pids[leader], signal.SIGKILL)
        while True:
            s, v = append(7000 + writer, timeout=10)
            if s == 200:
                break
            time.sleep(0.01)
        took = time.monotonic() - killed
    print(f"trial {number}: group {group} leader {leader} killed, write through node {writer} "
          f"acknowledged after {took * 1000:.0f} ms", flush=True)
    return took


def main():
    results = []
    for number in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
        base = tempfile.mkdtemp(prefix="dovetail-failover-")
        try:
            results.append(trial(number, base))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    results.sort()
    print(f"failover over {len(results)} trials: median {statistics.median(results) * 1000:.0f} ms, "
          f"max {max(results) * 1000:.0f} ms, min {min(results) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
