//! `LrnOps` on the GPU (`kernels/lrn.cu`). ACROSS_CHANNELS is Caffe's
//! lrn_layer.cu: one thread per pixel walks the channel window (running
//! sum), then an element-wise pass applies `scale^−β`. WITHIN_CHANNEL is
//! the CPU backend's direct form of Caffe's Split/Power/Pooling/Power/
//! Eltwise composition: one thread per value sums its padded window
//! (forward) or gathers from the windows that cover it (backward, in the
//! CPU's row-major window order, so no atomics).
//!
//! The numbers agree with the CPU backend to a few ulp, not bit for bit:
//! the GPU keeps Caffe's `Σx²` running sum before `k + α/n·Σ` (the CPU adds
//! `α/n·x²` terms onto `k`), uses CUDA's `powf` (the CPU has closed forms
//! for β = 0.75, 0.5, 1) and contracts multiply-adds (nvcc's default).
use super::math::{elementwise, f, ll, CudaBackend};
use super::pool::{at, chunks, i32k};
use crate::backend::lrn::LrnParams;
use crate::backend::{LrnOps, View, ViewMut};

impl LrnOps for CudaBackend {
    fn lrn_across_forward(
        &self,
        p: &LrnParams,
        num: usize,
        channels: usize,
        spatial: usize,
        x: View,
        scale: ViewMut,
        y: ViewMut,
    ) {
        let dim = channels * spatial;
        let total = num * dim;
        if total == 0 {
            return;
        }
        assert!(
            dim <= i32::MAX as usize,
            "an LRN image of {dim} values exceeds the GPU kernels' 32-bit index"
        );
        let (xp, sp, yp) = (self.raw(&x), self.raw_mut(&scale), self.raw_mut(&y));
        for (i0, ni) in chunks(num, spatial) {
            let n = ni * spatial;
            // rc_lrn_fill_scale(n, x, channels, spatial, size, alpha/size, k, scale)
            self.launch(
                "rc_lrn_fill_scale",
                elementwise(n),
                &[
                    i32k(n),
                    at(xp, i0 * dim),
                    i32k(channels),
                    i32k(spatial),
                    i32k(p.size),
                    f(p.alpha / p.size as f32),
                    f(p.k),
                    at(sp, i0 * dim),
                ],
            );
        }
        // rc_lrn_output(n, x, scale, -beta, y): 64-bit element-wise.
        self.launch(
            "rc_lrn_output",
            elementwise(total),
            &[ll(total), at(xp, 0), at(sp, 0), f(-p.beta), at(yp, 0)],
        );
    }

    fn lrn_across_backward(
        &self,
        p: &LrnParams,
        num: usize,
        channels: usize,
        spatial: usize,
        x: View,
        y: View,
        scale: View,
        dy: View,
        dx: ViewMut,
    ) {
        let dim = channels * spatial;
        if num * dim == 0 {
            return;
        }
        assert!(
            dim <= i32::MAX as usize,
            "an LRN image of {dim} values exceeds the GPU kernels' 32-bit index"
        );
        let (xp, yp, sp, dyp, dxp) = (
            self.raw(&x),
            self.raw(&y),
            self.raw(&scale),
            self.raw(&dy),
            self.raw_mut(&dx),
        );
        // Caffe's cache_ratio 2αβ/n (the CPU computes it in f64, then rounds).
        let cache = (2.0 * p.alpha as f64 * p.beta as f64 / p.size as f64) as f32;
        for (i0, ni) in chunks(num, spatial) {
            let n = ni * spatial;
            let o = i0 * dim;
            // rc_lrn_diff(n, x, y, scale, dy, channels, spatial, size,
            //             -beta, cache_ratio, dx)
            self.launch(
                "rc_lrn_diff",
                elementwise(n),
                &[
                    i32k(n),
                    at(xp, o),
                    at(yp, o),
                    at(sp, o),
                    at(dyp, o),
                    i32k(channels),
                    i32k(spatial),
                    i32k(p.size),
                    f(-p.beta),
                    f(cache),
                    at(dxp, o),
                ],
            );
        }
    }

    fn lrn_within_forward(
        &self,
        p: &LrnParams,
        planes: usize,
        height: usize,
        width: usize,
        x: View,
        avg: ViewMut,
        scale: ViewMut,
        y: ViewMut,
    ) {
        let sp = height * width;
        let (xp, ap, scp, yp) = (
            self.raw(&x),
            self.raw_mut(&avg),
            self.raw_mut(&scale),
            self.raw_mut(&y),
        );
        for (p0, np) in chunks(planes, sp) {
            let n = np * sp;
            if n == 0 {
                continue;
            }
            let o = p0 * sp;
            // rc_lrn_within_fwd(n, x, height, width, size, alpha, beta,
            //                   avg, scale, y)
            self.launch(
                "rc_lrn_within_fwd",
                elementwise(n),
                &[
                    i32k(n),
                    at(xp, o),
                    i32k(height),
                    i32k(width),
                    i32k(p.size),
                    f(p.alpha),
                    f(p.beta),
                    at(ap, o),
                    at(scp, o),
                    at(yp, o),
                ],
            );
        }
    }

    fn lrn_within_backward(
        &self,
        p: &LrnParams,
        planes: usize,
        height: usize,
        width: usize,
        x: View,
        avg: View,
        scale: View,
        dy: View,
        dx: ViewMut,
    ) {
        let sp = height * width;
        let (xp, ap, scp, dyp, dxp) = (
            self.raw(&x),
            self.raw(&avg),
            self.raw(&scale),
            self.raw(&dy),
            self.raw_mut(&dx),
        );
        for (p0, np) in chunks(planes, sp) {
            let n = np * sp;
            if n == 0 {
                continue;
            }
            let o = p0 * sp;
            // rc_lrn_within_bwd(n, x, avg, scale, dy, height, width, size,
            //                   alpha, beta, dx)
            self.launch(
                "rc_lrn_within_bwd",
                elementwise(n),
                &[
                    i32k(n),
                    at(xp, o),
                    at(ap, o),
                    at(scp, o),
                    at(dyp, o),
                    i32k(height),
                    i32k(width),
                    i32k(p.size),
                    f(p.alpha),
                    f(p.beta),
                    at(dxp, o),
                ],
            );
        }
    }
}
