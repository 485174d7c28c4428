//! The solver: Caffe's training loop (`Solver::Step`/`Solve`), tests,
//! display, snapshots and restore, with one update path for every solver
//! type (`update::UpdateRule`) and pure learning-rate policies
//! (`lr_policy`).
//!
//! One iteration, in Caffe's order: clear param diffs; test if due;
//! `iter_size` forward/backward passes (diffs accumulate); smoothed loss;
//! display; lr; clip (on the summed gradient); per param normalise by
//! `1/iter_size`, regularise, compute and apply the step; `iter += 1`;
//! poll signals; snapshot if due.
pub mod datapos;
pub mod lr_policy;
pub mod snapshot;
pub mod update;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::solver::Regularization;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::log::{g, info, site};
use crate::net::{Net, NetOptions};
use crate::parallel::GradSync;
use crate::proto::caffe::{NetParameter, NetState, Phase, SolverParameter};
use crate::proto::{text, upgrade};
use crate::tensor::Blob;

pub use lr_policy::LrPolicy;
pub use update::{UpdateRule, SOLVER_TYPES};

/// What a signal (or another controller) asks the solver to do; polled
/// once per iteration and once per test batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolverAction {
    None,
    Stop,
    Snapshot,
}

impl SolverAction {
    /// The `--sigint_effect` / `--sighup_effect` spellings.
    pub fn parse(s: &str) -> Result<SolverAction> {
        match s {
            "stop" => Ok(SolverAction::Stop),
            "snapshot" => Ok(SolverAction::Snapshot),
            "none" => Ok(SolverAction::None),
            _ => Err(Error::Solver(format!(
                "Invalid signal effect \"{s}\" was specified (use stop, snapshot or none)"
            ))),
        }
    }
}

pub type ActionFn = Box<dyn FnMut() -> SolverAction + Send>;

/// One averaged output of a test pass.
#[derive(Debug, Clone, PartialEq)]
pub struct TestScore {
    pub name: String,
    pub value: f32,
    pub loss_weight: f32,
}

pub struct Solver {
    param: SolverParameter,
    be: Arc<dyn Backend>,
    net: Net,
    test_nets: Vec<Net>,
    test_iters: Vec<i32>,
    rule: Box<dyn UpdateRule>,
    lr_policy: LrPolicy,
    regularization: Regularization,
    /// `history[set][param]`: one set per history kind of the rule.
    history: Vec<Vec<Blob>>,
    iter: i32,
    current_step: i32,
    losses: Vec<f32>,
    smoothed_loss: f32,
    iterations_last: i32,
    timer: Instant,
    action: Option<ActionFn>,
    requested_early_exit: bool,
    seed: u64,
    test_scores: Vec<Vec<TestScore>>,
    /// The (model, state) pair of the last snapshot this run wrote.
    last_snapshot: Option<(PathBuf, PathBuf)>,
    /// The train net's data-wait totals at the last `debug_info` display,
    /// and the first iteration after it.
    wait_mark: Option<(crate::data::WaitStats, i32)>,
    /// This solver's replica index in data-parallel training (0 alone):
    /// only rank 0 tests, displays and snapshots.
    rank: usize,
    /// The link to the other replicas (see `crate::parallel`).
    sync: Option<Box<dyn GradSync>>,
}

/// protobuf's `NetState::MergeFrom`: set scalars overwrite, stages append.
fn merge_state(base: &mut NetState, other: Option<&NetState>) {
    let Some(o) = other else { return };
    if o.phase.is_some() {
        base.phase = o.phase;
    }
    if o.level.is_some() {
        base.level = o.level;
    }
    base.stage.extend(o.stage.iter().cloned());
}

/// Caffe's seed when `random_seed` is negative: unpredictable per run.
fn time_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // splitmix64 of time and pid, so runs started together still differ.
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn read_net_file(path: &str) -> Result<NetParameter> {
    upgrade::load_net_text(Path::new(path))
}

