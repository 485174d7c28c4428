//! CPU PoolOps: Caffe's loops, one channel plane per task (rayon across
//! planes once a task holds enough work). The forward passes run eight
//! output columns at a time where `pool_rows` applies; the scalar loops
//! here are its reference and the fallback.
use rayon::prelude::*;

use super::pool_rows::RowPlan;
use super::{CpuBackend, PAR_MIN};
use crate::backend::pool::PoolGeometry;
use crate::backend::{PoolOps, View, ViewMut};

/// Planes per rayon task, so each task touches at least ~PAR_MIN values
/// (small tensors run as one task).
fn min_planes(g: &PoolGeometry) -> usize {
    (PAR_MIN / g.in_plane().max(1)).max(1)
}

/// Window `[start, end)` of output index `o` along one axis, clipped to the
/// image, and Caffe's AVE divisor extent (clipped to the padded size only).
/// A window past the image (possible without padding when stride > kernel)
/// is empty, and its extent is Caffe's, negative: AVE then gives −0.
#[inline]
fn window(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize, i64) {
    let start = (o * stride) as i64 - pad as i64;
    let padded_end = (start + k as i64).min((size + pad) as i64);
    let extent = padded_end - start;
    let end = (start + k as i64).min(size as i64);
    let start = start.clamp(0, size as i64) as usize;
    (start, (end.max(0) as usize).max(start), extent)
}

/// The windows of every output row and column, computed once per call
/// rather than once per output value.
pub(super) struct Windows {
    pub(super) h: Vec<(usize, usize, i64)>,
    pub(super) w: Vec<(usize, usize, i64)>,
}

impl Windows {
    pub(super) fn new(g: &PoolGeometry) -> Self {
        Windows {
            h: (0..g.pooled_height)
                .map(|o| window(o, g.stride_h, g.pad_h, g.kernel_h, g.height))
                .collect(),
            w: (0..g.pooled_width)
                .map(|o| window(o, g.stride_w, g.pad_w, g.kernel_w, g.width))
                .collect(),
        }
    }
}

/// MAX pooling of one plane, output after output (Caffe's loop): the
/// first maximum in row-major order wins (strict `>`).
pub(super) fn max_plane(
    g: &PoolGeometry,
    win: &Windows,
    x: &[f32],
    y: &mut [f32],
    mask: &mut [f32],
) {
    match (g.kernel_h, g.kernel_w) {
        (2, 2) => max_plane_k::<2, 2>(g, win, x, y, mask),
        (3, 3) => max_plane_k::<3, 3>(g, win, x, y, mask),
        _ => max_plane_k::<0, 0>(g, win, x, y, mask),
    }
}

/// `max_plane` with whole KH×KW windows unrolled (the common kernels);
/// clipped windows, and every window when KH = 0, take the general loop.
#[inline(always)]
fn max_plane_k<const KH: usize, const KW: usize>(
    g: &PoolGeometry,
    win: &Windows,
    x: &[f32],
    y: &mut [f32],
    mask: &mut [f32],
) {
    let w = g.width;
    let x = &x[..g.in_plane()];
    let rows = y
        .chunks_mut(g.pooled_width)
        .zip(mask.chunks_mut(g.pooled_width));
    for (&(hs, he, _), (yr, mr)) in win.h.iter().zip(rows) {
        for ((&(ws, we, _), yv), mv) in win.w.iter().zip(yr.iter_mut()).zip(mr.iter_mut()) {
            let (mut best, mut arg) = (-f32::MAX, -1i64);
            // Selects, not branches: random data defeats branch prediction.
            let mut take = |v: f32, i: usize| {
                let gt = v > best;
                best = if gt { v } else { best };
                arg = if gt { i as i64 } else { arg };
            };
            if KH > 0 && he - hs == KH && we - ws == KW {
                let win = &x[hs * w + ws..(hs + KH - 1) * w + ws + KW];
                for r in 0..KH {
                    for (c, &v) in win[r * w..r * w + KW].iter().enumerate() {
                        take(v, (hs + r) * w + ws + c);
                    }
                }
            } else {
                for h in hs..he {
                    for (c, &v) in x[h * w + ws..h * w + we].iter().enumerate() {
                        take(v, h * w + ws + c);
                    }
                }
            }
            *yv = best;
            *mv = arg as f32;
        }
    }
}

