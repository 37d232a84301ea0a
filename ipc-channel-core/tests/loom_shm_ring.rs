//! Model of the shared-memory queue algorithm (`src/flavors/ring_core.rs`, included by path):
//! no record lost or duplicated, records spanning chunks, chunks recycled, full and empty waits.
//!
//! Under `RUSTFLAGS="--cfg ipc_loom"` (as `cargo xtask test` runs it) each body is a loom model:
//! every interleaving up to the preemption bound, with the atomics and the futex of
//! `ipc_sync::primitive`/`ipc_sync::futex`, and the chunk bytes in loom cells, so a read racing
//! a write is reported. Without loom the same bodies run as stress tests on real threads.
//! Threads stand in for processes and the memory is on the heap; that the algorithm survives a
//! process dying is tested with real processes in `xproc_queue.rs`.

#[allow(dead_code, unreachable_pub)]
#[path = "../src/flavors/ring_core.rs"]
mod ring_core;

use ipc_sync::primitive::atomic::{AtomicU64, Ordering};
use ipc_sync::primitive::UnsafeCell;
use ring_core::{CoreError, Ctrl, Mem};

#[cfg(ipc_loom)]
use loom::{sync::Arc, thread};
#[cfg(not(ipc_loom))]
use std::{sync::Arc, thread};

fn model(body: impl Fn() + Sync + Send + 'static) {
    #[cfg(ipc_loom)]
    loom::model(body);
    #[cfg(not(ipc_loom))]
    for _ in 0..300 {
        body();
    }
}

/// Chunks on the heap: a link and `DATA` bytes each, one loom cell per 8-byte word. Records
/// start 8-aligned and never share a word, so word cells let loom check exactly the bytes
/// each side touches: a producer writing a record while a consumer reads an earlier one in the
/// same chunk is fine, touching the same word is a reported race.
struct HeapMem {
    ctrl: Ctrl,
    hint: AtomicU64,
    links: Vec<AtomicU64>,
    cells: Vec<Vec<UnsafeCell<[u8; 8]>>>,
}

/// Tiny chunks, so that every record crosses chunk boundaries.
const DATA: usize = 16;
const MAX_MSG: u64 = 64;

// SAFETY: the cells are accessed as the algorithm dictates (a region is written only by the
// producer holding `put_lock` before its commit, read only by the consumer holding `get_lock`
// after it); a violation is exactly what loom reports as a race on the cells.
unsafe impl Sync for HeapMem {}

impl HeapMem {
    fn new(units: u64, maxsize: u64) -> HeapMem {
        HeapMem {
            ctrl: Ctrl::new(units, maxsize, MAX_MSG, 1),
            hint: AtomicU64::new(0),
            links: (0..units).map(|_| AtomicU64::new(0)).collect(),
            cells: (0..units)
                .map(|_| (0..DATA / 8).map(|_| UnsafeCell::new([0; 8])).collect())
                .collect(),
        }
    }

    fn check(&self, unit: u64, off: usize, len: usize) -> ring_core::Result<usize> {
        if unit == 0 || unit >= self.units() || off + len > DATA {
            return Err(CoreError::Corrupted("out of range"));
        }
        Ok(unit as usize)
    }
}

impl Mem for HeapMem {
    fn ctrl(&self) -> &Ctrl {
        &self.ctrl
    }
    fn units(&self) -> u64 {
        self.links.len() as u64
    }
    fn data_len(&self) -> usize {
        DATA
    }
    fn max_msg(&self) -> u64 {
        MAX_MSG
    }
    fn link(&self, unit: u64) -> ring_core::Result<&AtomicU64> {
        let u = self.check(unit, 0, 0)?;
        Ok(&self.links[u])
    }
    fn write(&self, unit: u64, off: usize, src: &[u8]) -> ring_core::Result<()> {
        let u = self.check(unit, off, src.len())?;
        for (i, b) in src.iter().enumerate() {
            let at = off + i;
            self.cells[u][at / 8].with_mut(|p| {
                // SAFETY: see `impl Sync`; loom checks the exclusivity.
                unsafe { (*p)[at % 8] = *b }
            });
        }
        Ok(())
    }
    fn read(&self, unit: u64, off: usize, dst: &mut [u8]) -> ring_core::Result<()> {
        let u = self.check(unit, off, dst.len())?;
        for (i, b) in dst.iter_mut().enumerate() {
            let at = off + i;
            *b = self.cells[u][at / 8].with(|p| {
                // SAFETY: see `impl Sync`; loom checks the exclusivity.
                unsafe { (*p)[at % 8] }
            });
        }
        Ok(())
    }
    fn put_hint(&self) -> &AtomicU64 {
        &self.hint
    }
    fn release(&self, unit: u64) {
        if let Ok(u) = self.check(unit, 0, 0) {
            self.links[u].store(0, Ordering::Release);
            for w in &self.cells[u] {
                w.with_mut(|p| {
                    // SAFETY: a released chunk is on the free list, owned by the allocator
                    // lock's holder (the caller).
                    unsafe { *p = [0; 8] }
                });
            }
        }
    }
}

