"""The differential test's normalizer (tests/imap/differential.py): turns a recorded transcript
(tests/imap/diff_wire.py) into text lines in which two servers that answer alike read the same.

Every rewrite below is something RFC 3501 (or the extension's RFC) leaves to the server, or a
value each server picks by itself; each says why. What is left is compared line for line. What
servers may differ in but Dovetail deliberately does differently (or Dovecot gets wrong) is not
here: that is the allowlist in differential.py, which names the RFC text deciding it.
"""
import datetime
import re

# Capabilities compared: the ones issue 18 asks Dovetail for that Dovecot offers in the same
# configuration (no TLS, plaintext logins allowed). Dovecot offers more (SORT, THREAD, ESEARCH,
# ...); a capability outside this set is left out of both sides, and differential.py prints what
# Dovecot offers that Dovetail lacks. QRESYNC is left out while it is being built elsewhere.
COMPARED_CAPABILITIES = {
    "IMAP4REV1", "LITERAL+", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "CONDSTORE",
    "SPECIAL-USE", "UNSELECT", "AUTH=PLAIN", "STARTTLS", "LOGINDISABLED",
}

STATUS_KINDS = {"OK", "NO", "BAD", "BYE", "PREAUTH"}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class Str:
    """A string as sent: quoted or literal is the server's choice (RFC 3501 §4.3: the forms are
    equivalent), so both read as one canonical form."""

    def __init__(self, data):
        self.data = data

    def render(self):
        out = []
        for b in self.data:
            c = chr(b)
            if c in '"\\':
                out.append("\\" + c)
            elif c == "\r":
                out.append("\\r")
            elif c == "\n":
                out.append("\\n\n")
            elif 0x20 <= b < 0x7F:
                out.append(c)
            else:
                out.append(f"\\x{b:02x}")
        return '"' + "".join(out) + '"'


def tokenize(segments):
    """A response's segments as a flat token list: atoms (str, brackets kept whole: `BODY[1.MIME]`,
    `[UIDVALIDITY`), Str, "(" and ")"."""
    tokens = []
    for kind, data in segments:
        if kind == "literal":
            tokens.append(Str(data))
            continue
        line = data
        if re.search(rb"\{\d+\}$", line):
            line = re.sub(rb"\{\d+\}$", b"", line)
        i = 0
        while i < len(line):
            c = line[i:i + 1]
            if c == b" ":
                i += 1
            elif c in (b"(", b")"):
                tokens.append(c.decode())
                i += 1
            elif c == b'"':
                j, s = i + 1, bytearray()
                while j < len(line) and line[j:j + 1] != b'"':
                    if line[j:j + 1] == b"\\":
                        j += 1
                    s += line[j:j + 1]
                    j += 1
                tokens.append(Str(bytes(s)))
                i = j + 1
            else:
                j, depth = i, 0
                while j < len(line):
                    d = line[j:j + 1]
                    if d == b"[" and j > i:
                        # `BODY[1.MIME]` is one atom; a response code's `[` opens no group.
                        depth += 1
                    elif d == b"]":
                        depth -= 1
                    elif depth <= 0 and d in (b" ", b"(", b")"):
                        break
                    j += 1
                tokens.append(line[i:j].decode("latin-1"))
                i = j
    return tokens


def nest(tokens):
    """Flat tokens into nested lists at the parentheses."""
    stack = [[]]
    for t in tokens:
        if t == "(":
            stack.append([])
        elif t == ")" and len(stack) > 1:
            inner = stack.pop()
            stack[-1].append(inner)
        else:
            stack[-1].append(t)
    while len(stack) > 1:
        inner = stack.pop()
        stack[-1].append(inner)
    return stack[0]


def render(value):
    if isinstance(value, list):
        return "(" + " ".join(render(v) for v in value) + ")"
    if isinstance(value, Str):
        return value.render()
    return value


class Session:
    """What the rewrites remember across one session's transcript."""

    def __init__(self):
        self.uid_validities = {}

    def uid_validity(self, value):
        # UIDVALIDITY: each server picks its own (RFC 3501 §2.3.1.1 asks only that it be unique
        # over time); the name V1, V2 (order of first appearance) keeps "same or different".
        return "V%d" % self.uid_validities.setdefault(value, len(self.uid_validities) + 1)

    def modseq(self, value):
        # MODSEQ values: RFC 7162 §3.1 asks only that they grow per mailbox; Dovecot starts a
        # mailbox at 1 and steps by one per transaction, Dovetail by its own count. A
        # placeholder keeps the value until `rank_modseqs`, after the allowlist dropped what
        # only one server sends, turns the values into their ranks within the session: which
        # answers carry the same value, and which a higher one, survives.
        return f"<{int(value)}>" if value.isdigit() else value