/// AVE pooling of one plane (Caffe's loop: the window's values summed row
/// by row, divided by the padded window size).
pub(super) fn ave_plane(g: &PoolGeometry, win: &Windows, x: &[f32], y: &mut [f32]) {
    match (g.kernel_h, g.kernel_w) {
        (2, 2) => ave_plane_k::<2, 2>(g, win, x, y),
        (3, 3) => ave_plane_k::<3, 3>(g, win, x, y),
        _ => ave_plane_k::<0, 0>(g, win, x, y),
    }
}

/// `ave_plane` with whole KH×KW windows unrolled, like `max_plane_k`.
#[inline(always)]
fn ave_plane_k<const KH: usize, const KW: usize>(
    g: &PoolGeometry,
    win: &Windows,
    x: &[f32],
    y: &mut [f32],
) {
    let w = g.width;
    let x = &x[..g.in_plane()];
    for (&(hs, he, eh), yr) in win.h.iter().zip(y.chunks_mut(g.pooled_width)) {
        for (&(ws, we, ew), yv) in win.w.iter().zip(yr.iter_mut()) {
            let mut s = 0f32;
            if KH > 0 && he - hs == KH && we - ws == KW {
                let win = &x[hs * w + ws..(hs + KH - 1) * w + ws + KW];
                for r in 0..KH {
                    for &v in &win[r * w..r * w + KW] {
                        s += v;
                    }
                }
            } else {
                for h in hs..he {
                    for &v in &x[h * w + ws..h * w + we] {
                        s += v;
                    }
                }
            }
            *yv = s / (eh * ew) as f32;
        }
    }
}

/// AVE backward of one plane: each output's `dy / pool_size` added over its
/// window, outputs in order (Caffe's accumulation order).
fn ave_plane_backward(g: &PoolGeometry, win: &Windows, dy: &[f32], dx: &mut [f32]) {
    match (g.kernel_h, g.kernel_w) {
        (2, 2) => ave_plane_backward_k::<2, 2>(g, win, dy, dx),
        (3, 3) => ave_plane_backward_k::<3, 3>(g, win, dy, dx),
        _ => ave_plane_backward_k::<0, 0>(g, win, dy, dx),
    }
}

/// `ave_plane_backward` with whole KH×KW windows unrolled, like
/// `max_plane_k`.
#[inline(always)]
fn ave_plane_backward_k<const KH: usize, const KW: usize>(
    g: &PoolGeometry,
    win: &Windows,
    dy: &[f32],
    dx: &mut [f32],
) {
    let (w, pw) = (g.width, g.pooled_width);
    let dx = &mut dx[..g.in_plane()];
    dx.fill(0.0);
    for (&(hs, he, eh), dr) in win.h.iter().zip(dy.chunks_exact(pw)) {
        for (&(ws, we, ew), &dv) in win.w.iter().zip(dr) {
            let d = dv / (eh * ew) as f32;
            if KH > 0 && he - hs == KH && we - ws == KW {
                let win = &mut dx[hs * w + ws..(hs + KH - 1) * w + ws + KW];
                for r in 0..KH {
                    for v in &mut win[r * w..r * w + KW] {
                        *v += d;
                    }
                }
            } else {
                for h in hs..he {
                    for v in &mut dx[h * w + ws..h * w + we] {
                        *v += d;
                    }
                }
            }
        }
    }
}

