//! CPU NormOps: loops over `[outer, channels, inner]`, parallel across
//! channels (reductions) or rows (broadcasts) for large tensors. Sums
//! accumulate in f64, except PReLU's slope gradient, which adds in f32 in
//! memory order exactly as Caffe's CPU loop does.
use rayon::prelude::*;

use super::{with_binary, CpuBackend, PAR_MIN};
use crate::backend::{Binary, NormOps, View, ViewMut};

/// `y[i] = x[i] op v` over one row, the operation chosen once per row so
/// each loop body is one vectorisable expression.
fn row_op(op: Binary, x: &[f32], v: f32, y: &mut [f32]) {
    with_binary!(op, |f| for (y, &x) in y.iter_mut().zip(x) {
        *y = f(x, v);
    })
}

/// `row_op` in place.
fn row_op_inplace(op: Binary, v: f32, y: &mut [f32]) {
    with_binary!(op, |f| for y in y.iter_mut() {
        *y = f(*y, v);
    })
}

/// `Σ a[i]·b[i]` (or `Σ a[i]` without `b`) in f64, with independent
/// partial sums so the loop pipelines.
fn row_sum(a: &[f32], b: Option<&[f32]>) -> f64 {
    let mut acc = [0.0f64; 4];
    match b {
        None => {
            let mut it = a.chunks_exact(4);
            for q in &mut it {
                for k in 0..4 {
                    acc[k] += q[k] as f64;
                }
            }
            acc[0] += it.remainder().iter().map(|&v| v as f64).sum::<f64>();
        }
        Some(b) => {
            let mut ia = a.chunks_exact(4);
            let mut ib = b.chunks_exact(4);
            for (qa, qb) in (&mut ia).zip(&mut ib) {
                for k in 0..4 {
                    acc[k] += qa[k] as f64 * qb[k] as f64;
                }
            }
            acc[0] += ia
                .remainder()
                .iter()
                .zip(ib.remainder())
                .map(|(&x, &y)| x as f64 * y as f64)
                .sum::<f64>();
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// `out[c] = alpha · Σ_{o,i} a·b + beta · out[c]` over `[outer, channels, inner]`
/// (`b` absent: a plain sum). `beta == 0` never reads `out`.
#[allow(clippy::too_many_arguments)]
fn reduce(
    outer: usize,
    channels: usize,
    inner: usize,
    alpha: f32,
    a: &[f32],
    b: Option<&[f32]>,
    beta: f32,
    out: &mut [f32],
) {
    let one = |c: usize, o: &mut f32| {
        let mut s = 0.0f64;
        for n in 0..outer {
            let r = (n * channels + c) * inner..(n * channels + c + 1) * inner;
            s += row_sum(&a[r.clone()], b.map(|b| &b[r]));
        }
        let v = alpha as f64 * s;
        *o = if beta == 0.0 {
            v as f32
        } else {
            (v + beta as f64 * *o as f64) as f32
        };
    };
    if outer * channels * inner >= PAR_MIN && channels > 1 {
        out.par_iter_mut().enumerate().for_each(|(c, o)| one(c, o));
    } else {
        out.iter_mut().enumerate().for_each(|(c, o)| one(c, o));
    }
}

/// Run `f(channel, offset, values)` over the `outer·channels` rows of
/// `inner` values (`offset` is the row's first index).
fn rows(y: &mut [f32], channels: usize, inner: usize, f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    if inner == 0 {
        return;
    }
    let go = |(r, row): (usize, &mut [f32])| f(r % channels, r * inner, row);
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(inner)
            .with_min_len((PAR_MIN / inner).max(1))
            .enumerate()
            .for_each(go);
    } else {
        y.chunks_mut(inner).enumerate().for_each(go);
    }
}

impl NormOps for CpuBackend {
    fn channel_sum(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        alpha: f32,
        x: View,
        beta: f32,
        mut out: ViewMut,
    ) {
        let x = x.host(outer * channels * inner);
        reduce(
            outer,
            channels,
            inner,
            alpha,
            x,
            None,
            beta,
            out.host(channels),
        );
    }

    fn channel_dot(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        alpha: f32,
        a: View,
        b: View,
        beta: f32,
        mut out: ViewMut,
    ) {
        let n = outer * channels * inner;
        let (a, b) = (a.host(n), b.host(n));
        reduce(
            outer,
            channels,
            inner,
            alpha,
            a,
            Some(b),
            beta,
            out.host(channels),
        );
    }

    fn channel_broadcast(
        &self,
        op: Binary,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        v: View,
        mut y: ViewMut,
    ) {
        let n = outer * channels * inner;
        let (x, v) = (x.host(n), v.host(channels));
        rows(y.host(n), channels, inner, |c, off, row| {
            row_op(op, &x[off..off + row.len()], v[c], row);
        });
    }

    fn channel_broadcast_inplace(
        &self,
        op: Binary,
        outer: usize,
        channels: usize,
        inner: usize,
        v: View,
        mut y: ViewMut,
    ) {
        let n = outer * channels * inner;
        let v = v.host(channels);
        rows(y.host(n), channels, inner, |c, _, row| {
            row_op_inplace(op, v[c], row);
        });
    }

    fn channel_affine(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        s: View,
        b: View,
        mut y: ViewMut,
    ) {
        let n = outer * channels * inner;
        let (s, b) = (s.host(channels), b.host(channels));
        rows(y.host(n), channels, inner, |c, _, row| {
            let (sc, bc) = (s[c], b[c]);
            // Not `mul_add`: the product is rounded first, as in two passes.
            row.iter_mut().for_each(|y| *y = *y * sc + bc);
        });
    }

    fn scale_by_inverse(&self, n: usize, s: View, x: View, mut y: ViewMut) {
        let s = s.host(1)[0];
        let f = if s == 0.0 { 0.0 } else { 1.0 / s };
        for (y, &x) in y.host(n).iter_mut().zip(x.host(n)) {
            *y = f * x;
        }
    }

    fn prelu_forward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        slope: View,
        mut y: ViewMut,
    ) {
        let n = outer * channels * inner;
        let (x, slope) = (x.host(n), slope.host(channels));
        rows(y.host(n), channels, inner, |c, off, row| {
            let (a, xs) = (slope[c], &x[off..off + row.len()]);
            for (y, &x) in row.iter_mut().zip(xs) {
                // Caffe: std::max(x, 0) + a · std::min(x, 0).
                let pos = if x < 0.0 { 0.0 } else { x };
                let neg = if 0.0 < x { 0.0 } else { x };
                *y = pos + a * neg;
            }
        });
    }

    fn prelu_backward_slope(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        dy: View,
        mut slope_diff: ViewMut,
    ) {
        let n = outer * channels * inner;
        let (x, dy) = (x.host(n), dy.host(n));
        let one = |c: usize, d: &mut f32| {
            for o in 0..outer {
                let base = (o * channels + c) * inner;
                for i in base..base + inner {
                    *d += dy[i] * x[i] * if x[i] <= 0.0 { 1.0 } else { 0.0 };
                }
            }
        };
        let sd = slope_diff.host(channels);
        if n >= PAR_MIN && channels > 1 {
            sd.par_iter_mut().enumerate().for_each(|(c, d)| one(c, d));
        } else {
            sd.iter_mut().enumerate().for_each(|(c, d)| one(c, d));
        }
    }

    fn prelu_backward_data(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        x: View,
        dy: View,
        slope: View,
        mut dx: ViewMut,
    ) {
        let n = outer * channels * inner;
        let (x, dy, slope) = (x.host(n), dy.host(n), slope.host(channels));
        rows(dx.host(n), channels, inner, |c, off, row| {
            let a = slope[c];
            let (xs, ds) = (&x[off..off + row.len()], &dy[off..off + row.len()]);
            for ((d, &x), &g) in row.iter_mut().zip(xs).zip(ds) {
                let pos = if x > 0.0 { 1.0 } else { 0.0 };
                let neg = if x <= 0.0 { 1.0 } else { 0.0 };
                *d = g * (pos + a * neg);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Buffer;

    fn buf(v: &[f32]) -> Buffer {
        Buffer::from_vec(v.to_vec())
    }

    /// [outer 2, channels 3, inner 2] with x = index.
    fn x12() -> Buffer {
        buf(&(0..12).map(|i| i as f32).collect::<Vec<_>>())
    }

    #[test]
    fn channel_sum_and_dot() {
        let be = CpuBackend::new();
        let x = x12();
        let mut out = buf(&[1.0, 1.0, 1.0]);
        be.channel_sum(2, 3, 2, 1.0, x.view(), 0.0, out.view_mut());
        // c0: 0+1+6+7, c1: 2+3+8+9, c2: 4+5+10+11
        assert_eq!(out.read(3), vec![14.0, 22.0, 30.0]);
        be.channel_sum(2, 3, 2, 0.5, x.view(), 2.0, out.view_mut());
        assert_eq!(out.read(3), vec![35.0, 55.0, 75.0]);
        be.channel_dot(2, 3, 2, 1.0, x.view(), x.view(), 0.0, out.view_mut());
        assert_eq!(out.read(3), vec![86.0, 158.0, 262.0]);
        // beta = 0 never reads the old values, NaN included.
        let mut nan = buf(&[f32::NAN; 3]);
        be.channel_sum(2, 3, 2, 1.0, x.view(), 0.0, nan.view_mut());
        assert_eq!(nan.read(3), vec![14.0, 22.0, 30.0]);
    }

    #[test]
    fn broadcasts() {
        let be = CpuBackend::new();
        let x = x12();
        let v = buf(&[1.0, 10.0, 100.0]);
        let mut y = Buffer::host_zeros(12);
        be.channel_broadcast(Binary::Mul, 2, 3, 2, x.view(), v.view(), y.view_mut());
        assert_eq!(
            y.read(12),
            vec![0., 1., 20., 30., 400., 500., 6., 7., 80., 90., 1000., 1100.]
        );
        be.channel_broadcast_inplace(Binary::Sub, 2, 3, 2, v.view(), y.view_mut());
        assert_eq!(
            y.read(12),
            vec![-1., 0., 10., 20., 300., 400., 5., 6., 70., 80., 900., 1000.]
        );
    }

    #[test]
    fn large_broadcast_matches_small() {
        // Above PAR_MIN the rayon path must give the same values.
        let be = CpuBackend::new();
        let (outer, ch, inner) = (3, 5, PAR_MIN / 4);
        let n = outer * ch * inner;
        let x = buf(&(0..n).map(|i| (i % 97) as f32).collect::<Vec<_>>());
        let v = buf(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let mut y = Buffer::host_zeros(n);
        be.channel_broadcast(
            Binary::Add,
            outer,
            ch,
            inner,
            x.view(),
            v.view(),
            y.view_mut(),
        );
        let y = y.read(n);
        for (i, &yv) in y.iter().enumerate() {
            assert_eq!(yv, (i % 97) as f32 + (1 + (i / inner) % ch) as f32);
        }
        let mut s = Buffer::host_zeros(ch);
        be.channel_sum(outer, ch, inner, 1.0, x.view(), 0.0, s.view_mut());
        for c in 0..ch {
            let want: f64 = (0..outer)
                .flat_map(|o| (0..inner).map(move |i| ((o * ch + c) * inner + i) % 97))
                .map(|v| v as f64)
                .sum();
            assert_eq!(s.read(ch)[c] as f64, want);
        }
    }

    #[test]
    fn scale_by_inverse_handles_zero() {
        let be = CpuBackend::new();
        let x = buf(&[2.0, 4.0]);
        let mut y = Buffer::host_zeros(2);
        be.scale_by_inverse(2, buf(&[0.5]).view(), x.view(), y.view_mut());
        assert_eq!(y.read(2), vec![4.0, 8.0]);
        be.scale_by_inverse(2, buf(&[0.0]).view(), x.view(), y.view_mut());
        assert_eq!(y.read(2), vec![0.0, 0.0]);
    }

    #[test]
    fn prelu_kernels() {
        let be = CpuBackend::new();
        // [outer 1, channels 2, inner 2]
        let x = buf(&[-2.0, 3.0, 0.0, -1.0]);
        let slope = buf(&[0.5, 0.25]);
        let mut y = Buffer::host_zeros(4);
        be.prelu_forward(1, 2, 2, x.view(), slope.view(), y.view_mut());
        assert_eq!(y.read(4), vec![-1.0, 3.0, 0.0, -0.25]);
        let dy = buf(&[1.0, 2.0, 3.0, 4.0]);
        let mut sd = buf(&[1.0, 1.0]);
        be.prelu_backward_slope(1, 2, 2, x.view(), dy.view(), sd.view_mut());
        // Accumulates: c0: 1 + (-2·1), c1: 1 + (0·3 + -1·4).
        assert_eq!(sd.read(2), vec![-1.0, -3.0]);
        let mut dx = Buffer::host_zeros(4);
        be.prelu_backward_data(1, 2, 2, x.view(), dy.view(), slope.view(), dx.view_mut());
        // x = 0 takes the slope, as in Caffe.
        assert_eq!(dx.read(4), vec![0.5, 2.0, 0.75, 1.0]);
    }
}
