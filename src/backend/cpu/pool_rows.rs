//! MAX and AVE pooling forward, eight output columns at a time (AVX2).
//!
//! Output column `j` reads input columns `j·stride − pad + c` of each row
//! of its window, so eight consecutive outputs read eight columns `stride`
//! apart: one load for stride 1, two loads de-interleaved for stride 2
//! (other strides keep the scalar loops of `pool.rs`). Groups of outputs
//! whose reads stay inside the row load directly; the groups at the edges
//! use masked loads, and a column outside the image reads −∞ for MAX (it
//! never beats the −FLT_MAX start under Caffe's strict `>`) or +0 for AVE
//! (adding it to a sum that starts at +0 is exact). Taps are visited in
//! Caffe's order (window rows, then columns), rows clipped as in Caffe
//! (`Windows`), so maxima, their indices (the first in row-major order)
//! and sums are bit-identical to the scalar loops.

use super::pool::Windows;
use crate::backend::pool::PoolGeometry;

/// Where the vector loops apply: strides 1 and 2 along the width, rows of
/// at least 8 outputs, planes whose indices are exact as f32 (below 2^24),
/// CPUs with AVX2.
pub(super) struct RowPlan {
    /// Groups of 8 output columns (the last may be partly past the end).
    groups: usize,
    /// Caffe's AVE divisor extents along the width, 8 per group (1 past
    /// the last output), computed once per call rather than per plane.
    ew: Vec<i32>,
}

impl RowPlan {
    pub(super) fn new(g: &PoolGeometry, win: &Windows) -> Option<RowPlan> {
        // Below 8 outputs per row the one partial group loses to the
        // scalar loops (measured: LeNet's pool2, cifar10_quick's pool3).
        if !matches!(g.stride_w, 1 | 2) || g.pooled_width < 8 || g.in_plane() >= 1 << 24 || !avx2()
        {
            return None;
        }
        let groups = g.pooled_width.div_ceil(8);
        let mut ew = vec![1i32; groups * 8];
        for (e, &(_, _, x)) in ew.iter_mut().zip(&win.w) {
            *e = x as i32;
        }
        Some(RowPlan { groups, ew })
    }

