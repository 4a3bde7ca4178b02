//! A small, bounded latency histogram (commit times), so that a run that
//! lasts months keeps constant memory.

use std::time::Duration;

/// Sub-buckets per power of two: percentiles are exact to within 1/16.
const SUB: usize = 16;
/// Powers of two covered, from 1 µs: up to 2^40 µs (about 12 days).
const POWERS: usize = 40;

/// Durations counted in log-linear buckets of microseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; SUB * POWERS]>,
    total: u64,
    max: Duration,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; SUB * POWERS]),
            total: 0,
            max: Duration::ZERO,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("p50", &self.percentile(0.5))
            .field("p99", &self.percentile(0.99))
            .field("max", &self.max)
            .finish()
    }
}

fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    // The power of two at or below `us`, and the sixteenth of it above.
    let power = 63 - us.leading_zeros() as usize;
    let shift = power - SUB.trailing_zeros() as usize;
    let sub = ((us >> shift) as usize) - SUB;
    ((power - 3) * SUB + sub).min(SUB * POWERS - 1)
}

fn upper_bound(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let power = index / SUB + 3;
    let sub = (index % SUB) as u64;
    let shift = power - SUB.trailing_zeros() as usize;
    ((SUB as u64 + sub + 1) << shift) - 1
}

impl Histogram {
    /// Adds every duration `other` counted.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)] += 1;
        self.total += 1;
        self.max = self.max.max(d);
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The longest duration counted.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The duration at or below which a fraction `q` (0..=1) of the counted
    /// ones lie (to within 1/16), or zero when none were counted.
    pub fn percentile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(upper_bound(i)).min(self.max);
            }
        }
        self.max
    }

    /// Milliseconds with two decimals, for logs.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        (self.percentile(q).as_secs_f64() * 100_000.0).round() / 100.0
    }

    /// The largest value recorded, in milliseconds rounded to 0.01 ms.
    pub fn max_ms(&self) -> f64 {
        (self.max().as_secs_f64() * 100_000.0).round() / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for us in (0..100_000u64).chain([1 << 20, 1 << 30, u64::MAX / 2]) {
            let b = bucket(us);
            assert!(b >= last, "bucket of {us} went down");
            last = b;
            if b < SUB * POWERS - 1 {
                assert!(upper_bound(b) >= us, "{us} above its bucket's bound");
                assert!(upper_bound(b) - us <= us / 16 + 1, "{us}: bucket too wide");
            }
        }
    }

    #[test]
    fn percentiles_within_a_sixteenth() {
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.percentile(0.5).as_secs_f64() * 1000.0;
        let p99 = h.percentile(0.99).as_secs_f64() * 1000.0;
        assert!((500.0..=500.0 * 17.0 / 16.0).contains(&p50), "p50 {p50}");
        assert!((990.0..=1000.0).contains(&p99), "p99 {p99}");
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), Duration::from_millis(1000));
        assert_eq!(Histogram::default().percentile(0.5), Duration::ZERO);
    }
}
