//! In-memory change log and position store: the reference implementation
//! of [`ChangeSource`] and [`PositionStore`], for tests, examples and the
//! SQL stores' conformance tests. Not durable.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::deliver::{ChangeSource, Position, PositionStore};
use crate::record::Change;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An append-only log in memory.
#[derive(Debug, Default)]
pub struct MemoryLog {
    inner: Mutex<LogInner>,
}

#[derive(Debug, Default)]
struct LogInner {
    changes: Vec<Change>,
    last_seq: u64,
}

impl MemoryLog {
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    /// Appends `change` with the next `seq` (the given one is ignored) and
    /// returns that seq.
    pub fn append(&self, mut change: Change) -> u64 {
        let mut inner = lock(&self.inner);
        inner.last_seq += 1;
        change.seq = inner.last_seq;
        inner.changes.push(change);
        inner.last_seq
    }

    /// Retention: removes the entries every subscriber has passed
    /// (`seq <= passed_by_all`, see [`prune_horizon`]) that are older than
    /// `older_than_ms`. Returns how many were removed.
    pub fn prune(&self, passed_by_all: u64, older_than_ms: i64) -> usize {
        let mut inner = lock(&self.inner);
        let before = inner.changes.len();
        inner
            .changes
            .retain(|c| c.seq > passed_by_all || c.at >= older_than_ms);
        before - inner.changes.len()
    }

    /// The oldest retained seq.
    pub fn oldest_seq(&self) -> Option<u64> {
        lock(&self.inner).changes.first().map(|c| c.seq)
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChangeSource for MemoryLog {
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, String> {
        let inner = lock(&self.inner);
        let start = inner.changes.partition_point(|c| c.seq <= after);
        Ok(inner.changes[start..].iter().take(limit).cloned().collect())
    }

    fn newest_seq(&self) -> Result<u64, String> {
        Ok(lock(&self.inner).last_seq)
    }
}

/// The highest seq every subscriber has passed: the minimum of their
/// acknowledged positions (a dead-lettered subscriber holds retention back
/// too). `None` without subscribers: then nothing is pruned on their
/// account.
pub fn prune_horizon<'a>(positions: impl IntoIterator<Item = &'a Position>) -> Option<u64> {
    positions.into_iter().map(|p| p.acked).min()
}

/// Positions and leases in memory.
#[derive(Debug, Default)]
pub struct MemoryPositions {
    positions: Mutex<HashMap<String, Position>>,
    leases: Mutex<HashMap<String, (String, i64)>>,
}

impl MemoryPositions {
    pub fn new() -> MemoryPositions {
        MemoryPositions::default()
    }

    /// Who holds the lease of `subscriber` and until when.
    pub fn lease_holder(&self, subscriber: &str) -> Option<(String, i64)> {
        lock(&self.leases).get(subscriber).cloned()
    }
}

impl PositionStore for MemoryPositions {
    fn load(&self, subscriber: &str) -> Result<Position, String> {
        Ok(lock(&self.positions)
            .get(subscriber)
            .cloned()
            .unwrap_or_default())
    }

    fn save(&self, subscriber: &str, pos: &Position) -> Result<bool, String> {
        let mut positions = lock(&self.positions);
        let stored_rev = positions.get(subscriber).map_or(0, |p| p.rev);
        if stored_rev != pos.rev {
            return Ok(false);
        }
        let mut next = pos.clone();
        next.rev = pos.rev + 1;
        positions.insert(subscriber.to_owned(), next);
        Ok(true)
    }

    fn try_lease(
        &self,
        subscriber: &str,
        node: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<bool, String> {
        let mut leases = lock(&self.leases);
        if let Some((holder, until)) = leases.get(subscriber) {
            if holder != node && *until > now_ms {
                return Ok(false);
            }
        }
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        leases.insert(
            subscriber.to_owned(),
            (node.to_owned(), now_ms.saturating_add(ttl)),
        );
        Ok(true)
    }

    fn release(&self, subscriber: &str, node: &str) -> Result<(), String> {
        let mut leases = lock(&self.leases);
        if leases
            .get(subscriber)
            .is_some_and(|(holder, _)| holder == node)
        {
            leases.remove(subscriber);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Op;

    fn change(at: i64) -> Change {
        Change {
            seq: 0,
            at,
            resource_type: "User".into(),
            resource_id: format!("u{at}"),
            op: Op::Create,
            version: None,
            provider_id: "p".into(),
            client_id: None,
            attributes: vec![],
            via: None,
        }
    }

    #[test]
    fn log_assigns_seqs_and_pages_in_order() {
        let log = MemoryLog::new();
        for at in 0..5 {
            assert_eq!(log.append(change(at)), at as u64 + 1);
        }
        let page = log.changes_after(1, 2).unwrap();
        assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 3]);
        assert!(log.changes_after(5, 10).unwrap().is_empty());
        assert_eq!(log.newest_seq().unwrap(), 5);
    }

    #[test]
    fn prune_needs_both_every_subscriber_past_and_the_window() {
        let log = MemoryLog::new();
        for at in [100, 200, 300, 400] {
            log.append(change(at));
        }
        let a = Position {
            acked: 3,
            ..Position::default()
        };
        let b = Position {
            acked: 2,
            ..Position::default()
        };
        let horizon = prune_horizon([&a, &b]).unwrap();
        assert_eq!(horizon, 2);
        // Window: only entries older than 150 go, although 2 were passed.
        assert_eq!(log.prune(horizon, 150), 1);
        assert_eq!(log.oldest_seq(), Some(2));
        // Window elapsed for all: still only up to the slowest subscriber.
        assert_eq!(log.prune(horizon, 10_000), 1);
        assert_eq!(log.oldest_seq(), Some(3));
        assert_eq!(log.newest_seq().unwrap(), 4);
        assert_eq!(prune_horizon(std::iter::empty::<&Position>()), None);
    }

    #[test]
    fn save_is_compare_and_swap() {
        let s = MemoryPositions::new();
        let mut p = s.load("x").unwrap();
        p.acked = 1;
        assert!(s.save("x", &p).unwrap());
        // Stale rev: refused, nothing written.
        p.acked = 2;
        assert!(!s.save("x", &p).unwrap());
        assert_eq!(s.load("x").unwrap().acked, 1);
        let mut fresh = s.load("x").unwrap();
        assert_eq!(fresh.rev, 1);
        fresh.acked = 2;
        assert!(s.save("x", &fresh).unwrap());
        assert_eq!(s.load("x").unwrap().rev, 2);
    }

    #[test]
    fn lease_is_exclusive_until_it_expires_or_is_released() {
        let s = MemoryPositions::new();
        let ttl = Duration::from_millis(100);
        assert!(s.try_lease("x", "a", ttl, 0).unwrap());
        assert!(!s.try_lease("x", "b", ttl, 50).unwrap());
        assert!(s.try_lease("x", "a", ttl, 50).unwrap()); // renewal, to 150
        assert!(!s.try_lease("x", "b", ttl, 149).unwrap());
        assert!(s.try_lease("x", "b", ttl, 150).unwrap()); // expired: handed over
        s.release("x", "a").unwrap(); // not a's any more: no effect
        assert_eq!(s.lease_holder("x").unwrap().0, "b");
        s.release("x", "b").unwrap();
        assert!(s.try_lease("x", "a", ttl, 151).unwrap());
        // Another subscriber's lease is independent.
        assert!(s.try_lease("y", "b", ttl, 151).unwrap());
    }
}
