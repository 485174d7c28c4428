//! Direct depthwise convolution (`group == in_channels == out_channels`,
//! 2-D), as in MobileNet's `*/dw` layers.
//!
//! The general path runs one GEMM with a single output row per group,
//! which spends its time packing; here every (image, channel) plane is
//! convolved directly. Each plane is first copied into a zero-padded
//! buffer whose rows are split by the column stride into `s` phases
//! (padded column `m` at `(m % s)·phase + m / s`), so that every kernel tap
//! reads a contiguous run for a row of outputs, with no bounds tests and for
//! any stride, pad and dilation:
//!
//! * forward: per output row, all taps accumulated in registers;
//! * data gradient: stride 1 is the forward of the padded dy with the
//!   kernel flipped; other strides add every tap's row into a padded,
//!   phase-split image, which is then cropped into dx;
//! * filter gradient: per channel, per tap, the dot product of dy with the
//!   tap's view of x, images in order (one task per channel, so the sums
//!   do not depend on scheduling).
use rayon::prelude::*;

use super::conv::valid_range;
use super::PAR_MIN;
use crate::backend::conv::DepthwiseGeometry;
use crate::backend::{ConvGeometry, View, ViewMut};

/// A depthwise geometry (the shared rule, `DepthwiseGeometry`) and the
/// loops' instruction set; its numbers read through `Deref`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Depthwise {
    g: DepthwiseGeometry,
    /// Use the AVX2+FMA instantiation of the loops (the CPU has them).
    fma: bool,
}

impl std::ops::Deref for Depthwise {
    type Target = DepthwiseGeometry;
    fn deref(&self) -> &DepthwiseGeometry {
        &self.g
    }
}

impl Depthwise {
    /// The depthwise kernel's geometry, if `g` is one it handles.
    pub(super) fn new(g: &ConvGeometry) -> Option<Depthwise> {
        DepthwiseGeometry::new(g).map(|g| Depthwise { g, fma: has_fma() })
    }

    /// Padded extent the taps reach along the rows / columns.
    fn reach(&self) -> (usize, usize) {
        (
            (self.oh - 1) * self.sh + (self.kh - 1) * self.dh + 1,
            (self.ow - 1) * self.sw + (self.kw - 1) * self.dw + 1,
        )
    }

    /// The padded x plane read by the forward and the filter gradient.
    fn x_pad(&self) -> Pad {
        let (rows, cols) = self.reach();
        Pad::new(rows, cols, self.sw, self.ph, self.pw)
    }

    /// Buffer offset of tap `t` for output row 0, column 0 of `p`.
    fn tap_offsets(&self, p: &Pad) -> Vec<usize> {
        let mut offs = Vec::with_capacity(self.taps());
        for ki in 0..self.kh {
            for kj in 0..self.kw {
                offs.push(p.idx(ki * self.dh, kj * self.dw));
            }
        }
        offs
    }

    /// `y = w ⋆ x (+ bias)` for `num` images (`y` is overwritten).
    pub(super) fn forward(&self, num: usize, x: View, w: View, bias: Option<View>, mut y: ViewMut) {
        let (ip, op, t) = (self.in_plane(), self.out_plane(), self.taps());
        let x = x.host(num * self.c * ip);
        let w = w.host(self.c * t);
        let bias = bias.map(|b| b.host(self.c));
        let y = y.host(num * self.c * op);
        let pad = self.x_pad();
        let offs = self.tap_offsets(&pad);
        let rs = Rows {
            n: self.oh,
            w: self.ow,
            step: self.sh * pad.row,
        };
        let fma = self.fma;
        let scratch = pad.len() + rs.w8();
        let plane = |p: usize, yp: &mut [f32], buf: &mut Vec<f32>| {
            let ch = p % self.c;
            buf.resize(scratch, 0.0);
            let (pb, tmp) = buf.split_at_mut(pad.len());
            pad.fill(&x[p * ip..(p + 1) * ip], self.ih, self.iw, pb);
            let init = bias.map_or(0.0, |b| b[ch]);
            gather(fma, &rs, pb, &offs, &w[ch * t..(ch + 1) * t], init, yp, tmp);
        };
        for_planes(num * self.c, op, t, y, plane);
    }

