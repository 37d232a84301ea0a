//! `bench-report`: turns one run of the comparison benchmarks into `report.md`, PNG charts and
//! the goal summary (run by `cargo xtask bench`; see `benches/README.md`).
//!
//! Inputs: criterion's results (`<criterion>/**/new/{benchmark,estimates}.json`, only those
//! written since `--since`) and the Python twins' JSON lines (`--python`). Each result is an
//! entry of a group and a case; an entry's kind follows its name (`multiproc …` ours, `python …`
//! the twin, anything else a peer). Outputs: `<out>/report.md`, `<out>/charts/<group>.png`, and
//! with `--benchmarks-md <file>` the same report as the repository's `BENCHMARKS.md`, its charts
//! copied into `--charts-dir`.
//!
//! Options:
//! `--criterion <dir> --out <dir> [--python <file>] [--python-skipped <why>] [--since <unix s>]
//! [--groups a,b] [--quick] [--benchmarks-md <file> --charts-dir <dir> --charts-link <prefix>]`.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use multiproc_benches::{OURS, PYTHON};

type Res<T> = Result<T, Box<dyn Error>>;

/// The groups, in report order, with one sentence on what they measure.
const GROUPS: &[(&str, &str)] = &[
    ("start", "Process start + join of a child that does nothing, per start method."),
    ("lock", "Lock + unlock uncontended; 2 processes × 1,000,000 locked increments of one shared counter."),
    ("pipe", "Round trip of a small message (a `u64`, 8 bytes) to an echo child and back."),
    ("queue", "Queue throughput (time per message, one producer process) and ping-pong between two processes."),
    ("pool", "Pool on 2 workers: `map` of `x + 1` over 100,000 items, `imap` and `imap_unordered` over 10,000, one `apply_async` round trip, a CPU-bound map."),
    ("array", "A shared array of 1,000,000 `f64` filled by a child process (fork) and summed by the parent."),
];

/// The cases in report order (a case not listed comes after these, in alphabetical order).
const CASES: &[&str] = &[
    "noop child",
    "uncontended",
    "2x1M increments",
    "8 B",
    "64 B",
    "64 KiB",
    "ping-pong",
    "map 100k default",
    "map 100k chunksize 1",
    "imap 10k",
    "imap_unordered 10k",
    "apply_async round trip",
    "cpu-bound 16 tasks",
    "1M f64 fill+sum",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ours,
    Peer,
    Python,
}

#[derive(Clone, Debug)]
struct Entry {
    group: String,
    case: String,
    name: String,
    median_ns: f64,
    spread_ns: f64,
    note: Option<String>,
}

impl Entry {
    fn kind(&self) -> Kind {
        if self.name.starts_with(OURS) {
            Kind::Ours
        } else if self.name.starts_with(PYTHON) {
            Kind::Python
        } else {
            Kind::Peer
        }
    }
}

/// How a goal compares `ours` with `other` (both entries of one group and case).
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// time(other) / time(ours) ≥ x: "x times faster than Python".
    FasterBy(f64),
    /// time(ours) / time(other) ≤ x: "within x of the OS limit".
    AtMost(f64),
    /// time(other) / time(ours) > 1: "faster than the peer".
    Faster,
}

struct Goal {
    group: &'static str,
    case: &'static str,
    ours: &'static str,
    other: &'static str,
    rule: Rule,
}

