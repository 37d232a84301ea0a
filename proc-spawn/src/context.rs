//! Start methods and contexts: which way a child is created, chosen once per program.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::process::{JoinHandle, Process, Run};

/// The environment variable that picks the start method of code that does not choose one
/// (`fork`, `spawn` or `forkserver`); the test matrix runs whole suites under each.
pub const START_METHOD_ENV: &str = "IPC_START_METHOD";

/// How a child process is created.
///
/// | method | what happens | targets |
/// |---|---|---|
/// | [`Fork`](StartMethod::Fork) | `fork()`; the child is a copy of the parent and runs the target in it | `fn` pointers and any `FnOnce() + Send` closure |
/// | [`Spawn`](StartMethod::Spawn) | `posix_spawn` of this very executable; the child learns what to run over a socket before `main` | `fn(A) -> R` pointers, serde arguments |
/// | [`ForkServer`](StartMethod::ForkServer) | a single-threaded server (started once by spawn) forks a child per request | as `Spawn` |
///
/// `Fork` is the fastest but unsafe when other threads hold locks at the time of the fork
/// (the child inherits them locked: see the crate docs). `ForkServer`, the default on Linux,
/// forks from a process that never runs other threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// `fork()` the calling process.
    Fork,
    /// Re-execute the current executable.
    Spawn,
    /// Ask the fork server to fork a child.
    ForkServer,
}

impl StartMethod {
    /// The Python name: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            StartMethod::Fork => 0,
            StartMethod::Spawn => 1,
            StartMethod::ForkServer => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<StartMethod> {
        match v {
            0 => Some(StartMethod::Fork),
            1 => Some(StartMethod::Spawn),
            2 => Some(StartMethod::ForkServer),
            _ => None,
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    /// Parses `"fork"`, `"spawn"` or `"forkserver"`.
    fn from_str(s: &str) -> Result<StartMethod> {
        match s {
            "fork" => Ok(StartMethod::Fork),
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::ForkServer),
            other => Err(Error::UnknownStartMethod(other.to_string())),
        }
    }
}

/// The start method of this program, once chosen (by [`set_start_method`] or by first use):
/// 0 for none, else the method's `to_u8() + 1`. An atomic rather than a lock, so that a forked
/// child never finds it locked by a thread that does not exist in it.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

fn load() -> Option<StartMethod> {
    match CHOSEN.load(Ordering::Acquire) {
        0 => None,
        v => StartMethod::from_u8(v - 1),
    }
}

fn store_if_unset(m: StartMethod) -> StartMethod {
    match CHOSEN.compare_exchange(0, m.to_u8() + 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => m,
        Err(v) => StartMethod::from_u8(v - 1).unwrap_or(m),
    }
}

/// The default before anything is chosen: `IPC_START_METHOD` if set, else `ForkServer`.
fn initial_default() -> Result<StartMethod> {
    match std::env::var(START_METHOD_ENV) {
        Ok(v) if !v.is_empty() => v.parse().map_err(|_| {
            Error::UnknownStartMethod(format!(
                "{v} (from the environment variable {START_METHOD_ENV})"
            ))
        }),
        _ => Ok(StartMethod::ForkServer),
    }
}

/// Chooses the start method of this program, for every process and pool that does not name
/// one (Python's `multiprocessing.set_start_method`).
///
/// # Errors
///
/// [`Error::ContextAlreadySet`] when a method was already chosen, by an earlier call or by a
/// first use (starting a process with the default method, or [`get_start_method`]). Use
/// [`force_start_method`] to override.
///
/// # Examples
///
/// ```
/// use proc_spawn::{get_start_method, set_start_method, StartMethod};
/// set_start_method(StartMethod::Spawn).unwrap();
/// assert_eq!(get_start_method(), StartMethod::Spawn);
/// assert!(set_start_method(StartMethod::Fork).is_err());
/// ```
pub fn set_start_method(method: StartMethod) -> Result<()> {
    match CHOSEN.compare_exchange(0, method.to_u8() + 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        Err(v) => Err(Error::ContextAlreadySet(
            StartMethod::from_u8(v - 1).unwrap_or(method),
        )),
    }
}

/// Sets (or, with `None`, resets to "not chosen yet") the start method even if one was chosen:
/// Python's `set_start_method(method, force=True)`.
pub fn force_start_method(method: Option<StartMethod>) {
    CHOSEN.store(method.map_or(0, |m| m.to_u8() + 1), Ordering::Release);
}

/// The start method of this program, choosing the default if none was chosen yet:
/// `IPC_START_METHOD` when set to a valid name, else [`StartMethod::ForkServer`].
///
/// In a child it is the method that started the child.
pub fn get_start_method() -> StartMethod {
    if let Some(m) = load() {
        return m;
    }
    store_if_unset(initial_default().unwrap_or(StartMethod::ForkServer))
}

/// The method for a process that names none; fixes the choice like Python's first use.
///
/// An invalid `IPC_START_METHOD` is an error here (a misconfigured test matrix must not
/// silently run the default).
pub(crate) fn default_method() -> Result<StartMethod> {
    if let Some(m) = load() {
        return Ok(m);
    }
    Ok(store_if_unset(initial_default()?))
}

/// Sets the method in a child: the one that started it. Writes nothing when it is set already
/// (the fork server sets it before forking, sparing each child a copied page).
pub(crate) fn set_child_method(method: StartMethod) {
    if load() != Some(method) {
        force_start_method(Some(method));
    }
}

/// The start methods this platform offers, the default first:
/// `[ForkServer, Spawn, Fork]` on Linux.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![
        StartMethod::ForkServer,
        StartMethod::Spawn,
        StartMethod::Fork,
    ]
}

/// A start method to build processes with, whatever the program's default (Python's
/// `multiprocessing.get_context(method)`).
///
/// # Examples
///
/// ```
/// use proc_spawn::{get_context, StartMethod};
///
/// fn greet(name: String) {
///     println!("hello, {name}");
/// }
///
/// proc_spawn::init();
/// let ctx = get_context(StartMethod::Spawn);
/// let mut p = ctx.process(greet, "bob".to_string());
/// p.start().unwrap();
/// p.join().unwrap();
/// assert_eq!(p.exitcode(), Some(0));
/// ```
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

/// Builds processes bound to one start method; see [`get_context`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// The context of the program's default method ([`get_start_method`]).
    pub fn default_context() -> Context {
        Context {
            method: get_start_method(),
        }
    }

    /// This context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A [`Process`] running `f(args)` started with this context's method.
    pub fn process<A, R>(&self, f: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: 'static,
    {
        Process::new(f, args).with_method(self.method)
    }

    /// A [`Process`] running `obj.run()`, started with this context's method.
    pub fn process_from_run<T>(&self, obj: T) -> Process
    where
        T: Run + Serialize + DeserializeOwned + Send + 'static,
    {
        Process::from_run(obj).with_method(self.method)
    }

    /// Starts `f(args)` in a child with this context's method; see [`crate::spawn`].
    pub fn spawn<A, R>(&self, f: fn(A) -> R, args: A) -> JoinHandle<R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        JoinHandle::start(Process::new_with_result(f, args).with_method(self.method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in get_all_start_methods() {
            assert_eq!(m.name().parse::<StartMethod>().unwrap(), m);
            assert_eq!(StartMethod::from_u8(m.to_u8()), Some(m));
            assert_eq!(m.to_string(), m.name());
        }
        let e = "bogus".parse::<StartMethod>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot find context for \"bogus\" (expected fork, spawn or forkserver)"
        );
        assert_eq!(get_all_start_methods()[0], StartMethod::ForkServer);
    }
}
