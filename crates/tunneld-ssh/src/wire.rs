//! Bounded readers and writers for the SSH wire types of RFC 4251 §5.
//!
//! Every length read from the wire is checked against what is left of the input before
//! it is used, so a hostile peer can never make us read past a packet or allocate more
//! than the packet already holds.

use crate::error::WireError;

/// Reads SSH types from one message, front to back.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// What has not been read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Fails unless everything was read (a message with trailing bytes is malformed).
    pub fn finish(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.rest.len()))
        }
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError::Short {
                wanted: n,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A fixed-size array of raw bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// A `byte`.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    /// A `boolean`: any non-zero byte is true (RFC 4251 §5).
    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }

    /// A `uint32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A `uint64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `string` as raw bytes. Its length is checked against the input before use.
    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.bytes(len)
    }

    /// A `string` that must be UTF-8 (names, messages).
    pub fn utf8(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.string()?).map_err(|_| WireError::NotUtf8)
    }

    /// A `name-list`: comma-separated US-ASCII names, none empty (RFC 4251 §5).
    pub fn name_list(&mut self) -> Result<Vec<&'a str>, WireError> {
        names(self.string()?)
    }

    /// An `mpint`'s magnitude bytes, as they are on the wire (two's complement, big-endian).
    pub fn mpint(&mut self) -> Result<&'a [u8], WireError> {
        self.string()
    }
}

/// The names of a `name-list`'s content (without its length): comma-separated US-ASCII
/// names, none empty (RFC 4251 §5). Also the form of RFC 8308's `server-sig-algs` value.
pub fn names(raw: &[u8]) -> Result<Vec<&str>, WireError> {
    {
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        if !raw.is_ascii() {
            return Err(WireError::NotAscii);
        }
        // ASCII was just checked, so this cannot fail.
        let text = std::str::from_utf8(raw).map_err(|_| WireError::NotAscii)?;
        let names: Vec<&str> = text.split(',').collect();
        if names.iter().any(|n| n.is_empty()) {
            return Err(WireError::EmptyName);
        }
        Ok(names)
    }
}

/// Appends SSH types to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty message.
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    /// A message that starts with the message number `msg`.
    pub fn message(msg: u8) -> Self {
        let mut w = Writer {
            buf: Vec::with_capacity(64),
        };
        w.u8(msg);
        w
    }

    /// The bytes written so far.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far, borrowed.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// A `byte`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// A `boolean`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// A `uint32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A `uint64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A `string`.
    ///
    /// # Panics
    /// If `bytes` is longer than `u32::MAX` (we never build such a message).
    pub fn string(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).expect("an SSH string longer than 4 GiB");
        self.u32(len);
        self.raw(bytes)
    }

    /// A `name-list`.
    pub fn name_list<S: AsRef<str>>(&mut self, names: &[S]) -> &mut Self {
        let joined = names
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
        self.string(joined.as_bytes())
    }

    /// An `mpint` from an unsigned big-endian magnitude: leading zeros stripped, a zero
    /// byte added when the top bit is set (RFC 4251 §5).
    pub fn mpint_unsigned(&mut self, magnitude: &[u8]) -> &mut Self {
        let start = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        let digits = &magnitude[start..];
        let pad = digits.first().is_some_and(|&b| b & 0x80 != 0);
        let len = digits.len() + usize::from(pad);
        self.u32(u32::try_from(len).expect("an mpint longer than 4 GiB"));
        if pad {
            self.u8(0);
        }
        self.raw(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_every_type() {
        let mut w = Writer::message(20);
        w.bool(true)
            .u32(0xdead_beef)
            .u64(1 << 40)
            .string(b"abc")
            .name_list(&["a", "bc"]);
        let bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8().unwrap(), 20);
        assert!(r.bool().unwrap());
        assert_eq!(r.u32().unwrap(), 0xdead_beef);
        assert_eq!(r.u64().unwrap(), 1 << 40);
        assert_eq!(r.string().unwrap(), b"abc");
        assert_eq!(r.name_list().unwrap(), vec!["a", "bc"]);
        r.finish().unwrap();
    }

    #[test]
    fn a_string_longer_than_the_input_is_refused_without_reading() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut r = Reader::new(&bytes);
        assert_eq!(
            r.string().unwrap_err(),
            WireError::Short {
                wanted: 0xffff_ffff,
                left: 3
            }
        );
    }

    #[test]
    fn every_strict_prefix_fails() {
        let mut w = Writer::new();
        w.string(b"hello").u32(7).name_list(&["x"]);
        let bytes = w.into_vec();
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let ok = r.string().and_then(|_| r.u32()).and_then(|_| r.name_list());
            assert!(ok.is_err(), "prefix of {cut} bytes parsed");
        }
    }

    #[test]
    fn name_lists_refuse_empty_names_and_non_ascii() {
        for bad in [&b"a,,b"[..], b",a", b"a,", "é".as_bytes()] {
            let mut w = Writer::new();
            w.string(bad);
            let bytes = w.into_vec();
            assert!(Reader::new(&bytes).name_list().is_err(), "{bad:?}");
        }
        let mut w = Writer::new();
        w.string(b"");
        assert!(Reader::new(w.as_slice()).name_list().unwrap().is_empty());
    }

    #[test]
    fn mpints_follow_rfc_4251_examples() {
        let cases: [(&[u8], &[u8]); 4] = [
            (&[], &[0, 0, 0, 0]),
            (&[0, 0], &[0, 0, 0, 0]),
            (
                &[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7],
                &[0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7],
            ),
            (&[0x80], &[0, 0, 0, 2, 0, 0x80]),
        ];
        for (magnitude, wire) in cases {
            let mut w = Writer::new();
            w.mpint_unsigned(magnitude);
            assert_eq!(w.as_slice(), wire, "{magnitude:02x?}");
        }
    }
}
