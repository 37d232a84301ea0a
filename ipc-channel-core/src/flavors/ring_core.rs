//! The shared-memory queue algorithm, independent of where its memory lives.
//!
//! [`Ctrl`] is the control block and [`Mem`] the chunk storage. In the library both live in one
//! memfd segment (`shm_ring.rs`); in the loom model (`tests/loom_shm_ring.rs`, which includes
//! this file by path) they live on the heap, with atomics and the futex from
//! `ipc_sync::primitive`/`ipc_sync::futex`, so one `--cfg ipc_loom` build checks the very code
//! the queue runs. This file uses nothing from the rest of the crate for that reason.
//!
//! # The algorithm
//!
//! Records (an 8-byte little-endian length, the payload, padding to 8 bytes) are appended to a
//! chain of chunks; a record may span any number of chunks. Chunks come from a free list (LIFO,
//! so recently used chunks with committed pages come first) or a bump pointer, and go back on
//! the free list once consumers have moved past them.
//!
//! Producers serialise on `put_lock`, consumers on `get_lock`, the allocator on `alloc_lock`
//! (robust locks: when a holder dies, the next taker gets the lock with `owner_died`). Each
//! side keeps its position in two slots and a selector, and commits a move by writing the unused
//! slot, then (producers) bumping `items_put`, which is what consumers read, then flipping the
//! selector. A process killed at any point leaves the old or the new state:
//!
//! - a producer killed before its commit leaves a partial record beyond the tail, overwritten by
//!   the next producer (which reuses any chunk the dead one had linked); killed between commit
//!   and flip, the next producer finds `items_put` one ahead of the selected slot and flips;
//! - a consumer killed before its flip leaves the record for the next consumer; after, the record
//!   was taken.
//!
//! At worst a crash leaks the chunks the dead process was about to link or free.
//!
//! A producer writes its record straight into the chunks (the caller's encoder writes through a
//! [`Writer`]) and fills in the length last; a consumer hands a record that lies in one chunk to
//! the caller's decoder where it is, and copies only a record that spans chunks.
//!
//! A side that finds nothing to do (a consumer on an empty queue, a producer on a full bounded
//! one) first re-checks for a while (ipc-sync's spin budget), then sleeps on a futex word:
//! consumers on `put_seq`, producers on `get_seq`. Bit 0 of the word ([`SLEEPER`]) says that
//! someone sleeps on it: the sleeper sets it with a read-modify-write, the other side looks at
//! it after each commit (behind a `SeqCst` fence) and makes the wake-up system call only when it
//! is set, clearing it in the same step. So while both sides run, no commit makes a system
//! call, and when a side sleeps, only the first commit after it fell asleep pays for waking it.
//!
//! Every index and length read from the control block or a chunk is range-checked by [`Mem`]
//! before use.

use ipc_sync::futex::{self, Deadline};
use ipc_sync::primitive::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use ipc_sync::raw::RawLock;

/// Points inside `put`/`get` where a test can make the process die (through the `hook`
/// argument), to check what the next process finds. Not part of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "testing-hooks"), allow(unreachable_pub))]
pub enum CrashPoint {
    /// The record is written (and chunks linked) but not committed.
    PutBeforeCommit,
    /// The record is committed but the producer's selector not flipped.
    PutBeforeFlip,
    /// The record is copied out but the consumer's selector not flipped.
    GetBeforeFlip,
    /// The record is taken but the chunks left behind not freed.
    GetBeforeFree,
}

/// What the algorithm can fail with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CoreError {
    /// The deadline passed (queue full for a put, empty for a get).
    Timeout,
    /// The item is larger than the queue's maximum message size.
    TooLarge { len: u64, max: u64 },
    /// Every chunk holds unread records.
    Exhausted,
    /// The shared state is inconsistent (another process wrote garbage).
    Corrupted(&'static str),
    /// The system refused memory for a chunk (the reason as text).
    NoMemory(String),
    /// The caller's `fill` gave up (it keeps the reason).
    Aborted,
}

pub(crate) type Result<T> = std::result::Result<T, CoreError>;

const LEN_BYTES: usize = 8;

/// How often a sleeping side re-checks the queue even without a wake-up: a process that died
/// between committing and waking the other side must not leave it asleep for good.
#[cfg(not(ipc_loom))]
const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// The deadline of one sleep: the caller's, but at most [`RECHECK`] away.
#[cfg(not(ipc_loom))]
fn nap(deadline: Option<Deadline>) -> Option<Deadline> {
    let tick = Deadline::after(RECHECK);
    Some(match deadline {
        Some(d) => d.min(tick),
        None => tick,
    })
}

