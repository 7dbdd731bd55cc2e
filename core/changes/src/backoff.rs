//! Retry timing: exponential backoff with full jitter. The ceiling for
//! attempt `n` (1-based) is `min(cap, base × 2^(n-1))`; the delay is drawn
//! uniformly from `[0, ceiling]` so that many subscribers failing together
//! do not retry together. The random source is injectable for tests.

use std::time::Duration;

/// A source of random 64-bit numbers.
pub trait RandomSource: Send {
    fn next_u64(&mut self) -> u64;
}

/// The operating system's generator (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        // On failure (no entropy source) fall back to the clock: jitter
        // only spreads retries, it protects nothing.
        if getrandom::getrandom(&mut b).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            return u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        u64::from_le_bytes(b)
    }
}

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The largest delay after the `attempt`-th failure (1-based; 0 is
    /// treated as 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(63);
        let base = u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX);
        let cap = u64::try_from(self.cap.as_millis()).unwrap_or(u64::MAX);
        let grown = base.checked_shl(shift).filter(|g| g >> shift == base);
        Duration::from_millis(grown.map_or(cap, |g| g.min(cap)))
    }

    /// The delay before retrying after the `attempt`-th failure: uniform
    /// in `[0, ceiling(attempt)]`, millisecond resolution.
    pub fn delay(&self, attempt: u32, rng: &mut dyn RandomSource) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_millis()).unwrap_or(u64::MAX);
        let span = ceiling.saturating_add(1);
        Duration::from_millis(if span == 0 { 0 } else { rng.next_u64() % span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);
    impl RandomSource for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    /// xorshift64*, deterministic.
    struct XorShift(u64);
    impl RandomSource for XorShift {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    fn b() -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(60),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let ms = |n| b().ceiling(n).as_millis();
        assert_eq!(ms(0), 100);
        assert_eq!(ms(1), 100);
        assert_eq!(ms(2), 200);
        assert_eq!(ms(3), 400);
        assert_eq!(ms(10), 51_200);
        assert_eq!(ms(11), 60_000);
        assert_eq!(ms(64), 60_000);
        assert_eq!(ms(u32::MAX), 60_000);
    }

    #[test]
    fn delay_spans_zero_to_ceiling() {
        assert_eq!(b().delay(3, &mut Fixed(0)), Duration::ZERO);
        assert_eq!(b().delay(3, &mut Fixed(400)), Duration::from_millis(400));
        assert_eq!(b().delay(3, &mut Fixed(401)), Duration::ZERO);
        assert_eq!(
            b().delay(20, &mut Fixed(59_999)),
            Duration::from_millis(59_999)
        );
    }

    #[test]
    fn jittered_delays_stay_in_bounds_and_spread() {
        let mut rng = XorShift(0x1234_5678);
        for attempt in 1..30 {
            let ceiling = b().ceiling(attempt);
            let delays: Vec<_> = (0..200).map(|_| b().delay(attempt, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Full jitter: both halves of the range are used.
            assert!(delays.iter().any(|d| *d < ceiling / 2), "attempt {attempt}");
            assert!(delays.iter().any(|d| *d > ceiling / 2), "attempt {attempt}");
        }
    }

    #[test]
    fn os_random_varies() {
        let mut r = OsRandom;
        let a: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}
