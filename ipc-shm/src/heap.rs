//! The shared heap: small objects in shared arenas, with cross-process block lifetimes.
//!
//! Every [`ShmBox`](crate::ShmBox), [`ShmSlice`](crate::ShmSlice), [`RawValue`](crate::RawValue)
//! and [`RawArray`](crate::RawArray) (and, one layer up, every lock and semaphore) is a *block*
//! of this heap. The design:
//!
//! - **Arenas.** Small blocks live in *arenas*: 1 MiB memfd [`Segment`]s, so 10,000 values
//!   share a handful of descriptors instead of opening 10,000. An arena starts with a header
//!   (magic, a random 128-bit id, its length, a bump pointer, one free-list head per size
//!   class, and a lock). An allocation larger than 256 KiB gets an arena of its own
//!   (*dedicated*), holding just that block.
//! - **Blocks.** A block is a power-of-two *size class* (32 bytes to 256 KiB), placed at an
//!   offset aligned to its size, so alignment up to 4096 comes for free. A 16-byte block
//!   header sits right before the payload: the shared reference count, a live/free state, the
//!   distance back to the block start, and the class. Fresh blocks come from the bump pointer;
//!   the gap that aligning the bump pointer skips is cut into smaller free blocks, so nothing
//!   is wasted. An allocation takes, in order: a free block of its class, a larger free block
//!   split in halves (buddy style), fresh space. A freed block goes onto its class's free list (the link is kept in the block
//!   itself, as an offset) and is reused by the next allocation of that class, from any
//!   process. Payloads are zero-filled on every allocation.
//! - **The arena lock.** Free lists and the bump pointer are changed under a small spin lock
//!   in the arena header whose word is the holder's thread id. A waiter that finds the holder
//!   dead (`kill(tid, 0)` fails with `ESRCH`, or the thread is a zombie not yet reaped) takes
//!   the lock over, so a process killed inside the (short, allocation-free) critical section
//!   does not wedge the heap for everyone, not even for its parent before it reaps the child.
//!   The critical sections are ordered so that such a death can only leak blocks. Thread ids
//!   are only meaningful within one PID namespace: processes sharing a heap must share it.
//! - **Block lifetime across processes.** The block header's count is the number of
//!   *processes* holding a handle to the block plus the number of serialized handles in
//!   flight. Inside a process, handles to one block share one `Arc`: the last one dropped
//!   decrements the shared count, and the process that brings it to zero frees the block.
//!   Serializing a handle increments the count (the message holds a reference); deserializing
//!   adopts it — or, when the receiving process already holds that block, gives it back. A
//!   forked child holds a copy of every handle without having counted it: a process-local
//!   registry of live blocks, locked around `fork` by `pthread_atfork` handlers, lets the
//!   child add one count per live block before anything else runs. A fork that is only a
//!   step towards `exec` (spawning a process) should run inside [`spawning`](crate::spawning),
//!   so that the child, which drops its copies by exec'ing, takes no counts.
//! - **Arena lifetime.** Each process maps an arena once and shares it between its blocks
//!   through an `Arc`; the heap's table of arenas holds them weakly. The mapping and the memfd
//!   are released when the last block handle of that arena in this process is dropped, so an
//!   arena disappears when its last handle is dropped in every process. A received handle
//!   whose arena (known by its random id) is already mapped reuses that mapping, so equal
//!   handles compare equal by address in one process.
//!
//! Limits, stated plainly: a process that dies (or calls `exit`) while holding handles never
//! gives its counts back, and a serialized handle that is never deserialized keeps its count,
//! so such blocks are not reused while their arena lives (the memory itself is returned to the
//! system with the arena). Deserializing one message twice gives back a count it never took:
//! decode each message once. A process killed inside the arena lock's critical section may
//! leave a free list shorter than it should be (blocks leak; nothing is handed out twice).

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::segment::Segment;
use crate::spin::SpinLock;
use crate::sys;
use crate::transfer::{self, TransferError};

/// Size of a shared arena.
pub(crate) const ARENA_SIZE: usize = 1 << 20;
/// The largest alignment the heap honours.
pub(crate) const MAX_ALIGN: usize = 4096;
/// Bytes reserved for the arena header at offset 0.
const ARENA_HEADER: usize = 256;
/// Bytes of the block header right before a payload.
const BLOCK_HEADER: usize = 16;
/// The smallest size class, as a power of two (32 bytes).
const MIN_CLASS: u32 = 5;
/// The largest class kept in shared arenas (256 KiB); larger blocks get a dedicated arena.
const MAX_SMALL_CLASS: u32 = 18;
const NUM_CLASSES: usize = 32;
const ARENA_MAGIC: u64 = u64::from_le_bytes(*b"mpheap01");
const BLOCK_LIVE: u32 = 0x4556_494c;
const BLOCK_FREE: u32 = 0x4545_5246;
/// The class recorded for the only block of a dedicated arena.
const DEDICATED: u32 = u32::MAX;
/// How long a thread waits for an arena lock that a *live* thread holds before giving up on
/// the arena: an allocation moves on to another arena (and skips this one from then on), a
/// free leaks its block. Legitimate holders keep the lock for a few instructions; a holder
/// that keeps it for seconds is stopped, or hostile (a peer that sent a forged arena whose
/// lock word names a live thread), and must not hang this process.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The arena header, at offset 0 of every arena. Only atomics: every process reads and writes
/// it concurrently through shared references.
#[repr(C)]
struct ArenaHeader {
    magic: AtomicU64,
    id: [AtomicU64; 2],
    len: AtomicU64,
    /// 1 for an arena that holds a single large block.
    dedicated: AtomicU32,
    /// Thread id of the holder of the free-list lock, 0 when free.
    lock: AtomicU32,
    /// Next never-allocated offset (guarded by `lock`).
    bump: AtomicU64,
    /// Head of each size class's free list: the offset of a free block's start, 0 for none
    /// (guarded by `lock`). Each free block stores the next offset in its first 4 bytes.
    free: [AtomicU32; NUM_CLASSES],
}

