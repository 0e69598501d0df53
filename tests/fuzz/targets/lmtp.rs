//! `lmtp_session`: the bytes an MTA sends, to one LMTP session (`lmtp::session::run` over an
//! in-memory stream) delivering into a real one-node cluster whose passwd-file names `alice`,
//! `bob` and `carol` (`frontend.rs`; alice's mailboxes as `imap.rs` prepares them). The client
//! sends the input one line at a time, pipelined, then closes.
//!
//! What is checked beyond "no panic, no hang" (the session ends once the client closed, without
//! an I/O error):
//! - every line the server writes is a reply line: a code 200 to 599, then a space, `-` (more
//!   lines of the same code follow) or the end; no CR, LF or NUL inside; the output ends with a
//!   whole reply; the first reply is 220;
//! - the replies follow the commands as a client counts them: one reply per command line (a
//!   line `smtp-proto` cannot parse, or one longer than `MAX_COMMAND_LINE`, gets a 5xx); DATA
//!   answered 354 takes the lines up to the final dot, then one reply per recipient accepted
//!   since MAIL; QUIT is answered 221 and is the last reply; nothing else comes (a 421 is taken
//!   as the server's close).

use std::cell::RefCell;

use dovetail::lmtp::session::MAX_COMMAND_LINE;
use dovetail::lmtp::LmtpConfig;
use smtp_proto::Request;

use super::frontend::{excerpt, with_node, FrontNode, SESSION_TIMEOUT};

/// Largest message taken: small, so that a seed can be too big.
const MAX_MESSAGE_BYTES: u64 = 16 * 1024;
/// Recipients per transaction: few, so that a seed can have too many.
const MAX_RECIPIENTS: usize = 4;

thread_local! {
    static NODE: RefCell<Option<FrontNode>> = const { RefCell::new(None) };
}

/// One reply: its code and its lines.
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

/// The replies of `output`, or what is wrong with it.
fn replies(output: &[u8]) -> Result<Vec<Reply>, String> {
    let mut replies: Vec<Reply> = Vec::new();
    let mut open = false;
    let mut position = 0;
    while position < output.len() {
        let Some(end) = output[position..].windows(2).position(|w| w == b"\r\n") else {
            return Err(format!(
                "the output ends inside a line: {}",
                excerpt(&output[position..], 200)
            ));
        };
        let line = &output[position..position + end];
        position += end + 2;
        if let Some(bad) = line.iter().find(|&&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!(
                "a reply line holds the byte {bad:#04x}: {}",
                excerpt(line, 300)
            ));
        }
        let code = match line.get(..3).and_then(|c| std::str::from_utf8(c).ok()) {
            Some(c) if c.bytes().all(|b| b.is_ascii_digit()) => c.parse::<u16>().expect("three digits"),
            _ => return Err(format!("a reply line without a code: {}", excerpt(line, 300))),
        };
        if !(200..600).contains(&code) {
            return Err(format!("a reply code outside 2xx..5xx: {}", excerpt(line, 300)));
        }
        let more = match line.get(3) {
            None | Some(b' ') => false,
            Some(b'-') => true,
            Some(_) => {
                return Err(format!(
                    "a reply code not followed by a space or -: {}",
                    excerpt(line, 300)
                ))
            }
        };
        let text = String::from_utf8_lossy(line).into_owned();
        if open {
            let reply = replies.last_mut().expect("an open reply");
            if reply.code != code {
                return Err(format!(
                    "a multi-line reply {} goes on with {}",
                    reply.code,
                    excerpt(line, 300)
                ));
            }
            reply.lines.push(text);
        } else {
            replies.push(Reply {
                code,
                lines: vec![text],
            });
        }
        open = more;
    }
    if open {
        return Err("the output ends inside a multi-line reply".to_string());
    }
    Ok(replies)
}

/// Whether `line` (LF included), right after a CRLF, ends DATA: `.`, one or more CR, LF (as
/// `smtp_proto`'s receiver finds the end).
fn ends_data(line: &[u8]) -> bool {
    line.len() >= 3
        && line[0] == b'.'
        && line[line.len() - 1] == b'\n'
        && line[1..line.len() - 1].iter().all(|&b| b == b'\r')
}

/// Checks the replies against the commands of `input`, as a client counts them.
fn check_dialogue(input: &[u8], replies: &[Reply]) -> Result<(), String> {
    let mut replies = replies.iter().peekable();
    match replies.next() {
        Some(reply) if reply.code == 220 => {}
        other => return Err(format!("the session did not start with 220: {other:?}")),
    }
    let mut lines = input.split_inclusive(|&b| b == b'\n');
    // Recipients accepted in the transaction under way.
    let mut accepted = 0usize;
    'lines: while let Some(line) = lines.next() {
        let complete = line.ends_with(b"\n");
        if !complete && line.len() <= MAX_COMMAND_LINE {
            // The input ends inside a line: no command, no reply.
            break;
        }
        let Some(reply) = replies.next() else {
            // The server's close: after a 421 only (QUIT ends the loop below).
            return Err(format!("no reply to {}", excerpt(line, 200)));
        };
        if reply.code == 421 {
            break;
        }
        if line.len() > MAX_COMMAND_LINE {
            if reply.code != 500 {
                return Err(format!("an over-long line was answered {reply:?}"));
            }
            continue;
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(e) => {
                if !(500..600).contains(&reply.code) {
                    return Err(format!(
                        "a malformed command ({e:?}) was answered {reply:?}: {}",
                        excerpt(line, 200)
                    ));
                }
                continue;
            }
        };
        let ok = (200..300).contains(&reply.code);
        match request {
            Request::Quit => {
                if reply.code != 221 {
                    return Err(format!("QUIT was answered {reply:?}"));
                }
                break;
            }
            Request::Lhlo { .. } | Request::Rset if ok => accepted = 0,
            Request::Mail { .. } if ok => accepted = 0,
            Request::Rcpt { .. } if ok => accepted += 1,
            Request::Data if reply.code == 354 => {
                let mut after_crlf = true;
                let mut ended = false;
                for data in lines.by_ref() {
                    if after_crlf && ends_data(data) {
                        ended = true;
                        break;
                    }
                    after_crlf = data.ends_with(b"\r\n");
                }
                if !ended {
                    // The input ends inside DATA: the session ends without a reply.
                    break;
                }
                for i in 0..accepted {
                    match replies.next() {
                        Some(reply) if reply.code == 421 => break 'lines,
                        Some(_) => {}
                        None => return Err(format!("DATA got {i} replies for {accepted} recipients")),
                    }
                }
                accepted = 0;
            }
            Request::Data if ok => return Err(format!("DATA was answered {reply:?}")),
            _ => {}
        }
    }
    if replies.peek().is_some() {
        let rest: Vec<&Reply> = replies.collect();
        return Err(format!("replies nobody asked for: {rest:?}"));
    }
    Ok(())
}

