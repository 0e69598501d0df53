#!/usr/bin/env python3
"""Snapshot catch-up rate: a new replica that misses a mailbox of MESSAGES messages.

Usage: scripts/bench/snapshot-catchup.py [MESSAGES=1000000]   (README "Performance")

Starts `dovetail dev --nodes 3 --spare-nodes 1` ($DOVETAIL_BIN, default target/release/dovetail)
on 127.0.0.1 (API ports 7201-7204, peer ports 7301-7304; data under a temporary directory), one
group, every node with `--snapshot-interval 200 --log-retention 50`; node 4, the spare, runs from
the start but belongs to no group. Appends MESSAGES messages to one mailbox (batches of 1,000,
8 requests in flight), snapshots the group on every node (so the log behind it is purged), then
adds node 4 as a learner and times how long until its applied index reaches the leader's. Node 4
can only get there by the snapshot (the log it would need is gone): the script checks that it
received one. Rate = snapshot bytes received / catch-up time. Stops only what it started (`dev`
and its nodes).
"""
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time

from dvt_dev import DevCluster
from dvt_http import request

BIN = os.path.abspath(os.environ.get("DOVETAIL_BIN", "target/release/dovetail"))
MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
BATCH = 1000
API = 7200  # dev's base port: node i's API on API + i, its peer listener on API + 100 + i
PEER = API + 100
CLIENT = ADMIN = None  # the tokens of the cluster `dev` started


def req(node, method, path, token, body=None, timeout=30):
    return request(API + node, method, path, token, body, timeout)


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
    global CLIENT, ADMIN
    base = tempfile.mkdtemp(prefix="dovetail-snapshot-bench-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    cluster = DevCluster(BIN, base, nodes=3, groups=1, base_port=API, spare_nodes=1,
                         serve_flags=["--snapshot-interval", "200", "--log-retention", "50"],
                         env={"RUST_LOG": "warn"})
    try:
        cluster.start()
        CLIENT, ADMIN = cluster.client_token, cluster.admin_token
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
                          if "raft-log" not in d and f != "node.log")

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
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