fn upgrade_inline(mut p: NetParameter, source: &str) -> Result<NetParameter> {
    upgrade::upgrade_net(&mut p, source)?.log();
    Ok(p)
}

/// Load each comma-separated caffemodel of `list` into `net` (Caffe's
/// `LoadNetWeights`).
pub fn load_weights(net: &mut Net, list: &str) -> Result<()> {
    for name in list.split(',').map(str::trim) {
        info(site::SOLVER_FINETUNING, &format!("Finetuning from {name}"));
        snapshot::load_weights_file(net, Path::new(name))?;
    }
    Ok(())
}

impl Solver {
    /// Caffe's `Solver::Init`: check the settings, build the train net and
    /// the test nets, load `weights`. Paths are relative to the current
    /// directory, as in Caffe.
    pub fn new(param: SolverParameter, be: Arc<dyn Backend>) -> Result<Solver> {
        Self::new_replica(param, be, 0, 1)
    }

    /// The solver of replica `rank` of `world` in data-parallel training
    /// (Caffe's worker solvers): seed `random_seed + rank`, the train net
    /// reads its shard of the data, and only rank 0 builds test nets and
    /// checks the snapshot prefix. Attach the link with `set_grad_sync`.
    pub fn new_replica(
        param: SolverParameter,
        be: Arc<dyn Backend>,
        rank: usize,
        world: usize,
    ) -> Result<Solver> {
        info(
            site::SOLVER_INIT,
            &format!(
                "Initializing solver from parameters: \n{}",
                text::print_solver(&param)
            ),
        );
        if param.average_loss() < 1 {
            return Err(Error::Solver(format!(
                "average_loss must be >= 1 (it is {})",
                param.average_loss()
            )));
        }
        if param.iter_size() < 1 {
            return Err(Error::Solver(format!(
                "iter_size must be >= 1 (it is {})",
                param.iter_size()
            )));
        }
        snapshot::check_format(&param)?;
        let rule = update::create(&param)?;
        let lr_policy = LrPolicy::from_param(&param)?;
        let regularization = match param.regularization_type() {
            "L2" => Regularization::L2,
            "L1" => Regularization::L1,
            other => {
                return Err(Error::Solver(format!(
                    "Unknown regularization type: {other} (use L2 or L1)"
                )))
            }
        };
        if rank == 0 {
            Self::check_snapshot_write_permissions(&param)?;
        }
        let seed = if param.random_seed() >= 0 {
            param.random_seed() as u64
        } else {
            time_seed()
        }
        .wrapping_add(rank as u64);

        let net = Self::init_train_net(&param, &be, seed, (rank, world))?;
        let (test_nets, test_iters) = if rank == 0 {
            Self::init_test_nets(&param, &be, seed)?
        } else {
            (Vec::new(), Vec::new())
        };
        info(site::SOLVER_SCAFFOLDING, "Solver scaffolding done.");

        let sets = rule.history_sets();
        let history = (0..sets)
            .map(|_| {
                (0..net.num_learnable())
                    .map(|i| Blob::new(&*be, net.learnable(i).shape()))
                    .collect()
            })
            .collect();
        let n_tests = test_nets.len();
        Ok(Solver {
            param,
            be,
            net,
            test_nets,
            test_iters,
            rule,
            lr_policy,
            regularization,
            history,
            iter: 0,
            current_step: 0,
            losses: Vec::new(),
            smoothed_loss: 0.0,
            iterations_last: 0,
            timer: Instant::now(),
            action: None,
            requested_early_exit: false,
            seed,
            test_scores: vec![Vec::new(); n_tests],
            last_snapshot: None,
            wait_mark: None,
            rank,
            sync: None,
        })
    }

