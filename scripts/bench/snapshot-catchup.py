#!/usr/bin/env python3
"""Snapshot catch-up rate: a new replica that misses a mailbox of MESSAGES messages.

Usage: scripts/bench/snapshot-catchup.py [MESSAGES=1000000]   (README "Performance")

Starts three `dovetail serve` nodes ($DOVETAIL_BIN, default target/release/dovetail) on
127.0.0.1 (API ports 7201-7204, peer ports 7301-7304; data under a temporary directory), one
group, `--snapshot-interval 200 --log-retention 50`. Appends MESSAGES messages to one mailbox
(batches of 1,000, 8 requests in flight), snapshots the group on every node (so the log behind
it is purged), then starts node 4, adds it as a learner and times how long until its applied
index reaches the leader's. Node 4 can only get there by the snapshot (the log it would need is
gone): the script checks that it received one. Rate = snapshot bytes received / catch-up time.
"""
import concurrent.futures
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from dvt_http import request

BIN = os.path.abspath(os.environ.get("DOVETAIL_BIN", "target/release/dovetail"))
MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
BATCH = 1000
API, PEER = 7200, 7300
CLIENT, ADMIN, SECRET = secrets.token_hex(16), secrets.token_hex(16), secrets.token_hex(16)


def req(node, method, path, token, body=None, timeout=30):
    return request(API + node, method, path, token, body, timeout)


def start(node, base, peers, bootstrap):
    cmd = [BIN, "serve", "--node-id", str(node), "--data-dir", f"{base}/node{node}",
           "--api-listen", f"127.0.0.1:{API + node}", "--peer-listen", f"127.0.0.1:{PEER + node}",
           "--groups", "1", "--snapshot-interval", "200", "--log-retention", "50"]
    for p in peers:
        cmd += ["--peer", f"{p}=127.0.0.1:{PEER + p}/127.0.0.1:{API + p}"]
    if bootstrap:
        cmd.append("--bootstrap")
    env = dict(os.environ, DOVETAIL_CLUSTER_SECRET=SECRET, DOVETAIL_CLIENT_TOKEN=CLIENT,
               DOVETAIL_ADMIN_TOKEN=ADMIN, RUST_LOG="warn")
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(f"{base}/node{node}.log", "w"), stderr=subprocess.STDOUT)


def group0(node):
    s, v = req(node, "GET", "/admin/status", ADMIN)
    return v["groups"][0] if s == 200 else None


def metric(node, name):
    s, raw = req(node, "GET", "/metrics", ADMIN)
    total = 0.0
    for line in raw.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait(what, cond, limit):
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {what}")
        time.sleep(0.05)


def main():
    base = tempfile.mkdtemp(prefix="dovetail-snapshot-bench-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    procs = []
    try:
        for n in (1, 2, 3):
            procs.append(start(n, base, [p for p in (1, 2, 3) if p != n], n == 1))
        wait("a leader", lambda: (g := group0(1)) is not None and g.get("leader"), 30)
        s, v = req(1, "POST", "/v1/users/big/mailboxes", CLIENT, {"name": "INBOX"})
        assert s == 201, (s, v)

        def append(i):
            msgs = [{"guid": f"{1 + i * BATCH + j:032x}", "size": 4096} for j in range(BATCH)]
            for _ in range(20):
                s, v = req(1 + i % 3, "POST", "/v1/users/big/mailboxes/INBOX/messages", CLIENT,
                           {"messages": msgs, "client_id": f"bulk-{i}", "request_seq": 1})
                if s == 200:
                    return
                time.sleep(0.2)
            sys.exit(f"append {i} failed: {s} {v}")

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(append, range(MESSAGES // BATCH)))
        fill = time.monotonic() - started
        s, v = req(1, "GET", "/v1/users/big/mailboxes/INBOX", CLIENT)
        print(f"filled: {v['exists']} messages in {fill:.1f} s "
              f"({v['exists'] / fill:.0f} messages/s, batches of {BATCH})", flush=True)
        for n in (1, 2, 3):
            s, v = req(n, "POST", "/admin/snapshot", ADMIN, timeout=120)
            assert s == 200, (n, s, v)
        leader = group0(1)["leader"]
        target = group0(leader)["committed"]
        index_bytes = sum(os.path.getsize(os.path.join(d, f))
                          for d, _, fs in os.walk(f"{base}/node{leader}") for f in fs
                          if "raft-log" not in d)

        procs.append(start(4, base, [1, 2, 3], False))
        wait("node 4's API", lambda: group0(4) is not None, 30)
        started = time.monotonic()
        s, v = req(1, "POST", "/admin/members/learners", ADMIN,
                   {"node_id": 4, "peer_addr": f"127.0.0.1:{PEER + 4}",
                    "api_addr": f"127.0.0.1:{API + 4}"}, timeout=120)
        assert s in (200, 201, 202), (s, v)
        wait("node 4 to catch up", lambda: (group0(4).get("applied") or 0) >= target, 600)
        took = time.monotonic() - started
        got = metric(4, "dovetail_snapshots_received_bytes_total")
        count = metric(4, "dovetail_snapshots_received_total")
        if count < 1:
            sys.exit("node 4 caught up without a snapshot: the measurement is not what it claims")
        print(f"snapshot catch-up: {MESSAGES} messages, {count:.0f} snapshot(s), "
              f"{got / 1e6:.1f} MB received (the leader's data dir without its log: {index_bytes / 1e6:.1f} MB, live files and snapshot), "
              f"{took:.2f} s from add-learner to applied >= {target}: {got / 1e6 / took:.1f} MB/s")
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
