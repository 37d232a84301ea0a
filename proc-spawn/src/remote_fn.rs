//! [`RemoteFn`]: a function pointer named across processes of the same executable, and called
//! there with encoded arguments.
//!
//! A `RemoteFn` is what [`Process::new`](crate::Process::new) does to its target, as a value of
//! its own: a library that keeps long-lived workers (a pool) sends one per task over any channel
//! and the worker calls it, with no `unsafe` code in the library.
//!
//! # How it is sound
//!
//! - Only function pointers are named ([`FnPtr`]: `fn(A) -> R` up to four arguments; a closure
//!   that captures nothing coerces to one). A closure value is never conjured from nothing.
//! - The target travels together with a *trampoline*, a function of this crate monomorphised
//!   for the target's exact type and for the [`Invoke`] that decodes, calls and encodes; both
//!   as offsets from a function of this crate (the anchor). The trampoline is the only code that
//!   turns the target's address back into a typed pointer, and it was paired with a target of
//!   that very type when the `RemoteFn` was made.
//! - Before anything is called, both addresses (the anchor of the calling process plus the
//!   offsets) must lie in an executable segment of the calling process's own executable file
//!   (its program headers, read once); otherwise the call is refused with
//!   [`Error::CallRefused`] and nothing runs. A forged or corrupted `RemoteFn` is an error, not a
//!   jump into data.
//! - The offsets mean the same code only in a process running the very same executable: a
//!   child started by this crate (every start method checks the executable's identity before
//!   it runs anything), or a copy made by `fork`.
//!
//! # The contract
//!
//! The check catches addresses outside the code (garbage, a corrupted message, an offset from
//! a differently laid out program), not a deliberate forgery: a value deserialized from bytes
//! crafted to pair the trampoline of one type with the address of a function of another type,
//! both inside the code, would be called with the wrong type. So, as with
//! [`Process`](crate::Process)'s own bootstrap (and Python's pickle), deserialize `RemoteFn`s
//! only from channels between processes of your own program — the channels this crate and the
//! multiproc crates make — never from untrusted peers. This crate offers no way to build a
//! `RemoteFn` from raw offsets.

use std::fmt;
use std::os::fd::OwnedFd;

use ipc_shm::transfer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{offset_of, resolve};
use crate::error::Error;

mod sealed {
    /// The private half of [`FnPtr`](super::FnPtr): only this crate converts addresses.
    pub trait Sealed: Copy {
        /// The function's address.
        fn addr(self) -> usize;

        /// The function pointer at `addr`.
        ///
        /// # Safety
        ///
        /// `addr` must be the address of a function of exactly this type (obtained with
        /// [`Sealed::addr`] on a value of this type, in this process or in a process running
        /// the same executable at the same offset from the anchor).
        unsafe fn from_addr(addr: usize) -> Self;
    }
}

/// A function pointer type a [`RemoteFn`] can name: `fn(A) -> R`, `fn(A, B) -> R`,
/// `fn(A, B, C) -> R` and `fn(A, B, C, D) -> R` (sealed: nothing else can implement it).
///
/// A `fn` item or a closure that captures nothing coerces to one:
/// `RemoteFn::new(square as fn(i64) -> i64)`, or simply `RemoteFn::new(square)` where the type
/// is inferred from the parameter.
pub trait FnPtr: sealed::Sealed + Send + Sync + 'static {}

