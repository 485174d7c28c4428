//! InfogainLoss (BVLC master): softmax of the scores along `axis`, then
//! `−Σ_l H[label, l]·log(max(p_l, 1e−20))` per column, normalized by
//! `loss_param.normalization` (default VALID). H (C×C) is the third bottom
//! or the BlobProto file `infogain_loss_param.source`, read at setup.
use std::path::Path;

use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::binary::read_blob_proto;
use crate::proto::caffe::loss_parameter::NormalizationMode;
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;
use crate::tensor::Blob;

use super::softmax_loss::normalizer;

#[derive(Debug)]
pub struct InfogainLoss {
    axis: i32,
    source: Option<String>,
    ignore_label: Option<i32>,
    normalization: NormalizationMode,
    /// H read from `source` (when there is no third bottom).
    h: Option<Blob>,
    /// The probabilities (Caffe's prob_).
    prob: Option<Blob>,
    /// `(outer, channels, inner)` of the scores.
    dims: (usize, usize, usize),
    /// Per column: its label, `None` when ignored.
    labels: Vec<Option<usize>>,
    z: f32,
}

impl InfogainLoss {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let lossp = lp.loss_param.unwrap_or_default();
        if lossp.normalize.is_some() {
            return Err(layer_err!(
                "loss_param.normalize is deprecated for InfogainLoss; use loss_param.normalization"
            ));
        }
        let p = lp.infogain_loss_param.clone().unwrap_or_default();
        Ok(InfogainLoss {
            axis: p.axis(),
            source: p.source.clone(),
            ignore_label: lossp.ignore_label,
            normalization: lossp.normalization(),
            h: None,
            prob: None,
            dims: (0, 0, 0),
            labels: Vec::new(),
            z: 1.0,
        })
    }
}

