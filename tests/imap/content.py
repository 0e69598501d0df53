"""FETCH of MIME items and SEARCH against a real cluster, with imaplib (t64_imap_content.rs runs it).

argv: addr1 addr2 user password fixtures_dir
  APPENDs three fixture messages on addr1's node, then FETCHes and SEARCHes on addr2's node:
  each FETCH answer must equal the same FETCH on addr1 (byte for byte: derived data is the same
  on every node) and Dovecot's recorded answer (`NN-*.dovecot.json`) where one exists (BODY and
  BODYSTRUCTURE case-insensitively, mime_tests.rs rule 1). Prints what it does; exits non-zero
  (an assertion) at the first difference.
   or: nobody addr user password — INBOX holds two messages with bytes and a third appended by
   reference through the HTTP API (no bytes anywhere): what needs its bytes answers NO naming it.
"""

import imaplib
import json
import os
import re
import sys
import time

if sys.argv[1] == "nobody":
    addr, user, password = sys.argv[2:5]
    print("-- a message without bytes: FETCH of its content and a SEARCH needing it answer NO", flush=True)
    host, port = addr.rsplit(":", 1)
    conn = imaplib.IMAP4(host, int(port), timeout=20)
    conn.login(user, password)
    deadline = time.time() + 10
    while True:
        typ, data = conn.select("INBOX")
        if typ == "OK" and int(data[0]) == 3:
            break
        assert time.time() < deadline, (typ, data)
        time.sleep(0.1)
    typ, data = conn.fetch("1:*", "(UID FLAGS)")
    print("   fetch flags ->", typ, data, flush=True)
    assert typ == "OK" and len(data) == 3, data
    bodiless = int(re.search(rb"UID (\d+)", data[2]).group(1))
    conn.untagged_responses.clear()
    typ, data = conn.fetch("1:*", "(UID ENVELOPE)")
    fetched = conn.untagged_responses.pop("FETCH", [])
    print("   fetch envelope ->", typ, data, fetched, flush=True)
    assert typ == "NO" and b"no answer for UID %d " % bodiless in data[0], (typ, data)
    assert len(fetched) == 2 and all(b"ENVELOPE" in f for f in fetched), fetched
    typ, data = conn.search(None, "FLAGGED")
    print("   search flagged ->", typ, data, flush=True)
    assert typ == "OK" and data[0].split()[-1] == b"3", data
    typ, data = conn.search(None, "BODY", "hello")
    print("   search body ->", typ, data, flush=True)
    assert typ == "NO" and b"SEARCH failed" in data[0] and b"UID %d " % bodiless in data[0], (typ, data)
    conn.logout()
    print("ALL OK")
    sys.exit(0)

addr1, addr2, user, password, fixtures = sys.argv[1:6]


def connect(addr):
    host, port = addr.rsplit(":", 1)
    conn = imaplib.IMAP4(host, int(port), timeout=20)
    conn.login(user, password)
    return conn


def step(what):
    print("--", what, flush=True)


def eml(name):
    with open(os.path.join(fixtures, name + ".eml"), "rb") as f:
        return f.read()


def dovecot(name, item):
    with open(os.path.join(fixtures, name + ".dovecot.json")) as f:
        return json.load(f)["items"][item].encode("latin-1")


def raw(data):
    """A FETCH answer as imaplib received it, literals put back: b'n (ITEMS)'."""
    out = b""
    for part in data:
        if isinstance(part, tuple):
            out += part[0] + b"\r\n" + part[1]
        elif part is not None:
            out += part
    return out


def uid_fetch(conn, uid, items):
    conn.untagged_responses.clear()
    typ, data = conn.uid("FETCH", str(uid), items)
    print("   UID FETCH", uid, items, "->", typ, repr(raw(data))[:300], flush=True)
    assert typ == "OK", (typ, data)
    answer = raw(data)
    m = re.match(rb"^\d+ \(UID %d (.*)\)$" % uid, answer, re.S)
    assert m, answer
    return m.group(1)


def search(conn, *criteria, charset=None, uid=False):
    conn.untagged_responses.clear()
    if uid:
        typ, data = conn.uid("SEARCH", *(["CHARSET", charset] if charset else []), *criteria)
    else:
        typ, data = conn.search(charset, *criteria)
    untagged = {k: list(v) for k, v in conn.untagged_responses.items()}
    conn.untagged_responses.clear()
    print("   SEARCH", "UID" if uid else "", charset, criteria, "->", typ, data, untagged, flush=True)
    assert "EXPUNGE" not in untagged or uid, untagged
    return typ, data


def numbers(data):
    text = data[0].decode()
    text = re.sub(r"\(MODSEQ \d+\)", "", text)
    return [int(n) for n in text.split()]