/// Under loom no process dies, and a timed wait is modelled as "may time out" anyway.
#[cfg(ipc_loom)]
fn nap(deadline: Option<Deadline>) -> Option<Deadline> {
    deadline
}

/// A position: chunk, offset in its data area, and how many records precede it.
#[repr(C)]
pub(crate) struct Pos {
    pub(crate) unit: AtomicU64,
    pub(crate) off: AtomicU64,
    pub(crate) items: AtomicU64,
}

impl Pos {
    fn new(unit: u64) -> Pos {
        Pos {
            unit: AtomicU64::new(unit),
            off: AtomicU64::new(0),
            items: AtomicU64::new(0),
        }
    }
}

/// Padding that keeps fields written by different sides on different cache lines (two lines,
/// for the adjacent-line prefetcher). Never read or written.
type Pad = [u64; 16];

/// The control block. Fields are grouped by who writes them, each group apart from the others,
/// so producers and consumers do not bounce one cache line. The all-zero pattern is the state
/// before [`Ctrl::init`].
#[repr(C)]
pub(crate) struct Ctrl {
    // Set at creation, read-only afterwards.
    pub(crate) magic: AtomicU64,
    pub(crate) units: AtomicU64,
    pub(crate) maxsize: AtomicU64,
    pub(crate) max_msg: AtomicU64,
    _p0: Pad,
    // Producers, under `put_lock`.
    pub(crate) put_lock: RawLock,
    pub(crate) tail_sel: AtomicU64,
    pub(crate) tail: [Pos; 2],
    _p1: Pad,
    // Consumers, under `get_lock`.
    pub(crate) get_lock: RawLock,
    pub(crate) head_sel: AtomicU64,
    pub(crate) head: [Pos; 2],
    _p2: Pad,
    /// Records committed by producers (the commit point of a put).
    pub(crate) items_put: AtomicU64,
    /// Consumers sleep on it while the queue is empty (see [`SLEEPER`]).
    put_seq: AtomicU32,
    _p3: Pad,
    /// Records taken by consumers (mirrors the selected head slot; for `len`).
    pub(crate) items_got: AtomicU64,
    /// Producers of a full bounded queue sleep on it (see [`SLEEPER`]).
    get_seq: AtomicU32,
    _p4: Pad,
    // The chunk allocator, under `alloc_lock`.
    alloc_lock: RawLock,
    /// Head of the free chunk list (unit index + 1; 0 = empty).
    pub(crate) free_head: AtomicU64,
    /// How many chunks at the head of the free list still have their pages.
    pub(crate) hot_free: AtomicU64,
    /// The next never-used unit.
    pub(crate) next_fresh: AtomicU64,
}

impl Ctrl {
    /// A control block in its initial state (for the heap; shared memory starts zeroed and is
    /// set up with [`init`](Ctrl::init)).
    #[cfg_attr(not(ipc_loom), allow(dead_code))]
    pub(crate) fn new(units: u64, maxsize: u64, max_msg: u64, magic: u64) -> Ctrl {
        let c = Ctrl {
            magic: AtomicU64::new(0),
            units: AtomicU64::new(0),
            maxsize: AtomicU64::new(0),
            max_msg: AtomicU64::new(0),
            _p0: [0; 16],
            put_lock: RawLock::new(),
            tail_sel: AtomicU64::new(0),
            tail: [Pos::new(0), Pos::new(0)],
            _p1: [0; 16],
            get_lock: RawLock::new(),
            head_sel: AtomicU64::new(0),
            head: [Pos::new(0), Pos::new(0)],
            _p2: [0; 16],
            items_put: AtomicU64::new(0),
            put_seq: AtomicU32::new(0),
            _p3: [0; 16],
            items_got: AtomicU64::new(0),
            get_seq: AtomicU32::new(0),
            _p4: [0; 16],
            alloc_lock: RawLock::new(),
            free_head: AtomicU64::new(0),
            hot_free: AtomicU64::new(0),
            next_fresh: AtomicU64::new(0),
        };
        c.init(units, maxsize, max_msg, magic);
        c
    }

