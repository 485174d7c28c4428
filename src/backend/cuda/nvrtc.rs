//! Compiling the kernel families with NVRTC (through cudarc), once per
//! process for the GPU present. Needs only libnvrtc, not a GPU, which is
//! what lets CI check every kernel source (tests/cuda_kernels.rs).
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};

use super::error::{guard, CudaError, CudaResult};
use super::kernels::Family;
use super::probe::{self, Lib};

/// The virtual architecture the NVRTC check compiles for when no GPU is
/// present: the H200's (sm_90).
pub const CHECK_ARCH: &str = "compute_90";

/// The options every family is compiled with. NVRTC's defaults match
/// nvcc's, which Caffe's .cu files were built with: fused multiply-add on,
/// IEEE division and square root, no flush-to-zero.
pub fn options(arch: &str) -> Vec<String> {
    vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()]
}

/// Compile one family for `arch` (e.g. `compute_90`). Probes NVRTC first,
/// so a missing libnvrtc is an error naming it, never a panic.
pub fn compile(family: &Family, arch: &str) -> CudaResult<Ptx> {
    probe::require(&[Lib::Nvrtc])?;
    let opts = CompileOptions {
        options: options(arch),
        name: Some(family.file.to_string()),
        ..Default::default()
    };
    guard("compiling kernels with NVRTC", || {
        compile_ptx_with_opts(family.program(), opts).map_err(|e| match e {
            CompileError::CompileError { log, options, .. } => CudaError::Compile {
                family: family.name,
                options: options.join(" "),
                log: log.to_string_lossy().into_owned(),
            },
            other => CudaError::Compile {
                family: family.name,
                options: options(arch).join(" "),
                log: format!("{other:?}"),
            },
        })
    })
}

/// `compile`, once per (family, architecture) per process: each GPU of a
/// multi-GPU run (one backend per device, opened in parallel) loads the
/// same PTX, and compiling all families takes seconds.
pub fn compile_cached(family: &Family, arch: &str) -> CudaResult<Ptx> {
    static DONE: OnceLock<Mutex<HashMap<(&'static str, String), Ptx>>> = OnceLock::new();
    let key = (family.name, arch.to_string());
    let cache = DONE.get_or_init(Default::default);
    if let Some(ptx) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(ptx.clone());
    }
    // Compiled outside the lock: two devices may race to compile one
    // family once each, which only costs time; the results are identical.
    let ptx = compile(family, arch)?;
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, ptx.clone());
    Ok(ptx)
}

/// The `.entry` names a PTX module defines.
pub fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix(".visible .entry ")
                .or_else(|| l.strip_prefix(".entry "))?;
            let end = rest.find(['(', ' ']).unwrap_or(rest.len());
            Some(rest[..end].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_from_ptx() {
        let ptx = "//\n.version 9.0\n.visible .entry rc_set(\n\t.param .u64 a\n)\n\
                   .entry rc_local (\n)\n.func helper(\n";
        assert_eq!(ptx_entries(ptx), vec!["rc_set", "rc_local"]);
    }
}
