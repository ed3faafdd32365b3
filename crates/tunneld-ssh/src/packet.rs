//! The binary packet protocol (RFC 4253 §6): framing, padding and sequence numbers, with
//! the negotiated protection applied in place (no copy and no allocation per packet).
//!
//! [`Outgoing`] frames payloads into one buffer that the driver writes to the socket as it
//! can, so many packets leave in one system call. [`Incoming`] is the buffer the driver
//! reads the socket into; whole packets are checked and decrypted where they lie and their
//! payloads handed out as ranges of it. Both buffers exist only while data flows: an idle
//! session gives them back.

use rand::RngCore;

use crate::cipher::{Opener, Sealer};

/// The largest `packet_length` accepted from the server: OpenSSH's `PACKET_MAX_SIZE`.
/// Checked before anything is read or allocated for a packet.
pub(crate) const MAX_PACKET_LENGTH_BYTES: usize = 256 * 1024;
/// The largest tag any of our constructions appends (hmac-sha2-512-etm).
const MAX_TAG_BYTES: usize = 64;
/// RFC 4253 §6: at least four bytes of padding.
const MIN_PADDING_BYTES: usize = 4;
/// RFC 4253 §6: the packet is a multiple of at least 8 bytes.
const MIN_BLOCK_BYTES: usize = 8;
/// The read buffer of a session that is not busy: enough for handshakes and heartbeats.
const READ_IDLE_BYTES: usize = 4 * 1024;
/// The read buffer of a busy session: one read serves several full data packets.
const READ_BUSY_BYTES: usize = 128 * 1024;
/// A read at least this large says the session is busy (keep the large buffer).
const BUSY_READ_BYTES: usize = 16 * 1024;
/// An output buffer larger than this is given back once it has been written out and the
/// session is quiet.
const OUT_KEEP_BYTES: usize = 16 * 1024;

/// Bytes one set of keys may protect in one direction before a re-exchange, by the
/// cipher's block size, as OpenSSH limits them (`packet.c`, `ssh_set_newkeys`): 2^32
/// blocks for 16-byte block ciphers (AES-GCM, AES-CTR: 64 GiB), 1 GiB for smaller blocks
/// (chacha20-poly1305@openssh.com counts 8-byte blocks).
pub(crate) fn key_volume_limit_bytes(block_size: usize) -> u64 {
    if block_size >= 16 {
        (1u64 << 32) * 16
    } else {
        1 << 30
    }
}

/// Why an incoming packet was refused.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The length field is out of bounds or not block-aligned.
    #[error("bad packet length {0}")]
    Length(u32),
    /// The tag or MAC did not verify.
    #[error("corrupted packet: {0}")]
    Cipher(#[from] crate::cipher::CipherError),
    /// The padding length does not fit the packet, or is below the minimum.
    #[error("bad padding length {padding} in a packet of {length} bytes")]
    Padding {
        /// The padding length byte.
        padding: u8,
        /// The packet length.
        length: u32,
    },
}

/// Frames outgoing payloads into a buffer of protected packets.
pub(crate) struct Outgoing {
    sealer: Option<Box<dyn Sealer>>,
    seq: u32,
    buf: Vec<u8>,
    /// `buf[pos..]` is not written to the socket yet.
    pos: usize,
    /// Bytes framed since the last key exchange, for rekeying by volume.
    pub(crate) bytes_since_kex: u64,
}

impl Outgoing {
    pub(crate) fn new() -> Self {
        Outgoing {
            sealer: None,
            seq: 0,
            buf: Vec::new(),
            pos: 0,
            bytes_since_kex: 0,
        }
    }

    /// Packets from now on are protected by `sealer`; the sequence number restarts at 0
    /// when `reset_seq` (strict key exchange).
    pub(crate) fn set_sealer(&mut self, sealer: Box<dyn Sealer>, reset_seq: bool) {
        self.sealer = Some(sealer);
        if reset_seq {
            self.seq = 0;
        }
        self.bytes_since_kex = 0;
    }

    /// Bytes the current keys may protect before a re-exchange (no limit before the
    /// first one).
    pub(crate) fn volume_limit_bytes(&self) -> u64 {
        self.sealer
            .as_ref()
            .map_or(u64::MAX, |s| key_volume_limit_bytes(s.block_size()))
    }

