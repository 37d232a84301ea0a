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
//! Consumers sleep on the futex word `put_seq` (bumped by every put) while the queue is empty,
//! producers of a bounded queue on `get_seq` (bumped by every get); each side wakes the other
//! only when waiters announced themselves.
//!
//! Every index and length read from the control block or a chunk is range-checked by [`Mem`]
//! before use.

use ipc_sync::futex::{self, Deadline};
use ipc_sync::primitive::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use ipc_sync::raw::RawLock;

/// Points inside `put`/`get` where a test can make the process die (through the `hook`
/// argument), to check what the next process finds. Not part of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CoreError {
    /// The deadline passed (queue full for a put, empty for a get).
    Timeout,
    /// The item is larger than the queue's maximum message size.
    TooLarge { len: u64, max: u64 },
    /// Every chunk holds unread records.
    Exhausted,
    /// The shared state is inconsistent (another process wrote garbage).
    Corrupted(&'static str),
}

pub(crate) type Result<T> = std::result::Result<T, CoreError>;

const LEN_BYTES: usize = 8;
/// Checks of the queue a consumer makes before sleeping on it (none under loom, where spinning
/// only multiplies states).
const SPINS: u32 = if cfg!(ipc_loom) { 0 } else { 200 };

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
    put_seq: AtomicU32,
    put_waiters: AtomicU32,
    _p3: Pad,
    /// Records taken by consumers (mirrors the selected head slot; for `len`).
    pub(crate) items_got: AtomicU64,
    get_seq: AtomicU32,
    get_waiters: AtomicU32,
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
            put_waiters: AtomicU32::new(0),
            _p3: [0; 16],
            items_got: AtomicU64::new(0),
            get_seq: AtomicU32::new(0),
            get_waiters: AtomicU32::new(0),
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
    /// A process-local copy of `items_put` as last read (0 at first). `items_put` only grows,
    /// so the copy is a lower bound: while it is ahead of the consumers, a consumer knows a
    /// record is there without reading the producers' cache line.
    fn put_hint(&self) -> &AtomicU64;
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
        let next = m.link(unit)?.load(Ordering::Acquire);
        c.free_head.store(next, Ordering::Release);
        let hot = c.hot_free.load(Ordering::Acquire);
        c.hot_free.store(hot.saturating_sub(1), Ordering::Release);
        unit
    } else {
        let unit = c.next_fresh.load(Ordering::Acquire);
        if unit >= m.units() {
            return Err(CoreError::Exhausted);
        }
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

/// Copies `bytes` as one record starting at (`unit`, `off`); returns the end position.
fn write_record<M: Mem + ?Sized>(
    m: &M,
    mut unit: u64,
    mut off: usize,
    bytes: &[u8],
) -> Result<(u64, usize)> {
    let data = m.data_len();
    if off > data || off % 8 != 0 {
        return Err(CoreError::Corrupted("tail offset out of range"));
    }
    if off == data {
        unit = next_for_write(m, unit)?;
        off = 0;
    }
    // `off` is 8-aligned and `data` a multiple of 8: the length fits in this chunk.
    m.write(unit, off, &(bytes.len() as u64).to_le_bytes())?;
    off += LEN_BYTES;
    let mut done = 0;
    while done < bytes.len() {
        if off == data {
            unit = next_for_write(m, unit)?;
            off = 0;
        }
        let n = (bytes.len() - done).min(data - off);
        m.write(unit, off, &bytes[done..done + n])?;
        done += n;
        off += n;
    }
    Ok((unit, ((off + 7) & !7).min(data)))
}

/// Appends `bytes` as one record, waiting for room in a bounded queue until `deadline`.
// The library calls `put_with`; the loom model calls this.
#[allow(dead_code)]
pub(crate) fn put<M: Mem + ?Sized>(m: &M, bytes: &[u8], deadline: Option<Deadline>) -> Result<()> {
    put_with(m, bytes, deadline, |_| {})
}

/// [`put`], calling `hook` at each [`CrashPoint`] it passes.
pub(crate) fn put_with<M: Mem + ?Sized>(
    m: &M,
    bytes: &[u8],
    deadline: Option<Deadline>,
    hook: impl Fn(CrashPoint),
) -> Result<()> {
    let c = m.ctrl();
    let max = m.max_msg();
    if bytes.len() as u64 > max {
        return Err(CoreError::TooLarge {
            len: bytes.len() as u64,
            max,
        });
    }
    let maxsize = c.maxsize.load(Ordering::Relaxed);
    loop {
        // Only a bounded queue waits for room (and so reads the consumers' line).
        let seen = if maxsize > 0 {
            c.get_seq.load(Ordering::SeqCst)
        } else {
            0
        };
        let held = lock(&c.put_lock, deadline).ok_or(CoreError::Timeout)?;
        if held.owner_died {
            recover_tail(c);
        }
        let sel = (c.tail_sel.load(Ordering::Acquire) & 1) as usize;
        let items = c.tail[sel].items.load(Ordering::Acquire);
        if maxsize > 0 && items.saturating_sub(c.items_got.load(Ordering::Acquire)) >= maxsize {
            drop(held);
            if deadline.is_some_and(|d| d.has_passed()) {
                return Err(CoreError::Timeout);
            }
            c.put_waiters.fetch_add(1, Ordering::SeqCst);
            // Dekker with the consumer's bump-then-check: one of the two sees the other.
            fence(Ordering::SeqCst);
            let timed_out = if c.get_seq.load(Ordering::SeqCst) == seen {
                futex::wait(&c.get_seq, seen, nap(deadline)) == futex::Wait::TimedOut
            } else {
                false
            };
            c.put_waiters.fetch_sub(1, Ordering::SeqCst);
            if timed_out && cfg!(ipc_loom) {
                // Loom models a timed wait as "may time out" without a clock.
                return Err(CoreError::Timeout);
            }
            continue;
        }
        let unit = c.tail[sel].unit.load(Ordering::Acquire);
        let off = c.tail[sel].off.load(Ordering::Acquire) as usize;
        let (end_unit, end_off) = write_record(m, unit, off, bytes)?;
        let other = 1 - sel;
        c.tail[other].unit.store(end_unit, Ordering::Relaxed);
        c.tail[other].off.store(end_off as u64, Ordering::Relaxed);
        // Wrapping: the counters live in shared memory, where a corrupt peer may have left
        // anything (an honest queue never gets near 2^64 records).
        let next = items.wrapping_add(1);
        c.tail[other].items.store(next, Ordering::Relaxed);
        hook(CrashPoint::PutBeforeCommit);
        // The commit: consumers may take the record from here on.
        c.items_put.store(next, Ordering::Release);
        hook(CrashPoint::PutBeforeFlip);
        c.tail_sel.store(other as u64, Ordering::Release);
        drop(held);
        c.put_seq.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if c.get_waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&c.put_seq);
        }
        return Ok(());
    }
}

