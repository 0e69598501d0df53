#!/usr/bin/env python3
"""Dovetail's 3-node cluster against Dovecot 2.3 on one node, side by side in one run (issue 18,
Performance): LMTP deliveries/s of 4 KiB messages with 16 parallel sessions, and the time of
`UID FETCH 1:* (FLAGS ENVELOPE)` and of `UID FETCH 1:* (BODY.PEEK[])` over 1,000 messages.
Run it through scripts/bench/vs-dovecot.sh, which checks what it needs first.

    vs_dovecot.py --bin target/release/dovetail [--rounds 3] [--duration 10] [--sessions 16]
                  [--lmtp-users 16] [--lmtp-node all|1] [--messages 1000] [--size 4096]
                  [--fetch-repeat 5] [--dovecot-fsync optimized|always] [--base-port 7700] [--keep]

Both servers run for the whole run, on loopback, under one work directory: a Dovecot
(scripts/dovecot_ref.py: Maildir, `mail_fsync` as asked, Dovecot's default `optimized` unless
told) and `dovetail dev --nodes 3` (scripts/bench/dvt_dev.py; 16 groups; a passwd-file of its
own with the benchmark's users, SHA512-CRYPT from `dovetail user hash`). Then `--rounds`
rounds, each measuring Dovecot and then Dovetail, so the two alternate:
  (a) LMTP: `--sessions` processes, each one Python `smtplib.LMTP` connection sending messages of
      exactly `--size` bytes (distinct Message-IDs) one after another for `--duration` s; session
      i delivers to user r<round>u<i mod --lmtp-users> (fresh users each round), and on Dovetail
      connects to node 1 + i mod 3 (`--lmtp-node all`, the default) or to node 1. Deliveries/s
      counts 250 replies only, over the time from the common start to the last session's end.
      Afterwards every round user's INBOX is counted through IMAP (on every Dovetail node, once
      each has applied what it will): counts that differ from the 250s make the round an error.
  (b) IMAP: user `fetch` holds exactly `--messages` messages (delivered once through LMTP before
      the first round, outside any timing); one connection (Dovetail's on node 1) logs in, SELECTs
      INBOX and sends the two FETCHes alternately, `--fetch-repeat` times each, read by a raw
      socket reader that only splits lines and counts literal bytes (the same small cost for
      both); each answer must hold one FETCH response per message.
The reduction (medians, ratios, the table and a JSON line) is scripts/bench/vs_dovecot_table.py.
Stops only what it started; exit 1 when a round failed, 2 on a usage error.
"""
import argparse
import email.utils
import imaplib
import json
import multiprocessing
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
from dovecot_ref import DovecotRef  # noqa: E402
from dvt_dev import DevCluster  # noqa: E402
import vs_dovecot_table  # noqa: E402

PASSWORD = "bench-secret"
FETCH_USER = "fetch"
DOMAIN = "bench.example"


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


# ---- messages and LMTP sessions ------------------------------------------------------------------

FILLER_LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs."[:76]


