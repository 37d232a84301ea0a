//! The shared-memory backend: variable-length records in a chain of chunks inside one sparse
//! memfd segment owned by the queue.
//!
//! # Storage
//!
//! A queue reserves a large *sparse* memfd ([`DEFAULT_RESERVE`], 16 GiB of address space by
//! default) and maps it in every process that holds a handle. Nothing is committed until it is
//! written: unit 0 (1 MiB) holds the control block, and the other units are *chunks* handed out
//! on demand by a small allocator (a free list, then a bump pointer). A chunk starts with a
//! `next` link; records are appended to the tail chunk and, when it is full, continue in a newly
//! linked one, so a record may span any number of chunks (a 16 MiB message takes 17). Consumed
//! chunks go back on the free list; beyond [`KEEP_FREE`] free chunks, their pages are returned
//! to the system (`fallocate(PUNCH_HOLE)`). So the queue grows by chaining chunks that belong to
//! the queue (not to the producer that wrote them: they live as long as any handle does), and
//! an unbounded `put` never waits for a consumer.
//!
//! A record is an 8-byte little-endian length followed by the payload, padded to 8 bytes.
//!
//! # Concurrency and crashes
//!
//! Producers serialise on `put_lock`, consumers on `get_lock`, the allocator on `alloc_lock`
//! (robust ipc-sync locks: a holder's death hands the lock to the next taker with `owner_died`).
//! Each side keeps its position in two slots plus a selector, and commits a move by first
//! writing the unused slot, then flipping the selector (for the producer: bumping `items_put`
//! first, which is what consumers read). A process killed at any point leaves either the old or
//! the new state, never a mix:
//!
//! - a producer killed before its commit leaves a partial record beyond the tail, which the next
//!   producer overwrites (chunks it had linked are reused); killed between the commit and the
//!   flip, the next producer sees `items_put` one ahead of the selected slot and flips;
//! - a consumer killed before its flip leaves the record in place for the next consumer (nothing
//!   is lost); killed after, the record was taken.
//!
//! The worst a crash does is leak the chunks the dead process was about to link or free.
//!
//! Waiting: consumers sleep on the futex word `put_seq` (bumped by every put) while the queue is
//! empty, producers of a bounded queue on `get_seq` (bumped by every get); a side wakes the other
//! only when it has announced waiters.
//!
//! Every index and length read from the shared memory is checked before use: another process
//! can corrupt the queue's contents, but not this process's memory safety.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ipc_shm::Segment;
use ipc_sync::futex::{self, Deadline};
use ipc_sync::raw::RawLock;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{lock_raw, RecvBuf};
use crate::err::{Error, Result};

/// Bytes of address space a queue reserves by default (committed only as it is used).
pub const DEFAULT_RESERVE: u64 = 16 << 30;
/// Size of one chunk (and of the control unit).
pub(crate) const UNIT: usize = 1 << 20;
/// Bytes at the start of a chunk before its data (the `next` link, padded).
const CHUNK_HEADER: usize = 64;
/// Data bytes per chunk.
const DATA: usize = UNIT - CHUNK_HEADER;
/// Free chunks kept with their pages once the queue drains; the others give their pages back.
pub(crate) const KEEP_FREE: u64 = 32;
const MAGIC: u64 = u64::from_le_bytes(*b"mpqring1");
const LEN_BYTES: usize = 8;
/// Checks of the queue a consumer makes before sleeping on it.
const SPINS: u32 = 200;

#[repr(C)]
struct Pos {
    unit: AtomicU64,
    off: AtomicU64,
    items: AtomicU64,
}

/// Padding that keeps fields written by different sides on different cache lines (two lines,
/// for the adjacent-line prefetcher). Never read or written.
type Pad = [u64; 16];

