//! CPU `Math`: GEMM through the `gemm` crate, element-wise loops (rayon for
//! large tensors).
use rayon::prelude::*;

use super::{with_binary, CpuBackend, PAR_MIN};
use crate::backend::{Binary, Buffer, Math, Unary, View, ViewMut};

/// Row-major GEMM on host slices: `c = alpha·op(a)·op(b) + beta·c`.
/// The `gemm` crate computes `dst = alpha·dst + beta·lhs·rhs` (its alpha and
/// beta are swapped relative to BLAS) with arbitrary strides, so transposes
/// are only stride swaps.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "gemm operand too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        if beta == 0.0 {
            c[..m * n].iter_mut().for_each(|v| *v = 0.0);
        } else if beta != 1.0 {
            c[..m * n].iter_mut().for_each(|v| *v *= beta);
        }
        return;
    }
    // One small dimension (InnerProduct with a small batch): memory-bound
    // kernels that read the big operand in place, once.
    if super::skinny::try_gemm(trans_a, trans_b, m, n, k, alpha, a, b, beta, c) {
        return;
    }
    // (column stride, row stride) of op(A) [m×k] and op(B) [k×n].
    let (a_cs, a_rs) = if trans_a {
        (m as isize, 1)
    } else {
        (1, k as isize)
    };
    let (b_cs, b_rs) = if trans_b {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    // Large products use rayon unless we are already inside a rayon task
    // (layers parallelise across the batch themselves).
    let par = if m * n * k >= (1 << 18) && rayon::current_thread_index().is_none() {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the slices are at least as long as the strides address (asserted above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// Elements per rayon task of an element-wise loop: large enough that task
/// overhead vanishes, small enough (64 KiB) that both cores get even shares.
const CHUNK: usize = 1 << 14;

/// Run `f` over `y` in chunks, in parallel when `y` is large. `f` is a
/// plain loop over one chunk, so the compiler vectorises it.
fn each1(y: &mut [f32], f: impl Fn(&mut [f32]) + Sync) {
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(CHUNK).for_each(&f);
    } else {
        f(y)
    }
}

/// `each1` over `y` with the matching chunks of `x` (same length).
fn each2(x: &[f32], y: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| f(x, y));
    } else {
        f(x, y)
    }
}

/// `each1` over `y` with the matching chunks of `a` and `b`.
fn each3(a: &[f32], b: &[f32], y: &mut [f32], f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync) {
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(y, (a, b))| f(a, b, y));
    } else {
        f(a, b, y)
    }
}

fn map2(n: usize, x: &[f32], y: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    each2(&x[..n], &mut y[..n], |x, y| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = f(x, *y);
        }
    });
}

fn map1(n: usize, y: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    each1(&mut y[..n], |y| {
        for y in y {
            *y = f(*y);
        }
    });
}

/// ReLU, the hottest activation, gets its own loops (`Unary::forward` and
/// `backward` match on the variant per element, which blocks vectorisation).
fn relu(x: f32, slope: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        slope * x
    }
}

fn relu_grad(x: f32, dy: f32, slope: f32) -> f32 {
    if x > 0.0 {
        dy
    } else {
        dy * slope
    }
}

/// `r(seed, i)` of `Math::dropout_mask`: the high 32 bits of SplitMix64 at
/// counter `i + 1` (the CUDA kernel `rc_dropout_mask` computes the same).
pub(crate) fn dropout_bits(seed: u64, i: u64) -> u32 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 32) as u32
}

impl Math for CpuBackend {
    fn alloc(&self, n: usize) -> Buffer {
        Buffer::host_zeros(n)
    }

    fn gemm(
        &self,
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: View,
        b: View,
        beta: f32,
        mut c: ViewMut,
    ) {
        sgemm(
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha,
            a.host(m * k),
            b.host(k * n),
            beta,
            c.host(m * n),
        );
    }

    fn gemv(
        &self,
        trans_a: bool,
        m: usize,
        n: usize,
        alpha: f32,
        a: View,
        x: View,
        beta: f32,
        mut y: ViewMut,
    ) {
        let a = a.host(m * n);
        let (xl, yl) = if trans_a { (m, n) } else { (n, m) };
        let x = x.host(xl);
        let y = y.host(yl);
        if trans_a {
            // y[j] = alpha Σ_i a[i][j] x[i] + beta y[j]
            for v in y.iter_mut() {
                *v = if beta == 0.0 { 0.0 } else { *v * beta };
            }
            for (i, &xi) in x.iter().enumerate() {
                let s = alpha * xi;
                if s != 0.0 {
                    for (yv, &av) in y.iter_mut().zip(&a[i * n..(i + 1) * n]) {
                        *yv += s * av;
                    }
                }
            }
        } else {
            for (i, yv) in y.iter_mut().enumerate() {
                let d: f32 = a[i * n..(i + 1) * n]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum();
                *yv = alpha * d + if beta == 0.0 { 0.0 } else { beta * *yv };
            }
        }
    }

