//! The layer behind every element-wise neuron whose formula is a `Unary`
//! (ELU, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip, Swish). In place,
//! ops whose gradient needs the input (`Unary::grad_needs_input`) keep a copy
//! of it, so their gradients stay exact where Caffe would read the
//! overwritten top instead.
use crate::backend::Unary;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Pointwise {
    name: &'static str,
    op: Unary,
    /// Forward only (Threshold): backward is refused, as in Caffe.
    has_backward: bool,
    /// In-place runs of ops that need the input: its data is the saved
    /// input, its diff a copy of the top diff (which shares the bottom's).
    saved: Option<Blob>,
}

impl Pointwise {
    pub fn new(name: &'static str, op: Unary) -> Self {
        Pointwise {
            name,
            op,
            has_backward: true,
            saved: None,
        }
    }
    /// A layer whose backward is an error (Caffe's NOT_IMPLEMENTED).
    pub fn forward_only(name: &'static str, op: Unary) -> Self {
        Pointwise {
            has_backward: false,
            ..Pointwise::new(name, op)
        }
    }
    pub fn op(&self) -> Unary {
        self.op
    }
    fn keeps_input(&self, io: &Io) -> bool {
        self.has_backward && io.in_place(0, 0) && self.op.grad_needs_input()
    }
}

impl Layer for Pointwise {
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        if !io.in_place(0, 0) {
            io.top_mut(0).reshape(&shape)?;
        }
        if self.keeps_input(io) {
            match &mut self.saved {
                Some(s) => s.reshape(&shape)?,
                None => self.saved = Some(Blob::new(&*cx.be, &shape)),
            }
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let n = io.bottom(0).count();
        if !io.in_place(0, 0) {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
            cx.be.unary(self.op, n, x.data.view(), y.data.view_mut());
            return Ok(());
        }
        if self.keeps_input(io) {
            let saved = self
                .saved
                .as_mut()
                .ok_or_else(|| layer_err!("forward before reshape"))?;
            cx.be
                .copy(n, io.bottom(0).data.view(), saved.data.view_mut());
        }
        cx.be
            .unary_inplace(self.op, n, io.top_mut(0).data.view_mut());
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        if !self.has_backward {
            return Err(layer_err!(
                "{} has no gradient (Caffe does not implement its backward either); \
                 keep it out of the backward path",
                self.name
            ));
        }
        let n = io.bottom(0).count();
        if !io.in_place(0, 0) {
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
            cx.be.unary_grad(
                self.op,
                n,
                x.data.view(),
                y.data.view(),
                y.diff.view(),
                x.diff.view_mut(),
            );
        } else if self.keeps_input(io) {
            let saved = self
                .saved
                .as_mut()
                .ok_or_else(|| layer_err!("backward before forward"))?;
            let t = io.top_mut(0);
            // dy and dx share one buffer: read dy from a copy.
            cx.be.copy(n, t.diff.view(), saved.diff.view_mut());
            cx.be.unary_grad(
                self.op,
                n,
                saved.data.view(),
                t.data.view(),
                saved.diff.view(),
                t.diff.view_mut(),
            );
        } else {
            let t = io.top_mut(0);
            cx.be
                .unary_grad_inplace(self.op, n, t.data.view(), t.diff.view_mut());
        }
        Ok(())
    }
}