/// One session over `data`, then the checks of the module's doc.
pub fn lmtp_session(data: &[u8]) {
    let (transcript, result) = with_node(&NODE, super::imap::prepare, |node| {
        let (service, users) = (node.service.clone(), node.users.clone());
        let mut config = LmtpConfig::new(MAX_MESSAGE_BYTES, node.spool.clone());
        config.command_timeout = SESSION_TIMEOUT;
        config.data_timeout = SESSION_TIMEOUT;
        config.max_recipients = MAX_RECIPIENTS;
        let mut result = None;
        let transcript = node.converse(data, |stream| {
            let result = &mut result;
            async move {
                let (reader, writer) = tokio::io::split(stream);
                *result =
                    Some(dovetail::lmtp::session::run(reader, writer, &*service, &*users, &config).await);
            }
        });
        (transcript, result.expect("the session ran"))
    });
    let output = &transcript.output;
    if let Err(e) = result {
        panic!(
            "the session ended with an I/O error: {e}\n  output: {}",
            excerpt(output, 2000)
        );
    }
    if transcript.truncated {
        return;
    }
    let replies = replies(output).unwrap_or_else(|e| panic!("{e}\n  output: {}", excerpt(output, 2000)));
    if let Err(e) = check_dialogue(data, &replies) {
        panic!("{e}\n  output: {}", excerpt(output, 4000));
    }
}

/// The seeds: sessions an MTA would have, and some it should not.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let message = "From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: Hello\r\n\
                   Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <2@example.org>\r\n\r\n\
                   Hello Alice,\r\n..a line that started with a dot\r\n.\r\n"
        .to_string();
    let multipart = "From: =?UTF-8?B?QsO2Yg==?= <bob@example.org>\r\nTo: alice@example.com\r\n\
                     Subject: Report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                     --b\r\nContent-Type: text/plain\r\n\r\n..\r\n...\r\nbody\n bare LF\r\n--b--\r\n.\r\n"
        .to_string();
    let big = format!(
        "LHLO mta.example.org\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n{}.\r\nQUIT\r\n",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567890\r\n"
            .repeat((MAX_MESSAGE_BYTES as usize) / 77 + 2)
    );
    let long_line = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(MAX_COMMAND_LINE + 10));
    vec![
        (
            "deliver",
            format!(
                "LHLO mta.example.org\r\nMAIL FROM:<bob@example.org> SIZE=300\r\n\
                 RCPT TO:<alice@example.com>\r\nRCPT TO:<carol@example.com>\r\n\
                 RCPT TO:<alice+Archive@example.com>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\n{message}QUIT\r\n"
            )
            .into_bytes(),
        ),
        (
            "rset-pipelined",
            format!(
                "LHLO mta\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.com>\r\nRSET\r\n\
                 MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<alice+Drafts@example.com>\r\n\
                 DATA\r\n{multipart}NOOP\r\nVRFY alice\r\nMAIL FROM:<c@example.org>\r\nRCPT TO:<alice@example.com>\r\n\
                 DATA\r\n.\r\nQUIT\r\n"
            )
            .into_bytes(),
        ),
        (
            "errors",
            format!(
                "DATA\r\nRCPT TO:<alice@example.com>\r\nMAIL FROM:<a@example.org>\r\nHELO mta\r\nEHLO mta\r\n\
                 BOGUS\r\nLHLO mta\r\nMAIL FROM:<bad\r\nMAIL FROM:<a@example.org> SIZE=999999999\r\n\
                 MAIL FROM:<a@example.org> BODY=BINARYMIME\r\nMAIL FROM:<a@example.org> XUNKNOWN=1\r\n\
                 MAIL FROM:<a@example.org>\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<>\r\nRCPT TO:<bad\r\n\
                 RCPT TO:<a@b@c>\r\nDATA\r\nSTARTTLS\r\nAUTH PLAIN\r\nBDAT 10 LAST\r\n{long_line}QUIT\r\n"
            )
            .into_bytes(),
        ),
        (
            "too-many-recipients",
            b"LHLO mta\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n\
              RCPT TO:<carol@example.com>\r\nRCPT TO:<alice+INBOX@example.com>\r\nRCPT TO:<bob+Sent@example.com>\r\n\
              DATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n"
                .to_vec(),
        ),
        ("too-big", big.into_bytes()),
        (
            "no-quit",
            b"LHLO mta\nMAIL FROM:<a@example.org>\nRCPT TO:<alice@example.com>\nDATA\nSubject: cut short\r\n\r\nbody"
                .to_vec(),
        ),
    ]
}
