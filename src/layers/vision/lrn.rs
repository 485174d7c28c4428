//! LRN (Caffe's LRNLayer): local response normalization across channels or
//! within each channel plane.
use crate::backend::lrn::LrnParams;
use crate::backend::Buffer;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::lrn_parameter::NormRegion;
use crate::proto::caffe::LayerParameter;

#[derive(Debug)]
pub struct Lrn {
    params: LrnParams,
    within: bool,
    /// (num, channels, height, width) of the bottom.
    dims: [usize; 4],
    /// The denominator factor per value (ACROSS: `k + α/n·Σx²`; WITHIN:
    /// `(1 + α·avg)^−β`), kept for backward.
    scale: Buffer,
    /// WITHIN only: the AVE-pooled squares.
    avg: Buffer,
}

impl Lrn {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.lrn_param.unwrap_or_default();
        let size = p.local_size() as usize;
        if size.is_multiple_of(2) {
            return Err(layer_err!(
                "LRN only supports odd values for local_size (got {size})"
            ));
        }
        Ok(Lrn {
            params: LrnParams {
                size,
                alpha: p.alpha(),
                beta: p.beta(),
                k: p.k(),
            },
            within: p.norm_region() == NormRegion::WithinChannel,
            dims: [0; 4],
            scale: Buffer::default(),
            avg: Buffer::default(),
        })
    }
}

impl Layer for Lrn {
    fn type_name(&self) -> &'static str {
        "LRN"
    }

    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }

    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        if shape.len() != 4 {
            return Err(layer_err!(
                "input must have 4 axes (num, channels, height, width), got {shape:?}"
            ));
        }
        self.dims = [shape[0], shape[1], shape[2], shape[3]];
        io.top_mut(0).reshape(&shape)?;
        let n: usize = shape.iter().product();
        if self.scale.len() < n {
            self.scale = cx.be.alloc(n);
        }
        if self.within && self.avg.len() < n {
            self.avg = cx.be.alloc(n);
        }
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let [n, c, h, w] = self.dims;
        let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
        if self.within {
            cx.be.lrn_within_forward(
                &self.params,
                n * c,
                h,
                w,
                x.data.view(),
                self.avg.view_mut(),
                self.scale.view_mut(),
                y.data.view_mut(),
            );
        } else {
            cx.be.lrn_across_forward(
                &self.params,
                n,
                c,
                h * w,
                x.data.view(),
                self.scale.view_mut(),
                y.data.view_mut(),
            );
        }
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down.first().copied().unwrap_or(false) {
            return Ok(());
        }
        let [n, c, h, w] = self.dims;
        let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        // The bottom's data and diff are distinct buffers of one blob.
        let (xd, dx) = (&x.data, &mut x.diff);
        if self.within {
            cx.be.lrn_within_backward(
                &self.params,
                n * c,
                h,
                w,
                xd.view(),
                self.avg.view(),
                self.scale.view(),
                y.diff.view(),
                dx.view_mut(),
            );
        } else {
            cx.be.lrn_across_backward(
                &self.params,
                n,
                c,
                h * w,
                xd.view(),
                y.data.view(),
                self.scale.view(),
                y.diff.view(),
                dx.view_mut(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn golden_cases_match_caffe() {
        check_golden("lrn_across_channels");
        check_golden("lrn_within_channel");
    }

    #[test]
    fn across_channel_gradients() {
        check_gradients(
            "type: 'LRN' lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 1.5 }",
            &[&[2, 7, 3, 3]],
        );
        // Window wider than the channel count; batch of 1; large plane
        // (several pixel blocks in backward).
        check_gradients(
            "type: 'LRN' lrn_param { local_size: 7 alpha: 1.0 beta: 0.6 }",
            &[&[1, 3, 5, 7]],
        );
    }

    #[test]
    fn within_channel_gradients() {
        check_gradients(
            "type: 'LRN' lrn_param { local_size: 3 alpha: 0.8 beta: 0.75 norm_region: WITHIN_CHANNEL }",
            &[&[2, 2, 5, 4]],
        );
        check_gradients(
            "type: 'LRN' lrn_param { local_size: 5 alpha: 2.0 beta: 0.5 norm_region: WITHIN_CHANNEL }",
            &[&[1, 1, 3, 6]],
        );
    }

    #[test]
    fn even_local_size_and_wrong_rank_are_rejected() {
        let err = try_setup("type: 'LRN' lrn_param { local_size: 4 }", &[&[1, 3, 2, 2]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("odd"), "{err}");
        let err = try_setup("type: 'LRN'", &[&[3, 2, 2]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("4 axes"), "{err}");
    }
}
