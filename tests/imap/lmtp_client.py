"""An MTA's side of LMTP with the standard library's smtplib.LMTP, for t68_lmtp_clients.rs.

  lmtp_client.py once HOST:PORT MESSAGE_FILE RCPT...
      One transaction: LHLO, MAIL FROM, RCPT TO each, DATA if one was accepted (its bytes sent
      as they are: CRLF lines), one reply read per accepted recipient. Prints JSON
      {"lhlo", "esmtp", "mail", "rcpt": [[code, text]...], "data": [[code, text]...]}.
  lmtp_client.py loop HOST:PORT NAME LOG STOP_FILE RCPT...
      Delivers messages 0, 1, 2, ... (Message-ID <NAME-N@t68.example>, 1-30 KiB, lines that need
      dot-stuffing, 8-bit bytes) to every RCPT, one transaction a try, as an MTA does: a
      recipient refused 4xx (at RCPT or after DATA) or a failed connection is tried again after
      0.2 s, in a new transaction for the recipients still pending, until each has its 250. Stops
      before the next message once STOP_FILE exists. Appends JSON lines to LOG, flushed each,
      every one with "t", the time it was written (seconds since the epoch):
        {"sent": N, "message_id", "sha256", "size"}             before the first try of N
        {"i": N, "rcpt", "stage": "rcpt"|"data", "code", "text"} every reply to a recipient
        {"i": N, "error", "rcpts": [...]}                        a try that failed, who was pending
        {"gave_up": N, "rcpts": [...]}                           still pending after 120 s
      A 5xx for a recipient is a failure (these users exist): exit 1 after logging it.
"""

import os
import sys

# This directory holds copy.py (an IMAP test), which would shadow the standard library's copy
# module that smtplib imports: look for modules elsewhere.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import hashlib  # noqa: E402
import json  # noqa: E402
import smtplib  # noqa: E402
import time  # noqa: E402

SENDER = "mta@example.org"


def connect(addr):
    host, port = addr.rsplit(":", 1)
    conn = smtplib.LMTP(host, int(port), timeout=60)
    code, _ = conn.ehlo()
    assert code == 250, "LHLO answered %d" % code
    return conn


def transaction(conn, body, rcpts):
    """MAIL, RCPT each, DATA: ((mail code, text), [(rcpt, code, text)], [(rcpt, code, text)])."""
    mail = conn.mail(SENDER)
    rcpt_replies, data_replies = [], []
    if mail[0] != 250:
        return mail, rcpt_replies, data_replies
    accepted = []
    for rcpt in rcpts:
        code, text = conn.rcpt(rcpt)
        rcpt_replies.append((rcpt, code, text.decode()))
        if code == 250:
            accepted.append(rcpt)
    if accepted:
        code, text = conn.data(body)
        data_replies.append((accepted[0], code, text.decode()))
        for rcpt in accepted[1:]:
            code, text = conn.getreply()
            data_replies.append((rcpt, code, text.decode()))
    return mail, rcpt_replies, data_replies


def once(addr, path, rcpts):
    with open(path, "rb") as f:
        body = f.read()
    conn = connect(addr)
    esmtp = sorted(conn.esmtp_features)
    mail, rcpt_replies, data_replies = transaction(conn, body, rcpts)
    conn.quit()
    print(json.dumps({
        "esmtp": esmtp,
        "mail": [mail[0], mail[1].decode()],
        "rcpt": [[c, t] for _, c, t in rcpt_replies],
        "data": [[c, t] for _, c, t in data_replies],
    }))


def message_id(name, n):
    return "<%s-%d@t68.example>" % (name, n)


def message(name, n):
    lines = [
        "From: MTA <%s>" % SENDER,
        "Subject: delivery %d of %s while the leader dies" % (n, name),
        "Message-ID: " + message_id(name, n),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        ".a line that needs dot-stuffing",
        ".",
        "été, Grüße",
    ]
    size = 1024 * (1 + (n * 7) % 30)
    k = 0
    while sum(len(l) + 2 for l in lines) < size:
        lines.append("line %d of message %d of %s" % (k, n, name))
        k += 1
    return ("\r\n".join(lines) + "\r\n").encode()


def loop(addr, name, log_path, stop_path, rcpts):
    log = open(log_path, "a")

    def record(entry):
        entry["t"] = time.time()
        log.write(json.dumps(entry) + "\n")
        log.flush()

    n = 0
    while not os.path.exists(stop_path):
        body = message(name, n)
        record({"sent": n, "message_id": message_id(name, n),
                "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)})
        pending = list(rcpts)
        deadline = time.time() + 120
        while pending:
            if time.time() > deadline:
                record({"gave_up": n, "rcpts": pending})
                break
            try:
                conn = connect(addr)
                mail, rcpt_replies, data_replies = transaction(conn, body, pending)
                assert mail[0] == 250 or 400 <= mail[0] < 500, "MAIL FROM answered %r" % (mail,)
                for stage, replies in (("rcpt", rcpt_replies), ("data", data_replies)):
                    for rcpt, code, text in replies:
                        record({"i": n, "rcpt": rcpt, "stage": stage, "code": code, "text": text})
                        if code >= 500:
                            sys.exit("%s refused %d %s at %s" % (rcpt, code, text, stage))
                        if stage == "data" and code == 250:
                            pending.remove(rcpt)
                conn.quit()
            except (OSError, smtplib.SMTPException) as e:
                record({"i": n, "error": repr(e), "rcpts": pending})
            if pending:
                time.sleep(0.2)
        n += 1
    log.close()


def main():
    command, addr = sys.argv[1], sys.argv[2]
    if command == "once":
        once(addr, sys.argv[3], sys.argv[4:])
    elif command == "loop":
        loop(addr, sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
    else:
        raise AssertionError("unknown command %r" % command)


if __name__ == "__main__":
    main()
