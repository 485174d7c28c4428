//! `rcaffe test`: Caffe's `test()` — score a model's TEST net over
//! `--iterations` batches, printing every batch's outputs and the means
//! (summed in float and divided by the batch count, as Caffe does).
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use rcaffe::log::{g, info, site};
use rcaffe::net::{Net, NetOptions};
use rcaffe::proto::caffe::Phase;
use rcaffe::proto::upgrade;
use rcaffe::solver::loss_suffix;

use super::device_query::{backend_for, stages_from_flag};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The model definition protocol buffer text file
    #[arg(long, default_value = "", hide_default_value = true)]
    pub model: String,
    /// The trained weights (.caffemodel)
    #[arg(long, default_value = "", hide_default_value = true)]
    pub weights: String,
    /// The number of batches to score
    #[arg(long, default_value_t = 50)]
    pub iterations: i32,
    /// GPU device id; this build has no GPU backend
    #[arg(long, default_value = "", hide_default_value = true)]
    pub gpu: String,
    /// The net level
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub level: i32,
    /// Comma-separated net stages
    #[arg(long, default_value = "", hide_default_value = true)]
    pub stage: String,
}

pub fn run(a: &TestArgs) -> anyhow::Result<ExitCode> {
    if a.model.is_empty() {
        bail!("Need a model definition to score (--model).");
    }
    if a.weights.is_empty() {
        bail!("Need model weights to score (--weights).");
    }
    if a.iterations < 1 {
        bail!("--iterations must be at least 1 (it is {})", a.iterations);
    }
    let be = backend_for(&a.gpu)?;
    info(site::CAFFE_TEST_USE_CPU, "Use CPU.");

    let param = upgrade::load_net_text(Path::new(&a.model))?;
    let mut opts = NetOptions::new(Phase::Test);
    opts.level = a.level;
    opts.stages = stages_from_flag(&a.stage);
    let mut net = Net::new(&param, &opts, be)?;
    // Caffe's CopyTrainedLayersFrom: a binary proto, or HDF5 for `.h5`.
    rcaffe::solver::snapshot::load_weights_file(&mut net, Path::new(&a.weights))?;
    info(
        site::CAFFE_TEST_RUNNING,
        &format!("Running for {} iterations.", a.iterations),
    );

    let mut scores: Vec<f32> = Vec::new();
    let mut slots: Vec<(String, f32)> = Vec::new();
    let mut loss = 0.0f32;
    for i in 0..a.iterations {
        loss += net.forward()?;
        let mut idx = 0;
        for out in net.outputs() {
            for v in out.values {
                if i == 0 {
                    scores.push(v);
                    slots.push((out.name.clone(), out.loss_weight));
                } else if let Some(s) = scores.get_mut(idx) {
                    *s += v;
                }
                idx += 1;
                info(
                    site::CAFFE_TEST_BATCH,
                    &format!("Batch {i}, {} = {}", out.name, g(v)),
                );
            }
        }
    }
    loss /= a.iterations as f32;
    info(site::CAFFE_TEST_LOSS, &format!("Loss: {}", g(loss)));
    for (s, (name, w)) in scores.iter().zip(&slots) {
        let mean = s / a.iterations as f32;
        info(
            site::CAFFE_TEST_SCORE,
            &format!("{name} = {}{}", g(mean), loss_suffix(*w, mean)),
        );
    }
    Ok(ExitCode::SUCCESS)
}
