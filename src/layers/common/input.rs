//! Input: tops whose values the caller writes (deploy nets, `caffe time`,
//! the golden harness); shapes from `input_param`.
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::proto::caffe::LayerParameter;
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Input {
    shapes: Vec<Vec<usize>>,
}

/// A `BlobShape`'s dims, rejecting negative ones.
pub(super) fn dims(s: &crate::proto::caffe::BlobShape) -> Result<Vec<usize>> {
    s.dim
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| layer_err!("negative dimension {d} in shape {:?}", s.dim))
        })
        .collect()
}

impl Input {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let shapes = lp
            .input_param
            .as_ref()
            .map(|p| p.shape.iter().map(dims).collect::<Result<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        Ok(Input { shapes })
    }
}

impl Layer for Input {
    fn type_name(&self) -> &'static str {
        "Input"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(0),
            max_bottoms: Some(0),
            min_tops: Some(1),
            max_tops: None,
            equal_bottom_top: false,
        }
    }
    fn setup(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        let nt = io.n_tops();
        let ns = self.shapes.len();
        if ns > 1 && ns != nt {
            return Err(layer_err!(
                "define either no shape, one shape, or one shape per top ({ns} shapes, {nt} tops)"
            ));
        }
        if ns > 0 {
            for t in 0..nt {
                let s = &self.shapes[if ns == 1 { 0 } else { t }];
                io.top_mut(t).reshape(s)?;
            }
        }
        Ok(Vec::new())
    }
    // The caller owns the tops' shapes and values after setup.
    fn reshape(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<()> {
        Ok(())
    }
    fn forward(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<()> {
        Ok(())
    }
}
