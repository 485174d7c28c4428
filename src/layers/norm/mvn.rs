//! MVN (mean-variance normalization): per (n, c) over H·W, or per n over
//! C·H·W with `across_channels`, `y = x − mean`, then with
//! `normalize_variance` `y /= std + eps` (biased std; eps added to the std,
//! outside the square root, as Caffe does). Caffe reshapes the top to the
//! bottom's legacy 4-D shape (N, C, H, W), so a 2-D bottom gives an
//! (N, C, 1, 1) top; so does this layer.
use crate::backend::{Binary, Unary};
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::Blob;

/// Caffe takes the square root with `powx(v, 0.5)`.
const SQRT: Unary = Unary::Power {
    power: 0.5,
    scale: 1.0,
    shift: 0.0,
};

#[derive(Debug)]
pub struct Mvn {
    normalize_variance: bool,
    across_channels: bool,
    eps: f32,
    /// Per-group mean, then scratch for the backward reductions.
    mean: Blob,
    /// Per-group std + eps.
    std: Blob,
    /// The normalised output (later in-place layers may overwrite the top);
    /// its diff holds a copy of the top diff when running in place.
    y_norm: Blob,
}

impl Mvn {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.mvn_param.unwrap_or_default();
        let eps = p.eps();
        if eps.is_nan() || eps < 0.0 {
            return Err(layer_err!("eps must be non-negative, got {eps}"));
        }
        Ok(Mvn {
            normalize_variance: p.normalize_variance(),
            across_channels: p.across_channels(),
            eps,
            mean: Blob::default(),
            std: Blob::default(),
            y_norm: Blob::default(),
        })
    }

    /// The legacy (N, C, H, W) shape Caffe gives the top.
    fn legacy_shape(shape: &[usize]) -> Result<[usize; 4]> {
        if shape.len() > 4 {
            return Err(layer_err!(
                "takes bottoms with at most 4 axes (N, C, H, W), got shape {shape:?}"
            ));
        }
        let d = |i: usize| shape.get(i).copied().unwrap_or(1);
        Ok([d(0), d(1), d(2), d(3)])
    }

    /// `(groups, dim)`: the normalised groups and their size.
    fn groups(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let [n, c, h, w] = Self::legacy_shape(shape)?;
        Ok(if self.across_channels {
            (n, c * h * w)
        } else {
            (n * c, h * w)
        })
    }
}

impl Layer for Mvn {
    fn type_name(&self) -> &'static str {
        "MVN"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        let shape = io.bottom(0).shape().to_vec();
        let (groups, _) = self.groups(&shape)?;
        self.mean = Blob::new(&*cx.be, &[groups]);
        self.std = Blob::new(&*cx.be, &[groups]);
        self.y_norm = Blob::new(&*cx.be, &shape);
        Ok(Vec::new())
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let legacy = Self::legacy_shape(&shape)?;
        let (groups, _) = self.groups(&shape)?;
        if !io.in_place(0, 0) {
            io.top_mut(0).reshape(&legacy)?;
        }
        self.mean.reshape(&[groups])?;
        self.std.reshape(&[groups])?;
        self.y_norm.reshape(&shape)?;
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let be = cx.be.as_ref();
        let (g, dim) = self.groups(io.bottom(0).shape())?;
        let n = g * dim;
        let inv_dim = (1.0 / dim.max(1) as f64) as f32;
        be.channel_sum(
            1,
            g,
            dim,
            inv_dim,
            io.bottom(0).data.view(),
            0.0,
            self.mean.data.view_mut(),
        );
        if io.in_place(0, 0) {
            let y = io.top_mut(0);
            be.channel_broadcast_inplace(
                Binary::Sub,
                1,
                g,
                dim,
                self.mean.data.view(),
                y.data.view_mut(),
            );
        } else {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
            be.channel_broadcast(
                Binary::Sub,
                1,
                g,
                dim,
                x.data.view(),
                self.mean.data.view(),
                y.data.view_mut(),
            );
        }
        if self.normalize_variance {
            let y = &mut io.top_mut(0).data;
            be.channel_dot(
                1,
                g,
                dim,
                inv_dim,
                y.view(),
                y.view(),
                0.0,
                self.std.data.view_mut(),
            );
            be.unary_inplace(SQRT, g, self.std.data.view_mut());
            be.add_scalar(g, self.eps, self.std.data.view_mut());
            be.channel_broadcast_inplace(
                Binary::Div,
                1,
                g,
                dim,
                self.std.data.view(),
                y.view_mut(),
            );
            be.copy(n, y.view(), self.y_norm.data.view_mut());
        }
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let be = cx.be.as_ref();
        let (g, dim) = self.groups(io.bottom(0).shape())?;
        let n = g * dim;
        let inv_dim = (1.0 / dim.max(1) as f64) as f32;
        let in_place = io.in_place(0, 0);
        if !self.normalize_variance {
            // dx = dy − mean(dy)
            let top = &io.top(0).diff;
            be.channel_sum(
                1,
                g,
                dim,
                inv_dim,
                top.view(),
                0.0,
                self.mean.data.view_mut(),
            );
            if in_place {
                let d = &mut io.top_mut(0).diff;
                be.channel_broadcast_inplace(
                    Binary::Sub,
                    1,
                    g,
                    dim,
                    self.mean.data.view(),
                    d.view_mut(),
                );
            } else {
                let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
                be.channel_broadcast(
                    Binary::Sub,
                    1,
                    g,
                    dim,
                    y.diff.view(),
                    self.mean.data.view(),
                    x.diff.view_mut(),
                );
            }
            return Ok(());
        }
        // dx = (dy − mean(dy) − mean(dy·y)·y) / (std + eps), Caffe's form.
        if in_place {
            // dy and dx share one buffer: read dy from a copy.
            be.copy(n, io.top(0).diff.view(), self.y_norm.diff.view_mut());
        }
        let ([y], [x]) = if in_place {
            // Only the bottom diff is written; dy comes from y_norm.
            let b = io.bottom_mut(0);
            ([&self.y_norm], [b])
        } else {
            io.split([Slot::T(0)], [Slot::B(0)])?
        };
        let dy = y.diff.view();
        let y_norm = self.y_norm.data.view();
        let mut dx = x.diff.view_mut();
        let scratch = &mut self.mean.data;
        be.channel_dot(1, g, dim, 1.0, y_norm, dy, 0.0, scratch.view_mut());
        be.channel_broadcast(Binary::Mul, 1, g, dim, y_norm, scratch.view(), dx.rb());
        be.channel_sum(1, g, dim, 1.0, dy, 0.0, scratch.view_mut());
        be.channel_broadcast_inplace(Binary::Add, 1, g, dim, scratch.view(), dx.rb());
        be.axpby(n, 1.0, dy, -inv_dim, dx.rb());
        be.channel_broadcast_inplace(Binary::Div, 1, g, dim, self.std.data.view(), dx);
        Ok(())
    }
}
