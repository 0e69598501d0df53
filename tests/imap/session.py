"""Drives Dovetail's IMAP server with the standard library's imaplib (t63_imap.rs runs it).

argv: strict_addr addr2 addr3 imaps_addr ca_pem user password
  strict_addr: a node's IMAP listener without --imap-allow-plaintext (STARTTLS offered);
  addr2, addr3: two other nodes' listeners, with plaintext logins allowed;
  imaps_addr: the first node's implicit-TLS listener; ca_pem: the CA that signed its certificate.
   or: noquorum addr user password — on a node whose group has lost its quorum: reads are
   served from its index, writes answer NO [UNAVAILABLE].
Prints what it does; exits non-zero (an assertion) at the first difference.
"""

import imaplib
import ssl
import sys
import time



def connect(addr):
    host, port = addr.rsplit(":", 1)
    return imaplib.IMAP4(host, int(port), timeout=20)


if sys.argv[1] == "noquorum":
    addr, user, password = sys.argv[2:5]
    print("-- no quorum: reads from the local index, writes NO [UNAVAILABLE]", flush=True)
    conn = connect(addr)
    conn.login(user, password)
    typ, data = conn.select("INBOX")
    print("   select ->", typ, data, flush=True)
    assert typ == "OK" and data == [b"4"], (typ, data)
    typ, data = conn.fetch("1:*", "(UID FLAGS)")
    print("   fetch ->", typ, data, flush=True)
    assert typ == "OK" and len(data) == 4, data
    start = time.time()
    typ, data = conn.append("INBOX", None, None, b"Subject: lost\r\n\r\nnowhere\r\n")
    print("   append ->", typ, data, "after %.1f s" % (time.time() - start), flush=True)
    assert typ == "NO" and b"UNAVAILABLE" in data[0], (typ, data)
    typ, data = conn.store("1", "+FLAGS", "(\\Flagged)")
    print("   store ->", typ, data, flush=True)
    assert typ == "NO" and b"UNAVAILABLE" in data[0], (typ, data)
    typ, data = conn.fetch("1", "(FLAGS)")
    assert typ == "OK", (typ, data)
    conn.logout()
    print("ALL OK")
    sys.exit(0)

strict_addr, addr2, addr3, imaps_addr, ca_pem, user, password = sys.argv[1:8]
tls = ssl.create_default_context(cafile=ca_pem)


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
    conn.untagged_responses.clear()
    typ, data = conn.uid(*args)
    untagged = {k: list(v) for k, v in conn.untagged_responses.items()}
    conn.untagged_responses.clear()
    print("   UID", args, "->", typ, data, untagged, flush=True)
    return typ, data, untagged


def login_error(addr, name, secret):
    conn = connect(addr)
    try:
        conn.login(name, secret)
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        try:
            conn.logout()
        except Exception:
            pass
    raise AssertionError("login of %r succeeded" % name)


def message(subject, filler=""):
    return ("From: a@example.org\r\nTo: %s@example.org\r\nSubject: %s\r\n\r\nHello %s\r\n%s"
            % (user, subject, subject, filler)).encode()


def fetch_pairs(data):
    """imaplib FETCH data: (b'1 (UID 5 FLAGS (\\Seen))', ...) -> list of the parenthesized strings."""
    out = []
    for item in data:
        if isinstance(item, tuple):
            out.append(item[0].decode())
        elif item is not None:
            out.append(item.decode())
    return out


step("the strict node: LOGINDISABLED, no AUTH=PLAIN, LOGIN refused without TLS")
strict = connect(strict_addr)
caps = strict.capabilities
print("  ", caps)
assert "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps, caps
assert "IMAP4REV1" in caps and "IDLE" in caps and "UIDPLUS" in caps, caps
typ, data = strict._simple_command("LOGIN", user, strict._quote(password))
print("  ", typ, data)
assert typ == "NO" and b"PRIVACYREQUIRED" in data[0], (typ, data)
assert "STARTTLS" in caps, caps

