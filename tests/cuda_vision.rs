//! On a GPU: the CUDA backend's PoolOps, LrnOps, SoftmaxOps and EltwiseOps
//! against the CPU backend, every trait method on deterministic random data
//! at several geometries, through views at non-zero offsets.
//!
//! Tolerances (‖gpu − cpu‖ / ‖cpu‖ unless exact):
//! - pooling: exact. Both run the same comparisons, and the same additions
//!   in the same order (AVE sums row by row; AVE backward adds each
//!   window's `dy / size` in row-major window order) with IEEE division.
//!   Max-pool masks and Eltwise MAX masks are compared as integers.
//! - LRN: 1e-5. CUDA's `powf` and the CPU's closed forms for β = 0.75 are
//!   a few ulp apart, the GPU keeps Caffe's `Σx²` running sum where the
//!   CPU adds `α/n·x²` onto `k`, and nvcc contracts multiply-adds.
//! - softmax forward/backward: 1e-5 (CUDA's `expf` is within 2 ulp, the
//!   CPU's libm within 1; the dot product may be fused on the GPU).
//! - softmax loss: 1e-5 relative on the sum (the GPU adds per-column
//!   losses in double, the CPU in float; `logf` vs libm differ by an ulp);
//!   the valid count and the loss gradient are exact.
//! - accuracy: exact (quotients of exact integer counts on both sides).
//!
//! Without a usable GPU these tests print why and pass, unless
//! RCAFFE_REQUIRE_CUDA=1 (scripts/gpu-check.sh sets it), which makes that a
//! failure.
#![cfg(feature = "cuda")]

use rcaffe::testing::backends::{assert_close, cuda_backend, test_data};

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::lrn::LrnParams;
use rcaffe::backend::pool::PoolGeometry;
use rcaffe::backend::{Buffer, EltwiseOps, LrnOps, Math, PoolOps, SoftmaxOps};

/// `data` rounded to multiples of 0.5: nine distinct values, so windows
/// and bottoms tie often.
fn coarse(n: usize, seed: u32) -> Vec<f32> {
    test_data(n, seed)
        .iter()
        .map(|v| (v * 2.0).round() / 2.0)
        .collect()
}

/// Values before each view: every call reads and writes at this offset, so
/// a kernel that ignores the view's offset fails.
const OFF: usize = 3;
/// What the unused head and every output start as (outputs must be
/// overwritten).
const FILL: f32 = 7.25;

/// `v` at offset OFF of a new buffer of backend `be`.
fn up<B: Math + ?Sized>(be: &B, v: &[f32]) -> Buffer {
    let mut b = be.alloc(OFF + v.len());
    let mut h = vec![FILL; OFF];
    h.extend_from_slice(v);
    b.write(&h);
    b
}

/// An output of `n` values at offset OFF, pre-filled with FILL.
fn out<B: Math + ?Sized>(be: &B, n: usize) -> Buffer {
    up(be, &vec![FILL; n])
}

/// The `n` values at offset OFF; the head must be untouched.
fn get(b: &Buffer, n: usize) -> Vec<f32> {
    let v = b.read(OFF + n);
    assert!(v[..OFF].iter().all(|&x| x == FILL), "head overwritten");
    v[OFF..].to_vec()
}

/// Bit-for-bit equality (NaNs included).
fn exact(what: &str, gpu: &[f32], cpu: &[f32]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        let same = g.to_bits() == c.to_bits() || (g.is_nan() && c.is_nan());
        assert!(same, "{what}: [{i}] gpu {g} vs cpu {c}");
    }
}

/// Masks as integers (every stored index is a small integer or −1).
fn ints(v: &[f32]) -> Vec<i64> {
    v.iter()
        .map(|&m| {
            assert_eq!(m, m.trunc(), "mask value {m} is not an integer");
            m as i64
        })
        .collect()
}

// ---------------------------------------------------------------- pooling

/// Caffe's pooled size: ceil mode, then the last window must start inside
/// the image or its padding.
fn pooled(size: usize, k: usize, s: usize, p: usize) -> usize {
    let mut o = (size + 2 * p - k).div_ceil(s) + 1;
    if p > 0 && (o - 1) * s >= size + p {
        o -= 1;
    }
    o
}

#[allow(clippy::too_many_arguments)]
fn geom(
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
) -> PoolGeometry {
    PoolGeometry {
        height: h,
        width: w,
        pooled_height: pooled(h, kh, sh, ph),
        pooled_width: pooled(w, kw, sw, pw),
        kernel_h: kh,
        kernel_w: kw,
        stride_h: sh,
        stride_w: sw,
        pad_h: ph,
        pad_w: pw,
    }
}

