//! Layers: the `Layer` trait, the `Io` through which a layer reaches its
//! bottoms, tops and learnable blobs, and the registry of layer types.
//!
//! A layer is written once against `backend::Backend` (reached through
//! `Ctx::be`); it never touches device memory directly.
pub mod common;
pub mod data;
pub mod loss;
pub mod neuron;
pub mod norm;
pub mod recurrent;
pub mod registry;
pub mod shape;
pub mod vision;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::backend::{Backend, Buffer};
use crate::error::{Error, Result};
use crate::proto::caffe::Phase;
use crate::tensor::Blob;

pub use registry::{create_layer, layer_types};

/// What a layer may use besides its blobs.
pub struct Ctx {
    pub be: Arc<dyn Backend>,
    /// The layer's phase (its own `phase` field, else the net's).
    pub phase: Phase,
    /// The net's random stream (fillers, dropout masks, random crops):
    /// seeded by the solver's `random_seed` when given.
    pub rng: StdRng,
    /// The seed in force (data layers derive their own streams from it).
    pub seed: u64,
    /// This replica's index and the number of replicas (data sharding).
    pub rank: usize,
    pub world: usize,
    /// Scratch shared by the net's layers (the convolution passes' column
    /// panels, packed weights and weight-gradient partials). Layers run one
    /// at a time and nothing in it outlives one pass, so one buffer of the
    /// largest layer's size replaces one per layer (GoogLeNet's 57
    /// per-layer buffers cost 170 MB of peak memory). Sized in `reshape`
    /// through `reserve_workspace`.
    pub workspace: Buffer,
}

impl Ctx {
    pub fn new(be: Arc<dyn Backend>, phase: Phase, seed: u64) -> Self {
        Ctx {
            be,
            phase,
            rng: StdRng::seed_from_u64(seed),
            seed,
            rank: 0,
            world: 1,
            workspace: Buffer::default(),
        }
    }

    /// Grow the shared workspace to at least `n` values (contents are not
    /// kept: every pass writes what it reads).
    pub fn reserve_workspace(&mut self, n: usize) {
        if self.workspace.len() < n {
            // Free the old buffer first: old and new are never both held.
            self.workspace = Buffer::default();
            self.workspace = self.be.alloc(n);
        }
    }
}

/// Blob-count rules (Caffe's ExactNum/MinNum/MaxNum Bottom/Top Blobs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Arity {
    pub min_bottoms: Option<usize>,
    pub max_bottoms: Option<usize>,
    pub min_tops: Option<usize>,
    pub max_tops: Option<usize>,
    /// Caffe's EqualNumBottomTopBlobs.
    pub equal_bottom_top: bool,
}

impl Arity {
    pub fn exact(bottoms: usize, tops: usize) -> Self {
        Arity {
            min_bottoms: Some(bottoms),
            max_bottoms: Some(bottoms),
            min_tops: Some(tops),
            max_tops: Some(tops),
            equal_bottom_top: false,
        }
    }
    pub fn check(&self, bottoms: usize, tops: usize) -> Result<()> {
        let range = |lo: Option<usize>, hi: Option<usize>| match (lo, hi) {
            (Some(a), Some(b)) if a == b => format!("exactly {a}"),
            (Some(a), Some(b)) => format!("{a} to {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => "any number of".into(),
        };
        let ok = |n: usize, lo: Option<usize>, hi: Option<usize>| {
            lo.is_none_or(|l| n >= l) && hi.is_none_or(|h| n <= h)
        };
        if !ok(bottoms, self.min_bottoms, self.max_bottoms) {
            return Err(Error::layer(format!(
                "takes {} bottom blob(s), {bottoms} given",
                range(self.min_bottoms, self.max_bottoms)
            )));
        }
        if !ok(tops, self.min_tops, self.max_tops) {
            return Err(Error::layer(format!(
                "produces {} top blob(s), {tops} given",
                range(self.min_tops, self.max_tops)
            )));
        }
        if self.equal_bottom_top && bottoms != tops {
            return Err(Error::layer(format!(
                "needs as many tops as bottoms ({bottoms} bottoms, {tops} tops)"
            )));
        }
        Ok(())
    }
}

/// One layer. The Net calls, in order: `setup` once (create learnable
/// blobs), then `reshape` before every `forward`, and `backward` when the
/// net needs gradients. Errors are wrapped by the Net with the layer's name
/// and type, so layers only say what is wrong (`layer_err!`).
pub trait Layer: Send {
    /// The prototxt `type` string.
    fn type_name(&self) -> &'static str;
    fn arity(&self) -> Arity;
    /// Caffe's LayerSetUp: read bottom shapes (`io.bottom`) and return the
    /// learnable blobs, filled by their fillers (empty if none). The Net
    /// replaces them by shared or loaded values where that applies.
    fn setup(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<Vec<Blob>> {
        Ok(Vec::new())
    }
    /// Shape the tops (and internal buffers) from the bottoms.
    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()>;
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()>;
    /// Gradients: accumulate into param diffs, overwrite bottom diffs where
    /// `propagate_down[i]`.
    fn backward(&mut self, _cx: &mut Ctx, _io: &mut Io, _propagate_down: &[bool]) -> Result<()> {
        Ok(())
    }
    /// Caffe's AllowForceBackward (false for e.g. labels of a loss).
    fn allow_force_backward(&self, _bottom: usize) -> bool {
        true
    }
    /// Whether `top[i]` may be the same blob as `bottom[i]`.
    fn allows_in_place(&self) -> bool {
        false
    }
    /// Data layers: where their stream stands after the last batch the net
    /// consumed (rcaffe saves it with snapshots, see `solver::datapos`);
    /// `None` for layers without one.
    fn data_position(&self) -> Option<serde_json::Value> {
        None
    }
    /// Continue from a position `data_position` gave.
    fn restore_data_position(&mut self, _pos: &serde_json::Value) -> Result<()> {
        Err(Error::layer("this layer has no data position to restore"))
    }
    /// Prefetching layers: the batches handed to the net and the time the
    /// net waited for them.
    fn data_wait(&self) -> Option<crate::data::WaitStats> {
        None
    }
}

/// Which blob of a layer: bottom, top or learnable parameter, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    B(usize),
    T(usize),
    P(usize),
}

/// A layer's window onto the net's blobs. Bottoms, tops and params are
/// indices into one arena, so in-place layers (top == bottom) and shared
/// parameters are the same blob, as in Caffe.
pub struct Io<'a> {
    blobs: &'a mut [Blob],
    bottoms: &'a [usize],
    tops: &'a [usize],
    params: &'a [usize],
    param_propagate_down: Option<&'a [bool]>,
}

