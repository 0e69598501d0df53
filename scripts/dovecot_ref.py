"""A throwaway Dovecot 2.3 on loopback, the reference server the IMAP differential test and the
comparison benchmark run beside Dovetail (Debian packages `dovecot-imapd` and `dovecot-lmtpd`;
needs root: Dovecot's master drops to the `dovecot` user for mail and `dovenull` for logins).

    with DovecotRef(work_dir, users={"alice": "secret"}) as dovecot:
        dovecot.imap_port, dovecot.lmtp_port, dovecot.log()

Everything it writes is under `work_dir`: the config, the run/state directories, the log and the
Maildirs (`mail/<user>`). It never touches the system's Dovecot configuration or service.
Passwords are stored `{PLAIN}`: this is a test server on 127.0.0.1 only.

As a command, for scripts and a person at a shell:

    python3 scripts/dovecot_ref.py start DIR [--user alice:secret ...] [--imap-port P] [--lmtp-port Q]
    python3 scripts/dovecot_ref.py stop DIR
    python3 scripts/dovecot_ref.py --self-test
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def free_port(host="127.0.0.1"):
    """A port the kernel had free a moment ago (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def config_text(work_dir, imap_port, lmtp_port, fsync="optimized"):
    """The whole dovecot.conf for a server rooted at `work_dir` (one setting per line)."""
    w = os.path.abspath(work_dir)
    return f"""# written by scripts/dovecot_ref.py: a throwaway reference server on loopback
base_dir = {w}/run
state_dir = {w}/state
log_path = {w}/dovecot.log
info_log_path = {w}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{w}/mail/%u
mail_fsync = {fsync}
default_login_user = dovenull
default_internal_user = dovecot
mail_uid = dovecot
mail_gid = dovecot
first_valid_uid = 1
lmtp_save_to_detail_mailbox = yes
recipient_delimiter = +
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {w}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={w}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = create
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""


class DovecotRef:
    def __init__(self, work_dir, users=None, imap_port=None, lmtp_port=None, fsync="optimized",
                 start_timeout=30):
        self.work_dir = os.path.abspath(work_dir)
        self.users = users or {"alice": "secret"}
        self.imap_port = imap_port or free_port()
        self.lmtp_port = lmtp_port or free_port()
        self.fsync = fsync
        self.start_timeout = start_timeout
        self.conf = os.path.join(self.work_dir, "dovecot.conf")

    def log(self):
        try:
            with open(os.path.join(self.work_dir, "dovecot.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self):
        """Writes the config and starts Dovecot; returns once both ports accept connections;
        raises with the log's tail if it does not within `start_timeout` seconds."""
        if os.geteuid() != 0:
            raise RuntimeError("the reference Dovecot needs root (it switches to the dovecot user)")
        if not os.path.exists(DOVECOT):
            raise RuntimeError("dovecot is not installed (Debian packages dovecot-imapd dovecot-lmtpd)")
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(self.work_dir, sub), exist_ok=True)
        # The work dir may sit under a 0700 temp dir: Dovecot's users must reach their Maildirs.
        path = self.work_dir
        while path != "/":
            mode = os.stat(path).st_mode
            os.chmod(path, mode | 0o111)
            path = os.path.dirname(path)
        shutil.chown(os.path.join(self.work_dir, "mail"), "dovecot", "dovecot")
        with open(os.path.join(self.work_dir, "users"), "w") as f:
            for user, password in self.users.items():
                f.write(f"{user}:{{PLAIN}}{password}\n")
        with open(self.conf, "w") as f:
            f.write(config_text(self.work_dir, self.imap_port, self.lmtp_port, self.fsync))
        # The master daemonizes: its output goes to a file, or a pipe would stay open behind it.
        with open(os.path.join(self.work_dir, "start.log"), "w") as out:
            status = subprocess.run([DOVECOT, "-c", self.conf], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT).returncode
        if status != 0:
            with open(os.path.join(self.work_dir, "start.log")) as f:
                raise RuntimeError(f"dovecot -c {self.conf} exited with {status}: {f.read()}")
        deadline = time.monotonic() + self.start_timeout
        for port in (self.imap_port, self.lmtp_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        tail = "\n".join(self.log().splitlines()[-20:])
                        self.stop()
                        raise RuntimeError(f"Dovecot not listening on {port} in time; log:\n{tail}")
                    time.sleep(0.05)
        # The master writes its pid file after its listeners accept: `stop` needs the file, so
        # a caller that stops right after starting must not find it missing (and leave a server).
        pid_file = os.path.join(self.work_dir, "run", "master.pid")
        while not os.path.exists(pid_file):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot listens but wrote no {pid_file} in time")
            time.sleep(0.05)
        return self

    def stop(self):
        """Stops this Dovecot (its master's pid file names it) and waits for it to go."""
        pid_file = os.path.join(self.work_dir, "run", "master.pid")
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def self_test():
    """Starts a Dovecot, logs in over IMAP, delivers one message over LMTP, reads it back."""
    import imaplib
    import smtplib
    with tempfile.TemporaryDirectory() as tmp:
        with DovecotRef(os.path.join(tmp, "dovecot")) as d:
            with smtplib.LMTP("127.0.0.1", d.lmtp_port) as lmtp:
                lmtp.sendmail("a@example.org", ["alice"], b"Subject: hi\r\n\r\nbody\r\n")
            imap = imaplib.IMAP4("127.0.0.1", d.imap_port)
            imap.login("alice", "secret")
            typ, data = imap.select("INBOX")
            assert typ == "OK" and data == [b"1"], (typ, data)
            typ, data = imap.fetch("1", "(BODY.PEEK[])")
            assert typ == "OK" and data[0][1].endswith(b"body\r\n"), data
            typ, data = imap.list()
            names = b" ".join(data)
            assert all(n in names for n in (b"Drafts", b"Sent", b"Trash", b"Junk")), data
            imap.logout()
    print("dovecot_ref self-test: ok")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("dir")
    p.add_argument("--user", action="append", default=[], help="user:password (default alice:secret)")
    p.add_argument("--imap-port", type=int)
    p.add_argument("--lmtp-port", type=int)
    p.add_argument("--fsync", default="optimized", help="mail_fsync (optimized, always, never)")
    a = p.parse_args()
    users = dict(u.split(":", 1) for u in a.user) or None
    d = DovecotRef(a.dir, users, a.imap_port, a.lmtp_port, a.fsync)
    if a.action == "start":
        d.start()
        print(f"dovecot: imap 127.0.0.1:{d.imap_port} lmtp 127.0.0.1:{d.lmtp_port} (stop: {sys.argv[0]} stop {a.dir})")
    else:
        d.stop()


if __name__ == "__main__":
    main()
