//! Fuzz target: the authkey handshake of Listener/Client against a hostile peer (the harness
//! is shared with the proptest twin in `cargo test`).
#![no_main]

#[path = "../harness/handshake.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