def internal_date(s):
    """INTERNALDATE: the instant in UTC. The zone a server shows it in is its own (Dovecot: the
    host's local zone, as Maildir keeps a file time); RFC 3501 §2.3.3 makes the instant the
    value. An instant within a day of now was set by the server at APPEND (no date given): NOW."""
    m = re.match(r"\s*(\d+)-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$", s)
    if not m:
        return s
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    when = datetime.datetime(int(year), MONTHS.index(mon) + 1, int(day), int(hh), int(mm), int(ss))
    offset = datetime.timedelta(hours=int(zh), minutes=int(zm))
    when = when - offset if sign == "+" else when + offset
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if abs((now - when).total_seconds()) < 86400:
        return "NOW"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def sort_flags(items):
    # Flag lists are sets (RFC 3501 §2.3.2); servers list them in their own order.
    return sorted(items, key=lambda v: render(v).lower())


def rewrite(values, session):
    """The rewrites of data inside a response (numbers the server picks, unordered sets)."""
    out = []
    i = 0
    while i < len(values):
        v = values[i]
        key = v.upper() if isinstance(v, str) else None
        nxt = values[i + 1] if i + 1 < len(values) else None
        if key in ("UIDVALIDITY", "[UIDVALIDITY", "[APPENDUID", "[COPYUID") and isinstance(nxt, str):
            out += [v, session.uid_validity(nxt.rstrip("]")) + ("]" if nxt.endswith("]") else "")]
            i += 2
            continue
        if key in ("HIGHESTMODSEQ", "[HIGHESTMODSEQ", "MODSEQ") and isinstance(nxt, (str, list)):
            if isinstance(nxt, list):
                nxt = [session.modseq(x) if isinstance(x, str) and x.isdigit() else x for x in nxt]
                out += [v, nxt]
            else:
                out += [v, session.modseq(nxt.rstrip("]")) + ("]" if nxt.endswith("]") else "")]
            i += 2
            continue
        if key in ("FLAGS", "PERMANENTFLAGS", "[PERMANENTFLAGS") and isinstance(nxt, list):
            out += [v, sort_flags(nxt)]
            i += 2
            continue
        if key == "INTERNALDATE" and isinstance(nxt, Str):
            out += [v, Str(internal_date(nxt.data.decode("latin-1")).encode())]
            i += 2
            continue
        out.append(rewrite(v, session) if isinstance(v, list) else v)
        i += 1
    return out


def capability_list(names):
    return sorted(n.upper() for n in names if n.upper() in COMPARED_CAPABILITIES)


def normalize_response(segments, session):
    values = nest(tokenize(segments))
    if not values:
        return ""
    head = values[:2]
    # `+ text`: a continuation's text is the server's own.
    if values[0] == "+":
        return "+"
    kind = values[1].upper() if len(values) > 1 and isinstance(values[1], str) else ""
    if kind in STATUS_KINDS:
        # OK/NO/BAD/BYE/PREAUTH: the status and the response code are compared; the human text
        # after them is each server's (Dovecot adds timings: "(0.001 + 0.000 secs)").
        rest = values[2:]
        code = []
        if rest and isinstance(rest[0], str) and rest[0].startswith("["):
            # The code runs to the token that closes its bracket.
            for j, t in enumerate(rest):
                code.append(t)
                if isinstance(t, str) and t.endswith("]"):
                    break
            if code[0].upper() == "[CAPABILITY":
                caps = [c.rstrip("]") for c in code[1:]]
                code = ["[CAPABILITY"] + capability_list(caps)
                code[-1] += "]"
            else:
                code = rewrite(code, session)
        return " ".join(render(v) for v in head + code).replace(" ]", "]")
    if kind == "CAPABILITY":
        return " ".join(["*", "CAPABILITY"] + capability_list([v for v in values[2:] if isinstance(v, str)]))
    if kind == "ID":
        # ID: the server's name and version (RFC 2971) are its own.
        return "* ID <server>"
    if kind in ("LIST", "LSUB") and len(values) > 2 and isinstance(values[2], list):
        values[2] = sort_flags(values[2])
    if kind == "STATUS" and len(values) > 3 and isinstance(values[3], list):
        # RFC 3501 §7.2.4 gives STATUS items no order; Dovecot answers in its own.
        items = values[3]
        pairs = sorted(zip(items[0::2], items[1::2]), key=lambda p: str(p[0]).upper())
        values[3] = [x for pair in pairs for x in pair]
    return " ".join(render(v) for v in rewrite(values, session))


SELECTS = re.compile(r"^\w+ (SELECT|EXAMINE) ", re.I)


