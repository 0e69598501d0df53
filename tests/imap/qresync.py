"""QRESYNC (RFC 7162) through Dovetail's IMAP server: ENABLE QRESYNC, VANISHED instead of
EXPUNGE, SELECT (QRESYNC ...) after a reconnect to another node, UID FETCH (CHANGEDSINCE m
VANISHED), and the commands refused with BAD (t66_imap_qresync.rs runs it).

argv: addr1 addr2 addr3 user password — three nodes' IMAP listeners (plaintext logins allowed)
and a user whose mailboxes are empty but for the defaults.

imaplib knows neither ENABLE nor VANISHED, so this script talks IMAP itself over a socket
(`Client`): every response line of a command is kept, and the checks compare them exactly — the
UID sets of VANISHED, which UIDs get FETCH lines and at which sequence numbers, that no EXPUNGE
line is sent. Prints what it does; exits non-zero (an assertion) at the first difference.
"""

import re
import socket
import sys
import time

addr1, addr2, addr3, user, password = sys.argv[1:6]

# Generous: the nodes share 2 cores with compilers; nothing here measures speed.
WAIT_SECONDS = 30.0


class Client:
    """One IMAP connection. `command` sends a line and returns (status, text, untagged lines);
    a literal in a response line is read and kept in place."""

    def __init__(self, addr, name):
        host, port = addr.rsplit(":", 1)
        self.name = name
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.buffer = b""
        self.tags = 0
        greeting = self.line()
        assert greeting.startswith("* OK"), greeting

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "%s: the server closed the connection" % self.name
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        literal = re.search(rb"\{(\d+)\}$", line)
        if literal:
            size = int(literal.group(1))
            while len(self.buffer) < size:
                chunk = self.sock.recv(65536)
                assert chunk, "%s: the server closed the connection in a literal" % self.name
                self.buffer += chunk
            line += b"\r\n" + self.buffer[:size]
            self.buffer = self.buffer[size:]
            return line.decode("utf-8", "replace") + self.line()
        return line.decode("utf-8", "replace")

    def command(self, text, literal=None):
        self.tags += 1
        tag = "q%d" % self.tags
        data = ("%s %s" % (tag, text)).encode()
        if literal is not None:
            # LITERAL+: no continuation to wait for.
            data += b" {%d+}\r\n" % len(literal) + literal
        self.sock.sendall(data + b"\r\n")
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + " "):
                status, _, rest = line[len(tag) + 1:].partition(" ")
                print("  %s: %s -> %s %s %s" % (self.name, text, status, rest, untagged), flush=True)
                return status, rest, untagged
            untagged.append(line)

    def ok(self, text, literal=None):
        status, rest, untagged = self.command(text, literal)
        assert status == "OK", (self.name, text, status, rest)
        return untagged


def step(what):
    print("--", what, flush=True)


def wait_for(what, check):
    """Polls `check` (returns a value or None) until it gives a value; fails after WAIT_SECONDS."""
    deadline = time.time() + WAIT_SECONDS
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


def vanished(lines, earlier):
    """The UIDs of the `* VANISHED` (or `* VANISHED (EARLIER)`) lines, in order sent."""
    prefix = "* VANISHED (EARLIER) " if earlier else "* VANISHED "
    out = []
    for line in lines:
        if line.startswith(prefix) and (earlier or not line.startswith("* VANISHED (EARLIER)")):
            out.extend(uid_set(line[len(prefix):]))
    return out


def fetches(lines, merge=False):
    """{seq: {"uid": n, "flags": set, "modseq": n}} of the FETCH lines (fields that are present).
    Two lines for one message fail, unless `merge` (a command's own FETCH lines may be followed
    by the unsolicited FETCH FLAGS of another session's change)."""
    out = {}
    for line in lines:
        m = re.match(r"\* (\d+) FETCH \((.*)\)$", line)
        if not m:
            continue
        seq, items = int(m.group(1)), m.group(2)
        entry = {}
        uid = re.search(r"\bUID (\d+)", items)
        if uid:
            entry["uid"] = int(uid.group(1))
        flags = re.search(r"\bFLAGS \(([^)]*)\)", items)
        if flags:
            entry["flags"] = set(flags.group(1).split())
        modseq = re.search(r"\bMODSEQ \((\d+)\)", items)
        if modseq:
            entry["modseq"] = int(modseq.group(1))
        assert merge or seq not in out, ("two FETCH lines for one message", lines)
        out.setdefault(seq, {}).update(entry)
    return out


def no_expunge(lines):
    assert not [l for l in lines if re.match(r"\* \d+ EXPUNGE", l)], ("EXPUNGE with QRESYNC on", lines)


def code(lines, name):
    """The value of the untagged `* OK [NAME value]` line."""
    for line in lines:
        m = re.match(r"\* OK \[%s (\d+)\]" % name, line)
        if m:
            return int(m.group(1))
    raise AssertionError("no [%s] in %s" % (name, lines))