def message(size, user, tag, n):
    """A message of exactly `size` bytes (CRLF lines of at most 79 bytes) with a distinct
    Message-ID: `tag` names the round and session, `n` the message."""
    head = (
        f"From: Bench Sender <sender@{DOMAIN}>\r\n"
        f"To: {user}@{DOMAIN}\r\n"
        f"Subject: vs-dovecot {tag} message {n}\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: <{tag}.{n}.{os.getpid()}@{DOMAIN}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    room = size - len(head)
    if room < 2:
        raise ValueError(f"--size {size} leaves no room for a body")
    full, rest = divmod(room, 78)
    lines = [FILLER_LINE] * full
    if rest == 1:  # one byte too many for whole lines: the last full line gets it
        lines[-1] = FILLER_LINE + b"."
    elif rest >= 2:
        lines.append(FILLER_LINE[: rest - 2])
    body = head + b"".join(line + b"\r\n" for line in lines)
    assert len(body) == size, (len(body), size)
    return body


MAX_FAILURES_IN_A_ROW = 100  # a session that gets no 250 for this long gives up (a broken server)


def lmtp_session(port, user, tag, size, barrier, deadline_s, limit, results):
    """One LMTP session (run in a process of its own): connects, waits at `barrier`, then sends
    messages to `user` until `deadline_s` seconds have passed, `limit` were answered 250 or
    MAX_FAILURES_IN_A_ROW were not;
    puts (tag, delivered, failures by code, start, end) on `results`. A 4xx/5xx reply is counted
    and the session goes on (RSET); a dropped connection is counted and reopened."""
    sender, rcpt = f"sender@{DOMAIN}", f"{user}@{DOMAIN}"
    delivered, failures, n, in_a_row = 0, {}, 0, 0
    try:
        lmtp = smtplib.LMTP("127.0.0.1", port, timeout=60)
        lmtp.ehlo_or_helo_if_needed()
    except Exception as e:  # counted as the round's failure by the caller
        barrier.wait()
        results.put((tag, 0, {f"connect: {e}": 1}, None, None))
        return
    barrier.wait()
    start = time.monotonic()
    end_by = start + deadline_s
    while time.monotonic() < end_by and (limit is None or delivered < limit) and in_a_row < MAX_FAILURES_IN_A_ROW:
        n += 1
        in_a_row += 1
        try:
            refused = lmtp.sendmail(sender, [rcpt], message(size, user, tag, n))
            if refused:
                for code, _ in refused.values():
                    failures[str(code)] = failures.get(str(code), 0) + 1
            else:
                delivered += 1
                in_a_row = 0
        except smtplib.SMTPRecipientsRefused as e:
            for code, _ in e.recipients.values():
                failures[str(code)] = failures.get(str(code), 0) + 1
            lmtp.rset()
        except smtplib.SMTPResponseException as e:
            failures[str(e.smtp_code)] = failures.get(str(e.smtp_code), 0) + 1
            lmtp.rset()
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            failures[f"disconnected: {type(e).__name__}"] = failures.get(f"disconnected: {type(e).__name__}", 0) + 1
            try:
                lmtp.close()
                lmtp = smtplib.LMTP("127.0.0.1", port, timeout=60)
                lmtp.ehlo_or_helo_if_needed()
            except OSError:
                time.sleep(0.1)
    end = time.monotonic()
    try:
        lmtp.quit()
    except Exception:
        pass
    results.put((tag, delivered, failures, start, end))


def lmtp_load(ports, users, tag, size, seconds, limits=None):
    """`len(ports)` sessions at once (session i to ports[i] for users[i], at most limits[i] 250s
    when given): (delivered per user, failures by code, seconds from the common start to the last
    session's end)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(ports))
    results = ctx.Queue()
    procs = [ctx.Process(target=lmtp_session,
                         args=(port, user, f"{tag}s{i}", size, barrier, seconds, limits[i] if limits else None,
                               results))
             for i, (port, user) in enumerate(zip(ports, users))]
    for p in procs:
        p.start()
    got = [results.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    by_user, failures, starts, ends = {}, {}, [], []
    for (session_tag, delivered, fails, start, end) in got:
        i = int(session_tag.rsplit("s", 1)[1])
        by_user[users[i]] = by_user.get(users[i], 0) + delivered
        for code, count in fails.items():
            failures[code] = failures.get(code, 0) + count
        if start is not None:
            starts.append(start)
            ends.append(end)
    elapsed = (max(ends) - min(starts)) if starts else 0.0
    return by_user, failures, elapsed


# ---- IMAP ------------------------------------------------------------------------------------------

def settled_counts(ports, expected_by_user, login_suffix, timeout=30.0):
    """Each port's count of the users' INBOX messages (STATUS MESSAGES, 0 without an INBOX yet),
    taken once the port shows each user's expected count or `timeout` has passed (a follower
    applies a moment after the leader answered). One login per user and port."""
    deadline = time.monotonic() + timeout
    totals = []
    for port in ports:
        total = 0
        for user, expected in expected_by_user.items():
            imap = imaplib.IMAP4("127.0.0.1", port)
            try:
                imap.login(user + login_suffix, PASSWORD)
                while True:
                    typ, data = imap.status("INBOX", "(MESSAGES)")
                    m = re.search(rb"MESSAGES (\d+)", data[0] or b"") if typ == "OK" else None
                    count = int(m[1]) if m else 0
                    if count == expected or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
            finally:
                try:
                    imap.logout()
                except Exception:
                    pass
            total += count
        totals.append(total)
    return totals


class RawImap:
    """An IMAP connection read with the least parsing: lines, and literals skipped by count."""
    LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = bytearray()
        self.pos = 0
        self.tag_n = 0
        greeting = self.readline()
        assert greeting.startswith(b"* OK"), greeting

    def _more(self):
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def readline(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos: end + 2])
                self.pos = end + 2
                return line
            self._more()

    def skip(self, n):
        while len(self.buf) - self.pos < n:
            n -= len(self.buf) - self.pos
            self.pos = len(self.buf)
            self._more()
        self.pos += n

    def command(self, text):
        """Sends one command; reads to its tagged answer. Returns (tagged line, untagged FETCH
        responses, literal bytes)."""
        self.tag_n += 1
        tag = b"b%d" % self.tag_n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        fetches = literal_bytes = 0
        while True:
            line = self.readline()
            if line.startswith(tag + b" "):
                return line, fetches, literal_bytes
            if line.startswith(b"* ") and b" FETCH " in line[:40]:
                fetches += 1
            while (m := self.LITERAL.search(line)):
                n = int(m[1])
                self.skip(n)
                literal_bytes += n
                line = self.readline()

    def close(self):
        self.sock.close()


def timed_fetches(port, login, messages, repeat):
    """Logs in as the fetch user, SELECTs INBOX, then times each FETCH `repeat` times, alternately.
    Returns (envelope times, body times, body literal bytes)."""
    imap = RawImap(port)
    try:
        line, _, _ = imap.command(f'LOGIN "{login}" {PASSWORD}')
        assert b" OK" in line, line
        line, _, _ = imap.command("SELECT INBOX")
        assert b" OK" in line, line
        envelope, body, body_bytes = [], [], 0
        for _ in range(repeat):
            for text, times in (("UID FETCH 1:* (FLAGS ENVELOPE)", envelope), ("UID FETCH 1:* (BODY.PEEK[])", body)):
                t0 = time.perf_counter()
                line, fetches, literal_bytes = imap.command(text)
                times.append(time.perf_counter() - t0)
                if b" OK" not in line or fetches != messages:
                    raise RuntimeError(f"{text}: {fetches} FETCH responses of {messages}, then {line!r}")
                if "BODY" in text:
                    body_bytes = literal_bytes
        imap.command("LOGOUT")
        return envelope, body, body_bytes
    finally:
        imap.close()


# ---- the servers ---------------------------------------------------------------------------------

class Server:
    """What a round needs of a server: LMTP ports per session, IMAP ports to count on, the one to
    FETCH from, and what its IMAP login names add to a user name. Both take RCPT TO:<user@DOMAIN>
    (an address needs a domain); Dovetail's user is the local part, this Dovecot's (passwd-file,
    `username_format=%u`) the whole address."""
    def __init__(self, name, lmtp_ports, count_ports, fetch_port, login_suffix):
        self.name, self.lmtp_ports, self.count_ports, self.fetch_port = name, lmtp_ports, count_ports, fetch_port
        self.login_suffix = login_suffix


def round_users(round_n, n):
    return [f"r{round_n}u{k}" for k in range(n)]


def all_users(rounds, lmtp_users):
    return [FETCH_USER] + [u for r in range(0, rounds + 1) for u in round_users(r, lmtp_users)]


def fill_fetch_mailbox(server, args):
    """Delivers exactly `--messages` messages to the fetch user (outside any timing): the sessions
    share them; what a non-250 left missing is sent again (up to 5 passes)."""
    delivered = 0
    for _ in range(5):
        missing = args.messages - delivered
        if missing <= 0:
            break
        sessions = min(args.sessions, missing)
        limits = [missing // sessions + (1 if i < missing % sessions else 0) for i in range(sessions)]
        ports = [server.lmtp_ports[i % len(server.lmtp_ports)] for i in range(sessions)]
        by_user, _, _ = lmtp_load(ports, [FETCH_USER] * sessions, f"fill{server.name}", args.size, 600, limits)
        delivered += by_user.get(FETCH_USER, 0)
    counts = settled_counts([server.fetch_port], {FETCH_USER: args.messages}, server.login_suffix)
    if counts != [args.messages]:
        raise RuntimeError(f"{server.name}: the fetch mailbox holds {counts} messages, not {args.messages}")


def measure(server, round_n, args):
    """One server's part of a round: the LMTP load, the counts, the FETCHes."""
    out = {"deliveries": 0, "seconds": 0.0, "failures": {}, "stored": [], "envelope_s": [], "body_s": [],
           "error": None, "load_before": load()}
    try:
        users = round_users(round_n, args.lmtp_users)
        session_users = [users[i % len(users)] for i in range(args.sessions)]
        ports = [server.lmtp_ports[i % len(server.lmtp_ports)] for i in range(args.sessions)]
        by_user, failures, elapsed = lmtp_load(ports, session_users, f"r{round_n}{server.name}", args.size,
                                               args.duration)
        out.update(deliveries=sum(by_user.values()), seconds=elapsed, failures=failures)
        expected = {u: by_user.get(u, 0) for u in users}
        out["stored"] = settled_counts(server.count_ports, expected, server.login_suffix)
        time.sleep(args.settle)
        out["envelope_s"], out["body_s"], out["body_bytes"] = timed_fetches(server.fetch_port,
                                                                            FETCH_USER + server.login_suffix,
                                                                            args.messages,
                                                                            args.fetch_repeat)
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["load_after"] = load()
    return out