/// Copies the record at (`unit`, `off`) into `out` (resized to fit); returns the end position
/// and pushes the chunks left behind onto `passed`.
fn read_record<M: Mem + ?Sized>(
    m: &M,
    mut unit: u64,
    mut off: usize,
    out: &mut Vec<u8>,
    passed: &mut Vec<u64>,
) -> Result<(u64, usize)> {
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
    let len = len as usize;
    off += LEN_BYTES;
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

/// Takes the first record into `out[..n]` and returns `n`, waiting until `deadline` while the
/// queue is empty. `out` keeps its allocation between calls.
// The library calls `get_with`; the loom model calls this.
#[allow(dead_code)]
pub(crate) fn get<M: Mem + ?Sized>(
    m: &M,
    out: &mut Vec<u8>,
    deadline: Option<Deadline>,
    keep_free: u64,
) -> Result<usize> {
    get_with(m, out, deadline, keep_free, |_| {})
}

/// [`get`], calling `hook` at each [`CrashPoint`] it passes.
pub(crate) fn get_with<M: Mem + ?Sized>(
    m: &M,
    out: &mut Vec<u8>,
    deadline: Option<Deadline>,
    keep_free: u64,
    hook: impl Fn(CrashPoint),
) -> Result<usize> {
    let c = m.ctrl();
    let hint = m.put_hint();
    let mut passed = Vec::new();
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
            let (end_unit, end_off) = read_record(m, unit, off, out, &mut passed)?;
            let n = out.len();
            let other = 1 - sel;
            c.head[other].unit.store(end_unit, Ordering::Relaxed);
            c.head[other].off.store(end_off as u64, Ordering::Relaxed);
            let next = items.wrapping_add(1);
            c.head[other].items.store(next, Ordering::Relaxed);
            hook(CrashPoint::GetBeforeFlip);
            // The commit: the record is taken.
            c.head_sel.store(other as u64, Ordering::Release);
            c.items_got.store(next, Ordering::Release);
            hook(CrashPoint::GetBeforeFree);
            drop(held);
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
            c.get_seq.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if c.put_waiters.load(Ordering::SeqCst) > 0 {
                futex::wake_all(&c.get_seq);
            }
            return Ok(n);
        }
        drop(held);
        if deadline.is_some_and(|d| d.has_passed()) {
            return Err(CoreError::Timeout);
        }
        // Read the wake-up word, then look again: a put committed after this look bumps the
        // word after `seen`, so the sleep below cannot miss it.
        let seen = c.put_seq.load(Ordering::SeqCst);
        if c.items_put.load(Ordering::SeqCst) > items {
            continue;
        }
        // A producer is often about to commit: look a few times before sleeping.
        let mut spins = 0;
        while spins < SPINS && c.put_seq.load(Ordering::Acquire) == seen {
            ipc_sync::primitive::spin_loop();
            spins += 1;
        }
        if c.put_seq.load(Ordering::Acquire) != seen {
            continue;
        }
        c.get_waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let timed_out = if c.put_seq.load(Ordering::SeqCst) == seen {
            futex::wait(&c.put_seq, seen, nap(deadline)) == futex::Wait::TimedOut
        } else {
            false
        };
        c.get_waiters.fetch_sub(1, Ordering::SeqCst);
        if timed_out && cfg!(ipc_loom) {
            return Err(CoreError::Timeout);
        }
    }
}
