//! Counting responses per server worker, from the value of a response header.

use std::collections::BTreeMap;

use serde::Serialize;

/// How the responses spread over the server's workers, as told by the worker header.
///
/// Every complete response counts, whatever its status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerDistribution {
    /// The header the values were read from.
    pub header: String,
    /// Responses per distinct header value.
    pub counts: BTreeMap<String, u64>,
    /// Complete responses without the header.
    pub missing: u64,
    /// The largest count divided by the smallest, over the values seen; `None` when no value
    /// was seen.
    pub max_min_ratio: Option<f64>,
    /// Jain's fairness index over the values seen, `(Σx)² / (n·Σx²)`: 1 when every worker
    /// answered equally often, `1/n` when one answered everything. `None` when no value was
    /// seen.
    pub jain_index: Option<f64>,
}

impl WorkerDistribution {
    /// The distribution of `counts`, read from `header`, with `missing` responses lacking it.
    pub fn new(header: &str, counts: BTreeMap<String, u64>, missing: u64) -> WorkerDistribution {
        let values = || counts.values().map(|&c| c as f64);
        let (max_min_ratio, jain_index) = if counts.is_empty() {
            (None, None)
        } else {
            let max = values().fold(f64::MIN, f64::max);
            let min = values().fold(f64::MAX, f64::min);
            let sum: f64 = values().sum();
            let sum_sq: f64 = values().map(|x| x * x).sum();
            let n = counts.len() as f64;
            let ratio = if min > 0.0 { max / min } else { f64::INFINITY };
            let jain = if sum_sq > 0.0 {
                sum * sum / (n * sum_sq)
            } else {
                1.0
            };
            (Some(ratio), Some(jain))
        };
        WorkerDistribution {
            header: header.to_string(),
            counts,
            missing,
            max_min_ratio,
            jain_index,
        }
    }
}

/// One thread's tally: header values are interned once, then counted by index, so that counting
/// a response allocates nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerTally {
    names: Vec<Box<[u8]>>,
    counts: Vec<u64>,
    missing: u64,
}

impl WorkerTally {
    /// The index of `value`, added on first sight.
    pub(crate) fn intern(&mut self, value: &[u8]) -> u32 {
        match self.names.iter().position(|n| **n == *value) {
            Some(i) => i as u32,
            None => {
                self.names.push(value.into());
                self.counts.push(0);
                (self.names.len() - 1) as u32
            }
        }
    }

    /// Counts one complete response.
    pub(crate) fn count(&mut self, worker: Option<u32>) {
        match worker {
            Some(i) => self.counts[i as usize] += 1,
            None => self.missing += 1,
        }
    }

    /// Adds this tally into `into`, keyed by the header values as text.
    pub(crate) fn merge_into(&self, into: &mut BTreeMap<String, u64>, missing: &mut u64) {
        for (name, &count) in self.names.iter().zip(&self.counts) {
            if count > 0 {
                *into
                    .entry(String::from_utf8_lossy(name).into_owned())
                    .or_default() += count;
            }
        }
        *missing += self.missing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fairness() {
        let d = WorkerDistribution::new(
            "X-W",
            [("a".to_string(), 10), ("b".to_string(), 10)].into(),
            0,
        );
        assert_eq!(d.max_min_ratio, Some(1.0));
        assert_eq!(d.jain_index, Some(1.0));
        let d = WorkerDistribution::new(
            "X-W",
            [("a".to_string(), 30), ("b".to_string(), 10)].into(),
            2,
        );
        assert_eq!(d.max_min_ratio, Some(3.0));
        assert_eq!(d.jain_index, Some(1600.0 / 2000.0));
        let d = WorkerDistribution::new("X-W", BTreeMap::new(), 5);
        assert_eq!((d.max_min_ratio, d.jain_index), (None, None));
    }

    #[test]
    fn tally() {
        let mut t = WorkerTally::default();
        let a = t.intern(b"a");
        let b = t.intern(b"b");
        assert_eq!(t.intern(b"a"), a);
        t.count(Some(a));
        t.count(Some(a));
        t.count(Some(b));
        t.count(None);
        let _unused = t.intern(b"c");
        let (mut m, mut missing) = (BTreeMap::new(), 0);
        t.merge_into(&mut m, &mut missing);
        t.merge_into(&mut m, &mut missing);
        assert_eq!(m, [("a".to_string(), 4), ("b".to_string(), 2)].into());
        assert_eq!(missing, 2);
    }
}
