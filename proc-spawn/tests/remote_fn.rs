//! [`RemoteFn`] across processes: a function named in the parent is called in a child started
//! with each start method (`IPC_START_METHOD` narrows a run to one), with plain arguments,
//! several arguments, handles inside the arguments, a custom invoker; a forged offset is
//! refused in the child and nothing runs.

use std::os::fd::OwnedFd;
use std::time::Duration;

use ipc_channel_core::{Connection, Pipe};
use ipc_shm::transfer;
use proc_spawn::{get_context, Error, Invoke, RemoteFn, StartMethod};
use serde::{Deserialize, Serialize};

/// The start methods this run covers.
fn methods() -> Vec<StartMethod> {
    match std::env::var("IPC_START_METHOD") {
        Ok(m) if !m.is_empty() => vec![m.parse().expect("IPC_START_METHOD")],
        _ => proc_spawn::get_all_start_methods(),
    }
}

fn square(x: i64) -> i64 {
    x * x
}

fn greet(name: String, times: u32) -> String {
    format!("hello {name}").repeat(times as usize)
}

fn send_pid(conn: Connection) -> u32 {
    let pid = std::process::id();
    conn.send(&pid).expect("send from the remote function");
    pid
}

/// What a child reports after calling a `RemoteFn`: the encoded output, or the error text.
#[derive(Debug, Serialize, Deserialize)]
enum Outcome {
    Output(Vec<u8>),
    Refused(String),
    Other(String),
}

/// What the child gets: the function, the encoded input, and the input's handles (they travel
/// as handles of the process's own arguments).
#[derive(Serialize, Deserialize)]
struct Request {
    f: RemoteFn,
    input: Vec<u8>,
    handles: Vec<Connection>,
}

/// The child: calls the function on the input (whose descriptors are the connections' own).
fn call_in_child(req: Request) -> Outcome {
    let fds: Vec<OwnedFd> = req
        .handles
        .into_iter()
        .map(|c| c.fd().expect("fd").try_clone_to_owned().expect("dup"))
        .collect();
    match req.f.call(&req.input, fds) {
        Ok((out, out_fds)) => {
            assert!(out_fds.is_empty(), "no handles in these results");
            Outcome::Output(out)
        }
        Err(Error::CallRefused(m)) => Outcome::Refused(m),
        Err(e) => Outcome::Other(e.to_string()),
    }
}

fn run(method: StartMethod, f: RemoteFn, input: Vec<u8>, handles: Vec<Connection>) -> Outcome {
    get_context(method)
        .spawn(call_in_child, Request { f, input, handles })
        .join()
        .expect("child")
}

fn output<R: serde::de::DeserializeOwned>(o: Outcome) -> R {
    match o {
        Outcome::Output(bytes) => transfer::decode(&bytes, Vec::new()).expect("decode"),
        other => panic!("expected an output, got {other:?}"),
    }
}

#[test]
fn calls_a_function_in_a_child() {
    let f = RemoteFn::new(square as fn(i64) -> i64);
    for m in methods() {
        let (input, fds) = transfer::encode(&-12i64).unwrap();
        assert!(fds.is_empty());
        let r: i64 = output(run(m, f, input, Vec::new()));
        assert_eq!(r, 144, "{m}");
    }
}

#[test]
fn calls_a_function_of_two_arguments_in_a_child() {
    let f = RemoteFn::new(greet as fn(String, u32) -> String);
    for m in methods() {
        let (input, _) = transfer::encode(&("ann".to_string(), 2u32)).unwrap();
        let r: String = output(run(m, f, input, Vec::new()));
        assert_eq!(r, "hello annhello ann", "{m}");
    }
}

#[test]
fn a_handle_in_the_arguments_works_in_the_child() {
    let f = RemoteFn::new(send_pid as fn(Connection) -> u32);
    for m in methods() {
        let (mine, theirs) = Pipe::new().unwrap();
        // The connection is encoded as an index plus its descriptor; the descriptor reaches
        // the child as a handle of the child's own arguments.
        let (input, fds) = transfer::encode(&theirs).unwrap();
        assert_eq!(fds.len(), 1);
        drop(fds);
        let outcome = run(m, f, input, vec![theirs]);
        let pid: u32 = output(outcome);
        let sent: u32 = mine.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(sent, pid, "{m}");
        assert_ne!(pid, std::process::id(), "{m}: ran in another process");
    }
}