def dovetail_passwd(bin_path, path, users):
    """A passwd-file with `users`, all with PASSWORD hashed SHA512-CRYPT (quick to check at each
    login) by `dovetail user hash`."""
    field = subprocess.run([bin_path, "user", "hash", "--scheme", "sha512-crypt"], input=PASSWORD + "\n",
                           capture_output=True, text=True, check=True).stdout.strip()
    with open(path, "w") as f:
        for user in users:
            f.write(f"{user}:{field}\n")
    os.chmod(path, 0o600)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--sessions", type=int, default=16)
    p.add_argument("--lmtp-users", type=int, default=16, help="distinct recipients per round (session i -> user i mod N)")
    p.add_argument("--lmtp-node", choices=["all", "1"], default="all",
                   help="Dovetail's LMTP: every node round-robin by session (default) or node 1 only")
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--fetch-repeat", type=int, default=5)
    p.add_argument("--settle", type=float, default=2.0, help="seconds between the counts and the FETCHes")
    p.add_argument("--dovecot-fsync", choices=["optimized", "always"], default="optimized")
    p.add_argument("--base-port", type=int, default=7700)
    p.add_argument("--keep", action="store_true", help="keep the work directory (data, logs, rounds.json)")
    args = p.parse_args()
    if args.rounds < 1 or args.sessions < 1 or args.lmtp_users < 1 or args.messages < 1 or args.fetch_repeat < 1:
        p.error("--rounds, --sessions, --lmtp-users, --messages and --fetch-repeat must be at least 1")
    bin_path = os.path.realpath(args.bin)
    work = tempfile.mkdtemp(prefix="dvt-vs-dovecot.", dir=os.environ.get("TMPDIR", "/var/tmp"))
    users = all_users(args.rounds, args.lmtp_users)
    version = subprocess.run([bin_path, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"vs_dovecot: {version}, {os.cpu_count()} cores, load {load()}, work dir {work}", file=sys.stderr)
    passwd = os.path.join(work, "passwd")
    dovetail_passwd(bin_path, passwd, users)
    dovecot = DovecotRef(os.path.join(work, "dovecot"), users={f"{u}@{DOMAIN}": PASSWORD for u in users},
                         fsync=args.dovecot_fsync)
    cluster = DevCluster(bin_path, os.path.join(work, "dovetail"), nodes=3, groups=16, base_port=args.base_port,
                         serve_flags=["--passwd-file", passwd])
    meta = {
        "dovecot_fsync": args.dovecot_fsync,
        "lmtp_nodes": "nodes 1-3 round-robin by session" if args.lmtp_node == "all" else "node 1",
        "imap_node": "node 1", "messages": args.messages, "size": args.size, "sessions": args.sessions,
        "lmtp_users": args.lmtp_users, "duration": args.duration, "fetch_repeat": args.fetch_repeat,
        "dovetail_version": version, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_start": load(),
    }
    rounds = []
    failed = True
    try:
        dovecot.start()
        cluster.start()
        dvt_nodes = [1, 2, 3] if args.lmtp_node == "all" else [1]
        servers = [
            Server("dovecot", [dovecot.lmtp_port], [dovecot.imap_port], dovecot.imap_port, f"@{DOMAIN}"),
            Server("dovetail", [args.base_port + 200 + n for n in dvt_nodes],
                   [args.base_port + 300 + n for n in (1, 2, 3)], args.base_port + 301, ""),
        ]
        for server in servers:
            print(f"vs_dovecot: filling {server.name}'s fetch mailbox with {args.messages} messages", file=sys.stderr)
            fill_fetch_mailbox(server, args)
        for round_n in range(1, args.rounds + 1):
            entry = {"round": round_n}
            for server in servers:
                print(f"vs_dovecot: round {round_n}, {server.name} (load {load()})", file=sys.stderr)
                entry[server.name] = measure(server, round_n, args)
                m = entry[server.name]
                print(f"  {m['deliveries']} delivered in {m['seconds']:.2f} s, failures {m['failures']}, stored "
                      f"{m['stored']}, ENVELOPE {[round(t * 1000) for t in m['envelope_s']]} ms, BODY[] "
                      f"{[round(t * 1000) for t in m['body_s']]} ms" + (f", ERROR {m['error']}" if m["error"] else ""),
                      file=sys.stderr)
            rounds.append(entry)
        meta["load_end"] = load()
        summary = vs_dovecot_table.reduce_rounds(rounds)
        with open(os.path.join(work, "rounds.json"), "w") as f:
            json.dump({"meta": meta, "rounds": rounds}, f, indent=1)
        print(vs_dovecot_table.render(summary, meta))
        print(vs_dovecot_table.json_line(summary, meta))
        failed = bool(summary["errors"])
    finally:
        cluster.stop()
        dovecot.stop()
        if args.keep or failed:
            print(f"vs_dovecot: data, logs and rounds.json kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
