//! ReLU, Sigmoid and TanH: one layer type per `Unary` activation. The
//! backend applies the formula; in place, the gradient is computed from the
//! top values (what Caffe's in-place layers see as their bottom).
use crate::backend::Unary;
use crate::error::Result;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};

#[derive(Debug)]
pub struct Activation {
    name: &'static str,
    op: Unary,
}

impl Activation {
    pub fn new(name: &'static str, op: Unary) -> Self {
        Activation { name, op }
    }
}

impl Layer for Activation {
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        if !io.in_place(0, 0) {
            let shape = io.bottom(0).shape().to_vec();
            io.top_mut(0).reshape(&shape)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let n = io.bottom(0).count();
        if io.in_place(0, 0) {
            cx.be
                .unary_inplace(self.op, n, io.top_mut(0).data.view_mut());
        } else {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
            cx.be.unary(self.op, n, x.data.view(), y.data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let n = io.bottom(0).count();
        if io.in_place(0, 0) {
            let b = io.bottom_mut(0);
            cx.be
                .unary_grad_inplace(self.op, n, b.data.view(), b.diff.view_mut());
        } else {
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
            cx.be.unary_grad(
                self.op,
                n,
                x.data.view(),
                y.data.view(),
                y.diff.view(),
                x.diff.view_mut(),
            );
        }
        Ok(())
    }
}