/// Forward and backward of both pooling methods on one backend:
/// (max y, max mask, max dx, ave y, ave dx).
struct Pooled {
    max_y: Vec<f32>,
    mask: Vec<f32>,
    max_dx: Vec<f32>,
    ave_y: Vec<f32>,
    ave_dx: Vec<f32>,
}

fn pool_all<B: PoolOps + ?Sized>(
    be: &B,
    g: &PoolGeometry,
    planes: usize,
    x: &[f32],
    dy: &[f32],
) -> Pooled {
    let (ni, no) = (planes * g.in_plane(), planes * g.out_plane());
    let xb = up(be, x);
    let dyb = up(be, dy);
    let (mut y, mut m, mut dx) = (out(be, no), out(be, no), out(be, ni));
    be.max_pool_forward(g, planes, xb.at(OFF), y.at_mut(OFF), m.at_mut(OFF));
    be.max_pool_backward(g, planes, dyb.at(OFF), m.at(OFF), dx.at_mut(OFF));
    let (mut ya, mut dxa) = (out(be, no), out(be, ni));
    be.ave_pool_forward(g, planes, xb.at(OFF), ya.at_mut(OFF));
    be.ave_pool_backward(g, planes, dyb.at(OFF), dxa.at_mut(OFF));
    Pooled {
        max_y: get(&y, no),
        mask: get(&m, no),
        max_dx: get(&dx, ni),
        ave_y: get(&ya, no),
        ave_dx: get(&dxa, ni),
    }
}

#[test]
fn pooling_matches_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    let cases = [
        // Padding with ceil-mode windows clipped at the padded edge.
        ("k3 s2 p1", geom(7, 9, 3, 3, 2, 2, 1, 1), 6),
        ("k3 s2 p1 overhang", geom(6, 6, 3, 3, 2, 2, 1, 1), 5),
        // AlexNet-like: k3 s2, no padding, odd sizes.
        ("k3 s2", geom(13, 13, 3, 3, 2, 2, 0, 0), 4),
        // Rectangular kernel, stride 1, asymmetric padding.
        ("k3x2 s1 p1x0", geom(5, 8, 3, 2, 1, 1, 1, 0), 3),
        // Stride > kernel: the last window starts past the image (empty:
        // max −FLT_MAX with mask −1, AVE 0/0).
        ("k2 s5", geom(10, 7, 2, 2, 5, 5, 0, 0), 4),
        ("k2 s3", geom(10, 11, 2, 2, 3, 3, 0, 0), 3),
        // Global pooling.
        ("global", geom(5, 6, 5, 6, 1, 1, 0, 0), 7),
        // 2×2 and 3×3 kernels over a wide plane (the CPU's vector paths).
        ("k2 s2 wide", geom(9, 37, 2, 2, 2, 2, 0, 0), 5),
        ("k3 s1 p1 wide", geom(8, 41, 3, 3, 1, 1, 1, 1), 5),
    ];
    for (name, g, planes) in cases {
        let x = coarse(planes * g.in_plane(), 11);
        let dy = test_data(planes * g.out_plane(), 12);
        let gp = pool_all(&be, &g, planes, &x, &dy);
        let cp = pool_all(&cpu, &g, planes, &x, &dy);
        exact(&format!("{name}: max y"), &gp.max_y, &cp.max_y);
        assert_eq!(ints(&gp.mask), ints(&cp.mask), "{name}: max mask");
        exact(&format!("{name}: max dx"), &gp.max_dx, &cp.max_dx);
        // AVE on unrounded data (the sums differ from one window to the next).
        let x = test_data(planes * g.in_plane(), 13);
        let ga = pool_all(&be, &g, planes, &x, &dy);
        let ca = pool_all(&cpu, &g, planes, &x, &dy);
        exact(&format!("{name}: ave y"), &ga.ave_y, &ca.ave_y);
        exact(&format!("{name}: ave dx"), &ga.ave_dx, &ca.ave_dx);
    }
    be.sync().unwrap();
}

// -------------------------------------------------------------------- LRN