    /// `dx = wᵀ ⋆ dy` for `num` images (`dx` is overwritten).
    pub(super) fn backward_data(&self, num: usize, dy: View, w: View, mut dx: ViewMut) {
        let (ip, op, t) = (self.in_plane(), self.out_plane(), self.taps());
        let dy = dy.host(num * self.c * op);
        let w = w.host(self.c * t);
        let dx = dx.host(num * self.c * ip);
        let fma = self.fma;
        // Stride 1: dx is the correlation of dy, padded by (k-1)·d - p,
        // with the flipped kernel (needs that padding to be >= 0).
        let (eh, ew) = ((self.kh - 1) * self.dh, (self.kw - 1) * self.dw);
        if self.sh == 1 && self.sw == 1 && self.ph <= eh && self.pw <= ew {
            let pad = Pad::new(self.ih + eh, self.iw + ew, 1, eh - self.ph, ew - self.pw);
            let offs = self.tap_offsets(&pad);
            let rs = Rows {
                n: self.ih,
                w: self.iw,
                step: pad.row,
            };
            let scratch = pad.len() + rs.w8() + t;
            let plane = |p: usize, dxp: &mut [f32], buf: &mut Vec<f32>| {
                let ch = p % self.c;
                buf.resize(scratch, 0.0);
                let (pb, rest) = buf.split_at_mut(pad.len());
                let (tmp, wf) = rest.split_at_mut(rs.w8());
                pad.fill(&dy[p * op..(p + 1) * op], self.oh, self.ow, pb);
                // Flipped: tap (ki, kj) of the correlation is w[kh-1-ki, kw-1-kj].
                for (d, &v) in wf.iter_mut().zip(w[ch * t..(ch + 1) * t].iter().rev()) {
                    *d = v;
                }
                gather(fma, &rs, pb, &offs, &wf[..t], 0.0, dxp, tmp);
            };
            return for_planes(num * self.c, ip, t, dx, plane);
        }
        // Any stride: scatter every tap's dy row into the padded image.
        let (rows, cols) = self.reach();
        let pad = Pad::new(
            rows.max(self.ph + self.ih),
            cols.max(self.pw + self.iw),
            self.sw,
            self.ph,
            self.pw,
        );
        let offs = self.tap_offsets(&pad);
        let rs = Rows {
            n: self.oh,
            w: self.ow,
            step: self.sh * pad.row,
        };
        let plane = |p: usize, dxp: &mut [f32], buf: &mut Vec<f32>| {
            let ch = p % self.c;
            buf.resize(pad.len(), 0.0);
            let pb = &mut buf[..pad.len()];
            pb.fill(0.0);
            let dyp = &dy[p * op..(p + 1) * op];
            scatter(fma, &rs, dyp, &offs, &w[ch * t..(ch + 1) * t], pb);
            pad.crop(pb, self.ih, self.iw, dxp);
        };
        for_planes(num * self.c, ip, t, dx, plane);
    }

    /// `dw += Σ_images dy ⋆ x` (accumulates, like the other passes).
    pub(super) fn backward_filter(&self, num: usize, x: View, dy: View, mut dw: ViewMut) {
        let (ip, op, t) = (self.in_plane(), self.out_plane(), self.taps());
        let x = x.host(num * self.c * ip);
        let dy = dy.host(num * self.c * op);
        let dw = dw.host(self.c * t);
        let pad = self.x_pad();
        let offs = self.tap_offsets(&pad);
        let rs = Rows {
            n: self.oh,
            w: self.ow,
            step: self.sh * pad.row,
        };
        let fma = self.fma;
        let scratch = pad.len() + t;
        // One task per channel: its images in order, then one add into dw.
        let channel = |ch: usize, dwc: &mut [f32], buf: &mut Vec<f32>| {
            buf.resize(scratch, 0.0);
            let (pb, sums) = buf.split_at_mut(pad.len());
            let sums = &mut sums[..t];
            sums.fill(0.0);
            for n in 0..num {
                let p = n * self.c + ch;
                pad.fill(&x[p * ip..(p + 1) * ip], self.ih, self.iw, pb);
                dots(fma, &rs, &dy[p * op..(p + 1) * op], pb, &offs, sums);
            }
            for (d, &s) in dwc.iter_mut().zip(sums.iter()) {
                *d += s;
            }
        };
        let work = num * self.c * op * t;
        if work < PAR_MIN {
            let mut buf = Vec::new();
            for (ch, dwc) in dw.chunks_mut(t).enumerate() {
                channel(ch, dwc, &mut buf);
            }
        } else {
            dw.par_chunks_mut(t)
                .with_min_len(min_planes(num * op * t))
                .enumerate()
                .for_each_init(Vec::new, |buf, (ch, dwc)| channel(ch, dwc, buf));
        }
    }
}

/// Run `f(plane, out_plane, scratch)` over `planes` output planes of
/// `len` values: in parallel (one scratch buffer per rayon job) unless the
/// work is small.
fn for_planes(
    planes: usize,
    len: usize,
    taps: usize,
    out: &mut [f32],
    f: impl Fn(usize, &mut [f32], &mut Vec<f32>) + Sync,
) {
    let out = &mut out[..planes * len];
    if planes * len * taps < PAR_MIN {
        let mut buf = Vec::new();
        for (p, o) in out.chunks_mut(len).enumerate() {
            f(p, o, &mut buf);
        }
        return;
    }
    // Jobs of at least ~PAR_MIN/4 multiply-adds: small planes (7×7) would
    // otherwise cost more in scheduling than in arithmetic.
    out.par_chunks_mut(len)
        .with_min_len(min_planes(len * taps))
        .enumerate()
        .for_each_init(Vec::new, |buf, (p, o)| f(p, o, buf));
}

