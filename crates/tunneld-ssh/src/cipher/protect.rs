//! What the packet layer asks of a construction: [`Sealer`] and [`Opener`] protect one
//! direction's packets in place, [`CipherError`] says why a packet did not open, and every
//! construction cuts a packet into its parts with the same checks.

/// Bytes of the `uint32 packet_length` field that opens every packet.
pub(crate) const LENGTH_FIELD_BYTES: usize = 4;

/// Protects outgoing packets of one direction.
pub(crate) trait Sealer: Send {
    /// Padding aligns `padding_length || payload || padding` to this (the 4 length bytes are
    /// excluded for all of our constructions, which either keep the length in the clear or
    /// encrypt it separately).
    fn block_size(&self) -> usize;
    /// Bytes of tag/MAC after the packet.
    fn tag_len(&self) -> usize;
    /// `packet` = `uint32 packet_length` (clear) `|| byte padding_length || payload || padding ||
    /// tag_len() bytes of room`. Encrypts in place (the length too where the construction does)
    /// and writes the tag into the room at the end.
    ///
    /// # Panics
    /// When `packet` is shorter than the length field and the tag, or its middle part is not a
    /// multiple of [`Sealer::block_size`]: the packet layer built it wrong, and sending it
    /// half-protected would be worse.
    fn seal(&mut self, seq: u32, packet: &mut [u8]);
}

/// Checks and decrypts incoming packets of one direction.
pub(crate) trait Opener: Send {
    /// `packet_length` must be a multiple of this.
    fn block_size(&self) -> usize;
    /// Bytes of tag/MAC after the packet.
    fn tag_len(&self) -> usize;
    /// The packet length from the first 4 bytes as received (decrypted when the construction
    /// encrypts the length). Changes nothing: the caller will call `open` with the same bytes.
    /// The value is not authenticated yet: the caller bounds it before it reads that much.
    fn packet_length(&mut self, seq: u32, first4: [u8; 4]) -> u32;
    /// `packet` = the 4 length bytes as received `|| packet_length bytes || tag_len() bytes`.
    /// Verifies the tag first (constant time), then decrypts in place: afterwards
    /// `packet[4..4 + packet_length]` is `padding_length || payload || padding` in the clear
    /// (`packet[..4]` may hold anything). A bad tag is an error and nothing may be used.
    fn open(&mut self, seq: u32, packet: &mut [u8]) -> Result<(), CipherError>;
}

/// A packet that failed authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The tag or MAC does not match the packet: it was altered, or the keys or the sequence
    /// number differ from the sender's.
    #[error("message authentication failed")]
    BadTag,
    /// The packet buffer is shorter than its length field and tag.
    #[error("packet of {0} bytes is too short for its length field and tag")]
    Short(usize),
    /// The encrypted part of the packet is not a whole number of cipher blocks.
    #[error("packet length {0} is not a multiple of the cipher block size")]
    NotBlockAligned(usize),
}

/// A packet cut into its length field, the part that is encrypted and the tag (or room for it).
type Parts<'a> = (&'a mut [u8], &'a mut [u8], &'a mut [u8]);

/// The parts of a packet being opened, checked: long enough for the length field and the
/// tag, and an encrypted part of whole blocks.
pub(super) fn split_for_open(
    packet: &mut [u8],
    tag_len: usize,
    block_size: usize,
) -> Result<Parts<'_>, CipherError> {
    let short = CipherError::Short(packet.len());
    let body_end = packet
        .len()
        .checked_sub(tag_len)
        .filter(|end| *end >= LENGTH_FIELD_BYTES)
        .ok_or(short)?;
    let (head, tag) = packet.split_at_mut(body_end);
    let (length, body) = head.split_at_mut(LENGTH_FIELD_BYTES);
    if !body.len().is_multiple_of(block_size) {
        return Err(CipherError::NotBlockAligned(body.len()));
    }
    Ok((length, body, tag))
}

/// The parts of a packet being sealed: the length field, the part to encrypt and the room
/// for the tag. Panics on a packet the packet layer built wrong (see [`Sealer::seal`]).
pub(super) fn split_for_seal(packet: &mut [u8], tag_len: usize, block_size: usize) -> Parts<'_> {
    let len = packet.len();
    assert!(
        len >= LENGTH_FIELD_BYTES + tag_len,
        "a packet of {len} bytes has no room for its length field and {tag_len}-byte tag"
    );
    let (head, tag) = packet.split_at_mut(len - tag_len);
    let (length, body) = head.split_at_mut(LENGTH_FIELD_BYTES);
    assert!(
        body.len().is_multiple_of(block_size),
        "the encrypted part of a packet ({} bytes) is not a multiple of {block_size}",
        body.len()
    );
    (length, body, tag)
}
