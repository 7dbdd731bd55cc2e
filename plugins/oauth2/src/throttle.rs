//! Temporary lockout after repeated failed authentications, per client id
//! and per client IP. A growing delay would block the host's workers, so a
//! key that failed `max_failures` times within `window` is refused (429 with
//! `Retry-After`) until that window ends. Memory is bounded by a cap on
//! tracked keys (oldest evicted) and windows expire.

use std::sync::Mutex;

use crate::cache::BoundedCache;

#[derive(Clone, Copy)]
struct Window {
    start_ms: i64,
    failures: u32,
}

pub struct FailureLockout {
    max_failures: u32,
    window_ms: i64,
    windows: Mutex<BoundedCache<String, Window>>,
}

impl FailureLockout {
    pub fn new(max_failures: u32, window_ms: i64, max_tracked: usize) -> Self {
        FailureLockout {
            max_failures,
            window_ms,
            windows: Mutex::new(BoundedCache::new(max_tracked)),
        }
    }

    /// Seconds to wait when any of `keys` is locked out at `now_ms`.
    pub fn locked(&self, keys: &[&str], now_ms: i64) -> Option<u64> {
        if self.max_failures == 0 {
            return None;
        }
        let mut windows = self.windows.lock().ok()?;
        keys.iter()
            .filter_map(|key| {
                let w = *windows.get(*key, now_ms)?;
                (w.failures >= self.max_failures).then(|| {
                    let remaining = w.start_ms + self.window_ms - now_ms;
                    u64::try_from((remaining + 999) / 1000).unwrap_or(1).max(1)
                })
            })
            .max()
    }

    pub fn record_failure(&self, keys: &[&str], now_ms: i64) {
        if self.max_failures == 0 {
            return;
        }
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        for key in keys {
            match windows.get_mut(*key, now_ms) {
                Some(w) => w.failures = w.failures.saturating_add(1),
                None => windows.insert(
                    (*key).to_string(),
                    Window {
                        start_ms: now_ms,
                        failures: 1,
                    },
                    now_ms.saturating_add(self.window_ms),
                ),
            }
        }
    }

    pub fn reset(&self, key: &str) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_n_failures_and_recovers_after_the_window() {
        let l = FailureLockout::new(3, 60_000, 100);
        for t in 0..3 {
            assert_eq!(l.locked(&["c:a"], t * 1000), None);
            l.record_failure(&["c:a", "ip:1"], t * 1000);
        }
        assert_eq!(l.locked(&["c:a"], 3000), Some(57));
        assert_eq!(l.locked(&["ip:1"], 3000), Some(57));
        assert_eq!(l.locked(&["c:b"], 3000), None);
        assert_eq!(l.locked(&["c:a"], 60_000), None);
        l.reset("ip:1");
        assert_eq!(l.locked(&["ip:1"], 3000), None);
    }

    #[test]
    fn zero_disables_the_lockout() {
        let l = FailureLockout::new(0, 60_000, 100);
        for _ in 0..10 {
            l.record_failure(&["k"], 0);
        }
        assert_eq!(l.locked(&["k"], 0), None);
    }
}
