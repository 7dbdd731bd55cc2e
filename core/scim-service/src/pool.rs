//! A bounded connection pool for backends: at most `max` connections
//! open; a taker gets an idle one, opens one while fewer than `max` are
//! open, or waits (up to its deadline) for one to come back. The SQL
//! stores and the LDAP backend use it; what a connection is, and what a
//! backend does around a loan (PostgreSQL's broken-connection check,
//! SQLite's nested reads, LDAP's paging continuations), stays in each.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backend::{BackendError, BackendResult};

/// At most `max` connections of type `C`, lent one at a time.
pub struct BoundedPool<C> {
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
pub struct PoolCounts {
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

    /// Closes every idle connection (after a connection error). They are
    /// closed after the pool's lock is released: closing one may write to
    /// its peer, which must not hold up every taker.
    pub fn clear_idle(&self) {
        let closing = match self.slots.lock() {
            Ok(mut slots) => {
                let idle = std::mem::take(&mut slots.idle);
                slots.open = slots.open.saturating_sub(idle.len());
                if slots.waiting > 0 {
                    self.returned.notify_all();
                }
                idle
            }
            Err(_) => Vec::new(),
        };
        drop(closing);
    }

    /// Takes every idle connection out, to tend them (end what each keeps
    /// open, say) and give each back, or forget it. They count as lent
    /// meanwhile.
    pub fn take_idle(&self) -> Vec<C> {
        self.slots
            .lock()
            .map(|mut slots| std::mem::take(&mut slots.idle))
            .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};

    fn busy() -> BackendError {
        BackendError::Unavailable("busy".into())
    }

    #[test]
    fn at_most_max_are_open_and_a_taker_past_them_waits_then_is_told_busy() {
        let pool = BoundedPool::new(2);
        let opened = AtomicUsize::new(0);
        let open = || Ok(opened.fetch_add(1, Ordering::SeqCst));
        let a = pool.take(Duration::ZERO, open, busy).expect("first");
        let b = pool.take(Duration::ZERO, open, busy).expect("second");
        assert_eq!((a, b), (0, 1));
        let started = Instant::now();
        let third = pool.take(Duration::from_millis(30), open, busy);
        assert!(
            matches!(third, Err(BackendError::Unavailable(_))),
            "{third:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(
            opened.load(Ordering::SeqCst),
            2,
            "no third connection opened"
        );
        pool.give_back(a);
        assert_eq!(pool.take(Duration::ZERO, open, busy).expect("reused"), 0);
        assert_eq!(pool.counts(), Some(PoolCounts { open: 2, idle: 0 }));
    }

    #[test]
    fn a_connection_given_back_goes_to_the_taker_waiting_for_it() {
        let pool = Arc::new(BoundedPool::new(1));
        let held = pool.take(Duration::ZERO, || Ok(7), busy).expect("first");
        let waiter = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || pool.take(Duration::from_secs(10), || Ok(8), busy))
        };
        std::thread::sleep(Duration::from_millis(20));
        pool.give_back(held);
        assert_eq!(waiter.join().expect("no panic").expect("handed over"), 7);
    }

    #[test]
    fn a_failed_open_and_a_forgotten_connection_free_their_slots() {
        let pool: BoundedPool<u8> = BoundedPool::new(1);
        let failed = pool.take(
            Duration::ZERO,
            || Err(BackendError::Backend("refused".into())),
            busy,
        );
        assert!(matches!(failed, Err(BackendError::Backend(_))));
        assert!(pool.has_free(), "the failed open gave its slot back");
        // Lent, then closed by its borrower (broken): forgotten, not given back.
        pool.take(Duration::ZERO, || Ok(1), busy).expect("opened");
        assert!(!pool.has_free());
        pool.forget_one();
        assert_eq!(
            pool.take(Duration::ZERO, || Ok(2), busy).expect("reopened"),
            2
        );
    }

    /// Records whether the pool's lock was free while it was closed.
    struct Probe;
    static PROBED: OnceLock<BoundedPool<Probe>> = OnceLock::new();
    static CLOSED_UNLOCKED: AtomicBool = AtomicBool::new(false);
    impl Drop for Probe {
        fn drop(&mut self) {
            let free = PROBED
                .get()
                .is_some_and(|pool| pool.slots.try_lock().is_ok());
            CLOSED_UNLOCKED.store(free, Ordering::SeqCst);
        }
    }

    #[test]
    fn idle_connections_are_closed_outside_the_lock_and_their_slots_freed() {
        let pool = PROBED.get_or_init(|| BoundedPool::new(1));
        let probe = pool
            .take(Duration::ZERO, || Ok(Probe), busy)
            .expect("opened");
        pool.give_back(probe);
        pool.clear_idle();
        assert!(
            CLOSED_UNLOCKED.load(Ordering::SeqCst),
            "closed under the lock"
        );
        assert_eq!(pool.counts(), Some(PoolCounts { open: 0, idle: 0 }));
    }
}
