//! Naming a `fn` pointer across processes: [`FnRef`], the trampolines that call one in a worker,
//! and the checks that make the call sound.
//!
//! This is the only module of the crate with `unsafe` code (besides the signal handling of
//! `sys`): a worker turns an address back into a function pointer. It follows proc-spawn's
//! bootstrap rules exactly (proc-spawn has no public API for "call this `fn(A) -> R` in another
//! process of the same executable with these postcard bytes" yet; when it gets one this module
//! goes away and the crate can `forbid(unsafe_code)`):
//!
//! - the target and the trampoline monomorphised for its exact type travel together, as offsets
//!   from [`anchor`], a function of this crate;
//! - the worker is a child started by proc-spawn, which refused to start unless it runs the very
//!   same executable as the parent (same GNU build id, or same file); under `Fork` it is a copy;
//! - the worker adds the offsets to its own `anchor` and refuses (a [`Refused`] error, never a
//!   jump) unless both addresses lie in an executable mapping of this executable's own file
//!   (read from `/proc/self/maps`);
//! - only function pointers are ever named: a closure that captures nothing coerces to one; a
//!   closure value is never conjured from nothing.
//!
//! [`Refused`]: crate::Error::Refused

#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use ipc_shm::transfer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::wire::{ChunkError, ChunkResults};
use crate::worker::catch_task;

/// What a trampoline gets: the target's address, the encoded chunk of arguments and their
/// descriptors. It returns the encoded [`ChunkResults<R>`] and its descriptors.
pub(crate) type Trampoline =
    fn(usize, &[u8], Vec<OwnedFd>) -> Result<(Vec<u8>, Vec<OwnedFd>), ChunkError>;

/// A function pointer and its trampoline, as offsets from [`anchor`]: what crosses to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FnRef {
    target: i64,
    trampoline: i64,
}

/// The function every address is measured from.
#[inline(never)]
fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

fn offset_of(addr: usize) -> i64 {
    addr.wrapping_sub(anchor()) as i64
}

impl FnRef {
    fn from_addresses(target: usize, trampoline: Trampoline) -> FnRef {
        FnRef {
            target: offset_of(target),
            trampoline: offset_of(trampoline as usize),
        }
    }

    /// `f` applied to each item of a `Vec<A>`.
    pub(crate) fn unary<A, R>(f: fn(A) -> R) -> FnRef
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        FnRef::from_addresses(f as usize, run_unary::<A, R>)
    }

    /// `f` applied to each `(a, b)` of a `Vec<(A, B)>`.
    pub(crate) fn binary<A, B, R>(f: fn(A, B) -> R) -> FnRef
    where
        A: DeserializeOwned + 'static,
        B: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        FnRef::from_addresses(f as usize, run_binary::<A, B, R>)
    }

    /// `f` applied to each `(a, b, c)` of a `Vec<(A, B, C)>`.
    pub(crate) fn ternary<A, B, C, R>(f: fn(A, B, C) -> R) -> FnRef
    where
        A: DeserializeOwned + 'static,
        B: DeserializeOwned + 'static,
        C: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        FnRef::from_addresses(f as usize, run_ternary::<A, B, C, R>)
    }

    /// `f` applied to each `(a, b, c, d)` of a `Vec<(A, B, C, D)>`.
    pub(crate) fn quaternary<A, B, C, D, R>(f: fn(A, B, C, D) -> R) -> FnRef
    where
        A: DeserializeOwned + 'static,
        B: DeserializeOwned + 'static,
        C: DeserializeOwned + 'static,
        D: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        FnRef::from_addresses(f as usize, run_quaternary::<A, B, C, D, R>)
    }

    /// Runs the chunk `args` (an encoded `Vec` of the argument type) in this process, after
    /// checking that both addresses lie in this executable's code.
    pub(crate) fn call(
        self,
        args: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), ChunkError> {
        let target = resolve(self.target).ok_or_else(|| {
            ChunkError::Refused(format!(
                "function offset {:#x} is outside this executable's code",
                self.target
            ))
        })?;
        let tramp = resolve(self.trampoline).ok_or_else(|| {
            ChunkError::Refused(format!(
                "trampoline offset {:#x} is outside this executable's code",
                self.trampoline
            ))
        })?;
        // SAFETY: `tramp` lies in this executable's code (checked above), at the offset from
        // `anchor` that the parent — the same executable, which proc-spawn checked when it
        // started this worker (or a fork of it) — computed from a function of type
        // `Trampoline` (`FnRef::from_addresses` takes nothing else); function pointers are
        // address-sized.
        let tramp = unsafe { std::mem::transmute::<*const (), Trampoline>(tramp as *const ()) };
        tramp(target, args, fds)
    }
}

/// The executable mappings of this process's own executable file, as address ranges.
fn text_ranges() -> &'static [(usize, usize)] {
    static RANGES: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
    RANGES.get_or_init(|| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let exe = std::fs::metadata("/proc/self/exe").ok();
        let Some(exe) = exe else {
            return Vec::new();
        };
        parse_maps(&maps, exe.dev(), exe.ino())
    })
}

/// The executable ranges of `maps` (the text of `/proc/self/maps`) backed by the file
/// `(dev, ino)`.
fn parse_maps(maps: &str, dev: u64, ino: u64) -> Vec<(usize, usize)> {
    // st_dev encodes major/minor as glibc's gnu_dev_makedev does.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(devs), Some(inode)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        if !perms.contains('x') || inode.parse::<u64>().ok() != Some(ino) {
            continue;
        }
        let Some((maj, min)) = devs.split_once(':') else {
            continue;
        };
        if u64::from_str_radix(maj, 16).ok() != Some(major)
            || u64::from_str_radix(min, 16).ok() != Some(minor)
        {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
            out.push((a, b));
        }
    }
    out
}

