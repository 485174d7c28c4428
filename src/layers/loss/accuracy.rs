//! Accuracy: the fraction of (non-ignored) positions whose true class is
//! among the `top_k` highest scores, with an optional per-class top.
//! Forward only, computed by the backend (`SoftmaxOps::accuracy`), which
//! writes both tops where they live.
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;

use super::softmax::split_dims;

#[derive(Debug)]
pub struct Accuracy {
    top_k: usize,
    axis: i32,
    ignore_label: Option<i32>,
    dims: (usize, usize, usize),
}

impl Accuracy {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.accuracy_param.unwrap_or_default();
        Ok(Accuracy {
            top_k: p.top_k() as usize,
            axis: p.axis(),
            ignore_label: p.ignore_label,
            dims: (0, 0, 0),
        })
    }
}

impl Layer for Accuracy {
    fn type_name(&self) -> &'static str {
        "Accuracy"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(2),
            max_bottoms: Some(2),
            min_tops: Some(1),
            max_tops: Some(2),
            equal_bottom_top: false,
        }
    }
    // Caffe aborts if Accuracy is ever asked for a gradient; refusing forced
    // backward keeps `force_backward` nets with an Accuracy layer usable.
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        false
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let labels = io.bottom(1).count();
        if labels == 0 || self.top_k > io.bottom(0).count() / labels {
            return Err(layer_err!(
                "top_k ({}) must be less than or equal to the number of classes",
                self.top_k
            ));
        }
        self.dims = split_dims(&shape, self.axis)?;
        let (outer, ch, inner) = self.dims;
        if outer * inner != labels {
            return Err(layer_err!(
                "number of labels must match number of predictions; e.g., if label axis == 1 \
                 and prediction shape is (N, C, H, W), label count (number of labels) must be \
                 N*H*W, with integer values in {{0, 1, ..., C-1}} (prediction {}, label {})",
                io.bottom(0).shape_string(),
                io.bottom(1).shape_string()
            ));
        }
        io.top_mut(0).reshape(&[])?;
        if io.n_tops() > 1 {
            io.top_mut(1).reshape(&[ch])?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (outer, ch, inner) = self.dims;
        let (top_k, ignore) = (self.top_k, self.ignore_label);
        if io.n_tops() > 1 {
            let ([score, label], [acc, per_class]) =
                io.split([Slot::B(0), Slot::B(1)], [Slot::T(0), Slot::T(1)])?;
            cx.be.accuracy(
                outer,
                ch,
                inner,
                top_k,
                ignore,
                score.data.view(),
                label.data.view(),
                acc.data.view_mut(),
                Some(per_class.data.view_mut()),
            )
        } else {
            let ([score, label], [acc]) = io.split([Slot::B(0), Slot::B(1)], [Slot::T(0)])?;
            cx.be.accuracy(
                outer,
                ch,
                inner,
                top_k,
                ignore,
                score.data.view(),
                label.data.view(),
                acc.data.view_mut(),
                None,
            )
        }
    }
    fn backward(&mut self, _cx: &mut Ctx, _io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down.iter().any(|&p| p) {
            return Err(layer_err!(
                "Accuracy has no gradient (backward is not defined for it)"
            ));
        }
        Ok(())
    }
}
