//! `rcaffe device_query`, and the device choice shared by the commands:
//! this build computes on the CPU only, so any `--gpu` is refused with a
//! clear error instead of Caffe's abort.
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::Backend;
use rcaffe::log::{info, site};

#[derive(Debug, Args)]
pub struct DeviceQueryArgs {
    /// GPU ids to query (comma-separated, or `all`)
    #[arg(long, default_value = "", hide_default_value = true)]
    pub gpu: String,
}

/// The error for any GPU request in a CPU-only build.
pub fn no_gpu(gpu: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "no usable GPU: this build has no CUDA backend yet (--gpu {gpu}); run without --gpu to \
         compute on the CPU"
    )
}

/// The backend for `--gpu` (empty: the CPU).
pub fn backend_for(gpu: &str) -> anyhow::Result<Arc<dyn Backend>> {
    if !gpu.trim().is_empty() {
        return Err(no_gpu(gpu));
    }
    Ok(Arc::new(CpuBackend::new()))
}

/// Caffe's `get_stages_from_flags`: split on commas; an empty flag still
/// gives one empty stage, as in Caffe (its logs show `stage: ""`).
pub fn stages_from_flag(stage: &str) -> Vec<String> {
    stage.split(',').map(str::to_string).collect()
}

fn cpu_model_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn total_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(a: &DeviceQueryArgs) -> anyhow::Result<ExitCode> {
    if !a.gpu.trim().is_empty() {
        info(
            site::CAFFE_DEVICE_QUERY,
            &format!("Querying GPUs {}", a.gpu),
        );
        return Err(no_gpu(&a.gpu));
    }
    // Caffe's property lines, label padded to a fixed column.
    let be = CpuBackend::new();
    let line = |label: &str, value: String| {
        info(site::COMMON_DEVICE_QUERY, &format!("{label:<34}{value}"));
    };
    info(
        site::CAFFE_DEVICE_QUERY,
        "Querying the CPU (no --gpu given)",
    );
    line("Device:", be.describe());
    line(
        "Name:",
        cpu_model_name().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
    );
    line(
        "Logical cores available:",
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_else(|_| "unknown".into()),
    );
    if let Some(m) = total_memory_bytes() {
        line("Total memory:", m.to_string());
    }
    line("CUDA backend:", "not in this build".to_string());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_like_gflags() {
        assert_eq!(stages_from_flag(""), vec![String::new()]);
        assert_eq!(stages_from_flag("a,b"), vec!["a", "b"]);
    }

    #[test]
    fn gpu_is_refused_clearly() {
        let e = backend_for("0").err().unwrap().to_string();
        assert!(e.contains("no usable GPU"), "{e}");
        assert!(backend_for("").is_ok());
    }
}
