//! CPU LrnOps: Caffe's LRN arithmetic in Caffe's order (running channel
//! window for ACROSS_CHANNELS; the Power/Pooling/Eltwise composition for
//! WITHIN_CHANNEL computed directly), rayon across images or planes.
use rayon::prelude::*;

use super::{CpuBackend, PAR_MIN};
use crate::backend::lrn::LrnParams;
use crate::backend::{LrnOps, View, ViewMut};

/// Pixels handled together when walking the channel window in backward:
/// long enough that each channel plane is read in contiguous runs the
/// prefetcher follows (16 pixels, one cache line per plane and channel,
/// measured 3× slower on GoogLeNet's conv2/norm2), short enough that the
/// accumulator stays in L1.
const BLOCK: usize = 512;

fn min_items(per_item: usize) -> usize {
    (PAR_MIN / per_item.max(1)).max(1)
}

/// `out[i] = s[i]^(-beta) · v[i]`. `powf` per element dominates LRN, so
/// the betas the zoo uses get closed forms that vectorise (`sqrt` is
/// correctly rounded; the result stays within 2 ulp of `powf`, far inside
/// the golden tolerance): 0.75 (AlexNet, CaffeNet, GoogLeNet), 0.5 and 1.
fn pow_neg_mul(beta: f32, s: &[f32], v: &[f32], out: &mut [f32]) {
    let it = out.iter_mut().zip(s).zip(v);
    if beta == 0.75 {
        it.for_each(|((o, &s), &v)| {
            let r = s.sqrt();
            *o = 1.0 / (r * r.sqrt()) * v
        });
    } else if beta == 0.5 {
        it.for_each(|((o, &s), &v)| *o = 1.0 / s.sqrt() * v);
    } else if beta == 1.0 {
        it.for_each(|((o, &s), &v)| *o = 1.0 / s * v);
    } else {
        it.for_each(|((o, &s), &v)| *o = s.powf(-beta) * v);
    }
}

/// One image of ACROSS_CHANNELS forward: the scale planes by Caffe's running
/// sum (first window, then add head / subtract tail per channel; padding
/// channels contribute exact zeros, so they are skipped), then `y`.
fn across_forward_image(
    p: &LrnParams,
    c: usize,
    sp: usize,
    x: &[f32],
    scale: &mut [f32],
    y: &mut [f32],
) {
    let pre = (p.size - 1) / 2;
    let a = p.alpha / p.size as f32;
    scale.fill(p.k);
    // Window of channel 0: channels -pre ..= pre (padded positions 0..size).
    for cc in 0..(pre + 1).min(c) {
        let xs = &x[cc * sp..(cc + 1) * sp];
        for (s, &v) in scale[..sp].iter_mut().zip(xs) {
            *s += a * (v * v);
        }
    }
    for ch in 1..c {
        let (prev, cur) = scale.split_at_mut(ch * sp);
        let cur = &mut cur[..sp];
        cur.copy_from_slice(&prev[(ch - 1) * sp..]);
        if ch + pre < c {
            let head = &x[(ch + pre) * sp..(ch + pre + 1) * sp];
            for (s, &v) in cur.iter_mut().zip(head) {
                *s += a * (v * v);
            }
        }
        if ch > pre {
            let tail = &x[(ch - 1 - pre) * sp..(ch - pre) * sp];
            for (s, &v) in cur.iter_mut().zip(tail) {
                *s += -a * (v * v);
            }
        }
    }
    pow_neg_mul(p.beta, scale, x, y);
}

/// One image of ACROSS_CHANNELS backward (Caffe's CrossChannelBackward_cpu:
/// the accumulated ratio `Σ dy·y/scale` walks the channels, here for blocks
/// of pixels at a time so no padded scratch planes are needed).
#[allow(clippy::too_many_arguments)]
fn across_backward_image(
    p: &LrnParams,
    c: usize,
    sp: usize,
    x: &[f32],
    y: &[f32],
    scale: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let pre = (p.size - 1) / 2;
    let cache = (2.0 * p.alpha as f64 * p.beta as f64 / p.size as f64) as f32;
    pow_neg_mul(p.beta, scale, dy, dx);
    let ratio = |ch: usize, i: usize| {
        let j = ch * sp + i;
        (dy[j] * y[j]) / scale[j]
    };
    let mut start = 0;
    while start < sp {
        let len = BLOCK.min(sp - start);
        let mut acc = [0f32; BLOCK];
        // Channels -pre .. pre-1 (padded positions 0 .. size-2).
        for ch in 0..pre.min(c) {
            for (i, a) in acc[..len].iter_mut().enumerate() {
                *a += ratio(ch, start + i);
            }
        }
        for ch in 0..c {
            if ch + pre < c {
                for (i, a) in acc[..len].iter_mut().enumerate() {
                    *a += ratio(ch + pre, start + i);
                }
            }
            let base = ch * sp + start;
            for (i, &a) in acc[..len].iter().enumerate() {
                dx[base + i] += -cache * (x[base + i] * a);
            }
            if ch >= pre {
                for (i, a) in acc[..len].iter_mut().enumerate() {
                    *a -= ratio(ch - pre, start + i);
                }
            }
        }
        start += len;
    }
}

