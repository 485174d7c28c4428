//! On a GPU: the CUDA backend's `NormOps`, `RecurrentOps` and `SolverOps`
//! against the CPU backend on random data, every operation at several
//! shapes (odd sizes, inner = 1 and > 1, channel_shared PReLU, LSTM steps
//! with continuation 0 and 1) and on views that start inside their buffers
//! (the padding must come back untouched).
//!
//! Tolerances, by what the two backends compute:
//! - exact (equal values) where both sides perform the same correctly
//!   rounded float operations in the same order: broadcasts, the fused
//!   affine, PReLU's element-wise passes, `scale_rows`, `scale_by_inverse`,
//!   regularisation and the SGD/Nesterov updates (the kernels spell out
//!   every rounding, multiply-adds included, see kernels/solver.cu);
//! - 1e-6 relative for AdaGrad/RMSProp/AdaDelta/Adam over three steps:
//!   Caffe's CPU takes glibc's `powf(x, 0.5)`/`powf(x, 2)`, the GPU the
//!   correctly rounded `sqrt`/`x·x`, which differ in the last bit for about
//!   1 value in 2000;
//! - 1e-6 relative for the double-accumulated reductions (`channel_sum`,
//!   `channel_dot`, `sumsq`): only the double summation order differs;
//! - 1e-5 relative for the LSTM unit (CUDA's `expf` is within 2 ulp, glibc's
//!   within 1);
//! - PReLU's slope gradient: the CPU adds in float in memory order (Caffe's
//!   CPU loop), the GPU in double, so the bound is the float running sum's:
//!   |gpu − cpu| ≤ 1e-5 · Σ|terms| per channel, and the GPU within 1e-6 of
//!   the exact (f64) sum.
//!
//! Without a usable GPU these tests print why and pass, unless
//! RCAFFE_REQUIRE_CUDA=1 (scripts/gpu-check.sh sets it).
#![cfg(feature = "cuda")]

use rcaffe::testing::backends::{assert_close, cuda_backend, test_data};

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::cuda::CudaBackend;
use rcaffe::backend::solver::Regularization;
use rcaffe::backend::{Binary, Buffer, Math, NormOps, RecurrentOps, SolverOps, View, ViewMut};

fn up(be: &CudaBackend, v: &[f32]) -> Buffer {
    let mut b = be.alloc(v.len());
    b.write(v);
    b
}

/// Equal values (NaN matching NaN).
fn same(what: &str, gpu: &[f32], cpu: &[f32]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    let bad = gpu
        .iter()
        .zip(cpu)
        .enumerate()
        .filter(|(_, (g, c))| !(g == c || (g.is_nan() && c.is_nan())))
        .map(|(i, (g, c))| (i, *g, *c))
        .collect::<Vec<_>>();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} values differ, first (index, gpu, cpu): {:?}",
        bad.len(),
        gpu.len(),
        &bad[..bad.len().min(5)]
    );
}

/// Views start this far into their buffers; the padding is compared too.
const OFF: usize = 3;
const PAD: f32 = 7.25;

/// One tensor on both backends (same values, `OFF` padding in front).
struct Both {
    g: Buffer,
    c: Buffer,
}

impl Both {
    fn new(be: &CudaBackend, v: &[f32]) -> Both {
        let mut all = vec![PAD; OFF];
        all.extend_from_slice(v);
        Both {
            g: up(be, &all),
            c: Buffer::from_vec(all),
        }
    }
    fn gv(&self) -> View<'_> {
        self.g.at(OFF)
    }
    fn cv(&self) -> View<'_> {
        self.c.at(OFF)
    }
    fn gm(&mut self) -> ViewMut<'_> {
        self.g.at_mut(OFF)
    }
    fn cm(&mut self) -> ViewMut<'_> {
        self.c.at_mut(OFF)
    }
    /// (gpu, cpu) contents, padding included.
    fn get(&self) -> (Vec<f32>, Vec<f32>) {
        let n = self.c.len();
        (self.g.read(n), self.c.read(n))
    }
    fn same(&self, what: &str) {
        let (g, c) = self.get();
        same(what, &g, &c);
    }
    fn close(&self, what: &str, tol: f64) {
        let (g, c) = self.get();
        same(&format!("{what} (padding)"), &g[..OFF], &c[..OFF]);
        assert_close(what, &g, &c, tol);
    }
}

