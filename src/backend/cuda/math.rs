//! `CudaBackend` and its `Math`: cuBLAS for GEMM/GEMV (row-major handled
//! in one place, `gemm`/`gemv` below, by swapping operands), the NVRTC
//! kernels of `kernels/math.cu` and `kernels/unary.cu` for the rest.
//!
//! Every kernel family is compiled and loaded when the backend is created
//! (once per process and device), so a later family implementation only
//! launches. Operations queue on the device's one stream; launch errors
//! are recorded in the context (cudarc's sticky error) and surface at
//! `check`/`synchronize`, so `Math`'s infallible methods never panic on
//! them. Values come back to the host only where `Math` returns a number
//! (`dot`, `asum`).
//!
//! The other operation families are in the sibling files; their state
//! (cuDNN plans, upload scratch) lives in fields of `CudaBackend`.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cublas::sys::cublasOperation_t as Op;
use cudarc::cublas::{result as blas, CudaBlas};
use cudarc::driver::{result as drv, CudaFunction, CudaModule, LaunchConfig, PushKernelArg};

use super::context::CudaDevice;
use super::error::{driver, guard, CudaError, CudaResult};
use super::kernels::{self, REDUCE_THREADS};
use super::memory::{CdPtr, CudaStorage};
use super::nvrtc;
use crate::backend::{Binary, Buffer, Math, Unary, View, ViewMut};

/// Threads per block of the element-wise kernels (grid-stride loops).
pub(crate) const THREADS: u32 = 256;
/// Grid cap for element-wise kernels: enough blocks to fill any current
/// GPU; larger tensors loop.
pub(crate) const MAX_BLOCKS: u32 = 1 << 16;
/// Grid of the reductions: fixed, so the partial sums (and the result's
/// rounding) do not depend on anything but `n`.
pub(crate) const REDUCE_BLOCKS: u32 = 1024;

/// One kernel argument (all kernels take ints, floats and device addresses).
#[derive(Debug, Clone, Copy)]
pub enum KArg {
    I32(i32),
    I64(i64),
    F32(f32),
    Ptr(CdPtr),
}

