//! How a fresh process learns what to run: the life-before-main hook, [`init`](crate::init), the
//! bootstrap message and its wire format, the trampolines, and the life of a child from its
//! first instruction to `_exit`.
//!
//! # The wire
//!
//! Parent and child talk over a stream socket in *frames*: a kind byte, a little-endian `u64`
//! length, the payload; descriptors travel with the first byte of their frame (`SCM_RIGHTS`).
//!
//! | kind | from | payload | descriptors |
//! |---|---|---|---|
//! | `BOOT` | parent (or fork-server client) | [`BootMsg`] (postcard) | the arguments' handles, then the parent's pidfd |
//! | `ACK` | child | its pid (`u32`) | under `ForkServer`, its own pidfd |
//! | `REFUSED` | child or server | why (UTF-8) | — |
//! | `RESULT` | child | a [`Wire`] (postcard) | the result's handles |
//! | `STATUS` | fork server | the exit code (`i32`) | — |
//!
//! # Naming a function across processes
//!
//! The target `fn(A) -> R` and its monomorphised trampoline travel as offsets from
//! [`anchor`], a function of this crate. The child adds them to its own `anchor`, and runs them
//! only if it runs the very same executable (same GNU build id, or the same file by device,
//! inode, size and modification time where there is no build id) and both addresses fall in
//! one of its executable segments. A trampoline `trampoline::<A, R>` was produced by the
//! parent from a `fn(A) -> R`, so transmuting the target back to that type is sound.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::Duration;

use ipc_shm::transfer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::{self, StartMethod};
use crate::process::{self, ProcessInfo};
use crate::sys;

/// The environment variable that tells a fresh process it is a child (`child:<fd>`) or the fork
/// server (`server:<fd>`), and where its bootstrap socket is.
pub(crate) const MARKER: &str = "PROC_SPAWN_BOOTSTRAP";
/// When set (to anything), the life-before-main hook does nothing and the child is run by
/// [`crate::init`] instead.
pub const NO_HOOK_ENV: &str = "PROC_SPAWN_NO_HOOK";

/// How long a parent waits for a fresh child (or fork server) to acknowledge its bootstrap
/// message before giving up.
pub(crate) const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) const BOOT: u8 = 1;
pub(crate) const ACK: u8 = 2;
pub(crate) const REFUSED: u8 = 3;
pub(crate) const RESULT: u8 = 4;
pub(crate) const STATUS: u8 = 5;

pub(crate) const VERSION: u32 = 1;

/// The largest frame accepted (a larger length is a malformed message).
const MAX_FRAME: u64 = 1 << 40;

/// What a parent tells a child to run.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct BootMsg {
    pub(crate) version: u32,
    /// [`sys::ExeInfo::identity`] of the parent's executable.
    pub(crate) identity: Vec<u8>,
    /// Target and trampoline, as offsets from [`anchor`].
    pub(crate) target: i64,
    pub(crate) trampoline: i64,
    /// The postcard-encoded arguments (their handles are the first `arg_fds` descriptors).
    pub(crate) args: Vec<u8>,
    pub(crate) arg_fds: u32,
    /// Whether a pidfd of the parent follows the arguments' descriptors.
    pub(crate) parent_pidfd: bool,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// Python's `_identity`: the path of counters from the main process to this child.
    pub(crate) id_path: Vec<u32>,
    pub(crate) parent: ProcessInfo,
    pub(crate) method: u8,
}

/// A child's result on the wire.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Wire {
    /// The transfer-encoded value (its handles travel with the frame).
    Value(Vec<u8>),
    /// The target panicked with this message.
    Panic(String),
}

/// The function every target's address is measured from.
#[inline(never)]
pub(crate) fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

/// `addr` as an offset from [`anchor`].
pub(crate) fn offset_of(addr: usize) -> i64 {
    addr.wrapping_sub(anchor()) as i64
}

/// Resolves an offset from [`anchor`] to an address inside this executable's code.
pub(crate) fn resolve(offset: i64) -> Option<usize> {
    let addr = anchor().wrapping_add(offset as usize);
    sys::exe_info()
        .text
        .iter()
        .any(|(a, b)| (*a..*b).contains(&addr))
        .then_some(addr)
}