/// Planes (or channels) of `work` multiply-adds each per rayon job.
fn min_planes(work: usize) -> usize {
    (PAR_MIN / 4 / work.max(1)).max(1)
}

/// A zero-padded plane of `rows × cols` values whose rows are split into
/// `s` phases: padded `(r, m)` is at `r·row + (m % s)·phase + m / s`, and
/// holds source `(r - top, m - left)` (zero outside the source). A tap
/// at padded column `m0` then reads `m0 + j·s` for `j = 0, 1, ...` as one
/// contiguous run. `SLACK` zeros after the last row let 8-wide loads run
/// past a row's end (the extra lanes are discarded).
#[derive(Debug, Clone, Copy)]
struct Pad {
    rows: usize,
    s: usize,
    phase: usize,
    row: usize,
    top: usize,
    left: usize,
}

const SLACK: usize = 8;

impl Pad {
    fn new(rows: usize, cols: usize, s: usize, top: usize, left: usize) -> Pad {
        let phase = cols.div_ceil(s);
        Pad {
            rows,
            s,
            phase,
            row: s * phase,
            top,
            left,
        }
    }
    fn len(&self) -> usize {
        self.rows * self.row + SLACK
    }
    fn idx(&self, r: usize, m: usize) -> usize {
        r * self.row + (m % self.s) * self.phase + m / self.s
    }

    /// `buf` = the padded, phase-split copy of the `h × w` plane `src`.
    fn fill(&self, src: &[f32], h: usize, w: usize, buf: &mut [f32]) {
        let buf = &mut buf[..self.len()];
        let (body, slack) = buf.split_at_mut(self.rows * self.row);
        slack.fill(0.0);
        for (r, row) in body.chunks_exact_mut(self.row).enumerate() {
            let sr = r as i64 - self.top as i64;
            if sr < 0 || sr >= h as i64 {
                row.fill(0.0);
                continue;
            }
            let srow = &src[sr as usize * w..(sr as usize + 1) * w];
            for (q, dst) in row.chunks_exact_mut(self.phase).enumerate() {
                // dst[k] = srow[k·s + q - left]
                let b = q as i64 - self.left as i64;
                let (lo, hi) = valid_range(b, self.s, w, self.phase);
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                if hi > lo {
                    let start = (b + (lo * self.s) as i64) as usize;
                    let d = &mut dst[lo..hi];
                    match self.s {
                        1 => copy_short(d, &srow[start..]),
                        2 => copy_every::<2>(d, &srow[start..]),
                        3 => copy_every::<3>(d, &srow[start..]),
                        _ => {
                            for (v, &x) in d.iter_mut().zip(srow[start..].iter().step_by(self.s)) {
                                *v = x;
                            }
                        }
                    }
                }
            }
        }
    }