/// MAX backward of one plane: route each `dy` to its mask position (a
/// mask of −1, or out of range, routes nothing).
fn max_plane_backward(dy: &[f32], mask: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    let n = dx.len();
    for (&d, &i) in dy.iter().zip(mask) {
        // `as` saturates: −1 → 0 is excluded by the sign test.
        let k = i as usize;
        if i >= 0.0 && k < n {
            dx[k] += d;
        }
    }
}

impl PoolOps for CpuBackend {
    fn max_pool_forward(
        &self,
        g: &PoolGeometry,
        planes: usize,
        x: View,
        mut y: ViewMut,
        mut mask: ViewMut,
    ) {
        let (ip, op) = (g.in_plane(), g.out_plane());
        let x = x.host(planes * ip);
        let y = y.host(planes * op);
        let mask = mask.host(planes * op);
        let win = Windows::new(g);
        let planes = x
            .par_chunks(ip)
            .zip(y.par_chunks_mut(op).zip(mask.par_chunks_mut(op)))
            .with_min_len(min_planes(g));
        match RowPlan::new(g, &win) {
            Some(rp) => planes.for_each(|(x, (y, m))| rp.max_plane(g, &win, x, y, m)),
            None => planes.for_each(|(x, (y, m))| max_plane(g, &win, x, y, m)),
        }
    }

    fn max_pool_backward(
        &self,
        g: &PoolGeometry,
        planes: usize,
        dy: View,
        mask: View,
        mut dx: ViewMut,
    ) {
        let (ip, op) = (g.in_plane(), g.out_plane());
        let dy = dy.host(planes * op);
        let mask = mask.host(planes * op);
        let dx = dx.host(planes * ip);
        dx.par_chunks_mut(ip)
            .zip(dy.par_chunks(op).zip(mask.par_chunks(op)))
            .with_min_len(min_planes(g))
            .for_each(|(dx, (dy, m))| max_plane_backward(dy, m, dx));
    }

    fn ave_pool_forward(&self, g: &PoolGeometry, planes: usize, x: View, mut y: ViewMut) {
        let (ip, op) = (g.in_plane(), g.out_plane());
        let x = x.host(planes * ip);
        let y = y.host(planes * op);
        let win = Windows::new(g);
        let planes = x
            .par_chunks(ip)
            .zip(y.par_chunks_mut(op))
            .with_min_len(min_planes(g));
        match RowPlan::new(g, &win) {
            Some(rp) => planes.for_each(|(x, y)| rp.ave_plane(g, &win, x, y)),
            None => planes.for_each(|(x, y)| ave_plane(g, &win, x, y)),
        }
    }

