//! `rcaffe time`: Caffe's `time()` — one warm-up forward/backward, then
//! `--iterations` timed passes layer by layer, and the per-layer and total
//! averages in Caffe's format.
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use rcaffe::log::{g, info, site, warn};
use rcaffe::net::{Net, NetOptions};
use rcaffe::proto::caffe::Phase;
use rcaffe::proto::upgrade;

use super::device_query::{backend_for, stages_from_flag};

#[derive(Debug, Args)]
pub struct TimeArgs {
    /// The model definition protocol buffer text file
    #[arg(long, default_value = "", hide_default_value = true)]
    pub model: String,
    /// The number of timed iterations
    #[arg(long, default_value_t = 50)]
    pub iterations: i32,
    /// The net phase: TRAIN or TEST
    #[arg(long, default_value = "", hide_default_value = true)]
    pub phase: String,
    /// GPU device id; this build has no GPU backend
    #[arg(long, default_value = "", hide_default_value = true)]
    pub gpu: String,
    /// The net level
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub level: i32,
    /// Comma-separated net stages
    #[arg(long, default_value = "", hide_default_value = true)]
    pub stage: String,
    /// Accepted and ignored, as by Caffe's `time` (it times fresh weights)
    #[arg(long, hide = true, default_value = "", hide_default_value = true)]
    pub weights: String,
}

fn phase_from_flag(s: &str) -> anyhow::Result<Phase> {
    match s {
        "" | "TRAIN" => Ok(Phase::Train),
        "TEST" => Ok(Phase::Test),
        other => bail!("phase must be \"TRAIN\" or \"TEST\" (got \"{other}\")"),
    }
}

fn us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

pub fn run(a: &TimeArgs) -> anyhow::Result<ExitCode> {
    if a.model.is_empty() {
        bail!("Need a model definition to time (--model).");
    }
    if a.iterations < 1 {
        bail!("--iterations must be at least 1 (it is {})", a.iterations);
    }
    if !a.weights.is_empty() {
        warn(
            site::CAFFE_TIME_USE_CPU,
            "--weights is ignored by time (as by Caffe): the net keeps its fillers' values",
        );
    }
    let phase = phase_from_flag(&a.phase)?;
    let be = backend_for(&a.gpu)?;
    info(site::CAFFE_TIME_USE_CPU, "Use CPU.");

    let param = upgrade::load_net_text(Path::new(&a.model))?;
    let mut opts = NetOptions::new(phase);
    opts.level = a.level;
    opts.stages = stages_from_flag(&a.stage);
    let mut net = Net::new(&param, &opts, be.clone())?;

    info(site::CAFFE_TIME_FORWARD, "Performing Forward");
    let initial_loss = net.forward()?;
    info(
        site::CAFFE_TIME_INITIAL_LOSS,
        &format!("Initial loss: {}", g(initial_loss)),
    );
    info(site::CAFFE_TIME_BACKWARD, "Performing Backward");
    net.backward()?;

    let n_layers = net.num_layers();
    let names = net.layer_names();
    info(site::CAFFE_TIME_BEGINS, "*** Benchmark begins ***");
    info(
        site::CAFFE_TIME_TESTING_FOR,
        &format!("Testing for {} iterations.", a.iterations),
    );
    let total = Instant::now();
    let mut fwd_layer = vec![0.0f64; n_layers];
    let mut bwd_layer = vec![0.0f64; n_layers];
    let (mut fwd_total, mut bwd_total) = (0.0f64, 0.0f64);
    for j in 0..a.iterations {
        let iter_timer = Instant::now();
        let t = Instant::now();
        for (i, acc) in fwd_layer.iter_mut().enumerate() {
            let lt = Instant::now();
            net.forward_layer(i)?;
            be.synchronize();
            *acc += us(lt);
        }
        fwd_total += us(t);
        let t = Instant::now();
        for i in (0..n_layers).rev() {
            let lt = Instant::now();
            net.backward_layer(i)?;
            be.synchronize();
            bwd_layer[i] += us(lt);
        }
        bwd_total += us(t);
        if let Some(e) = be.take_device_error() {
            anyhow::bail!("timing iteration {}: {e}", j + 1);
        }
        info(
            site::CAFFE_TIME_ITERATION,
            &format!(
                "Iteration: {} forward-backward time: {} ms.",
                j + 1,
                g(us(iter_timer) / 1000.0)
            ),
        );
    }
    info(site::CAFFE_TIME_PER_LAYER, "Average time per layer: ");
    let n = f64::from(a.iterations);
    for (i, name) in names.iter().enumerate() {
        info(
            site::CAFFE_TIME_LAYER_FORWARD,
            &format!("{name:>10}\tforward: {} ms.", g(fwd_layer[i] / 1000.0 / n)),
        );
        info(
            site::CAFFE_TIME_LAYER_BACKWARD,
            &format!("{name:>10}\tbackward: {} ms.", g(bwd_layer[i] / 1000.0 / n)),
        );
    }
    let total_ms = us(total) / 1000.0;
    info(
        site::CAFFE_TIME_AVG_FORWARD,
        &format!("Average Forward pass: {} ms.", g(fwd_total / 1000.0 / n)),
    );
    info(
        site::CAFFE_TIME_AVG_BACKWARD,
        &format!("Average Backward pass: {} ms.", g(bwd_total / 1000.0 / n)),
    );
    info(
        site::CAFFE_TIME_AVG_FB,
        &format!("Average Forward-Backward: {} ms.", g(total_ms / n)),
    );
    info(
        site::CAFFE_TIME_TOTAL,
        &format!("Total Time: {} ms.", g(total_ms)),
    );
    if !a.gpu.is_empty() {
        // The per-layer timings above wait for the device after every
        // layer (as Caffe's do), which a training step never does: on a GPU
        // also time whole passes, queued back to back, one wait per pass.
        let t = Instant::now();
        for j in 0..a.iterations {
            net.forward()?;
            net.backward()?;
            be.synchronize();
            if let Some(e) = be.take_device_error() {
                anyhow::bail!("timing unsynchronised iteration {}: {e}", j + 1);
            }
        }
        info(
            site::CAFFE_TIME_TOTAL,
            &format!(
                "Average Forward-Backward without per-layer synchronisation: {} ms.",
                g(us(t) / 1000.0 / n)
            ),
        );
    }
    info(site::CAFFE_TIME_ENDS, "*** Benchmark ends ***");
    Ok(ExitCode::SUCCESS)
}
