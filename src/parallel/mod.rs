//! Synchronous data-parallel training with Caffe 1.0's `--gpu all`
//! semantics (`../shared/reference/SOLVER_NET_CLI.md` §4).
//!
//! - One replica per device (here: per CPU thread), each with its own
//!   solver, net and history; the train net of replica `r` of `N` keeps
//!   every `N`-th record of its data source (`data::source::ShardedReader`,
//!   ImageData and HDF5Data likewise), TEST-phase layers do not shard.
//! - Rank 0's weights are broadcast once, after construction, fine-tuning
//!   and restore; afterwards every replica applies the same update to the
//!   same weights.
//! - Each iteration, after the last backward pass (`iter_size` passes
//!   accumulate first), the gradients are summed over replicas and scaled
//!   by `1/N` (Caffe's `ncclAllReduce` + `caffe_gpu_scal`), then every
//!   replica clips, normalises, regularises and updates identically. The
//!   effective batch is `batch × iter_size × N`; the lr is not scaled.
//! - Only rank 0 tests, displays and snapshots; its displayed loss is its
//!   own shard's, as in Caffe. Rank 0 alone polls SIGINT/SIGHUP and its
//!   decision reaches every replica through the group at the same
//!   iteration (Caffe hangs there, #5615).
//! - A replica that fails aborts the group: the others' next collective
//!   returns an error, and the run ends with the failing replica's error.
//!
//! [`GradSync`] is one replica's end of the group and [`SyncGroup`] the
//! group; [`CpuGroup`] implements them for threads of one process, and
//! `NcclGroup` (feature `cuda`) for one GPU per thread through NCCL.
//! [`train_replicas`] runs the replicas.
pub mod barrier;
pub mod cpu_sync;
pub mod grad_sync;
#[cfg(feature = "cuda")]
pub mod nccl_sync;
pub mod replicas;

pub use cpu_sync::{CpuGroup, CpuSync};
pub use grad_sync::{GradSync, SyncGroup, SyncStats};
#[cfg(feature = "cuda")]
pub use nccl_sync::{NcclGroup, NcclSync};
pub use replicas::{
    train_replicas, weights_checksum, BackendFor, ReplicaConfig, ReplicaOutcome, ReplicaReport,
};