/// Window `[start, end)` of output `o` clipped to the image, and Caffe's AVE
/// divisor extent (pad (n−1)/2, stride 1: always n, kept general).
#[inline]
fn window(o: usize, pad: usize, k: usize, size: usize) -> (usize, usize, usize) {
    let start = o as i64 - pad as i64;
    let extent = ((start + k as i64).min((size + pad) as i64) - start) as usize;
    let end = (start + k as i64).min(size as i64);
    (start.max(0) as usize, end as usize, extent)
}

#[allow(clippy::too_many_arguments)]
fn within_forward_plane(
    p: &LrnParams,
    h: usize,
    w: usize,
    x: &[f32],
    avg: &mut [f32],
    scale: &mut [f32],
    y: &mut [f32],
) {
    let (n, pad) = (p.size, (p.size - 1) / 2);
    for ph in 0..h {
        let (hs, he, eh) = window(ph, pad, n, h);
        for pw in 0..w {
            let (ws, we, ew) = window(pw, pad, n, w);
            let mut s = 0f32;
            for r in hs..he {
                for &v in &x[r * w + ws..r * w + we] {
                    s += v * v;
                }
            }
            let i = ph * w + pw;
            avg[i] = s / (eh * ew) as f32;
            scale[i] = (avg[i] * p.alpha + 1.0).powf(-p.beta);
            y[i] = x[i] * scale[i];
        }
    }
}

/// Caffe's composition backward: Eltwise PROD, Power(−β, α, 1), AVE pooling,
/// Power(2), Split, each step in Caffe's arithmetic order.
#[allow(clippy::too_many_arguments)]
fn within_backward_plane(
    p: &LrnParams,
    h: usize,
    w: usize,
    x: &[f32],
    avg: &[f32],
    scale: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let (n, pad) = (p.size, (p.size - 1) / 2);
    let diff_scale = -p.beta * p.alpha;
    // dx first accumulates the gradient of the squares (pooling backward).
    dx.fill(0.0);
    for ph in 0..h {
        let (hs, he, eh) = window(ph, pad, n, h);
        for pw in 0..w {
            let (ws, we, ew) = window(pw, pad, n, w);
            let i = ph * w + pw;
            let d_scale = dy[i] * x[i];
            let d_avg = d_scale * ((scale[i] / (avg[i] * p.alpha + 1.0)) * diff_scale);
            let d = d_avg / (eh * ew) as f32;
            for r in hs..he {
                for v in &mut dx[r * w + ws..r * w + we] {
                    *v += d;
                }
            }
        }
    }
    for (((d, &v), &s), &g) in dx.iter_mut().zip(x).zip(scale).zip(dy) {
        *d = g * s + *d * (2.0 * v);
    }
}

impl LrnOps for CpuBackend {
    fn lrn_across_forward(
        &self,
        p: &LrnParams,
        num: usize,
        channels: usize,
        spatial: usize,
        x: View,
        mut scale: ViewMut,
        mut y: ViewMut,
    ) {
        let dim = channels * spatial;
        let x = x.host(num * dim);
        let scale = scale.host(num * dim);
        let y = y.host(num * dim);
        x.par_chunks(dim)
            .zip(scale.par_chunks_mut(dim).zip(y.par_chunks_mut(dim)))
            .with_min_len(min_items(dim))
            .for_each(|(x, (s, y))| across_forward_image(p, channels, spatial, x, s, y));
    }