/// The control block at offset 0 of the segment. Fields are grouped by who writes them, each
/// group apart from the others, so producers and consumers do not bounce one cache line.
#[repr(C)]
struct Ctrl {
    // Set at creation, read-only afterwards.
    magic: AtomicU64,
    units: AtomicU64,
    maxsize: AtomicU64,
    max_msg: AtomicU64,
    _p0: Pad,
    // Producers, under `put_lock`.
    put_lock: RawLock,
    tail_sel: AtomicU64,
    tail: [Pos; 2],
    _p1: Pad,
    // Consumers, under `get_lock`.
    get_lock: RawLock,
    head_sel: AtomicU64,
    head: [Pos; 2],
    _p2: Pad,
    /// Records committed by producers (the commit point of a put).
    items_put: AtomicU64,
    put_seq: AtomicU32,
    put_waiters: AtomicU32,
    _p3: Pad,
    /// Records taken by consumers (mirrors the selected head slot; for `len`).
    items_got: AtomicU64,
    get_seq: AtomicU32,
    get_waiters: AtomicU32,
    _p4: Pad,
    // The chunk allocator, under `alloc_lock`.
    alloc_lock: RawLock,
    /// Head of the free chunk list (unit index + 1; 0 = empty). The list is LIFO, so the
    /// recently used chunks (with their pages still committed) are at its head.
    free_head: AtomicU64,
    /// How many chunks at the head of the free list still have their pages.
    hot_free: AtomicU64,
    /// The next never-used unit.
    next_fresh: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Ctrl>() <= UNIT);

/// One shm-ring queue handle.
#[derive(Clone)]
pub(crate) struct ShmRing {
    seg: Segment,
    units: u64,
}

fn corrupted(what: &str) -> Error {
    Error::Shm(format!("queue storage is corrupted ({what})"))
}

impl ShmRing {
    pub(crate) fn new(maxsize: usize, max_msg: u64, reserve: u64) -> Result<ShmRing> {
        let units = reserve / UNIT as u64;
        if units < 2 {
            return Err(Error::InvalidArgument(format!(
                "a shared-memory queue needs at least {} bytes of reserve",
                2 * UNIT
            )));
        }
        let len = usize::try_from(units * UNIT as u64)
            .map_err(|_| Error::InvalidArgument("reserve too large".into()))?;
        let seg = Segment::new(len).map_err(|e| Error::Shm(e.to_string()))?;
        let ring = ShmRing { seg, units };
        let c = ring.ctrl();
        c.units.store(units, Ordering::Relaxed);
        c.maxsize.store(maxsize as u64, Ordering::Relaxed);
        c.max_msg.store(max_msg, Ordering::Relaxed);
        for p in c.tail.iter().chain(c.head.iter()) {
            p.unit.store(1, Ordering::Relaxed);
        }
        c.next_fresh.store(2, Ordering::Relaxed);
        c.magic.store(MAGIC, Ordering::Release);
        Ok(ring)
    }

    fn ctrl(&self) -> &Ctrl {
        // SAFETY: the segment is at least 2 units long (checked at construction and on
        // receipt), page-aligned, and unit 0 holds a `Ctrl`: a repr(C) struct of atomics and
        // raw locks, valid for every bit pattern including the zeroed fresh segment, and only
        // ever accessed through shared references (every mutation is atomic). The reference
        // lives no longer than `self`, which keeps the mapping alive.
        unsafe { &*(self.seg.as_ptr() as *const Ctrl) }
    }

    /// The address of byte `off` of chunk `unit`'s data area, after checking both.
    fn data_ptr(&self, unit: u64, off: usize) -> Result<*mut u8> {
        if unit == 0 || unit >= self.units || off > DATA {
            return Err(corrupted("position out of range"));
        }
        let at = unit as usize * UNIT + CHUNK_HEADER + off;
        // SAFETY: `unit < units` and `off <= DATA`, so `at <= units * UNIT`, the mapping's
        // length: the result is in bounds or one past the end.
        Ok(unsafe { self.seg.as_ptr().add(at) })
    }

    /// The `next` link of chunk `unit` (unit + 1 of the next chunk, 0 for none).
    fn next_link(&self, unit: u64) -> Result<&AtomicU64> {
        if unit == 0 || unit >= self.units {
            return Err(corrupted("chunk index out of range"));
        }
        // SAFETY: `unit` is in range, so its first 8 bytes are inside the mapping and 8-aligned
        // (units are 1 MiB apart from a page-aligned base); an AtomicU64 is valid for any bits
        // and is only accessed atomically.
        Ok(unsafe { &*(self.seg.as_ptr().add(unit as usize * UNIT) as *const AtomicU64) })
    }

    pub(crate) fn get_lock(&self) -> &RawLock {
        &self.ctrl().get_lock
    }

    pub(crate) fn put_lock(&self) -> &RawLock {
        &self.ctrl().put_lock
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.ctrl().maxsize.load(Ordering::Relaxed) as usize
    }

