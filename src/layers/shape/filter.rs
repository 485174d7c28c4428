//! Filter: keeps the items (along axis 0) of bottoms `0..K` whose selector
//! (the last bottom, shape `(N, 1, ...)`) is non-zero. The selector is read
//! on the host at reshape; it gets no gradient.
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};

#[derive(Debug)]
pub struct Filter {
    /// Caffe's first Reshape (at setup) keeps all N items: the selector
    /// holds no data yet.
    first_reshape: bool,
    indices: Vec<usize>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            first_reshape: true,
            indices: Vec::new(),
        }
    }
}

impl Layer for Filter {
    fn type_name(&self) -> &'static str {
        "Filter"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(2),
            max_bottoms: None,
            min_tops: Some(1),
            max_tops: None,
            equal_bottom_top: false,
        }
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let nb = io.n_bottoms();
        if io.n_tops() != nb - 1 {
            return Err(layer_err!(
                "needs one top per filtered bottom: {} bottoms (the last is the selector), {} tops",
                nb,
                io.n_tops()
            ));
        }
        let sel = io.bottom(nb - 1);
        let n = *sel
            .shape()
            .first()
            .ok_or_else(|| layer_err!("the selector blob needs at least one axis"))?;
        if sel.shape()[1..].iter().any(|&d| d != 1) {
            return Err(layer_err!(
                "selector blob dimensions must be singletons (1), except the first (shape {})",
                sel.shape_string()
            ));
        }
        for i in 0..nb - 1 {
            if io.bottom(i).shape().first() != Some(&n) {
                return Err(layer_err!(
                    "each bottom should have the same 0th dimension as the selector blob \
                     (bottom {i} {}, selector {})",
                    io.bottom(i).shape_string(),
                    io.bottom(nb - 1).shape_string()
                ));
            }
        }
        let selector = io.bottom(nb - 1).data_vec();
        self.indices = (0..n).filter(|&i| selector[i] != 0.0).collect();
        let rows = if self.first_reshape {
            self.first_reshape = false;
            n
        } else {
            self.indices.len()
        };
        for t in 0..nb - 1 {
            let mut s = io.bottom(t).shape().to_vec();
            s[0] = rows;
            io.top_mut(t).reshape(&s)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        for t in 0..io.n_tops() {
            let ([x], [y]) = io.split([Slot::B(t)], [Slot::T(t)])?;
            let row = x.count_from(1);
            cx.be
                .gather_rows(&self.indices, row, x.data.view(), y.data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let last = io.n_bottoms() - 1;
        if propagate_down[last] {
            return Err(layer_err!(
                "cannot backpropagate to the filter selector input"
            ));
        }
        for t in (0..io.n_tops()).filter(|&t| propagate_down[t]) {
            let ([y], [x]) = io.split([Slot::T(t)], [Slot::B(t)])?;
            let row = x.count_from(1);
            cx.be.set(x.count(), 0.0, x.diff.view_mut());
            cx.be
                .scatter_add_rows(&self.indices, row, y.diff.view(), x.diff.view_mut());
        }
        Ok(())
    }
}