/// The signature every trampoline has: target address, encoded arguments and their
/// descriptors, the socket for a result (when one is wanted); returns the exit code.
pub(crate) type Trampoline = fn(usize, &[u8], Vec<OwnedFd>, Option<BorrowedFd<'_>>) -> i32;

/// Decodes `A`, runs the `fn(A) -> R` at `target`, discards the result. A panic while
/// decoding (a user `Deserialize`) is the child's panic, like one in the target.
pub(crate) fn trampoline<A: DeserializeOwned, R>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
    _reply: Option<BorrowedFd<'_>>,
) -> i32 {
    let args: A = match call_caught(|| transfer::decode(args, fds)) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            eprintln!(
                "Process {}: cannot decode its arguments: {e}",
                process::current_name()
            );
            return 1;
        }
        Err(_) => return 1,
    };
    // SAFETY: `target` was produced by the parent from a `fn(A) -> R` of this same executable
    // (checked: same build id, address inside our code), together with the address of this
    // very monomorphisation of `trampoline::<A, R>`; function pointers are address-sized. The
    // bootstrap channel is private to the parent (see `run_if_child`).
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(target as *const ()) };
    match call_caught(move || f(args)) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

/// Decodes `A`, runs the `fn(A) -> R` at `target`, sends the result (or the panic message) on
/// `reply`.
pub(crate) fn trampoline_result<A: DeserializeOwned, R: Serialize>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
    reply: Option<BorrowedFd<'_>>,
) -> i32 {
    let args: A = match call_caught(|| transfer::decode(args, fds)) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let msg = format!("cannot decode its arguments: {e}");
            eprintln!("Process {}: {msg}", process::current_name());
            return finish_with_result::<R>(Err(msg), reply);
        }
        Err(panic) => return finish_with_result::<R>(Err(panic), reply),
    };
    // SAFETY: as in `trampoline`: the parent derived `target` from a `fn(A) -> R` of this
    // executable, and paired it with this monomorphisation.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(target as *const ()) };
    finish_with_result(call_caught(move || f(args)), reply)
}

/// Sends `outcome` (when there is a socket for it) and returns the exit code it stands for: 0
/// for a value, 1 for a panic (also one while encoding the value: a user `Serialize`).
pub(crate) fn finish_with_result<R: Serialize>(
    outcome: Result<R, String>,
    reply: Option<BorrowedFd<'_>>,
) -> i32 {
    let Some(r) = reply else {
        return if outcome.is_ok() { 0 } else { 1 };
    };
    let (wire, fds) = match outcome {
        Ok(v) => match call_caught(|| transfer::encode(&v)) {
            Ok(Ok((bytes, fds))) => (Wire::Value(bytes), fds),
            Ok(Err(e)) => (
                Wire::Panic(format!("cannot encode the result: {e}")),
                Vec::new(),
            ),
            Err(panic) => (Wire::Panic(panic), Vec::new()),
        },
        Err(msg) => (Wire::Panic(msg), Vec::new()),
    };
    let code = if matches!(wire, Wire::Value(_)) { 0 } else { 1 };
    let sent = postcard::to_allocvec(&wire)
        .map_err(io::Error::other)
        .and_then(|payload| send_frame(r, RESULT, &payload, &fds));
    if let Err(e) = sent {
        eprintln!(
            "Process {}: cannot send its result: {e}",
            process::current_name()
        );
        return 1;
    }
    code
}

/// Runs `f`, turning a panic into its message (the panic hook has printed it already).
pub(crate) fn call_caught<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_panic_prefix();
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_string()
        }
    })
}

/// In a child, a panic is announced like Python announces a child's traceback:
/// `Process <name>:` and then the usual message.
fn install_panic_prefix() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if process::in_child() {
                let _ = writeln!(io::stderr(), "Process {}:", process::current_name());
            }
            previous(info);
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// Frames

/// The bytes of one frame: kind, length, payload.
pub(crate) fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(9 + payload.len());
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    buf.extend_from_slice(payload);
    buf
}