const GOALS: &[Goal] = &[
    // Issue #4's goals for the messaging layer, measured in the same run.
    Goal {
        group: "queue",
        case: "64 B",
        ours: "multiproc Queue shm",
        other: "multiproc Queue pipe",
        rule: Rule::FasterBy(5.0),
    },
    Goal {
        group: "queue",
        case: "64 KiB",
        ours: "multiproc Queue shm",
        other: "memcpy (reference)",
        rule: Rule::AtMost(2.0),
    },
    Goal {
        group: "queue",
        case: "64 KiB",
        ours: "multiproc Queue shm get_with (borrowed, fold)",
        other: "memcpy + fold (reference)",
        rule: Rule::AtMost(2.0),
    },
    // Against Python's same primitive.
    Goal {
        group: "start",
        case: "noop child",
        ours: "multiproc fork",
        other: "python fork",
        rule: Rule::FasterBy(10.0),
    },
    Goal {
        group: "start",
        case: "noop child",
        ours: "multiproc forkserver",
        other: "python forkserver",
        rule: Rule::FasterBy(10.0),
    },
    Goal {
        group: "start",
        case: "noop child",
        ours: "multiproc spawn",
        other: "python spawn",
        rule: Rule::FasterBy(10.0),
    },
    Goal {
        group: "lock",
        case: "2x1M increments",
        ours: "multiproc Value",
        other: "python Value",
        rule: Rule::FasterBy(20.0),
    },
    Goal {
        group: "queue",
        case: "64 B",
        ours: "multiproc Queue shm",
        other: "python Queue",
        rule: Rule::FasterBy(20.0),
    },
    Goal {
        group: "queue",
        case: "64 B",
        ours: "multiproc Queue pipe",
        other: "python Queue",
        rule: Rule::FasterBy(20.0),
    },
    Goal {
        group: "queue",
        case: "ping-pong",
        ours: "multiproc Queue shm",
        other: "python Queue",
        rule: Rule::FasterBy(30.0),
    },
    Goal {
        group: "queue",
        case: "ping-pong",
        ours: "multiproc Queue pipe",
        other: "python Queue",
        rule: Rule::FasterBy(30.0),
    },
    Goal {
        group: "pool",
        case: "map 100k default",
        ours: "multiproc Pool",
        other: "python Pool",
        rule: Rule::FasterBy(10.0),
    },
    Goal {
        group: "pool",
        case: "map 100k chunksize 1",
        ours: "multiproc Pool",
        other: "python Pool",
        rule: Rule::FasterBy(20.0),
    },
    Goal {
        group: "pool",
        case: "apply_async round trip",
        ours: "multiproc Pool",
        other: "python Pool",
        rule: Rule::FasterBy(10.0),
    },
    // Against the OS limits.
    Goal {
        group: "pipe",
        case: "8 B",
        ours: "multiproc Connection",
        other: "raw socketpair seqpacket",
        rule: Rule::AtMost(1.3),
    },
    Goal {
        group: "start",
        case: "noop child",
        ours: "multiproc forkserver",
        other: "raw fork+waitpid",
        rule: Rule::AtMost(2.0),
    },
    Goal {
        group: "lock",
        case: "uncontended",
        ours: "multiproc Lock",
        other: "futex mutex",
        rule: Rule::AtMost(1.3),
    },
    // Against Rust peers.
    Goal {
        group: "start",
        case: "noop child",
        ours: "multiproc fork",
        other: "procspawn",
        rule: Rule::Faster,
    },
    Goal {
        group: "start",
        case: "noop child",
        ours: "multiproc forkserver",
        other: "procspawn",
        rule: Rule::Faster,
    },
    Goal {
        group: "start",
        case: "noop child",
        ours: "multiproc spawn",
        other: "procspawn",
        rule: Rule::Faster,
    },
    Goal {
        group: "pool",
        case: "apply_async round trip",
        ours: "multiproc Pool",
        other: "procspawn Pool",
        rule: Rule::Faster,
    },
    Goal {
        group: "pool",
        case: "cpu-bound 16 tasks",
        ours: "multiproc Pool",
        other: "procspawn Pool",
        rule: Rule::Faster,
    },
    Goal {
        group: "pipe",
        case: "8 B",
        ours: "multiproc Connection",
        other: "ipc-channel",
        rule: Rule::Faster,
    },
];

struct Opts {
    criterion: PathBuf,
    out: PathBuf,
    python: Option<PathBuf>,
    python_skipped: Option<String>,
    since: f64,
    groups: Option<Vec<String>>,
    quick: bool,
    benchmarks_md: Option<PathBuf>,
    charts_dir: Option<PathBuf>,
    charts_link: String,
}

