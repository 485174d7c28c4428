//! The NCCL implementation of [`GradSync`]: one replica per GPU, the
//! replicas being threads of one process (`rcaffe train --gpu 0,1`), one
//! NCCL communicator per replica on its device's stream.
//!
//! - **Communicators.** [`NcclGroup::new`] calls `ncclGetUniqueId` once;
//!   each replica creates its own communicator (`ncclCommInitRankConfig`)
//!   on its own thread, at its first collective, once every replica has
//!   checked (through host memory) that all build the same parameter layout
//!   on distinct GPUs.
//! - **Gradients.** One `ncclAllReduce(sum)` per learnable blob, in place on
//!   the blob's diff, all in one `ncclGroupStart`/`ncclGroupEnd` (NCCL fuses
//!   a group into one launch, so there is no flat bucket to copy into and
//!   out of), then every diff is scaled by `1/world` with the backend's
//!   `scal`: Caffe's `ncclAllReduce(sum)` + `caffe_gpu_scal(1/N)`, rounded
//!   the same way. (`ncclAvg` multiplies each input by `1/N` before
//!   summing, which rounds differently for N not a power of two.) NCCL
//!   gives every rank the same sum, so every replica applies the same
//!   update.
//! - **Weights.** One in-place `ncclBroadcast` from rank 0 per learnable
//!   blob's data, grouped likewise.
//! - **Actions, abort.** Host-side, as in [`super::cpu_sync`]: a poisonable
//!   barrier carries rank 0's action and stops every replica once one fails.
//!   Every collective first passes that barrier (as Caffe's `boost::barrier`
//!   around its `ncclAllReduce`), so no replica enters NCCL while another
//!   has already stopped.
//!
//! No replica can hang inside NCCL: the communicators are *non-blocking*
//! (`config.blocking = 0`, NCCL >= 2.14), so no NCCL call blocks its
//! thread; each replica then polls its communicator's state, its stream and
//! the barrier's poison flag. When the group is aborted (or NCCL reports an
//! error) while a replica waits for a collective whose peer will never
//! come, that replica calls `ncclCommAbort` on its own communicator, which
//! ends the NCCL kernel waiting on its GPU, and returns the error. Only the
//! owning thread ever touches a communicator (NCCL's thread-safety rule).
use std::ffi::{c_int, c_void, CStr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::sys as cu;
use cudarc::driver::CudaStream;
use cudarc::nccl::sys as nc;

use crate::backend::buffer::{Buffer, DeviceStorage};
use crate::backend::cuda::error::{code_name, guard};
use crate::backend::cuda::memory::{CdPtr, CudaStorage};
use crate::backend::cuda::probe::{self, Lib};
use crate::error::{Error, Result};
use crate::net::Net;
use crate::solver::SolverAction;

use super::barrier::{Barrier, Poison};
use super::grad_sync::{action_code, action_from_code, claim_rank, GradSync, SyncGroup, SyncStats};

/// NCCL's version code for 2.14.0, the first with non-blocking
/// communicators (`ncclCommInitRankConfig`, `config.blocking`).
const MIN_NCCL: c_int = 21400;

/// `NCCL_VERSION(2, 30, 0)`: the header version of cudarc's bindings, which
/// define `ncclConfig_t`'s layout (NCCL reads `min(size, its own size)`
/// bytes of it, so an older library accepts it).
const BINDINGS_VERSION: u32 = 23000;

/// How long a replica that aborted its communicator waits for the GPU to
/// leave the aborted collective before reporting the error anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// `NCCL_CONFIG_INITIALIZER` with `blocking = 0`.
fn nonblocking_config() -> nc::ncclConfig_t {
    // NCCL_CONFIG_UNDEF_INT / _PTR: "let NCCL choose".
    const UNDEF: c_int = c_int::MIN;
    let none = std::ptr::null();
    nc::ncclConfig_t {
        size: std::mem::size_of::<nc::ncclConfig_t>(),
        magic: 0xcafe_beef,
        version: BINDINGS_VERSION,
        blocking: 0,
        cgaClusterSize: UNDEF,
        minCTAs: UNDEF,
        maxCTAs: UNDEF,
        netName: none,
        splitShare: UNDEF,
        trafficClass: UNDEF,
        commName: none,
        collnetEnable: UNDEF,
        CTAPolicy: UNDEF,
        shrinkShare: UNDEF,
        nvlsCTAs: UNDEF,
        nChannelsPerNetPeer: UNDEF,
        nvlinkCentricSched: UNDEF,
        graphUsageMode: UNDEF,
        numRmaCtx: UNDEF,
        maxP2pPeers: UNDEF,
    }
}

/// `major.minor.patch` of an NCCL version code (`ncclGetVersion`: ·10000
/// since 2.9, ·1000 before).
fn version_string(v: c_int) -> String {
    let v = v.max(0) as u32;
    let (a, r) = if v >= 10000 {
        (v / 10000, v % 10000)
    } else {
        (v / 1000, v % 1000)
    };
    format!("{a}.{}.{}", r / 100, r % 100)
}

fn c_text(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: NCCL returns null or a NUL-terminated string it owns and
    // keeps alive (static tables / its per-thread last-error buffer).
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// An NCCL failure, with NCCL's own words for it.
fn nccl_error(what: &str, r: nc::ncclResult_t) -> Error {
    // SAFETY: plain lookups; ncclGetLastError ignores its argument (null is
    // documented as allowed) and reports this thread's last NCCL error.
    let (text, last) = unsafe {
        (
            c_text(nc::ncclGetErrorString(r)),
            c_text(nc::ncclGetLastError(std::ptr::null_mut())),
        )
    };
    let mut msg = format!("NCCL error while {what}: {r:?}");
    if let Some(t) = text {
        msg.push_str(&format!(" ({t})"));
    }
    if let Some(l) = last.filter(|l| !l.is_empty()) {
        msg.push_str(&format!("; {l}"));
    }
    Error::Device(msg)
}

/// A call's immediate result: success or "in progress" (non-blocking
/// communicators) are fine, anything else is the error.
fn accepted(what: &str, r: nc::ncclResult_t) -> Result<()> {
    match r {
        nc::ncclResult_t::ncclSuccess | nc::ncclResult_t::ncclInProgress => Ok(()),
        e => Err(nccl_error(what, e)),
    }
}

fn poisoned(p: &Poison, rank: usize) -> Error {
    // The barrier's own wording, so every stopped replica reads alike.
    Error::Solver(format!(
        "replica {rank} stopped because replica {} failed: {}",
        p.rank, p.reason
    ))
}

/// Waiting that spins briefly (collectives of small nets take tens of
/// microseconds) and then sleeps in short steps.
struct Backoff(u32);

impl Backoff {
    fn pause(&mut self) {
        if self.0 < 256 {
            self.0 += 1;
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// What a replica publishes at its first collective.
#[derive(Clone)]
struct Setup {
    /// Its GPU (None when it has no parameter values).
    gpu: Option<usize>,
    /// Its learnable parameter sizes.
    layout: Vec<usize>,
}

struct Shared {
    world: usize,
    barrier: Barrier,
    id: nc::ncclUniqueId,
    /// Per rank, published at its first collective.
    setups: Mutex<Vec<Option<Setup>>>,
    joined: Mutex<Vec<bool>>,
}

/// A group of `world` GPU replicas in this process, linked by NCCL.
pub struct NcclGroup {
    shared: Arc<Shared>,
}

impl NcclGroup {
    /// Probe NCCL (a missing or unusable library is one error naming
    /// `libnccl.so.2` and the fix), check its version, and create the run's
    /// unique id. The communicators come at each replica's first collective.
    pub fn new(world: usize) -> Result<Self> {
        if world == 0 {
            return Err(Error::Solver(
                "a data-parallel group needs at least one replica".into(),
            ));
        }
        let found = probe::require(&[Lib::Nccl]).map_err(|e| Error::Device(e.to_string()))?;
        let file = found
            .first()
            .map(|f| f.path.clone().unwrap_or_else(|| f.file.clone()))
            .unwrap_or_default();
        let version = guard("reading the NCCL version", || {
            Ok(cudarc::nccl::result::get_nccl_version())
        })
        .map_err(|e| Error::Device(e.to_string()))?
        .map_err(|e| nccl_error("reading the NCCL version", e.0))?;
        if version < MIN_NCCL {
            return Err(Error::Device(format!(
                "no usable GPU setup: NCCL {} ({file}) is too old; multi-GPU training needs \
                 NCCL 2.14 or newer (non-blocking communicators, so a failed replica never \
                 leaves the others waiting). Fix: {}",
                version_string(version),
                Lib::Nccl.fix()
            )));
        }
        let id = guard("creating the NCCL unique id", || {
            Ok(cudarc::nccl::result::get_uniqueid())
        })
        .map_err(|e| Error::Device(e.to_string()))?
        .map_err(|e| nccl_error("creating the NCCL unique id (ncclGetUniqueId)", e.0))?;
        Ok(NcclGroup {
            shared: Arc::new(Shared {
                world,
                barrier: Barrier::new(world),
                id,
                setups: Mutex::new(vec![None; world]),
                joined: Mutex::new(vec![false; world]),
            }),
        })
    }
}

impl SyncGroup for NcclGroup {
    fn world(&self) -> usize {
        self.shared.world
    }

    fn join(&self, rank: usize) -> Result<Box<dyn GradSync>> {
        claim_rank(&self.shared.joined, rank)?;
        Ok(Box::new(NcclSync {
            shared: self.shared.clone(),
            rank,
            layout: None,
            comm: None,
            broken: None,
            stats: SyncStats::default(),
        }))
    }

    /// Poisons the barrier. A replica waiting in a collective sees it
    /// within microseconds and aborts its own communicator
    /// (`ncclCommAbort`), which releases its GPU; a replica elsewhere
    /// fails at its next collective.
    fn abort(&self, rank: usize, reason: &str) {
        self.shared.barrier.poison(rank, reason);
    }

    fn first_failure(&self) -> Option<usize> {
        self.shared.barrier.poison_info().map(|p| p.rank)
    }
}

/// One replica's communicator, used by its thread only.
struct Comm {
    raw: nc::ncclComm_t,
    stream: Arc<CudaStream>,
    ordinal: usize,
}

// SAFETY: an NCCL communicator may be used from any thread provided one
// thread at a time uses it; `Comm` is owned by one `NcclSync`, which the
// solver drives through `&mut self`.
unsafe impl Send for Comm {}

impl Comm {
    fn bind(&self) -> Result<()> {
        self.stream.context().bind_to_thread().map_err(|e| {
            Error::Device(format!(
                "GPU {}: an earlier GPU operation failed: {}",
                self.ordinal,
                code_name(&e)
            ))
        })
    }

    /// `ncclCommGetAsyncError`: the state of the last calls.
    fn state(&self) -> nc::ncclResult_t {
        let mut st = nc::ncclResult_t::ncclSuccess;
        // SAFETY: a live communicator and a valid out-pointer.
        let r = unsafe { nc::ncclCommGetAsyncError(self.raw, &mut st) };
        if r == nc::ncclResult_t::ncclSuccess {
            st
        } else {
            r
        }
    }

    /// `cuStreamQuery`: whether everything queued on the stream is done.
    fn stream_idle(&self) -> Result<bool> {
        // SAFETY: the stream is alive (held by `self.stream`).
        match unsafe { cu::cuStreamQuery(self.stream.cu_stream()) } {
            cu::cudaError_enum::CUDA_SUCCESS => Ok(true),
            cu::cudaError_enum::CUDA_ERROR_NOT_READY => Ok(false),
            e => Err(Error::Device(format!(
                "GPU {}: CUDA error while waiting for a collective: {e:?}",
                self.ordinal
            ))),
        }
    }

    /// `ncclCommAbort`: ends any collective in flight (its GPU kernel
    /// included) and frees the communicator; then give the GPU a moment
    /// to leave the aborted kernels so the caller's buffers are idle.
    fn abort(&mut self) {
        if self.raw.is_null() {
            return;
        }
        // NCCL selects the device itself; binding only helps cudarc's
        // bookkeeping and may fail on a broken context, which is fine.
        let _ = self.stream.context().bind_to_thread();
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        // SAFETY: a communicator of this thread, aborted once (nulled above).
        // Its result only says whether the teardown was clean.
        let _ = unsafe { nc::ncclCommAbort(raw) };
        let start = Instant::now();
        let mut b = Backoff(0);
        while start.elapsed() < DRAIN_LIMIT && matches!(self.stream_idle(), Ok(false)) {
            b.pause();
        }
    }
}

impl Drop for Comm {
    /// Abort rather than destroy: `ncclCommDestroy` may wait for peers,
    /// and every collective of this communicator has completed by now
    /// (each one is waited for), so nothing is lost.
    fn drop(&mut self) {
        self.abort();
    }
}

/// One replica's end of an [`NcclGroup`].
pub struct NcclSync {
    shared: Arc<Shared>,
    rank: usize,
    /// This net's parameter sizes, once checked against rank 0's.
    layout: Option<Vec<usize>>,
    /// None until the first collective, or when the net has no parameter
    /// values to exchange.
    comm: Option<Comm>,
    /// Why the communicator was aborted (every later call fails with it).
    broken: Option<String>,
    stats: SyncStats,
}

fn net_layout(net: &Net) -> Vec<usize> {
    (0..net.num_learnable())
        .map(|i| net.learnable(i).count())
        .collect()
}

fn cuda_storage<'a>(b: &'a Buffer, net: &Net, i: usize) -> Result<&'a CudaStorage> {
    b.device()
        .and_then(|d| d.as_any().downcast_ref::<CudaStorage>())
        .ok_or_else(|| {
            Error::Device(format!(
                "the NCCL gradient sync needs the parameters in GPU memory, but {} is not \
                 (each replica needs a CUDA backend)",
                net.learnable_name(i)
            ))
        })
}

/// Which of a learnable blob's buffers a collective works on.
#[derive(Clone, Copy)]
enum Part {
    Data,
    Diff,
}

#[derive(Clone, Copy)]
enum Op {
    /// Sum over the replicas, in place.
    AllReduceSum,
    /// Rank 0's values to every replica, in place.
    BroadcastFromRoot,
}

impl NcclSync {
    fn wait(&self, publish: Option<u64>) -> Result<u64> {
        self.shared.barrier.wait(self.rank, publish)
    }

    /// The group's first failure, as this replica's error, if any.
    fn poison(&self) -> Option<Error> {
        self.shared
            .barrier
            .poison_info()
            .map(|p| poisoned(&p, self.rank))
    }

    /// Abort this replica's communicator after `e` and return `e`; every
    /// later call fails with it.
    fn fail(&mut self, e: Error) -> Error {
        if let Some(mut c) = self.comm.take() {
            c.abort();
        }
        self.broken.get_or_insert_with(|| e.to_string());
        e
    }

    /// The parameter layout, checked: at the first call every replica
    /// publishes its layout and GPU, checks them against the others' and
    /// creates its communicator; later calls check that the layout did not
    /// change.
    fn prepare(&mut self, net: &Net) -> Result<Vec<usize>> {
        if let Some(why) = &self.broken {
            return Err(Error::Device(format!(
                "replica {}: the NCCL communicator was aborted after an earlier failure: {why}",
                self.rank
            )));
        }
        let now = net_layout(net);
        match &self.layout {
            Some(l) if *l != now => Err(Error::Solver(format!(
                "replica {}: the net's learnable parameters changed size during training",
                self.rank
            ))),
            Some(_) => Ok(now),
            None => {
                self.setup(net, &now)?;
                self.layout = Some(now.clone());
                Ok(now)
            }
        }
    }

    fn setup(&mut self, net: &Net, layout: &[usize]) -> Result<()> {
        let rank = self.rank;
        // This replica's GPU and stream: those of its first parameter
        // values (every other blob is checked at each collective).
        let first = match layout.iter().position(|&n| n > 0) {
            Some(i) => {
                let s = cuda_storage(&net.learnable(i).data, net, i)?;
                Some((s.ordinal(), s.stream().clone()))
            }
            None => None,
        };
        let ordinal = first.as_ref().map(|(o, _)| *o);
        {
            let mut setups = self.shared.setups.lock().unwrap_or_else(|e| e.into_inner());
            setups[rank] = Some(Setup {
                gpu: ordinal,
                layout: layout.to_vec(),
            });
        }
        self.wait(None)?;
        {
            let setups = self.shared.setups.lock().unwrap_or_else(|e| e.into_inner());
            let root = setups[0].as_ref().map_or(&[][..], |s| &s.layout);
            if root != layout {
                return Err(Error::Solver(format!(
                    "replica {rank}: its net has learnable parameters of sizes {layout:?}, \
                     rank 0's has {root:?}; every replica must build the same net"
                )));
            }
            if let Some(o) = ordinal {
                if let Some(other) = (0..setups.len())
                    .find(|&r| r != rank && setups[r].as_ref().and_then(|s| s.gpu) == Some(o))
                {
                    return Err(Error::Solver(format!(
                        "replicas {} and {} both run on GPU {o}: NCCL needs one GPU per \
                         replica (give each id once in --gpu)",
                        rank.min(other),
                        rank.max(other)
                    )));
                }
            }
        }
        // Nobody creates a communicator unless every replica's check passed
        // (a replica that failed above poisons this wait through the runner).
        self.wait(None)?;
        let Some((ordinal, stream)) = first else {
            // No parameter values anywhere (the layouts are equal): nothing
            // to exchange, so no communicator.
            return Ok(());
        };
        let mut comm = Comm {
            raw: std::ptr::null_mut(),
            stream,
            ordinal,
        };
        comm.bind()?;
        let mut config = nonblocking_config();
        // SAFETY: valid out-pointer and config; the id is the run's, shared
        // by all `world` ranks; this thread's current device is the
        // replica's GPU (bound above), which NCCL takes as its device.
        let r = unsafe {
            nc::ncclCommInitRankConfig(
                &mut comm.raw,
                self.shared.world as c_int,
                self.shared.id,
                rank as c_int,
                &mut config,
            )
        };
        if let Err(e) = accepted("creating the communicator (ncclCommInitRankConfig)", r) {
            // Dropping `comm` aborts whatever NCCL had allocated.
            drop(comm);
            return Err(self.fail(e));
        }
        self.comm = Some(comm);
        self.settle("creating the communicator")
    }

    /// Wait until this replica's communicator has finished its last calls
    /// (non-blocking init or enqueue), failing if NCCL reports an error or
    /// the group is aborted meanwhile.
    fn settle(&mut self, what: &str) -> Result<()> {
        let mut b = Backoff(0);
        loop {
            let Some(c) = self.comm.as_ref() else {
                return Ok(());
            };
            match c.state() {
                nc::ncclResult_t::ncclSuccess => return Ok(()),
                nc::ncclResult_t::ncclInProgress => {}
                e => {
                    let err = nccl_error(what, e);
                    return Err(self.fail(err));
                }
            }
            if let Some(p) = self.poison() {
                return Err(self.fail(p));
            }
            b.pause();
        }
    }

    /// Wait until this replica's stream has run everything queued (the
    /// collective and what follows it), watching for NCCL errors (a lost
    /// peer) and the group's abort.
    fn finish(&mut self, what: &str) -> Result<()> {
        let mut b = Backoff(0);
        loop {
            let Some(c) = self.comm.as_ref() else {
                return Ok(());
            };
            let idle = c.stream_idle();
            let state = c.state();
            match idle {
                Ok(true) => {
                    return match c.stream.context().check_err() {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            let err = Error::Device(format!(
                                "GPU {}: a GPU operation failed during {what}: {}",
                                c.ordinal,
                                code_name(&e)
                            ));
                            Err(self.fail(err))
                        }
                    };
                }
                Ok(false) => {}
                Err(e) => return Err(self.fail(e)),
            }
            if !matches!(
                state,
                nc::ncclResult_t::ncclSuccess | nc::ncclResult_t::ncclInProgress
            ) {
                let err = nccl_error(what, state);
                return Err(self.fail(err));
            }
            if let Some(p) = self.poison() {
                return Err(self.fail(p));
            }
            b.pause();
        }
    }

    /// The device address and length of `part` of every learnable blob
    /// with values, checked to be on this replica's GPU and stream.
    fn addresses(&self, net: &Net, layout: &[usize], part: Part) -> Result<Vec<(CdPtr, usize)>> {
        let Some(c) = self.comm.as_ref() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(layout.len());
        for (i, &n) in layout.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let b = net.learnable(i);
            let s = cuda_storage(
                match part {
                    Part::Data => &b.data,
                    Part::Diff => &b.diff,
                },
                net,
                i,
            )?;
            if s.ordinal() != c.ordinal || s.stream().cu_stream() != c.stream.cu_stream() {
                return Err(Error::Device(format!(
                    "replica {}: {} is on GPU {}, the replica's other parameters on GPU {}",
                    self.rank,
                    net.learnable_name(i),
                    s.ordinal(),
                    c.ordinal
                )));
            }
            // A parameter blob holds at least `count` values.
            debug_assert!(s.len() >= n);
            out.push((s.ptr(0), n));
        }
        Ok(out)
    }

    /// Queue `op` over `bufs` as one NCCL group and wait until NCCL has
    /// put it on the stream (not until it ran: see `finish`).
    fn enqueue(&mut self, what: &str, op: Op, bufs: &[(CdPtr, usize)]) -> Result<()> {
        let Some(c) = self.comm.as_ref() else {
            return Ok(());
        };
        if bufs.is_empty() {
            return Ok(());
        }
        if let Err(e) = c.bind() {
            return Err(self.fail(e));
        }
        let (comm, stream) = (c.raw, c.stream.cu_stream() as nc::cudaStream_t);
        // SAFETY: group calls of this thread only.
        let mut r = accepted("starting a group (ncclGroupStart)", unsafe {
            nc::ncclGroupStart()
        });
        if r.is_ok() {
            for &(p, n) in bufs {
                let (send, recv) = (p as *const c_void, p as *mut c_void);
                // SAFETY: `p` addresses `n` live f32 values on this
                // communicator's GPU (checked in `addresses`); in-place
                // operations (send == recv) are supported by NCCL; the
                // stream is the buffers' own.
                let call = unsafe {
                    match op {
                        Op::AllReduceSum => nc::ncclAllReduce(
                            send,
                            recv,
                            n,
                            nc::ncclDataType_t::ncclFloat32,
                            nc::ncclRedOp_t::ncclSum,
                            comm,
                            stream,
                        ),
                        Op::BroadcastFromRoot => nc::ncclBroadcast(
                            send,
                            recv,
                            n,
                            nc::ncclDataType_t::ncclFloat32,
                            0,
                            comm,
                            stream,
                        ),
                    }
                };
                r = accepted(what, call);
                if r.is_err() {
                    break;
                }
            }
            // Always close the group, even after a failed call (NCCL's
            // group depth is per thread).
            // SAFETY: closes the group opened above.
            let end = accepted("ending a group (ncclGroupEnd)", unsafe {
                nc::ncclGroupEnd()
            });
            r = r.and(end);
        }
        if let Err(e) = r {
            return Err(self.fail(e));
        }
        self.settle(what)
    }
}

impl GradSync for NcclSync {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.shared.world
    }

    fn broadcast_weights(&mut self, net: &mut Net) -> Result<()> {
        let layout = self.prepare(net)?;
        let bufs = self.addresses(net, &layout, Part::Data)?;
        self.wait(None)?;
        let what = "broadcasting rank 0's weights (ncclBroadcast)";
        self.enqueue(what, Op::BroadcastFromRoot, &bufs)?;
        self.finish(what)
    }

    fn all_reduce_grads(&mut self, net: &mut Net) -> Result<()> {
        let start = Instant::now();
        let layout = self.prepare(net)?;
        let bufs = self.addresses(net, &layout, Part::Diff)?;
        // Host arrival only: a replica's GPU may still be finishing its
        // backward pass, which the collective then waits for on the GPU.
        let t = Instant::now();
        self.wait(None)?;
        let waited = t.elapsed();
        let what = "summing the gradients (ncclAllReduce)";
        self.enqueue(what, Op::AllReduceSum, &bufs)?;
        let world = self.shared.world;
        if world > 1 && self.comm.is_some() {
            // Caffe's caffe_gpu_scal(1/solver_count), queued after the sum
            // (which `enqueue` has put on the same stream).
            let be = net.backend();
            let scale = 1.0f32 / world as f32;
            for (i, &n) in layout.iter().enumerate() {
                if n > 0 {
                    be.scal(n, scale, net.learnable_mut(i).diff.view_mut());
                }
            }
        }
        self.finish(what)?;
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

    #[test]
    fn config_is_nccl_initializer_with_blocking_off() {
        let c = nonblocking_config();
        assert_eq!(c.size, std::mem::size_of::<nc::ncclConfig_t>());
        assert_eq!(c.magic, 0xcafe_beef);
        assert_eq!(c.blocking, 0);
        assert_eq!(c.minCTAs, c_int::MIN);
        assert!(c.netName.is_null() && c.commName.is_null());
        // Honoured by every NCCL that has non-blocking communicators.
        assert!(c.version >= MIN_NCCL as u32);
    }

    #[test]
    fn nccl_versions_read_like_nccl() {
        assert_eq!(version_string(22703), "2.27.3");
        assert_eq!(version_string(21400), "2.14.0");
        assert_eq!(version_string(2804), "2.8.4");
    }

    #[test]
    fn an_empty_group_is_refused() {
        assert!(NcclGroup::new(0).is_err());
    }
}
