//! The shared-memory backend: the algorithm of `ring_core` on one sparse memfd segment owned by
//! the queue.
//!
//! A queue reserves a large *sparse* memfd ([`DEFAULT_RESERVE`], 16 GiB of address space by
//! default) and maps it in every process that holds a handle. Nothing is committed until it is
//! written: unit 0 (1 MiB) holds the control block, and the other units are 1 MiB *chunks*
//! handed out on demand. So the queue grows by chaining chunks that belong to the queue (not to
//! the producer that wrote them: they live as long as any handle does), and an unbounded `put`
//! never waits for a consumer. Each time the queue drains, the pages of a quarter of the free
//! chunks beyond [`KEEP_FREE`] are returned to the system (`fallocate(PUNCH_HOLE)`).
//!
//! See `ring_core` for the algorithm and its behaviour when a process dies inside it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ipc_shm::Segment;
use ipc_sync::futex::Deadline;
use ipc_sync::primitive::atomic::Ordering;
#[cfg(feature = "testing-hooks")]
use ipc_sync::raw::RawLock;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ring_core::{self, CoreError, CrashPoint, Ctrl, Mem, Writer};
use crate::err::{Error, Result};

/// Bytes of address space a shared-memory queue reserves by default (committed only as it is
/// used).
pub const DEFAULT_RESERVE: u64 = 16 << 30;
/// Size of one chunk (and of the control unit).
pub(crate) const UNIT: usize = 1 << 20;
/// Bytes at the start of a chunk before its data (the `next` link, padded).
const CHUNK_HEADER: usize = 64;
/// Data bytes per chunk.
const DATA: usize = UNIT - CHUNK_HEADER;
/// Free chunks that keep their pages when the queue drains (32 MiB).
pub(crate) const KEEP_FREE: u64 = 32;
const MAGIC: u64 = u64::from_le_bytes(*b"mpqring1");

const _: () = assert!(std::mem::size_of::<Ctrl>() <= UNIT);

/// One shm-ring queue handle.
#[derive(Clone)]
pub(crate) struct ShmRing {
    seg: Segment,
    units: u64,
    /// See [`Mem::max_msg`]: fixed when this handle was made or received.
    max_msg: u64,
    /// See [`Mem::put_hint`]; shared by this handle's clones in this process.
    hint: Arc<AtomicU64>,
}

fn map_err(e: CoreError) -> Error {
    match e {
        CoreError::Timeout => Error::Timeout,
        CoreError::TooLarge { len, max } => Error::TooLarge { len, max },
        CoreError::Exhausted => Error::Shm(
            "queue storage exhausted: the whole reserve holds unread items \
             (see QueueBuilder::shm_reserve)"
                .into(),
        ),
        CoreError::Corrupted(what) => Error::Shm(format!("queue storage is corrupted ({what})")),
        CoreError::Aborted => Error::Encode("the item could not be encoded".into()),
        CoreError::NoMemory(errno) => Error::Shm(format!(
            "cannot commit memory for the queue's next chunk ({errno}); \
             the item was not put"
        )),
    }
}

impl Mem for ShmRing {
    fn ctrl(&self) -> &Ctrl {
        // SAFETY: the segment is at least 2 units long (checked at construction and on
        // receipt), page-aligned, and unit 0 holds a `Ctrl` (size checked above): a repr(C)
        // struct of atomics, raw locks and never-accessed padding, valid for every bit pattern
        // including the zeroed fresh segment, and only accessed through shared references
        // (every mutation is atomic). The reference lives no longer than `self`, which keeps
        // the mapping alive.
        unsafe { &*(self.seg.as_ptr() as *const Ctrl) }
    }

    fn units(&self) -> u64 {
        self.units
    }

    fn max_msg(&self) -> u64 {
        self.max_msg
    }

    fn data_len(&self) -> usize {
        DATA
    }

