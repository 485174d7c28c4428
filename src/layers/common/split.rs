//! Split: copies its bottom to every top (inserted by the net where one blob
//! feeds several layers); backward sums the top diffs.
use crate::backend::Binary;
use crate::error::Result;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};

#[derive(Debug)]
pub struct Split;

impl Layer for Split {
    fn type_name(&self) -> &'static str {
        "Split"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(1),
            max_bottoms: Some(1),
            min_tops: Some(1),
            max_tops: None,
            equal_bottom_top: false,
        }
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        for t in 0..io.n_tops() {
            if io.in_place(0, t) {
                return Err(crate::layer_err!(
                    "Split does not allow in-place computation"
                ));
            }
            io.top_mut(t).reshape(&shape)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let n = io.bottom(0).count();
        for t in 0..io.n_tops() {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(t)])?;
            cx.be.copy(n, x.data.view(), y.data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let n = io.bottom(0).count();
        if io.n_tops() == 1 {
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
            cx.be.copy(n, y.diff.view(), x.diff.view_mut());
            return Ok(());
        }
        let ([a, b], [x]) = io.split([Slot::T(0), Slot::T(1)], [Slot::B(0)])?;
        cx.be.binary(
            Binary::Add,
            n,
            a.diff.view(),
            b.diff.view(),
            x.diff.view_mut(),
        );
        for t in 2..io.n_tops() {
            let ([y], [x]) = io.split([Slot::T(t)], [Slot::B(0)])?;
            cx.be.axpy(n, 1.0, y.diff.view(), x.diff.view_mut());
        }
        Ok(())
    }
}