step("STARTTLS on the strict node: AUTH=PLAIN, no LOGINDISABLED, the login works")
typ, data = strict.starttls(ssl_context=tls)
assert typ == "OK", (typ, data)
caps = strict.capabilities
print("  ", caps)
assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps and "STARTTLS" not in caps, caps
strict.login(user, password)
assert run(strict, "list", '""', "INBOX")[0] == "OK"
strict.logout()

step("implicit TLS: AUTHENTICATE PLAIN")
host, port = imaps_addr.rsplit(":", 1)
secure = imaplib.IMAP4_SSL(host, int(port), ssl_context=tls, timeout=10)
typ, data = secure.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (user, password)).encode())
print("   AUTHENTICATE ->", typ, data)
assert typ == "OK", (typ, data)
assert run(secure, "select", "INBOX")[0] == "OK"
secure.logout()

step("a wrong password and an unknown user are answered alike")
wrong = login_error(addr2, user, "not-" + password)
unknown = login_error(addr2, "nobody-" + user, password)
print("  ", wrong, "|", unknown)
assert wrong == unknown and "AUTHENTICATIONFAILED" in wrong, (wrong, unknown)

step("login on node 2: INBOX and the special-use mailboxes exist, with their attributes")
a = connect(addr2)
assert "AUTH=PLAIN" in a.capabilities and "LOGINDISABLED" not in a.capabilities, a.capabilities
a.login(user, password)
typ, data, _ = run(a, "list", '""', "*")
listed = {line.decode().rsplit(" ", 1)[-1].strip('"'): line.decode() for line in data}
for name in ["INBOX", "Drafts", "Sent", "Trash", "Junk"]:
    assert name in listed, (name, listed)
assert "\\Trash" in listed["Trash"] and "\\Sent" in listed["Sent"], listed

step("CREATE a child; LIST % shows its parent with \\HasChildren; DELETE works")
assert run(a, "create", "Work/Projects")[0] == "OK"
typ, data, _ = run(a, "list", '""', "%")
top = [line.decode() for line in data]
assert any(l.rsplit(' ', 1)[-1].strip('"') == 'Work' and "\\HasChildren" in l for l in top), top
assert not any("Projects" in l for l in top), top
assert run(a, "create", "Scratch")[0] == "OK"
assert run(a, "create", "Scratch")[0] == "NO"
assert run(a, "delete", "Scratch")[0] == "OK"
typ, data, _ = run(a, "list", "\"\"", "inbox")
assert len(data) == 1 and data[0].decode().endswith("INBOX"), data
typ, data, _ = run(a, "list", "\"\"", "\"\"")
assert data == [b'(\\Noselect) "/" ""'], data
assert run(a, "create", "Old")[0] == "OK" and run(a, "create", "Old/Child")[0] == "OK"
assert run(a, "rename", "Old", "New")[0] == "OK"
typ, data, _ = run(a, "list", "New/", "*")
assert [l.decode().rsplit(" ", 1)[-1] for l in data] == ["New/Child"], data
typ, data, _ = run(a, "status", "New/Child", "(MESSAGES UIDVALIDITY)")
assert typ == "OK" and b"MESSAGES 0" in data[0], data

step("SELECT INBOX; APPEND with flags and a date gives APPENDUID; EXISTS follows")
typ, data, untagged = run(a, "select", "INBOX")
assert typ == "OK" and data == [b"0"], (typ, data)
assert "UIDVALIDITY" in untagged and "UIDNEXT" in untagged, untagged
bodies = [message("m%d" % i, "x" * (i * 100)) for i in range(1, 5)]
appended_uids = []
for i, body in enumerate(bodies):
    flags = "(\\Flagged $Work)" if i == 0 else None
    date = imaplib.Time2Internaldate(1700000000 + i) if i == 0 else None
    typ, data = a.append("INBOX", flags, date, body)
    print("   APPEND ->", typ, data)
    assert typ == "OK" and b"APPENDUID" in data[0], (typ, data)
    appended_uids.append(int(data[0].decode().split("APPENDUID ")[1].split()[1].rstrip("]")))
