"""The IMAP differential test: the same scripted sessions against Dovecot 2.3 and against
Dovetail, every response recorded, both transcripts normalized, and any difference not in the
allowlist below (each entry with the RFC text that decides it) reported as a unified diff
(t69_imap_differential.rs runs it).

    python3 tests/imap/differential.py users
        the user names the scenarios log in as (one per scenario; the caller creates them)
    python3 tests/imap/differential.py compare WORK_DIR PASSWORD HOST:PORT [HOST:PORT ...]
        starts a throwaway Dovecot under WORK_DIR (scripts/dovecot_ref.py) with the same users
        and PASSWORD, runs every scenario against it and against the first address, the
        read-only scenarios against every address too; exit 0 when all agree, 1 with the diffs
    python3 tests/imap/differential.py run HOST:PORT PASSWORD [SCENARIO ...]
        one server's normalized transcripts (to look at, or to diff by hand)
    python3 tests/imap/differential.py --self-test
        the normalizer and the allowlist on hand-made transcripts

The scenarios are in `diff_scenarios.py`, the client in `diff_wire.py`, the normalizer in
`diff_normalize.py`. DIFF_USER_SUFFIX=x appends x to every user name (fresh accounts on a
server that ran the scenarios before). Exit code 77: Dovecot cannot be started here (not root,
or not installed); the reason is printed.
"""
import difflib
from concurrent.futures import ThreadPoolExecutor
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))

from diff_normalize import normalize, rank_modseqs  # noqa: E402
from diff_scenarios import READER, SCENARIOS, SETUP_READER, reader_status_commands  # noqa: E402
from diff_wire import Client, run_commands  # noqa: E402

SKIP = 77


class Allow:
    """One difference the test accepts. In the answer to a command matching `command`, Dovecot's
    lines matching a rule's pattern read as its replacement (`re.sub`; None: Dovetail sends no
    such line); `dovetail_only` names lines only Dovetail sends there, dropped from its side.
    `kind`: "dovecot" (Dovecot does not do what the RFC says) or "deliberate" (Dovetail's choice,
    which the RFC allows, or a capability it does not offer); `rfc` quotes the text that decides
    it. README.md lists these (IMAP)."""

    def __init__(self, name, kind, rfc, command, rules=(), dovetail_only=None):
        assert kind in ("dovecot", "deliberate")
        self.name, self.kind, self.rfc = name, kind, rfc
        self.command = re.compile(command, re.I)
        self.rules = [(re.compile(p), r) for p, r in rules]
        self.dovetail_only = re.compile(dovetail_only) if dovetail_only else None