macro_rules! fn_ptr {
    ($($arg:ident),+) => {
        impl<$($arg: 'static,)+ R: 'static> sealed::Sealed for fn($($arg),+) -> R {
            fn addr(self) -> usize {
                self as usize
            }

            unsafe fn from_addr(addr: usize) -> Self {
                // SAFETY: the caller guarantees `addr` is the address of a function of exactly
                // this type; function pointers and `*const ()` have the same size on every
                // target Rust supports with processes.
                unsafe { std::mem::transmute::<*const (), Self>(addr as *const ()) }
            }
        }

        impl<$($arg: 'static,)+ R: 'static> FnPtr for fn($($arg),+) -> R {}
    };
}

fn_ptr!(A);
fn_ptr!(A, B);
fn_ptr!(A, B, C);
fn_ptr!(A, B, C, D);

/// How a [`RemoteFn`] runs its function in the process that calls it: decode the input, call,
/// encode the output. The default, [`DecodeCallEncode`], decodes the arguments (a tuple for a
/// function of several arguments) and encodes the return value; a library may supply its own
/// (a pool calls its function once per item of a decoded `Vec` and catches panics per item).
///
/// `invoke` gets the function as a typed, ordinary function pointer: implementing this trait
/// needs no `unsafe`.
pub trait Invoke<F: FnPtr>: 'static {
    /// Runs `f` on `input` (bytes and descriptors, as [`ipc_shm::transfer::encode`] made them)
    /// and appends the encoded output to `out`, returning the output's descriptors.
    ///
    /// # Errors
    ///
    /// Whatever the implementation reports; by convention [`Error::Transfer`] with `what`
    /// `"arguments"` when the input does not decode and `"result"` when the output does not
    /// encode.
    fn invoke(
        f: F,
        input: &[u8],
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, Error>;
}

/// The default [`Invoke`]: decodes the argument(s), calls the function, encodes its result.
/// A panic in the function (or in a user `Serialize`/`Deserialize`) unwinds out of
/// [`RemoteFn::call`], as if the function had been called directly.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeCallEncode;

fn decode_input<T: DeserializeOwned>(input: &[u8], fds: Vec<OwnedFd>) -> Result<T, Error> {
    transfer::decode(input, fds).map_err(|source| Error::Transfer {
        what: "arguments",
        source,
    })
}

fn encode_output<T: Serialize>(v: &T, out: &mut Vec<u8>) -> Result<Vec<OwnedFd>, Error> {
    transfer::encode_into(v, out).map_err(|source| Error::Transfer {
        what: "result",
        source,
    })
}

impl<A, R> Invoke<fn(A) -> R> for DecodeCallEncode
where
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    fn invoke(
        f: fn(A) -> R,
        input: &[u8],
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, Error> {
        let a: A = decode_input(input, fds)?;
        encode_output(&f(a), out)
    }
}

impl<A, B, R> Invoke<fn(A, B) -> R> for DecodeCallEncode
where
    A: DeserializeOwned + 'static,
    B: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    fn invoke(
        f: fn(A, B) -> R,
        input: &[u8],
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, Error> {
        let (a, b): (A, B) = decode_input(input, fds)?;
        encode_output(&f(a, b), out)
    }
}

impl<A, B, C, R> Invoke<fn(A, B, C) -> R> for DecodeCallEncode
where
    A: DeserializeOwned + 'static,
    B: DeserializeOwned + 'static,
    C: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    fn invoke(
        f: fn(A, B, C) -> R,
        input: &[u8],
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, Error> {
        let (a, b, c): (A, B, C) = decode_input(input, fds)?;
        encode_output(&f(a, b, c), out)
    }
}

impl<A, B, C, D, R> Invoke<fn(A, B, C, D) -> R> for DecodeCallEncode
where
    A: DeserializeOwned + 'static,
    B: DeserializeOwned + 'static,
    C: DeserializeOwned + 'static,
    D: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    fn invoke(
        f: fn(A, B, C, D) -> R,
        input: &[u8],
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, Error> {
        let (a, b, c, d): (A, B, C, D) = decode_input(input, fds)?;
        encode_output(&f(a, b, c, d), out)
    }
}

/// What every trampoline looks like: the target's address, the input, its descriptors, the
/// output buffer.
type Trampoline = fn(usize, &[u8], Vec<OwnedFd>, &mut Vec<u8>) -> Result<Vec<OwnedFd>, Error>;

/// Turns `target` back into an `F` and hands it to `I`.
fn trampoline<F: FnPtr, I: Invoke<F>>(
    target: usize,
    input: &[u8],
    fds: Vec<OwnedFd>,
    out: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, Error> {
    // SAFETY: this monomorphisation is only ever named by a `RemoteFn` made by
    // `RemoteFn::with_invoker::<F, I>` from a value of type `F`, whose address (as an offset
    // from the anchor) travels beside this trampoline's; `RemoteFn::call` checked that both
    // addresses lie in this executable's code, and the executable is the one the `RemoteFn`
    // was made in (the documented contract: processes started by this crate, which checks the
    // executable's identity, or forks).
    let f = unsafe { <F as sealed::Sealed>::from_addr(target) };
    I::invoke(f, input, fds, out)
}

/// A function pointer `fn(A) -> R` (or of 2 to 4 arguments) named so that another process of
/// the same executable can call it: two offsets from an anchor function (the target and a
/// trampoline monomorphised for its type), checked against the calling process's own code
/// before any call.
///
/// It is plain data (`Copy`, serde): send it over a
/// [`Connection`](ipc_channel_core::Connection), a queue, in a process's arguments. The arguments
/// travel separately, encoded with [`ipc_shm::transfer::encode`] (so multiproc handles inside
/// them work); [`call`](RemoteFn::call) decodes them, runs the function and returns the encoded
/// result.
///
/// # Examples
///
/// ```
/// use ipc_shm::transfer;
/// use proc_spawn::{get_context, RemoteFn, StartMethod};
///
/// fn square(x: i64) -> i64 {
///     x * x
/// }
///
/// // In a child: call the function named by `f` on the encoded argument.
/// fn run_remote((f, args): (RemoteFn, Vec<u8>)) -> Vec<u8> {
///     f.call(&args, Vec::new()).expect("call").0
/// }
///
/// proc_spawn::init();
/// let f = RemoteFn::new(square as fn(i64) -> i64);
/// let (args, _fds) = transfer::encode(&7i64).unwrap();
/// for m in proc_spawn::get_all_start_methods() {
///     let out = get_context(m).spawn(run_remote, (f, args.clone())).join()?;
///     let r: i64 = transfer::decode(&out, Vec::new()).unwrap();
///     assert_eq!(r, 49);
/// }
/// # Ok::<(), proc_spawn::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RemoteFn {
    target: i64,
    trampoline: i64,
}

impl fmt::Debug for RemoteFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFn")
            .field("target", &format_args!("{:#x}", self.target))
            .field("trampoline", &format_args!("{:#x}", self.trampoline))
            .finish()
    }
}

