//! Finite-difference gradient checks, as Caffe's `test_gradient_check_util.hpp`.
//!
//! The checker drives one layer over an arena of blobs: it runs
//! setup/reshape/forward, puts fixed weights `w_t` into the top diffs (so the
//! objective is `Σ_t Σ_i top_t[i]·w_t[i]`), runs backward, and compares the
//! analytic bottom and parameter diffs with central differences of that
//! objective. For a loss layer the objective is its loss top scaled by a
//! random loss weight (restrict it with `objective_tops`).
//!
//! In-place layers are supported: the checker keeps the original bottom
//! values and restores them before every forward, so a forward that
//! overwrites its bottom does not corrupt the next evaluation.
//!
//! Any backend: the layer runs on `cx.be` (`ctx_on`; `cpu_ctx` is the CPU
//! case), and `GradientChecker::setup` first moves the bottom and top blobs
//! into that backend's memory (`blob_on`), so tests may build their arenas
//! from host blobs (`gaussian_blob`, `Blob::from_host`, `Blob::default`)
//! whatever the backend.
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, Math};
use crate::error::{Error, Result};
use crate::layers::{create_layer, Ctx, Io, Layer};
use crate::proto::caffe::{LayerParameter, Phase};
use crate::proto::text::parse_text;
use crate::tensor::Blob;

/// A context on `be` in `phase` with the checker's default seed.
pub fn ctx_on(be: Arc<dyn Backend>, phase: Phase) -> Ctx {
    Ctx::new(be, phase, 1701)
}

/// A CPU context in `phase` with the checker's default seed.
pub fn cpu_ctx(phase: Phase) -> Ctx {
    ctx_on(Arc::new(CpuBackend::new()), phase)
}

/// `b` in `be`'s memory: same shape, data, diff and capacity. A copy even
/// when `b` is there already.
pub fn blob_on(be: &dyn Math, b: &Blob) -> Blob {
    let mut out = b.clone();
    out.data = be.alloc(b.data.len());
    out.data.write(&b.data.read(b.data.len()));
    out.diff = be.alloc(b.diff.len());
    out.diff.write(&b.diff.read(b.diff.len()));
    out
}

/// A host blob of N(0, std²) values (Caffe's tests fill bottoms this way).
pub fn gaussian_blob(shape: &[usize], std: f32, seed: u64) -> Blob {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, std).expect("std must be positive");
    let n = shape.iter().product();
    Blob::from_host(shape, (0..n).map(|_| d.sample(&mut rng)).collect())
}

/// A layer from the text of one `LayerParameter` (`type: "ReLU" relu_param { ... }`),
/// through the registry.
pub fn layer_from_text(text: &str) -> Result<Box<dyn Layer>> {
    let lp: LayerParameter = parse_text(text, "<test layer>", "caffe.LayerParameter")?;
    create_layer(&lp)
}

/// Setup, reshape and one forward of `layer` over `arena` (params, if any,
/// are stored at `params`).
pub fn run_forward(
    layer: &mut dyn Layer,
    cx: &mut Ctx,
    arena: &mut Vec<Blob>,
    bottoms: &[usize],
    tops: &[usize],
    params: &[usize],
) -> Result<()> {
    GradientChecker::setup(layer, cx, arena, bottoms, tops, params)?;
    let mut io = Io::new(arena, bottoms, tops, params);
    layer.reshape(cx, &mut io)?;
    layer.forward(cx, &mut io)
}

/// Caffe's GradientChecker settings (stepsize 1e-2, threshold 1e-3 style).
#[derive(Debug, Clone)]
pub struct GradientChecker {
    /// Finite-difference step `h` (`(f(x+h) - f(x-h)) / 2h`).
    pub stepsize: f32,
    /// Allowed error relative to `max(|analytic|, |numeric|, 1)`.
    pub threshold: f32,
    /// Seeds the weights and resets `cx.rng` before every forward, so random
    /// layers (Dropout) see the same stream in every evaluation.
    pub seed: u64,
    /// Features with `kink - kink_range <= |x| <= kink + kink_range` are not
    /// compared (non-smooth points such as ReLU's 0).
    pub kink: f32,
    pub kink_range: f32,
    /// Extra absolute tolerance (Caffe's SetEpsilon).
    pub epsilon: f32,
    /// Bottoms to check (and propagate down to); `None`: all of them.
    pub check_bottoms: Option<Vec<usize>>,
    /// Tops that enter the objective; `None`: all. Loss layers with a second
    /// informational top (SoftmaxWithLoss's probabilities) use `[0]`.
    pub objective_tops: Option<Vec<usize>>,
    /// Whether to compare the layer's learnable blobs too.
    pub check_params: bool,
}

