//! A barrier for the replicas of one process that (a) hands every waiter a
//! value published by one of them, and (b) can be poisoned: once a replica
//! fails, every pending and later `wait` returns an error at once instead
//! of blocking forever (the hang Caffe shows when one GPU thread dies or
//! leaves its loop early).
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Why a barrier was poisoned: the first replica that failed and its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub rank: usize,
    pub reason: String,
}

#[derive(Debug)]
struct State {
    /// Arrivals in the current generation.
    arrived: usize,
    /// Completed generations (a waiter is released when this changes).
    generation: u64,
    /// The value published in the generation being filled ...
    pending: u64,
    /// ... and the value of the last completed generation.
    released: u64,
    poison: Option<Poison>,
}

#[derive(Debug)]
pub struct Barrier {
    parties: usize,
    state: Mutex<State>,
    cv: Condvar,
}

impl Barrier {
    pub fn new(parties: usize) -> Self {
        Barrier {
            parties: parties.max(1),
            state: Mutex::new(State {
                arrived: 0,
                generation: 0,
                pending: 0,
                released: 0,
                poison: None,
            }),
            cv: Condvar::new(),
        }
    }

    pub fn parties(&self) -> usize {
        self.parties
    }

    /// A poisoned mutex only means a replica panicked while holding it; the
    /// state is a few counters that stay consistent, so carry on (the
    /// panicking replica poisons the barrier itself).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poisoned(p: &Poison, rank: usize) -> Error {
        Error::Solver(format!(
            "replica {rank} stopped because replica {} failed: {}",
            p.rank, p.reason
        ))
    }

    /// Wait until all parties have arrived; `publish` (given by at most one
    /// party per generation) becomes the value every party gets back (0 if
    /// nobody published). `rank` only labels the error.
    pub fn wait(&self, rank: usize, publish: Option<u64>) -> Result<u64> {
        let mut s = self.lock();
        if let Some(p) = &s.poison {
            return Err(Self::poisoned(p, rank));
        }
        if let Some(v) = publish {
            s.pending = v;
        }
        s.arrived += 1;
        if s.arrived == self.parties {
            s.arrived = 0;
            s.released = std::mem::take(&mut s.pending);
            s.generation = s.generation.wrapping_add(1);
            self.cv.notify_all();
            return Ok(s.released);
        }
        let generation = s.generation;
        // The next generation cannot complete before this party arrives
        // again, so `released` still holds this generation's value here.
        while s.generation == generation {
            if let Some(p) = &s.poison {
                return Err(Self::poisoned(p, rank));
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        Ok(s.released)
    }

    /// Fail every pending and later `wait`. The first poison is kept (it
    /// names the replica whose error is the cause of the stop).
    pub fn poison(&self, rank: usize, reason: &str) {
        let mut s = self.lock();
        if s.poison.is_none() {
            s.poison = Some(Poison {
                rank,
                reason: reason.to_string(),
            });
        }
        self.cv.notify_all();
    }

    /// The first failure, if any.
    pub fn poison_info(&self) -> Option<Poison> {
        self.lock().poison.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn every_party_gets_the_published_value_each_generation() {
        let b = Arc::new(Barrier::new(3));
        let handles: Vec<_> = (0..3)
            .map(|rank| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..200u64)
                        .map(|g| {
                            let publish = (rank == 0).then_some(g * 10 + 7);
                            b.wait(rank, publish).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let want: Vec<u64> = (0..200).map(|g| g * 10 + 7).collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want);
        }
    }

    #[test]
    fn poison_releases_waiters_promptly_and_sticks() {
        let b = Arc::new(Barrier::new(3));
        let waiters: Vec<_> = (1..3)
            .map(|rank| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let e = b.wait(rank, None).unwrap_err().to_string();
                    (e, t.elapsed())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        b.poison(0, "record '00000041': corrupt");
        b.poison(2, "later failure");
        for w in waiters {
            let (e, waited) = w.join().unwrap();
            assert!(
                e.contains("replica 0 failed") && e.contains("00000041"),
                "{e}"
            );
            assert!(waited < Duration::from_secs(5));
        }
        // Later waits fail at once; the first poison is kept.
        assert!(b.wait(1, None).is_err());
        assert_eq!(b.poison_info().unwrap().rank, 0);
    }
}