    fn ave_pool_backward(&self, g: &PoolGeometry, planes: usize, dy: View, mut dx: ViewMut) {
        let (ip, op) = (g.in_plane(), g.out_plane());
        let dy = dy.host(planes * op);
        let dx = dx.host(planes * ip);
        let win = Windows::new(g);
        dx.par_chunks_mut(ip)
            .zip(dy.par_chunks(op))
            .with_min_len(min_planes(g))
            .for_each(|(dx, dy)| ave_plane_backward(g, &win, dy, dx));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::backend::Buffer;

    pub(in crate::backend::cpu) fn geom(
        h: usize,
        w: usize,
        k: usize,
        s: usize,
        p: usize,
        ph: usize,
        pw: usize,
    ) -> PoolGeometry {
        PoolGeometry {
            height: h,
            width: w,
            pooled_height: ph,
            pooled_width: pw,
            kernel_h: k,
            kernel_w: k,
            stride_h: s,
            stride_w: s,
            pad_h: p,
            pad_w: p,
        }
    }

    #[test]
    fn max_pool_takes_the_first_maximum_and_routes_gradients() {
        let be = CpuBackend::new();
        // 3×3 plane, 2×2 windows, stride 1: ties resolve to the first index.
        let g = geom(3, 3, 2, 1, 0, 2, 2);
        let x = Buffer::from_vec(vec![1., 5., 5., 0., 2., 7., 7., 7., 1.]);
        let (mut y, mut m) = (Buffer::host_zeros(4), Buffer::host_zeros(4));
        be.max_pool_forward(&g, 1, x.view(), y.view_mut(), m.view_mut());
        assert_eq!(y.read(4), vec![5., 7., 7., 7.]);
        assert_eq!(m.read(4), vec![1., 5., 6., 5.]);
        let dy = Buffer::from_vec(vec![1., 2., 3., 4.]);
        let mut dx = Buffer::from_vec(vec![9.0; 9]);
        be.max_pool_backward(&g, 1, dy.view(), m.view(), dx.view_mut());
        assert_eq!(dx.read(9), vec![0., 1., 0., 0., 0., 6., 3., 0., 0.]);
    }

    #[test]
    fn ave_pool_divides_by_the_window_clipped_to_the_padded_extent() {
        let be = CpuBackend::new();
        // 3×3 ones, kernel 3, stride 2, pad 1: output 2×2, every window
        // fits the padded extent (size 9); real values counted: 4 per window.
        let g = geom(3, 3, 3, 2, 1, 2, 2);
        let x = Buffer::from_vec(vec![1.0; 9]);
        let mut y = Buffer::host_zeros(4);
        be.ave_pool_forward(&g, 1, x.view(), y.view_mut());
        assert_eq!(y.read(4), vec![4.0 / 9.0; 4]);
        // Ceil-mode overhang beyond H+pad is not counted: 4×4, k3 s2 p0 →
        // 2×2 output (ceil((4-3)/2)+1 = 2); last window covers rows 2..4 only.
        let g = geom(4, 4, 3, 2, 0, 2, 2);
        let x = Buffer::from_vec(vec![1.0; 16]);
        let mut y = Buffer::host_zeros(4);
        be.ave_pool_forward(&g, 1, x.view(), y.view_mut());
        assert_eq!(y.read(4), vec![1.0; 4]);
        let dy = Buffer::from_vec(vec![9.0, 6.0, 6.0, 4.0]);
        let mut dx = Buffer::from_vec(vec![f32::NAN; 16]);
        be.ave_pool_backward(&g, 1, dy.view(), dx.view_mut());
        // dy/pool_size: 1 per cell of each window, summed over overlaps.
        assert_eq!(
            dx.read(16),
            vec![1., 1., 2., 1., 1., 1., 2., 1., 2., 2., 4., 2., 1., 1., 2., 1.]
        );
    }

    #[test]
    fn parallel_planes_match_one_plane_at_a_time() {
        let be = CpuBackend::new();
        let g = geom(32, 32, 3, 2, 1, 16, 16);
        let planes = 40;
        let x: Vec<f32> = (0..planes * 1024)
            .map(|i| ((i * 7919) % 1013) as f32 * 0.01)
            .collect();
        let xb = Buffer::from_vec(x.clone());
        let (mut y, mut m) = (
            Buffer::host_zeros(planes * 256),
            Buffer::host_zeros(planes * 256),
        );
        be.max_pool_forward(&g, planes, xb.view(), y.view_mut(), m.view_mut());
        let mut ya = Buffer::host_zeros(planes * 256);
        be.ave_pool_forward(&g, planes, xb.view(), ya.view_mut());
        for p in [0, 17, 39] {
            let (mut y1, mut m1, mut a1) = (vec![0.0; 256], vec![0.0; 256], vec![0.0; 256]);
            let win = Windows::new(&g);
            max_plane(&g, &win, &x[p * 1024..(p + 1) * 1024], &mut y1, &mut m1);
            ave_plane(&g, &win, &x[p * 1024..(p + 1) * 1024], &mut a1);
            assert_eq!(&y.read(planes * 256)[p * 256..(p + 1) * 256], &y1[..]);
            assert_eq!(&m.read(planes * 256)[p * 256..(p + 1) * 256], &m1[..]);
            assert_eq!(&ya.read(planes * 256)[p * 256..(p + 1) * 256], &a1[..]);
        }
    }
}
