//! A background thread that prepares whole batches ahead of the forward
//! pass (Caffe's prefetch thread), sending them through a bounded channel
//! of `prefetch` batches. Loading errors and panics reach the consumer as
//! errors on its next `next()`; dropping the `Prefetcher` stops and joins
//! the thread.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvError};

use super::position::StreamPos;
use crate::error::{Error, Result};

/// One prepared batch on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Shape of the data top (batch first).
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// One label per item, when the layer has a label top.
    pub labels: Option<Vec<f32>>,
    /// Times the source went back to its first record while loading it.
    pub restarts: u64,
    /// Where the loader stood after making this batch, i.e. where the
    /// batch after it comes from (see `position`); `None` for loaders that
    /// do not track it.
    pub pos: Option<StreamPos>,
}

/// Batches handed out and the time consumers spent blocked waiting for
/// them, over all prefetchers of the process: a consumer that never waits
/// on data shows a near-zero total (`rcaffe train` can report it).
static BATCHES: AtomicU64 = AtomicU64::new(0);
static WAITED_NS: AtomicU64 = AtomicU64::new(0);

/// See [`wait_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStats {
    pub batches: u64,
    pub waited: Duration,
}

/// Totals since the start of the process.
pub fn wait_stats() -> WaitStats {
    WaitStats {
        batches: BATCHES.load(Ordering::Relaxed),
        waited: Duration::from_nanos(WAITED_NS.load(Ordering::Relaxed)),
    }
}

pub struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    /// The error that stopped the thread, repeated on later calls.
    failed: Option<String>,
    /// This prefetcher's share of [`wait_stats`].
    stats: WaitStats,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Prefetcher {
    /// Start a thread named `name` that calls `load` for batch after batch,
    /// keeping at most `capacity` finished batches queued (0: each batch is
    /// handed over as soon as it is made, with nothing queued).
    pub fn spawn<F>(name: &str, capacity: usize, mut load: F) -> Result<Self>
    where
        F: FnMut() -> Result<Batch> + Send + 'static,
    {
        let (tx, rx) = bounded(capacity);
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || loop {
                let item = match catch_unwind(AssertUnwindSafe(&mut load)) {
                    Ok(r) => r,
                    Err(p) => Err(Error::Data(format!(
                        "data prefetch thread panicked: {}",
                        panic_message(&*p)
                    ))),
                };
                let stop = item.is_err();
                // A send fails only when the consumer is gone: stop quietly.
                if tx.send(item).is_err() || stop {
                    return;
                }
            })
            .map_err(|e| Error::Data(format!("cannot start the data prefetch thread: {e}")))?;
        Ok(Prefetcher {
            rx: Some(rx),
            handle: Some(handle),
            failed: None,
            stats: WaitStats {
                batches: 0,
                waited: Duration::ZERO,
            },
        })
    }

    /// Batches handed out by this prefetcher and the time spent waiting
    /// for them.
    pub fn stats(&self) -> WaitStats {
        self.stats
    }

    /// The next batch, waiting for it if needed; the thread's error if it
    /// failed.
    pub fn next_batch(&mut self) -> Result<Batch> {
        if let Some(msg) = &self.failed {
            return Err(Error::Data(format!(
                "data prefetching stopped after an earlier error: {msg}"
            )));
        }
        let rx = self.rx.as_ref().expect("receiver lives until drop");
        let t = Instant::now();
        let got = rx.recv();
        let waited = t.elapsed();
        WAITED_NS.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        self.stats.waited += waited;
        match got {
            Ok(Ok(b)) => {
                BATCHES.fetch_add(1, Ordering::Relaxed);
                self.stats.batches += 1;
                Ok(b)
            }
            Ok(Err(e)) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
            Err(RecvError) => {
                // Only reachable if the thread died without sending its error.
                let msg = match self.handle.take().map(|h| h.join()) {
                    Some(Err(p)) => {
                        format!("data prefetch thread panicked: {}", panic_message(&*p))
                    }
                    _ => "data prefetch thread stopped unexpectedly".to_string(),
                };
                self.failed = Some(msg.clone());
                Err(Error::Data(msg))
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Disconnecting wakes a thread blocked on a full channel; it then
        // returns after the batch it is making, and we wait for it.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn batch(i: usize) -> Batch {
        Batch {
            shape: vec![1],
            data: vec![i as f32],
            labels: None,
            restarts: 0,
            pos: None,
        }
    }

    #[test]
    fn batches_in_order_and_bounded() {
        let made = Arc::new(AtomicUsize::new(0));
        let m = made.clone();
        let mut p =
            Prefetcher::spawn("t", 2, move || Ok(batch(m.fetch_add(1, Ordering::SeqCst)))).unwrap();
        let before = wait_stats();
        for i in 0..5 {
            assert_eq!(p.next_batch().unwrap().data, vec![i as f32]);
        }
        assert!(wait_stats().batches >= before.batches + 5);
        assert_eq!(p.stats().batches, 5);
        std::thread::sleep(std::time::Duration::from_millis(50));
        // 5 taken, 2 queued, 1 blocked in send.
        assert!(made.load(Ordering::SeqCst) <= 8);
        drop(p); // must not hang
    }

    #[test]
    fn errors_and_panics_reach_the_consumer() {
        let mut n = 0;
        let mut p = Prefetcher::spawn("t", 4, move || {
            n += 1;
            if n == 3 {
                return Err(Error::Data("record '00000002': corrupt".into()));
            }
            Ok(batch(n))
        })
        .unwrap();
        assert!(p.next_batch().is_ok());
        assert!(p.next_batch().is_ok());
        let e = p.next_batch().unwrap_err().to_string();
        assert!(e.contains("00000002"), "{e}");
        let e = p.next_batch().unwrap_err().to_string();
        assert!(e.contains("earlier error") && e.contains("00000002"), "{e}");

        let mut p = Prefetcher::spawn("t", 1, || -> Result<Batch> { panic!("boom") }).unwrap();
        let e = p.next_batch().unwrap_err().to_string();
        assert!(e.contains("panicked") && e.contains("boom"), "{e}");
    }
}
