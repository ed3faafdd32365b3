//! Property tests of the configuration parsers, which read what people write: forward
//! specifications and whole files. Each property runs a moderate number of cases to keep
//! the suite quick; `fuzz/` at the workspace root runs the same parsers under libFuzzer
//! for as long as one likes.

mod config;
mod forward;
mod mutate;
