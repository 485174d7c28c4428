//! Reshape: the same values under a new shape. `reshape_param.shape`
//! replaces the bottom axes `[start, end)` chosen by `axis`/`num_axes`; a 0
//! copies the bottom dim at that position, one −1 is inferred. A copy here
//! (Caffe shares data and diff).
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;

#[derive(Debug)]
pub struct Reshape {
    dims: Vec<i64>,
    axis: i32,
    num_axes: i32,
}

impl Reshape {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.reshape_param.clone().unwrap_or_default();
        let dims = p.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
        if let Some(d) = dims.iter().find(|&&d| d < -1) {
            return Err(layer_err!(
                "reshape_param.shape has dim {d}; dims must be positive, 0 (copy) or -1 (infer)"
            ));
        }
        if dims.iter().filter(|&&d| d == -1).count() > 1 {
            return Err(layer_err!(
                "new shape contains multiple -1 dims; at most a single (1) value of -1 may be specified"
            ));
        }
        if p.num_axes() < -1 {
            return Err(layer_err!(
                "num_axes must be >= 0, or -1 for all (got {})",
                p.num_axes()
            ));
        }
        Ok(Reshape {
            dims,
            axis: p.axis(),
            num_axes: p.num_axes(),
        })
    }

    /// The top shape for a bottom of shape `b` (Caffe's Reshape rules).
    pub fn top_shape(&self, b: &[usize]) -> Result<Vec<usize>> {
        let n = b.len() as i64;
        let axis = self.axis as i64;
        let start = if axis >= 0 { axis } else { n + axis + 1 };
        if start < 0 || start > n {
            return Err(layer_err!(
                "axis {} out of range for a {n}-D bottom",
                self.axis
            ));
        }
        let start = start as usize;
        let end = if self.num_axes == -1 {
            b.len()
        } else {
            start + self.num_axes as usize
        };
        if end > b.len() {
            return Err(layer_err!(
                "axis {} with num_axes {} goes past the {n} axes of the bottom",
                self.axis,
                self.num_axes
            ));
        }
        let mut top: Vec<usize> = b[..start].to_vec();
        let mut inferred = None;
        let mut known: usize =
            b[..start].iter().product::<usize>() * b[end..].iter().product::<usize>();
        for (i, &d) in self.dims.iter().enumerate() {
            let v = match d {
                0 => {
                    let v = *b.get(start + i).ok_or_else(|| {
                        layer_err!(
                            "new shape contains a 0 at position {i}, but there was no \
                             corresponding bottom axis to copy (bottom shape {b:?})"
                        )
                    })?;
                    known *= v;
                    v
                }
                -1 => {
                    inferred = Some(top.len());
                    0
                }
                d => {
                    known *= d as usize;
                    d as usize
                }
            };
            top.push(v);
        }
        top.extend_from_slice(&b[end..]);
        let count: usize = b.iter().product();
        if let Some(at) = inferred {
            if known == 0 || !count.is_multiple_of(known) {
                return Err(layer_err!(
                    "bottom count ({count}) must be divisible by the product of the specified \
                     dimensions ({known})"
                ));
            }
            top[at] = count / known;
        }
        if top.iter().product::<usize>() != count {
            return Err(layer_err!(
                "output count must match input count: bottom shape {b:?} ({count}) cannot be \
                 reshaped to {top:?}"
            ));
        }
        Ok(top)
    }
}

impl Layer for Reshape {
    fn type_name(&self) -> &'static str {
        "Reshape"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        if io.in_place(0, 0) {
            return Err(layer_err!("Reshape does not allow in-place computation"));
        }
        let top = self.top_shape(io.bottom(0).shape())?;
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