    fn lrn_across_backward(
        &self,
        p: &LrnParams,
        num: usize,
        channels: usize,
        spatial: usize,
        x: View,
        y: View,
        scale: View,
        dy: View,
        mut dx: ViewMut,
    ) {
        let dim = channels * spatial;
        let n = num * dim;
        let (x, y, scale, dy) = (x.host(n), y.host(n), scale.host(n), dy.host(n));
        dx.host(n)
            .par_chunks_mut(dim)
            .enumerate()
            .with_min_len(min_items(dim))
            .for_each(|(i, dx)| {
                let r = i * dim..(i + 1) * dim;
                across_backward_image(
                    p,
                    channels,
                    spatial,
                    &x[r.clone()],
                    &y[r.clone()],
                    &scale[r.clone()],
                    &dy[r],
                    dx,
                );
            });
    }

    fn lrn_within_forward(
        &self,
        p: &LrnParams,
        planes: usize,
        height: usize,
        width: usize,
        x: View,
        mut avg: ViewMut,
        mut scale: ViewMut,
        mut y: ViewMut,
    ) {
        let sp = height * width;
        let n = planes * sp;
        let x = x.host(n);
        let avg = avg.host(n);
        let scale = scale.host(n);
        let y = y.host(n);
        x.par_chunks(sp)
            .zip(avg.par_chunks_mut(sp))
            .zip(scale.par_chunks_mut(sp).zip(y.par_chunks_mut(sp)))
            .with_min_len(min_items(sp))
            .for_each(|((x, a), (s, y))| within_forward_plane(p, height, width, x, a, s, y));
    }

