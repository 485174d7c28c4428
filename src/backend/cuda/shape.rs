//! `ShapeOps` on the GPU: the kernels of `kernels/shape.cu`, one launch
//! per operation (two for the infogain gradient and the contrastive loss).
//!
//! The trait hands some inputs over as host slices (labels, row indices,
//! keep/similar flags, crop geometry): there is no device copy of them to
//! read, so they are uploaded, as `i64`, into a device scratch kept in
//! `ShapeState` (grown when a call needs more, otherwise reused, so steady
//! state allocates nothing). Losses returned as a host `f32` are reduced on
//! the device by `CudaBackend::reduce` (fixed grid, double partials) and
//! downloaded once.
//!
//! Ordering: every upload and launch goes on the device's one stream, so a
//! kernel reads the scratch contents uploaded for it, and the next upload
//! (or the free of an outgrown scratch, stream-ordered too) waits for it.
use std::sync::{Mutex, MutexGuard};

use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig};

use super::kernels::REDUCE_THREADS;
use super::math::{elementwise, f, ll, CudaBackend, KArg, MAX_BLOCKS, THREADS};
use super::memory::CdPtr;
use crate::backend::shape::{ArgMaxOut, Reduce, ShapeOps};
use crate::backend::{View, ViewMut};

/// Rows at least this long are reduced by a block each, shorter ones by a
/// thread each (both sum in double, in a fixed order).
const BLOCK_ROW_MIN: usize = 256;

/// The family's device scratch; `CudaBackend` holds one (field `shape`).
#[derive(Default)]
pub(crate) struct ShapeState {
    inner: Mutex<Scratch>,
}

impl ShapeState {
    /// Empty: the scratch is allocated on first use, on the backend's stream.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Scratch> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// The backend is shared across threads (`Arc<dyn Backend>`).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<ShapeState>();
};

#[derive(Default)]
struct Scratch {
    /// Host staging of the next upload (kept to reuse its capacity).
    host: Vec<i64>,
    /// Device copy of `host`.
    ints: Option<CudaSlice<i64>>,
    /// Device floats computed by a kernel (infogain's H row sums).
    floats: Option<CudaSlice<f32>>,
    /// Scatter plan sorting: (destination row, source row).
    order: Vec<(i64, i64)>,
}

fn oom(what: &str, n: usize, e: cudarc::driver::DriverError) -> ! {
    // As `CudaStorage`: `ShapeOps` is infallible, and Caffe aborts on an
    // out-of-memory too.
    panic!("GPU memory error while allocating the {what} scratch ({n} values): {e:?}")
}

/// The capacity a scratch of `have` values grows to for `need`: doubling,
/// so a slowly growing size reallocates O(log n) times.
fn grown(have: usize, need: usize) -> usize {
    need.max(2 * have).max(64)
}

impl Scratch {
    /// Upload `self.host` to the device scratch and return its address;
    /// `None` when the copy failed (the error is recorded in the context
    /// and reported by `check`), so callers skip a launch that would read
    /// stale indices.
    fn upload(&mut self, be: &CudaBackend) -> Option<CdPtr> {
        let n = self.host.len();
        let stream = &be.dev.stream;
        if self.ints.as_ref().is_none_or(|s| s.len() < n) {
            let cap = grown(self.ints.as_ref().map_or(0, |s| s.len()), n);
            // The outgrown slice is freed stream-ordered (after the kernels
            // queued on it) when it is replaced.
            self.ints = Some(
                stream
                    .alloc_zeros::<i64>(cap)
                    .unwrap_or_else(|e| oom("index", cap, e)),
            );
        }
        let ints = self.ints.as_mut().expect("allocated above");
        if n > 0 {
            // From pageable memory the copy returns once the driver has
            // staged `host`, so refilling it later is safe; on the stream
            // it runs after the kernels that read the previous contents.
            if let Err(e) = stream.memcpy_htod(&self.host[..], ints) {
                be.dev.ctx.record_err::<()>(Err(e));
                return None;
            }
        }
        Some(ints.device_ptr(stream).0)
    }