c1 = connect(addr1)
typ, _ = c1.select("INBOX")
assert typ == "OK"
step("APPEND three messages on node 1")
uids = {}
for name, date in [
    ("03-mixed-nested", '"02-Mar-2022 11:00:00 +0100"'),
    ("01-plain", '"07-Feb-1994 21:52:25 -0800"'),
    ("07-encoded-words", '"05-Mar-2022 07:00:00 +0000"'),
]:
    typ, data = c1.append("INBOX", None, date, eml(name))
    assert typ == "OK", (typ, data)
    m = re.search(rb"APPENDUID \d+ (\d+)", data[0])
    uids[name] = int(m.group(1))
print("   uids", uids, flush=True)
mixed, plain, encoded = uids["03-mixed-nested"], uids["01-plain"], uids["07-encoded-words"]

c2 = connect(addr2)
deadline = time.time() + 10
while True:
    typ, data = c2.select("INBOX")
    if typ == "OK" and int(data[0]) == 3:
        break
    assert time.time() < deadline, "node 2 never showed the three messages"
    time.sleep(0.1)
c1.noop()

step("FETCH MIME items on node 2: the same as on node 1, and as Dovecot answered")
M = "03-mixed-nested"
checks = [
    ("ENVELOPE", lambda ours: ours == dovecot(M, "ENVELOPE")),
    ("BODYSTRUCTURE", lambda ours: ours.lower() == dovecot(M, "BODYSTRUCTURE").lower()),
    ("BODY", lambda ours: ours.lower() == dovecot(M, "BODY").lower()),
    ("BODY.PEEK[1.MIME]", lambda ours: ours == dovecot(M, "BODY.PEEK[1.MIME]")),
    (
        "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
        # The same fields in stored order as Dovecot's (From Subject X-Missing) answer.
        lambda ours: ours.split(b"]", 1)[1] == dovecot(M, "BODY.PEEK[HEADER.FIELDS (From Subject X-Missing)]").split(b"]", 1)[1],
    ),
    ("BODY.PEEK[2]<0.10>", lambda ours: ours == b"BODY[2]<0> {10}\r\n" + dovecot(M, "BODY.PEEK[2]").split(b"\r\n", 1)[1][:10]),
    ("RFC822.HEADER", lambda ours: ours == dovecot(M, "RFC822.HEADER")),
    ("RFC822.SIZE", lambda ours: ours == dovecot(M, "RFC822.SIZE")),
    ("BODY.PEEK[3.1]", lambda ours: ours == dovecot(M, "BODY.PEEK[3.1]")),
    ("BODY.PEEK[TEXT]", lambda ours: ours == dovecot(M, "BODY.PEEK[TEXT]")),
    ("ALL", lambda ours: dovecot(M, "ENVELOPE") in ours and b"RFC822.SIZE 1085" in ours and b"INTERNALDATE" in ours),
    ("FULL", lambda ours: dovecot(M, "BODY").lower() in ours.lower() and dovecot(M, "ENVELOPE") in ours),
    ("FAST", lambda ours: b"RFC822.SIZE 1085" in ours and b"ENVELOPE" not in ours),
]
answers = {}
for item, check in checks:
    ours2 = uid_fetch(c2, mixed, item)
    ours1 = uid_fetch(c1, mixed, item)
    assert ours1 == ours2, ("node 1 and node 2 differ", item, ours1, ours2)
    assert check(ours2), ("not Dovecot's answer", item, ours2)
    answers[item] = ours2
step("ENVELOPE, BODYSTRUCTURE and BODY again, now from each node's MIME cache: the same bytes")
for item in ["ENVELOPE", "BODYSTRUCTURE", "BODY", "(ENVELOPE BODYSTRUCTURE)"]:
    want = answers.get(item) or answers["ENVELOPE"] + b" " + answers["BODYSTRUCTURE"]
    for conn in (c1, c2):
        ours = uid_fetch(conn, mixed, item)
        assert ours == want, ("a cached answer differs", item, ours, want)
for name, uid in [("01-plain", plain), ("07-encoded-words", encoded)]:
    for item in ["BODYSTRUCTURE", "BODY.PEEK[HEADER]", "BODY.PEEK[1]"]:
        ours2 = uid_fetch(c2, uid, item)
        assert ours2 == uid_fetch(c1, uid, item), (name, item)
        want = dovecot(name, item)
        assert ours2.lower() == want.lower() if item == "BODYSTRUCTURE" else ours2 == want, (name, item, ours2, want)

step("RFC822.HEADER and PEEK leave \\Seen alone; BODY[HEADER.FIELDS ...] and RFC822.TEXT set it")
assert b"\\Seen" not in uid_fetch(c2, mixed, "FLAGS")
ours = uid_fetch(c2, mixed, "BODY[HEADER.FIELDS (SUBJECT FROM)]")
assert b"\\Seen" in ours and b"Subject: Mixed with attachment" in ours, ours
ours = uid_fetch(c2, plain, "RFC822.TEXT")
assert b"\\Seen" in ours and dovecot("01-plain", "BODY.PEEK[TEXT]").split(b"\r\n", 1)[1] in ours, ours
c2.uid("STORE", str(plain), "-FLAGS", "(\\Seen)")
c2.uid("STORE", str(plain), "+FLAGS", "(\\Flagged)")

