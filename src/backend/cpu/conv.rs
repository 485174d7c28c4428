//! CPU ConvOps: im2col/col2im on host slices, and the convolution passes
//! parallelised across the images of a batch (each worker owns one column
//! buffer of the workspace and runs single-threaded GEMMs).
use std::sync::Mutex;

use rayon::prelude::*;

use super::math::sgemm;
use super::{CpuBackend, PAR_MIN};
use crate::backend::{ConvGeometry, ConvOps, View, ViewMut};

/// Visit every row segment of the column buffer: for each channel, kernel
/// offset and output position of all axes but the last, `f(row, pos, base,
/// b, lo, hi)` where the segment is positions `pos..pos + ow` of column-buffer
/// row `row` (= channel·kernel_size + kernel offset), `base` is
/// the image offset of the input row (None when the row lies in the
/// padding), input index `base + j·stride + b` is valid for `j in lo..hi`.
/// The order is Caffe's (channel, kernel offset, output position), which
/// fixes col2im's summation order.
fn for_each_row(
    g: &ConvGeometry,
    mut f: impl FnMut(usize, usize, Option<usize>, i64, usize, usize),
) {
    let ns = g.num_spatial_axes();
    if ns == 2 {
        return for_each_row_2d(g, f);
    }
    let last = ns - 1;
    let ksize = g.kernel_size();
    let (in_sp, out_sp) = (g.in_spatial(), g.out_spatial());
    let (ow, iw) = (g.out_shape[last], g.in_shape[last]);
    let outer = out_sp / ow;
    // Strides of the input's spatial axes.
    let mut in_stride = vec![1usize; ns];
    for d in (0..last).rev() {
        in_stride[d] = in_stride[d + 1] * g.in_shape[d + 1];
    }
    let mut koff = vec![0usize; ns];
    let mut o = vec![0usize; ns];
    for c in 0..g.in_channels {
        for k in 0..ksize {
            let mut r = k;
            for d in (0..ns).rev() {
                koff[d] = r % g.kernel[d];
                r /= g.kernel[d];
            }
            let b = (koff[last] * g.dilation[last]) as i64 - g.pad[last] as i64;
            let (lo, hi) = valid_range(b, g.stride[last], iw, ow);
            o.iter_mut().for_each(|v| *v = 0);
            for t in 0..outer {
                let mut base = Some(c * in_sp);
                for d in 0..last {
                    let i = (o[d] * g.stride[d] + koff[d] * g.dilation[d]) as i64 - g.pad[d] as i64;
                    if i < 0 || i >= g.in_shape[d] as i64 {
                        base = None;
                        break;
                    }
                    base = base.map(|v| v + i as usize * in_stride[d]);
                }
                f(c * ksize + k, t * ow, base, b, lo, hi);
                // Odometer over the outer output axes.
                for d in (0..last).rev() {
                    o[d] += 1;
                    if o[d] < g.out_shape[d] {
                        break;
                    }
                    o[d] = 0;
                }
            }
        }
    }
}

/// `j` range with `0 <= j·s + b < size`, clipped to `0..n`.
#[inline]
fn valid_range(b: i64, s: usize, size: usize, n: usize) -> (usize, usize) {
    let s = s as i64;
    let lo = if b >= 0 { 0 } else { (-b + s - 1) / s };
    let hi = if size as i64 - b <= 0 {
        0
    } else {
        (size as i64 - b + s - 1) / s
    };
    let hi = (hi.max(0) as usize).min(n);
    ((lo as usize).min(hi), hi)
}

/// The 2-D case of `for_each_row` as plain loops (the hot path: rows are
/// short, so per-row overhead matters). Same order as the N-d walk.
fn for_each_row_2d(
    g: &ConvGeometry,
    mut f: impl FnMut(usize, usize, Option<usize>, i64, usize, usize),
) {
    let (ih, iw) = (g.in_shape[0], g.in_shape[1]);
    let (oh, ow) = (g.out_shape[0], g.out_shape[1]);
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let (sh, sw) = (g.stride[0], g.stride[1]);
    let mut row = 0;
    for c in 0..g.in_channels {
        let plane = c * ih * iw;
        for ki in 0..kh {
            let r0 = (ki * g.dilation[0]) as i64 - g.pad[0] as i64;
            for kj in 0..kw {
                let b = (kj * g.dilation[1]) as i64 - g.pad[1] as i64;
                let (lo, hi) = valid_range(b, sw, iw, ow);
                let mut r = r0;
                for i in 0..oh {
                    let base = (r >= 0 && r < ih as i64).then(|| plane + r as usize * iw);
                    f(row, i * ow, base, b, lo, hi);
                    r += sh as i64;
                }
                row += 1;
            }
        }
    }
}