    /// Upload `vals` (converted to i64) and return the device address.
    fn upload_iter(&mut self, be: &CudaBackend, vals: impl Iterator<Item = i64>) -> Option<CdPtr> {
        self.host.clear();
        self.host.extend(vals);
        self.upload(be)
    }

    /// A device float scratch of at least `n` values.
    fn floats(&mut self, be: &CudaBackend, n: usize) -> CdPtr {
        if self.floats.as_ref().is_none_or(|s| s.len() < n) {
            let cap = grown(self.floats.as_ref().map_or(0, |s| s.len()), n);
            self.floats = Some(
                be.dev
                    .stream
                    .alloc_zeros::<f32>(cap)
                    .unwrap_or_else(|e| oom("float", cap, e)),
            );
        }
        let s = self.floats.as_ref().expect("allocated above");
        s.device_ptr(&be.dev.stream).0
    }
}

fn reduce_code(op: Reduce) -> KArg {
    KArg::I32(match op {
        Reduce::Sum => 0,
        Reduce::Asum => 1,
        Reduce::SumSq => 2,
    })
}

fn flags(v: &[bool]) -> impl Iterator<Item = i64> + '_ {
    v.iter().map(|&b| i64::from(b))
}

fn indices(v: &[usize]) -> impl Iterator<Item = i64> + '_ {
    v.iter().map(|&i| i as i64)
}

