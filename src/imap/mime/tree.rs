//! The MIME tree of a message: each part's header and body ranges, media type and kind, and the
//! part numbers of RFC 3501 §6.4.5 (the cutting rules are in the `mime` module doc).

use std::ops::Range;

use imap_types::fetch::Part;

use super::header::{self, MediaValue};

/// How deep multiparts and enclosed messages are cut; deeper parts are opaque.
pub const MAX_DEPTH: usize = 100;

/// One part of the MIME tree: the message itself at the root.
///
/// Invariant: `header.end == body.start`, both within the message's bytes.
#[derive(Debug)]
pub(crate) struct Node {
    /// The part's header (for the root, the message header), blank line included.
    pub header: Range<usize>,
    /// The part's body, as stored (still transfer-encoded).
    pub body: Range<usize>,
    /// The media type, defaults applied (RFC 2045 §5.2, RFC 2046 §5.1.5 for digests).
    pub content_type: MediaValue,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Leaf,
    /// Invariant: at least one child.
    Multipart(Vec<Node>),
    /// A message/rfc822 part: the message it encloses, with its own header and body.
    Message(Box<Node>),
}

impl Node {
    pub(crate) fn parse(bytes: &[u8]) -> Node {
        let mut cutter = Cutter {
            bytes,
            boundaries: Vec::new(),
        };
        cutter.part(0, false, 0).0
    }

    /// The part numbered `path` below this message (RFC 3501 §6.4.5), if it exists.
    pub(crate) fn find(&self, path: &Part) -> Option<&Node> {
        let mut node = self;
        let mut in_message = true;
        for number in path.0.as_ref() {
            let index = usize::try_from(number.get() - 1).ok()?;
            // A message's part numbers are those of its body: its children if it is a
            // multipart, else only 1, the message itself (seen as a part).
            node = match (&node.kind, in_message) {
                (Kind::Multipart(children), _) => children.get(index)?,
                (Kind::Message(inner), false) => match &inner.kind {
                    Kind::Multipart(children) => children.get(index)?,
                    _ if index == 0 => inner,
                    _ => return None,
                },
                _ if index == 0 => node,
                _ => return None,
            };
            in_message = false;
        }
        Some(node)
    }
}

fn default_type(in_digest: bool) -> MediaValue {
    if in_digest {
        MediaValue {
            value: b"message".to_vec(),
            subtype: Some(b"rfc822".to_vec()),
            params: Vec::new(),
        }
    } else {
        MediaValue {
            value: b"text".to_vec(),
            subtype: Some(b"plain".to_vec()),
            params: vec![(b"charset".to_vec(), b"us-ascii".to_vec())],
        }
    }
}

/// Where a part stopped: at the start of a delimiter line of `boundaries[boundary]`, or at
/// the end of the message (`boundary` None).
#[derive(Debug, Clone, Copy)]
struct Stop {
    at: usize,
    boundary: Option<usize>,
    /// Where the text that the delimiter ends began (a body, an epilogue): the line ending
    /// before the delimiter is the delimiter's only if it lies after this point.
    ///
    /// Invariant: `floor <= at`.
    floor: usize,
}

/// Cuts a message in one pass, as Dovecot's parser does: each line that starts with `--` is
/// checked against the boundaries of the enclosing multiparts, innermost first, so an inner
/// boundary that has an outer one as prefix (`--b2` inside `--b`) belongs to the inner one.
struct Cutter<'a> {
    bytes: &'a [u8],
    /// The boundaries of the multiparts being cut, outermost first.
    ///
    /// Invariant: at most `MAX_DEPTH` entries (one per nesting level).
    boundaries: Vec<Vec<u8>>,
}

