//! ArgMax: the `top_k` largest values (their indices, their values, or
//! both) along `axis`, or over each item's flattened values without one.
//! Forward only: Caffe's backward is NOT_IMPLEMENTED.
use crate::backend::shape::ArgMaxOut;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;

#[derive(Debug)]
pub struct ArgMax {
    out_max_val: bool,
    top_k: usize,
    axis: Option<i32>,
    /// `(outer, dim, inner)` of the last reshape.
    dims: (usize, usize, usize),
}

impl ArgMax {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.argmax_param.unwrap_or_default();
        if p.top_k() < 1 {
            return Err(layer_err!("top_k must be at least 1 (got {})", p.top_k()));
        }
        Ok(ArgMax {
            out_max_val: p.out_max_val(),
            top_k: p.top_k() as usize,
            axis: p.axis,
            dims: (0, 0, 0),
        })
    }
    fn mode(&self) -> ArgMaxOut {
        match (self.out_max_val, self.axis.is_some()) {
            (false, _) => ArgMaxOut::Indices,
            (true, true) => ArgMaxOut::Values,
            (true, false) => ArgMaxOut::IndicesThenValues,
        }
    }
}

impl Layer for ArgMax {
    fn type_name(&self) -> &'static str {
        "ArgMax"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let b = io.bottom(0).shape().to_vec();
        let k = self.top_k;
        let top = match self.axis {
            Some(a) => {
                let axis = canonical_axis(a, b.len())?;
                if k > b[axis] {
                    return Err(layer_err!(
                        "top_k ({k}) must be less than or equal to the dimension of the axis \
                         ({} for axis {axis} of shape {b:?})",
                        b[axis]
                    ));
                }
                self.dims = (
                    b[..axis].iter().product(),
                    b[axis],
                    b[axis + 1..].iter().product(),
                );
                let mut t = b.clone();
                t[axis] = k;
                t
            }
            None => {
                let num = *b
                    .first()
                    .ok_or_else(|| layer_err!("ArgMax needs a bottom with at least one axis"))?;
                let dim: usize = b[1..].iter().product();
                if k > dim {
                    return Err(layer_err!(
                        "top_k ({k}) must be less than or equal to the number of classes ({dim})"
                    ));
                }
                self.dims = (num, dim, 1);
                let mut t = vec![1; b.len().max(3)];
                t[0] = num;
                t[1] = if self.out_max_val { 2 } else { 1 };
                t[2] = k;
                t
            }
        };
        io.top_mut(0).reshape(&top)
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (outer, dim, inner) = self.dims;
        let mode = self.mode();
        let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
        cx.be.argmax(
            outer,
            dim,
            inner,
            self.top_k,
            mode,
            x.data.view(),
            y.data.view_mut(),
        );
        Ok(())
    }
    fn backward(&mut self, _cx: &mut Ctx, _io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[0] {
            return Err(layer_err!(
                "ArgMax has no gradient (its backward is not defined)"
            ));
        }
        Ok(())
    }
}
