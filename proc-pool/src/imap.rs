//! [`IMap`]: the lazy iterator behind `imap` and `imap_unordered` of both pools.
//!
//! The input is pulled on the consumer's thread, one chunk at a time, only while fewer than
//! `window` chunks are in flight (submitted and not yet all yielded): an endless input works,
//! and memory stays bounded by the window whatever the input's length (PP10: Python's `imap`
//! swallows its whole input first).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::async_result::{Deliver, Items};
use crate::error::{Error, Result};
use crate::waiting::{deadline_after, wait_until, Waited};

struct Inner<R> {
    /// Ordered mode: results by input index.
    by_index: BTreeMap<usize, Result<R>>,
    /// Unordered mode: results in completion order.
    arrived: VecDeque<Result<R>>,
    /// Set when the iterator is dropped: late results are discarded.
    abandoned: bool,
}

/// The shared end the pool delivers into.
pub(crate) struct ImapState<R> {
    inner: Mutex<Inner<R>>,
    cv: Condvar,
    ordered: bool,
    chunksize: usize,
}

impl<R> ImapState<R> {
    pub(crate) fn new(ordered: bool, chunksize: usize) -> Arc<ImapState<R>> {
        Arc::new(ImapState {
            inner: Mutex::new(Inner {
                by_index: BTreeMap::new(),
                arrived: VecDeque::new(),
                abandoned: false,
            }),
            cv: Condvar::new(),
            ordered,
            chunksize,
        })
    }
}

/// Delivers into an [`ImapState`].
pub(crate) struct ImapDeliver<R>(pub(crate) Arc<ImapState<R>>);

impl<R: Send> Deliver<R> for ImapDeliver<R> {
    fn deliver(&self, chunk: usize, items: Items<R>) {
        let st = &self.0;
        let mut g = st.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.abandoned {
            return;
        }
        let base = chunk * st.chunksize;
        for (i, r) in items.into_results().into_iter().enumerate() {
            if st.ordered {
                g.by_index.insert(base + i, r);
            } else {
                g.arrived.push_back(r);
            }
        }
        drop(g);
        st.cv.notify_all();
    }
}

/// Pulls the next chunk of input and submits it as chunk number `chunk`: the number of items
/// submitted, `None` when the input is exhausted, an error when the pool refused the chunk.
pub(crate) type Feed<'a> = Box<dyn FnMut(usize) -> Option<Result<usize>> + 'a>;

/// The iterator returned by `imap`, `imap_unordered` and their `_chunked` forms: one
/// `Result<R>` per input item, in input order (`imap`) or completion order
/// (`imap_unordered`).
///
/// It pulls its input lazily with at most a bounded number of chunks in flight (see
/// [`Pool::imap`](crate::Pool::imap)), so an endless input works. Dropping it early is fine:
/// chunks already submitted still run, their results are discarded.
///
/// A task that failed yields its error in its place and the iteration goes on; if the pool
/// refuses new work (closed or terminated), the iterator yields [`Error::NotRunning`] once
/// after the results of what it had submitted, then ends.
pub struct IMap<'a, R> {
    state: Arc<ImapState<R>>,
    feed: Feed<'a>,
    window: usize,
    chunks_fed: usize,
    items_fed: usize,
    items_yielded: usize,
    next_index: usize,
    exhausted: bool,
    feed_error: Option<Error>,
}

impl<R> fmt::Debug for IMap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.state.ordered)
            .field("items_fed", &self.items_fed)
            .field("items_yielded", &self.items_yielded)
            .field("exhausted", &self.exhausted)
            .finish()
    }
}

impl<'a, R> IMap<'a, R> {
    pub(crate) fn new(state: Arc<ImapState<R>>, feed: Feed<'a>, window: usize) -> IMap<'a, R> {
        IMap {
            state,
            feed,
            window: window.max(1),
            chunks_fed: 0,
            items_fed: 0,
            items_yielded: 0,
            next_index: 0,
            exhausted: false,
            feed_error: None,
        }
    }

    /// An iterator that yields `e` once (an invalid chunksize, say).
    pub(crate) fn failed(e: Error, state: Arc<ImapState<R>>) -> IMap<'a, R> {
        let mut it = IMap::new(state, Box::new(|_| None), 1);
        it.exhausted = true;
        it.feed_error = Some(e);
        it
    }

    /// Items submitted and not yet yielded.
    fn in_flight_items(&self) -> usize {
        self.items_fed - self.items_yielded
    }

    fn top_up(&mut self) {
        let cs = self.state.chunksize;
        while !self.exhausted && self.in_flight_items() < self.window * cs {
            match (self.feed)(self.chunks_fed) {
                None => self.exhausted = true,
                Some(Ok(n)) => {
                    self.chunks_fed += 1;
                    self.items_fed += n;
                    if n < cs {
                        self.exhausted = true;
                    }
                }
                Some(Err(e)) => {
                    self.exhausted = true;
                    self.feed_error = Some(e);
                }
            }
        }
    }

    /// The next result, waiting at most `timeout` for it: `Some(Err(Error::Timeout))` when it
    /// did not come in time (Python's `next(timeout)`), after which it can still be had.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_deadline(deadline_after(timeout))
    }

    fn next_deadline(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        self.top_up();
        let all_yielded = self.exhausted && self.items_yielded == self.items_fed;
        if all_yielded {
            return self.feed_error.take().map(Err);
        }
        let ordered = self.state.ordered;
        let want = self.next_index;
        let g = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (mut g, how) = wait_until(g, &self.state.cv, deadline, |inner| {
            if ordered {
                inner.by_index.contains_key(&want)
            } else {
                !inner.arrived.is_empty()
            }
        });
        match how {
            Waited::Done => {}
            Waited::TimedOut => return Some(Err(Error::Timeout)),
            Waited::Interrupted => return Some(Err(Error::Interrupted)),
        }
        let r = if ordered {
            g.by_index.remove(&want)
        } else {
            g.arrived.pop_front()
        };
        drop(g);
        if r.is_some() {
            self.next_index += 1;
            self.items_yielded += 1;
        }
        r
    }
}

impl<R> Iterator for IMap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_deadline(None)
    }
}

impl<R> Drop for IMap<'_, R> {
    fn drop(&mut self) {
        let mut g = self.state.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.abandoned = true;
        g.by_index.clear();
        g.arrived.clear();
    }
}