def normalize(transcript):
    """The transcript as lines: `C: command` then `S: response` per response (a string's lines
    continued with `S|`). The greeting is `S: * OK` with its capabilities: its text names the
    server."""
    session = Session()
    lines = []
    for command, responses in transcript:
        if command != "greeting":
            lines.append("C: " + command)
        rendered = [normalize_fetch(normalize_response(r, session)) for r in responses]
        # `* OK [CLOSED]` (RFC 7162 §3.2.11) belongs to QRESYNC, which this test leaves out.
        rendered = [r for r in rendered if r != "* OK [CLOSED]"]
        rendered = fold_capability(rendered)
        if SELECTS.match(command):
            # RFC 3501 §6.3.1 names the untagged answers SELECT and EXAMINE must send, in no
            # order; Dovecot and Dovetail each keep their own.
            # The sort key leaves numbers out: `* 0 RECENT` and `* 3 RECENT` sort alike.
            rendered = sorted(rendered[:-1], key=lambda r: (re.sub(r"\d+", "", r), r)) + rendered[-1:]
        rendered = sort_list_runs(rendered)
        for text in rendered:
            first, *more = text.split("\n")
            lines.append("S: " + first)
            lines.extend("S|" + m for m in more)
    return lines


MODSEQ_PLACEHOLDER = re.compile(r"<(\d+)>")


def rank_modseqs(lines):
    """Each MODSEQ placeholder as `M<rank>`: its rank among the values the session shows."""
    values = sorted({int(v) for line in lines for v in MODSEQ_PLACEHOLDER.findall(line)})
    ranks = {v: i + 1 for i, v in enumerate(values)}
    return [MODSEQ_PLACEHOLDER.sub(lambda m: f"M{ranks[int(m.group(1))]}", line) for line in lines]


def fold_capability(rendered):
    """An untagged CAPABILITY just before a tagged OK with no code reads as `OK [CAPABILITY ..]`:
    RFC 3501 §6.2.3 lets LOGIN send the capabilities either way (Dovecot sends the untagged form
    once the client asked CAPABILITY before)."""
    if len(rendered) >= 2 and rendered[-2].startswith("* CAPABILITY") and re.match(r"^\S+ OK$", rendered[-1]):
        caps = rendered[-2][len("* CAPABILITY "):]
        return rendered[:-2] + [f"{rendered[-1]} [CAPABILITY {caps}]"]
    return rendered


def sort_list_runs(rendered):
    """Consecutive LIST or LSUB answers in name order: RFC 3501 §6.3.8 gives them no order
    (Dovecot lists Maildir folders in directory order)."""
    out, run = [], []
    for text in rendered + [None]:
        if text is not None and (text.startswith("* LIST ") or text.startswith("* LSUB ")):
            run.append(text)
            continue
        out += sorted(run)
        run = []
        if text is not None:
            out.append(text)
    return out


FETCH_RE = re.compile(r"^\* (\d+) FETCH \((.*)\)$", re.S)


def normalize_fetch(text):
    """`* n FETCH (...)`: the items in name order (RFC 3501 §7.4.2 fixes no order)."""
    m = FETCH_RE.match(text)
    if not m:
        return text
    body = m.group(2)
    items = split_top(body)
    pairs = [(items[k], items[k + 1] if k + 1 < len(items) else "") for k in range(0, len(items), 2)]
    # A section's header field names are case-insensitive (RFC 5322 §1.2.2); Dovecot answers
    # them in capitals, Dovetail as the client wrote them (both valid, RFC 3501 §7.4.2).
    pairs = [(a.upper() if a.upper().startswith("BODY[") else a, b) for a, b in pairs]
    # BODY and BODYSTRUCTURE compare ASCII case-insensitively, as src/imap/mime_tests.rs does:
    # media types, subtypes, parameter names and charsets are case-insensitive (RFC 2045 §5.1,
    # RFC 2046 §4.1.2); imap-codec writes "TEXT" and "MESSAGE" "RFC822", Dovecot lower-cases
    # what the message wrote.
    pairs = [(a, b.lower() if a.upper() in ("BODY", "BODYSTRUCTURE") else b) for a, b in pairs]
    pairs.sort(key=lambda p: p[0].upper())
    return f"* {m.group(1)} FETCH (" + " ".join(f"{a} {b}" for a, b in pairs) + ")"


def split_top(body):
    """Splits rendered text at top-level spaces (outside parentheses, brackets and strings)."""
    parts, cur, depth, in_str, esc = [], "", 0, False, False
    for c in body:
        if in_str:
            cur += c
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
            continue
        if c == '"':
            in_str = True
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == " " and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += c
    if cur:
        parts.append(cur)
    return parts
