//! Scale: `y[o,d,i] = x[o,d,i] · s[d] (+ b[d])`, with `s` learned (shaped
//! `bottom.shape[axis .. axis+num_axes]`, filler default constant 1) or given
//! as a second bottom. With `bias_term`, a learned bias of the same shape is
//! the last param blob (`[scale, bias]`, or `[bias]` with two bottoms).
use super::bias::{broadcast_dims, check_num_axes, operand_shape};
use crate::backend::Binary;
use crate::error::Result;
use crate::fillers::fill;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Scale {
    axis: i32,
    num_axes: i32,
    filler: FillerParameter,
    bias_term: bool,
    bias_filler: FillerParameter,
    /// `(outer, dim, inner)` from the last reshape.
    dims: (usize, usize, usize),
    /// In place: the input, kept for the scale gradient.
    saved: Option<Blob>,
}

impl Scale {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.scale_param.clone().unwrap_or_default();
        check_num_axes(p.num_axes())?;
        let filler = p.filler.clone().unwrap_or_else(|| FillerParameter {
            // Caffe's default: the identity scale.
            r#type: Some("constant".into()),
            value: Some(1.0),
            ..Default::default()
        });
        Ok(Scale {
            axis: p.axis(),
            num_axes: p.num_axes(),
            filler,
            bias_term: p.bias_term(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            dims: (0, 0, 0),
            saved: None,
        })
    }
}

/// The scale's slot: the second bottom if there is one, else param 0.
fn scale_slot(io: &Io) -> Slot {
    if io.n_bottoms() > 1 {
        Slot::B(1)
    } else {
        Slot::P(0)
    }
}

impl Layer for Scale {
    fn type_name(&self) -> &'static str {
        "Scale"
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
        let bottom = io.bottom(0).shape().to_vec();
        let mut blobs = Vec::new();
        let operand = if io.n_bottoms() > 1 {
            io.bottom(1).shape().to_vec()
        } else {
            let shape = operand_shape("scale", &bottom, self.axis, self.num_axes)?;
            let mut s = Blob::new(&*cx.be, &shape);
            fill(&self.filler, &mut s, &mut cx.rng)?;
            blobs.push(s);
            shape
        };
        if self.bias_term {
            let mut b = Blob::new(&*cx.be, &operand);
            fill(&self.bias_filler, &mut b, &mut cx.rng)?;
            blobs.push(b);
        }
        Ok(blobs)
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let operand = io.get(scale_slot(io)).shape().to_vec();
        self.dims = broadcast_dims("scale", &shape, self.axis, &operand)?;
        if self.bias_term {
            let bias = io.param(io.n_params() - 1).count();
            if bias != self.dims.1 {
                return Err(layer_err!(
                    "the bias blob has {bias} values but the scale has {}",
                    self.dims.1
                ));
            }
        }
        if io.in_place(0, 0) {
            match &mut self.saved {
                Some(s) => s.reshape(&shape)?,
                None => self.saved = Some(Blob::new(&*cx.be, &shape)),
            }
        } else {
            io.top_mut(0).reshape(&shape)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (o, d, i) = self.dims;
        let s = scale_slot(io);
        if io.in_place(0, 0) {
            let saved = self
                .saved
                .as_mut()
                .ok_or_else(|| layer_err!("forward before reshape"))?;
            let y = io.top(0);
            cx.be.copy(o * d * i, y.data.view(), saved.data.view_mut());
        } else {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
            cx.be.copy(o * d * i, x.data.view(), y.data.view_mut());
        }
        // y = x·s (+ b), in place on the top.
        if self.bias_term {
            let last = Slot::P(io.n_params() - 1);
            let ([s, b], [y]) = io.split([s, last], [Slot::T(0)])?;
            cx.be
                .channel_affine(o, d, i, s.data.view(), b.data.view(), y.data.view_mut());
        } else {
            let ([s], [y]) = io.split([s], [Slot::T(0)])?;
            cx.be
                .channel_broadcast_inplace(Binary::Mul, o, d, i, s.data.view(), y.data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let (o, d, i) = self.dims;
        let in_place = io.in_place(0, 0);
        // Learned blobs accumulate their gradients; a second bottom's is
        // overwritten. (Caffe overwrites a learned scale's diff when it has
        // as many values as the input; accumulating is what iter_size needs.)
        if self.bias_term && io.param_propagate_down(io.n_params() - 1) {
            let last = Slot::P(io.n_params() - 1);
            let ([y], [b]) = io.split([Slot::T(0)], [last])?;
            cx.be
                .channel_sum(o, d, i, 1.0, y.diff.view(), 1.0, b.diff.view_mut());
        }
        let two = io.n_bottoms() > 1;
        let (need, beta) = if two {
            (propagate_down[1], 0.0)
        } else {
            (io.param_propagate_down(0), 1.0)
        };
        if need {
            if in_place {
                let saved = self
                    .saved
                    .as_ref()
                    .ok_or_else(|| layer_err!("backward before forward"))?;
                let ([y], [s]) = io.split([Slot::T(0)], [scale_slot(io)])?;
                cx.be.channel_dot(
                    o,
                    d,
                    i,
                    1.0,
                    y.diff.view(),
                    saved.data.view(),
                    beta,
                    s.diff.view_mut(),
                );
            } else {
                let ([y, x], [s]) = io.split([Slot::T(0), Slot::B(0)], [scale_slot(io)])?;
                cx.be.channel_dot(
                    o,
                    d,
                    i,
                    1.0,
                    y.diff.view(),
                    x.data.view(),
                    beta,
                    s.diff.view_mut(),
                );
            }
        }
        if propagate_down[0] {
            if in_place {
                let ([s], [y]) = io.split([scale_slot(io)], [Slot::T(0)])?;
                cx.be.channel_broadcast_inplace(
                    Binary::Mul,
                    o,
                    d,
                    i,
                    s.data.view(),
                    y.diff.view_mut(),
                );
            } else {
                let ([y, s], [x]) = io.split([Slot::T(0), scale_slot(io)], [Slot::B(0)])?;
                cx.be.channel_broadcast(
                    Binary::Mul,
                    o,
                    d,
                    i,
                    y.diff.view(),
                    s.data.view(),
                    x.diff.view_mut(),
                );
            }
        }
        Ok(())
    }
}