pub(crate) fn elementwise(n: usize) -> LaunchConfig {
    let blocks = (n.div_ceil(THREADS as usize)).clamp(1, MAX_BLOCKS as usize) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

pub(crate) fn reduction(n: usize) -> LaunchConfig {
    let blocks = (n.div_ceil(REDUCE_THREADS as usize)).clamp(1, REDUCE_BLOCKS as usize) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (REDUCE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

pub(crate) fn ll(n: usize) -> KArg {
    KArg::I64(n as i64)
}

pub(crate) fn f(v: f32) -> KArg {
    KArg::F32(v)
}

/// Reduction scratch: per-block partial sums and the one-value result.
struct Scratch {
    partial: CudaStorage,
    result: CudaStorage,
}

pub struct CudaBackend {
    pub dev: CudaDevice,
    pub(crate) blas: CudaBlas,
    funcs: HashMap<&'static str, CudaFunction>,
    _modules: Vec<Arc<CudaModule>>,
    scratch: Mutex<Scratch>,
    /// The first cuBLAS failure (cuBLAS errors are not the driver's, so
    /// they are kept here and reported by `check` like launch errors).
    /// The first error not yet reported: a cuBLAS/cuDNN failure (not the
    /// driver's, so not in cudarc's sticky error), or a driver error that
    /// an internal `check` saw and kept for the caller's next `check`.
    pub(crate) pending_error: Mutex<Option<CudaError>>,
    /// The convolution family's cuDNN handle, plans and workspaces.
    pub(crate) conv: super::conv::ConvState,
    /// The shape family's uploaded index lists (a reused device scratch).
    pub(crate) shape: super::shape::ShapeState,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend(gpu {})", self.dev.ordinal)
    }
}

impl CudaBackend {
    /// Open GPU `ordinal` (every library probed first), create the cuBLAS
    /// handle on its stream, and compile and load every kernel family for
    /// the device's architecture.
    pub fn new(ordinal: usize) -> CudaResult<Self> {
        let dev = CudaDevice::open(ordinal)?;
        // One stream for everything: cudarc's per-buffer event tracking
        // would only add work.
        // SAFETY: no buffer of this context exists yet.
        unsafe { dev.ctx.disable_event_tracking() };
        let blas = guard("creating the cuBLAS handle", || {
            CudaBlas::new(dev.stream.clone()).map_err(|e| CudaError::Blas {
                context: "creating the cuBLAS handle".into(),
                message: format!("{e:?}"),
            })
        })?;
        let arch = dev.nvrtc_arch()?;
        let mut funcs = HashMap::new();
        let mut modules = Vec::new();
        for fam in kernels::FAMILIES {
            let ptx = nvrtc::compile_cached(fam, &arch)?;
            let module = guard("loading kernels", || {
                dev.ctx
                    .load_module(ptx)
                    .map_err(driver(&format!("loading the {} kernels", fam.name)))
            })?;
            for &k in fam.kernels {
                let func = module
                    .load_function(k)
                    .map_err(driver(&format!("finding kernel {k}")))?;
                funcs.insert(k, func);
            }
            modules.push(module);
        }
        let scratch = Scratch {
            // f64 partials stored in f32 slots: two per partial.
            partial: CudaStorage::zeros(&dev.stream, ordinal, 2 * REDUCE_BLOCKS as usize),
            result: CudaStorage::zeros(&dev.stream, ordinal, 1),
        };
        let conv = super::conv::ConvState::new(&dev)?;
        Ok(CudaBackend {
            conv,
            shape: super::shape::ShapeState::new(),
            dev,
            blas,
            funcs,
            _modules: modules,
            scratch: Mutex::new(scratch),
            pending_error: Mutex::new(None),
        })
    }

    /// The first error recorded by an earlier operation (cudarc's sticky
    /// context error), if any.
    pub fn check(&self) -> CudaResult<()> {
        if let Some(e) = self
            .pending_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(e);
        }
        self.dev
            .ctx
            .check_err()
            .map_err(driver("running an earlier GPU operation"))
    }

    /// Wait for the queued work and report any error it recorded.
    pub fn sync(&self) -> CudaResult<()> {
        self.dev.synchronize()?;
        self.check()
    }

    /// Queue kernel `name` with `args` (errors are recorded, see `check`).
    pub fn launch(&self, name: &str, cfg: LaunchConfig, args: &[KArg]) {
        let Some(func) = self.funcs.get(name) else {
            // Names are fixed in kernels/mod.rs and checked by the NVRTC test.
            panic!("kernel {name} is not in kernels::FAMILIES");
        };
        let mut b = self.dev.stream.launch_builder(func);
        for a in args {
            match a {
                KArg::I32(v) => b.arg(v),
                KArg::I64(v) => b.arg(v),
                KArg::F32(v) => b.arg(v),
                KArg::Ptr(v) => b.arg(v),
            };
        }
        // SAFETY: each kernel's parameter list is the KArg sequence its
        // caller builds (ints, floats, device addresses in order), and the
        // addresses come from live device buffers of this context.
        let r = unsafe { b.launch(cfg) };
        self.dev.ctx.record_err(r);
    }

    pub(crate) fn storage<'a>(&self, buf: &'a Buffer) -> &'a CudaStorage {
        buf.device()
            .and_then(|d| d.as_any().downcast_ref::<CudaStorage>())
            .expect("the CUDA backend was given a buffer that is not in GPU memory")
    }

    /// The device address of a view (read).
    pub fn ptr(&self, v: &View) -> KArg {
        KArg::Ptr(self.storage(v.buf).ptr(v.off))
    }

    /// The device address of a view (write).
    pub fn ptr_mut(&self, v: &ViewMut) -> KArg {
        KArg::Ptr(self.storage(v.buf).ptr(v.off))
    }

    pub(crate) fn raw(&self, v: &View) -> CdPtr {
        self.storage(v.buf).ptr(v.off)
    }

    pub(crate) fn raw_mut(&self, v: &ViewMut) -> CdPtr {
        self.storage(v.buf).ptr(v.off)
    }

    /// Keep `e` for the next `check` unless an earlier error is pending
    /// (the first failure is the one worth reporting).
    pub(crate) fn record_error(&self, e: CudaError) {
        let mut slot = self.pending_error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    }

    pub(crate) fn blas_err(&self, what: &str, r: Result<(), cudarc::cublas::result::CublasError>) {
        if let Err(e) = r {
            // Kept like a launch error: an invalid argument or a broken
            // device, reported at the next `check`.
            self.record_error(CudaError::Blas {
                context: what.to_string(),
                message: format!("{e:?}"),
            });
        }
    }

    /// `Σ` by the two-pass reduction kernels (`rc_*_partial` then
    /// `rc_sum_partials`), downloaded.
    pub(crate) fn reduce(&self, kernel: &str, n: usize, inputs: &[KArg]) -> f32 {
        if n == 0 {
            return 0.0;
        }
        let s = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let cfg = reduction(n);
        let mut args = vec![ll(n)];
        args.extend_from_slice(inputs);
        args.push(KArg::Ptr(s.partial.ptr(0)));
        self.launch(kernel, cfg, &args);
        let one = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(
            "rc_sum_partials",
            one,
            &[
                KArg::I32(cfg.grid_dim.0 as i32),
                KArg::Ptr(s.partial.ptr(0)),
                KArg::Ptr(s.result.ptr(0)),
            ],
        );
        if let Err(e) = self.check() {
            // Kept for the caller's `check`: the NaN alone would hide why.
            self.record_error(e);
            return f32::NAN;
        }
        use crate::backend::buffer::DeviceStorage;
        s.result.read(1)[0]
    }

    /// Run `f` with the reduction scratch's partial-sum slots (room for
    /// `REDUCE_BLOCKS` doubles), held for the launches `f` queues.
    pub(crate) fn with_partials<R>(&self, f: impl FnOnce(CdPtr) -> R) -> R {
        let s = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        f(s.partial.ptr(0))
    }

    fn unary_args(op: Unary) -> Vec<KArg> {
        match op {
            Unary::ReLU { slope } => vec![f(slope)],
            Unary::ELU { alpha } => vec![f(alpha)],
            Unary::Power {
                power,
                scale,
                shift,
            } => vec![f(power), f(scale), f(shift)],
            Unary::Exp { inner, outer } => vec![f(inner), f(outer)],
            Unary::Log {
                scale,
                shift,
                base_scale,
                back_scale,
            } => vec![f(scale), f(shift), f(base_scale), f(back_scale)],
            Unary::Threshold { threshold } => vec![f(threshold)],
            Unary::Clip { min, max } => vec![f(min), f(max)],
            Unary::Swish { beta } => vec![f(beta)],
            Unary::Sigmoid | Unary::TanH | Unary::AbsVal | Unary::BNLL | Unary::Sqrt => {
                vec![]
            }
        }
    }

    fn binary_kernel(op: Binary) -> &'static str {
        match op {
            Binary::Add => "rc_add",
            Binary::Sub => "rc_sub",
            Binary::Mul => "rc_mul",
            Binary::Div => "rc_div",
            Binary::Max => "rc_max",
        }
    }

    /// `y = f(x)` on raw addresses (x may equal y).
    fn unary_raw(&self, op: Unary, n: usize, x: CdPtr, y: CdPtr) {
        if n == 0 {
            return;
        }
        let (fwd, _) = kernels::unary_kernels(op);
        let mut args = vec![ll(n), KArg::Ptr(x), KArg::Ptr(y)];
        args.extend(Self::unary_args(op));
        self.launch(fwd, elementwise(n), &args);
    }

    #[allow(clippy::too_many_arguments)]
    fn unary_grad_raw(&self, op: Unary, n: usize, x: CdPtr, y: CdPtr, dy: CdPtr, dx: CdPtr) {
        if n == 0 {
            return;
        }
        let (_, bwd) = kernels::unary_kernels(op);
        let mut args = vec![
            ll(n),
            KArg::Ptr(x),
            KArg::Ptr(y),
            KArg::Ptr(dy),
            KArg::Ptr(dx),
        ];
        args.extend(Self::unary_args(op));
        self.launch(bwd, elementwise(n), &args);
    }
}

