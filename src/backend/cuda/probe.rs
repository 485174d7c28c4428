//! Finding the CUDA libraries before cudarc touches them.
//!
//! cudarc loads each library on first use (`dlopen` of the names from
//! `cudarc::get_lib_name_candidates`, first that loads wins) and **panics**
//! when none loads. So before any cudarc call we `dlopen` the same names in
//! the same order ourselves: the file found is the one cudarc will load, and
//! absence becomes an error that names the library and the fix.
//!
//! Each probe also reads the library's version through its own version
//! function (callable before any initialisation), so a CUDA 12 library
//! under a CUDA 13 build, or a driver too old for the libraries, is reported
//! here instead of failing later inside a handle creation.
use std::ffi::{c_char, c_int, c_void, CStr, CString};

use super::error::{CudaError, CudaResult};

/// The CUDA major version this build's bindings (cudarc feature) target.
pub const CUDA_MAJOR: u32 = if cfg!(feature = "cuda-13") { 13 } else { 12 };

/// The libraries the backend uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    Driver,
    Cublas,
    Nvrtc,
    Cudnn,
    Nccl,
}

/// What one GPU needs (NCCL only matters with several GPUs).
pub const SINGLE_DEVICE: &[Lib] = &[Lib::Driver, Lib::Cublas, Lib::Nvrtc, Lib::Cudnn];
/// What multi-GPU training needs.
pub const MULTI_DEVICE: &[Lib] = &[Lib::Driver, Lib::Cublas, Lib::Nvrtc, Lib::Cudnn, Lib::Nccl];

impl Lib {
    pub const ALL: [Lib; 5] = [Lib::Driver, Lib::Cublas, Lib::Nvrtc, Lib::Cudnn, Lib::Nccl];

    pub fn name(self) -> &'static str {
        match self {
            Lib::Driver => "the CUDA driver library",
            Lib::Cublas => "cuBLAS",
            Lib::Nvrtc => "NVRTC",
            Lib::Cudnn => "cuDNN",
            Lib::Nccl => "NCCL",
        }
    }

    /// The short name, for tables.
    pub fn short(self) -> &'static str {
        match self {
            Lib::Driver => "CUDA driver",
            other => other.name(),
        }
    }

    /// The file the CUDA 12/13 stack ships (what a user looks for).
    pub fn soname(self) -> String {
        match self {
            Lib::Driver => "libcuda.so.1".into(),
            Lib::Cublas => format!("libcublas.so.{CUDA_MAJOR}"),
            Lib::Nvrtc => format!("libnvrtc.so.{CUDA_MAJOR}"),
            Lib::Cudnn => "libcudnn.so.9".into(),
            Lib::Nccl => "libnccl.so.2".into(),
        }
    }

    /// cudarc's library base names (`sys::culib` of each module).
    fn cudarc_names(self) -> &'static [&'static str] {
        match self {
            Lib::Driver => &["cuda", "nvcuda"],
            Lib::Cublas => &["cublas"],
            Lib::Nvrtc => &["nvrtc"],
            Lib::Cudnn => &["cudnn"],
            Lib::Nccl => &["nccl"],
        }
    }

    /// How to fix its absence.
    pub fn fix(self) -> String {
        let m = CUDA_MAJOR;
        let pip = |pkg: &str, sub: &str| {
            format!(
                "or `pip install {pkg}` and put its lib folder (site-packages/nvidia/{sub}/lib) \
                 on LD_LIBRARY_PATH"
            )
        };
        match self {
            Lib::Driver => "install the NVIDIA driver (it provides libcuda.so.1; `nvidia-smi` \
                            must list the GPU); in a container, start it with the GPU exposed \
                            (e.g. `docker run --gpus all`)"
                .into(),
            Lib::Cublas => format!(
                "install CUDA {m}'s cuBLAS (the CUDA toolkit's lib64 folder on \
                 LD_LIBRARY_PATH), {}",
                pip("nvidia-cublas", &format!("cu{m}"))
            ),
            Lib::Nvrtc => format!(
                "install CUDA {m}'s NVRTC (the CUDA toolkit's lib64 folder on \
                 LD_LIBRARY_PATH), {}",
                pip("nvidia-cuda-nvrtc", &format!("cu{m}"))
            ),
            Lib::Cudnn => format!(
                "install cuDNN 9 for CUDA {m} and put the folder holding libcudnn.so.9 on \
                 LD_LIBRARY_PATH, {}",
                pip(&format!("nvidia-cudnn-cu{m}"), "cudnn")
            ),
            Lib::Nccl => format!(
                "install NCCL 2 for CUDA {m} and put the folder holding libnccl.so.2 on \
                 LD_LIBRARY_PATH, {}",
                pip(&format!("nvidia-nccl-cu{m}"), "nccl")
            ),
        }
    }

    /// Every name to try, in cudarc's order, then names cudarc misses:
    /// NCCL ships as `libnccl.so.2`, which cudarc's list lacks.
    pub fn candidates(self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for n in self.cudarc_names() {
            for c in cudarc::get_lib_name_candidates(n) {
                if !v.contains(&c) {
                    v.push(c);
                }
            }
        }
        if self == Lib::Nccl && !v.iter().any(|c| c == "libnccl.so.2") {
            v.push("libnccl.so.2".into());
        }
        v
    }
}