/// im2col of one image on host slices.
pub(crate) fn im2col_host(g: &ConvGeometry, x: &[f32], col: &mut [f32]) {
    if g.num_spatial_axes() == 0 {
        // No spatial axes: one output position, the column is the image.
        col[..g.in_channels].copy_from_slice(&x[..g.in_channels]);
        return;
    }
    let out_sp = g.out_spatial();
    let ow = *g.out_shape.last().unwrap();
    let s = *g.stride.last().unwrap();
    for_each_row(g, |row, pos, base, b, lo, hi| {
        let off = row * out_sp + pos;
        let dst = &mut col[off..off + ow];
        match base {
            None => dst.fill(0.0),
            Some(base) => {
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                let start = (base as i64 + (lo * s) as i64 + b) as usize;
                if s == 1 {
                    dst[lo..hi].copy_from_slice(&x[start..start + (hi - lo)]);
                } else if hi > lo {
                    let src = x[start..=start + (hi - lo - 1) * s].iter().step_by(s);
                    for (d, &v) in dst[lo..hi].iter_mut().zip(src) {
                        *d = v;
                    }
                }
            }
        }
    });
}

/// col2im of one image on host slices (overwrites `x`).
pub(crate) fn col2im_host(g: &ConvGeometry, col: &[f32], x: &mut [f32]) {
    if g.num_spatial_axes() == 0 {
        x[..g.in_channels].copy_from_slice(&col[..g.in_channels]);
        return;
    }
    x[..g.in_dim()].fill(0.0);
    let s = *g.stride.last().unwrap();
    let out_sp = g.out_spatial();
    for_each_row(g, |row, pos, base, b, lo, hi| {
        let off = row * out_sp + pos;
        if let Some(base) = base {
            let start = (base as i64 + (lo * s) as i64 + b) as usize;
            let src = &col[off + lo..off + hi];
            if s == 1 {
                let dst = &mut x[start..start + src.len()];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d += v;
                }
            } else if !src.is_empty() {
                let dst = x[start..=start + (src.len() - 1) * s].iter_mut().step_by(s);
                for (d, &v) in dst.zip(src) {
                    *d += v;
                }
            }
        }
    });
}

/// Σ v with eight accumulators (vectorisable).
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &r in rest {
        s += r;
    }
    s
}

/// How a pass over `num` images is spread over rayon's threads: `cols`
/// column buffers (one per concurrently running image, handed out per
/// thread) and, for the filter gradient, `parts` fixed image ranges with one
/// partial sum each. Fixed ranges summed in order keep the result
/// independent of scheduling; the images themselves are scheduled
/// dynamically, so a busy core does not stall the pass.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Plan {
    cols: usize,
    col_len: usize,
    parts: usize,
}

impl Plan {
    fn new(g: &ConvGeometry, num: usize) -> Plan {
        let threads = rayon::current_num_threads();
        let cols = num.min(threads).max(1);
        let parts = if cols > 1 { num.min(4 * threads) } else { 1 };
        Plan::with(g, cols, parts)
    }
    /// One column buffer, no partials: the smallest plan.
    fn minimal(g: &ConvGeometry) -> Plan {
        Plan::with(g, 1, 1)
    }
    fn with(g: &ConvGeometry, cols: usize, parts: usize) -> Plan {
        Plan {
            cols,
            // im2col is the identity for 1×1 convolutions: no buffer then.
            col_len: if g.is_1x1() { 0 } else { g.col_len() },
            parts,
        }
    }
    fn len(&self, wl: usize) -> usize {
        self.cols * self.col_len + if self.parts > 1 { self.parts * wl } else { 0 }
    }
    /// This plan if `ws` holds it (the thread count may differ from the
    /// one the workspace was sized for), else the minimal one.
    fn fit(g: &ConvGeometry, num: usize, ws_len: usize) -> Plan {
        let p = Plan::new(g, num);
        if p.len(g.weight_len()) <= ws_len {
            p
        } else {
            Plan::minimal(g)
        }
    }
}

