//! The layer test suite on the CUDA backend, against real Caffe and against
//! the CPU backend. Every test body takes a backend; `backend_tests!` runs
//! it as `<name>_cpu` (which exercises this harness on every machine) and
//! `<name>_cuda` (GPU 0; without a usable GPU it prints `SKIPPED: <why>`
//! and passes, unless `RCAFFE_REQUIRE_CUDA=1`, which makes that a failure).
//!
//! - Golden cases: every case of `../shared/golden/layers/` (the list the
//!   `tests/golden_*.rs` files cover, `golden::all_cases`), compared with
//!   Caffe's outputs under the golden README's tolerances
//!   (`golden::tolerance_for`), and every top, bottom diff and param diff
//!   compared with the CPU backend's: ‖gpu − cpu‖ / ‖cpu‖ ≤ 1e-5 for plain
//!   fp32 paths, ≤ 1e-4 where cuDNN convolution runs (Convolution and
//!   Deconvolution layers with the DEFAULT engine; see
//!   `testing::backends` for why).
//! - Finite-difference gradient checks (Caffe's checker, with the settings
//!   of the layers' unit tests) for a representative set of layers, each
//!   also run forward and backward on the CPU with the same bottoms,
//!   weights and top diffs and compared the same way.
//! - Whole nets: LeNet forward + backward (loss and every parameter
//!   gradient within 1e-4), and 20 SGD iterations of a small conv net on the
//!   same data (every loss and the final weights within 1e-4): cuDNN
//!   convolution is in both.
//!
//! Failures are collected and reported together, each naming its case.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rcaffe::backend::{Backend, Engine};
use rcaffe::backend_tests;
use rcaffe::layers::{create_layer, Io};
use rcaffe::net::spec::default_num_param_blobs;
use rcaffe::net::{Net, NetOptions};
use rcaffe::proto::caffe::{LayerParameter, NetParameter, Phase};
use rcaffe::proto::text::{parse_net_text, parse_solver_text, parse_text, read_net_text};
use rcaffe::solver::Solver;
use rcaffe::tensor::Blob;
use rcaffe::testing::backends::{cpu, rel_err, TOL_CUDNN, TOL_FP32, TOL_NET};
use rcaffe::testing::golden::{all_cases, golden_dir, run_case_full, CaseRun};
use rcaffe::testing::gradient::{ctx_on, gaussian_blob, GradientChecker};

backend_tests!(
    golden_layer_cases,
    grad_convolution_caffe_engine,
    grad_convolution_default_engine,
    grad_deconvolution,
    grad_inner_product,
    grad_pooling,
    grad_lrn,
    grad_neurons,
    grad_prelu,
    grad_batch_norm,
    grad_scale,
    grad_eltwise,
    grad_concat_slice,
    grad_softmax,
    grad_losses,
    grad_lstm,
    lenet_forward_backward,
    sgd_small_net,
);

/// `f()`, with a panic turned into an error (a backend that panics on one
/// case must not hide the others).
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string payload)".into())
        )),
    }
}

/// Panic listing every failure, if any.
fn assert_none(what: &str, be: &Arc<dyn Backend>, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failure(s) in {what} on {}:\n{}",
        failures.len(),
        be.describe(),
        failures.join("\n")
    );
}

/// `‖got − want‖/‖want‖ ≤ tol`, or a failure line.
fn close(what: &str, got: &[f32], want: &[f32], tol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values vs the CPU's {}",
            got.len(),
            want.len()
        ));
    }
    let e = rel_err(got, want);
    if e <= tol {
        Ok(())
    } else {
        Err(format!("{what}: ‖be−cpu‖/‖cpu‖ = {e:.3e} > {tol:.0e}"))
    }
}

// ---------------------------------------------------------------------------
// Golden cases
// ---------------------------------------------------------------------------

/// Cases whose recorded tops are draws of Caffe's RNG: only these tops are
/// portable (golden_core.rs checks the rest by their statistics); the CPU
/// comparison covers them all, since fillers draw on the host.
const RNG_CASES: &[(&str, &[&str])] = &[
    ("dummy_data", &["top a"]),
    ("fillers", &["top f0", "top f7"]),
];

/// The CUDA-vs-CPU tolerance of a golden case: cuDNN's for Convolution and
/// Deconvolution with the DEFAULT engine, plain fp32 otherwise.
fn case_tolerance(case: &str) -> Result<f64, String> {
    let path = golden_dir().join("layers").join(case).join("net.prototxt");
    let net = read_net_text(&path).map_err(|e| e.to_string())?;
    let lp = net
        .layer
        .iter()
        .find(|l| l.name() == "layer")
        .ok_or_else(|| "net.prototxt has no layer 'layer'".to_string())?;
    Ok(layer_tolerance(lp))
}