    fn axpy(&self, n: usize, alpha: f32, x: View, mut y: ViewMut) {
        map2(n, x.host(n), y.host(n), |x, y| y + alpha * x);
    }

    fn axpby(&self, n: usize, alpha: f32, x: View, beta: f32, mut y: ViewMut) {
        map2(n, x.host(n), y.host(n), |x, y| alpha * x + beta * y);
    }

    fn scal(&self, n: usize, alpha: f32, mut x: ViewMut) {
        map1(n, x.host(n), |v| v * alpha);
    }

    fn set(&self, n: usize, v: f32, mut x: ViewMut) {
        each1(x.host(n), |x| x.fill(v));
    }

    fn add_scalar(&self, n: usize, v: f32, mut x: ViewMut) {
        map1(n, x.host(n), |x| x + v);
    }

    fn copy(&self, n: usize, x: View, mut y: ViewMut) {
        each2(x.host(n), y.host(n), |x, y| y.copy_from_slice(x));
    }

    fn dot(&self, n: usize, x: View, y: View) -> f32 {
        x.host(n).iter().zip(y.host(n)).map(|(a, b)| a * b).sum()
    }

    fn asum(&self, n: usize, x: View) -> f32 {
        x.host(n).iter().map(|v| v.abs()).sum()
    }

