//! Moving bytes between a local socket and an SSH channel.
//!
//! russh delivers a channel's data through a bounded queue that its session loop waits
//! on: a reader that stops would stall every channel of the session, heartbeats included.
//! So the channel side is always drained into a bounded per-connection queue; while that
//! queue is full the session waits (backpressure, so a slow but live reader still gets
//! its data), and a reader that makes no progress for [`STALLED_READER_TIMEOUT`] is cut
//! off so that the other connections of the tunnel carry on.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::status::ConnectionGuard;

/// Bytes read from the local socket per call; 64 KiB beat tokio's 8 KiB default by 15–25 %.
const LOCAL_READ_BYTES: usize = 64 * 1024;
/// Local data read ahead of the channel's window, at most. While the server's
/// WINDOW_ADJUST waits behind data in its stream (russh reads on only once that data is
/// queued), an echoing peer sends back up to what is delivered meanwhile: about the
/// window we grant (russh's 2 MiB) on top of the queues. Twice the window covers it.
const UPSTREAM_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Channel packets (at most 32 KiB each) queued towards a local reader that is slower than
/// the SSH link: about 2 MiB per connection, on top of russh's own channel queue.
const DOWNSTREAM_QUEUE_PACKETS: usize = 64;
/// Queued packets written to the local socket with one vectored write, at most: a reader
/// that falls behind catches up in fewer, larger writes (as OpenSSH writes its whole
/// channel buffer).
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// How long a local reader may take no data at all, with its queue full, before its
/// connection is closed to unblock the rest of the session. A tunnel uses less when its
/// heartbeat window is short: the session must never stall long enough to look dead.
pub const STALLED_READER_TIMEOUT: Duration = Duration::from_secs(5);

/// The stall bound for a tunnel whose heartbeat declares death after `heartbeat_window`.
pub fn stall_timeout(heartbeat_window: Duration) -> Duration {
    STALLED_READER_TIMEOUT.min(heartbeat_window / 2)
}
/// How long closing the channel may take before we give up on a polite close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a connection ended badly.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// The local socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The SSH channel failed (session lost).
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    /// The local reader took nothing for this long with its queue full.
    #[error(
        "local peer stopped reading for {0:?}; connection closed so the session's other connections are not held up"
    )]
    StalledReader(Duration),
}

enum Down {
    Data(Bytes),
    Eof,
    Close,
}

/// Channel packets waiting for the local writer, as one [`Buf`] whose chunks go out in a
/// single vectored write. Never holds an empty part, so `chunk` is empty only at the end.
#[derive(Default)]
struct Batch {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Batch {
    fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.parts.push_back(data);
        }
    }
}

impl Buf for Batch {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b)
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of a batch");
        self.len -= cnt;
        while cnt > 0 {
            let front = self.parts.front_mut().expect("len counts the parts");
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(&self.parts) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }
}

/// Sends CLOSE for the channel when dropped (russh sends nothing for a dropped half,
/// which would leak the server's side of the channel).
struct CloseOnDrop(Option<ChannelWriteHalf<Msg>>);

impl CloseOnDrop {
    fn get(&self) -> &ChannelWriteHalf<Msg> {
        self.0
            .as_ref()
            .expect("channel write half present until close")
    }

    async fn close(mut self) {
        if let Some(w) = self.0.take() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, w.close()).await;
        }
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(w) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, w.close()).await;
            });
        }
    }
}