def exists(lines):
    found = [int(m.group(1)) for m in (re.match(r"\* (\d+) EXISTS", l) for l in lines) if m]
    assert len(found) <= 1, lines
    return found[0] if found else None


def uid_map(client):
    """{seq: uid} of the session's view (FETCH without UID: the view does not move)."""
    return {seq: e["uid"] for seq, e in fetches(client.ok("FETCH 1:* (UID)"), merge=True).items()}


def status(client, mailbox, item):
    status_, _, untagged = client.command("STATUS %s (%s)" % (mailbox, item))
    if status_ != "OK":
        return None
    return int(re.search(item + r" (\d+)", untagged[0]).group(1))


def login(addr, name):
    client = Client(addr, name)
    client.ok('LOGIN %s "%s"' % (user, password))
    return client


def message(n):
    return ("From: a@example.org\r\nTo: %s@example.org\r\nSubject: m%d\r\n\r\nHello %d\r\n"
            % (user, n, n)).encode()


def bad(client, text, why):
    status_, rest, untagged = client.command(text)
    assert status_ == "BAD", (text, status_, rest, why)
    assert not vanished(untagged, True) and not fetches(untagged), (text, untagged)


a = login(addr1, "a@1")
step("CAPABILITY advertises QRESYNC, ENABLE and CONDSTORE")
caps = a.ok("CAPABILITY")[0].split()
assert {"QRESYNC", "ENABLE", "CONDSTORE"} <= set(caps), caps

step("before ENABLE QRESYNC: the QRESYNC parameter and the VANISHED modifier are BAD")
a.ok("CREATE Sync")
for n in range(1, 7):
    a.ok("APPEND Sync", message(n))
bad(a, "SELECT Sync (QRESYNC (1 1))", "QRESYNC not enabled (RFC 7162 3.2.5)")
a.ok("NOOP")
a.ok("SELECT Sync")
bad(a, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "QRESYNC not enabled")
assert sorted(uid_map(a).values()) == [1, 2, 3, 4, 5, 6]

step("ENABLE QRESYNC answers * ENABLED QRESYNC, and turns CONDSTORE on")
assert a.ok("ENABLE QRESYNC") == ["* ENABLED QRESYNC"]
# CONDSTORE is on without having been named: FETCH FLAGS of a STORE carry MODSEQ.
stored = fetches(a.ok("UID STORE 1 +FLAGS (\\Seen)"))
assert list(stored) == [1] and stored[1]["uid"] == 1 and stored[1]["flags"] == {"\\Seen"}, stored
assert stored[1]["modseq"] > 0, stored

step("after ENABLE: VANISHED without CHANGEDSINCE, outside UID FETCH, * in known-uids are BAD")
bad(a, "UID FETCH 1:* (FLAGS) (VANISHED)", "VANISHED needs CHANGEDSINCE")
bad(a, "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "VANISHED only in UID FETCH")
assert a.ok("NOOP") == []
bad(a, "SELECT Sync (QRESYNC (1 1 1:*))", "* is not allowed in known-uids")
bad(a, "SELECT Sync (QRESYNC (1 1 1:4 (1:2 4)))", "seq-match-data of unequal sizes")
bad(a, "SELECT Sync (QRESYNC (0 1))", "UIDVALIDITY 0 does not parse")
a.ok("NOOP")

step("sessions on node 1 (writes) and node 2 (observes), both with QRESYNC")
b = login(addr2, "b@2")
wait_for("Sync with 6 messages on node 2", lambda: status(b, "Sync", "MESSAGES") == 6 or None)
assert b.ok("ENABLE QRESYNC") == ["* ENABLED QRESYNC"]
selected = b.ok("SELECT Sync")
assert exists(selected) == 6, selected
assert not vanished(selected, True), selected
uid_validity = code(selected, "UIDVALIDITY")
a.ok("SELECT Sync")
assert uid_map(b) == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6}

step("node 1: UID EXPUNGE 2,4 answers * VANISHED 2,4 (no EXPUNGE)")
a.ok("UID STORE 2,4 +FLAGS.SILENT (\\Deleted)")
expunged = a.ok("UID EXPUNGE 2:4")
no_expunge(expunged)
assert vanished(expunged, False) == [2, 4], expunged
assert not vanished(expunged, True), expunged
assert uid_map(a) == {1: 1, 2: 3, 3: 5, 4: 6}

step("node 2: the same two UIDs as * VANISHED at a NOOP; its numbering follows")
seen = []


def noop_until_vanished(client, want):
    lines = client.ok("NOOP")
    seen.extend(lines)
    no_expunge(lines)
    return True if sorted(vanished(seen, False)) == want else None