step("SEARCH on node 2 (sequence numbers 1 2 3 are mixed, plain, encoded)")
expect = [
    (("SEEN",), [1]),
    (("UNSEEN",), [2, 3]),
    (("FLAGGED",), [2]),
    (("FROM", "grace"), [1]),
    (("FROM", '"alice example"'), [2]),
    (("SUBJECT", "forwarded"), [1]),
    (("BODY", '"inner plain"'), [1]),
    (("TEXT", '"Inner message"'), [1]),
    (("TEXT", "grace"), [1]),
    (("HEADER", "Message-ID", "mixed-1"), [1]),
    (("LARGER", "1000"), [1]),
    (("SMALLER", "400"), [3]),
    (("SINCE", "1-Mar-2022"), [1, 3]),
    (("BEFORE", "1-Jan-2000"), [2]),
    (("NOT", "SEEN"), [2, 3]),
    (("OR", "FLAGGED", "SEEN"), [1, 2]),
    (("UID", "%d:%d" % (plain, encoded)), [2, 3]),
    (("UNSEEN", "FROM", "pirard"), [3]),
    (("2:*",), [2, 3]),
]
for criteria, want in expect:
    typ, data = search(c2, *criteria)
    assert typ == "OK" and numbers(data) == want, (criteria, typ, data, want)
typ, data = search(c2, "FLAGGED", uid=True)
assert typ == "OK" and numbers(data) == [plain], data
typ, data = search(c2, "UID", "%d:*" % plain, uid=True)
assert typ == "OK" and numbers(data) == [plain, encoded], data

step("CHARSET: UTF-8 with a non-ASCII term (a literal); an unknown charset -> BADCHARSET")
for charset in ["UTF-8", "utf-8", "US-ASCII"]:
    c2.literal = "café".encode() if charset != "US-ASCII" else b"WORLD AND"
    typ, data = search(c2, "SUBJECT", charset=charset)
    assert typ == "OK" and numbers(data) == [3], (charset, data)
c2.literal = "andré".encode()
typ, data = search(c2, "FROM", charset="UTF-8", uid=True)
assert typ == "OK" and numbers(data) == [encoded], data
typ, data = search(c2, "ALL", charset="ISO-8859-99")
assert typ == "NO" and b"[BADCHARSET (US-ASCII UTF-8)]" in data[0], (typ, data)

step("MODSEQ after ENABLE CONDSTORE (a second session on node 2): the highest mod-sequence of the matches")
c2.logout()
c2 = connect(addr2)
typ, data = c2.enable("CONDSTORE")
assert typ == "OK", (typ, data)
typ, data = c2.select("INBOX")
assert typ == "OK" and int(data[0]) == 3, (typ, data)
modseqs = {}
for uid in (mixed, plain, encoded):
    modseqs[uid] = int(re.search(rb"MODSEQ \((\d+)\)", uid_fetch(c2, uid, "MODSEQ")).group(1))
low = sorted(modseqs.values())[1]  # some match, some do not
typ, data = search(c2, "MODSEQ", str(low), uid=True)
matched = sorted(u for u, m in modseqs.items() if m >= low)
assert typ == "OK" and numbers(data) == matched, data
assert b"(MODSEQ %d)" % max(modseqs.values()) in data[0], (data, modseqs)
typ, data = search(c2, "MODSEQ", str(max(modseqs.values()) + 1))
assert typ == "OK" and numbers(data) == [] and b"MODSEQ" not in data[0], data
typ, data = search(c2, "FLAGGED")
assert typ == "OK" and b"MODSEQ" not in data[0], data

step("non-UID SEARCH keeps the session's numbering while another node expunges")
typ, data = c1.uid("STORE", str(mixed), "+FLAGS.SILENT", "(\\Deleted)")
assert typ == "OK", (typ, data)
typ, data = c1.expunge()
assert typ == "OK", (typ, data)
deadline = time.time() + 10
while True:
    typ, data = search(c2, "ALL")
    assert typ == "OK", data
    if numbers(data) == [2, 3]:
        break  # the old numbers: no EXPUNGE was sent during SEARCH
    assert numbers(data) == [1, 2, 3], data
    assert time.time() < deadline, "node 2 never saw the expunge"
    time.sleep(0.1)
c2.untagged_responses.clear()
typ, data = c2.noop()
assert c2.untagged_responses.get("EXPUNGE") == [b"1"], c2.untagged_responses
c2.untagged_responses.clear()
typ, data = search(c2, "ALL")
assert numbers(data) == [1, 2], data
typ, data = search(c2, "FLAGGED")
assert numbers(data) == [1], data
typ, data = search(c2, "ALL", uid=True)
assert numbers(data) == [plain, encoded], data

c1.logout()
c2.logout()
print("ALL OK")