fn get(m: &HeapMem) -> Vec<u8> {
    let mut out = Vec::new();
    let n = ring_core::get(m, &mut out, None, 1).unwrap();
    assert_eq!(n, out.len());
    out
}

#[test]
fn two_producers_one_consumer_exactly_once() {
    model(|| {
        let m = Arc::new(HeapMem::new(8, 0));
        let producers: Vec<_> = [(1u8, 5usize), (2, 9)]
            .into_iter()
            .map(|(b, len)| {
                let m = Arc::clone(&m);
                // 13 and 17 bytes with the length: each record crosses a chunk boundary.
                thread::spawn(move || ring_core::put(&*m, &vec![b; len], None).unwrap())
            })
            .collect();
        let mut got = vec![get(&m), get(&m)];
        for p in producers {
            p.join().unwrap();
        }
        got.sort();
        assert_eq!(got, vec![vec![1; 5], vec![2; 9]]);
        assert_eq!(m.ctrl.len(), 0);
    });
}

#[test]
fn fifo_and_chunk_recycling_under_a_full_bounded_queue() {
    model(|| {
        // Five chunks of 16 bytes, four records of 24 bytes (96 bytes in all): the producer
        // must wait for room (maxsize 1) and reuse chunks the consumer gave back.
        let m = Arc::new(HeapMem::new(6, 1));
        let producer = {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                for i in 0..4u8 {
                    ring_core::put(&*m, &[i; 9], None).unwrap();
                }
            })
        };
        for i in 0..4u8 {
            assert_eq!(get(&m), vec![i; 9]);
        }
        producer.join().unwrap();
        assert_eq!(m.ctrl.len(), 0);
    });
}

#[test]
fn consumer_waits_on_an_empty_queue() {
    model(|| {
        let m = Arc::new(HeapMem::new(4, 0));
        let consumer = {
            let m = Arc::clone(&m);
            thread::spawn(move || get(&m))
        };
        ring_core::put(&*m, b"late", None).unwrap();
        assert_eq!(consumer.join().unwrap(), b"late");
    });
}

#[test]
fn oversized_and_exhausted_are_errors() {
    model(|| {
        let m = HeapMem::new(3, 0);
        assert_eq!(
            ring_core::put(&m, &[0; 65], None),
            Err(CoreError::TooLarge { len: 65, max: 64 })
        );
        // Two chunks of 16 bytes hold one 24-byte record, not two.
        ring_core::put(&m, &[7; 16], None).unwrap();
        assert_eq!(
            ring_core::put(&m, &[8; 16], None),
            Err(CoreError::Exhausted)
        );
        assert_eq!(get(&m), vec![7; 16]);
    });
}

#[test]
fn one_wake_up_reaches_every_sleeping_consumer() {
    // Both consumers may announce themselves on the same value of the wake-up word; the first
    // commit clears the announcement and wakes both, the second may make no call at all.
    model(|| {
        let m = Arc::new(HeapMem::new(4, 0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let m = Arc::clone(&m);
                thread::spawn(move || get(&m))
            })
            .collect();
        ring_core::put(&*m, b"a", None).unwrap();
        ring_core::put(&*m, b"b", None).unwrap();
        let mut got: Vec<_> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
    });
}

#[test]
fn producers_sleeping_on_a_full_queue_are_all_woken() {
    model(|| {
        let m = Arc::new(HeapMem::new(6, 1));
        ring_core::put(&*m, b"0", None).unwrap();
        let producers: Vec<_> = [b'1', b'2']
            .into_iter()
            .map(|b| {
                let m = Arc::clone(&m);
                thread::spawn(move || ring_core::put(&*m, &[b], None).unwrap())
            })
            .collect();
        let mut got = [get(&m), get(&m), get(&m)];
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(got[0], b"0");
        got[1..].sort();
        assert_eq!(got[1..], [b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(m.ctrl.len(), 0);
    });
}
