//! `imap_session`: the bytes an IMAP client sends, to one session of the node's IMAP server
//! (`imap::session::Session`, over `Connection::other` on an in-memory stream) backed by a real
//! one-node cluster with a passwd-file (`frontend.rs`; `alice` logs in, plaintext allowed),
//! whose INBOX and Archive hold real messages appended through IMAP when the node starts.
//!
//! The client sends the input one line at a time, literals as they come (it does not wait for
//! `+`: the server reads them all the same), then ends the command it is in (a literal it owes
//! is filled with `x`, a line is ended with CRLF), sends `DONE` (ends an IDLE; elsewhere a
//! malformed command, or an AUTHENTICATE response), `zzbad NOOP junk` (malformed) and
//! `zzok NOOP`, and closes.
//!
//! What is checked beyond "no panic, no hang" (the session ends once the client closed):
//! - every line the server writes, literals skipped, is a response line: `* `, `+ `, or a tag
//!   then OK, NO or BAD; no CR, LF or NUL inside a line; the output ends with a whole line;
//!   the first line is the `* OK` greeting; after a `* BYE` at most LOGOUT's tagged OK follows;
//! - unless the server said BYE: `zzbad` is answered `zzbad BAD` and then `zzok` is answered
//!   `zzok OK`: a command the codec cannot take gets BAD and the session goes on answering,
//!   whatever came before. Skipped when the input announces a literal larger than the server
//!   takes (client and server then may not agree where the literal ends).

use std::cell::RefCell;
use std::net::SocketAddr;

use dovetail::imap::session::Session;
use dovetail::imap::shared::Shared;
use dovetail::imap::transport::Connection;
use dovetail::imap::ImapConfig;

use super::frontend::{excerpt, with_node, FrontNode, MAX_MESSAGE_BYTES, PASSWORD, SESSION_TIMEOUT, USER};

/// The probe commands the client ends every input with.
const PROBE_BAD: &[u8] = b"zzbad NOOP junk\r\n";
const PROBE_OK: &[u8] = b"zzok NOOP\r\n";

thread_local! {
    static NODE: RefCell<Option<FrontNode>> = const { RefCell::new(None) };
}

fn config() -> ImapConfig {
    let mut config = ImapConfig::new(MAX_MESSAGE_BYTES);
    config.allow_plaintext = true;
    config.login_timeout = SESSION_TIMEOUT;
    config.autologout = SESSION_TIMEOUT;
    config
}

/// One IMAP session over `input` (sent as it is); what the server wrote.
fn session(node: &FrontNode, input: &[u8]) -> super::frontend::Transcript {
    let (service, users) = (node.service.clone(), node.users.clone());
    node.converse(input, |stream| async move {
        let shared = std::sync::Arc::new(Shared::new(service, Some(users), config(), None));
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        Session::new(shared, peer, Connection::other(stream)).run().await;
    })
}

/// What the node holds before the first input: real messages (so that FETCH, SEARCH and COPY
/// read bodies), appended through IMAP.
pub fn prepare(node: &FrontNode) {
    let mut input = format!("p1 LOGIN {USER} {PASSWORD}\r\np2 CREATE Archive\r\n").into_bytes();
    for (i, (mailbox, flags, message)) in prepared_messages().iter().enumerate() {
        input.extend_from_slice(
            format!("p{} APPEND {mailbox} ({flags}) {}\r\n", i + 3, literal(message)).as_bytes(),
        );
    }
    input.extend_from_slice(b"p9 LOGOUT\r\n");
    let transcript = session(node, &input);
    let text = String::from_utf8_lossy(&transcript.output);
    for tag in ["p1", "p3", "p4", "p5", "p6", "p9"] {
        assert!(
            text.contains(&format!("\r\n{tag} OK")),
            "preparing the node: no {tag} OK in {text}"
        );
    }
}

