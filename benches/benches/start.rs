//! Group `start`: start + join of a child that does nothing.
//!
//! multiproc per start method (`fork`, `spawn`, `forkserver`) next to the OS limits measured in
//! the same run — raw `fork()` + `_exit(0)` + `waitpid`, raw `posix_spawn` of this same executable
//! (which exits at the top of `main`) + `waitpid` — and the `procspawn` crate. The Python twin is
//! `benches/python/start.py`.

use std::ffi::CString;

use criterion::{BenchmarkId, Criterion};
use multiproc::{get_context, StartMethod};
use multiproc_benches::{timing, Weight};

/// Set in the environment of the raw `posix_spawn` children: they exit at the top of `main`.
const RAW_CHILD: &str = "MULTIPROC_BENCH_RAW_CHILD";
const CASE: &str = "noop child";

fn noop(_: ()) {}

fn raw_fork_wait() {
    // SAFETY: the child only calls `_exit`, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
}

fn raw_posix_spawn_wait(argv: &[*mut libc::c_char], envp: &[*mut libc::c_char]) {
    let mut pid = 0;
    // SAFETY: the path is a C string; argv and envp are NULL-terminated arrays of C strings that
    // outlive the call; no file actions or attributes are passed.
    let r = unsafe {
        libc::posix_spawn(
            &mut pid,
            c"/proc/self/exe".as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    assert_eq!(r, 0, "posix_spawn failed");
    let mut status = 0;
    // SAFETY: waits for the child just spawned; `status` is a valid out-pointer.
    let w = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(w, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

fn bench(c: &mut Criterion) {
    let t = timing(Weight::Heavy);
    let mut g = c.benchmark_group("start");
    g.warm_up_time(t.warm_up)
        .measurement_time(t.measurement)
        .sample_size(t.samples);

    for m in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        let ctx = get_context(m);
        g.bench_function(
            BenchmarkId::new(format!("multiproc {}", m.name()), CASE),
            |b| {
                b.iter(|| {
                    let mut p = ctx.process(noop, ());
                    p.start().expect("start");
                    p.join().expect("join");
                    assert_eq!(p.exitcode(), Some(0));
                })
            },
        );
    }

    g.bench_function(BenchmarkId::new("raw fork+waitpid", CASE), |b| {
        b.iter(raw_fork_wait)
    });

    let exe = CString::new(
        std::env::current_exe()
            .expect("current_exe")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("path without NUL");
    let mut env: Vec<CString> = std::env::vars()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();
    env.push(CString::new(format!("{RAW_CHILD}=1")).expect("no NUL"));
    let argv = [exe.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
    let mut envp: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());
    g.bench_function(BenchmarkId::new("raw posix_spawn+waitpid", CASE), |b| {
        b.iter(|| raw_posix_spawn_wait(&argv, &envp))
    });

    g.bench_function(BenchmarkId::new("procspawn", CASE), |b| {
        b.iter(|| procspawn::spawn((), noop).join().expect("procspawn join"))
    });
    g.finish();
}

fn main() {
    if std::env::var_os(RAW_CHILD).is_some() {
        std::process::exit(0);
    }
    procspawn::init();
    multiproc::init();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
