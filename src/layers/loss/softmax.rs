//! Softmax along one axis (Caffe's SoftmaxLayer); in place allowed.
use crate::error::Result;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;

#[derive(Debug)]
pub struct Softmax {
    axis: i32,
    /// (outer, channels, inner), resolved in reshape.
    dims: (usize, usize, usize),
}

/// `(outer, channels, inner)` of `shape` around the canonical `axis`.
pub(super) fn split_dims(shape: &[usize], axis: i32) -> Result<(usize, usize, usize)> {
    let a = canonical_axis(axis, shape.len())?;
    Ok((
        shape[..a].iter().product(),
        shape[a],
        shape[a + 1..].iter().product(),
    ))
}

impl Softmax {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        Ok(Softmax {
            axis: lp.softmax_param.as_ref().map_or(1, |p| p.axis()),
            dims: (0, 0, 0),
        })
    }
}

impl Layer for Softmax {
    fn type_name(&self) -> &'static str {
        "Softmax"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        self.dims = split_dims(&shape, self.axis)?;
        if !io.in_place(0, 0) {
            io.top_mut(0).reshape(&shape)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (outer, ch, inner) = self.dims;
        if !io.in_place(0, 0) {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
            cx.be.copy(x.count(), x.data.view(), y.data.view_mut());
        }
        let y = io.top_mut(0);
        cx.be.softmax_forward(outer, ch, inner, y.data.view_mut());
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let (outer, ch, inner) = self.dims;
        if io.in_place(0, 0) {
            let b = io.bottom_mut(0);
            cx.be
                .softmax_backward(outer, ch, inner, b.data.view(), b.diff.view_mut());
        } else {
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
            cx.be.copy(y.count(), y.diff.view(), x.diff.view_mut());
            cx.be
                .softmax_backward(outer, ch, inner, y.data.view(), x.diff.view_mut());
        }
        Ok(())
    }
}
