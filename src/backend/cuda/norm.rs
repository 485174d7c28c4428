//! `NormOps` on the GPU: the kernels of `kernels/norm.cu`.
//!
//! Per-channel reductions (`channel_sum`, `channel_dot`, PReLU's slope
//! gradient) run one block per channel, accumulate in double and have a
//! fixed summation order, so they are deterministic and need no scratch;
//! broadcasts and PReLU's element-wise passes are grid-stride loops.
use cudarc::driver::LaunchConfig;

use super::kernels::REDUCE_THREADS;
use super::math::{elementwise, f, ll, CudaBackend};
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
        let Some(cfg) = per_channel(channels) else {
            return;
        };
        // Zero values (outer or inner 0) still write alpha·0 + beta·out, as
        // on the CPU; the kernel never reads x then.
        let args = [
            ll(outer),
            ll(channels),
            ll(inner),
            f(alpha),
            self.ptr(&x),
            f(beta),
            self.ptr_mut(&out),
        ];
        self.launch("rc_channel_sum_nci", cfg, &args);
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
        let Some(cfg) = per_channel(channels) else {
            return;
        };
        let args = [
            ll(outer),
            ll(channels),
            ll(inner),
            f(alpha),
            self.ptr(&a),
            self.ptr(&b),
            f(beta),
            self.ptr_mut(&out),
        ];
        self.launch("rc_channel_dot_nci", cfg, &args);
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
        let Some(cfg) = per_channel(channels) else {
            return;
        };
        let args = [
            ll(outer),
            ll(channels),
            ll(inner),
            self.ptr(&x),
            self.ptr(&dy),
            self.ptr_mut(&slope_diff),
        ];
        self.launch("rc_prelu_bwd_slope", cfg, &args);
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
