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
            Ok((outer, 1, if outer == 0 { 0 } else { count / outer }))
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
