//! Reduction: SUM, ASUM, SUMSQ or MEAN over all axes from `axis` on, times
//! `coeff`; the top keeps the axes before `axis` (a scalar for axis 0).
use crate::backend::shape::Reduce;
use crate::error::Result;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::reduction_parameter::ReductionOp;
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;

#[derive(Debug)]
pub struct Reduction {
    op: ReductionOp,
    axis: i32,
    coeff: f32,
    rows: usize,
    dim: usize,
}

impl Reduction {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.reduction_param.unwrap_or_default();
        Ok(Reduction {
            op: p.operation(),
            axis: p.axis(),
            coeff: p.coeff(),
            rows: 0,
            dim: 0,
        })
    }

    /// The kernel op and its coefficient (MEAN is SUM scaled by 1/dim, as
    /// Caffe folds it into coeff).
    fn kernel(&self) -> (Reduce, f32) {
        match self.op {
            ReductionOp::Sum => (Reduce::Sum, self.coeff),
            ReductionOp::Asum => (Reduce::Asum, self.coeff),
            ReductionOp::Sumsq => (Reduce::SumSq, self.coeff),
            ReductionOp::Mean => (Reduce::Sum, self.coeff / self.dim as f32),
        }
    }
}

impl Layer for Reduction {
    fn type_name(&self) -> &'static str {
        "Reduction"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let axis = canonical_axis(self.axis, shape.len())?;
        self.rows = shape[..axis].iter().product();
        self.dim = shape[axis..].iter().product();
        io.top_mut(0).reshape(&shape[..axis])
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (op, coeff) = self.kernel();
        let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
        cx.be.reduce_rows(
            op,
            self.rows,
            self.dim,
            coeff,
            x.data.view(),
            y.data.view_mut(),
        );
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let (op, coeff) = self.kernel();
        let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        // `x.data` is read while `x.diff` is written: two distinct buffers.
        let (data, diff) = (&x.data, &mut x.diff);
        cx.be.reduce_rows_backward(
            op,
            self.rows,
            self.dim,
            coeff,
            data.view(),
            y.diff.view(),
            diff.view_mut(),
        );
        Ok(())
    }
}