impl RemoteFn {
    /// Names `f`, to be called with [`DecodeCallEncode`]: the input is the encoded argument (a
    /// tuple `(A, B, ..)` for a function of several arguments), the output the encoded result.
    pub fn new<F>(f: F) -> RemoteFn
    where
        F: FnPtr,
        DecodeCallEncode: Invoke<F>,
    {
        RemoteFn::with_invoker::<F, DecodeCallEncode>(f)
    }

    /// Names `f`, to be called through the invoker `I` (which decides what the input and the
    /// output are).
    pub fn with_invoker<F: FnPtr, I: Invoke<F>>(f: F) -> RemoteFn {
        let tramp: Trampoline = trampoline::<F, I>;
        RemoteFn {
            target: offset_of(sealed::Sealed::addr(f)),
            trampoline: offset_of(tramp as usize),
        }
    }

    /// The two addresses in this process, if both lie in this executable's code.
    fn resolve(self) -> Result<(usize, Trampoline), Error> {
        let target = resolve(self.target).ok_or_else(|| {
            Error::CallRefused(format!(
                "function offset {:#x} is outside this executable's code",
                self.target
            ))
        })?;
        let tramp = resolve(self.trampoline).ok_or_else(|| {
            Error::CallRefused(format!(
                "trampoline offset {:#x} is outside this executable's code",
                self.trampoline
            ))
        })?;
        // SAFETY: `tramp` lies in this executable's code, at the offset from the anchor that
        // `with_invoker` computed from a `trampoline::<F, I>` (nothing else makes a
        // `RemoteFn`'s fields besides deserialization, whose bytes the documented contract
        // restricts to the same executable); every trampoline has the type `Trampoline`, and
        // function pointers are address-sized.
        let tramp = unsafe { std::mem::transmute::<*const (), Trampoline>(tramp as *const ()) };
        Ok((target, tramp))
    }