    /// Sets up a zeroed control block: chunk 1 is the first chunk, unit 0 is reserved for the
    /// control block itself.
    pub(crate) fn init(&self, units: u64, maxsize: u64, max_msg: u64, magic: u64) {
        self.units.store(units, Ordering::Relaxed);
        self.maxsize.store(maxsize, Ordering::Relaxed);
        self.max_msg.store(max_msg, Ordering::Relaxed);
        for p in self.tail.iter().chain(self.head.iter()) {
            p.unit.store(1, Ordering::Relaxed);
        }
        self.next_fresh.store(2, Ordering::Relaxed);
        self.magic.store(magic, Ordering::Release);
    }

    /// Records in the queue now.
    pub(crate) fn len(&self) -> u64 {
        let put = self.items_put.load(Ordering::Acquire);
        let got = self.items_got.load(Ordering::Acquire);
        put.saturating_sub(got)
    }
}

/// The chunk storage: `units` chunks of `data_len` data bytes each (unit 0 unused), with a
/// `next` link per chunk. Implementations check every index and range they are given.
pub(crate) trait Mem {
    /// The control block.
    fn ctrl(&self) -> &Ctrl;
    /// Number of units (chunk indices are `1..units`).
    fn units(&self) -> u64;
    /// The largest record this handle accepts, fixed when the handle was made (not re-read
    /// from the control block, which a corrupt peer could rewrite to make a consumer allocate
    /// without bound).
    fn max_msg(&self) -> u64;
    /// Data bytes per chunk (a multiple of 8).
    fn data_len(&self) -> usize;
    /// The `next` link of chunk `unit` (next unit + 1; 0 for none).
    fn link(&self, unit: u64) -> Result<&AtomicU64>;
    /// Copies `src` into chunk `unit` at `off`.
    fn write(&self, unit: u64, off: usize, src: &[u8]) -> Result<()>;
    /// Copies from chunk `unit` at `off` into `dst`.
    fn read(&self, unit: u64, off: usize, dst: &mut [u8]) -> Result<()>;
    /// Gives chunk `unit`'s pages back to the system; its contents (link included) read as
    /// zero afterwards.
    fn release(&self, unit: u64);
    /// Makes sure chunk `unit` has its memory (a chunk never used, or whose pages
    /// [`release`](Mem::release) gave back), so that writing it cannot fault. The default has
    /// nothing to do (heap memory).
    fn commit_pages(&self, unit: u64) -> Result<()> {
        let _ = unit;
        Ok(())
    }
    /// A process-local copy of `items_put` as last read (0 at first). `items_put` only grows,
    /// so the copy is a lower bound: while it is ahead of the consumers, a consumer knows a
    /// record is there without reading the producers' cache line.
    fn put_hint(&self) -> &AtomicU64;
    /// Calls `f` with the `len` bytes of chunk `unit` at `off`, in place if the storage allows
    /// it. The default copies them out with [`read`](Mem::read) (the loom model keeps it, so
    /// that every byte read goes through its cells).
    fn view(&self, unit: u64, off: usize, len: usize, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        let mut copy = vec![0u8; len];
        self.read(unit, off, &mut copy)?;
        f(&copy);
        Ok(())
    }
}

/// A held lock, released on drop.
struct Held<'a> {
    lock: &'a RawLock,
    owner_died: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: a `Held` exists only after `lock` acquired the lock on this thread, and it is
        // dropped exactly once, ending that acquisition.
        unsafe { self.lock.unlock() };
    }
}

fn lock(l: &RawLock, deadline: Option<Deadline>) -> Option<Held<'_>> {
    l.lock_until(deadline).map(|a| Held {
        lock: l,
        owner_died: a.owner_died(),
    })
}

fn check_unit<M: Mem + ?Sized>(m: &M, unit: u64) -> Result<()> {
    if unit == 0 || unit >= m.units() {
        Err(CoreError::Corrupted("chunk index out of range"))
    } else {
        Ok(())
    }
}

