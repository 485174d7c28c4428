//! Concat: joins its bottoms along one axis (`axis`, or the legacy
//! non-negative `concat_dim`).
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;

#[derive(Debug)]
enum AxisSpec {
    Axis(i32),
    /// The deprecated field: no negative indexing.
    ConcatDim(u32),
}

#[derive(Debug)]
pub struct Concat {
    spec: AxisSpec,
    axis: usize,
    /// Product of the dims before / after the axis.
    num_concats: usize,
    input_size: usize,
}

impl Concat {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.concat_param.unwrap_or_default();
        let spec = match (p.axis.is_some(), p.concat_dim.is_some()) {
            (true, true) => {
                return Err(layer_err!(
                    "either axis or concat_dim should be specified; not both"
                ))
            }
            (false, true) => AxisSpec::ConcatDim(p.concat_dim()),
            _ => AxisSpec::Axis(p.axis()),
        };
        Ok(Concat {
            spec,
            axis: 0,
            num_concats: 0,
            input_size: 0,
        })
    }

    /// The bottom's extent along the axis and its offset in the top, per bottom.
    fn extents(&self, io: &Io) -> Vec<(usize, usize)> {
        let mut off = 0;
        (0..io.n_bottoms())
            .map(|i| {
                let d = io.bottom(i).shape()[self.axis];
                off += d;
                (d, off - d)
            })
            .collect()
    }
}

impl Layer for Concat {
    fn type_name(&self) -> &'static str {
        "Concat"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(1),
            max_bottoms: None,
            min_tops: Some(1),
            max_tops: Some(1),
            equal_bottom_top: false,
        }
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shapes = io.bottom_shapes();
        let num_axes = shapes[0].len();
        self.axis = match self.spec {
            AxisSpec::ConcatDim(d) => {
                if d as usize >= num_axes {
                    return Err(layer_err!(
                        "concat_dim {d} out of range for {num_axes}-D bottoms"
                    ));
                }
                d as usize
            }
            AxisSpec::Axis(a) => canonical_axis(a, num_axes)?,
        };
        let mut top = shapes[0].clone();
        for (i, s) in shapes.iter().enumerate().skip(1) {
            if s.len() != num_axes {
                return Err(layer_err!(
                    "all inputs must have the same #axes (bottom 0: {:?}, bottom {i}: {:?})",
                    shapes[0],
                    s
                ));
            }
            if (0..num_axes).any(|j| j != self.axis && s[j] != shapes[0][j]) {
                return Err(layer_err!(
                    "all inputs must have the same shape, except at concat_axis \
                     (axis {}; bottom 0: {:?}, bottom {i}: {:?})",
                    self.axis,
                    shapes[0],
                    s
                ));
            }
            top[self.axis] += s[self.axis];
        }
        self.num_concats = top[..self.axis].iter().product();
        self.input_size = top[self.axis + 1..].iter().product();
        io.top_mut(0).reshape(&top)
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let top_axis = io.top(0).shape()[self.axis];
        let k = self.input_size;
        for (i, (d, off)) in self.extents(io).into_iter().enumerate() {
            let ([x], [y]) = io.split([Slot::B(i)], [Slot::T(0)])?;
            // One strided copy per bottom (one launch on a GPU, not one
            // per image).
            cx.be.copy_blocks(
                self.num_concats,
                d * k,
                x.data.view(),
                d * k,
                y.data.at_mut(off * k),
                top_axis * k,
                false,
            );
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let top_axis = io.top(0).shape()[self.axis];
        let k = self.input_size;
        for (i, (d, off)) in self.extents(io).into_iter().enumerate() {
            if !propagate_down[i] {
                continue;
            }
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(i)])?;
            cx.be.copy_blocks(
                self.num_concats,
                d * k,
                y.diff.at(off * k),
                top_axis * k,
                x.diff.view_mut(),
                d * k,
                false,
            );
        }
        Ok(())
    }
}
