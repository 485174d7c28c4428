//! CPU SolverOps: one pass over each parameter, rayon for large ones.
//!
//! The arithmetic reproduces Caffe's CPU sequence of calls bit for bit
//! (with the OpenBLAS it is normally built with), because the adaptive
//! rules amplify last-bit differences within a few iterations:
//! - `caffe_axpy` / `caffe_cpu_axpby` (sscal then saxpy) are fused
//!   multiply-adds in OpenBLAS's x86-64 kernels: `y = fma(a, x, b·y)`;
//!   saxpy returns early when `a == 0`, leaving `b·y`.
//! - `caffe_powx` calls libm's `powf`, which differs from `sqrt(x)` and
//!   `x·x` in the last bit for about 1 input in 2000 (measured on glibc).
use std::hint::black_box;

use rayon::prelude::*;

use super::{CpuBackend, PAR_MIN};
use crate::backend::solver::Regularization;
use crate::backend::{SolverOps, View, ViewMut};

const CHUNK: usize = 1 << 12;

/// Caffe's `caffe_cpu_axpby(a, x, b, y)` on one element.
#[inline]
fn axpby(a: f32, x: f32, b: f32, y: f32) -> f32 {
    if a == 0.0 {
        b * y
    } else {
        a.mul_add(x, b * y)
    }
}

/// The exponents handed to libm's `powf`. `black_box` keeps LLVM from
/// rewriting `pow(x, 0.5)` as `sqrt(x)` (and `pow(x, 2)` as `x·x`), which
/// would not be Caffe's arithmetic.
#[derive(Clone, Copy)]
struct Powx {
    two: f32,
    half: f32,
}

impl Powx {
    fn new() -> Self {
        Powx {
            two: black_box(2.0),
            half: black_box(0.5),
        }
    }
    #[inline]
    fn sq(self, x: f32) -> f32 {
        x.powf(self.two)
    }
    #[inline]
    fn sqrt(self, x: f32) -> f32 {
        x.powf(self.half)
    }
}

fn each3(
    a: &mut [f32],
    b: &mut [f32],
    c: &mut [f32],
    f: impl Fn(&mut f32, &mut f32, &mut f32) + Sync,
) {
    let run = |a: &mut [f32], b: &mut [f32], c: &mut [f32]| {
        for ((a, b), c) in a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut()) {
            f(a, b, c);
        }
    };
    if a.len() >= PAR_MIN {
        a.par_chunks_mut(CHUNK)
            .zip(b.par_chunks_mut(CHUNK))
            .zip(c.par_chunks_mut(CHUNK))
            .for_each(|((a, b), c)| run(a, b, c));
    } else {
        run(a, b, c);
    }
}

fn each4(
    a: &mut [f32],
    b: &mut [f32],
    c: &mut [f32],
    d: &mut [f32],
    f: impl Fn(&mut f32, &mut f32, &mut f32, &mut f32) + Sync,
) {
    let run = |a: &mut [f32], b: &mut [f32], c: &mut [f32], d: &mut [f32]| {
        for (((a, b), c), d) in a
            .iter_mut()
            .zip(b.iter_mut())
            .zip(c.iter_mut())
            .zip(d.iter_mut())
        {
            f(a, b, c, d);
        }
    };
    if a.len() >= PAR_MIN {
        a.par_chunks_mut(CHUNK)
            .zip(b.par_chunks_mut(CHUNK))
            .zip(c.par_chunks_mut(CHUNK))
            .zip(d.par_chunks_mut(CHUNK))
            .for_each(|(((a, b), c), d)| run(a, b, c, d));
    } else {
        run(a, b, c, d);
    }
}

/// Caffe's `caffe_sign`: -1, 0 or 1.
fn sign(x: f32) -> f32 {
    ((0.0 < x) as i32 - (x < 0.0) as i32) as f32
}

impl SolverOps for CpuBackend {
    fn sumsq(&self, n: usize, x: View) -> f32 {
        let x = x.host(n);
        let part = |c: &[f32]| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        // Fixed chunks summed in order: the same result on any thread count.
        let parts: Vec<f64> = if n >= PAR_MIN {
            x.par_chunks(CHUNK).map(part).collect()
        } else {
            x.chunks(CHUNK).map(part).collect()
        };
        parts.iter().sum::<f64>() as f32
    }

