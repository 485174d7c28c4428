//! Slice: cuts its bottom along one axis into consecutive pieces, at
//! `slice_point`s or into equal parts. A copy (Caffe shares memory when there
//! is a single top).
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;

#[derive(Debug)]
pub struct Slice {
    axis: i32,
    /// Deprecated `slice_dim` (non-negative only), used when given.
    slice_dim: Option<u32>,
    points: Vec<usize>,
    /// Resolved at reshape: count before the axis, the axis length, count after.
    num_slices: usize,
    bottom_dim: usize,
    slice_size: usize,
    /// Per top: its length along the axis.
    lens: Vec<usize>,
}

impl Slice {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.slice_param.clone().unwrap_or_default();
        if p.slice_dim.is_some() && p.axis.is_some() {
            return Err(layer_err!(
                "either axis or slice_dim should be specified; not both"
            ));
        }
        let mut prev = 0;
        for (i, &pt) in p.slice_point.iter().enumerate() {
            if i > 0 && pt <= prev {
                return Err(layer_err!(
                    "slice_point values must be strictly increasing ({:?})",
                    p.slice_point
                ));
            }
            prev = pt;
        }
        if p.slice_point.first() == Some(&0) {
            return Err(layer_err!(
                "slice_point must be positive ({:?})",
                p.slice_point
            ));
        }
        Ok(Slice {
            axis: p.axis(),
            slice_dim: p.slice_dim,
            points: p.slice_point.iter().map(|&v| v as usize).collect(),
            num_slices: 0,
            bottom_dim: 0,
            slice_size: 0,
            lens: Vec::new(),
        })
    }
}

impl Layer for Slice {
    fn type_name(&self) -> &'static str {
        "Slice"
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
        let axis = match self.slice_dim {
            Some(d) if (d as usize) < shape.len() => d as usize,
            Some(d) => {
                return Err(layer_err!(
                    "slice_dim {d} out of range for a {}-D bottom",
                    shape.len()
                ))
            }
            None => canonical_axis(self.axis, shape.len())?,
        };
        let n_tops = io.n_tops();
        let dim = shape[axis];
        self.lens = if self.points.is_empty() {
            if !dim.is_multiple_of(n_tops) {
                return Err(layer_err!(
                    "number of top blobs ({n_tops}) should evenly divide input slice axis ({dim})"
                ));
            }
            vec![dim / n_tops; n_tops]
        } else {
            if self.points.len() != n_tops - 1 {
                return Err(layer_err!(
                    "{} slice_point(s) given for {n_tops} tops (need {})",
                    self.points.len(),
                    n_tops - 1
                ));
            }
            let last = *self.points.last().unwrap_or(&0);
            if n_tops > dim || last > dim {
                return Err(layer_err!(
                    "slice points {:?} do not fit axis {axis} of bottom shape {:?}",
                    self.points,
                    shape
                ));
            }
            let mut prev = 0;
            let mut lens: Vec<usize> = self
                .points
                .iter()
                .map(|&p| {
                    let l = p - prev;
                    prev = p;
                    l
                })
                .collect();
            lens.push(dim - prev);
            lens
        };
        self.num_slices = shape[..axis].iter().product();
        self.bottom_dim = dim;
        self.slice_size = shape[axis + 1..].iter().product();
        for (t, &len) in self.lens.iter().enumerate() {
            let mut s = shape.clone();
            s[axis] = len;
            io.top_mut(t).reshape(&s)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let mut offset = 0;
        for t in 0..io.n_tops() {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(t)])?;
            let len = self.lens[t] * self.slice_size;
            cx.be.copy_blocks(
                self.num_slices,
                len,
                x.data.at(offset * self.slice_size),
                self.bottom_dim * self.slice_size,
                y.data.view_mut(),
                len,
                false,
            );
            offset += self.lens[t];
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let mut offset = 0;
        for t in 0..io.n_tops() {
            let ([y], [x]) = io.split([Slot::T(t)], [Slot::B(0)])?;
            let len = self.lens[t] * self.slice_size;
            cx.be.copy_blocks(
                self.num_slices,
                len,
                y.diff.view(),
                len,
                x.diff.at_mut(offset * self.slice_size),
                self.bottom_dim * self.slice_size,
                false,
            );
            offset += self.lens[t];
        }
        Ok(())
    }
}
