//! BatchNorm: `y = (x − μ_c) / sqrt(σ²_c + eps)` per channel (axis 1), with
//! statistics over every other axis. No affine part (Caffe pairs it with a
//! Scale layer).
//!
//! Blobs (all zero at setup, never touched by the solver: the net gives
//! them `lr_mult: 0`): [0] running sum of means, [1] running sum of
//! variances, [2] the normalising factor `s`. In training mode every forward
//! updates `s ← maf·s + 1`, `[0] ← μ + maf·[0]`, `[1] ← (m/(m−1))·σ² +
//! maf·[1]` (σ² biased, corrected here). With global statistics μ = [0]/s
//! and σ² = [1]/s (0 when s = 0), and nothing is updated.
use crate::backend::{Backend, Binary, Buffer, Unary, View, ViewMut};
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{LayerParameter, Phase};
use crate::tensor::Blob;

#[derive(Debug)]
pub struct BatchNorm {
    /// As given; unset means "global statistics in TEST only".
    use_global_stats: Option<bool>,
    /// Resolved at setup from the layer's phase.
    global: bool,
    moving_average_fraction: f32,
    eps: f32,
    channels: usize,
    /// Per-channel mean, then scratch for the backward reductions.
    mean: Blob,
    /// Per-channel variance, then sqrt(variance + eps) for the rest of the step.
    std: Blob,
    /// The normalised output (later in-place layers may overwrite the top);
    /// its diff holds a copy of the top diff when running in place.
    x_norm: Blob,
}

impl BatchNorm {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.batch_norm_param.unwrap_or_default();
        let eps = p.eps();
        if eps.is_nan() || eps < 0.0 {
            return Err(layer_err!("eps must be non-negative, got {eps}"));
        }
        Ok(BatchNorm {
            use_global_stats: p.use_global_stats,
            global: false,
            moving_average_fraction: p.moving_average_fraction(),
            eps,
            channels: 0,
            mean: Blob::default(),
            std: Blob::default(),
            x_norm: Blob::default(),
        })
    }

    /// Caffe's channel count: `shape[1]`, or 1 for a 1-D bottom.
    fn channels_of(shape: &[usize]) -> Result<usize> {
        match shape.len() {
            0 => Err(layer_err!("needs a bottom with at least 1 axis")),
            1 => Ok(1),
            _ => Ok(shape[1]),
        }
    }

    /// `(num, channels, spatial)` of the bottom.
    fn dims(&self, shape: &[usize]) -> (usize, usize, usize) {
        let num = shape[0];
        let count: usize = shape.iter().product();
        let c = self.channels;
        let spatial = count.checked_div(num * c).unwrap_or(0);
        (num, c, spatial)
    }

    /// Whether this layer normalises with its stored statistics.
    pub fn uses_global_stats(&self) -> bool {
        self.global
    }
}

