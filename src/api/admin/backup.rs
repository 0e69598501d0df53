//! `GET /admin/groups/{group}/backup`: a copy of one group at a linearizable cut, streamed as the
//! group's snapshot stream (what `dovetail ctl backup` stores). The answer's
//! `x-dovetail-read-index` header is the read index the copy had to reach, `x-dovetail-applied`
//! the position it holds (the cut); the stream itself carries both its position and the
//! consensus metadata (the group's membership) in its manifest.
//!
//! The copy is written to a temporary file with the group locked (`node::replica::group_copy`),
//! then streamed from that file in pieces of [`PIECE_BYTES`], one piece in memory at a time, while
//! the group goes on; the file is gone once the answer is sent or dropped.

use std::io::Seek;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::body::{Bytes, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

use super::state::AdminState;
use crate::api::extract::PathParams;
use crate::api::ApiError;
use crate::node::replica::{group_copy, APPLIED_HEADER, READ_INDEX_HEADER};

/// The size of the pieces a copy is streamed in.
const PIECE_BYTES: usize = 256 << 10;

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/admin/groups/{group}/backup", get(backup))
}

async fn backup(
    State(admin): State<AdminState>,
    PathParams(group): PathParams<u32>,
) -> Result<Response, ApiError> {
    let copy = group_copy(&admin.raft, group, admin.deadline()).await?;
    let mut file = copy.file;
    file.rewind()
        .map_err(|e| ApiError::internal(format!("group {group}: rewinding the copy: {e}")))?;
    let cut = copy.cut.map_or(0, |cut| cut.index);
    tracing::info!(
        group,
        read_index = copy.read_index.index,
        cut,
        bytes = copy.bytes,
        "serving a backup copy"
    );
    let body = FileBody {
        file: tokio::fs::File::from_std(file),
        remaining: copy.bytes,
    };
    let mut response = Body::new(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(copy.bytes));
    headers.insert(READ_INDEX_HEADER, HeaderValue::from(copy.read_index.index));
    headers.insert(APPLIED_HEADER, HeaderValue::from(cut));
    Ok(response)
}

/// A response body read from a file of known length, one piece at a time.
struct FileBody {
    file: tokio::fs::File,
    /// Bytes not yet sent. Invariant: the file holds at least this many bytes past its position.
    remaining: u64,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let wanted = usize::try_from(self.remaining).map_or(PIECE_BYTES, |r| r.min(PIECE_BYTES));
        let mut piece = vec![0u8; wanted];
        let mut buf = ReadBuf::new(&mut piece);
        match Pin::new(&mut self.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len();
                if read == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the copy ended {} bytes early", self.remaining),
                    ))));
                }
                piece.truncate(read);
                self.remaining -= read as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(piece)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
