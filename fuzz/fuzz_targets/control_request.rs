//! Control socket requests: `parse_request` on any UTF-8 text must never panic, and must
//! accept only a JSON object whose `version` is the protocol's and whose `command` names
//! what it returns.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld_core::control_request::{Command, PROTOCOL_VERSION, parse_request};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(command) = parse_request(line) {
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).expect("an accepted request is JSON");
        assert_eq!(v["version"].as_u64(), Some(PROTOCOL_VERSION));
        let name = match command {
            Command::Status => "status",
            Command::Reload => "reload",
        };
        assert_eq!(v["command"].as_str(), Some(name));
    }
});
