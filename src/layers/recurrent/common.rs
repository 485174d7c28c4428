//! What LSTM and RNN share (Caffe's RecurrentLayer): the recurrent_param,
//! the bottom/top layout, shape checks, learnable-blob creation and the
//! hidden state carried from one forward call to the next.
//!
//! Bottoms: `x (T, N, …)`, `cont (T, N)`, optional `x_static (N, …)`, then
//! with `expose_hidden` the initial states (`(1, N, H)` each). Tops: the
//! output `(T, N, H)`, then with `expose_hidden` the final states.
use crate::backend::{Backend, Buffer};
use crate::error::Result;
use crate::fillers::fill;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::shape::shape_string;
use crate::tensor::Blob;

/// Parsed recurrent_param plus the architecture's number of state blobs.
#[derive(Debug, Clone)]
pub struct RecurrentConfig {
    /// H: hidden (and output) units.
    pub num_output: usize,
    pub weight_filler: FillerParameter,
    pub bias_filler: FillerParameter,
    pub expose_hidden: bool,
    /// State blobs per step: 2 for LSTM (h, c), 1 for RNN (h).
    pub num_recur: usize,
}

impl RecurrentConfig {
    pub fn new(lp: &LayerParameter, num_recur: usize) -> Result<Self> {
        let p = lp.recurrent_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            return Err(layer_err!("recurrent_param.num_output must be positive"));
        }
        Ok(RecurrentConfig {
            num_output: p.num_output() as usize,
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            expose_hidden: p.expose_hidden(),
            num_recur,
        })
    }

    /// State bottoms (and tops) added by `expose_hidden`.
    pub fn num_exposed(&self) -> usize {
        if self.expose_hidden {
            self.num_recur
        } else {
            0
        }
    }

    /// Caffe's RecurrentLayer counts: 2 bottoms (+ exposed states), one
    /// more for a static input; one top (+ exposed states).
    pub fn arity(&self) -> Arity {
        let min = 2 + self.num_exposed();
        Arity {
            min_bottoms: Some(min),
            max_bottoms: Some(min + 1),
            min_tops: Some(1 + self.num_exposed()),
            max_tops: Some(1 + self.num_exposed()),
            equal_bottom_top: false,
        }
    }

    /// The layer's geometry from its bottoms at setup.
    pub fn dims(&self, io: &Io) -> Result<Dims> {
        let static_input = io.n_bottoms() > 2 + self.num_exposed();
        let x = io.bottom(0);
        if x.num_axes() < 3 {
            return Err(layer_err!(
                "bottom[0] must have at least 3 axes (#timesteps, #streams, features...), \
                 got shape {}",
                x.shape_string()
            ));
        }
        if x.shape()[0] == 0 {
            return Err(layer_err!(
                "bottom[0] must hold at least one timestep, got shape {}",
                x.shape_string()
            ));
        }
        let mut d = Dims {
            t: x.shape()[0],
            n: x.shape()[1],
            input_dim: x.count_from(2),
            static_dim: 0,
            static_input,
        };
        if static_input {
            let s = io.bottom(2);
            if s.num_axes() < 2 {
                return Err(layer_err!(
                    "bottom[2] (static input) must have at least 2 axes (#streams, \
                     features...), got shape {}",
                    s.shape_string()
                ));
            }
            d.static_dim = s.count_from(1);
        }
        self.check(io, &mut d)?;
        Ok(d)
    }

    /// Caffe's Reshape checks: T fixed, cont `(T, N)`, static input `(N, …)`
    /// of the setup's feature size, exposed states `(1, N, H)`. Updates N.
    pub fn check(&self, io: &Io, d: &mut Dims) -> Result<()> {
        let x = io.bottom(0);
        if x.num_axes() < 3 {
            return Err(layer_err!(
                "bottom[0] must have at least 3 axes (#timesteps, #streams, features...), \
                 got shape {}",
                x.shape_string()
            ));
        }
        if x.shape()[0] != d.t {
            return Err(layer_err!(
                "input number of timesteps changed: {} at setup, now {}",
                d.t,
                x.shape()[0]
            ));
        }
        d.n = x.shape()[1];
        if x.count_from(2) != d.input_dim {
            return Err(layer_err!(
                "input size changed: {} features per step at setup, now {} (shape {})",
                d.input_dim,
                x.count_from(2),
                x.shape_string()
            ));
        }
        let cont = io.bottom(1);
        if cont.shape() != [d.t, d.n] {
            return Err(layer_err!(
                "bottom[1] (sequence continuation indicators) must have shape {} \
                 (#timesteps, #streams), got {}",
                shape_string(&[d.t, d.n]),
                cont.shape_string()
            ));
        }
        if d.static_input {
            let s = io.bottom(2);
            if s.num_axes() < 2 || s.shape()[0] != d.n || s.count_from(1) != d.static_dim {
                return Err(layer_err!(
                    "bottom[2] (static input) must have shape ({}, ...) with {} features, got {}",
                    d.n,
                    d.static_dim,
                    s.shape_string()
                ));
            }
        }
        let want = [1, d.n, self.num_output];
        for i in 0..self.num_exposed() {
            let b = d.hidden_bottom(i);
            if io.bottom(b).shape() != want {
                return Err(layer_err!(
                    "bottom[{b}] shape must match hidden state input shape: {}, got {}",
                    shape_string(&want),
                    io.bottom(b).shape_string()
                ));
            }
        }
        Ok(())
    }

    /// Learnable blobs of the given shapes, each filled by the weight filler
    /// or, where `is_bias`, the bias filler (a missing filler is constant 0).
    pub fn make_params(&self, cx: &mut Ctx, shapes: &[(Vec<usize>, bool)]) -> Result<Vec<Blob>> {
        shapes
            .iter()
            .map(|(s, is_bias)| {
                let mut b = Blob::new(cx.be.as_ref(), s);
                let f = if *is_bias {
                    &self.bias_filler
                } else {
                    &self.weight_filler
                };
                fill(f, &mut b, &mut cx.rng)?;
                Ok(b)
            })
            .collect()
    }
}