    fn binary(&self, op: Binary, n: usize, a: View, b: View, mut y: ViewMut) {
        let (a, b, y) = (a.host(n), b.host(n), y.host(n));
        each3(a, b, y, |a, b, y| {
            with_binary!(op, |f| for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                *y = f(a, b);
            })
        });
    }

    fn binary_inplace(&self, op: Binary, n: usize, a: View, mut y: ViewMut) {
        each2(a.host(n), y.host(n), |a, y| {
            with_binary!(op, |f| for (y, &a) in y.iter_mut().zip(a) {
                *y = f(a, *y);
            })
        });
    }

    fn unary(&self, op: Unary, n: usize, x: View, mut y: ViewMut) {
        each2(x.host(n), y.host(n), |x, y| {
            let out = y.iter_mut().zip(x);
            match op {
                Unary::ReLU { slope } => out.for_each(|(y, &x)| *y = relu(x, slope)),
                _ => out.for_each(|(y, &x)| *y = op.forward(x)),
            }
        });
    }

    fn unary_inplace(&self, op: Unary, n: usize, mut x: ViewMut) {
        each1(x.host(n), |x| match op {
            Unary::ReLU { slope } => x.iter_mut().for_each(|v| *v = relu(*v, slope)),
            _ => x.iter_mut().for_each(|v| *v = op.forward(*v)),
        });
    }

    fn unary_grad(&self, op: Unary, n: usize, x: View, y: View, dy: View, mut dx: ViewMut) {
        let (x, y, dy, dx) = (x.host(n), y.host(n), dy.host(n), dx.host(n));
        // Chunks of dx with their offset, so x, y, dy are sliced alike.
        let run = |i0: usize, dx: &mut [f32]| {
            let r = i0..i0 + dx.len();
            let (x, y, dy) = (&x[r.clone()], &y[r.clone()], &dy[r]);
            match op {
                Unary::ReLU { slope } => {
                    for ((d, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                        *d = relu_grad(x, dy, slope);
                    }
                }
                _ => {
                    for (i, d) in dx.iter_mut().enumerate() {
                        *d = op.backward(x[i], y[i], dy[i]);
                    }
                }
            }
        };
        if n >= PAR_MIN {
            dx.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, dx)| run(c * CHUNK, dx));
        } else {
            run(0, dx);
        }
    }

    fn unary_grad_inplace(&self, op: Unary, n: usize, y: View, mut d: ViewMut) {
        each2(y.host(n), d.host(n), |y, d| {
            let out = d.iter_mut().zip(y);
            match op {
                Unary::ReLU { slope } => out.for_each(|(d, &y)| *d = relu_grad(y, *d, slope)),
                _ => out.for_each(|(d, &y)| *d = op.backward(y, y, *d)),
            }
        });
    }

    fn dropout_mask(&self, n: usize, seed: u64, threshold: u32, scale: f32, mut mask: ViewMut) {
        // Each element is a function of its index alone, so chunking (and
        // rayon's scheduling) cannot change the mask.
        let run = |i0: usize, y: &mut [f32]| {
            for (k, y) in y.iter_mut().enumerate() {
                let keep = dropout_bits(seed, (i0 + k) as u64) > threshold;
                *y = if keep { scale } else { 0.0 };
            }
        };
        let y = mask.host(n);
        if n >= PAR_MIN {
            y.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, y)| run(c * CHUNK, y));
        } else {
            run(0, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(ta: bool, tb: bool, m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av * bv;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_for_all_transposes() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for ta in [false, true] {
            for tb in [false, true] {
                let mut c = vec![1.0; m * n];
                sgemm(ta, tb, m, n, k, 2.0, &a, &b, 0.5, &mut c);
                let r = naive(ta, tb, m, n, k, &a, &b);
                for i in 0..m * n {
                    assert!((c[i] - (2.0 * r[i] + 0.5)).abs() < 1e-5, "{ta} {tb} {i}");
                }
            }
        }
    }

    fn mask(n: usize, seed: u64, threshold: u32, scale: f32) -> Vec<f32> {
        let mut b = Buffer::host_zeros(n);
        CpuBackend.dropout_mask(n, seed, threshold, scale, b.view_mut());
        b.host().unwrap().to_vec()
    }

    #[test]
    fn splitmix64_reference_values() {
        // SplitMix64 seeded with 1234567: its first outputs (the published
        // reference sequence), high halves.
        let want: [u64; 3] = [
            6457827717110365317,
            3203168211198807973,
            9817491932198370423,
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(dropout_bits(1234567, i as u64), (w >> 32) as u32);
        }
    }

    #[test]
    fn dropout_mask_keeps_1_minus_p() {
        let n = 1_000_000;
        for p in [0.5f64, 0.2, 0.9] {
            let threshold = (u32::MAX as f64 * p) as u32;
            let scale = (1.0 / (1.0 - p)) as f32;
            let m = mask(n, 42, threshold, scale);
            assert!(m.iter().all(|&v| v == 0.0 || v == scale));
            let kept = m.iter().filter(|&&v| v == scale).count() as f64;
            let sigma = (n as f64 * p * (1.0 - p)).sqrt();
            let want = n as f64 * (1.0 - p);
            assert!((kept - want).abs() < 5.0 * sigma, "p={p}: {kept} kept");
        }
    }

    #[test]
    fn dropout_mask_is_a_function_of_seed_and_index() {
        let (t, s) = (u32::MAX / 2, 2.0);
        let a = mask(5000, 7, t, s);
        assert_eq!(a, mask(5000, 7, t, s));
        assert_ne!(a, mask(5000, 8, t, s));
        // A prefix of a longer (parallel, above PAR_MIN) mask.
        assert_eq!(mask(1000, 7, t, s), a[..1000]);
        let big = mask(PAR_MIN + 12_345, 7, t, s);
        assert_eq!(big[..5000], a[..]);
        // Into a view at an offset: indices count from the view's start.
        let mut b = Buffer::host_zeros(5003);
        CpuBackend.dropout_mask(5000, 7, t, s, b.at_mut(3));
        assert_eq!(b.host().unwrap()[3..], a[..]);
    }

    #[test]
    fn gemv_matches_gemm() {
        let be = CpuBackend;
        let (m, n) = (4, 6);
        let a = Buffer::from_vec((0..m * n).map(|i| i as f32 * 0.1).collect());
        let x = Buffer::from_vec((0..n).map(|i| 1.0 - i as f32).collect());
        let xt = Buffer::from_vec((0..m).map(|i| 2.0 + i as f32).collect());
        let mut y = Buffer::from_vec(vec![1.0; m]);
        be.gemv(false, m, n, 1.5, a.view(), x.view(), 2.0, y.view_mut());
        let mut yt = Buffer::from_vec(vec![1.0; n]);
        be.gemv(true, m, n, 1.0, a.view(), xt.view(), 0.0, yt.view_mut());
        let r = naive(false, false, m, 1, n, a.host().unwrap(), x.host().unwrap());
        for (got, want) in y.host().unwrap().iter().zip(&r) {
            assert!((got - (1.5 * want + 2.0)).abs() < 1e-4);
        }
        let rt = naive(true, false, n, 1, m, a.host().unwrap(), xt.host().unwrap());
        for (got, want) in yt.host().unwrap().iter().zip(&rt) {
            assert!((got - want).abs() < 1e-4);
        }
    }
}