#[test]
fn lrn_across_channels_matches_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    // (num, channels, spatial, size, beta): windows inside the channels,
    // wider than the channels, one channel, and a β without a closed form
    // on the CPU.
    let cases = [
        (2, 7, 15, 5, 0.75),
        (3, 9, 13, 3, 0.75),
        (2, 2, 33, 5, 0.75),
        (1, 1, 10, 3, 0.75),
        // Fewer channels than the window's half: Caffe's kernel wrote
        // before the image here.
        (2, 1, 10, 5, 0.75),
        (3, 2, 12, 7, 0.75),
        (2, 6, 49, 5, 0.6),
    ];
    for (num, c, sp, size, beta) in cases {
        let p = LrnParams {
            size,
            alpha: 0.5,
            beta,
            k: 1.5,
        };
        let n = num * c * sp;
        let x = test_data(n, 21);
        let dy = test_data(n, 22);
        let run = |b: &dyn LrnOpsDyn| -> (Vec<f32>, Vec<f32>, Vec<f32>) {
            b.across(&p, num, c, sp, &x, &dy)
        };
        let (gs, gy, gdx) = run(&be);
        let (cs, cy, cdx) = run(&cpu);
        let what = format!("across num {num} c {c} sp {sp} size {size} beta {beta}");
        assert_close(&format!("{what}: scale"), &gs, &cs, 1e-5);
        assert_close(&format!("{what}: y"), &gy, &cy, 1e-5);
        assert_close(&format!("{what}: dx"), &gdx, &cdx, 1e-5);
    }
    be.sync().unwrap();
}

#[test]
fn lrn_within_channel_matches_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    // (planes, height, width, size, beta): windows clipped at every edge,
    // a window larger than the plane, and a β without a closed form.
    let cases = [
        (6, 7, 9, 3, 0.75),
        (4, 5, 6, 5, 0.75),
        (3, 3, 4, 5, 0.75),
        (5, 11, 13, 5, 0.6),
    ];
    for (planes, h, w, size, beta) in cases {
        let p = LrnParams {
            size,
            alpha: 0.5,
            beta,
            k: 1.5,
        };
        let n = planes * h * w;
        let x = test_data(n, 31);
        let dy = test_data(n, 32);
        let (ga, gs, gy, gdx) = (&be as &dyn LrnOpsDyn).within(&p, planes, h, w, &x, &dy);
        let (ca, cs, cy, cdx) = (&cpu as &dyn LrnOpsDyn).within(&p, planes, h, w, &x, &dy);
        let what = format!("within planes {planes} {h}x{w} size {size} beta {beta}");
        assert_close(&format!("{what}: avg"), &ga, &ca, 1e-5);
        assert_close(&format!("{what}: scale"), &gs, &cs, 1e-5);
        assert_close(&format!("{what}: y"), &gy, &cy, 1e-5);
        assert_close(&format!("{what}: dx"), &gdx, &cdx, 1e-5);
    }
    be.sync().unwrap();
}

/// Both backends behind one object-safe helper, so each case runs the same
/// code on either.
trait LrnOpsDyn {
    #[allow(clippy::too_many_arguments)]
    fn across(
        &self,
        p: &LrnParams,
        num: usize,
        c: usize,
        sp: usize,
        x: &[f32],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>);
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn within(
        &self,
        p: &LrnParams,
        planes: usize,
        h: usize,
        w: usize,
        x: &[f32],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);
}

impl<B: LrnOps> LrnOpsDyn for B {
    fn across(
        &self,
        p: &LrnParams,
        num: usize,
        c: usize,
        sp: usize,
        x: &[f32],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = num * c * sp;
        let (xb, dyb) = (up(self, x), up(self, dy));
        let (mut s, mut y, mut dx) = (out(self, n), out(self, n), out(self, n));
        self.lrn_across_forward(p, num, c, sp, xb.at(OFF), s.at_mut(OFF), y.at_mut(OFF));
        self.lrn_across_backward(
            p,
            num,
            c,
            sp,
            xb.at(OFF),
            y.at(OFF),
            s.at(OFF),
            dyb.at(OFF),
            dx.at_mut(OFF),
        );
        (get(&s, n), get(&y, n), get(&dx, n))
    }

    fn within(
        &self,
        p: &LrnParams,
        planes: usize,
        h: usize,
        w: usize,
        x: &[f32],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = planes * h * w;
        let (xb, dyb) = (up(self, x), up(self, dy));
        let (mut a, mut s, mut y, mut dx) =
            (out(self, n), out(self, n), out(self, n), out(self, n));
        self.lrn_within_forward(
            p,
            planes,
            h,
            w,
            xb.at(OFF),
            a.at_mut(OFF),
            s.at_mut(OFF),
            y.at_mut(OFF),
        );
        self.lrn_within_backward(
            p,
            planes,
            h,
            w,
            xb.at(OFF),
            a.at(OFF),
            s.at(OFF),
            dyb.at(OFF),
            dx.at_mut(OFF),
        );
        (get(&a, n), get(&s, n), get(&y, n), get(&dx, n))
    }
}