ANY = r"."
TAGGED_OK = r"^S: (\S+) OK$"
ALLOWLIST = [
    Allow("capabilities before login", "deliberate",
          "RFC 3501 §7.1 CAPABILITY: a server sends 'an updated CAPABILITY response code in the "
          "tagged OK response as part of a successful authentication': the list may change at "
          "login. Dovetail lists its extensions before login too; Dovecot only after.",
          r"^(greeting|\S+ CAPABILITY)$",
          [(r"CAPABILITY AUTH=PLAIN ENABLE ID IDLE IMAP4REV1 LITERAL\+$",
            "CAPABILITY AUTH=PLAIN CONDSTORE ENABLE ID IDLE IMAP4REV1 LITERAL+ MOVE NAMESPACE "
            "SPECIAL-USE UIDPLUS UNSELECT"),
           (r"CAPABILITY AUTH=PLAIN ENABLE ID IDLE IMAP4REV1 LITERAL\+\]$",
            "CAPABILITY AUTH=PLAIN CONDSTORE ENABLE ID IDLE IMAP4REV1 LITERAL+ MOVE NAMESPACE "
            "SPECIAL-USE UIDPLUS UNSELECT]")]),
    Allow("no \\Recent", "deliberate",
          "RFC 3501 §2.3.2: \\Recent means 'this session is the first session to have been "
          "notified about this message'; a cluster has no single first session, so Dovetail "
          "never sets it (RECENT 0, RECENT/NEW match nothing; ARCHITECTURE.md's IMAP part).",
          ANY,
          [(r" ?\\Recent\b ?", lambda m: " " if m.group(0) == " \\Recent " else ""),
           (r"^S: \* STATUS (.*)RECENT [1-9]\d*", r"S: * STATUS \1RECENT 0")]),
    Allow("no \\Recent", "deliberate", "(the same: RECENT is 0 at SELECT and never changes, so it "
          "is not sent again; RFC 3501 §7.3.2 asks a server to send RECENT when it changes)",
          r"^\S+ (?!SELECT |EXAMINE )", [(r"^S: \* \d+ RECENT$", None)]),
    Allow("no \\Recent", "deliberate", "(the same)",
          r"^\S+ (SELECT|EXAMINE) ", [(r"^S: \* \d+ RECENT$", "S: * 0 RECENT")]),
    Allow("HIGHESTMODSEQ at every SELECT", "dovecot",
          "RFC 7162 §3.1.2.1: a server with persistent MODSEQs 'MUST send the OK untagged "
          "response including HIGHESTMODSEQ response code with every successful SELECT or "
          "EXAMINE command'; Dovecot sends it only once CONDSTORE is enabled.",
          r"^\S+ (SELECT|EXAMINE) ", dovetail_only=r"^S: \* OK \[HIGHESTMODSEQ <\d+>\]$"),
    Allow("FLAGS not re-sent for a new keyword", "deliberate",
          "RFC 3501 §7.2.6: 'The FLAGS response occurs as a result of a SELECT or EXAMINE "
          "command'; Dovetail sends FLAGS and PERMANENTFLAGS there only (PERMANENTFLAGS' \\* "
          "already says keywords may be created), Dovecot again when a STORE or APPEND adds one.",
          r"^\S+ (?!SELECT |EXAMINE )",
          [(r"^S: \* FLAGS \(.*\)$", None), (r"^S: \* OK \[PERMANENTFLAGS \(.*\)\]$", None)]),
    Allow("LIST-EXTENDED not offered", "deliberate",
          "RFC 6154 §3 (and RFC 5258): the SPECIAL-USE and SUBSCRIBED selection and return "
          "options are LIST-EXTENDED's, which Dovetail does not advertise; RFC 3501 §6.3.8 "
          "LIST takes a reference and a name, so the extended form is BAD.",
          r"^\S+ LIST (\(|\S+ \S+ RETURN)",
          [(r"^S: \* LIST .*", None), (TAGGED_OK, r"S: \1 BAD")]),
    Allow("NONEXISTENT code on SELECT/STATUS", "deliberate",
          "RFC 5530 §3: NONEXISTENT 'The operation attempts to access something which doesn't "
          "exist'; Dovecot gives it for RENAME and DELETE but not SELECT, EXAMINE, STATUS.",
          r"^\S+ (SELECT|EXAMINE|STATUS) Missing",
          [(r"^S: (\S+) NO$", r"S: \1 NO [NONEXISTENT]")]),
    Allow("CANNOT code on DELETE INBOX", "deliberate",
          "RFC 3501 §6.3.4 'It is an error to attempt to delete INBOX'; RFC 5530 §3 CANNOT: "
          "'The operation violates some invariant of the server and can never succeed'.",
          r"^\S+ DELETE INBOX$", [(r"^S: (\S+) NO$", r"S: \1 NO [CANNOT]")]),
    Allow("SUBSCRIBE of a missing mailbox", "deliberate",
          "RFC 3501 §6.3.6: 'A server MAY validate the mailbox argument to SUBSCRIBE to verify "
          "that it exists'; Dovetail keeps subscriptions independent of mailboxes (README, "
          "subscriptions), so the name need not exist.",
          r"^\S+ SUBSCRIBE Nonexistent$", [(r"^S: (\S+) NO$", r"S: \1 OK")]),
    Allow("RENAME onto an auto-created folder", "dovecot",
          "RFC 3501 §6.3.5: 'It is an error to attempt to rename ... to a mailbox name that "
          "already exists'; Dovecot lists Drafts (auto = create) yet renames onto it until it "
          "was opened once.",
          r"^\S+ RENAME Later Drafts$",
          [(TAGGED_OK, r"S: \1 NO [ALREADYEXISTS]")]),
    Allow("STORE and EXPUNGE under EXAMINE", "dovecot",
          "RFC 3501 §6.3.2: under EXAMINE 'No changes to the permanent state of the mailbox, "
          "including per-user state, are permitted'; Dovecot answers OK having changed nothing, "
          "Dovetail NO [CANNOT] (RFC 5530 §3).",
          r"^\S+ (STORE 1 \+FLAGS\.SILENT \(\\Seen\)|UID EXPUNGE 1:\*)$",
          [(TAGGED_OK, r"S: \1 NO [CANNOT]")]),
    Allow("MOVE out of an EXAMINEd mailbox", "dovecot",
          "RFC 6851 §3.3 MOVE expunges from the source, and RFC 3501 §6.3.2 forbids changes to "
          "a mailbox selected by EXAMINE; Dovecot moves the message anyway.",
          r"^\S+ MOVE 1 INBOX$",
          [(r"^S: \* (OK \[COPYUID .*|\d+ EXPUNGE)$", None), (TAGGED_OK, r"S: \1 NO [CANNOT]")]),
    Allow("STORE without flags", "dovecot",
          "RFC 3501 §9: store-att-flags = ([\"+\" / \"-\"] \"FLAGS\" [\".SILENT\"]) SP "
          "(flag-list / (flag *(SP flag))): the flags are not optional; Dovecot answers OK.",
          r"^\S+ STORE 1 \+FLAGS$", [(TAGGED_OK, r"S: \1 BAD")]),
    Allow("APPEND without SP before the literal", "dovecot",
          "RFC 3501 §9: append = \"APPEND\" SP mailbox [SP flag-list] [SP date-time] SP "
          "literal; Dovecot takes '(){n}' with no SP.",
          r"^\S+ APPEND INBOX \(\)\{\d+\}$",
          [(r"^S: \* \d+ EXISTS$", None), (r"^S: (\S+) OK \[APPENDUID .*", r"S: \1 BAD")]),
    Allow("NUL in an APPEND literal", "dovecot",
          "RFC 3501 §9: literal = \"{\" number \"}\" CRLF *CHAR8, and CHAR8 = %x01-ff: 'any "
          "OCTET except NUL' (only BINARY's literal8, RFC 3516, carries NUL); Dovecot stores it.",
          r"^\S+ APPEND INBOX \(\\Seen\) \{122\}$",
          [(r"^S: \* \d+ EXISTS$", None), (r"^S: (\S+) OK \[APPENDUID .*", r"S: \1 BAD")]),
    Allow("bare-LF message sizes", "deliberate",
          "RFC 3501 §2.3.4: RFC822.SIZE is 'The number of octets in the message'; Dovetail "
          "counts the stored bytes (the same answer on every node from the same bytes), Dovecot "
          "those of the message with each bare LF made CRLF (src/imap/mime_tests.rs rule 3). "
          "The fixture 08-lf-only is message 8 of the reader's INBOX: 188 bytes stored, 202 as "
          "CRLF, its first part 7 bytes stored, 8 as CRLF.",
          ANY,
          [(r"^(S: \* 8 FETCH .*)RFC822\.SIZE 202", r"\1RFC822.SIZE 188"),
           (r'^(S: \* 8 FETCH .*\(\("text" "plain" \("charset" "us-ascii"\) nil nil "7bit" )8 ', r"\g<1>7 "),
           ]),
    Allow("bare-LF message sizes", "deliberate", "(the same: SMALLER compares RFC822.SIZE)",
          r"^\S+ SEARCH SMALLER 200$", [(r"^S: \* SEARCH 4 11 16 18$", "S: * SEARCH 4 8 11 16 18")]),
    Allow("SENTBEFORE without a Date: header", "dovecot",
          "RFC 3501 §6.4.4: SENTBEFORE matches 'Messages whose [RFC-2822] Date: header ... is "
          "earlier than the specified date'; a message with no Date: header has none (RFC 5256 "
          "would use its INTERNALDATE, today). Dovecot counts it as sent in 1970.",
          r"^\S+ SEARCH SENTBEFORE ",
          [(r"^S: \* SEARCH 1 4 8 9 10 11 12 13 14 15 16 17 18$", "S: * SEARCH 1")]),
    Allow("BADCHARSET lists the charsets", "deliberate",
          "RFC 3501 §7.1: BADCHARSET is 'Optionally followed by a parenthesized list of "
          "charsets'; Dovetail sends the list.",
          r"^\S+ SEARCH CHARSET BOGUS-8 ",
          [(r"NO \[BADCHARSET\]$", "NO [BADCHARSET (US-ASCII UTF-8)]")]),
]


