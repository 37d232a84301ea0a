//! [`RawBarrier`]: a reusable barrier whose generations live in its futex word.

use crate::futex::{self, Deadline, Wait};
use crate::primitive::atomic::{AtomicU32, Ordering};
use crate::primitive::{const_fn_unless_loom, spin, SpinPoll};
use crate::Error;

/// Bits 0..=15: parties that have arrived in the current generation.
const COUNT_MASK: u32 = 0xFFFF;
/// Bits 16..=29: the generation, bumped (wrapping) each time the barrier trips.
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0x3FFF << GEN_SHIFT;
/// Bit 30: a reset is draining the parties that were waiting; new arrivals wait for it to end.
const RESETTING: u32 = 1 << 30;
/// Bit 31: broken (by `abort` or a timeout) until `reset`.
const BROKEN: u32 = 1 << 31;

/// The largest number of parties a barrier supports.
pub const MAX_PARTIES: u32 = COUNT_MASK;

/// A process-shared barrier (Python's `threading.Barrier` semantics, as `multiprocessing.Barrier`).
///
/// # State
///
/// ```text
/// state (futex word, u32)
///   bit 31       BROKEN     waiters and arrivals fail with Error::BrokenBarrier until reset()
///   bit 30       RESETTING  reset() while parties waited: they fail; arrivals wait until they left
///   bits 16..=29 generation bumped (wrapping) when the last party arrives
///   bits 0..=15  count      parties waiting in this generation
/// parties  u32              fixed at creation (1..=65535)
/// ```
///
/// Arriving is a compare-and-swap `count → count + 1`; the last party swaps `count → 0` and
/// `generation → generation + 1` in the same word and wakes everyone, so a fast party that comes
/// round again is counted in the new generation and can never be mistaken for a late one of the old
/// (generations do not mix). Waiters sleep on the whole word and return when the generation moves
/// (success) or a break flag appears (failure; they then leave, decrementing the count).
///
/// A party whose process dies while it waits stays counted: its generation trips when the other
/// parties have arrived (one arrival early), and the next generation waits for a party that will
/// never come, so use timeouts (which break the barrier for everyone) when parties may die. (The
/// typed [`crate::Barrier`] watches its waiting parties and breaks the barrier instead.)
#[repr(C)]
#[derive(Debug)]
pub struct RawBarrier {
    state: AtomicU32,
    parties: AtomicU32,
}

fn generation(state: u32) -> u32 {
    state & GEN_MASK
}

