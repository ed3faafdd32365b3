//! One channel (RFC 4254 §5): the state its handle and the session's driver share, and
//! the handle itself, an `AsyncRead + AsyncWrite` byte stream.
//!
//! Flow control is OpenSSH's: the server may send at most the window we granted; what
//! it sends waits here until the handle's reader takes it, and only what the reader took
//! is granted again (WINDOW_ADJUST). A reader that stops therefore stops only its own
//! channel, and the data buffered for a channel never exceeds its window. In the other
//! direction the handle's writes wait in a bounded queue until the server's window lets
//! the driver frame them.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a channel's handle may queue for sending before its writes wait.
pub(crate) const SEND_QUEUE_BYTES: usize = 256 * 1024;
/// At most this much is read in one [`ChannelWriter::poll_read_from`].
const READ_FROM_BYTES: usize = 64 * 1024;

/// The session-wide part channels need: the driver's list of channels with work to do.
pub(crate) struct SessionShared {
    dirty: Mutex<Dirty>,
}

#[derive(Default)]
struct Dirty {
    ids: Vec<u32>,
    waker: Option<Waker>,
}

impl SessionShared {
    pub(crate) fn new() -> Arc<SessionShared> {
        Arc::new(SessionShared {
            dirty: Mutex::new(Dirty::default()),
        })
    }

    fn push(&self, id: u32) {
        let mut dirty = lock(&self.dirty);
        dirty.ids.push(id);
        if let Some(w) = dirty.waker.take() {
            w.wake();
        }
    }

    /// The channels that asked for the driver since the last call; registers the
    /// driver's waker for the next.
    pub(crate) fn take_dirty(&self, waker: &Waker, into: &mut Vec<u32>) {
        let mut dirty = lock(&self.dirty);
        into.append(&mut dirty.ids);
        match &dirty.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => dirty.waker = Some(waker.clone()),
        }
    }
}

/// Where a channel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// We sent CHANNEL_OPEN; no answer yet.
    Opening,
    /// The server opened it; our application has not accepted or refused it yet.
    Offered,
    /// The application accepted it (CONFIRMATION to be sent).
    Accepted,
    /// The application refused it (OPEN_FAILURE to be sent).
    Refused,
    /// Open in both directions.
    Open,
}

/// What the handle and the driver share about one channel.
pub(crate) struct ChannelState {
    pub phase: Phase,
    /// The server's number for this channel.
    pub remote_id: u32,
    // Receiving.
    /// Data received and not yet read; never more than the window we granted.
    pub recv: BytesMut,
    /// Bytes the server may still send before our next WINDOW_ADJUST.
    pub local_window: u32,
    /// Bytes read by the handle since the last WINDOW_ADJUST.
    pub consumed: u32,
    /// The window we grant when nothing is outstanding.
    pub window_max: u32,
    /// The largest data packet we take.
    pub local_max_packet: u32,
    /// The server sent EOF.
    pub recv_eof: bool,
    pub reader: Option<Waker>,
    // Sending.
    /// Bytes the server lets us send.
    pub remote_window: u32,
    /// The largest data packet the server takes.
    pub remote_max_packet: u32,
    /// Written by the handle, not yet framed.
    pub send: BytesMut,
    /// The handle shut its writing side down: EOF once `send` is drained.
    pub send_eof: bool,
    pub eof_sent: bool,
    pub writer: Option<Waker>,
    // Life.
    /// The handle is gone: CLOSE once `send` is drained.
    pub dropped: bool,
    pub close_sent: bool,
    pub close_received: bool,
    /// Why the session ended, once it has; every read and write fails with it then.
    pub gone: Option<Arc<str>>,
    /// Whether the channel is on the driver's list already.
    scheduled: bool,
}

/// One channel's shared state.
pub(crate) struct ChannelShared {
    pub id: u32,
    session: Arc<SessionShared>,
    state: Mutex<ChannelState>,
}