impl Layer for InfogainLoss {
    fn type_name(&self) -> &'static str {
        "InfogainLoss"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(2),
            max_bottoms: Some(3),
            min_tops: Some(1),
            max_tops: Some(2),
            equal_bottom_top: false,
        }
    }
    fn allow_force_backward(&self, bottom: usize) -> bool {
        // Caffe's LossLayer rule; H (bottom 2) is allowed, and backward then
        // refuses it, as Caffe does.
        bottom != 1
    }
    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        if io.n_bottoms() < 3 {
            let src = self.source.as_ref().ok_or_else(|| {
                layer_err!(
                    "infogain matrix source must be specified (infogain_loss_param.source) \
                     when there is no third bottom"
                )
            })?;
            let proto = read_blob_proto(Path::new(src))?;
            self.h = Some(Blob::from_proto(cx.be.as_ref(), &proto)?);
        }
        Ok(Vec::new())
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let labels = io.bottom(1);
        if shape.first() != labels.shape().first() {
            return Err(layer_err!(
                "the data and label should have the same first dimension ({} vs {})",
                io.bottom(0).shape_string(),
                labels.shape_string()
            ));
        }
        let axis = canonical_axis(self.axis, shape.len())?;
        let (outer, ch, inner) = (
            shape[..axis].iter().product::<usize>(),
            shape[axis],
            shape[axis + 1..].iter().product::<usize>(),
        );
        if outer * inner != labels.count() {
            return Err(layer_err!(
                "number of labels must match number of predictions; e.g., if infogain axis == 1 \
                 and prediction shape is (N, C, H, W), label count (number of labels) must be \
                 N*H*W, with integer values in {{0, 1, ..., C-1}} (prediction {}, label {})",
                io.bottom(0).shape_string(),
                labels.shape_string()
            ));
        }
        let h_count = if io.n_bottoms() > 2 {
            io.bottom(2).count()
        } else {
            self.h
                .as_ref()
                .ok_or_else(|| layer_err!("reshape before setup"))?
                .count()
        };
        if h_count != ch * ch {
            return Err(layer_err!(
                "infogain matrix H must be {ch}x{ch} (the number of labels squared), \
                 it has {h_count} values"
            ));
        }
        self.dims = (outer, ch, inner);
        match &mut self.prob {
            Some(p) => p.reshape(&shape)?,
            None => self.prob = Some(Blob::new(&*cx.be, &shape)),
        }
        io.top_mut(0).reshape(&[])?;
        if io.n_tops() > 1 {
            io.top_mut(1).reshape(&shape)?;
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
        self.labels = io
            .bottom(1)
            .data_vec()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let l = v as i32;
                if Some(l) == self.ignore_label {
                    Ok(None)
                } else if l < 0 || l as usize >= ch {
                    Err(layer_err!(
                        "label {i} is {v}, outside the valid range [0, {ch})"
                    ))
                } else {
                    Ok(Some(l as usize))
                }
            })
            .collect::<Result<_>>()?;
        let valid = self.labels.iter().filter(|l| l.is_some()).count();
        let h = match &self.h {
            Some(h) => h.data.view(),
            None => io.bottom(2).data.view(),
        };
        let loss = cx
            .be
            .infogain_loss(ch, inner, &self.labels, prob.data.view(), h);
        self.z = normalizer(self.normalization, outer, inner, Some(valid));
        io.top_mut(0).set_data(&[loss / self.z])?;
        if io.n_tops() > 1 {
            cx.be
                .copy(n, prob.data.view(), io.top_mut(1).data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(layer_err!("cannot backpropagate to label inputs"));
        }
        if propagate_down.get(2) == Some(&true) {
            return Err(layer_err!("cannot backpropagate to infogain inputs"));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let (_, ch, inner) = self.dims;
        let prob = self
            .prob
            .as_ref()
            .ok_or_else(|| layer_err!("backward before forward"))?;
        let lw = io.top(0).diff.read(1)[0];
        let scale = lw / self.z;
        if let Some(h) = &self.h {
            let x = io.bottom_mut(0);
            cx.be.infogain_grad(
                ch,
                inner,
                &self.labels,
                scale,
                prob.data.view(),
                h.data.view(),
                x.diff.view_mut(),
            );
        } else {
            let ([h], [x]) = io.split([Slot::B(2)], [Slot::B(0)])?;
            cx.be.infogain_grad(
                ch,
                inner,
                &self.labels,
                scale,
                prob.data.view(),
                h.data.view(),
                x.diff.view_mut(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::binary::write_blob_proto;
    use crate::proto::caffe::Phase;
    use crate::tensor::Blob;
    use crate::testing::gradient::{
        cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
    };

    fn h_matrix(c: usize) -> Blob {
        let v = (0..c * c)
            .map(|i| ((i * 13 % 7) as f32) / 7.0 + 0.1)
            .collect();
        Blob::from_host(&[c, c], v)
    }

    /// f64 oracle with the scores of shape (outer, ch, inner).
    fn oracle(
        x: &[f32],
        labels: &[f32],
        h: &[f32],
        dims: (usize, usize, usize),
        ignore: Option<f32>,
    ) -> (f64, usize) {
        let (outer, ch, inner) = dims;
        let mut loss = 0.0;
        let mut valid = 0;
        for o in 0..outer {
            for i in 0..inner {
                let l = labels[o * inner + i];
                if Some(l) == ignore {
                    continue;
                }
                let at = |c: usize| x[(o * ch + c) * inner + i] as f64;
                let m = (0..ch).map(at).fold(f64::MIN, f64::max);
                let s: f64 = (0..ch).map(|c| (at(c) - m).exp()).sum();
                for c in 0..ch {
                    let p = (at(c) - m).exp() / s;
                    loss -= h[l as usize * ch + c] as f64 * p.ln();
                }
                valid += 1;
            }
        }
        (loss, valid)
    }

    #[test]
    fn forward_third_bottom_spatial_ignore() {
        let x = gaussian_blob(&[2, 3, 2], 1.5, 3);
        let labels = vec![0.0, 2.0, 5.0, 1.0];
        let h = h_matrix(3);
        let (sum, valid) = oracle(&x.data_vec(), &labels, &h.data_vec(), (2, 3, 2), Some(5.0));
        assert_eq!(valid, 3);
        let mut l =
            layer_from_text(r#"type: "InfogainLoss" loss_param { ignore_label: 5 }"#).unwrap();
        let mut arena = vec![
            x,
            Blob::from_host(&[2, 2], labels),
            h,
            Blob::default(),
            Blob::default(),
        ];
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut arena,
            &[0, 1, 2],
            &[3, 4],
            &[],
        )
        .unwrap();
        let got = arena[3].data_vec()[0] as f64;
        assert!((got - sum / 3.0).abs() < 1e-5, "{got} vs {}", sum / 3.0);
        // The second top holds the probabilities.
        let p = arena[4].data_vec();
        assert!((p[0] + p[2] + p[4] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn h_from_source_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.binaryproto");
        let h = h_matrix(4);
        write_blob_proto(&path, &h.to_proto(false)).unwrap();
        let x = gaussian_blob(&[3, 4], 1.5, 4);
        let labels = vec![3.0, 0.0, 1.0];
        let (sum, _) = oracle(&x.data_vec(), &labels, &h.data_vec(), (3, 4, 1), None);
        let mut l = layer_from_text(&format!(
            r#"type: "InfogainLoss" infogain_loss_param {{ source: "{}" }}"#,
            path.display()
        ))
        .unwrap();
        let mut arena = vec![x, Blob::from_host(&[3], labels), Blob::default()];
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut arena,
            &[0, 1],
            &[2],
            &[],
        )
        .unwrap();
        assert!((arena[2].data_vec()[0] as f64 - sum / 3.0).abs() < 1e-5);
        // Without a source and without a third bottom: a clear error.
        let mut l = layer_from_text(r#"type: "InfogainLoss""#).unwrap();
        let mut arena = vec![
            gaussian_blob(&[3, 4], 1.0, 1),
            Blob::from_host(&[3], vec![0.0; 3]),
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
        assert!(err.contains("source"), "{err}");
    }

    #[test]
    fn gradient() {
        for (shape, axis, lshape, param) in [
            (&[4, 3][..], 1, &[4][..], ""),
            (&[1, 5][..], 1, &[1][..], ""),
            (
                &[2, 2, 3][..],
                2,
                &[2, 2][..],
                "loss_param { ignore_label: 1 normalization: FULL }",
            ),
        ] {
            let ch = shape[axis];
            let n: usize = lshape.iter().product();
            let labels = (0..n).map(|i| ((i * 5 + 1) % ch) as f32).collect();
            let mut arena = vec![
                gaussian_blob(shape, 1.5, 8),
                Blob::from_host(lshape, labels),
                h_matrix(ch),
                Blob::default(),
            ];
            let mut l = layer_from_text(&format!(
                r#"type: "InfogainLoss" infogain_loss_param {{ axis: {axis} }} {param}"#
            ))
            .unwrap();
            GradientChecker::new(1e-2, 1e-2)
                .check_bottoms(&[0])
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

    #[test]
    fn normalize_is_rejected() {
        let err = layer_from_text(r#"type: "InfogainLoss" loss_param { normalize: true }"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("normalization"), "{err}");
    }
}