/// Splits the bytes of exactly one frame into kind and payload.
pub(crate) fn unframe(bytes: &[u8]) -> Option<(u8, &[u8])> {
    let head = bytes.get(..9)?;
    let len = u64::from_le_bytes(head[1..9].try_into().ok()?);
    (bytes.len() as u64 - 9 == len).then(|| (head[0], &bytes[9..]))
}

/// Sends one frame; the descriptors go with its first byte.
pub(crate) fn send_frame(
    sock: BorrowedFd<'_>,
    kind: u8,
    payload: &[u8],
    fds: &[OwnedFd],
) -> io::Result<()> {
    let buf = frame(kind, payload);
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    let mut sent = transfer::send_with_fds(sock, &buf, &borrowed)?;
    while sent < buf.len() {
        let n = transfer::send_with_fds(sock, &buf[sent..], &[])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    Ok(())
}

/// A received frame: kind, payload, descriptors.
pub(crate) type Frame = (u8, Vec<u8>, Vec<OwnedFd>);

/// Receives one frame: `None` at a clean end of stream (before a frame starts).
pub(crate) fn recv_frame(sock: BorrowedFd<'_>) -> io::Result<Option<Frame>> {
    let mut fds = Vec::new();
    let mut head = [0u8; 9];
    let mut got = 0;
    while got < head.len() {
        let n = transfer::recv_with_fds(
            sock,
            &mut head[got..],
            &mut fds,
            transfer::MAX_FDS_PER_MESSAGE,
        )?;
        if n == 0 {
            if got == 0 && fds.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a message",
            ));
        }
        got += n;
    }
    let kind = head[0];
    let len = u64::from_le_bytes(head[1..9].try_into().expect("8 bytes"));
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes announced: malformed"),
        ));
    }
    let len = len as usize;
    let mut payload = Vec::with_capacity(len.min(1 << 20));
    let mut chunk = vec![0u8; len.min(1 << 16)];
    while payload.len() < len {
        let want = (len - payload.len()).min(chunk.len());
        let n = transfer::recv_with_fds(
            sock,
            &mut chunk[..want],
            &mut fds,
            transfer::MAX_FDS_PER_MESSAGE,
        )?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a message",
            ));
        }
        payload.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((kind, payload, fds)))
}

// ---------------------------------------------------------------------------------------------
// The hook and init()

/// Runs [`hook`] before `main`: an entry of `.init_array`, which the C runtime calls with
/// `argc`, `argv` and `envp` after the Rust standard library's own early initialisers (they
/// sit in numbered `.init_array.*` sections, which run first).
#[used]
#[link_section = ".init_array"]
pub(crate) static INIT_HOOK: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = hook;

extern "C" fn hook(
    _argc: libc::c_int,
    _argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    if std::env::var_os(NO_HOOK_ENV).is_some() {
        return;
    }
    // Nothing may unwind out of an `extern "C"` function; a child never returns from here.
    let _ = panic::catch_unwind(run_if_child);
}

/// Keeps [`INIT_HOOK`] linked into every executable that starts processes (a static nothing
/// refers to may be left out with its object file).
pub(crate) fn keep_hook() {
    std::hint::black_box(&INIT_HOOK);
}

/// If this process was started as a child (or as the fork server), becomes it and never
/// returns; otherwise returns at once.
pub(crate) fn run_if_child() {
    keep_hook();
    let Some(value) = std::env::var_os(MARKER) else {
        return;
    };
    // Remove the marker first, so that nothing runs twice (a grandchild, or main after a hook
    // that somehow returned).
    std::env::remove_var(MARKER);
    // From here on this process is a child (or the fork server) and never returns: a panic
    // that escapes (user code decoding the arguments or encoding the result, say) ends it
    // rather than unwinding into `main`, which would run the parent's program a second time.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| become_from_marker(value)));
    if outcome.is_err() {
        let _ = io::stderr().flush();
    }
    sys::exit_now(1)
}

