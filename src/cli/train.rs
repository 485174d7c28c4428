//! `rcaffe train`: Caffe's `train()` — read the solver, apply the CLI's
//! level/stage/weights, resume or fine-tune, solve, with SIGINT/SIGHUP
//! mapped to stop/snapshot/none like Caffe's signal handler.
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use rcaffe::log::{info, site, warn};
use rcaffe::parallel::{train_replicas, CpuGroup, ReplicaConfig};
use rcaffe::proto::caffe::solver_parameter::SolverMode;
use rcaffe::proto::caffe::{NetState, SolverParameter};
use rcaffe::proto::upgrade;
use rcaffe::solver::{Solver, SolverAction};

use super::device_query::{backend_for, stages_from_flag};
#[cfg(feature = "cuda")]
use super::device_query::{replica_gpus, ReplicaGpu};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The solver definition protocol buffer text file
    #[arg(long, default_value = "", hide_default_value = true)]
    pub solver: String,
    /// Pretrained weights to fine-tune from: comma-separated .caffemodel files
    #[arg(long, default_value = "", hide_default_value = true)]
    pub weights: String,
    /// A .solverstate to resume training from
    #[arg(long, default_value = "", hide_default_value = true)]
    pub snapshot: String,
    /// GPU device ids (comma-separated) or `all`; several GPUs train one replica each
    /// (gradients averaged through NCCL, effective batch = batch × iter_size × GPUs)
    #[arg(long, default_value = "", hide_default_value = true)]
    pub gpu: String,
    /// The net level, written into the solver's train_state
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub level: i32,
    /// Comma-separated net stages, appended to the solver's train_state
    #[arg(long, default_value = "", hide_default_value = true)]
    pub stage: String,
    /// What SIGINT does: stop, snapshot or none
    #[arg(long = "sigint_effect", default_value = "stop")]
    pub sigint_effect: String,
    /// What SIGHUP does: stop, snapshot or none
    #[arg(long = "sighup_effect", default_value = "snapshot")]
    pub sighup_effect: String,
    /// Accepted for Caffe compatibility; training runs to the solver's max_iter
    #[arg(long, hide = true)]
    pub iterations: Option<i32>,
    /// Data-parallel training on N CPU replicas (threads), as `--gpu all` does on
    /// GPUs: each replica reads every N-th training record, gradients are averaged
    /// every iteration (effective batch = batch × iter_size × N, lr unchanged);
    /// rank 0 tests, displays and snapshots
    #[arg(long = "cpu_replicas", default_value_t = 1)]
    pub cpu_replicas: usize,
}

/// Caffe's `SignalHandler`: each signal sets a flag the solver polls;
/// SIGHUP wins when both arrived. A second SIGINT while the first is
/// still pending ends the process at once (for a run stuck in a layer).
fn install_signal_handler(
    sigint: SolverAction,
    sighup: SolverAction,
) -> anyhow::Result<rcaffe::solver::ActionFn> {
    use signal_hook::consts::{SIGHUP, SIGINT};
    let got_int = Arc::new(AtomicBool::new(false));
    let got_hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, got_int.clone())
        .context("installing the SIGINT handler")?;
    signal_hook::flag::register(SIGINT, got_int.clone())
        .context("installing the SIGINT handler")?;
    signal_hook::flag::register(SIGHUP, got_hup.clone())
        .context("installing the SIGHUP handler")?;
    Ok(Box::new(move || {
        if got_hup.swap(false, Ordering::SeqCst) {
            sighup
        } else if got_int.swap(false, Ordering::SeqCst) {
            sigint
        } else {
            SolverAction::None
        }
    }))
}

