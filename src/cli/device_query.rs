//! `rcaffe device_query`, and the device choice shared by the commands.
//! With the `cuda` feature, `--gpu` probes the CUDA libraries and the
//! device and reports what is missing and how to fix it (instead of
//! Caffe's abort); without it, `--gpu` is refused with a clear error.
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

/// The backend for `--gpu` (empty: the CPU).
pub fn backend_for(gpu: &str) -> anyhow::Result<Arc<dyn Backend>> {
    if gpu.trim().is_empty() {
        return Ok(Arc::new(CpuBackend::new()));
    }
    gpu_backend(gpu)
}

#[cfg(not(feature = "cuda"))]
fn gpu_backend(gpu: &str) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!(
        "no usable GPU: this rcaffe was built without the `cuda` feature (--gpu {gpu}); rebuild \
         it with the default features, or run without --gpu to compute on the CPU"
    )
}

/// Opens the GPU, so every missing library or device is reported by name.
#[cfg(feature = "cuda")]
fn gpu_backend(gpu: &str) -> anyhow::Result<Arc<dyn Backend>> {
    use rcaffe::backend::cuda::parse_gpu_flag;
    let ids = parse_gpu_flag(gpu)?;
    if ids.len() > 1 {
        // Several GPUs are for `train` (one replica each, `replica_gpus`);
        // `test` and `time` run on the first, as Caffe's do.
        return gpu_backend(&ids[0].to_string());
    }
    // One GPU: the CUDA backend (the probe inside names any missing library).
    Ok(rcaffe::backend::cuda::open_backend(ids[0])?)
}

/// One GPU of a multi-GPU training: its id and its backend.
#[cfg(feature = "cuda")]
pub struct ReplicaGpu {
    pub id: usize,
    pub backend: Arc<dyn Backend>,
}

/// `train --gpu` naming several GPUs (`0,1`, or `all` where the driver
/// sees more than one): each GPU's backend, in the flag's order (replica r
/// runs on the r-th id). `None` for the CPU or a single GPU, which take
/// `backend_for`. Everything a multi-GPU run needs is checked here, before
/// any file is read: the libraries including NCCL (`libnccl.so.2`), ids
/// that exist and are distinct, and every device opened.
#[cfg(feature = "cuda")]
pub fn replica_gpus(gpu: &str) -> anyhow::Result<Option<Vec<ReplicaGpu>>> {
    use anyhow::Context;
    use rcaffe::backend::cuda::{device_count, open_backend, parse_gpu_flag, probe};
    if gpu.trim().is_empty() {
        return Ok(None);
    }
    let ids = parse_gpu_flag(gpu)?;
    if ids.len() < 2 {
        return Ok(None);
    }
    for (k, id) in ids.iter().enumerate() {
        if ids[..k].contains(id) {
            anyhow::bail!(
                "no usable GPU setup: --gpu {gpu} names GPU {id} twice; each GPU runs one \
                 replica (NCCL cannot put two ranks on one device)"
            );
        }
    }
    probe::require(probe::MULTI_DEVICE)?;
    let count = device_count()?;
    if let Some(bad) = ids.iter().find(|&&id| id >= count) {
        anyhow::bail!(
            "no usable GPU: --gpu {gpu} names GPU {bad}, but the driver sees {count} GPU(s), \
             ids 0..{}",
            count - 1
        );
    }
    // Opened in parallel: each backend compiles its kernels for its GPU.
    let opened: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|&id| s.spawn(move || open_backend(id)))
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut gpus = Vec::with_capacity(ids.len());
    for (&id, r) in ids.iter().zip(opened) {
        let backend = r
            .map_err(|_| anyhow::anyhow!("opening GPU {id} panicked"))?
            .with_context(|| format!("GPU {id}"))?;
        gpus.push(ReplicaGpu { id, backend });
    }
    Ok(Some(gpus))
}

/// `device_query --gpu ...`: Caffe's property lines for each device (the
/// driver alone is needed for them), then one line per CUDA library; the
/// first library that `train --gpu` would miss is the error.
#[cfg(feature = "cuda")]
fn query_gpus(flag: &str) -> anyhow::Result<ExitCode> {
    use rcaffe::backend::cuda::probe::{self, Lib};
    use rcaffe::backend::cuda::{parse_gpu_flag, CudaDevice};
    let ids = parse_gpu_flag(flag)?;
    for &id in &ids {
        let dev = CudaDevice::open_with(id, &[Lib::Driver])?;
        for l in dev.properties()?.caffe_lines() {
            info(site::COMMON_DEVICE_QUERY, &l);
        }
    }
    let needed = if ids.len() > 1 {
        probe::MULTI_DEVICE
    } else {
        probe::SINGLE_DEVICE
    };
    let mut first = None;
    for lib in Lib::ALL {
        let label = format!("{}:", lib.short());
        let (text, problem) = match probe::probe(lib) {
            Ok(f) => match probe::check_version(&f) {
                Ok(()) => (f.describe(), None),
                Err(e) => (format!("{} (unusable)", f.describe()), Some(e)),
            },
            Err(m) => (
                format!("not found ({})", lib.soname()),
                Some(m.into_error()),
            ),
        };
        info(site::COMMON_DEVICE_QUERY, &format!("{label:<31}{text}"));
        if needed.contains(&lib) {
            if let Some(e) = problem {
                first.get_or_insert(e);
            }
        }
    }
    match first {
        Some(e) => Err(e.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(not(feature = "cuda"))]
fn query_gpus(flag: &str) -> anyhow::Result<ExitCode> {
    gpu_backend(flag).map(|_| ExitCode::SUCCESS)
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
        return query_gpus(&a.gpu);
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
    line(
        "CUDA backend:",
        if cfg!(feature = "cuda") {
            format!(
                "built for CUDA {} (libraries loaded at run time; `device_query --gpu 0` checks them)",
                if cfg!(feature = "cuda-13") { 13 } else { 12 }
            )
        } else {
            "not in this build (feature `cuda` off)".to_string()
        },
    );
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
