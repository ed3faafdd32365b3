//! The tokio task of one session: the socket, the transport and connection state
//! machines, the channels' requests and the re-key timer, all in one poll loop.
//!
//! The loop never waits on a channel's reader or writer: data goes into the channel's
//! buffer (bounded by its window), and channel data is framed only while the output holds
//! less than [`OUTPUT_HIGH_WATER_BYTES`], so control messages (window adjusts, heartbeat
//! replies) never wait behind more than that much of it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::channel::SessionShared;
use crate::connection::{Connection, GlobalWaiter, OpenKind, OpenReply};
use crate::transport::{Transport, TransportError, reason};

/// Channel data framed ahead of the socket at most; see the module docs.
pub(crate) const OUTPUT_HIGH_WATER_BYTES: usize = 256 * 1024;
/// Bytes read from the socket in one poll before the driver lets other tasks run (the
/// readers of the channels it just filled): without a pause a fast server fills whole
/// windows before anyone drains them, and the transfer goes in stop-and-go bursts.
const READ_BUDGET_BYTES: usize = 256 * 1024;
/// A session quiet this long gives its socket buffers back. Not sooner: a bulk transfer
/// is quiet between every two reads, and freeing and regrowing hundreds of KiB there
/// (fresh pages each time) costs more CPU than the encryption.
const TRIM_AFTER_QUIET: Duration = Duration::from_secs(1);
/// After our DISCONNECT is written, how long the server gets to close its end.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// When the socket last gave bytes, readable from any thread.
pub(crate) struct Heard {
    base: Instant,
    /// Nanoseconds after `base`.
    at: AtomicU64,
}

