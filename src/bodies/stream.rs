//! Bodies between HTTP byte streams and the store: [`put_stream`] stores what an HTTP body yields
//! (a client's delivery, a peer's transfer) without holding it in memory; [`read_head`] reads a
//! body whole when it is small (a delivery's fast path) and hands a larger one back unread past
//! its head; [`file_body`] streams a stored body, or a byte range of it, out.

use std::io::{self, Read, SeekFrom};
use std::sync::Arc;

use http_body_util::channel::Channel;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::store::{BodyError, BodyId, BodyStore, Stored};

/// Chunks in flight between the HTTP side and the blocking writer: with hyper's frames of at
/// most a few tens of KiB, well under a MiB of a message is ever held in memory.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Bytes read from a file per chunk sent.
const READ_CHUNK: usize = 64 << 10;

/// Stores the bytes `body` yields in `store` ([`BodyStore::put`], on a blocking thread, with
/// `max_bytes` and `expected` as there). A body that fails while it streams stores nothing
/// ([`BodyError::Input`]).
pub async fn put_stream<B>(
    store: Arc<BodyStore>,
    mut body: B,
    max_bytes: u64,
    expected: Option<BodyId>,
) -> Result<Stored, BodyError>
where
    B: Body<Data = Bytes> + Unpin + Send,
    B::Error: std::fmt::Display,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let put = tokio::task::spawn_blocking(move || {
        let mut reader = ChunkReader {
            rx,
            chunk: Bytes::new(),
        };
        store.put(&mut reader, max_bytes, expected)
    });
    loop {
        let next = match body.frame().await {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Ok(data),
                Err(_trailers) => continue,
            },
            Some(Err(e)) => Err(io::Error::other(e.to_string())),
        };
        let failed = next.is_err();
        // The writer stops reading once it has refused the body (too large): stop sending.
        if tx.send(next).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    put.await.map_err(|e| BodyError::Input {
        source: io::Error::other(format!("the store's writer failed: {e}")),
    })?
}

/// What [`read_head`] found: the whole body (it ended within the limit), or its first chunks and
/// the rest still to read, as one body again ([`Prefixed`]).
pub enum Head<B> {
    Whole(Bytes),
    Longer(Prefixed<B>),
}

/// Reads `body` until it ends or more than `limit` bytes have come. A body that breaks on the
/// way is [`BodyError::Input`].
pub async fn read_head<B>(mut body: B, limit: usize) -> Result<Head<B>, BodyError>
where
    B: Body<Data = Bytes> + Unpin + Send,
    B::Error: std::fmt::Display,
{
    let mut head = std::collections::VecDeque::new();
    let mut len = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    head.push_back(data);
                    if len > limit {
                        return Ok(Head::Longer(Prefixed { head, rest: body }));
                    }
                }
            }
            Some(Err(e)) => {
                return Err(BodyError::Input {
                    source: io::Error::other(e.to_string()),
                })
            }
        }
    }
    let mut whole = Vec::with_capacity(len);
    for chunk in head {
        whole.extend_from_slice(&chunk);
    }
    Ok(Head::Whole(Bytes::from(whole)))
}