    fn check_snapshot_write_permissions(p: &SolverParameter) -> Result<()> {
        if p.snapshot() == 0 {
            return Ok(());
        }
        let Some(prefix) = p.snapshot_prefix.as_deref() else {
            return Err(Error::Solver(
                "In solver params, snapshot is specified but snapshot_prefix is not".into(),
            ));
        };
        let probe = format!("{prefix}_iter_0.tempfile");
        match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                Ok(())
            }
            Err(e) => Err(Error::Solver(format!(
                "Cannot write to snapshot prefix '{prefix}' ({e}).  Make sure that the \
                 directory exists and is writeable."
            ))),
        }
    }

    fn net_options(state: NetState, seed: u64) -> NetOptions {
        let mut o = NetOptions::new(state.phase());
        o.level = state.level();
        o.stages = state.stage.clone();
        o.state = Some(state);
        o.seed = seed;
        o
    }

    fn init_train_net(
        p: &SolverParameter,
        be: &Arc<dyn Backend>,
        seed: u64,
        (rank, world): (usize, usize),
    ) -> Result<Net> {
        let n = p.net.is_some() as usize
            + p.net_param.is_some() as usize
            + p.train_net.is_some() as usize
            + p.train_net_param.is_some() as usize;
        let fields = "net, net_param, train_net, train_net_param";
        if n == 0 {
            return Err(Error::Solver(format!(
                "SolverParameter must specify a train net using one of these fields: {fields}"
            )));
        }
        if n > 1 {
            return Err(Error::Solver(format!(
                "SolverParameter must not contain more than one of these fields specifying a \
                 train_net: {fields}"
            )));
        }
        let mut net_param = if let Some(np) = &p.train_net_param {
            info(
                site::SOLVER_TRAIN_NET_PARAM,
                "Creating training net specified in train_net_param.",
            );
            upgrade_inline(np.clone(), "train_net_param")?
        } else if let Some(f) = &p.train_net {
            info(
                site::SOLVER_TRAIN_NET_FILE,
                &format!("Creating training net from train_net file: {f}"),
            );
            read_net_file(f)?
        } else if let Some(np) = &p.net_param {
            info(
                site::SOLVER_NET_PARAM,
                "Creating training net specified in net_param.",
            );
            upgrade_inline(np.clone(), "net_param")?
        } else {
            let f = p.net();
            info(
                site::SOLVER_NET_FILE,
                &format!("Creating training net from net file: {f}"),
            );
            read_net_file(f)?
        };
        // Solver default < the net's own state < train_state.
        let mut state = NetState::default();
        state.set_phase(Phase::Train);
        merge_state(&mut state, net_param.state.as_ref());
        merge_state(&mut state, p.train_state.as_ref());
        net_param.state = Some(state.clone());
        let mut opts = Self::net_options(state, seed);
        (opts.rank, opts.world) = (rank, world);
        let mut net = Net::new(&net_param, &opts, be.clone())?;
        for w in &p.weights {
            load_weights(&mut net, w)?;
        }
        Ok(net)
    }

    fn init_test_nets(
        p: &SolverParameter,
        be: &Arc<dyn Backend>,
        seed: u64,
    ) -> Result<(Vec<Net>, Vec<i32>)> {
        let has_generic = p.net.is_some() || p.net_param.is_some();
        if p.net.is_some() && p.net_param.is_some() {
            return Err(Error::Solver(
                "Both net_param and net_file may not be specified.".into(),
            ));
        }
        let num_specific = p.test_net_param.len() + p.test_net.len();
        let n_iter = p.test_iter.len();
        if (has_generic && n_iter < num_specific) || (!has_generic && n_iter != num_specific) {
            return Err(Error::Solver(format!(
                "test_iter must be specified for each test network ({n_iter} test_iter for \
                 {num_specific} test_net/test_net_param)"
            )));
        }
        let num_instances = n_iter;
        if !p.test_state.is_empty() && p.test_state.len() != num_instances {
            return Err(Error::Solver(format!(
                "test_state must be unspecified or specified once per test net ({} test_state \
                 for {num_instances} test nets)",
                p.test_state.len()
            )));
        }
        if num_instances > 0 && p.test_interval() <= 0 {
            return Err(Error::Solver(format!(
                "test_interval must be > 0 when there are test nets (it is {})",
                p.test_interval()
            )));
        }
        let mut sources: Vec<(String, NetParameter)> = Vec::with_capacity(num_instances);
        for np in &p.test_net_param {
            sources.push((
                "test_net_param".into(),
                upgrade_inline(np.clone(), "test_net_param")?,
            ));
        }
        for f in &p.test_net {
            sources.push((format!("test_net file: {f}"), read_net_file(f)?));
        }
        let remaining = num_instances - sources.len();
        if let Some(np) = &p.net_param {
            let np = upgrade_inline(np.clone(), "net_param")?;
            for _ in 0..remaining {
                sources.push(("net_param".into(), np.clone()));
            }
        }
        if let Some(f) = &p.net {
            for _ in 0..remaining {
                sources.push((format!("net file: {f}"), read_net_file(f)?));
            }
        }
        let mut nets = Vec::with_capacity(num_instances);
        for (i, (source, mut np)) in sources.into_iter().enumerate() {
            let mut state = NetState::default();
            state.set_phase(Phase::Test);
            merge_state(&mut state, np.state.as_ref());
            merge_state(&mut state, p.test_state.get(i));
            np.state = Some(state.clone());
            info(
                site::SOLVER_TEST_NET,
                &format!("Creating test net (#{i}) specified by {source}"),
            );
            let mut net = Net::new(&np, &Self::net_options(state, seed), be.clone())?;
            // Caffe: test nets print debug info on every test pass.
            net.set_debug_info(p.debug_info());
            for w in &p.weights {
                load_weights(&mut net, w)?;
            }
            nets.push(net);
        }
        Ok((nets, p.test_iter.clone()))
    }

    // ---------------------------------------------------------- access --

    pub fn param(&self) -> &SolverParameter {
        &self.param
    }
    pub fn net(&self) -> &Net {
        &self.net
    }
    pub fn net_mut(&mut self) -> &mut Net {
        &mut self.net
    }
    pub fn test_nets(&self) -> &[Net] {
        &self.test_nets
    }
    /// Updates applied so far.
    pub fn iter(&self) -> i32 {
        self.iter
    }
    pub fn current_step(&self) -> i32 {
        self.current_step
    }
    pub fn smoothed_loss(&self) -> f32 {
        self.smoothed_loss
    }
    /// The seed the nets were built with (`random_seed`, or a time seed).
    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn update_rule(&self) -> &dyn UpdateRule {
        &*self.rule
    }
    /// History blobs in solverstate order (set by set).
    pub fn history(&self) -> impl Iterator<Item = &Blob> {
        self.history.iter().flatten()
    }
    /// The averaged outputs of the last test of each test net.
    pub fn test_scores(&self) -> &[Vec<TestScore>] {
        &self.test_scores
    }
    /// Whether a Stop request ended the last `solve`/`step` early.
    pub fn requested_early_exit(&self) -> bool {
        self.requested_early_exit
    }
    /// Install the function polled for signals (`caffe train`'s
    /// SIGINT/SIGHUP handler).
    pub fn set_action_fn(&mut self, f: ActionFn) {
        self.action = Some(f);
    }

    fn poll_action(&mut self) -> SolverAction {
        self.action.as_mut().map_or(SolverAction::None, |f| f())
    }

    /// Make this solver a replica of a data-parallel run: `step` then
    /// all-reduces the gradients before each update and takes rank 0's
    /// stop/snapshot decisions (see `crate::parallel`).
    pub fn set_grad_sync(&mut self, sync: Box<dyn GradSync>) {
        self.sync = Some(sync);
    }
    pub fn grad_sync(&self) -> Option<&dyn GradSync> {
        self.sync.as_deref()
    }
    /// This solver's replica index (0 when training alone).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// With replicas, every one gets rank 0's `action`; alone, `action`.
    fn agree(&mut self, action: SolverAction) -> Result<SolverAction> {
        match self.sync.as_mut() {
            Some(s) => s.broadcast_action(action),
            None => Ok(action),
        }
    }

    // ------------------------------------------------------------ loop --

    /// Caffe's `Solve`: train from the current iteration to `max_iter`,
    /// then the final snapshot, the final display and test.
    pub fn solve(&mut self) -> Result<()> {
        info(
            site::SOLVER_SOLVING,
            &format!("Solving {}", self.net.name()),
        );
        info(
            site::SOLVER_LR_POLICY,
            &format!("Learning Rate Policy: {}", self.param.lr_policy()),
        );
        self.requested_early_exit = false;
        let start_iter = self.iter;
        self.step(self.param.max_iter() - self.iter)?;
        let snap = self.param.snapshot();
        if self.rank == 0
            && self.param.snapshot_after_train()
            && (snap == 0 || self.iter % snap != 0)
        {
            self.snapshot()?;
        }
        if self.requested_early_exit {
            info(site::SOLVER_STOPPED_EARLY, "Optimization stopped early.");
            return Ok(());
        }
        // A forward-only pass to display the loss of the final weights.
        let display = self.param.display();
        if display != 0 && self.iter % display == 0 {
            let loss = self.net.forward()?;
            self.update_smoothed_loss(loss, start_iter, self.param.average_loss());
            info(
                site::SOLVER_FINAL_LOSS,
                &format!("Iteration {}, loss = {}", self.iter, g(self.smoothed_loss)),
            );
        }
        let ti = self.param.test_interval();
        if ti != 0 && self.iter % ti == 0 {
            self.test_all()?;
        }
        info(site::SOLVER_DONE, "Optimization Done.");
        Ok(())
    }

    /// Caffe's `Step`: `iters` iterations (fewer on a Stop request).
    pub fn step(&mut self, iters: i32) -> Result<()> {
        let start_iter = self.iter;
        let stop_iter = self.iter.saturating_add(iters);
        let average_loss = self.param.average_loss();
        self.losses.clear();
        self.smoothed_loss = 0.0;
        self.timer = Instant::now();
        // Caffe leaves this uninitialised (garbage rate on the first line).
        self.iterations_last = self.iter;

        self.wait_mark = self.net.data_wait().map(|w| (w, self.iter));
        while self.iter < stop_iter {
            self.net.clear_param_diffs();
            // Dropout & co. draw per iteration: resumed runs draw the same.
            self.net.reseed_rng(self.iter as u64);
            let ti = self.param.test_interval();
            if ti != 0 && self.iter % ti == 0 && (self.iter > 0 || self.param.test_initialization())
            {
                if self.rank == 0 {
                    self.test_all()?;
                }
                // A stop requested during rank 0's test stops every replica.
                let asked = if self.requested_early_exit {
                    SolverAction::Stop
                } else {
                    SolverAction::None
                };
                if self.agree(asked)? == SolverAction::Stop {
                    self.requested_early_exit = true;
                }
                if self.requested_early_exit {
                    break;
                }
            }
            let display = self.param.display() != 0 && self.iter % self.param.display() == 0;
            self.net.set_debug_info(display && self.param.debug_info());
            let iter_size = self.param.iter_size();
            let mut loss = 0.0f32;
            for _ in 0..iter_size {
                let pass = self.net.forward_backward()?;
                if !pass.is_finite() {
                    return Err(self.diverged(&format!("the loss is {}", g(pass)), true));
                }
                loss += pass;
            }
            // A device runs asynchronously: a failed launch of this or the
            // previous iteration's update is reported here, once.
            if let Some(e) = self.be.take_device_error() {
                return Err(Error::Device(format!("iteration {}: {e}", self.iter)));
            }
            self.check_gradients()?;
            loss /= iter_size as f32;
            self.update_smoothed_loss(loss, start_iter, average_loss);
            if display && self.rank == 0 {
                self.display();
            }
            // Caffe's `on_gradients_ready`: the mean over replicas.
            if let Some(s) = self.sync.as_mut() {
                s.all_reduce_grads(&mut self.net)?;
            }
            self.apply_update(display)?;
            if display && self.param.debug_info() {
                self.net.update_debug_info();
            }
            self.iter += 1;

            let request = self.poll_action();
            let request = self.agree(request)?;
            let snap = self.param.snapshot();
            if self.rank == 0
                && ((snap != 0 && self.iter % snap == 0) || request == SolverAction::Snapshot)
            {
                self.snapshot()?;
            }
            if request == SolverAction::Stop {
                self.requested_early_exit = true;
                break;
            }
        }
        Ok(())
    }

    fn display(&mut self) {
        let lapse = self.timer.elapsed().as_secs_f32();
        let per_s =
            (self.iter - self.iterations_last) as f32 / if lapse != 0.0 { lapse } else { 1.0 };
        info(
            site::SOLVER_DISPLAY,
            &format!(
                "Iteration {} ({} iter/s, {}s/{} iters), loss = {}",
                self.iter,
                g(per_s),
                g(lapse),
                self.param.display(),
                g(self.smoothed_loss)
            ),
        );
        self.timer = Instant::now();
        self.iterations_last = self.iter;
        let mut k = 0;
        for out in self.net.outputs() {
            for v in out.values {
                info(
                    site::SOLVER_TRAIN_OUTPUT,
                    &format!(
                        "    Train net output #{k}: {} = {}{}",
                        out.name,
                        g(v),
                        loss_suffix(out.loss_weight, v)
                    ),
                );
                k += 1;
            }
        }
        if self.param.debug_info() {
            self.display_data_wait();
        }
    }

    /// rcaffe's proof that training does not wait on data: the time the
    /// train net's forward spent blocked on its prefetch queues, per
    /// iteration since the last display.
    fn display_data_wait(&mut self) {
        let Some(now) = self.net.data_wait() else {
            return;
        };
        let (before, from) = self.wait_mark.unwrap_or((now, self.iter));
        let iters = (self.iter + 1 - from).max(1);
        let waited = now.waited.saturating_sub(before.waited);
        info(
            site::SOLVER_DISPLAY,
            &format!(
                "Data wait: {:.4} ms/iter ({iters} iterations, {} batches, {:.3} ms in all)",
                waited.as_secs_f64() * 1e3 / f64::from(iters),
                now.batches.saturating_sub(before.batches),
                waited.as_secs_f64() * 1e3
            ),
        );
        self.wait_mark = Some((now, self.iter + 1));
    }

    /// Caffe's `UpdateSmoothedLoss`: a running mean until the window is
    /// full, then a ring buffer.
    fn update_smoothed_loss(&mut self, loss: f32, start_iter: i32, average_loss: i32) {
        let window = average_loss.max(1) as usize;
        if self.losses.len() < window {
            self.losses.push(loss);
            let size = self.losses.len() as f32;
            self.smoothed_loss = (self.smoothed_loss * (size - 1.0) + loss) / size;
        } else {
            let idx = (self.iter - start_iter).rem_euclid(average_loss) as usize;
            self.smoothed_loss += (loss - self.losses[idx]) / average_loss as f32;
            self.losses[idx] = loss;
        }
    }

    /// Caffe's `SGDSolver::ApplyUpdate` (shared by every solver type).
    fn apply_update(&mut self, display: bool) -> Result<()> {
        let r = self.lr_policy.rate(self.iter, &mut self.current_step);
        if r.multistep_advanced {
            info(
                site::SGD_MULTISTEP,
                &format!(
                    "MultiStep Status: Iteration {}, step = {}",
                    self.iter, self.current_step
                ),
            );
        }
        if display {
            info(
                site::SGD_LR,
                &format!("Iteration {}, lr = {}", self.iter, g(r.rate)),
            );
        }
        self.clip_gradients();
        let be = self.be.clone();
        let iter_size = self.param.iter_size();
        let weight_decay = self.param.weight_decay();
        for i in 0..self.net.num_learnable() {
            let lr_mult = self.net.learnable_lr_mult(i);
            let local_decay = weight_decay * self.net.learnable_decay_mult(i);
            let p = self.net.learnable_mut(i);
            let n = p.count();
            if iter_size > 1 {
                be.scal(n, 1.0 / iter_size as f32, p.diff.view_mut());
            }
            if local_decay != 0.0 {
                be.regularize(
                    n,
                    self.regularization,
                    local_decay,
                    p.data.view(),
                    p.diff.view_mut(),
                );
            }
            let mut hist: Vec<&mut Blob> = self.history.iter_mut().map(|s| &mut s[i]).collect();
            self.rule
                .apply(&*be, p, &mut hist, r.rate * lr_mult, self.iter);
        }
        Ok(())
    }

    /// Scale all gradients down when their global L2 norm exceeds
    /// `clip_gradients` (a negative value turns clipping off).
    fn clip_gradients(&mut self) {
        let clip = self.param.clip_gradients();
        if clip < 0.0 {
            return;
        }
        let be = self.be.clone();
        let mut sumsq = 0.0f32;
        for i in 0..self.net.num_learnable() {
            let p = self.net.learnable(i);
            sumsq += be.sumsq(p.count(), p.diff.view());
        }
        let norm = sumsq.sqrt();
        if norm > clip {
            let scale = clip / norm;
            info(
                site::SGD_CLIP,
                &format!(
                    "Gradient clipping: scaling down gradients (L2 norm {} > {}) by scale factor {}",
                    g(norm),
                    g(clip),
                    g(scale)
                ),
            );
            for i in 0..self.net.num_learnable() {
                let p = self.net.learnable_mut(i);
                let n = p.count();
                be.scal(n, scale, p.diff.view_mut());
            }
        }
    }

    // ----------------------------------------------------------- tests --

    /// Run every test net (Caffe's `TestAll`).
    pub fn test_all(&mut self) -> Result<()> {
        for id in 0..self.test_nets.len() {
            if self.requested_early_exit {
                break;
            }
            self.test(id)?;
        }
        Ok(())
    }

    /// Run test net `id` for its `test_iter` batches on the current weights
    /// and log the mean of each output (Caffe's `Test`).
    pub fn test(&mut self, id: usize) -> Result<()> {
        info(
            site::SOLVER_TESTING,
            &format!("Iteration {}, Testing net (#{id})", self.iter),
        );
        self.test_nets[id].share_weights_from(&self.net)?;
        let n_iter = self.test_iters[id];
        let mut scores: Vec<f32> = Vec::new();
        let mut names: Vec<(String, f32)> = Vec::new();
        let mut loss = 0.0f32;
        for i in 0..n_iter {
            loop {
                match self.poll_action() {
                    SolverAction::None => break,
                    SolverAction::Snapshot => {
                        self.snapshot()?;
                    }
                    SolverAction::Stop => self.requested_early_exit = true,
                }
            }
            if self.requested_early_exit {
                break;
            }
            let iter_loss = self.test_nets[id].forward()?;
            if self.param.test_compute_loss() {
                loss += iter_loss;
            }
            let mut idx = 0;
            for out in self.test_nets[id].outputs() {
                for v in out.values {
                    if i == 0 {
                        scores.push(v);
                        names.push((out.name.clone(), out.loss_weight));
                    } else if let Some(s) = scores.get_mut(idx) {
                        *s += v;
                    }
                    idx += 1;
                }
            }
        }
        if self.requested_early_exit {
            info(site::SOLVER_TEST_INTERRUPTED, "Test interrupted.");
            return Ok(());
        }
        if self.param.test_compute_loss() {
            loss /= n_iter as f32;
            info(site::SOLVER_TEST_LOSS, &format!("Test loss: {}", g(loss)));
        }
        let mut out = Vec::with_capacity(scores.len());
        for (i, (s, (name, w))) in scores.iter().zip(names).enumerate() {
            let mean = s / n_iter as f32;
            info(
                site::SOLVER_TEST_OUTPUT,
                &format!(
                    "    Test net output #{i}: {name} = {}{}",
                    g(mean),
                    loss_suffix(w, mean)
                ),
            );
            out.push(TestScore {
                name,
                value: mean,
                loss_weight: w,
            });
        }
        self.test_scores[id] = out;
        Ok(())
    }

    // ------------------------------------------------------ divergence --

    /// Once per iteration: are all accumulated gradients finite? One asum
    /// per parameter; only when that sum is not finite are the values
    /// scanned (a finite but huge gradient can overflow the sum itself).
    fn check_gradients(&self) -> Result<()> {
        let be = &self.be;
        let mut total = 0.0f32;
        for i in 0..self.net.num_learnable() {
            let p = self.net.learnable(i);
            total += be.asum(p.count(), p.diff.view());
        }
        if total.is_finite() {
            return Ok(());
        }
        match self.net.find_non_finite() {
            Some(_) => Err(self.diverged("a gradient is not finite", true)),
            None => Ok(()),
        }
    }

    /// Before a snapshot: never write non-finite weights or history over
    /// a good snapshot.
    fn check_state_finite(&self) -> Result<()> {
        let be = &self.be;
        let mut total = 0.0f32;
        for i in 0..self.net.num_learnable() {
            let p = self.net.learnable(i);
            total += be.asum(p.count(), p.data.view());
        }
        for b in self.history() {
            total += be.asum(b.count(), b.data.view());
        }
        if total.is_finite() {
            return Ok(());
        }
        let weights_bad = (0..self.net.num_learnable()).any(|i| {
            self.net
                .learnable(i)
                .data_vec()
                .iter()
                .any(|v| !v.is_finite())
        });
        if weights_bad {
            return Err(self.diverged("the weights are not finite", true));
        }
        let n = self.net.num_learnable().max(1);
        for (k, b) in self.history().enumerate() {
            if b.data_vec().iter().any(|v| !v.is_finite()) {
                let what = format!(
                    "the solver history of parameter '{}' is not finite",
                    self.net.learnable_name(k % n)
                );
                return Err(self.diverged(&what, false));
            }
        }
        Ok(())
    }

    /// The error that stops a diverged run: the iteration, what went
    /// non-finite first, and which snapshot is still good.
    fn diverged(&self, what: &str, locate: bool) -> Error {
        let found = if locate {
            self.net.find_non_finite()
        } else {
            None
        };
        let first = match found {
            Some(nf) if nf.what.ends_with("(the weights)") => {
                let when = if self.iter > 0 {
                    format!("set by the update of iteration {}", self.iter - 1)
                } else {
                    "present before the first update".to_string()
                };
                format!("; first non-finite value: {nf}, {when}")
            }
            Some(nf) => format!("; first non-finite value: {nf}"),
            None => String::new(),
        };
        let kept = match &self.last_snapshot {
            Some((model, state)) => format!(
                "the last good snapshot is {} / {}",
                model.display(),
                state.display()
            ),
            None => "this run wrote no snapshot before".to_string(),
        };
        Error::Solver(format!(
            "Training diverged at iteration {}: {what}{first}. Stopped without \
             snapshotting the non-finite state; {kept}. (Lower base_lr or set \
             clip_gradients.)",
            self.iter
        ))
    }
}

/// ` (* w = w·v loss)` for outputs with a loss weight, else nothing (the
/// suffix of Caffe's output lines).
pub fn loss_suffix(w: f32, v: f32) -> String {
    if w != 0.0 {
        format!(" (* {} = {} loss)", g(w), g(w * v))
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests;