impl RawBarrier {
    const_fn_unless_loom! {
        /// A barrier for `parties` parties. `parties` outside `1..=MAX_PARTIES` is clamped into it;
        /// the typed [`crate::Barrier`] rejects it instead.
        pub fn new(parties: u32) -> RawBarrier {
            let parties = if parties == 0 { 1 } else if parties > MAX_PARTIES { MAX_PARTIES } else { parties };
            RawBarrier { state: AtomicU32::new(0), parties: AtomicU32::new(parties) }
        }
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed).clamp(1, MAX_PARTIES)
    }

    /// Waits for the other parties, or until `deadline` passes (which breaks the barrier).
    /// Returns the arrival index, `0` for the first party to arrive.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken (abort, reset, a timeout).
    pub fn wait_until(&self, deadline: Option<Deadline>) -> Result<u32, Error> {
        let parties = self.parties();
        // Arrive.
        let (index, generation_in) = loop {
            let state = self.state.load(Ordering::Acquire);
            if state & BROKEN != 0 {
                return Err(Error::BrokenBarrier);
            }
            if state & RESETTING != 0 {
                // A reset is draining the previous waiters: wait for it to finish.
                if deadline.is_some_and(|d| d.has_passed())
                    || futex::wait(&self.state, state, deadline) == Wait::TimedOut
                {
                    self.abort();
                    return Err(Error::BrokenBarrier);
                }
                continue;
            }
            let count = state & COUNT_MASK;
            if count + 1 >= parties {
                // The last one: trip the barrier and start the next generation.
                let next = generation(state).wrapping_add(1 << GEN_SHIFT) & GEN_MASK;
                if self
                    .state
                    .compare_exchange(state, next, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    if parties > 1 {
                        futex::wake_all(&self.state);
                    }
                    return Ok(count);
                }
                continue;
            }
            if self
                .state
                .compare_exchange(state, state + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break (count, generation(state));
            }
        };
        // Wait for the generation to move on (or a break): spin first, then sleep.
        let _ = spin(deadline.as_ref(), || {
            let state = self.state.load(Ordering::Relaxed);
            if generation(state) != generation_in || state & (BROKEN | RESETTING) != 0 {
                SpinPoll::Ready(())
            } else {
                SpinPoll::Pending
            }
        });
        loop {
            let state = self.state.load(Ordering::Acquire);
            if generation(state) != generation_in {
                return Ok(index);
            }
            if state & (BROKEN | RESETTING) != 0 {
                self.leave();
                return Err(Error::BrokenBarrier);
            }
            if deadline.is_some_and(|d| d.has_passed())
                || futex::wait(&self.state, state, deadline) == Wait::TimedOut
            {
                // Timing out breaks the barrier for everyone, unless it tripped just now.
                if self.break_unless_tripped(generation_in) {
                    self.leave();
                    return Err(Error::BrokenBarrier);
                }
                return Ok(index);
            }
        }
    }

    /// Sets BROKEN unless generation `generation_in` has already tripped; returns whether the
    /// barrier is now broken for this waiter. A reset under way fails the waiter without breaking
    /// the barrier (the reset, not the timeout, ended the wait, as in Python).
    fn break_unless_tripped(&self, generation_in: u32) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if generation(state) != generation_in {
                return false;
            }
            if state & (BROKEN | RESETTING) != 0 {
                return true;
            }
            match self.state.compare_exchange_weak(
                state,
                state | BROKEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    futex::wake_all(&self.state);
                    return true;
                }
                Err(seen) => state = seen,
            }
        }
    }

    /// A waiter of a broken or resetting generation leaves; the last one out of a reset ends it.
    /// An abort that came during the reset stays (BROKEN is only cleared by `reset` itself).
    fn leave(&self) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            // This waiter is counted, so the count is positive; a peer that scribbled a zero
            // count must not make the subtraction borrow from the generation (or panic).
            let count = (state & COUNT_MASK).saturating_sub(1);
            let mut next = (state & !COUNT_MASK) | count;
            let finishes_reset = count == 0 && next & RESETTING != 0;
            if finishes_reset {
                next &= !RESETTING;
            }
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if finishes_reset {
                        futex::wake_all(&self.state);
                    }
                    return;
                }
                Err(seen) => state = seen,
            }
        }
    }

    /// Removes one waiting party that can no longer leave by itself (its process died while it
    /// was counted in), as a party leaves after a break; ends a reset it was holding up. The
    /// typed [`crate::Barrier`] calls it for each dead party it finds (after breaking the
    /// barrier), so that the count and `reset` are not left waiting for them.
    pub fn forget_dead_party(&self) {
        self.leave();
    }

    /// Breaks the barrier: current and future waiters fail until [`RawBarrier::reset`].
    pub fn abort(&self) {
        let previous = self.state.fetch_or(BROKEN, Ordering::AcqRel);
        if previous & BROKEN == 0 {
            futex::wake_all(&self.state);
        }
    }

    /// Returns the barrier to its initial state. Parties waiting now fail with
    /// [`Error::BrokenBarrier`]; parties arriving while they leave wait, then proceed normally.
    pub fn reset(&self) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let next = if state & COUNT_MASK == 0 {
                state & !(BROKEN | RESETTING)
            } else {
                (state & !BROKEN) | RESETTING
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    futex::wake_all(&self.state);
                    return;
                }
                Err(seen) => state = seen,
            }
        }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state.load(Ordering::Acquire) & BROKEN != 0
    }

    /// How many parties wait in the current generation (0 while broken or resetting).
    pub fn n_waiting(&self) -> u32 {
        let state = self.state.load(Ordering::Acquire);
        if state & (BROKEN | RESETTING) != 0 {
            0
        } else {
            state & COUNT_MASK
        }
    }
}