fn layer_tolerance(lp: &LayerParameter) -> f64 {
    let conv = matches!(lp.r#type(), "Convolution" | "Deconvolution");
    let engine = lp.convolution_param.as_ref().map_or(Engine::Default, |p| {
        Engine::from_proto(p.engine.unwrap_or(0))
    });
    if conv && engine != Engine::Caffe {
        TOL_CUDNN
    } else {
        TOL_FP32
    }
}

/// One case on `be`: Caffe's comparisons, then the CPU's.
fn golden_case(be: &Arc<dyn Backend>, case: &str) -> Vec<String> {
    let mut fails = Vec::new();
    let run = match guarded(|| run_case_full(case, be.clone())) {
        Ok(r) => r,
        Err(e) => return vec![format!("{case}: {e}")],
    };
    let portable = RNG_CASES.iter().find(|(c, _)| *c == case).map(|(_, t)| *t);
    if run.report.comparisons.is_empty() {
        fails.push(format!("{case}: nothing was compared"));
    }
    for c in &run.report.comparisons {
        let counts = portable
            .is_none_or(|tops| tops.contains(&c.what.as_str()) || c.what.contains(" shape "));
        if counts && !c.ok {
            fails.push(format!(
                "{case}: {} vs Caffe: max abs {:.3e}, max rel {:.3e}",
                c.what, c.max_abs, c.max_rel
            ));
        }
    }
    let reference: CaseRun = match guarded(|| run_case_full(case, cpu())) {
        Ok(r) => r,
        Err(e) => {
            fails.push(format!("{case}: the CPU run failed: {e}"));
            return fails;
        }
    };
    let tol = match case_tolerance(case) {
        Ok(t) => t,
        Err(e) => {
            fails.push(format!("{case}: {e}"));
            return fails;
        }
    };
    if run.outputs.len() != reference.outputs.len() {
        fails.push(format!(
            "{case}: {} outputs vs the CPU's {}",
            run.outputs.len(),
            reference.outputs.len()
        ));
    }
    for ((what, got), (cwhat, want)) in run.outputs.iter().zip(&reference.outputs) {
        if what != cwhat {
            fails.push(format!("{case}: output {what} vs the CPU's {cwhat}"));
            continue;
        }
        if let Err(e) = close(what, got, want, tol) {
            fails.push(format!("{case}: {e}"));
        }
    }
    fails
}

fn golden_layer_cases(be: Arc<dyn Backend>) {
    let cases = all_cases();
    assert!(
        cases.len() >= 100,
        "{} golden cases under {}",
        cases.len(),
        golden_dir().display()
    );
    let fails: Vec<String> = cases.iter().flat_map(|c| golden_case(&be, c)).collect();
    eprintln!(
        "{} golden cases on {}: {} failure(s)",
        cases.len(),
        be.describe(),
        fails.len()
    );
    assert_none("the golden cases", &be, &fails);
}

// ---------------------------------------------------------------------------
// Gradient checks
// ---------------------------------------------------------------------------

/// One layer check: the layer's text (a `LayerParameter`; bottoms named
/// `b0, b1, ...` are added when it names none), its bottoms, and how to
/// check it.
struct Check {
    text: String,
    bottoms: Vec<Blob>,
    ntops: usize,
    /// Top 0 is bottom 0 (one bottom, one top).
    in_place: bool,
    phase: Phase,
    checker: GradientChecker,
    exhaustive: bool,
    /// Bottoms that get a gradient (`None`: all); the checker's
    /// `check_bottoms`, repeated here for the CPU comparison's backward.
    propagate: Option<Vec<usize>>,
}

impl Check {
    fn new(text: &str, bottoms: Vec<Blob>, ntops: usize, checker: GradientChecker) -> Self {
        Check {
            text: text.to_string(),
            bottoms,
            ntops,
            in_place: false,
            phase: Phase::Train,
            checker,
            exhaustive: false,
            propagate: None,
        }
    }
    /// One bottom of each shape (N(0, 1) values), one top per bottom.
    fn shapes(text: &str, shapes: &[&[usize]], checker: GradientChecker) -> Self {
        let bottoms = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| gaussian_blob(s, 1.0, 3 + i as u64))
            .collect();
        Check::new(text, bottoms, shapes.len(), checker)
    }
    fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }
    fn phase(mut self, p: Phase) -> Self {
        self.phase = p;
        self
    }
    fn exhaustive(mut self) -> Self {
        self.exhaustive = true;
        self
    }
    fn propagate(mut self, b: &[usize]) -> Self {
        self.propagate = Some(b.to_vec());
        self.checker = self.checker.check_bottoms(b);
        self
    }
    fn objective(mut self, t: &[usize]) -> Self {
        self.checker = self.checker.objective_tops(t);
        self
    }

    fn label(&self) -> String {
        let shapes: Vec<&[usize]> = self.bottoms.iter().map(|b| b.shape()).collect();
        format!(
            "{}{} {:?} on {shapes:?}",
            self.text.split_whitespace().collect::<Vec<_>>().join(" "),
            if self.in_place { " (in place)" } else { "" },
            self.phase
        )
    }

    fn layer_param(&self) -> Result<LayerParameter, String> {
        let mut lp: LayerParameter = parse_text(&self.text, "<test layer>", "caffe.LayerParameter")
            .map_err(|e| e.to_string())?;
        if lp.name.is_none() {
            lp.name = Some("l".into());
        }
        if lp.bottom.is_empty() {
            lp.bottom = (0..self.bottoms.len()).map(|i| format!("b{i}")).collect();
        }
        Ok(lp)
    }

    /// Arena ids `(bottoms, tops, params)`.
    fn wiring(&self, np: usize) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let nb = self.bottoms.len();
        if self.in_place {
            (vec![0], vec![0], (1..1 + np).collect())
        } else {
            let nt = self.ntops;
            (
                (0..nb).collect(),
                (nb..nb + nt).collect(),
                (nb + nt..nb + nt + np).collect(),
            )
        }
    }
}