/// The address `offset` bytes from [`anchor`], if it lies in this executable's code.
fn resolve(offset: i64) -> Option<usize> {
    let addr = anchor().wrapping_add(offset as usize);
    text_ranges()
        .iter()
        .any(|(a, b)| (*a..*b).contains(&addr))
        .then_some(addr)
}

fn decode_chunk<T: DeserializeOwned>(args: &[u8], fds: Vec<OwnedFd>) -> Result<Vec<T>, ChunkError> {
    transfer::decode(args, fds).map_err(|e| ChunkError::Decode(e.to_string()))
}

fn encode_results<R: Serialize>(
    out: &ChunkResults<R>,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ChunkError> {
    let n = match out {
        ChunkResults::All(v) => std::mem::size_of_val(v.as_slice()),
        ChunkResults::Each(v) => std::mem::size_of_val(v.as_slice()),
    };
    // Sized up front, so the buffer is not grown and copied as it fills.
    let mut bytes = Vec::with_capacity(n.saturating_add(16).min(64 << 20));
    let fds = transfer::encode_into(out, &mut bytes)
        .map_err(|e| ChunkError::Encode(format!("the result: {e}")))?;
    Ok((bytes, fds))
}

fn run_unary<A: DeserializeOwned, R: Serialize>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ChunkError> {
    let items: Vec<A> = decode_chunk(args, fds)?;
    // SAFETY: `target` lies in this executable's code (checked by `FnRef::call`) and was
    // derived by the parent from a `fn(A) -> R` paired with this very monomorphisation
    // (`FnRef::unary`); function pointers are address-sized.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(target as *const ()) };
    let out = ChunkResults::collect(items, |a| catch_task(|| f(a)));
    encode_results(&out)
}

fn run_binary<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ChunkError> {
    let items: Vec<(A, B)> = decode_chunk(args, fds)?;
    // SAFETY: as in `run_unary`, for a `fn(A, B) -> R` (`FnRef::binary`).
    let f = unsafe { std::mem::transmute::<*const (), fn(A, B) -> R>(target as *const ()) };
    let out = ChunkResults::collect(items, |(a, b)| catch_task(|| f(a, b)));
    encode_results(&out)
}

fn run_ternary<A: DeserializeOwned, B: DeserializeOwned, C: DeserializeOwned, R: Serialize>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ChunkError> {
    let items: Vec<(A, B, C)> = decode_chunk(args, fds)?;
    // SAFETY: as in `run_unary`, for a `fn(A, B, C) -> R` (`FnRef::ternary`).
    let f = unsafe { std::mem::transmute::<*const (), fn(A, B, C) -> R>(target as *const ()) };
    let out = ChunkResults::collect(items, |(a, b, c)| catch_task(|| f(a, b, c)));
    encode_results(&out)
}

fn run_quaternary<
    A: DeserializeOwned,
    B: DeserializeOwned,
    C: DeserializeOwned,
    D: DeserializeOwned,
    R: Serialize,
>(
    target: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ChunkError> {
    let items: Vec<(A, B, C, D)> = decode_chunk(args, fds)?;
    // SAFETY: as in `run_unary`, for a `fn(A, B, C, D) -> R` (`FnRef::quaternary`).
    let f = unsafe { std::mem::transmute::<*const (), fn(A, B, C, D) -> R>(target as *const ()) };
    let out = ChunkResults::collect(items, |(a, b, c, d)| catch_task(|| f(a, b, c, d)));
    encode_results(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(x: u32) -> u32 {
        x * 3
    }

    #[test]
    fn calls_a_function_of_this_executable() {
        let r = FnRef::unary(triple);
        let (bytes, fds) = transfer::encode(&vec![1u32, 2, 3]).unwrap();
        let (out, ofds) = r.call(&bytes, fds).unwrap();
        let v: ChunkResults<u32> = transfer::decode(&out, ofds).unwrap();
        assert_eq!(v, ChunkResults::All(vec![3, 6, 9]));
    }

    #[test]
    fn refuses_addresses_outside_the_code() {
        let mut r = FnRef::unary(triple);
        r.target = i64::MAX / 2;
        let (bytes, fds) = transfer::encode(&vec![1u32]).unwrap();
        assert!(matches!(r.call(&bytes, fds), Err(ChunkError::Refused(_))));
        let mut r = FnRef::unary(triple);
        r.trampoline = -(anchor() as i64) + 8; // address 8
        let (bytes, fds) = transfer::encode(&vec![1u32]).unwrap();
        assert!(matches!(r.call(&bytes, fds), Err(ChunkError::Refused(_))));
    }

    #[test]
    fn text_ranges_cover_the_anchor() {
        assert!(!text_ranges().is_empty());
        assert!(resolve(0).is_some());
        assert!(parse_maps("garbage\n1-2 r-xp 0 zz:zz 5 /x\n", 0, 5).is_empty());
    }

    #[test]
    fn wrong_argument_type_is_a_decode_error() {
        let r = FnRef::unary(triple);
        let (bytes, fds) = transfer::encode(&vec!["not a number".to_string()]).unwrap();
        assert!(matches!(r.call(&bytes, fds), Err(ChunkError::Decode(_))));
    }
}