fn alloc_chunk<M: Mem + ?Sized>(m: &M) -> Result<u64> {
    let c = m.ctrl();
    let _held = lock(&c.alloc_lock, None).ok_or(CoreError::Corrupted("allocator lock"))?;
    // A holder that died here changed at most one word at a time: the list stays a list (a
    // chunk may leak), so there is nothing to repair.
    let head = c.free_head.load(Ordering::Acquire);
    let unit = if head != 0 {
        let unit = head - 1;
        check_unit(m, unit)?;
        let hot = c.hot_free.load(Ordering::Acquire);
        if hot == 0 {
            // Its pages were given back: get them before it leaves the list, so a refusal
            // leaves the list as it was.
            m.commit_pages(unit)?;
        }
        let next = m.link(unit)?.load(Ordering::Acquire);
        c.free_head.store(next, Ordering::Release);
        c.hot_free.store(hot.saturating_sub(1), Ordering::Release);
        unit
    } else {
        let unit = c.next_fresh.load(Ordering::Acquire);
        if unit >= m.units() {
            return Err(CoreError::Exhausted);
        }
        m.commit_pages(unit)?;
        c.next_fresh.store(unit + 1, Ordering::Release);
        unit
    };
    m.link(unit)?.store(0, Ordering::Release);
    Ok(unit)
}

fn free_chunk<M: Mem + ?Sized>(m: &M, unit: u64) -> Result<()> {
    let c = m.ctrl();
    let _held = lock(&c.alloc_lock, None).ok_or(CoreError::Corrupted("allocator lock"))?;
    m.link(unit)?
        .store(c.free_head.load(Ordering::Acquire), Ordering::Release);
    c.free_head.store(unit + 1, Ordering::Release);
    let hot = c.hot_free.load(Ordering::Acquire);
    c.hot_free.store(hot.saturating_add(1), Ordering::Release);
    Ok(())
}

/// Gives back the pages of a quarter of the free chunks beyond the first `keep` (the ones used
/// longest ago). Called when the queue has drained: a burst's memory goes back to the system
/// over the next few drains, without a system call per chunk while items stream, and a
/// workload of repeated bursts keeps most of its pages (a returned page costs a fault on reuse).
fn trim<M: Mem + ?Sized>(m: &M, keep: u64) -> Result<()> {
    let c = m.ctrl();
    if c.hot_free.load(Ordering::Relaxed) <= keep {
        return Ok(());
    }
    let _held = lock(&c.alloc_lock, None).ok_or(CoreError::Corrupted("allocator lock"))?;
    let hot = c.hot_free.load(Ordering::Acquire);
    if hot <= keep {
        return Ok(());
    }
    let release = (hot - keep).div_ceil(4);
    let skip = hot - release;
    let mut link = c.free_head.load(Ordering::Acquire);
    let mut i = 0u64;
    // Bounded by the number of chunks too: a scribbled list may be a cycle.
    while link != 0 && i < hot.min(m.units()) {
        let unit = link - 1;
        link = m.link(unit)?.load(Ordering::Acquire);
        if i >= skip {
            m.release(unit);
            // The link read as zero after the release: put it back.
            m.link(unit)?.store(link, Ordering::Release);
        }
        i += 1;
    }
    c.hot_free.store(skip, Ordering::Release);
    Ok(())
}

/// The chunk after `unit` for a producer: the one already linked (left by a producer that died
/// before committing) or a new one.
fn next_for_write<M: Mem + ?Sized>(m: &M, unit: u64) -> Result<u64> {
    let link = m.link(unit)?;
    let n = link.load(Ordering::Acquire);
    if n != 0 {
        check_unit(m, n - 1)?;
        return Ok(n - 1);
    }
    let fresh = alloc_chunk(m)?;
    link.store(fresh + 1, Ordering::Release);
    Ok(fresh)
}

fn next_for_read<M: Mem + ?Sized>(m: &M, unit: u64) -> Result<u64> {
    match m.link(unit)?.load(Ordering::Acquire) {
        0 => Err(CoreError::Corrupted(
            "committed record runs past the last chunk",
        )),
        n => {
            check_unit(m, n - 1)?;
            Ok(n - 1)
        }
    }
}

/// Repairs the tail after a producer died holding `put_lock`.
fn recover_tail(c: &Ctrl) {
    let sel = (c.tail_sel.load(Ordering::Acquire) & 1) as usize;
    let committed = c.items_put.load(Ordering::Acquire);
    let other = 1 - sel;
    if c.tail[sel].items.load(Ordering::Acquire).wrapping_add(1) == committed
        && c.tail[other].items.load(Ordering::Acquire) == committed
    {
        // It committed but did not flip: the other slot was written before the commit.
        c.tail_sel.store(other as u64, Ordering::Release);
    }
}