/// What one forward + backward produced, by name.
struct Pass {
    params: Vec<Vec<f32>>,
    outputs: Vec<(String, Vec<f32>)>,
}

/// Set up, forward, backward from fixed top diffs, on `be`; with `params`,
/// the layer's weights are replaced by those values first.
fn pass(be: &Arc<dyn Backend>, c: &Check, params: Option<&[Vec<f32>]>) -> Result<Pass, String> {
    let lp = c.layer_param()?;
    let np = default_num_param_blobs(&lp).ok_or("unknown layer type")?;
    let mut layer = create_layer(&lp).map_err(|e| e.to_string())?;
    let mut cx = ctx_on(be.clone(), c.phase);
    let (b, t, p) = c.wiring(np);
    let mut arena = c.bottoms.clone();
    GradientChecker::setup(layer.as_mut(), &mut cx, &mut arena, &b, &t, &p)
        .map_err(|e| e.to_string())?;
    if let Some(values) = params {
        for (&id, v) in p.iter().zip(values) {
            arena[id].set_data(v).map_err(|e| e.to_string())?;
        }
    }
    let initial: Vec<Vec<f32>> = p.iter().map(|&id| arena[id].data_vec()).collect();
    {
        let mut io = Io::new(&mut arena, &b, &t, &p);
        layer.forward(&mut cx, &mut io).map_err(|e| e.to_string())?;
    }
    let mut outputs = Vec::new();
    for (j, &id) in t.iter().enumerate() {
        outputs.push((format!("top {j}"), arena[id].data_vec()));
    }
    for (j, &id) in t.iter().enumerate() {
        let dy = gaussian_blob(arena[id].shape(), 1.0, 100 + j as u64).data_vec();
        arena[id].set_diff(&dy).map_err(|e| e.to_string())?;
    }
    for &id in &p {
        let n = arena[id].count();
        arena[id]
            .set_diff(&vec![0.0; n])
            .map_err(|e| e.to_string())?;
    }
    let propagate: Vec<bool> = (0..b.len())
        .map(|i| c.propagate.as_ref().is_none_or(|v| v.contains(&i)))
        .collect();
    {
        let mut io = Io::new(&mut arena, &b, &t, &p);
        layer
            .backward(&mut cx, &mut io, &propagate)
            .map_err(|e| e.to_string())?;
    }
    for (i, &id) in b.iter().enumerate() {
        if propagate[i] {
            outputs.push((format!("bottom {i} diff"), arena[id].diff_vec()));
        }
    }
    for (j, &id) in p.iter().enumerate() {
        outputs.push((format!("param {j} after forward"), arena[id].data_vec()));
        outputs.push((format!("param {j} diff"), arena[id].diff_vec()));
    }
    Ok(Pass {
        params: initial,
        outputs,
    })
}

/// The finite-difference check on `be`.
fn gradient(be: &Arc<dyn Backend>, c: &Check) -> Result<(), String> {
    let lp = c.layer_param()?;
    let np = default_num_param_blobs(&lp).ok_or("unknown layer type")?;
    let mut layer = create_layer(&lp).map_err(|e| e.to_string())?;
    let mut cx = ctx_on(be.clone(), c.phase);
    let (b, t, p) = c.wiring(np);
    let mut arena = c.bottoms.clone();
    let r = if c.exhaustive {
        c.checker
            .check_layer_exhaustive(layer.as_mut(), &mut cx, &mut arena, &b, &t, &p)
    } else {
        c.checker
            .check_layer(layer.as_mut(), &mut cx, &mut arena, &b, &t, &p)
    };
    r.map_err(|e| e.to_string())
}

/// Each check on `be`: forward/backward against the CPU backend with the
/// same weights (tolerance by layer, see the file's doc), then the gradient
/// check. Panics with every failure.
fn run_checks(what: &str, be: &Arc<dyn Backend>, checks: Vec<Check>) {
    let mut fails = Vec::new();
    for c in &checks {
        let label = c.label();
        let tol = match c.layer_param() {
            Ok(lp) => layer_tolerance(&lp),
            Err(e) => {
                fails.push(format!("{label}: {e}"));
                continue;
            }
        };
        match guarded(|| {
            let reference = pass(&cpu(), c, None)?;
            let got = pass(be, c, Some(&reference.params))?;
            Ok((got, reference))
        }) {
            Ok((got, reference)) => {
                for ((w, g), (_, r)) in got.outputs.iter().zip(&reference.outputs) {
                    if let Err(e) = close(w, g, r, tol) {
                        fails.push(format!("{label}: {e}"));
                    }
                }
            }
            Err(e) => fails.push(format!("{label}: forward/backward: {e}")),
        }
        if let Err(e) = guarded(|| gradient(be, c)) {
            fails.push(format!("{label}: gradient check: {e}"));
        }
    }
    assert_none(what, be, &fails);
}

