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
use crate::backend::{ConvGeometry, View, ViewMut};

/// A depthwise 2-D geometry: the CPU backend's rule (`cpu/depthwise.rs`),
/// so both backends take the direct path for the same layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Depthwise {
    c: usize,
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
}

impl Depthwise {
    /// `g`'s depthwise geometry, if it is one: 2-D with one filter per
    /// channel (channel multiplier 1), any stride, pad and dilation, and
    /// the output size Caffe's rule gives (the kernels' bounds rely on it).
    pub(crate) fn new(g: &ConvGeometry) -> Option<Depthwise> {
        let ok = g.num_spatial_axes() == 2
            && g.group > 0
            && g.group == g.in_channels
            && g.group == g.out_channels
            && g.in_shape.len() == 2
            && g.out_shape.len() == 2
            && [&g.stride, &g.pad, &g.dilation]
                .iter()
                .all(|v| v.len() == 2)
            && g.kernel
                .iter()
                .chain(&g.stride)
                .chain(&g.dilation)
                .all(|&v| v > 0)
            && g.in_shape.iter().chain(&g.out_shape).all(|&v| v > 0);
        if !ok {
            return None;
        }
        let k = Depthwise {
            c: g.in_channels,
            ih: g.in_shape[0],
            iw: g.in_shape[1],
            oh: g.out_shape[0],
            ow: g.out_shape[1],
            kh: g.kernel[0],
            kw: g.kernel[1],
            sh: g.stride[0],
            sw: g.stride[1],
            ph: g.pad[0],
            pw: g.pad[1],
            dh: g.dilation[0],
            dw: g.dilation[1],
        };
        let fits = ConvGeometry::output_size(k.ih, k.kh, k.sh, k.ph, k.dh) == Some(k.oh)
            && ConvGeometry::output_size(k.iw, k.kw, k.sw, k.pw, k.dw) == Some(k.ow);
        fits.then_some(k)
    }

    fn in_plane(&self) -> usize {
        self.ih * self.iw
    }
    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Engine;

    fn geom(c: usize, oc: usize, group: usize, shape: &[usize], k: &[usize]) -> ConvGeometry {
        let n = shape.len();
        let out_shape = (0..n)
            .map(|d| ConvGeometry::output_size(shape[d], k[d], 1, 1, 1).unwrap())
            .collect();
        ConvGeometry {
            in_channels: c,
            in_shape: shape.to_vec(),
            out_channels: oc,
            out_shape,
            kernel: k.to_vec(),
            stride: vec![1; n],
            pad: vec![1; n],
            dilation: vec![1; n],
            group,
            engine: Engine::Cudnn,
        }
    }

    /// Depthwise 2-D only, whatever the engine; a wrong output size is not
    /// trusted (the kernels' bounds rely on it).
    #[test]
    fn applies_only_to_depthwise_2d() {
        let g = geom(4, 4, 4, &[6, 6], &[3, 3]);
        assert!(Depthwise::new(&g).is_some());
        assert!(Depthwise::new(&geom(1, 1, 1, &[6, 5], &[3, 1])).is_some());
        assert!(Depthwise::new(&geom(4, 8, 4, &[6, 6], &[3, 3])).is_none());
        assert!(Depthwise::new(&geom(4, 4, 2, &[6, 6], &[3, 3])).is_none());
        assert!(Depthwise::new(&geom(4, 4, 4, &[6], &[3])).is_none());
        assert!(Depthwise::new(&geom(4, 4, 4, &[6, 6, 6], &[3, 3, 3])).is_none());
        let bad = ConvGeometry {
            out_shape: vec![7, 6],
            ..g
        };
        assert!(Depthwise::new(&bad).is_none());
    }
}