impl Layer for BatchNorm {
    fn type_name(&self) -> &'static str {
        "BatchNorm"
    }
    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }
    fn allows_in_place(&self) -> bool {
        true
    }
    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        self.global = self.use_global_stats.unwrap_or(cx.phase == Phase::Test);
        let shape = io.bottom(0).shape().to_vec();
        self.channels = Self::channels_of(&shape)?;
        let c = self.channels;
        self.mean = Blob::new(&*cx.be, &[c]);
        self.std = Blob::new(&*cx.be, &[c]);
        self.x_norm = Blob::new(&*cx.be, &shape);
        Ok(vec![
            Blob::new(&*cx.be, &[c]),
            Blob::new(&*cx.be, &[c]),
            Blob::new(&*cx.be, &[1]),
        ])
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let c = Self::channels_of(&shape)?;
        if c != self.channels {
            return Err(layer_err!(
                "bottom shape {shape:?} has {c} channels; the layer was set up for {}",
                self.channels
            ));
        }
        for (j, want) in [(0, c), (1, c), (2, 1)] {
            if io.param(j).count() != want {
                return Err(layer_err!(
                    "blob {j} has {} values, expected {want}",
                    io.param(j).count()
                ));
            }
        }
        if !io.in_place(0, 0) {
            io.top_mut(0).reshape(&shape)?;
        }
        self.x_norm.reshape(&shape)?;
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let be = cx.be.as_ref();
        let (num, c, sp) = self.dims(io.bottom(0).shape());
        let n = num * c * sp;
        if !io.in_place(0, 0) {
            let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
            be.copy(n, x.data.view(), y.data.view_mut());
        }
        let inv_m = (1.0 / (num * sp).max(1) as f64) as f32;
        if self.global {
            let ([s, mean_sum, var_sum], []) =
                io.split([Slot::P(2), Slot::P(0), Slot::P(1)], [])?;
            be.scale_by_inverse(
                c,
                s.data.view(),
                mean_sum.data.view(),
                self.mean.data.view_mut(),
            );
            be.scale_by_inverse(
                c,
                s.data.view(),
                var_sum.data.view(),
                self.std.data.view_mut(),
            );
        } else {
            let x = &io.top(0).data;
            be.channel_sum(num, c, sp, inv_m, x.view(), 0.0, self.mean.data.view_mut());
        }
        let y = &mut io.top_mut(0).data;
        be.channel_broadcast_inplace(Binary::Sub, num, c, sp, self.mean.data.view(), y.view_mut());
        if !self.global {
            // The biased variance of this batch.
            be.channel_dot(
                num,
                c,
                sp,
                inv_m,
                y.view(),
                y.view(),
                0.0,
                self.std.data.view_mut(),
            );
        }
        if !self.global {
            // The running sums.
            let maf = self.moving_average_fraction;
            let factor = io.param_mut(2);
            be.scal(1, maf, factor.data.view_mut());
            be.add_scalar(1, 1.0, factor.data.view_mut());
            be.axpby(
                c,
                1.0,
                self.mean.data.view(),
                maf,
                io.param_mut(0).data.view_mut(),
            );
            let m = n / c.max(1);
            let correction = if m > 1 {
                m as f32 / (m - 1) as f32
            } else {
                1.0
            };
            be.axpby(
                c,
                correction,
                self.std.data.view(),
                maf,
                io.param_mut(1).data.view_mut(),
            );
        }
        be.add_scalar(c, self.eps, self.std.data.view_mut());
        be.unary_inplace(Unary::Sqrt, c, self.std.data.view_mut());
        let y = &mut io.top_mut(0).data;
        be.channel_broadcast_inplace(Binary::Div, num, c, sp, self.std.data.view(), y.view_mut());
        be.copy(n, y.view(), self.x_norm.data.view_mut());
        Ok(())
    }
    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down[0] {
            return Ok(());
        }
        let be = cx.be.as_ref();
        let dims = self.dims(io.bottom(0).shape());
        let n = dims.0 * dims.1 * dims.2;
        if io.in_place(0, 0) {
            // dy and dx share one buffer: read dy from a copy.
            be.copy(n, io.top(0).diff.view(), self.x_norm.diff.view_mut());
            let dx = &mut io.bottom_mut(0).diff;
            bn_grad(
                be,
                dims,
                self.global,
                &self.x_norm.data,
                &self.std.data,
                &mut self.mean.data,
                self.x_norm.diff.view(),
                dx.view_mut(),
            );
        } else {
            let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
            bn_grad(
                be,
                dims,
                self.global,
                &self.x_norm.data,
                &self.std.data,
                &mut self.mean.data,
                y.diff.view(),
                x.diff.view_mut(),
            );
        }
        Ok(())
    }
}

/// `dx = (dy − mean(dy) − mean(dy·x̂)·x̂) / std` per channel (means over
/// N·spatial), or `dy / std` with global statistics. `scratch` holds C values.
#[allow(clippy::too_many_arguments)]
fn bn_grad(
    be: &dyn Backend,
    (num, c, sp): (usize, usize, usize),
    global: bool,
    x_norm: &Buffer,
    std: &Buffer,
    scratch: &mut Buffer,
    dy: View,
    mut dx: ViewMut,
) {
    let n = num * c * sp;
    if global {
        be.channel_broadcast(Binary::Div, num, c, sp, dy, std.view(), dx);
        return;
    }
    be.channel_dot(num, c, sp, 1.0, x_norm.view(), dy, 0.0, scratch.view_mut());
    be.channel_broadcast(
        Binary::Mul,
        num,
        c,
        sp,
        x_norm.view(),
        scratch.view(),
        dx.rb(),
    );
    be.channel_sum(num, c, sp, 1.0, dy, 0.0, scratch.view_mut());
    be.channel_broadcast_inplace(Binary::Add, num, c, sp, scratch.view(), dx.rb());
    let inv_m = (-1.0 / (num * sp).max(1) as f64) as f32;
    be.axpby(n, 1.0, dy, inv_m, dx.rb());
    be.channel_broadcast_inplace(Binary::Div, num, c, sp, std.view(), dx);
}