/// Caffe's checker as the vision layers' unit tests set it.
fn vision() -> GradientChecker {
    GradientChecker::new(1e-2, 1e-2)
}

const FILLERS: &str =
    "weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.3 }";

/// The convolution checks of `layers/vision/conv.rs` with `engine`.
fn convolution_checks(engine: &str) -> Vec<Check> {
    vec![
        // Two bottom/top pairs share the weights.
        Check::shapes(
            &format!(
                "type: 'Convolution' convolution_param {{ engine: {engine} num_output: 4 \
                 group: 2 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 1 \
                 {FILLERS} }}"
            ),
            &[&[2, 4, 6, 5], &[2, 4, 6, 5]],
            vision(),
        ),
        Check::shapes(
            &format!(
                "type: 'Convolution' convolution_param {{ engine: {engine} num_output: 3 \
                 kernel_size: 3 dilation: 2 pad: 2 {FILLERS} }}"
            ),
            &[&[1, 2, 6, 6]],
            vision(),
        ),
        Check::shapes(
            &format!(
                "type: 'Convolution' convolution_param {{ engine: {engine} num_output: 3 \
                 kernel_size: 1 {FILLERS} }}"
            ),
            &[&[3, 2, 3, 4]],
            vision(),
        ),
        // 3-D (cuDNN's Caffe layer is 2-D only: the engine falls back).
        Check::shapes(
            &format!(
                "type: 'Convolution' convolution_param {{ engine: {engine} num_output: 2 \
                 kernel_size: 2 stride: 1 pad: 1 bias_term: false \
                 weight_filler {{ type: 'gaussian' std: 0.3 }} }}"
            ),
            &[&[2, 2, 3, 4, 3]],
            vision(),
        ),
    ]
}

fn grad_convolution_caffe_engine(be: Arc<dyn Backend>) {
    run_checks("Convolution (CAFFE)", &be, convolution_checks("CAFFE"));
}

fn grad_convolution_default_engine(be: Arc<dyn Backend>) {
    run_checks("Convolution (DEFAULT)", &be, convolution_checks("DEFAULT"));
}

fn grad_deconvolution(be: Arc<dyn Backend>) {
    let deconv = |params: &str| format!("type: 'Deconvolution' convolution_param {{ {params} }}");
    run_checks(
        "Deconvolution",
        &be,
        vec![
            Check::shapes(
                &deconv(&format!(
                    "num_output: 3 kernel_size: 4 stride: 2 pad: 1 {FILLERS}"
                )),
                &[&[2, 2, 3, 4]],
                vision(),
            ),
            Check::shapes(
                &deconv(&format!(
                    "num_output: 4 group: 2 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 \
                     pad_h: 1 pad_w: 0 {FILLERS}"
                )),
                &[&[1, 4, 3, 3]],
                vision(),
            ),
            Check::shapes(
                &deconv(&format!(
                    "num_output: 2 kernel_size: 3 dilation: 2 pad: 1 stride: 2 {FILLERS}"
                )),
                &[&[2, 3, 3, 3], &[2, 3, 3, 3]],
                vision(),
            ),
            Check::shapes(
                &deconv(
                    "engine: CAFFE num_output: 2 kernel_size: 2 stride: 2 bias_term: false \
                     weight_filler { type: 'gaussian' std: 0.3 }",
                ),
                &[&[2, 3, 2, 3]],
                vision(),
            ),
        ],
    );
}

fn grad_inner_product(be: Arc<dyn Backend>) {
    let mut checks = Vec::new();
    for body in [
        format!("type: 'InnerProduct' inner_product_param {{ num_output: 4 {FILLERS} }}"),
        format!(
            "type: 'InnerProduct' inner_product_param {{ num_output: 3 transpose: true axis: 2 \
             {FILLERS} }}"
        ),
        "type: 'InnerProduct' inner_product_param { num_output: 3 bias_term: false \
         weight_filler { type: 'gaussian' std: 0.3 } }"
            .to_string(),
    ] {
        checks.push(Check::shapes(&body, &[&[2, 3, 2, 2]], vision()));
        checks.push(Check::shapes(&body, &[&[1, 2, 3, 1]], vision()));
    }
    run_checks("InnerProduct", &be, checks);
}

/// Values spaced well beyond the finite-difference step (no window has two
/// candidates within ±h of each other), shuffled (pool.rs's helper).
fn distinct(shape: &[usize], seed: u64) -> Blob {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
    let mut s = seed;
    for i in (1..n).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.swap(i, (s >> 33) as usize % (i + 1));
    }
    Blob::from_host(shape, v)
}