/// Column buffers shared by the workers of one pass; each running image
/// takes a free one (its thread's first), so at most `cols` are in use.
struct ColPool<'a> {
    bufs: Vec<Mutex<&'a mut [f32]>>,
}

impl<'a> ColPool<'a> {
    fn new(ws: &'a mut [f32], plan: &Plan) -> Self {
        let bufs = if plan.col_len == 0 {
            (0..plan.cols)
                .map(|_| Mutex::new(<&mut [f32]>::default()))
                .collect()
        } else {
            ws[..plan.cols * plan.col_len]
                .chunks_mut(plan.col_len)
                .map(Mutex::new)
                .collect()
        };
        ColPool { bufs }
    }
    fn with<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> R {
        let n = self.bufs.len();
        let first = rayon::current_thread_index().unwrap_or(0) % n;
        for i in 0..n {
            if let Ok(mut b) = self.bufs[(first + i) % n].try_lock() {
                return f(&mut b);
            }
        }
        // Unreachable with one buffer per thread; wait rather than fail.
        let mut b = self.bufs[first].lock().unwrap_or_else(|e| e.into_inner());
        f(&mut b)
    }
}

/// Run `f(image, out_image, col)` for every image: sequentially with one
/// column buffer, or one rayon task per image.
fn per_image(
    num: usize,
    plan: &Plan,
    out_per_image: usize,
    out: &mut [f32],
    ws: &mut [f32],
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) {
    let out = &mut out[..num * out_per_image];
    if plan.cols <= 1 {
        let col = &mut ws[..plan.col_len];
        for (n, yn) in out.chunks_mut(out_per_image).enumerate() {
            f(n, yn, col);
        }
        return;
    }
    let pool = ColPool::new(ws, plan);
    out.par_chunks_mut(out_per_image)
        .enumerate()
        .for_each(|(n, yn)| pool.with(|col| f(n, yn, col)));
}

/// Offsets of group `gi` in the weights, the column buffer and the output.
struct GroupDims {
    ocg: usize,
    kd: usize,
    s: usize,
}

impl GroupDims {
    fn new(g: &ConvGeometry) -> Self {
        GroupDims {
            ocg: g.out_channels / g.group,
            kd: g.kernel_dim(),
            s: g.out_spatial(),
        }
    }
    fn w(&self, gi: usize) -> usize {
        gi * self.ocg * self.kd
    }
    fn col(&self, gi: usize) -> usize {
        gi * self.kd * self.s
    }
    fn out(&self, gi: usize) -> usize {
        gi * self.ocg * self.s
    }
}

/// dw_part = beta·dw_part + Σ_groups dy_n ⋆ col(x_n) for one image.
fn filter_image(
    g: &ConvGeometry,
    xn: &[f32],
    dyn_: &[f32],
    col: &mut [f32],
    dw: &mut [f32],
    beta: f32,
) {
    let d = GroupDims::new(g);
    let col: &[f32] = if g.is_1x1() {
        xn
    } else {
        im2col_host(g, xn, col);
        col
    };
    for gi in 0..g.group {
        sgemm(
            false,
            true,
            d.ocg,
            d.kd,
            d.s,
            1.0,
            &dyn_[d.out(gi)..],
            &col[d.col(gi)..],
            beta,
            &mut dw[d.w(gi)..],
        );
    }
}

/// dw = first_beta·dw + Σ over `range` of the images' filter gradients,
/// image after image.
fn filter_range<'a>(
    g: &ConvGeometry,
    range: std::ops::Range<usize>,
    image: &impl Fn(usize) -> (&'a [f32], &'a [f32]),
    col: &mut [f32],
    dw: &mut [f32],
    first_beta: f32,
) {
    let start = range.start;
    for n in range {
        let (xn, dyn_) = image(n);
        let beta = if n == start { first_beta } else { 1.0 };
        filter_image(g, xn, dyn_, col, dw, beta);
    }
}

