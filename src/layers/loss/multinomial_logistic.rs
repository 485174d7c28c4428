//! MultinomialLogisticLoss: `−Σ log(max(p[label], 1e−20)) / N` on
//! probabilities (not scores) with one integer label per item.
use crate::error::Result;
use crate::layer_err;
use crate::layers::shape::host_indices;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;

#[derive(Debug)]
pub struct MultinomialLogisticLoss {
    labels: Vec<usize>,
    dim: usize,
}

impl MultinomialLogisticLoss {
    pub fn new(_lp: &LayerParameter) -> Result<Self> {
        Ok(MultinomialLogisticLoss {
            labels: Vec::new(),
            dim: 0,
        })
    }
}

impl Layer for MultinomialLogisticLoss {
    fn type_name(&self) -> &'static str {
        "MultinomialLogisticLoss"
    }
    fn arity(&self) -> Arity {
        Arity::exact(2, 1)
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 1
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (p, l) = (io.bottom(0), io.bottom(1));
        let num = p.legacy_dim(0);
        // Caffe checks the label's legacy channels/height/width are 1.
        let legacy_ok = l.num_axes() <= 4 && (1..4).all(|i| l.legacy_dim(i) == 1);
        if p.shape().first() != l.shape().first() || !legacy_ok || num == 0 {
            return Err(layer_err!(
                "needs one label per item (label shape (N), or (N,1,1,1)): probabilities {}, labels {}",
                p.shape_string(),
                l.shape_string()
            ));
        }
        self.dim = p.count() / num;
        io.top_mut(0).reshape(&[])
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        self.labels = host_indices(&io.bottom(1).data_vec(), self.dim, "label")?;
        let loss =
            cx.be
                .multinomial_logistic_loss(self.dim, &self.labels, io.bottom(0).data.view());
        let num = self.labels.len() as f32;
        io.top_mut(0).set_data(&[loss / num])
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(layer_err!("cannot backpropagate to label inputs"));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let ([top], [p]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        let scale = -top.diff.read(1)[0] / self.labels.len() as f32;
        let (data, diff) = (&p.data, &mut p.diff);
        cx.be.multinomial_logistic_grad(
            self.dim,
            &self.labels,
            scale,
            data.view(),
            diff.view_mut(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::caffe::Phase;
    use crate::tensor::Blob;
    use crate::testing::gradient::{cpu_ctx, layer_from_text, run_forward, GradientChecker};

    /// Positive "probabilities" away from the 1e-20 clamp.
    fn probs(n: usize, dim: usize) -> Blob {
        let v = (0..n * dim)
            .map(|i| 0.1 + 0.8 * ((i * 37 % 11) as f32 / 11.0))
            .collect();
        Blob::from_host(&[n, dim], v)
    }

    #[test]
    fn forward_and_clamp() {
        let mut p = probs(3, 4);
        let mut v = p.data_vec();
        v[4 + 2] = 0.0; // item 1's label probability is 0: clamped at 1e-20
        p.set_data(&v).unwrap();
        let labels = vec![1.0, 2.0, 3.0];
        let want = -((v[1] as f64).ln() + (1e-20f32 as f64).ln() + (v[11] as f64).ln()) / 3.0;
        let mut l = layer_from_text(r#"type: "MultinomialLogisticLoss""#).unwrap();
        let mut arena = vec![p, Blob::from_host(&[3, 1, 1, 1], labels), Blob::default()];
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
        assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
    }

    #[test]
    fn gradient() {
        for (n, dim) in [(5, 4), (1, 3)] {
            let labels = (0..n).map(|i| (i % dim) as f32).collect();
            let mut arena = vec![
                probs(n, dim),
                Blob::from_host(&[n], labels),
                Blob::default(),
            ];
            let mut l = layer_from_text(r#"type: "MultinomialLogisticLoss""#).unwrap();
            GradientChecker::new(1e-3, 2e-2)
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
    fn bad_label_shape() {
        let mut l = layer_from_text(r#"type: "MultinomialLogisticLoss""#).unwrap();
        let mut arena = vec![
            probs(2, 3),
            Blob::from_host(&[2, 3], vec![0.0; 6]),
            Blob::default(),
        ];
        assert!(run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut arena,
            &[0, 1],
            &[2],
            &[]
        )
        .is_err());
    }
}