impl Heard {
    pub(crate) fn new() -> Heard {
        Heard {
            base: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn now(&self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.at.store(ns, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Instant {
        self.base + std::time::Duration::from_nanos(self.at.load(Ordering::Relaxed))
    }
}

/// What a [`crate::Session`] handle asks of its driver.
pub(crate) enum Command {
    Open {
        kind: OpenKind,
        reply: OpenReply,
    },
    Global {
        name: &'static str,
        body: Vec<u8>,
        reply: GlobalWaiter,
    },
    /// Say goodbye, then stop.
    Disconnect {
        description: String,
    },
    /// Stop at once (the peer is dead).
    Kill,
    /// A re-exchange now.
    Rekey,
}

/// What a session's driver starts from, once authentication is done.
pub(crate) struct Start<S> {
    pub stream: S,
    pub transport: Transport,
    pub connection: Connection,
    pub session: Arc<SessionShared>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// Messages that arrived with the end of authentication, not handled yet.
    pub pending: VecDeque<Vec<u8>>,
    /// Where the session's end is published.
    pub end: watch::Sender<Option<Arc<str>>>,
    /// Key exchanges so far, for [`crate::Session::kex_count`].
    pub kex_count: Arc<AtomicU64>,
    /// When the socket last gave bytes, for [`crate::Session::last_heard`].
    pub heard: Arc<Heard>,
}

/// Runs a session until it ends; publishes why on `end`.
pub(crate) async fn run<S>(start: Start<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Start {
        stream,
        transport,
        connection,
        session,
        commands,
        pending,
        end,
        kex_count,
        heard,
    } = start;
    let mut driver = Driver {
        stream,
        transport,
        connection,
        session,
        commands,
        dirty: Vec::new(),
        closing: false,
        timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
        timer_at: None,
        kex_seen: 0,
        kex_count,
        heard,
        active_at: Instant::now(),
        trim_timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
        trim_armed: false,
    };
    let result = match driver.early(pending) {
        Ok(()) => poll_fn(|cx| driver.poll(cx)).await,
        Err(e) => Err(e),
    };
    if result.is_ok() && driver.closing {
        linger(&mut driver.stream).await;
    }
    let why: Arc<str> = match result {
        Ok(text) => text.into(),
        Err(e) => e.to_string().into(),
    };
    debug!(reason = %why, "session ended");
    driver.connection.end(&why);
    end.send_replace(Some(why));
}

/// Ends a session we said goodbye to: a FIN after the DISCONNECT, then what the server
/// still sends is read and dropped until it closes its end. Closing with bytes unread
/// would make the kernel reset the connection, and a server busy writing meets the reset
/// before it reads the DISCONNECT, so it would log a reset instead of our goodbye.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(1..) = stream.read(&mut buf).await {}
    })
    .await;
}

struct Driver<S> {
    stream: S,
    transport: Transport,
    connection: Connection,
    session: Arc<SessionShared>,
    commands: mpsc::UnboundedReceiver<Command>,
    dirty: Vec<u32>,
    /// DISCONNECT is queued: stop once it is written.
    closing: bool,
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
    kex_seen: u64,
    /// Key exchanges so far, for [`crate::Session::kex_count`].
    kex_count: Arc<AtomicU64>,
    /// When the socket last gave bytes.
    heard: Arc<Heard>,
    /// When a turn last moved anything.
    active_at: Instant,
    /// Fires [`TRIM_AFTER_QUIET`] after `active_at`, while buffers are held.
    trim_timer: Pin<Box<tokio::time::Sleep>>,
    trim_armed: bool,
}

/// How a session ended, when it ended well.
type Ended = Result<String, TransportError>;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Driver<S> {
    /// Messages that arrived with the end of authentication.
    fn early(&mut self, pending: VecDeque<Vec<u8>>) -> Result<(), TransportError> {
        self.kex_seen = self.transport.kex_count();
        self.kex_count.store(self.kex_seen, Ordering::Relaxed);
        self.transport.kex_completed_at(Instant::now());
        for payload in pending {
            self.connection.handle(&payload)?;
        }
        self.connection.flush(&mut self.transport)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        match self.turn(cx) {
            Ok(Some(text)) => Poll::Ready(Ok(text)),
            Ok(None) => Poll::Pending,
            Err(e) => {
                // Tell the server why, if the socket still takes it.
                let code = match &e {
                    TransportError::Packet(_) => reason::MAC_ERROR,
                    _ => reason::PROTOCOL_ERROR,
                };
                if !matches!(
                    e,
                    TransportError::Disconnected { .. } | TransportError::Lost(_)
                ) {
                    self.transport.disconnect(code, &e.to_string());
                    let _ = Pin::new(&mut self.stream).poll_write(cx, self.transport.output());
                }
                Poll::Ready(Err(e))
            }
        }
    }

    /// One pass until nothing moves; `Some` when the session is over.
    fn turn(&mut self, cx: &mut Context<'_>) -> Result<Option<String>, TransportError> {
        let mut read = 0;
        let mut active = false;
        loop {
            let mut moved = false;
            if !self.closing {
                while let Poll::Ready(command) = self.commands.poll_recv(cx) {
                    moved = true;
                    match command {
                        Some(c) => {
                            if let Some(done) = self.command(c)? {
                                return Ok(Some(done));
                            }
                        }
                        None => {
                            self.goodbye("the client closed the session");
                            break;
                        }
                    }
                    if self.closing {
                        break;
                    }
                }
            }
            self.session.take_dirty(cx.waker(), &mut self.dirty);
            for id in std::mem::take(&mut self.dirty) {
                moved = true;
                self.connection.service(id, &mut self.transport)?;
            }
            if !self.closing && read < READ_BUDGET_BYTES {
                let n = self.read(cx)?;
                read += n;
                moved |= n > 0;
            }
            self.connection
                .pump(&mut self.transport, OUTPUT_HIGH_WATER_BYTES)?;
            moved |= self.write(cx)?;
            if self.closing && self.transport.output_len() == 0 {
                return Ok(Some("disconnected".into()));
            }
            moved |= self.timers(cx);
            if !moved {
                if read >= READ_BUDGET_BYTES {
                    // The socket was not polled to Pending: come back after the others.
                    cx.waker().wake_by_ref();
                }
                let busy = active || read >= READ_BUDGET_BYTES || self.connection.has_sendable();
                self.trim_when_quiet(cx, busy);
                return Ok(None);
            }
            active = true;
        }
    }

    /// Gives the transport's and the channels' buffers back once nothing moved for
    /// [`TRIM_AFTER_QUIET`].
    fn trim_when_quiet(&mut self, cx: &mut Context<'_>, busy: bool) {
        if busy {
            self.active_at = Instant::now();
        }
        if !self.transport.holds_buffers() && !self.connection.holds_buffers() {
            self.trim_armed = false;
            return;
        }
        if !self.trim_armed {
            self.trim_armed = true;
            let at = self.active_at + TRIM_AFTER_QUIET;
            self.trim_timer.as_mut().reset(at.into());
        }
        if self.trim_timer.as_mut().poll(cx).is_pending() {
            return;
        }
        let quiet_at = self.active_at + TRIM_AFTER_QUIET;
        if Instant::now() >= quiet_at {
            self.transport.trim();
            self.connection.release_buffers();
            self.trim_armed = false;
        } else {
            // Busy since the timer was set: once more from the last activity.
            self.trim_timer.as_mut().reset(quiet_at.into());
            let _ = self.trim_timer.as_mut().poll(cx);
        }
    }

    fn command(&mut self, command: Command) -> Result<Option<String>, TransportError> {
        match command {
            Command::Open { kind, reply } => {
                self.connection.open(&kind, reply, &mut self.transport)?;
            }
            Command::Global { name, body, reply } => {
                self.connection
                    .global(name, &body, reply, &mut self.transport)?;
            }
            Command::Disconnect { description } => self.goodbye(&description),
            Command::Kill => return Ok(Some("session cut".into())),
            Command::Rekey => self.transport.rekey(),
        }
        Ok(None)
    }

    fn goodbye(&mut self, description: &str) {
        self.transport
            .disconnect(reason::BY_APPLICATION, description);
        self.closing = true;
    }

    /// Reads what the socket has and handles every whole message in it; the bytes read.
    fn read(&mut self, cx: &mut Context<'_>) -> Result<usize, TransportError> {
        let Driver {
            stream, transport, ..
        } = self;
        let mut buf = ReadBuf::new(transport.read_buf());
        match Pin::new(stream).poll_read(cx, &mut buf) {
            Poll::Pending => return Ok(0),
            Poll::Ready(Err(e)) => {
                return Err(TransportError::Lost(format!("connection lost: {e}")));
            }
            Poll::Ready(Ok(())) => {}
        }
        let n = buf.filled().len();
        if n == 0 {
            return Err(TransportError::Lost(
                "connection closed by the server or the network".into(),
            ));
        }
        transport.filled(n);
        self.heard.now();
        while let Some(range) = self.transport.poll()? {
            let handled = self.connection.handle(self.transport.message(range));
            self.transport.done();
            handled?;
            self.connection.flush(&mut self.transport)?;
        }
        if self.transport.kex_count() != self.kex_seen {
            self.kex_seen = self.transport.kex_count();
            self.transport.kex_completed_at(Instant::now());
            self.kex_count.store(self.kex_seen, Ordering::Relaxed);
            debug!(count = self.kex_seen, "keys re-exchanged");
        }
        Ok(n)
    }

    /// Writes what the output holds, framing more channel data as room appears.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, TransportError> {
        let mut moved = false;
        while self.transport.output_len() > 0 {
            match Pin::new(&mut self.stream).poll_write(cx, self.transport.output()) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    return Err(TransportError::Lost(format!("connection lost: {e}")));
                }
                Poll::Ready(Ok(0)) => {
                    return Err(TransportError::Lost("connection closed".into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.transport.written(n);
                    moved = true;
                    self.connection
                        .pump(&mut self.transport, OUTPUT_HIGH_WATER_BYTES)?;
                }
            }
        }
        if moved {
            // Streams that buffer (a channel through a jump host) need a flush.
            let _ = Pin::new(&mut self.stream).poll_flush(cx);
        }
        Ok(moved)
    }

    /// The re-key timer; true when it fired.
    fn timers(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.transport.next_timeout() else {
            return false;
        };
        if self.timer_at != Some(at) {
            self.timer_at = Some(at);
            self.timer.as_mut().reset(at.into());
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.transport.handle_timeout(Instant::now());
            self.timer_at = None;
            return true;
        }
        false
    }
}