/// `{n}` CRLF and the text: an IMAP literal.
pub fn literal(text: &str) -> String {
    format!("{{{}}}\r\n{text}", text.len())
}

/// `{n+}` CRLF and the text: a non-synchronizing literal (LITERAL+).
pub fn literal_plus(text: &str) -> String {
    format!("{{{}+}}\r\n{text}", text.len())
}

/// Messages for the node's mailboxes and the seeds: plain text, multipart with an attachment,
/// encoded words and a nested message.
pub fn prepared_messages() -> Vec<(&'static str, &'static str, String)> {
    let plain = "From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: Hello\r\n\
                 Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n\
                 Hello Alice,\r\nthe meeting is at noon.\r\n"
        .to_string();
    let multipart = "From: =?UTF-8?B?QsO2Yg==?= <bob@example.org>\r\nTo: alice@example.com, carol@example.com\r\n\
                     Cc: \"Dave\" <dave@example.net>\r\nSubject: =?UTF-8?Q?Report_=E2=82=AC?=\r\n\
                     Date: Sun, 06 Dec 2026 11:30:00 +0100\r\nMIME-Version: 1.0\r\n\
                     Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n\
                     Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                     The report =E2=82=AC is attached.\r\n--b1\r\n\
                     Content-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago=\r\n--b1--\r\nepilogue\r\n"
        .to_string();
    let nested = "From: carol@example.com\r\nTo: alice@example.com\r\nSubject: Fwd: Hello\r\n\
                  MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n--alt\r\n\
                  Content-Type: text/plain\r\n\r\nsee below\r\n--alt\r\nContent-Type: message/rfc822\r\n\r\n\
                  From: Bob <bob@example.org>\r\nSubject: Hello\r\n\r\nHello Alice\r\n--alt--\r\n"
        .to_string();
    vec![
        ("INBOX", "\\Seen", plain.clone()),
        ("INBOX", "\\Flagged $Work", multipart),
        ("INBOX", "", nested),
        ("Archive", "\\Seen \\Answered", plain),
    ]
}

/// Where the client stands after sending some bytes, framed as imap-next frames them (lines
/// end at LF; a line ending in `{n}` or `{n+}` is followed by n literal bytes).
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// At the start of a message.
    Clean,
    /// Inside a message: a line not ended, or just after a literal.
    Open,
    /// Inside a literal, this many bytes still owed.
    Literal(usize),
}

/// The literal a line (LF included) announces: its length, if the line ends in `{n}` or
/// `{n+}` (then CR, LF) with n fitting in 32 bits.
fn announced(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let digits = line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || line.len() == digits || line[line.len() - digits - 1] != b'{' {
        return None;
    }
    let text = std::str::from_utf8(&line[line.len() - digits..]).ok()?;
    let length: u32 = text.parse().ok()?;
    Some(u64::from(length))
}

/// Frames `bytes`; also whether some literal announced is larger than the server takes.
fn frame(bytes: &[u8]) -> (Tail, bool) {
    let mut position = 0;
    let mut oversized = false;
    let mut after_literal = false;
    while position < bytes.len() {
        let Some(end) = bytes[position..].iter().position(|&b| b == b'\n') else {
            return (Tail::Open, oversized);
        };
        let line = &bytes[position..position + end + 1];
        position += end + 1;
        after_literal = false;
        if let Some(length) = announced(line) {
            if length > MAX_MESSAGE_BYTES {
                // The server refuses it (and may skip the message) or reads it (no tag).
                oversized = true;
                continue;
            }
            let length = length as usize;
            if position + length > bytes.len() {
                return (Tail::Literal(position + length - bytes.len()), oversized);
            }
            position += length;
            after_literal = true;
        }
    }
    let tail = if after_literal { Tail::Open } else { Tail::Clean };
    (tail, oversized)
}