pub fn run(a: &TrainArgs) -> anyhow::Result<ExitCode> {
    if a.solver.is_empty() {
        bail!("Need a solver definition to train (--solver).");
    }
    if !a.snapshot.is_empty() && !a.weights.is_empty() {
        bail!("Give a snapshot to resume training or weights to finetune but not both.");
    }
    if let Some(n) = a.iterations {
        warn(
            site::CAFFE_TRAIN_USE_CPU,
            &format!("--iterations {n} is ignored by train: the solver's max_iter decides"),
        );
    }
    let sigint = SolverAction::parse(&a.sigint_effect)?;
    let sighup = SolverAction::parse(&a.sighup_effect)?;
    if a.cpu_replicas == 0 {
        bail!("--cpu_replicas must be at least 1");
    }

    // The device first: a --gpu request fails before any file is read.
    // Several GPUs train one replica each, linked by NCCL.
    #[cfg(feature = "cuda")]
    if let Some(gpus) = replica_gpus(&a.gpu)? {
        return train_on_gpus(a, gpus, sigint, sighup);
    }
    let be = backend_for(&a.gpu)?;
    let param = solver_param(a)?;

    if a.gpu.is_empty() && param.solver_mode == Some(SolverMode::Gpu as i32) {
        warn(
            site::CAFFE_TRAIN_USE_CPU,
            "The solver asks for solver_mode: GPU, but this build has no CUDA backend; using \
             the CPU.",
        );
    }
    info(site::CAFFE_TRAIN_USE_CPU, "Use CPU.");

    let action = install_signal_handler(sigint, sighup)?;
    if a.cpu_replicas > 1 {
        return train_on_replicas(a, param, be, action);
    }
    let mut solver = Solver::new(param, be)?;
    solver.set_action_fn(action);
    if !a.snapshot.is_empty() {
        info(
            site::CAFFE_RESUMING,
            &format!("Resuming from {}", a.snapshot),
        );
        solver.restore(Path::new(&a.snapshot))?;
    }
    info(site::CAFFE_STARTING, "Starting Optimization");
    solver.solve()?;
    info(site::CAFFE_DONE, "Optimization Done.");
    Ok(ExitCode::SUCCESS)
}

/// The solver file with the CLI's level, stages and weights applied.
fn solver_param(a: &TrainArgs) -> anyhow::Result<SolverParameter> {
    let mut param = upgrade::load_solver(Path::new(&a.solver))?;
    let state = param.train_state.get_or_insert_with(NetState::default);
    state.level = Some(a.level);
    state.stage.extend(stages_from_flag(&a.stage));
    // As Caffe master: --weights replaces the solver's `weights`, a resume
    // clears them.
    if !a.snapshot.is_empty() {
        param.weights.clear();
    } else if !a.weights.is_empty() {
        param.weights = vec![a.weights.clone()];
    }
    Ok(param)
}

/// `--gpu 0,1` / `--gpu all` (several GPUs): Caffe's multi-GPU training,
/// one replica per GPU in `gpus`' order (rank r on `gpus[r]`), gradients
/// averaged through NCCL (`rcaffe::parallel::NcclGroup`); rank 0 runs on
/// this thread and gets the signal handler.
#[cfg(feature = "cuda")]
fn train_on_gpus(
    a: &TrainArgs,
    gpus: Vec<ReplicaGpu>,
    sigint: SolverAction,
    sighup: SolverAction,
) -> anyhow::Result<ExitCode> {
    use rcaffe::parallel::NcclGroup;
    if a.cpu_replicas > 1 {
        bail!(
            "--cpu_replicas {} and --gpu {}: give one or the other (with several GPUs, each GPU \
             runs one replica)",
            a.cpu_replicas,
            a.gpu
        );
    }
    let group = NcclGroup::new(gpus.len())?;
    let param = solver_param(a)?;
    let ids: Vec<String> = gpus.iter().map(|g| g.id.to_string()).collect();
    info(
        site::CAFFE_TRAIN_USING_GPUS,
        &format!("Using GPUs {}", ids.join(", ")),
    );
    let action = install_signal_handler(sigint, sighup)?;
    let resume = (!a.snapshot.is_empty()).then(|| a.snapshot.clone().into());
    let cfg = ReplicaConfig { param, resume };
    // The backends were opened up front (so a bad id or a missing library
    // fails before any file is read); each rank takes its own.
    let backend_for = |rank: usize| {
        gpus.get(rank)
            .map(|g| g.backend.clone())
            .ok_or_else(|| rcaffe::error::Error::Solver(format!("replica {rank} has no GPU")))
    };
    train_replicas(&group, &cfg, &backend_for, Some(action))?;
    info(site::CAFFE_DONE, "Optimization Done.");
    Ok(ExitCode::SUCCESS)
}

/// `--cpu_replicas N` (N > 1): the same training on N synchronised CPU
/// replicas (`rcaffe::parallel`); rank 0 runs on this thread and gets the
/// signal handler.
fn train_on_replicas(
    a: &TrainArgs,
    param: SolverParameter,
    be: Arc<dyn rcaffe::backend::Backend>,
    action: rcaffe::solver::ActionFn,
) -> anyhow::Result<ExitCode> {
    let group = CpuGroup::new(a.cpu_replicas)?;
    let resume = (!a.snapshot.is_empty()).then(|| a.snapshot.clone().into());
    let cfg = ReplicaConfig { param, resume };
    // The runner logs "Resuming from" and "Starting Optimization" where
    // Caffe does: after rank 0's solver is built.
    train_replicas(&group, &cfg, &|_| Ok(be.clone()), Some(action))?;
    info(site::CAFFE_DONE, "Optimization Done.");
    Ok(ExitCode::SUCCESS)
}