impl ConvOps for CpuBackend {
    fn im2col(&self, g: &ConvGeometry, x: View, mut col: ViewMut) {
        im2col_host(g, x.host(g.in_dim()), col.host(g.col_len()));
    }

    fn col2im(&self, g: &ConvGeometry, col: View, mut x: ViewMut) {
        col2im_host(g, col.host(g.col_len()), x.host(g.in_dim()));
    }

    /// Column buffers for the concurrently running images, plus one
    /// weight-gradient partial per fixed image range (see `Plan`).
    fn conv_workspace_len(&self, g: &ConvGeometry, num: usize) -> usize {
        Plan::new(g, num).len(g.weight_len())
    }

    fn conv_forward(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        w: View,
        bias: Option<View>,
        mut y: ViewMut,
        mut ws: ViewMut,
    ) {
        let (id, od) = (g.in_dim(), g.out_dim());
        let d = GroupDims::new(g);
        let x = x.host(num * id);
        let w = w.host(g.weight_len());
        let bias = bias.map(|b| b.host(g.out_channels));
        let ws = ws.host_rest();
        let plan = Plan::fit(g, num, ws.len());
        per_image(num, &plan, od, y.host(num * od), ws, |n, yn, col| {
            let xn = &x[n * id..(n + 1) * id];
            let col: &[f32] = if g.is_1x1() {
                xn
            } else {
                im2col_host(g, xn, col);
                col
            };
            for gi in 0..g.group {
                sgemm(
                    false,
                    false,
                    d.ocg,
                    d.s,
                    d.kd,
                    1.0,
                    &w[d.w(gi)..],
                    &col[d.col(gi)..],
                    0.0,
                    &mut yn[d.out(gi)..],
                );
            }
            if let Some(b) = bias {
                for (row, &bv) in yn.chunks_mut(d.s).zip(b) {
                    row.iter_mut().for_each(|v| *v += bv);
                }
            }
        });
    }

    fn conv_backward_data(
        &self,
        g: &ConvGeometry,
        num: usize,
        dy: View,
        w: View,
        mut dx: ViewMut,
        mut ws: ViewMut,
    ) {
        let (id, od) = (g.in_dim(), g.out_dim());
        let d = GroupDims::new(g);
        let dy = dy.host(num * od);
        let w = w.host(g.weight_len());
        let ws = ws.host_rest();
        let plan = Plan::fit(g, num, ws.len());
        per_image(num, &plan, id, dx.host(num * id), ws, |n, dxn, col| {
            let dyn_ = &dy[n * od..(n + 1) * od];
            let dst: &mut [f32] = if g.is_1x1() { &mut *dxn } else { &mut *col };
            for gi in 0..g.group {
                sgemm(
                    true,
                    false,
                    d.kd,
                    d.s,
                    d.ocg,
                    1.0,
                    &w[d.w(gi)..],
                    &dyn_[d.out(gi)..],
                    0.0,
                    &mut dst[d.col(gi)..],
                );
            }
            if !g.is_1x1() {
                col2im_host(g, col, dxn);
            }
        });
    }

    fn conv_backward_filter(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        dy: View,
        mut dw: ViewMut,
        mut ws: ViewMut,
    ) {
        let (id, od, wl) = (g.in_dim(), g.out_dim(), g.weight_len());
        let x = x.host(num * id);
        let dy = dy.host(num * od);
        let dw = dw.host(wl);
        let ws = ws.host_rest();
        let plan = Plan::fit(g, num, ws.len());
        let image = |n: usize| (&x[n * id..(n + 1) * id], &dy[n * od..(n + 1) * od]);
        if plan.parts <= 1 {
            // Caffe's order: accumulate image after image into dw.
            let col = &mut ws[..plan.col_len];
            filter_range(g, 0..num, &image, col, dw, 1.0);
            return;
        }
        let per = num.div_ceil(plan.parts);
        let used = num.div_ceil(per);
        let (cols, parts) = ws[..plan.len(wl)].split_at_mut(plan.cols * plan.col_len);
        let pool = ColPool::new(cols, &plan);
        parts[..used * wl]
            .par_chunks_mut(wl)
            .enumerate()
            .for_each(|(k, part)| {
                let range = k * per..((k + 1) * per).min(num);
                pool.with(|col| filter_range(g, range, &image, col, part, 0.0));
            });
        // Fixed-order reduction: dw += part_0 + part_1 + ...
        for part in parts[..used * wl].chunks(wl) {
            for (a, &p) in dw.iter_mut().zip(part) {
                *a += p;
            }
        }
    }

