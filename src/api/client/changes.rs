//! Changes: what changed in a mailbox since a MODSEQ (CONDSTORE/QRESYNC resynchronization),
//! a page at a time.
//!
//! `?since=M` asks for the changes after MODSEQ M; `&after_uid=U` continues within MODSEQ M
//! after UID U; `&limit=N` (default 1,000, at most 10,000) bounds the page. The answer holds the
//! changed records and vanished UIDs in (MODSEQ, UID) order, `more`, and `next`: the `since` and
//! `after_uid` of the next page. Paging from `next` until `more` is false neither skips nor
//! repeats a change, whatever writes go on meanwhile (`index::changes`); the last page leaves
//! the client in sync with its `highest_modseq`, and its `next` is `{"since": highest_modseq}`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::read::{page_limit, read, ReadQuery};
use crate::api::error::ApiError;
use crate::api::extract::{MailboxPath, QueryParams};
use crate::index::ChangesCursor;
use crate::service::MailService;
use crate::txn::validate::check_mailbox_name;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    #[serde(flatten)]
    read: ReadQuery,
    since: u64,
    after_uid: Option<u32>,
    limit: Option<usize>,
}

pub(super) async fn changes<S: MailService>(
    State(service): State<Arc<S>>,
    MailboxPath(user, mailbox): MailboxPath,
    QueryParams(q): QueryParams<ChangesQuery>,
) -> Result<Response, ApiError> {
    check_mailbox_name(&mailbox)?;
    let limit = page_limit(q.limit)?;
    let cursor = ChangesCursor {
        modseq: q.since,
        after_uid: q.after_uid,
    };
    read(&*service, user, q.read, move |g, user| {
        g.state().changes_page(user, &mailbox, cursor, limit)
    })
    .await
}