// ---------------------------------------------------------------- softmax

/// (outer, channels, inner): over channels with inner > 1, the
/// classification shape (inner 1), one channel, odd sizes throughout.
const SOFTMAX_SHAPES: [(usize, usize, usize); 5] =
    [(2, 5, 7), (3, 10, 1), (1, 1, 13), (4, 3, 33), (5, 21, 9)];

#[test]
fn softmax_forward_and_backward_match_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (outer, ch, inner) in SOFTMAX_SHAPES {
        let n = outer * ch * inner;
        // Scores up to ±16: without the max subtraction exp would lose them.
        let x: Vec<f32> = test_data(n, 41).iter().map(|v| v * 8.0).collect();
        let dy = test_data(n, 42);
        let mut gx = up(&be, &x);
        let mut cx = up(&cpu, &x);
        be.softmax_forward(outer, ch, inner, gx.at_mut(OFF));
        cpu.softmax_forward(outer, ch, inner, cx.at_mut(OFF));
        let what = format!("softmax ({outer}, {ch}, {inner})");
        let (gy, cy) = (get(&gx, n), get(&cx, n));
        assert_close(&format!("{what} forward"), &gy, &cy, 1e-5);
        // Backward from the same probabilities on both sides.
        let yg = up(&be, &cy);
        let yc = up(&cpu, &cy);
        let (mut gd, mut cd) = (up(&be, &dy), up(&cpu, &dy));
        be.softmax_backward(outer, ch, inner, yg.at(OFF), gd.at_mut(OFF));
        cpu.softmax_backward(outer, ch, inner, yc.at(OFF), cd.at_mut(OFF));
        assert_close(
            &format!("{what} backward"),
            &get(&gd, n),
            &get(&cd, n),
            1e-5,
        );
    }
    // A NaN score makes its column NaN on both.
    let mut gx = up(&be, &[1.0, f32::NAN, 2.0, 0.5, 0.25, 3.0]);
    be.softmax_forward(1, 3, 2, gx.at_mut(OFF));
    let y = get(&gx, 6);
    assert!(y[1].is_nan() && y[3].is_nan() && y[5].is_nan(), "{y:?}");
    assert!(
        y[0].is_finite() && y[2].is_finite() && y[4].is_finite(),
        "{y:?}"
    );
    be.sync().unwrap();
}

/// Probabilities (a CPU softmax of random scores, one clamped to an exact
/// zero at a labelled position) and labels in [0, ch), some replaced by
/// `ignore`.
fn loss_inputs(outer: usize, ch: usize, inner: usize, ignore: Option<i32>) -> (Vec<f32>, Vec<f32>) {
    let cpu = CpuBackend::new();
    let n = outer * ch * inner;
    let x: Vec<f32> = test_data(n, 51).iter().map(|v| v * 4.0).collect();
    let mut b = Buffer::from_vec(x);
    cpu.softmax_forward(outer, ch, inner, b.view_mut());
    let mut prob = b.read(n);
    let labels: Vec<f32> = test_data(outer * inner, 52)
        .iter()
        .enumerate()
        .map(|(i, v)| match ignore {
            Some(l) if i % 5 == 2 => l as f32,
            _ => (((v + 2.0) / 4.0 * ch as f32) as usize).min(ch - 1) as f32,
        })
        .collect();
    // An exact zero probability: −log is clamped at FLT_MIN.
    let l0 = labels[0] as usize;
    if ignore != Some(labels[0] as i32) {
        prob[l0 * inner] = 0.0;
    }
    (prob, labels)
}