/// A library that loaded.
#[derive(Debug, Clone)]
pub struct Found {
    pub lib: Lib,
    /// The name that loaded (the first candidate that did).
    pub file: String,
    /// Its path on disk, when the loader tells.
    pub path: Option<String>,
    /// (major, minor, patch) from the library's version function.
    pub version: Option<(u32, u32, u32)>,
    /// Whether cudarc's own name list reaches it (false for NCCL found only
    /// as `libnccl.so.2`: cudarc then needs a `libnccl.so` link).
    pub cudarc_loads_it: bool,
}

impl Found {
    pub fn describe(&self) -> String {
        let v = self
            .version
            .map(|(a, b, c)| format!(" {a}.{b}.{c}"))
            .unwrap_or_default();
        let p = self
            .path
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        format!("{}{v}: {}{p}", self.lib.name(), self.file)
    }
}

/// A `dlopen` handle, closed on drop.
struct Handle(*mut c_void);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle from a successful dlopen, closed once.
        unsafe {
            libc::dlclose(self.0);
        }
    }
}

fn dlerror_string() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by libc.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown dlopen error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

fn open(name: &str) -> Result<Handle, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    // RTLD_LAZY | RTLD_LOCAL: what libloading (cudarc) uses.
    // SAFETY: dlopen with a valid C string; running the library's
    // initialisers is what loading it for real does too.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if h.is_null() {
        Err(dlerror_string())
    } else {
        Ok(Handle(h))
    }
}

fn symbol(h: &Handle, name: &str) -> Option<*mut c_void> {
    let c = CString::new(name).ok()?;
    // SAFETY: a live handle and a valid C string.
    let p = unsafe { libc::dlsym(h.0, c.as_ptr()) };
    (!p.is_null()).then_some(p)
}

