//! Depthwise 2-D convolution on the GPU (`group == in_channels ==
//! out_channels`, MobileNet's `*/dw` layers): the direct kernels of
//! `kernels/depthwise.cu`, used by `conv.rs` for every engine. cuDNN 9's
//! grouped convolution took seconds per MobileNet v1 step on an H200, and
//! the per-group im2col + GEMM path runs one tiny GEMM per channel.
//!
//! - forward: one thread per output value;
//! - data gradient: one thread per input value, gathering the outputs whose
//!   windows read it (overwrites dx, no atomics);
//! - filter gradient: one block per weight, a fixed-order block reduction
//!   in double, added to dw (accumulates, as the cuDNN path's beta = 1).
//!
//! The bias gradient stays `conv_backward_bias` (one cuBLAS GEMV per image),
//! as on the generic path. Every pass runs over whole images, as many per
//! launch as keep the kernels' int indices in range.
use cudarc::driver::LaunchConfig;

use super::kernels::REDUCE_THREADS;
use super::math::{elementwise, CudaBackend, KArg};
use super::pool::{at, chunks, i32k};
use crate::backend::conv::DepthwiseGeometry;
use crate::backend::{View, ViewMut};

/// The depthwise layers both backends send to direct kernels (the shared
/// rule in `backend::conv`).
pub(crate) type Depthwise = DepthwiseGeometry;

/// Launch shapes of the depthwise kernels.
trait Launch {
    fn images(&self, num: usize) -> impl Iterator<Item = (usize, usize)>;
    fn geometry(&self) -> [KArg; 13];
}

impl Launch for Depthwise {
    /// `[first image, images)` per launch: an image's values on either side
    /// (and the taps' offsets, below them) fit the kernels' ints.
    fn images(&self, num: usize) -> impl Iterator<Item = (usize, usize)> {
        chunks(num, self.c * self.in_plane().max(self.out_plane()))
    }

    /// Every kernel's arguments after its data pointers: channels, height,
    /// width, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_h,
    /// pad_w, dilation_h, dilation_w.
    fn geometry(&self) -> [KArg; 13] {
        [
            self.c, self.ih, self.iw, self.oh, self.ow, self.kh, self.kw, self.sh, self.sw,
            self.ph, self.pw, self.dh, self.dw,
        ]
        .map(i32k)
    }
}

impl CudaBackend {
    /// `y = w ⋆ x (+ bias)` for `num` images (`y` is overwritten).
    pub(crate) fn depthwise_forward(
        &self,
        k: &Depthwise,
        num: usize,
        x: View,
        w: View,
        bias: Option<View>,
        y: ViewMut,
    ) {
        let (ip, op) = (k.c * k.in_plane(), k.c * k.out_plane());
        let (xp, wp, yp) = (self.raw(&x), self.raw(&w), self.raw_mut(&y));
        // A null bias pointer: none.
        let bp = KArg::Ptr(bias.map_or(0, |b| self.raw(&b)));
        for (n0, nn) in k.images(num) {
            let n = nn * op;
            // rc_dw_conv_fwd(n, x, w, bias, <geometry>, y)
            let mut args = vec![i32k(n), at(xp, n0 * ip), KArg::Ptr(wp), bp];
            args.extend(k.geometry());
            args.push(at(yp, n0 * op));
            self.launch("rc_dw_conv_fwd", elementwise(n), &args);
        }
    }

    /// `dx = wᵀ ⋆ dy` for `num` images (`dx` is overwritten).
    pub(crate) fn depthwise_backward_data(
        &self,
        k: &Depthwise,
        num: usize,
        dy: View,
        w: View,
        dx: ViewMut,
    ) {
        let (ip, op) = (k.c * k.in_plane(), k.c * k.out_plane());
        let (dyp, wp, dxp) = (self.raw(&dy), self.raw(&w), self.raw_mut(&dx));
        for (n0, nn) in k.images(num) {
            let n = nn * ip;
            // rc_dw_conv_bwd_data(n, dy, w, <geometry>, dx)
            let mut args = vec![i32k(n), at(dyp, n0 * op), KArg::Ptr(wp)];
            args.extend(k.geometry());
            args.push(at(dxp, n0 * ip));
            self.launch("rc_dw_conv_bwd_data", elementwise(n), &args);
        }
    }

    /// `dw += Σ_images dy ⋆ x` for `num` images.
    pub(crate) fn depthwise_backward_filter(
        &self,
        k: &Depthwise,
        num: usize,
        x: View,
        dy: View,
        dw: ViewMut,
    ) {
        let (ip, op) = (k.c * k.in_plane(), k.c * k.out_plane());
        let (xp, dyp, dwp) = (self.raw(&x), self.raw(&dy), self.raw_mut(&dw));
        let weights = k.c * k.kh * k.kw;
        // CUDA's grid limit along x.
        let Ok(blocks) = i32::try_from(weights) else {
            panic!("{weights} depthwise weights exceed CUDA's grid limit");
        };
        // One block per weight; rc_block_sum needs exactly REDUCE_THREADS.
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        for (n0, nn) in k.images(num) {
            // rc_dw_conv_bwd_filter(num, x, dy, <geometry>, dw)
            let mut args = vec![i32k(nn), at(xp, n0 * ip), at(dyp, n0 * op)];
            args.extend(k.geometry());
            args.push(KArg::Ptr(dwp));
            self.launch("rc_dw_conv_bwd_filter", cfg, &args);
        }
    }
}
