//! `NormOps` on the GPU: the kernels of `kernels/norm.cu`.
//!
//! Per-channel reductions (`channel_sum`, `channel_dot`, PReLU's slope
//! gradient) run one block per channel, or, when there are too few
//! channels to fill the GPU (ResNet's 64-channel 112×112 BatchNorm/Scale),
//! several blocks per channel whose partials a second pass adds in order;
//! they accumulate in double and the grid depends only on the shape, so
//! they are deterministic;
//! broadcasts and PReLU's element-wise passes are grid-stride loops.
use cudarc::driver::LaunchConfig;

use super::kernels::REDUCE_THREADS;
use super::math::{elementwise, f, ll, CudaBackend, KArg, REDUCE_BLOCKS};
use crate::backend::{Binary, NormOps, View, ViewMut};

/// One block of `REDUCE_THREADS` per channel (the kernels end in
/// `rc_block_sum`, which needs exactly that many threads); `None` when there
/// is no channel to write.
fn per_channel(channels: usize) -> Option<LaunchConfig> {
    if channels == 0 {
        return None;
    }
    // CUDA's grid limit along x; a channel count beyond it is not a tensor
    // this backend can hold.
    assert!(
        channels <= i32::MAX as usize,
        "{channels} channels exceed CUDA's grid limit"
    );
    Some(LaunchConfig {
        grid_dim: (channels as u32, 1, 1),
        block_dim: (REDUCE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// `rc_channel_partial`'s mode (norm.cu's RC_SUM, RC_DOT, RC_PRELU).
#[derive(Clone, Copy)]
enum Reduce {
    Sum = 0,
    Dot = 1,
    Prelu = 2,
}

/// Blocks per channel for a per-channel reduction over `m` values each:
/// enough blocks in all to fill the GPU, within the scratch's
/// `REDUCE_BLOCKS` partials, each block summing at least 16 values per
/// thread; 1 (the one-block-per-channel kernels) when the channels alone
/// are enough.
fn splits(channels: usize, m: usize) -> usize {
    let room = REDUCE_BLOCKS as usize / channels.max(1);
    let work = m.div_ceil(16 * REDUCE_THREADS as usize);
    room.min(work).max(1)
}

impl CudaBackend {
    /// The per-channel reductions: `out[c] = alpha·Σ + beta·out[c]` (Sum of
    /// `a`, Dot of `a·b`) or `out[c] += Σ` (Prelu, `a` = x, `b` = dy). One
    /// block per channel, or `splits` blocks per channel when the channels
    /// alone cannot fill the GPU: partials into the reduction scratch, then
    /// one pass that adds them in order and stores as the one-block kernels
    /// do.
    fn channel_reduce(
        &self,
        mode: Reduce,
        (outer, channels, inner): (usize, usize, usize),
        (a, b): (KArg, KArg),
        (alpha, beta): (f32, f32),
        out: KArg,
    ) {
        let Some(cfg) = per_channel(channels) else {
            return;
        };
        let k = splits(channels, outer * inner);
        if k == 1 {
            let [o, c, i] = [ll(outer), ll(channels), ll(inner)];
            return match mode {
                Reduce::Sum => {
                    let args = [o, c, i, f(alpha), a, f(beta), out];
                    self.launch("rc_channel_sum_nci", cfg, &args)
                }
                Reduce::Dot => {
                    let args = [o, c, i, f(alpha), a, b, f(beta), out];
                    self.launch("rc_channel_dot_nci", cfg, &args)
                }
                Reduce::Prelu => {
                    let args = [o, c, i, a, b, out];
                    self.launch("rc_prelu_bwd_slope", cfg, &args)
                }
            };
        }
        self.with_partials(|part| {
            let cfg = LaunchConfig {
                grid_dim: (k as u32, channels as u32, 1),
                block_dim: (REDUCE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let args = [
                ll(outer),
                ll(channels),
                ll(inner),
                KArg::I32(mode as i32),
                KArg::I32(k as i32),
                a,
                b,
                KArg::Ptr(part),
            ];
            self.launch("rc_channel_partial", cfg, &args);
            let args = [
                ll(channels),
                KArg::I32(mode as i32),
                KArg::I32(k as i32),
                f(alpha),
                f(beta),
                KArg::Ptr(part),
                out,
            ];
            self.launch("rc_channel_finish", elementwise(channels), &args);
        });
    }
}

fn bcast_kernel(op: Binary) -> &'static str {
    match op {
        Binary::Add => "rc_bcast_add",
        Binary::Sub => "rc_bcast_sub",
        Binary::Mul => "rc_bcast_mul",
        Binary::Div => "rc_bcast_div",
        Binary::Max => "rc_bcast_max",
    }
}

impl NormOps for CudaBackend {
    fn channel_sum(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        alpha: f32,
        x: View,
        beta: f32,
        out: ViewMut,
    ) {
        // Zero values (outer or inner 0) still write alpha·0 + beta·out, as
        // on the CPU; the kernel never reads x then.
        let x = self.ptr(&x);
        let dims = (outer, channels, inner);
        self.channel_reduce(Reduce::Sum, dims, (x, x), (alpha, beta), self.ptr_mut(&out));
    }

    fn channel_dot(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        alpha: f32,
        a: View,
        b: View,
        beta: f32,
        out: ViewMut,
    ) {
        let (a, b) = (self.ptr(&a), self.ptr(&b));
        let dims = (outer, channels, inner);
        self.channel_reduce(Reduce::Dot, dims, (a, b), (alpha, beta), self.ptr_mut(&out));
    }

    fn channel_broadcast(
        &self,
        op: Binary,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        v: View,
        y: ViewMut,
    ) {
        let n = outer * channels * inner;
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            ll(channels),
            ll(inner),
            self.ptr(&x),
            self.ptr(&v),
            self.ptr_mut(&y),
        ];
        self.launch(bcast_kernel(op), elementwise(n), &args);
    }

    fn channel_broadcast_inplace(
        &self,
        op: Binary,
        outer: usize,
        channels: usize,
        inner: usize,
        v: View,
        y: ViewMut,
    ) {
        let n = outer * channels * inner;
        if n == 0 {
            return;
        }
        // x == y: each thread reads its value before writing it.
        let yp = self.ptr_mut(&y);
        let args = [ll(n), ll(channels), ll(inner), yp, self.ptr(&v), yp];
        self.launch(bcast_kernel(op), elementwise(n), &args);
    }

    fn channel_affine(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        s: View,
        b: View,
        y: ViewMut,
    ) {
        let n = outer * channels * inner;
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            ll(channels),
            ll(inner),
            self.ptr(&s),
            self.ptr(&b),
            self.ptr_mut(&y),
        ];
        self.launch("rc_channel_affine", elementwise(n), &args);
    }

    fn scale_by_inverse(&self, n: usize, s: View, x: View, y: ViewMut) {
        if n == 0 {
            return;
        }
        let args = [ll(n), self.ptr(&s), self.ptr(&x), self.ptr_mut(&y)];
        self.launch("rc_scale_by_inverse", elementwise(n), &args);
    }

    fn prelu_forward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        slope: View,
        y: ViewMut,
    ) {
        let n = outer * channels * inner;
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            ll(channels),
            ll(inner),
            self.ptr(&x),
            self.ptr(&slope),
            self.ptr_mut(&y),
        ];
        self.launch("rc_prelu_fwd", elementwise(n), &args);
    }

    fn prelu_backward_slope(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        dy: View,
        slope_diff: ViewMut,
    ) {
        // Nothing to add without values (the CPU leaves slope_diff as is).
        if outer * inner == 0 {
            return;
        }
        let (x, dy) = (self.ptr(&x), self.ptr(&dy));
        let dims = (outer, channels, inner);
        let out = self.ptr_mut(&slope_diff);
        self.channel_reduce(Reduce::Prelu, dims, (x, dy), (1.0, 1.0), out);
    }

    fn prelu_backward_data(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        dy: View,
        slope: View,
        dx: ViewMut,
    ) {
        let n = outer * channels * inner;
        if n == 0 {
            return;
        }
        let args = [
            ll(n),
            ll(channels),
            ll(inner),
            self.ptr(&x),
            self.ptr(&dy),
            self.ptr(&slope),
            self.ptr_mut(&dx),
        ];
        self.launch("rc_prelu_bwd_data", elementwise(n), &args);
    }
}