fn path_of(sym: *mut c_void) -> Option<String> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`.
    let ok = unsafe { libc::dladdr(sym, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    Some(
        unsafe { CStr::from_ptr(info.dli_fname as *const c_char) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The library's version through its own query function (no initialisation
/// needed for any of these).
fn version(lib: Lib, h: &Handle) -> Option<((u32, u32, u32), *mut c_void)> {
    // SAFETY (all arms): each symbol is the documented C function with this
    // signature in every CUDA 11-13 / cuDNN 8-9 / NCCL 2 release.
    unsafe {
        match lib {
            Lib::Driver => {
                let s = symbol(h, "cuDriverGetVersion")?;
                let f: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(s);
                let mut v = 0;
                (f(&mut v) == 0).then_some(())?;
                Some((((v / 1000) as u32, (v % 1000 / 10) as u32, 0), s))
            }
            Lib::Cublas => {
                let s = symbol(h, "cublasGetProperty")?;
                // libraryPropertyType: MAJOR_VERSION 0, MINOR_VERSION 1, PATCH_LEVEL 2.
                let f: extern "C" fn(c_int, *mut c_int) -> c_int = std::mem::transmute(s);
                let mut p = [0; 3];
                for (i, v) in p.iter_mut().enumerate() {
                    (f(i as c_int, v) == 0).then_some(())?;
                }
                Some(((p[0] as u32, p[1] as u32, p[2] as u32), s))
            }
            Lib::Nvrtc => {
                let s = symbol(h, "nvrtcVersion")?;
                let f: extern "C" fn(*mut c_int, *mut c_int) -> c_int = std::mem::transmute(s);
                let (mut a, mut b) = (0, 0);
                (f(&mut a, &mut b) == 0).then_some(())?;
                Some(((a as u32, b as u32, 0), s))
            }
            Lib::Cudnn => {
                let s = symbol(h, "cudnnGetVersion")?;
                let f: extern "C" fn() -> usize = std::mem::transmute(s);
                let v = f() as u32;
                // cuDNN 9 encodes major·10000 + minor·100 + patch, older ones ·1000.
                let (a, r) = if v >= 90000 {
                    (v / 10000, v % 10000)
                } else {
                    (v / 1000, v % 1000)
                };
                Some(((a, r / 100, r % 100), s))
            }
            Lib::Nccl => {
                let s = symbol(h, "ncclGetVersion")?;
                let f: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(s);
                let mut v = 0;
                (f(&mut v) == 0).then_some(())?;
                let v = v as u32;
                Some(((v / 10000, v % 10000 / 100, v % 100), s))
            }
        }
    }
}

/// The error for a library that did not load.
#[derive(Debug, Clone)]
pub struct Missing {
    pub lib: Lib,
    pub tried: Vec<String>,
    /// The most telling dlopen error: one about a file that exists but
    /// cannot load (a missing dependency, wrong architecture) beats the
    /// plain "No such file" of the other names.
    pub reason: String,
}

impl Missing {
    pub fn into_error(self) -> CudaError {
        let main = self.lib.soname();
        let others = self.tried.iter().filter(|t| **t != main).count();
        let tried = if self.tried.contains(&main) {
            format!("{main} and {others} other names")
        } else {
            format!("{} names", self.tried.len())
        };
        let ld = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        let reason = if ld.is_empty() {
            format!("{}; LD_LIBRARY_PATH is not set", self.reason)
        } else {
            format!("{}; LD_LIBRARY_PATH={ld}", self.reason)
        };
        CudaError::LibraryMissing {
            lib: self.lib.name(),
            tried,
            reason,
            fix: self.lib.fix(),
        }
    }
}

/// Look for one library under the names cudarc tries (plus the ones it misses).
pub fn probe(lib: Lib) -> Result<Found, Missing> {
    let tried = lib.candidates();
    let cudarc_names = {
        let mut v = Vec::new();
        for n in lib.cudarc_names() {
            v.extend(cudarc::get_lib_name_candidates(n));
        }
        v
    };
    // (error, is it a plain "no such file"?) of the most telling failure.
    let mut reason: Option<(String, bool)> = None;
    for name in &tried {
        match open(name) {
            Ok(h) => {
                let v = version(lib, &h);
                return Ok(Found {
                    lib,
                    file: name.clone(),
                    path: v.and_then(|(_, s)| path_of(s)),
                    version: v.map(|(v, _)| v),
                    cudarc_loads_it: cudarc_names.contains(name),
                });
            }
            Err(e) => {
                let plain = e.starts_with(&format!("{name}: cannot open shared object"));
                if reason.as_ref().is_none_or(|(_, p)| *p && !plain) {
                    reason = Some((e, plain));
                }
            }
        }
    }
    let best = reason.map_or_else(|| "no candidate names".into(), |(e, _)| e);
    Err(Missing {
        lib,
        tried,
        reason: best,
    })
}

/// Check every library in `libs` (in order), then that their versions fit
/// this build: the first problem is the error.
pub fn require(libs: &[Lib]) -> CudaResult<Vec<Found>> {
    let mut found = Vec::with_capacity(libs.len());
    for &lib in libs {
        let f = probe(lib).map_err(Missing::into_error)?;
        check_version(&f)?;
        found.push(f);
    }
    Ok(found)
}

/// Version rules: the driver must support this build's CUDA major (CUDA 13
/// libraries refuse older drivers); cuBLAS and NVRTC must be this major
/// (cudarc's name list also reaches other majors' files); cuDNN must be 9.
/// NCCL found only as `libnccl.so.2` needs a `libnccl.so` link for cudarc.
pub fn check_version(f: &Found) -> CudaResult<()> {
    let m = CUDA_MAJOR;
    let Some((major, minor, _)) = f.version else {
        return Err(CudaError::Unusable(format!(
            "{} loaded from {}, but its version query is missing or failed: that file is not \
             a usable {}. {}",
            f.lib.short(),
            f.path.as_deref().unwrap_or(&f.file),
            f.lib.short(),
            f.lib.fix()
        )));
    };
    let other = if m == 13 { 12 } else { 13 };
    match f.lib {
        Lib::Driver if major < m => Err(CudaError::Unusable(format!(
            "the NVIDIA driver ({}) supports CUDA up to {major}.{minor}, but this build uses \
             CUDA {m} libraries: update the driver (CUDA 13 needs driver 580 or newer) or \
             build rcaffe with `--no-default-features --features cuda-12`",
            f.file
        ))),
        Lib::Cublas | Lib::Nvrtc if major != m => Err(CudaError::Unusable(format!(
            "{} {major}.{minor} was loaded ({}), but this build uses CUDA {m}: put CUDA {m}'s \
             {} first on LD_LIBRARY_PATH, or build rcaffe for CUDA {major} (feature cuda-{other})",
            f.lib.name(),
            f.path.as_deref().unwrap_or(&f.file),
            f.lib.name(),
        ))),
        Lib::Cudnn if major != 9 => Err(CudaError::Unusable(format!(
            "cuDNN {major}.{minor} was loaded ({}), but rcaffe needs cuDNN 9: {}",
            f.path.as_deref().unwrap_or(&f.file),
            Lib::Cudnn.fix()
        ))),
        Lib::Nccl if !f.cudarc_loads_it => Err(CudaError::Unusable(format!(
            "NCCL was found as {} ({}), a name the CUDA bindings do not open: add a link \
             named libnccl.so to it in a folder on LD_LIBRARY_PATH \
             (`ln -s {} DIR/libnccl.so`)",
            f.file,
            f.path.as_deref().unwrap_or("path unknown"),
            f.path.as_deref().unwrap_or(&f.file),
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_cudarc_and_add_nccl_so_2() {
        let d = Lib::Driver.candidates();
        assert!(d.contains(&"libcuda.so.1".to_string()), "{d:?}");
        assert_eq!(d[0], "libcuda.so");
        let n = Lib::Nccl.candidates();
        assert_eq!(n.last().map(String::as_str), Some("libnccl.so.2"), "{n:?}");
        let c = Lib::Cudnn.candidates();
        assert!(c.contains(&"libcudnn.so.9".to_string()), "{c:?}");
        let b = Lib::Cublas.candidates();
        assert!(b.contains(&format!("libcublas.so.{CUDA_MAJOR}")), "{b:?}");
        // No duplicates: the message counts names.
        let mut u = b.clone();
        u.dedup();
        assert_eq!(u.len(), b.len());
    }

    #[test]
    fn missing_library_message_names_it_and_the_fix() {
        let m = Missing {
            lib: Lib::Cudnn,
            tried: Lib::Cudnn.candidates(),
            reason: "libcudnn.so.9: cannot open shared object file: No such file or directory"
                .into(),
        };
        let e = m.into_error().to_string();
        assert!(e.starts_with("no usable GPU: cuDNN was not found"), "{e}");
        assert!(e.contains("libcudnn.so.9 and "), "{e}");
        assert!(e.contains("LD_LIBRARY_PATH"), "{e}");
        assert!(e.contains("nvidia-cudnn-cu"), "{e}");
    }

    #[test]
    fn version_rules() {
        let f = |lib, version, cudarc_loads_it| Found {
            lib,
            file: lib.soname(),
            path: None,
            version,
            cudarc_loads_it,
        };
        let m = CUDA_MAJOR;
        assert!(check_version(&f(Lib::Driver, Some((m, 0, 0)), true)).is_ok());
        let e = check_version(&f(Lib::Driver, Some((m - 1, 4, 0)), true)).unwrap_err();
        assert!(e.to_string().contains("update the driver"), "{e}");
        assert!(check_version(&f(Lib::Cublas, Some((m, 1, 3)), true)).is_ok());
        assert!(check_version(&f(Lib::Nvrtc, Some((11, 8, 0)), true)).is_err());
        assert!(check_version(&f(Lib::Cudnn, Some((9, 13, 0)), true)).is_ok());
        assert!(check_version(&f(Lib::Cudnn, Some((8, 9, 7)), true)).is_err());
        let e = check_version(&f(Lib::Nccl, Some((2, 27, 3)), false)).unwrap_err();
        assert!(e.to_string().contains("libnccl.so"), "{e}");
        assert!(check_version(&f(Lib::Nccl, Some((2, 27, 3)), true)).is_ok());
        assert!(check_version(&f(Lib::Cublas, None, true)).is_err());
    }

    /// On this machine: whatever is installed, probing never panics and
    /// its answer agrees with cudarc's own presence check.
    #[test]
    fn probe_agrees_with_cudarc() {
        let ours = probe(Lib::Nvrtc).is_ok();
        // SAFETY: is_culib_present only dlopens and closes.
        let theirs = unsafe { cudarc::nvrtc::sys::is_culib_present() };
        assert_eq!(ours, theirs);
        let ours = probe(Lib::Driver).is_ok();
        let theirs = unsafe { cudarc::driver::sys::is_culib_present() };
        assert_eq!(ours, theirs);
    }
}
