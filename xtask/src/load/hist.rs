//! A log-linear latency histogram in nanoseconds: exact below 128 ns, then 64
//! buckets per power of two (under 1.6 % error), grown only as far as the largest
//! value seen, so one per connection stays small.

/// Sub-buckets per power of two above the linear range.
const SUB: u64 = 64;
/// Values below this are counted exactly.
const LINEAR: u64 = 2 * SUB;

/// Counts of latencies.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - u64::from(v.leading_zeros()); // >= 7
    let shift = msb - 6;
    (LINEAR + (msb - 7) * SUB + ((v >> shift) - SUB)) as usize
}

/// The smallest value counted in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let k = (i - LINEAR) / SUB;
    let r = (i - LINEAR) % SUB;
    (SUB + r) << (k + 1)
}

impl Histogram {
    /// Counts one value.
    pub fn record(&mut self, nanos: u64) {
        let i = index(nanos);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many values were counted.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn len(&self) -> u64 {
        self.total
    }

    /// The largest value counted (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the middle of its bucket, at most `max`.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let low = lower_bound(i);
                let high = lower_bound(i + 1);
                return (low + high.saturating_sub(low) / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        for v in (0..5000).chain([1 << 20, (1 << 20) + 12345, u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(lower_bound(i) <= v, "{v}");
            if i + 1 < index(u64::MAX) {
                assert!(v < lower_bound(i + 1), "{v}");
            }
            assert_eq!(index(lower_bound(i)), i);
            if v >= LINEAR && i + 1 < index(u64::MAX) {
                let width = lower_bound(i + 1) - lower_bound(i);
                assert!(width as f64 / v as f64 <= 1.0 / 63.0, "{v}");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.02, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.02, "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
        let mut other = Histogram::default();
        other.record(5);
        h.merge(&other);
        assert_eq!(h.len(), 1001);
        assert_eq!(h.quantile(0.0), 5);
    }
}