fn op(t: bool) -> Op {
    if t {
        Op::CUBLAS_OP_T
    } else {
        Op::CUBLAS_OP_N
    }
}

impl Math for CudaBackend {
    fn alloc(&self, n: usize) -> Buffer {
        Buffer::from_device(Box::new(CudaStorage::zeros(
            &self.dev.stream,
            self.dev.ordinal,
            n,
        )))
    }

    /// Row-major `C = alpha·op(A)·op(B) + beta·C` through column-major
    /// cuBLAS: a row-major matrix is its transpose in column-major, so
    /// cuBLAS computes `Cᵀ = op(B)ᵀ·op(A)ᵀ` — B first, dimensions swapped.
    fn gemm(
        &self,
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: View,
        b: View,
        beta: f32,
        c: ViewMut,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // No products: C = beta·C (C not read when beta == 0).
            let cp = self.ptr_mut(&c);
            if beta == 0.0 {
                self.launch("rc_set", elementwise(m * n), &[ll(m * n), f(0.0), cp]);
            } else {
                self.launch("rc_scal", elementwise(m * n), &[ll(m * n), f(beta), cp]);
            }
            return;
        }
        // Leading dimensions of the row-major operands as cuBLAS sees them.
        let lda = if trans_a { m } else { k };
        let ldb = if trans_b { k } else { n };
        let r = unsafe {
            // SAFETY: the views hold m·k, k·n and m·n values (the Math
            // contract); alpha/beta are host scalars (cuBLAS's default
            // pointer mode); the handle runs on this device's stream.
            blas::sgemm(
                *self.blas.handle(),
                op(trans_b),
                op(trans_a),
                n as i32,
                m as i32,
                k as i32,
                &alpha,
                self.raw(&b) as *const f32,
                ldb as i32,
                self.raw(&a) as *const f32,
                lda as i32,
                &beta,
                self.raw_mut(&c) as *mut f32,
                n as i32,
            )
        };
        self.blas_err("sgemm", r);
    }

    /// Row-major `A` (m×n) is column-major `Aᵀ` (n×m, ld n), so `A·x` is
    /// cuBLAS's transposed product and `Aᵀ·x` its plain one.
    fn gemv(
        &self,
        trans_a: bool,
        m: usize,
        n: usize,
        alpha: f32,
        a: View,
        x: View,
        beta: f32,
        y: ViewMut,
    ) {
        let ylen = if trans_a { n } else { m };
        if ylen == 0 {
            return;
        }
        if m == 0 || n == 0 {
            let yp = self.ptr_mut(&y);
            if beta == 0.0 {
                self.launch("rc_set", elementwise(ylen), &[ll(ylen), f(0.0), yp]);
            } else {
                self.launch("rc_scal", elementwise(ylen), &[ll(ylen), f(beta), yp]);
            }
            return;
        }
        let r = unsafe {
            // SAFETY: as in gemm; A holds m·n values, x and y their lengths.
            blas::sgemv(
                *self.blas.handle(),
                op(!trans_a),
                n as i32,
                m as i32,
                &alpha,
                self.raw(&a) as *const f32,
                n as i32,
                self.raw(&x) as *const f32,
                1,
                &beta,
                self.raw_mut(&y) as *mut f32,
                1,
            )
        };
        self.blas_err("sgemv", r);
    }

    fn axpy(&self, n: usize, alpha: f32, x: View, y: ViewMut) {
        if n > 0 {
            let args = [ll(n), f(alpha), self.ptr(&x), self.ptr_mut(&y)];
            self.launch("rc_axpy", elementwise(n), &args);
        }
    }

    fn axpby(&self, n: usize, alpha: f32, x: View, beta: f32, y: ViewMut) {
        if n > 0 {
            let args = [ll(n), f(alpha), self.ptr(&x), f(beta), self.ptr_mut(&y)];
            self.launch("rc_axpby", elementwise(n), &args);
        }
    }

    fn scal(&self, n: usize, alpha: f32, x: ViewMut) {
        if n > 0 {
            let args = [ll(n), f(alpha), self.ptr_mut(&x)];
            self.launch("rc_scal", elementwise(n), &args);
        }
    }

    fn set(&self, n: usize, v: f32, x: ViewMut) {
        if n > 0 {
            let args = [ll(n), f(v), self.ptr_mut(&x)];
            self.launch("rc_set", elementwise(n), &args);
        }
    }

    fn add_scalar(&self, n: usize, v: f32, x: ViewMut) {
        if n > 0 {
            let args = [ll(n), f(v), self.ptr_mut(&x)];
            self.launch("rc_add_scalar", elementwise(n), &args);
        }
    }

    fn copy(&self, n: usize, x: View, y: ViewMut) {
        if n == 0 {
            return;
        }
        // SAFETY: both views hold n values of live allocations on this
        // device; the copy is queued on the same stream as every kernel.
        let r = unsafe {
            drv::memcpy_dtod_async(
                self.raw_mut(&y),
                self.raw(&x),
                n * std::mem::size_of::<f32>(),
                self.dev.stream.cu_stream(),
            )
        };
        self.dev.ctx.record_err(r);
    }

    fn dot(&self, n: usize, x: View, y: View) -> f32 {
        self.reduce("rc_dot_partial", n, &[self.ptr(&x), self.ptr(&y)])
    }

    fn asum(&self, n: usize, x: View) -> f32 {
        self.reduce("rc_asum_partial", n, &[self.ptr(&x)])
    }

    fn binary(&self, op: Binary, n: usize, a: View, b: View, y: ViewMut) {
        if n > 0 {
            let args = [ll(n), self.ptr(&a), self.ptr(&b), self.ptr_mut(&y)];
            self.launch(Self::binary_kernel(op), elementwise(n), &args);
        }
    }

    fn binary_inplace(&self, op: Binary, n: usize, a: View, y: ViewMut) {
        if n > 0 {
            let yp = self.ptr_mut(&y);
            let args = [ll(n), self.ptr(&a), yp, yp];
            self.launch(Self::binary_kernel(op), elementwise(n), &args);
        }
    }

    fn unary(&self, op: Unary, n: usize, x: View, y: ViewMut) {
        self.unary_raw(op, n, self.raw(&x), self.raw_mut(&y));
    }

    fn unary_inplace(&self, op: Unary, n: usize, x: ViewMut) {
        let p = self.raw_mut(&x);
        self.unary_raw(op, n, p, p);
    }

    fn unary_grad(&self, op: Unary, n: usize, x: View, y: View, dy: View, dx: ViewMut) {
        self.unary_grad_raw(
            op,
            n,
            self.raw(&x),
            self.raw(&y),
            self.raw(&dy),
            self.raw_mut(&dx),
        );
    }

    fn unary_grad_inplace(&self, op: Unary, n: usize, y: View, d: ViewMut) {
        let (yp, dp) = (self.raw(&y), self.raw_mut(&d));
        self.unary_grad_raw(op, n, yp, yp, dp, dp);
    }

    fn dropout_mask(&self, n: usize, seed: u64, threshold: u32, scale: f32, mask: ViewMut) {
        if n > 0 {
            // The kernel takes `unsigned long long seed, unsigned int thres`:
            // same widths as I64/I32, passed bit for bit.
            let args = [
                ll(n),
                KArg::I64(seed as i64),
                KArg::I32(threshold as i32),
                f(scale),
                self.ptr_mut(&mask),
            ];
            self.launch("rc_dropout_mask", elementwise(n), &args);
        }
    }

    fn synchronize(&self) {
        let r = self.dev.stream.synchronize();
        self.dev.ctx.record_err(r);
    }
}
