//! The transport layer (RFC 4253 §§4–9) as a state machine without I/O: the version
//! exchange, key exchange and re-exchange with OpenSSH's strict mode (the Terrapin fix,
//! PROTOCOL §1.10), and extension negotiation (RFC 8308).
//!
//! The driver reads the socket into [`Transport::read_buf`], calls [`Transport::poll`] for
//! the next message meant for the layers above, and writes [`Transport::output`] to the
//! socket. Key exchange messages, IGNORE, DEBUG and EXT_INFO are handled here and never
//! reach the caller. Nothing here awaits, sleeps or reads a clock: time comes in through
//! [`Transport::handle_timeout`].
//!
//! Files: `version` reads the server's identification line; `key_exchange` runs each key
//! exchange from KEXINIT to NEWKEYS and decides when to re-key.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use tracing::{debug, trace};

use crate::cipher;
use crate::error::WireError;
use crate::hostkey::{self, HostKey, HostKeyError};
use crate::kex::{self, KexError};
use crate::msg;
use crate::negotiate::{Chosen, NegotiationError};
use crate::packet::{Incoming, Outgoing, PacketError};
use crate::wire::{Reader, Writer};

mod key_exchange;
mod version;

use key_exchange::{Kex, is_kex_message};

/// Disconnect reason codes we send (RFC 4250 §4.2.2).
pub mod reason {
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 2;
    /// No common algorithm, or the key exchange failed.
    pub const KEY_EXCHANGE_FAILED: u32 = 3;
    /// A packet failed its MAC.
    pub const MAC_ERROR: u32 = 5;
    /// We are going away.
    pub const BY_APPLICATION: u32 = 11;
    /// The host key was refused.
    pub const HOST_KEY_NOT_VERIFIABLE: u32 = 9;
}

/// Upper-layer messages held back during a key exchange, in bytes. The driver sends no
/// channel data then, so only control messages (window adjusts, replies) queue here.
const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// At most this many extensions in one EXT_INFO.
const MAX_EXTENSIONS: u32 = 64;
/// What the transport offers and when it re-keys.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Our identification string, without CR LF (`SSH-2.0-tunneld_0.1.0`).
    pub client_version: String,
    /// Key exchange methods, best first.
    pub kex: Vec<String>,
    /// Host key algorithms, best first (callers put the types known_hosts has first).
    pub host_key_algorithms: Vec<String>,
    /// Ciphers, best first.
    pub ciphers: Vec<String>,
    /// MACs for non-AEAD ciphers, best first.
    pub macs: Vec<String>,
    /// Re-key after this many bytes in either direction, at the most: each cipher's own
    /// limit applies below it (OpenSSH's: 64 GiB for AES, 1 GiB for chacha20-poly1305).
    pub rekey_after_bytes: u64,
    /// Re-key after this long.
    pub rekey_after: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            client_version: format!("SSH-2.0-tunneld_{}", env!("CARGO_PKG_VERSION")),
            kex: kex::KEX_METHODS.iter().map(|s| s.to_string()).collect(),
            host_key_algorithms: hostkey::HOST_KEY_ALGORITHMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ciphers: cipher::preferred_ciphers()
                .into_iter()
                .map(str::to_string)
                .collect(),
            macs: cipher::MACS.iter().map(|s| s.to_string()).collect(),
            // By volume, the cipher's own limit, as OpenSSH does without a RekeyLimit: a
            // re-exchange every GiB would pause a fast transfer every second or so. By time,
            // an hour.
            rekey_after_bytes: u64::MAX,
            rekey_after: Duration::from_secs(3600),
        }
    }
}

/// Decides whether the server's host key is trusted (known_hosts policy lives with the
/// caller). Called once, during the first key exchange; a re-exchange must present the
/// same key.
pub type HostKeyCheck = Box<dyn FnMut(&HostKey) -> Result<(), String> + Send>;