    /// The `h × w` plane `dst` = padded `(r + top, c + left)` of `buf`
    /// (the inverse of `fill`; the padding must cover the plane).
    fn crop(&self, buf: &[f32], h: usize, w: usize, dst: &mut [f32]) {
        debug_assert!(self.top + h <= self.rows && self.left + w <= self.row);
        for (r, drow) in dst[..h * w].chunks_exact_mut(w).enumerate() {
            let row = &buf[(r + self.top) * self.row..(r + self.top + 1) * self.row];
            if self.s == 1 {
                drow.copy_from_slice(&row[self.left..self.left + w]);
                continue;
            }
            // Columns c ≡ q - left (mod s) come from phase q, in order.
            for q in 0..self.s {
                let c0 = (q + self.s - self.left % self.s) % self.s;
                if c0 >= w {
                    continue;
                }
                let src = &row[q * self.phase + (c0 + self.left) / self.s..];
                match self.s {
                    2 => put_every::<2>(&mut drow[c0..], src),
                    3 => put_every::<3>(&mut drow[c0..], src),
                    _ => {
                        for (d, &v) in drow[c0..].iter_mut().step_by(self.s).zip(src) {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

/// `d = s[..d.len()]` in fixed 8-wide chunks: rows are a few to a hundred
/// values, where a `memcpy` call costs more than the copy.
#[inline(always)]
fn copy_short(d: &mut [f32], s: &[f32]) {
    let s = &s[..d.len()];
    let mut dc = d.chunks_exact_mut(8);
    let mut sc = s.chunks_exact(8);
    for (a, b) in (&mut dc).zip(&mut sc) {
        let a: &mut [f32; 8] = a.try_into().unwrap();
        *a = b.try_into().unwrap();
    }
    for (a, &b) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *a = b;
    }
}

/// `d[k] = s[k·S]` (S a constant, so the loads vectorise as a shuffle).
#[inline(always)]
fn copy_every<const S: usize>(d: &mut [f32], s: &[f32]) {
    let Some((last, head)) = d.split_last_mut() else {
        return;
    };
    let s = &s[..head.len() * S + 1];
    for (v, c) in head.iter_mut().zip(s.chunks_exact(S)) {
        *v = c[0];
    }
    *last = s[head.len() * S];
}

/// `d[k·S] = s[k]` for every `k·S < d.len()` (the adjoint of `copy_every`).
#[inline(always)]
fn put_every<const S: usize>(d: &mut [f32], s: &[f32]) {
    for (c, &v) in d.chunks_mut(S).zip(s) {
        c[0] = v;
    }
}

/// Output rows of a pass: `n` rows of `w` values; row `i` reads the padded
/// buffer at the tap offsets plus `i·step`.
#[derive(Debug, Clone, Copy)]
struct Rows {
    n: usize,
    w: usize,
    step: usize,
}

impl Rows {
    /// Row length rounded up to whole 8-wide vectors.
    fn w8(&self) -> usize {
        self.w.next_multiple_of(8)
    }
}

fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[i][j] = init + Σ_t w[t]·buf[offs[t] + i·step + j]` for the rows of
/// `rs`; `tmp` holds one row rounded up to 8 (`rs.w8()`).
#[allow(clippy::too_many_arguments)]
fn gather(
    fma: bool,
    rs: &Rows,
    buf: &[f32],
    offs: &[usize],
    w: &[f32],
    init: f32,
    out: &mut [f32],
    tmp: &mut [f32],
) {
    // Every load stays in `buf` (its slack covers the rounding up).
    let reach = offs.iter().max().copied().unwrap_or(0) + (rs.n - 1) * rs.step + rs.w8();
    assert!(reach <= buf.len() && tmp.len() >= rs.w8() && out.len() >= rs.n * rs.w);
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: the CPU has AVX2 and FMA (checked by the caller).
        return unsafe { avx2::gather(rs, buf, offs, w, init, out, tmp) };
    }
    let _ = fma;
    gather_body(rs, buf, offs, w, init, out, tmp)
}

#[inline(always)]
fn gather_body(
    rs: &Rows,
    buf: &[f32],
    offs: &[usize],
    w: &[f32],
    init: f32,
    out: &mut [f32],
    tmp: &mut [f32],
) {
    let w8 = rs.w8();
    let tmp = &mut tmp[..w8];
    for (i, orow) in out[..rs.n * rs.w].chunks_exact_mut(rs.w).enumerate() {
        let base = i * rs.step;
        let mut j = 0;
        // 32 outputs (four independent accumulator vectors) at a time.
        while j + 32 <= w8 {
            let mut acc = [init; 32];
            for (&o, &wt) in offs.iter().zip(w) {
                let s: &[f32; 32] = buf[base + o + j..base + o + j + 32].try_into().unwrap();
                for l in 0..32 {
                    acc[l] += wt * s[l];
                }
            }
            tmp[j..j + 32].copy_from_slice(&acc);
            j += 32;
        }
        while j < w8 {
            let mut acc = [init; 8];
            for (&o, &wt) in offs.iter().zip(w) {
                let s: &[f32; 8] = buf[base + o + j..base + o + j + 8].try_into().unwrap();
                for l in 0..8 {
                    acc[l] += wt * s[l];
                }
            }
            tmp[j..j + 8].copy_from_slice(&acc);
            j += 8;
        }
        orow.copy_from_slice(&tmp[..rs.w]);
    }
}

/// `buf[offs[t] + i·step + j] += w[t]·dy[i][j]` for every tap and row.
fn scatter(fma: bool, rs: &Rows, dy: &[f32], offs: &[usize], w: &[f32], buf: &mut [f32]) {
    let reach = offs.iter().max().copied().unwrap_or(0) + (rs.n - 1) * rs.step + rs.w;
    assert!(reach <= buf.len() && dy.len() >= rs.n * rs.w);
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: the CPU has AVX2 and FMA (checked by the caller).
        return unsafe { avx2::scatter(rs, dy, offs, w, buf) };
    }
    let _ = fma;
    scatter_body(rs, dy, offs, w, buf)
}

#[inline(always)]
fn scatter_body(rs: &Rows, dy: &[f32], offs: &[usize], w: &[f32], buf: &mut [f32]) {
    for (i, drow) in dy[..rs.n * rs.w].chunks_exact(rs.w).enumerate() {
        let base = i * rs.step;
        for (&o, &wt) in offs.iter().zip(w) {
            let dst = &mut buf[base + o..base + o + rs.w];
            let mut dc = dst.chunks_exact_mut(8);
            let mut sc = drow.chunks_exact(8);
            for (d, s) in (&mut dc).zip(&mut sc) {
                let d: &mut [f32; 8] = d.try_into().unwrap();
                let s: &[f32; 8] = s.try_into().unwrap();
                for l in 0..8 {
                    d[l] += wt * s[l];
                }
            }
            for (d, &s) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
                *d += wt * s;
            }
        }
    }
}

/// `sums[t] += Σ_i Σ_j dy[i][j]·buf[offs[t] + i·step + j]`, taps in groups
/// of up to 8 (one accumulator vector each, every dy load shared by the
/// group).
fn dots(fma: bool, rs: &Rows, dy: &[f32], buf: &[f32], offs: &[usize], sums: &mut [f32]) {
    let reach = offs.iter().max().copied().unwrap_or(0) + (rs.n - 1) * rs.step + rs.w;
    assert!(reach <= buf.len() && dy.len() >= rs.n * rs.w && sums.len() >= offs.len());
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: the CPU has AVX2 and FMA (checked by the caller).
        return unsafe { avx2::dots(rs, dy, buf, offs, sums) };
    }
    let _ = fma;
    dots_groups(rs, dy, buf, offs, sums)
}

/// `0..t` split into consecutive groups of at most 8 taps, as even as
/// possible (one register accumulator per tap of a group).
fn tap_groups(t: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let groups = t.div_ceil(8);
    let mut start = 0;
    (0..groups).map(move |g| {
        let end = start + (t - start).div_ceil(groups - g);
        let r = start..end;
        start = end;
        r
    })
}

#[inline(always)]
fn dots_groups(rs: &Rows, dy: &[f32], buf: &[f32], offs: &[usize], sums: &mut [f32]) {
    for r in tap_groups(offs.len()) {
        let (o, s) = (&offs[r.clone()], &mut sums[r.clone()]);
        match r.len() {
            1 => dots_body::<1>(rs, dy, buf, o, s),
            2 => dots_body::<2>(rs, dy, buf, o, s),
            3 => dots_body::<3>(rs, dy, buf, o, s),
            4 => dots_body::<4>(rs, dy, buf, o, s),
            5 => dots_body::<5>(rs, dy, buf, o, s),
            6 => dots_body::<6>(rs, dy, buf, o, s),
            7 => dots_body::<7>(rs, dy, buf, o, s),
            _ => dots_body::<8>(rs, dy, buf, o, s),
        }
    }
}

#[inline(always)]
fn dots_body<const G: usize>(rs: &Rows, dy: &[f32], buf: &[f32], offs: &[usize], sums: &mut [f32]) {
    let offs: &[usize; G] = offs.try_into().unwrap();
    let mut acc = [[0f32; 8]; G];
    let mut tail = [0f32; G];
    let full = rs.w / 8 * 8;
    for (i, drow) in dy[..rs.n * rs.w].chunks_exact(rs.w).enumerate() {
        let base = i * rs.step;
        let mut j = 0;
        while j < full {
            let d: &[f32; 8] = drow[j..j + 8].try_into().unwrap();
            for t in 0..G {
                let o = base + offs[t] + j;
                let s: &[f32; 8] = buf[o..o + 8].try_into().unwrap();
                for l in 0..8 {
                    acc[t][l] += d[l] * s[l];
                }
            }
            j += 8;
        }
        for (j, &d) in drow.iter().enumerate().skip(full) {
            for t in 0..G {
                tail[t] += d * buf[base + offs[t] + j];
            }
        }
    }
    for t in 0..G {
        let a = &acc[t];
        let v = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
        sums[t] += v + tail[t];
    }
}

/// The loops with AVX2+FMA intrinsics (the compiler's own vectorisation
/// of the portable loops spills its accumulators). Callers check the CPU
/// and every bound first (see `gather`, `scatter`, `dots`).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{tap_groups, Rows};
    use std::arch::x86_64::*;

    /// Σ of the 8 lanes, in the portable loops' order.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let mut a = [0f32; 8];
        _mm256_storeu_ps(a.as_mut_ptr(), v);
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
    }

    /// SAFETY: AVX2+FMA; `buf` holds `max(offs) + (n-1)·step + w8` values,
    /// `tmp` `w8`, `out` `n·w`, `w` one weight per offset.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gather(
        rs: &Rows,
        buf: &[f32],
        offs: &[usize],
        w: &[f32],
        init: f32,
        out: &mut [f32],
        tmp: &mut [f32],
    ) {
        let (w8, b, t) = (rs.w8(), buf.as_ptr(), offs.len().min(w.len()));
        let tp = tmp.as_mut_ptr();
        let vi = _mm256_set1_ps(init);
        for (i, orow) in out[..rs.n * rs.w].chunks_exact_mut(rs.w).enumerate() {
            let base = b.add(i * rs.step);
            let mut j = 0;
            // Four independent accumulators over 32 outputs.
            while j + 32 <= w8 {
                let (mut a0, mut a1, mut a2, mut a3) = (vi, vi, vi, vi);
                for k in 0..t {
                    let p = base.add(*offs.get_unchecked(k) + j);
                    let wv = _mm256_set1_ps(*w.get_unchecked(k));
                    a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);
                    a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(8)), a1);
                    a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(16)), a2);
                    a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(24)), a3);
                }
                _mm256_storeu_ps(tp.add(j), a0);
                _mm256_storeu_ps(tp.add(j + 8), a1);
                _mm256_storeu_ps(tp.add(j + 16), a2);
                _mm256_storeu_ps(tp.add(j + 24), a3);
                j += 32;
            }
            while j + 16 <= w8 {
                let (mut a0, mut a1) = (vi, vi);
                for k in 0..t {
                    let p = base.add(*offs.get_unchecked(k) + j);
                    let wv = _mm256_set1_ps(*w.get_unchecked(k));
                    a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);
                    a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(8)), a1);
                }
                _mm256_storeu_ps(tp.add(j), a0);
                _mm256_storeu_ps(tp.add(j + 8), a1);
                j += 16;
            }
            if j < w8 {
                // Even and odd taps in two chains, added at the end.
                let (mut a0, mut a1) = (vi, _mm256_setzero_ps());
                let mut k = 0;
                while k + 2 <= t {
                    let p0 = base.add(*offs.get_unchecked(k) + j);
                    let p1 = base.add(*offs.get_unchecked(k + 1) + j);
                    let w0 = _mm256_set1_ps(*w.get_unchecked(k));
                    let w1 = _mm256_set1_ps(*w.get_unchecked(k + 1));
                    a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(p0), a0);
                    a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(p1), a1);
                    k += 2;
                }
                if k < t {
                    let p0 = base.add(*offs.get_unchecked(k) + j);
                    let w0 = _mm256_set1_ps(*w.get_unchecked(k));
                    a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(p0), a0);
                }
                _mm256_storeu_ps(tp.add(j), _mm256_add_ps(a0, a1));
            }
            orow.copy_from_slice(&tmp[..rs.w]);
        }
    }

    /// SAFETY: AVX2+FMA; `buf` holds `max(offs) + (n-1)·step + w` values,
    /// `dy` `n·w`, `w` one weight per offset.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scatter(
        rs: &Rows,
        dy: &[f32],
        offs: &[usize],
        w: &[f32],
        buf: &mut [f32],
    ) {
        let (b, t) = (buf.as_mut_ptr(), offs.len().min(w.len()));
        let full = rs.w / 8 * 8;
        for (i, drow) in dy[..rs.n * rs.w].chunks_exact(rs.w).enumerate() {
            let base = b.add(i * rs.step);
            let d = drow.as_ptr();
            for k in 0..t {
                let p = base.add(*offs.get_unchecked(k));
                let wt = *w.get_unchecked(k);
                let wv = _mm256_set1_ps(wt);
                let mut j = 0;
                while j < full {
                    let v =
                        _mm256_fmadd_ps(wv, _mm256_loadu_ps(d.add(j)), _mm256_loadu_ps(p.add(j)));
                    _mm256_storeu_ps(p.add(j), v);
                    j += 8;
                }
                while j < rs.w {
                    *p.add(j) = wt.mul_add(*d.add(j), *p.add(j));
                    j += 1;
                }
            }
        }
    }

    /// SAFETY: AVX2+FMA; `buf` holds `max(offs) + (n-1)·step + w` values,
    /// `dy` `n·w`, `sums` one value per offset.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots(
        rs: &Rows,
        dy: &[f32],
        buf: &[f32],
        offs: &[usize],
        sums: &mut [f32],
    ) {
        // One accumulator per tap of a group; every dy load is shared by
        // the group.
        for r in tap_groups(offs.len().min(sums.len())) {
            let (o, s) = (&offs[r.clone()], &mut sums[r.clone()]);
            match r.len() {
                1 => dots_g::<1>(rs, dy, buf, o, s),
                2 => dots_g::<2>(rs, dy, buf, o, s),
                3 => dots_g::<3>(rs, dy, buf, o, s),
                4 => dots_g::<4>(rs, dy, buf, o, s),
                5 => dots_g::<5>(rs, dy, buf, o, s),
                6 => dots_g::<6>(rs, dy, buf, o, s),
                7 => dots_g::<7>(rs, dy, buf, o, s),
                _ => dots_g::<8>(rs, dy, buf, o, s),
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dots_g<const G: usize>(
        rs: &Rows,
        dy: &[f32],
        buf: &[f32],
        offs: &[usize],
        sums: &mut [f32],
    ) {
        let offs: &[usize; G] = offs.try_into().unwrap();
        let mut acc = [_mm256_setzero_ps(); G];
        let mut tail = [0f32; G];
        let full = rs.w / 8 * 8;
        let b = buf.as_ptr();
        for (i, drow) in dy[..rs.n * rs.w].chunks_exact(rs.w).enumerate() {
            let base = b.add(i * rs.step);
            let d = drow.as_ptr();
            let mut j = 0;
            while j < full {
                let dv = _mm256_loadu_ps(d.add(j));
                for k in 0..G {
                    let p = base.add(offs[k] + j);
                    acc[k] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(p), acc[k]);
                }
                j += 8;
            }
            while j < rs.w {
                let dv = *d.add(j);
                for k in 0..G {
                    tail[k] = dv.mul_add(*base.add(offs[k] + j), tail[k]);
                }
                j += 1;
            }
        }
        for k in 0..G {
            sums[k] += hsum(acc[k]) + tail[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::conv::generic;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::{Buffer, ConvOps, Math};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A depthwise geometry: `c` channels, `[h, w]` input, kernel, stride,
    /// pad, dilation per axis.
    fn geom(
        c: usize,
        inp: [usize; 2],
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        d: [usize; 2],
    ) -> ConvGeometry {
        let out_shape = (0..2)
            .map(|i| ConvGeometry::output_size(inp[i], k[i], s[i], p[i], d[i]).unwrap())
            .collect();
        ConvGeometry {
            in_channels: c,
            in_shape: inp.to_vec(),
            out_channels: c,
            out_shape,
            kernel: k.to_vec(),
            stride: s.to_vec(),
            pad: p.to_vec(),
            dilation: d.to_vec(),
            group: c,
            engine: Default::default(),
        }
    }

    fn geometries() -> Vec<ConvGeometry> {
        vec![
            geom(3, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1]),
            geom(4, [9, 9], [3, 3], [2, 2], [1, 1], [1, 1]),
            geom(3, [7, 5], [3, 3], [1, 1], [1, 1], [1, 1]),
            geom(3, [7, 5], [3, 3], [2, 2], [1, 1], [1, 1]),
            geom(2, [11, 10], [5, 5], [1, 1], [2, 2], [1, 1]),
            geom(2, [11, 10], [5, 5], [2, 2], [2, 2], [1, 1]),
            geom(3, [9, 8], [3, 3], [1, 1], [2, 2], [2, 2]),
            geom(3, [9, 8], [3, 3], [2, 2], [2, 2], [2, 2]),
            geom(2, [6, 7], [3, 3], [1, 1], [0, 0], [1, 1]),
            geom(2, [6, 7], [3, 3], [2, 2], [0, 0], [1, 1]),
            // Rectangular kernel, mixed strides and pads.
            geom(2, [7, 9], [3, 2], [2, 1], [1, 0], [1, 1]),
            geom(2, [7, 9], [2, 3], [1, 3], [0, 2], [1, 2]),
            // Pad larger than the kernel reach (stride 1 scatters).
            geom(2, [5, 6], [3, 3], [1, 1], [3, 3], [1, 1]),
            geom(2, [5, 6], [1, 1], [2, 2], [1, 1], [1, 1]),
            // Rows wider than 32 (the 4-vector blocks), 112-wide as in MobileNet.
            geom(3, [4, 37], [3, 3], [1, 1], [1, 1], [1, 1]),
            geom(3, [5, 112], [3, 3], [2, 2], [1, 1], [1, 1]),
            // Large enough to run in parallel.
            geom(16, [32, 32], [3, 3], [1, 1], [1, 1], [1, 1]),
            geom(16, [33, 31], [3, 3], [2, 2], [1, 1], [1, 1]),
        ]
    }

    fn rand_vec(n: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// y[n][c][i][j] = b[c] + Σ w[c][ki][kj]·x[n][c][i·sh + ki·dh - ph][j·sw + kj·dw - pw].
    fn naive_forward(
        g: &ConvGeometry,
        num: usize,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
    ) -> Vec<f32> {
        let (ih, iw, oh, ow) = (g.in_shape[0], g.in_shape[1], g.out_shape[0], g.out_shape[1]);
        let (kh, kw) = (g.kernel[0], g.kernel[1]);
        let mut y = vec![0.0; num * g.out_dim()];
        for p in 0..num * g.in_channels {
            let c = p % g.in_channels;
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = b.map_or(0.0, |b| b[c]) as f64;
                    for ki in 0..kh {
                        for kj in 0..kw {
                            let r = (i * g.stride[0] + ki * g.dilation[0]) as i64 - g.pad[0] as i64;
                            let q = (j * g.stride[1] + kj * g.dilation[1]) as i64 - g.pad[1] as i64;
                            if r >= 0 && q >= 0 && r < ih as i64 && q < iw as i64 {
                                let xv = x[p * ih * iw + r as usize * iw + q as usize];
                                s += (w[c * kh * kw + ki * kw + kj] * xv) as f64;
                            }
                        }
                    }
                    y[p * oh * ow + i * ow + j] = s as f32;
                }
            }
        }
        y
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what} at {i}: {x} vs {y}"
            );
        }
    }

    /// Every pass of the direct kernel (both loop instantiations) against
    /// a naive loop and the generic im2col + GEMM passes.
    #[test]
    fn passes_match_naive_and_generic() {
        let be = CpuBackend::new();
        let mut rng = StdRng::seed_from_u64(11);
        for g in geometries() {
            let mut k = Depthwise::new(&g).expect("depthwise geometry");
            for num in [1, 3] {
                let (id, od) = (g.in_dim(), g.out_dim());
                let x = rand_vec(num * id, &mut rng);
                let w = rand_vec(g.weight_len(), &mut rng);
                let b = rand_vec(g.out_channels, &mut rng);
                let dy = rand_vec(num * od, &mut rng);
                let (xb, wb, bb, dyb) = (
                    Buffer::from_vec(x.clone()),
                    Buffer::from_vec(w.clone()),
                    Buffer::from_vec(b.clone()),
                    Buffer::from_vec(dy.clone()),
                );
                let mut gws = be.alloc(g.col_len() + g.out_spatial());
                // Generic references.
                let mut dxg = Buffer::from_vec(vec![0.0; num * id]);
                generic::conv_backward_data(
                    &be,
                    &g,
                    num,
                    dyb.view(),
                    wb.view(),
                    dxg.view_mut(),
                    gws.view_mut(),
                );
                let dxg = dxg.read(num * id);
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
                let dwg = dwg.read(w.len());
                for fma in [false, has_fma()] {
                    k.fma = fma;
                    let what = format!("{g:?} num {num} fma {fma}");
                    for bias in [true, false] {
                        let want = naive_forward(&g, num, &x, &w, bias.then_some(&b[..]));
                        let mut y = Buffer::from_vec(vec![f32::NAN; num * od]);
                        k.forward(
                            num,
                            xb.view(),
                            wb.view(),
                            bias.then(|| bb.view()),
                            y.view_mut(),
                        );
                        close(&y.read(num * od), &want, 1e-5, &format!("forward {what}"));
                        let mut yg = be.alloc(num * od);
                        let bv = bias.then(|| bb.view());
                        generic::conv_forward(
                            &be,
                            &g,
                            num,
                            xb.view(),
                            wb.view(),
                            bv,
                            yg.view_mut(),
                            gws.view_mut(),
                        );
                        close(&yg.read(num * od), &want, 1e-5, &format!("generic {what}"));
                    }
                    // dx is overwritten.
                    let mut dx = Buffer::from_vec(vec![f32::NAN; num * id]);
                    k.backward_data(num, dyb.view(), wb.view(), dx.view_mut());
                    close(&dx.read(num * id), &dxg, 1e-5, &format!("data {what}"));
                    // dw accumulates.
                    let mut dw = Buffer::from_vec(vec![1.0; w.len()]);
                    k.backward_filter(num, xb.view(), dyb.view(), dw.view_mut());
                    close(&dw.read(w.len()), &dwg, 1e-4, &format!("filter {what}"));
                }
                // The backend's passes dispatch here.
                let mut ws = be.alloc(be.conv_workspace_len(&g, num));
                let mut dx = Buffer::from_vec(vec![f32::NAN; num * id]);
                be.conv_backward_data(&g, num, dyb.view(), wb.view(), dx.view_mut(), ws.view_mut());
                close(&dx.read(num * id), &dxg, 1e-5, "backend data");
                let mut dw = Buffer::from_vec(vec![1.0; w.len()]);
                be.conv_backward_filter(
                    &g,
                    num,
                    xb.view(),
                    dyb.view(),
                    dw.view_mut(),
                    ws.view_mut(),
                );
                close(&dw.read(w.len()), &dwg, 1e-4, "backend filter");
            }
        }
    }

    #[test]
    fn applies_only_to_depthwise_2d() {
        let g = geom(4, [6, 6], [3, 3], [1, 1], [1, 1], [1, 1]);
        assert!(Depthwise::new(&g).is_some());
        // Channel multiplier 2, fewer groups, 1-D and 3-D fall back.
        let mult = ConvGeometry {
            out_channels: 8,
            ..g.clone()
        };
        assert!(Depthwise::new(&mult).is_none());
        let grouped = ConvGeometry {
            group: 2,
            ..g.clone()
        };
        assert!(Depthwise::new(&grouped).is_none());
        let one_d = ConvGeometry {
            in_shape: vec![6],
            out_shape: vec![6],
            kernel: vec![3],
            stride: vec![1],
            pad: vec![1],
            dilation: vec![1],
            ..g.clone()
        };
        assert!(Depthwise::new(&one_d).is_none());
        // An output size that disagrees with Caffe's rule is not trusted.
        let bad = ConvGeometry {
            out_shape: vec![7, 6],
            ..g
        };
        assert!(Depthwise::new(&bad).is_none());
    }

    /// The filter gradient is the same bits whatever the thread count.
    #[test]
    fn filter_gradient_is_deterministic() {
        let mut rng = StdRng::seed_from_u64(13);
        let g = geom(24, [20, 20], [3, 3], [1, 1], [1, 1], [1, 1]);
        let k = Depthwise::new(&g).unwrap();
        let num = 5;
        let x = Buffer::from_vec(rand_vec(num * g.in_dim(), &mut rng));
        let dy = Buffer::from_vec(rand_vec(num * g.out_dim(), &mut rng));
        let run = || {
            let mut dw = Buffer::from_vec(vec![0.25; g.weight_len()]);
            k.backward_filter(num, x.view(), dy.view(), dw.view_mut());
            dw.read(g.weight_len())
        };
        let first = run();
        assert_eq!(first, run());
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            assert_eq!(pool.install(run), first, "{threads} threads");
        }
    }
}