const _: () = assert!(core::mem::size_of::<ArenaHeader>() <= ARENA_HEADER);

/// The header right before every payload.
#[repr(C)]
struct BlockHeader {
    /// Processes holding the block plus serialized handles in flight.
    refs: AtomicU32,
    /// `BLOCK_LIVE` or `BLOCK_FREE`.
    state: AtomicU32,
    /// Distance from the block start to the payload.
    pad: AtomicU32,
    /// Size class (log2 of the block size), or `DEDICATED`.
    class: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<BlockHeader>() == BLOCK_HEADER);

/// One arena mapped in this process.
pub(crate) struct Arena {
    seg: Segment,
    id: u128,
    dedicated: bool,
    /// Set (in this process only) once waiting for the arena's lock ran out of patience:
    /// allocations skip the arena from then on.
    wedged: AtomicBool,
}

/// Holds an arena's free-list lock; releases it on drop.
struct ArenaLock<'a>(&'a AtomicU32);

impl Drop for ArenaLock<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl Arena {
    fn header(&self) -> &ArenaHeader {
        // SAFETY: the mapping is at least one page (>= ARENA_HEADER bytes), page-aligned, lives
        // as long as `self`, and the header holds only atomics, for which any bytes are valid
        // and shared access from many processes is sound.
        unsafe { &*(self.seg.as_ptr() as *const ArenaHeader) }
    }

    fn len(&self) -> usize {
        self.seg.len()
    }