/// Why the transport stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server's identification line is missing or malformed.
    #[error("bad identification from the server: {0}")]
    Banner(String),
    /// The connection closed (or was reset) before the server identified itself: how a
    /// server that is refusing this address answers (OpenSSH 9.8+ `PerSourcePenalties`,
    /// `MaxStartups`, a firewall), not only a dead one.
    #[error(
        "connection closed before the server sent its identification: the server may be \
         refusing this address (OpenSSH 9.8+ PerSourcePenalties after failed or aborted \
         logins from it, MaxStartups when busy, or a firewall)"
    )]
    ClosedBeforeBanner,
    /// A packet could not be read.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// A message did not parse.
    #[error("malformed {what} message: {source}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What is wrong with it.
        source: WireError,
    },
    /// No common algorithms, or a malformed KEXINIT.
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    /// The key exchange computation failed.
    #[error("key exchange failed: {0}")]
    Kex(#[from] KexError),
    /// The server's host key or its signature is unusable.
    #[error("host key: {0}")]
    HostKey(#[from] HostKeyError),
    /// The host key was refused by the caller's policy.
    #[error("{0}")]
    HostKeyRejected(String),
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection itself was lost or closed.
    #[error("{0}")]
    Lost(String),
    /// The server sent DISCONNECT.
    #[error("server disconnected: {message} (reason {code})")]
    Disconnected {
        /// Reason code (RFC 4250 §4.2.2).
        code: u32,
        /// The server's description.
        message: String,
    },
}

impl TransportError {
    fn malformed(what: &'static str) -> impl FnOnce(WireError) -> TransportError {
        move |source| TransportError::Malformed { what, source }
    }
}

/// The client side of one SSH transport.
pub struct Transport {
    config: TransportConfig,
    check: Option<HostKeyCheck>,
    incoming: Incoming,
    outgoing: Outgoing,
    /// The server's identification line, once read (without CR LF).
    server_version: Option<String>,
    pre_banner_lines: usize,
    kex: Kex,
    /// H of the first exchange.
    session_id: Option<Vec<u8>>,
    /// The host key blob of the first exchange: a re-exchange must present the same.
    host_key_blob: Option<Vec<u8>>,
    host_key: Option<HostKey>,
    /// The algorithms in force (after the first NEWKEYS).
    chosen: Option<Chosen>,
    /// Whether the server agreed to strict key exchange.
    strict: bool,
    /// Whether the first exchange is complete in both directions.
    established: bool,
    /// Upper-layer messages held back while our KEXINIT is out and NEWKEYS is not.
    queued: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    server_sig_algs: Option<Vec<String>>,
    /// When the last exchange completed (set by the driver's clock).
    last_kex: Option<Instant>,
    /// A re-exchange is due (by time) as soon as the current one, if any, ends.
    rekey_due: bool,
    /// Key exchanges completed, the first included.
    kex_count: u64,
}

impl Transport {
    /// A transport that has queued our identification line and first KEXINIT.
    pub fn new(config: TransportConfig, check: HostKeyCheck) -> Transport {
        let mut t = Transport {
            config,
            check: Some(check),
            incoming: Incoming::new(),
            outgoing: Outgoing::new(),
            server_version: None,
            pre_banner_lines: 0,
            kex: Kex::Idle,
            session_id: None,
            host_key_blob: None,
            host_key: None,
            chosen: None,
            strict: false,
            established: false,
            queued: VecDeque::new(),
            queued_bytes: 0,
            server_sig_algs: None,
            last_kex: None,
            rekey_due: false,
            kex_count: 0,
        };
        let line = format!("{}\r\n", t.config.client_version);
        t.outgoing.raw(line.as_bytes());
        t.send_kexinit();
        t
    }

    /// Room to read the socket into.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.incoming.spare()
    }

    /// `n` bytes were read into [`Transport::read_buf`].
    pub fn filled(&mut self, n: usize) {
        self.incoming.filled(n);
    }

    /// Bytes to write to the socket.
    pub fn output(&self) -> &[u8] {
        self.outgoing.pending()
    }

    /// `n` bytes of [`Transport::output`] were written.
    pub fn written(&mut self, n: usize) {
        self.outgoing.written(n);
    }

    /// How many bytes wait to be written.
    pub fn output_len(&self) -> usize {
        self.outgoing.pending_len()
    }

    /// Gives back buffers a quiet session does not need.
    pub fn trim(&mut self) {
        self.incoming.trim();
        self.outgoing.trim();
    }

    /// Whether [`Transport::trim`] would give anything back.
    pub fn holds_buffers(&self) -> bool {
        self.incoming.capacity() > 0 || self.outgoing.excess_capacity() > 0
    }

    /// Whether the first key exchange is complete (authentication may start).
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// The session identifier (H of the first exchange).
    pub fn session_id(&self) -> Option<&[u8]> {
        self.session_id.as_deref()
    }

    /// The server's identification line, without CR LF.
    pub fn server_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    /// The server's host key, once the first exchange verified it.
    pub fn host_key(&self) -> Option<&HostKey> {
        self.host_key.as_ref()
    }

    /// The algorithms in force.
    pub fn algorithms(&self) -> Option<&Chosen> {
        self.chosen.as_ref()
    }

    /// The server's `server-sig-algs` (RFC 8308 §3.1), if it sent them.
    pub fn server_sig_algs(&self) -> Option<&[String]> {
        self.server_sig_algs.as_deref()
    }

    /// Key exchanges completed so far, the first included.
    pub fn kex_count(&self) -> u64 {
        self.kex_count
    }

    /// Whether channel data may be framed now: not while our KEXINIT is out and our
    /// NEWKEYS is not (RFC 4253 §7.1). The driver leaves data in the channels meanwhile.
    pub fn can_send_data(&self) -> bool {
        self.established && matches!(self.kex, Kex::Idle | Kex::AwaitNewKeys { .. })
    }

    /// Sends an upper-layer message (held back during a key exchange).
    ///
    /// # Errors
    /// Too much held back during a key exchange: the peer is not finishing it.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), TransportError> {
        if self.can_send_data() {
            self.outgoing.packet(|b| b.extend_from_slice(payload));
            self.check_rekey_by_volume();
            return Ok(());
        }
        self.queued_bytes += payload.len();
        if self.queued_bytes > MAX_QUEUED_BYTES {
            return Err(TransportError::Protocol(
                "the key exchange does not finish".into(),
            ));
        }
        self.queued.push_back(payload.to_vec());
        Ok(())
    }

    /// Frames CHANNEL_DATA for `recipient` straight into the output (no payload copy
    /// first). Only when [`Transport::can_send_data`].
    pub fn send_channel_data(&mut self, recipient: u32, data: &[u8]) {
        debug_assert!(self.can_send_data());
        self.outgoing.packet(|b| {
            b.push(msg::CHANNEL_DATA);
            b.extend_from_slice(&recipient.to_be_bytes());
            b.extend_from_slice(&(data.len() as u32).to_be_bytes());
            b.extend_from_slice(data);
        });
        self.check_rekey_by_volume();
    }

    /// Queues DISCONNECT; the caller closes the socket once it is written.
    pub fn disconnect(&mut self, code: u32, description: &str) {
        let mut w = Writer::message(msg::DISCONNECT);
        w.u32(code).string(description.as_bytes()).string(b"");
        // Sent even during a key exchange: DISCONNECT is always allowed.
        self.outgoing.packet(|b| b.extend_from_slice(w.as_slice()));
    }

    /// When [`Transport::handle_timeout`] should be called next.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.last_kex.map(|t| t + self.config.rekey_after)
    }

    /// Starts a re-exchange when one is due by time.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_timeout().is_some_and(|deadline| now >= deadline) {
            self.rekey_due = true;
            self.last_kex = Some(now);
            self.maybe_rekey();
        }
    }

    /// Notes the time the last exchange completed (the driver calls this after `poll`
    /// reports [`Transport::kex_count`] changed).
    pub fn kex_completed_at(&mut self, now: Instant) {
        self.last_kex = Some(now);
    }

    /// Starts a client-initiated re-exchange now (if none is running).
    pub fn rekey(&mut self) {
        self.rekey_due = true;
        self.maybe_rekey();
    }

    /// Processes what was read: the next message for the layers above, as a range for
    /// [`Transport::message`]; `None` when more input is needed. Handles key exchange on
    /// the way (its replies go to [`Transport::output`]).
    ///
    /// # Errors
    /// Anything that ends the connection: bad packets, protocol violations, a refused
    /// host key, the server's DISCONNECT.
    pub fn poll(&mut self) -> Result<Option<Range<usize>>, TransportError> {
        if self.server_version.is_none() && !self.read_version()? {
            return Ok(None);
        }
        loop {
            let Some(range) = self.incoming.next_packet()? else {
                return Ok(None);
            };
            let seq = self.incoming.seq().wrapping_sub(1);
            let number = self.incoming.payload(range.clone()).first().copied();
            let Some(number) = number else {
                return Err(TransportError::Protocol("empty message".into()));
            };
            trace!(message = number, seq, "received");
            if self.strict && !self.established && !is_kex_message(number) {
                // Strict mode: nothing but the exchange itself before the first NEWKEYS.
                return Err(TransportError::Protocol(format!(
                    "message {number} during the initial strict key exchange"
                )));
            }
            match number {
                msg::DISCONNECT => {
                    let payload = self.incoming.payload(range).to_vec();
                    return Err(disconnected(&payload));
                }
                msg::IGNORE | msg::DEBUG | msg::UNIMPLEMENTED => {}
                msg::EXT_INFO => {
                    let payload = self.incoming.payload(range).to_vec();
                    self.ext_info(&payload)?;
                }
                msg::KEXINIT..=49 => {
                    let payload = self.incoming.payload(range).to_vec();
                    self.kex_message(number, seq, &payload)?;
                }
                msg::SERVICE_REQUEST | 8..=19 => {
                    let mut w = Writer::message(msg::UNIMPLEMENTED);
                    w.u32(seq);
                    self.send(w.as_slice())?;
                }
                _ => {
                    if !self.established {
                        return Err(TransportError::Protocol(format!(
                            "message {number} before the key exchange finished"
                        )));
                    }
                    if matches!(self.kex, Kex::AwaitReply { .. } | Kex::AwaitNewKeys { .. }) {
                        return Err(TransportError::Protocol(format!(
                            "message {number} in the middle of a key exchange"
                        )));
                    }
                    return Ok(Some(range));
                }
            }
            self.incoming.done();
        }
    }

    /// A message returned by [`Transport::poll`].
    pub fn message(&self, range: Range<usize>) -> &[u8] {
        self.incoming.payload(range)
    }

    /// Called once a message from [`Transport::poll`] is dealt with.
    pub fn done(&mut self) {
        self.incoming.done();
        self.check_rekey_by_volume();
    }

    fn ext_info(&mut self, payload: &[u8]) -> Result<(), TransportError> {
        let bad = TransportError::malformed("EXT_INFO");
        let mut r = Reader::new(payload);
        let parse = |r: &mut Reader<'_>| -> Result<Option<Vec<String>>, WireError> {
            r.u8()?;
            let count = r.u32()?;
            if count > MAX_EXTENSIONS {
                return Err(WireError::Short {
                    wanted: count as usize,
                    left: MAX_EXTENSIONS as usize,
                });
            }
            let mut sig_algs = None;
            for _ in 0..count {
                let name = r.string()?;
                let value = r.string()?;
                if name == b"server-sig-algs" {
                    // The value is the list's content itself (RFC 8308 §3.1).
                    let list = crate::wire::names(value)?;
                    sig_algs = Some(list.into_iter().map(str::to_string).collect());
                }
            }
            Ok(sig_algs)
        };
        if let Some(algs) = parse(&mut r).map_err(bad)? {
            debug!(server_sig_algs = %algs.join(","), "extension info");
            self.server_sig_algs = Some(algs);
        }
        Ok(())
    }
}

fn disconnected(payload: &[u8]) -> TransportError {
    let mut r = Reader::new(payload);
    let parsed = (|| {
        r.u8()?;
        let code = r.u32()?;
        let text = r.string()?;
        Ok::<_, WireError>((code, text))
    })();
    match parsed {
        Ok((code, text)) => TransportError::Disconnected {
            code,
            message: String::from_utf8_lossy(text)
                .chars()
                .take(256)
                .filter(|c| !c.is_control())
                .collect(),
        },
        Err(source) => TransportError::Malformed {
            what: "DISCONNECT",
            source,
        },
    }
}
