"""COPY, MOVE, subscriptions and RENAME INBOX through Dovetail's IMAP server with the standard
library's imaplib (t65_imap_copy.rs runs it).

argv: addr1 addr2 addr3 user password — three nodes' IMAP listeners (plaintext logins allowed)
and a user whose mailboxes are empty but for the defaults.
Prints what it does; exits non-zero (an assertion) at the first difference.
"""

import imaplib
import re
import sys
import time

addr1, addr2, addr3, user, password = sys.argv[1:6]


def connect(addr):
    host, port = addr.rsplit(":", 1)
    conn = imaplib.IMAP4(host, int(port), timeout=20)
    conn.login(user, password)
    return conn


def step(what):
    print("--", what, flush=True)


def run(conn, name, *args):
    """A command; its status, data and the untagged responses it brought."""
    conn.untagged_responses.clear()
    typ, data = getattr(conn, name)(*args)
    untagged = {k: list(v) for k, v in conn.untagged_responses.items()}
    conn.untagged_responses.clear()
    print("  ", name, args, "->", typ, data, untagged, flush=True)
    return typ, data, untagged


def uid_cmd(conn, *args):
    return run(conn, "uid", *args)


def wait_for(what, check, limit=5.0):
    """Polls `check` (returns a value or None) until it gives a value; fails after `limit` s."""
    deadline = time.time() + limit
    while True:
        value = check()
        if value is not None:
            return value
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


def uid_set(text):
    """'3:5,9' -> [3, 4, 5, 9]"""
    out = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def copyuid(codes):
    """The COPYUID code's (uidvalidity, [(source, target)])."""
    assert len(codes) == 1, codes
    validity, source, target = codes[0].decode().split()
    source, target = uid_set(source), uid_set(target)
    assert len(source) == len(target), (source, target)
    return int(validity), list(zip(source, target))


