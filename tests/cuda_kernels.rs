//! Every CUDA kernel source compiles with NVRTC, and the PTX defines exactly
//! the kernels the Rust side lists. Needs libnvrtc (no GPU): CI installs
//! PyPI's `nvidia-cuda-nvrtc` and puts its lib folder on LD_LIBRARY_PATH
//! (.ci/run). Without libnvrtc the test prints why and passes, unless
//! RCAFFE_REQUIRE_NVRTC=1 (set by CI), which makes absence a failure.
#![cfg(feature = "cuda")]

use rcaffe::backend::cuda::kernels::{Family, FAMILIES};
use rcaffe::backend::cuda::nvrtc::{self, CHECK_ARCH};
use rcaffe::backend::cuda::probe::{self, Lib};

/// `None` (after printing why) when libnvrtc cannot be loaded and that is
/// allowed.
fn nvrtc_or_skip() -> Option<probe::Found> {
    match probe::probe(Lib::Nvrtc) {
        Ok(f) => Some(f),
        Err(m) => {
            let e = m.into_error();
            if std::env::var("RCAFFE_REQUIRE_NVRTC").as_deref() == Ok("1") {
                panic!("RCAFFE_REQUIRE_NVRTC=1 but NVRTC cannot be loaded: {e}");
            }
            eprintln!("SKIPPED: NVRTC kernel compile check: {e}");
            None
        }
    }
}

fn compile_family(f: &Family, arch: &str) -> Result<Vec<String>, String> {
    let ptx = nvrtc::compile(f, arch).map_err(|e| e.to_string())?;
    Ok(nvrtc::ptx_entries(&ptx.to_src()))
}

#[test]
fn every_kernel_compiles_with_nvrtc() {
    let Some(found) = nvrtc_or_skip() else {
        return;
    };
    eprintln!("using {}", found.describe());
    let mut failures = Vec::new();
    let mut compiled = 0;
    // The H200's architecture, and the oldest one CUDA 13 supports (Turing).
    for arch in [CHECK_ARCH, "compute_75"] {
        for f in FAMILIES {
            match compile_family(f, arch) {
                Ok(mut entries) => {
                    entries.sort();
                    let mut want: Vec<String> = f.kernels.iter().map(|s| s.to_string()).collect();
                    want.sort();
                    if entries != want {
                        failures.push(format!(
                            "{} ({arch}): PTX entries {entries:?} but the Rust list is {want:?}",
                            f.file
                        ));
                    }
                    compiled += entries.len();
                }
                Err(e) => failures.push(format!("{} ({arch}): {e}", f.file)),
            }
        }
    }
    let listed: usize = FAMILIES.iter().map(|f| f.kernels.len()).sum();
    eprintln!(
        "NVRTC compiled {} families, {listed} kernels, for {CHECK_ARCH} and compute_75 \
         ({compiled} entry points checked)",
        FAMILIES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(compiled, 2 * listed);
}

/// The check can fail: a broken source is reported with NVRTC's log,
/// naming the family and file.
#[test]
fn a_broken_kernel_fails_to_compile() {
    if nvrtc_or_skip().is_none() {
        return;
    }
    let broken = Family {
        name: "broken",
        file: "broken.cu",
        source: "extern \"C\" __global__ void rc_broken(long long n, float* y) {\n  \
                 RC_LOOP(i, n) y[i] = undefined_name;\n}\n",
        kernels: &["rc_broken"],
    };
    let e = compile_family(&broken, CHECK_ARCH).unwrap_err();
    assert!(e.contains("`broken` kernels"), "{e}");
    assert!(e.contains("broken.cu(2)"), "{e}");
    assert!(e.contains("undefined_name"), "{e}");
}

/// The per-process cache hands every device the PTX a fresh compile gives.
#[test]
fn cached_compiles_equal_fresh_ones() {
    if nvrtc_or_skip().is_none() {
        return;
    }
    let f = &FAMILIES[0];
    let fresh = nvrtc::compile(f, CHECK_ARCH).unwrap().to_src();
    let first = nvrtc::compile_cached(f, CHECK_ARCH).unwrap().to_src();
    let again = nvrtc::compile_cached(f, CHECK_ARCH).unwrap().to_src();
    assert_eq!(first, fresh);
    assert_eq!(again, fresh);
}