def apply_allowlist(dovecot, dovetail, used):
    """Both transcripts with every allowlisted difference rewritten to Dovetail's reading;
    `used` counts the lines each entry changed."""
    a, b = blocks(dovecot), blocks(dovetail)
    if [x[0] for x in a] != [y[0] for y in b]:
        return dovecot, dovetail  # the sessions went apart: show the raw diff
    out_a, out_b = [], []
    for (command, lines_a), (_, lines_b) in zip(a, b):
        for entry in ALLOWLIST:
            if not entry.command.search(command):
                continue
            new_a = []
            for line in lines_a:
                for pattern, repl in entry.rules:
                    if line is not None and pattern.search(line):
                        line = None if repl is None else pattern.sub(repl, line)
                new_a.append(line)
            new_a = [x for x in new_a if x is not None]
            new_b = lines_b
            if entry.dovetail_only:
                kept = [x for x in lines_b if x in new_a or not entry.dovetail_only.search(x)]
                new_b = kept
            changed = sum(x != y for x, y in zip(new_a, lines_a)) + abs(len(new_a) - len(lines_a)) + (
                len(lines_b) - len(new_b))
            if changed:
                used[entry.name] = used.get(entry.name, 0) + changed
            lines_a, lines_b = new_a, new_b
        out_a += ([f"C: {command}"] if command != "greeting" else []) + lines_a
        out_b += ([f"C: {command}"] if command != "greeting" else []) + lines_b
    return out_a, out_b