fn grad_pooling(be: Arc<dyn Backend>) {
    run_checks(
        "Pooling",
        &be,
        vec![
            Check::new(
                "type: 'Pooling' pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }",
                vec![distinct(&[2, 2, 7, 6], 1)],
                1,
                vision(),
            ),
            // The mask as a second top.
            Check::new(
                "type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
                vec![distinct(&[1, 3, 5, 5], 2)],
                2,
                vision(),
            )
            .objective(&[0]),
            Check::shapes(
                "type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }",
                &[&[2, 2, 6, 7]],
                vision(),
            ),
            Check::shapes(
                "type: 'Pooling' pooling_param { pool: AVE kernel_size: 3 stride: 2 }",
                &[&[1, 2, 8, 8]],
                vision(),
            ),
            Check::shapes(
                "type: 'Pooling' pooling_param { pool: AVE global_pooling: true }",
                &[&[2, 3, 4, 5]],
                vision(),
            ),
        ],
    );
}

fn grad_lrn(be: Arc<dyn Backend>) {
    run_checks(
        "LRN",
        &be,
        vec![
            Check::shapes(
                "type: 'LRN' lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 1.5 }",
                &[&[2, 7, 3, 3]],
                vision(),
            ),
            Check::shapes(
                "type: 'LRN' lrn_param { local_size: 7 alpha: 1.0 beta: 0.6 }",
                &[&[1, 3, 5, 7]],
                vision(),
            ),
            Check::shapes(
                "type: 'LRN' lrn_param { local_size: 3 alpha: 0.8 beta: 0.75 \
                 norm_region: WITHIN_CHANNEL }",
                &[&[2, 2, 5, 4]],
                vision(),
            ),
            Check::shapes(
                "type: 'LRN' lrn_param { local_size: 5 alpha: 2.0 beta: 0.5 \
                 norm_region: WITHIN_CHANNEL }",
                &[&[1, 1, 3, 6]],
                vision(),
            ),
        ],
    );
}

/// At the neuron tests' shapes: out of place (exhaustive on the small
/// shape, as the neuron tests do; the weighted objective on the larger one,
/// where exhaustive costs ~43k forwards, each a GPU round trip) and in place.
fn neuron_checks(text: &str, checker: GradientChecker) -> Vec<Check> {
    let mut v = Vec::new();
    for shape in [&[2usize, 3, 4, 5][..], &[1, 3, 2, 2]] {
        let x = gaussian_blob(shape, 1.0, 9);
        let out = Check::new(text, vec![x.clone()], 1, checker.clone());
        v.push(if shape.len() == 4 && shape[0] == 1 {
            out.exhaustive()
        } else {
            out
        });
        v.push(Check::new(text, vec![x], 1, checker.clone()).in_place());
    }
    v
}

fn grad_neurons(be: Arc<dyn Backend>) {
    let kinked = GradientChecker::new(1e-2, 1e-3).kink(0.0, 0.01);
    let mut checks = Vec::new();
    checks.extend(neuron_checks("type: 'ReLU'", kinked.clone()));
    checks.extend(neuron_checks(
        "type: 'ReLU' relu_param { negative_slope: 0.01 }",
        kinked.clone(),
    ));
    checks.extend(neuron_checks("type: 'Sigmoid'", kinked.clone()));
    checks.extend(neuron_checks("type: 'TanH'", GradientChecker::default()));
    checks.extend(neuron_checks(
        "type: 'ELU' elu_param { alpha: 0.5 }",
        kinked.clone(),
    ));
    checks.extend(neuron_checks("type: 'ELU'", kinked));
    run_checks("ReLU/Sigmoid/TanH/ELU", &be, checks);
}

fn grad_prelu(be: Arc<dyn Backend>) {
    let c = GradientChecker::new(1e-2, 1e-3).kink(0.0, 0.01);
    let mut checks = Vec::new();
    for t in [
        "type: 'PReLU' prelu_param { filler { type: 'uniform' min: 0.05 max: 0.5 } }",
        "type: 'PReLU' prelu_param { channel_shared: true }",
    ] {
        for shape in [&[2usize, 3, 2, 2][..], &[1, 3, 2, 2], &[2, 3]] {
            let x = gaussian_blob(shape, 1.0, 7);
            checks.push(Check::new(t, vec![x.clone()], 1, c.clone()).exhaustive());
            checks.push(Check::new(t, vec![x], 1, c.clone()).in_place());
        }
    }
    run_checks("PReLU", &be, checks);
}

fn grad_batch_norm(be: Arc<dyn Backend>) {
    // The statistics are not learned: only the bottom is checked (and the
    // running statistics compared with the CPU's).
    let c = GradientChecker::new(1e-2, 1e-3).check_params(false);
    let global = "type: 'BatchNorm' batch_norm_param { use_global_stats: true }";
    let mut checks = Vec::new();
    for shape in [&[2usize, 3, 2, 2][..], &[1, 3, 2, 2], &[4, 3]] {
        for (t, phase) in [
            ("type: 'BatchNorm'", Phase::Train),
            (global, Phase::Train),
            ("type: 'BatchNorm'", Phase::Test),
        ] {
            let x = gaussian_blob(shape, 1.0, 5);
            checks.push(
                Check::new(t, vec![x.clone()], 1, c.clone())
                    .phase(phase)
                    .exhaustive(),
            );
            checks.push(Check::new(t, vec![x], 1, c.clone()).phase(phase).in_place());
        }
    }
    run_checks("BatchNorm", &be, checks);
}

