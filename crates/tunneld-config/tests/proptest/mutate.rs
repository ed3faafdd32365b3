//! Random edits of valid input: the near misses a hand-written case list leaves out.

use proptest::collection::vec;
use proptest::prelude::*;

/// One edit at a position taken modulo the input's length.
#[derive(Debug, Clone)]
pub enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    /// Repeats the byte run `at..at + len`.
    Duplicate(usize, usize),
    Truncate(usize),
}

/// One to eight edits whose new bytes come from `bytes`.
pub fn edits(bytes: impl Strategy<Value = u8> + 'static) -> impl Strategy<Value = Vec<Edit>> {
    let bytes = bytes.boxed();
    let edit = prop_oneof![
        (any::<usize>(), bytes.clone()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), bytes).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Edit::Duplicate(at, len)),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    vec(edit, 1..8)
}

/// `input` with `edits` applied in order.
pub fn apply(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = input.to_vec();
    for edit in edits {
        let len = out.len();
        match *edit {
            Edit::Insert(at, b) => out.insert(at % (len + 1), b),
            Edit::Delete(at) if len > 0 => {
                out.remove(at % len);
            }
            Edit::Replace(at, b) if len > 0 => out[at % len] = b,
            Edit::Duplicate(at, n) if len > 0 => {
                let start = at % len;
                let run = out[start..(start + n).min(len)].to_vec();
                out.splice(start..start, run);
            }
            Edit::Truncate(at) => out.truncate(at % (len + 1)),
            _ => {}
        }
    }
    out
}
