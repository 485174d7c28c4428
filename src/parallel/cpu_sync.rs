//! The in-process CPU implementation of [`GradSync`]: replicas are threads
//! of one process and exchange values through shared host buffers.
//!
//! An all-reduce is a reduce-scatter followed by an all-gather, in shared
//! memory:
//! 1. each replica copies its gradients, flattened, into its own input slot;
//! 2. barrier;
//! 3. replica `r` sums chunk `r` (1/world of the values) over all input
//!    slots in rank order and scales it by `1/world`, into output chunk `r`;
//! 4. barrier;
//! 5. each replica copies all output chunks back into its gradients.
//!
//! Every replica reads the same output buffer, so all get bit-identical
//! gradients and apply bit-identical updates; the reduction work is split
//! evenly. No barrier is needed after step 5: the next writes to the input
//! slots and output chunks come after the next call's first barrier, which
//! no replica passes before all have finished step 5.
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::backend::buffer::Buffer;
use crate::error::{Error, Result};
use crate::net::Net;
use crate::solver::SolverAction;

use super::barrier::Barrier;
use super::grad_sync::{action_code, action_from_code, claim_rank, GradSync, SyncGroup, SyncStats};

struct Shared {
    world: usize,
    barrier: Barrier,
    /// Per rank: its flattened gradients (at the broadcast, rank 0's weights).
    inputs: Vec<RwLock<Vec<f32>>>,
    /// Per chunk (one per rank): the reduced values of that chunk.
    outputs: Vec<RwLock<Vec<f32>>>,
    /// Rank 0's parameter sizes, published at the broadcast.
    layout: Mutex<Vec<usize>>,
    joined: Mutex<Vec<bool>>,
}

/// A group of `world` CPU replicas in this process.
pub struct CpuGroup {
    shared: Arc<Shared>,
}

impl CpuGroup {
    pub fn new(world: usize) -> Result<Self> {
        if world == 0 {
            return Err(Error::Solver(
                "a data-parallel group needs at least one replica".into(),
            ));
        }
        let slots = || (0..world).map(|_| RwLock::new(Vec::new())).collect();
        Ok(CpuGroup {
            shared: Arc::new(Shared {
                world,
                barrier: Barrier::new(world),
                inputs: slots(),
                outputs: slots(),
                layout: Mutex::new(Vec::new()),
                joined: Mutex::new(vec![false; world]),
            }),
        })
    }
}

impl SyncGroup for CpuGroup {
    fn world(&self) -> usize {
        self.shared.world
    }

    fn join(&self, rank: usize) -> Result<Box<dyn GradSync>> {
        claim_rank(&self.shared.joined, rank)?;
        Ok(Box::new(CpuSync {
            shared: self.shared.clone(),
            rank,
            layout: None,
            stats: SyncStats::default(),
        }))
    }

    fn abort(&self, rank: usize, reason: &str) {
        self.shared.barrier.poison(rank, reason);
    }

    fn first_failure(&self) -> Option<usize> {
        self.shared.barrier.poison_info().map(|p| p.rank)
    }
}

/// One replica's end of a [`CpuGroup`].
pub struct CpuSync {
    shared: Arc<Shared>,
    rank: usize,
    /// This net's parameter sizes, once known.
    layout: Option<Vec<usize>>,
    stats: SyncStats,
}