    pub(crate) fn max_message_size(&self) -> u64 {
        self.ctrl().max_msg.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        let c = self.ctrl();
        let put = c.items_put.load(Ordering::Acquire);
        let got = c.items_got.load(Ordering::Acquire);
        put.saturating_sub(got) as usize
    }

    // --- allocator ----------------------------------------------------------------------

    fn alloc_chunk(&self) -> Result<u64> {
        let c = self.ctrl();
        let _held = lock_raw(&c.alloc_lock, None).ok_or_else(|| corrupted("allocator lock"))?;
        // A holder that died here changed at most one word at a time: the list stays a list
        // (a chunk may leak), so there is nothing to repair.
        let head = c.free_head.load(Ordering::Acquire);
        let unit = if head != 0 {
            let unit = head - 1;
            let next = self.next_link(unit)?.load(Ordering::Acquire);
            c.free_head.store(next, Ordering::Release);
            let _ = c
                .hot_free
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            unit
        } else {
            let unit = c.next_fresh.load(Ordering::Acquire);
            if unit >= self.units {
                return Err(Error::Shm(format!(
                    "queue storage exhausted: {} MiB reserved are all holding unread messages",
                    self.units
                )));
            }
            c.next_fresh.store(unit + 1, Ordering::Release);
            unit
        };
        self.next_link(unit)?.store(0, Ordering::Release);
        Ok(unit)
    }

