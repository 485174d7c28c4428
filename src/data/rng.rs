//! Caffe's random stream for data layers: `boost::mt19937` (identical to
//! `std::mt19937`), so that random mirrors and crops follow Caffe's choices
//! for the same `random_seed`.

const N: usize = 624;
const M: usize = 397;

/// The 32-bit Mersenne Twister MT19937.
#[derive(Clone, PartialEq, Eq)]
pub struct Mt19937 {
    mt: [u32; N],
    idx: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, idx: N }
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % N] & 0x7fff_ffff);
            let mut v = self.mt[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.idx = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.idx >= N {
            self.twist();
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// The generator's state (the 624 words and the position in them), to
    /// continue the stream in another process (rcaffe's data positions).
    pub fn state(&self) -> (&[u32], usize) {
        (&self.mt, self.idx)
    }

    /// A generator continuing from a [`state`](Self::state); `None` when the
    /// words or the position are not a state this generator can be in.
    pub fn from_state(words: &[u32], idx: usize) -> Option<Self> {
        let mt: [u32; N] = words.try_into().ok()?;
        (idx <= N).then_some(Mt19937 { mt, idx })
    }

    /// Caffe's `DataTransformer::Rand(n)`: one draw modulo `n` (n > 0).
    pub fn rand(&mut self, n: u32) -> u32 {
        self.next_u32() % n
    }

    /// `boost::uniform_int(0, max)` over this engine: draws are split into
    /// `max + 1` equal buckets and draws past the last bucket are rejected.
    pub fn uniform_int(&mut self, max: u32) -> u32 {
        if max == u32::MAX {
            return self.next_u32();
        }
        let brange = u32::MAX as u64;
        let n = max as u64 + 1;
        let mut bucket = brange / n;
        if brange % n == max as u64 {
            bucket += 1;
        }
        loop {
            let r = self.next_u32() as u64 / bucket;
            if r <= max as u64 {
                return r as u32;
            }
        }
    }
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mt19937 {{ idx: {}, .. }}", self.idx)
    }
}

/// Caffe's `shuffle(begin, end, gen)` (`caffe/util/rng.hpp`): from the last
/// element down, swap element `i` with one drawn uniformly from `0..=i`.
pub fn caffe_shuffle<T>(v: &mut [T], g: &mut Mt19937) {
    for i in (1..v.len()).rev() {
        let j = g.uniform_int(i as u32) as usize;
        v.swap(i, j);
    }
}

/// glibc's `rand()` (the TYPE_3 additive feedback generator), which
/// `std::random_shuffle` uses: Caffe's HDF5Data shuffles with it, never
/// seeded, i.e. from glibc's default seed 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlibcRand {
    r: [u32; 34],
    i: usize,
}

impl GlibcRand {
    pub fn new(seed: u32) -> Self {
        let mut r = [0u32; 34];
        r[0] = if seed == 0 { 1 } else { seed };
        for i in 1..31 {
            // 16807 * r[i-1] % (2^31 - 1) by Schrage's method, as glibc.
            let prev = r[i - 1] as i32;
            let (hi, lo) = (prev / 127_773, prev % 127_773);
            let mut word = 16_807 * lo - 2_836 * hi;
            if word < 0 {
                word += 2_147_483_647;
            }
            r[i] = word as u32;
        }
        for i in 31..34 {
            r[i] = r[i - 31];
        }
        let mut g = GlibcRand { r, i: 0 };
        // glibc discards the first 310 outputs.
        for _ in 0..310 {
            g.step();
        }
        g
    }

    fn step(&mut self) -> u32 {
        // r[k] = r[k-31] + r[k-3] over a ring of the last 34 values.
        let v = self.r[(self.i + 3) % 34].wrapping_add(self.r[(self.i + 31) % 34]);
        self.r[self.i] = v;
        self.i = (self.i + 1) % 34;
        v
    }

    /// The generator's state (its ring of 34 words and the position), to
    /// continue the stream in another process.
    pub fn state(&self) -> (&[u32], usize) {
        (&self.r, self.i)
    }