impl Cutter<'_> {
    fn line_end(&self, pos: usize) -> usize {
        header::memchr_lf(&self.bytes[pos..]).map_or(self.bytes.len(), |i| pos + i + 1)
    }

    /// The active boundary whose delimiter the line at `pos` is (innermost first), and whether
    /// it is the close delimiter. A delimiter is a line starting with `--boundary`, whatever
    /// follows (Dovecot's rule; RFC 2046 allows only blanks after it).
    fn delimiter(&self, pos: usize) -> Option<(usize, bool)> {
        let line = &self.bytes[pos..self.line_end(pos)];
        let rest = line.strip_prefix(b"--")?;
        self.boundaries
            .iter()
            .enumerate()
            .rev()
            .find(|(_, boundary)| rest.starts_with(boundary))
            .map(|(index, boundary)| (index, rest[boundary.len()..].starts_with(b"--")))
    }

    /// The first delimiter line at or after `pos`.
    fn scan(&self, start: usize) -> Stop {
        let mut pos = start;
        while pos < self.bytes.len() {
            if let Some((index, _)) = self.delimiter(pos) {
                return Stop {
                    at: pos,
                    boundary: Some(index),
                    floor: start,
                };
            }
            pos = self.line_end(pos);
        }
        Stop {
            at: self.bytes.len(),
            boundary: None,
            floor: start,
        }
    }

    /// The part starting (with its header) at `start`, and where it stopped.
    fn part(&mut self, start: usize, in_digest: bool, depth: usize) -> (Node, Stop) {
        // The header ends after its blank line, at a delimiter line, or at the end.
        let mut pos = start;
        let (header_end, header_stop) = loop {
            if pos >= self.bytes.len() {
                break (pos, None);
            }
            if let Some((index, _)) = self.delimiter(pos) {
                let stop = Stop {
                    at: pos,
                    boundary: Some(index),
                    floor: start,
                };
                break (self.text_end(stop), Some(Stop { floor: pos, ..stop }));
            }
            let line_end = self.line_end(pos);
            if matches!(&self.bytes[pos..line_end], b"\n" | b"\r\n") {
                break (line_end, None);
            }
            pos = line_end;
        };
        let fields = header::fields(&self.bytes[start..header_end]);
        let mut content_type = header::first_value(&fields, "Content-Type")
            .and_then(|value| header::parse_media(&value, true))
            .unwrap_or_else(|| default_type(in_digest));
        let is_multipart = content_type.value.eq_ignore_ascii_case(b"multipart");
        let is_message = content_type.value.eq_ignore_ascii_case(b"message")
            && content_type
                .subtype
                .as_deref()
                .is_some_and(|sub| sub.eq_ignore_ascii_case(b"rfc822"));
        let empty = |at: usize, content_type: MediaValue| Node {
            header: at..at,
            body: at..at,
            content_type,
            kind: Kind::Leaf,
        };
        let (kind, stop) = if depth >= MAX_DEPTH {
            if is_multipart || is_message {
                content_type = MediaValue {
                    value: b"application".to_vec(),
                    subtype: Some(b"octet-stream".to_vec()),
                    params: Vec::new(),
                };
            }
            (Kind::Leaf, header_stop.unwrap_or_else(|| self.scan(header_end)))
        } else if is_multipart {
            let boundary = content_type
                .params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(b"boundary"))
                .map(|(_, value)| value.clone())
                .filter(|boundary| !boundary.is_empty());
            let digest = content_type
                .subtype
                .as_deref()
                .is_some_and(|sub| sub.eq_ignore_ascii_case(b"digest"));
            let (mut children, stop) = match (header_stop, boundary) {
                (Some(stop), _) => (Vec::new(), stop),
                (None, Some(boundary)) => self.multipart(header_end, boundary, digest, depth),
                (None, None) => (Vec::new(), self.scan(header_end)),
            };
            if children.is_empty() {
                // No delimiter (or no boundary): one empty text/plain part, as Dovecot answers.
                children.push(empty(header_end, default_type(false)));
            }
            (Kind::Multipart(children), stop)
        } else if is_message {
            let (inner, stop) = match header_stop {
                Some(stop) => (empty(header_end, default_type(false)), stop),
                None => self.part(header_end, false, depth + 1),
            };
            (Kind::Message(Box::new(inner)), stop)
        } else {
            (Kind::Leaf, header_stop.unwrap_or_else(|| self.scan(header_end)))
        };
        // A header cut by a delimiter leaves an empty body (its last line ending is neither
        // header nor body: Dovecot counts it only in the enclosing part).
        let body_end = match header_stop {
            Some(_) => header_end,
            None => self.text_end(stop).max(header_end),
        };
        let node = Node {
            header: start..header_end,
            body: header_end..body_end,
            content_type,
            kind,
        };
        debug_assert!(node.header.end == node.body.start && node.body.end <= self.bytes.len());
        (node, stop)
    }

    /// Where the text cut at `stop` ends: the line ending before a delimiter belongs to the
    /// delimiter (RFC 2046 §5.1.1), unless it was read before that text began (after a nested
    /// close delimiter, or a header cut by the delimiter: Dovecot counts that line ending in
    /// the enclosing part, and so do we).
    fn text_end(&self, stop: Stop) -> usize {
        debug_assert!(stop.floor <= stop.at);
        let mut end = stop.at;
        if stop.boundary.is_some() && end > stop.floor && self.bytes[end - 1] == b'\n' {
            end -= 1;
            if end > stop.floor && self.bytes[end - 1] == b'\r' {
                end -= 1;
            }
        }
        end
    }

    /// The children of a multipart whose body starts at `body_start`, and where it stopped: at
    /// a delimiter of an enclosing multipart or at the end. After the close delimiter the
    /// epilogue runs to the next enclosing delimiter.
    fn multipart(
        &mut self,
        body_start: usize,
        boundary: Vec<u8>,
        digest: bool,
        depth: usize,
    ) -> (Vec<Node>, Stop) {
        self.boundaries.push(boundary);
        let own = self.boundaries.len() - 1;
        debug_assert!(self.boundaries.len() <= MAX_DEPTH + 1);
        let mut children = Vec::new();
        let mut stop = self.scan(body_start);
        while stop.boundary == Some(own) {
            let close = self.delimiter(stop.at).is_some_and(|(_, close)| close);
            let after = self.line_end(stop.at);
            if close {
                self.boundaries.truncate(own);
                return (children, self.scan(after));
            }
            let (child, next) = self.part(after, digest, depth + 1);
            children.push(child);
            stop = next;
        }
        self.boundaries.truncate(own);
        (children, stop)
    }
}