/// A record being written beyond the tail by the producer holding `put_lock`: the bytes go
/// straight into the chunks (allocating more as needed), the length is filled in at the end.
/// Nothing is visible to consumers until [`put_with`] commits it.
pub(crate) struct Writer<'a, M: Mem + ?Sized> {
    m: &'a M,
    /// Where the record's length goes.
    head: (u64, usize),
    /// Where the next byte goes.
    unit: u64,
    off: usize,
    /// Bytes offered so far (also past the maximum, to report the whole size).
    len: u64,
    max: u64,
    /// The first storage error: the record is abandoned.
    failed: Option<CoreError>,
}

impl<M: Mem + ?Sized> Writer<'_, M> {
    /// Appends `bytes` to the record. Past the queue's maximum message size the bytes are only
    /// counted (the put then fails with [`CoreError::TooLarge`] carrying the whole size); a
    /// storage error ([`CoreError::Exhausted`], [`CoreError::Corrupted`]) is returned at once
    /// and again by every later call.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.len = self.len.saturating_add(bytes.len() as u64);
        if self.len > self.max {
            return Ok(());
        }
        match self.append(bytes) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let data = self.m.data_len();
        let mut done = 0;
        while done < bytes.len() {
            if self.off == data {
                self.unit = next_for_write(self.m, self.unit)?;
                self.off = 0;
            }
            let n = (bytes.len() - done).min(data - self.off);
            self.m.write(self.unit, self.off, &bytes[done..done + n])?;
            done += n;
            self.off += n;
        }
        Ok(())
    }

    /// Bytes offered so far.
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// Starts a record at (`unit`, `off`): the room for its length is kept at the start.
fn start_record<M: Mem + ?Sized>(m: &M, mut unit: u64, mut off: usize) -> Result<Writer<'_, M>> {
    let data = m.data_len();
    if off > data || off % 8 != 0 {
        return Err(CoreError::Corrupted("tail offset out of range"));
    }
    if off == data {
        unit = next_for_write(m, unit)?;
        off = 0;
    }
    // `off` is 8-aligned and `data` a multiple of 8: the length fits in this chunk.
    Ok(Writer {
        m,
        head: (unit, off),
        unit,
        off: off + LEN_BYTES,
        len: 0,
        max: m.max_msg(),
        failed: None,
    })
}

/// Bit 0 of a wake-up word (`put_seq`, `get_seq`): someone sleeps, or is about to, on the word's
/// current value. The other bits count wake-ups, so a sleeper's expected value goes stale as
/// soon as one happens.
const SLEEPER: u32 = 1;

/// The waking side, after a change that a sleeper on `word` may wait for (a commit). Makes a
/// system call only when a sleeper announced itself, and then clears the announcement, so the
/// changes that follow make none until someone sleeps again.
///
/// Dekker with [`sleep_on`]: the change is ordered before the look at `word` by the fence, the
/// sleeper's announcement before its last look at the state by its own; one of the two sees
/// the other.
fn wake_sleepers(word: &AtomicU32) {
    fence(Ordering::SeqCst);
    let mut cur = word.load(Ordering::SeqCst);
    while cur & SLEEPER != 0 {
        match word.compare_exchange(
            cur,
            (cur & !SLEEPER).wrapping_add(2),
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => {
                futex::wake_all(word);
                return;
            }
            Err(now) => cur = now,
        }
    }
}

/// The sleeping side: announces a sleeper on `word` (always with a read-modify-write, so the
/// waker's fence orders against it), looks at the state once more with `ready`, and sleeps
/// unless it changed, at most until `deadline` (and [`RECHECK`] outside loom). Returns whether
/// the wait timed out.
fn sleep_on(word: &AtomicU32, deadline: Option<Deadline>, ready: impl Fn() -> bool) -> bool {
    let announced = word.fetch_or(SLEEPER, Ordering::SeqCst) | SLEEPER;
    fence(Ordering::SeqCst);
    if ready() {
        return false;
    }
    futex::wait(word, announced, nap(deadline)) == futex::Wait::TimedOut
}

#[cfg(not(ipc_loom))]
thread_local! {
    /// How long this thread has found it worth spinning, in nanoseconds (see [`spin_until`]).
    static LEARNED_SPIN: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
}

/// The shortest spin: a probe of about a microsecond.
#[cfg(not(ipc_loom))]
const PROBE_NANOS: u64 = 1_000;

