//! `--gpu` on machines without a usable GPU: the binary names the missing
//! library (or the version problem) and the fix, exits 1, never panics.
//!
//! Besides the real machine (no libcuda here or in CI), the checks run
//! against stand-in libraries built with `cc` in a temp dir: tiny `.so`
//! files with the real sonames that export only the version functions the
//! probes call (and a `cuInit` that reports no device). With them on
//! LD_LIBRARY_PATH every step of the probe chain is reached in turn:
//! cuBLAS, NVRTC, cuDNN, NCCL missing, wrong versions, and a driver with no
//! GPU. On a machine with a real driver these tests print a note and pass
//! (the GPU checks are scripts/gpu-check.sh's job).
#![cfg(feature = "cuda")]

use std::path::{Path, PathBuf};
use std::process::Command;

use rcaffe::backend::cuda::probe::{self, Lib, CUDA_MAJOR};

/// Run rcaffe with exactly `ld_path` as LD_LIBRARY_PATH (None: unset).
fn rcaffe(args: &[&str], ld_path: Option<&Path>) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rcaffe"));
    cmd.args(args).env_remove("CUDA_VISIBLE_DEVICES");
    match ld_path {
        Some(p) => cmd.env("LD_LIBRARY_PATH", p),
        None => cmd.env_remove("LD_LIBRARY_PATH"),
    };
    let out = cmd.output().expect("run rcaffe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A real CUDA driver is reachable without LD_LIBRARY_PATH (system paths):
/// then "absent" cannot be tested here.
fn real_driver_present() -> bool {
    let (code, text) = rcaffe(&["device_query", "--gpu", "0"], None);
    let absent = code == Some(1) && text.contains("the CUDA driver library was not found");
    if !absent {
        eprintln!(
            "SKIPPED: a CUDA driver is installed on this machine; the no-GPU paths are tested \
             on machines without one (device_query said: {})",
            text.lines().last().unwrap_or("")
        );
    }
    !absent
}

fn assert_clean_failure(code: Option<i32>, text: &str, args: &[&str]) {
    assert_eq!(code, Some(1), "{args:?}: {text}");
    assert!(text.contains("no usable GPU"), "{args:?}: {text}");
    assert!(!text.contains("panicked"), "{args:?}: {text}");
}

const COMMANDS: [&[&str]; 4] = [
    &["train", "--solver", "s.prototxt", "--gpu", "0"],
    &["test", "--model", "m", "--weights", "w", "--gpu", "0"],
    &["time", "--model", "m", "--gpu", "0"],
    &["device_query", "--gpu", "0"],
];

#[test]
fn no_driver_names_libcuda_and_the_fix() {
    if real_driver_present() {
        return;
    }
    for args in COMMANDS {
        let (code, text) = rcaffe(args, None);
        assert_clean_failure(code, &text, args);
        assert!(
            text.contains("the CUDA driver library was not found"),
            "{args:?}: {text}"
        );
        assert!(text.contains("libcuda.so.1"), "{args:?}: {text}");
        assert!(
            text.contains("install the NVIDIA driver"),
            "{args:?}: {text}"
        );
    }
    // `all` and several ids fail on the driver too, before any device use.
    for gpu in ["all", "0,1"] {
        let args = ["train", "--solver", "s.prototxt", "--gpu", gpu];
        let (code, text) = rcaffe(&args, None);
        assert_clean_failure(code, &text, &args);
        assert!(text.contains("libcuda.so.1"), "{args:?}: {text}");
    }
}

/// Stand-in libraries: (file name, C source).
struct Fakes {
    dir: tempfile::TempDir,
}

impl Fakes {
    fn new() -> Option<Self> {
        let ok = Command::new("cc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIPPED: no C compiler (`cc`) to build the stand-in CUDA libraries");
            return None;
        }
        Some(Fakes {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn build(&self, file: &str, source: &str) -> PathBuf {
        let c = self.dir.path().join(format!("{file}.c"));
        std::fs::write(&c, source).unwrap();
        let out = self.dir.path().join(file);
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&out)
            .arg(&c)
            .status()
            .unwrap();
        assert!(st.success(), "cc failed for {file}");
        out
    }

    /// A driver that loads, reports `version` (e.g. 13000) and no device.
    fn driver(&self, version: u32) {
        self.build(
            "libcuda.so.1",
            &format!(
                "int cuDriverGetVersion(int* v) {{ *v = {version}; return 0; }}\n\
                 int cuInit(unsigned f) {{ (void)f; return 100; /* CUDA_ERROR_NO_DEVICE */ }}\n\
                 int cuDeviceGetCount(int* c) {{ *c = 0; return 100; }}\n"
            ),
        );
    }

    fn cublas(&self, major: u32) {
        self.build(
            &format!("libcublas.so.{major}"),
            &format!(
                "int cublasGetProperty(int t, int* v) {{ *v = t == 0 ? {major} : (t == 1 ? 0 : \
                 2); return 0; }}\n"
            ),
        );
    }

    fn nvrtc(&self) {
        self.build(
            &format!("libnvrtc.so.{CUDA_MAJOR}"),
            &format!(
                "int nvrtcVersion(int* a, int* b) {{ *a = {CUDA_MAJOR}; *b = 0; return 0; }}\n"
            ),
        );
    }

    fn cudnn(&self, version: u64) {
        self.build(
            // cudarc's names include libcudnn.so.9 but not .so.8; an old
            // cuDNN is reached through its development link libcudnn.so.
            if version >= 90000 {
                "libcudnn.so.9"
            } else {
                "libcudnn.so"
            },
            &format!("#include <stddef.h>\nsize_t cudnnGetVersion(void) {{ return {version}; }}\n"),
        );
    }

    fn nccl(&self) -> PathBuf {
        self.build(
            "libnccl.so.2",
            "int ncclGetVersion(int* v) { *v = 22703; return 0; }\n",
        )
    }
}

fn expect(args: &[&str], fakes: &Fakes, wanted: &[&str]) {
    let (code, text) = rcaffe(args, Some(fakes.path()));
    assert_clean_failure(code, &text, args);
    for w in wanted {
        assert!(text.contains(w), "{args:?}: wanted {w:?} in:\n{text}");
    }
}

#[test]
fn each_missing_library_is_named_in_turn() {
    if real_driver_present() {
        return;
    }
    let Some(f) = Fakes::new() else {
        return;
    };
    let train = ["train", "--solver", "s.prototxt", "--gpu", "0"];
    let m = CUDA_MAJOR;
    f.driver(m * 1000);
    let cublas_file = format!("libcublas.so.{m}");
    expect(
        &train,
        &f,
        &[
            "cuBLAS was not found",
            &cublas_file,
            "nvidia-cublas",
            "LD_LIBRARY_PATH=",
        ],
    );
    f.cublas(m);
    expect(&train, &f, &["NVRTC was not found", "nvidia-cuda-nvrtc"]);
    f.nvrtc();
    expect(
        &train,
        &f,
        &[
            "cuDNN was not found",
            "libcudnn.so.9",
            &format!("nvidia-cudnn-cu{m}"),
        ],
    );
    f.cudnn(91300);
    // Every library is there; the (stand-in) driver has no device.
    expect(
        &train,
        &f,
        &["cuInit failed", "CUDA_ERROR_NO_DEVICE", "nvidia-smi"],
    );
    // device_query needs the driver only, lists the libraries, then fails
    // on the device.
    let (code, text) = rcaffe(&["device_query", "--gpu", "0"], Some(f.path()));
    assert_clean_failure(code, &text, &["device_query"]);
    assert!(text.contains("CUDA_ERROR_NO_DEVICE"), "{text}");

    // Several GPUs need NCCL: missing, then present only as libnccl.so.2
    // (which cudarc does not open), then linked as libnccl.so.
    let multi = ["train", "--solver", "s.prototxt", "--gpu", "0,1"];
    expect(&multi, &f, &["NCCL was not found", "libnccl.so.2"]);
    let so2 = f.nccl();
    expect(&multi, &f, &["found as libnccl.so.2", "libnccl.so"]);
    std::os::unix::fs::symlink(&so2, f.path().join("libnccl.so")).unwrap();
    expect(&multi, &f, &["CUDA_ERROR_NO_DEVICE"]);
}

#[test]
fn version_mismatches_are_explained() {
    if real_driver_present() {
        return;
    }
    let Some(f) = Fakes::new() else {
        return;
    };
    let train = ["train", "--solver", "s.prototxt", "--gpu", "0"];
    let m = CUDA_MAJOR;
    // A driver older than the libraries' CUDA.
    f.driver((m - 1) * 1000 + 40);
    expect(
        &train,
        &f,
        &[
            &format!("supports CUDA up to {}.4", m - 1),
            "update the driver",
        ],
    );
    // The other major's cuBLAS (cudarc's name list reaches it).
    f.driver(m * 1000);
    let other = if m == 13 { 12 } else { 13 };
    f.cublas(other);
    expect(
        &train,
        &f,
        &[
            &format!("cuBLAS {other}.0 was loaded"),
            &format!("this build uses CUDA {m}"),
        ],
    );
    // cuDNN 8.
    f.cublas(m);
    f.nvrtc();
    f.cudnn(8907);
    expect(
        &train,
        &f,
        &["cuDNN 8.9 was loaded", "rcaffe needs cuDNN 9"],
    );
}

/// In-process: the probe's answer for this machine never panics and the
/// library list it reports is complete.
#[test]
fn probing_this_machine_never_panics() {
    for lib in Lib::ALL {
        match probe::probe(lib) {
            Ok(found) => eprintln!("found {}", found.describe()),
            Err(m) => {
                let e = m.into_error().to_string();
                assert!(e.contains(&lib.soname()) || e.contains("names"), "{e}");
                eprintln!("{e}");
            }
        }
    }
}
