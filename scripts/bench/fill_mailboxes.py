#!/usr/bin/env python3
"""fill_mailboxes.py N: creates N mailboxes on the `dovetail dev` cluster whose API ports are
$DVT_IDLE_BASE_PORT + 1..3 (default 7001-7003), client token in $DOVETAIL_CLIENT_TOKEN: users
`idle-<k>`, 50 mailboxes each, spread over the groups by the users' hash, 16 connections at a
time. For `idle.sh GROUPS MAILBOXES`."""
import http.client
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

PER_USER = 50
WORKERS = 16


def create(worker, count, token):
    """Worker `worker`'s share of the `count` mailboxes, over one kept-alive connection."""
    base = int(os.environ.get("DVT_IDLE_BASE_PORT", "7000"))
    conn = http.client.HTTPConnection("127.0.0.1", base + 1 + worker % 3, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    made = 0
    for i in range(worker, count, WORKERS):
        body = json.dumps({"name": f"m{i % PER_USER}"})
        for attempt in range(20):
            try:
                conn.request("POST", f"/v1/users/idle-{i // PER_USER}/mailboxes", body, headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                time.sleep(0.2)
                continue
            if resp.status in (201, 409):  # 409: made by an earlier try whose answer was lost
                made += 1
                break
            time.sleep(0.1 * (attempt + 1))
        else:
            raise SystemExit(f"mailbox {i}: no success after 20 tries (last status {resp.status})")
    return made


def main():
    count = int(sys.argv[1])
    token = os.environ["DOVETAIL_CLIENT_TOKEN"]
    t0 = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        made = sum(pool.map(lambda w: create(w, count, token), range(WORKERS)))
    print(f"mailboxes={made} created_in={time.monotonic() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
