//! Whole configuration files: `tunneld_config::parse` on any UTF-8 text must return a
//! configuration or errors, each placed inside the text, and never panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = tunneld_config::parse(Path::new("fuzz.toml"), text) {
        assert!(!e.errors.is_empty(), "an error without errors");
        let lines: Vec<&str> = text.split('\n').collect();
        for err in &e.errors {
            if err.line == 0 {
                assert!(err.message.starts_with("invalid TOML"), "{err}");
                continue;
            }
            assert!(err.line <= lines.len(), "{err}: past the end");
            let width = lines[err.line - 1].chars().count();
            assert!(err.col >= 1 && err.col <= width + 1, "{err}: past its line");
        }
    }
});