# Each APPEND into the selected mailbox is followed by its EXISTS.
assert a.untagged_responses.get("EXISTS", [])[-1:] == [b"4"], a.untagged_responses
assert run(a, "select", "INBOX")[1] == [b"4"]

step("FETCH FLAGS, UID, RFC822.SIZE, INTERNALDATE; BODY[] is the bytes; non-PEEK sets \\Seen")
typ, data, _ = run(a, "fetch", "1:*", "(UID FLAGS RFC822.SIZE)")
rows = fetch_pairs(data)
assert len(rows) == 4, rows
assert "\\Flagged" in rows[0] and "$Work" in rows[0] and "RFC822.SIZE %d" % len(bodies[0]) in rows[0], rows
typ, data, _ = run(a, "fetch", "1", "(INTERNALDATE)")
assert "14-Nov-2023" in data[0].decode(), data
typ, data, _ = run(a, "fetch", "2", "(BODY.PEEK[])")
assert data[0][1] == bodies[1], data
typ, data, _ = run(a, "fetch", "2", "(FLAGS)")
assert "\\Seen" not in data[0].decode(), data
typ, data, _ = run(a, "fetch", "2", "(BODY[])")
assert data[0][1] == bodies[1], data
assert "\\Seen" in data[0][0].decode() or any("\\Seen" in fetch_pairs([d])[0] for d in data if d), data
typ, data, _ = run(a, "fetch", "2", "(FLAGS)")
assert "\\Seen" in data[0].decode(), data
typ, data, _ = run(a, "fetch", "3", "(BODY.PEEK[]<0.10>)")
assert data[0][1] == bodies[2][:10], data

step("what is not built answers NO [CANNOT], never a fake success")
for cmd in [("fetch", "1", "(BINARY[1])")]:
    typ, data, _ = run(a, *cmd)
    assert typ == "NO" and b"CANNOT" in data[0], (cmd, typ, data)

step("STORE +FLAGS answers FETCH FLAGS; .SILENT does not")
typ, data, _ = run(a, "store", "1", "+FLAGS", "(\\Deleted)")
assert typ == "OK" and "\\Deleted" in data[0].decode(), data
typ, data, _ = run(a, "store", "3", "+FLAGS.SILENT", "(\\Answered)")
assert typ == "OK" and data == [None], data
typ, data, _ = run(a, "fetch", "3", "(FLAGS)")
assert "\\Answered" in data[0].decode(), data

step("CONDSTORE: SELECT (CONDSTORE), UID FETCH (CHANGEDSINCE), UID STORE (UNCHANGEDSINCE) -> [MODIFIED]")
a.untagged_responses.clear()
typ, data = a._simple_command("SELECT", "INBOX", "(CONDSTORE)")
highest = int(a.untagged_responses["HIGHESTMODSEQ"][0])
print("   SELECT (CONDSTORE) ->", typ, data, "HIGHESTMODSEQ", highest)
assert typ == "OK", (typ, data)
typ, data, _ = uid_cmd(a, "FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %d)" % (highest - 1))
rows = fetch_pairs(data)
assert typ == "OK" and len(rows) == 1 and "MODSEQ (%d)" % highest in rows[0], rows
typ, data, untagged = uid_cmd(a, "STORE", str(appended_uids[3]), "(UNCHANGEDSINCE 1) +FLAGS", "(\\Flagged)")
assert typ == "OK" and untagged.get("MODIFIED") == [str(appended_uids[3]).encode()], (data, untagged)
typ, data, _ = run(a, "fetch", "4", "(FLAGS)")
assert "\\Flagged" not in data[0].decode(), data

step("a literal over --max-message-bytes is refused (BAD) and the session goes on")
try:
    a.append("INBOX", None, None, message("big", "y" * 300000))
    raise AssertionError("the oversized APPEND was taken")