impl CudaBackend {
    /// `y[r] = coeff · op(row r of x)` on raw addresses (also the
    /// contrastive loss's squared distances).
    #[allow(clippy::too_many_arguments)]
    fn reduce_rows_raw(&self, op: Reduce, rows: usize, dim: usize, coeff: f32, x: CdPtr, y: CdPtr) {
        if rows == 0 {
            return;
        }
        if dim == 0 {
            // Empty rows reduce to 0 (the CPU writes 0, whatever coeff).
            self.launch(
                "rc_set",
                elementwise(rows),
                &[ll(rows), f(0.0), KArg::Ptr(y)],
            );
            return;
        }
        let args = [
            ll(rows),
            ll(dim),
            reduce_code(op),
            f(coeff),
            KArg::Ptr(x),
            KArg::Ptr(y),
        ];
        if dim >= BLOCK_ROW_MIN {
            let cfg = cudarc::driver::LaunchConfig {
                grid_dim: (rows.min(MAX_BLOCKS as usize) as u32, 1, 1),
                block_dim: (REDUCE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            self.launch("rc_reduce_rows_block", cfg, &args);
        } else {
            self.launch("rc_reduce_rows_thread", elementwise(rows), &args);
        }
    }
}

impl ShapeOps for CudaBackend {
    fn copy_blocks(
        &self,
        blocks: usize,
        len: usize,
        x: View,
        x_stride: usize,
        y: ViewMut,
        y_stride: usize,
        accumulate: bool,
    ) {
        let n = blocks * len;
        if n == 0 {
            return;
        }
        let args = [
            ll(blocks),
            ll(len),
            self.ptr(&x),
            ll(x_stride),
            self.ptr_mut(&y),
            ll(y_stride),
            KArg::I32(accumulate as i32),
        ];
        // x over a block's values, y over the blocks (at most 65535 of
        // them per launch row; the kernel strides over the rest).
        let per = len.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS as usize) as u32;
        let rows = blocks.min(65_535) as u32;
        let cfg = LaunchConfig {
            grid_dim: (per, rows, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch("rc_copy_blocks", cfg, &args);
    }

    fn gather_rows(&self, idx: &[usize], row: usize, src: View, dst: ViewMut) {
        let n = idx.len() * row;
        if n == 0 {
            return;
        }
        let mut s = self.shape.lock();
        let Some(ip) = s.upload_iter(self, indices(idx)) else {
            return;
        };
        let args = [
            ll(idx.len()),
            ll(row),
            KArg::Ptr(ip),
            self.ptr(&src),
            self.ptr_mut(&dst),
        ];
        self.launch("rc_gather_rows", elementwise(n), &args);
    }

    fn scatter_add_rows(&self, idx: &[usize], row: usize, src: View, dst: ViewMut) {
        if idx.is_empty() || row == 0 {
            return;
        }
        let mut guard = self.shape.lock();
        let s = &mut *guard;
        // The plan groups source rows by destination, in occurrence order
        // (unique positions make the unstable sort deterministic), so one
        // thread per destination value adds its rows in the CPU's order.
        s.order.clear();
        s.order
            .extend(idx.iter().enumerate().map(|(p, &d)| (d as i64, p as i64)));
        s.order.sort_unstable();
        let (o, h) = (&s.order, &mut s.host);
        let first = |k: usize| k == 0 || o[k].0 != o[k - 1].0;
        h.clear();
        h.extend((0..o.len()).filter(|&k| first(k)).map(|k| o[k].0));
        let groups = h.len();
        h.extend((0..o.len()).filter(|&k| first(k)).map(|k| k as i64));
        h.push(o.len() as i64);
        h.extend(o.iter().map(|&(_, p)| p));
        let Some(plan) = s.upload(self) else {
            return;
        };
        let args = [
            ll(groups),
            ll(row),
            KArg::Ptr(plan),
            self.ptr(&src),
            self.ptr_mut(&dst),
        ];
        self.launch("rc_scatter_add_groups", elementwise(groups * row), &args);
    }

    fn crop_forward(
        &self,
        in_shape: &[usize],
        out_shape: &[usize],
        offsets: &[usize],
        x: View,
        y: ViewMut,
    ) {
        self.crop(
            in_shape,
            out_shape,
            offsets,
            self.raw(&x),
            self.raw_mut(&y),
            false,
        );
    }

    fn crop_backward(
        &self,
        in_shape: &[usize],
        out_shape: &[usize],
        offsets: &[usize],
        dy: View,
        dx: ViewMut,
    ) {
        self.crop(
            in_shape,
            out_shape,
            offsets,
            self.raw(&dy),
            self.raw_mut(&dx),
            true,
        );
    }

    fn reduce_rows(&self, op: Reduce, rows: usize, dim: usize, coeff: f32, x: View, y: ViewMut) {
        self.reduce_rows_raw(op, rows, dim, coeff, self.raw(&x), self.raw_mut(&y));
    }

    fn reduce_rows_backward(
        &self,
        op: Reduce,
        rows: usize,
        dim: usize,
        coeff: f32,
        x: View,
        dy: View,
        dx: ViewMut,
    ) {
        let n = rows * dim;
        if n == 0 {
            return;
        }
        let args = [
            ll(rows),
            ll(dim),
            reduce_code(op),
            f(coeff),
            self.ptr(&x),
            self.ptr(&dy),
            self.ptr_mut(&dx),
        ];
        self.launch("rc_reduce_rows_bwd", elementwise(n), &args);
    }

    fn argmax(
        &self,
        outer: usize,
        dim: usize,
        inner: usize,
        k: usize,
        out: ArgMaxOut,
        x: View,
        y: ViewMut,
    ) {
        let cols = outer * inner;
        if cols == 0 || k == 0 {
            return;
        }
        assert!(k <= dim, "argmax: top_k {k} > {dim} values");
        let mode = match out {
            ArgMaxOut::Indices => 0,
            ArgMaxOut::Values => 1,
            ArgMaxOut::IndicesThenValues => {
                assert_eq!(inner, 1, "argmax: indices then values needs inner == 1");
                2
            }
        };
        let args = [
            ll(cols),
            ll(dim),
            ll(inner),
            ll(k),
            KArg::I32(mode),
            self.ptr(&x),
            self.ptr_mut(&y),
        ];
        self.launch("rc_argmax", elementwise(cols), &args);
    }

    fn sigmoid_ce_loss(&self, n: usize, x: View, t: View, keep: &[bool]) -> f32 {
        if n == 0 {
            return 0.0;
        }
        let mut s = self.shape.lock();
        let kp = if keep.is_empty() {
            0
        } else {
            match s.upload_iter(self, flags(&keep[..n])) {
                Some(p) => p,
                None => return f32::NAN,
            }
        };
        let args = [
            self.ptr(&x),
            self.ptr(&t),
            KArg::Ptr(kp),
            KArg::I32(!keep.is_empty() as i32),
        ];
        self.reduce("rc_sigmoid_ce_loss_partial", n, &args)
    }

    fn sigmoid_ce_grad(&self, n: usize, x: View, t: View, keep: &[bool], scale: f32, dx: ViewMut) {
        if n == 0 {
            return;
        }
        let mut s = self.shape.lock();
        let kp = if keep.is_empty() {
            0
        } else {
            match s.upload_iter(self, flags(&keep[..n])) {
                Some(p) => p,
                None => return,
            }
        };
        let args = [
            ll(n),
            self.ptr(&x),
            self.ptr(&t),
            KArg::Ptr(kp),
            KArg::I32(!keep.is_empty() as i32),
            f(scale),
            self.ptr_mut(&dx),
        ];
        self.launch("rc_sigmoid_ce_grad", elementwise(n), &args);
    }

    fn hinge_margins(&self, dim: usize, labels: &[usize], x: View, v: ViewMut) {
        let n = labels.len() * dim;
        if n == 0 {
            return;
        }
        let mut s = self.shape.lock();
        let Some(lp) = s.upload_iter(self, indices(labels)) else {
            return;
        };
        let args = [
            ll(n),
            ll(dim),
            KArg::Ptr(lp),
            self.ptr(&x),
            self.ptr_mut(&v),
        ];
        self.launch("rc_hinge_margins", elementwise(n), &args);
    }

    fn hinge_grad(&self, dim: usize, labels: &[usize], l2: bool, scale: f32, v: View, dx: ViewMut) {
        let n = labels.len() * dim;
        if n == 0 {
            return;
        }
        let mut s = self.shape.lock();
        let Some(lp) = s.upload_iter(self, indices(labels)) else {
            return;
        };
        let args = [
            ll(n),
            ll(dim),
            KArg::Ptr(lp),
            KArg::I32(l2 as i32),
            f(scale),
            self.ptr(&v),
            self.ptr_mut(&dx),
        ];
        self.launch("rc_hinge_grad", elementwise(n), &args);
    }

    fn multinomial_logistic_loss(&self, dim: usize, labels: &[usize], p: View) -> f32 {
        if labels.is_empty() {
            return 0.0;
        }
        let mut s = self.shape.lock();
        let Some(lp) = s.upload_iter(self, indices(labels)) else {
            return f32::NAN;
        };
        let args = [ll(dim), KArg::Ptr(lp), self.ptr(&p)];
        self.reduce("rc_mnl_loss_partial", labels.len(), &args)
    }

    fn multinomial_logistic_grad(
        &self,
        dim: usize,
        labels: &[usize],
        scale: f32,
        p: View,
        dx: ViewMut,
    ) {
        let n = labels.len() * dim;
        if n == 0 {
            return;
        }
        let mut s = self.shape.lock();
        let Some(lp) = s.upload_iter(self, indices(labels)) else {
            return;
        };
        let args = [
            ll(n),
            ll(dim),
            KArg::Ptr(lp),
            f(scale),
            self.ptr(&p),
            self.ptr_mut(&dx),
        ];
        self.launch("rc_mnl_grad", elementwise(n), &args);
    }

    fn infogain_loss(
        &self,
        ch: usize,
        inner: usize,
        labels: &[Option<usize>],
        p: View,
        h: View,
    ) -> f32 {
        let n = labels.len() * ch;
        if n == 0 {
            return 0.0;
        }
        let mut s = self.shape.lock();
        let Some(lp) = s.upload_iter(self, optional(labels)) else {
            return f32::NAN;
        };
        let args = [ll(ch), ll(inner), KArg::Ptr(lp), self.ptr(&p), self.ptr(&h)];
        self.reduce("rc_infogain_loss_partial", n, &args)
    }

    fn infogain_grad(
        &self,
        ch: usize,
        inner: usize,
        labels: &[Option<usize>],
        scale: f32,
        p: View,
        h: View,
        dx: ViewMut,
    ) {
        let n = labels.len() * ch;
        if n == 0 {
            return;
        }
        let mut s = self.shape.lock();
        let Some(lp) = s.upload_iter(self, optional(labels)) else {
            return;
        };
        // H's row sums once, rather than once per element.
        let hsum = s.floats(self, ch);
        let hp = self.ptr(&h);
        self.launch(
            "rc_infogain_row_sums",
            elementwise(ch),
            &[ll(ch), hp, KArg::Ptr(hsum)],
        );
        let args = [
            ll(n),
            ll(ch),
            ll(inner),
            KArg::Ptr(lp),
            f(scale),
            self.ptr(&p),
            hp,
            KArg::Ptr(hsum),
            self.ptr_mut(&dx),
        ];
        self.launch("rc_infogain_grad", elementwise(n), &args);
    }

    fn contrastive_loss(
        &self,
        ch: usize,
        similar: &[bool],
        margin: f32,
        legacy: bool,
        diff: View,
        dist_sq: ViewMut,
    ) -> f32 {
        let rows = similar.len();
        if rows == 0 {
            return 0.0;
        }
        let dp = self.raw_mut(&dist_sq);
        self.reduce_rows_raw(Reduce::SumSq, rows, ch, 1.0, self.raw(&diff), dp);
        let mut s = self.shape.lock();
        let Some(sp) = s.upload_iter(self, flags(similar)) else {
            return f32::NAN;
        };
        let args = [
            KArg::Ptr(dp),
            KArg::Ptr(sp),
            f(margin),
            KArg::I32(legacy as i32),
        ];
        self.reduce("rc_contrastive_loss_partial", rows, &args)
    }

    fn contrastive_grad(
        &self,
        ch: usize,
        similar: &[bool],
        margin: f32,
        legacy: bool,
        alpha: f32,
        diff: View,
        dist_sq: View,
        dx: ViewMut,
    ) {
        let n = similar.len() * ch;
        if n == 0 {
            return;
        }
        let mut s = self.shape.lock();
        let Some(sp) = s.upload_iter(self, flags(similar)) else {
            return;
        };
        let args = [
            ll(n),
            ll(ch),
            KArg::Ptr(sp),
            f(margin),
            KArg::I32(legacy as i32),
            f(alpha),
            self.ptr(&diff),
            self.ptr(&dist_sq),
            self.ptr_mut(&dx),
        ];
        self.launch("rc_contrastive_grad", elementwise(n), &args);
    }
}

/// Infogain labels: an ignored column is -1.
fn optional(v: &[Option<usize>]) -> impl Iterator<Item = i64> + '_ {
    v.iter().map(|l| l.map_or(-1, |l| l as i64))
}

impl CudaBackend {
    /// Both crop directions: the window's geometry is uploaded as
    /// [out_shape][in_strides][offsets] (row-major strides of `in_shape`).
    #[allow(clippy::too_many_arguments)]
    fn crop(
        &self,
        in_shape: &[usize],
        out_shape: &[usize],
        offsets: &[usize],
        src: CdPtr,
        dst: CdPtr,
        backward: bool,
    ) {
        let nd = out_shape.len();
        assert!(
            in_shape.len() == nd && offsets.len() == nd,
            "crop: shapes and offsets of different lengths"
        );
        let n: usize = out_shape.iter().product();
        if n == 0 {
            return;
        }
        let mut guard = self.shape.lock();
        let s = &mut *guard;
        s.host.clear();
        s.host.extend(out_shape.iter().map(|&d| d as i64));
        let mut stride = 1i64;
        let at = s.host.len();
        s.host.resize(at + nd, 0);
        for d in (0..nd).rev() {
            s.host[at + d] = stride;
            stride *= in_shape[d] as i64;
        }
        s.host.extend(offsets.iter().map(|&o| o as i64));
        let Some(geo) = s.upload(self) else {
            return;
        };
        let args = [
            ll(n),
            KArg::I32(nd as i32),
            KArg::Ptr(geo),
            KArg::Ptr(src),
            KArg::Ptr(dst),
            KArg::I32(backward as i32),
        ];
        self.launch("rc_crop", elementwise(n), &args);
    }
}