    fn link(&self, unit: u64) -> ring_core::Result<&AtomicU64> {
        if unit == 0 || unit >= self.units {
            return Err(CoreError::Corrupted("chunk index out of range"));
        }
        // SAFETY: `unit` is in range, so its first 8 bytes are inside the mapping and 8-aligned
        // (units are 1 MiB apart from a page-aligned base); an AtomicU64 is valid for any bits
        // and is only accessed atomically.
        Ok(unsafe { &*(self.seg.as_ptr().add(unit as usize * UNIT) as *const AtomicU64) })
    }

    fn write(&self, unit: u64, off: usize, src: &[u8]) -> ring_core::Result<()> {
        let dst = self.range(unit, off, src.len())?;
        // SAFETY: `range` checked that the destination lies inside chunk `unit`'s data area.
        // Under the algorithm only the producer holding `put_lock` writes beyond the committed
        // tail; consumers read only committed records. The source is this process's memory.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    fn read(&self, unit: u64, off: usize, dst: &mut [u8]) -> ring_core::Result<()> {
        let src = self.range(unit, off, dst.len())?;
        // SAFETY: `range` checked the source range; the record is committed, so its producer no
        // longer writes it, and the caller holds `get_lock`. `dst` is this process's memory.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn put_hint(&self) -> &AtomicU64 {
        &self.hint
    }

    fn view(
        &self,
        unit: u64,
        off: usize,
        len: usize,
        f: &mut dyn FnMut(&[u8]),
    ) -> ring_core::Result<()> {
        let src = self.range(unit, off, len)?;
        // SAFETY: `range` checked that the `len` bytes lie inside chunk `unit`'s data area, in
        // the mapping that `self` keeps alive for the call. The caller holds `get_lock` and the
        // record is committed: under the algorithm no process writes these bytes until the
        // caller moves the head past them, after `f` returns (`f` may be the user's closure
        // of `Queue::get_with`: it cannot keep the slice, whose lifetime ends with the call),
        // so the bytes are immutable while the slice exists. This relies on every process
        // mapping the queue following the algorithm: one that writes into a committed record
        // while it is borrowed here is outside the trust boundary the crate documents (see
        // "Safety model" in lib.rs), and that race would be undefined behaviour.
        let bytes = unsafe { std::slice::from_raw_parts(src as *const u8, len) };
        f(bytes);
        Ok(())
    }

    fn commit_pages(&self, unit: u64) -> ring_core::Result<()> {
        if unit == 0 || unit >= self.units {
            return Err(CoreError::Corrupted("chunk index out of range"));
        }
        #[cfg(test)]
        if tests::refuse_commit() {
            return Err(CoreError::NoMemory(rustix::io::Errno::NOSPC.to_string()));
        }
        // A sparse memfd page is allocated when first touched; without memory that touch is a
        // SIGBUS. Allocating the chunk's pages here turns it into an error.
        loop {
            match rustix::fs::fallocate(
                self.seg.as_fd(),
                rustix::fs::FallocateFlags::empty(),
                unit * UNIT as u64,
                UNIT as u64,
            ) {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(CoreError::NoMemory(e.to_string())),
            }
        }
    }

