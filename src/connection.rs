//! One client connection: owns the socket and the framing, reads every complete request in
//! the buffer, runs them in order, and writes all their replies with one flush (pipelining).
//!
//! A protocol error is answered with `-ERR Protocol error: ...` and the connection closes;
//! nothing else is affected. Only this module and `server` touch sockets.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;
use tracing::debug;

use crate::commands::{self, Session, Shared};
use crate::protocol::{self, Limits, RespCodec};
use crate::reply::{RedisError, Reply};

/// Replies are written once this much is buffered even if more requests are waiting, so a huge
/// pipeline does not buffer all its replies.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Room reserved in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Most pipelined writes queued to the log before their replies are collected.
const MAX_QUEUED_WRITES: usize = 1024;

/// A client connection: the stream plus its buffers and codec.
pub struct Connection<S> {
    stream: S,
    codec: RespCodec,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

/// The current protocol limits from the live configuration.
pub fn limits(shared: &Shared) -> Limits {
    let config = shared.config.read();
    let s = &config.server;
    Limits {
        max_bulk_len: s.proto_max_bulk_len,
        max_multibulk_len: s.max_multibulk_len,
        max_inline_len: s.max_inline_len,
        query_buffer_limit: s.client_query_buffer_limit,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps an accepted stream.
    pub fn new(stream: S, limits: Limits, authenticated: bool) -> Self {
        Connection {
            stream,
            codec: RespCodec::new(limits, authenticated),
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Serves the client until it disconnects, sends QUIT, breaks the protocol, or the server
    /// shuts down.
    pub async fn serve(mut self, shared: Arc<Shared>, mut session: Session) {
        self.serve_until_closed(&shared, &mut session).await;
        shared.stats.merge(&mut session.stats);
    }

    async fn serve_until_closed(&mut self, shared: &Shared, session: &mut Session) {
        let mut shutdown = shared.shutdown.subscribe();
        loop {
            match self.run_buffered(shared, session).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    debug!(cause = %e, "closing connection");
                    return;
                }
            }
            shared.stats.merge(&mut session.stats);
            self.read_buf.reserve(READ_CHUNK);
            tokio::select! {
                read = self.stream.read_buf(&mut self.read_buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        shared.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        // Everything in the buffer was sent before this moment.
                        session.arrived = Some(shared.node.read_epoch());
                        session.lap = None;
                    }
                },
                _ = shutdown.wait_for(|stop| *stop).map(drop) => return,
            }
            self.codec.set_limits(limits(shared));
        }
    }

    /// Runs every complete request in the read buffer and writes the replies. Returns whether
    /// the connection stays open.
    async fn run_buffered(
        &mut self,
        shared: &Shared,
        session: &mut Session,
    ) -> std::io::Result<bool> {
        // Pipelined writes queued to the log, with their replies still to come.
        let mut queued = VecDeque::new();
        loop {
            let request = match self.codec.decode(&mut self.read_buf) {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(e) => {
                    debug!(cause = %e, "protocol error");
                    self.answer_queued(shared, session, &mut queued).await?;
                    self.encode(Reply::Error(e.line()));
                    self.flush(shared).await?;
                    return Ok(false);
                }
            };
            if request.is_empty() {
                continue;
            }
            let mut request = commands::Request::new(request);
            if !request.keeps_no_arguments(session) {
                protocol::detach(request.argv_mut());
            }
            if commands::deferrable(shared, session, &request) && queued.len() < MAX_QUEUED_WRITES {
                // Queued to the log now, answered in order below.
                queued.push_back(commands::execute_deferred(shared, session, request));
                continue;
            }
            // Anything else runs only after the writes before it have been answered.
            self.answer_queued(shared, session, &mut queued).await?;
            let reply = commands::execute(shared, session, request).await;
            if *shared.shutdown.borrow() {
                // SHUTDOWN closes the connection without a reply, like Redis.
                return Ok(false);
            }
            // HELLO 3 answers in RESP3 already, so switch before encoding.
            self.codec.set_resp3(session.resp3);
            self.codec.set_authenticated(session.authenticated);
            self.encode(reply);
            if session.close {
                self.flush(shared).await?;
                return Ok(false);
            }
            if self.write_buf.len() >= WRITE_HIGH_WATER {
                self.flush(shared).await?;
                // The wait for a slow reader is no command's time.
                session.lap = None;
            }
        }
        self.answer_queued(shared, session, &mut queued).await?;
        self.flush(shared).await?;
        Ok(true)
    }

    /// Waits for the queued writes' replies and encodes them, in order.
    async fn answer_queued(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        queued: &mut VecDeque<commands::Step>,
    ) -> std::io::Result<()> {
        while let Some(step) = queued.pop_front() {
            let reply = match step {
                commands::Step::Now(reply) => reply,
                commands::Step::Later(deferred) => {
                    commands::finish(shared, session, deferred).await
                }
            };
            self.encode(reply);
            if self.write_buf.len() >= WRITE_HIGH_WATER {
                self.flush(shared).await?;
                // The wait for a slow reader is no command's time.
                session.lap = None;
            }
        }
        Ok(())
    }

    fn encode(&mut self, reply: Reply) {
        self.codec.encode(&reply, &mut self.write_buf);
    }

    async fn flush(&mut self, shared: &Shared) -> std::io::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.write_buf).await?;
        shared
            .stats
            .net_output_bytes
            .fetch_add(self.write_buf.len() as u64, Ordering::Relaxed);
        self.write_buf.clear();
        Ok(())
    }
}
