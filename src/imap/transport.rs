//! `Connection`: drives imap-next's sans-I/O `Server` over a TCP or TLS stream (or any other byte
//! stream, [`Connection::other`]), and upgrades the stream for STARTTLS. imap-next's own `Stream` cannot hand its TCP stream back for STARTTLS
//! without a crate feature and would keep plaintext read ahead of the upgrade; this driver
//! drops it.
//!
//! [`Connection::next`] is cancel-safe (IDLE selects on it): bytes read are kept in the
//! connection until the server takes them, bytes to write until they are written.

use std::io;

use imap_next::server::{Error as ServerError, Event, Server};
use imap_next::{Interrupt, Io, State};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why a connection stopped or a command could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the client closed the connection")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A message imap-next could not take (malformed, too long): the session answers BAD and
    /// goes on.
    #[error("{0}")]
    Protocol(ServerError),
}

/// A byte stream a session can run over besides TCP and TLS ([`Connection::other`]).
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> ByteStream for T {}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Any other stream: plaintext, no STARTTLS upgrade.
    Other(Box<dyn ByteStream>),
    /// Between the STARTTLS answer and the handshake's end.
    Upgrading,
}

/// Outgoing bytes gathered before they are written (see [`Connection::next`]).
const WRITE_CHUNK: usize = 64 * 1024;

/// One client connection.
pub struct Connection {
    stream: Stream,
    read_buffer: Vec<u8>,
    write_buffer: Vec<u8>,
    /// Bytes were written since the last flush (TLS buffers records until flushed).
    unflushed: bool,
    /// An event the server gave, held until what was written before it is flushed (kept here,
    /// not in the future, so that a cancelled `next` loses nothing).
    pending: Option<Event>,
}

impl Connection {
    pub fn plain(stream: TcpStream) -> Connection {
        Connection::with(Stream::Plain(stream))
    }

    pub fn tls(stream: TlsStream<TcpStream>) -> Connection {
        Connection::with(Stream::Tls(Box::new(stream)))
    }

    /// A connection over any byte stream, e.g. one end of `tokio::io::duplex`: how tests and the
    /// fuzz harness (`tests/fuzz/targets/imap.rs`) run one session in memory. It counts as
    /// plaintext (not TLS); STARTTLS on it fails and ends the session.
    pub fn other(stream: impl ByteStream + 'static) -> Connection {
        Connection::with(Stream::Other(Box::new(stream)))
    }

    fn with(stream: Stream) -> Connection {
        Connection {
            stream,
            read_buffer: Vec::with_capacity(8 * 1024),
            write_buffer: Vec::new(),
            unflushed: false,
            pending: None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The server's next event, writing what it has to send and reading what it needs.
    ///
    /// Responses are gathered into one buffer and written when it passes [`WRITE_CHUNK`], before
    /// waiting for input, and before any event but `ResponseSent` is returned: a FETCH of a
    /// thousand messages is a few large writes, not a thousand small ones. A caller that waits
    /// on something else after `ResponseSent` calls [`Connection::flush`] first (as
    /// `send_until` does).
    pub async fn next(&mut self, server: &mut Server) -> Result<Event, TransportError> {
        loop {
            if let Some(event) = self.pending.take() {
                if !matches!(event, Event::ResponseSent { .. })
                    && (self.unflushed || !self.write_buffer.is_empty())
                {
                    // What was sent reaches the client before the caller acts on the event
                    // (an idling client waits for it). Kept pending until then: a cancelled
                    // flush loses no event.
                    self.pending = Some(event);
                    self.flush().await?;
                    return Ok(self.pending.take().expect("kept above"));
                }
                return Ok(event);
            }
            if self.write_buffer.len() >= WRITE_CHUNK {
                self.flush().await?;
            }
            if !self.read_buffer.is_empty() {
                server.enqueue_input(&self.read_buffer);
                self.read_buffer.clear();
            }
            match server.next() {
                Ok(event) => self.pending = Some(event),
                Err(Interrupt::Io(Io::Output(bytes))) => {
                    self.write_buffer.extend_from_slice(&bytes);
                    self.unflushed = true;
                }
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    self.flush().await?;
                    let read = match &mut self.stream {
                        Stream::Plain(s) => s.read_buf(&mut self.read_buffer).await?,
                        Stream::Tls(s) => s.read_buf(&mut self.read_buffer).await?,
                        Stream::Other(s) => s.read_buf(&mut self.read_buffer).await?,
                        Stream::Upgrading => return Err(TransportError::Closed),
                    };
                    if read == 0 {
                        return Err(TransportError::Closed);
                    }
                }
                Err(Interrupt::Error(e)) => return Err(TransportError::Protocol(e)),
            }
        }
    }

    /// Writes out what is buffered.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        while !self.write_buffer.is_empty() {
            let written = match &mut self.stream {
                Stream::Plain(s) => s.write(&self.write_buffer).await?,
                Stream::Tls(s) => s.write(&self.write_buffer).await?,
                Stream::Other(s) => s.write(&self.write_buffer).await?,
                Stream::Upgrading => return Err(TransportError::Closed),
            };
            if written == 0 {
                return Err(TransportError::Closed);
            }
            self.write_buffer.drain(..written);
        }
        match &mut self.stream {
            Stream::Plain(s) => s.flush().await?,
            Stream::Tls(s) => s.flush().await?,
            Stream::Other(s) => s.flush().await?,
            Stream::Upgrading => return Err(TransportError::Closed),
        }
        self.unflushed = false;
        Ok(())
    }

    /// STARTTLS: the TLS handshake on the plain stream. Anything the client sent after the
    /// STARTTLS command and before the handshake is dropped (RFC 3501 §6.2.1; a man in the
    /// middle must not be able to inject commands that run inside TLS).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> Result<(), TransportError> {
        self.flush().await?;
        self.read_buffer.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(TransportError::Closed);
        };
        let tls = acceptor.accept(tcp).await?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Closes the connection after writing what is buffered.
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = match &mut self.stream {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Other(s) => s.shutdown().await,
            Stream::Upgrading => Ok(()),
        };
    }
}

/// A fresh `Server` for a connection just upgraded by STARTTLS, its greeting consumed without
/// being sent (the client had it before the upgrade); nothing of the plaintext phase survives.
pub fn server_after_starttls(options: imap_next::server::Options) -> Server {
    let greeting = imap_next::imap_types::response::Greeting::ok(None, "TLS").expect("valid greeting");
    let mut server = Server::new(options, greeting);
    loop {
        match server.next() {
            Ok(Event::GreetingSent { .. }) => return server,
            Err(Interrupt::Io(Io::Output(_))) => {}
            other => unreachable!("a new server's first events are its greeting: {other:?}"),
        }
    }
}
