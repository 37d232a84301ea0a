//! Fuzz target: Connection framing and postcard decoding of typed messages from a hostile peer (the harness is shared with the proptest twin in `cargo test`).
#![no_main]

#[path = "../harness/frames.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data, true));
