//! BatchReindex: `top[i] = bottom0[idx[i]]` along axis 0, with the 1-D index
//! blob read on the host. Backward scatter-adds (repeated indices
//! accumulate); the indices get no gradient.
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};

use super::host_indices;

#[derive(Debug, Default)]
pub struct BatchReindex {
    /// The indices of the last forward.
    idx: Vec<usize>,
}

impl Layer for BatchReindex {
    fn type_name(&self) -> &'static str {
        "BatchReindex"
    }
    fn arity(&self) -> Arity {
        Arity::exact(2, 1)
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let idx = io.bottom(1);
        if idx.num_axes() != 1 {
            return Err(layer_err!(
                "the index blob must have exactly one axis (shape {})",
                idx.shape_string()
            ));
        }
        let mut shape = vec![idx.shape()[0]];
        let b = io.bottom(0).shape();
        if b.is_empty() {
            return Err(layer_err!("the data blob needs at least one axis"));
        }
        shape.extend_from_slice(&b[1..]);
        io.top_mut(0).reshape(&shape)
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let num = io.bottom(0).shape()[0];
        self.idx = host_indices(&io.bottom(1).data_vec(), num, "reindex index")?;
        let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
        cx.be
            .gather_rows(&self.idx, x.count_from(1), x.data.view(), y.data.view_mut());
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[1] {
            return Err(layer_err!("cannot backpropagate to the index input"));
        }
        if !propagate_down[0] {
            return Ok(());
        }
        let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        cx.be.set(x.count(), 0.0, x.diff.view_mut());
        cx.be
            .scatter_add_rows(&self.idx, x.count_from(1), y.diff.view(), x.diff.view_mut());
        Ok(())
    }
}
