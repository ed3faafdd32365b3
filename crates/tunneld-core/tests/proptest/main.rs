//! Property tests of the parsers that read what clients and files send: SOCKS requests,
//! known_hosts lines and control socket requests. Each property runs a moderate number
//! of cases to keep the suite quick; `fuzz/` at the workspace root runs the same parsers
//! under libFuzzer for as long as one likes.

mod control_request;
mod known_hosts;
// The same random edits as the config crate's property tests.
#[path = "../../../tunneld-config/tests/proptest/mutate.rs"]
mod mutate;
mod socks;
