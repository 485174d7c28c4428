//! Pooling (Caffe's PoolingLayer): MAX and AVE over 2-D windows of a 4-D
//! blob, with Caffe's output-size rules (ceil or floor, and the clipping
//! rule under padding) and global pooling.
use crate::backend::pool::PoolGeometry;
use crate::backend::Buffer;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::pooling_parameter::{PoolMethod, RoundMode};
use crate::proto::caffe::LayerParameter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Max,
    Ave,
}

#[derive(Debug)]
pub struct Pooling {
    method: Method,
    global: bool,
    /// (h, w); recomputed from the bottom in every reshape when global.
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    ceil: bool,
    geom: PoolGeometry,
    planes: usize,
    /// MAX argmax indices when no second top receives them.
    mask: Buffer,
}

/// Caffe's pooled size along one axis: `round((size + 2·pad − k) / stride) + 1`
/// in float, then, with any padding, drop a last window that would start in
/// the bottom/right padding.
fn pooled_size(
    size: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ceil: bool,
    padded: bool,
) -> Result<usize> {
    let q = (size as i64 + 2 * pad as i64 - k as i64) as f32 / stride as f32;
    let mut p = if ceil { q.ceil() } else { q.floor() } as i64 + 1;
    if padded && (p - 1) * stride as i64 >= (size + pad) as i64 {
        p -= 1;
    }
    if p < 1 {
        return Err(layer_err!(
            "pooling window {k} (pad {pad}) does not fit the input size {size}"
        ));
    }
    if padded && (p - 1) * stride as i64 >= (size + pad) as i64 {
        return Err(layer_err!(
            "the last pooling window starts in the padding (size {size}, pad {pad}, stride {stride})"
        ));
    }
    Ok(p as usize)
}

impl Pooling {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.pooling_param.unwrap_or_default();
        let method = match p.pool() {
            PoolMethod::Max => Method::Max,
            PoolMethod::Ave => Method::Ave,
            PoolMethod::Stochastic => {
                return Err(layer_err!(
                    "STOCHASTIC pooling is not supported (BVLC Caffe implements it on the GPU only)"
                ))
            }
        };
        let global = p.global_pooling();
        let has_hw = p.kernel_h.is_some() && p.kernel_w.is_some();
        let kernel = if global {
            if p.kernel_size.is_some() || p.kernel_h.is_some() || p.kernel_w.is_some() {
                return Err(layer_err!(
                    "with global_pooling: true the filter size cannot be specified"
                ));
            }
            (0, 0)
        } else if p.kernel_size.is_some() == has_hw {
            return Err(layer_err!(
                "filter size is kernel_size OR kernel_h and kernel_w; not both (and for \
                 non-square filters both kernel_h and kernel_w are required)"
            ));
        } else if p.kernel_size.is_some() {
            (p.kernel_size() as usize, p.kernel_size() as usize)
        } else {
            (p.kernel_h() as usize, p.kernel_w() as usize)
        };
        let pair_ok = |one: bool, h: bool, w: bool| (!one && h && w) || (!h && !w);
        if !pair_ok(p.pad.is_some(), p.pad_h.is_some(), p.pad_w.is_some()) {
            return Err(layer_err!("pad is pad OR pad_h and pad_w are required"));
        }
        if !pair_ok(
            p.stride.is_some(),
            p.stride_h.is_some(),
            p.stride_w.is_some(),
        ) {
            return Err(layer_err!(
                "stride is stride OR stride_h and stride_w are required"
            ));
        }
        let pad = if p.pad_h.is_some() {
            (p.pad_h() as usize, p.pad_w() as usize)
        } else {
            (p.pad() as usize, p.pad() as usize)
        };
        let stride = if p.stride_h.is_some() {
            (p.stride_h() as usize, p.stride_w() as usize)
        } else {
            (p.stride() as usize, p.stride() as usize)
        };
        if !global && (kernel.0 == 0 || kernel.1 == 0) {
            return Err(layer_err!("filter dimensions cannot be zero"));
        }
        if stride.0 == 0 || stride.1 == 0 {
            return Err(layer_err!("stride cannot be zero"));
        }
        if global && (pad != (0, 0) || stride != (1, 1)) {
            return Err(layer_err!(
                "with global_pooling: true only pad = 0 and stride = 1 are allowed"
            ));
        }
        if !global && (pad.0 >= kernel.0 || pad.1 >= kernel.1) {
            return Err(layer_err!(
                "pad ({}, {}) must be smaller than the kernel ({}, {})",
                pad.0,
                pad.1,
                kernel.0,
                kernel.1
            ));
        }
        Ok(Pooling {
            method,
            global,
            kernel,
            stride,
            pad,
            ceil: p.round_mode() == RoundMode::Ceil,
            geom: PoolGeometry::default(),
            planes: 0,
            mask: Buffer::default(),
        })
    }
}