fn grad_scale(be: Arc<dyn Backend>) {
    let c = GradientChecker::new(1e-2, 1e-3);
    let learned = "type: 'Scale' scale_param { filler { type: 'gaussian' mean: 1 std: 0.3 } \
                   bias_term: true bias_filler { type: 'gaussian' std: 0.3 } }";
    let mut checks = Vec::new();
    for shape in [&[2usize, 3, 4][..], &[1, 3, 4]] {
        let x = gaussian_blob(shape, 1.0, 4);
        checks.push(Check::new(learned, vec![x.clone()], 1, c.clone()));
        checks.push(Check::new(learned, vec![x.clone()], 1, c.clone()).in_place());
        checks.push(Check::new(
            "type: 'Scale' scale_param { num_axes: 0 bias_term: true \
             filler { type: 'gaussian' std: 1 } bias_filler { type: 'gaussian' std: 1 } }",
            vec![x.clone()],
            1,
            c.clone(),
        ));
        // The operand as a second bottom, which gets a gradient too.
        let s = gaussian_blob(&[3, 4], 1.0, 6);
        checks.push(Check::new(
            "type: 'Scale' scale_param { axis: 1 }",
            vec![x, s],
            1,
            c.clone(),
        ));
    }
    run_checks("Scale", &be, checks);
}

fn three_bottoms(shape: &[usize]) -> Vec<Blob> {
    (11..14).map(|s| gaussian_blob(shape, 1.0, s)).collect()
}

fn grad_eltwise(be: Arc<dyn Backend>) {
    let mut checks = Vec::new();
    for text in [
        "type: 'Eltwise' eltwise_param { operation: PROD }",
        "type: 'Eltwise' eltwise_param { operation: PROD stable_prod_grad: false }",
        "type: 'Eltwise' eltwise_param { operation: SUM }",
        "type: 'Eltwise' eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }",
    ] {
        for shape in [&[2usize, 3, 2][..], &[1, 2]] {
            checks.push(
                Check::new(text, three_bottoms(shape), 1, GradientChecker::default()).exhaustive(),
            );
        }
    }
    // MAX: Caffe's settings (the max is not differentiable at ties).
    checks.push(
        Check::new(
            "type: 'Eltwise' eltwise_param { operation: MAX }",
            three_bottoms(&[2, 3, 2]),
            1,
            GradientChecker::new(1e-4, 1e-2),
        )
        .exhaustive(),
    );
    run_checks("Eltwise", &be, checks);
}

fn grad_concat_slice(be: Arc<dyn Backend>) {
    let c = GradientChecker::default();
    run_checks(
        "Concat/Slice",
        &be,
        vec![
            Check::new(
                "type: 'Concat'",
                vec![
                    gaussian_blob(&[2, 3, 2], 1.0, 1),
                    gaussian_blob(&[2, 1, 2], 1.0, 2),
                ],
                1,
                c.clone(),
            )
            .exhaustive(),
            Check::new(
                "type: 'Concat' concat_param { axis: 0 }",
                vec![
                    gaussian_blob(&[1, 3], 1.0, 1),
                    gaussian_blob(&[2, 3], 1.0, 2),
                    gaussian_blob(&[1, 3], 1.0, 3),
                ],
                1,
                c.clone(),
            )
            .exhaustive(),
            // Only bottom 1 propagates.
            Check::new(
                "type: 'Concat' concat_param { axis: 0 }",
                vec![
                    gaussian_blob(&[1, 3], 1.0, 1),
                    gaussian_blob(&[2, 3], 1.0, 2),
                ],
                1,
                c.clone(),
            )
            .propagate(&[1]),
            Check::new(
                "type: 'Slice' slice_param { axis: 1 slice_point: 1 slice_point: 4 }",
                vec![gaussian_blob(&[2, 6, 3], 1.0, 1)],
                3,
                c.clone(),
            ),
            Check::new(
                "type: 'Slice' slice_param { axis: -1 }",
                vec![gaussian_blob(&[1, 4], 1.0, 2)],
                2,
                c,
            )
            .exhaustive(),
        ],
    );
}

fn grad_softmax(be: Arc<dyn Backend>) {
    let mut checks = Vec::new();
    for (shape, axis) in [
        (&[2usize, 3, 2, 2][..], 1),
        (&[1, 4][..], 1),
        (&[2, 3, 4][..], 2),
    ] {
        let t = format!("type: 'Softmax' softmax_param {{ axis: {axis} }}");
        let x = gaussian_blob(shape, 1.0, 2);
        checks.push(Check::new(&t, vec![x.clone()], 1, GradientChecker::default()).exhaustive());
        checks.push(Check::new(&t, vec![x], 1, GradientChecker::default()).in_place());
    }
    run_checks("Softmax", &be, checks);
}