    fn lrn_within_backward(
        &self,
        p: &LrnParams,
        planes: usize,
        height: usize,
        width: usize,
        x: View,
        avg: View,
        scale: View,
        dy: View,
        mut dx: ViewMut,
    ) {
        let sp = height * width;
        let n = planes * sp;
        let (x, avg, scale, dy) = (x.host(n), avg.host(n), scale.host(n), dy.host(n));
        dx.host(n)
            .par_chunks_mut(sp)
            .enumerate()
            .with_min_len(min_items(sp))
            .for_each(|(i, dx)| {
                let r = i * sp..(i + 1) * sp;
                within_backward_plane(
                    p,
                    height,
                    width,
                    &x[r.clone()],
                    &avg[r.clone()],
                    &scale[r.clone()],
                    &dy[r],
                    dx,
                );
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Buffer;

    #[test]
    fn closed_form_powers_stay_within_a_few_ulp() {
        // Scales as LRN makes them: k + alpha/n·Σx² ≥ k, over a wide range.
        let s: Vec<f32> = (0..4000)
            .map(|i| 1.0 + (i as f32 * 0.37).powi(2) * 1e-3)
            .collect();
        let v: Vec<f32> = (0..4000).map(|i| ((i as f32) * 0.71).sin() * 3.0).collect();
        for beta in [0.75f32, 0.5, 1.0, 0.6] {
            let mut out = vec![0.0; s.len()];
            pow_neg_mul(beta, &s, &v, &mut out);
            for i in 0..s.len() {
                let want = (s[i] as f64).powf(-beta as f64) * v[i] as f64;
                let err = (out[i] as f64 - want).abs();
                assert!(
                    err <= 3.0 * f32::EPSILON as f64 * want.abs(),
                    "beta {beta} i {i}: {} vs {want}",
                    out[i]
                );
            }
        }
    }

    /// The formulas of LAYERS.md §2.3, in f64.
    fn across_ref(p: &LrnParams, c: usize, sp: usize, x: &[f32]) -> Vec<f32> {
        let pre = (p.size - 1) / 2;
        let mut y = vec![0.0; x.len()];
        for ch in 0..c {
            for s in 0..sp {
                let mut sum = 0f64;
                for cc in ch.saturating_sub(pre)..(ch + pre + 1).min(c) {
                    sum += (x[cc * sp + s] as f64).powi(2);
                }
                let scale = p.k as f64 + p.alpha as f64 / p.size as f64 * sum;
                y[ch * sp + s] = (x[ch * sp + s] as f64 * scale.powf(-p.beta as f64)) as f32;
            }
        }
        y
    }

    fn within_ref(p: &LrnParams, h: usize, w: usize, x: &[f32]) -> Vec<f32> {
        let pre = (p.size - 1) as i64 / 2;
        let mut y = vec![0.0; x.len()];
        for r in 0..h as i64 {
            for c in 0..w as i64 {
                let mut sum = 0f64;
                for rr in (r - pre).max(0)..(r + pre + 1).min(h as i64) {
                    for cc in (c - pre).max(0)..(c + pre + 1).min(w as i64) {
                        sum += (x[(rr * w as i64 + cc) as usize] as f64).powi(2);
                    }
                }
                let n2 = (p.size * p.size) as f64;
                let scale = (1.0 + p.alpha as f64 / n2 * sum).powf(-p.beta as f64);
                let i = (r * w as i64 + c) as usize;
                y[i] = (x[i] as f64 * scale) as f32;
            }
        }
        y
    }

    #[test]
    fn forward_matches_the_formulas() {
        let be = CpuBackend::new();
        let p = LrnParams {
            size: 5,
            alpha: 0.3,
            beta: 0.75,
            k: 2.0,
        };
        let (c, sp) = (7, 6);
        let x: Vec<f32> = (0..c * sp)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.2)
            .collect();
        let xb = Buffer::from_vec(x.clone());
        let (mut s, mut y) = (Buffer::host_zeros(c * sp), Buffer::host_zeros(c * sp));
        be.lrn_across_forward(&p, 1, c, sp, xb.view(), s.view_mut(), y.view_mut());
        for (a, b) in y.read(c * sp).iter().zip(across_ref(&p, c, sp, &x)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let p = LrnParams { size: 3, ..p };
        let (h, w) = (5, 4);
        let x = &x[..h * w];
        let xb = Buffer::from_vec(x.to_vec());
        let (mut a, mut s, mut y) = (
            Buffer::host_zeros(h * w),
            Buffer::host_zeros(h * w),
            Buffer::host_zeros(h * w),
        );
        be.lrn_within_forward(
            &p,
            1,
            h,
            w,
            xb.view(),
            a.view_mut(),
            s.view_mut(),
            y.view_mut(),
        );
        for (a, b) in y.read(h * w).iter().zip(within_ref(&p, h, w, x)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn across_backward_matches_the_formula_over_block_tails() {
        // 700 pixels: one full BLOCK plus a tail, two images.
        let be = CpuBackend::new();
        let p = LrnParams {
            size: 5,
            alpha: 0.3,
            beta: 0.75,
            k: 2.0,
        };
        let (num, c, sp) = (2, 9, 700);
        let n = num * c * sp;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.2)
            .collect();
        let dy: Vec<f32> = (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.1).collect();
        let (xb, dyb) = (Buffer::from_vec(x.clone()), Buffer::from_vec(dy.clone()));
        let (mut s, mut y, mut dx) = (
            Buffer::host_zeros(n),
            Buffer::host_zeros(n),
            Buffer::host_zeros(n),
        );
        be.lrn_across_forward(&p, num, c, sp, xb.view(), s.view_mut(), y.view_mut());
        be.lrn_across_backward(
            &p,
            num,
            c,
            sp,
            xb.view(),
            y.view(),
            s.view(),
            dyb.view(),
            dx.view_mut(),
        );
        let dx = dx.read(n);
        let pre = (p.size - 1) / 2;
        let (a, b) = (p.alpha as f64 / p.size as f64, p.beta as f64);
        let at = |img: usize, ch: usize, i: usize| (img * c + ch) * sp + i;
        let scale = |img: usize, ch: usize, i: usize| {
            let lo = ch.saturating_sub(pre);
            let sum: f64 = (lo..(ch + pre + 1).min(c))
                .map(|cc| (x[at(img, cc, i)] as f64).powi(2))
                .sum();
            p.k as f64 + a * sum
        };
        for img in 0..num {
            for ch in 0..c {
                for i in 0..sp {
                    // dx = dy·s^-β − 2aβ·x·Σ_{c' : ch ∈ window(c')} dy·y/s.
                    let lo = ch.saturating_sub(pre);
                    let mut acc = 0f64;
                    for cc in lo..(ch + pre + 1).min(c) {
                        let sc = scale(img, cc, i);
                        let yc = x[at(img, cc, i)] as f64 * sc.powf(-b);
                        acc += dy[at(img, cc, i)] as f64 * yc / sc;
                    }
                    let j = at(img, ch, i);
                    let want =
                        dy[j] as f64 * scale(img, ch, i).powf(-b) - 2.0 * a * b * x[j] as f64 * acc;
                    assert!(
                        (dx[j] as f64 - want).abs() < 1e-5,
                        "{j}: {} vs {want}",
                        dx[j]
                    );
                }
            }
        }
    }
}