fn parse_args() -> Res<Opts> {
    let mut o = Opts {
        criterion: PathBuf::from("target/bench-report/criterion"),
        out: PathBuf::from("target/bench-report"),
        python: None,
        python_skipped: None,
        since: 0.0,
        groups: None,
        quick: false,
        benchmarks_md: None,
        charts_dir: None,
        charts_link: "benches/report".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--criterion" => o.criterion = val()?.into(),
            "--out" => o.out = val()?.into(),
            "--python" => o.python = Some(val()?.into()),
            "--python-skipped" => o.python_skipped = Some(val()?),
            "--since" => o.since = val()?.parse()?,
            "--groups" => o.groups = Some(val()?.split(',').map(str::to_string).collect()),
            "--quick" => o.quick = true,
            "--benchmarks-md" => o.benchmarks_md = Some(val()?.into()),
            "--charts-dir" => o.charts_dir = Some(val()?.into()),
            "--charts-link" => o.charts_link = val()?,
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    Ok(o)
}

fn mtime_secs(p: &Path) -> f64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Every `new/` directory under `dir` (criterion keeps the latest run of a benchmark there).
fn find_new_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") {
                out.push(p);
            } else {
                find_new_dirs(&p, out);
            }
        }
    }
}

fn read_criterion(dir: &Path, since: f64) -> Res<Vec<Entry>> {
    let mut dirs = Vec::new();
    find_new_dirs(dir, &mut dirs);
    let mut out = Vec::new();
    for d in dirs {
        let (bj, ej) = (d.join("benchmark.json"), d.join("estimates.json"));
        if !bj.exists() || !ej.exists() || mtime_secs(&ej) + 1.0 < since {
            continue;
        }
        let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&bj)?)?;
        let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ej)?)?;
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let (group, name, case) = (s(&b["group_id"]), s(&b["function_id"]), s(&b["value_str"]));
        let median = e["median"]["point_estimate"].as_f64();
        let mad = e["median_abs_dev"]["point_estimate"].as_f64();
        if let (Some(median_ns), Some(spread_ns)) = (median, mad) {
            if GROUPS.iter().any(|(g, _)| *g == group) {
                out.push(Entry {
                    group,
                    case,
                    name,
                    median_ns,
                    spread_ns,
                    note: None,
                });
            }
        }
    }
    Ok(out)
}

fn read_python(file: &Path) -> Res<Vec<Entry>> {
    let text = std::fs::read_to_string(file)?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let s = |k: &str| v[k].as_str().map(str::to_string);
        let (Some(group), Some(case), Some(name), Some(median_ns)) =
            (s("group"), s("case"), s("name"), v["median_ns"].as_f64())
        else {
            return Err(format!("malformed Python result: {line}").into());
        };
        out.push(Entry {
            group,
            case,
            name,
            median_ns,
            spread_ns: v["spread_ns"].as_f64().unwrap_or(0.0),
            note: s("note"),
        });
    }
    Ok(out)
}

/// The entries of one group, by case (cases in [`CASES`] order, entries sorted by kind then time).
fn by_case<'a>(entries: &'a [Entry], group: &str) -> Vec<(String, Vec<&'a Entry>)> {
    let mut cases: Vec<(String, Vec<&Entry>)> = Vec::new();
    for e in entries.iter().filter(|e| e.group == group) {
        match cases.iter_mut().find(|(c, _)| *c == e.case) {
            Some((_, v)) => v.push(e),
            None => cases.push((e.case.clone(), vec![e])),
        }
    }
    cases.sort_by_key(|(c, _)| {
        (
            CASES.iter().position(|x| x == c).unwrap_or(CASES.len()),
            c.clone(),
        )
    });
    for (_, v) in &mut cases {
        v.sort_by(|a, b| {
            (a.kind() as u8, a.median_ns)
                .partial_cmp(&(b.kind() as u8, b.median_ns))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    cases
}

fn find<'a>(entries: &'a [Entry], group: &str, case: &str, name: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .find(|e| e.group == group && e.case == case && e.name == name)
}

/// The Python entry an entry is compared with: the twin whose name (after `python `) starts the
/// entry's own name (after its prefix), the longest such; else the fastest Python entry.
fn python_ref<'a>(e: &Entry, case: &[&'a Entry]) -> Option<&'a Entry> {
    let own = e.name.strip_prefix(OURS).unwrap_or(&e.name).trim_start();
    let pys: Vec<&Entry> = case
        .iter()
        .copied()
        .filter(|x| x.kind() == Kind::Python)
        .collect();
    let twin = pys
        .iter()
        .filter(|p| {
            let x = p.name[PYTHON.len()..].trim_start();
            own == x || own.starts_with(&format!("{x} "))
        })
        .max_by_key(|p| p.name.len());
    twin.or_else(|| {
        pys.iter()
            .min_by(|a, b| a.median_ns.total_cmp(&b.median_ns))
    })
    .copied()
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn fmt_rate(ns: f64) -> String {
    let per_s = 1e9 / ns;
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.2}/s")
    }
}