/// Why a process in secure-execution mode (set-user-ID, set-group-ID, file capabilities: the
/// kernel's `AT_SECURE`) refuses to act on the marker, `None` otherwise. Whoever launches such
/// a program chooses its environment and its descriptors, so it could otherwise make it run any
/// code of the executable with more privileges than its own.
pub(crate) fn secure_execution_refusal(at_secure: u64) -> Option<String> {
    (at_secure != 0).then(|| {
        format!(
            "refusing to run as a child: this program runs in secure-execution mode \
             (set-user-ID, set-group-ID or file capabilities), where {MARKER} cannot be trusted"
        )
    })
}

fn become_from_marker(value: OsString) -> ! {
    let value = value.to_string_lossy().into_owned();
    let (kind, fd) = match value.split_once(':') {
        Some((k, n)) => match n.parse::<i32>() {
            Ok(fd) if fd >= 0 => (k.to_string(), fd),
            _ => bad_marker(&value),
        },
        None => bad_marker(&value),
    };
    if let Some(why) = secure_execution_refusal(sys::at_secure()) {
        // Tell the parent why, if the descriptor is open at all.
        if sys::fd_is_open(fd) {
            // SAFETY: `fd` is open (checked just above) and stays open for this borrow.
            let sock = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = send_frame(sock, REFUSED, why.as_bytes(), &[]);
        }
        eprintln!("proc-spawn: {why}");
        sys::exit_now(1)
    }
    // SAFETY: our parent placed the bootstrap socket at this descriptor number for us (the
    // marker names it) and nothing else in this fresh process has touched it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = sys::set_cloexec(sock.as_fd());
    sys::ignore_sigpipe();
    match kind.as_str() {
        "child" => spawned_child(sock),
        "server" => crate::start::forkserver::serve(sock),
        _ => bad_marker(&value),
    }
}

fn bad_marker(value: &str) -> ! {
    eprintln!("proc-spawn: malformed {MARKER}={value:?}; exiting");
    sys::exit_now(1)
}

/// Refuses to go on in a process whose bootstrap marker is still there: it was started as a
/// child but never reached the hook nor [`crate::init`] (Python's "An attempt has been made to
/// start a new process before the current process has finished its bootstrapping phase").
/// Exits with code 1, as the child of a Python program without the `__main__` guard does.
pub(crate) fn refuse_if_bootstrapping() {
    if std::env::var_os(MARKER).is_some() {
        eprintln!(
            "proc-spawn: this process was started as a child process but never ran \
             proc_spawn::init(): call proc_spawn::init() (or multiproc::init()) on the first \
             line of main (it is done before main unless {NO_HOOK_ENV} is set); exiting"
        );
        let _ = io::stderr().flush();
        std::process::exit(1);
    }
}

/// A spawned child: read the bootstrap message, become the child.
fn spawned_child(sock: OwnedFd) -> ! {
    let (msg, fds) = match read_boot(sock.as_fd()) {
        Ok(x) => x,
        Err(e) => {
            let _ = send_frame(sock.as_fd(), REFUSED, e.as_bytes(), &[]);
            eprintln!("proc-spawn: bad bootstrap message: {e}");
            sys::exit_now(1)
        }
    };
    become_child(sock, msg, fds, StartMethod::Spawn)
}

/// Reads and decodes a `BOOT` frame.
pub(crate) fn read_boot(sock: BorrowedFd<'_>) -> Result<(BootMsg, Vec<OwnedFd>), String> {
    match recv_frame(sock) {
        Ok(Some((BOOT, payload, fds))) => parse_boot(&payload, fds),
        Ok(Some((kind, _, _))) => Err(format!("unexpected message kind {kind} at bootstrap")),
        Ok(None) => Err("parent hung up before sending the bootstrap message".into()),
        Err(e) => Err(format!("reading the bootstrap message: {e}")),
    }
}