/// Check that the learnable blobs (possibly loaded or shared) have the
/// shapes this layer computes with.
pub fn check_param_shapes(io: &Io, names: &[&str], shapes: &[Vec<usize>]) -> Result<()> {
    for (i, (name, want)) in names.iter().zip(shapes).enumerate() {
        if io.param(i).shape() != want.as_slice() {
            return Err(layer_err!(
                "incorrect shape of param {i} ({name}): expected {}, got {}",
                shape_string(want),
                io.param(i).shape_string()
            ));
        }
    }
    Ok(())
}

/// Geometry: T steps of N streams with `input_dim` features per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dims {
    pub t: usize,
    pub n: usize,
    pub input_dim: usize,
    /// Features of the static input (0 without one).
    pub static_dim: usize,
    pub static_input: bool,
}

impl Dims {
    /// Bottom index of exposed state `i` (after x, cont and x_static).
    pub fn hidden_bottom(&self, i: usize) -> usize {
        2 + self.static_input as usize + i
    }
    /// Index of the first param after the input transform (W, b) and the
    /// optional static weight.
    pub fn recur_param(&self) -> usize {
        2 + self.static_input as usize
    }
}

/// `buf` with room for at least `n` values (contents undefined after a
/// reallocation); true when it was reallocated.
pub fn grow(be: &dyn Backend, buf: &mut Buffer, n: usize) -> bool {
    if buf.len() < n {
        *buf = be.alloc(n);
        true
    } else {
        false
    }
}

/// The state carried from the last step of one forward call to the first
/// step of the next (without `expose_hidden`): Caffe copies `h_T` (and
/// `c_T`) into `h_0` (and `c_0`) before each forward. The blobs keep
/// Caffe's capacity rule: when the batch grows past what they held, they
/// are reallocated and the state restarts at zero.
#[derive(Debug, Default)]
pub struct Carry {
    pub bufs: Vec<Buffer>,
    capacity: usize,
}

impl Carry {
    pub fn fit(&mut self, be: &dyn Backend, blobs: usize, count: usize) {
        if self.bufs.len() != blobs || count > self.capacity {
            self.bufs = (0..blobs).map(|_| be.alloc(count)).collect();
            self.capacity = count;
        }
    }
}