    /// The atomic `u32` at `offset` (4-aligned, inside the arena).
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= self.len());
        // SAFETY: in bounds and aligned (asserted); the mapping lives as long as `self`;
        // shared memory is only ever accessed through atomics here.
        unsafe { &*(self.seg.as_ptr().add(offset) as *const AtomicU32) }
    }

    /// The block header of the payload at `payload` (16-aligned, `>= ARENA_HEADER + 16`).
    fn block_header(&self, payload: usize) -> &BlockHeader {
        assert!(
            payload % 16 == 0 && payload >= ARENA_HEADER + BLOCK_HEADER && payload <= self.len()
        );
        // SAFETY: in bounds and 16-aligned (asserted); only atomics; lives as long as `self`.
        unsafe { &*(self.seg.as_ptr().add(payload - BLOCK_HEADER) as *const BlockHeader) }
    }

    fn create(len: usize, dedicated: bool) -> Result<Arena, Error> {
        let seg = Segment::new(len)?;
        let mut idb = [0u8; 16];
        sys::random_bytes(&mut idb).map_err(|e| Error::io("getrandom", e))?;
        let id = u128::from_le_bytes(idb);
        let arena = Arena {
            seg,
            id,
            dedicated,
            wedged: AtomicBool::new(false),
        };
        let h = arena.header();
        h.id[0].store(id as u64, Ordering::Relaxed);
        h.id[1].store((id >> 64) as u64, Ordering::Relaxed);
        h.len.store(arena.len() as u64, Ordering::Relaxed);
        h.dedicated.store(dedicated as u32, Ordering::Relaxed);
        h.bump.store(ARENA_HEADER as u64, Ordering::Relaxed);
        h.magic.store(ARENA_MAGIC, Ordering::Release);
        Ok(arena)
    }

    /// Checks a received arena's header against what the message announced.
    fn adopt(seg: Segment, id: u128, dedicated: bool) -> Result<Arena, TransferError> {
        let arena = Arena {
            seg,
            id,
            dedicated,
            wedged: AtomicBool::new(false),
        };
        let h = arena.header();
        let wrong = |detail: &str| TransferError::WrongKind {
            what: "shared heap block",
            detail: detail.to_string(),
        };
        if h.magic.load(Ordering::Acquire) != ARENA_MAGIC {
            return Err(wrong("the memory is not a shared heap arena"));
        }
        let got = h.id[0].load(Ordering::Relaxed) as u128
            | (h.id[1].load(Ordering::Relaxed) as u128) << 64;
        if got != id {
            return Err(wrong("the arena id does not match the message"));
        }
        if h.len.load(Ordering::Relaxed) != arena.len() as u64
            || (h.dedicated.load(Ordering::Relaxed) != 0) != dedicated
        {
            return Err(wrong("the arena header does not match the message"));
        }
        Ok(arena)
    }

    /// Takes the arena's free-list lock, overtaking a dead holder; `None` (and the arena
    /// marked wedged) when a live holder keeps it longer than [`LOCK_PATIENCE`].
    fn lock(&self) -> Option<ArenaLock<'_>> {
        let word = &self.header().lock;
        let me = sys::gettid();
        let mut spins: u32 = 0;
        let mut since: Option<std::time::Instant> = None;
        loop {
            match word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(ArenaLock(word)),
                Err(holder) => {
                    spins = spins.wrapping_add(1);
                    if holder != 0
                        && spins % 256 == 0
                        && !sys::thread_alive(holder)
                        && word
                            .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                    {
                        return Some(ArenaLock(word));
                    }
                    if spins % 256 == 0 {
                        let start = *since.get_or_insert_with(std::time::Instant::now);
                        if start.elapsed() >= LOCK_PATIENCE {
                            self.wedged.store(true, Ordering::Relaxed);
                            return None;
                        }
                    }
                    if spins < 64 {
                        core::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
    }

    /// Pushes the block starting at `start` onto class `class`'s free list. Lock held.
    fn push_free(&self, _lock: &ArenaLock<'_>, start: usize, class: u32) {
        let head = &self.header().free[class as usize];
        self.u32_at(start)
            .store(head.load(Ordering::Relaxed), Ordering::Relaxed);
        head.store(start as u32, Ordering::Relaxed);
    }

    /// Allocates a block of class `class` and returns its start, or `None` when full.
    fn alloc_small(&self, class: u32) -> Option<usize> {
        let size = 1usize << class;
        let len = self.len();
        let lock = self.lock()?;
        let h = self.header();
        let head = h.free[class as usize].load(Ordering::Relaxed) as usize;
        if head != 0 {
            // A corrupted link (a peer wrote garbage) is dropped rather than followed.
            if head % size == 0 && head >= ARENA_HEADER && head + size <= len {
                let next = self.u32_at(head).load(Ordering::Relaxed);
                h.free[class as usize].store(next, Ordering::Relaxed);
                return Some(head);
            }
            h.free[class as usize].store(0, Ordering::Relaxed);
        }
        // Split a larger free block: keep its first `size` bytes, free the upper halves.
        for k in class + 1..=MAX_SMALL_CLASS {
            let head = h.free[k as usize].load(Ordering::Relaxed) as usize;
            if head == 0 {
                continue;
            }
            if head % (1 << k) != 0 || head < ARENA_HEADER || head + (1 << k) > len {
                h.free[k as usize].store(0, Ordering::Relaxed);
                continue;
            }
            let next = self.u32_at(head).load(Ordering::Relaxed);
            h.free[k as usize].store(next, Ordering::Relaxed);
            for j in class..k {
                self.push_free(&lock, head + (1 << j), j);
            }
            return Some(head);
        }
        let bump = h.bump.load(Ordering::Relaxed) as usize;
        // Every block is a multiple of the smallest class, so a legitimate bump pointer is
        // too; anything else was written by a peer: treat the arena as full.
        if bump < ARENA_HEADER || bump % (1 << MIN_CLASS) != 0 {
            return None;
        }
        let start = bump.checked_add(size - 1)? & !(size - 1);
        if start.checked_add(size)? > len {
            return None;
        }
        // Move the bump pointer first, then hand the skipped gap to the free lists: a process
        // that dies in between leaks (part of) the gap, whereas the other order would leave
        // the gap both on the free lists and below the bump pointer, to be cut (and handed
        // out) a second time.
        h.bump.store((start + size) as u64, Ordering::Relaxed);
        // Cut the skipped gap into aligned power-of-two free blocks (each smaller than `size`,
        // at least the smallest class, since `bump` and `start` are multiples of it).
        let mut b = bump;
        while b < start {
            let piece = b & b.wrapping_neg();
            self.push_free(&lock, b, piece.trailing_zeros());
            b += piece;
            #[cfg(test)]
            if fail::hit() {
                // Simulates a process killed here: the lock stays held, the rest undone.
                core::mem::forget(lock);
                return None;
            }
        }
        Some(start)
    }

    /// Marks the block at `payload` free and, in a shared arena, puts it on its free list.
    fn free_block(&self, payload: usize) {
        let bh = self.block_header(payload);
        bh.state.store(BLOCK_FREE, Ordering::Relaxed);
        if self.dedicated {
            return; // the memory goes back to the system with the arena
        }
        let class = bh.class.load(Ordering::Relaxed);
        let pad = bh.pad.load(Ordering::Relaxed) as usize;
        // The header is shared memory a peer may have overwritten since the block was checked:
        // read each field once and check the block it describes, as `check_block` does.
        let Some(start) = small_block_start(payload, class, pad, self.len()) else {
            return; // corrupted header: leak the block rather than corrupt the free list
        };
        // A lock held for good by a live thread (a stopped or hostile peer): leak the block.
        let Some(lock) = self.lock() else {
            return;
        };
        self.push_free(&lock, start, class);
    }

    /// Checks that `payload` names a live block with room for `need` bytes aligned to `align`.
    fn check_block(&self, payload: usize, need: usize, align: usize) -> Result<(), String> {
        let len = self.len();
        // The arena's base is only page-aligned: a larger alignment cannot be promised
        // whatever the offset (and the heap never hands such blocks out).
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(format!("alignment {align} is above the heap's {MAX_ALIGN}"));
        }
        if payload % 16 != 0
            || payload % align != 0
            || payload < ARENA_HEADER + BLOCK_HEADER
            || payload > len
        {
            return Err(format!("offset {payload} is not a block payload"));
        }
        let bh = self.block_header(payload);
        if bh.state.load(Ordering::Acquire) != BLOCK_LIVE {
            return Err("the block is not allocated".to_string());
        }
        let class = bh.class.load(Ordering::Relaxed);
        let pad = bh.pad.load(Ordering::Relaxed) as usize;
        let cap = if class == DEDICATED {
            len - payload
        } else {
            let start = small_block_start(payload, class, pad, len)
                .ok_or_else(|| "the block header is corrupted".to_string())?;
            start + (1usize << class) - payload
        };
        if cap < need {
            return Err(format!(
                "the block holds {cap} bytes, the message needs {need}"
            ));
        }
        Ok(())
    }
}