/// One goal's outcome: text, measured ratio (if both sides were measured), met.
struct Outcome {
    text: String,
    ratio: Option<f64>,
    met: Option<bool>,
}

fn judge(entries: &[Entry], g: &Goal) -> Outcome {
    let (ours, other) = (
        find(entries, g.group, g.case, g.ours),
        find(entries, g.group, g.case, g.other),
    );
    let text = match g.rule {
        Rule::FasterBy(x) => format!(
            "{}: {} `{}`: ≥ {x}× faster than `{}`",
            g.ours, g.group, g.case, g.other
        ),
        Rule::AtMost(x) => format!(
            "{}: {} `{}`: ≤ {x}× the time of `{}`",
            g.ours, g.group, g.case, g.other
        ),
        Rule::Faster => format!(
            "{}: {} `{}`: faster than `{}`",
            g.ours, g.group, g.case, g.other
        ),
    };
    let (Some(o), Some(t)) = (ours, other) else {
        return Outcome {
            text,
            ratio: None,
            met: None,
        };
    };
    let (ratio, met) = match g.rule {
        Rule::FasterBy(x) => {
            let r = t.median_ns / o.median_ns;
            (r, r >= x)
        }
        Rule::AtMost(x) => {
            let r = o.median_ns / t.median_ns;
            (r, r <= x)
        }
        Rule::Faster => {
            let r = t.median_ns / o.median_ns;
            (r, r > 1.0)
        }
    };
    Outcome {
        text,
        ratio: Some(ratio),
        met: Some(met),
    }
}

fn describe_ratio(g: &Goal, r: f64) -> String {
    match g.rule {
        Rule::FasterBy(_) | Rule::Faster => format!("{r:.2}× faster"),
        Rule::AtMost(_) => format!("{r:.2}× the time"),
    }
}

/// The machine: CPU model, cores, kernel, and the load averages (1, 5, 15 min) at report time.
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    load: [f64; 3],
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mut load = [0.0; 3];
    if let Ok(s) = std::fs::read_to_string("/proc/loadavg") {
        for (l, v) in load.iter_mut().zip(s.split_whitespace()) {
            *l = v.parse().unwrap_or(0.0);
        }
    }
    Machine {
        cpu,
        cores,
        kernel,
        load,
    }
}