impl ChannelShared {
    pub(crate) fn new(
        id: u32,
        session: Arc<SessionShared>,
        phase: Phase,
        window_max: u32,
        local_max_packet: u32,
    ) -> Arc<ChannelShared> {
        Arc::new(ChannelShared {
            id,
            session,
            state: Mutex::new(ChannelState {
                phase,
                remote_id: 0,
                recv: BytesMut::new(),
                local_window: window_max,
                consumed: 0,
                window_max,
                local_max_packet,
                recv_eof: false,
                reader: None,
                remote_window: 0,
                remote_max_packet: 0,
                send: BytesMut::new(),
                send_eof: false,
                eof_sent: false,
                writer: None,
                dropped: false,
                close_sent: false,
                close_received: false,
                gone: None,
                scheduled: false,
            }),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ChannelState> {
        lock(&self.state)
    }

    /// Puts the channel on the driver's list (once until the driver takes it).
    pub(crate) fn schedule(&self, state: &mut ChannelState) {
        if !state.scheduled {
            state.scheduled = true;
            self.session.push(self.id);
        }
    }

    /// The driver took the channel off its list.
    pub(crate) fn unschedule(state: &mut ChannelState) {
        state.scheduled = false;
    }
}

impl ChannelState {
    /// Whether a WINDOW_ADJUST is due (OpenSSH's rule, `channels.c` `channel_check_window`):
    /// something was read, and either more than three packets' worth is outstanding or
    /// the window fell below half. Never after a CLOSE either way.
    pub(crate) fn adjust_due(&self) -> bool {
        let outstanding = self.window_max.saturating_sub(self.local_window);
        self.consumed > 0
            && !self.close_sent
            && !self.close_received
            && (outstanding > self.local_max_packet.saturating_mul(3)
                || self.local_window < self.window_max / 2)
    }

    /// Wakes whoever waits on the handle.
    pub(crate) fn wake_all(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn broken(&self) -> Option<io::Error> {
        if let Some(reason) = &self.gone {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                reason.to_string(),
            ));
        }
        if self.close_received {
            return Some(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the server closed the channel",
            ));
        }
        None
    }
}

/// An open channel: a byte stream to wherever the server connected it.
///
/// Reading takes what the server sent (end of file after its EOF); writing queues data
/// for the server (shutdown sends EOF once everything written is framed). Dropping the
/// handle closes the channel once what was written has been sent.
pub struct Channel {
    shared: Arc<ChannelShared>,
}

impl Channel {
    pub(crate) fn new(shared: Arc<ChannelShared>) -> Channel {
        Channel { shared }
    }

    /// Bytes received and not read yet (never more than the channel's window).
    pub fn buffered(&self) -> usize {
        self.shared.lock().recv.len()
    }

    /// Memory the channel holds to receive and to send, data or not: kept while data
    /// flows, given back once the session has been quiet for a second.
    pub fn buffer_capacity(&self) -> BufferCapacity {
        let state = self.shared.lock();
        BufferCapacity {
            receive: state.recv.capacity(),
            send: state.send.capacity(),
        }
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.shared.id)
            .finish()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.dropped = true;
        // Nobody will read what is buffered: let it go now.
        state.recv = BytesMut::new();
        self.shared.schedule(&mut state);
    }
}

/// What [`Channel::buffer_capacity`] reports, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferCapacity {
    /// The buffer of data received and not read yet.
    pub receive: usize,
    /// The queue of data written and not sent yet.
    pub send: usize,
}

impl BufferCapacity {
    /// Both buffers together.
    pub fn total(&self) -> usize {
        self.receive + self.send
    }
}

/// Moves an emptied buffer's start back to the start of its allocation, without copying
/// or allocating: `BytesMut` counts the room before its start out of its capacity until a
/// later reserve takes it back, so the capacity would otherwise depend on where the last
/// read ended.
pub(crate) fn rewind_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() {
        // False only when there is no room before the start: nothing to rewind.
        let _ = buf.try_reclaim(buf.capacity() + 1);
    }
}

impl ChannelShared {
    /// Takes received data with `take(data) -> Poll<io::Result<usize>>` (how much of it
    /// was used); `Ok(0)` at the server's EOF. Window accounting as the module docs say.
    fn poll_take(
        &self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut Context<'_>, &[u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        if state.recv.is_empty() {
            if state.recv_eof || state.close_received {
                return Poll::Ready(Ok(0));
            }
            if let Some(e) = state.broken() {
                return Poll::Ready(Err(e));
            }
            state.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = match take(cx, &state.recv) {
            Poll::Ready(Ok(n)) => n.min(state.recv.len()),
            other => return other,
        };
        // An emptied buffer keeps its capacity: during a transfer it empties after every
        // read, and the driver gives it back once the session is quiet (`release_buffers`).
        state.recv.advance(n);
        rewind_if_empty(&mut state.recv);
        // n is at most the window, a u32.
        state.consumed = state.consumed.saturating_add(n as u32);
        if state.adjust_due() {
            self.schedule(&mut state);
        }
        Poll::Ready(Ok(n))
    }

