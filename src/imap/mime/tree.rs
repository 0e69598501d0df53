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
        Node::parse_part(bytes, 0..bytes.len(), false, 0)
    }

    /// The part at `range`, which starts with its header.
    fn parse_part(bytes: &[u8], range: Range<usize>, in_digest: bool, depth: usize) -> Node {
        let (header, body) = header::split(bytes, range);
        let fields = header::fields(&bytes[header.clone()]);
        let mut content_type = header::first_value(&fields, "Content-Type")
            .and_then(|value| header::parse_media(&value, true))
            .unwrap_or_else(|| default_type(in_digest));
        let is = |media: &MediaValue, t: &str, s: &str| {
            media.value.eq_ignore_ascii_case(t.as_bytes())
                && media
                    .subtype
                    .as_deref()
                    .is_some_and(|sub| sub.eq_ignore_ascii_case(s.as_bytes()))
        };
        let kind = if depth >= MAX_DEPTH {
            if content_type.value.eq_ignore_ascii_case(b"multipart") || is(&content_type, "message", "rfc822")
            {
                content_type = MediaValue {
                    value: b"application".to_vec(),
                    subtype: Some(b"octet-stream".to_vec()),
                    params: Vec::new(),
                };
            }
            Kind::Leaf
        } else if content_type.value.eq_ignore_ascii_case(b"multipart") {
            let boundary = content_type
                .params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(b"boundary"))
                .map(|(_, value)| value.clone())
                .filter(|boundary| !boundary.is_empty());
            match boundary {
                None => Kind::Leaf,
                Some(boundary) => {
                    let digest = is(&content_type, "multipart", "digest");
                    let mut children: Vec<Node> = split_multipart(bytes, body.clone(), &boundary)
                        .into_iter()
                        .map(|part| Node::parse_part(bytes, part, digest, depth + 1))
                        .collect();
                    if children.is_empty() {
                        let end = body.end;
                        children.push(Node {
                            header: end..end,
                            body: end..end,
                            content_type: default_type(false),
                            kind: Kind::Leaf,
                        });
                    }
                    Kind::Multipart(children)
                }
            }
        } else if is(&content_type, "message", "rfc822") {
            Kind::Message(Box::new(Node::parse_part(bytes, body.clone(), false, depth + 1)))
        } else {
            Kind::Leaf
        };
        debug_assert_eq!(header.end, body.start);
        Node {
            header,
            body,
            content_type,
            kind,
        }
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

/// The ranges of a multipart body's parts, each starting at its header (RFC 2046 §5.1.1).
fn split_multipart(bytes: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut pos = body.start;
    while pos < body.end {
        let line_end = header::memchr_lf(&bytes[pos..body.end]).map_or(body.end, |i| pos + i + 1);
        let line = &bytes[pos..line_end];
        if line.starts_with(b"--") && line[2..].starts_with(boundary) {
            if let Some(start) = current {
                // The line ending before a delimiter belongs to the delimiter.
                let mut end = pos;
                if end > start && bytes[end - 1] == b'\n' {
                    end -= 1;
                    if end > start && bytes[end - 1] == b'\r' {
                        end -= 1;
                    }
                }
                parts.push(start..end);
            }
            if line[2 + boundary.len()..].starts_with(b"--") {
                return parts;
            }
            current = Some(line_end);
        }
        pos = line_end;
    }
    if let Some(start) = current {
        parts.push(start..body.end);
    }
    parts
}
