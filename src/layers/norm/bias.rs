//! Bias: `y[o,d,i] = x[o,d,i] + b[d]`, with `b` a learned blob shaped like
//! `bottom.shape[axis .. axis+num_axes]` or given as a second bottom. Also
//! the geometry shared with Scale.
use crate::backend::Binary;
use crate::error::Result;
use crate::fillers::fill;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::shape::canonical_axis;
use crate::tensor::Blob;

/// `(outer, dim, inner)`: where an operand of shape `operand` sits in a
/// bottom of shape `bottom`, starting at `axis` (a 0-axis operand is a
/// scalar and sits at axis 0, as in Caffe).
pub(super) fn broadcast_dims(
    what: &str,
    bottom: &[usize],
    axis: i32,
    operand: &[usize],
) -> Result<(usize, usize, usize)> {
    let axis = if operand.is_empty() {
        0
    } else {
        canonical_axis(axis, bottom.len())?
    };
    let end = axis + operand.len();
    if bottom.len() < end || bottom[axis..end] != *operand {
        return Err(layer_err!(
            "{what} shape {operand:?} does not match bottom shape {bottom:?} from axis {axis}"
        ));
    }
    let outer = bottom[..axis].iter().product();
    let dim = operand.iter().product();
    let inner = bottom[end..].iter().product();
    Ok((outer, dim, inner))
}

/// The shape of a learned operand: `bottom[axis .. axis+num_axes]`, to the
/// end for `num_axes == -1`.
pub(super) fn operand_shape(
    what: &str,
    bottom: &[usize],
    axis: i32,
    num_axes: i32,
) -> Result<Vec<usize>> {
    let axis = canonical_axis(axis, bottom.len())?;
    let end = if num_axes == -1 {
        bottom.len()
    } else {
        axis + num_axes as usize
    };
    if end > bottom.len() {
        return Err(layer_err!(
            "{what} blob's shape extends past bottom[0]'s shape {bottom:?} \
             (axis {axis}, num_axes {num_axes})"
        ));
    }
    Ok(bottom[axis..end].to_vec())
}

/// `num_axes` must be ≥ −1.
pub(super) fn check_num_axes(num_axes: i32) -> Result<()> {
    if num_axes < -1 {
        return Err(layer_err!(
            "num_axes must be non-negative, or -1 to extend to the end of bottom[0]; got {num_axes}"
        ));
    }
    Ok(())
}

#[derive(Debug)]
pub struct Bias {
    axis: i32,
    num_axes: i32,
    filler: FillerParameter,
    /// `(outer, dim, inner)` from the last reshape.
    dims: (usize, usize, usize),
}

impl Bias {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.bias_param.clone().unwrap_or_default();
        check_num_axes(p.num_axes())?;
        Ok(Bias {
            axis: p.axis(),
            num_axes: p.num_axes(),
            // A missing filler is Caffe's default: constant 0.
            filler: p.filler.clone().unwrap_or_default(),
            dims: (0, 0, 0),
        })
    }
}

/// The operand's slot: the second bottom if there is one, else the learned blob.
fn operand(io: &Io) -> Slot {
    if io.n_bottoms() > 1 {
        Slot::B(1)
    } else {
        Slot::P(0)
    }
}

impl Layer for Bias {
    fn type_name(&self) -> &'static str {
        "Bias"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(1),
            max_bottoms: Some(2),
            min_tops: Some(1),
            max_tops: Some(1),
            equal_bottom_top: false,
        }
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        if io.n_bottoms() > 1 {
            return Ok(Vec::new());
        }
        let shape = operand_shape("bias", io.bottom(0).shape(), self.axis, self.num_axes)?;
        let mut b = Blob::new(&*cx.be, &shape);
        fill(&self.filler, &mut b, &mut cx.rng)?;
        Ok(vec![b])
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let op = io.get(operand(io)).shape().to_vec();
        self.dims = broadcast_dims("bias", &shape, self.axis, &op)?;
        if !io.in_place(0, 0) {
            io.top_mut(0).reshape(&shape)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (o, d, i) = self.dims;
        let b = operand(io);
        if io.in_place(0, 0) {
            let ([b], [y]) = io.split([b], [Slot::T(0)])?;
            cx.be
                .channel_broadcast_inplace(Binary::Add, o, d, i, b.data.view(), y.data.view_mut());
        } else {
            let ([x, b], [y]) = io.split([Slot::B(0), b], [Slot::T(0)])?;
            cx.be.channel_broadcast(
                Binary::Add,
                o,
                d,
                i,
                x.data.view(),
                b.data.view(),
                y.data.view_mut(),
            );
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let (o, d, i) = self.dims;
        if propagate_down[0] && !io.in_place(0, 0) {
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
            cx.be.copy(o * d * i, y.diff.view(), x.diff.view_mut());
        }
        // A learned bias accumulates its gradient; a second bottom's is overwritten.
        let two = io.n_bottoms() > 1;
        let (need, beta) = if two {
            (propagate_down[1], 0.0)
        } else {
            (io.param_propagate_down(0), 1.0)
        };
        if need {
            let ([y], [b]) = io.split([Slot::T(0)], [operand(io)])?;
            cx.be
                .channel_sum(o, d, i, 1.0, y.diff.view(), beta, b.diff.view_mut());
        }
        Ok(())
    }
}
