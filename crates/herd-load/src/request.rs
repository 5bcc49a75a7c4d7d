//! The requests to send, built once, and the weighted choice among them.

use crate::config::{Config, Mode};

/// Every request a run sends, encoded once, with cumulative weights for the choice.
#[derive(Debug, Clone)]
pub(crate) struct Requests {
    encoded: Vec<Vec<u8>>,
    /// `cumulative[i]` is the sum of the weights of paths `0..=i`.
    cumulative: Vec<u64>,
}

impl Requests {
    pub(crate) fn new(config: &Config) -> Requests {
        let mut encoded = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for p in config.paths.iter().filter(|p| p.weight > 0) {
            let mut req = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", p.path, config.host);
            for (name, value) in &config.headers {
                req.push_str(name);
                req.push_str(": ");
                req.push_str(value);
                req.push_str("\r\n");
            }
            if config.mode == Mode::Close {
                req.push_str("Connection: close\r\n");
            }
            req.push_str("\r\n");
            encoded.push(req.into_bytes());
            total += u64::from(p.weight);
            cumulative.push(total);
        }
        Requests {
            encoded,
            cumulative,
        }
    }

    /// Appends one request, chosen by weight, to `out`.
    pub(crate) fn push(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let i = if self.encoded.len() == 1 {
            0
        } else {
            let total = self.cumulative[self.cumulative.len() - 1];
            let x = rng.below(total);
            self.cumulative.partition_point(|&c| c <= x)
        };
        out.extend_from_slice(&self.encoded[i]);
    }
}

/// A small xorshift generator: fast, seeded per thread, good enough to mix paths.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams; never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n`; `n` must be above 0.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WeightedPath;

    #[test]
    fn encodes_and_weighs() {
        let mut c = Config::new("127.0.0.1:1".parse().unwrap());
        c.paths = vec![
            WeightedPath::new("/", 95),
            WeightedPath::new("/never", 0),
            WeightedPath::new("/spin?us=20000", 5),
        ];
        c.mode = Mode::Close;
        let r = Requests::new(&c);
        assert_eq!(
            r.encoded[0],
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n"
        );
        let mut rng = Rng::new(7);
        let (mut root, mut spin) = (0, 0);
        for _ in 0..100_000 {
            let mut out = Vec::new();
            r.push(&mut rng, &mut out);
            if out.starts_with(b"GET / ") {
                root += 1;
            } else {
                assert!(out.starts_with(b"GET /spin?us=20000 "));
                spin += 1;
            }
        }
        assert!((4_000..6_000).contains(&spin), "{root} {spin}");
    }
}
