//! known_hosts lines: the input is a line, then a NUL, then a name to look up. Parsing
//! the line and matching it against the name (and the OpenSSH lookup form of the name)
//! must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld_core::known_hosts::{HostLine, lookup_name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (line, name) = text.split_once('\0').unwrap_or((text, "host.example"));
    if let Some(parsed) = HostLine::parse(line) {
        let _ = parsed.matches(name);
        let _ = parsed.matches(&lookup_name(name, 2222));
        let _ = parsed.marker();
        let _ = parsed.public_key();
    }
});
