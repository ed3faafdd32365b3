//! The connection layer's channel table driven by a sequence of messages and of what the
//! application and the driver do.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use super::{Input, fixtures};
use crate::channel::{Channel, SessionShared};
use crate::connection::{ChannelConfig, Connection, IncomingChannel, OpenError, OpenKind};
use crate::hostkey::HostKey;
use crate::transport::{Transport, TransportConfig, TransportError};
use crate::wire::{Reader, Writer};

/// The channel sizes of the connection target: small, so that windows fill.
const CONNECTION_CONFIG: ChannelConfig = ChannelConfig {
    window_bytes: 4096,
    max_packet_bytes: 1024,
    max_channels: 8,
    max_offered: 4,
};

/// What the harness knows of one channel of the table (by our channel number).
#[derive(Default)]
struct ChannelModel {
    /// Our open waiting for its answer.
    opening: Option<oneshot::Receiver<Result<Channel, OpenError>>>,
    /// The application's handle.
    handle: Option<Channel>,
    /// Channel data the connection took for this channel, in order.
    accepted: Vec<u8>,
    /// How much of `accepted` the handle has read.
    read: usize,
}

/// Reads up to `max` bytes from a handle without waiting: `None` when it would wait.
fn read_now(channel: &mut Channel, max: usize) -> Option<std::io::Result<Vec<u8>>> {
    let mut buf = vec![0u8; max];
    let mut rb = ReadBuf::new(&mut buf);
    match Pin::new(channel).poll_read(&mut Context::from_waker(Waker::noop()), &mut rb) {
        Poll::Ready(Ok(())) => Some(Ok(rb.filled().to_vec())),
        Poll::Ready(Err(e)) => Some(Err(e)),
        Poll::Pending => None,
    }
}

/// Checks what a handle read against what the connection accepted for its channel.
fn check_read(model: &mut ChannelModel, data: &[u8], id: u32) {
    let end = model.read + data.len();
    assert!(
        end <= model.accepted.len(),
        "channel {id}: read {end} bytes, the server sent {}",
        model.accepted.len()
    );
    assert_eq!(
        data,
        &model.accepted[model.read..end],
        "channel {id}: read other bytes than the server sent"
    );
    model.read = end;
}

/// A connection-layer message for channel `id`.
fn channel_message(number: u8, id: u32) -> Writer {
    let mut w = Writer::message(number);
    w.u32(id);
    w
}

/// `Connection::handle` with a sequence of connection-layer messages, after the harness
/// opened two channels (a direct-tcpip and a direct-streamlocal), interleaved with what
/// the application and the driver do: read, write, shut down and drop channel handles,
/// accept or refuse the server's channels, service the channels that asked for it.
///
/// Input: a sequence of operations, each an opcode byte and its operands (see the match
/// below); a channel operand is a byte taken modulo 8. Messages are either raw
/// (u16-prefixed) or built from operands.
///
/// Asserts: no panic; a channel never buffers more than its window (4096 bytes here), so
/// all channels together at most 8 windows; what a handle reads is exactly the channel
/// data the connection accepted for it, in order, and never more; the server's offers
/// waiting for the application are at most `max_offered`; once a message fails, the
/// session ends and every handle reads to its end or fails without waiting.
pub fn connection(data: &[u8]) {
    let _ = run_connection(data);
}

