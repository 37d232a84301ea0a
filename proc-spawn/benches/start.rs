//! Start + join of a child that does nothing, per start method, next to the limits measured
//! in the same run — raw `fork()` + `_exit` + `waitpid`, raw `posix_spawn` of this same
//! executable + `waitpid` — and next to the `procspawn` crate.
//!
//! Goals (from the issue): `ForkServer` within 2x of raw fork + wait, `Spawn` within 1.5x of raw
//! `posix_spawn` of the same binary, every method faster than `procspawn`.

use std::ffi::CString;
use std::time::Duration;

use criterion::Criterion;
use proc_spawn::{get_context, StartMethod};

/// Set in the environment of the raw `posix_spawn` children: they exit at the top of `main`.
const RAW_CHILD: &str = "PROC_SPAWN_BENCH_RAW_CHILD";

fn noop(_: ()) {}

fn raw_fork_wait() {
    // SAFETY: the child only calls `_exit`, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
}

fn raw_posix_spawn_wait(argv: &[*mut libc::c_char], envp: &[*mut libc::c_char]) {
    let mut pid = 0;
    // SAFETY: the path is a C string; argv and envp are NULL-terminated arrays of C strings
    // that outlive the call; no file actions or attributes are passed.
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

fn bench_start(c: &mut Criterion) {
    let mut g = c.benchmark_group("start_join_noop");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    g.bench_function("raw_fork_waitpid", |b| b.iter(raw_fork_wait));

    let exe = CString::new(
        std::env::current_exe()
            .unwrap()
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let mut env: Vec<CString> = std::env::vars()
        .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap())
        .collect();
    env.push(CString::new(format!("{RAW_CHILD}=1")).unwrap());
    let argv = [exe.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
    let mut envp: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());
    g.bench_function("raw_posix_spawn_waitpid", |b| {
        b.iter(|| raw_posix_spawn_wait(&argv, &envp))
    });

    for m in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        let ctx = get_context(m);
        g.bench_function(format!("proc_spawn_{}", m.name()), |b| {
            b.iter(|| {
                let mut p = ctx.process(noop, ());
                p.start().unwrap();
                p.join().unwrap();
                assert_eq!(p.exitcode(), Some(0));
            })
        });
    }

    g.bench_function("procspawn_crate", |b| {
        b.iter(|| procspawn::spawn((), noop).join().unwrap())
    });
    g.finish();
}

/// The criterion group (its generated function has no docs of its own).
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench_start);
}

/// `PROC_SPAWN_BENCH_INTERLEAVED=rounds`: instead of criterion, run the cases interleaved, in
/// turn, round after round (`PROC_SPAWN_BENCH_ITERS` start+join of each per round, default 20),
/// timing every start+join, and print per case the 10th percentile and the median of all its
/// times and the median of its round means; then the ratios the goals name, of those
/// percentiles and, round by round, of the round means (their median). A shared, noisy machine
/// measures ratios fairly this way: the cases see the same background load, and a low
/// percentile is what a start costs when no other process takes the CPU away meanwhile.
/// `PROC_SPAWN_BENCH_CASES=raw_fork_waitpid,proc_spawn_forkserver` runs only the named cases.
fn interleaved(rounds: usize) {
    let exe = CString::new(
        std::env::current_exe()
            .unwrap()
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let mut env: Vec<CString> = std::env::vars()
        .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap())
        .collect();
    env.push(CString::new(format!("{RAW_CHILD}=1")).unwrap());
    let argv = [exe.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
    let mut envp: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());
    let method = |m: StartMethod| {
        move || {
            let mut p = get_context(m).process(noop, ());
            p.start().unwrap();
            p.join().unwrap();
        }
    };
    type Case<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let all: Vec<Case<'_>> = vec![
        ("raw_fork_waitpid", Box::new(raw_fork_wait)),
        (
            "raw_posix_spawn_waitpid",
            Box::new(|| raw_posix_spawn_wait(&argv, &envp)),
        ),
        ("proc_spawn_fork", Box::new(method(StartMethod::Fork))),
        ("proc_spawn_spawn", Box::new(method(StartMethod::Spawn))),
        (
            "proc_spawn_forkserver",
            Box::new(method(StartMethod::ForkServer)),
        ),
        (
            "procspawn_crate",
            Box::new(|| procspawn::spawn((), noop).join().unwrap()),
        ),
    ];
    let wanted = std::env::var("PROC_SPAWN_BENCH_CASES").ok();
    let cases: Vec<Case<'_>> = all
        .into_iter()
        .filter(|(n, _)| {
            wanted
                .as_ref()
                .is_none_or(|w| w.split(',').any(|x| x == *n))
        })
        .collect();
    let iters: usize = std::env::var("PROC_SPAWN_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    // A first round, not recorded: starts the fork server, warms caches.
    for (_, f) in &cases {
        for _ in 0..iters.min(5) {
            f();
        }
    }
    // per case: every time (seconds), and the mean of each round
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds * iters); cases.len()];
    let mut means: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in cases.iter().enumerate() {
            let mut sum = 0.0;
            for _ in 0..iters {
                let t = std::time::Instant::now();
                f();
                let d = t.elapsed().as_secs_f64();
                times[i].push(d);
                sum += d;
            }
            means[i].push(sum / iters as f64);
        }
    }
    fn quantile(v: &[f64], q: f64) -> f64 {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[((s.len() - 1) as f64 * q).round() as usize]
    }
    println!("{rounds} rounds of {iters} per case; times in us");
    println!(
        "{:<26} {:>9} {:>9} {:>12}",
        "case", "p10", "median", "round-median"
    );
    for (i, (name, _)) in cases.iter().enumerate() {
        println!(
            "{name:<26} {:>9.1} {:>9.1} {:>12.1}",
            quantile(&times[i], 0.1) * 1e6,
            quantile(&times[i], 0.5) * 1e6,
            quantile(&means[i], 0.5) * 1e6
        );
    }
    let idx = |n: &str| cases.iter().position(|(c, _)| *c == n);
    let ratio = |a: &str, b: &str| {
        if let (Some(x), Some(y)) = (idx(a), idx(b)) {
            let per_round: Vec<f64> = means[x].iter().zip(&means[y]).map(|(p, q)| p / q).collect();
            println!(
                "{:<38} p10 {:>5.2}  median {:>5.2}  round by round {:>5.2}",
                format!("{} / {}", &a[a.len().min(11)..], b),
                quantile(&times[x], 0.1) / quantile(&times[y], 0.1),
                quantile(&times[x], 0.5) / quantile(&times[y], 0.5),
                quantile(&per_round, 0.5)
            );
        }
    };
    println!(
        "ratios (goals: forkserver <= 2x raw fork, spawn <= 1.5x raw posix_spawn, all < procspawn)"
    );
    ratio("proc_spawn_forkserver", "raw_fork_waitpid");
    ratio("proc_spawn_fork", "raw_fork_waitpid");
    ratio("proc_spawn_spawn", "raw_posix_spawn_waitpid");
    for n in [
        "proc_spawn_fork",
        "proc_spawn_spawn",
        "proc_spawn_forkserver",
    ] {
        ratio(n, "procspawn_crate");
    }
}

fn main() {
    if std::env::var_os(RAW_CHILD).is_some() {
        std::process::exit(0);
    }
    procspawn::init();
    proc_spawn::init();
    if let Some(r) = std::env::var_os("PROC_SPAWN_BENCH_INTERLEAVED") {
        interleaved(r.to_str().and_then(|s| s.parse().ok()).unwrap_or(10));
        return;
    }
    group::benches();
    Criterion::default().configure_from_args().final_summary();
}
