//! Changes: what changed in a mailbox since a MODSEQ (CONDSTORE/QRESYNC resynchronization).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::read::{read, ReadQuery};
use crate::api::error::ApiError;
use crate::api::extract::{MailboxPath, QueryParams};
use crate::service::MailService;
use crate::txn::validate::check_mailbox_name;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    #[serde(flatten)]
    read: ReadQuery,
    since: u64,
}

pub(super) async fn changes<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    QueryParams(q): QueryParams<ChangesQuery>,
) -> Result<Response, ApiError> {
    check_mailbox_name(&mailbox)?;
    let since = q.since;
    read(&*service, user, q.read, move |g, user| {
        let changes = g.state().changes_since(user, &mailbox, since)?;
        Ok(json!({
            "uid_validity": changes.uid_validity,
            "highest_modseq": changes.highest_modseq,
            "changed": changes.changed,
            "vanished": changes.vanished.to_string(),
        }))
    })
    .await
}
