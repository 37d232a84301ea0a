//! Fuzz target: ipc_shm::transfer::decode of hostile messages with hostile descriptors (the harness is shared with the proptest twin in `cargo test`).
#![no_main]

#[path = "../harness/transfer.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data, true));
