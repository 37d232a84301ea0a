//! The fault, soak and load suite of multiproc: real processes killed at random points, long
//! start/join and create/drop loops, and millions of messages, each case asserting what must
//! survive (nothing lost, nothing received twice, no leaked descriptor, process or name).
//!
//! Every case is an entry of [`CASES`]: a name, whether it runs once per start method, and a
//! function that drives it at the [`Scale`] it is given and records what it saw in a [`Tally`].
//! The binary (`cargo run -p multiproc-soak --release -- --full`, or `cargo xtask soak`) runs
//! every case at full size and prints the table; the `soak_small` test runs every case at a
//! reduced size inside `cargo test --workspace`.
//!
//! A case never depends on timing to pass: the only clocks are generous upper bounds (a case
//! that hangs is killed by an alarm with its name printed), and the pace of the random kills.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod faults;
pub mod hostile;
pub mod load;
pub mod probe;

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use multiproc::StartMethod;

/// How large a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// The reduced size of `cargo test` (seconds for the whole suite).
    Small,
    /// The full size of `cargo xtask soak` (the sizes issue #9 names).
    Full,
}

/// What a case is given: its size, its start method, and when it should stop early.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Reduced or full.
    pub size: Size,
    /// The start method the case runs under (the default one for cases that run once).
    pub method: StartMethod,
    /// Loops stop starting new iterations after this instant (a `--minutes` budget); the
    /// table then shows how many iterations ran.
    pub deadline: Option<Instant>,
}

impl Scale {
    /// `small` at the reduced size, `full` at the full size.
    pub fn pick(&self, small: u64, full: u64) -> u64 {
        match self.size {
            Size::Small => small,
            Size::Full => full,
        }
    }

    /// Whether the time budget is spent.
    pub fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The context of this case's start method.
    pub fn ctx(&self) -> multiproc::Context {
        multiproc::get_context(self.method)
    }
}

/// What a case counted: the row of the table.
#[derive(Debug, Default)]
pub struct Tally {
    /// Iterations (or tasks, or messages: the unit of the case) carried out.
    pub iterations: u64,
    /// Assertions that failed (each also leaves a message in `notes`).
    pub failures: u64,
    /// Things that vanished silently: a message whose `put` returned and that nobody
    /// received, a task with neither a result nor an error (must be 0).
    pub lost: u64,
    /// Descriptors, processes, mappings or names left behind (must be 0).
    pub leaks: u64,
    /// Occurrences of known, documented defects not fixed yet (SOAK.md names them): shown
    /// in the table, not counted as failures.
    pub known: u64,
    /// Failure messages (the first few are kept) and remarks.
    pub notes: Vec<String>,
}

impl Tally {
    /// Records a failed assertion.
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.failures += 1;
        self.note(msg);
    }

    /// Records a failed assertion unless `ok`.
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.fail(msg());
        }
    }

    /// Records `n` lost items.
    pub fn lose(&mut self, n: u64, msg: impl Into<String>) {
        if n > 0 {
            self.lost += n;
            self.note(msg);
        }
    }

    /// Records `n` leaked resources.
    pub fn leak(&mut self, n: u64, msg: impl Into<String>) {
        if n > 0 {
            self.leaks += n;
            self.note(msg);
        }
    }

    /// Records an occurrence of a known defect (see [`Tally::known`]).
    pub fn known(&mut self, msg: impl Into<String>) {
        self.known += 1;
        self.note(format!("known defect: {}", msg.into()));
    }

    /// Adds a remark (kept up to a small number, so a case failing a million times stays
    /// readable).
    pub fn note(&mut self, msg: impl Into<String>) {
        if self.notes.len() < 8 {
            self.notes.push(msg.into());
        }
    }

    /// Whether the row is clean.
    pub fn ok(&self) -> bool {
        self.failures == 0 && self.lost == 0 && self.leaks == 0
    }
}

/// One case of the suite.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Its name in the table (`/<method>` is appended for per-method cases).
    pub name: &'static str,
    /// Runs once per start method (else once, under the default method).
    pub per_method: bool,
    /// The seconds after which a hung case is killed, at full size.
    pub limit_secs: u32,
    /// The case itself.
    pub run: fn(&Scale, &mut Tally),
}

/// A case that runs under every start method.
pub const fn per_method(name: &'static str, limit_secs: u32, run: fn(&Scale, &mut Tally)) -> Case {
    Case {
        name,
        per_method: true,
        limit_secs,
        run,
    }
}

/// A case that runs once.
pub const fn once(name: &'static str, limit_secs: u32, run: fn(&Scale, &mut Tally)) -> Case {
    Case {
        name,
        per_method: false,
        limit_secs,
        run,
    }
}