/// [`connection`], returning the bytes all handles read.
pub(super) fn run_connection(data: &[u8]) -> usize {
    let config = CONNECTION_CONFIG;
    let mut input = Input::new(data);
    let mut t = Transport::new(TransportConfig::default(), Box::new(|_: &HostKey| Ok(())));
    let session = SessionShared::new();
    let (offers_tx, mut offers) = mpsc::channel::<IncomingChannel>(config.max_offered);
    let mut conn = Connection::new(config, Arc::clone(&session), offers_tx);
    let window = config.window_bytes as usize;
    let max_channels = config.max_channels;
    let mut models: Vec<ChannelModel> =
        (0..max_channels).map(|_| ChannelModel::default()).collect();
    // Channel numbers are given out in order from 0 (the table never fills up to wrap).
    let mut next_id = 0usize;

    let kinds = [
        OpenKind::DirectTcpip {
            host: "target.example".to_owned(),
            port: 22,
            originator: "127.0.0.1".to_owned(),
            originator_port: 40_000,
        },
        OpenKind::DirectStreamlocal {
            path: "/run/target.sock".to_owned(),
        },
    ];
    for kind in &kinds {
        let (tx, rx) = oneshot::channel();
        conn.open(kind, tx, &mut t)
            .expect("opens queue before the key exchange");
        models[next_id].opening = Some(rx);
        next_id += 1;
    }
    // The server's offers the application has not answered, with their channel numbers.
    let mut pending_offers: Vec<(usize, IncomingChannel)> = Vec::new();
    let mut dirty = Vec::new();
    let mut failed: Option<TransportError> = None;

    while !input.is_empty() && failed.is_none() {
        let op = input.u8();
        let ch = u32::from(input.u8() % max_channels as u8);
        let message: Option<Vec<u8>> = match op % 18 {
            0 => Some(input.chunk().unwrap_or_default().to_vec()),
            1 | 2 => {
                // CHANNEL_DATA / EXTENDED_DATA of a length the input picks, filled from
                // the input and then with a counter.
                let len = usize::from(input.u16()) % (window + 64);
                let mut data = input.take(len).to_vec();
                let start = data.len();
                data.extend((start..len).map(|i| i as u8));
                let mut w = if op % 18 == 1 {
                    channel_message(94, ch)
                } else {
                    let mut w = channel_message(95, ch);
                    w.u32(1);
                    w
                };
                w.string(&data);
                Some(w.into_vec())
            }
            3 => {
                let mut w = channel_message(93, ch);
                w.u32(input.u32());
                Some(w.into_vec())
            }
            4 => Some(channel_message(96, ch).into_vec()),
            5 => Some(channel_message(97, ch).into_vec()),
            6 => {
                let mut w = channel_message(91, ch);
                w.u32(u32::from(input.u8()))
                    .u32(input.u32())
                    .u32(u32::from(input.u16()));
                Some(w.into_vec())
            }
            7 => {
                let mut w = channel_message(92, ch);
                w.u32(2).string(b"connect failed").string(b"");
                Some(w.into_vec())
            }
            8 => {
                let mut w = Writer::message(90);
                if input.u8() & 1 == 0 {
                    w.string(b"forwarded-tcpip")
                        .u32(u32::from(input.u8()))
                        .u32(input.u32())
                        .u32(u32::from(input.u16()))
                        .string(b"0.0.0.0")
                        .u32(8080)
                        .string(b"192.0.2.1")
                        .u32(50_000);
                } else {
                    w.string(b"forwarded-streamlocal@openssh.com")
                        .u32(u32::from(input.u8()))
                        .u32(input.u32())
                        .u32(u32::from(input.u16()))
                        .string(b"/tmp/remote.sock")
                        .string(b"");
                }
                Some(w.into_vec())
            }
            9 => {
                let mut w = channel_message(98, ch);
                w.string(b"exit-status").bool(input.u8() & 1 != 0).u32(0);
                Some(w.into_vec())
            }
            10 => {
                let mut w = Writer::message(80);
                w.string(b"hostkeys-00@openssh.com")
                    .bool(input.u8() & 1 != 0);
                for _ in 0..input.u8() % 4 {
                    w.string(&fixtures().blob);
                }
                Some(w.into_vec())
            }
            11 => Some(vec![if input.u8() & 1 == 0 { 81 } else { 82 }]),
            12 => {
                // The application reads up to n bytes.
                let max = 1 + usize::from(input.u16()) % (2 * window);
                let model = &mut models[ch as usize];
                if let Some(handle) = model.handle.as_mut()
                    && let Some(Ok(data)) = read_now(handle, max)
                {
                    check_read(model, &data, ch);
                }
                None
            }
            13 => {
                // The application writes n bytes, or shuts its side down.
                let n = usize::from(input.u16());
                if let Some(handle) = models[ch as usize].handle.as_mut() {
                    let mut cx = Context::from_waker(Waker::noop());
                    if n == 0 {
                        let _ = Pin::new(handle).poll_shutdown(&mut cx);
                    } else {
                        let _ = Pin::new(handle).poll_write(&mut cx, &vec![0x5a; n]);
                    }
                }
                None
            }
            14 => {
                models[ch as usize].handle = None;
                None
            }
            15 => {
                // The application answers the oldest offer.
                if !pending_offers.is_empty() {
                    let (id, offer) = pending_offers.remove(0);
                    if input.u8() & 1 == 0 {
                        models[id].handle = Some(offer.accept());
                    } else {
                        offer.refuse(crate::connection::open_failure::CONNECT_FAILED);
                    }
                }
                None
            }
            16 => {
                // We send a global request that wants a reply.
                let (tx, _rx) = oneshot::channel();
                if let Err(e) = conn.global("keepalive@openssh.com", b"", Some(tx), &mut t) {
                    failed = Some(e);
                }
                None
            }
            _ => {
                // The driver's turn: service the channels that asked for it.
                dirty.clear();
                session.take_dirty(Waker::noop(), &mut dirty);
                for &id in &dirty {
                    if let Err(e) = conn.service(id, &mut t) {
                        failed = Some(e);
                        break;
                    }
                }
                None
            }
        };
        if let Some(message) = message {
            let before: Vec<usize> = models.iter().map(|m| m.accepted.len()).collect();
            let data_for = data_target(&message);
            match conn.handle(&message).and_then(|()| conn.flush(&mut t)) {
                Ok(()) => {
                    if let Some((id, data)) = data_for {
                        models[id].accepted.extend_from_slice(data);
                    }
                }
                Err(e) => failed = Some(e),
            }
            // Only CHANNEL_DATA adds to what a channel may deliver.
            for (i, m) in models.iter().enumerate() {
                if data_for.map(|(id, _)| id) != Some(i) {
                    assert_eq!(m.accepted.len(), before[i]);
                }
            }
        }
        // Answers to our opens, and offers from the server.
        for model in &mut models {
            if let Some(rx) = model.opening.as_mut() {
                match rx.try_recv() {
                    Ok(Ok(channel)) => {
                        model.handle = Some(channel);
                        model.opening = None;
                    }
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                        model.opening = None;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
            }
        }
        while let Ok(offer) = offers.try_recv() {
            assert!(next_id < max_channels, "more channels than the table holds");
            models[next_id] = ChannelModel::default();
            pending_offers.push((next_id, offer));
            next_id += 1;
        }
        assert!(
            pending_offers.len() <= config.max_offered,
            "{} offers wait",
            pending_offers.len()
        );
        let mut total = 0;
        for m in &models {
            if let Some(h) = &m.handle {
                assert!(
                    h.buffered() <= window,
                    "a channel buffers {} bytes",
                    h.buffered()
                );
                total += h.buffered();
            }
        }
        assert!(total <= max_channels * window);
        if next_id >= max_channels {
            // The model numbers channels in order; the harness stops before they wrap.
            break;
        }
    }

    if let Some(e) = failed {
        let reason: Arc<str> = e.to_string().into();
        conn.end(&reason);
        for (id, model) in models.iter_mut().enumerate() {
            let Some(mut handle) = model.handle.take() else {
                continue;
            };
            // Every handle reads what is left, then its end or an error, without waiting.
            for _ in 0..=window {
                match read_now(&mut handle, window) {
                    Some(Ok(data)) if data.is_empty() => break,
                    Some(Ok(data)) => check_read(model, &data, id as u32),
                    Some(Err(_)) => break,
                    None => panic!("channel {id} waits after the session ended"),
                }
            }
        }
    }
    models.iter().map(|m| m.read).sum()
}

/// The channel and data of a CHANNEL_DATA message (extended data is not delivered).
fn data_target(message: &[u8]) -> Option<(usize, &[u8])> {
    let mut r = Reader::new(message);
    (r.u8().ok()? == 94).then_some(())?;
    let id = r.u32().ok()?;
    let data = r.string().ok()?;
    r.finish().ok()?;
    Some((usize::try_from(id).ok()?, data))
}
