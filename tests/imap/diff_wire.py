"""The differential test's IMAP client (tests/imap/differential.py): sends raw command lines and
literals, and records every response exactly as it came, literals included. No imaplib: it
would parse and hide what the test compares (the order of untagged responses, the codes, the
strings as sent).

A response is a list of segments: `("line", bytes)` for the text up to a CRLF (without it) and
`("literal", bytes)` for a literal's bytes, which the line before announced with `{n}`.
"""
import re
import socket

TIMEOUT_S = 20
LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")
MODSEQ = re.compile(rb"MODSEQ[ (]+(\d+)")
STORE = re.compile(r"^\w+ (UID )?STORE ", re.I)


class Literal:
    """A command part sent as a synchronizing literal: `{n}`, wait for `+`, then the bytes."""

    def __init__(self, data):
        self.data = data


class Raw:
    """Bytes sent as they are, with no tag and no wait: a malformed line. The servers' answers to
    it are read with the next command's (which must follow it in the scenario)."""

    def __init__(self, data):
        self.data = data


class Client:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_bytes(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self):
        """One response: a line and the literals it announces, with the lines that follow them."""
        segments = []
        while True:
            line = self.read_line()
            segments.append(("line", line))
            m = LITERAL_AT_END.search(line)
            if not m:
                return segments
            segments.append(("literal", self.read_bytes(int(m.group(1)))))

    def send(self, data):
        self.sock.sendall(data)


def run_commands(client, commands, user, password):
    """Runs a scenario's commands and returns the transcript: `(command as text, [response])`
    per command, the greeting first. `{user}` and `{password}` in a command are replaced. A
    server that closes the connection ends the transcript with `("closed", [])`."""
    transcript = [("greeting", [client.read_response()])]
    pending_raw = b""
    modseq = "0"
    try:
        for n, command in enumerate(commands, 1):
            tag = b"t%03d" % n
            if isinstance(command, Raw):
                client.send(command.data)
                pending_raw += command.data
                continue
            parts = command if isinstance(command, list) else [command]
            parts = [p.replace("{user}", user).replace("{password}", password) if isinstance(p, str) else p
                     for p in parts]
            # The transcript shows `{modseq}` as written: each server fills in its own value.
            shown = pending_raw.decode("latin-1") + tag.decode() + " " + "".join(
                p if isinstance(p, str) else "{%d}" % len(p.data) for p in parts)
            parts = [p.replace("{modseq}", modseq) if isinstance(p, str) else p for p in parts]
            pending_raw = b""
            responses = send_command(client, tag, parts)
            for response in responses if not STORE.search(shown) else []:
                for kind, data in response:
                    for m in MODSEQ.finditer(data if kind == "line" else b""):
                        modseq = m.group(1).decode()
            transcript.append((shown, responses))
    except ConnectionError:
        transcript.append(("closed", []))
    return transcript


def send_command(client, tag, parts):
    """Sends one tagged command (its literals once the server asks for them) and returns its
    responses, the tagged one last."""
    responses = []
    out = tag + b" "
    for part in parts:
        if not isinstance(part, Literal):
            out += part.encode()
            continue
        client.send(out + b"{%d}\r\n" % len(part.data))
        while True:
            response = client.read_response()
            if response[0][1].startswith(b"+"):
                break
            responses.append(response)
            if response[0][1].startswith(tag + b" "):
                # The server refused the command before its literal.
                return responses
        out = part.data
    client.send(out + b"\r\n")
    while True:
        response = client.read_response()
        responses.append(response)
        if response[0][1].startswith(tag + b" "):
            return responses
