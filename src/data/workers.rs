//! Parallel decode + transform for the data layers: a batch's items are
//! read and their random draws made in order by the prefetch thread (so
//! the result never depends on the number of workers or their timing),
//! then decoded and transformed by a pool of worker threads fed through
//! bounded crossbeam channels, and put back in item order.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Select, Sender};

use super::datum::DecodedDatum;
use super::prefetch::Batch;
use super::transform::{DataTransformer, Draws};
use crate::error::{Error, Result};

/// Worker threads per data layer: `RCAFFE_DATA_WORKERS` when set (≥ 1),
/// else a quarter of the cores, 1 to 4 (1 = decode in the prefetch thread
/// itself). The order of items does not depend on it.
pub fn default_workers() -> usize {
    if let Some(n) = std::env::var("RCAFFE_DATA_WORKERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return n.max(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 4).clamp(1, 4)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

type Job<I> = (usize, I);

/// `n` threads applying one function to inputs; [`map`](Self::map) returns
/// the outputs in input order.
pub struct WorkerPool<I: Send + 'static, O: Send + 'static> {
    jobs: Option<Sender<Job<I>>>,
    results: Receiver<(usize, Result<O>)>,
    handles: Vec<JoinHandle<()>>,
}

impl<I: Send + 'static, O: Send + 'static> WorkerPool<I, O> {
    pub fn new<F>(n: usize, name: &str, f: F) -> Result<Self>
    where
        F: Fn(I) -> Result<O> + Send + Sync + 'static,
    {
        let n = n.max(1);
        // Two jobs and two results per worker in flight at most.
        let (jobs, job_rx) = bounded::<Job<I>>(2 * n);
        let (res_tx, results) = bounded(2 * n);
        let f = Arc::new(f);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (rx, tx, f) = (job_rx.clone(), res_tx.clone(), f.clone());
            let h = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    for (k, input) in rx {
                        let out = catch_unwind(AssertUnwindSafe(|| f(input))).unwrap_or_else(|p| {
                            Err(Error::Data(format!(
                                "data worker panicked: {}",
                                panic_message(&*p)
                            )))
                        });
                        if tx.send((k, out)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::Data(format!("cannot start a data worker thread: {e}")))?;
            handles.push(h);
        }
        Ok(WorkerPool {
            jobs: Some(jobs),
            results,
            handles,
        })
    }

    /// Run `f` on every input; outputs in input order. Sending and
    /// receiving interleave, so bounded queues never deadlock.
    pub fn map(&self, inputs: Vec<I>) -> Vec<Result<O>> {
        let n = inputs.len();
        let jobs = self.jobs.as_ref().expect("jobs sender lives until drop");
        let mut out: Vec<Option<Result<O>>> = (0..n).map(|_| None).collect();
        let mut pending = inputs.into_iter().enumerate();
        let mut next = pending.next();
        let mut got = 0;
        let lost = || Err(Error::Data("data workers stopped unexpectedly".into()));
        while got < n {
            let mut sel = Select::new();
            let send_op = next.as_ref().map(|_| sel.send(jobs));
            let recv_op = sel.recv(&self.results);
            let op = sel.select();
            if Some(op.index()) == send_op {
                let job = next.take().expect("a job to send");
                if op.send(jobs, job).is_err() {
                    break;
                }
                next = pending.next();
            } else {
                debug_assert_eq!(op.index(), recv_op);
                match op.recv(&self.results) {
                    Ok((k, r)) => {
                        out[k] = Some(r);
                        got += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        out.into_iter().map(|o| o.unwrap_or_else(lost)).collect()
    }
}

impl<I: Send + 'static, O: Send + 'static> Drop for WorkerPool<I, O> {
    fn drop(&mut self) {
        // Closing the job queue ends each worker's loop.
        drop(self.jobs.take());
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// One item to load: where it comes from, its random draws, and its name
/// for transform errors (decode errors are named by the decode function).
pub struct ItemJob<T> {
    pub src: T,
    pub draws: Draws,
    pub name: String,
}

/// One transformed item.
pub struct Item {
    pub shape: [usize; 3],
    pub data: Vec<f32>,
    pub label: i32,
}

type DecodeFn<T> = dyn Fn(T) -> Result<DecodedDatum> + Send + Sync;

/// Decode + transform of a data layer's items, in the calling thread
/// (1 worker) or on a [`WorkerPool`].
pub struct ItemLoader<T: Send + 'static> {
    transformer: Arc<DataTransformer>,
    decode: Arc<DecodeFn<T>>,
    pool: Option<WorkerPool<ItemJob<T>, Item>>,
}

fn load_item<T>(t: &DataTransformer, decode: &DecodeFn<T>, job: ItemJob<T>) -> Result<Item> {
    let d = decode(job.src)?;
    let named = |e: Error| Error::Data(format!("{}: {e}", job.name));
    let shape = t.output_shape(&d).map_err(named)?;
    let mut data = vec![0.0; shape.iter().product()];
    t.transform_with(&d, job.draws, &mut data).map_err(named)?;
    Ok(Item {
        shape,
        data,
        label: d.label,
    })
}

impl<T: Send + 'static> ItemLoader<T> {
    /// `transformer` is used for transforms only (the caller draws); errors
    /// from `decode` should name the record or file.
    pub fn new<F>(
        workers: usize,
        name: &str,
        transformer: DataTransformer,
        decode: F,
    ) -> Result<Self>
    where
        F: Fn(T) -> Result<DecodedDatum> + Send + Sync + 'static,
    {
        let transformer = Arc::new(transformer);
        let decode: Arc<DecodeFn<T>> = Arc::new(decode);
        let pool = if workers > 1 {
            let (t, d) = (transformer.clone(), decode.clone());
            Some(WorkerPool::new(workers, name, move |job| {
                load_item(&t, &*d, job)
            })?)
        } else {
            None
        };
        Ok(ItemLoader {
            transformer,
            decode,
            pool,
        })
    }

    /// Load every job; results in job order.
    pub fn run(&self, jobs: Vec<ItemJob<T>>) -> Vec<Result<Item>> {
        match &self.pool {
            Some(p) => p.map(jobs),
            None => jobs
                .into_iter()
                .map(|j| load_item(&self.transformer, &*self.decode, j))
                .collect(),
        }
    }
}

/// Caffe's batch rule: the batch takes its item shape from its first item;
/// every other item must have the same shape. `name(i)` names item `i`
/// (record key or file) in the error.
pub fn assemble_batch(
    items: Vec<Result<Item>>,
    labels: bool,
    restarts: u64,
    name: impl Fn(usize) -> String,
) -> Result<Batch> {
    let n = items.len();
    let mut data = Vec::new();
    let mut label_vals = Vec::with_capacity(if labels { n } else { 0 });
    let mut first = [0; 3];
    for (i, it) in items.into_iter().enumerate() {
        let it = it?;
        if i == 0 {
            first = it.shape;
            data.reserve_exact(n * it.data.len());
        } else if it.shape != first {
            return Err(Error::Data(format!(
                "{} gives a {}x{}x{} item but the batch's first gives {}x{}x{} \
                 (images of different sizes need a crop_size)",
                name(i),
                it.shape[0],
                it.shape[1],
                it.shape[2],
                first[0],
                first[1],
                first[2]
            )));
        }
        data.extend_from_slice(&it.data);
        if labels {
            label_vals.push(it.label as f32);
        }
    }
    let mut shape = vec![n];
    shape.extend(first);
    Ok(Batch {
        shape,
        data,
        labels: labels.then_some(label_vals),
        restarts,
        pos: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::datum::Pixels;
    use crate::proto::caffe::{Phase, TransformationParameter};

    #[test]
    fn pool_keeps_input_order_and_reports_errors_and_panics() {
        let pool = WorkerPool::new(3, "t", |x: u64| {
            // Uneven work so that results arrive out of order.
            std::thread::sleep(std::time::Duration::from_micros((x * 37) % 200));
            match x {
                13 => Err(Error::Data("thirteen".into())),
                17 => panic!("seventeen"),
                _ => Ok(x * 2),
            }
        })
        .unwrap();
        for _ in 0..3 {
            let out = pool.map((0..40).collect());
            for (i, r) in out.into_iter().enumerate() {
                match i {
                    13 => assert!(r.unwrap_err().to_string().contains("thirteen")),
                    17 => assert!(r.unwrap_err().to_string().contains("panicked: seventeen")),
                    _ => assert_eq!(r.unwrap(), 2 * i as u64),
                }
            }
        }
        drop(pool); // joins
    }

    fn datum(v: u8) -> DecodedDatum {
        DecodedDatum {
            channels: 1,
            height: 4,
            width: 5,
            pixels: Pixels::U8((0..20).map(|i| i as u8 + v).collect()),
            label: v as i32,
        }
    }

    #[test]
    fn items_do_not_depend_on_the_number_of_workers() {
        let tp = TransformationParameter {
            crop_size: Some(3),
            mirror: Some(true),
            ..Default::default()
        };
        let run = |workers: usize| {
            let mut t = DataTransformer::new(&tp, Phase::Train, 11).unwrap();
            let loader = ItemLoader::new(workers, "t", t.clone(), |v: u8| Ok(datum(v))).unwrap();
            let mut all = Vec::new();
            for b in 0..4u8 {
                let jobs = (0..8u8)
                    .map(|i| ItemJob {
                        src: b * 8 + i,
                        draws: t.draw(),
                        name: format!("item {i}"),
                    })
                    .collect();
                let batch =
                    assemble_batch(loader.run(jobs), true, 0, |i| format!("item {i}")).unwrap();
                assert_eq!(batch.shape, vec![8, 1, 3, 3]);
                all.push(batch);
            }
            all
        };
        let one = run(1);
        assert_eq!(run(3), one);
        // And equal to the sequential transformer with the same seed.
        let mut t = DataTransformer::new(&tp, Phase::Train, 11).unwrap();
        let mut out = vec![0.0; 9];
        t.transform(&datum(0), &mut out).unwrap();
        assert_eq!(&one[0].data[..9], &out[..]);
        t.transform(&datum(1), &mut out).unwrap();
        assert_eq!(&one[0].data[9..18], &out[..]);
    }

    #[test]
    fn batch_items_must_share_a_shape() {
        let item = |w: usize| {
            Ok(Item {
                shape: [1, 1, w],
                data: vec![0.0; w],
                label: 0,
            })
        };
        let e = assemble_batch(vec![item(2), item(3)], false, 0, |i| format!("record {i}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("record 1 gives a 1x1x3 item"), "{e}");
    }
}