/// A body whose first chunks were read already: it yields them, then the rest of `rest`.
pub struct Prefixed<B> {
    head: std::collections::VecDeque<Bytes>,
    rest: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, B::Error>>> {
        if let Some(chunk) = self.head.pop_front() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// An HTTP body of `bytes`, sent as one chunk.
pub fn bytes_body(bytes: Bytes) -> Channel<Bytes, io::Error> {
    let (mut tx, body) = Channel::new(1);
    tokio::spawn(async move {
        let _ = tx.send_data(bytes).await;
    });
    body
}

/// `std::io::Read` over the chunks an async task sends (for [`BodyStore::put`] on a blocking
/// thread).
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(chunk)) => self.chunk = chunk,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// An HTTP body of `len` bytes of `file` from `start` on, read as it is sent.
pub fn file_body(file: std::fs::File, start: u64, len: u64) -> Channel<Bytes, io::Error> {
    let (mut tx, body) = Channel::new(CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        let mut file = tokio::fs::File::from_std(file);
        if let Err(e) = file.seek(SeekFrom::Start(start)).await {
            tx.abort(e);
            return;
        }
        let mut left = len;
        while left > 0 {
            let mut buf = vec![0u8; READ_CHUNK.min(left as usize)];
            match file.read(&mut buf).await {
                Ok(0) => {
                    tracing::warn!(
                        start,
                        len,
                        left,
                        "a body file ended before its length while being served"
                    );
                    tx.abort(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the body file ended early",
                    ));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.send_data(Bytes::from(buf)).await.is_err() {
                        tracing::debug!(start, len, left, "the receiver of a body went away");
                        return; // the receiver went away
                    }
                }
                Err(e) => {
                    tracing::warn!(start, len, left, error = %e, "reading a body file being served failed");
                    tx.abort(e);
                    return;
                }
            }
        }
    });
    body
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;
    use hyper::body::Frame;

    use super::*;

    fn store() -> (tempfile::TempDir, Arc<BodyStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BodyStore::open(dir.path().join("blobs")).unwrap());
        (dir, store)
    }

    #[tokio::test]
    async fn a_streamed_body_is_stored_whole_and_read_back_by_range() {
        let (_dir, store) = store();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let chunks: Vec<Result<Frame<Bytes>, io::Error>> = bytes
            .chunks(10_000)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = frames(chunks);
        let stored = put_stream(store.clone(), body, 1 << 20, None).await.unwrap();
        assert_eq!(stored.id, BodyId::of(&bytes));
        assert_eq!(stored.size, bytes.len() as u64);
        let file = store.read(&stored.id).unwrap().unwrap();
        let out = file_body(file, 1000, 200_000).collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], &bytes[1000..201_000]);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_or_broken_or_mislabelled_stores_nothing() {
        let (_dir, store) = store();
        let big = Full::new(Bytes::from(vec![1u8; 5000]));
        assert!(matches!(
            put_stream(store.clone(), big, 4096, None).await,
            Err(BodyError::TooLarge { max: 4096 })
        ));
        let broken = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"half a message"))),
            Err(io::Error::other("the client went away")),
        ]);
        assert!(matches!(
            put_stream(store.clone(), broken, 4096, None).await,
            Err(BodyError::Input { .. })
        ));
        let labelled = BodyId::of(b"another body");
        let wrong = Full::new(Bytes::from_static(b"this body"));
        assert!(matches!(
            put_stream(store.clone(), wrong, 4096, Some(labelled)).await,
            Err(BodyError::Mismatch { .. })
        ));
        assert!(store.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_small_body_is_read_whole_and_a_larger_one_comes_back_entire() {
        let (_dir, store) = store();
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let chunked = |bytes: &[u8]| {
            frames(
                bytes
                    .chunks(7_000)
                    .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                    .collect(),
            )
        };
        match read_head(chunked(&bytes), bytes.len()).await.unwrap() {
            Head::Whole(whole) => assert_eq!(&whole[..], &bytes[..]),
            Head::Longer(_) => panic!("a body within the limit is read whole"),
        }
        let Head::Longer(rest) = read_head(chunked(&bytes), 10_000).await.unwrap() else {
            panic!("a body over the limit is handed back");
        };
        let stored = put_stream(store.clone(), rest, 1 << 20, None).await.unwrap();
        assert_eq!(stored.id, BodyId::of(&bytes), "no byte lost or repeated");
        let broken = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"half"))),
            Err(io::Error::other("gone")),
        ]);
        assert!(matches!(
            read_head(broken, 100).await,
            Err(BodyError::Input { .. })
        ));
        let sent = bytes_body(Bytes::from(bytes.clone()))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&sent[..], &bytes[..]);
    }

    /// A body yielding `frames` one by one (as a client's or a peer's body arrives).
    fn frames(frames: Vec<Result<Frame<Bytes>, io::Error>>) -> Frames {
        Frames(frames.into())
    }

    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, io::Error>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = io::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            std::task::Poll::Ready(self.0.pop_front())
        }
    }
}
