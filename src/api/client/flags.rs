//! Flags and expunges: store (add, remove or replace flags, optionally UNCHANGEDSINCE) and
//! expunge (optionally only where the message GUID is the one expected).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::write::{session, submit, write_response};
use crate::api::error::ApiError;
use crate::api::extract::{parse_guid, parse_uids, JsonBody, MailboxPath};
use crate::service::MailService;
use crate::txn::uid_set::parse_nz_number;
use crate::txn::{quoted, Op, StoreMode};

/// A JSON object from UIDs (as `nz-number` strings) to strings, each UID once.
fn uid_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<u32, String>, D::Error> {
    struct UidMap;
    impl<'de> Visitor<'de> for UidMap {
        type Value = BTreeMap<u32, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object from UIDs to message GUIDs")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Self::Value, A::Error> {
            let mut map = BTreeMap::new();
            while let Some((key, value)) = entries.next_entry::<String, String>()? {
                let uid = parse_nz_number(&key)
                    .ok_or_else(|| de::Error::custom(format!("{:?} is not a UID", quoted(&key))))?;
                if map.insert(uid, value).is_some() {
                    return Err(de::Error::custom(format!("UID {uid} is given twice")));
                }
            }
            Ok(map)
        }
    }
    deserializer.deserialize_map(UidMap)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoreBody {
    uids: String,
    mode: StoreMode,
    flags: Vec<String>,
    unchanged_since: Option<u64>,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpungeBody {
    uids: String,
    /// UID -> expected message GUID (hex). A UID given twice, or spelled other than as an
    /// RFC 3501 `nz-number`, is refused (JSON objects may repeat a key; serde would keep the last).
    #[serde(default, deserialize_with = "uid_map")]
    expected_guids: BTreeMap<u32, String>,
    client_id: Option<String>,
    request_seq: Option<u64>,
}

pub(super) async fn store<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    JsonBody(body): JsonBody<StoreBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let op = Op::Store {
        user,
        mailbox,
        uids: parse_uids(&body.uids)?,
        mode: body.mode,
        flags: body.flags,
        unchanged_since: body.unchanged_since,
    };
    write_response(submit(&*service, client, op).await?, false)
}

pub(super) async fn expunge<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    JsonBody(body): JsonBody<ExpungeBody>,
) -> Result<Response, ApiError> {
    let client = session(service.node_id(), body.client_id, body.request_seq)?;
    let expected_guids = body
        .expected_guids
        .iter()
        .map(|(uid, guid)| Ok((*uid, parse_guid(guid)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let op = Op::Expunge {
        user,
        mailbox,
        uids: parse_uids(&body.uids)?,
        expected_guids,
    };
    write_response(submit(&*service, client, op).await?, false)
}