    /// Queues data for sending with `fill(queue, room) -> Poll<io::Result<usize>>`, which
    /// appends at most `room` bytes to `queue` and says how many.
    fn poll_queue(
        &self,
        cx: &mut Context<'_>,
        fill: impl FnOnce(&mut Context<'_>, &mut BytesMut, usize) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        if let Some(e) = state.broken() {
            return Poll::Ready(Err(e));
        }
        if state.send_eof {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        let room = SEND_QUEUE_BYTES.saturating_sub(state.send.len());
        if room == 0 {
            state.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = std::task::ready!(fill(cx, &mut state.send, room))?;
        if n > 0 {
            self.schedule(&mut state);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        if state.send.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = state.broken() {
            return Poll::Ready(Err(e));
        }
        state.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        if state.eof_sent || state.close_sent {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = state.broken() {
            return Poll::Ready(Err(e));
        }
        if !state.send_eof {
            state.send_eof = true;
            self.schedule(&mut state);
        }
        state.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Copies received data into a caller's buffer (plain `poll_read`).
fn read_into(_: &mut Context<'_>, data: &[u8], buf: &mut ReadBuf<'_>) -> Poll<io::Result<usize>> {
    let n = data.len().min(buf.remaining());
    buf.put_slice(&data[..n]);
    Poll::Ready(Ok(n))
}

/// Appends a caller's data to the send queue (plain `poll_write`).
fn append(
    _: &mut Context<'_>,
    queue: &mut BytesMut,
    room: usize,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    let n = room.min(buf.len());
    queue.extend_from_slice(&buf[..n]);
    Poll::Ready(Ok(n))
}

impl Channel {
    /// The reading and the writing half, for moving data both ways at once.
    pub fn split(&mut self) -> (ChannelReader<'_>, ChannelWriter<'_>) {
        (ChannelReader(&self.shared), ChannelWriter(&self.shared))
    }
}

impl AsyncRead for Channel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.shared
            .poll_take(cx, |cx, data| read_into(cx, data, buf))
            .map_ok(drop)
    }
}

impl AsyncWrite for Channel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.shared
            .poll_queue(cx, |cx, queue, room| append(cx, queue, room, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_shutdown(cx)
    }
}

/// The reading half of a [`Channel`] (see [`Channel::split`]).
pub struct ChannelReader<'a>(&'a ChannelShared);

impl ChannelReader<'_> {
    /// Writes received data straight from the channel's buffer into `to`, with no copy
    /// in between; `Ok(0)` at the server's EOF. Only what `to` took is consumed.
    ///
    /// # Errors
    /// The channel broke, or `to` failed.
    pub fn poll_write_to<W: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut to: Pin<&mut W>,
    ) -> Poll<io::Result<usize>> {
        self.0
            .poll_take(cx, |cx, data| match to.as_mut().poll_write(cx, data) {
                Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                other => other,
            })
    }
}

impl AsyncRead for ChannelReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0
            .poll_take(cx, |cx, data| read_into(cx, data, buf))
            .map_ok(drop)
    }
}

/// The writing half of a [`Channel`] (see [`Channel::split`]).
pub struct ChannelWriter<'a>(&'a ChannelShared);

impl ChannelWriter<'_> {
    /// Reads from `from` straight into the channel's send queue, with no copy in between;
    /// `Ok(0)` when `from` is at its end.
    ///
    /// # Errors
    /// The channel broke or was shut down, or `from` failed.
    pub fn poll_read_from<R: AsyncRead + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut from: Pin<&mut R>,
    ) -> Poll<io::Result<usize>> {
        self.0.poll_queue(cx, |cx, queue, room| {
            let before = queue.len();
            queue.reserve(room.min(READ_FROM_BYTES));
            let mut limited = queue.limit(room);
            let got = tokio_util::io::poll_read_buf(from.as_mut(), cx, &mut limited);
            got.map_ok(|_| queue.len() - before)
        })
    }
}

impl AsyncWrite for ChannelWriter<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0
            .poll_queue(cx, |cx, queue, room| append(cx, queue, room, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_shutdown(cx)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer read to its end counts its whole allocation again; one still holding data
    /// is left alone.
    #[test]
    fn an_emptied_buffer_is_rewound_to_its_whole_capacity() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[7; 40]);
        buf.advance(30);
        rewind_if_empty(&mut buf);
        assert_eq!(buf.capacity(), 34);
        assert_eq!(&buf[..], &[7; 10]);
        buf.advance(10);
        assert_eq!(buf.capacity(), 24);
        rewind_if_empty(&mut buf);
        assert_eq!(buf.capacity(), 64);
        rewind_if_empty(&mut buf);
        assert_eq!(buf.capacity(), 64);
    }
}
