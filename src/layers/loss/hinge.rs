//! HingeLoss: one-vs-all hinge on scores `(N, C...)` with one integer label
//! per item: `v = max(0, 1 + s·x)` (s = −1 at the label, +1 elsewhere),
//! loss `Σv / N` (L1) or `Σv² / N` (L2).
use crate::backend::Buffer;
use crate::error::Result;
use crate::layer_err;
use crate::layers::shape::host_indices;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::hinge_loss_parameter::Norm;
use crate::proto::caffe::LayerParameter;

#[derive(Debug)]
pub struct HingeLoss {
    l2: bool,
    /// The margins of the last forward (Caffe keeps them in bottom 0's diff).
    v: Buffer,
    labels: Vec<usize>,
    dim: usize,
}

impl HingeLoss {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let norm = lp.hinge_loss_param.unwrap_or_default().norm();
        Ok(HingeLoss {
            l2: norm == Norm::L2,
            v: Buffer::default(),
            labels: Vec::new(),
            dim: 0,
        })
    }
}

impl Layer for HingeLoss {
    fn type_name(&self) -> &'static str {
        "HingeLoss"
    }
    fn arity(&self) -> Arity {
        Arity::exact(2, 1)
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (x, l) = (io.bottom(0), io.bottom(1));
        let num = x.legacy_dim(0);
        if x.shape().first() != l.shape().first() || l.count() != num || num == 0 {
            return Err(layer_err!(
                "needs one label per item: scores {}, labels {}",
                x.shape_string(),
                l.shape_string()
            ));
        }
        self.dim = x.count() / num;
        let n = x.count();
        if self.v.len() < n {
            self.v = cx.be.alloc(n);
        }
        io.top_mut(0).reshape(&[])
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        self.labels = host_indices(&io.bottom(1).data_vec(), self.dim, "label")?;
        let n = self.labels.len() * self.dim;
        cx.be.hinge_margins(
            self.dim,
            &self.labels,
            io.bottom(0).data.view(),
            self.v.view_mut(),
        );
        let sum = if self.l2 {
            cx.be.dot(n, self.v.view(), self.v.view())
        } else {
            cx.be.asum(n, self.v.view())
        };
        let num = self.labels.len() as f32;
        io.top_mut(0).set_data(&[sum / num])
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(layer_err!("cannot backpropagate to label inputs"));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let ([top], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        let scale = top.diff.read(1)[0] / self.labels.len() as f32;
        cx.be.hinge_grad(
            self.dim,
            &self.labels,
            self.l2,
            scale,
            self.v.view(),
            x.diff.view_mut(),
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

    fn oracle(x: &[f32], labels: &[f32], dim: usize, l2: bool) -> f64 {
        let mut s = 0.0;
        for (i, &l) in labels.iter().enumerate() {
            for j in 0..dim {
                let sign = if j == l as usize { -1.0 } else { 1.0 };
                let v = (1.0 + sign * x[i * dim + j] as f64).max(0.0);
                s += if l2 { v * v } else { v };
            }
        }
        s / labels.len() as f64
    }

    #[test]
    fn forward_l1_l2() {
        let x = gaussian_blob(&[5, 4], 1.0, 9);
        let labels = vec![0.0, 3.0, 1.0, 2.0, 3.0];
        for (norm, l2) in [("L1", false), ("L2", true)] {
            let mut l = layer_from_text(&format!(
                r#"type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}"#
            ))
            .unwrap();
            let mut arena = vec![
                x.clone(),
                Blob::from_host(&[5], labels.clone()),
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
            let want = oracle(&x.data_vec(), &labels, 4, l2);
            assert!(
                (arena[2].data_vec()[0] as f64 - want).abs() < 1e-5,
                "{norm}"
            );
        }
    }

    #[test]
    fn gradient() {
        for (norm, shape) in [
            ("L1", &[5, 4][..]),
            ("L2", &[5, 4][..]),
            ("L1", &[1, 3][..]),
            ("L2", &[1, 3, 2][..]),
        ] {
            let n = shape[0];
            let labels: Vec<f32> = (0..n).map(|i| (i % 3) as f32).collect();
            let mut arena = vec![
                gaussian_blob(shape, 1.0, 11),
                Blob::from_host(&[n], labels),
                Blob::default(),
            ];
            let mut l = layer_from_text(&format!(
                r#"type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}"#
            ))
            .unwrap();
            // The hinge has kinks at s·x = −1 (Caffe's test uses kink 1, range 0.01).
            GradientChecker::new(1e-2, 1e-2)
                .kink(1.0, 0.02)
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
        }
    }

    #[test]
    fn label_out_of_range() {
        let mut l = layer_from_text(r#"type: "HingeLoss""#).unwrap();
        let mut arena = vec![
            gaussian_blob(&[2, 3], 1.0, 1),
            Blob::from_host(&[2], vec![0.0, 3.0]),
            Blob::default(),
        ];
        let err = run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut arena,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("label 1 is 3"), "{err}");
    }
}
