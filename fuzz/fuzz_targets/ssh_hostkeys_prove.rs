#![no_main]
//! See `tunneld_ssh::fuzzing::host_key_proofs` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunneld_ssh::fuzzing::host_key_proofs(data));