impl Default for GradientChecker {
    fn default() -> Self {
        GradientChecker::new(1e-2, 1e-3)
    }
}

/// One element whose analytic and numeric gradients disagree.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// "bottom 0", "param 1" ...
    pub blob: String,
    pub index: usize,
    /// The objective: "weighted tops" or "top t[j]" in exhaustive mode.
    pub objective: String,
    pub feature: f32,
    pub analytic: f32,
    pub numeric: f32,
}

/// Which blob of the layer is being differentiated.
#[derive(Debug, Clone, Copy)]
enum Target {
    Bottom(usize),
    Param(usize),
}

/// What the objective is made of.
#[derive(Debug, Clone, Copy)]
enum Objective {
    /// `Σ_t Σ_i top_t[i]·w_t[i]` with the checker's random weights.
    Weighted,
    /// `2 · top[t][j]` (Caffe's exhaustive mode).
    Element(usize, usize),
}

/// The blobs of the layer under test: indices into the arena.
struct Wiring<'a> {
    bottoms: &'a [usize],
    tops: &'a [usize],
    params: &'a [usize],
}

impl GradientChecker {
    pub fn new(stepsize: f32, threshold: f32) -> Self {
        GradientChecker {
            stepsize,
            threshold,
            seed: 1701,
            kink: 0.0,
            kink_range: -1.0,
            epsilon: 0.0,
            check_bottoms: None,
            objective_tops: None,
            check_params: true,
        }
    }
    /// Skip features within `range` of `|x| == kink`.
    pub fn kink(mut self, kink: f32, range: f32) -> Self {
        self.kink = kink;
        self.kink_range = range;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn epsilon(mut self, eps: f32) -> Self {
        self.epsilon = eps;
        self
    }
    /// Check (and propagate down to) only these bottoms.
    pub fn check_bottoms(mut self, b: &[usize]) -> Self {
        self.check_bottoms = Some(b.to_vec());
        self
    }
    /// Only these tops enter the objective.
    pub fn objective_tops(mut self, t: &[usize]) -> Self {
        self.objective_tops = Some(t.to_vec());
        self
    }
    pub fn check_params(mut self, yes: bool) -> Self {
        self.check_params = yes;
        self
    }

    /// Caffe's SetUp: `setup` (its learnable blobs go to `arena[params[i]]`,
    /// the arena grows as needed), then `reshape`. Bottoms and tops not in
    /// `cx.be`'s memory are moved there first.
    pub fn setup(
        layer: &mut dyn Layer,
        cx: &mut Ctx,
        arena: &mut Vec<Blob>,
        bottoms: &[usize],
        tops: &[usize],
        params: &[usize],
    ) -> Result<()> {
        layer.arity().check(bottoms.len(), tops.len())?;
        let need = bottoms
            .iter()
            .chain(tops)
            .chain(params)
            .map(|&i| i + 1)
            .max()
            .unwrap_or(0);
        if arena.len() < need {
            arena.resize_with(need, Blob::default);
        }
        // Blobs built on the host (or another device) move to the layer's
        // backend; on the CPU with host blobs nothing changes.
        let here = cx.be.alloc(0).location();
        for &id in bottoms.iter().chain(tops) {
            let b = &arena[id];
            if b.data.location() != here || b.diff.location() != here {
                arena[id] = blob_on(&*cx.be, b);
            }
        }
        let learned = {
            let mut io = Io::new(arena, bottoms, tops, params);
            layer.setup(cx, &mut io)?
        };
        if learned.len() != params.len() {
            return Err(Error::Other(format!(
                "layer {} created {} learnable blobs but {} param ids were given",
                layer.type_name(),
                learned.len(),
                params.len()
            )));
        }
        for (&id, b) in params.iter().zip(learned) {
            arena[id] = b;
        }
        let mut io = Io::new(arena, bottoms, tops, params);
        layer.reshape(cx, &mut io)
    }

    /// Set the layer up, then check every checked bottom and param against
    /// the weighted sum of the objective tops. Errors list the mismatches.
    pub fn check_layer(
        &self,
        layer: &mut dyn Layer,
        cx: &mut Ctx,
        arena: &mut Vec<Blob>,
        bottoms: &[usize],
        tops: &[usize],
        params: &[usize],
    ) -> Result<()> {
        Self::setup(layer, cx, arena, bottoms, tops, params)?;
        let w = Wiring {
            bottoms,
            tops,
            params,
        };
        let bad = self.check_single(layer, cx, arena, &w, Objective::Weighted)?;
        report(layer, bad)
    }

    /// Caffe's CheckGradientExhaustive: one check per element of every
    /// objective top (objective `2·top[t][j]`). Quadratic cost: small blobs.
    pub fn check_layer_exhaustive(
        &self,
        layer: &mut dyn Layer,
        cx: &mut Ctx,
        arena: &mut Vec<Blob>,
        bottoms: &[usize],
        tops: &[usize],
        params: &[usize],
    ) -> Result<()> {
        Self::setup(layer, cx, arena, bottoms, tops, params)?;
        let w = Wiring {
            bottoms,
            tops,
            params,
        };
        let mut bad = Vec::new();
        for t in 0..tops.len() {
            if !self.in_objective(t) {
                continue;
            }
            for j in 0..arena[tops[t]].count() {
                bad.extend(self.check_single(layer, cx, arena, &w, Objective::Element(t, j))?);
            }
        }
        report(layer, bad)
    }

    fn in_objective(&self, t: usize) -> bool {
        self.objective_tops.as_ref().is_none_or(|v| v.contains(&t))
    }

    /// Fixed random weights for each top (uniform in [-1, 1)), or Caffe's
    /// one-hot weight 2 on one element.
    fn weights(&self, arena: &[Blob], tops: &[usize], obj: Objective) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x9e37_79b9);
        tops.iter()
            .enumerate()
            .map(|(t, &id)| {
                let n = arena[id].count();
                match obj {
                    Objective::Weighted if self.in_objective(t) => {
                        (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
                    }
                    Objective::Element(tt, j) if tt == t => {
                        let mut v = vec![0.0; n];
                        v[j] = 2.0;
                        v
                    }
                    _ => vec![0.0; n],
                }
            })
            .collect()
    }

