#!/usr/bin/env python3
"""Failover time: kill -9 of a group leader -> the next append acknowledged through a survivor.

Usage: scripts/bench/failover.py [TRIALS=20] [--base-port 7000] [-- SERVE FLAGS...]
(as README "Performance" says; needs ports base+1..3, base+101..103 (and dev's IMAP/LMTP ports
base+201..203, base+301..303) free; each trial a fresh `dovetail dev --nodes 3` in a new
temporary directory; $DOVETAIL_BIN, default target/release/dovetail; flags after `--` go to
every node's `serve`, e.g. `-- --heartbeat-ms 50 --election-timeout-ms 300`). Prints each trial
and the median/min/max. Signals only the processes it started (each trial's `dev` and its nodes).
"""
import argparse
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


def trial(number, base, port=7000, serve_flags=()):
    with DevCluster(BIN, os.path.join(base, "data"), nodes=3, groups=16, base_port=port,
                    serve_flags=list(serve_flags)) as cluster:
        ct, at = cluster.client_token, cluster.admin_token
        user = f"fo{number}"
        created = req(port + 1, "POST", f"/v1/users/{user}/mailboxes", ct, {"name": "INBOX"})
        assert created[0] == 201, created
        seq = [0]

        def append(port, timeout=10):
            seq[0] += 1
            return req(port, "POST", f"/v1/users/{user}/mailboxes/INBOX/messages", ct,
                       {"messages": [{"guid": f"{number:08x}{seq[0]:024x}", "size": 10}],
                        "client_id": f"fo-{number}", "request_seq": seq[0]}, timeout)

        s, v = append(port + 1)
        group = v["group"]
        time.sleep(3)  # let the rebalancer settle
        s, st = req(port + 1, "GET", "/admin/status", at)
        leader = [g for g in st["groups"] if g["group"] == group][0]["leader"]
        writer = 1 if leader != 1 else 2
        assert append(port + writer)[0] == 200
        killed = time.monotonic()
        os.kill(cluster.pids[leader], signal.SIGKILL)
        while True:
            s, v = append(port + writer, timeout=10)
            if s == 200:
                break
            time.sleep(0.01)
        took = time.monotonic() - killed
    print(f"trial {number}: group {group} leader {leader} killed, write through node {writer} "
          f"acknowledged after {took * 1000:.0f} ms", flush=True)
    return took


def main():
    argv = sys.argv[1:]
    serve_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trials", nargs="?", type=int, default=20)
    p.add_argument("--base-port", type=int, default=7000)
    args = p.parse_args(argv)
    if serve_flags:
        print(f"serve flags: {' '.join(serve_flags)}", flush=True)
    results = []
    for number in range(args.trials):
        base = tempfile.mkdtemp(prefix="dovetail-failover-")
        try:
            results.append(trial(number, base, args.base_port, serve_flags))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    results.sort()
    print(f"failover over {len(results)} trials: median {statistics.median(results) * 1000:.0f} ms, "
          f"max {max(results) * 1000:.0f} ms, min {min(results) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