/// The input as the client sends it: completed, then the probes. Also whether the framing is
/// unambiguous (no oversized literal).
fn with_probes(input: &[u8]) -> (Vec<u8>, bool) {
    let mut sent = input.to_vec();
    let oversized = loop {
        match frame(&sent) {
            (Tail::Clean, oversized) => break oversized,
            (Tail::Open, _) => sent.extend_from_slice(b"\r\n"),
            (Tail::Literal(owed), _) => sent.resize(sent.len() + owed, b'x'),
        }
    };
    sent.extend_from_slice(b"DONE\r\n");
    sent.extend_from_slice(PROBE_BAD);
    sent.extend_from_slice(PROBE_OK);
    (sent, !oversized)
}

/// The response lines of `output`, each with its literals' bytes left out.
fn response_lines(output: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut lines = Vec::new();
    let mut current = Vec::new();
    let mut position = 0;
    while position < output.len() {
        let Some(end) = output[position..].windows(2).position(|w| w == b"\r\n") else {
            return Err(format!(
                "the output ends inside a line: {}",
                excerpt(&output[position..], 200)
            ));
        };
        let piece = &output[position..position + end];
        position += end + 2;
        if let Some(bad) = piece.iter().find(|&&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!(
                "a response line holds the byte {bad:#04x}: {}",
                excerpt(piece, 300)
            ));
        }
        current.extend_from_slice(piece);
        let mut with_lf = piece.to_vec();
        with_lf.push(b'\n');
        if let Some(length) = announced(&with_lf).filter(|_| !piece.ends_with(b"+}")) {
            let length = length as usize;
            if position + length > output.len() {
                return Err(format!(
                    "a literal of {length} bytes runs past the end of the output: {}",
                    excerpt(piece, 300)
                ));
            }
            position += length;
            continue;
        }
        lines.push(std::mem::take(&mut current));
    }
    Ok(lines)
}

/// Whether `line` is a response line: `* `, `+ ` (or a bare `+`), or a tag then OK, NO or BAD.
fn well_formed(line: &[u8]) -> bool {
    if line.starts_with(b"* ") || line.starts_with(b"+ ") || line == b"+" {
        return true;
    }
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (tag, rest) = (&line[..space], &line[space + 1..]);
    let tag_ok = !tag.is_empty()
        && tag
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b) && !b"(){%*\"\\+".contains(&b));
    let status_ok = [&b"OK"[..], b"NO", b"BAD"]
        .iter()
        .any(|s| rest.starts_with(s) && matches!(rest.get(s.len()), None | Some(b' ')));
    tag_ok && status_ok
}

fn tagged(line: &[u8], tag: &str, status: &str) -> bool {
    line.starts_with(format!("{tag} {status}").as_bytes())
        && matches!(line.get(tag.len() + 1 + status.len()), None | Some(b' '))
}

/// One session over `data`, then the checks of the module's doc.
pub fn imap_session(data: &[u8]) {
    let (sent, unambiguous) = with_probes(data);
    let transcript = with_node(&NODE, prepare, |node| session(node, &sent));
    let output = &transcript.output;
    let lines = match response_lines(output) {
        Ok(lines) => lines,
        // Cut at MAX_OUTPUT: the last line may be cut too.
        Err(_) if transcript.truncated => return,
        Err(e) => panic!("{e}\n  output: {}", excerpt(output, 2000)),
    };
    let fail = |what: &str| -> ! { panic!("{what}\n  output: {}", excerpt(output, 4000)) };
    match lines.first() {
        Some(first) if first.starts_with(b"* OK ") => {}
        _ => fail("the session did not start with a `* OK` greeting"),
    }
    for line in &lines {
        if !well_formed(line) {
            fail(&format!("not a response line: {}", excerpt(line, 300)));
        }
    }
    let bye = lines.iter().position(|line| line.starts_with(b"* BYE"));
    if let Some(bye) = bye {
        let after = &lines[bye + 1..];
        if after.len() > 1
            || after
                .iter()
                .any(|line| line.starts_with(b"* ") || line.starts_with(b"+"))
        {
            fail("the server went on after `* BYE`");
        }
        return;
    }
    if !unambiguous || transcript.truncated {
        return;
    }
    let bad = lines.iter().position(|line| tagged(line, "zzbad", "BAD"));
    let ok = lines.iter().position(|line| tagged(line, "zzok", "OK"));
    match (bad, ok) {
        (Some(bad), Some(ok)) if bad < ok => {}
        (None, _) => fail("the malformed `zzbad NOOP junk` got no `zzbad BAD` (and no BYE came)"),
        (_, None) => fail("`zzok NOOP` after a malformed command got no `zzok OK` (and no BYE came)"),
        _ => fail("`zzok OK` came before `zzbad BAD`"),
    }
}