    /// Restore the bottoms, reshape and forward with a fresh rng; return the
    /// objective (accumulated in f64 so the difference of two nearby values
    /// keeps its digits).
    fn evaluate(
        &self,
        layer: &mut dyn Layer,
        cx: &mut Ctx,
        arena: &mut [Blob],
        w: &Wiring,
        saved: &[Vec<f32>],
        weights: &[Vec<f32>],
    ) -> Result<f64> {
        for (&id, v) in w.bottoms.iter().zip(saved) {
            arena[id].set_data(v)?;
        }
        cx.rng = StdRng::seed_from_u64(self.seed);
        let mut io = Io::new(arena, w.bottoms, w.tops, w.params);
        layer.reshape(cx, &mut io)?;
        layer.forward(cx, &mut io)?;
        let mut obj = 0.0f64;
        for (&id, wt) in w.tops.iter().zip(weights) {
            let y = arena[id].data_vec();
            obj += y
                .iter()
                .zip(wt)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>();
        }
        Ok(obj)
    }

    fn check_single(
        &self,
        layer: &mut dyn Layer,
        cx: &mut Ctx,
        arena: &mut [Blob],
        w: &Wiring,
        obj: Objective,
    ) -> Result<Vec<Mismatch>> {
        let nb = w.bottoms.len();
        let propagate: Vec<bool> = (0..nb)
            .map(|b| self.check_bottoms.as_ref().is_none_or(|v| v.contains(&b)))
            .collect();
        let mut targets: Vec<Target> = Vec::new();
        if self.check_params {
            targets.extend((0..w.params.len()).map(Target::Param));
        }
        targets.extend((0..nb).filter(|&b| propagate[b]).map(Target::Bottom));

        // Analytic pass. Bottom values are saved first: an in-place forward
        // overwrites them.
        let mut saved: Vec<Vec<f32>> = w.bottoms.iter().map(|&i| arena[i].data_vec()).collect();
        let weights = self.weights(arena, w.tops, obj);
        self.evaluate(layer, cx, arena, w, &saved, &weights)?;
        for (&id, wt) in w.tops.iter().zip(&weights) {
            arena[id].set_diff(wt)?;
        }
        for &id in w.params {
            let n = arena[id].count();
            arena[id].set_diff(&vec![0.0; n])?;
        }
        {
            let mut io = Io::new(arena, w.bottoms, w.tops, w.params);
            layer.backward(cx, &mut io, &propagate)?;
        }
        let analytic: Vec<Vec<f32>> = targets
            .iter()
            .map(|t| match *t {
                Target::Bottom(b) => arena[w.bottoms[b]].diff_vec(),
                Target::Param(p) => arena[w.params[p]].diff_vec(),
            })
            .collect();

        // Numeric pass: perturb one feature at a time.
        let h = self.stepsize;
        let label = match obj {
            Objective::Weighted => "weighted tops".to_string(),
            Objective::Element(t, j) => format!("top {t}[{j}]"),
        };
        let mut bad = Vec::new();
        for (target, grad) in targets.iter().zip(&analytic) {
            for (i, &computed) in grad.iter().enumerate() {
                let feature = match *target {
                    Target::Bottom(b) => saved[b][i],
                    Target::Param(p) => arena[w.params[p]].data_vec()[i],
                };
                let mut eval_at = |this: &Self,
                                   arena: &mut [Blob],
                                   saved: &mut Vec<Vec<f32>>,
                                   x: f32|
                 -> Result<f64> {
                    match *target {
                        Target::Bottom(b) => saved[b][i] = x,
                        Target::Param(p) => {
                            let id = w.params[p];
                            let mut v = arena[id].data_vec();
                            v[i] = x;
                            arena[id].set_data(&v)?;
                        }
                    }
                    this.evaluate(layer, cx, arena, w, saved, &weights)
                };
                let pos = eval_at(self, arena, &mut saved, feature + h)?;
                let neg = eval_at(self, arena, &mut saved, feature - h)?;
                eval_at(self, arena, &mut saved, feature)?;
                let numeric = ((pos - neg) / (2.0 * h as f64)) as f32;
                let ax = feature.abs();
                if self.kink - self.kink_range > ax || ax > self.kink + self.kink_range {
                    let scale = computed.abs().max(numeric.abs()).max(1.0);
                    let ok = (computed - numeric).abs() <= self.threshold * scale + self.epsilon;
                    if !ok {
                        bad.push(Mismatch {
                            blob: match *target {
                                Target::Bottom(b) => format!("bottom {b}"),
                                Target::Param(p) => format!("param {p}"),
                            },
                            index: i,
                            objective: label.clone(),
                            feature,
                            analytic: computed,
                            numeric,
                        });
                    }
                }
            }
        }
        Ok(bad)
    }
}

