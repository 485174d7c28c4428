//! CPU SoftmaxOps: Caffe's loops, rayon across `outer` slices when a tensor
//! is large.
use rayon::prelude::*;

use super::{CpuBackend, PAR_MIN};
use crate::backend::{SoftmaxOps, View, ViewMut};
use crate::error::{Error, Result};

/// C++'s `std::max(a, b)`, i.e. `a < b ? b : a`: a NaN in `a` comes
/// through (Rust's `f32::max` would return `b`), so a clamp such as
/// `max(p, FLT_MIN)` keeps a NaN probability NaN, as in Caffe.
#[inline]
pub(super) fn caffe_max(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// Softmax of one `(channels, inner)` slice in place.
fn softmax_slice(channels: usize, inner: usize, x: &mut [f32]) {
    let mut scale = x[..inner].to_vec();
    for c in 1..channels {
        for (s, &v) in scale.iter_mut().zip(&x[c * inner..(c + 1) * inner]) {
            *s = caffe_max(*s, v);
        }
    }
    for row in x.chunks_mut(inner) {
        for (v, &s) in row.iter_mut().zip(&scale) {
            *v = (*v - s).exp();
        }
    }
    scale.iter_mut().for_each(|s| *s = 0.0);
    for row in x.chunks(inner) {
        for (s, &v) in scale.iter_mut().zip(row) {
            *s += v;
        }
    }
    for row in x.chunks_mut(inner) {
        for (v, &s) in row.iter_mut().zip(&scale) {
            *v /= s;
        }
    }
}

/// `d = (d − Σ_c d·y) ⊙ y` for one slice.
fn softmax_grad_slice(channels: usize, inner: usize, y: &[f32], d: &mut [f32]) {
    let mut dot = vec![0.0f32; inner];
    for c in 0..channels {
        let r = c * inner..(c + 1) * inner;
        for ((s, &dv), &yv) in dot.iter_mut().zip(&d[r.clone()]).zip(&y[r]) {
            *s += dv * yv;
        }
    }
    for (drow, yrow) in d.chunks_mut(inner).zip(y.chunks(inner)) {
        for ((dv, &yv), &s) in drow.iter_mut().zip(yrow).zip(&dot) {
            *dv = (*dv - s) * yv;
        }
    }
}

/// The class index of a label value, or `None` when ignored.
fn label_index(v: f32, channels: usize, ignore: Option<i32>) -> Result<Option<usize>> {
    let l = v as i32;
    if ignore == Some(l) {
        return Ok(None);
    }
    if l < 0 || l as usize >= channels {
        return Err(Error::layer(format!(
            "label {v} is outside [0, {channels}) (the softmax axis has {channels} classes)"
        )));
    }
    Ok(Some(l as usize))
}

impl SoftmaxOps for CpuBackend {
    fn softmax_forward(&self, outer: usize, channels: usize, inner: usize, mut x: ViewMut) {
        let dim = channels * inner;
        if dim == 0 {
            return;
        }
        let x = x.host(outer * dim);
        if outer * dim >= PAR_MIN && outer > 1 {
            x.par_chunks_mut(dim)
                .for_each(|s| softmax_slice(channels, inner, s));
        } else {
            x.chunks_mut(dim)
                .for_each(|s| softmax_slice(channels, inner, s));
        }
    }

    fn softmax_backward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        y: View,
        mut d: ViewMut,
    ) {
        let dim = channels * inner;
        if dim == 0 {
            return;
        }
        let (y, d) = (y.host(outer * dim), d.host(outer * dim));
        if outer * dim >= PAR_MIN && outer > 1 {
            d.par_chunks_mut(dim)
                .zip(y.par_chunks(dim))
                .for_each(|(d, y)| softmax_grad_slice(channels, inner, y, d));
        } else {
            d.chunks_mut(dim)
                .zip(y.chunks(dim))
                .for_each(|(d, y)| softmax_grad_slice(channels, inner, y, d));
        }
    }

    fn softmax_loss_forward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        prob: View,
        label: View,
        ignore_label: Option<i32>,
    ) -> Result<(f32, usize)> {
        let dim = channels * inner;
        let (p, lab) = (prob.host(outer * dim), label.host(outer * inner));
        // Accumulated in float, in Caffe's order.
        let mut loss = 0.0f32;
        let mut count = 0;
        for i in 0..outer {
            for j in 0..inner {
                if let Some(l) = label_index(lab[i * inner + j], channels, ignore_label)? {
                    loss -= caffe_max(p[i * dim + l * inner + j], f32::MIN_POSITIVE).ln();
                    count += 1;
                }
            }
        }
        Ok((loss, count))
    }

    fn softmax_loss_backward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        prob: View,
        label: View,
        ignore_label: Option<i32>,
        mut dx: ViewMut,
    ) -> Result<usize> {
        let dim = channels * inner;
        let (p, lab, dx) = (
            prob.host(outer * dim),
            label.host(outer * inner),
            dx.host(outer * dim),
        );
        dx.copy_from_slice(p);
        let mut count = 0;
        for i in 0..outer {
            for j in 0..inner {
                match label_index(lab[i * inner + j], channels, ignore_label)? {
                    Some(l) => {
                        dx[i * dim + l * inner + j] -= 1.0;
                        count += 1;
                    }
                    None => (0..channels).for_each(|c| dx[i * dim + c * inner + j] = 0.0),
                }
            }
        }
        Ok(count)
    }

    fn accuracy(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        top_k: usize,
        ignore_label: Option<i32>,
        score: View,
        label: View,
        mut acc: ViewMut,
        per_class: Option<ViewMut>,
    ) -> Result<()> {
        let dim = channels * inner;
        let (score, label) = (score.host(outer * dim), label.host(outer * inner));
        // Counts accumulate in f32 as in Caffe (exact up to 2^24).
        let mut correct_of = vec![0.0f32; channels];
        let mut seen = vec![0.0f32; channels];
        let (mut correct, mut count) = (0.0f32, 0usize);
        for i in 0..outer {
            for j in 0..inner {
                let v = label[i * inner + j];
                let l = v as i32;
                if ignore_label == Some(l) {
                    continue;
                }
                if l < 0 || l as usize >= channels {
                    return Err(Error::layer(format!(
                        "label {v} is outside [0, {channels})"
                    )));
                }
                let l = l as usize;
                seen[l] += 1.0;
                let truth = score[i * dim + l * inner + j];
                // Ties count against the true class; it counts itself once.
                let better = (0..channels)
                    .filter(|&k| score[i * dim + k * inner + j] >= truth)
                    .count();
                // Caffe starts its count at -1; `better` is 0 when the true
                // score is NaN, which Caffe counts as correct.
                if better <= top_k {
                    correct += 1.0;
                    correct_of[l] += 1.0;
                }
                count += 1;
            }
        }
        acc.host(1)[0] = if count == 0 {
            0.0
        } else {
            correct / count as f32
        };
        if let Some(mut pc) = per_class {
            for ((o, &c), &n) in pc.host(channels).iter_mut().zip(&correct_of).zip(&seen) {
                *o = if n == 0.0 { 0.0 } else { c / n };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Buffer;

    /// Softmax in f64 as an oracle.
    fn oracle(outer: usize, ch: usize, inner: usize, x: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for i in 0..outer {
            for k in 0..inner {
                let at = |c: usize| i * ch * inner + c * inner + k;
                let m = (0..ch).map(|c| x[at(c)] as f64).fold(f64::MIN, f64::max);
                let s: f64 = (0..ch).map(|c| (x[at(c)] as f64 - m).exp()).sum();
                for c in 0..ch {
                    y[at(c)] = ((x[at(c)] as f64 - m).exp() / s) as f32;
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_oracle_and_is_stable() {
        let be = CpuBackend::new();
        for &(outer, ch, inner) in &[(2, 3, 4), (1, 5, 1), (3, 1, 2), (40, 10, 100)] {
            let n = outer * ch * inner;
            // Large magnitudes: without the max subtraction exp overflows.
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 3.0)
                .collect();
            let mut b = Buffer::from_vec(x.clone());
            be.softmax_forward(outer, ch, inner, b.view_mut());
            let want = oracle(outer, ch, inner, &x);
            for (a, w) in b.read(n).iter().zip(&want) {
                assert!((a - w).abs() <= 1e-6 + 1e-5 * w.abs(), "{a} vs {w}");
            }
        }
    }

    #[test]
    fn backward_formula() {
        let be = CpuBackend::new();
        let (outer, ch, inner) = (2, 3, 2);
        let n = outer * ch * inner;
        let mut y = Buffer::from_vec((0..n).map(|i| i as f32 * 0.1 - 0.3).collect());
        be.softmax_forward(outer, ch, inner, y.view_mut());
        let yv = y.read(n);
        let dy: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut d = Buffer::from_vec(dy.clone());
        be.softmax_backward(outer, ch, inner, y.view(), d.view_mut());
        let got = d.read(n);
        for i in 0..outer {
            for k in 0..inner {
                let at = |c: usize| i * ch * inner + c * inner + k;
                let s: f32 = (0..ch).map(|c| dy[at(c)] * yv[at(c)]).sum();
                for c in 0..ch {
                    let want = (dy[at(c)] - s) * yv[at(c)];
                    assert!((got[at(c)] - want).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn nan_probabilities_give_a_nan_loss() {
        // Caffe's std::max(p, FLT_MIN) passes a NaN through; a diverged
        // net must not look like one with a finite loss.
        let be = CpuBackend::new();
        let p = Buffer::from_vec(vec![f32::NAN, f32::NAN, 0.5, 0.5]);
        let lab = Buffer::from_vec(vec![1.0, 0.0]);
        let (loss, _) = be
            .softmax_loss_forward(2, 2, 1, p.view(), lab.view(), None)
            .unwrap();
        assert!(loss.is_nan(), "{loss}");
        // And a NaN score makes the whole softmax NaN.
        let mut x = Buffer::from_vec(vec![1.0, f32::NAN, 2.0]);
        be.softmax_forward(1, 3, 1, x.view_mut());
        assert!(x.read(3).iter().all(|v| v.is_nan()), "{:?}", x.read(3));
        assert!(caffe_max(f32::NAN, 1.0).is_nan());
        assert_eq!(caffe_max(0.5, 1.0), 1.0);
        assert_eq!(caffe_max(2.0, 1.0), 2.0);
    }

    #[test]
    fn loss_ignore_and_bad_labels() {
        let be = CpuBackend::new();
        // outer 2, channels 2, inner 1; FLT_MIN clamp on an exact zero.
        let p = Buffer::from_vec(vec![0.25, 0.75, 1.0, 0.0]);
        let lab = Buffer::from_vec(vec![1.0, 1.0]);
        let (loss, n) = be
            .softmax_loss_forward(2, 2, 1, p.view(), lab.view(), None)
            .unwrap();
        assert_eq!(n, 2);
        let want = -(0.75f32.ln()) - f32::MIN_POSITIVE.ln();
        assert!((loss - want).abs() < 1e-4, "{loss} vs {want}");
        let (loss, n) = be
            .softmax_loss_forward(2, 2, 1, p.view(), lab.view(), Some(1))
            .unwrap();
        assert_eq!((loss, n), (0.0, 0));
        let mut dx = Buffer::host_zeros(4);
        let lab2 = Buffer::from_vec(vec![0.0, 5.0]);
        let n = be
            .softmax_loss_backward(2, 2, 1, p.view(), lab2.view(), Some(5), dx.view_mut())
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(dx.read(4), vec![-0.75, 0.75, 0.0, 0.0]);
        let err = be
            .softmax_loss_forward(2, 2, 1, p.view(), lab2.view(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 5"), "{err}");
    }

    #[test]
    fn accuracy_ties_nan_ignore_and_bad_labels() {
        let be = CpuBackend::new();
        // outer 4, channels 3, inner 1. Column 0: clear win; 1: a tie with
        // the true class (counts against it at top_k 1); 2: NaN true score
        // (correct); 3: ignored (label 2 with ignore 2).
        let score = Buffer::from_vec(vec![
            0.9,
            0.1,
            0.0, //
            0.5,
            0.5,
            0.0, //
            0.3,
            f32::NAN,
            0.2, //
            0.0,
            0.0,
            1.0,
        ]);
        let lab = Buffer::from_vec(vec![0.0, 1.0, 1.0, 2.0]);
        let run = |top_k, ignore, lab: &Buffer| {
            let (mut acc, mut pc) = (Buffer::host_zeros(1), Buffer::host_zeros(3));
            be.accuracy(
                4,
                3,
                1,
                top_k,
                ignore,
                score.view(),
                lab.view(),
                acc.view_mut(),
                Some(pc.view_mut()),
            )
            .map(|()| (acc.read(1)[0], pc.read(3)))
        };
        let (acc, pc) = run(1, Some(2), &lab).unwrap();
        assert_eq!(acc, 2.0 / 3.0);
        assert_eq!(pc, vec![1.0, 0.5, 0.0]); // class 2: 0/0 → 0
        let (acc, pc) = run(2, None, &lab).unwrap();
        assert_eq!(acc, 1.0);
        assert_eq!(pc, vec![1.0, 1.0, 1.0]);
        // Everything ignored: count 0 → 0.
        let all = Buffer::from_vec(vec![2.0; 4]);
        assert_eq!(run(1, Some(2), &all).unwrap(), (0.0, vec![0.0; 3]));
        // The first bad label in column order is named.
        let bad = Buffer::from_vec(vec![0.0, 3.0, -1.0, 2.0]);
        let err = run(1, None, &bad).unwrap_err().to_string();
        assert!(err.contains("label 3 is outside [0, 3)"), "{err}");
    }
}