/// The seeds: sessions a client would have.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let login = format!("a1 LOGIN {USER} {PASSWORD}\r\n");
    let messages = prepared_messages();
    let [(_, _, plain), (_, _, multipart), ..] = &messages[..] else {
        unreachable!("four messages")
    };
    let session = |lines: &[&str]| -> Vec<u8> {
        let mut text = login.clone();
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.into_bytes()
    };
    let plain_literal = literal(plain);
    let multipart_literal = literal_plus(multipart);
    let plain_login = format!("a1 AUTHENTICATE PLAIN\r\n{}\r\n", base64_plain());
    let append_plain =
        format!("a2 APPEND INBOX (\\Seen $Work) \"05-Dec-2026 10:00:00 +0000\" {plain_literal}");
    let append_multipart = format!("a3 APPEND Archive {multipart_literal}");
    vec![
        (
            "fetch",
            session(&[
                "a2 SELECT INBOX",
                "a3 FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE)",
                "a4 FETCH 2 (BODYSTRUCTURE BODY BODY.PEEK[HEADER.FIELDS (From Subject)] BODY[1] BODY[2.MIME])",
                "a5 FETCH 1:3 (BODY[TEXT]<0.20> BODY.PEEK[HEADER.FIELDS.NOT (To)] RFC822.HEADER)",
                "a6 UID FETCH 1:* FAST",
                "a7 FETCH 3 (BODY[2.HEADER] BODY[2.TEXT] BODY[1]<2.5>)",
                "a8 FETCH 1 ALL",
                "a9 FETCH * FULL",
                "b1 FETCH 1 RFC822",
                "b2 LOGOUT",
            ]),
        ),
        (
            "append",
            session(&[
                append_plain.as_str(),
                append_multipart.as_str(),
                "a4 APPEND INBOX {0}\r\n",
                "a5 APPEND Nowhere {5}\r\nhello",
                "a6 SELECT INBOX",
                "a7 FETCH 4:* (FLAGS BODY.PEEK[])",
                "a8 LOGOUT",
            ]),
        ),
        (
            "search-store",
            session(&[
                "a2 SELECT INBOX",
                "a3 SEARCH FROM bob SUBJECT hello SINCE 1-Jan-2020 NOT DELETED",
                "a4 UID SEARCH 1:* BODY \"noon\" OR SEEN FLAGGED",
                "a5 SEARCH CHARSET UTF-8 LARGER 10 SMALLER 100000 HEADER Message-ID example KEYWORD $Work",
                "a6 SEARCH TEXT {6}\r\nreport",
                "a7 STORE 1 +FLAGS (\\Deleted)",
                "a8 STORE 2 FLAGS.SILENT (\\Seen $Junk)",
                "a9 UID STORE 1:* -FLAGS (\\Flagged)",
                "b1 EXPUNGE",
                "b2 SEARCH ALL",
                "b3 CLOSE",
                "b4 LOGOUT",
            ]),
        ),
        (
            "copy-move",
            session(&[
                "a2 SELECT INBOX",
                "a3 COPY 1:2 Archive",
                "a4 UID COPY 1 Archive",
                "a5 MOVE 2 Archive",
                "a6 UID MOVE 3 Trash",
                "a7 COPY 1 Nowhere",
                "a8 LIST \"\" \"*\"",
                "a9 STATUS Archive (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)",
                "b1 EXAMINE Archive",
                "b2 CREATE Projects/2026",
                "b3 RENAME Projects Old",
                "b4 SUBSCRIBE Old/2026",
                "b5 LSUB \"\" \"*\"",
                "b6 UNSUBSCRIBE Old/2026",
                "b7 DELETE Old/2026",
                "b8 LIST \"\" \"%\"",
                "b9 LOGOUT",
            ]),
        ),
        (
            "idle",
            session(&[
                "a2 SELECT INBOX",
                "a3 IDLE",
                "DONE",
                "a4 NOOP",
                "a5 IDLE",
                "a6 NOOP",
                "DONE",
                "a7 LOGOUT",
            ]),
        ),
        (
            "authenticate-condstore",
            format!(
                "a0 CAPABILITY\r\n{plain_login}a2 ID (\"name\" \"fuzz\")\r\na3 ENABLE CONDSTORE\r\n\
                 a4 SELECT INBOX (CONDSTORE)\r\na5 FETCH 1:* (FLAGS) (CHANGEDSINCE 1)\r\n\
                 a6 UID STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)\r\na7 NAMESPACE\r\n\
                 a8 SEARCH MODSEQ 1\r\na9 UNSELECT\r\nb1 LOGOUT\r\n"
            )
            .into_bytes(),
        ),
        (
            "qresync",
            session(&[
                "a2 ENABLE CONDSTORE QRESYNC",
                "a3 SELECT INBOX (QRESYNC (1 1 1:4 (1:2 1:2)))",
                "a4 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
                "a5 UID FETCH 2:* (UID) (VANISHED CHANGEDSINCE 2)",
                "a6 UID STORE 1 +FLAGS.SILENT (\\Deleted)",
                "a7 UID STORE 1 -FLAGS.SILENT (\\Deleted)",
                "a8 UID EXPUNGE 1:*",
                "a9 EXAMINE INBOX (QRESYNC (1 1))",
                "b1 FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
                "b2 UID FETCH 1:* (FLAGS) (VANISHED)",
                "b3 SELECT Archive (CONDSTORE QRESYNC (4294967295 9223372036854775807 1:*))",
                "b4 SELECT INBOX (QRESYNC (1 1 1:2 (1:3 1)))",
                "b5 LOGOUT",
            ]),
        ),
        (
            "malformed",
            session(&[
                "a2 NOOP extra",
                "a NOOP",
                "junk",
                "a3 FETCH",
                "a4 SELECT",
                "a5 FETCH 1 (FLAGS",
                "a6 NOOP\n",
                "* NOOP",
                "a7 UID FETCH 0:* FLAGS",
                "a8 SEARCH UNDEFINEDKEY",
                "a9 STORE 1:* +FLAGS (\\Recent)",
                "b1 NOOP",
            ]),
        ),
        (
            "not-authenticated",
            b"a1 SELECT INBOX\r\na2 LOGIN alice wrong\r\na4 STARTTLS\r\na5 LOGIN bob wrong\r\n\
              a6 AUTHENTICATE PLAIN\r\n*\r\na7 AUTHENTICATE CRAM-MD5\r\na8 IDLE\r\n\
              a3 LOGIN {5}\r\nalice {13}\r\nfuzz-password\r\na9 SELECT INBOX\r\nb1 LOGOUT\r\n"
                .to_vec(),
        ),
    ]
}

/// AUTHENTICATE PLAIN's response for the user: base64 of `\0alice\0fuzz-password`.
fn base64_plain() -> String {
    assert_eq!(
        (USER, PASSWORD),
        ("alice", "fuzz-password"),
        "the seed's base64 is of these"
    );
    "AGFsaWNlAGZ1enotcGFzc3dvcmQ=".to_string()
}