/// (outer, channels, inner): inner = 1 with many rows, odd sizes, inner
/// below and above the block size, one channel over a large inner (MVN
/// rows, channel_shared PReLU) and many channels.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (2, 3, 1),
    (1000, 3, 1),
    (3, 5, 7),
    (4, 17, 129),
    (2, 3, 1000),
    (1, 1, 70_001),
    (2, 700, 9),
    // Few channels over many values: several blocks per channel (norm.rs
    // `splits`), inner neither a multiple of the block nor of the split.
    (8, 6, 3001),
    (64, 3, 785),
];

#[test]
fn channel_sum_and_dot_match() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (s, &(outer, ch, inner)) in SHAPES.iter().enumerate() {
        let n = outer * ch * inner;
        let seed = 10 * s as u32;
        let a = Both::new(&be, &test_data(n, seed + 1));
        let b = Both::new(&be, &test_data(n, seed + 2));
        let what = |op: &str| format!("{op} at ({outer}, {ch}, {inner})");
        for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 0.75), (-0.125, 1.0)] {
            // beta == 0 must not read out: start from NaN there.
            let init: Vec<f32> = if beta == 0.0 {
                vec![f32::NAN; ch]
            } else {
                test_data(ch, seed + 3)
            };
            let mut out = Both::new(&be, &init);
            be.channel_sum(outer, ch, inner, alpha, a.gv(), beta, out.g.at_mut(OFF));
            cpu.channel_sum(outer, ch, inner, alpha, a.cv(), beta, out.c.at_mut(OFF));
            out.close(&what(&format!("channel_sum α={alpha} β={beta}")), 1e-6);

            let mut out = Both::new(&be, &init);
            be.channel_dot(
                outer,
                ch,
                inner,
                alpha,
                a.gv(),
                b.gv(),
                beta,
                out.g.at_mut(OFF),
            );
            cpu.channel_dot(
                outer,
                ch,
                inner,
                alpha,
                a.cv(),
                b.cv(),
                beta,
                out.c.at_mut(OFF),
            );
            out.close(&what(&format!("channel_dot α={alpha} β={beta}")), 1e-6);
        }
        // a·a (both operands the same buffer, as BatchNorm's variance does).
        let mut out = Both::new(&be, &vec![0.0; ch]);
        be.channel_dot(
            outer,
            ch,
            inner,
            1.0,
            a.gv(),
            a.gv(),
            0.0,
            out.g.at_mut(OFF),
        );
        cpu.channel_dot(
            outer,
            ch,
            inner,
            1.0,
            a.cv(),
            a.cv(),
            0.0,
            out.c.at_mut(OFF),
        );
        out.close(&what("channel_dot a·a"), 1e-6);
    }
    be.sync().unwrap();
}

#[test]
fn broadcasts_affine_and_inverse_match_exactly() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (s, &(outer, ch, inner)) in SHAPES.iter().enumerate() {
        let n = outer * ch * inner;
        let seed = 100 + 10 * s as u32;
        let x = Both::new(&be, &test_data(n, seed + 1));
        // No zeros in v (Div).
        let vv: Vec<f32> = test_data(ch, seed + 2).iter().map(|v| v + 2.5).collect();
        let v = Both::new(&be, &vv);
        let bias = Both::new(&be, &test_data(ch, seed + 3));
        let what = |op: &str| format!("{op} at ({outer}, {ch}, {inner})");
        for op in [
            Binary::Add,
            Binary::Sub,
            Binary::Mul,
            Binary::Div,
            Binary::Max,
        ] {
            let mut y = Both::new(&be, &vec![f32::NAN; n]);
            be.channel_broadcast(op, outer, ch, inner, x.gv(), v.gv(), y.g.at_mut(OFF));
            cpu.channel_broadcast(op, outer, ch, inner, x.cv(), v.cv(), y.c.at_mut(OFF));
            y.same(&what(&format!("channel_broadcast {op:?}")));

            let mut y = Both::new(&be, &test_data(n, seed + 1));
            be.channel_broadcast_inplace(op, outer, ch, inner, v.gv(), y.g.at_mut(OFF));
            cpu.channel_broadcast_inplace(op, outer, ch, inner, v.cv(), y.c.at_mut(OFF));
            y.same(&what(&format!("channel_broadcast_inplace {op:?}")));
        }
        let mut y = Both::new(&be, &test_data(n, seed + 1));
        be.channel_affine(outer, ch, inner, v.gv(), bias.gv(), y.g.at_mut(OFF));
        cpu.channel_affine(outer, ch, inner, v.cv(), bias.cv(), y.c.at_mut(OFF));
        y.same(&what("channel_affine"));
        // The CPU's fused pass equals the trait's two-pass definition.
        let mut two = Buffer::from_vec(x.c.read(OFF + n));
        cpu.channel_broadcast_inplace(Binary::Mul, outer, ch, inner, v.cv(), two.at_mut(OFF));
        cpu.channel_broadcast_inplace(Binary::Add, outer, ch, inner, bias.cv(), two.at_mut(OFF));
        same(
            &what("channel_affine vs two passes"),
            &y.get().0,
            &two.read(OFF + n),
        );

        for s0 in [0.37f32, 0.0, -3.0] {
            let sb = Both::new(&be, &[s0]);
            let mut y = Both::new(&be, &vec![f32::NAN; n]);
            be.scale_by_inverse(n, sb.gv(), x.gv(), y.g.at_mut(OFF));
            cpu.scale_by_inverse(n, sb.cv(), x.cv(), y.c.at_mut(OFF));
            y.same(&what(&format!("scale_by_inverse s={s0}")));
        }
    }
    be.sync().unwrap();
}