    fn conv_backward_bias(
        &self,
        num: usize,
        channels: usize,
        spatial: usize,
        dy: View,
        mut db: ViewMut,
        _ws: ViewMut,
    ) {
        let dy = dy.host(num * channels * spatial);
        let db = db.host(channels);
        // Per channel, image after image (Caffe's gemv order over images).
        let channel = |o: usize, d: &mut f32| {
            let mut acc = *d;
            for n in 0..num {
                acc += sum(&dy[(n * channels + o) * spatial..][..spatial]);
            }
            *d = acc;
        };
        if num * channels * spatial >= PAR_MIN {
            db.par_iter_mut()
                .enumerate()
                .for_each(|(o, d)| channel(o, d));
        } else {
            db.iter_mut().enumerate().for_each(|(o, d)| channel(o, d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::conv::generic;
    use crate::backend::{Buffer, Math};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[allow(clippy::too_many_arguments)]
    fn geom(
        c: usize,
        in_shape: &[usize],
        o: usize,
        k: &[usize],
        s: &[usize],
        p: &[usize],
        dl: &[usize],
        group: usize,
    ) -> ConvGeometry {
        let out_shape = (0..in_shape.len())
            .map(|i| ConvGeometry::output_size(in_shape[i], k[i], s[i], p[i], dl[i]).unwrap())
            .collect();
        ConvGeometry {
            in_channels: c,
            in_shape: in_shape.to_vec(),
            out_channels: o,
            out_shape,
            kernel: k.to_vec(),
            stride: s.to_vec(),
            pad: p.to_vec(),
            dilation: dl.to_vec(),
            group,
        }
    }

    fn rand_vec(n: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// Geometries covering 1-D, 2-D (pad, stride, dilation, groups,
    /// rectangular, 1×1) and 3-D.
    fn geometries() -> Vec<ConvGeometry> {
        vec![
            geom(3, &[6, 7], 4, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1),
            geom(3, &[9, 8], 4, &[5, 5], &[2, 2], &[2, 2], &[1, 1], 1),
            geom(3, &[8, 7], 3, &[3, 3], &[1, 1], &[2, 2], &[2, 2], 1),
            geom(4, &[6, 6], 6, &[3, 3], &[1, 1], &[0, 0], &[1, 1], 2),
            geom(3, &[7, 6], 4, &[3, 2], &[2, 1], &[1, 0], &[1, 1], 1),
            geom(3, &[4, 5], 5, &[1, 1], &[1, 1], &[0, 0], &[1, 1], 1),
            geom(2, &[5, 5], 2, &[1, 1], &[2, 2], &[1, 1], &[1, 1], 1),
            geom(2, &[9], 3, &[3], &[2], &[1], &[2], 1),
            geom(
                2,
                &[4, 5, 3],
                3,
                &[2, 3, 2],
                &[1, 2, 1],
                &[1, 0, 1],
                &[1, 1, 2],
                1,
            ),
        ]
    }

    /// Caffe's im2col definition, element by element.
    fn naive_im2col(g: &ConvGeometry, x: &[f32]) -> Vec<f32> {
        let ns = g.num_spatial_axes();
        let (ks, os) = (g.kernel_size(), g.out_spatial());
        let mut col = vec![0.0; g.col_len()];
        for c in 0..g.in_channels {
            for k in 0..ks {
                for t in 0..os {
                    let (mut kr, mut tr) = (k, t);
                    let mut idx = 0i64;
                    let mut pad = false;
                    let mut mult = 1i64;
                    for d in (0..ns).rev() {
                        let (kd, od) = (kr % g.kernel[d], tr % g.out_shape[d]);
                        kr /= g.kernel[d];
                        tr /= g.out_shape[d];
                        let i = (od * g.stride[d] + kd * g.dilation[d]) as i64 - g.pad[d] as i64;
                        pad |= i < 0 || i >= g.in_shape[d] as i64;
                        idx += i * mult;
                        mult *= g.in_shape[d] as i64;
                    }
                    if !pad {
                        col[(c * ks + k) * os + t] = x[c * g.in_spatial() + idx as usize];
                    }
                }
            }
        }
        col
    }

    /// Direct convolution with groups: y[n][o][t] = b[o] + Σ w·x.
    fn naive_conv(g: &ConvGeometry, num: usize, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let (ocg, kd, os) = (g.out_channels / g.group, g.kernel_dim(), g.out_spatial());
        let mut y = vec![0.0; num * g.out_dim()];
        for n in 0..num {
            let col = naive_im2col(g, &x[n * g.in_dim()..(n + 1) * g.in_dim()]);
            for o in 0..g.out_channels {
                let gi = o / ocg;
                for t in 0..os {
                    let mut s = b[o] as f64;
                    for r in 0..kd {
                        s += (w[o * kd + r] * col[(gi * kd + r) * os + t]) as f64;
                    }
                    y[(n * g.out_channels + o) * os + t] = s as f32;
                }
            }
        }
        y
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "at {i}: {x} vs {y}");
        }
    }

    #[test]
    fn im2col_matches_definition_and_col2im_is_its_adjoint() {
        let mut rng = StdRng::seed_from_u64(3);
        for g in geometries() {
            let x = rand_vec(g.in_dim(), &mut rng);
            let mut col = vec![f32::NAN; g.col_len()];
            im2col_host(&g, &x, &mut col);
            assert_eq!(col, naive_im2col(&g, &x), "{g:?}");
            // <im2col(x), c> == <x, col2im(c)>
            let cv = rand_vec(g.col_len(), &mut rng);
            let mut xi = vec![f32::NAN; g.in_dim()];
            col2im_host(&g, &cv, &mut xi);
            let lhs: f64 = col.iter().zip(&cv).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&xi).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()), "{g:?}");
        }
    }