def blocks(lines):
    """[(command with its tag, [server lines])], the greeting's lines under "greeting"."""
    out = [("greeting", [])]
    for line in lines:
        if line.startswith("C: "):
            out.append((line[3:], []))
        else:
            out[-1][1].append(line)
    return out


def users():
    return sorted({s.user for s in SCENARIOS} | {READER})


def transcript(addr, password, scenario):
    """The normalized transcript of one scenario against the server at `addr`."""
    host, port = addr.rsplit(":", 1)
    with Client(host, int(port)) as client:
        raw = run_commands(client, scenario.commands, scenario.user, password)
    return normalize(raw)


def setup_reader(addr, password):
    """Fills the read-only scenarios' mailboxes (the setup's own transcript is compared too)."""
    return transcript(addr, password, SETUP_READER)


def wait_converged(addrs, password, deadline_s=20.0):
    """Waits until every address answers the reader's STATUS as the first does: the read-only
    scenarios then see the same index on every node (a follower applies the setup's writes a
    moment after node 1 answered them; this is the wait for that, not for a speed)."""
    probe = reader_status_commands()

    def status(addr):
        host, port = addr.rsplit(":", 1)
        with Client(host, int(port)) as client:
            return normalize(run_commands(client, probe, READER, password))

    want = status(addrs[0])
    deadline = time.monotonic() + deadline_s
    for addr in addrs[1:]:
        while status(addr) != want:
            if time.monotonic() > deadline:
                raise SystemExit(f"{addr} did not reach node 1's STATUS of the reader in {deadline_s} s")
            time.sleep(0.1)


def diff(name, dovecot, dovetail, label):
    lines = list(difflib.unified_diff(dovecot, dovetail, f"dovecot/{name}", f"{label}/{name}", lineterm="", n=4))
    return "\n".join(lines)


def compare(work_dir, password, addrs):
    from dovecot_ref import DovecotRef
    if os.geteuid() != 0:
        print("skipped: the reference Dovecot needs root")
        return SKIP
    if not os.path.exists("/usr/sbin/dovecot"):
        print("skipped: Dovecot is not installed (Debian dovecot-imapd, dovecot-lmtpd)")
        return SKIP
    ref = DovecotRef(os.path.join(work_dir, "dovecot"), users={u: password for u in users()})
    try:
        ref.start()
    except RuntimeError as e:
        print(f"skipped: {e}")
        return SKIP
    failures = []
    used = {}
    started = time.monotonic()
    dovecot_addr = f"127.0.0.1:{ref.imap_port}"
    try:
        # Each scenario has a user of its own, so they run side by side (their order in time
        # changes none of their answers); the read-only ones once the setup is on every node.
        with ThreadPoolExecutor(max_workers=8) as pool:
            writing = [SETUP_READER] + [s for s in SCENARIOS if not s.read_only]
            compare_all(pool, writing, dovecot_addr, addrs[:1], password, failures, used)
            wait_converged(addrs, password)
            reading = [s for s in SCENARIOS if s.read_only]
            compare_all(pool, reading, dovecot_addr, addrs, password, failures, used)
    finally:
        ref.stop()
    print(f"{len(SCENARIOS) + 1} scenarios in {time.monotonic() - started:.1f} s")
    for name in dict.fromkeys(e.name for e in ALLOWLIST):
        print(f"allowlisted: {name}: {used.get(name, 0)} lines")
    unused = [name for name in dict.fromkeys(e.name for e in ALLOWLIST) if not used.get(name)]
    if unused:
        # An entry no transcript needs is stale: the difference it excuses is gone or untested.
        failures.append(f"allowlist entries no scenario needed: {', '.join(unused)}")
    for f in failures:
        print(f)
    return 1 if failures else 0


