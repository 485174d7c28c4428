//! SoftmaxWithLoss: softmax along `axis`, then the multinomial negative
//! log-likelihood of the labels, normalized as `loss_param` says.
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::LayerParameter;
use crate::tensor::Blob;

use super::softmax::split_dims;

#[derive(Debug)]
pub struct SoftmaxWithLoss {
    axis: i32,
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    /// The probabilities (Caffe's prob_), kept for backward.
    prob: Option<Blob>,
    dims: (usize, usize, usize),
}

/// Caffe's loss normalization mode: an explicit `normalization` wins; else
/// the legacy `normalize` (true → VALID, false → BATCH_SIZE); else VALID.
pub(crate) fn normalization_mode(
    lp: &LayerParameter,
    legacy_default: NormalizationMode,
) -> NormalizationMode {
    match lp.loss_param.as_ref() {
        Some(p) if p.normalization.is_some() => p.normalization(),
        Some(p) if p.normalize.is_some() => {
            if p.normalize() {
                NormalizationMode::Valid
            } else {
                NormalizationMode::BatchSize
            }
        }
        _ => legacy_default,
    }
}

/// Caffe's LossLayer::GetNormalizer: `max(1, n)`.
pub(crate) fn normalizer(
    mode: NormalizationMode,
    outer: usize,
    inner: usize,
    valid: Option<usize>,
) -> f32 {
    let n = match mode {
        NormalizationMode::Full => (outer * inner) as f32,
        NormalizationMode::Valid => valid.unwrap_or(outer * inner) as f32,
        NormalizationMode::BatchSize => outer as f32,
        NormalizationMode::None => 1.0,
    };
    n.max(1.0)
}

impl SoftmaxWithLoss {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        Ok(SoftmaxWithLoss {
            axis: lp.softmax_param.as_ref().map_or(1, |p| p.axis()),
            ignore_label: lp.loss_param.as_ref().and_then(|p| p.ignore_label),
            normalization: normalization_mode(lp, NormalizationMode::Valid),
            prob: None,
            dims: (0, 0, 0),
        })
    }
}

impl Layer for SoftmaxWithLoss {
    fn type_name(&self) -> &'static str {
        "SoftmaxWithLoss"
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
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let labels = io.bottom(1);
        if shape.first() != labels.shape().first() {
            return Err(layer_err!(
                "the data and label should have the same first dimension (data {}, label {})",
                io.bottom(0).shape_string(),
                labels.shape_string()
            ));
        }
        self.dims = split_dims(&shape, self.axis)?;
        let (outer, _, inner) = self.dims;
        if outer * inner != labels.count() {
            return Err(layer_err!(
                "number of labels must match number of predictions; e.g., if softmax axis == 1 \
                 and prediction shape is (N, C, H, W), label count (number of labels) must be \
                 N*H*W, with integer values in {{0, 1, ..., C-1}} (prediction {}, label {})",
                io.bottom(0).shape_string(),
                labels.shape_string()
            ));
        }
        io.top_mut(0).reshape(&[])?;
        if io.n_tops() > 1 {
            io.top_mut(1).reshape(&shape)?;
        }
        match &mut self.prob {
            Some(p) => p.reshape(&shape)?,
            None => self.prob = Some(Blob::new(&*cx.be, &shape)),
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (outer, ch, inner) = self.dims;
        let prob = self
            .prob
            .as_mut()
            .ok_or_else(|| layer_err!("forward before reshape"))?;
        let n = prob.count();
        cx.be
            .copy(n, io.bottom(0).data.view(), prob.data.view_mut());
        cx.be
            .softmax_forward(outer, ch, inner, prob.data.view_mut());
        let (loss, valid) = cx.be.softmax_loss_forward(
            outer,
            ch,
            inner,
            prob.data.view(),
            io.bottom(1).data.view(),
            self.ignore_label,
        )?;
        let z = normalizer(self.normalization, outer, inner, Some(valid));
        io.top_mut(0).set_data(&[loss / z])?;
        if io.n_tops() > 1 {
            cx.be
                .copy(n, prob.data.view(), io.top_mut(1).data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down.get(1) == Some(&true) {
            return Err(layer_err!("cannot backpropagate to label inputs"));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let (outer, ch, inner) = self.dims;
        let prob = self
            .prob
            .as_ref()
            .ok_or_else(|| layer_err!("backward before forward"))?;
        let ([label, top], [x]) = io.split([Slot::B(1), Slot::T(0)], [Slot::B(0)])?;
        let valid = cx.be.softmax_loss_backward(
            outer,
            ch,
            inner,
            prob.data.view(),
            label.data.view(),
            self.ignore_label,
            x.diff.view_mut(),
        )?;
        // The loss weight lives in the top's diff (one value).
        let lw = top.diff.read(1)[0] / normalizer(self.normalization, outer, inner, Some(valid));
        cx.be.scal(prob.count(), lw, x.diff.view_mut());
        Ok(())
    }
}