    /// Whether both addresses lie in this executable's code (what [`call`](RemoteFn::call)
    /// checks first).
    pub fn is_callable(self) -> bool {
        self.resolve().is_ok()
    }

    /// Calls the function on `input` (with its descriptors) and returns the encoded output and
    /// its descriptors.
    ///
    /// # Errors
    ///
    /// [`Error::CallRefused`] (nothing runs) when an address lies outside this executable's
    /// code; [`Error::Transfer`] when the input does not decode as the function's argument or
    /// the result does not encode (with [`DecodeCallEncode`]; another invoker reports its own
    /// errors).
    ///
    /// # Panics
    ///
    /// With [`DecodeCallEncode`], a panic of the function unwinds out of `call`.
    pub fn call(self, input: &[u8], fds: Vec<OwnedFd>) -> Result<(Vec<u8>, Vec<OwnedFd>), Error> {
        let mut out = Vec::new();
        let fds = self.call_into(input, fds, &mut out)?;
        Ok((out, fds))
    }

    /// [`call`](RemoteFn::call), appending the encoded output to `out` (a reused buffer, or
    /// the body of a message being built). On an error `out` may hold part of an output.
    ///
    /// # Errors
    ///
    /// As [`call`](RemoteFn::call).
    pub fn call_into(
        self,
        input: &[u8],
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, Error> {
        let (target, tramp) = self.resolve()?;
        tramp(target, input, fds, out)
    }

    /// The offsets this `RemoteFn` consists of, `(target, trampoline)` (for diagnostics).
    pub fn offsets(self) -> (i64, i64) {
        (self.target, self.trampoline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(x: u32) -> u32 {
        x * 3
    }

    fn add(a: u32, b: u32) -> u32 {
        a + b
    }

    #[test]
    fn calls_a_function_of_this_executable() {
        let f = RemoteFn::new(triple as fn(u32) -> u32);
        let (input, fds) = transfer::encode(&5u32).unwrap();
        let (out, ofds) = f.call(&input, fds).unwrap();
        assert_eq!(transfer::decode::<u32>(&out, ofds).unwrap(), 15);
        let g = RemoteFn::new(add as fn(u32, u32) -> u32);
        let (input, fds) = transfer::encode(&(2u32, 40u32)).unwrap();
        let (out, ofds) = g.call(&input, fds).unwrap();
        assert_eq!(transfer::decode::<u32>(&out, ofds).unwrap(), 42);
    }

    /// A `RemoteFn` made of raw offsets, as a forger would send it.
    fn forged(target: i64, trampoline: i64) -> RemoteFn {
        postcard::from_bytes(&postcard::to_allocvec(&(target, trampoline)).unwrap()).unwrap()
    }

    #[test]
    fn refuses_offsets_outside_the_code() {
        let f = RemoteFn::new(triple as fn(u32) -> u32);
        let (t, tr) = f.offsets();
        let (input, _) = transfer::encode(&1u32).unwrap();
        let bad = forged(i64::MAX / 2, tr);
        assert!(!bad.is_callable());
        assert!(matches!(
            bad.call(&input, Vec::new()),
            Err(Error::CallRefused(m)) if m.contains("function offset")
        ));
        let bad = forged(t, -(crate::bootstrap::anchor() as i64) + 8);
        assert!(matches!(
            bad.call(&input, Vec::new()),
            Err(Error::CallRefused(m)) if m.contains("trampoline offset")
        ));
    }

    #[test]
    fn wrong_input_is_a_transfer_error() {
        let f = RemoteFn::new(triple as fn(u32) -> u32);
        let (input, fds) = transfer::encode(&"not a number".to_string()).unwrap();
        assert!(matches!(
            f.call(&input, fds),
            Err(Error::Transfer {
                what: "arguments",
                ..
            })
        ));
    }

    #[test]
    fn serializes_as_two_offsets() {
        let f = RemoteFn::new(triple as fn(u32) -> u32);
        let bytes = postcard::to_allocvec(&f).unwrap();
        let back: RemoteFn = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, f);
    }
}