def compare_all(pool, scenarios, dovecot_addr, addrs, password, failures, used):
    """Runs `scenarios` against Dovecot and each of `addrs` at once; checks them in order."""
    runs = {(s.name, addr): pool.submit(transcript, addr, password, s)
            for s in scenarios for addr in [dovecot_addr] + addrs}
    for s in scenarios:
        expected = runs[(s.name, dovecot_addr)].result()
        for addr in addrs:
            check(s, expected, runs[(s.name, addr)].result(), addr, failures, used)


def check(scenario, expected, got, addr, failures, used):
    expected, got = apply_allowlist(expected, got, used)
    expected, got = rank_modseqs(expected), rank_modseqs(got)
    if expected != got:
        failures.append(diff(scenario.name, expected, got, f"dovetail@{addr}"))
        print(f"DIFFERENT {scenario.name} against {addr}", flush=True)
    else:
        print(f"same      {scenario.name} against {addr} ({len(got)} lines)", flush=True)


def self_test():
    """The normalizer and the allowlist on hand-made transcripts: what the RFCs leave free reads
    the same, a real difference stays one, an allowlist entry applies only to its command."""
    def lines(*responses, command="t001 FETCH 1 (FLAGS BODY[])"):
        segments = [[("line", r)] if isinstance(r, bytes) else r for r in responses]
        return normalize([("greeting", [[("line", b"* OK [CAPABILITY IMAP4rev1] hi")]]), (command, segments)])

    quoted = lines(b'* 1 FETCH (FLAGS (\\Seen $A) BODY[] "ab")', b"t001 OK done (0.001 secs)")
    literal = lines([("line", b"* 1 FETCH (BODY[] {2}"), ("literal", b"ab"), ("line", b" FLAGS ($A \\Seen))")],
                    b"t001 OK Fetch completed.")
    assert quoted == literal, (quoted, literal)
    other_flags = lines(b'* 1 FETCH (FLAGS (\\Seen) BODY[] "ab")', b"t001 OK done")
    assert other_flags != quoted, other_flags
    other_code = lines(b'* 1 FETCH (FLAGS (\\Seen $A) BODY[] "ab")', b"t001 OK [ALERT] done")
    assert other_code != quoted, other_code
    ranks = rank_modseqs(lines(b"* 1 FETCH (MODSEQ (90))", b"* 2 FETCH (MODSEQ (7))", b"t001 OK"))
    assert ranks[-3:] == ["S: * 1 FETCH (MODSEQ (M2))", "S: * 2 FETCH (MODSEQ (M1))", "S: t001 OK"], ranks
    used = {}
    recent = lines(b"* 1 FETCH (FLAGS (\\Recent \\Seen))", b"t001 OK")
    plain = lines(b"* 1 FETCH (FLAGS (\\Seen))", b"t001 OK")
    assert apply_allowlist(recent, plain, used)[0] == plain and used, used
    bad = lines(b"t001 OK", command="t001 STORE 1 +FLAGS")
    assert apply_allowlist(bad, lines(b"t001 BAD", command="t001 STORE 1 +FLAGS"), {})[0][-1] == "S: t001 BAD"
    assert apply_allowlist(lines(b"t001 OK"), lines(b"t001 BAD"), {})[0][-1] == "S: t001 OK"
    print("differential self-test: ok")
    return 0


def main():
    args = sys.argv[1:]
    if args[:1] == ["--self-test"]:
        return self_test()
    if args[:1] == ["users"]:
        print("\n".join(users()))
        return 0
    if args[:1] == ["compare"] and len(args) >= 4:
        return compare(args[1], args[2], args[3:])
    if args[:1] == ["run"] and len(args) >= 3:
        addr, password, names = args[1], args[2], set(args[3:])
        for s in [SETUP_READER] + SCENARIOS:
            if not names or s.name in names:
                print(f"== {s.name}")
                print("\n".join(rank_modseqs(transcript(addr, password, s))))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