/// Every case of the suite, in the order they run. Add a line to add a case.
pub const CASES: &[Case] = &[
    // Faults
    per_method("pool_sigkill_random_worker", 1800, faults::pool_sigkill),
    per_method("pool_worker_segfaults", 1800, faults::pool_segfault),
    per_method("pool_worker_aborts", 1800, faults::pool_abort),
    per_method("lock_holder_killed", 1800, faults::lock_holder_killed),
    per_method("barrier_party_killed", 1800, faults::barrier_party_killed),
    per_method("queue_kills_pipe", 1800, faults::queue_kills_pipe),
    per_method("queue_kills_shm", 1800, faults::queue_kills_shm),
    per_method(
        "joinable_producer_killed",
        1800,
        faults::joinable_producer_killed,
    ),
    per_method("parent_killed", 1800, faults::parent_killed),
    once(
        "forkserver_killed_idle",
        1800,
        faults::forkserver_killed_idle,
    ),
    once(
        "forkserver_killed_forking",
        1800,
        faults::forkserver_killed_forking,
    ),
    // Load and leaks
    per_method("start_join_cycles", 3600, load::start_join_cycles),
    per_method("pool_churn", 3600, load::pool_churn),
    per_method(
        "pool_terminate_with_handles",
        3600,
        load::pool_terminate_with_handles,
    ),
    once("value_lock_churn", 1800, load::value_lock_churn),
    once("queue_4x4_pipe", 3600, load::queue_4x4_pipe),
    once("queue_4x4_shm", 3600, load::queue_4x4_shm),
    // Hostile input (the fuzz harnesses on random scripts; engineer D's row, src/hostile.rs)
    once("hostile_input", 3600, hostile::hostile_input),
];

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    /// `case` or `case/method`.
    pub name: String,
    /// What the case counted.
    pub tally: Tally,
    /// How long it ran.
    pub elapsed: Duration,
}

/// The start methods to run per-method cases under: the one `IPC_START_METHOD` names, or all.
pub fn methods() -> Vec<StartMethod> {
    match std::env::var("IPC_START_METHOD").ok().as_deref() {
        Some("fork") => vec![StartMethod::Fork],
        Some("spawn") => vec![StartMethod::Spawn],
        Some("forkserver") => vec![StartMethod::ForkServer],
        _ => vec![
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ],
    }
}

/// The lower-case name of a start method, as in the table.
pub fn method_name(m: StartMethod) -> &'static str {
    match m {
        StartMethod::Fork => "fork",
        StartMethod::Spawn => "spawn",
        StartMethod::ForkServer => "forkserver",
    }
}

/// Runs the cases whose name contains `filter` (all when empty) at `size`, sharing `budget`
/// among them when one is given, printing a line per case as it ends; returns the rows.
///
/// A case that panics counts one failure; a case that hangs past its limit kills the whole
/// run (an alarm: the process dies with `SIGALRM` after printing the case's name), since a
/// hang is exactly what the suite exists to find.
pub fn run(cases: &[Case], size: Size, filter: &str, budget: Option<Duration>) -> Vec<Row> {
    let mut plan: Vec<(String, Case, StartMethod)> = Vec::new();
    for c in cases {
        if c.per_method {
            for m in methods() {
                plan.push((format!("{}/{}", c.name, method_name(m)), *c, m));
            }
        } else {
            plan.push((c.name.to_string(), *c, multiproc::get_start_method()));
        }
    }
    plan.retain(|(n, _, _)| filter.is_empty() || n.contains(filter));
    let start = Instant::now();
    let mut rows = Vec::new();
    let total = plan.len();
    for (i, (name, case, method)) in plan.into_iter().enumerate() {
        // Each case gets an equal share of what is left of the budget.
        let deadline = budget.map(|b| {
            let left = b.saturating_sub(start.elapsed());
            Instant::now() + left / (total - i) as u32
        });
        let scale = Scale {
            size,
            method,
            deadline,
        };
        let limit = match size {
            Size::Small => 120,
            Size::Full => case.limit_secs,
        };
        print!("case {name} ... ");
        let _ = std::io::stdout().flush();
        probe::alarm(limit);
        let t0 = Instant::now();
        let mut tally = Tally::default();
        let r = panic::catch_unwind(AssertUnwindSafe(|| (case.run)(&scale, &mut tally)));
        probe::alarm(0);
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            tally.fail(format!("panicked: {msg}"));
        }
        let elapsed = t0.elapsed();
        println!(
            "{} ({} it, {:.1}s)",
            if tally.ok() { "ok" } else { "FAILED" },
            tally.iterations,
            elapsed.as_secs_f64()
        );
        for n in &tally.notes {
            println!("    {n}");
        }
        rows.push(Row {
            name,
            tally,
            elapsed,
        });
    }
    rows
}

/// The table: case, iterations, failures, lost, leaks, known defects seen, seconds.
pub fn table(rows: &[Row]) -> String {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut s = format!(
        "| {:w$} | {:>10} | {:>8} | {:>4} | {:>5} | {:>5} | {:>7} |\n|{}|{}|{}|{}|{}|{}|{}|\n",
        "case",
        "iterations",
        "failures",
        "lost",
        "leaks",
        "known",
        "seconds",
        "-".repeat(w + 2),
        "-".repeat(12),
        "-".repeat(10),
        "-".repeat(6),
        "-".repeat(7),
        "-".repeat(7),
        "-".repeat(9),
    );
    for r in rows {
        s.push_str(&format!(
            "| {:w$} | {:>10} | {:>8} | {:>4} | {:>5} | {:>5} | {:>7.1} |\n",
            r.name,
            r.tally.iterations,
            r.tally.failures,
            r.tally.lost,
            r.tally.leaks,
            r.tally.known,
            r.elapsed.as_secs_f64()
        ));
    }
    s
}

/// Whether every row is clean.
pub fn all_ok(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.tally.ok())
}

/// A small deterministic generator (xorshift64*), for kill schedules and victims.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and the pid (a failing seed is printed by the cases that use it).
    pub fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((t ^ u64::from(std::process::id()) << 32) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

impl Default for Rng {
    fn default() -> Rng {
        Rng::new()
    }
}