/// The start of the small block whose payload is at `payload`, if `class` and `pad` (read from
/// its header, so possibly written by a peer) describe a block that lies inside an arena of
/// `len` bytes, aligned to its size, with the payload inside it and the header after the arena
/// header.
fn small_block_start(payload: usize, class: u32, pad: usize, len: usize) -> Option<usize> {
    if !(MIN_CLASS..=MAX_SMALL_CLASS).contains(&class) || pad < BLOCK_HEADER {
        return None;
    }
    let size = 1usize << class;
    let start = payload.checked_sub(pad)?;
    if start < ARENA_HEADER || start % size != 0 || pad >= size || start + size > len {
        return None;
    }
    Some(start)
}

/// A block mapped in this process. One per block per process (shared through `Arc`); holds
/// one of the block's shared counts.
pub(crate) struct BlockInner {
    arena: Arc<Arena>,
    payload: usize,
}

// SAFETY: a BlockInner is an arena (an Arc of a Segment, itself Send + Sync) and an offset;
// the memory it designates is only accessed through atomics here.
unsafe impl Send for BlockInner {}
// SAFETY: as above.
unsafe impl Sync for BlockInner {}

impl BlockInner {
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        // SAFETY: `payload` is inside the arena's mapping (checked at allocation or receipt),
        // whose base is not null.
        unsafe { NonNull::new_unchecked(self.arena.seg.as_ptr().add(self.payload)) }
    }

    fn refs(&self) -> &AtomicU32 {
        &self.arena.block_header(self.payload).refs
    }

    fn key(&self) -> (u128, usize) {
        (self.arena.id, self.payload)
    }
}

impl Drop for BlockInner {
    fn drop(&mut self) {
        let me: *const BlockInner = self;
        {
            let mut heap = HEAP.lock();
            if let Some(e) = heap.blocks.get(&self.key()) {
                if core::ptr::eq(e.weak.as_ptr(), me) {
                    heap.blocks.remove(&self.key());
                }
            }
        }
        if self.refs().fetch_sub(1, Ordering::AcqRel) == 1 {
            self.arena.free_block(self.payload);
        }
    }
}

/// A live block in the process-local registry.
struct Entry {
    weak: Weak<BlockInner>,
    /// The block's shared count, for the fork handler (which must not upgrade or allocate).
    refs: *const AtomicU32,
}

/// This process's view of the heap.
struct HeapState {
    /// Every arena mapped here, by id (held weakly: blocks own them).
    arenas: BTreeMap<u128, Weak<Arena>>,
    /// The shared arena allocations try first.
    current: Option<u128>,
    /// Every block handle alive in this process, by (arena id, payload offset).
    blocks: BTreeMap<(u128, usize), Entry>,
}

// SAFETY: the raw pointers in `Entry` point into arenas kept mapped by the entries' live
// `BlockInner`s and are only dereferenced while those are alive (strong count > 0); all access
// to the state goes through the spin lock.
unsafe impl Send for HeapState {}

static HEAP: SpinLock<HeapState> = SpinLock::new(HeapState {
    arenas: BTreeMap::new(),
    current: None,
    blocks: BTreeMap::new(),
});

thread_local! {
    /// Set by a thread whose forks are followed by exec or `_exit` (see [`spawning`]): the
    /// fork handlers then leave the child's state alone.
    static FORKING_HELPER: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Runs `f`, in which every `fork` made by this thread is immediately followed by `exec` or
/// `_exit` (for example `std::process::Command::spawn`, which forks when `pre_exec` or other
/// options are set): the fork handlers of this crate then leave such children alone.
///
/// A forked child normally takes one shared count on every heap block its parent holds (it
/// holds copies of the handles); a child that execs right away drops its copies without
/// giving those counts back, so the blocks would never be reused while their arena lives.
/// Start-method code that forks to exec wraps the fork in this; nothing else needs it.
/// Scopes nest.
///
/// # Examples
///
/// ```
/// let status = ipc_shm::spawning(|| std::process::Command::new("true").status()).unwrap();
/// assert!(status.success());
/// ```
pub fn spawning<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = FORKING_HELPER.try_with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORKING_HELPER.with(|c| c.replace(true)));
    f()
}

/// Is this thread inside [`spawning`]? (Async-signal-safe: a thread-local read.)
pub(crate) fn forking_helper() -> bool {
    // The cell has no destructor, so it is always accessible; should it not be, count (a leak
    // at worst) rather than skip (which could give back counts never taken).
    FORKING_HELPER.try_with(|c| c.get()).unwrap_or(false)
}

static ATFORK: Once = Once::new();
static ATFORK_OK: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn atfork_prepare() {
    HEAP.raw_lock();
}

unsafe extern "C" fn atfork_parent() {
    // SAFETY: `atfork_prepare` took the lock on this thread.
    unsafe { HEAP.raw_unlock() };
}

