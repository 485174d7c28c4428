//! SigmoidCrossEntropyLoss: the logistic loss of logits `x` against targets
//! `t` in [0, 1], `Σ max(x,0) − x·t + log(1 + e^(−|x|))` (Caffe's stable
//! form), skipping targets equal to `ignore_label`, normalized by
//! `loss_param` (default BATCH_SIZE, Caffe's historical choice).
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::LayerParameter;

use super::softmax_loss::{normalization_mode, normalizer};

#[derive(Debug)]
pub struct SigmoidCrossEntropyLoss {
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    /// Per element: counted in the loss (empty when nothing is ignored).
    keep: Vec<bool>,
    /// The normalizer of the last forward (backward reuses it, as Caffe).
    z: f32,
}

impl SigmoidCrossEntropyLoss {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        Ok(SigmoidCrossEntropyLoss {
            ignore_label: lp.loss_param.as_ref().and_then(|p| p.ignore_label),
            normalization: normalization_mode(lp, NormalizationMode::BatchSize),
            keep: Vec::new(),
            z: 1.0,
        })
    }

    /// Which targets count (`int(t) != ignore_label`); empty if none ignored.
    fn keep_mask(&self, targets: &[f32]) -> Vec<bool> {
        match self.ignore_label {
            Some(ig) => targets.iter().map(|&t| t as i32 != ig).collect(),
            None => Vec::new(),
        }
    }
}

impl Layer for SigmoidCrossEntropyLoss {
    fn type_name(&self) -> &'static str {
        "SigmoidCrossEntropyLoss"
    }
    fn arity(&self) -> Arity {
        Arity::exact(2, 1)
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (x, t) = (io.bottom(0), io.bottom(1));
        if x.shape().first() != t.shape().first() {
            return Err(layer_err!(
                "the data and label should have the same first dimension ({} vs {})",
                x.shape_string(),
                t.shape_string()
            ));
        }
        if x.count() != t.count() {
            return Err(layer_err!(
                "inputs must have the same count ({} vs {})",
                x.shape_string(),
                t.shape_string()
            ));
        }
        io.top_mut(0).reshape(&[])
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (x, t) = (io.bottom(0), io.bottom(1));
        let n = x.count();
        let outer = x.legacy_dim(0);
        self.keep = if self.ignore_label.is_some() {
            self.keep_mask(&t.data_vec())
        } else {
            Vec::new()
        };
        let valid = if self.keep.is_empty() {
            n
        } else {
            self.keep.iter().filter(|&&k| k).count()
        };
        let loss = cx
            .be
            .sigmoid_ce_loss(n, x.data.view(), t.data.view(), &self.keep);
        self.z = normalizer(self.normalization, outer, n / outer.max(1), Some(valid));
        io.top_mut(0).set_data(&[loss / self.z])
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(layer_err!("cannot backpropagate to label inputs"));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let ([t, top], [x]) = io.split([Slot::B(1), Slot::T(0)], [Slot::B(0)])?;
        let scale = top.diff.read(1)[0] / self.z;
        let n = x.count();
        let (data, diff) = (&x.data, &mut x.diff);
        cx.be.sigmoid_ce_grad(
            n,
            data.view(),
            t.data.view(),
            &self.keep,
            scale,
            diff.view_mut(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::caffe::Phase;
    use crate::tensor::Blob;
    use crate::testing::gradient::{
        cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
    };

    fn targets(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 + 3) % 5 < 2) as i32 as f32)
            .collect()
    }

    fn oracle(x: &[f32], t: &[f32], ignore: Option<f32>) -> (f64, usize) {
        let mut loss = 0.0;
        let mut valid = 0;
        for (&x, &t) in x.iter().zip(t) {
            if Some(t) == ignore {
                continue;
            }
            let p = 1.0 / (1.0 + (-(x as f64)).exp());
            loss -= t as f64 * p.ln() + (1.0 - t as f64) * (1.0 - p).ln();
            valid += 1;
        }
        (loss, valid)
    }

    #[test]
    fn forward_modes_and_ignore() {
        let x = gaussian_blob(&[4, 3], 2.0, 5);
        let mut t = targets(12);
        t[2] = -1.0;
        t[7] = -1.0;
        let xs = x.data_vec();
        let (sum_all, _) = oracle(
            &xs,
            &t.iter().map(|&v| v.max(0.0)).collect::<Vec<_>>(),
            None,
        );
        let (sum_kept, valid) = oracle(&xs, &t, Some(-1.0));
        assert_eq!(valid, 10);
        for (param, want) in [
            ("", sum_all / 4.0),
            ("loss_param { ignore_label: -1 }", sum_kept / 4.0),
            (
                "loss_param { ignore_label: -1 normalization: VALID }",
                sum_kept / 10.0,
            ),
            (
                "loss_param { ignore_label: -1 normalize: true }",
                sum_kept / 10.0,
            ),
            (
                "loss_param { ignore_label: -1 normalization: FULL }",
                sum_kept / 12.0,
            ),
            (
                "loss_param { ignore_label: -1 normalization: NONE }",
                sum_kept,
            ),
        ] {
            let targets: Vec<f32> = if param.is_empty() {
                t.iter().map(|&v| v.max(0.0)).collect()
            } else {
                t.clone()
            };
            let mut l =
                layer_from_text(&format!(r#"type: "SigmoidCrossEntropyLoss" {param}"#)).unwrap();
            let mut arena = vec![
                x.clone(),
                Blob::from_host(&[4, 3], targets),
                Blob::default(),
            ];
            run_forward(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut arena,
                &[0, 1],
                &[2],
                &[],
            )
            .unwrap();
            let got = arena[2].data_vec()[0] as f64;
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "{param}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn gradient() {
        for (shape, param) in [
            (&[4, 3][..], ""),
            (&[1, 5][..], ""),
            (
                &[3, 4][..],
                "loss_param { ignore_label: -1 normalization: VALID }",
            ),
        ] {
            let n: usize = shape.iter().product();
            let mut t = targets(n);
            t[1] = -1.0;
            if param.is_empty() {
                t[1] = 0.0;
            }
            let mut arena = vec![
                gaussian_blob(shape, 2.0, 6),
                Blob::from_host(shape, t),
                Blob::default(),
            ];
            let mut l =
                layer_from_text(&format!(r#"type: "SigmoidCrossEntropyLoss" {param}"#)).unwrap();
            GradientChecker::new(1e-2, 1e-2)
                .check_bottoms(&[0])
                .check_layer(
                    l.as_mut(),
                    &mut cpu_ctx(Phase::Train),
                    &mut arena,
                    &[0, 1],
                    &[2],
                    &[],
                )
                .unwrap();
            if !param.is_empty() {
                // Ignored elements get no gradient.
                assert_eq!(arena[0].diff_vec()[1], 0.0);
            }
        }
    }
}