/// Decodes the payload of a `BOOT` frame and checks its descriptor count.
pub(crate) fn parse_boot(
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(BootMsg, Vec<OwnedFd>), String> {
    let msg: BootMsg =
        postcard::from_bytes(payload).map_err(|e| format!("malformed bootstrap message: {e}"))?;
    let need = msg.arg_fds as usize + usize::from(msg.parent_pidfd);
    if fds.len() != need {
        return Err(format!(
            "bootstrap message carried {} descriptors, expected {need}",
            fds.len()
        ));
    }
    Ok((msg, fds))
}

/// Checks that `msg` names code of this very executable; returns the target and trampoline.
pub(crate) fn verify(msg: &BootMsg) -> Result<(usize, Trampoline), String> {
    if msg.version != VERSION {
        return Err(format!(
            "bootstrap protocol version {} (this executable speaks {VERSION})",
            msg.version
        ));
    }
    let mine = &sys::exe_info().identity;
    if &msg.identity != mine {
        return Err(format!(
            "the parent runs another executable (identity {} vs {}): refusing to run code by \
             address",
            hex(&msg.identity),
            hex(mine)
        ));
    }
    let target = resolve(msg.target).ok_or_else(|| {
        format!(
            "target offset {:#x} is outside this executable's code",
            msg.target
        )
    })?;
    let tramp = resolve(msg.trampoline).ok_or_else(|| {
        format!(
            "trampoline offset {:#x} is outside this executable's code",
            msg.trampoline
        )
    })?;
    // SAFETY: `tramp` lies in this executable's code at the offset the parent (the same
    // executable, checked above) computed from a function of type `Trampoline`.
    let tramp = unsafe { std::mem::transmute::<*const (), Trampoline>(tramp as *const ()) };
    Ok((target, tramp))
}

/// What a child that received `BOOT` would run, once checked: for the hostile-input tests and
/// fuzz targets, which feed [`fuzz_read_boot`] arbitrary bytes and descriptors.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCheck {
    /// Descriptors that came with the message (arguments' handles and the parent's pidfd).
    pub fds: usize,
    /// The resolved target address (inside this executable's code).
    pub target: usize,
    /// The resolved trampoline address (inside this executable's code).
    pub trampoline: usize,
}

/// Reads one bootstrap message from `sock` exactly as a spawned child does ([`read_boot`]:
/// framing, postcard decoding, descriptor count) and checks it ([`verify`]), without running
/// anything. For the hostile-input tests and fuzz targets only.
#[doc(hidden)]
pub fn fuzz_read_boot(sock: BorrowedFd<'_>) -> Result<BootCheck, String> {
    let (msg, fds) = read_boot(sock)?;
    let (target, trampoline) = verify(&msg)?;
    Ok(BootCheck {
        fds: fds.len(),
        target,
        trampoline: trampoline as usize,
    })
}