impl<'a> Io<'a> {
    pub fn new(
        blobs: &'a mut [Blob],
        bottoms: &'a [usize],
        tops: &'a [usize],
        params: &'a [usize],
    ) -> Self {
        Io {
            blobs,
            bottoms,
            tops,
            params,
            param_propagate_down: None,
        }
    }
    /// Say which param gradients backward must compute (Caffe's
    /// param_propagate_down: false for `lr_mult: 0`); all by default.
    pub fn with_param_propagate_down(mut self, flags: &'a [bool]) -> Self {
        self.param_propagate_down = Some(flags);
        self
    }
    /// Should backward compute the gradient of param `i`?
    pub fn param_propagate_down(&self, i: usize) -> bool {
        self.param_propagate_down
            .is_none_or(|f| f.get(i).copied().unwrap_or(true))
    }
    pub fn n_bottoms(&self) -> usize {
        self.bottoms.len()
    }
    pub fn n_tops(&self) -> usize {
        self.tops.len()
    }
    pub fn n_params(&self) -> usize {
        self.params.len()
    }
    fn id(&self, s: Slot) -> usize {
        match s {
            Slot::B(i) => self.bottoms[i],
            Slot::T(i) => self.tops[i],
            Slot::P(i) => self.params[i],
        }
    }
    pub fn get(&self, s: Slot) -> &Blob {
        &self.blobs[self.id(s)]
    }
    pub fn get_mut(&mut self, s: Slot) -> &mut Blob {
        let id = self.id(s);
        &mut self.blobs[id]
    }
    pub fn bottom(&self, i: usize) -> &Blob {
        self.get(Slot::B(i))
    }
    pub fn bottom_mut(&mut self, i: usize) -> &mut Blob {
        self.get_mut(Slot::B(i))
    }
    pub fn top(&self, i: usize) -> &Blob {
        self.get(Slot::T(i))
    }
    pub fn top_mut(&mut self, i: usize) -> &mut Blob {
        self.get_mut(Slot::T(i))
    }
    pub fn param(&self, i: usize) -> &Blob {
        self.get(Slot::P(i))
    }
    pub fn param_mut(&mut self, i: usize) -> &mut Blob {
        self.get_mut(Slot::P(i))
    }
    /// Is top `t` the same blob as bottom `b` (in-place execution)?
    pub fn in_place(&self, b: usize, t: usize) -> bool {
        self.bottoms.get(b).is_some() && self.bottoms.get(b) == self.tops.get(t)
    }
    /// Shapes of all bottoms (copied, so the caller can then borrow mutably).
    pub fn bottom_shapes(&self) -> Vec<Vec<usize>> {
        self.bottoms
            .iter()
            .map(|&i| self.blobs[i].shape().to_vec())
            .collect()
    }

    /// Borrow several blobs at once: `R` read-only and `W` writable. Writable
    /// slots must be distinct from every other slot (use `in_place` first for
    /// in-place layers); reads may repeat.
    pub fn split<const R: usize, const W: usize>(
        &mut self,
        reads: [Slot; R],
        writes: [Slot; W],
    ) -> Result<([&Blob; R], [&mut Blob; W])> {
        let rid = reads.map(|s| self.id(s));
        let wid = writes.map(|s| self.id(s));
        for (i, w) in wid.iter().enumerate() {
            if rid.contains(w) || wid[..i].contains(w) {
                return Err(Error::layer(format!(
                    "blob {:?} is used twice in one operation (in-place use this layer does not support)",
                    writes[i]
                )));
            }
        }
        let base = self.blobs.as_mut_ptr();
        // SAFETY: every writable id is distinct from all other ids (checked
        // above) and in bounds (indexing in `id` would have panicked
        // otherwise... so check explicitly), so the &mut borrows never alias.
        let n = self.blobs.len();
        assert!(rid.iter().chain(wid.iter()).all(|&i| i < n));
        let r = rid.map(|i| unsafe { &*base.add(i) });
        let w = wid.map(|i| unsafe { &mut *base.add(i) });
        Ok((r, w))
    }
}
