//! Loom model of the raw condition algorithm (`RUSTFLAGS="--cfg ipc_loom"`); the same bodies run as
//! stress tests in `sync_models.rs` without loom.
#![cfg(ipc_loom)]

#[path = "models/condition.rs"]
mod condition;
mod support;
