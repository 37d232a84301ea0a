//! Models of `RawEvent`: set wakes every waiter; timed waits return.

use crate::support::{model, thread, Arc};
use ipc_sync::futex::Deadline;
use ipc_sync::raw::RawEvent;
use std::time::Duration;

#[test]
fn set_wakes_every_waiter() {
    model(|| {
        let event = Arc::new(RawEvent::new());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let event = Arc::clone(&event);
                thread::spawn(move || assert!(event.wait_until(None)))
            })
            .collect();
        event.set();
        for w in waiters {
            w.join().unwrap();
        }
        assert!(event.is_set());
    });
}

#[test]
fn set_then_clear_still_wakes_and_timed_wait_returns() {
    model(|| {
        let event = Arc::new(RawEvent::new());
        let sleeper = {
            let event = Arc::clone(&event);
            thread::spawn(move || assert!(event.wait_until(None)))
        };
        // Once the waiter has announced itself it has read the generation, so a set followed at
        // once by a clear must still end its wait with `true`.
        while !event.has_waiters() {
            thread::yield_now();
        }
        let timed = {
            let event = Arc::clone(&event);
            thread::spawn(move || event.wait_until(Some(Deadline::after(Duration::from_millis(5)))))
        };
        event.set();
        event.clear();
        sleeper.join().unwrap();
        let _ = timed.join().unwrap();
        assert!(!event.is_set());
    });
}