/// PReLU at per-channel and channel_shared shapes (the layer passes
/// `(num, 1, count/num)` for a shared slope).
#[test]
fn prelu_matches() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    let shapes = [
        (2, 3, 1),
        (3, 5, 7),
        (4, 17, 129),
        (2, 1, 3 * 17 * 19), // channel_shared
        (5, 1, 1),           // channel_shared, one value per item
        (1, 1, 70_001),
        (8, 6, 3001),
    ];
    for (s, &(outer, ch, inner)) in shapes.iter().enumerate() {
        let n = outer * ch * inner;
        let seed = 200 + 10 * s as u32;
        let x = Both::new(&be, &test_data(n, seed + 1));
        let dy = Both::new(&be, &test_data(n, seed + 2));
        let slope = Both::new(&be, &test_data(ch, seed + 3));
        let what = |op: &str| format!("{op} at ({outer}, {ch}, {inner})");

        let mut y = Both::new(&be, &vec![f32::NAN; n]);
        be.prelu_forward(outer, ch, inner, x.gv(), slope.gv(), y.g.at_mut(OFF));
        cpu.prelu_forward(outer, ch, inner, x.cv(), slope.cv(), y.c.at_mut(OFF));
        y.same(&what("prelu_forward"));

        let mut dx = Both::new(&be, &vec![f32::NAN; n]);
        be.prelu_backward_data(
            outer,
            ch,
            inner,
            x.gv(),
            dy.gv(),
            slope.gv(),
            dx.g.at_mut(OFF),
        );
        cpu.prelu_backward_data(
            outer,
            ch,
            inner,
            x.cv(),
            dy.cv(),
            slope.cv(),
            dx.c.at_mut(OFF),
        );
        dx.same(&what("prelu_backward_data"));

        // Accumulates into an existing gradient.
        let sd0 = test_data(ch, seed + 4);
        let mut sd = Both::new(&be, &sd0);
        be.prelu_backward_slope(outer, ch, inner, x.gv(), dy.gv(), sd.g.at_mut(OFF));
        cpu.prelu_backward_slope(outer, ch, inner, x.cv(), dy.cv(), sd.c.at_mut(OFF));
        let (g, c) = sd.get();
        same(
            &what("prelu_backward_slope (padding)"),
            &g[..OFF],
            &c[..OFF],
        );
        let (xs, ds) = (test_data(n, seed + 1), test_data(n, seed + 2));
        for k in 0..ch {
            let (mut exact, mut mag) = (f64::from(sd0[k]), f64::from(sd0[k]).abs());
            for o in 0..outer {
                for i in 0..inner {
                    let j = (o * ch + k) * inner + i;
                    if xs[j] <= 0.0 {
                        let t = f64::from(ds[j] * xs[j]);
                        exact += t;
                        mag += t.abs();
                    }
                }
            }
            let (gk, ck) = (f64::from(g[OFF + k]), f64::from(c[OFF + k]));
            assert!(
                (gk - ck).abs() <= 1e-5 * mag.max(1e-30),
                "{}: channel {k}: gpu {gk} cpu {ck} (Σ|terms| {mag})",
                what("prelu_backward_slope")
            );
            assert!(
                (gk - exact).abs() <= 1e-6 * mag.max(1e-30),
                "{}: channel {k}: gpu {gk} exact {exact}",
                what("prelu_backward_slope")
            );
        }
    }
    be.sync().unwrap();
}

