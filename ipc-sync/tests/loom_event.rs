//! Loom model of the raw event algorithm (`RUSTFLAGS="--cfg ipc_loom"`); the same bodies run as
//! stress tests in `sync_models.rs` without loom.
#![cfg(ipc_loom)]

#[path = "models/event.rs"]
mod event;
mod support;