impl Layer for Pooling {
    fn type_name(&self) -> &'static str {
        "Pooling"
    }

    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(1),
            max_bottoms: Some(1),
            min_tops: Some(1),
            // The MAX mask may go to a second top.
            max_tops: Some(if self.method == Method::Max { 2 } else { 1 }),
            equal_bottom_top: false,
        }
    }

    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        if shape.len() != 4 {
            return Err(layer_err!(
                "input must have 4 axes (num, channels, height, width), got {shape:?}"
            ));
        }
        let (h, w) = (shape[2], shape[3]);
        if self.global {
            self.kernel = (h, w);
        }
        let padded = self.pad != (0, 0);
        let ph = pooled_size(
            h,
            self.kernel.0,
            self.stride.0,
            self.pad.0,
            self.ceil,
            padded,
        )?;
        let pw = pooled_size(
            w,
            self.kernel.1,
            self.stride.1,
            self.pad.1,
            self.ceil,
            padded,
        )?;
        self.geom = PoolGeometry {
            height: h,
            width: w,
            pooled_height: ph,
            pooled_width: pw,
            kernel_h: self.kernel.0,
            kernel_w: self.kernel.1,
            stride_h: self.stride.0,
            stride_w: self.stride.1,
            pad_h: self.pad.0,
            pad_w: self.pad.1,
        };
        self.planes = shape[0] * shape[1];
        let top_shape = [shape[0], shape[1], ph, pw];
        for t in 0..io.n_tops() {
            io.top_mut(t).reshape(&top_shape)?;
        }
        let n = self.planes * ph * pw;
        if self.method == Method::Max && io.n_tops() == 1 && self.mask.len() < n {
            self.mask = cx.be.alloc(n);
        }
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (g, planes) = (&self.geom, self.planes);
        match self.method {
            Method::Max if io.n_tops() > 1 => {
                let ([x], [y, m]) = io.split([Slot::B(0)], [Slot::T(0), Slot::T(1)])?;
                cx.be.max_pool_forward(
                    g,
                    planes,
                    x.data.view(),
                    y.data.view_mut(),
                    m.data.view_mut(),
                );
            }
            Method::Max => {
                let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
                cx.be.max_pool_forward(
                    g,
                    planes,
                    x.data.view(),
                    y.data.view_mut(),
                    self.mask.view_mut(),
                );
            }
            Method::Ave => {
                let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
                cx.be
                    .ave_pool_forward(g, planes, x.data.view(), y.data.view_mut());
            }
        }
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down.first().copied().unwrap_or(false) {
            return Ok(());
        }
        let (g, planes) = (&self.geom, self.planes);
        match self.method {
            Method::Max if io.n_tops() > 1 => {
                let ([y, m], [x]) = io.split([Slot::T(0), Slot::T(1)], [Slot::B(0)])?;
                cx.be
                    .max_pool_backward(g, planes, y.diff.view(), m.data.view(), x.diff.view_mut());
            }
            Method::Max => {
                let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
                cx.be.max_pool_backward(
                    g,
                    planes,
                    y.diff.view(),
                    self.mask.view(),
                    x.diff.view_mut(),
                );
            }
            Method::Ave => {
                let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
                cx.be
                    .ave_pool_backward(g, planes, y.diff.view(), x.diff.view_mut());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::tensor::Blob;

    #[test]
    fn golden_cases_match_caffe() {
        for case in [
            "pool_ave_3x3_s2_pad1",
            "pool_global_ave",
            "pool_global_max",
            "pool_max_2x2_s2_pad1_clip",
            "pool_max_3x3_s2_ceil",
            "pool_max_3x3_s2_pad1",
            "pool_max_with_mask",
        ] {
            check_golden(case);
        }
    }

    #[test]
    fn output_size_rules() {
        // ceil: 8×8, k3 s2 → 4; floor → 3.
        assert_eq!(pooled_size(8, 3, 2, 0, true, false).unwrap(), 4);
        assert_eq!(pooled_size(8, 3, 2, 0, false, false).unwrap(), 3);
        // Clipping under padding: 5, k2 s2 p1: ceil gives 4, (4-1)·2 ≥ 5+1 → 3.
        assert_eq!(pooled_size(5, 2, 2, 1, true, true).unwrap(), 3);
        // The rule applies to both axes when either pad is non-zero.
        assert_eq!(pooled_size(4, 2, 2, 0, true, true).unwrap(), 2);
        assert!(pooled_size(2, 3, 1, 0, true, false).is_err());
        let (_, tops) = run_forward(
            "type: 'Pooling' pooling_param { pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 \
             pad_h: 1 pad_w: 0 round_mode: FLOOR }",
            &[&[2, 3, 7, 6]],
        );
        assert_eq!(tops[0].shape(), &[2, 3, 4, 5]);
    }

    /// Values spaced well beyond the finite-difference step, so no window
    /// has two candidates within ±h of each other.
    fn distinct(shape: &[usize], seed: u64) -> Blob {
        let n: usize = shape.iter().product();
        let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.swap(i, (s >> 33) as usize % (i + 1));
        }
        Blob::from_host(shape, v)
    }

    #[test]
    fn max_gradients_with_internal_and_top_mask() {
        check_gradients_on(
            "type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }",
            vec![distinct(&[2, 2, 7, 6], 1)],
            1,
            &[],
        );
        check_gradients_on(
            "type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
            vec![distinct(&[1, 3, 5, 5], 2)],
            2,
            &[0],
        );
    }

    #[test]
    fn ave_gradients_with_padding_overhang_and_global() {
        check_gradients(
            "type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }",
            &[&[2, 2, 6, 7]],
        );
        check_gradients(
            "type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 }",
            &[&[1, 2, 8, 8]],
        );
        check_gradients(
            "type: 'Pooling' pooling_param { pool: AVE global_pooling: true }",
            &[&[2, 3, 4, 5]],
        );
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for (text, msg) in [
            (
                "type: 'Pooling' pooling_param { pool: STOCHASTIC kernel_size: 2 }",
                "STOCHASTIC",
            ),
            (
                "type: 'Pooling' pooling_param { kernel_size: 2 kernel_h: 2 kernel_w: 2 }",
                "not both",
            ),
            (
                "type: 'Pooling' pooling_param { kernel_h: 2 }",
                "kernel_h and kernel_w",
            ),
            (
                "type: 'Pooling' pooling_param { global_pooling: true kernel_size: 2 }",
                "global_pooling",
            ),
            (
                "type: 'Pooling' pooling_param { kernel_size: 2 pad: 2 }",
                "smaller than the kernel",
            ),
            (
                "type: 'Pooling' pooling_param { kernel_size: 2 pad_h: 1 }",
                "pad_h and pad_w",
            ),
        ] {
            let err = try_setup(text, &[&[1, 1, 5, 5]]).unwrap_err().to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
        let err = try_setup(
            "type: 'Pooling' pooling_param { kernel_size: 2 }",
            &[&[1, 5, 5]],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("4 axes"), "{err}");
    }
}
