//! CPU ShapeOps: Caffe's loops (sums in f32, in Caffe's order where Caffe
//! loops itself), rayon across rows for large reductions and gathers.
use std::cmp::Ordering;

use rayon::prelude::*;

use super::softmax::caffe_max;
use super::{CpuBackend, PAR_MIN};
use crate::backend::shape::{ArgMaxOut, Reduce, ShapeOps};
use crate::backend::{Unary, View, ViewMut};

/// Caffe's kLOG_THRESHOLD.
const LOG_THRESHOLD: f32 = 1e-20;

/// Call `f(in_off, out_off, len)` for each contiguous last-axis row of an
/// N-d crop window.
fn crop_rows(
    in_shape: &[usize],
    out_shape: &[usize],
    offsets: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let nd = out_shape.len();
    if nd == 0 {
        f(0, 0, 1);
        return;
    }
    let len = out_shape[nd - 1];
    let rows: usize = out_shape[..nd - 1].iter().product();
    if len == 0 || rows == 0 {
        return;
    }
    let mut strides = vec![1usize; nd];
    for d in (0..nd - 1).rev() {
        strides[d] = strides[d + 1] * in_shape[d + 1];
    }
    let mut idx = vec![0usize; nd - 1];
    for r in 0..rows {
        let off = offsets[nd - 1]
            + idx
                .iter()
                .enumerate()
                .map(|(d, &i)| (i + offsets[d]) * strides[d])
                .sum::<usize>();
        f(off, r * len, len);
        for d in (0..nd - 1).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

fn sign(v: f32) -> f32 {
    // Caffe's caffe_sign: (0 < x) − (x < 0).
    ((0.0 < v) as i32 - (v < 0.0) as i32) as f32
}

fn reduce_row(op: Reduce, x: &[f32]) -> f32 {
    match op {
        Reduce::Sum => x.iter().sum(),
        Reduce::Asum => x.iter().map(|v| v.abs()).sum(),
        Reduce::SumSq => x.iter().map(|v| v * v).sum(),
    }
}

impl ShapeOps for CpuBackend {
    fn copy_blocks(
        &self,
        blocks: usize,
        len: usize,
        x: View,
        x_stride: usize,
        mut y: ViewMut,
        y_stride: usize,
        accumulate: bool,
    ) {
        if blocks == 0 || len == 0 {
            return;
        }
        let (xs, ys) = (x.host_rest(), y.host_rest());
        for b in 0..blocks {
            let src = &xs[b * x_stride..b * x_stride + len];
            let dst = &mut ys[b * y_stride..b * y_stride + len];
            if accumulate {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }

    fn gather_rows(&self, idx: &[usize], row: usize, src: View, mut dst: ViewMut) {
        if row == 0 {
            return;
        }
        let src = src.host_rest();
        let dst = dst.host(idx.len() * row);
        let step = |(d, &i): (&mut [f32], &usize)| d.copy_from_slice(&src[i * row..(i + 1) * row]);
        if dst.len() >= PAR_MIN {
            dst.par_chunks_mut(row).zip(idx.par_iter()).for_each(step);
        } else {
            dst.chunks_mut(row).zip(idx.iter()).for_each(step);
        }
    }

    fn scatter_add_rows(&self, idx: &[usize], row: usize, src: View, mut dst: ViewMut) {
        if row == 0 {
            return;
        }
        let src = src.host(idx.len() * row);
        let dst = dst.host_rest();
        for (s, &i) in src.chunks(row).zip(idx) {
            dst[i * row..(i + 1) * row]
                .iter_mut()
                .zip(s)
                .for_each(|(d, v)| *d += v);
        }
    }

    fn crop_forward(
        &self,
        in_shape: &[usize],
        out_shape: &[usize],
        offsets: &[usize],
        x: View,
        mut y: ViewMut,
    ) {
        let (xs, ys) = (x.host_rest(), y.host_rest());
        crop_rows(in_shape, out_shape, offsets, |i, o, n| {
            ys[o..o + n].copy_from_slice(&xs[i..i + n]);
        });
    }

    fn crop_backward(
        &self,
        in_shape: &[usize],
        out_shape: &[usize],
        offsets: &[usize],
        dy: View,
        mut dx: ViewMut,
    ) {
        let (ys, xs) = (dy.host_rest(), dx.host_rest());
        crop_rows(in_shape, out_shape, offsets, |i, o, n| {
            xs[i..i + n].copy_from_slice(&ys[o..o + n]);
        });
    }

    fn reduce_rows(
        &self,
        op: Reduce,
        rows: usize,
        dim: usize,
        coeff: f32,
        x: View,
        mut y: ViewMut,
    ) {
        let xs = x.host(rows * dim);
        let ys = y.host(rows);
        if dim == 0 {
            ys.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        let step = |(v, r): (&mut f32, &[f32])| *v = coeff * reduce_row(op, r);
        if rows * dim >= PAR_MIN && rows > 1 {
            ys.par_iter_mut().zip(xs.par_chunks(dim)).for_each(step);
        } else {
            ys.iter_mut().zip(xs.chunks(dim)).for_each(step);
        }
    }

    fn reduce_rows_backward(
        &self,
        op: Reduce,
        rows: usize,
        dim: usize,
        coeff: f32,
        x: View,
        dy: View,
        mut dx: ViewMut,
    ) {
        if dim == 0 {
            return;
        }
        let xs = x.host(rows * dim);
        let dys = dy.host(rows);
        let dxs = dx.host(rows * dim);
        let step = |((d, r), &g): ((&mut [f32], &[f32]), &f32)| {
            let c = g * coeff;
            match op {
                Reduce::Sum => d.iter_mut().for_each(|v| *v = c),
                Reduce::Asum => d.iter_mut().zip(r).for_each(|(v, &x)| *v = c * sign(x)),
                Reduce::SumSq => d.iter_mut().zip(r).for_each(|(v, &x)| *v = 2.0 * c * x),
            }
        };
        if rows * dim >= PAR_MIN && rows > 1 {
            dxs.par_chunks_mut(dim)
                .zip(xs.par_chunks(dim))
                .zip(dys.par_iter())
                .for_each(step);
        } else {
            dxs.chunks_mut(dim)
                .zip(xs.chunks(dim))
                .zip(dys.iter())
                .for_each(step);
        }
    }

    fn argmax(
        &self,
        outer: usize,
        dim: usize,
        inner: usize,
        k: usize,
        out: ArgMaxOut,
        x: View,
        mut y: ViewMut,
    ) {
        let xs = x.host(outer * dim * inner);
        let ys = y.host_rest();
        let mut pairs: Vec<(f32, usize)> = Vec::with_capacity(dim);
        for o in 0..outer {
            for i in 0..inner {
                pairs.clear();
                pairs.extend((0..dim).map(|j| (xs[(o * dim + j) * inner + i], j)));
                // Descending by value, then by index: std::greater on pairs.
                let desc = |a: &(f32, usize), b: &(f32, usize)| {
                    b.0.partial_cmp(&a.0)
                        .unwrap_or(Ordering::Equal)
                        .then(b.1.cmp(&a.1))
                };
                if k < dim {
                    pairs.select_nth_unstable_by(k, desc);
                }
                pairs[..k].sort_by(desc);
                for (j, &(v, idx)) in pairs[..k].iter().enumerate() {
                    match out {
                        ArgMaxOut::Indices => ys[(o * k + j) * inner + i] = idx as f32,
                        ArgMaxOut::Values => ys[(o * k + j) * inner + i] = v,
                        ArgMaxOut::IndicesThenValues => {
                            ys[2 * o * k + j] = idx as f32;
                            ys[2 * o * k + k + j] = v;
                        }
                    }
                }
            }
        }
    }

    fn sigmoid_ce_loss(&self, n: usize, x: View, t: View, keep: &[bool]) -> f32 {
        let (xs, ts) = (x.host(n), t.host(n));
        let mut loss = 0.0f32;
        for i in 0..n {
            if !keep.is_empty() && !keep[i] {
                continue;
            }
            let v = xs[i];
            let pos = (v >= 0.0) as i32 as f32;
            loss -= v * (ts[i] - pos) - (1.0 + (v - 2.0 * v * pos).exp()).ln();
        }
        loss
    }

    fn sigmoid_ce_grad(
        &self,
        n: usize,
        x: View,
        t: View,
        keep: &[bool],
        scale: f32,
        mut dx: ViewMut,
    ) {
        let (xs, ts, d) = (x.host(n), t.host(n), dx.host(n));
        for i in 0..n {
            d[i] = if keep.is_empty() || keep[i] {
                scale * (Unary::Sigmoid.forward(xs[i]) - ts[i])
            } else {
                0.0
            };
        }
    }

    fn hinge_margins(&self, dim: usize, labels: &[usize], x: View, mut v: ViewMut) {
        let n = labels.len() * dim;
        let (xs, vs) = (x.host(n), v.host(n));
        for (r, &l) in labels.iter().enumerate() {
            for j in 0..dim {
                let s = if j == l { -1.0 } else { 1.0 };
                vs[r * dim + j] = (1.0 + s * xs[r * dim + j]).max(0.0);
            }
        }
    }

    fn hinge_grad(
        &self,
        dim: usize,
        labels: &[usize],
        l2: bool,
        scale: f32,
        v: View,
        mut dx: ViewMut,
    ) {
        let n = labels.len() * dim;
        let (vs, d) = (v.host(n), dx.host(n));
        for (r, &l) in labels.iter().enumerate() {
            for j in 0..dim {
                let sv = if j == l {
                    -vs[r * dim + j]
                } else {
                    vs[r * dim + j]
                };
                d[r * dim + j] = if l2 {
                    scale * 2.0 * sv
                } else {
                    scale * sign(sv)
                };
            }
        }
    }

    fn multinomial_logistic_loss(&self, dim: usize, labels: &[usize], p: View) -> f32 {
        let ps = p.host(labels.len() * dim);
        let mut loss = 0.0f32;
        for (r, &l) in labels.iter().enumerate() {
            loss -= caffe_max(ps[r * dim + l], LOG_THRESHOLD).ln();
        }
        loss
    }

    fn multinomial_logistic_grad(
        &self,
        dim: usize,
        labels: &[usize],
        scale: f32,
        p: View,
        mut dx: ViewMut,
    ) {
        let n = labels.len() * dim;
        let (ps, d) = (p.host(n), dx.host(n));
        d.iter_mut().for_each(|v| *v = 0.0);
        for (r, &l) in labels.iter().enumerate() {
            d[r * dim + l] = scale / caffe_max(ps[r * dim + l], LOG_THRESHOLD);
        }
    }

    fn infogain_loss(
        &self,
        ch: usize,
        inner: usize,
        labels: &[Option<usize>],
        p: View,
        h: View,
    ) -> f32 {
        let ps = p.host(labels.len() * ch);
        let hs = h.host(ch * ch);
        let mut loss = 0.0f32;
        for (col, label) in labels.iter().enumerate() {
            let Some(l) = *label else { continue };
            let (o, i) = (col / inner, col % inner);
            for c in 0..ch {
                let prob = caffe_max(ps[(o * ch + c) * inner + i], LOG_THRESHOLD);
                loss -= hs[l * ch + c] * prob.ln();
            }
        }
        loss
    }

    fn infogain_grad(
        &self,
        ch: usize,
        inner: usize,
        labels: &[Option<usize>],
        scale: f32,
        p: View,
        h: View,
        mut dx: ViewMut,
    ) {
        let n = labels.len() * ch;
        let (ps, hs, d) = (p.host(n), h.host(ch * ch), dx.host(n));
        for (col, label) in labels.iter().enumerate() {
            let (o, i) = (col / inner, col % inner);
            let at = |c: usize| (o * ch + c) * inner + i;
            match *label {
                None => (0..ch).for_each(|c| d[at(c)] = 0.0),
                Some(l) => {
                    let row = &hs[l * ch..(l + 1) * ch];
                    let sum: f32 = row.iter().sum();
                    for c in 0..ch {
                        d[at(c)] = scale * (ps[at(c)] * sum - row[c]);
                    }
                }
            }
        }
    }

    fn contrastive_loss(
        &self,
        ch: usize,
        similar: &[bool],
        margin: f32,
        legacy: bool,
        diff: View,
        mut dist_sq: ViewMut,
    ) -> f32 {
        let ds = diff.host(similar.len() * ch);
        let dsq = dist_sq.host(similar.len());
        let mut loss = 0.0f32;
        for (r, &sim) in similar.iter().enumerate() {
            let row = &ds[r * ch..(r + 1) * ch];
            let d2: f32 = row.iter().map(|v| v * v).sum();
            dsq[r] = d2;
            loss += if sim {
                d2
            } else if legacy {
                caffe_max(margin - d2, 0.0)
            } else {
                let m = caffe_max(margin - d2.sqrt(), 0.0);
                m * m
            };
        }
        loss
    }

    fn contrastive_grad(
        &self,
        ch: usize,
        similar: &[bool],
        margin: f32,
        legacy: bool,
        alpha: f32,
        diff: View,
        dist_sq: View,
        mut dx: ViewMut,
    ) {
        let n = similar.len() * ch;
        let (ds, dsq, d) = (diff.host(n), dist_sq.host(similar.len()), dx.host(n));
        for (r, &sim) in similar.iter().enumerate() {
            let beta = if sim {
                alpha
            } else {
                let (mdist, beta) = if legacy {
                    (margin - dsq[r], -alpha)
                } else {
                    let dist = dsq[r].sqrt();
                    let m = margin - dist;
                    (m, -alpha * m / (dist + 1e-4))
                };
                if mdist > 0.0 {
                    beta
                } else {
                    0.0
                }
            };
            for j in r * ch..(r + 1) * ch {
                d[j] = beta * ds[j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Buffer;

    fn buf(v: &[f32]) -> Buffer {
        Buffer::from_vec(v.to_vec())
    }

    #[test]
    fn clamped_losses_keep_a_nan_nan() {
        // Caffe's std::max(p, kLOG_THRESHOLD) / std::max(margin - d, 0)
        // pass a NaN first argument through.
        let be = CpuBackend::new();
        let p = buf(&[0.5, f32::NAN, 0.25, 0.75]);
        assert!(be.multinomial_logistic_loss(2, &[1, 0], p.view()).is_nan());
        let mut d = Buffer::host_zeros(4);
        be.multinomial_logistic_grad(2, &[1, 0], -1.0, p.view(), d.view_mut());
        assert!(d.read(4)[1].is_nan());
        let h = buf(&[1.0, 0.0, 0.0, 1.0]);
        assert!(be
            .infogain_loss(2, 1, &[Some(1), Some(0)], p.view(), h.view())
            .is_nan());
        for legacy in [false, true] {
            let diff = buf(&[f32::NAN, 1.0]);
            let mut dsq = Buffer::host_zeros(1);
            let loss = be.contrastive_loss(2, &[false], 1.0, legacy, diff.view(), dsq.view_mut());
            assert!(loss.is_nan(), "legacy {legacy}: {loss}");
        }
        // Finite values are clamped as before.
        let p = buf(&[0.0, 1.0]);
        let want = -(LOG_THRESHOLD.ln());
        assert_eq!(be.multinomial_logistic_loss(2, &[0], p.view()), want);
    }

    #[test]
    fn copy_blocks_strides_and_accumulate() {
        let be = CpuBackend::new();
        let x = buf(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut y = Buffer::host_zeros(8);
        // Two blocks of 2 from stride 3 into stride 4 at offset 1.
        be.copy_blocks(2, 2, x.at(1), 3, y.at_mut(1), 4, false);
        assert_eq!(y.read(8), vec![0.0, 2.0, 3.0, 0.0, 0.0, 5.0, 6.0, 0.0]);
        be.copy_blocks(2, 2, x.at(1), 3, y.at_mut(1), 4, true);
        assert_eq!(y.read(8), vec![0.0, 4.0, 6.0, 0.0, 0.0, 10.0, 12.0, 0.0]);
    }

    #[test]
    fn gather_scatter_rows() {
        let be = CpuBackend::new();
        let src = buf(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut dst = Buffer::host_zeros(6);
        be.gather_rows(&[2, 0, 2], 2, src.view(), dst.view_mut());
        assert_eq!(dst.read(6), vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
        let mut acc = Buffer::host_zeros(6);
        be.scatter_add_rows(&[2, 0, 2], 2, dst.view(), acc.view_mut());
        assert_eq!(acc.read(6), vec![1.0, 2.0, 0.0, 0.0, 10.0, 12.0]);
    }

    #[test]
    fn crop_window_round_trip() {
        let be = CpuBackend::new();
        let x = buf(&(0..24).map(|v| v as f32).collect::<Vec<_>>());
        let mut y = Buffer::host_zeros(4);
        be.crop_forward(&[2, 3, 4], &[1, 2, 2], &[1, 1, 2], x.view(), y.view_mut());
        // (1,1,2)=18 (1,1,3)=19 (1,2,2)=22 (1,2,3)=23
        assert_eq!(y.read(4), vec![18.0, 19.0, 22.0, 23.0]);
        let mut dx = Buffer::host_zeros(24);
        be.crop_backward(&[2, 3, 4], &[1, 2, 2], &[1, 1, 2], y.view(), dx.view_mut());
        let d = dx.read(24);
        assert_eq!(d.iter().sum::<f32>(), 18.0 + 19.0 + 22.0 + 23.0);
        assert_eq!((d[18], d[19], d[22], d[23]), (18.0, 19.0, 22.0, 23.0));
    }

    #[test]
    fn reduce_rows_ops() {
        let be = CpuBackend::new();
        let x = buf(&[1.0, -2.0, 0.0, 3.0, -1.0, 2.0]);
        let mut y = Buffer::host_zeros(2);
        be.reduce_rows(Reduce::Asum, 2, 3, 2.0, x.view(), y.view_mut());
        assert_eq!(y.read(2), vec![6.0, 12.0]);
        be.reduce_rows(Reduce::SumSq, 2, 3, 1.0, x.view(), y.view_mut());
        assert_eq!(y.read(2), vec![5.0, 14.0]);
        let dy = buf(&[1.0, -1.0]);
        let mut dx = Buffer::host_zeros(6);
        be.reduce_rows_backward(Reduce::Asum, 2, 3, 2.0, x.view(), dy.view(), dx.view_mut());
        assert_eq!(dx.read(6), vec![2.0, -2.0, 0.0, -2.0, 2.0, -2.0]);
    }

    #[test]
    fn argmax_ties_prefer_larger_index() {
        let be = CpuBackend::new();
        let x = buf(&[1.0, 3.0, 3.0, 0.0]);
        let mut y = Buffer::host_zeros(4);
        be.argmax(
            1,
            4,
            1,
            2,
            ArgMaxOut::IndicesThenValues,
            x.view(),
            y.view_mut(),
        );
        assert_eq!(y.read(4), vec![2.0, 1.0, 3.0, 3.0]);
    }
}
