//! Linux backend: thread ids from `gettid`, cached per thread and refreshed after `fork`, and owner
//! liveness from `/proc/<tid>/stat` (state and start time).
//!
//! # Why the start time
//!
//! A lock word records its owner's thread id. Thread ids are reused once the kernel's counter wraps
//! around `pid_max`, so "a thread with this id exists" does not prove that the owner lives. Beside the
//! word each lock keeps a record `(tid, start time)`, where the start time is field 22 of
//! `/proc/<tid>/stat` (clock ticks since boot, low 32 bits): a thread with the same id but another
//! start time is a different thread, and the owner is dead. A zombie (state `Z`/`X`, killed but not
//! yet reaped) is dead too. When `/proc` cannot be read, `kill(tid, 0)` decides (existence only).
//!
//! All processes that share a lock must live in the same PID namespace (true for the children that
//! fork, spawn and forkserver start).

use crate::raw::Owner;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Bumped in every child right after `fork`, so that the per-thread cache is recomputed there.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);
static REGISTER_ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one atomic add.
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    /// `(fork generation + 1, owner)`; a first field of 0 means "not computed yet".
    static CACHE: Cell<(u32, Owner)> = const { Cell::new((0, Owner { tid: 0, start: 0 })) };
}

/// The calling thread's owner id: `gettid()` and its start time. No system call once cached.
#[inline]
pub(crate) fn current_owner() -> Owner {
    let generation = FORK_GENERATION.load(Ordering::Relaxed).wrapping_add(1);
    let (cached_generation, owner) = CACHE.with(Cell::get);
    if cached_generation == generation && generation != 0 {
        return owner;
    }
    compute_owner(generation)
}

#[cold]
fn compute_owner(generation: u32) -> Owner {
    REGISTER_ATFORK.call_once(|| {
        // SAFETY: `after_fork_in_child` is an `extern "C" fn()` that only performs an atomic add,
        // which is async-signal-safe, as a child handler of `pthread_atfork` must be.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        // Registration fails only with ENOMEM; the cache would then go stale in forked children,
        // so keep it disabled by never caching (generation 0 is never considered fresh).
        if rc != 0 {
            FORK_GENERATION.store(u32::MAX, Ordering::Relaxed);
        }
    });
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    let start = read_stat(tid).map(|s| s.start).unwrap_or(0);
    let owner = Owner { tid, start };
    if FORK_GENERATION.load(Ordering::Relaxed) != u32::MAX {
        CACHE.with(|c| c.set((generation, owner)));
    }
    owner
}

struct Stat {
    state: u8,
    start: u32,
}

/// Reads the state and start time of thread `tid` from `/proc/<tid>/stat`.
fn read_stat(tid: u32) -> std::io::Result<Stat> {
    let text = std::fs::read(format!("/proc/{tid}/stat"))?;
    parse_stat(&text).ok_or_else(|| std::io::Error::other("malformed /proc stat line"))
}

/// Parses a `/proc/<tid>/stat` line: the command name is in parentheses and may contain anything,
/// so fields are counted from the last `)`. Field 3 is the state, field 22 the start time.
fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // Fields 4..=21 are 18 fields to skip; the next one is field 22.
    let start: u64 = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        state,
        start: start as u32,
    })
}

/// Whether thread `tid` (the owner recorded in a lock word) is still alive. `start` is the start
/// time recorded beside the word, when the record belongs to this tid.
pub(crate) fn owner_alive(tid: u32, start: Option<u32>) -> bool {
    match read_stat(tid) {
        Ok(stat) => {
            if matches!(stat.state, b'Z' | b'X' | b'x') {
                return false;
            }
            match start {
                Some(recorded) if recorded != 0 && stat.start != 0 => recorded == stat.start,
                _ => true,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => match rustix::process::Pid::from_raw(tid as i32) {
            Some(pid) => !matches!(
                rustix::process::test_kill_process(pid),
                Err(rustix::io::Errno::SRCH)
            ),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_parentheses_in_the_name() {
        let line =
            b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2 3\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.state, b'S');
        assert_eq!(stat.start, 987654);
    }

    #[test]
    fn the_calling_thread_is_alive_and_a_bogus_start_time_is_not() {
        let me = current_owner();
        assert!(me.tid > 0);
        assert!(owner_alive(me.tid, Some(me.start)));
        if me.start != 0 {
            assert!(!owner_alive(me.tid, Some(me.start.wrapping_add(1))));
        }
    }

    #[test]
    fn a_finished_thread_is_dead() {
        let owner = std::thread::spawn(current_owner).join().unwrap();
        // The thread has exited and been joined, but the kernel may still be tearing it down for a
        // moment after `join` returns: allow it a generous while to disappear.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while owner_alive(owner.tid, Some(owner.start)) {
            assert!(
                std::time::Instant::now() < give_up,
                "a joined thread still looks alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn threads_have_distinct_owner_ids() {
        let a = current_owner();
        let b = std::thread::spawn(current_owner).join().unwrap();
        assert_ne!(a.tid, b.tid);
    }
}