/// LSTM steps: streams restarting (cont 0), continuing (cont 1), at sizes
/// below and above a block.
#[test]
fn lstm_unit_and_scale_rows_match() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (s, &(n, h)) in [(1usize, 1usize), (3, 7), (5, 300), (64, 129)]
        .iter()
        .enumerate()
    {
        let seed = 300 + 10 * s as u32;
        let what = |op: &str| format!("{op} at n={n} h={h}");
        // Pre-activations in [-6, 6): saturated gates as well.
        let gates: Vec<f32> = test_data(n * 4 * h, seed + 1)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        let gates = Both::new(&be, &gates);
        let c_prev = Both::new(&be, &test_data(n * h, seed + 2));
        // Stream 0 restarts, stream 1 continues, then alternating.
        let cont_v: Vec<f32> = (0..n).map(|r| (r % 2) as f32).collect();
        let cont = Both::new(&be, &cont_v);
        let mut c = Both::new(&be, &vec![f32::NAN; n * h]);
        let mut hv = Both::new(&be, &vec![f32::NAN; n * h]);
        be.lstm_unit_forward(
            n,
            h,
            c_prev.gv(),
            gates.gv(),
            cont.gv(),
            c.g.at_mut(OFF),
            hv.g.at_mut(OFF),
        );
        cpu.lstm_unit_forward(
            n,
            h,
            c_prev.cv(),
            gates.cv(),
            cont.cv(),
            c.c.at_mut(OFF),
            hv.c.at_mut(OFF),
        );
        c.close(&what("lstm_unit_forward c"), 1e-5);
        hv.close(&what("lstm_unit_forward h"), 1e-5);
        // Restarted streams forget c_prev entirely.
        let (gc, _) = c.get();
        let (gx, gcp) = (gates.get().0, c_prev.get().0);
        for d in 0..h {
            let cp = gcp[OFF + d];
            assert!(cp.is_finite() && gc[OFF + d].is_finite());
            let x = |k: usize| gx[OFF + k * h + d];
            let sg = |v: f32| 1.0 / (1.0 + (-v).exp());
            let want = sg(x(0)) * (2.0 * sg(2.0 * x(3)) - 1.0);
            assert!(
                (gc[OFF + d] - want).abs() <= 1e-6,
                "{}: cont = 0 must drop c_prev",
                what("lstm_unit_forward")
            );
        }

        // Backward from the CPU's c (the same input on both sides).
        let c_in = Both::new(&be, &c.get().1[OFF..]);
        let dc = Both::new(&be, &test_data(n * h, seed + 3));
        let dh = Both::new(&be, &test_data(n * h, seed + 4));
        let mut dcp = Both::new(&be, &vec![f32::NAN; n * h]);
        let mut dg = Both::new(&be, &vec![f32::NAN; n * 4 * h]);
        be.lstm_unit_backward(
            n,
            h,
            c_prev.gv(),
            gates.gv(),
            cont.gv(),
            c_in.gv(),
            dc.gv(),
            dh.gv(),
            dcp.g.at_mut(OFF),
            dg.g.at_mut(OFF),
        );
        cpu.lstm_unit_backward(
            n,
            h,
            c_prev.cv(),
            gates.cv(),
            cont.cv(),
            c_in.cv(),
            dc.cv(),
            dh.cv(),
            dcp.c.at_mut(OFF),
            dg.c.at_mut(OFF),
        );
        dcp.close(&what("lstm_unit_backward dc_prev"), 1e-5);
        dg.close(&what("lstm_unit_backward dgates"), 1e-5);
        // cont = 0: no gradient reaches c_prev or the forget gate.
        let (gdcp, gdg) = (dcp.get().0, dg.get().0);
        for d in 0..h {
            assert_eq!(gdcp[OFF + d], 0.0, "{}", what("dc_prev with cont 0"));
            assert_eq!(gdg[OFF + h + d], 0.0, "{}", what("df with cont 0"));
        }

        // scale_rows, cols = h and 4h, with and without beta.
        for cols in [h, 4 * h] {
            let x = Both::new(&be, &test_data(n * cols, seed + 5));
            let sv: Vec<f32> = cont_v
                .iter()
                .zip(test_data(n, seed + 6))
                .map(|(c, r)| c + 0.5 * r)
                .collect();
            let sb = Both::new(&be, &sv);
            for beta in [0.0f32, 0.5] {
                let init = if beta == 0.0 {
                    vec![f32::NAN; n * cols]
                } else {
                    test_data(n * cols, seed + 7)
                };
                let mut y = Both::new(&be, &init);
                be.scale_rows(n, cols, sb.gv(), x.gv(), beta, y.g.at_mut(OFF));
                cpu.scale_rows(n, cols, sb.cv(), x.cv(), beta, y.c.at_mut(OFF));
                y.same(&what(&format!("scale_rows cols={cols} β={beta}")));
            }
        }
    }
    be.sync().unwrap();
}