    /// MAX pooling of one plane (see `pool::max_plane`).
    pub(super) fn max_plane(
        &self,
        g: &PoolGeometry,
        win: &Windows,
        x: &[f32],
        y: &mut [f32],
        mask: &mut [f32],
    ) {
        let x = &x[..g.in_plane()];
        let (y, mask) = (&mut y[..g.out_plane()], &mut mask[..g.out_plane()]);
        // SAFETY: `new` checked AVX2; loads outside the row are masked off
        // (`x86::Row`), writes stay inside `y` and `mask`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::max_plane(g, win, self, x, y, mask)
        }
    }

    /// AVE pooling of one plane (see `pool::ave_plane`).
    pub(super) fn ave_plane(&self, g: &PoolGeometry, win: &Windows, x: &[f32], y: &mut [f32]) {
        let x = &x[..g.in_plane()];
        let y = &mut y[..g.out_plane()];
        // SAFETY: as in `max_plane`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::ave_plane(g, win, self, x, y)
        }
    }
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PoolGeometry, RowPlan, Windows};
    use std::arch::x86_64::*;

    /// The reads of one group of 8 outputs along one input row.
    struct Row {
        /// Input width and stride.
        w: isize,
        s: usize,
        /// First output column of the group.
        j0: usize,
        /// Column of lane 0's tap 0 (negative in the left padding).
        col0: isize,
        /// Whether every read of every tap lies inside the row.
        inside: bool,
        /// What a column outside the row reads.
        fill: __m256,
    }

    impl Row {
        #[inline(always)]
        unsafe fn new(g: &PoolGeometry, j0: usize, fill: __m256) -> Row {
            let (w, s) = (g.width as isize, g.stride_w);
            // Values read per tap: 8 for stride 1, 16 for stride 2.
            let span = 8 * s as isize;
            let col0 = (j0 * s) as isize - g.pad_w as isize;
            let inside = col0 >= 0 && col0 + g.kernel_w as isize - 1 + span <= w;
            Row {
                w,
                s,
                j0,
                col0,
                inside,
                fill,
            }
        }

        /// 8 values from column `col` on, those outside `[0, w)` replaced
        /// by `fill` (and not read).
        /// `IN`: the caller checked `inside` (no masking).
        #[inline(always)]
        unsafe fn load<const IN: bool>(&self, row: *const f32, col: isize) -> __m256 {
            if IN {
                return _mm256_loadu_ps(row.offset(col));
            }
            let cols = _mm256_add_epi32(
                _mm256_set1_epi32(col as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            let ok = _mm256_and_si256(
                _mm256_cmpgt_epi32(cols, _mm256_set1_epi32(-1)),
                _mm256_cmpgt_epi32(_mm256_set1_epi32(self.w as i32), cols),
            );
            // Masked-off lanes are not accessed, so the address may lie
            // outside the row (hence `wrapping_offset`).
            let v = _mm256_maskload_ps(row.wrapping_offset(col), ok);
            _mm256_blendv_ps(self.fill, v, _mm256_castsi256_ps(ok))
        }

        /// Tap `c` of the 8 outputs: columns `col0 + c + l·s`.
        #[inline(always)]
        unsafe fn tap<const IN: bool>(&self, row: *const f32, c: usize) -> __m256 {
            let col = self.col0 + c as isize;
            if self.s == 1 {
                return self.load::<IN>(row, col);
            }
            let (lo, hi) = (self.load::<IN>(row, col), self.load::<IN>(row, col + 8));
            // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] → 64-bit lanes 0, 2, 1, 3.
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                even,
            )))
        }
    }

    /// Copy the first `n` lanes of `v` to `dst`.
    #[inline(always)]
    unsafe fn store_n(v: __m256, dst: &mut [f32], n: usize) {
        if n == 8 {
            _mm256_storeu_ps(dst.as_mut_ptr(), v);
        } else {
            let mut t = [0f32; 8];
            _mm256_storeu_ps(t.as_mut_ptr(), v);
            dst[..n].copy_from_slice(&t[..n]);
        }
    }

    /// Maxima and their flat indices for the 8 outputs of `r` over input
    /// rows `hs..he` (Caffe's tap order).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn max_cell<const IN: bool>(
        r: &Row,
        x: &[f32],
        w: usize,
        kw: usize,
        hs: usize,
        he: usize,
        lanes: __m256i,
    ) -> (__m256, __m256i) {
        let mut best = _mm256_set1_ps(-f32::MAX);
        let mut arg = _mm256_set1_epi32(-1);
        for h in hs..he {
            let row = x.as_ptr().add(h * w);
            // Flat index of lane 0's tap 0 (border lanes never win).
            let base = (h * w) as i32 + r.col0 as i32;
            for c in 0..kw {
                let v = r.tap::<IN>(row, c);
                let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best);
                best = _mm256_blendv_ps(best, v, gt);
                let at = _mm256_add_epi32(_mm256_set1_epi32(base + c as i32), lanes);
                arg = _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(arg),
                    _mm256_castsi256_ps(at),
                    gt,
                ));
            }
        }
        (best, arg)
    }

    /// Window sums of the 8 outputs of `r` over input rows `hs..he`.
    #[inline(always)]
    unsafe fn sum_cell<const IN: bool>(
        r: &Row,
        x: &[f32],
        w: usize,
        kw: usize,
        hs: usize,
        he: usize,
    ) -> __m256 {
        let mut sum = _mm256_setzero_ps();
        for h in hs..he {
            let row = x.as_ptr().add(h * w);
            for c in 0..kw {
                sum = _mm256_add_ps(sum, r.tap::<IN>(row, c));
            }
        }
        sum
    }

    /// Planes smaller than this many values are walked group after group
    /// (output rows inside: measured faster on LeNet's pool1 and
    /// cifar10_quick's pool2), larger ones in row-major order (output rows
    /// outside), so they stream from memory in order (squeezenet's pool1
    /// twice as fast). The order changes no result.
    const STRIPS_BELOW: usize = 1024;

    /// Output row `i` of the group of `r`: maxima and mask.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn max_out(
        g: &PoolGeometry,
        win: &Windows,
        r: &Row,
        lanes: __m256i,
        x: &[f32],
        y: &mut [f32],
        mask: &mut [f32],
        i: usize,
    ) {
        let (w, kw, pw) = (g.width, g.kernel_w, g.pooled_width);
        let (hs, he, _) = win.h[i];
        let (best, arg) = if r.inside {
            max_cell::<true>(r, x, w, kw, hs, he, lanes)
        } else {
            max_cell::<false>(r, x, w, kw, hs, he, lanes)
        };
        let (o, n) = (i * pw + r.j0, (pw - r.j0).min(8));
        store_n(best, &mut y[o..], n);
        store_n(_mm256_cvtepi32_ps(arg), &mut mask[o..], n);
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn max_plane(
        g: &PoolGeometry,
        win: &Windows,
        plan: &RowPlan,
        x: &[f32],
        y: &mut [f32],
        mask: &mut [f32],
    ) {
        let lanes = _mm256_mullo_epi32(
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            _mm256_set1_epi32(g.stride_w as i32),
        );
        let fill = _mm256_set1_ps(f32::NEG_INFINITY);
        if g.in_plane() < STRIPS_BELOW {
            for gi in 0..plan.groups {
                let r = Row::new(g, gi * 8, fill);
                for i in 0..g.pooled_height {
                    max_out(g, win, &r, lanes, x, y, mask, i);
                }
            }
        } else {
            for i in 0..g.pooled_height {
                for gi in 0..plan.groups {
                    let r = Row::new(g, gi * 8, fill);
                    max_out(g, win, &r, lanes, x, y, mask, i);
                }
            }
        }
    }

    /// Output row `i` of the group of `r`: window sums over pool sizes.
    #[inline(always)]
    unsafe fn ave_out(
        g: &PoolGeometry,
        win: &Windows,
        r: &Row,
        ew: &[i32],
        x: &[f32],
        y: &mut [f32],
        i: usize,
    ) {
        let (w, kw, pw) = (g.width, g.kernel_w, g.pooled_width);
        let (hs, he, eh) = win.h[i];
        let sum = if r.inside {
            sum_cell::<true>(r, x, w, kw, hs, he)
        } else {
            sum_cell::<false>(r, x, w, kw, hs, he)
        };
        // pool_size = eh·ew in integers, then converted (Caffe).
        let ewv = _mm256_loadu_si256(ew[r.j0..r.j0 + 8].as_ptr() as *const __m256i);
        let size = _mm256_mullo_epi32(_mm256_set1_epi32(eh as i32), ewv);
        let v = _mm256_div_ps(sum, _mm256_cvtepi32_ps(size));
        store_n(v, &mut y[i * pw + r.j0..], (pw - r.j0).min(8));
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn ave_plane(
        g: &PoolGeometry,
        win: &Windows,
        plan: &RowPlan,
        x: &[f32],
        y: &mut [f32],
    ) {
        let (ew, fill) = (&plan.ew, _mm256_setzero_ps());
        if g.in_plane() < STRIPS_BELOW {
            for gi in 0..plan.groups {
                let r = Row::new(g, gi * 8, fill);
                for i in 0..g.pooled_height {
                    ave_out(g, win, &r, ew, x, y, i);
                }
            }
        } else {
            for i in 0..g.pooled_height {
                for gi in 0..plan.groups {
                    let r = Row::new(g, gi * 8, fill);
                    ave_out(g, win, &r, ew, x, y, i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pool::{ave_plane, max_plane};
    use super::*;

    fn geom(h: usize, w: usize, k: usize, s: usize, p: usize) -> PoolGeometry {
        // Caffe's output size: ceil, then clipped so the last window starts
        // inside the image or its left/top padding.
        let out = |size: usize| {
            let mut o = (size + 2 * p - k).div_ceil(s) + 1;
            if p > 0 && (o - 1) * s >= size + p {
                o -= 1;
            }
            o
        };
        super::super::pool::tests::geom(h, w, k, s, p, out(h), out(w))
    }

    /// Values with many ties, a few −∞/NaN/−FLT_MAX, and negative zeros.
    fn plane(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| match (i * 7919 + seed * 104729) % 97 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                2 => -f32::MAX,
                3 => -0.0,
                v => ((v % 13) as f32 - 6.0) * 0.37,
            })
            .collect()
    }

    #[test]
    fn vector_rows_match_the_scalar_loops_bit_for_bit() {
        if !avx2() {
            return;
        }
        let shapes = [
            (24, 24, 2, 2, 0),
            (8, 16, 2, 2, 0),
            (32, 32, 3, 2, 0),
            (16, 16, 3, 2, 0),
            (18, 18, 2, 2, 0),
            (55, 55, 3, 2, 0),
            (113, 113, 3, 2, 0),
            (112, 112, 3, 2, 1),
            (28, 28, 3, 1, 1),
            (14, 14, 3, 1, 1),
            (9, 9, 2, 1, 0),
            (13, 17, 5, 1, 2),
            (9, 23, 4, 2, 3),
            (20, 20, 7, 1, 3),
            (3, 21, 1, 1, 0),
            (4, 8, 9, 1, 4),
        ];
        for (n, &(h, w, k, s, p)) in shapes.iter().enumerate() {
            let g = geom(h, w, k, s, p);
            let win = Windows::new(&g);
            let plan = RowPlan::new(&g, &win).expect("stride 1 or 2 applies");
            let x = plane(h * w, n);
            let op = g.out_plane();
            let (mut y0, mut m0, mut y1, mut m1) =
                (vec![0.0; op], vec![0.0; op], vec![7.0; op], vec![7.0; op]);
            max_plane(&g, &win, &x, &mut y0, &mut m0);
            plan.max_plane(&g, &win, &x, &mut y1, &mut m1);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y0), bits(&y1), "MAX values {h}x{w} k{k} s{s} p{p}");
            assert_eq!(bits(&m0), bits(&m1), "MAX mask {h}x{w} k{k} s{s} p{p}");
            // AVE over finite values (NaN would hide order differences).
            let x: Vec<f32> = x
                .iter()
                .map(|v| if v.is_finite() && *v > -1e30 { *v } else { 0.1 })
                .collect();
            let (mut a0, mut a1) = (vec![0.0; op], vec![7.0; op]);
            ave_plane(&g, &win, &x, &mut a0);
            plan.ave_plane(&g, &win, &x, &mut a1);
            assert_eq!(bits(&a0), bits(&a1), "AVE {h}x{w} k{k} s{s} p{p}");
        }
    }

    #[test]
    fn other_strides_and_short_rows_keep_the_scalar_loops() {
        for g in [geom(32, 32, 3, 3, 0), geom(8, 8, 3, 2, 0)] {
            assert!(RowPlan::new(&g, &Windows::new(&g)).is_none());
        }
    }
}
