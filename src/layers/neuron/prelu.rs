//! PReLU: `y = max(x, 0) + a_c · min(x, 0)` with a learned slope per channel
//! (axis 1), or one scalar slope (a 0-axis blob) when `channel_shared`.
//! In place, the input is kept for backward, as Caffe does.
use crate::error::Result;
use crate::fillers::fill;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::Blob;

#[derive(Debug)]
pub struct PReLU {
    filler: FillerParameter,
    channel_shared: bool,
    /// In place: data = the input, diff = a copy of the top diff.
    saved: Option<Blob>,
}

impl PReLU {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.prelu_param.clone().unwrap_or_default();
        let filler = p.filler.clone().unwrap_or_else(|| FillerParameter {
            // Caffe's default slope: 0.25.
            r#type: Some("constant".into()),
            value: Some(0.25),
            ..Default::default()
        });
        Ok(PReLU {
            filler,
            channel_shared: p.channel_shared(),
            saved: None,
        })
    }

    /// `(outer, channels, inner)` of the bottom as the kernels see it: one
    /// shared slope makes the whole item a single channel.
    fn dims(&self, shape: &[usize]) -> Result<(usize, usize, usize)> {
        if shape.len() < 2 {
            return Err(layer_err!(
                "needs a bottom with at least 2 axes, got shape {shape:?}"
            ));
        }
        let count: usize = shape.iter().product();
        let outer = shape[0];
        if self.channel_shared {
            Ok((outer, 1, count.checked_div(outer).unwrap_or(0)))
        } else {
            Ok((outer, shape[1], shape[2..].iter().product()))
        }
    }
}

