//! Crop: takes from bottom 0 the window of bottom 1's size (on the axes from
//! `axis` on) at the given offsets. Bottom 1 only supplies the shape.
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;

#[derive(Debug)]
pub struct Crop {
    axis: i32,
    offset: Vec<usize>,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    offsets: Vec<usize>,
}

impl Crop {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.crop_param.clone().unwrap_or_default();
        Ok(Crop {
            axis: p.axis(),
            offset: p.offset.iter().map(|&o| o as usize).collect(),
            in_shape: Vec::new(),
            out_shape: Vec::new(),
            offsets: Vec::new(),
        })
    }
}

impl Layer for Crop {
    fn type_name(&self) -> &'static str {
        "Crop"
    }
    fn arity(&self) -> Arity {
        Arity::exact(2, 1)
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let a = io.bottom(0).shape().to_vec();
        let b = io.bottom(1).shape().to_vec();
        if a.len() != b.len() {
            return Err(layer_err!(
                "input blobs must have the same number of axes (bottom 0 {:?}, bottom 1 {:?})",
                a,
                b
            ));
        }
        let start = canonical_axis(self.axis, a.len())
            .map_err(|_| layer_err!("crop axis {} bigger than input dim {}", self.axis, a.len()))?;
        if self.offset.len() > 1 && start + self.offset.len() != a.len() {
            return Err(layer_err!(
                "number of offset values specified ({}) must be equal to the number of \
                 dimensions following axis ({})",
                self.offset.len(),
                a.len() - start
            ));
        }
        let mut out = a.clone();
        let mut offsets = vec![0; a.len()];
        for i in start..a.len() {
            let off = match self.offset.len() {
                0 => 0,
                1 => self.offset[0],
                _ => self.offset[i - start],
            };
            if a[i] < off + b[i] {
                return Err(layer_err!(
                    "invalid crop parameters in dimension {i}: bottom 0 size {} cannot hold \
                     offset {off} + size {}",
                    a[i],
                    b[i]
                ));
            }
            out[i] = b[i];
            offsets[i] = off;
        }
        io.top_mut(0).reshape(&out)?;
        self.in_shape = a;
        self.out_shape = out;
        self.offsets = offsets;
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
        cx.be.crop_forward(
            &self.in_shape,
            &self.out_shape,
            &self.offsets,
            x.data.view(),
            y.data.view_mut(),
        );
        Ok(())
    }
    /// Bottom 1 gets no gradient (it only gives the shape), as in Caffe.
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        cx.be.set(x.count(), 0.0, x.diff.view_mut());
        cx.be.crop_backward(
            &self.in_shape,
            &self.out_shape,
            &self.offsets,
            y.diff.view(),
            x.diff.view_mut(),
        );
        Ok(())
    }
}
