//! Processes for multiproc: Python's `multiprocessing.Process` and its start methods
//! (`fork`, `spawn`, `forkserver`), contexts, `current_process`/`parent_process`, for Rust
//! functions with serde arguments, in which every multiproc handle (queues, locks, shared
//! values and arrays, connections, shared memory) travels whatever the start method.
//!
//! - [`Process`]: `new(f, args)`, `.name(..)`, `.daemon(..)`, `start`, `join`, `join_timeout`,
//!   `is_alive`, `exitcode`, `pid`, `terminate`, `kill`, `sentinel`.
//! - [`spawn`] / [`fork`]: a child that computes a value, given back by
//!   [`JoinHandle::join`] (or the child's panic message).
//! - [`Run`] + [`Process::from_run`]: Python's subclass-with-`run()` pattern.
//! - [`StartMethod`], [`get_context`], [`set_start_method`], [`get_start_method`],
//!   [`get_all_start_methods`]; the environment variable `IPC_START_METHOD` picks the method of
//!   code that does not choose one.
//! - [`current_process`], [`parent_process`], [`active_children`], [`cpu_count`].
//! - [`init`]: Rust's `if __name__ == "__main__"`.
//! - [`RemoteFn`]: a `fn(A) -> R` named across processes of the same executable, called there
//!   with encoded arguments (what a pool sends its workers), checked against the code first.
//! - [`ignore_sigint`], [`InterruptScope`]: `SIGINT` for workers and for threads blocked on them.
//!
//! # Example
//!
//! ```
//! use proc_spawn::{get_context, Process, StartMethod};
//!
//! fn hello(name: String) {
//!     println!("hello {name} from {}", proc_spawn::current_process().name());
//! }
//!
//! fn square(x: i64) -> i64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), proc_spawn::Error> {
//!     proc_spawn::init(); // first line of main (a no-op here, see below)
//!
//!     let mut p = Process::new(hello, "bob".to_string());
//!     p.start()?;
//!     p.join()?;
//!     assert_eq!(p.exitcode(), Some(0));
//!
//!     // Any start method, same code:
//!     for m in proc_spawn::get_all_start_methods() {
//!         assert_eq!(get_context(m).spawn(square, 7).join()?, 49);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Platform support
//!
//! Linux only (other targets fail to compile): `posix_spawn` of `/proc/self/exe`, pidfds
//! (`pidfd_open`, `pidfd_send_signal`, `waitid(P_PIDFD)`: Linux 5.4), `SCM_RIGHTS`,
//! `SOCK_SEQPACKET`, the GNU build id note (falls back to the executable file's identity),
//! `sched_getaffinity`.
//!
//! # Cargo features
//!
//! None.
//!
//! # Safety model
//!
//! - A function crosses processes only as an offset inside the same executable, checked by
//!   build id and code ranges in the child, together with the trampoline monomorphised for its
//!   exact type; closures are never conjured from nothing. Arguments and results are serde
//!   values; bytes from another process are untrusted (malformed input is an error).
//! - `Fork` runs arbitrary code in the child of a possibly multithreaded process: a lock held
//!   by another thread at the time of the fork stays locked in the child. The crate holds its
//!   own locks across the fork; everything else is the caller's risk, as in Python (which
//!   warns since 3.12). `ForkServer` forks from a single-threaded server and is the default.
//! - System calls live in the private `sys` module; the child side of `fork` lives in
//!   `start/fork.rs`.
//!
//! # How a function reaches a fresh process
//!
//! `Spawn` and `ForkServer` children run the same executable from its start. Before `main`, a
//! hook of this crate (an `.init_array` entry, so a `cargo test` harness works too) looks for
//! the bootstrap marker in the environment; a child removes it, reads its orders from an
//! inherited socket — the target `fn(A) -> R` and its monomorphised trampoline, named by their
//! offsets from an anchor function, the arguments (postcard) with their file descriptors, its
//! name and daemon flag, and for a daemon a pidfd of its parent — checks that it runs the very same executable
//! (GNU build id) and that both addresses lie in its code, runs the target and exits. [`init`]
//! does the same for programs that disable the hook with `PROC_SPAWN_NO_HOOK`; in the parent
//! it returns at once. A child that never gets there (a program without the hook that forgets
//! `init()`) is reported by [`Process::start`] as [`Error::NotInitialized`], not a hang.
//!
//! # Lifetimes
//!
//! As in Python: when `main` returns or the program calls `std::process::exit`, daemon
//! children are terminated and the others joined; so is every child's own children when the
//! child ends. A daemon child also dies when its parent is killed (it watches the parent's
//! pidfd), whatever the start method. A daemon may not start children. Finished children are
//! reaped by `join`, `is_alive`, `exitcode`, [`active_children`] and the next `start`.

#![deny(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "proc-spawn: this platform has no backend yet; Linux is implemented (pidfd, posix_spawn, \
     SCM_RIGHTS), macOS and FreeBSD need a `sys` backend"
);

mod bootstrap;
mod context;
mod error;
mod process;
mod remote_fn;
mod signals;
mod start;
mod sys;

pub use bootstrap::NO_HOOK_ENV;
// For the hostile-input tests and fuzz targets (tests/hostile_bootstrap.rs, fuzz/): not API.
#[doc(hidden)]
pub use bootstrap::{fuzz_read_boot, fuzz_sample_boot_frame, BootCheck};
pub use context::{
    force_start_method, get_all_start_methods, get_context, get_start_method, set_start_method,
    Context, StartMethod, START_METHOD_ENV,
};
pub use error::Error;
pub use process::{
    active_children, cpu_count, current_process, fork, parent_process, spawn, JoinHandle, Process,
    ProcessInfo, Run,
};
pub use remote_fn::{DecodeCallEncode, FnPtr, Invoke, RemoteFn};
pub use signals::{ignore_sigint, InterruptScope};

/// The pid of the fork server this process uses, if one is running (it is started by the first
/// `ForkServer` child and restarted if it dies).
pub fn forkserver_pid() -> Option<u32> {
    start::forkserver::server_pid()
}

/// Rust's `if __name__ == "__main__"`: call it on the first line of `main`.
///
/// In the parent (and in every program started normally) it returns at once. In a process
/// started as a child by `Spawn` or `ForkServer` it runs the requested function and exits —
/// which normally already happened before `main`, through this crate's life-before-main hook,
/// so a program (or a `cargo test` harness) that never calls `init` still works. With the hook
/// disabled (the environment variable `PROC_SPAWN_NO_HOOK` set), `init` is what runs the child.
///
/// # Examples
///
/// ```
/// // the first line of `main`:
/// proc_spawn::init();
/// // ... the program
/// ```
pub fn init() {
    bootstrap::run_if_child();
}
