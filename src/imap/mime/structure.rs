//! ENVELOPE and BODYSTRUCTURE / BODY values from the MIME tree (RFC 3501 §7.4.2).
//!
//! Values are shown as stored, unfolded and undecoded (Dovecot does the same): types, subtypes,
//! parameter names and values keep their case (they are case-insensitive, RFC 2045 §5.1), except
//! that imap-codec writes the types of text and message/rfc822 parts as `"TEXT"` and `"MESSAGE"
//! "RFC822"`. A text part without `charset` gets `("charset" "us-ascii")` appended (RFC 2045
//! §5.2, as Dovecot does). The MD5 field is the `Content-MD5` value (RFC 1864), NIL without one.

use imap_types::{
    body::{
        BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
        SinglePartExtensionData, SpecificFields,
    },
    core::{IString, NString, Vec1},
    envelope::Envelope,
};

use super::address::parse_address_list;
use super::header::{self, Field};
use super::imap_string::{istring, nstring};
use super::tree::{Kind, Node};

/// The ENVELOPE of a header block.
pub(super) fn envelope(header: &[u8]) -> Envelope<'static> {
    let fields = header::fields(header);
    let text = |name: &str| header::first_value(&fields, name).map_or(NString::NIL, nstring);
    let addresses = |name: &str| {
        header::first_value(&fields, name)
            .map(|value| parse_address_list(&value))
            .unwrap_or_default()
    };
    let from = addresses("From");
    // RFC 3501 §7.4.2: Sender and Reply-To absent or empty default to From.
    let or_from = |list: Vec<_>| if list.is_empty() { from.clone() } else { list };
    Envelope {
        date: text("Date"),
        subject: text("Subject"),
        sender: or_from(addresses("Sender")),
        reply_to: or_from(addresses("Reply-To")),
        from: from.clone(),
        to: addresses("To"),
        cc: addresses("Cc"),
        bcc: addresses("Bcc"),
        in_reply_to: text("In-Reply-To"),
        message_id: text("Message-ID"),
    }
}

pub(super) fn body_structure(bytes: &[u8], node: &Node, extended: bool) -> BodyStructure<'static> {
    let fields = header::fields(&bytes[node.header.clone()]);
    let media = &node.content_type;
    let subtype = istring(media.subtype.clone().unwrap_or_default());
    match &node.kind {
        Kind::Multipart(children) => {
            let bodies: Vec<BodyStructure<'static>> = children
                .iter()
                .map(|child| body_structure(bytes, child, extended))
                .collect();
            BodyStructure::Multi {
                bodies: Vec1::try_from(bodies).expect("a multipart node has at least one child"),
                subtype,
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: params(&media.params),
                    tail: Some(disposition(&fields)),
                }),
            }
        }
        kind => {
            let body_bytes = &bytes[node.body.clone()];
            let lines = u32::try_from(body_bytes.iter().filter(|&&b| b == b'\n').count()).unwrap_or(u32::MAX);
            let is_text = media.value.eq_ignore_ascii_case(b"text");
            let mut parameters = media.params.clone();
            if is_text
                && !parameters
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case(b"charset"))
            {
                parameters.push((b"charset".to_vec(), b"us-ascii".to_vec()));
            }
            let basic = BasicFields {
                parameter_list: params(&parameters),
                id: value(&fields, "Content-ID"),
                description: value(&fields, "Content-Description"),
                content_transfer_encoding: istring(
                    header::first_value(&fields, "Content-Transfer-Encoding")
                        .and_then(|value| header::parse_token(&value))
                        .unwrap_or_else(|| b"7BIT".to_vec()),
                ),
                size: u32::try_from(body_bytes.len()).unwrap_or(u32::MAX),
            };
            let specific = match kind {
                Kind::Message(inner) => SpecificFields::Message {
                    envelope: Box::new(envelope(&bytes[inner.header.clone()])),
                    body_structure: Box::new(body_structure(bytes, inner, extended)),
                    number_of_lines: lines,
                },
                _ if is_text => SpecificFields::Text {
                    subtype,
                    number_of_lines: lines,
                },
                _ => SpecificFields::Basic {
                    r#type: istring(media.value.clone()),
                    subtype,
                },
            };
            BodyStructure::Single {
                body: Body { basic, specific },
                extension_data: extended.then(|| SinglePartExtensionData {
                    md5: value(&fields, "Content-MD5"),
                    tail: Some(disposition(&fields)),
                }),
            }
        }
    }
}

/// An unfolded header value, NIL when the field is absent.
fn value(fields: &[Field<'_>], name: &str) -> NString<'static> {
    header::first_value(fields, name).map_or(NString::NIL, nstring)
}

fn params(params: &[(Vec<u8>, Vec<u8>)]) -> Vec<(IString<'static>, IString<'static>)> {
    params
        .iter()
        .map(|(name, value)| (istring(name.clone()), istring(value.clone())))
        .collect()
}

/// Disposition, language and location: the extension data both kinds of part end with.
fn disposition(fields: &[Field<'_>]) -> Disposition<'static> {
    let disposition = header::first_value(fields, "Content-Disposition")
        .and_then(|value| header::parse_media(&value, false))
        .map(|media| (istring(media.value), params(&media.params)));
    let language = header::first_value(fields, "Content-Language")
        .map(|value| header::parse_token_list(&value))
        .unwrap_or_default()
        .into_iter()
        .map(istring)
        .collect();
    Disposition {
        disposition,
        tail: Some(Language {
            language,
            tail: Some(Location {
                location: value(fields, "Content-Location"),
                extensions: Vec::new(),
            }),
        }),
    }
}