/// The machine paragraph: what it is, and whether other work loaded it during the run.
fn describe_machine(m: &Machine) -> String {
    let [l1, l5, l15] = m.load;
    let head = format!(
        "Machine: {}, {} cores, Linux {}. Load average when the report was written: {l1:.2} \
         (1 min), {l5:.2} (5 min), {l15:.2} (15 min).",
        m.cpu, m.cores, m.kernel
    );
    // The benchmarks themselves keep up to two cores busy: more than that is other work.
    if l15 > m.cores as f64 + 0.5 {
        format!(
            "{head} **A loaded machine:** other work ran beside the benchmarks, so absolute times \
             are inflated and noisy (wake-ups wait for a core); the ratios of entries measured side \
             by side are what to quote, and even those favour whatever needs fewer wake-ups."
        )
    } else {
        format!("{head} A quiet machine (no other significant work during the run).")
    }
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// The report in Markdown; charts are linked as `<charts_link>/<group>.png`.
fn render(o: &Opts, entries: &[Entry], groups: &[&str], charts: bool, charts_link: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# multiproc: the comparison benchmark\n");
    let _ = writeln!(
        s,
        "Run {}, {} pass, with `cargo xtask bench{}`. {}\n",
        utc_now(),
        if o.quick { "a `--quick`" } else { "a full" },
        if o.quick { " --quick" } else { "" },
        describe_machine(&machine())
    );
    let _ = writeln!(
        s,
        "Every entry of a group ran in the same run, Rust (criterion) and Python (the twins in \
         `benches/python/`) one after the other. *median* is the time of one operation (one start, \
         one round trip, one message, one whole `map`); *spread* is the median absolute deviation. \
         *÷ best peer* is the entry's time over the fastest peer's in its case (below 1: faster than \
         every peer); *× vs Python* is how many times faster than the Python twin of the same \
         primitive (its name) or else the fastest Python entry of the case. Absolute times are noisy \
         on a shared machine: quote the ratios.\n"
    );
    if let Some(why) = &o.python_skipped {
        let _ = writeln!(s, "**Python twins skipped:** {why}.\n");
    }
    // Goals.
    let _ = writeln!(s, "## Goals\n\n| goal | measured | result |\n|---|---|---|");
    for g in GOALS.iter().filter(|g| groups.contains(&g.group)) {
        let out = judge(entries, g);
        let (m, r) = match (out.ratio, out.met) {
            (Some(r), Some(met)) => (describe_ratio(g, r), if met { "met" } else { "**missed**" }),
            _ => ("—".into(), "not measured"),
        };
        let _ = writeln!(s, "| {} | {m} | {r} |", out.text);
    }
    let _ = writeln!(s);
    for (group, about) in GROUPS.iter().filter(|(g, _)| groups.contains(g)) {
        let cases = by_case(entries, group);
        let _ = writeln!(s, "## {group}\n\n{about}\n");
        if cases.is_empty() {
            let _ = writeln!(s, "(no result)\n");
            continue;
        }
        if charts {
            let _ = writeln!(s, "![{group}]({charts_link}/{group}.png)\n");
        }
        let _ = writeln!(
            s,
            "| case | entry | median | spread | per second | ÷ best peer | × vs Python |\n|---|---|---:|---:|---:|---:|---:|"
        );
        let mut notes = Vec::new();
        for (case, es) in &cases {
            let best_peer = es
                .iter()
                .filter(|e| e.kind() == Kind::Peer)
                .map(|e| e.median_ns)
                .fold(f64::INFINITY, f64::min);
            for e in es {
                let vs_peer = if best_peer.is_finite() {
                    format!("{:.2}", e.median_ns / best_peer)
                } else {
                    "—".into()
                };
                let vs_py = match (e.kind(), python_ref(e, es)) {
                    (Kind::Python, _) | (_, None) => "—".into(),
                    (_, Some(p)) => format!("{:.1}", p.median_ns / e.median_ns),
                };
                let name = if e.kind() == Kind::Ours {
                    format!("**{}**", e.name)
                } else {
                    e.name.clone()
                };
                let _ = writeln!(
                    s,
                    "| {case} | {name} | {} | ±{:.0} % | {} | {vs_peer} | {vs_py} |",
                    fmt_time(e.median_ns),
                    100.0 * e.spread_ns / e.median_ns,
                    fmt_rate(e.median_ns),
                );
                if let Some(n) = &e.note {
                    notes.push(format!("`{}` in `{case}`: {n}.", e.name));
                }
            }
            // A CPU-bound case has a one-process baseline: the speed-up of each parallel entry.
            let baseline = es.iter().find(|e| e.name.ends_with("one process"));
            if let (true, Some(one)) = (case.starts_with("cpu-bound"), baseline) {
                for e in es.iter().filter(|e| !e.name.ends_with("one process")) {
                    notes.push(format!(
                        "`{case}`: `{}` speed-up over one process {:.2}×.",
                        e.name,
                        one.median_ns / e.median_ns
                    ));
                }
            }
        }
        let _ = writeln!(s);
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
        let _ = writeln!(s);
    }
    s
}

// ---- charts ----------------------------------------------------------------------------------

/// Registers a TrueType font for the charts' text; `None` (charts skipped) when none is found.
fn load_font() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("MULTIPROC_BENCH_FONT") {
        candidates.push(p.into());
    }
    for p in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ] {
        candidates.push(p.into());
    }
    for p in candidates {
        if let Ok(bytes) = std::fs::read(&p) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(
                "sans-serif",
                plotters::style::FontStyle::Normal,
                bytes,
            )
            .is_ok()
            {
                return Some(p);
            }
        }
    }
    None
}

