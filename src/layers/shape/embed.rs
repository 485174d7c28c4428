//! Embed: a lookup table. Each input value is an index in `[0, input_dim)`;
//! its output row is `W[index, :] (+ b)`, with `W` of shape
//! `(input_dim, num_output)`. Learns W and b; the indices get no gradient.
use crate::backend::Buffer;
use crate::error::Result;
use crate::fillers::fill;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::Blob;

use super::host_indices;

#[derive(Debug)]
pub struct Embed {
    num_output: usize,
    input_dim: usize,
    bias_term: bool,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
    /// M ones (Caffe's bias multiplier) and the indices of the last forward.
    ones: Buffer,
    ones_len: usize,
    idx: Vec<usize>,
}

impl Embed {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.embed_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            return Err(layer_err!("embed_param.num_output must be positive"));
        }
        if p.input_dim() == 0 {
            return Err(layer_err!("embed_param.input_dim must be positive"));
        }
        Ok(Embed {
            num_output: p.num_output() as usize,
            input_dim: p.input_dim() as usize,
            bias_term: p.bias_term(),
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            ones: Buffer::default(),
            ones_len: 0,
            idx: Vec::new(),
        })
    }
}

impl Layer for Embed {
    fn type_name(&self) -> &'static str {
        "Embed"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn setup(&mut self, cx: &mut Ctx, _io: &mut Io) -> Result<Vec<Blob>> {
        let mut weight = Blob::new(cx.be.as_ref(), &[self.input_dim, self.num_output]);
        fill(&self.weight_filler, &mut weight, &mut cx.rng)?;
        let mut blobs = vec![weight];
        if self.bias_term {
            let mut bias = Blob::new(cx.be.as_ref(), &[self.num_output]);
            fill(&self.bias_filler, &mut bias, &mut cx.rng)?;
            blobs.push(bias);
        }
        Ok(blobs)
    }
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let mut shape = io.bottom(0).shape().to_vec();
        let m = io.bottom(0).count();
        shape.push(self.num_output);
        io.top_mut(0).reshape(&shape)?;
        let want = [self.input_dim, self.num_output];
        if io.param(0).shape() != want {
            return Err(layer_err!(
                "incorrect weight shape: expected {want:?}, got {:?}",
                io.param(0).shape()
            ));
        }
        if self.bias_term {
            if io.param(1).shape() != [self.num_output] {
                return Err(layer_err!(
                    "incorrect bias shape: expected [{}], got {:?}",
                    self.num_output,
                    io.param(1).shape()
                ));
            }
            if self.ones_len < m {
                self.ones = cx.be.alloc(m);
                cx.be.set(m, 1.0, self.ones.view_mut());
                self.ones_len = m;
            }
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let values = io.bottom(0).data_vec();
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| v.fract() != 0.0) {
            return Err(layer_err!("non-integer input {v} at position {i}"));
        }
        self.idx = host_indices(&values, self.input_dim, "input index")?;
        let m = self.idx.len();
        let n = self.num_output;
        if self.bias_term {
            let ([w, b], [y]) = io.split([Slot::P(0), Slot::P(1)], [Slot::T(0)])?;
            cx.be
                .gather_rows(&self.idx, n, w.data.view(), y.data.view_mut());
            // y += ones(M×1) · b(1×N)
            cx.be.gemm(
                false,
                false,
                m,
                n,
                1,
                1.0,
                self.ones.view(),
                b.data.view(),
                1.0,
                y.data.view_mut(),
            );
        } else {
            let ([w], [y]) = io.split([Slot::P(0)], [Slot::T(0)])?;
            cx.be
                .gather_rows(&self.idx, n, w.data.view(), y.data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if propagate_down[0] {
            return Err(layer_err!(
                "cannot backpropagate to the Embed layer's index input"
            ));
        }
        let (m, n) = (self.idx.len(), self.num_output);
        if io.param_propagate_down(0) {
            let ([y], [w]) = io.split([Slot::T(0)], [Slot::P(0)])?;
            cx.be
                .scatter_add_rows(&self.idx, n, y.diff.view(), w.diff.view_mut());
        }
        if self.bias_term && io.param_propagate_down(1) {
            let ([y], [b]) = io.split([Slot::T(0)], [Slot::P(1)])?;
            // db += dyᵀ(N×M) · ones
            cx.be.gemv(
                true,
                m,
                n,
                1.0,
                y.diff.view(),
                self.ones.view(),
                1.0,
                b.diff.view_mut(),
            );
        }
        Ok(())
    }
}