impl Layer for PReLU {
    fn type_name(&self) -> &'static str {
        "PReLU"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        let shape = io.bottom(0).shape().to_vec();
        let (_, channels, _) = self.dims(&shape)?;
        let slope_shape: &[usize] = if self.channel_shared {
            &[]
        } else {
            &[channels]
        };
        let mut slope = Blob::new(&*cx.be, slope_shape);
        fill(&self.filler, &mut slope, &mut cx.rng)?;
        Ok(vec![slope])
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let (_, channels, _) = self.dims(&shape)?;
        if io.param(0).count() != channels {
            return Err(layer_err!(
                "the slope blob has {} values but the bottom (shape {shape:?}) needs {channels}",
                io.param(0).count()
            ));
        }
        if io.in_place(0, 0) {
            match &mut self.saved {
                Some(s) => s.reshape(&shape)?,
                None => self.saved = Some(Blob::new(&*cx.be, &shape)),
            }
        } else {
            io.top_mut(0).reshape(&shape)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (o, c, i) = self.dims(io.bottom(0).shape())?;
        let n = o * c * i;
        if io.in_place(0, 0) {
            let saved = self
                .saved
                .as_mut()
                .ok_or_else(|| layer_err!("forward before reshape"))?;
            let ([slope], [y]) = io.split([Slot::P(0)], [Slot::T(0)])?;
            cx.be.copy(n, y.data.view(), saved.data.view_mut());
            cx.be.prelu_forward(
                o,
                c,
                i,
                saved.data.view(),
                slope.data.view(),
                y.data.view_mut(),
            );
        } else {
            let ([x, slope], [y]) = io.split([Slot::B(0), Slot::P(0)], [Slot::T(0)])?;
            cx.be
                .prelu_forward(o, c, i, x.data.view(), slope.data.view(), y.data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let (o, c, i) = self.dims(io.bottom(0).shape())?;
        let n = o * c * i;
        let slope_grad = io.param_propagate_down(0);
        if io.in_place(0, 0) {
            let saved = self
                .saved
                .as_mut()
                .ok_or_else(|| layer_err!("backward before forward"))?;
            // dy and dx share one buffer: read dy from a copy.
            cx.be.copy(n, io.top(0).diff.view(), saved.diff.view_mut());
            if slope_grad {
                let slope = io.param_mut(0);
                cx.be.prelu_backward_slope(
                    o,
                    c,
                    i,
                    saved.data.view(),
                    saved.diff.view(),
                    slope.diff.view_mut(),
                );
            }
            if propagate_down[0] {
                let ([slope], [b]) = io.split([Slot::P(0)], [Slot::B(0)])?;
                cx.be.prelu_backward_data(
                    o,
                    c,
                    i,
                    saved.data.view(),
                    saved.diff.view(),
                    slope.data.view(),
                    b.diff.view_mut(),
                );
            }
            return Ok(());
        }
        if slope_grad {
            let ([x, y], [slope]) = io.split([Slot::B(0), Slot::T(0)], [Slot::P(0)])?;
            cx.be.prelu_backward_slope(
                o,
                c,
                i,
                x.data.view(),
                y.diff.view(),
                slope.diff.view_mut(),
            );
        }
        if propagate_down[0] {
            let ([y, slope], [x]) = io.split([Slot::T(0), Slot::P(0)], [Slot::B(0)])?;
            cx.be.prelu_backward_data(
                o,
                c,
                i,
                x.data.view(),
                y.diff.view(),
                slope.data.view(),
                x.diff.view_mut(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::Io;
    use crate::proto::caffe::Phase;
    use crate::tensor::Blob;
    use crate::testing::gradient::{
        cpu_ctx, gaussian_blob, layer_from_text, run_forward, GradientChecker,
    };

    const SHARED: &str = r#"type: "PReLU" prelu_param { channel_shared: true }"#;
    const PER_CHANNEL: &str = r#"type: "PReLU"
        prelu_param { filler { type: "uniform" min: 0.05 max: 0.5 } }"#;

    #[test]
    fn default_slope_and_shapes() {
        for (t, slope_shape) in [(r#"type: "PReLU""#, vec![3]), (SHARED, vec![])] {
            let mut l = layer_from_text(t).unwrap();
            let mut a = vec![Blob::from_host(
                &[1, 3, 1, 2],
                vec![-4., 4., -2., 2., 0., -1.],
            )];
            run_forward(
                l.as_mut(),
                &mut cpu_ctx(Phase::Train),
                &mut a,
                &[0],
                &[1],
                &[2],
            )
            .unwrap();
            assert_eq!(a[2].shape(), slope_shape.as_slice());
            assert!(a[2].data_vec().iter().all(|&s| s == 0.25));
            assert_eq!(a[1].data_vec(), vec![-1., 4., -0.5, 2., 0., -0.25]);
        }
    }

    #[test]
    fn forward_per_channel() {
        let mut l = layer_from_text(PER_CHANNEL).unwrap();
        let x = gaussian_blob(&[2, 3, 2, 2], 1.0, 1);
        let mut a = vec![x.clone()];
        run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0],
            &[1],
            &[2],
        )
        .unwrap();
        let slope = a[2].data_vec();
        assert!(slope.iter().all(|&s| (0.05..=0.5).contains(&s)));
        for (i, (&x, &y)) in x.data_vec().iter().zip(&a[1].data_vec()).enumerate() {
            let c = (i / 4) % 3;
            assert_eq!(y, if x > 0.0 { x } else { slope[c] * x });
        }
    }

    #[test]
    fn gradients() {
        let c = GradientChecker::new(1e-2, 1e-3).kink(0.0, 0.01);
        for t in [PER_CHANNEL, SHARED] {
            for shape in [&[2usize, 3, 2, 2][..], &[1, 3, 2, 2], &[2, 3]] {
                let x = gaussian_blob(shape, 1.0, 7);
                let mut l = layer_from_text(t).unwrap();
                let mut a = vec![x.clone()];
                c.check_layer_exhaustive(
                    l.as_mut(),
                    &mut cpu_ctx(Phase::Train),
                    &mut a,
                    &[0],
                    &[1],
                    &[2],
                )
                .unwrap_or_else(|e| panic!("{t} {shape:?}: {e}"));
                let mut l = layer_from_text(t).unwrap();
                let mut a = vec![x];
                c.check_layer(
                    l.as_mut(),
                    &mut cpu_ctx(Phase::Train),
                    &mut a,
                    &[0],
                    &[0],
                    &[1],
                )
                .unwrap_or_else(|e| panic!("{t} {shape:?} in place: {e}"));
            }
        }
    }

    /// In place equals out of place; the slope gradient accumulates.
    #[test]
    fn in_place_and_accumulation() {
        let x = gaussian_blob(&[2, 3, 4], 1.0, 3);
        let dy = gaussian_blob(&[2, 3, 4], 1.0, 4).data_vec();
        let mut got = Vec::new();
        for (top, p) in [(1usize, 2usize), (0, 1)] {
            let mut l = layer_from_text(PER_CHANNEL).unwrap();
            let mut a = vec![x.clone()];
            let mut cx = cpu_ctx(Phase::Train);
            run_forward(l.as_mut(), &mut cx, &mut a, &[0], &[top], &[p]).unwrap();
            let y = a[top].data_vec();
            a[top].set_diff(&dy).unwrap();
            l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[top], &[p]), &[true])
                .unwrap();
            let first = a[p].diff_vec();
            got.push((y, a[0].diff_vec(), first.clone()));
            // A second backward adds the same slope gradient again.
            if top == 1 {
                l.backward(&mut cx, &mut Io::new(&mut a, &[0], &[top], &[p]), &[false])
                    .unwrap();
                let twice: Vec<f32> = first.iter().map(|v| 2.0 * v).collect();
                assert_eq!(a[p].diff_vec(), twice);
            }
        }
        assert_eq!(got[0], got[1]);
    }

    #[test]
    fn rejects_1d_bottom() {
        let mut l = layer_from_text(r#"name: "p" type: "PReLU""#).unwrap();
        let mut a = vec![Blob::from_host(&[3], vec![1., 2., 3.])];
        let err = run_forward(
            l.as_mut(),
            &mut cpu_ctx(Phase::Train),
            &mut a,
            &[0],
            &[1],
            &[2],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least 2 axes"), "{err}");
    }
}