/// A custom invoker: the input is a `Vec<u64>`, the function runs once per item, the output
/// is the sum of the results.
struct SumOver;

impl Invoke<fn(u64) -> u64> for SumOver {
    fn invoke(
        f: fn(u64) -> u64,
        input: &[u8],
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, Error> {
        let items: Vec<u64> = transfer::decode(input, fds).map_err(|source| Error::Transfer {
            what: "arguments",
            source,
        })?;
        let total: u64 = items.into_iter().map(f).sum();
        transfer::encode_into(&total, out).map_err(|source| Error::Transfer {
            what: "result",
            source,
        })
    }
}

fn cube(x: u64) -> u64 {
    x * x * x
}

#[test]
fn a_custom_invoker_runs_in_the_child() {
    let f = RemoteFn::with_invoker::<fn(u64) -> u64, SumOver>(cube);
    for m in methods() {
        let (input, _) = transfer::encode(&vec![1u64, 2, 3]).unwrap();
        let r: u64 = output(run(m, f, input, Vec::new()));
        assert_eq!(r, 36, "{m}");
    }
}

/// A `RemoteFn` with its offsets replaced, built the way a forger would: from bytes.
fn forge(f: RemoteFn, target: Option<i64>, trampoline: Option<i64>) -> RemoteFn {
    let (bytes, _) = transfer::encode(&f).unwrap();
    let (t, tr): (i64, i64) = transfer::decode(&bytes, Vec::new()).unwrap();
    let (bytes, _) = transfer::encode(&(target.unwrap_or(t), trampoline.unwrap_or(tr))).unwrap();
    transfer::decode(&bytes, Vec::new()).unwrap()
}

/// Sets a flag that proves the function ran.
fn touch(conn: Connection) {
    conn.send(&"ran").expect("send");
}

#[test]
fn a_forged_offset_is_refused_in_the_child_and_nothing_runs() {
    let good = RemoteFn::new(touch as fn(Connection));
    let (t, tr) = good.offsets();
    let forgeries = [
        (
            "function offset",
            forge(good, Some(t.wrapping_add(1 << 44)), None),
        ),
        ("function offset", forge(good, Some(i64::MIN), None)),
        (
            "trampoline offset",
            forge(good, None, Some(tr.wrapping_sub(1 << 44))),
        ),
    ];
    for m in methods() {
        for (what, f) in forgeries {
            assert!(!f.is_callable());
            let (mine, theirs) = Pipe::new().unwrap();
            let (input, fds) = transfer::encode(&theirs).unwrap();
            drop(fds);
            match run(m, f, input, vec![theirs]) {
                Outcome::Refused(msg) => assert!(msg.contains(what), "{m}: {msg}"),
                other => panic!("{m}: expected a refusal, got {other:?}"),
            }
            // The child has exited: had `touch` run, its message would be waiting.
            assert!(matches!(
                mine.try_recv::<String>(),
                Err(ipc_channel_core::Error::Eof) | Err(ipc_channel_core::Error::Timeout)
            ));
        }
        // The genuine one runs.
        let (mine, theirs) = Pipe::new().unwrap();
        let (input, fds) = transfer::encode(&theirs).unwrap();
        drop(fds);
        let _: () = output(run(m, good, input, vec![theirs]));
        assert_eq!(
            mine.recv_timeout::<String>(Duration::from_secs(30))
                .unwrap(),
            "ran"
        );
    }
}

#[test]
fn undecodable_input_is_a_transfer_error_in_the_child() {
    let f = RemoteFn::new(square as fn(i64) -> i64);
    for m in methods() {
        match run(m, f, vec![0xff; 3], Vec::new()) {
            Outcome::Other(msg) => assert!(msg.contains("arguments"), "{m}: {msg}"),
            other => panic!("{m}: expected a transfer error, got {other:?}"),
        }
    }
}