/// Carries bytes both ways until both sides have sent EOF, either side closes, or
/// `cancel` fires; then closes the channel.
///
/// # Errors
/// [`PumpError`] when a side fails or the local reader stalls.
///
/// # Cancellation
/// Returns promptly when `cancel` fires; the channel is closed either way.
pub(crate) async fn pump<S>(
    socket: S,
    channel: Channel<Msg>,
    conn: &ConnectionGuard,
    cancel: &CancellationToken,
    stall: Duration,
) -> Result<(), PumpError>
where
    S: AsyncRead + AsyncWrite + Send,
{
    let counters = conn.counters();
    let (mut ch_rd, ch_wr) = channel.split();
    let ch_wr = CloseOnDrop(Some(ch_wr));
    let (mut rd, mut wr) = tokio::io::split(socket);

    let result = {
        // Upstream reads the local socket ahead of the channel's window, into a buffer of
        // at most UPSTREAM_BUFFER_BYTES, so that waiting for window never stops us reading.
        // Otherwise a peer that echoes (or answers while it is sent to) can lock up the
        // session: we wait for the server's WINDOW_ADJUST and stop reading the peer; the
        // peer, blocked writing to us, stops reading what we deliver; our queue fills; the
        // session loop waits on it, so the WINDOW_ADJUST behind the data is never read.
        let room = Semaphore::new(UPSTREAM_BUFFER_BYTES);
        let (ahead_tx, mut ahead) = mpsc::unbounded_channel::<Bytes>();
        let read_local = async {
            let ahead_tx = ahead_tx;
            let mut buf = BytesMut::new();
            loop {
                room.acquire_many(LOCAL_READ_BYTES as u32)
                    .await
                    .expect("the semaphore is never closed")
                    .forget();
                buf.reserve(LOCAL_READ_BYTES);
                let n = rd.read_buf(&mut buf).await?;
                room.add_permits(LOCAL_READ_BYTES - n);
                if n == 0 {
                    // Dropping the sender tells `send_up` to finish with EOF.
                    return Ok::<(), PumpError>(());
                }
                counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                if ahead_tx.send(buf.split().freeze()).is_err() {
                    return Ok(());
                }
            }
        };
        let send_up = async {
            while let Some(data) = ahead.recv().await {
                let len = data.len();
                ch_wr.get().data_bytes(data).await?;
                room.add_permits(len);
            }
            ch_wr.get().eof().await?;
            Ok::<(), PumpError>(())
        };
        let up = async {
            tokio::try_join!(read_local, send_up)?;
            Ok::<(), PumpError>(())
        };

        let (queue, mut queued) = mpsc::channel::<Down>(DOWNSTREAM_QUEUE_PACKETS);
        let drain = async move {
            loop {
                let item = match ch_rd.wait().await {
                    Some(ChannelMsg::Data { data }) => Down::Data(data),
                    Some(ChannelMsg::Eof) => Down::Eof,
                    Some(ChannelMsg::Close) | None => Down::Close,
                    Some(_) => continue,
                };
                let last = !matches!(item, Down::Data(_));
                match tokio::time::timeout(stall, queue.send(item)).await {
                    Ok(Ok(())) if !last => {}
                    Ok(_) => return Ok(()),
                    Err(_) => return Err(PumpError::StalledReader(stall)),
                }
            }
        };
        let writer = async {
            let mut batch = Batch::default();
            while let Some(first) = queued.recv().await {
                // Take what else is queued already, writing a batch at a time.
                let mut next = Some(first);
                let end = loop {
                    match next.take() {
                        Some(Down::Data(data)) => {
                            batch.push(data);
                            if batch.len >= WRITE_BATCH_BYTES {
                                write_batch(&mut wr, &mut batch, counters).await?;
                            }
                            next = queued.try_recv().ok();
                        }
                        Some(Down::Eof) => break Some(true),
                        Some(Down::Close) => break Some(false),
                        None => break None,
                    }
                };
                write_batch(&mut wr, &mut batch, counters).await?;
                match end {
                    None => {}
                    Some(true) => {
                        wr.shutdown().await?;
                        return Ok::<bool, PumpError>(true);
                    }
                    Some(false) => break,
                }
            }
            let _ = wr.shutdown().await;
            Ok(false)
        };
        let down = async {
            tokio::pin!(drain, writer);
            let mut drained = false;
            loop {
                tokio::select! {
                    r = &mut drain, if !drained => {
                        drained = true;
                        r?;
                    }
                    w = &mut writer => return w,
                }
            }
        };

        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break Ok(()),
                r = &mut up, if !up_done => {
                    up_done = true;
                    if let Err(e) = r {
                        break Err(e);
                    }
                }
                r = &mut down, if !down_done => {
                    down_done = true;
                    match r {
                        // EOF from the server: keep sending our side until it ends too.
                        Ok(true) => {}
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
            }
            if up_done && down_done {
                break Ok(());
            }
        }
    };
    ch_wr.close().await;
    result
}

/// Writes out and empties `batch`, counting its bytes as received.
async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: &mut Batch,
    counters: &crate::status::ForwardCounters,
) -> std::io::Result<()> {
    let n = batch.len as u64;
    if n > 0 {
        wr.write_all_buf(batch).await?;
        counters.bytes_in.fetch_add(n, Ordering::Relaxed);
    }
    Ok(())
}

/// Carries bytes between two streams (used where the channel is already a stream, as
/// behind a reverse SOCKS handshake), counting them.
///
/// # Errors
/// The first I/O error of either side.
pub(crate) async fn copy_streams<A, B>(
    channel_side: &mut A,
    local_side: &mut B,
    conn: &ConnectionGuard,
    cancel: &CancellationToken,
) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        _ = cancel.cancelled() => Ok(()),
        r = tokio::io::copy_bidirectional_with_sizes(channel_side, local_side, LOCAL_READ_BYTES, LOCAL_READ_BYTES) => {
            let (in_bytes, out_bytes) = r?;
            let c = conn.counters();
            c.bytes_in.fetch_add(in_bytes, Ordering::Relaxed);
            c.bytes_out.fetch_add(out_bytes, Ordering::Relaxed);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(parts: &[&'static [u8]]) -> Batch {
        let mut b = Batch::default();
        for p in parts {
            b.push(Bytes::from_static(p));
        }
        b
    }

    #[test]
    fn a_batch_hands_out_its_parts_in_order_across_partial_advances() {
        let mut b = batch(&[b"abc", b"", b"defg", b"h"]);
        assert_eq!(b.remaining(), 8);
        assert_eq!(b.parts.len(), 3, "empty parts are not kept");
        let mut out = Vec::new();
        // Advance by sizes that split parts and cross their boundaries.
        for step in [2, 3, 1, 2] {
            let take = step.min(b.remaining());
            let mut left = take;
            while left > 0 {
                let n = b.chunk().len().min(left);
                out.extend_from_slice(&b.chunk()[..n]);
                b.advance(n);
                left -= n;
            }
        }
        assert_eq!(out, b"abcdefgh");
        assert_eq!(b.remaining(), 0);
        assert!(b.chunk().is_empty());
    }

    #[test]
    fn a_batch_fills_io_slices_from_where_it_stands() {
        let mut b = batch(&[b"abc", b"defg", b"h"]);
        b.advance(4);
        let mut slots = [IoSlice::new(&[]); 4];
        let n = b.chunks_vectored(&mut slots);
        let got: Vec<u8> = slots[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(got, b"efgh");
        let mut one = [IoSlice::new(&[]); 1];
        assert_eq!(b.chunks_vectored(&mut one), 1);
        assert_eq!(&*one[0], b"efg");
    }
}