    fn release(&self, unit: u64) {
        let _ = rustix::fs::fallocate(
            self.seg.as_fd(),
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            unit * UNIT as u64,
            UNIT as u64,
        );
    }
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
        // The control block's pages and the first chunk's are allocated now (the others when
        // the allocator hands their chunk out): no write to the segment can fault for lack of
        // memory.
        let ctrl_len = std::mem::size_of::<Ctrl>().next_multiple_of(4096) as u64;
        for (at, n) in [(0, ctrl_len), (UNIT as u64, UNIT as u64)] {
            rustix::fs::fallocate(seg.as_fd(), rustix::fs::FallocateFlags::empty(), at, n)
                .map_err(|e| Error::Shm(format!("cannot commit memory for a new queue ({e})")))?;
        }
        let ring = ShmRing {
            seg,
            units,
            max_msg,
            hint: Arc::default(),
        };
        ring.ctrl().init(units, maxsize as u64, max_msg, MAGIC);
        Ok(ring)
    }

    /// The address of `len` bytes at `off` in chunk `unit`'s data area, after checking that
    /// they lie inside it.
    fn range(&self, unit: u64, off: usize, len: usize) -> ring_core::Result<*mut u8> {
        if unit == 0 || unit >= self.units || off.checked_add(len).is_none_or(|end| end > DATA) {
            return Err(CoreError::Corrupted("position out of range"));
        }
        let at = unit as usize * UNIT + CHUNK_HEADER + off;
        // SAFETY: `unit < units` and `off + len <= DATA`, so `[at, at + len)` lies inside the
        // mapping of `units * UNIT` bytes.
        Ok(unsafe { self.seg.as_ptr().add(at) })
    }

    #[cfg(feature = "testing-hooks")]
    pub(crate) fn get_lock(&self) -> &RawLock {
        &self.ctrl().get_lock
    }

    #[cfg(feature = "testing-hooks")]
    pub(crate) fn put_lock(&self) -> &RawLock {
        &self.ctrl().put_lock
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.ctrl().maxsize.load(Ordering::Relaxed) as usize
    }

    pub(crate) fn max_message_size(&self) -> u64 {
        self.max_msg
    }

    pub(crate) fn len(&self) -> usize {
        self.ctrl().len() as usize
    }

    /// Puts one record whose bytes `fill` writes (see `ring_core::put_with`).
    pub(crate) fn put(
        &self,
        deadline: Option<Deadline>,
        hook: impl Fn(CrashPoint),
        fill: impl FnOnce(&mut Writer<'_, ShmRing>) -> ring_core::Result<()>,
    ) -> Result<()> {
        ring_core::put_with(self, deadline, hook, fill).map_err(map_err)
    }

    /// Takes one record and returns what `take` makes of its bytes (see
    /// `ring_core::get_with`); `spill` holds a record that spans chunks.
    pub(crate) fn get<R>(
        &self,
        spill: &mut Vec<u8>,
        deadline: Option<Deadline>,
        hook: impl Fn(CrashPoint),
        take: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        ring_core::get_with(self, spill, deadline, KEEP_FREE, hook, take).map_err(map_err)
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
            max_msg: 0,
            hint: Arc::default(),
        };
        let c = ring.ctrl();
        if c.magic.load(Ordering::Acquire) != MAGIC {
            return Err(D::Error::custom(
                "received segment is not a multiproc queue",
            ));
        }
        // Trust the smaller of what the control block says and what is actually mapped.
        let units = c.units.load(Ordering::Relaxed).min(mapped_units);
        let max_msg = c.max_msg.load(Ordering::Relaxed);
        Ok(ShmRing {
            seg: ring.seg,
            units,
            max_msg,
            hint: ring.hint,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flavors::RecvBuf;

    fn ring(units: u64, max_msg: u64) -> ShmRing {
        ShmRing::new(0, max_msg, units * UNIT as u64).unwrap()
    }

    fn now() -> Option<Deadline> {
        Some(Deadline::after(Duration::ZERO))
    }

    fn no_hook(_: CrashPoint) {}

    thread_local! {
        /// Chunks this thread's rings may still commit before refusing (for the test of a
        /// system out of memory); `u64::MAX`: no limit.
        static COMMITS_LEFT: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
    }

    /// Whether the next chunk commit is refused (see `COMMITS_LEFT`).
    pub(super) fn refuse_commit() -> bool {
        COMMITS_LEFT.with(|c| {
            let n = c.get();
            if n != u64::MAX && n > 0 {
                c.set(n - 1);
            }
            n == 0
        })
    }

    trait Ops {
        fn put_bytes(
            &self,
            bytes: &[u8],
            deadline: Option<Deadline>,
            hook: fn(CrashPoint),
        ) -> Result<()>;
        fn get_bytes(
            &self,
            buf: &mut RecvBuf,
            deadline: Option<Deadline>,
            hook: fn(CrashPoint),
        ) -> Result<()>;
    }

    /// Byte records, as the tests below were written for.
    impl Ops for ShmRing {
        fn put_bytes(
            &self,
            bytes: &[u8],
            deadline: Option<Deadline>,
            hook: fn(CrashPoint),
        ) -> Result<()> {
            ShmRing::put(self, deadline, hook, |w| w.write(bytes))
        }
        fn get_bytes(
            &self,
            buf: &mut RecvBuf,
            deadline: Option<Deadline>,
            hook: fn(CrashPoint),
        ) -> Result<()> {
            let mut spill = Vec::new();
            let v = ShmRing::get(self, &mut spill, deadline, hook, <[u8]>::to_vec)?;
            buf.data = v;
            buf.used = buf.data.len();
            Ok(())
        }
    }

    /// Puts and gets a few items, whatever they return: they must not panic or hang.
    fn exercise(r: &ShmRing) {
        let mut buf = RecvBuf::default();
        for _ in 0..3 {
            let _ = r.put_bytes(b"abc", now(), no_hook);
            let _ = r.get_bytes(&mut buf, now(), no_hook);
        }
    }

    #[test]
    fn scribbled_counters_and_positions_never_panic() {
        for v in [u64::MAX, u64::MAX - 1, 1 << 63, DATA as u64 + 8, 7] {
            for field in 0..8 {
                let r = ring(4, 1024);
                r.put_bytes(b"x", None, no_hook).unwrap();
                let c = r.ctrl();
                match field {
                    0 => {
                        for p in &c.tail {
                            p.items.store(v, Ordering::Relaxed);
                        }
                        c.items_put.store(v, Ordering::Relaxed);
                    }
                    1 => {
                        for p in &c.head {
                            p.items.store(v, Ordering::Relaxed);
                        }
                        c.items_got.store(v, Ordering::Relaxed);
                    }
                    2 => c.items_put.store(v, Ordering::Relaxed),
                    3 => {
                        for p in c.tail.iter().chain(&c.head) {
                            p.off.store(v, Ordering::Relaxed);
                        }
                    }
                    4 => {
                        for p in c.tail.iter().chain(&c.head) {
                            p.unit.store(v, Ordering::Relaxed);
                        }
                    }
                    5 => {
                        c.free_head.store(v, Ordering::Relaxed);
                        c.next_fresh.store(v, Ordering::Relaxed);
                        c.hot_free.store(v, Ordering::Relaxed);
                    }
                    6 => {
                        c.tail_sel.store(v, Ordering::Relaxed);
                        c.head_sel.store(v, Ordering::Relaxed);
                    }
                    _ => r.link(1).unwrap().store(v, Ordering::Relaxed),
                }
                exercise(&r);
            }
        }
    }

    #[test]
    fn scribbled_record_length_is_refused_before_allocating() {
        let r = ring(4, 1024);
        r.put_bytes(b"x", None, no_hook).unwrap();
        // A peer raises the shared limit and announces an absurd record.
        r.ctrl().max_msg.store(u64::MAX, Ordering::Relaxed);
        r.write(1, 0, &(1u64 << 62).to_le_bytes()).unwrap();
        let mut buf = RecvBuf::default();
        match r.get_bytes(&mut buf, None, no_hook) {
            Err(Error::Shm(m)) => assert!(m.contains("corrupted"), "{m}"),
            other => panic!("{:?}", other.map(|_| buf.bytes().to_vec())),
        }
        // Within this handle's limit but beyond the storage: refused too.
        let r = ring(2, u64::MAX);
        r.put_bytes(b"x", None, no_hook).unwrap();
        r.write(1, 0, &(DATA as u64 + 1).to_le_bytes()).unwrap();
        assert!(matches!(
            r.get_bytes(&mut buf, None, no_hook),
            Err(Error::Shm(_))
        ));
    }

    #[test]
    fn cyclic_free_list_does_not_hang_the_drain() {
        let r = ring(40, 1024);
        let c = r.ctrl();
        // Free chunk 2 links to itself, and the count of free chunks is absurd.
        c.next_fresh.store(3, Ordering::Relaxed);
        r.link(2).unwrap().store(3, Ordering::Relaxed);
        c.free_head.store(3, Ordering::Relaxed);
        c.hot_free.store(u64::MAX, Ordering::Relaxed);
        r.put_bytes(b"x", None, no_hook).unwrap();
        let mut buf = RecvBuf::default();
        // Draining trims the free list.
        r.get_bytes(&mut buf, None, no_hook).unwrap();
        assert_eq!(buf.bytes(), b"x");
    }

    fn committed_bytes(r: &ShmRing) -> u64 {
        rustix::fs::fstat(r.seg.as_fd()).unwrap().st_blocks as u64 * 512
    }

    #[test]
    fn drained_queue_gives_pages_back() {
        let r = ring(128, 4 << 20);
        let item = vec![7u8; UNIT];
        for _ in 0..64 {
            r.put_bytes(&item, None, no_hook).unwrap();
        }
        let after_burst = committed_bytes(&r);
        assert!(after_burst >= 64 * UNIT as u64, "{after_burst}");
        let mut buf = RecvBuf::default();
        for _ in 0..64 {
            r.get_bytes(&mut buf, None, no_hook).unwrap();
            assert_eq!(buf.bytes(), &item[..]);
        }
        // Each drain returns a quarter of the free chunks beyond KEEP_FREE.
        for _ in 0..40 {
            r.put_bytes(b"x", None, no_hook).unwrap();
            r.get_bytes(&mut buf, None, no_hook).unwrap();
        }
        let after_trims = committed_bytes(&r);
        assert!(
            after_burst - after_trims >= 24 * UNIT as u64,
            "{after_burst} -> {after_trims}"
        );
    }

    #[test]
    fn refused_memory_is_an_error_and_the_queue_goes_on() {
        let r = ring(8, 4 << 20);
        let item = vec![3u8; 700 << 10];
        // Chunk 1 was committed with the queue; one more chunk may be, then none.
        COMMITS_LEFT.with(|c| c.set(1));
        r.put_bytes(&item, None, no_hook).unwrap();
        r.put_bytes(&item, None, no_hook).unwrap();
        match r.put_bytes(&item, None, no_hook) {
            Err(Error::Shm(m)) => assert!(m.contains("cannot commit memory"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.len(), 2);
        let mut buf = RecvBuf::default();
        for _ in 0..2 {
            r.get_bytes(&mut buf, None, no_hook).unwrap();
            assert_eq!(buf.bytes(), &item[..]);
        }
        // Chunk 1, which the consumers passed, kept its pages: reusing it needs no commit.
        r.put_bytes(&item, None, no_hook).unwrap();
        r.get_bytes(&mut buf, None, no_hook).unwrap();
        assert_eq!(buf.bytes(), &item[..]);
        assert_eq!(r.len(), 0);
        COMMITS_LEFT.with(|c| c.set(u64::MAX));
    }

    #[test]
    fn chunks_are_committed_when_handed_out() {
        let r = ring(8, 4 << 20);
        let before = committed_bytes(&r);
        assert!(before >= UNIT as u64, "{before}");
        // A tiny record commits nothing more; one that reaches chunk 2 commits it whole.
        r.put_bytes(b"x", None, no_hook).unwrap();
        assert_eq!(committed_bytes(&r), before);
        r.put_bytes(&vec![1u8; DATA], None, no_hook).unwrap();
        assert!(committed_bytes(&r) >= before + UNIT as u64);
    }
}