fn report(layer: &dyn Layer, bad: Vec<Mismatch>) -> Result<()> {
    if bad.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "{} gradient mismatch(es) in layer type {}:",
        bad.len(),
        layer.type_name()
    );
    for m in bad.iter().take(10) {
        msg.push_str(&format!(
            "\n  {}[{}] ({}): x = {}, analytic {} vs numeric {}",
            m.blob, m.index, m.objective, m.feature, m.analytic, m.numeric
        ));
    }
    Err(Error::Other(msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Arity;

    /// `y = a·x² + b·x` element-wise with learnable scalars a, b (host loops
    /// are fine in a test oracle). `wrong` breaks the bottom gradient.
    struct Quad {
        wrong: bool,
        /// The input, kept because an in-place forward overwrites it.
        x: Vec<f32>,
    }

    fn quad(wrong: bool) -> Quad {
        Quad {
            wrong,
            x: Vec::new(),
        }
    }

    impl Layer for Quad {
        fn type_name(&self) -> &'static str {
            "Quad"
        }
        fn arity(&self) -> Arity {
            Arity::exact(1, 1)
        }
        fn setup(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<Vec<Blob>> {
            Ok(vec![
                Blob::from_host(&[1], vec![0.7]),
                Blob::from_host(&[1], vec![-0.3]),
            ])
        }
        fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
            if !io.in_place(0, 0) {
                let s = io.bottom(0).shape().to_vec();
                io.top_mut(0).reshape(&s)?;
            }
            Ok(())
        }
        fn forward(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
            let (a, b) = (io.param(0).data_vec()[0], io.param(1).data_vec()[0]);
            self.x = io.bottom(0).data_vec();
            let y: Vec<f32> = self.x.iter().map(|&x| a * x * x + b * x).collect();
            io.top_mut(0).set_data(&y)
        }
        fn backward(&mut self, _cx: &mut Ctx, io: &mut Io, pd: &[bool]) -> Result<()> {
            let (a, b) = (io.param(0).data_vec()[0], io.param(1).data_vec()[0]);
            let x = &self.x;
            let dy = io.top(0).diff_vec();
            let da: f32 = x.iter().zip(&dy).map(|(x, d)| x * x * d).sum();
            let db: f32 = x.iter().zip(&dy).map(|(x, d)| x * d).sum();
            io.param_mut(0).set_diff(&[da])?;
            io.param_mut(1).set_diff(&[db])?;
            if pd[0] {
                let k = if self.wrong { 1.5 } else { 2.0 };
                let dx: Vec<f32> = x
                    .iter()
                    .zip(&dy)
                    .map(|(&x, &d)| (k * a * x + b) * d)
                    .collect();
                io.bottom_mut(0).set_diff(&dx)?;
            }
            Ok(())
        }
    }

    fn cx() -> Ctx {
        cpu_ctx(Phase::Train)
    }

    fn arena() -> Vec<Blob> {
        let x: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.37).collect();
        vec![Blob::from_host(&[3, 4], x), Blob::default()]
    }

    #[test]
    fn accepts_correct_gradients() {
        let mut a = arena();
        let c = GradientChecker::default();
        c.check_layer(&mut quad(false), &mut cx(), &mut a, &[0], &[1], &[2, 3])
            .unwrap();
        c.check_layer_exhaustive(&mut quad(false), &mut cx(), &mut a, &[0], &[1], &[2, 3])
            .unwrap();
        // Bottom values are restored after the check.
        assert_eq!(a[0].data_vec(), arena()[0].data_vec());
    }

    #[test]
    fn rejects_wrong_bottom_gradient() {
        let c = GradientChecker::default();
        let err = c
            .check_layer(
                &mut quad(true),
                &mut cx(),
                &mut arena(),
                &[0],
                &[1],
                &[2, 3],
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("bottom 0"), "{err}");
        assert!(!err.contains("param"), "{err}");
        let err = c
            .check_layer_exhaustive(
                &mut quad(true),
                &mut cx(),
                &mut arena(),
                &[0],
                &[1],
                &[2, 3],
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("top 0["), "{err}");
        // Not checking the bottom hides the error.
        c.clone()
            .check_bottoms(&[])
            .check_layer(
                &mut quad(true),
                &mut cx(),
                &mut arena(),
                &[0],
                &[1],
                &[2, 3],
            )
            .unwrap();
    }

    /// An in-place forward overwrites its bottom; the checker must still
    /// differentiate with respect to the original input.
    #[test]
    fn in_place_layer() {
        let mut a = arena();
        a.truncate(1);
        let c = GradientChecker::default();
        c.check_layer(&mut quad(false), &mut cx(), &mut a, &[0], &[0], &[1, 2])
            .unwrap();
        assert!(c
            .check_layer(&mut quad(true), &mut cx(), &mut a, &[0], &[0], &[1, 2])
            .is_err());
    }

    #[test]
    fn blob_on_keeps_shape_values_diff_and_capacity() {
        let mut b = Blob::from_host(&[2, 3], (0..6).map(|i| i as f32).collect());
        b.set_diff(&[1.0; 6]).unwrap();
        b.reshape(&[2]).unwrap();
        let be = CpuBackend::new();
        let c = blob_on(&be, &b);
        assert_eq!(c.shape(), &[2]);
        assert_eq!(c.data_vec(), vec![0.0, 1.0]);
        assert_eq!(c.diff_vec(), vec![1.0, 1.0]);
        assert_eq!(c.data.len(), 6);
        let d = blob_on(&be, &Blob::default());
        assert_eq!((d.shape(), d.count()), (&[][..], 0));
    }

    #[test]
    fn wrong_param_count_is_reported() {
        let c = GradientChecker::default();
        let err = c
            .check_layer(&mut quad(false), &mut cx(), &mut arena(), &[0], &[1], &[2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 learnable blobs"), "{err}");
    }
}