/// A well-formed `BOOT` frame (header and payload) that this executable accepts, announcing
/// `arg_fds` argument descriptors and, when `parent_pidfd`, a pidfd after them: the seed that
/// the hostile-input tests and fuzz targets mutate.
#[doc(hidden)]
pub fn fuzz_sample_boot_frame(arg_fds: u32, parent_pidfd: bool) -> Vec<u8> {
    let msg = BootMsg {
        version: VERSION,
        identity: sys::exe_info().identity.clone(),
        target: offset_of(anchor as fn() -> usize as usize),
        trampoline: offset_of(trampoline::<u8, ()> as Trampoline as usize),
        args: vec![7],
        arg_fds,
        parent_pidfd,
        name: "Process-1".into(),
        daemon: false,
        id_path: vec![1],
        parent: ProcessInfo::new("MainProcess".into(), sys::getpid(), false),
        method: 1,
    };
    // Encoding a plain struct into a Vec cannot fail.
    frame(BOOT, &postcard::to_allocvec(&msg).unwrap_or_default())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Becomes the child `msg` describes (after `spawn`, or after the fork server's `fork`): checks
/// the request, records who we are, acknowledges, runs the target, exits.
pub(crate) fn become_child(
    sock: OwnedFd,
    msg: BootMsg,
    mut fds: Vec<OwnedFd>,
    method: StartMethod,
) -> ! {
    let (target, tramp) = match verify(&msg) {
        Ok(x) => x,
        Err(e) => {
            let _ = send_frame(sock.as_fd(), REFUSED, e.as_bytes(), &[]);
            eprintln!("proc-spawn: refusing to run: {e}");
            sys::exit_now(1)
        }
    };
    let parent_pidfd = if msg.parent_pidfd { fds.pop() } else { None };
    context::set_child_method(method);
    process::become_child(
        ProcessInfo::new(msg.name.clone(), sys::getpid(), msg.daemon),
        msg.parent.clone(),
        msg.id_path.clone(),
    );
    match parent_pidfd {
        Some(pfd) if msg.daemon => process::watch_parent(pfd),
        other => drop(other),
    }
    // Acknowledge: under ForkServer the parent is not our OS parent, so it gets a pidfd of us
    // from us (race-free: we are alive).
    let mut ack_fds = Vec::new();
    if method == StartMethod::ForkServer {
        match sys::pidfd_open(sys::getpid()) {
            Ok(fd) => ack_fds.push(fd),
            Err(e) => {
                let m = format!("pidfd_open of itself failed: {e}");
                let _ = send_frame(sock.as_fd(), REFUSED, m.as_bytes(), &[]);
                sys::exit_now(1)
            }
        }
    }
    if send_frame(sock.as_fd(), ACK, &sys::getpid().to_le_bytes(), &ack_fds).is_err() {
        // The parent is gone: nobody wants this child any more.
        sys::exit_now(1)
    }
    drop(ack_fds);
    sys::stdin_to_null();
    let code = tramp(target, &msg.args, fds, Some(sock.as_fd()));
    drop(sock);
    finish_child(code)
}

/// The end of every child: Python's exit sequence (daemon children terminated, the others
/// joined), standard streams flushed, `_exit(code)`.
pub(crate) fn finish_child(code: i32) -> ! {
    let _ = panic::catch_unwind(process::shutdown_children);
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    sys::exit_now(code)
}

/// The argument vector a spawned child gets: the parent's own.
pub(crate) fn child_argv() -> Vec<std::ffi::CString> {
    use std::os::unix::ffi::OsStringExt;
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.is_empty() {
        args.push(
            std::env::current_exe()
                .map(|p| p.into_os_string())
                .unwrap_or_else(|_| OsString::from("proc-spawn-child")),
        );
    }
    args.into_iter()
        .filter_map(|a| std::ffi::CString::new(a.into_vec()).ok())
        .collect()
}

/// The environment a spawned child gets: ours, without a stale marker.
pub(crate) fn child_env() -> Vec<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::env::vars_os()
        .filter(|(k, _)| k != MARKER)
        .filter_map(|(k, v)| {
            let mut s = k.as_bytes().to_vec();
            s.push(b'=');
            s.extend_from_slice(v.as_bytes());
            std::ffi::CString::new(s).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BootMsg {
        BootMsg {
            version: VERSION,
            identity: sys::exe_info().identity.clone(),
            target: offset_of(sample as fn() -> BootMsg as usize),
            trampoline: offset_of(trampoline::<u8, ()> as Trampoline as usize),
            args: vec![],
            arg_fds: 0,
            parent_pidfd: false,
            name: "x".into(),
            daemon: false,
            id_path: vec![1],
            parent: ProcessInfo::new("MainProcess".into(), 1, false),
            method: 1,
        }
    }

    #[test]
    fn secure_execution_mode_is_refused() {
        let why = secure_execution_refusal(1).expect("a refusal");
        assert!(why.contains("secure-execution"), "{why}");
        assert_eq!(secure_execution_refusal(0), None);
        // this test runs normally
        assert_eq!(secure_execution_refusal(sys::at_secure()), None);
    }

    #[test]
    fn same_executable_is_accepted() {
        let (t, _) = verify(&sample()).unwrap();
        assert_eq!(t, sample as fn() -> BootMsg as usize);
    }

    #[test]
    fn another_executable_is_refused() {
        let mut m = sample();
        m.identity = b"gnu-build-id:0123".to_vec();
        let e = verify(&m).unwrap_err();
        assert!(e.contains("another executable"), "{e}");
    }

    #[test]
    fn addresses_outside_the_code_are_refused() {
        let mut m = sample();
        m.target = i64::MAX / 2;
        assert!(verify(&m).unwrap_err().contains("target offset"));
        let mut m = sample();
        m.trampoline = -(anchor() as i64) + 8; // address 8
        assert!(verify(&m).unwrap_err().contains("trampoline offset"));
        let mut m = sample();
        m.version = 99;
        assert!(verify(&m).unwrap_err().contains("version"));
    }

    /// Spawns this test binary as a child and sends it `msg`; returns its first answer and its
    /// exit code.
    fn spawn_with(msg: &BootMsg) -> (Option<Frame>, Option<i32>) {
        let (mine, theirs) = sys::stream_pair().unwrap();
        let pid = sys::spawn_self(&child_argv(), child_env(), theirs.as_fd(), |fd| {
            std::ffi::CString::new(format!("{MARKER}=child:{fd}")).unwrap()
        })
        .unwrap();
        drop(theirs);
        let pidfd = sys::pidfd_open(pid).unwrap();
        let payload = postcard::to_allocvec(msg).unwrap();
        send_frame(mine.as_fd(), BOOT, &payload, &[]).unwrap();
        let answer = recv_frame(mine.as_fd()).unwrap();
        let code = sys::reap(pidfd.as_fd(), true).unwrap();
        (answer, code)
    }

    #[test]
    fn a_spawned_child_refuses_another_executable() {
        let mut m = sample();
        m.identity = b"gnu-build-id:feedface".to_vec();
        let (answer, code) = spawn_with(&m);
        let (kind, payload, _) = answer.expect("an answer");
        assert_eq!(kind, REFUSED);
        let why = String::from_utf8(payload).unwrap();
        assert!(why.contains("another executable"), "{why}");
        assert_eq!(code, Some(1));
    }

    #[test]
    fn a_spawned_child_refuses_an_address_outside_its_code() {
        let mut m = sample();
        m.target = i64::MAX / 4;
        let (answer, code) = spawn_with(&m);
        let (kind, payload, _) = answer.expect("an answer");
        assert_eq!(kind, REFUSED);
        assert!(String::from_utf8_lossy(&payload).contains("outside this executable's code"));
        assert_eq!(code, Some(1));
    }

    #[test]
    fn a_spawned_child_refuses_a_descriptor_count_mismatch() {
        let mut m = sample();
        m.arg_fds = 2; // announced, not sent
        let (answer, code) = spawn_with(&m);
        let (kind, payload, _) = answer.expect("an answer");
        assert_eq!(kind, REFUSED);
        assert!(String::from_utf8_lossy(&payload).contains("descriptors"));
        assert_eq!(code, Some(1));
    }

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let (a, b) = sys::stream_pair().unwrap();
        let big = vec![7u8; 300_000];
        let big2 = big.clone();
        let t = std::thread::spawn(move || {
            let devnull = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
            send_frame(a.as_fd(), RESULT, &big2, &[devnull]).unwrap();
            send_frame(a.as_fd(), STATUS, &[1, 2], &[]).unwrap();
            a
        });
        let (k, p, f) = recv_frame(b.as_fd()).unwrap().unwrap();
        assert_eq!((k, p.len(), f.len()), (RESULT, big.len(), 1));
        assert_eq!(p, big);
        let (k, p, f) = recv_frame(b.as_fd()).unwrap().unwrap();
        assert_eq!((k, p, f.len()), (STATUS, vec![1, 2], 0));
        let a = t.join().unwrap();
        // a length beyond the limit is an error, not an allocation
        let mut bad = vec![RESULT];
        bad.extend_from_slice(&u64::MAX.to_le_bytes());
        transfer::send_with_fds(a.as_fd(), &bad, &[]).unwrap();
        assert_eq!(
            recv_frame(b.as_fd()).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // a truncated frame is an error, a clean end is None
        let (c, d) = sys::stream_pair().unwrap();
        transfer::send_with_fds(c.as_fd(), &[RESULT, 5, 0, 0, 0, 0, 0, 0, 0, 1], &[]).unwrap();
        drop(c);
        assert_eq!(
            recv_frame(d.as_fd()).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let (e, f) = sys::stream_pair().unwrap();
        drop(e);
        assert!(recv_frame(f.as_fd()).unwrap().is_none());
    }
}
