//! Naming a `fn` pointer across processes: [`FnRef`], a [`proc_spawn::RemoteFn`] whose
//! invokers run a whole chunk (an encoded `Vec` of arguments) with each item's panic caught.
//!
//! All the address arithmetic and its checks live in proc-spawn ([`proc_spawn::RemoteFn`]): the
//! function and a trampoline monomorphised for its type travel as offsets from an anchor, and a
//! worker refuses (a [`Refused`] error, never a jump) unless both lie in its own executable's
//! code. The worker is a child started by proc-spawn, which refused to start unless it runs the
//! very same executable as the parent (or a fork of it). This module only says what a call does
//! with the function: decode the chunk, call the function once per item, encode the outcomes.
//!
//! [`Refused`]: crate::Error::Refused

use std::os::fd::OwnedFd;

use ipc_shm::transfer;
use proc_spawn::{Invoke, RemoteFn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::wire::{ChunkError, ChunkResults};
use crate::worker::run_chunk;

/// A function to run over chunks, as it crosses to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FnRef(RemoteFn);

/// The invoker of every pool task: the input is an encoded `Vec` of argument tuples, the
/// output an encoded [`ChunkResults<R>`].
pub(crate) struct EachItem;

fn decode_chunk<T: DeserializeOwned>(
    input: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Vec<T>, proc_spawn::Error> {
    transfer::decode(input, fds).map_err(|source| proc_spawn::Error::Transfer {
        what: "arguments",
        source,
    })
}

fn encode_results<R: Serialize>(
    results: &ChunkResults<R>,
    out: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, proc_spawn::Error> {
    let n = match results {
        ChunkResults::All(v) => std::mem::size_of_val(v.as_slice()),
        ChunkResults::Each(v) => std::mem::size_of_val(v.as_slice()),
    };
    // Sized up front, so the buffer is not grown and copied as it fills.
    out.reserve(n.saturating_add(16).min(64 << 20));
    transfer::encode_into(results, out).map_err(|source| proc_spawn::Error::Transfer {
        what: "result",
        source,
    })
}

macro_rules! each_item {
    ($($arg:ident $var:ident),+) => {
        impl<$($arg,)+ R> Invoke<fn($($arg),+) -> R> for EachItem
        where
            $($arg: DeserializeOwned + 'static,)+
            R: Serialize + 'static,
        {
            fn invoke(
                f: fn($($arg),+) -> R,
                input: &[u8],
                fds: Vec<OwnedFd>,
                out: &mut Vec<u8>,
            ) -> Result<Vec<OwnedFd>, proc_spawn::Error> {
                let items: Vec<($($arg,)+)> = decode_chunk(input, fds)?;
                let results = run_chunk(items, |($($var,)+)| f($($var),+));
                encode_results(&results, out)
            }
        }
    };
}

each_item!(A a);
each_item!(A a, B b);
each_item!(A a, B b, C c);
each_item!(A a, B b, C c, D d);

impl FnRef {
    /// `f` applied to each item of a `Vec<A>` (encoded as a `Vec<(A,)>`: postcard writes a
    /// one-tuple exactly as its element).
    pub(crate) fn unary<A, R>(f: fn(A) -> R) -> FnRef
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        FnRef(RemoteFn::with_invoker::<_, EachItem>(f))
    }

    /// `f` applied to each `(a, b)` of a `Vec<(A, B)>`.
    pub(crate) fn binary<A, B, R>(f: fn(A, B) -> R) -> FnRef
    where
        A: DeserializeOwned + 'static,
        B: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        FnRef(RemoteFn::with_invoker::<_, EachItem>(f))
    }

    /// `f` applied to each `(a, b, c)` of a `Vec<(A, B, C)>`.
    pub(crate) fn ternary<A, B, C, R>(f: fn(A, B, C) -> R) -> FnRef
    where
        A: DeserializeOwned + 'static,
        B: DeserializeOwned + 'static,
        C: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        FnRef(RemoteFn::with_invoker::<_, EachItem>(f))
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
        FnRef(RemoteFn::with_invoker::<_, EachItem>(f))
    }

    /// Runs the chunk `args` (an encoded `Vec` of the argument type) in this process (after
    /// proc-spawn checked that the function lies in this executable's code), appending the
    /// encoded [`ChunkResults`] to `out`.
    pub(crate) fn call_into(
        self,
        args: &[u8],
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, ChunkError> {
        self.0.call_into(args, fds, out).map_err(|e| match e {
            proc_spawn::Error::CallRefused(m) => ChunkError::Refused(m),
            proc_spawn::Error::Transfer {
                what: "result",
                source,
            } => ChunkError::Encode(format!("the result: {source}")),
            proc_spawn::Error::Transfer { source, .. } => ChunkError::Decode(source.to_string()),
            other => ChunkError::Decode(other.to_string()),
        })
    }

    /// [`call_into`](FnRef::call_into) a new buffer.
    pub(crate) fn call(
        self,
        args: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), ChunkError> {
        let mut out = Vec::new();
        let fds = self.call_into(args, fds, &mut out)?;
        Ok((out, fds))
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
        let r = FnRef::unary(triple);
        let (bytes, fds) = transfer::encode(&vec![1u32, 2, 3]).unwrap();
        let (out, ofds) = r.call(&bytes, fds).unwrap();
        let v: ChunkResults<u32> = transfer::decode(&out, ofds).unwrap();
        assert_eq!(v, ChunkResults::All(vec![3, 6, 9]));
        let r = FnRef::binary(add);
        let (bytes, fds) = transfer::encode(&vec![(1u32, 2u32), (3, 4)]).unwrap();
        let (out, ofds) = r.call(&bytes, fds).unwrap();
        let v: ChunkResults<u32> = transfer::decode(&out, ofds).unwrap();
        assert_eq!(v, ChunkResults::All(vec![3, 7]));
    }

    #[test]
    fn refuses_addresses_outside_the_code() {
        let r = FnRef::unary(triple);
        let (bytes, _) = transfer::encode(&r).unwrap();
        let (_target, tramp): (i64, i64) = transfer::decode(&bytes, Vec::new()).unwrap();
        // The same trampoline with a target far outside the code, as a forger would send it.
        let (bytes, _) = transfer::encode(&(i64::MAX / 2, tramp)).unwrap();
        let forged: FnRef = transfer::decode(&bytes, Vec::new()).unwrap();
        let (args, fds) = transfer::encode(&vec![1u32]).unwrap();
        assert!(matches!(
            forged.call(&args, fds),
            Err(ChunkError::Refused(_))
        ));
    }

    #[test]
    fn wrong_argument_type_is_a_decode_error() {
        let r = FnRef::unary(triple);
        let (bytes, fds) = transfer::encode(&vec!["not a number".to_string()]).unwrap();
        assert!(matches!(r.call(&bytes, fds), Err(ChunkError::Decode(_))));
    }
}
