//! ContrastiveLoss (Siamese): for pairs `a`, `b` of shape (N, C, 1, 1) and a
//! similarity flag `y` (N, 1, 1, 1): `d² = ‖a − b‖²`; similar pairs add d²,
//! dissimilar ones `max(margin − d, 0)²` (`legacy_version`:
//! `max(margin − d², 0)`); the loss is the sum over 2N.
use crate::backend::{Binary, Buffer};
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;

#[derive(Debug)]
pub struct ContrastiveLoss {
    margin: f32,
    legacy: bool,
    /// `a − b` and per-pair `d²` of the last forward.
    diff: Buffer,
    dist_sq: Buffer,
    similar: Vec<bool>,
    channels: usize,
}

impl ContrastiveLoss {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.contrastive_loss_param.unwrap_or_default();
        Ok(ContrastiveLoss {
            margin: p.margin(),
            legacy: p.legacy_version(),
            diff: Buffer::default(),
            dist_sq: Buffer::default(),
            similar: Vec::new(),
            channels: 0,
        })
    }
}

impl Layer for ContrastiveLoss {
    fn type_name(&self) -> &'static str {
        "ContrastiveLoss"
    }
    fn arity(&self) -> Arity {
        Arity::exact(3, 1)
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 2
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (a, b, y) = (io.bottom(0), io.bottom(1), io.bottom(2));
        // Caffe's legacy-accessor checks: (N, C, 1, 1) pairs, (N, 1, 1, 1) flags.
        let legacy = |x: &crate::tensor::Blob, from: usize| {
            x.num_axes() <= 4 && (from..4).all(|i| x.legacy_dim(i) == 1)
        };
        let num = a.legacy_dim(0);
        if !legacy(a, 2)
            || !legacy(b, 2)
            || !legacy(y, 1)
            || a.legacy_dim(1) != b.legacy_dim(1)
            || b.legacy_dim(0) != num
            || y.count() != num
        {
            return Err(layer_err!(
                "needs pairs of shape (N, C, 1, 1) and similarity flags of shape (N, 1, 1, 1): \
                 got {}, {} and {}",
                a.shape_string(),
                b.shape_string(),
                y.shape_string()
            ));
        }
        self.channels = a.legacy_dim(1);
        let n = a.count();
        if self.diff.len() < n {
            self.diff = cx.be.alloc(n);
        }
        if self.dist_sq.len() < num {
            self.dist_sq = cx.be.alloc(num);
        }
        io.top_mut(0).reshape(&[])
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        // Caffe tests `static_cast<int>(y) != 0`.
        self.similar = io
            .bottom(2)
            .data_vec()
            .iter()
            .map(|&v| v as i32 != 0)
            .collect();
        let n = io.bottom(0).count();
        cx.be.binary(
            Binary::Sub,
            n,
            io.bottom(0).data.view(),
            io.bottom(1).data.view(),
            self.diff.view_mut(),
        );
        let sum = cx.be.contrastive_loss(
            self.channels,
            &self.similar,
            self.margin,
            self.legacy,
            self.diff.view(),
            self.dist_sq.view_mut(),
        );
        let num = self.similar.len() as f32;
        io.top_mut(0).set_data(&[sum / num / 2.0])
    }
    /// Bottom 2 (the flags) gets no gradient, as in Caffe.
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        for (i, sign) in [(0, 1.0f32), (1, -1.0)] {
            if !propagate_down[i] {
                continue;
            }
            let ([top], [x]) = io.split([Slot::T(0)], [Slot::B(i)])?;
            let alpha = sign * top.diff.read(1)[0] / x.legacy_dim(0) as f32;
            cx.be.contrastive_grad(
                self.channels,
                &self.similar,
                self.margin,
                self.legacy,
                alpha,
                self.diff.view(),
                self.dist_sq.view(),
                x.diff.view_mut(),
            );
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

    fn flags(n: usize) -> Blob {
        Blob::from_host(&[n, 1, 1, 1], (0..n).map(|i| (i % 2) as f32).collect())
    }

    fn oracle(a: &[f32], b: &[f32], y: &[f32], ch: usize, margin: f64, legacy: bool) -> f64 {
        let n = y.len();
        let mut loss = 0.0;
        for i in 0..n {
            let d2: f64 = (0..ch)
                .map(|j| (a[i * ch + j] as f64 - b[i * ch + j] as f64).powi(2))
                .sum();
            loss += if y[i] != 0.0 {
                d2
            } else if legacy {
                (margin - d2).max(0.0)
            } else {
                (margin - d2.sqrt()).max(0.0).powi(2)
            };
        }
        loss / n as f64 / 2.0
    }

    #[test]
    fn forward_both_versions() {
        let a = gaussian_blob(&[6, 3, 1, 1], 0.6, 1);
        let b = gaussian_blob(&[6, 3, 1, 1], 0.6, 2);
        let y = flags(6);
        for legacy in [false, true] {
            let mut l = layer_from_text(&format!(
                r#"type: "ContrastiveLoss" contrastive_loss_param {{ margin: 1.5 legacy_version: {legacy} }}"#
            ))
            .unwrap();
            let mut arena = vec![a.clone(), b.clone(), y.clone(), Blob::default()];
            run_forward(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut arena,
                &[0, 1, 2],
                &[3],
                &[],
            )
            .unwrap();
            let want = oracle(&a.data_vec(), &b.data_vec(), &y.data_vec(), 3, 1.5, legacy);
            assert!(
                (arena[3].data_vec()[0] as f64 - want).abs() < 1e-5,
                "legacy {legacy}"
            );
        }
    }

    #[test]
    fn gradient() {
        for (legacy, n) in [(false, 6), (true, 6), (false, 1), (true, 1)] {
            let mut arena = vec![
                gaussian_blob(&[n, 3], 0.6, 3),
                gaussian_blob(&[n, 3], 0.6, 4),
                flags(n),
                Blob::default(),
            ];
            let mut l = layer_from_text(&format!(
                r#"type: "ContrastiveLoss" contrastive_loss_param {{ margin: 1.5 legacy_version: {legacy} }}"#
            ))
            .unwrap();
            GradientChecker::new(1e-2, 1e-2)
                .check_bottoms(&[0, 1])
                .check_layer(
                    l.as_mut(),
                    &mut cpu_ctx(Phase::Train),
                    &mut arena,
                    &[0, 1, 2],
                    &[3],
                    &[],
                )
                .unwrap();
        }
    }
}