/// Integer labels in [0, ch) for `n` positions.
fn labels(shape: &[usize], ch: usize) -> Blob {
    let n: usize = shape.iter().product();
    Blob::from_host(shape, (0..n).map(|i| ((i * 7 + 3) % ch) as f32).collect())
}

fn grad_losses(be: Arc<dyn Backend>) {
    let x = gaussian_blob(&[2, 3, 2], 1.0, 4);
    let mut checks = Vec::new();
    for extra in [
        "",
        "loss_param { normalization: NONE }",
        "loss_param { normalization: BATCH_SIZE ignore_label: 0 }",
        "softmax_param { axis: 2 } loss_param { normalization: FULL }",
    ] {
        let lab = if extra.contains("axis: 2") {
            labels(&[2, 3], 2)
        } else {
            labels(&[2, 2], 3)
        };
        checks.push(
            Check::new(
                &format!("type: 'SoftmaxWithLoss' {extra}"),
                vec![x.clone(), lab],
                1,
                GradientChecker::new(1e-2, 1e-2),
            )
            .propagate(&[0]),
        );
    }
    // The probabilities as a second top (not in the objective).
    checks.push(
        Check::new(
            "type: 'SoftmaxWithLoss'",
            vec![x.clone(), labels(&[2, 2], 3)],
            2,
            GradientChecker::new(1e-2, 1e-2),
        )
        .propagate(&[0])
        .objective(&[0]),
    );
    for shape in [&[4usize, 3][..], &[1, 5], &[2, 3, 2]] {
        checks.push(Check::new(
            "type: 'EuclideanLoss'",
            vec![gaussian_blob(shape, 1.0, 3), gaussian_blob(shape, 1.0, 4)],
            1,
            GradientChecker::new(1e-2, 1e-2),
        ));
    }
    run_checks("SoftmaxWithLoss/EuclideanLoss", &be, checks);
}

/// T×N continuation indicators: 0 in the first row and at `zeros`.
fn cont(t: usize, n: usize, zeros: &[(usize, usize)]) -> Blob {
    let mut v = vec![1.0; t * n];
    v[..n].fill(0.0);
    for &(s, b) in zeros {
        v[s * n + b] = 0.0;
    }
    Blob::from_host(&[t, n], v)
}

fn grad_lstm(be: Arc<dyn Backend>) {
    let lstm = |h: usize| {
        format!(
            "type: 'LSTM' recurrent_param {{ num_output: {h} \
             weight_filler {{ type: 'gaussian' std: 0.3 }} \
             bias_filler {{ type: 'gaussian' mean: 0.1 std: 0.3 }} }}"
        )
    };
    let c = || GradientChecker::new(1e-2, 1e-3).objective_tops(&[0]);
    run_checks(
        "LSTM",
        &be,
        vec![
            // Resets in the middle of the sequences.
            Check::new(
                &lstm(3),
                vec![
                    gaussian_blob(&[4, 3, 2], 1.0, 1),
                    cont(4, 3, &[(2, 0), (1, 2)]),
                ],
                1,
                c(),
            )
            .propagate(&[0]),
            // Static input.
            Check::new(
                &lstm(3),
                vec![
                    gaussian_blob(&[3, 2, 2], 1.0, 2),
                    cont(3, 2, &[(2, 1)]),
                    gaussian_blob(&[2, 3], 1.0, 3),
                ],
                1,
                c(),
            )
            .propagate(&[0, 2]),
            // One step of one stream.
            Check::new(
                &lstm(2),
                vec![gaussian_blob(&[1, 1, 3], 1.0, 4), cont(1, 1, &[])],
                1,
                c(),
            )
            .propagate(&[0]),
        ],
    );
}

// ---------------------------------------------------------------------------
// Whole nets
// ---------------------------------------------------------------------------

/// Deterministic values in [lo, hi).
fn uniform(n: usize, seed: u32, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            lo + (hi - lo) * ((s >> 8) as f32 / (1u32 << 24) as f32)
        })
        .collect()
}

fn class_labels(n: usize, classes: usize, seed: u32) -> Vec<f32> {
    uniform(n, seed, 0.0, classes as f32)
        .into_iter()
        .map(|v| (v.floor() as usize).min(classes - 1) as f32)
        .collect()
}