    fn regularize(
        &self,
        n: usize,
        kind: Regularization,
        decay: f32,
        data: View,
        mut diff: ViewMut,
    ) {
        let w = data.host(n);
        let d = diff.host(n);
        let f = |(d, &w): (&mut f32, &f32)| match kind {
            // caffe_axpy(decay, data, diff); for L1 through caffe_cpu_sign.
            Regularization::L2 => *d = decay.mul_add(w, *d),
            Regularization::L1 => *d = decay.mul_add(sign(w), *d),
        };
        if n >= PAR_MIN {
            d.par_iter_mut().zip(w.par_iter()).for_each(f);
        } else {
            d.iter_mut().zip(w.iter()).for_each(f);
        }
    }

    fn sgd_update(
        &self,
        n: usize,
        momentum: f32,
        lr: f32,
        mut diff: ViewMut,
        mut history: ViewMut,
        mut data: ViewMut,
    ) {
        each3(diff.host(n), history.host(n), data.host(n), |g, h, w| {
            *h = axpby(lr, *g, momentum, *h);
            *g = *h;
            *w -= *h;
        });
    }

    fn nesterov_update(
        &self,
        n: usize,
        momentum: f32,
        lr: f32,
        mut diff: ViewMut,
        mut history: ViewMut,
        mut data: ViewMut,
    ) {
        each3(diff.host(n), history.host(n), data.host(n), |g, h, w| {
            let old = *h;
            *h = axpby(lr, *g, momentum, *h);
            *g = axpby(1.0 + momentum, *h, -momentum, old);
            *w -= *g;
        });
    }

    fn adagrad_update(
        &self,
        n: usize,
        delta: f32,
        lr: f32,
        mut diff: ViewMut,
        mut history: ViewMut,
        mut data: ViewMut,
    ) {
        let pw = Powx::new();
        each3(diff.host(n), history.host(n), data.host(n), |g, h, w| {
            *h += pw.sq(*g);
            // caffe_cpu_axpby(lr, update, 0, diff)
            *g = axpby(lr, *g / (pw.sqrt(*h) + delta), 0.0, 0.0);
            *w -= *g;
        });
    }

    fn rmsprop_update(
        &self,
        n: usize,
        rms_decay: f32,
        delta: f32,
        lr: f32,
        mut diff: ViewMut,
        mut history: ViewMut,
        mut data: ViewMut,
    ) {
        let pw = Powx::new();
        each3(diff.host(n), history.host(n), data.host(n), |g, h, w| {
            *h = axpby(1.0 - rms_decay, pw.sq(*g), rms_decay, *h);
            // caffe_cpu_axpby(lr, update, 0, diff)
            *g = axpby(lr, *g / (pw.sqrt(*h) + delta), 0.0, 0.0);
            *w -= *g;
        });
    }

    fn adadelta_update(
        &self,
        n: usize,
        momentum: f32,
        delta: f32,
        lr: f32,
        mut diff: ViewMut,
        mut history: ViewMut,
        mut history2: ViewMut,
        mut data: ViewMut,
    ) {
        let pw = Powx::new();
        each4(
            diff.host(n),
            history.host(n),
            history2.host(n),
            data.host(n),
            |g, h, h2, w| {
                *h = axpby(1.0 - momentum, pw.sq(*g), momentum, *h);
                let step = *g * pw.sqrt((delta + *h2) / (delta + *h));
                *h2 = axpby(1.0 - momentum, pw.sq(step), momentum, *h2);
                // caffe_cpu_scale: a plain product.
                *g = lr * step;
                *w -= *g;
            },
        );
    }