#[test]
fn softmax_loss_matches_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (outer, ch, inner) in SOFTMAX_SHAPES {
        // No ignore label, Caffe's usual 255, and a valid class ignored.
        for ignore in [None, Some(255), Some(0)] {
            let (prob, labels) = loss_inputs(outer, ch, inner, ignore);
            let what = format!("loss ({outer}, {ch}, {inner}) ignore {ignore:?}");
            let (gp, gl) = (up(&be, &prob), up(&be, &labels));
            let (cp, cl) = (up(&cpu, &prob), up(&cpu, &labels));
            let (g_loss, g_n) = be
                .softmax_loss_forward(outer, ch, inner, gp.at(OFF), gl.at(OFF), ignore)
                .unwrap();
            let (c_loss, c_n) = cpu
                .softmax_loss_forward(outer, ch, inner, cp.at(OFF), cl.at(OFF), ignore)
                .unwrap();
            assert_eq!(g_n, c_n, "{what}: valid count");
            assert_close(&format!("{what}: loss"), &[g_loss], &[c_loss], 1e-5);
            let n = outer * ch * inner;
            let (mut gdx, mut cdx) = (out(&be, n), out(&cpu, n));
            let g_n = be
                .softmax_loss_backward(
                    outer,
                    ch,
                    inner,
                    gp.at(OFF),
                    gl.at(OFF),
                    ignore,
                    gdx.at_mut(OFF),
                )
                .unwrap();
            let c_n = cpu
                .softmax_loss_backward(
                    outer,
                    ch,
                    inner,
                    cp.at(OFF),
                    cl.at(OFF),
                    ignore,
                    cdx.at_mut(OFF),
                )
                .unwrap();
            assert_eq!(g_n, c_n, "{what}: backward valid count");
            exact(&format!("{what}: dx"), &get(&gdx, n), &get(&cdx, n));
        }
    }
    be.sync().unwrap();
}

#[test]
fn softmax_loss_rejects_bad_labels_like_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    let (outer, ch, inner) = (3, 4, 5);
    let (prob, mut labels) = loss_inputs(outer, ch, inner, Some(255));
    // The first bad label in column order is named; 255 stays ignored.
    labels[7] = 4.0;
    labels[11] = -1.0;
    let n = outer * ch * inner;
    let (gp, gl) = (up(&be, &prob), up(&be, &labels));
    let (cp, cl) = (up(&cpu, &prob), up(&cpu, &labels));
    let ge = be
        .softmax_loss_forward(outer, ch, inner, gp.at(OFF), gl.at(OFF), Some(255))
        .unwrap_err()
        .to_string();
    let ce = cpu
        .softmax_loss_forward(outer, ch, inner, cp.at(OFF), cl.at(OFF), Some(255))
        .unwrap_err()
        .to_string();
    assert_eq!(ge, ce);
    assert!(ge.contains("label 4"), "{ge}");
    let mut gdx = out(&be, n);
    let ge = be
        .softmax_loss_backward(
            outer,
            ch,
            inner,
            gp.at(OFF),
            gl.at(OFF),
            Some(255),
            gdx.at_mut(OFF),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(ge, ce);
    // Without an ignore label, 255 is itself out of range.
    let ge = be
        .softmax_loss_forward(outer, ch, inner, gp.at(OFF), gl.at(OFF), None)
        .unwrap_err()
        .to_string();
    let ce = cpu
        .softmax_loss_forward(outer, ch, inner, cp.at(OFF), cl.at(OFF), None)
        .unwrap_err()
        .to_string();
    assert_eq!(ge, ce);
    be.sync().unwrap();
}

// ---------------------------------------------------------------- eltwise

#[test]
fn eltwise_max_matches_the_cpu_backend_with_ties() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for n in [1usize, 1001, 70_001] {
        // Four bottoms of nine distinct values: ties between every pair,
        // and a few NaNs (bottom 1 takes over from a NaN, later bottoms
        // never do).
        let mut bottoms: Vec<Vec<f32>> = (0..4).map(|b| coarse(n, 60 + b)).collect();
        for (b, v) in bottoms.iter_mut().enumerate() {
            for i in (b * 3..n).step_by(101) {
                v[i] = f32::NAN;
            }
        }
        let dy = test_data(n, 70);
        let run = |be: &dyn EltwiseDyn| be.run(n, &bottoms, &dy);
        let (gy, gm, gdx) = run(&be);
        let (cy, cm, cdx) = run(&cpu);
        exact(&format!("eltwise max n={n}: y"), &gy, &cy);
        assert_eq!(ints(&gm), ints(&cm), "eltwise max n={n}: mask");
        for (i, (g, c)) in gdx.iter().zip(&cdx).enumerate() {
            exact(&format!("eltwise max n={n}: dx of bottom {i}"), g, c);
        }
    }
    be.sync().unwrap();
}

trait EltwiseDyn {
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        n: usize,
        bottoms: &[Vec<f32>],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>);
}

