//! Running a data-parallel training: one thread per replica, each with its
//! own solver (net, data shard, history), linked by a [`SyncGroup`].
//! Caffe's `NCCL::Run` + `Worker`, without its hangs: a replica that fails
//! aborts the group, so the others stop at their next collective and the
//! run ends with the failing replica's error.
use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::log::{info, set_thread_quiet, site};
use crate::net::Net;
use crate::proto::caffe::SolverParameter;
use crate::solver::{ActionFn, Solver};

use super::grad_sync::{SyncGroup, SyncStats};

/// The `file:line` of this module's own log lines (Caffe has none).
const SITE: &str = "replicas.rs:1";

/// What every replica starts from.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub param: SolverParameter,
    /// A solver state every replica restores (as in Caffe, each replica
    /// reads the file; the weights are then broadcast from rank 0).
    pub resume: Option<PathBuf>,
}

/// How one replica ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaReport {
    pub rank: usize,
    /// The iteration it stopped at.
    pub iter: i32,
    pub stopped_early: bool,
    /// FNV-1a of its learnable weights: equal on all replicas of a run.
    pub weights_checksum: u64,
    pub sync: SyncStats,
}

/// Rank 0's solver (for its snapshots, scores and weights) and a report
/// per replica, in rank order.
pub struct ReplicaOutcome {
    pub root: Solver,
    pub replicas: Vec<ReplicaReport>,
}

/// The backend of each rank (the CPU for CPU replicas; one device each
/// with NCCL).
pub type BackendFor<'a> = &'a (dyn Fn(usize) -> Result<Arc<dyn Backend>> + Sync);

/// FNV-1a over the bits of every learnable weight.
pub fn weights_checksum(net: &Net) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..net.num_learnable() {
        for v in net.learnable(i).data_vec() {
            for b in v.to_bits().to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

/// Aborts the group if its thread unwinds, so no replica waits forever for
/// a replica that panicked.
struct AbortOnPanic<'a> {
    group: &'a dyn SyncGroup,
    rank: usize,
}

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.group.abort(self.rank, "it panicked");
        }
    }
}

/// One replica from construction to its last iteration. Rank 0 runs
/// Caffe's `Solve` (tests, display, snapshots, the final snapshot and
/// test); the others run `Step` for the same iterations.
fn run_rank(
    group: &dyn SyncGroup,
    rank: usize,
    cfg: &ReplicaConfig,
    be: Arc<dyn Backend>,
    action: Option<ActionFn>,
) -> Result<Solver> {
    let mut sync = group.join(rank)?;
    let mut solver = Solver::new_replica(cfg.param.clone(), be, rank, group.world())?;
    if let Some(a) = action {
        solver.set_action_fn(a);
    }
    if let Some(state) = &cfg.resume {
        info(
            site::CAFFE_RESUMING,
            &format!("Resuming from {}", state.display()),
        );
        solver.restore(state)?;
    }
    sync.broadcast_weights(solver.net_mut())?;
    solver.set_grad_sync(sync);
    if rank == 0 {
        info(site::CAFFE_STARTING, "Starting Optimization");
        solver.solve()?;
    } else {
        let left = solver.param().max_iter() - solver.iter();
        solver.step(left)?;
    }
    Ok(solver)
}

fn report(solver: &Solver) -> ReplicaReport {
    ReplicaReport {
        rank: solver.rank(),
        iter: solver.iter(),
        stopped_early: solver.requested_early_exit(),
        weights_checksum: weights_checksum(solver.net()),
        sync: solver.grad_sync().map(|s| s.stats()).unwrap_or_default(),
    }
}