    /// Appends raw bytes that are not a packet (the version line).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Frames one packet whose payload `write` appends to the buffer it is given.
    pub(crate) fn packet(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        // While the socket takes the output a part at a time, the buffer never empties:
        // drop what was written once it outweighs what waits, or a long transfer over a
        // slow link would keep all of itself. Each byte is moved at most once this way.
        if self.pos > 0 && self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 5]);
        write(&mut self.buf);
        let payload = self.buf.len() - start - 5;
        let (block, tag, counts_length) = match &self.sealer {
            None => (MIN_BLOCK_BYTES, 0, true),
            Some(s) => (s.block_size().max(MIN_BLOCK_BYTES), s.tag_len(), false),
        };
        let unpadded = 1 + payload + if counts_length { 4 } else { 0 };
        let mut padding = block - unpadded % block;
        if padding < MIN_PADDING_BYTES {
            padding += block;
        }
        let length = 1 + payload + padding;
        let mut pad = [0u8; 2 * 32];
        rand::rng().fill_bytes(&mut pad[..padding]);
        self.buf.extend_from_slice(&pad[..padding]);
        self.buf.resize(self.buf.len() + tag, 0);
        let header = &mut self.buf[start..start + 5];
        // A payload is at most a few hundred KiB (we frame what we built), far below 4 GiB.
        header[..4].copy_from_slice(&(length as u32).to_be_bytes());
        header[4] = padding as u8;
        if let Some(sealer) = &mut self.sealer {
            sealer.seal(self.seq, &mut self.buf[start..]);
        }
        self.seq = self.seq.wrapping_add(1);
        self.bytes_since_kex += (4 + length + tag) as u64;
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// How many bytes wait to be written.
    pub(crate) fn pending_len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// `n` bytes of [`Outgoing::pending`] were written.
    pub(crate) fn written(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            self.pos = 0;
            self.buf.clear();
        }
    }

    /// Gives back a large buffer once everything was written.
    pub(crate) fn trim(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > OUT_KEEP_BYTES {
            self.buf = Vec::new();
        }
    }

    /// Bytes of buffer held beyond what a quiet session keeps.
    pub(crate) fn excess_capacity(&self) -> usize {
        self.buf.capacity().saturating_sub(OUT_KEEP_BYTES)
    }
}

/// Reassembles, checks and decrypts incoming packets in place.
pub(crate) struct Incoming {
    opener: Option<Box<dyn Opener>>,
    seq: u32,
    buf: Vec<u8>,
    /// `buf[start..end]` is received and not yet consumed.
    start: usize,
    end: usize,
    /// The decrypted length of the packet at `start`, once known.
    length: Option<usize>,
    /// Whether the last read was large (see [`BUSY_READ_BYTES`]).
    busy: bool,
    /// Bytes opened since the last key exchange, for rekeying by volume.
    pub(crate) bytes_since_kex: u64,
}

impl Incoming {
    pub(crate) fn new() -> Self {
        Incoming {
            opener: None,
            seq: 0,
            buf: Vec::new(),
            start: 0,
            end: 0,
            length: None,
            busy: false,
            bytes_since_kex: 0,
        }
    }

    /// Packets from now on are opened by `opener`; see [`Outgoing::set_sealer`].
    pub(crate) fn set_opener(&mut self, opener: Box<dyn Opener>, reset_seq: bool) {
        self.opener = Some(opener);
        if reset_seq {
            self.seq = 0;
        }
        self.bytes_since_kex = 0;
    }

    /// Bytes the current keys may open before a re-exchange (no limit before the first
    /// one).
    pub(crate) fn volume_limit_bytes(&self) -> u64 {
        self.opener
            .as_ref()
            .map_or(u64::MAX, |o| key_volume_limit_bytes(o.block_size()))
    }

    /// The sequence number of the next packet to be opened.
    pub(crate) fn seq(&self) -> u32 {
        self.seq
    }

