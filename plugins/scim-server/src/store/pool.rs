//! The bounded connection pool both SQL stores use: at most `max`
//! connections open; a taker gets an idle one, opens one while fewer than
//! `max` are open, or waits (up to its deadline) for one to come back.
//! What a connection is, and what the stores do around a loan (PostgreSQL's
//! broken-connection check, SQLite's nested reads), stays in each store.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{BackendError, BackendResult};

pub(super) struct BoundedPool<C> {
    slots: Mutex<Slots<C>>,
    returned: Condvar,
    max: usize,
}

struct Slots<C> {
    idle: Vec<C>,
    /// Open connections, idle or lent out (or being opened).
    open: usize,
    /// Takers waiting for a connection: one given back wakes one only when
    /// there is one (a futex wake is a system call).
    waiting: usize,
}

/// Connections of a pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PoolCounts {
    pub open: usize,
    pub idle: usize,
}

impl<C> BoundedPool<C> {
    pub fn new(max: usize) -> BoundedPool<C> {
        BoundedPool {
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
                waiting: 0,
            }),
            returned: Condvar::new(),
            max: max.max(1),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> BackendResult<MutexGuard<'_, Slots<C>>> {
        self.slots
            .lock()
            .map_err(|_| BackendError::Backend("connection pool poisoned".into()))
    }

    /// An idle connection, a new one from `open` while fewer than `max` are
    /// open (a failed open frees its slot), or the first one given back
    /// within `wait`; after that, the error `busy` makes.
    pub fn take(
        &self,
        wait: Duration,
        open: impl FnOnce() -> BackendResult<C>,
        busy: impl FnOnce() -> BackendError,
    ) -> BackendResult<C> {
        let deadline = Instant::now() + wait;
        let mut slots = self.lock()?;
        loop {
            if let Some(conn) = slots.idle.pop() {
                return Ok(conn);
            }
            if slots.open < self.max {
                slots.open += 1;
                drop(slots);
                return open().inspect_err(|_| self.forget_one());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(busy());
            }
            slots.waiting += 1;
            let woken = self.returned.wait_timeout(slots, deadline - now);
            slots = woken
                .map_err(|_| BackendError::Backend("connection pool poisoned".into()))?
                .0;
            slots.waiting -= 1;
        }
    }

    /// Puts a lent connection back for the next taker.
    pub fn give_back(&self, conn: C) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.idle.push(conn);
            self.wake_one(&slots);
        }
    }

    /// One open connection fewer (closed, broken, or never opened).
    pub fn forget_one(&self) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.open = slots.open.saturating_sub(1);
            self.wake_one(&slots);
        }
    }

    /// Closes every idle connection (after a connection error).
    pub fn clear_idle(&self) {
        if let Ok(mut slots) = self.slots.lock() {
            let dropped = slots.idle.len();
            slots.idle.clear();
            slots.open = slots.open.saturating_sub(dropped);
            if slots.waiting > 0 {
                self.returned.notify_all();
            }
        }
    }

    /// Whether a taker would get a connection now without waiting; a hint,
    /// another may take it first.
    pub fn has_free(&self) -> bool {
        self.slots
            .lock()
            .is_ok_and(|slots| !slots.idle.is_empty() || slots.open < self.max)
    }

    /// Open and idle connections now; `None` when the lock is poisoned.
    pub fn counts(&self) -> Option<PoolCounts> {
        self.slots.lock().ok().map(|slots| PoolCounts {
            open: slots.open,
            idle: slots.idle.len(),
        })
    }

    fn wake_one(&self, slots: &Slots<C>) {
        if slots.waiting > 0 {
            self.returned.notify_one();
        }
    }
}
