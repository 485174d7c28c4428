//! LSTMUnit (Caffe's LSTMUnitLayer): one LSTM step. Bottoms `c_prev
//! (1, N, H)`, `gates (1, N, 4H)` (pre-activations, blocks [i, f, o, g]),
//! `cont (1, N)`; tops `c (1, N, H)`, `h (1, N, H)`. No gradient to `cont`.
use super::common::grow;
use crate::backend::Buffer;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::shape_string;

#[derive(Debug, Default)]
pub struct LstmUnit {
    /// N streams of H units.
    n: usize,
    h: usize,
    /// Where a gradient nobody asked for goes (Caffe computes both).
    scratch_c: Buffer,
    scratch_g: Buffer,
}

impl LstmUnit {
    pub fn new(_lp: &LayerParameter) -> Result<Self> {
        Ok(LstmUnit::default())
    }
}

impl Layer for LstmUnit {
    fn type_name(&self) -> &'static str {
        "LSTMUnit"
    }

    fn arity(&self) -> Arity {
        Arity::exact(3, 2)
    }

    fn allow_force_backward(&self, bottom: usize) -> bool {
        bottom != 2
    }

    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shapes = io.bottom_shapes();
        let n = shapes[0].get(1).copied().unwrap_or(0);
        for (i, s) in shapes.iter().enumerate() {
            let axes = if i == 2 { 2 } else { 3 };
            if s.len() != axes || s[0] != 1 || s[1] != n {
                let what = ["c_prev (1, N, H)", "gates (1, N, 4H)", "cont (1, N)"][i];
                return Err(layer_err!(
                    "bottom[{i}] must be {what} with N = {n}, got shape {}",
                    shape_string(s)
                ));
            }
        }
        let h = shapes[0][2];
        if shapes[1][2] != 4 * h {
            return Err(layer_err!(
                "bottom[1] (gates) must have 4·H = {} values per stream, got shape {}",
                4 * h,
                shape_string(&shapes[1])
            ));
        }
        self.n = n;
        self.h = h;
        io.top_mut(0).reshape(&shapes[0])?;
        io.top_mut(1).reshape(&shapes[0])?;
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let ([c_prev, gates, cont], [c, h]) = io.split(
            [Slot::B(0), Slot::B(1), Slot::B(2)],
            [Slot::T(0), Slot::T(1)],
        )?;
        cx.be.lstm_unit_forward(
            self.n,
            self.h,
            c_prev.data.view(),
            gates.data.view(),
            cont.data.view(),
            c.data.view_mut(),
            h.data.view_mut(),
        );
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down.get(2).copied().unwrap_or(false) {
            return Err(layer_err!(
                "cannot backpropagate to sequence continuation indicators (bottom[2])"
            ));
        }
        let (pd_c, pd_g) = (propagate_down[0], propagate_down[1]);
        if !pd_c && !pd_g {
            return Ok(());
        }
        let (n, h) = (self.n, self.h);
        if !pd_c {
            grow(cx.be.as_ref(), &mut self.scratch_c, n * h);
        }
        if !pd_g {
            grow(cx.be.as_ref(), &mut self.scratch_g, n * 4 * h);
        }
        let ([cont, c, hb], [c_prev, gates]) = io.split(
            [Slot::B(2), Slot::T(0), Slot::T(1)],
            [Slot::B(0), Slot::B(1)],
        )?;
        let dc_prev = if pd_c {
            c_prev.diff.view_mut()
        } else {
            self.scratch_c.view_mut()
        };
        let dgates = if pd_g {
            gates.diff.view_mut()
        } else {
            self.scratch_g.view_mut()
        };
        cx.be.lstm_unit_backward(
            n,
            h,
            c_prev.data.view(),
            gates.data.view(),
            cont.data.view(),
            c.data.view(),
            c.diff.view(),
            hb.diff.view(),
            dc_prev,
            dgates,
        );
        Ok(())
    }
}