/// The longest spin, whatever ipc-sync's spin time. It must outlast a wake-up: on an idle
/// virtual machine a sleeping partner takes tens of microseconds to wake, so with a 4 us cap a
/// ping-pong settled into both sides sleeping (84 us a round trip, quiet 2-core VM) where a 50
/// us cap keeps both sides awake (0.94 us), with the same 64 B and 64 KiB throughput. On an
/// overloaded machine the adaptive budget below shrinks towards the probe, so a spinner soon
/// stops taking the processor its partner needs (a fixed 50 us spin there halved 64 KiB
/// throughput).
#[cfg(not(ipc_loom))]
const MAX_SPIN_NANOS: u64 = 50_000;

/// Re-checks `ready` for a while before the caller sleeps; returns whether it became true. The
/// other side, when it runs, usually commits within a microsecond or two: spinning then saves
/// both this side's sleep and the other side's wake-up call.
///
/// The budget adapts per thread, as ipc-sync's waits do: at most ipc-sync's spin time
/// (`ipc_sync::spin_time`, which also turns spinning off) and [`MAX_SPIN_NANOS`], doubled after
/// a spin that succeeded,
/// halved (down to a ~1 us probe) after one that ran out. So a consumer that keeps up with a
/// running producer never sleeps, and one whose producer is idle or descheduled (an overloaded
/// machine) soon stops burning the processor the producer needs. Never past `deadline`.
#[cfg(not(ipc_loom))]
fn spin_until(deadline: Option<Deadline>, ready: impl Fn() -> bool) -> bool {
    if ready() {
        return true;
    }
    let max =
        (ipc_sync::spin_time().as_nanos().min(u128::from(u64::MAX)) as u64).min(MAX_SPIN_NANOS);
    if max == 0 || ipc_sync::spin_limit() == 0 {
        return false;
    }
    let budget = LEARNED_SPIN.with(std::cell::Cell::get).min(max);
    let start = std::time::Instant::now();
    let mut looks = 0u32;
    let won = loop {
        ipc_sync::primitive::spin_loop();
        if ready() {
            break true;
        }
        looks = looks.wrapping_add(1);
        if looks % 16 == 0
            && (start.elapsed().as_nanos() >= u128::from(budget)
                || deadline.is_some_and(|d| d.has_passed()))
        {
            break false;
        }
    };
    let next = if won {
        budget.saturating_mul(2).saturating_add(2 * PROBE_NANOS)
    } else {
        (budget / 2).max(PROBE_NANOS)
    };
    LEARNED_SPIN.with(|l| l.set(next.min(max)));
    won
}

/// Under loom a spin only multiplies states.
#[cfg(ipc_loom)]
fn spin_until(_deadline: Option<Deadline>, ready: impl Fn() -> bool) -> bool {
    ready()
}

/// Appends `bytes` as one record, waiting for room in a bounded queue until `deadline`.
// The library calls `put_with`; the loom model calls this.
#[allow(dead_code)]
pub(crate) fn put<M: Mem + ?Sized>(m: &M, bytes: &[u8], deadline: Option<Deadline>) -> Result<()> {
    if bytes.len() as u64 > m.max_msg() {
        return Err(CoreError::TooLarge {
            len: bytes.len() as u64,
            max: m.max_msg(),
        });
    }
    put_with(m, deadline, |_| {}, |w| w.write(bytes))
}