unsafe extern "C" fn atfork_child() {
    if !forking_helper() {
        // SAFETY: `atfork_prepare` took the lock on this (now the only) thread, so we have
        // exclusive access to the state; iterating a BTreeMap does not allocate. Each `refs`
        // pointer is valid while its block's strong count is non-zero, and no other thread
        // exists to change that count.
        unsafe {
            let state = &*HEAP.data_ptr();
            for e in state.blocks.values() {
                if e.weak.strong_count() > 0 {
                    (*e.refs).fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    // SAFETY: `atfork_prepare` took the lock in the forking thread, which this thread is.
    unsafe { HEAP.raw_unlock() };
}

fn ensure_atfork() -> Result<(), Error> {
    ATFORK.call_once(|| {
        if sys::atfork(atfork_prepare, atfork_parent, atfork_child).is_ok() {
            ATFORK_OK.store(true, Ordering::Release);
        }
    });
    if ATFORK_OK.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(Error::io(
            "pthread_atfork",
            std::io::Error::other("could not register the fork handlers"),
        ))
    }
}

fn class_for(size: usize, align: usize) -> Result<(u32, usize), Error> {
    if !align.is_power_of_two() || align > MAX_ALIGN {
        return Err(Error::Alignment { align });
    }
    let pad = align.max(BLOCK_HEADER);
    let need = pad
        .checked_add(size.max(1))
        .and_then(usize::checked_next_power_of_two)
        .ok_or(Error::TooLarge { size })?;
    Ok((need.trailing_zeros().max(MIN_CLASS), pad))
}

/// Allocates a zero-filled block with room for `size` bytes aligned to `align`.
pub(crate) fn alloc(size: usize, align: usize) -> Result<Arc<BlockInner>, Error> {
    ensure_atfork()?;
    let (class, pad) = class_for(size, align)?;
    let (arena, payload) = if class > MAX_SMALL_CLASS {
        alloc_dedicated(size, align)?
    } else {
        alloc_shared(class, pad)?
    };
    let block = Arc::new(BlockInner { arena, payload });
    let mut heap = HEAP.lock();
    let refs: *const AtomicU32 = block.refs();
    heap.blocks.insert(
        block.key(),
        Entry {
            weak: Arc::downgrade(&block),
            refs,
        },
    );
    drop(heap);
    Ok(block)
}

fn alloc_dedicated(size: usize, align: usize) -> Result<(Arc<Arena>, usize), Error> {
    let payload = (ARENA_HEADER + BLOCK_HEADER).next_multiple_of(align.max(16));
    let len = payload.checked_add(size).ok_or(Error::TooLarge { size })?;
    let arena = Arena::create(len, true)?;
    let bh = arena.block_header(payload);
    bh.refs.store(1, Ordering::Relaxed);
    bh.pad
        .store((payload - ARENA_HEADER) as u32, Ordering::Relaxed);
    bh.class.store(DEDICATED, Ordering::Relaxed);
    bh.state.store(BLOCK_LIVE, Ordering::Release);
    let arena = Arc::new(arena);
    HEAP.lock().arenas.insert(arena.id, Arc::downgrade(&arena));
    Ok((arena, payload))
}

fn alloc_shared(class: u32, pad: usize) -> Result<(Arc<Arena>, usize), Error> {
    // Try the current arena, then every other shared arena this process maps.
    let candidates: Vec<Arc<Arena>> = {
        let mut heap = HEAP.lock();
        heap.arenas.retain(|_, w| w.strong_count() > 0);
        let current = heap.current;
        let mut v: Vec<Arc<Arena>> = Vec::new();
        if let Some(a) = current
            .and_then(|id| heap.arenas.get(&id))
            .and_then(Weak::upgrade)
        {
            if !a.wedged.load(Ordering::Relaxed) {
                v.push(a);
            }
        }
        for (id, w) in heap.arenas.iter() {
            if Some(*id) != current {
                if let Some(a) = w.upgrade() {
                    if !a.dedicated && !a.wedged.load(Ordering::Relaxed) {
                        v.push(a);
                    }
                }
            }
        }
        v
    };
    // (The candidates are dropped outside the heap lock: dropping the last Arc of an arena
    // must not happen while holding it.)
    for arena in &candidates {
        if let Some(start) = arena.alloc_small(class) {
            let id = arena.id;
            HEAP.lock().current = Some(id);
            return Ok((arena.clone(), init_block(arena, start, class, pad)));
        }
    }
    let arena = Arc::new(Arena::create(ARENA_SIZE, false)?);
    let start = arena
        .alloc_small(class)
        .ok_or(Error::TooLarge { size: 1 << class })?;
    {
        let mut heap = HEAP.lock();
        heap.arenas.insert(arena.id, Arc::downgrade(&arena));
        heap.current = Some(arena.id);
    }
    let payload = init_block(&arena, start, class, pad);
    Ok((arena, payload))
}

fn init_block(arena: &Arena, start: usize, class: u32, pad: usize) -> usize {
    let payload = start + pad;
    let size = 1usize << class;
    // SAFETY: the block [start, start + size) is inside the mapping and was just taken off a
    // free list or the bump pointer under the arena lock, so no one else uses it; zeroing the
    // payload is a plain write to memory only this thread may touch.
    unsafe { core::ptr::write_bytes(arena.seg.as_ptr().add(payload), 0, size - pad) };
    let bh = arena.block_header(payload);
    bh.refs.store(1, Ordering::Relaxed);
    bh.pad.store(pad as u32, Ordering::Relaxed);
    bh.class.store(class, Ordering::Relaxed);
    bh.state.store(BLOCK_LIVE, Ordering::Release);
    payload
}

/// The wire form of a block handle.
#[derive(Serialize, Deserialize)]
struct BlockWire {
    fd: u32,
    arena: u128,
    arena_len: u64,
    dedicated: bool,
    payload: u64,
}

/// Serializes a block handle: the arena's descriptor, its id, the offset. Takes a shared count
/// for the message.
pub(crate) fn serialize_block<S: serde::Serializer>(
    block: &BlockInner,
    what: &'static str,
    s: S,
) -> Result<S::Ok, S::Error> {
    let fd = transfer::push_fd(block.arena.seg.as_fd(), what).map_err(transfer::ser_error)?;
    let wire = BlockWire {
        fd,
        arena: block.arena.id,
        arena_len: block.arena.len() as u64,
        dedicated: block.arena.dedicated,
        payload: block.payload as u64,
    };
    block.refs().fetch_add(1, Ordering::Relaxed);
    wire.serialize(s)
}

/// Deserializes a block handle, checking that it names a live block with room for `need`
/// bytes aligned to `align`. Adopts the message's count.
pub(crate) fn deserialize_block<'de, D: serde::Deserializer<'de>>(
    d: D,
    what: &'static str,
    need: usize,
    align: usize,
) -> Result<Arc<BlockInner>, D::Error> {
    let w = BlockWire::deserialize(d)?;
    receive_block(w, what, need, align).map_err(transfer::de_error)
}

fn receive_block(
    w: BlockWire,
    what: &'static str,
    need: usize,
    align: usize,
) -> Result<Arc<BlockInner>, TransferError> {
    ensure_atfork().map_err(|e| TransferError::Io(std::io::Error::other(e.to_string())))?;
    let wrong = |detail: String| TransferError::WrongKind { what, detail };
    let existing = HEAP.lock().arenas.get(&w.arena).and_then(Weak::upgrade);
    let arena = match existing {
        Some(a) => {
            // Already mapped here: reuse the mapping, after checking that the descriptor is
            // the arena the message names.
            let same = transfer::with_fd(w.fd, what, |fd| sys::same_file(fd, a.seg.as_fd()))?;
            if !same {
                return Err(wrong(
                    "the descriptor is not the arena the message names".to_string(),
                ));
            }
            a
        }
        None => {
            let fd = transfer::take_fd(w.fd, what)?;
            let len = usize::try_from(w.arena_len).map_err(|_| wrong("arena too large".into()))?;
            // (`from_received` refuses a length that is not a whole number of pages, so the
            // arena header is inside the mapping.)
            let seg = Segment::from_received(fd, len, what)?;
            let arena = Arc::new(Arena::adopt(seg, w.arena, w.dedicated)?);
            let mut heap = HEAP.lock();
            // Another thread may have mapped it meanwhile: keep one mapping.
            match heap.arenas.get(&w.arena).and_then(Weak::upgrade) {
                Some(a) => {
                    drop(heap);
                    drop(arena);
                    a
                }
                None => {
                    heap.arenas.insert(w.arena, Arc::downgrade(&arena));
                    arena
                }
            }
        }
    };
    let payload = usize::try_from(w.payload).map_err(|_| wrong("offset too large".into()))?;
    arena.check_block(payload, need, align).map_err(wrong)?;
    let key = (w.arena, payload);
    let mut heap = HEAP.lock();
    if let Some(b) = heap.blocks.get(&key).and_then(|e| e.weak.upgrade()) {
        drop(heap);
        // This process already holds (and counts) the block: give the message's count back.
        b.refs().fetch_sub(1, Ordering::AcqRel);
        return Ok(b);
    }
    let block = Arc::new(BlockInner { arena, payload });
    let refs: *const AtomicU32 = block.refs();
    heap.blocks.insert(
        key,
        Entry {
            weak: Arc::downgrade(&block),
            refs,
        },
    );
    Ok(block)
}

/// How many blocks and arenas this process holds (for tests and diagnostics).
#[doc(hidden)]
pub fn stats() -> (usize, usize) {
    let heap = HEAP.lock();
    let blocks = heap
        .blocks
        .values()
        .filter(|e| e.weak.strong_count() > 0)
        .count();
    let arenas = heap
        .arenas
        .values()
        .filter(|w| w.strong_count() > 0)
        .count();
    (blocks, arenas)
}

/// A fault-injection point for tests: `arm(n)` makes the `n`-th `hit()` on this thread return
/// true (once).
#[cfg(test)]
mod fail {
    use std::cell::Cell;
    thread_local!(static COUNTDOWN: Cell<u32> = const { Cell::new(0) });
    pub(super) fn arm(n: u32) {
        COUNTDOWN.with(|c| c.set(n));
    }
    pub(super) fn hit() -> bool {
        COUNTDOWN.with(|c| match c.get() {
            0 => false,
            1 => {
                c.set(0);
                true
            }
            n => {
                c.set(n - 1);
                false
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_count(b: &BlockInner) -> u32 {
        b.refs().load(Ordering::SeqCst)
    }

    #[test]
    fn classes() {
        assert_eq!(class_for(1, 1).unwrap(), (5, 16));
        assert_eq!(class_for(16, 8).unwrap(), (5, 16));
        assert_eq!(class_for(17, 8).unwrap(), (6, 16));
        assert_eq!(class_for(8, 64).unwrap(), (7, 64));
        assert_eq!(class_for(8, 4096).unwrap(), (13, 4096));
        assert!(matches!(
            class_for(8, 8192),
            Err(Error::Alignment { align: 8192 })
        ));
        assert!(matches!(
            class_for(usize::MAX - 3, 8),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn blocks_are_aligned_zeroed_and_disjoint() {
        let mut blocks = Vec::new();
        for (size, align) in [(8, 8), (100, 16), (1, 1), (3000, 4096), (64, 64), (40, 8)] {
            let b = alloc(size, align).unwrap();
            let p = b.ptr().as_ptr() as usize;
            assert_eq!(p % align, 0);
            // SAFETY: the block has `size` bytes, freshly zeroed and owned by this test.
            let bytes = unsafe { core::slice::from_raw_parts(b.ptr().as_ptr(), size) };
            assert!(bytes.iter().all(|x| *x == 0));
            // SAFETY: as above; fill it to detect overlaps.
            unsafe { core::ptr::write_bytes(b.ptr().as_ptr(), 0xAB, size) };
            blocks.push((p, size, b));
        }
        let mut ranges: Vec<_> = blocks.iter().map(|(p, s, _)| (*p, *s)).collect();
        ranges.sort();
        for w in ranges.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {ranges:?}");
        }
    }

    #[test]
    fn freed_blocks_are_reused_and_rezeroed() {
        // A private arena, so concurrent tests cannot take the freed block first.
        let a = Arena::create(ARENA_SIZE, false).unwrap();
        let start = a.alloc_small(8).unwrap();
        let p = init_block(&a, start, 8, 16);
        // SAFETY: 200 bytes of the payload of a block this test owns.
        unsafe { core::ptr::write_bytes(a.seg.as_ptr().add(p), 0x5A, 200) };
        a.free_block(p);
        assert_eq!(a.block_header(p).state.load(Ordering::SeqCst), BLOCK_FREE);
        let again = a.alloc_small(8).unwrap();
        assert_eq!(again, start, "the freed block is handed out again");
        let p2 = init_block(&a, again, 8, 16);
        // SAFETY: as above.
        let bytes = unsafe { core::slice::from_raw_parts(a.seg.as_ptr().add(p2), 240) };
        assert!(bytes.iter().all(|x| *x == 0));
        assert_eq!(a.block_header(p2).refs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn many_small_blocks_share_arenas() {
        let before = stats().1;
        let v: Vec<_> = (0..10_000).map(|_| alloc(8, 8).unwrap()).collect();
        let arenas = stats().1 - before;
        // 10,000 × 32 bytes = 320 KiB: one arena (two if a concurrent test's arena filled).
        assert!(arenas <= 2, "{arenas} arenas for 10,000 values");
        drop(v);
    }

    #[test]
    fn large_blocks_get_a_dedicated_arena() {
        let b = alloc(1 << 20, 8).unwrap();
        assert!(b.arena.dedicated);
        // SAFETY: the block has 1 MiB.
        unsafe { core::ptr::write_bytes(b.ptr().as_ptr(), 1, 1 << 20) };
        assert_eq!(shared_count(&b), 1);
    }

    #[test]
    fn arena_fills_then_a_new_one_is_made() {
        let a = Arena::create(ARENA_SIZE, false).unwrap();
        let mut n = 0;
        while a.alloc_small(MAX_SMALL_CLASS).is_some() {
            n += 1;
        }
        // 1 MiB minus the header: three 256 KiB blocks fit.
        assert_eq!(n, 3);
        // The gap before the first block was cut into free blocks of smaller classes.
        assert!(a.alloc_small(MIN_CLASS).is_some());
        assert!(a.alloc_small(17).is_some());
    }

    #[test]
    fn round_trip_counts_and_dedups() {
        struct H(Arc<BlockInner>);
        impl core::fmt::Debug for H {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "H({})", self.0.payload)
            }
        }
        impl Serialize for H {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_block(&self.0, "H", s)
            }
        }
        impl<'de> Deserialize<'de> for H {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_block(d, "H", 8, 8).map(H)
            }
        }
        let h = H(alloc(8, 8).unwrap());
        let (bytes, fds) = transfer::encode(&(&h, &h)).unwrap();
        assert_eq!(fds.len(), 1);
        assert_eq!(shared_count(&h.0), 3);
        let (a, b): (H, H) = transfer::decode(&bytes, fds).unwrap();
        assert!(Arc::ptr_eq(&a.0, &h.0) && Arc::ptr_eq(&b.0, &h.0));
        assert_eq!(shared_count(&h.0), 1);
        // A bogus offset is refused, not mapped.
        let (bytes, fds) = transfer::collect_fds(|| {
            let fd = transfer::push_fd(h.0.arena.seg.as_fd(), "H").unwrap();
            postcard::to_allocvec(&BlockWire {
                fd,
                arena: h.0.arena.id,
                arena_len: h.0.arena.len() as u64,
                dedicated: false,
                payload: h.0.payload as u64 + 8,
            })
            .unwrap()
        });
        let err = transfer::decode::<H>(&bytes, fds).unwrap_err();
        assert!(matches!(err, TransferError::WrongKind { .. }), "{err}");
        assert_eq!(shared_count(&h.0), 1);
    }

    #[test]
    fn a_dead_lock_holder_is_overtaken() {
        let a = Arena::create(ARENA_SIZE, false).unwrap();
        // A thread id that does not exist (above pid_max).
        a.header().lock.store(999_999_999, Ordering::SeqCst);
        assert!(a.alloc_small(MIN_CLASS).is_some());
        assert_eq!(a.header().lock.load(Ordering::SeqCst), 0);
    }

    /// Every block handed out from `a` until it is full, by class, checked to be disjoint.
    fn drain_and_check_disjoint(a: &Arena) {
        let mut ranges = Vec::new();
        for class in (MIN_CLASS..=MAX_SMALL_CLASS).rev() {
            while let Some(start) = a.alloc_small(class) {
                ranges.push((start, start + (1usize << class)));
                assert!(ranges.len() < 100_000, "the arena hands out blocks forever");
            }
        }
        ranges.sort();
        for w in ranges.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "blocks handed out twice or overlapping: {w:?}"
            );
        }
    }

    #[test]
    fn a_holder_dying_while_cutting_the_gap_hands_nothing_out_twice() {
        let a = Arena::create(ARENA_SIZE, false).unwrap();
        // A 1 KiB block from a fresh arena skips [256, 1024): two gap pieces. The holder
        // "dies" after pushing the first one, still holding the lock.
        fail::arm(1);
        assert_eq!(a.alloc_small(10), None);
        assert_eq!(a.header().lock.load(Ordering::SeqCst), sys::gettid());
        a.header().lock.store(999_999_999, Ordering::SeqCst); // a dead thread id
        drain_and_check_disjoint(&a);
    }

    #[test]
    fn garbage_in_the_arena_header_is_not_followed() {
        let a = Arena::create(ARENA_SIZE, false).unwrap();
        // A bump pointer no allocation could have left (not a multiple of 32, or 4).
        for bump in [258u64, 260, 0, u64::MAX - 3] {
            a.header().bump.store(bump, Ordering::SeqCst);
            assert_eq!(a.alloc_small(MIN_CLASS), None, "bump {bump}");
        }
        // Free-list heads pointing outside the arena, misaligned, into the header.
        a.header().bump.store(ARENA_HEADER as u64, Ordering::SeqCst);
        for (class, head) in [(5u32, 3u32), (6, 8), (7, u32::MAX - 127), (8, 128)] {
            a.header().free[class as usize].store(head, Ordering::SeqCst);
        }
        drain_and_check_disjoint(&a);
    }

    #[test]
    fn garbage_in_a_block_header_does_not_panic_on_free() {
        for (pad, class) in [
            (18u32, 8u32),
            (1 << 20, 8),
            (16, 40),
            (16, 4),
            (8, 5),
            (48, 5),
        ] {
            let b = alloc(8, 8).unwrap();
            let bh = b.arena.block_header(b.payload);
            bh.pad.store(pad, Ordering::SeqCst);
            bh.class.store(class, Ordering::SeqCst);
            drop(b); // leaks the block; must not panic or push a bogus free block
        }
        // The heap still works and hands out disjoint blocks.
        let v: Vec<_> = (0..100).map(|_| alloc(8, 8).unwrap()).collect();
        let mut p: Vec<usize> = v.iter().map(|b| b.ptr().as_ptr() as usize).collect();
        p.sort();
        p.dedup();
        assert_eq!(p.len(), 100);
    }

    #[test]
    fn alignment_above_a_page_is_refused_on_receipt() {
        let h = alloc(300_000, 4096).unwrap();
        assert!(h.arena.dedicated);
        let page = sys::page_size();
        // A message naming a (well-formed) block at a payload offset that is a multiple of
        // 8192: only 4096-alignment can be promised, whatever the mapping's address.
        let payload = 2 * page.max(8192);
        let bh = h.arena.block_header(payload);
        bh.class.store(DEDICATED, Ordering::SeqCst);
        bh.state.store(BLOCK_LIVE, Ordering::SeqCst);
        bh.refs.store(1, Ordering::SeqCst);
        let err = h.arena.check_block(payload, 16, 8192).unwrap_err();
        assert!(err.contains("alignment"), "{err}");
        assert!(h.arena.check_block(payload, 16, 4096).is_ok());
        assert!(h.arena.check_block(payload, 16, 3).is_err());
    }

    #[test]
    fn a_zombie_lock_holder_is_overtaken() {
        // A child that has exited but is not reaped yet still answers `kill(pid, 0)`; the
        // parent (who would reap it) must not wait for the lock forever.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Wait until it has exited, without reaping it.
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
        // SAFETY: waits for our own child, leaving it a zombie (WNOWAIT).
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        assert_eq!(rc, 0);
        let a = Arc::new(Arena::create(ARENA_SIZE, false).unwrap());
        a.header().lock.store(pid, Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::channel();
        let a2 = a.clone();
        let t = std::thread::spawn(move || tx.send(a2.alloc_small(MIN_CLASS)).unwrap());
        let got = rx.recv_timeout(std::time::Duration::from_secs(60));
        // Reap it now: a hung waiter above then finds it dead and finishes too.
        child.wait().unwrap();
        t.join().unwrap();
        assert!(
            matches!(got, Ok(Some(_))),
            "the waiter did not take the lock over from a zombie: {got:?}"
        );
    }

    #[test]
    fn a_live_holder_that_never_lets_go_wedges_only_its_arena() {
        // A forged or stopped arena: the lock word names a live thread (this one) that will
        // never release it. Allocation gives up on the arena and frees leak, both in bounded
        // time; the rest of the heap works on.
        let a = Arc::new(Arena::create(ARENA_SIZE, false).unwrap());
        let start = a.alloc_small(MIN_CLASS).unwrap();
        let payload = init_block(&a, start, MIN_CLASS, BLOCK_HEADER);
        a.header().lock.store(sys::gettid(), Ordering::SeqCst);
        let t = std::time::Instant::now();
        assert!(a.alloc_small(MIN_CLASS).is_none());
        assert!(a.wedged.load(Ordering::SeqCst));
        a.free_block(payload);
        assert!(t.elapsed() < LOCK_PATIENCE * 2 + std::time::Duration::from_secs(10));
        // The leaked block stays marked free, off every list.
        assert_eq!(
            a.header().free[MIN_CLASS as usize].load(Ordering::SeqCst),
            0
        );
        let v = alloc(8, 8).unwrap();
        assert!(!Arc::ptr_eq(&v.arena, &a));
    }
}