impl<B: EltwiseOps> EltwiseDyn for B {
    /// The layer's sequence: y = bottom 0, mask = 0, fold bottoms 1.., then
    /// every bottom's gradient.
    fn run(
        &self,
        n: usize,
        bottoms: &[Vec<f32>],
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
        let mut y = up(self, &bottoms[0]);
        let mut m = up(self, &vec![0.0; n]);
        for (i, b) in bottoms.iter().enumerate().skip(1) {
            let xb = up(self, b);
            self.eltwise_max_forward(n, i, xb.at(OFF), y.at_mut(OFF), m.at_mut(OFF));
        }
        let dyb = up(self, dy);
        let dx = (0..bottoms.len())
            .map(|i| {
                let mut d = out(self, n);
                self.eltwise_max_backward(n, i, dyb.at(OFF), m.at(OFF), d.at_mut(OFF));
                get(&d, n)
            })
            .collect();
        (get(&y, n), get(&m, n), dx)
    }
}

// ---------------------------------------------------------------- accuracy

/// Accuracy on both backends: `(acc, per-class)` or the error text.
fn accuracy_on<B: SoftmaxOps + ?Sized>(
    be: &B,
    (outer, ch, inner): (usize, usize, usize),
    top_k: usize,
    ignore: Option<i32>,
    score: &[f32],
    labels: &[f32],
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let (s, l) = (up(be, score), up(be, labels));
    let (mut acc, mut pc) = (out(be, 1), out(be, ch));
    // Without a per-class output, into a separate blob.
    let mut acc_only = out(be, 1);
    be.accuracy(
        outer,
        ch,
        inner,
        top_k,
        ignore,
        s.at(OFF),
        l.at(OFF),
        acc_only.at_mut(OFF),
        None,
    )
    .map_err(|e| e.to_string())?;
    be.accuracy(
        outer,
        ch,
        inner,
        top_k,
        ignore,
        s.at(OFF),
        l.at(OFF),
        acc.at_mut(OFF),
        Some(pc.at_mut(OFF)),
    )
    .map_err(|e| e.to_string())?;
    let a = get(&acc, 1);
    assert_eq!(a[0].to_bits(), get(&acc_only, 1)[0].to_bits());
    Ok((a, get(&pc, ch)))
}

#[test]
fn accuracy_matches_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    // Inner 1 and > 1, odd sizes; coarse scores tie often.
    for (outer, ch, inner) in [(7, 5, 1), (3, 10, 13), (2, 4, 257), (33, 21, 1)] {
        let n = outer * ch * inner;
        let mut score = coarse(n, 80);
        // A few NaN scores, some of them true-class scores.
        for i in (0..n).step_by(17) {
            score[i] = f32::NAN;
        }
        for ignore in [None, Some(0), Some(255)] {
            let (_, labels) = loss_inputs(outer, ch, inner, ignore);
            for top_k in [1, 3] {
                let dims = (outer, ch, inner);
                let what = format!("accuracy {dims:?} top_k {top_k} ignore {ignore:?}");
                let (ga, gp) = accuracy_on(&be, dims, top_k, ignore, &score, &labels).unwrap();
                let (ca, cp) = accuracy_on(&cpu, dims, top_k, ignore, &score, &labels).unwrap();
                exact(&format!("{what}: accuracy"), &ga, &ca);
                exact(&format!("{what}: per class"), &gp, &cp);
            }
        }
    }
    // Everything ignored: 0, and 0/0 per class is 0.
    let dims = (3, 4, 2);
    let score = coarse(24, 81);
    let labels = vec![255.0; 6];
    let g = accuracy_on(&be, dims, 1, Some(255), &score, &labels).unwrap();
    let c = accuracy_on(&cpu, dims, 1, Some(255), &score, &labels).unwrap();
    assert_eq!(g, c);
    assert_eq!(g, (vec![0.0], vec![0.0; 4]));
    // Bad labels: the first in column order is named, 255 stays ignored;
    // without an ignore label 255 is itself out of range.
    let (outer, ch, inner) = (3, 4, 5);
    let (_, mut labels) = loss_inputs(outer, ch, inner, Some(255));
    labels[7] = 4.0;
    labels[11] = -1.0;
    let score = coarse(outer * ch * inner, 82);
    for ignore in [Some(255), None] {
        let g = accuracy_on(&be, (outer, ch, inner), 1, ignore, &score, &labels).unwrap_err();
        let c = accuracy_on(&cpu, (outer, ch, inner), 1, ignore, &score, &labels).unwrap_err();
        assert_eq!(g, c);
        assert!(g.contains("is outside [0, 4)"), "{g}");
    }
    be.sync().unwrap();
}