/// `[lo, hi)` of chunk `c` of `len` values split `world` ways.
fn chunk(len: usize, world: usize, c: usize) -> (usize, usize) {
    (c * len / world, (c + 1) * len / world)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panicking replica poisons the barrier; the data is plain floats.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn host(b: &Buffer, n: usize) -> Result<&[f32]> {
    b.host().map(|h| &h[..n]).ok_or_else(|| {
        Error::Device("the CPU gradient sync needs parameters in host memory".into())
    })
}

fn host_mut(b: &mut Buffer, n: usize) -> Result<&mut [f32]> {
    b.host_mut().map(|h| &mut h[..n]).ok_or_else(|| {
        Error::Device("the CPU gradient sync needs parameters in host memory".into())
    })
}

fn net_layout(net: &Net) -> Vec<usize> {
    (0..net.num_learnable())
        .map(|i| net.learnable(i).count())
        .collect()
}

/// Which of a learnable blob's buffers an operation touches.
#[derive(Clone, Copy)]
enum Part {
    Data,
    Diff,
}

fn buffer(net: &Net, i: usize, part: Part) -> &Buffer {
    let b = net.learnable(i);
    match part {
        Part::Data => &b.data,
        Part::Diff => &b.diff,
    }
}

fn buffer_mut(net: &mut Net, i: usize, part: Part) -> &mut Buffer {
    let b = net.learnable_mut(i);
    match part {
        Part::Data => &mut b.data,
        Part::Diff => &mut b.diff,
    }
}

/// Flatten the learnable blobs' `part` into `dst` (resized to fit).
fn gather(net: &Net, layout: &[usize], part: Part, dst: &mut Vec<f32>) -> Result<()> {
    dst.clear();
    dst.reserve(layout.iter().sum());
    for (i, &n) in layout.iter().enumerate() {
        dst.extend_from_slice(host(buffer(net, i, part), n)?);
    }
    Ok(())
}

/// The inverse of `gather`, reading the flat values from consecutive
/// `pieces` (the output chunks, or one whole slot).
fn scatter(net: &mut Net, layout: &[usize], part: Part, pieces: &[&[f32]]) -> Result<()> {
    let mut pieces = pieces.iter().copied().filter(|p| !p.is_empty());
    let mut cur: &[f32] = &[];
    for (i, &n) in layout.iter().enumerate() {
        let dst = host_mut(buffer_mut(net, i, part), n)?;
        let mut filled = 0;
        while filled < n {
            if cur.is_empty() {
                cur = pieces.next().ok_or_else(|| {
                    Error::Solver("gradient sync: fewer values than parameters".into())
                })?;
            }
            let k = cur.len().min(n - filled);
            dst[filled..filled + k].copy_from_slice(&cur[..k]);
            cur = &cur[k..];
            filled += k;
        }
    }
    Ok(())
}

impl CpuSync {
    fn wait(&mut self, publish: Option<u64>) -> Result<u64> {
        self.shared.barrier.wait(self.rank, publish)
    }

    /// This net's layout, checked against the one seen before.
    fn check_layout(&mut self, net: &Net) -> Result<Vec<usize>> {
        let now = net_layout(net);
        match &self.layout {
            Some(l) if *l != now => Err(Error::Solver(format!(
                "replica {}: the net's learnable parameters changed size during training",
                self.rank
            ))),
            _ => {
                self.layout = Some(now.clone());
                Ok(now)
            }
        }
    }
}

impl GradSync for CpuSync {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.shared.world
    }

    fn broadcast_weights(&mut self, net: &mut Net) -> Result<()> {
        let layout = self.check_layout(net)?;
        let sh = self.shared.clone();
        if self.rank == 0 {
            gather(net, &layout, Part::Data, &mut write(&sh.inputs[0]))?;
            *sh.layout.lock().unwrap_or_else(|e| e.into_inner()) = layout;
            self.wait(None)?;
        } else {
            self.wait(None)?;
            let root = sh.layout.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if root != layout {
                return Err(Error::Solver(format!(
                    "replica {}: its net has learnable parameters of sizes {layout:?}, rank 0's \
                     has {root:?}; every replica must build the same net",
                    self.rank
                )));
            }
            let weights = read(&sh.inputs[0]);
            scatter(net, &layout, Part::Data, &[&weights[..]])?;
        }
        // Rank 0 must not overwrite its slot before everyone has read it.
        self.wait(None)?;
        Ok(())
    }

    fn all_reduce_grads(&mut self, net: &mut Net) -> Result<()> {
        let start = Instant::now();
        let layout = self.check_layout(net)?;
        let sh = self.shared.clone();
        let world = sh.world;
        let len: usize = layout.iter().sum();
        gather(net, &layout, Part::Diff, &mut write(&sh.inputs[self.rank]))?;

        let t = Instant::now();
        self.wait(None)?;
        let mut waited = t.elapsed();

        {
            let (lo, hi) = chunk(len, world, self.rank);
            let mut out = write(&sh.outputs[self.rank]);
            let inputs: Vec<_> = sh.inputs.iter().map(read).collect();
            for (k, slot) in inputs.iter().enumerate() {
                if slot.len() != len {
                    return Err(Error::Solver(format!(
                        "gradient sync: replica {k} sent {} values, expected {len}",
                        slot.len()
                    )));
                }
            }
            out.clear();
            out.extend_from_slice(&inputs[0][lo..hi]);
            // Sum in rank order, then scale, as NCCL's sum + Caffe's scal.
            for slot in &inputs[1..] {
                for (o, v) in out.iter_mut().zip(&slot[lo..hi]) {
                    *o += v;
                }
            }
            let scale = 1.0f32 / world as f32;
            out.iter_mut().for_each(|o| *o *= scale);
        }

        let t = Instant::now();
        self.wait(None)?;
        waited += t.elapsed();

        let outputs: Vec<_> = sh.outputs.iter().map(read).collect();
        let pieces: Vec<&[f32]> = outputs.iter().map(|o| &o[..]).collect();
        scatter(net, &layout, Part::Diff, &pieces)?;

        self.stats.reduces += 1;
        self.stats.reduce_time += start.elapsed();
        self.stats.reduce_wait += waited;
        Ok(())
    }

    fn broadcast_action(&mut self, action: SolverAction) -> Result<SolverAction> {
        let start = Instant::now();
        let got = self.wait((self.rank == 0).then(|| action_code(action)))?;
        self.stats.actions += 1;
        self.stats.action_time += start.elapsed();
        Ok(action_from_code(got))
    }

    fn stats(&self) -> SyncStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::net::NetOptions;
    use crate::proto::caffe::Phase;
    use crate::proto::text;

    /// Two InnerProduct layers, the second sharing the first's weights.
    fn net(seed: u64) -> Net {
        let p = text::parse_net_text(
            r#"
            name: "t"
            layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
            layer { name: "a" type: "InnerProduct" bottom: "x" top: "y"
                    param { name: "w" } inner_product_param { num_output: 3
                    weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
            layer { name: "b" type: "InnerProduct" bottom: "y" top: "z"
                    param { name: "w" } inner_product_param { num_output: 3 bias_term: false } }
            "#,
            "t.prototxt",
        )
        .unwrap();
        let mut o = NetOptions::new(Phase::Train);
        o.seed = seed;
        Net::new(&p, &o, Arc::new(CpuBackend::new())).unwrap()
    }

    fn weights(n: &Net) -> Vec<Vec<f32>> {
        (0..n.num_learnable())
            .map(|i| n.learnable(i).data_vec())
            .collect()
    }

    #[test]
    fn chunks_cover_everything_once() {
        for len in [0, 1, 5, 12, 1001] {
            for world in 1..6 {
                let mut next = 0;
                for c in 0..world {
                    let (lo, hi) = chunk(len, world, c);
                    assert_eq!(lo, next);
                    next = hi;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn broadcast_then_mean_of_gradients() {
        let world = 3;
        let group = CpuGroup::new(world).unwrap();
        let root_weights = weights(&net(1));
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let mut sync = group.join(rank).unwrap();
                    s.spawn(move || {
                        // Different seeds: different initial weights.
                        let mut n = net(1 + rank as u64);
                        sync.broadcast_weights(&mut n).unwrap();
                        let w = weights(&n);
                        let mut out = Vec::new();
                        for step in 0..3 {
                            for i in 0..n.num_learnable() {
                                let b = n.learnable_mut(i);
                                let v: Vec<f32> = (0..b.count())
                                    .map(|j| (rank * 100 + j + step * 7) as f32)
                                    .collect();
                                b.set_diff(&v).unwrap();
                            }
                            sync.all_reduce_grads(&mut n).unwrap();
                            out.push(
                                (0..n.num_learnable())
                                    .map(|i| n.learnable(i).diff_vec())
                                    .collect::<Vec<_>>(),
                            );
                        }
                        let a = sync
                            .broadcast_action(if rank == 0 {
                                SolverAction::Snapshot
                            } else {
                                SolverAction::Stop
                            })
                            .unwrap();
                        (w, out, a, sync.stats())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (w, out, a, stats) in &results {
            assert_eq!(*w, root_weights);
            assert_eq!(*a, SolverAction::Snapshot);
            assert_eq!(stats.reduces, 3);
            for (step, diffs) in out.iter().enumerate() {
                for d in diffs {
                    for (j, v) in d.iter().enumerate() {
                        // mean over ranks of rank*100 + j + 7 step
                        let want = (0.0 + 100.0 + 200.0) / 3.0 + (j + step * 7) as f32;
                        assert!((v - want).abs() < 1e-4, "{v} vs {want}");
                    }
                }
            }
            // Bit-identical on every replica.
            assert_eq!(out, &results[0].1);
        }
        // Shared weights: one learnable blob for both layers' `w`.
        assert_eq!(results[0].0.len(), 2);
    }

    #[test]
    fn a_failed_replica_releases_the_others() {
        let group = CpuGroup::new(2).unwrap();
        let mut s1 = group.join(1).unwrap();
        assert!(group.join(1).is_err());
        assert!(group.join(2).is_err());
        let waiter = std::thread::spawn(move || {
            let mut n = net(2);
            s1.all_reduce_grads(&mut n).unwrap_err().to_string()
        });
        std::thread::sleep(std::time::Duration::from_millis(30));
        group.abort(0, "corrupt record");
        let e = waiter.join().unwrap();
        assert!(e.contains("replica 0 failed: corrupt record"), "{e}");
        assert_eq!(group.first_failure(), Some(0));
    }

    #[test]
    fn different_nets_are_refused_at_the_broadcast() {
        let group = CpuGroup::new(2).unwrap();
        let mut s0 = group.join(0).unwrap();
        let mut s1 = group.join(1).unwrap();
        let other = text::parse_net_text(
            r#"
            layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
            layer { name: "a" type: "InnerProduct" bottom: "x" top: "y"
                    inner_product_param { num_output: 4 } }
            "#,
            "o.prototxt",
        )
        .unwrap();
        let h1 = std::thread::spawn(move || {
            let mut n = Net::new(
                &other,
                &NetOptions::new(Phase::Train),
                Arc::new(CpuBackend::new()),
            )
            .unwrap();
            s1.broadcast_weights(&mut n)
        });
        let h0 = std::thread::spawn(move || s0.broadcast_weights(&mut net(1)));
        // Rank 1 fails its check after the first barrier; rank 0 then waits
        // at the second one, so the runner's abort is what frees it.
        let e1 = h1.join().unwrap().unwrap_err().to_string();
        assert!(e1.contains("every replica must build the same net"), "{e1}");
        group.abort(1, &e1);
        let e0 = h0.join().unwrap().unwrap_err().to_string();
        assert!(e0.contains("replica 1 failed"), "{e0}");
    }
}