    fn adam_update(
        &self,
        n: usize,
        beta1: f32,
        beta2: f32,
        eps_hat: f32,
        corrected_lr: f32,
        mut diff: ViewMut,
        mut m: ViewMut,
        mut v: ViewMut,
        mut data: ViewMut,
    ) {
        let pw = Powx::new();
        each4(
            diff.host(n),
            m.host(n),
            v.host(n),
            data.host(n),
            |g, m, v, w| {
                *m = axpby(1.0 - beta1, *g, beta1, *m);
                // caffe_mul here, not caffe_powx.
                *v = axpby(1.0 - beta2, *g * *g, beta2, *v);
                *g = corrected_lr * (*m / (pw.sqrt(*v) + eps_hat));
                *w -= *g;
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Buffer;

    fn bufs(g: &[f32], h: &[f32], w: &[f32]) -> (Buffer, Buffer, Buffer) {
        (
            Buffer::from_vec(g.to_vec()),
            Buffer::from_vec(h.to_vec()),
            Buffer::from_vec(w.to_vec()),
        )
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn regularize_l2_l1() {
        let be = CpuBackend::new();
        let w = Buffer::from_vec(vec![2.0, -3.0, 0.0]);
        let mut d = Buffer::from_vec(vec![1.0, 1.0, 1.0]);
        be.regularize(3, Regularization::L2, 0.5, w.view(), d.view_mut());
        close(&d.read(3), &[2.0, -0.5, 1.0]);
        let mut d = Buffer::from_vec(vec![1.0, 1.0, 1.0]);
        be.regularize(3, Regularization::L1, 0.5, w.view(), d.view_mut());
        close(&d.read(3), &[1.5, 0.5, 1.0]);
    }

    #[test]
    fn sgd_and_nesterov() {
        let be = CpuBackend::new();
        let (mut g, mut h, mut w) = bufs(&[1.0, -2.0], &[0.5, 0.5], &[1.0, 1.0]);
        be.sgd_update(2, 0.9, 0.1, g.view_mut(), h.view_mut(), w.view_mut());
        // h = 0.45 + 0.1 g
        close(&h.read(2), &[0.55, 0.25]);
        close(&g.read(2), &[0.55, 0.25]);
        close(&w.read(2), &[0.45, 0.75]);

        let (mut g, mut h, mut w) = bufs(&[1.0], &[0.5], &[1.0]);
        be.nesterov_update(1, 0.9, 0.1, g.view_mut(), h.view_mut(), w.view_mut());
        // h' = 0.55; step = 1.9·0.55 − 0.9·0.5 = 0.595
        close(&h.read(1), &[0.55]);
        close(&g.read(1), &[0.595]);
        close(&w.read(1), &[0.405]);
    }

    #[test]
    fn adaptive_rules() {
        let be = CpuBackend::new();
        let (mut g, mut h, mut w) = bufs(&[2.0], &[5.0], &[1.0]);
        be.adagrad_update(1, 1e-8, 0.1, g.view_mut(), h.view_mut(), w.view_mut());
        close(&h.read(1), &[9.0]);
        close(&g.read(1), &[0.1 * 2.0 / 3.0]);
        close(&w.read(1), &[1.0 - 0.1 * 2.0 / 3.0]);

        let (mut g, mut h, mut w) = bufs(&[2.0], &[1.0], &[0.0]);
        be.rmsprop_update(1, 0.9, 0.0, 0.1, g.view_mut(), h.view_mut(), w.view_mut());
        // h = 0.9 + 0.1·4 = 1.3
        close(&h.read(1), &[1.3]);
        close(&g.read(1), &[0.1 * 2.0 / 1.3f32.sqrt()]);

        let (mut g, mut h, mut w) = bufs(&[2.0], &[1.0], &[0.0]);
        let mut h2 = Buffer::from_vec(vec![0.5]);
        be.adadelta_update(
            1,
            0.9,
            0.0,
            1.0,
            g.view_mut(),
            h.view_mut(),
            h2.view_mut(),
            w.view_mut(),
        );
        let d = 2.0 * (0.5f32 / 1.3).sqrt();
        close(&h.read(1), &[1.3]);
        close(&g.read(1), &[d]);
        close(&h2.read(1), &[0.45 + 0.1 * d * d]);
        close(&w.read(1), &[-d]);

        let (mut g, mut m, mut w) = bufs(&[2.0], &[0.0], &[0.0]);
        let mut v = Buffer::from_vec(vec![0.0]);
        be.adam_update(
            1,
            0.9,
            0.999,
            1e-8,
            0.001,
            g.view_mut(),
            m.view_mut(),
            v.view_mut(),
            w.view_mut(),
        );
        close(&m.read(1), &[0.2]);
        close(&v.read(1), &[0.004]);
        close(&g.read(1), &[0.001 * 0.2 / 0.004f32.sqrt()]);
    }

    /// Inputs on which Caffe's rounding and the naive one differ.
    fn samples() -> impl Iterator<Item = f32> {
        let mut s = 0x2545_f491u32;
        std::iter::from_fn(move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            Some((s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0)
        })
    }

    #[test]
    fn momentum_and_decay_round_like_openblas_axpy() {
        let be = CpuBackend::new();
        let (lr, mu, decay) = (0.01f32, 0.9f32, 0.0005f32);
        let (mut fused, mut naive) = (0, 0);
        let xs: Vec<f32> = samples().take(3 * 4096).collect();
        for t in xs.chunks(3) {
            let (g, h, w) = (t[0], t[1], t[2]);
            let (mut gb, mut hb, mut wb) = bufs(&[g], &[h], &[w]);
            be.regularize(1, Regularization::L2, decay, wb.view(), gb.view_mut());
            let g2 = gb.read(1)[0];
            assert_eq!(g2, decay.mul_add(w, g));
            be.sgd_update(1, mu, lr, gb.view_mut(), hb.view_mut(), wb.view_mut());
            let want = lr.mul_add(g2, mu * h);
            assert_eq!(hb.read(1)[0], want);
            assert_eq!(wb.read(1)[0], w - want);
            fused += (g2 != g + decay * w) as usize;
            naive += (want != mu * h + lr * g2) as usize;
        }
        // The test means something: single roundings differ from double ones.
        assert!(fused > 0 && naive > 0, "{fused} {naive}");
    }

    #[test]
    fn powx_is_libm_powf_not_sqrt() {
        let pw = Powx::new();
        let mut differ = None;
        for x in samples().take(200_000).map(|v| v.abs() * 100.0) {
            assert_eq!(pw.sqrt(x), x.powf(black_box(0.5)));
            if pw.sqrt(x) != x.sqrt() {
                differ = Some(x);
            }
        }
        // AdaGrad takes Caffe's powf where it differs from sqrt.
        let h0 = differ.expect("powf and sqrt differ somewhere") - 1.0;
        let be = CpuBackend::new();
        let (mut g, mut h, mut w) = bufs(&[1.0], &[h0], &[0.0]);
        be.adagrad_update(1, 1e-8, 1.0, g.view_mut(), h.view_mut(), w.view_mut());
        let hv = h.read(1)[0];
        assert_eq!(g.read(1)[0], 1.0 / (hv.powf(black_box(0.5)) + 1e-8));
        assert_ne!(g.read(1)[0], 1.0 / (hv.sqrt() + 1e-8));
    }

    #[test]
    fn sumsq_is_close_to_exact() {
        let be = CpuBackend::new();
        let n = PAR_MIN * 3 + 5;
        let x: Vec<f32> = samples().take(n).collect();
        let exact: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let got = be.sumsq(n, Buffer::from_vec(x.clone()).view());
        assert_eq!(got, exact as f32);
        // A float running sum is visibly off at this size.
        let naive: f32 = x.iter().map(|v| v * v).sum();
        assert!((f64::from(naive) - exact).abs() > (f64::from(got) - exact).abs());
    }

    #[test]
    fn parallel_path_matches_serial() {
        let be = CpuBackend::new();
        let n = PAR_MIN * 2 + 17;
        let g0: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let (mut g, mut h, mut w) = bufs(&g0, &vec![0.25; n], &vec![1.0; n]);
        be.sgd_update(n, 0.9, 0.01, g.view_mut(), h.view_mut(), w.view_mut());
        let hv = h.read(n);
        for i in [0, 1, CHUNK, PAR_MIN, n - 1] {
            let want = 0.01f32.mul_add(g0[i], 0.9 * 0.25);
            assert_eq!(hv[i], want);
            assert_eq!(w.read(n)[i], 1.0 - want);
        }
    }
}