/// A horizontal bar chart: each entry's time over the fastest of its case, on a log scale.
fn chart(path: &Path, group: &str, cases: &[(String, Vec<&Entry>)]) -> Res<()> {
    use plotters::prelude::*;
    let mut rows: Vec<(String, f64, Kind)> = Vec::new();
    for (case, es) in cases {
        let fastest = es.iter().map(|e| e.median_ns).fold(f64::INFINITY, f64::min);
        for e in es {
            rows.push((
                format!("{case} · {}", e.name),
                e.median_ns / fastest,
                e.kind(),
            ));
        }
    }
    let n = rows.len();
    let (w, h) = (1000u32, 90 + 34 * n as u32);
    // Drawn into an RGB buffer, encoded by `write_png` (plotters' own encoder would bring in the
    // whole `image` crate).
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, group, &rows)?;
        root.present()?;
    }
    write_png(path, w, h, &rgb)
}

/// Encodes an 8-bit RGB image as a PNG file.
fn write_png(path: &Path, w: u32, h: u32, rgb: &[u8]) -> Res<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(())
}

/// Draws the bars and their labels (`rows`: label, time ÷ fastest, kind) on `root`.
fn draw<DB: plotters::prelude::DrawingBackend>(
    root: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    group: &str,
    rows: &[(String, f64, Kind)],
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;
    let n = rows.len();
    let max = rows.iter().map(|r| r.1).fold(1.0, f64::max);
    let hi = (max * 3.0).max(4.0);
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(root)
        .caption(
            format!("{group}: time ÷ fastest entry of its case (log scale, shorter is better)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .build_cartesian_2d((0.9f64..hi).log_scale(), 0f64..n as f64)?;
    c.configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_label_formatter(&|v| format!("{v}×"))
        .label_style(("sans-serif", 13))
        .draw()?;
    let color = |k: Kind| match k {
        Kind::Ours => RGBColor(31, 119, 180),
        Kind::Peer => RGBColor(150, 150, 150),
        Kind::Python => RGBColor(255, 127, 14),
    };
    c.draw_series(rows.iter().enumerate().map(|(i, (_, r, k))| {
        let y = (n - 1 - i) as f64;
        Rectangle::new(
            [(0.9, y + 0.08), (r.max(0.93), y + 0.45)],
            color(*k).filled(),
        )
    }))?;
    c.draw_series(rows.iter().enumerate().map(|(i, (label, r, _))| {
        let y = (n - 1 - i) as f64;
        Text::new(
            format!("{label}   {r:.2}×"),
            (0.92, y + 0.95),
            ("sans-serif", 14).into_font(),
        )
    }))?;
    Ok(())
}

fn main() -> Res<()> {
    let o = parse_args()?;
    let mut entries = read_criterion(&o.criterion, o.since)?;
    if let Some(p) = &o.python {
        if p.exists() {
            entries.extend(read_python(p)?);
        }
    }
    let groups: Vec<&str> = GROUPS
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| o.groups.as_ref().is_none_or(|gs| gs.iter().any(|x| x == g)))
        .collect();
    entries.retain(|e| groups.contains(&e.group.as_str()));
    std::fs::create_dir_all(o.out.join("charts"))?;

    let font = load_font();
    let mut charts_made = BTreeMap::new();
    match &font {
        Some(_) => {
            for g in &groups {
                let cases = by_case(&entries, g);
                if cases.is_empty() {
                    continue;
                }
                let p = o.out.join("charts").join(format!("{g}.png"));
                match chart(&p, g, &cases) {
                    Ok(()) => {
                        charts_made.insert(g.to_string(), p);
                    }
                    Err(e) => eprintln!("bench-report: chart {g}: {e}"),
                }
            }
        }
        None => eprintln!(
            "bench-report: no TrueType font found (install the Debian package fonts-dejavu-core, \
             or set MULTIPROC_BENCH_FONT to a .ttf): charts skipped"
        ),
    }
    let charts = !charts_made.is_empty();
    let report = render(&o, &entries, &groups, charts, "charts");
    let report_path = o.out.join("report.md");
    std::fs::write(&report_path, &report)?;

    if let Some(md) = &o.benchmarks_md {
        if let Some(dir) = &o.charts_dir {
            std::fs::create_dir_all(dir)?;
            for (g, p) in &charts_made {
                std::fs::copy(p, dir.join(format!("{g}.png")))?;
            }
        }
        let body = render(&o, &entries, &groups, charts, &o.charts_link).replacen(
            "# multiproc: the comparison benchmark\n",
            "# Benchmarks\n\nWritten by `cargo xtask bench` (a full run writes this file; \
             `target/bench-report/report.md` holds the latest run of any kind). How to run it and \
             what each group measures: `benches/README.md`.\n",
            1,
        );
        std::fs::write(md, body)?;
        println!("bench-report: wrote {}", md.display());
    }

    // The summary: every goal, met or missed, with its ratio.
    println!("\ngoals (from the issue), measured in this run:");
    let (mut met, mut missed, mut unmeasured) = (0, 0, 0);
    for g in GOALS.iter().filter(|g| groups.contains(&g.group)) {
        let out = judge(&entries, g);
        let verdict = match (out.ratio, out.met) {
            (Some(r), Some(true)) => {
                met += 1;
                format!("met     ({})", describe_ratio(g, r))
            }
            (Some(r), Some(false)) => {
                missed += 1;
                format!("MISSED  ({})", describe_ratio(g, r))
            }
            _ => {
                unmeasured += 1;
                "not measured".to_string()
            }
        };
        println!("  {verdict:<30} {}", out.text);
    }
    println!("{met} met, {missed} missed, {unmeasured} not measured");
    println!("report: {}", report_path.display());
    if !charts {
        println!("charts: none (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(group: &str, case: &str, name: &str, ns: f64) -> Entry {
        Entry {
            group: group.into(),
            case: case.into(),
            name: name.into(),
            median_ns: ns,
            spread_ns: 0.0,
            note: None,
        }
    }

    #[test]
    fn kinds_follow_the_names() {
        assert_eq!(e("g", "c", "multiproc Pool", 1.0).kind(), Kind::Ours);
        assert_eq!(e("g", "c", "python Pool", 1.0).kind(), Kind::Python);
        assert_eq!(e("g", "c", "rayon (2 threads)", 1.0).kind(), Kind::Peer);
    }

    #[test]
    fn python_twin_is_matched_by_name_before_speed() {
        let es = [
            e("queue", "64 B", "multiproc Queue shm", 1.0),
            e("queue", "64 B", "python SimpleQueue", 5.0),
            e("queue", "64 B", "python Queue", 9.0),
        ];
        let case: Vec<&Entry> = es.iter().collect();
        assert_eq!(python_ref(&es[0], &case).unwrap().name, "python Queue");
        // No twin of that name: the fastest Python entry.
        let peer = e("queue", "64 B", "raw pipe", 2.0);
        assert_eq!(python_ref(&peer, &case).unwrap().name, "python SimpleQueue");
        // "multiproc fork" matches "python fork", not "python forkserver".
        let starts = [
            e("start", "noop child", "python forkserver", 3.0),
            e("start", "noop child", "python fork", 2.0),
        ];
        let case: Vec<&Entry> = starts.iter().collect();
        let fs = e("start", "noop child", "multiproc forkserver", 1.0);
        assert_eq!(python_ref(&fs, &case).unwrap().name, "python forkserver");
        let f = e("start", "noop child", "multiproc fork", 1.0);
        assert_eq!(python_ref(&f, &case).unwrap().name, "python fork");
    }

    #[test]
    fn goals_are_judged_in_their_direction() {
        let es = vec![
            e("start", "noop child", "multiproc fork", 100.0),
            e("start", "noop child", "python fork", 1500.0),
            e("start", "noop child", "multiproc forkserver", 300.0),
            e("start", "noop child", "raw fork+waitpid", 100.0),
            e("start", "noop child", "procspawn", 200.0),
        ];
        let faster_by = |x| Goal {
            group: "start",
            case: "noop child",
            ours: "multiproc fork",
            other: "python fork",
            rule: Rule::FasterBy(x),
        };
        let o = judge(&es, &faster_by(10.0));
        assert_eq!((o.ratio, o.met), (Some(15.0), Some(true)));
        assert_eq!(judge(&es, &faster_by(20.0)).met, Some(false));
        let at_most = Goal {
            group: "start",
            case: "noop child",
            ours: "multiproc forkserver",
            other: "raw fork+waitpid",
            rule: Rule::AtMost(2.0),
        };
        let o = judge(&es, &at_most);
        assert_eq!((o.ratio, o.met), (Some(3.0), Some(false)));
        let faster = Goal {
            group: "start",
            case: "noop child",
            ours: "multiproc forkserver",
            other: "procspawn",
            rule: Rule::Faster,
        };
        assert_eq!(judge(&es, &faster).met, Some(false));
        let missing = Goal {
            group: "start",
            case: "noop child",
            ours: "multiproc spawn",
            other: "python spawn",
            rule: Rule::FasterBy(10.0),
        };
        let o = judge(&es, &missing);
        assert_eq!((o.ratio, o.met), (None, None));
    }

    #[test]
    fn every_goal_names_a_known_group_and_case() {
        for g in GOALS {
            assert!(GROUPS.iter().any(|(x, _)| *x == g.group), "{}", g.group);
            assert!(CASES.contains(&g.case), "{}", g.case);
        }
    }

    #[test]
    fn cases_in_report_order_ours_first() {
        let es = vec![
            e("queue", "ping-pong", "raw pipe", 1.0),
            e("queue", "64 B", "python Queue", 9.0),
            e("queue", "64 B", "raw pipe", 1.0),
            e("queue", "64 B", "multiproc Queue shm", 2.0),
            e("pipe", "8 B", "raw socketpair stream", 1.0),
        ];
        let cases = by_case(&es, "queue");
        let names: Vec<&str> = cases.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["64 B", "ping-pong"]);
        let order: Vec<&str> = cases[0].1.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(order, ["multiproc Queue shm", "raw pipe", "python Queue"]);
    }

    #[test]
    fn python_lines_are_read_and_malformed_ones_refused() {
        let dir = std::env::temp_dir().join(format!("bench-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ok.jsonl");
        std::fs::write(
            &f,
            "{\"group\": \"pipe\", \"case\": \"8 B\", \"name\": \"python Connection\", \
             \"median_ns\": 41000.5, \"spread_ns\": 12.0, \"samples\": 5, \"note\": \"n\"}\n",
        )
        .unwrap();
        let es = read_python(&f).unwrap();
        assert_eq!(es.len(), 1);
        assert_eq!(es[0].name, "python Connection");
        assert_eq!(es[0].median_ns, 41000.5);
        assert_eq!(es[0].note.as_deref(), Some("n"));
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, "{\"group\": \"pipe\"}\n").unwrap();
        assert!(read_python(&bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn times_and_rates_are_readable() {
        assert_eq!(fmt_time(15.26), "15.3 ns");
        assert_eq!(fmt_time(2_500.0), "2.50 µs");
        assert_eq!(fmt_time(3_000_000.0), "3.00 ms");
        assert_eq!(fmt_time(3.5e9), "3.50 s");
        assert_eq!(fmt_rate(1_000.0), "1.00 M/s");
        assert_eq!(fmt_rate(1e9), "1.00/s");
    }
}