/// Appends one record whose bytes `fill` writes, waiting for room in a bounded queue until
/// `deadline`, and calling `hook` at each [`CrashPoint`] it passes. `fill` runs under
/// `put_lock` once there is room; when it fails (or panics) nothing is committed and its
/// error is returned.
pub(crate) fn put_with<M: Mem + ?Sized>(
    m: &M,
    deadline: Option<Deadline>,
    hook: impl Fn(CrashPoint),
    fill: impl FnOnce(&mut Writer<'_, M>) -> Result<()>,
) -> Result<()> {
    let c = m.ctrl();
    let maxsize = c.maxsize.load(Ordering::Relaxed);
    // Only a bounded queue waits for room (and so reads the consumers' line).
    let full = || {
        c.items_put
            .load(Ordering::SeqCst)
            .saturating_sub(c.items_got.load(Ordering::SeqCst))
            >= maxsize
    };
    loop {
        let held = lock(&c.put_lock, deadline).ok_or(CoreError::Timeout)?;
        if held.owner_died {
            recover_tail(c);
        }
        let sel = (c.tail_sel.load(Ordering::Acquire) & 1) as usize;
        let items = c.tail[sel].items.load(Ordering::Acquire);
        if maxsize > 0 && items.saturating_sub(c.items_got.load(Ordering::Acquire)) >= maxsize {
            drop(held);
            if spin_until(deadline, || !full()) {
                continue;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return Err(CoreError::Timeout);
            }
            let timed_out = sleep_on(&c.get_seq, deadline, || !full());
            if timed_out && cfg!(ipc_loom) {
                // Loom models a timed wait as "may time out" without a clock.
                return Err(CoreError::Timeout);
            }
            continue;
        }
        let unit = c.tail[sel].unit.load(Ordering::Acquire);
        let off = c.tail[sel].off.load(Ordering::Acquire) as usize;
        let mut w = start_record(m, unit, off)?;
        let filled = fill(&mut w);
        if let Some(e) = w.failed.take() {
            return Err(e);
        }
        filled?;
        if w.len > w.max {
            return Err(CoreError::TooLarge {
                len: w.len,
                max: w.max,
            });
        }
        m.write(w.head.0, w.head.1, &w.len.to_le_bytes())?;
        let data = m.data_len();
        let (end_unit, end_off) = (w.unit, ((w.off + 7) & !7).min(data));
        let other = 1 - sel;
        c.tail[other].unit.store(end_unit, Ordering::Relaxed);
        c.tail[other].off.store(end_off as u64, Ordering::Relaxed);
        // Wrapping: the counters live in shared memory, where a corrupt peer may have left
        // anything (an honest queue never gets near 2^64 records).
        let next = items.wrapping_add(1);
        c.tail[other].items.store(next, Ordering::Relaxed);
        hook(CrashPoint::PutBeforeCommit);
        // The commit: consumers may take the record from here on.
        c.items_put.store(next, Ordering::SeqCst);
        hook(CrashPoint::PutBeforeFlip);
        c.tail_sel.store(other as u64, Ordering::Release);
        drop(held);
        wake_sleepers(&c.put_seq);
        return Ok(());
    }
}

/// Reads the length of the record at (`unit`, `off`); returns where its bytes start and how
/// many there are, pushing a chunk left behind onto `passed`.
fn record_start<M: Mem + ?Sized>(
    m: &M,
    mut unit: u64,
    mut off: usize,
    passed: &mut Vec<u64>,
) -> Result<(u64, usize, usize)> {
    let data = m.data_len();
    if off > data || off % 8 != 0 {
        return Err(CoreError::Corrupted("head offset out of range"));
    }
    if off == data {
        passed.push(unit);
        unit = next_for_read(m, unit)?;
        off = 0;
    }
    let mut len = [0u8; LEN_BYTES];
    m.read(unit, off, &mut len)?;
    let len = u64::from_le_bytes(len);
    // Checked against this handle's own limit and the storage size before anything is
    // allocated for it: the length comes from shared memory.
    let capacity = m.units().saturating_sub(1).saturating_mul(data as u64);
    if len > m.max_msg() || len > capacity {
        return Err(CoreError::Corrupted(
            "record longer than the maximum message size",
        ));
    }
    Ok((unit, off + LEN_BYTES, len as usize))
}

/// Copies the `len` record bytes at (`unit`, `off`) into `out` (resized to fit); returns the
/// end position and pushes the chunks left behind onto `passed`.
fn read_body<M: Mem + ?Sized>(
    m: &M,
    mut unit: u64,
    mut off: usize,
    len: usize,
    out: &mut Vec<u8>,
    passed: &mut Vec<u64>,
) -> Result<(u64, usize)> {
    let data = m.data_len();
    out.resize(len, 0);
    let mut done = 0;
    while done < len {
        if off == data {
            passed.push(unit);
            unit = next_for_read(m, unit)?;
            off = 0;
        }
        let n = (len - done).min(data - off);
        m.read(unit, off, &mut out[done..done + n])?;
        done += n;
        off += n;
    }
    Ok((unit, ((off + 7) & !7).min(data)))
}

/// Takes the first record into `out` and returns its length, waiting until `deadline` while
/// the queue is empty.
// The library calls `get_with`; the loom model calls this.
#[allow(dead_code)]
pub(crate) fn get<M: Mem + ?Sized>(
    m: &M,
    out: &mut Vec<u8>,
    deadline: Option<Deadline>,
    keep_free: u64,
) -> Result<usize> {
    let mut spill = Vec::new();
    *out = get_with(m, &mut spill, deadline, keep_free, |_| {}, <[u8]>::to_vec)?;
    Ok(out.len())
}

/// Takes the first record and returns what `take` makes of its bytes, waiting until
/// `deadline` while the queue is empty, and calling `hook` at each [`CrashPoint`] it passes.
///
/// A record that lies in one chunk is handed to `take` where it is ([`Mem::view`]), under
/// `get_lock`; one that spans chunks is copied into `spill` first (which keeps its allocation
/// between calls) and handed over after the lock is released. Either way the record is taken
/// whatever `take` returns, and also when it panics (the panic resumes once the record is
/// taken and the chunks it passed are given back): a record that cannot be decoded is not
/// handed to every consumer in turn.
pub(crate) fn get_with<M: Mem + ?Sized, R>(
    m: &M,
    spill: &mut Vec<u8>,
    deadline: Option<Deadline>,
    keep_free: u64,
    hook: impl Fn(CrashPoint),
    take: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let c = m.ctrl();
    let hint = m.put_hint();
    let mut passed = Vec::new();
    let data = m.data_len();
    loop {
        let held = lock(&c.get_lock, deadline).ok_or(CoreError::Timeout)?;
        let sel = (c.head_sel.load(Ordering::Acquire) & 1) as usize;
        let items = c.head[sel].items.load(Ordering::Acquire);
        if held.owner_died {
            // The selector is the commit; only the mirror may lag.
            c.items_got.store(items, Ordering::Release);
        }
        let mut put = hint.load(Ordering::Acquire);
        if put <= items {
            put = c.items_put.load(Ordering::Acquire);
            hint.store(put, Ordering::Release);
        }
        if put > items {
            let unit = c.head[sel].unit.load(Ordering::Acquire);
            let off = c.head[sel].off.load(Ordering::Acquire) as usize;
            passed.clear();
            let (unit, off, len) = record_start(m, unit, off, &mut passed)?;
            let mut take = Some(take);
            let mut made = None;
            let mut panicked = None;
            let (end_unit, end_off) = if off.checked_add(len).is_some_and(|end| end <= data) {
                let viewed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    m.view(unit, off, len, &mut |bytes| {
                        if let Some(t) = take.take() {
                            made = Some(t(bytes));
                        }
                    })
                }));
                match viewed {
                    Ok(r) => r?,
                    Err(payload) => panicked = Some(payload),
                }
                if made.is_none() && panicked.is_none() {
                    return Err(CoreError::Corrupted("record not readable in place"));
                }
                (unit, ((off + len + 7) & !7).min(data))
            } else {
                read_body(m, unit, off, len, spill, &mut passed)?
            };
            let other = 1 - sel;
            c.head[other].unit.store(end_unit, Ordering::Relaxed);
            c.head[other].off.store(end_off as u64, Ordering::Relaxed);
            let next = items.wrapping_add(1);
            c.head[other].items.store(next, Ordering::Relaxed);
            hook(CrashPoint::GetBeforeFlip);
            // The commit: the record is taken.
            c.head_sel.store(other as u64, Ordering::Release);
            c.items_got.store(next, Ordering::SeqCst);
            hook(CrashPoint::GetBeforeFree);
            drop(held);
            if c.maxsize.load(Ordering::Relaxed) > 0 {
                wake_sleepers(&c.get_seq);
            }
            // A record copied out of the queue is handed over now, outside the lock. Whether
            // `take` returned or panicked (here or in place above), the chunks the head passed
            // are given back before the panic resumes: a panicking consumer leaks no storage.
            let r = match (made, take, panicked) {
                (_, _, Some(payload)) => Err(payload),
                (Some(r), _, None) => Ok(r),
                (None, Some(t), None) => {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t(spill)))
                }
                (None, None, None) => return Err(CoreError::Corrupted("record not readable")),
            };
            for u in passed.drain(..) {
                free_chunk(m, u)?;
            }
            if put == next {
                let now = c.items_put.load(Ordering::Acquire);
                hint.store(now, Ordering::Release);
                if now == next {
                    trim(m, keep_free)?;
                }
            }
            return match r {
                Ok(r) => Ok(r),
                Err(payload) => std::panic::resume_unwind(payload),
            };
        }
        drop(held);
        let ready = || c.items_put.load(Ordering::SeqCst) > items;
        if spin_until(deadline, ready) {
            continue;
        }
        if deadline.is_some_and(|d| d.has_passed()) {
            return Err(CoreError::Timeout);
        }
        let timed_out = sleep_on(&c.put_seq, deadline, ready);
        if timed_out && cfg!(ipc_loom) {
            return Err(CoreError::Timeout);
        }
    }
}