wait_for("VANISHED 2,4 on node 2", lambda: noop_until_vanished(b, [2, 4]))
assert vanished(seen, False) == [2, 4], seen
assert not vanished(seen, True), seen
assert uid_map(b) == {1: 1, 2: 3, 3: 5, 4: 6}

step("node 1: EXPUNGE of UID 5 answers * VANISHED 5; node 2 gets none during FETCH, one at NOOP")
a.ok("UID STORE 5 +FLAGS.SILENT (\\Deleted)")
before_expunge = status(a, "Sync", "HIGHESTMODSEQ")
expunged = a.ok("EXPUNGE")
no_expunge(expunged)
assert vanished(expunged, False) == [5], expunged
expunge_modseq = status(a, "Sync", "HIGHESTMODSEQ")
assert expunge_modseq > before_expunge, (before_expunge, expunge_modseq)


def fetch_without_5():
    lines = b.ok("FETCH 1:* (UID)")
    # RFC 3501 7.4.1: no expunge during FETCH; the message is gone but keeps its number.
    no_expunge(lines)
    assert not vanished(lines, False) and not vanished(lines, True), lines
    uids = {seq: e["uid"] for seq, e in fetches(lines, merge=True).items()}
    if 5 in uids.values():
        assert uids == {1: 1, 2: 3, 3: 5, 4: 6}, uids
        assert not any(l.startswith("* OK [HIGHESTMODSEQ") for l in lines), lines
        return None
    assert uids == {1: 1, 2: 3, 4: 6}, uids
    # RFC 7162 erratum 1810: with the expunge held back, a HIGHESTMODSEQ below its MODSEQ, the
    # point a client that disconnected now must resynchronize from.
    safe = code(lines, "HIGHESTMODSEQ")
    assert 0 < safe < expunge_modseq, (safe, expunge_modseq, lines)
    return True


wait_for("UID 5 gone from node 2's index", fetch_without_5)
noop = b.ok("NOOP")
no_expunge(noop)
assert vanished(noop, False) == [5], noop
assert uid_map(b) == {1: 1, 2: 3, 3: 6}

step("node 1: APPEND (UID 7) and a flag on UID 3; node 2 sees EXISTS and FETCH at NOOP")
a.ok("APPEND Sync", message(7))
a.ok("UID STORE 3 +FLAGS.SILENT (\\Flagged)")
observed = {"exists": None, "flagged": None}


def noop_until_append_and_flag():
    lines = b.ok("NOOP")
    no_expunge(lines)
    assert not vanished(lines, False), lines
    if exists(lines) is not None:
        observed["exists"] = exists(lines)
    for seq, entry in fetches(lines).items():
        if entry.get("uid") == 3 and "\\Flagged" in entry.get("flags", ()):
            observed["flagged"] = (seq, entry)
    return True if observed["exists"] == 4 and observed["flagged"] else None


wait_for("EXISTS 4 and UID 3 \\Flagged on node 2", noop_until_append_and_flag)
seq, entry = observed["flagged"]
assert seq == 2 and entry["modseq"] > 0, observed
assert uid_map(b) == {1: 1, 2: 3, 3: 6, 4: 7}

step("node 2 records its cache (UIDVALIDITY, HIGHESTMODSEQ, UIDs) and logs out")
reselected = b.ok("SELECT Sync")
# RFC 7162 3.2.11: with QRESYNC on, [CLOSED] ends the previous mailbox's responses.
assert reselected[0].startswith("* OK [CLOSED]"), reselected
assert code(reselected, "UIDVALIDITY") == uid_validity
cache_modseq = code(reselected, "HIGHESTMODSEQ")
cache = {e["uid"]: e for e in fetches(b.ok("UID FETCH 1:* (FLAGS MODSEQ)")).values()}
assert sorted(cache) == [1, 3, 6, 7], cache
assert all(e["modseq"] <= cache_modseq for e in cache.values()), (cache, cache_modseq)
b.ok("LOGOUT")

step("node 1 meanwhile: expunges UIDs 3 and 7, flags UID 1 $Done, appends UID 8")
a.ok("UID STORE 3,7 +FLAGS.SILENT (\\Deleted)")
expunged = a.ok("UID EXPUNGE 3,7")
assert vanished(expunged, False) == [3, 7], expunged
a.ok("UID STORE 1 +FLAGS.SILENT ($Done)")
a.ok("APPEND Sync", message(8))
final_modseq = status(a, "Sync", "HIGHESTMODSEQ")
assert final_modseq > cache_modseq, (final_modseq, cache_modseq)

step("the client comes back on node 3: SELECT (QRESYNC (v m known-uids))")
c = login(addr3, "c@3")
wait_for("node 3 at node 1's HIGHESTMODSEQ",
         lambda: status(c, "Sync", "HIGHESTMODSEQ") == final_modseq or None)
