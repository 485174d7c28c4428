//! Parameter: one learned blob of `parameter_param.shape`, exposed as the
//! layer's top. Caffe starts it at zero (no filler) and makes the top share
//! its data and diff; here forward copies the data to the top and backward
//! adds the top's diff to the blob's (the same gradient, and it accumulates
//! over `iter_size` like every other parameter).
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Parameter {
    shape: Vec<usize>,
}

impl Parameter {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let dims = lp
            .parameter_param
            .as_ref()
            .and_then(|p| p.shape.as_ref())
            .map(|s| s.dim.clone())
            .unwrap_or_default();
        if let Some(d) = dims.iter().find(|&&d| d < 0 || d > i32::MAX as i64) {
            return Err(layer_err!("parameter_param.shape has an invalid dim {d}"));
        }
        Ok(Parameter {
            shape: dims.iter().map(|&d| d as usize).collect(),
        })
    }
}

impl Layer for Parameter {
    fn type_name(&self) -> &'static str {
        "Parameter"
    }
    fn arity(&self) -> Arity {
        Arity::exact(0, 1)
    }
    fn setup(&mut self, cx: &mut Ctx, _io: &mut Io) -> Result<Vec<Blob>> {
        Ok(vec![Blob::new(cx.be.as_ref(), &self.shape)])
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        if io.n_params() > 0 && io.param(0).shape() != self.shape.as_slice() {
            return Err(layer_err!(
                "incorrect blob shape: expected {:?}, got {:?}",
                self.shape,
                io.param(0).shape()
            ));
        }
        io.top_mut(0).reshape(&self.shape)
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let ([p], [y]) = io.split([Slot::P(0)], [Slot::T(0)])?;
        cx.be.copy(p.count(), p.data.view(), y.data.view_mut());
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, _propagate_down: &[bool]) -> Result<()> {
        if io.param_propagate_down(0) {
            let ([y], [p]) = io.split([Slot::T(0)], [Slot::P(0)])?;
            cx.be.axpy(p.count(), 1.0, y.diff.view(), p.diff.view_mut());
        }
        Ok(())
    }
}
