//! What a replica needs from its peers: the interface an in-process CPU
//! implementation (`cpu_sync`) and an NCCL communicator both provide.
use std::time::Duration;

use crate::error::Result;
use crate::net::Net;
use crate::solver::SolverAction;

/// Time spent in collectives by one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SyncStats {
    /// Gradient all-reduces done.
    pub reduces: u64,
    /// Wall time inside `all_reduce_grads`, waiting included.
    pub reduce_time: Duration,
    /// The part of `reduce_time` spent waiting for slower replicas.
    pub reduce_wait: Duration,
    /// Action broadcasts done (one per iteration, one more per test).
    pub actions: u64,
    /// Wall time inside `broadcast_action` (mostly waiting).
    pub action_time: Duration,
}

/// One replica's end of a synchronous data-parallel group (Caffe's `NCCL`
/// object of one solver). Every replica calls the same methods in the same
/// order; a call returns an error instead of blocking when another replica
/// has failed (see [`SyncGroup::abort`]).
pub trait GradSync: Send {
    /// This replica's index (0 is the root: it tests, displays, snapshots).
    fn rank(&self) -> usize;
    /// The number of replicas.
    fn world(&self) -> usize;
    /// Copy rank 0's learnable weights into every replica's net (once,
    /// after construction, fine-tuning and restore). Also checks that all
    /// replicas have the same parameter layout.
    fn broadcast_weights(&mut self, net: &mut Net) -> Result<()>;
    /// Replace every replica's accumulated parameter gradients by their
    /// mean: the sum over replicas times `1/world`, as Caffe's
    /// `ncclAllReduce(sum)` + `caffe_gpu_scal(1/solver_count)`. Called once
    /// per iteration after the last backward pass (after `iter_size`
    /// accumulation) and before the update; every replica ends with the
    /// same values, so every replica applies the same update.
    fn all_reduce_grads(&mut self, net: &mut Net) -> Result<()>;
    /// Every replica gets rank 0's `action` (the others' argument is
    /// ignored): how a signal caught by rank 0 stops or snapshots all
    /// replicas at the same iteration.
    fn broadcast_action(&mut self, action: SolverAction) -> Result<SolverAction>;
    /// Time spent in collectives so far.
    fn stats(&self) -> SyncStats;
}

/// The replicas of one run, seen from the process that runs them: hands
/// out each rank's [`GradSync`] and stops them all when one fails.
pub trait SyncGroup: Send + Sync {
    /// The number of replicas.
    fn world(&self) -> usize;
    /// Rank `rank`'s end of the group (once per rank).
    fn join(&self, rank: usize) -> Result<Box<dyn GradSync>>;
    /// Replica `rank` failed with `reason`: every pending and later
    /// collective of the other replicas fails promptly (a poisoned
    /// barrier on the CPU; `ncclCommAbort` with NCCL).
    fn abort(&self, rank: usize, reason: &str);
    /// The first replica that aborted, if any (its error is the run's).
    fn first_failure(&self) -> Option<usize>;
}

/// A `SolverAction` as the word the host-side barriers broadcast.
pub(crate) fn action_code(a: SolverAction) -> u64 {
    match a {
        SolverAction::None => 0,
        SolverAction::Stop => 1,
        SolverAction::Snapshot => 2,
    }
}

/// The inverse of [`action_code`].
pub(crate) fn action_from_code(code: u64) -> SolverAction {
    match code {
        1 => SolverAction::Stop,
        2 => SolverAction::Snapshot,
        _ => SolverAction::None,
    }
}

/// Mark `rank` as joined in a group's `joined` flags: once per rank, and
/// only ranks the group has.
pub(crate) fn claim_rank(joined: &std::sync::Mutex<Vec<bool>>, rank: usize) -> Result<()> {
    let mut joined = joined.lock().unwrap_or_else(|e| e.into_inner());
    let world = joined.len();
    match joined.get_mut(rank) {
        None => Err(crate::error::Error::Solver(format!(
            "replica {rank} does not exist in a group of {world}"
        ))),
        Some(true) => Err(crate::error::Error::Solver(format!(
            "replica {rank} joined twice"
        ))),
        Some(j) => {
            *j = true;
            Ok(())
        }
    }
}