#[test]
fn sumsq_and_regularize_match() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (s, &n) in [1usize, 257, 70_001, (1 << 20) + 3].iter().enumerate() {
        let x = Both::new(&be, &test_data(n, 400 + s as u32));
        let (g, c) = (be.sumsq(n, x.gv()), cpu.sumsq(n, x.cv()));
        let e = (f64::from(g) - f64::from(c)).abs() / f64::from(c);
        assert!(e <= 1e-6, "sumsq n={n}: gpu {g} cpu {c}");
        for kind in [Regularization::L2, Regularization::L1] {
            let mut d = Both::new(&be, &test_data(n, 410 + s as u32));
            be.regularize(n, kind, 5e-4, x.gv(), d.g.at_mut(OFF));
            cpu.regularize(n, kind, 5e-4, x.cv(), d.c.at_mut(OFF));
            d.same(&format!("regularize {kind:?} n={n}"));
        }
    }
    assert_eq!(be.sumsq(0, be.alloc(1).view()), 0.0);
    be.sync().unwrap();
}

/// The update rules.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Sgd,
    Nesterov,
    AdaGrad,
    RmsProp,
    AdaDelta,
    Adam,
}

/// One solver step on one backend: regularise the fresh gradient, then
/// update (`h2` is AdaDelta's second history and Adam's `v`).
#[allow(clippy::too_many_arguments)]
fn step<B: SolverOps + ?Sized>(
    be: &B,
    rule: Rule,
    t: usize,
    n: usize,
    reg: Regularization,
    diff: ViewMut,
    h: ViewMut,
    h2: ViewMut,
    w: ViewMut,
) {
    let mut diff = diff;
    be.regularize(n, reg, 1e-3, w.as_view(), diff.rb());
    let lr = 0.01;
    match rule {
        Rule::Sgd => be.sgd_update(n, 0.9, lr, diff, h, w),
        Rule::Nesterov => be.nesterov_update(n, 0.9, lr, diff, h, w),
        Rule::AdaGrad => be.adagrad_update(n, 1e-8, lr, diff, h, w),
        Rule::RmsProp => be.rmsprop_update(n, 0.98, 1e-8, lr, diff, h, w),
        Rule::AdaDelta => be.adadelta_update(n, 0.95, 1e-6, 1.0, diff, h, h2, w),
        Rule::Adam => {
            // Caffe's bias correction, computed on the host per step.
            let (b1, b2) = (0.9f32, 0.999f32);
            let k = (t + 1) as i32;
            let corrected = lr * (1.0 - b2.powi(k)).sqrt() / (1.0 - b1.powi(k));
            be.adam_update(n, b1, b2, 1e-8, corrected, diff, h, h2, w)
        }
    }
}

#[test]
fn solver_updates_match_over_three_steps() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    let rules = [
        Rule::Sgd,
        Rule::Nesterov,
        Rule::AdaGrad,
        Rule::RmsProp,
        Rule::AdaDelta,
        Rule::Adam,
    ];
    for (ri, &rule) in rules.iter().enumerate() {
        for (s, &n) in [1usize, 1001, 70_001].iter().enumerate() {
            for reg in [Regularization::L2, Regularization::L1] {
                let seed = 500 + 100 * ri as u32 + 10 * s as u32;
                let mut w = Both::new(&be, &test_data(n, seed));
                // Histories start at zero, as in Caffe.
                let mut h = Both::new(&be, &vec![0.0; n]);
                let mut h2 = Both::new(&be, &vec![0.0; n]);
                for t in 0..3 {
                    let mut diff = Both::new(&be, &test_data(n, seed + 1 + t as u32));
                    step(&be, rule, t, n, reg, diff.gm(), h.gm(), h2.gm(), w.gm());
                    step(&cpu, rule, t, n, reg, diff.cm(), h.cm(), h2.cm(), w.cm());
                    let what = |x: &str| format!("{rule:?} {reg:?} n={n} step {t}: {x}");
                    let exact = matches!(rule, Rule::Sgd | Rule::Nesterov);
                    for (b, name) in [
                        (&diff, "diff"),
                        (&h, "history"),
                        (&h2, "history2"),
                        (&w, "data"),
                    ] {
                        if exact {
                            b.same(&what(name));
                        } else {
                            b.close(&what(name), 1e-6);
                        }
                    }
                }
            }
        }
    }
    be.sync().unwrap();
}