    fn free_chunk(&self, unit: u64) -> Result<()> {
        let c = self.ctrl();
        let _held = lock_raw(&c.alloc_lock, None).ok_or_else(|| corrupted("allocator lock"))?;
        let link = self.next_link(unit)?;
        link.store(c.free_head.load(Ordering::Acquire), Ordering::Release);
        c.free_head.store(unit + 1, Ordering::Release);
        c.hot_free.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Gives back the pages of the free chunks beyond the first [`KEEP_FREE`]: called when the
    /// queue has drained, so a burst's memory is returned without a system call per chunk
    /// while items are streaming (returning pages then costs a page fault per page on reuse).
    fn trim(&self) -> Result<()> {
        let c = self.ctrl();
        if c.hot_free.load(Ordering::Relaxed) <= KEEP_FREE {
            return Ok(());
        }
        let _held = lock_raw(&c.alloc_lock, None).ok_or_else(|| corrupted("allocator lock"))?;
        let hot = c.hot_free.load(Ordering::Acquire);
        let mut link = c.free_head.load(Ordering::Acquire);
        let mut i = 0u64;
        while link != 0 && i < hot {
            let unit = link - 1;
            link = self.next_link(unit)?.load(Ordering::Acquire);
            if i >= KEEP_FREE {
                // The chunk's first bytes (its link) read as zero afterwards, so keep the link
                // and rewrite it after punching.
                let _ = rustix::fs::fallocate(
                    self.seg.as_fd(),
                    rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                    unit * UNIT as u64,
                    UNIT as u64,
                );
                self.next_link(unit)?.store(link, Ordering::Release);
            }
            i += 1;
        }
        c.hot_free.store(KEEP_FREE.min(hot), Ordering::Release);
        Ok(())
    }

    /// The chunk after `unit` for a producer: the one already linked (left by a producer that
    /// died before committing) or a new one.
    fn next_for_write(&self, unit: u64) -> Result<u64> {
        let link = self.next_link(unit)?;
        let n = link.load(Ordering::Acquire);
        if n != 0 {
            return Ok(n - 1);
        }
        let fresh = self.alloc_chunk()?;
        link.store(fresh + 1, Ordering::Release);
        Ok(fresh)
    }

    fn next_for_read(&self, unit: u64) -> Result<u64> {
        match self.next_link(unit)?.load(Ordering::Acquire) {
            0 => Err(corrupted("committed record runs past the last chunk")),
            n => Ok(n - 1),
        }
    }

    // --- producer -----------------------------------------------------------------------

    /// Repairs the tail after a producer died holding `put_lock`.
    fn recover_tail(&self) {
        let c = self.ctrl();
        let sel = (c.tail_sel.load(Ordering::Acquire) & 1) as usize;
        let committed = c.items_put.load(Ordering::Acquire);
        let other = 1 - sel;
        if c.tail[sel].items.load(Ordering::Acquire) + 1 == committed
            && c.tail[other].items.load(Ordering::Acquire) == committed
        {
            // It committed but did not flip: the other slot was written before the commit.
            c.tail_sel.store(other as u64, Ordering::Release);
        }
    }

    /// Copies `bytes` as one record starting at (`unit`, `off`); returns the end position.
    fn write_record(&self, mut unit: u64, mut off: usize, bytes: &[u8]) -> Result<(u64, usize)> {
        if off == DATA {
            unit = self.next_for_write(unit)?;
            off = 0;
        }
        let len = (bytes.len() as u64).to_le_bytes();
        // SAFETY: `data_ptr` checked the position; `off` is 8-aligned and DATA a multiple of 8,
        // so the 8 length bytes fit in this chunk. The region beyond the committed tail belongs
        // to the producer holding `put_lock`: no one else writes it, and consumers read only
        // committed records.
        unsafe {
            std::ptr::copy_nonoverlapping(len.as_ptr(), self.data_ptr(unit, off)?, LEN_BYTES)
        };
        off += LEN_BYTES;
        let mut done = 0;
        while done < bytes.len() {
            if off == DATA {
                unit = self.next_for_write(unit)?;
                off = 0;
            }
            let n = (bytes.len() - done).min(DATA - off);
            let dst = self.data_ptr(unit, off)?;
            // SAFETY: `n <= DATA - off`, so the copy stays inside this chunk's data area; the
            // area is the producer's own (see above); source and destination do not overlap
            // (the source is this process's private memory).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr().add(done), dst, n) };
            done += n;
            off += n;
        }
        off = (off + 7) & !7;
        Ok((unit, off.min(DATA)))
    }

    pub(crate) fn put(&self, bytes: &[u8], deadline: Option<Deadline>) -> Result<()> {
        let c = self.ctrl();
        let max = c.max_msg.load(Ordering::Relaxed);
        if bytes.len() as u64 > max {
            return Err(Error::TooLarge {
                len: bytes.len() as u64,
                max,
            });
        }
        let maxsize = c.maxsize.load(Ordering::Relaxed);
        loop {
            let seen = c.get_seq.load(Ordering::SeqCst);
            let held = lock_raw(&c.put_lock, deadline).ok_or(Error::Timeout)?;
            if held.owner_died {
                self.recover_tail();
            }
            let sel = (c.tail_sel.load(Ordering::Acquire) & 1) as usize;
            let items = c.tail[sel].items.load(Ordering::Acquire);
            if maxsize > 0 && items.saturating_sub(c.items_got.load(Ordering::Acquire)) >= maxsize {
                drop(held);
                if deadline.is_some_and(|d| d.has_passed()) {
                    return Err(Error::Timeout);
                }
                c.put_waiters.fetch_add(1, Ordering::SeqCst);
                if c.get_seq.load(Ordering::SeqCst) == seen {
                    futex::wait(&c.get_seq, seen, deadline);
                }
                c.put_waiters.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let unit = c.tail[sel].unit.load(Ordering::Acquire);
            let off = c.tail[sel].off.load(Ordering::Acquire) as usize;
            let (end_unit, end_off) = self.write_record(unit, off, bytes)?;
            let other = 1 - sel;
            c.tail[other].unit.store(end_unit, Ordering::Relaxed);
            c.tail[other].off.store(end_off as u64, Ordering::Relaxed);
            c.tail[other].items.store(items + 1, Ordering::Relaxed);
            // The commit: consumers may take the record from here on.
            c.items_put.store(items + 1, Ordering::Release);
            c.tail_sel.store(other as u64, Ordering::Release);
            drop(held);
            c.put_seq.fetch_add(1, Ordering::SeqCst);
            if c.get_waiters.load(Ordering::SeqCst) > 0 {
                futex::wake_all(&c.put_seq);
            }
            return Ok(());
        }
    }

    // --- consumer -----------------------------------------------------------------------

    /// Copies the record at (`unit`, `off`) into `buf`; returns the end position and the chunks
    /// left behind (fully consumed).
    fn read_record(
        &self,
        mut unit: u64,
        mut off: usize,
        buf: &mut RecvBuf,
        passed: &mut Vec<u64>,
    ) -> Result<(u64, usize)> {
        if off == DATA {
            passed.push(unit);
            unit = self.next_for_read(unit)?;
            off = 0;
        }
        if off % 8 != 0 {
            return Err(corrupted("misaligned record"));
        }
        let mut len = [0u8; LEN_BYTES];
        // SAFETY: position checked by `data_ptr`, 8 bytes fit (see `write_record`); the record
        // is committed, so its producer no longer writes it, and we hold `get_lock`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data_ptr(unit, off)?, len.as_mut_ptr(), LEN_BYTES)
        };
        let len = u64::from_le_bytes(len);
        if len > self.max_message_size() {
            return Err(corrupted("record longer than the maximum message size"));
        }
        let len = len as usize;
        off += LEN_BYTES;
        buf.used = 0;
        buf.reserve(len);
        let mut done = 0;
        while done < len {
            if off == DATA {
                passed.push(unit);
                unit = self.next_for_read(unit)?;
                off = 0;
            }
            let n = (len - done).min(DATA - off);
            let src = self.data_ptr(unit, off)?;
            // SAFETY: `n <= DATA - off` keeps the read inside this chunk; `buf.data` has room
            // for `len` bytes (reserved above) and is private to this process.
            unsafe { std::ptr::copy_nonoverlapping(src, buf.data.as_mut_ptr().add(done), n) };
            done += n;
            off += n;
        }
        buf.used = len;
        off = (off + 7) & !7;
        Ok((unit, off.min(DATA)))
    }

    pub(crate) fn get(&self, buf: &mut RecvBuf, deadline: Option<Deadline>) -> Result<()> {
        let c = self.ctrl();
        let mut passed = Vec::new();
        loop {
            let seen = c.put_seq.load(Ordering::SeqCst);
            let held = lock_raw(&c.get_lock, deadline).ok_or(Error::Timeout)?;
            let sel = (c.head_sel.load(Ordering::Acquire) & 1) as usize;
            let items = c.head[sel].items.load(Ordering::Acquire);
            if held.owner_died {
                // The selector is the commit; only the mirror may lag.
                c.items_got.store(items, Ordering::Release);
            }
            if c.items_put.load(Ordering::Acquire) > items {
                let unit = c.head[sel].unit.load(Ordering::Acquire);
                let off = c.head[sel].off.load(Ordering::Acquire) as usize;
                passed.clear();
                let (end_unit, end_off) = self.read_record(unit, off, buf, &mut passed)?;
                let other = 1 - sel;
                c.head[other].unit.store(end_unit, Ordering::Relaxed);
                c.head[other].off.store(end_off as u64, Ordering::Relaxed);
                c.head[other].items.store(items + 1, Ordering::Relaxed);
                // The commit: the record is taken.
                c.head_sel.store(other as u64, Ordering::Release);
                c.items_got.store(items + 1, Ordering::Release);
                drop(held);
                for u in passed.drain(..) {
                    self.free_chunk(u)?;
                }
                if c.items_put.load(Ordering::Acquire) == items + 1 {
                    self.trim()?;
                }
                c.get_seq.fetch_add(1, Ordering::SeqCst);
                if c.put_waiters.load(Ordering::SeqCst) > 0 {
                    futex::wake_all(&c.get_seq);
                }
                return Ok(());
            }
            drop(held);
            if deadline.is_some_and(|d| d.has_passed()) {
                return Err(Error::Timeout);
            }
            // A producer is often about to commit: look a few times before sleeping.
            let mut spins = 0;
            while spins < SPINS && c.put_seq.load(Ordering::Acquire) == seen {
                std::hint::spin_loop();
                spins += 1;
            }
            if c.put_seq.load(Ordering::Acquire) != seen {
                continue;
            }
            c.get_waiters.fetch_add(1, Ordering::SeqCst);
            if c.put_seq.load(Ordering::SeqCst) == seen {
                futex::wait(&c.put_seq, seen, deadline);
            }
            c.get_waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Serialize for ShmRing {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShmRing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let seg = Segment::deserialize(d)?;
        if seg.len() < 2 * UNIT {
            return Err(D::Error::custom("queue segment too small"));
        }
        let mapped_units = (seg.len() / UNIT) as u64;
        let ring = ShmRing {
            seg,
            units: mapped_units,
        };
        let c = ring.ctrl();
        if c.magic.load(Ordering::Acquire) != MAGIC {
            return Err(D::Error::custom(
                "received segment is not a multiproc queue",
            ));
        }
        // Trust the smaller of what the control block says and what is actually mapped.
        let units = c.units.load(Ordering::Relaxed).min(mapped_units);
        Ok(ShmRing {
            seg: ring.seg,
            units,
        })
    }
}
