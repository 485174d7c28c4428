//! Flatten: merges axes `[axis, end_axis]` into one (a copy: blobs do not
//! share memory here, unlike Caffe).
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::shape::canonical_axis;

#[derive(Debug)]
pub struct Flatten {
    axis: i32,
    end_axis: i32,
}

impl Flatten {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.flatten_param.unwrap_or_default();
        Ok(Flatten {
            axis: p.axis(),
            end_axis: p.end_axis(),
        })
    }
}

impl Layer for Flatten {
    fn type_name(&self) -> &'static str {
        "Flatten"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        if io.in_place(0, 0) {
            return Err(layer_err!("Flatten does not allow in-place computation"));
        }
        let s = io.bottom(0).shape().to_vec();
        let start = canonical_axis(self.axis, s.len())?;
        let end = canonical_axis(self.end_axis, s.len())?;
        if end < start {
            return Err(layer_err!(
                "end_axis ({}) comes before axis ({}) for bottom shape {:?}",
                self.end_axis,
                self.axis,
                s
            ));
        }
        let mut top = s[..start].to_vec();
        top.push(s[start..=end].iter().product());
        top.extend_from_slice(&s[end + 1..]);
        io.top_mut(0).reshape(&top)
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
        cx.be.copy(x.count(), x.data.view(), y.data.view_mut());
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[0] {
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
            cx.be.copy(x.count(), y.diff.view(), x.diff.view_mut());
        }
        Ok(())
    }
}
