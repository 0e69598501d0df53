"""A user's mailboxes through one node's IMAP listener, for the mail-client tests (t67, t68):
what a client would see, and changes made the way a client makes them. Standard library only.

  mailbox.py dump ADDR USER PASSWORD [MAILBOX...]
      Prints JSON {"mailboxes": {name: [message, ...]}} for every selectable mailbox LIST
      shows (or only those named), each examined read-only: per message its UID, flags (without
      \\Recent), Message-ID, size, and the SHA-256 of its bytes as stored ("sha256") and of
      its Maildir form ("sha256_maildir": every CRLF turned into LF, as Maildir clients store
      messages, and without an X-TUID header, which mbsync adds to every message it uploads to
      find it again).
  mailbox.py change ADDR USER PASSWORD SPEC.json
      Applies SPEC's "ops" in order, each checked OK, messages named by Message-ID:
        {"op": "create", "mailbox": M}
        {"op": "store", "mailbox": M, "ids": [MID...], "mode": "+FLAGS"|"-FLAGS", "flags": [...]}
        {"op": "expunge", "mailbox": M, "ids": [MID...]}       (\\Deleted, then UID EXPUNGE)
        {"op": "append", "mailbox": M, "flags": [...], "body_hex": HEX}
      Prints how many ops it applied.

Exits non-zero (an assertion naming the command and the answer) at the first failure.
"""

import email.parser
import hashlib
import imaplib
import json
import re
import socket
import sys


def connect(addr, user, password):
    host, port = addr.rsplit(":", 1)
    conn = imaplib.IMAP4(host, int(port), timeout=60)
    # APPEND sends its literal in a second write: without this, Nagle's algorithm holds it until
    # the server's delayed ACK (40 ms a message).
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.login(user, password)
    return conn


def ok(what, answer):
    typ, data = answer
    assert typ == "OK", "%s: %s %r" % (what, typ, data)
    return data


LIST_LINE = re.compile(rb'\((?P<attrs>[^)]*)\) (?P<delim>"[^"]*"|NIL) (?P<name>.+)$')


def mailboxes(conn):
    """Selectable mailbox names LIST "" "*" answers."""
    names = []
    for line in ok("LIST", conn.list('""', "*")):
        if line is None:
            continue
        if isinstance(line, tuple):  # a name sent as a literal
            head, name = line
            attrs = LIST_LINE.match(head + b"x").group("attrs")
        else:
            m = LIST_LINE.match(line)
            assert m, "unparsed LIST line %r" % line
            attrs, name = m.group("attrs"), m.group("name")
            if name.startswith(b'"'):
                name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        if b"\\noselect" in attrs.lower():
            continue
        names.append(name.decode())
    return names


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def message_id(body):
    headers = email.parser.BytesHeaderParser().parsebytes(body)
    value = headers.get("Message-ID")
    return str(value).strip() if value is not None else None


def maildir_form(body):
    """`body` with CRLF as LF and without X-TUID header lines (the same as tests/support/mail.rs)."""
    body = body.replace(b"\r\n", b"\n")
    head, sep, rest = body.partition(b"\n\n")
    lines = [l for l in head.split(b"\n") if not l.lower().startswith(b"x-tuid:")]
    return b"\n".join(lines) + sep + rest


def examine(conn, name):
    """Selects `name` read-only; its message count."""
    data = ok("EXAMINE " + name, conn.select(quote(name), readonly=True))
    return int(data[0])


def fetch(conn, items):
    """UID FETCH 1:* (UID FLAGS items) of the selected mailbox: [(uid, flags, literal)]."""
    data = ok("UID FETCH", conn.uid("FETCH", "1:*", "(UID FLAGS %s)" % items))
    out = []
    i = 0
    while i < len(data):
        item = data[i]
        i += 1
        if not isinstance(item, tuple):
            continue
        head, literal = item
        # Items after the literal (FLAGS sent last, say) come as the next plain element.
        if i < len(data) and isinstance(data[i], bytes):
            head += data[i]
            i += 1
        text = head.decode("latin-1")
        uid = int(re.search(r"UID (\d+)", text).group(1))
        flags = re.search(r"FLAGS \(([^)]*)\)", text).group(1).split()
        out.append((uid, sorted(f for f in flags if f.lower() != "\\recent"), literal))
    return out


def dump(conn, only):
    out = {}
    for name in only or mailboxes(conn):
        messages = []
        if examine(conn, name) > 0:
            for uid, flags, body in fetch(conn, "BODY.PEEK[]"):
                messages.append({
                    "uid": uid,
                    "flags": flags,
                    "message_id": message_id(body),
                    "size": len(body),
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "sha256_maildir": hashlib.sha256(maildir_form(body)).hexdigest(),
                })
        out[name] = messages
    return out


def uids_by_id(conn, name):
    """{Message-ID: UID} of mailbox `name`, selected read-write."""
    data = ok("SELECT " + name, conn.select(quote(name)))
    if int(data[0]) == 0:
        return {}
    found = {}
    for uid, _, header in fetch(conn, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"):
        found[message_id(header)] = uid
    return found


def uid_list(by_id, ids):
    missing = [i for i in ids if i not in by_id]
    assert not missing, "no message with Message-ID %s" % missing
    return ",".join(str(by_id[i]) for i in ids)


def change(conn, spec):
    for op in spec["ops"]:
        kind, name = op["op"], op["mailbox"]
        if kind == "create":
            ok("CREATE " + name, conn.create(quote(name)))
        elif kind == "store":
            uids = uid_list(uids_by_id(conn, name), op["ids"])
            flags = "(%s)" % " ".join(op["flags"])
            ok("UID STORE %s %s" % (uids, flags), conn.uid("STORE", uids, op["mode"], flags))
        elif kind == "expunge":
            uids = uid_list(uids_by_id(conn, name), op["ids"])
            ok("UID STORE +FLAGS \\Deleted", conn.uid("STORE", uids, "+FLAGS", "(\\Deleted)"))
            ok("UID EXPUNGE " + uids, conn.uid("EXPUNGE", uids))
        elif kind == "append":
            flags = "(%s)" % " ".join(op["flags"])
            body = bytes.fromhex(op["body_hex"])
            ok("APPEND to " + name, conn.append(quote(name), flags, None, body))
        else:
            raise AssertionError("unknown op %r" % kind)
    return len(spec["ops"])


def main():
    command, addr, user, password = sys.argv[1:5]
    conn = connect(addr, user, password)
    if command == "dump":
        print(json.dumps({"mailboxes": dump(conn, sys.argv[5:])}))
    elif command == "change":
        with open(sys.argv[5]) as f:
            spec = json.load(f)
        print(json.dumps({"applied": change(conn, spec)}))
    else:
        raise AssertionError("unknown command %r" % command)
    conn.logout()


if __name__ == "__main__":
    main()