except imaplib.IMAP4.error as e:
    print("  ", e)
    assert "BAD" in str(e) and "larger" in str(e), e
assert run(a, "noop")[0] == "OK"

step("a malformed command is answered BAD and the session goes on")
tag = a._new_tag()
a.send(tag + b" FROBNICATE ((\r\n")
line = a._get_line()
print("  ", line)
assert line.startswith(tag + b" BAD"), line
assert run(a, "noop")[0] == "OK"

step("session B on node 3 selects INBOX; EXPUNGE on node 2 renumbers there at once")
b = connect(addr3)
b.login(user, password)
typ, data, _ = run(b, "select", "INBOX")
assert data == [b"4"], data
typ, data, untagged = run(a, "expunge")
assert typ == "OK" and data == [b"1"], (data, untagged)  # imaplib moves EXPUNGE into data
typ, data, _ = run(a, "fetch", "1", "(UID)")
assert "UID %d" % appended_uids[1] in data[0].decode(), data

step("node 3: the expunge shows only at an allowed point, never during FETCH")
c = connect(addr3)
c.login(user, password)
deadline = time.time() + 5
while True:
    typ, data, _ = run(c, "status", "INBOX", "(MESSAGES)")
    if b"MESSAGES 3" in data[0]:
        break
    assert time.time() < deadline, data
    time.sleep(0.05)
typ, data, untagged = run(b, "fetch", "1:4", "(UID)")
assert typ == "OK" and "EXPUNGE" not in untagged, untagged
# Sequence numbers have not moved: message 2 is still the second appended.
assert any(r.startswith("2 (UID %d" % appended_uids[1]) for r in fetch_pairs(data)), data
typ, data, untagged = run(b, "noop")
assert untagged.get("EXPUNGE") == [b"1"], untagged
typ, data, _ = run(b, "fetch", "1", "(UID)")
assert "UID %d" % appended_uids[1] in data[0].decode(), data

step("an APPEND through node 2 reaches node 3's NOOP within 1 s")
start = time.time()
assert a.append("INBOX", None, None, message("m5"))[0] == "OK"
while True:
    typ, data, untagged = run(b, "noop")
    if untagged.get("EXISTS"):
        break
    assert time.time() - start < 1.0, "no EXISTS on node 3 after 1 s"
    time.sleep(0.05)
assert untagged["EXISTS"] == [b"4"], untagged
print("   EXISTS after %.3f s" % (time.time() - start))

step("IDLE on node 3: an APPEND through node 2 arrives as EXISTS within 1 s")
tag = b._new_tag()
b.send(tag + b" IDLE\r\n")
line = b._get_line()
assert line.startswith(b"+"), line
start = time.time()
assert a.append("INBOX", None, None, message("m6"))[0] == "OK"
b.sock.settimeout(1.0)
got = []
try:
    while True:
        line = b._get_line()
        got.append(line)
        if line.endswith(b"EXISTS"):
            break
finally:
    b.sock.settimeout(10)
elapsed = time.time() - start
print("   IDLE got", got, "after %.3f s" % elapsed)
assert got[-1] == b"* 5 EXISTS" and elapsed < 1.0, got
b.send(b"DONE\r\n")
line = b._get_line()
assert line.startswith(tag + b" OK"), line

step("CLOSE expunges \\Deleted silently; UNSELECT; LOGOUT")
assert run(a, "store", "1", "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
typ, data, untagged = run(a, "close")
assert typ == "OK" and "EXPUNGE" not in untagged, untagged
typ, data, _ = run(a, "status", "INBOX", "(MESSAGES UIDNEXT UNSEEN)")
assert b"MESSAGES 4" in data[0], data
tag = a._new_tag()  # imaplib itself refuses FETCH outside SELECTED: send it raw
a.send(tag + b" FETCH 1 (UID)\r\n")
line = a._get_line()
print("  ", line)
assert line.startswith(tag + b" BAD"), line
for conn in (a, b, c):
    conn.logout()
print("ALL OK")