def messages(conn, mailbox):
    """{uid: (flags, bytes)} of a mailbox (selected read-only)."""
    typ, _, _ = run(conn, "select", mailbox, True)
    assert typ == "OK", typ
    typ, data, _ = uid_cmd(conn, "FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head = item[0].decode()
        uid = int(re.search(r"UID (\d+)", head).group(1))
        flags = set(re.search(r"FLAGS \(([^)]*)\)", head).group(1).split())
        out[uid] = (flags, item[1])
    return out


def status(conn, mailbox, item):
    typ, data = conn.status(mailbox, "(%s)" % item)
    assert typ == "OK", (typ, data)
    return int(re.search(item + r" (\d+)", data[0].decode()).group(1))


def body(subject):
    return ("From: a@example.org\r\nTo: %s@example.org\r\nSubject: %s\r\n\r\nHello %s\r\n"
            % (user, subject, subject)).encode()


a = connect(addr1)
step("CAPABILITY advertises MOVE")
typ, data = a.capability()
assert b"MOVE" in data[0].split(), data

step("setup on node 1: Archive, four messages in INBOX with flags")
assert run(a, "create", "Archive")[0] == "OK"
flags = ["(\\Flagged $Work)", "(\\Seen)", None, "(\\Answered $Junk)"]
for i, f in enumerate(flags):
    typ, data = a.append("INBOX", f, None, body("m%d" % (i + 1)))
    assert typ == "OK", (typ, data)
typ, data, _ = run(a, "select", "INBOX")
assert data == [b"4"], data
source = messages(a, "INBOX")
assert sorted(source) == [1, 2, 3, 4], source
assert run(a, "select", "INBOX")[0] == "OK"
archive_validity = status(a, "Archive", "UIDVALIDITY")

step("COPY 2:3 -> OK [COPYUID v 2:3 1:2]")
typ, data, untagged = run(a, "copy", "2:3", "Archive")
assert typ == "OK", (typ, data)
validity, pairs = copyuid(untagged["COPYUID"])
assert validity == archive_validity and pairs == [(2, 1), (3, 2)], (validity, pairs)
copied = dict(pairs)

step("UID COPY 1,4 -> COPYUID 1,4 3:4; a UID the mailbox lacks -> OK without COPYUID")
typ, data, untagged = uid_cmd(a, "COPY", "1,4", "Archive")
assert typ == "OK", (typ, data)
validity, pairs = copyuid(untagged["COPYUID"])
assert validity == archive_validity and pairs == [(1, 3), (4, 4)], pairs
copied.update(pairs)
typ, data, untagged = uid_cmd(a, "COPY", "999", "Archive")
assert typ == "OK" and "COPYUID" not in untagged, (typ, data, untagged)

step("COPY to a missing mailbox -> NO [TRYCREATE]")
typ, data, untagged = run(a, "copy", "1", "Nowhere")
assert typ == "NO" and "TRYCREATE" in untagged, (typ, data, untagged)

step("the copies read through node 2: flags and BODY[] bytes equal the sources'")
b = connect(addr2)
wait_for("Archive with 4 messages on node 2", lambda: status(b, "Archive", "MESSAGES") == 4 or None)
archive = messages(b, "Archive")
assert sorted(archive) == [1, 2, 3, 4], archive
for src, dst in copied.items():
    assert archive[dst] == source[src], (src, dst, archive[dst], source[src])
b.logout()

step("MOVE 2:3 on node 1 while node 3 has INBOX selected: COPYUID, then EXPUNGE 3, 2")
c = connect(addr3)
wait_for("INBOX with 4 messages on node 3", lambda: status(c, "INBOX", "MESSAGES") == 4 or None)
typ, data, _ = run(c, "select", "INBOX")
assert data == [b"4"], data
typ, data, untagged = run(a, "_simple_command", "MOVE", "2:3", "Archive")
assert typ == "OK", (typ, data)
validity, pairs = copyuid(untagged["COPYUID"])
assert validity == archive_validity and pairs == [(2, 5), (3, 6)], pairs
assert untagged.get("EXPUNGE") == [b"3", b"2"], untagged
typ, data, _ = uid_cmd(a, "FETCH", "1:*", "(UID)")
assert [int(re.search(r"UID (\d+)", d.decode()).group(1)) for d in data] == [1, 4], data

step("UID MOVE 4: EXPUNGE 2 (the session's own numbering)")
typ, data, untagged = uid_cmd(a, "MOVE", "4", "Archive")
assert typ == "OK" and untagged.get("EXPUNGE") == [b"2"], (typ, data, untagged)
validity, pairs = copyuid(untagged["COPYUID"])
assert pairs == [(4, 7)], pairs
typ, data, _ = run(a, "noop")
assert run(a, "select", "INBOX")[1] == [b"1"]

step("node 3: no EXPUNGE during FETCH, the three at NOOP")
d = connect(addr3)
wait_for("INBOX with 1 message on node 3", lambda: status(d, "INBOX", "MESSAGES") == 1 or None)
typ, data, untagged = run(c, "fetch", "1", "(FLAGS)")
assert typ == "OK" and "EXPUNGE" not in untagged, untagged
typ, data, untagged = run(c, "noop")
assert untagged.get("EXPUNGE") == [b"4", b"3", b"2"], untagged
typ, data, _ = uid_cmd(c, "FETCH", "1:*", "(UID)")
assert len(data) == 1 and b"UID 1" in data[0], data
assert status(d, "Archive", "MESSAGES") == 7
moved = messages(d, "Archive")
assert moved[5] == source[2] and moved[6] == source[3] and moved[7] == source[4], moved

step("SUBSCRIBE on node 1, LSUB on node 3")
for name in ["INBOX", "Archive", "Work/Projects"]:
    assert run(a, "subscribe", name)[0] == "OK"


def lsub(conn, pattern):
    typ, data, _ = run(conn, "lsub", '""', pattern)
    assert typ == "OK", (typ, data)
    rows = []
    for line in data:
        if line:
            attrs, rest = line.decode().split(") ", 1)
            rows.append((attrs.lstrip("("), rest.split(" ", 1)[1].strip('"')))
    return sorted(rows)


want = sorted([("", "INBOX"), ("", "Archive"), ("", "Work/Projects")])
wait_for("node 3's LSUB", lambda: lsub(d, "*") == want or None)
top = lsub(d, "%")
assert top == sorted([("", "INBOX"), ("", "Archive"), ("\\Noselect", "Work")]), top

step("UNSUBSCRIBE on node 1, gone from LSUB on node 3")
assert run(a, "unsubscribe", "Archive")[0] == "OK"
want = sorted([("", "INBOX"), ("", "Work/Projects")])
wait_for("node 3's LSUB without Archive", lambda: lsub(d, "*") == want or None)

step("RENAME INBOX on node 2: its messages move, INBOX stays, empty")
e = connect(addr2)
typ, data = e.append("INBOX", None, None, body("m5"))
assert typ == "OK", (typ, data)
assert run(e, "rename", "INBOX", "Old-Inbox")[0] == "OK"
assert status(e, "INBOX", "MESSAGES") == 0 and status(e, "Old-Inbox", "MESSAGES") == 2
typ, data, _ = run(e, "rename", "INBOX", "Old-Inbox")
assert typ == "NO" and b"ALREADYEXISTS" in data[0], (typ, data)
typ, data, _ = run(e, "list", '""', "INBOX")
assert len(data) == 1 and data[0].decode().endswith("INBOX"), data
# Node 1's session, INBOX selected: the EXPUNGE of the moved message at its NOOP.
typ, data, untagged = run(a, "noop")
assert untagged.get("EXPUNGE") == [b"1"] or wait_for(
    "node 1's EXPUNGE", lambda: run(a, "noop")[2].get("EXPUNGE")), untagged

step("RENAME INBOX retried after its CREATE landed and its move did not: into the empty mailbox")
assert run(e, "create", "Resumed")[0] == "OK"
typ, data = e.append("INBOX", None, None, body("m6"))
assert typ == "OK", (typ, data)
assert run(e, "rename", "INBOX", "Resumed")[0] == "OK"
assert status(e, "INBOX", "MESSAGES") == 0 and status(e, "Resumed", "MESSAGES") == 1

step("MOVE is refused on a read-only (EXAMINE) mailbox and into the selected mailbox itself")
assert run(e, "select", "Archive", True)[0] == "OK"
typ, data, _ = run(e, "_simple_command", "MOVE", "1", "Old-Inbox")
assert typ == "NO" and b"read-only" in data[0], (typ, data)
assert run(e, "select", "Archive")[0] == "OK"
typ, data, _ = run(e, "_simple_command", "MOVE", "1", "Archive")
assert typ == "NO", (typ, data)
assert status(e, "Archive", "MESSAGES") == 7

for conn in [a, c, d, e]:
    conn.logout()
print("ALL OK")