/// LeNet (`../shared/bench/lenet.prototxt`: batch 64, DEFAULT-engine
/// convolutions) with the CPU net's weights: the loss within 1e-4 of the
/// CPU's, every parameter gradient within 1e-3 (`TOL_NET`).
fn lenet_forward_backward(be: Arc<dyn Backend>) {
    let path = rcaffe::testing::golden::shared_dir().join("bench/lenet.prototxt");
    let param: NetParameter = read_net_text(&path).unwrap();
    let run = |be: Arc<dyn Backend>, weights: Option<&[Vec<f32>]>| {
        let mut net = Net::new(&param, &NetOptions::new(Phase::Train), be).unwrap();
        if let Some(w) = weights {
            for (i, v) in w.iter().enumerate() {
                net.learnable_mut(i).set_data(v).unwrap();
            }
        }
        net.set_input("data", &uniform(64 * 28 * 28, 1, 0.0, 1.0))
            .unwrap();
        net.set_input("label", &class_labels(64, 10, 2)).unwrap();
        let loss = net.forward().unwrap();
        net.clear_param_diffs();
        net.backward().unwrap();
        let n = net.num_learnable();
        let names: Vec<String> = (0..n).map(|i| net.learnable_name(i)).collect();
        let w: Vec<Vec<f32>> = (0..n).map(|i| net.learnable(i).data_vec()).collect();
        let g: Vec<Vec<f32>> = (0..n).map(|i| net.learnable(i).diff_vec()).collect();
        (loss, names, w, g)
    };
    let (closs, names, weights, cgrad) = run(cpu(), None);
    let (loss, _, _, grad) = run(be.clone(), Some(&weights));
    let mut fails = Vec::new();
    if let Err(e) = close("loss", &[loss], &[closs], TOL_CUDNN) {
        fails.push(e);
    }
    for ((name, g), c) in names.iter().zip(&grad).zip(&cgrad) {
        if let Err(e) = close(&format!("{name} gradient"), g, c, TOL_NET) {
            fails.push(e);
        }
    }
    assert!(closs.is_finite() && closs > 0.0, "CPU loss {closs}");
    assert_none("LeNet forward/backward", &be, &fails);
}

/// A small conv net (DEFAULT-engine convolution, max pooling, ReLU, two
/// InnerProducts, SoftmaxWithLoss) trained 20 SGD iterations (momentum,
/// weight decay, `inv` policy) on the same batches on `be` and on the CPU:
/// every iteration's loss and the final weights within 1e-4.
fn sgd_small_net(be: Arc<dyn Backend>) {
    // The solver's INFO lines (its whole parameter text, twice) say nothing here.
    rcaffe::log::set_thread_quiet(true);
    const NET: &str = r#"name: "small"
        layer { name: "in" type: "Input" top: "data" top: "label"
                input_param { shape { dim: 8 dim: 2 dim: 7 dim: 7 } shape { dim: 8 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 pad: 1
                  weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
        layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
                pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
        layer { name: "relu" type: "ReLU" bottom: "pool" top: "pool" }
        layer { name: "ip1" type: "InnerProduct" bottom: "pool" top: "ip1"
                inner_product_param { num_output: 12
                  weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0.1 } } }
        layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
        layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
                inner_product_param { num_output: 3
                  weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }"#;
    let solver = parse_solver_text(
        &format!(
            r#"net_param {{ {NET} }}
            base_lr: 0.05 momentum: 0.9 weight_decay: 0.0005
            lr_policy: "inv" gamma: 0.0001 power: 0.75
            display: 0 max_iter: 20 snapshot: 0 snapshot_after_train: false
            random_seed: 1701"#
        ),
        "solver.prototxt",
    )
    .unwrap();
    // The net parses on its own too (a clearer error than the solver's).
    parse_net_text(NET, "small.prototxt").unwrap();
    let train = |be: Arc<dyn Backend>, init: Option<&[Vec<f32>]>| {
        let mut s = Solver::new(solver.clone(), be).unwrap();
        let n = s.net().num_learnable();
        if let Some(w) = init {
            for (i, v) in w.iter().enumerate() {
                s.net_mut().learnable_mut(i).set_data(v).unwrap();
            }
        }
        let initial: Vec<Vec<f32>> = (0..n).map(|i| s.net().learnable(i).data_vec()).collect();
        let mut losses = Vec::new();
        for it in 0..20u32 {
            s.net_mut()
                .set_input("data", &uniform(8 * 2 * 7 * 7, 10 + it, -1.0, 1.0))
                .unwrap();
            s.net_mut()
                .set_input("label", &class_labels(8, 3, 50 + it))
                .unwrap();
            s.step(1).unwrap();
            losses.push(s.net().blob_by_name("loss").unwrap().data_vec()[0]);
        }
        let fin: Vec<Vec<f32>> = (0..n).map(|i| s.net().learnable(i).data_vec()).collect();
        (initial, losses, fin)
    };
    let (init, closses, cfinal) = train(cpu(), None);
    let (_, losses, fin) = train(be.clone(), Some(&init));
    let mut fails = Vec::new();
    if let Err(e) = close("per-iteration losses", &losses, &closses, TOL_CUDNN) {
        fails.push(e);
    }
    for (i, (g, c)) in fin.iter().zip(&cfinal).enumerate() {
        if let Err(e) = close(&format!("final weights, blob {i}"), g, c, TOL_CUDNN) {
            fails.push(e);
        }
    }
    // Training did something: the weights moved.
    assert!(init.iter().zip(&cfinal).any(|(a, b)| a != b));
    assert_none("20 SGD iterations", &be, &fails);
}