    /// A generator continuing from a [`state`](Self::state).
    pub fn from_state(words: &[u32], i: usize) -> Option<Self> {
        let r: [u32; 34] = words.try_into().ok()?;
        (i < 34).then_some(GlibcRand { r, i })
    }

    /// The next `rand()` value, in `0..=RAND_MAX` (2^31 - 1).
    pub fn rand(&mut self) -> u32 {
        self.step() >> 1
    }
}

/// libstdc++'s `std::random_shuffle(first, last)`: for each i from 1,
/// swap element i with element `rand() % (i + 1)`.
pub fn std_random_shuffle<T>(v: &mut [T], g: &mut GlibcRand) {
    for i in 1..v.len() {
        let j = g.rand() as usize % (i + 1);
        v.swap(i, j);
    }
}

/// The seed Caffe gives a prefetching data layer's transformer when the
/// layer is the first consumer of the global stream seeded with `seed`:
/// `DataTransformer::InitRand` runs twice during set-up (once in
/// `BaseDataLayer::LayerSetUp`, once before the prefetch thread starts), so
/// the transformer keeps the second `caffe_rng_rand()` draw.
pub fn transformer_seed(seed: u64) -> u32 {
    let mut g = Mt19937::new(seed as u32);
    g.next_u32();
    g.next_u32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_std_mt19937() {
        // std::mt19937 with its default seed 5489: the 10000th output is
        // 4123659995 (C++11 [rand.predef]).
        let mut g = Mt19937::new(5489);
        let mut v = 0;
        for _ in 0..10000 {
            v = g.next_u32();
        }
        assert_eq!(v, 4_123_659_995);
        let mut g = Mt19937::new(5489);
        assert_eq!(g.next_u32(), 3_499_211_612);
    }

    #[test]
    fn states_continue_the_streams() {
        let mut a = Mt19937::new(42);
        for _ in 0..700 {
            a.next_u32();
        }
        let (w, i) = a.state();
        let mut b = Mt19937::from_state(w, i).unwrap();
        assert_eq!(a, b);
        for _ in 0..1000 {
            assert_eq!(a.next_u32(), b.next_u32());
        }
        assert!(Mt19937::from_state(&[0; 623], 0).is_none());
        assert!(Mt19937::from_state(&[0; 624], 625).is_none());

        let mut g = GlibcRand::new(1);
        g.rand();
        let (w, i) = g.state();
        let mut h = GlibcRand::from_state(w, i).unwrap();
        for _ in 0..100 {
            assert_eq!(g.rand(), h.rand());
        }
        assert!(GlibcRand::from_state(&[0; 34], 34).is_none());
    }

    #[test]
    fn glibc_rand_sequence() {
        // glibc: srand(1); rand() → 1804289383, 846930886, 1681692777, ...
        let mut g = GlibcRand::new(1);
        let v: Vec<u32> = (0..5).map(|_| g.rand()).collect();
        assert_eq!(
            v,
            vec![1804289383, 846930886, 1681692777, 1714636915, 1957747793]
        );
        let mut s: Vec<u32> = (0..10).collect();
        std_random_shuffle(&mut s, &mut GlibcRand::new(1));
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn uniform_int_buckets_like_boost() {
        // max + 1 = 2^k divides 2^32: a bucket of 2^(32-k), never rejected.
        let mut a = Mt19937::new(7);
        let mut b = Mt19937::new(7);
        for _ in 0..100 {
            assert_eq!(a.uniform_int(3), b.next_u32() >> 30);
        }
        // Otherwise bucket = (2^32 - 1) / (max + 1) and high draws retry.
        let mut a = Mt19937::new(9);
        let mut b = Mt19937::new(9);
        let bucket = u32::MAX / 3;
        for _ in 0..100 {
            let want = loop {
                let r = b.next_u32() / bucket;
                if r <= 2 {
                    break r;
                }
            };
            assert_eq!(a.uniform_int(2), want);
        }
        let mut v: Vec<u32> = (0..50).collect();
        caffe_shuffle(&mut v, &mut Mt19937::new(1));
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(v, s);
    }
}
