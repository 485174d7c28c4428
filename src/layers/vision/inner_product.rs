//! InnerProduct (Caffe's InnerProductLayer): `y = x·Wᵀ + b` over the axes
//! from `axis` on, flattened (`y = x·W` with `transpose`).
use crate::backend::Buffer;
use crate::error::Result;
use crate::fillers::fill;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::shape::canonical_axis;
use crate::tensor::Blob;

#[derive(Debug)]
pub struct InnerProduct {
    /// N: outputs per row.
    num_output: usize,
    bias_term: bool,
    axis: i32,
    /// Weight stored (K, N) instead of (N, K).
    transpose: bool,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
    /// K: inputs per row (fixed at setup).
    k: usize,
    /// M: rows (product of the axes before `axis`).
    m: usize,
    /// M ones: Caffe's bias multiplier.
    ones: Buffer,
    ones_len: usize,
}

impl InnerProduct {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.inner_product_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            return Err(layer_err!(
                "inner_product_param.num_output must be positive"
            ));
        }
        Ok(InnerProduct {
            num_output: p.num_output() as usize,
            bias_term: p.bias_term(),
            axis: p.axis(),
            transpose: p.transpose(),
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            k: 0,
            m: 0,
            ones: Buffer::default(),
            ones_len: 0,
        })
    }

    fn weight_shape(&self) -> [usize; 2] {
        if self.transpose {
            [self.k, self.num_output]
        } else {
            [self.num_output, self.k]
        }
    }
}

impl Layer for InnerProduct {
    fn type_name(&self) -> &'static str {
        "InnerProduct"
    }

    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }

    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        let b = io.bottom(0);
        let axis = canonical_axis(self.axis, b.num_axes())?;
        self.k = b.count_from(axis);
        let mut weight = Blob::new(cx.be.as_ref(), &self.weight_shape());
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
        let shape = io.bottom(0).shape().to_vec();
        let axis = canonical_axis(self.axis, shape.len())?;
        let k: usize = shape[axis..].iter().product();
        if k != self.k {
            return Err(layer_err!(
                "input size incompatible with inner product parameters: {k} inputs per row \
                 (shape {shape:?}, axis {axis}), the weights expect {}",
                self.k
            ));
        }
        self.m = shape[..axis].iter().product();
        let mut top_shape = shape[..axis].to_vec();
        top_shape.push(self.num_output);
        io.top_mut(0).reshape(&top_shape)?;
        let want = self.weight_shape();
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
            if self.ones_len < self.m {
                self.ones = cx.be.alloc(self.m);
                cx.be.set(self.m, 1.0, self.ones.view_mut());
                self.ones_len = self.m;
            }
        }
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (m, n, k) = (self.m, self.num_output, self.k);
        let bias_slot = Slot::P(if self.bias_term { 1 } else { 0 });
        let ([x, w, b], [y]) = io.split([Slot::B(0), Slot::P(0), bias_slot], [Slot::T(0)])?;
        cx.be.gemm(
            false,
            !self.transpose,
            m,
            n,
            k,
            1.0,
            x.data.view(),
            w.data.view(),
            0.0,
            y.data.view_mut(),
        );
        if self.bias_term {
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
        }
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let (m, n, k) = (self.m, self.num_output, self.k);
        {
            let ([x, y], [w]) = io.split([Slot::B(0), Slot::T(0)], [Slot::P(0)])?;
            if self.transpose {
                // dW (K×N) += xᵀ·dy
                cx.be.gemm(
                    true,
                    false,
                    k,
                    n,
                    m,
                    1.0,
                    x.data.view(),
                    y.diff.view(),
                    1.0,
                    w.diff.view_mut(),
                );
            } else {
                // dW (N×K) += dyᵀ·x
                cx.be.gemm(
                    true,
                    false,
                    n,
                    k,
                    m,
                    1.0,
                    y.diff.view(),
                    x.data.view(),
                    1.0,
                    w.diff.view_mut(),
                );
            }
        }
        if self.bias_term {
            let ([y], [b]) = io.split([Slot::T(0)], [Slot::P(1)])?;
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
        if propagate_down.first().copied().unwrap_or(false) {
            let ([y, w], [x]) = io.split([Slot::T(0), Slot::P(0)], [Slot::B(0)])?;
            // dx (M×K) = dy·W, or dy·Wᵀ when W is stored K×N.
            cx.be.gemm(
                false,
                self.transpose,
                m,
                k,
                n,
                1.0,
                y.diff.view(),
                w.data.view(),
                0.0,
                x.diff.view_mut(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn golden_cases_match_caffe() {
        for case in ["ip_axis2", "ip_plain", "ip_transpose"] {
            check_golden(case);
        }
    }

    #[test]
    fn shapes_follow_axis() {
        let (_, tops) = run_forward(
            "type: 'InnerProduct' inner_product_param { num_output: 4 axis: -1 }",
            &[&[2, 3, 5]],
        );
        assert_eq!(tops[0].shape(), &[2, 3, 4]);
        let (_, tops) = run_forward(
            "type: 'InnerProduct' inner_product_param { num_output: 4 }",
            &[&[2, 3, 5]],
        );
        assert_eq!(tops[0].shape(), &[2, 4]);
    }

    #[test]
    fn gradients() {
        for body in [
            "type: 'InnerProduct' inner_product_param { num_output: 4 \
             weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.3 } }",
            "type: 'InnerProduct' inner_product_param { num_output: 3 transpose: true axis: 2 \
             weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.3 } }",
            "type: 'InnerProduct' inner_product_param { num_output: 3 bias_term: false \
             weight_filler { type: 'gaussian' std: 0.3 } }",
        ] {
            check_gradients(body, &[&[2, 3, 2, 2]]);
            check_gradients(body, &[&[1, 2, 3, 1]]);
        }
    }

    #[test]
    fn input_size_may_not_change() {
        use crate::layers::Io;
        use crate::tensor::Blob;
        let mut layer =
            make_layer("type: 'InnerProduct' inner_product_param { num_output: 2 }").unwrap();
        let mut arena = random_blobs(&[&[2, 3]], 1);
        let mut cx = cx();
        let params = {
            let mut io = Io::new(&mut arena, &[0], &[], &[]);
            layer.setup(&mut cx, &mut io).unwrap()
        };
        arena.push(Blob::default());
        arena.extend(params);
        arena[0].reshape(&[2, 4]).unwrap();
        let mut io = Io::new(&mut arena, &[0], &[1], &[2, 3]);
        let err = layer.reshape(&mut cx, &mut io).unwrap_err().to_string();
        assert!(err.contains("incompatible"), "{err}");
    }
}