assert c.ok("ENABLE QRESYNC") == ["* ENABLED QRESYNC"]
known = ",".join(str(u) for u in sorted(cache))
lines = c.ok("SELECT Sync (QRESYNC (%d %d %s))" % (uid_validity, cache_modseq, known))
no_expunge(lines)
assert exists(lines) == 3, lines
assert code(lines, "HIGHESTMODSEQ") == final_modseq, lines
assert not vanished(lines, False), lines
assert vanished(lines, True) == [3, 7], lines
changed = fetches(lines)
# Only UID 1 of the known UIDs changed; UID 8 is new (learned from EXISTS), not a known UID.
assert list(changed) == [1], changed
assert changed[1]["uid"] == 1 and changed[1]["flags"] == {"\\Seen", "$Done"}, changed
assert cache_modseq < changed[1]["modseq"] <= final_modseq, changed
# RFC 7162 3.2.5: VANISHED (EARLIER) first, then the FETCH lines, after the mailbox's data.
order = [i for i, l in enumerate(lines) if l.startswith("* VANISHED") or " FETCH " in l]
assert lines[order[0]].startswith("* VANISHED (EARLIER)"), lines
assert lines.index([l for l in lines if l.startswith("* OK [HIGHESTMODSEQ")][0]) < order[0], lines
assert uid_map(c) == {1: 1, 2: 6, 3: 8}

step("SELECT (QRESYNC (v m)) without known UIDs: every UID expunged after m, every change")
lines = c.ok("SELECT Sync (QRESYNC (%d %d))" % (uid_validity, cache_modseq))
assert lines[0].startswith("* OK [CLOSED]"), lines
# UIDs 2, 4 and 5 went before m: not reported.
assert vanished(lines, True) == [3, 7], lines
changed = fetches(lines)
assert sorted(changed) == [1, 3], changed
assert changed[1]["uid"] == 1 and changed[3]["uid"] == 8 and changed[3]["flags"] == set(), changed
assert all(cache_modseq < e["modseq"] <= final_modseq for e in changed.values()), changed

step("another UIDVALIDITY: a plain EXAMINE, no VANISHED, no FETCH")
lines = c.ok("EXAMINE Sync (QRESYNC (%d %d 1:8))" % (uid_validity + 1, cache_modseq))
assert exists(lines) == 3 and not vanished(lines, True) and not fetches(lines), lines

step("MODSEQ 1 and known UIDs 1:3,5:8: every expunge there ever was, but of known UIDs only")
lines = c.ok("SELECT Sync (QRESYNC (%d 1 1:3,5:8))" % uid_validity)
assert vanished(lines, True) == [2, 3, 5, 7], lines
assert {e["uid"] for e in fetches(lines).values()} == {1, 6, 8}, lines

step("UID FETCH (CHANGEDSINCE m VANISHED): VANISHED (EARLIER) of the set, then the changes")
lines = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % cache_modseq)
assert vanished(lines, True) == [3, 7] and not vanished(lines, False), lines
assert lines[0].startswith("* VANISHED (EARLIER)"), lines
changed = fetches(lines)
assert {s: e["uid"] for s, e in changed.items()} == {1: 1, 3: 8}, changed
assert all(cache_modseq < e["modseq"] for e in changed.values()), changed
lines = c.ok("UID FETCH 2:6 (FLAGS) (CHANGEDSINCE %d VANISHED)" % cache_modseq)
assert lines == ["* VANISHED (EARLIER) 3"], lines
lines = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
assert vanished(lines, True) == [2, 3, 4, 5, 7], lines
assert c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % final_modseq) == []

step("the refused forms on node 3: BAD, and the session goes on")
bad(c, "UID FETCH 1:* (FLAGS) (VANISHED)", "VANISHED needs CHANGEDSINCE")
bad(c, "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "VANISHED only in UID FETCH")
bad(c, "SELECT Sync (QRESYNC (%d 1 1:*))" % uid_validity, "* in known-uids")
status_, _, _ = c.command("FETCH 1 (UID)")
assert status_ == "BAD", "the failed SELECT deselected the mailbox"
lines = c.ok("SELECT Sync")
assert exists(lines) == 3 and not vanished(lines, True), lines

step("node 1: UID MOVE 6 answers COPYUID and * VANISHED 6; node 3 gets * VANISHED 6 at NOOP")
a.ok("CREATE Archive")
moved = a.ok("UID MOVE 6 Archive")
no_expunge(moved)
assert vanished(moved, False) == [6], moved
assert [l for l in moved if l.startswith("* OK [COPYUID ")], moved
seen = []
wait_for("VANISHED 6 on node 3", lambda: noop_until_vanished(c, [6]))
assert uid_map(c) == {1: 1, 2: 8}

for client in (a, c):
    client.ok("LOGOUT")
print("ok")
