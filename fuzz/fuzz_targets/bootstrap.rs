//! Fuzz target: the bootstrap message a spawned child reads (the harness is shared with the proptest twin in `cargo test`).
#![no_main]

#[path = "../harness/bootstrap.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data, true));