/// Train `group.world()` replicas of `cfg` in lock-step: rank 0 on the
/// calling thread (with `action`, the signal poll), the others on their own
/// threads with INFO logging off. Returns when all have stopped; if any
/// failed, the error of the first one that did.
pub fn train_replicas(
    group: &dyn SyncGroup,
    cfg: &ReplicaConfig,
    backend_for: BackendFor,
    action: Option<ActionFn>,
) -> Result<ReplicaOutcome> {
    let world = group.world();
    let iter_size = cfg.param.iter_size();
    info(
        SITE,
        &format!(
            "Data-parallel training on {world} replicas: each runs the net's batch on its \
             1/{world} of the training data; effective batch = batch x iter_size ({iter_size}) \
             x {world}, learning rate unchanged"
        ),
    );
    let (root, workers) = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(world.saturating_sub(1));
        for rank in 1..world {
            let spawned = std::thread::Builder::new()
                .name(format!("rcaffe-replica-{rank}"))
                .spawn_scoped(s, move || {
                    let _guard = AbortOnPanic { group, rank };
                    set_thread_quiet(true);
                    let r = backend_for(rank)
                        .and_then(|be| run_rank(group, rank, cfg, be, None))
                        .map(|solver| report(&solver));
                    if let Err(e) = &r {
                        group.abort(rank, &e.to_string());
                    }
                    r
                });
            match spawned {
                Ok(h) => handles.push((rank, h)),
                Err(e) => {
                    let msg = format!("cannot start the thread of replica {rank}: {e}");
                    group.abort(rank, &msg);
                    handles.push((rank, s.spawn(move || Err(Error::Solver(msg)))));
                }
            }
        }
        let root = {
            let _guard = AbortOnPanic { group, rank: 0 };
            let r = backend_for(0).and_then(|be| run_rank(group, 0, cfg, be, action));
            if let Err(e) = &r {
                group.abort(0, &e.to_string());
            }
            r
        };
        let workers: Vec<(usize, Result<ReplicaReport>)> = handles
            .into_iter()
            .map(|(rank, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(Error::Solver(format!("replica {rank} panicked"))));
                (rank, r)
            })
            .collect();
        (root, workers)
    });

    // The run's error is the one of the replica that failed first; the
    // others only report that they were stopped because of it.
    let failed_first = group.first_failure();
    let mut root_err = None;
    let root = match root {
        Ok(s) => Some(s),
        Err(e) => {
            root_err = Some(e);
            None
        }
    };
    let mut errors: Vec<(usize, Error)> = root_err.into_iter().map(|e| (0, e)).collect();
    let mut reports = Vec::with_capacity(world);
    for (rank, r) in workers {
        match r {
            Ok(rep) => reports.push(rep),
            Err(e) => errors.push((rank, e)),
        }
    }
    if !errors.is_empty() {
        let pick = errors
            .iter()
            .position(|(r, _)| Some(*r) == failed_first)
            .unwrap_or(0);
        let (rank, e) = errors.swap_remove(pick);
        return Err(if world > 1 {
            Error::Solver(format!("replica {rank} of {world}: {e}"))
        } else {
            e
        });
    }
    let root = root.ok_or_else(|| Error::Solver("rank 0 ended without a solver".into()))?;
    reports.insert(0, report(&root));

    for r in &reports {
        let s = &r.sync;
        let per = |d: std::time::Duration| {
            if s.reduces == 0 {
                0.0
            } else {
                d.as_secs_f64() * 1e3 / s.reduces as f64
            }
        };
        info(
            SITE,
            &format!(
                "Replica {} of {world} {} at iteration {}; all-reduce {:.3} ms per iteration \
                 ({:.3} ms of it waiting for other replicas) over {} iterations",
                r.rank,
                if r.stopped_early {
                    "stopped"
                } else {
                    "finished"
                },
                r.iter,
                per(s.reduce_time),
                per(s.reduce_wait),
                s.reduces
            ),
        );
    }
    // Every replica applied the same updates to the same weights; anything
    // else is a bug that would make the result meaningless.
    let first = &reports[0];
    if let Some(r) = reports
        .iter()
        .find(|r| r.iter != first.iter || r.weights_checksum != first.weights_checksum)
    {
        return Err(Error::Solver(format!(
            "replicas went out of step: replica {} ended at iteration {} with weights \
             checksum {:016x}, replica 0 at iteration {} with {:016x}",
            r.rank, r.iter, r.weights_checksum, first.iter, first.weights_checksum
        )));
    }
    Ok(ReplicaOutcome {
        root,
        replicas: reports,
    })
}