    /// Received bytes not yet consumed as packets (or as the version line).
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Consumes `n` bytes of [`Incoming::buffered`] (the version exchange).
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        self.settle();
    }

    /// Room to read the socket into: allocated on demand, grown to hold the packet
    /// being reassembled.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            let size = if self.busy {
                READ_BUSY_BYTES
            } else {
                READ_IDLE_BYTES
            };
            self.buf = vec![0; size];
        }
        if self.end == self.buf.len() {
            self.make_room(self.end - self.start + READ_IDLE_BYTES);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`Incoming::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
        self.busy = n >= BUSY_READ_BYTES || self.end == self.buf.len();
    }

    /// Makes `buf[start..]` at least `need` bytes long, moving the unread part to the front.
    fn make_room(&mut self, need: usize) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < need {
            let size = need.max(READ_BUSY_BYTES).max(self.buf.len());
            self.buf.resize(size, 0);
        }
    }

    fn settle(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Gives the buffer back when nothing is buffered; the next read starts small.
    pub(crate) fn trim(&mut self) {
        if self.start == self.end {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
            self.busy = false;
        }
    }

    /// Bytes of buffer held.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The next whole packet, checked and decrypted; its payload is
    /// `self.payload(range)` until the next call of any method that takes `&mut self`.
    ///
    /// # Errors
    /// A length out of bounds, a bad tag, bad padding: the connection cannot go on.
    pub(crate) fn next_packet(&mut self) -> Result<Option<std::ops::Range<usize>>, PacketError> {
        let avail = self.end - self.start;
        if avail < 4 {
            return Ok(None);
        }
        let (block, tag, counts_length) = match &self.opener {
            None => (MIN_BLOCK_BYTES, 0, true),
            Some(o) => (o.block_size().max(MIN_BLOCK_BYTES), o.tag_len(), false),
        };
        let length = match self.length {
            Some(l) => l,
            None => {
                let mut first = [0u8; 4];
                first.copy_from_slice(&self.buf[self.start..self.start + 4]);
                let raw = match &mut self.opener {
                    None => u32::from_be_bytes(first),
                    Some(o) => o.packet_length(self.seq, first),
                };
                let l = raw as usize;
                let aligned = if counts_length { l + 4 } else { l };
                if !(MIN_BLOCK_BYTES..=MAX_PACKET_LENGTH_BYTES).contains(&l) || aligned % block != 0
                {
                    return Err(PacketError::Length(raw));
                }
                self.length = Some(l);
                l
            }
        };
        debug_assert!(tag <= MAX_TAG_BYTES);
        let total = 4 + length + tag;
        if avail < total {
            if self.buf.len() - self.start < total {
                self.make_room(total);
            }
            return Ok(None);
        }
        let packet = &mut self.buf[self.start..self.start + total];
        if let Some(o) = &mut self.opener {
            o.open(self.seq, packet)?;
        }
        let padding = packet[4];
        // padding_length || payload (at least the message number) || padding.
        if (padding as usize) < MIN_PADDING_BYTES || padding as usize + 2 > length {
            return Err(PacketError::Padding {
                padding,
                length: length as u32,
            });
        }
        let payload = self.start + 5..self.start + 5 + (length - 1 - padding as usize);
        self.start += total;
        self.length = None;
        self.seq = self.seq.wrapping_add(1);
        self.bytes_since_kex += total as u64;
        Ok(Some(payload))
    }

    /// A payload returned by [`Incoming::next_packet`].
    pub(crate) fn payload(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Called once a returned payload is dealt with: resets the buffer when it is empty.
    pub(crate) fn done(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(incoming: &mut Incoming, mut bytes: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let spare = incoming.spare();
            let n = spare.len().min(chunk).min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            incoming.filled(n);
            bytes = &bytes[n..];
            while let Some(range) = incoming.next_packet().unwrap() {
                out.push(incoming.payload(range).to_vec());
                incoming.done();
            }
        }
        out
    }

    /// A socket that never takes all of the output (a slow uplink) while more is framed:
    /// the buffer holds what waits, not everything ever sent.
    #[test]
    fn output_written_a_part_at_a_time_stays_bounded() {
        let mut out = Outgoing::new();
        let payload = vec![7u8; 32 * 1024];
        let mut framed = 0usize;
        for _ in 0..2_000 {
            while out.pending_len() < 256 * 1024 {
                out.packet(|b| b.extend_from_slice(&payload));
                framed += payload.len();
            }
            let take = out.pending_len() - 1_000;
            out.written(take);
            assert!(
                out.buf.len() <= 2 * (256 * 1024 + 2 * payload.len()),
                "{} bytes held after {framed} framed",
                out.buf.len()
            );
        }
        assert!(framed > 60 * 1024 * 1024);
    }

    #[test]
    fn unprotected_packets_round_trip_in_any_read_sizes() {
        let payloads: Vec<Vec<u8>> = (0..50u8)
            .map(|i| {
                (0..(i as usize * 997 % 40_000) + 1)
                    .map(|j| (j as u8) ^ i)
                    .collect()
            })
            .collect();
        let mut out = Outgoing::new();
        for p in &payloads {
            out.packet(|b| b.extend_from_slice(p));
        }
        let wire = out.pending().to_vec();
        for chunk in [1, 7, 4096, 1 << 20] {
            let mut incoming = Incoming::new();
            assert_eq!(feed(&mut incoming, &wire, chunk), payloads, "chunk {chunk}");
            assert_eq!(incoming.seq(), 50);
        }
    }

    #[test]
    fn unprotected_framing_follows_rfc_4253() {
        let mut out = Outgoing::new();
        out.packet(|b| b.push(21));
        let wire = out.pending();
        // 4 + 1 + 1 + padding is a multiple of 8 and the padding is at least 4.
        assert_eq!(wire.len() % 8, 0);
        let length = u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
        assert_eq!(length + 4, wire.len());
        assert!(wire[4] >= 4);
        assert_eq!(wire[5], 21);
    }

    #[test]
    fn lengths_out_of_bounds_are_refused_before_any_allocation() {
        for length in [
            0u32,
            4,
            7,
            13,
            (MAX_PACKET_LENGTH_BYTES + 4) as u32,
            u32::MAX,
        ] {
            let mut incoming = Incoming::new();
            let spare = incoming.spare();
            spare[..4].copy_from_slice(&length.to_be_bytes());
            incoming.filled(4);
            assert!(
                matches!(incoming.next_packet(), Err(PacketError::Length(l)) if l == length),
                "{length}"
            );
            assert!(incoming.buf.len() <= READ_BUSY_BYTES);
        }
    }

    #[test]
    fn bad_padding_is_refused() {
        // length 12: padding byte 200 does not fit; padding 3 is below the minimum.
        for padding in [200u8, 3, 11] {
            let mut wire = 12u32.to_be_bytes().to_vec();
            wire.push(padding);
            wire.extend_from_slice(&[0u8; 11]);
            let mut incoming = Incoming::new();
            let spare = incoming.spare();
            spare[..wire.len()].copy_from_slice(&wire);
            incoming.filled(wire.len());
            assert!(
                matches!(incoming.next_packet(), Err(PacketError::Padding { .. })),
                "{padding}"
            );
        }
    }

    /// Each cipher's keys are re-exchanged after OpenSSH's volume for it: 2^32 AES blocks,
    /// 1 GiB of chacha20-poly1305; nothing limits the unprotected first exchange.
    #[test]
    fn keys_are_renewed_after_the_volume_openssh_allows_their_cipher() {
        use crate::cipher::{self, AES128_CTR, AES128_GCM, AES256_GCM, CHACHA20_POLY1305};
        let mut out = Outgoing::new();
        let mut incoming = Incoming::new();
        assert_eq!(out.volume_limit_bytes(), u64::MAX);
        assert_eq!(incoming.volume_limit_bytes(), u64::MAX);
        for (cipher, mac, limit) in [
            (AES128_GCM, None, 64u64 << 30),
            (AES256_GCM, None, 64 << 30),
            (AES128_CTR, Some(cipher::HMAC_SHA256_ETM), 64 << 30),
            (CHACHA20_POLY1305, None, 1 << 30),
        ] {
            let k = crate::cipher::tests::keys_for(cipher, mac, 0);
            out.set_sealer(cipher::sealer(cipher, mac, &k).unwrap(), false);
            incoming.set_opener(cipher::opener(cipher, mac, &k).unwrap(), false);
            assert_eq!(out.volume_limit_bytes(), limit, "{cipher}");
            assert_eq!(incoming.volume_limit_bytes(), limit, "{cipher}");
        }
    }

    #[test]
    fn an_idle_session_gives_its_buffers_back() {
        let mut out = Outgoing::new();
        out.packet(|b| b.extend_from_slice(&[5u8; 100_000]));
        let wire = out.pending().to_vec();
        out.written(wire.len());
        out.trim();
        assert_eq!(out.buf.capacity(), 0);
        let mut incoming = Incoming::new();
        feed(&mut incoming, &wire, 1 << 20);
        assert!(incoming.capacity() >= wire.len());
        incoming.trim();
        assert_eq!(incoming.capacity(), 0);
        // The session is quiet now: its next read starts small.
        assert_eq!(incoming.spare().len(), READ_IDLE_BYTES);
    }
}
