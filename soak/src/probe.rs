//! What the cases measure about processes from the outside: descriptors, memory and mappings
//! of this process (`/proc/self`), the process tree and its zombies (`/proc/<pid>/stat`),
//! and the names in `/dev/shm`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::time::{Duration, Instant};

/// Open descriptors of this process.
pub fn fd_count() -> usize {
    // The directory handle itself is one of the entries while it is read.
    fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// Resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    let s = fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * page_size() / 1024
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Memory mappings of this process.
pub fn map_count() -> usize {
    fs::read_to_string("/proc/self/maps")
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The state letter and parent pid of a process, `None` once it is gone.
pub fn stat(pid: u32) -> Option<(char, u32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ppid ...`: comm may hold spaces and parentheses, so cut at the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    matches!(stat(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

fn all_stats() -> HashMap<u32, (char, u32)> {
    let mut m = HashMap::new();
    if let Ok(d) = fs::read_dir("/proc") {
        for e in d.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(st) = stat(pid) {
                    m.insert(pid, st);
                }
            }
        }
    }
    m
}

/// The live descendants of `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let stats = all_stats();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&c, &(s, pp)) in &stats {
            if pp == p && s != 'Z' && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Zombie children of this process (exited, never reaped).
pub fn zombies() -> Vec<u32> {
    let me = std::process::id();
    all_stats()
        .into_iter()
        .filter(|&(_, (s, pp))| pp == me && s == 'Z')
        .map(|(p, _)| p)
        .collect()
}

/// The names in `/dev/shm`.
pub fn shm_names() -> BTreeSet<String> {
    fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The names in `/dev/shm` now that were not in `before`, are still there after a grace
/// period, and that no running process maps: other programs on the machine create and remove
/// names of their own while they use them, so a new name counts as leaked only if it stays
/// and nobody holds it.
pub fn shm_new_names(before: &BTreeSet<String>) -> Vec<String> {
    let mut new: Vec<String> = shm_names().difference(before).cloned().collect();
    if !new.is_empty() {
        std::thread::sleep(Duration::from_secs(1));
        let now = shm_names();
        new.retain(|n| now.contains(n));
    }
    if !new.is_empty() {
        let held = mapped_shm_names();
        new.retain(|n| !held.contains(n));
    }
    new
}

/// The `/dev/shm` names some running process maps (from every `/proc/<pid>/maps`).
fn mapped_shm_names() -> BTreeSet<String> {
    let mut held = BTreeSet::new();
    if let Ok(d) = fs::read_dir("/proc") {
        for e in d.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
            {
                if let Ok(maps) = fs::read_to_string(e.path().join("maps")) {
                    for line in maps.lines() {
                        if let Some(i) = line.find("/dev/shm/") {
                            let name = line[i + "/dev/shm/".len()..].trim_end_matches(" (deleted)");
                            held.insert(name.to_string());
                        }
                    }
                }
            }
        }
    }
    held
}

/// Sends `sig` to `pid` (errors ignored: the process may be gone already).
pub fn kill(pid: u32, sig: i32) {
    if pid == 0 || pid > i32::MAX as u32 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; a positive pid names one process.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Arms (or with 0 disarms) this process's alarm: a case that hangs dies with `SIGALRM`.
pub fn alarm(secs: u32) {
    // SAFETY: alarm(2) has no memory-safety preconditions.
    unsafe {
        libc::alarm(secs);
    }
}

/// Waits until `cond` holds, at most `limit`; returns whether it held and how long it took.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> (bool, Duration) {
    let t0 = Instant::now();
    loop {
        if cond() {
            return (true, t0.elapsed());
        }
        if t0.elapsed() >= limit {
            return (false, t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A snapshot of this process's resources, to compare before and after a loop.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Open descriptors.
    pub fds: usize,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Mappings.
    pub maps: usize,
    /// Names in `/dev/shm`.
    pub shm: BTreeSet<String>,
}

impl Snapshot {
    /// Takes one now.
    pub fn take() -> Snapshot {
        Snapshot {
            fds: fd_count(),
            rss_kib: rss_kib(),
            maps: map_count(),
            shm: shm_names(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_nobody_maps_counts_as_new_and_a_mapped_one_does_not() {
        let before = shm_names();
        let name = format!("soak-probe-test-{}", std::process::id());
        let path = format!("/dev/shm/{name}");
        fs::write(&path, [0u8; 4096]).unwrap();
        let new = shm_new_names(&before);
        let _ = fs::remove_file(&path);
        assert!(new.contains(&name), "{new:?}");

        let before = shm_names();
        let seg = multiproc::SharedMemory::create(Some(&name), 4096).unwrap();
        let new = shm_new_names(&before);
        seg.unlink().unwrap();
        assert!(!new.contains(&name), "{new:?}");
    }
}
