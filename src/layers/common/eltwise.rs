//! Eltwise: element-wise PROD, SUM (with per-bottom coefficients) or MAX of
//! bottoms of one shape.
use crate::backend::Binary;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::eltwise_parameter::EltwiseOp;
use crate::proto::caffe::LayerParameter;
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Eltwise {
    op: EltwiseOp,
    /// As given; empty means 1 for every bottom.
    coeff: Vec<f32>,
    stable_prod_grad: bool,
    /// MAX: index of the winning bottom per element (Caffe's max_idx_).
    mask: Option<Blob>,
}

impl Eltwise {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.eltwise_param.clone().unwrap_or_default();
        let op = p.operation();
        if op == EltwiseOp::Prod && !p.coeff.is_empty() {
            return Err(layer_err!(
                "Eltwise layer only takes coefficients for summation"
            ));
        }
        Ok(Eltwise {
            op,
            coeff: p.coeff.clone(),
            stable_prod_grad: p.stable_prod_grad(),
            mask: None,
        })
    }
    fn coeff(&self, i: usize) -> f32 {
        self.coeff.get(i).copied().unwrap_or(1.0)
    }
}

impl Layer for Eltwise {
    fn type_name(&self) -> &'static str {
        "Eltwise"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(2),
            max_bottoms: None,
            min_tops: Some(1),
            max_tops: Some(1),
            equal_bottom_top: false,
        }
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let nb = io.n_bottoms();
        if !self.coeff.is_empty() && self.coeff.len() != nb {
            return Err(layer_err!(
                "Eltwise layer takes one coefficient per bottom blob ({} coefficients, {nb} bottoms)",
                self.coeff.len()
            ));
        }
        let shapes = io.bottom_shapes();
        for (i, s) in shapes.iter().enumerate().skip(1) {
            if *s != shapes[0] {
                return Err(layer_err!(
                    "bottoms must have the same shape (bottom 0: {}, bottom {i}: {})",
                    io.bottom(0).shape_string(),
                    io.bottom(i).shape_string()
                ));
            }
        }
        if (0..nb).any(|i| io.in_place(i, 0)) {
            return Err(layer_err!("Eltwise does not allow in-place computation"));
        }
        io.top_mut(0).reshape(&shapes[0])?;
        if self.op == EltwiseOp::Max {
            match &mut self.mask {
                Some(m) => m.reshape(&shapes[0])?,
                None => self.mask = Some(Blob::new(&*cx.be, &shapes[0])),
            }
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let n = io.top(0).count();
        let be = &cx.be;
        match self.op {
            EltwiseOp::Prod => {
                let ([a, b], [y]) = io.split([Slot::B(0), Slot::B(1)], [Slot::T(0)])?;
                be.binary(
                    Binary::Mul,
                    n,
                    a.data.view(),
                    b.data.view(),
                    y.data.view_mut(),
                );
                for i in 2..io.n_bottoms() {
                    let ([x], [y]) = io.split([Slot::B(i)], [Slot::T(0)])?;
                    be.binary_inplace(Binary::Mul, n, x.data.view(), y.data.view_mut());
                }
            }
            EltwiseOp::Sum => {
                be.set(n, 0.0, io.top_mut(0).data.view_mut());
                for i in 0..io.n_bottoms() {
                    let ([x], [y]) = io.split([Slot::B(i)], [Slot::T(0)])?;
                    be.axpy(n, self.coeff(i), x.data.view(), y.data.view_mut());
                }
            }
            EltwiseOp::Max => {
                let mask = self
                    .mask
                    .as_mut()
                    .ok_or_else(|| layer_err!("forward before reshape"))?;
                be.set(n, 0.0, mask.data.view_mut());
                let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
                be.copy(n, x.data.view(), y.data.view_mut());
                for i in 1..io.n_bottoms() {
                    let ([x], [y]) = io.split([Slot::B(i)], [Slot::T(0)])?;
                    be.eltwise_max_forward(
                        n,
                        i,
                        x.data.view(),
                        y.data.view_mut(),
                        mask.data.view_mut(),
                    );
                }
            }
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let n = io.top(0).count();
        let nb = io.n_bottoms();
        let be = &cx.be;
        for (i, _) in propagate_down.iter().enumerate().filter(|(_, &p)| p) {
            match self.op {
                EltwiseOp::Prod => {
                    if self.stable_prod_grad {
                        // The product of the other bottoms, without dividing.
                        let mut first = true;
                        for j in (0..nb).filter(|&j| j != i) {
                            let ([o], [x]) = io.split([Slot::B(j)], [Slot::B(i)])?;
                            if first {
                                be.copy(n, o.data.view(), x.diff.view_mut());
                                first = false;
                            } else {
                                be.binary_inplace(Binary::Mul, n, o.data.view(), x.diff.view_mut());
                            }
                        }
                    } else {
                        let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(i)])?;
                        be.binary(
                            Binary::Div,
                            n,
                            y.data.view(),
                            x.data.view(),
                            x.diff.view_mut(),
                        );
                    }
                    let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(i)])?;
                    be.binary_inplace(Binary::Mul, n, y.diff.view(), x.diff.view_mut());
                }
                EltwiseOp::Sum => {
                    let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(i)])?;
                    be.copy(n, y.diff.view(), x.diff.view_mut());
                    let c = self.coeff(i);
                    if c != 1.0 {
                        be.scal(n, c, x.diff.view_mut());
                    }
                }
                EltwiseOp::Max => {
                    let mask = self
                        .mask
                        .as_ref()
                        .ok_or_else(|| layer_err!("backward before forward"))?;
                    let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(i)])?;
                    be.eltwise_max_backward(
                        n,
                        i,
                        y.diff.view(),
                        mask.data.view(),
                        x.diff.view_mut(),
                    );
                }
            }
        }
        Ok(())
    }
}
