//! EuclideanLoss: `Σ(a − b)² / 2N` (N = shape(0)); both bottoms get
//! gradients (b the negated one).
use crate::backend::{Binary, Buffer};
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;

#[derive(Debug)]
pub struct EuclideanLoss {
    /// `a − b` from the last forward (Caffe's diff_).
    diff: Buffer,
    count: usize,
}

impl EuclideanLoss {
    pub fn new(_lp: &LayerParameter) -> Result<Self> {
        Ok(EuclideanLoss {
            diff: Buffer::default(),
            count: 0,
        })
    }
}

impl Layer for EuclideanLoss {
    fn type_name(&self) -> &'static str {
        "EuclideanLoss"
    }
    fn arity(&self) -> Arity {
        Arity::exact(2, 1)
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (a, b) = (io.bottom(0), io.bottom(1));
        if a.shape().first() != b.shape().first() {
            return Err(layer_err!(
                "the data and label should have the same first dimension ({} vs {})",
                a.shape_string(),
                b.shape_string()
            ));
        }
        if a.count() != b.count() {
            return Err(layer_err!(
                "inputs must have the same dimension ({} vs {})",
                a.shape_string(),
                b.shape_string()
            ));
        }
        let n = a.count();
        if self.diff.len() < n {
            self.diff = cx.be.alloc(n);
        }
        self.count = n;
        io.top_mut(0).reshape(&[])
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let n = self.count;
        let num = io.bottom(0).legacy_dim(0) as f32;
        cx.be.binary(
            Binary::Sub,
            n,
            io.bottom(0).data.view(),
            io.bottom(1).data.view(),
            self.diff.view_mut(),
        );
        let dot = cx.be.dot(n, self.diff.view(), self.diff.view());
        io.top_mut(0).set_data(&[dot / num / 2.0])
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        for (i, sign) in [(0, 1.0f32), (1, -1.0)] {
            if !propagate_down[i] {
                continue;
            }
            let ([top], [x]) = io.split([Slot::T(0)], [Slot::B(i)])?;
            let alpha = sign * top.diff.read(1)[0] / x.legacy_dim(0) as f32;
            cx.be.copy(self.count, self.diff.view(), x.diff.view_mut());
            cx.be.scal(self.count, alpha, x.diff.view_mut());
        }
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

    #[test]
    fn forward_matches_formula() {
        let a = gaussian_blob(&[3, 2], 1.0, 1);
        let b = gaussian_blob(&[3, 2], 1.0, 2);
        let want: f64 = a
            .data_vec()
            .iter()
            .zip(b.data_vec())
            .map(|(&x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            / 6.0;
        let mut l = layer_from_text(r#"type: "EuclideanLoss""#).unwrap();
        let mut arena = vec![a, b, Blob::default()];
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut arena,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
        assert!(arena[2].shape().is_empty());
        assert!((arena[2].data_vec()[0] as f64 - want).abs() < 1e-5);
    }

    #[test]
    fn gradient() {
        for shape in [&[4, 3][..], &[1, 5][..], &[2, 3, 2][..]] {
            let mut arena = vec![
                gaussian_blob(shape, 1.0, 3),
                gaussian_blob(shape, 1.0, 4),
                Blob::default(),
            ];
            let mut l = layer_from_text(r#"type: "EuclideanLoss""#).unwrap();
            GradientChecker::new(1e-2, 1e-2)
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
    fn mismatched_counts_are_rejected() {
        let mut l = layer_from_text(r#"type: "EuclideanLoss""#).unwrap();
        let mut arena = vec![
            gaussian_blob(&[2, 3], 1.0, 1),
            gaussian_blob(&[2, 4], 1.0, 2),
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
        assert!(err.contains("same dimension"), "{err}");
    }
}