    #[test]
    fn cpu_passes_match_direct_convolution_and_generic_passes() {
        let be = CpuBackend::new();
        let mut rng = StdRng::seed_from_u64(5);
        for g in geometries() {
            for num in [1, 3, 8] {
                let x = rand_vec(num * g.in_dim(), &mut rng);
                let w = rand_vec(g.weight_len(), &mut rng);
                let b = rand_vec(g.out_channels, &mut rng);
                let dy = rand_vec(num * g.out_dim(), &mut rng);
                let (xb, wb, bb, dyb) = (
                    Buffer::from_vec(x.clone()),
                    Buffer::from_vec(w.clone()),
                    Buffer::from_vec(b.clone()),
                    Buffer::from_vec(dy.clone()),
                );
                let mut ws = be.alloc(be.conv_workspace_len(&g, num));
                let mut gws = be.alloc(g.col_len() + g.out_spatial());
                // forward
                let want = naive_conv(&g, num, &x, &w, &b);
                let mut y = be.alloc(num * g.out_dim());
                be.conv_forward(
                    &g,
                    num,
                    xb.view(),
                    wb.view(),
                    Some(bb.view()),
                    y.view_mut(),
                    ws.view_mut(),
                );
                close(&y.read(want.len()), &want, 1e-5);
                let mut yg = be.alloc(num * g.out_dim());
                generic::conv_forward(
                    &be,
                    &g,
                    num,
                    xb.view(),
                    wb.view(),
                    Some(bb.view()),
                    yg.view_mut(),
                    gws.view_mut(),
                );
                close(&yg.read(want.len()), &want, 1e-5);
                // backward data: CPU vs generic
                let mut dx = Buffer::from_vec(vec![f32::NAN; num * g.in_dim()]);
                be.conv_backward_data(&g, num, dyb.view(), wb.view(), dx.view_mut(), ws.view_mut());
                let mut dxg = Buffer::from_vec(vec![f32::NAN; num * g.in_dim()]);
                generic::conv_backward_data(
                    &be,
                    &g,
                    num,
                    dyb.view(),
                    wb.view(),
                    dxg.view_mut(),
                    gws.view_mut(),
                );
                close(
                    &dx.read(num * g.in_dim()),
                    &dxg.read(num * g.in_dim()),
                    1e-5,
                );
                // <conv(x), dy> == <x, conv_backward_data(dy)> (bias-free)
                let mut y0 = be.alloc(num * g.out_dim());
                be.conv_forward(
                    &g,
                    num,
                    xb.view(),
                    wb.view(),
                    None,
                    y0.view_mut(),
                    ws.view_mut(),
                );
                let lhs: f64 = y0
                    .read(dy.len())
                    .iter()
                    .zip(&dy)
                    .map(|(a, b)| (a * b) as f64)
                    .sum();
                let rhs: f64 = x
                    .iter()
                    .zip(dx.read(x.len()))
                    .map(|(a, b)| (a * b) as f64)
                    .sum();
                assert!((lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()), "{g:?}");
                // backward filter accumulates: start from ones
                let mut dw = Buffer::from_vec(vec![1.0; w.len()]);
                be.conv_backward_filter(
                    &g,
                    num,
                    xb.view(),
                    dyb.view(),
                    dw.view_mut(),
                    ws.view_mut(),
                );
                let mut dwg = Buffer::from_vec(vec![1.0; w.len()]);
                generic::conv_backward_filter(
                    &be,
                    &g,
                    num,
                    xb.view(),
                    dyb.view(),
                    dwg.view_mut(),
                    gws.view_mut(),
                );
                close(&dw.read(w.len()), &dwg.read(w.len()), 1e-5);
                // <conv_w(x), dy> is linear in w: Σ dw·w == <y0, dy> (+ w·1 from the start value)
                let dot: f64 = dw
                    .read(w.len())
                    .iter()
                    .zip(&w)
                    .map(|(a, b)| ((a - 1.0) * b) as f64)
                    .sum();
                assert!((dot - lhs).abs() < 1e-3 * (1.0 + lhs.abs()), "{g:?}");
                // bias
                let (os, oc) = (g.out_spatial(), g.out_channels);
                let mut db = Buffer::from_vec(vec![0.5; oc]);
                be.conv_backward_bias(num, oc, os, dyb.view(), db.view_mut(), ws.view_mut());
                let mut dbg = Buffer::from_vec(vec![0.5; oc]);
                generic::conv_backward_bias(
                    &be,
                    num,
                    oc,
                    os,
                    dyb.view(),
                    dbg.view_mut(),
                    gws.view_mut(),
                );
                let want: Vec<f32> = (0..oc)
                    .map(|o| {
                        0.5 + (0..num)
                            .map(|n| dy[(n * oc + o) * os..][..os].iter().sum::<f32>())
                            .sum::<f32>()
                    })
                    .collect();
                close(&db.read(oc), &want, 1e-5);
                close(&dbg.read(oc), &want, 1e-5);
            }
        }
    }

    #[test]
    fn filter_gradient_is_deterministic_and_fits_a_small_workspace() {
        let be = CpuBackend::new();
        let mut rng = StdRng::seed_from_u64(9);
        let g = geometries().remove(0);
        let num = 7;
        let x = Buffer::from_vec(rand_vec(num * g.in_dim(), &mut rng));
        let dy = Buffer::from_vec(rand_vec(num * g.out_dim(), &mut rng));
        let run = |ws_len: usize| {
            let mut ws = be.alloc(ws_len);
            let mut dw = be.alloc(g.weight_len());
            be.conv_backward_filter(&g, num, x.view(), dy.view(), dw.view_mut(), ws.view_mut());
            dw.read(g.weight_len())
        };
        let full = run(be.conv_workspace_len(&g, num));
        assert_eq!(full, run(be.conv_workspace_len(&g, num)));
        // A workspace with room for one column buffer only runs sequentially.
        close(&run(g.col_len()), &full, 1e-5);
        // Other thread counts give other ranges, the same sums.
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        close(
            &one.install(|| run(be.conv_workspace_len(&g, num))),
            &full,
            1e-5,
        );
    }
}
