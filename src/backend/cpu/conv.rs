//! CPU ConvOps: im2col/col2im on host slices, and the convolution passes on
//! the packed GEMM of `packed.rs`, parallelised across the images of a batch.
//!
//! Every pass packs the weights once (shared by the workers). For 2-D
//! convolutions with unit stride along the width (`Direct`) no column
//! matrix is built: the forward reads the padded image in place, the filter
//! gradient reads its taps in place, and the data gradient is either the
//! forward of the padded dy with flipped weights (`transposed`) or a GEMM
//! whose tiles are added straight into the image (col2im fused in). Other
//! geometries im2col straight into the GEMM's packed panels. Small output
//! planes (`Batched`, p < BATCH_P) put several images into one GEMM per
//! group, split across threads by column panels instead of by image.
use std::sync::Mutex;

use rayon::prelude::*;

use super::depthwise::Depthwise;
use super::packed::{self, NR};
use super::{CpuBackend, PAR_MIN};
use crate::backend::conv::generic;
use crate::backend::{ConvGeometry, ConvOps, View, ViewMut};

/// Visit every row segment of the column buffer: for each channel, kernel
/// offset and output position of all axes but the last, `f(row, pos, seg)`
/// where the segment is positions `pos..pos + ow` of column-buffer row `row`
/// (= channel·kernel_size + kernel offset). The order is Caffe's (channel,
/// kernel offset, output position), which fixes col2im's summation order.
fn for_each_row(g: &ConvGeometry, mut f: impl FnMut(usize, usize, Seg)) {
    let ns = g.num_spatial_axes();
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
                f(c * ksize + k, t * ow, Seg { base, b, lo, hi });
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
pub(super) fn valid_range(b: i64, s: usize, size: usize, n: usize) -> (usize, usize) {
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

/// One row segment of the column matrix: output positions `j in 0..ow`
/// (along the last axis) read input `base + j·stride + b` for
/// `lo <= j < hi` and padding (zero) elsewhere; `base` is None when the
/// whole segment lies in the padding of an outer axis.
#[derive(Debug, Clone, Copy)]
struct Seg {
    base: Option<usize>,
    b: i64,
    lo: usize,
    hi: usize,
}

impl Seg {
    /// Input index of position `j` (only for `lo <= j < hi`).
    #[inline(always)]
    fn src(&self, base: usize, j: usize, s: usize) -> usize {
        (base as i64 + (j * s) as i64 + self.b) as usize
    }
}

/// `d = s` for short slices, in fixed 8-wide chunks: rows are a few to a
/// few dozen values, where a `memcpy` call costs more than the copy.
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

/// `d += s`, like `copy_short`.
#[inline(always)]
fn add_short(d: &mut [f32], s: &[f32]) {
    let s = &s[..d.len()];
    let mut dc = d.chunks_exact_mut(8);
    let mut sc = s.chunks_exact(8);
    for (a, b) in (&mut dc).zip(&mut sc) {
        for (x, &y) in a.iter_mut().zip(b) {
            *x += y;
        }
    }
    for (a, &b) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *a += b;
    }
}

#[inline(always)]
fn zero(d: &mut [f32]) {
    if !d.is_empty() {
        d.fill(0.0);
    }
}

/// Write positions `j0 .. j0 + dst.len()` of segment `seg` contiguously
/// into `dst` (stride `s` along the last axis).
#[inline(always)]
fn write_run(dst: &mut [f32], x: &[f32], seg: Seg, s: usize, j0: usize) {
    let j1 = j0 + dst.len();
    let Some(base) = seg.base else {
        return zero(dst);
    };
    let lo = seg.lo.clamp(j0, j1);
    let hi = seg.hi.clamp(lo, j1);
    zero(&mut dst[..lo - j0]);
    zero(&mut dst[hi - j0..]);
    if hi > lo {
        let start = seg.src(base, lo, s);
        let d = &mut dst[lo - j0..hi - j0];
        if s == 1 {
            copy_short(d, &x[start..start + d.len()]);
        } else {
            let src = &x[start..=start + (d.len() - 1) * s];
            for (v, &xv) in d.iter_mut().zip(src.iter().step_by(s)) {
                *v = xv;
            }
        }
    }
}

/// im2col of one image on host slices (rows of `out_spatial` values).
pub(crate) fn im2col_host(g: &ConvGeometry, x: &[f32], col: &mut [f32]) {
    if g.num_spatial_axes() == 0 {
        // No spatial axes: one output position, the column is the image.
        col[..g.in_channels].copy_from_slice(&x[..g.in_channels]);
        return;
    }
    let out_sp = g.out_spatial();
    let col = &mut col[..g.col_len()];
    if let Some(g2) = Geo2::new(g) {
        let mut rows = col.chunks_exact_mut(out_sp.max(1));
        g2.for_rows(g.in_channels, |_, c, ki, kj| {
            g2.row(x, c, ki, kj, rows.next().unwrap())
        });
        return;
    }
    let ow = *g.out_shape.last().unwrap();
    let s = *g.stride.last().unwrap();
    for_each_row(g, |row, pos, seg| {
        let off = row * out_sp + pos;
        write_run(&mut col[off..off + ow], x, seg, s, 0);
    });
}

/// col2im of one image on host slices (overwrites `x`).
pub(crate) fn col2im_host(g: &ConvGeometry, col: &[f32], x: &mut [f32]) {
    if g.num_spatial_axes() == 0 {
        x[..g.in_channels].copy_from_slice(&col[..g.in_channels]);
        return;
    }
    x[..g.in_dim()].fill(0.0);
    let out_sp = g.out_spatial();
    let col = &col[..g.col_len()];
    if let Some(g2) = Geo2::new(g) {
        let mut rows = col.chunks_exact(out_sp.max(1));
        g2.for_rows(g.in_channels, |_, c, ki, kj| {
            g2.add_row(rows.next().unwrap(), c, ki, kj, x)
        });
        return;
    }
    let s = *g.stride.last().unwrap();
    for_each_row(g, |row, pos, seg| {
        let Some(base) = seg.base else { return };
        if seg.hi <= seg.lo {
            return;
        }
        let off = row * out_sp + pos;
        let src = &col[off + seg.lo..off + seg.hi];
        let start = seg.src(base, seg.lo, s);
        if s == 1 {
            add_short(&mut x[start..start + src.len()], src);
        } else {
            let dst = x[start..=start + (src.len() - 1) * s].iter_mut().step_by(s);
            for (d, &v) in dst.zip(src) {
                *d += v;
            }
        }
    });
}

/// The per-group GEMM dimensions: `ocg` output channels, `kd` column rows
/// (Caffe's kernel_dim_), `p` output positions.
#[derive(Debug, Clone, Copy)]
struct Dims {
    group: usize,
    ocg: usize,
    kd: usize,
    p: usize,
}

impl Dims {
    fn new(g: &ConvGeometry) -> Self {
        Dims {
            group: g.group,
            ocg: g.out_channels / g.group,
            kd: g.kernel_dim(),
            p: g.out_spatial(),
        }
    }
    /// Packed column matrix of one group for the forward GEMM (kd × p).
    fn col_packed(&self) -> usize {
        packed::b_len(self.kd, self.p)
    }
    /// Packed transposed column matrix of one group for the filter
    /// gradient (p × kd).
    fn colt_packed(&self) -> usize {
        packed::b_len(self.p, self.kd)
    }
}

/// The 2-D geometry as plain numbers, for the hot loops: im2col builds one
/// column-matrix row `(c, ki, kj)` at a time (`oh·ow` values) with no
/// per-segment calls, then moves it where the caller wants it.
#[derive(Debug, Clone, Copy)]
struct Geo2 {
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: i64,
    pw: i64,
    dh: usize,
    dw: usize,
}

impl Geo2 {
    fn new(g: &ConvGeometry) -> Option<Geo2> {
        (g.num_spatial_axes() == 2).then(|| Geo2 {
            ih: g.in_shape[0],
            iw: g.in_shape[1],
            oh: g.out_shape[0],
            ow: g.out_shape[1],
            kh: g.kernel[0],
            kw: g.kernel[1],
            sh: g.stride[0],
            sw: g.stride[1],
            ph: g.pad[0] as i64,
            pw: g.pad[1] as i64,
            dh: g.dilation[0],
            dw: g.dilation[1],
        })
    }

    /// Column-matrix row `(c, ki, kj)` of image `x` into `row`.
    #[inline(always)]
    fn row(&self, x: &[f32], c: usize, ki: usize, kj: usize, row: &mut [f32]) {
        self.row_range(x, c, ki, kj, 0, self.oh * self.ow, row)
    }

    /// Output positions `q0..q1` (flattened) of column-matrix row
    /// `(c, ki, kj)` into `row[..q1 - q0]`: `row` restricted to a range.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn row_range(
        &self,
        x: &[f32],
        c: usize,
        ki: usize,
        kj: usize,
        q0: usize,
        q1: usize,
        row: &mut [f32],
    ) {
        let plane = &x[c * self.ih * self.iw..(c + 1) * self.ih * self.iw];
        let b = (kj * self.dw) as i64 - self.pw;
        let (lo, hi) = valid_range(b, self.sw, self.iw, self.ow);
        let r0 = (ki * self.dh) as i64 - self.ph;
        let mut q = q0;
        while q < q1 {
            let (i, ja) = (q / self.ow, q % self.ow);
            let jb = self.ow.min(ja + (q1 - q));
            let dst = &mut row[q - q0..q - q0 + (jb - ja)];
            q += jb - ja;
            let r = r0 + (i * self.sh) as i64;
            let (l, h) = (lo.clamp(ja, jb), hi.clamp(ja, jb));
            if r < 0 || r >= self.ih as i64 || h <= l {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[r as usize * self.iw..(r as usize + 1) * self.iw];
            zero(&mut dst[..l - ja]);
            zero(&mut dst[h - ja..]);
            let start = (b + (l * self.sw) as i64) as usize;
            let d = &mut dst[l - ja..h - ja];
            if self.sw == 1 {
                copy_short(d, &src[start..start + d.len()]);
            } else {
                for (v, &s) in d.iter_mut().zip(src[start..].iter().step_by(self.sw)) {
                    *v = s;
                }
            }
        }
    }

    /// The adjoint of `row`: add column-matrix row `(c, ki, kj)` into `x`.
    #[inline(always)]
    fn add_row(&self, row: &[f32], c: usize, ki: usize, kj: usize, x: &mut [f32]) {
        let plane = &mut x[c * self.ih * self.iw..(c + 1) * self.ih * self.iw];
        let row = &row[..self.oh * self.ow];
        let b = (kj * self.dw) as i64 - self.pw;
        let (lo, hi) = valid_range(b, self.sw, self.iw, self.ow);
        if hi <= lo {
            return;
        }
        let r0 = (ki * self.dh) as i64 - self.ph;
        let start = (b + (lo * self.sw) as i64) as usize;
        for (i, src) in row.chunks_exact(self.ow).enumerate() {
            let r = r0 + (i * self.sh) as i64;
            if r < 0 || r >= self.ih as i64 {
                continue;
            }
            let dst = &mut plane[r as usize * self.iw..(r as usize + 1) * self.iw];
            let src = &src[lo..hi];
            if self.sw == 1 {
                add_short(&mut dst[start..start + src.len()], src);
            } else {
                for (d, &s) in dst[start..].iter_mut().step_by(self.sw).zip(src) {
                    *d += s;
                }
            }
        }
    }

    /// Every row of the column matrix in order: `f(row_index, c, ki, kj)`.
    #[inline(always)]
    fn for_rows(&self, channels: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
        let mut r = 0;
        for c in 0..channels {
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    f(r, c, ki, kj);
                    r += 1;
                }
            }
        }
    }
}

/// Call `f(kk_global, row)` with every column-matrix row of image `x`:
/// built one at a time in `scratch` for 2-D (`out_spatial` values), or
/// all at once by the N-d im2col (`col_len` values).
#[inline(always)]
fn with_rows(g: &ConvGeometry, x: &[f32], scratch: &mut [f32], mut f: impl FnMut(usize, &[f32])) {
    let p = g.out_spatial();
    if let Some(g2) = Geo2::new(g) {
        let row = &mut scratch[..p];
        g2.for_rows(g.in_channels, |r, c, ki, kj| {
            g2.row(x, c, ki, kj, row);
            f(r, row);
        });
    } else {
        let col = &mut scratch[..g.col_len()];
        im2col_host(g, x, col);
        for (r, row) in col.chunks_exact(p.max(1)).enumerate() {
            f(r, row);
        }
    }
}

/// Scratch `with_rows` needs.
fn rows_scratch_len(g: &ConvGeometry) -> usize {
    if g.num_spatial_axes() == 2 {
        g.out_spatial()
    } else {
        g.col_len()
    }
}

/// im2col of one image into the forward GEMM's packed B: per group, the
/// kd × p column matrix in NR-position panels.
fn im2col_packed(g: &ConvGeometry, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
    let d = Dims::new(g);
    let glen = d.col_packed();
    with_rows(g, x, scratch, |r, row| {
        put_row_panels(&d, glen, r, row, out)
    });
}

/// Column-matrix row `r` (all groups' rows in order; `row.len()` positions)
/// into the forward GEMM's packed B: per group `glen` values, NR-position
/// panels of `kd × NR`, the last panel's columns past the row zeroed.
#[inline(always)]
fn put_row_panels(d: &Dims, glen: usize, r: usize, row: &[f32], out: &mut [f32]) {
    let (gi, kk) = (r / d.kd, r % d.kd);
    let base = gi * glen + kk * NR;
    let mut chunks = row.chunks_exact(NR);
    for (panel, src) in (&mut chunks).enumerate() {
        let off = base + panel * d.kd * NR;
        let dst: &mut [f32; NR] = (&mut out[off..off + NR]).try_into().unwrap();
        *dst = src.try_into().unwrap();
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let off = base + (row.len() / NR) * d.kd * NR;
        out[off..off + tail.len()].copy_from_slice(tail);
        out[off + tail.len()..off + NR].fill(0.0);
    }
}

/// Column-matrix row `r` (`row.len()` positions) into the filter gradient's
/// packed B (the transposed column matrix, `glen` values per group): row
/// `kk` goes to lane `kk % NR` of panel `kk / NR`.
#[inline(always)]
fn put_row_lanes(d: &Dims, glen: usize, r: usize, row: &[f32], out: &mut [f32]) {
    let (gi, kk) = (r / d.kd, r % d.kd);
    let off = gi * glen + (kk / NR) * row.len() * NR + kk % NR;
    let dst = &mut out[off..off + (row.len() - 1) * NR + 1];
    for (v, &s) in dst.iter_mut().step_by(NR).zip(row) {
        *v = s;
    }
}

/// Zero the lanes past `kd` in the last panel of each group of a
/// transposed packed B of `q` positions (they are never written by rows).
fn zero_lane_tails(d: &Dims, q: usize, glen: usize, out: &mut [f32]) {
    let (last, tail) = (d.kd / NR, d.kd % NR);
    if tail != 0 {
        for gout in out.chunks_exact_mut(glen) {
            for lanes in gout[last * q * NR..].chunks_exact_mut(NR) {
                lanes[tail..].fill(0.0);
            }
        }
    }
}

/// im2col of one image into the filter gradient's packed B: per group,
/// the transposed column matrix (p × kd) in NR-row panels, i.e.
/// column-matrix row `kk` goes to lane `kk % NR` of panel `kk / NR`.
fn im2col_packed_t(g: &ConvGeometry, x: &[f32], out: &mut [f32], scratch: &mut [f32]) {
    let d = Dims::new(g);
    let glen = d.colt_packed();
    let out = &mut out[..d.group * glen];
    zero_lane_tails(&d, d.p, glen, out);
    with_rows(g, x, scratch, |r, row| put_row_lanes(&d, glen, r, row, out));
}

/// Column-matrix values per chunk of a forward pass that runs in chunks
/// of output positions: the chunk's packed columns (and its slice of y,
/// where the bias is added) stay in L2 while the GEMM reads them.
const FORWARD_CHUNK: usize = 1 << 16;

/// Output positions per forward chunk for `g`, if it runs chunked: 2-D
/// im2col convolutions with a short kernel dimension over a large plane
/// (first layers: CaffeNet's conv1 has 363 × 3025 columns, 4.4 MB per
/// image). Long kernel dimensions would stream the weights once per chunk.
fn forward_chunk(g: &ConvGeometry) -> Option<usize> {
    let d = Dims::new(g);
    let kd = d.group * d.kd;
    if g.is_1x1() || Geo2::new(g).is_none() || kd > 512 {
        return None;
    }
    let q = (FORWARD_CHUNK / kd) / NR * NR;
    (d.p > 2 * q).then_some(q)
}

/// `im2col_packed` for output positions `q0..q1` only (2-D): the forward
/// GEMM's packed B of the chunk, `kd × (q1 - q0)` per group.
fn im2col_packed_range(
    g: &ConvGeometry,
    g2: &Geo2,
    x: &[f32],
    q0: usize,
    q1: usize,
    out: &mut [f32],
    row: &mut [f32],
) {
    let d = Dims::new(g);
    let glen = packed::b_len(d.kd, q1 - q0);
    let out = &mut out[..d.group * glen];
    let row = &mut row[..q1 - q0];
    g2.for_rows(g.in_channels, |r, c, ki, kj| {
        g2.row_range(x, c, ki, kj, q0, q1, row);
        put_row_panels(&d, glen, r, row, out);
    });
}

/// Output positions per chunk of the filter gradient's column matrix: the
/// transposed packing writes each row to every 16th value, so the chunk's
/// panel being written (16 KiB) stays in L1 instead of the whole matrix
/// (megabytes for a first layer) being swept once per row. One KC block.
const FILTER_Q: usize = 256;

/// `im2col_packed_t` for output positions `q0..q1` only (2-D): the
/// transposed column matrix of the chunk, `(q1 - q0) × kd` per group.
fn im2col_packed_t_range(
    g: &ConvGeometry,
    g2: &Geo2,
    x: &[f32],
    q0: usize,
    q1: usize,
    out: &mut [f32],
    row: &mut [f32],
) {
    let d = Dims::new(g);
    let glen = packed::b_len(q1 - q0, d.kd);
    let out = &mut out[..d.group * glen];
    zero_lane_tails(&d, q1 - q0, glen, out);
    let row = &mut row[..q1 - q0];
    g2.for_rows(g.in_channels, |r, c, ki, kj| {
        g2.row_range(x, c, ki, kj, q0, q1, row);
        put_row_lanes(&d, glen, r, row, out);
    });
}

/// A forward pass without im2col, for 2-D convolutions with unit stride
/// along the width: the GEMM reads the image (zero-padded into a worker
/// buffer when `pad` > 0) in place through an offset table
/// (`packed::gemm_indirect`), in runs of 8 output positions along a row.
/// Rows that are not a multiple of 8 wide (SqueezeNet's 55, CaffeNet
/// conv2's 27) are computed `ow8` wide (`Direct::forward`): the extra
/// columns read past the row into the next one (or a zeroed tail) and are
/// dropped when the rows are copied out; at most a quarter more work, for
/// the GEMM's speed instead of im2col's.
#[derive(Debug, Clone)]
struct Direct {
    g2: Geo2,
    /// Output row width the runs of 8 cover: `ow`, or `ow` rounded up to 8
    /// for a wide plan.
    ow8: usize,
    /// Padded plane size.
    hp: usize,
    wp: usize,
    /// Offset of kernel tap `kk` (channel of the group, ki, kj) in the
    /// padded image of the group.
    off: Vec<usize>,
    /// Start of each run of 8 output positions in the padded plane.
    halves: Vec<usize>,
}

impl Direct {
    /// The plan with rows a multiple of 8 wide, if it applies (the data
    /// gradient's scatter needs exact rows).
    fn new(g: &ConvGeometry) -> Option<Direct> {
        Direct::taps(g).filter(|d| d.g2.ow.is_multiple_of(8))
    }
    /// The forward's plan: `new`, or else a wide one when rounding the rows
    /// up to 8 adds at most a quarter of the work.
    fn forward(g: &ConvGeometry) -> Option<Direct> {
        Direct::new(g).or_else(|| {
            let ow = Geo2::new(g)?.ow;
            let ow8 = ow.next_multiple_of(8);
            if ow == 0 || 4 * ow8 > 5 * ow {
                return None;
            }
            Direct::plan(g, ow8)
        })
    }
    /// The tap offsets alone (the filter gradient needs no runs of 8):
    /// 2-D, unit stride along the width, not 1×1.
    fn taps(g: &ConvGeometry) -> Option<Direct> {
        let ow = Geo2::new(g)?.ow;
        Direct::plan(g, ow)
    }
    /// Taps, and runs of 8 over rows `ow8` wide when that is a multiple of 8.
    fn plan(g: &ConvGeometry, ow8: usize) -> Option<Direct> {
        let g2 = Geo2::new(g)?;
        if g2.sw != 1 || g.is_1x1() {
            return None;
        }
        let (hp, wp) = (g2.ih + 2 * g2.ph as usize, g2.iw + 2 * g2.pw as usize);
        let cg = g.in_channels / g.group;
        let mut off = Vec::with_capacity(g.kernel_dim());
        for c in 0..cg {
            for ki in 0..g2.kh {
                for kj in 0..g2.kw {
                    off.push(c * hp * wp + ki * g2.dh * wp + kj * g2.dw);
                }
            }
        }
        let runs = if ow8.is_multiple_of(8) {
            g2.oh * ow8 / 8
        } else {
            0
        };
        let halves = (0..runs)
            .map(|t| (8 * t / ow8) * g2.sh * wp + 8 * t % ow8)
            .collect();
        Some(Direct {
            g2,
            ow8,
            hp,
            wp,
            off,
            halves,
        })
    }
    /// Whether the runs cover rows wider than the output's.
    fn wide(&self) -> bool {
        self.ow8 != self.g2.ow
    }
    /// Whether the GEMM reads a copy of the image: padded, or wide (whose
    /// last run reads past the image's end, into a zeroed tail).
    fn padded(&self) -> bool {
        self.g2.ph > 0 || self.g2.pw > 0 || self.wide()
    }
    /// Values past the padded image a wide plan's last run reads.
    fn tail(&self) -> usize {
        self.ow8 - self.g2.ow
    }
    /// Worker scratch of the image copy (`padded`).
    fn image_len(&self, g: &ConvGeometry) -> usize {
        if self.padded() {
            g.in_channels * self.hp * self.wp + self.tail()
        } else {
            0
        }
    }
    /// Worker scratch: the image copy, and a wide plan's output rows.
    fn scratch_len(&self, g: &ConvGeometry) -> usize {
        let rows = if self.wide() {
            (g.out_channels / g.group) * self.g2.oh * self.ow8
        } else {
            0
        };
        self.image_len(g) + rows
    }
    /// The inverse of `pad_image`: the interior of `padded` into `x`.
    fn crop_image(&self, padded: &[f32], channels: usize, x: &mut [f32]) {
        let (ih, iw) = (self.g2.ih, self.g2.iw);
        let (ph, pw) = (self.g2.ph as usize, self.g2.pw as usize);
        let planes = padded[..channels * self.hp * self.wp].chunks_exact(self.hp * self.wp);
        for (src, dst) in planes.zip(x.chunks_exact_mut(ih * iw)) {
            let rows = src[ph * self.wp..(ph + ih) * self.wp].chunks_exact(self.wp);
            for (s, d) in rows.zip(dst.chunks_exact_mut(iw)) {
                copy_short(d, &s[pw..pw + iw]);
            }
        }
    }

    /// Image `x` with its zero border (and a wide plan's zeroed tail),
    /// into `out`.
    fn pad_image(&self, x: &[f32], channels: usize, out: &mut [f32]) {
        let (ih, iw) = (self.g2.ih, self.g2.iw);
        let (ph, pw) = (self.g2.ph as usize, self.g2.pw as usize);
        let len = channels * self.hp * self.wp;
        out[len..len + self.tail()].fill(0.0);
        let out = &mut out[..len];
        for (src, dst) in x
            .chunks_exact(ih * iw)
            .zip(out.chunks_exact_mut(self.hp * self.wp))
        {
            dst[..ph * self.wp].fill(0.0);
            dst[(ph + ih) * self.wp..].fill(0.0);
            let rows = dst[ph * self.wp..(ph + ih) * self.wp].chunks_exact_mut(self.wp);
            for (s, d) in src.chunks_exact(iw).zip(rows) {
                d[..pw].fill(0.0);
                copy_short(&mut d[pw..pw + iw], s);
                d[pw + iw..].fill(0.0);
            }
        }
    }
}

/// A convolution's data gradient as a forward convolution (unit stride and
/// dilation, 2-D): dy padded by `k − 1 − pad` correlated with the weights
/// flipped and transposed, when that forward can run `Direct`ly.
fn transposed(g: &ConvGeometry) -> Option<ConvGeometry> {
    if g.num_spatial_axes() != 2
        || g.is_1x1()
        || g.stride.iter().chain(&g.dilation).any(|&v| v != 1)
        || (0..2).any(|d| g.pad[d] >= g.kernel[d])
    {
        return None;
    }
    let gt = ConvGeometry {
        in_channels: g.out_channels,
        in_shape: g.out_shape.clone(),
        out_channels: g.in_channels,
        out_shape: g.in_shape.clone(),
        kernel: g.kernel.clone(),
        stride: vec![1, 1],
        pad: (0..2).map(|d| g.kernel[d] - 1 - g.pad[d]).collect(),
        dilation: vec![1, 1],
        group: g.group,
        engine: g.engine,
    };
    Direct::forward(&gt).map(|_| gt)
}

/// Pack the weights of `g` as the forward GEMM's A, one group after the
/// other (`a_len(ocg, kd)` values each).
fn pack_weights(g: &ConvGeometry, w: &[f32], out: &mut [f32]) {
    let d = Dims::new(g);
    let alen = packed::a_len(d.ocg, d.kd);
    for gi in 0..d.group {
        let wg = &w[gi * d.ocg * d.kd..];
        packed::pack_a(d.ocg, d.kd, wg, d.kd, 1, &mut out[gi * alen..]);
    }
}

/// Weights `(o, c, t)` of `g` as those of its `transposed` geometry:
/// `(c, o, ks − 1 − t)` per group (flipped taps), packed like
/// `pack_weights` does for `gt`.
fn pack_weights_transposed(g: &ConvGeometry, gt: &ConvGeometry, w: &[f32], out: &mut [f32]) {
    let d = Dims::new(g);
    let ks = g.kernel_size();
    let cg = d.kd / ks;
    let mut wt = vec![0f32; g.weight_len()];
    for gi in 0..d.group {
        let (src, dst) = (&w[gi * d.ocg * d.kd..], &mut wt[gi * d.ocg * d.kd..]);
        for o in 0..d.ocg {
            for c in 0..cg {
                for t in 0..ks {
                    dst[(c * d.ocg + o) * ks + ks - 1 - t] = src[(o * cg + c) * ks + t];
                }
            }
        }
    }
    pack_weights(gt, &wt, out);
}

/// `y = W ⊛ x (+ bias)` for `num` images, the weights packed by
/// `pack_weights`: `Direct` where it applies, else im2col into packed B.
#[allow(clippy::too_many_arguments)]
fn forward_images(
    g: &ConvGeometry,
    num: usize,
    x: &[f32],
    pw: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    workers: &Workers,
) {
    let (id, od) = (g.in_dim(), g.out_dim());
    let d = Dims::new(g);
    let alen = packed::a_len(d.ocg, d.kd);
    let glen = d.col_packed();
    let direct = Direct::forward(g);
    let chunk = forward_chunk(g);
    per_image(num, od, y, workers, |n, yn, buf| {
        let xn = &x[n * id..(n + 1) * id];
        if let Some(dr) = &direct {
            let (img, rows) = buf.split_at_mut(dr.image_len(g));
            let src: &[f32] = if dr.padded() {
                dr.pad_image(xn, g.in_channels, img);
                img
            } else {
                xn
            };
            let cg = g.in_channels / d.group;
            let (ow, n8) = (dr.g2.ow, dr.g2.oh * dr.ow8);
            for gi in 0..d.group {
                let yg = &mut yn[gi * d.ocg * d.p..(gi + 1) * d.ocg * d.p];
                let (c, ldc) = if dr.wide() {
                    (&mut rows[..d.ocg * n8], n8)
                } else {
                    (&mut *yg, d.p)
                };
                packed::gemm_indirect(
                    d.ocg,
                    n8,
                    d.kd,
                    &pw[gi * alen..],
                    &src[gi * cg * dr.hp * dr.wp..],
                    &dr.off,
                    &dr.halves,
                    c,
                    ldc,
                    false,
                );
                if dr.wide() {
                    // The first ow of every ow8-wide row.
                    for (dst, src) in yg.chunks_exact_mut(ow).zip(rows.chunks_exact(dr.ow8)) {
                        copy_short(dst, &src[..ow]);
                    }
                }
            }
        } else {
            if g.is_1x1() {
                for gi in 0..d.group {
                    let xg = &xn[gi * d.kd * d.p..];
                    packed::pack_b(d.kd, d.p, xg, d.p, 1, &mut buf[gi * glen..]);
                }
            } else if let (Some(q), Some(g2)) = (chunk, Geo2::new(g)) {
                for q0 in (0..d.p).step_by(q) {
                    let q1 = d.p.min(q0 + q);
                    let clen = packed::b_len(d.kd, q1 - q0);
                    let (cols, scratch) = buf.split_at_mut(d.group * clen);
                    im2col_packed_range(g, &g2, xn, q0, q1, cols, scratch);
                    for gi in 0..d.group {
                        packed::gemm(
                            d.ocg,
                            q1 - q0,
                            d.kd,
                            &pw[gi * alen..],
                            &cols[gi * clen..],
                            &mut yn[gi * d.ocg * d.p + q0..],
                            d.p,
                            false,
                        );
                    }
                    // The bias while this slice of y is in cache.
                    if let Some(b) = bias {
                        for (row, &bv) in yn.chunks_mut(d.p).zip(b) {
                            row[q0..q1].iter_mut().for_each(|v| *v += bv);
                        }
                    }
                }
                return;
            } else {
                let (cols, scratch) = buf.split_at_mut(d.group * glen);
                im2col_packed(g, xn, cols, scratch);
            }
            for gi in 0..d.group {
                packed::gemm(
                    d.ocg,
                    d.p,
                    d.kd,
                    &pw[gi * alen..],
                    &buf[gi * glen..],
                    &mut yn[gi * d.ocg * d.p..],
                    d.p,
                    false,
                );
            }
        }
        if let Some(b) = bias {
            for (row, &bv) in yn.chunks_mut(d.p).zip(b) {
                row.iter_mut().for_each(|v| *v += bv);
            }
        }
    });
}

/// Worker scratch of `filter_direct`: the padded image, one group's
/// packed dyᵀ, and a dWᵀ accumulator for the one-worker plan.
fn filter_direct_len(g: &ConvGeometry, dr: &Direct) -> usize {
    let d = Dims::new(g);
    dr.scratch_len(g) + packed::b_len(d.p, d.ocg) + g.weight_len()
}

/// `dwt += Σ_{n in range} (dy_n ⋆ x_n)ᵀ` without a column matrix: per
/// group, `dWᵀ (kd × ocg) += taps(x_n) · dy_nᵀ`, the taps read in place
/// (`packed::gemm_rows_indirect`). `dwt` holds dWᵀ group after group.
/// With `db`, also `db[c] += Σ_positions dy_n[c]` image after image, while
/// each image's dy is in cache (the bias gradient fused in).
fn filter_direct<'a>(
    g: &ConvGeometry,
    dr: &Direct,
    range: std::ops::Range<usize>,
    image: &impl Fn(usize) -> (&'a [f32], &'a [f32]),
    buf: &mut [f32],
    dwt: &mut [f32],
    mut db: Option<&mut [f32]>,
) {
    let d = Dims::new(g);
    let (padded, rest) = buf.split_at_mut(dr.scratch_len(g));
    let pdy = &mut rest[..packed::b_len(d.p, d.ocg)];
    let cg = g.in_channels / d.group;
    for n in range {
        let (xn, dyn_) = image(n);
        let src: &[f32] = if dr.padded() {
            dr.pad_image(xn, g.in_channels, padded);
            padded
        } else {
            xn
        };
        for gi in 0..d.group {
            // B(q, o) = dy[o·p + q]
            packed::pack_b(d.p, d.ocg, &dyn_[gi * d.ocg * d.p..], 1, d.p, pdy);
            packed::gemm_rows_indirect(
                d.kd,
                d.ocg,
                dr.g2.oh,
                dr.g2.ow,
                dr.g2.sh * dr.wp,
                &src[gi * cg * dr.hp * dr.wp..],
                &dr.off,
                pdy,
                &mut dwt[gi * d.kd * d.ocg..],
                d.ocg,
            );
        }
        if let Some(db) = db.as_deref_mut() {
            for (b, row) in db[..g.out_channels].iter_mut().zip(dyn_.chunks_exact(d.p)) {
                *b += sum(row);
            }
        }
    }
}

/// `dw += dwtᵀ` per group (`dwt` as `filter_direct` leaves it).
fn add_transposed(g: &ConvGeometry, dwt: &[f32], dw: &mut [f32]) {
    let d = Dims::new(g);
    let gl = d.ocg * d.kd;
    for (t, w) in dwt[..g.weight_len()]
        .chunks_exact(gl)
        .zip(dw.chunks_exact_mut(gl))
    {
        for (o, wrow) in w.chunks_exact_mut(d.kd).enumerate() {
            for (kk, v) in wrow.iter_mut().enumerate() {
                *v += t[kk * d.ocg + o];
            }
        }
    }
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

/// Workspace regions start on 64-byte boundaries (whole cache lines for
/// the packed panels): sizes are rounded to this many values.
const ALIGN: usize = 16;

/// How a pass over `num` images uses the workspace: the packed weights
/// (`shared`, written once per pass), one buffer per concurrently running
/// image (`workers`, handed out per thread) and, for the filter gradient,
/// `parts` fixed image ranges with one partial sum each. Fixed ranges
/// summed in order keep the result independent of scheduling; the images
/// themselves are scheduled dynamically, so a busy core does not stall the
/// pass.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Plan {
    shared_len: usize,
    workers: usize,
    worker_len: usize,
    parts: usize,
    part_len: usize,
    /// Images per GEMM of the `batched` passes (one worker buffer, no
    /// parts); 0 for the per-image passes.
    batch: usize,
}

impl Plan {
    fn new(g: &ConvGeometry, num: usize) -> Plan {
        let threads = rayon::current_num_threads();
        let workers = num.min(threads).max(1);
        if let Some(nb) = batch_images(g, num) {
            // The per-image buffers (forward and data gradient of planes
            // from BATCH_P_FD up) double as the batched passes' one buffer.
            let per = Plan::with(g, workers, 1);
            let whole = batched_len(g, nb).div_ceil(workers);
            return Plan {
                worker_len: per.worker_len.max(whole.next_multiple_of(ALIGN)),
                batch: nb,
                ..per
            };
        }
        let parts = if workers > 1 { num.min(4 * threads) } else { 1 };
        Plan::with(g, workers, parts)
    }
    fn with(g: &ConvGeometry, workers: usize, parts: usize) -> Plan {
        let d = Dims::new(g);
        let col = if g.is_1x1() { 0 } else { g.col_len() };
        // forward: packed columns; filter: packed transposed columns plus
        // one group's packed dy; data: dy packed as B plus the columns.
        let rows = if g.is_1x1() { 0 } else { rows_scratch_len(g) };
        let forward = match Direct::forward(g) {
            Some(dr) => dr.scratch_len(g),
            None => d.group * d.col_packed() + rows,
        };
        let filter = match Direct::taps(g) {
            Some(dr) => filter_direct_len(g, &dr),
            None => d.group * d.colt_packed() + rows.max(packed::a_len(d.ocg, d.p)),
        };
        let mut weights = packed::a_len(d.ocg, d.kd).max(packed::a_len(d.kd, d.ocg));
        let data = match transposed(g) {
            Some(gt) => {
                let dt = Dims::new(&gt);
                weights = weights.max(packed::a_len(dt.ocg, dt.kd));
                Direct::forward(&gt).map_or(0, |dr| dr.scratch_len(&gt))
            }
            None => match Direct::new(g) {
                Some(dr) => dr.scratch_len(g) + packed::b_len(d.ocg, d.p),
                None => col + packed::b_len(d.ocg, d.p),
            },
        };
        Plan {
            shared_len: (d.group * weights).next_multiple_of(ALIGN),
            workers,
            worker_len: forward.max(filter).max(data).next_multiple_of(ALIGN),
            parts,
            // dW's partial sum, then db's (fused filter and bias passes).
            part_len: (g.weight_len() + g.out_channels).next_multiple_of(ALIGN),
            batch: 0,
        }
    }
    fn len(&self) -> usize {
        let parts = if self.parts > 1 {
            self.parts * self.part_len
        } else {
            0
        };
        ALIGN + self.shared_len + self.workers * self.worker_len + parts
    }
    /// This plan if `ws` holds it (the thread count may differ from the
    /// one the workspace was sized for), else one worker if that fits.
    fn fit(g: &ConvGeometry, num: usize, ws_len: usize) -> Option<Plan> {
        let p = Plan::new(g, num);
        if p.len() <= ws_len {
            return Some(p);
        }
        let p = Plan::with(g, 1, 1);
        (p.len() <= ws_len).then_some(p)
    }
    /// `ws` split into (shared, worker buffers, partial sums), aligned.
    fn split<'a>(&self, ws: &'a mut [f32]) -> (&'a mut [f32], Workers<'a>, &'a mut [f32]) {
        let (shared, workers, parts) = self.regions(ws);
        (shared, Workers::new(workers, self), parts)
    }
    /// `ws` split into (shared, all worker buffers as one, partial sums).
    fn regions<'a>(&self, ws: &'a mut [f32]) -> (&'a mut [f32], &'a mut [f32], &'a mut [f32]) {
        let skip = match ws.as_ptr().align_offset(4 * ALIGN) {
            k if k < ALIGN => k,
            _ => 0,
        };
        let (shared, rest) = ws[skip..].split_at_mut(self.shared_len);
        let (workers, rest) = rest.split_at_mut(self.workers * self.worker_len);
        let parts = if self.parts > 1 {
            self.parts * self.part_len
        } else {
            0
        };
        (shared, workers, &mut rest[..parts])
    }
}

/// Worker buffers shared by the tasks of one pass; each running image
/// takes a free one (its thread's first), so at most `workers` are in use.
struct Workers<'a> {
    bufs: Vec<Mutex<&'a mut [f32]>>,
}

impl<'a> Workers<'a> {
    fn new(ws: &'a mut [f32], plan: &Plan) -> Self {
        Workers {
            bufs: ws
                .chunks_mut(plan.worker_len.max(1))
                .map(Mutex::new)
                .collect(),
        }
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

/// Run `f(image, out_image, buf)` for every image: sequentially with one
/// worker buffer, or one rayon task per image.
fn per_image(
    num: usize,
    out_per_image: usize,
    out: &mut [f32],
    workers: &Workers,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) {
    let out = &mut out[..num * out_per_image];
    if workers.bufs.len() <= 1 {
        return workers.with(|buf| {
            for (n, yn) in out.chunks_mut(out_per_image.max(1)).enumerate() {
                f(n, yn, buf);
            }
        });
    }
    out.par_chunks_mut(out_per_image.max(1))
        .enumerate()
        .for_each(|(n, yn)| workers.with(|buf| f(n, yn, buf)));
}

/// dw = dw·[accumulate] + Σ_groups dy_n ⋆ col(x_n) for one image.
fn filter_image(
    g: &ConvGeometry,
    xn: &[f32],
    dyn_: &[f32],
    buf: &mut [f32],
    dw: &mut [f32],
    accumulate: bool,
) {
    let d = Dims::new(g);
    let glen = d.colt_packed();
    // pdy doubles as im2col's row scratch (used before dy is packed).
    let (colt, pdy) = buf.split_at_mut(d.group * glen);
    if let (false, Some(g2), true) = (g.is_1x1(), Geo2::new(g), d.p > FILTER_Q) {
        // Chunks of FILTER_Q positions, in order (a fixed summation order).
        for q0 in (0..d.p).step_by(FILTER_Q) {
            let q1 = d.p.min(q0 + FILTER_Q);
            let q = q1 - q0;
            let clen = packed::b_len(q, d.kd);
            im2col_packed_t_range(g, &g2, xn, q0, q1, colt, pdy);
            for gi in 0..d.group {
                let dy_g = &dyn_[gi * d.ocg * d.p + q0..];
                packed::pack_a(d.ocg, q, dy_g, d.p, 1, pdy);
                packed::gemm(
                    d.ocg,
                    d.kd,
                    q,
                    pdy,
                    &colt[gi * clen..],
                    &mut dw[gi * d.ocg * d.kd..],
                    d.kd,
                    accumulate || q0 > 0,
                );
            }
        }
        return;
    }
    if g.is_1x1() {
        // The columns are the image: Bᵀ is x's group rows, transposed.
        for gi in 0..d.group {
            packed::pack_b(
                d.p,
                d.kd,
                &xn[gi * d.kd * d.p..],
                1,
                d.p,
                &mut colt[gi * glen..],
            );
        }
    } else {
        im2col_packed_t(g, xn, colt, pdy);
    }
    for gi in 0..d.group {
        packed::pack_a(d.ocg, d.p, &dyn_[gi * d.ocg * d.p..], d.p, 1, pdy);
        packed::gemm(
            d.ocg,
            d.kd,
            d.p,
            pdy,
            &colt[gi * glen..],
            &mut dw[gi * d.ocg * d.kd..],
            d.kd,
            accumulate,
        );
    }
}

/// Accumulate the filter gradients of the images in `range`, image after
/// image, into `dw` (overwriting it first unless `accumulate`).
fn filter_range<'a>(
    g: &ConvGeometry,
    range: std::ops::Range<usize>,
    image: &impl Fn(usize) -> (&'a [f32], &'a [f32]),
    buf: &mut [f32],
    dw: &mut [f32],
    accumulate: bool,
) {
    let start = range.start;
    for n in range {
        let (xn, dyn_) = image(n);
        filter_image(g, xn, dyn_, buf, dw, accumulate || n > start);
    }
}

/// The filter gradient, and with `db` the bias gradient too: fused into
/// the `Direct` pass (dy read once), else the bias pass first (the layer's
/// order) and then the filter pass.
#[allow(clippy::too_many_arguments)]
fn backward_filter(
    be: &CpuBackend,
    g: &ConvGeometry,
    num: usize,
    x: View,
    dy: View,
    mut dw: ViewMut,
    mut db: Option<ViewMut>,
    mut ws: ViewMut,
) {
    let direct = match Depthwise::new(g) {
        Some(_) => None,
        None => Plan::fit(g, num, ws.host_rest().len())
            .filter(|p| p.batch == 0)
            .zip(Direct::taps(g)),
    };
    let Some((plan, dr)) = direct else {
        if let Some(db) = db {
            let (c, s) = (g.out_channels, g.out_spatial());
            be.conv_backward_bias(num, c, s, dy, db, ws.rb());
        }
        return filter_pass(be, g, num, x, dy, dw, ws);
    };
    let (id, od, wl) = (g.in_dim(), g.out_dim(), g.weight_len());
    let x = x.host(num * id);
    let dy = dy.host(num * od);
    let dw = dw.host(wl);
    let mut db = db.as_mut().map(|b| b.host(g.out_channels));
    let (_, workers, parts) = plan.split(ws.host_rest());
    let image = |n: usize| (&x[n * id..(n + 1) * id], &dy[n * od..(n + 1) * od]);
    // dWᵀ sums (zeroed), added to dw transposed: the whole batch for one
    // worker, else fixed image ranges reduced in order.
    if plan.parts <= 1 {
        return workers.with(|buf| {
            let (buf, dwt) = buf.split_at_mut(filter_direct_len(g, &dr) - wl);
            let dwt = &mut dwt[..wl];
            dwt.fill(0.0);
            filter_direct(g, &dr, 0..num, &image, buf, dwt, db.as_deref_mut());
            add_transposed(g, dwt, dw);
        });
    }
    let per = num.div_ceil(plan.parts);
    let used = num.div_ceil(per);
    let pl = plan.part_len;
    let fused = db.is_some();
    parts[..used * pl]
        .par_chunks_mut(pl)
        .enumerate()
        .for_each(|(k, part)| {
            let range = k * per..((k + 1) * per).min(num);
            part.fill(0.0);
            let (dwt, dbp) = part.split_at_mut(wl);
            let dbp = fused.then_some(&mut dbp[..g.out_channels]);
            workers.with(|buf| filter_direct(g, &dr, range, &image, buf, dwt, dbp));
        });
    // Summed in order where they are contiguous, then turned once (one
    // strided pass instead of one per part); db gets the parts in order.
    let (first, rest) = parts[..used * pl].split_at_mut(pl);
    for part in rest.chunks(pl) {
        for (a, &p) in first[..wl].iter_mut().zip(&part[..wl]) {
            *a += p;
        }
    }
    add_transposed(g, first, dw);
    if let Some(db) = db {
        for part in parts[..used * pl].chunks(pl) {
            for (b, &p) in db.iter_mut().zip(&part[wl..wl + g.out_channels]) {
                *b += p;
            }
        }
    }
}

/// The filter gradient without `Direct`: depthwise, the generic passes
/// (workspace too small), batched, or image after image through im2col
/// (fixed image ranges reduced in order).
fn filter_pass(
    be: &CpuBackend,
    g: &ConvGeometry,
    num: usize,
    x: View,
    dy: View,
    mut dw: ViewMut,
    mut ws: ViewMut,
) {
    if let Some(k) = Depthwise::new(g) {
        return k.backward_filter(num, x, dy, dw);
    }
    let Some(plan) = Plan::fit(g, num, ws.host_rest().len()) else {
        return generic::conv_backward_filter(be, g, num, x, dy, dw, ws);
    };
    let (id, od, wl) = (g.in_dim(), g.out_dim(), g.weight_len());
    let x = x.host(num * id);
    let dy = dy.host(num * od);
    let dw = dw.host(wl);
    if plan.batch > 0 {
        let (_, buf, _) = plan.regions(ws.host_rest());
        return Batched::new(g, plan.batch).backward_filter(num, x, dy, dw, buf);
    }
    let (_, workers, parts) = plan.split(ws.host_rest());
    let image = |n: usize| (&x[n * id..(n + 1) * id], &dy[n * od..(n + 1) * od]);
    if plan.parts <= 1 {
        // Caffe's order: accumulate image after image into dw.
        return workers.with(|buf| filter_range(g, 0..num, &image, buf, dw, true));
    }
    let per = num.div_ceil(plan.parts);
    let used = num.div_ceil(per);
    let pl = plan.part_len;
    parts[..used * pl]
        .par_chunks_mut(pl)
        .enumerate()
        .for_each(|(k, part)| {
            let range = k * per..((k + 1) * per).min(num);
            workers.with(|buf| filter_range(g, range, &image, buf, &mut part[..wl], false));
        });
    // Fixed-order reduction: dw += part_0 + part_1 + ...
    for part in parts[..used * pl].chunks(pl) {
        for (a, &p) in dw.iter_mut().zip(&part[..wl]) {
            *a += p;
        }
    }
}

/// Output planes smaller than this many positions run `batched`: one
/// GEMM per group over the columns of several images, split across
/// threads by column panels, instead of one thin GEMM per image (p = 49
/// gives three full 16-column panels and a 1-column one, and the weights
/// are streamed again for each image).
const BATCH_P: usize = 256;
/// The forward and data gradient run batched below this many positions
/// only: from 14×14 up the per-image passes measured as fast (their
/// column matrices stay in cache, the batched data gradient's do not).
const BATCH_P_FD: usize = 100;
/// Weights per group below this run per image even for small planes: a
/// small filter stays in L2 across the images, and its per-range partial
/// gradients are cheap (LeNet's conv2, 50×500, and CIFAR-10's convs
/// measured 1.6× slower batched; ResNet's 512×4608 nearly 2× faster).
const BATCH_W: usize = 1 << 17;
/// Columns (images × positions) per batched GEMM at most: bounds the
/// workspace (the column matrices of that many positions).
const BATCH_N: usize = 1024;

#[cfg(test)]
thread_local! {
    /// Tests set this to force the per-image passes (`Some(false)`) or the
    /// batched ones whatever the weight size (`Some(true)`) on this thread.
    static FORCE_BATCH: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Images per batched GEMM, if `g` runs batched (2-D, small output).
fn batch_images(g: &ConvGeometry, num: usize) -> Option<usize> {
    #[cfg(test)]
    let forced = FORCE_BATCH.with(|v| v.get());
    #[cfg(not(test))]
    let forced: Option<bool> = None;
    if forced == Some(false) {
        return None;
    }
    let p = g.out_spatial();
    if Geo2::new(g).is_none() || p == 0 || p >= BATCH_P || num == 0 {
        return None;
    }
    let d = Dims::new(g);
    if d.ocg * d.kd < BATCH_W && forced != Some(true) {
        return None;
    }
    // Equal chunks of at most BATCH_N columns (8 images of 196 → 4 + 4).
    let chunks = num.div_ceil((BATCH_N / p).clamp(1, num));
    Some(num.div_ceil(chunks))
}

/// Worker buffer of the batched passes for `nb` images per GEMM.
fn batched_len(g: &ConvGeometry, nb: usize) -> usize {
    let d = Dims::new(g);
    let nn = nb * d.p;
    let forward = packed::b_len(d.kd, nn) + d.ocg * nn;
    let data = packed::b_len(d.ocg, nn) + d.kd * nn;
    let filter = packed::a_len(d.ocg, nn) + packed::b_len(nn, d.kd);
    forward.max(data).max(filter)
}

/// Write `vals` into row `r` of packed B (`k` rows deep), columns from `j`
/// on (local to the panels of `panels`).
#[inline(always)]
fn put_row(panels: &mut [f32], k: usize, r: usize, mut j: usize, mut vals: &[f32]) {
    while !vals.is_empty() {
        let lane = j % NR;
        let take = (NR - lane).min(vals.len());
        let off = (j / NR) * k * NR + r * NR + lane;
        copy_short(&mut panels[off..off + take], &vals[..take]);
        j += take;
        vals = &vals[take..];
    }
}

/// Zero the lanes of the last panel of `panels` past its `cols` columns
/// (`cols` counted from the first panel).
fn zero_tail_lanes(panels: &mut [f32], k: usize, cols: usize) {
    let used = cols % NR;
    if used != 0 {
        let last = cols / NR * k * NR;
        for lanes in panels[last..last + k * NR].chunks_exact_mut(NR) {
            lanes[used..].fill(0.0);
        }
    }
}

/// The images (index into the chunk) overlapping columns `j0..j1` of a
/// batched column matrix of `p` positions per image, each with its
/// position range.
fn images_in(
    j0: usize,
    j1: usize,
    p: usize,
) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
    (j0 / p..j1.div_ceil(p)).map(move |i| (i, j0.max(i * p) - i * p..j1.min((i + 1) * p) - i * p))
}

/// Column-matrix row `(c, ki, kj)` of the group image `xg`: in place for
/// a 1×1 convolution, else built in `row`.
#[inline(always)]
fn col_row<'a>(
    g2: &Geo2,
    one: bool,
    xg: &'a [f32],
    c: usize,
    ki: usize,
    kj: usize,
    row: &'a mut [f32],
) -> &'a [f32] {
    let p = g2.oh * g2.ow;
    if one {
        return &xg[c * p..(c + 1) * p];
    }
    g2.row(xg, c, ki, kj, row);
    row
}

/// The batched passes: images `n0 .. n0 + cnt` per GEMM, one GEMM per
/// group with N = cnt·p columns (or K = cnt·p for the filter gradient).
struct Batched<'a> {
    g: &'a ConvGeometry,
    g2: Geo2,
    d: Dims,
    nb: usize,
    one: bool,
}

impl<'a> Batched<'a> {
    fn new(g: &'a ConvGeometry, nb: usize) -> Self {
        Batched {
            g,
            g2: Geo2::new(g).expect("batched plans are 2-D"),
            d: Dims::new(g),
            nb,
            one: g.is_1x1(),
        }
    }

    /// `(n0, cnt)` of each chunk of images.
    fn chunks(&self, num: usize) -> impl Iterator<Item = (usize, usize)> {
        let nb = self.nb;
        (0..num).step_by(nb).map(move |n0| (n0, nb.min(num - n0)))
    }

    /// Group `gi` of image `n` of `x`.
    fn group_image<'x>(&self, x: &'x [f32], n: usize, gi: usize) -> &'x [f32] {
        let (cg, plane) = (self.g.in_channels / self.d.group, self.g2.ih * self.g2.iw);
        &x[n * self.g.in_dim() + gi * cg * plane..][..cg * plane]
    }

    fn forward(
        &self,
        num: usize,
        x: &[f32],
        pw: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
        buf: &mut [f32],
    ) {
        let (d, od) = (self.d, self.g.out_dim());
        let alen = packed::a_len(d.ocg, d.kd);
        let cg = self.g.in_channels / d.group;
        for (n0, cnt) in self.chunks(num) {
            let nn = cnt * d.p;
            let (pb, rest) = buf.split_at_mut(packed::b_len(d.kd, nn));
            let c = &mut rest[..d.ocg * nn];
            for gi in 0..d.group {
                let fill = |j0: usize, j1: usize, panels: &mut [f32]| {
                    zero_tail_lanes(panels, d.kd, j1 - j0);
                    let mut row = vec![0f32; d.p];
                    for (i, qs) in images_in(j0, j1, d.p) {
                        let xg = self.group_image(x, n0 + i, gi);
                        let j = i * d.p + qs.start - j0;
                        self.g2.for_rows(cg, |r, ch, ki, kj| {
                            let src = col_row(&self.g2, self.one, xg, ch, ki, kj, &mut row);
                            put_row(panels, d.kd, r, j, &src[qs.clone()]);
                        });
                    }
                };
                packed::gemm_par_cols(d.ocg, nn, d.kd, &pw[gi * alen..], pb, c, nn, false, fill);
                let c = &*c;
                y[n0 * od..(n0 + cnt) * od]
                    .par_chunks_mut(od)
                    .enumerate()
                    .for_each(|(i, yn)| {
                        let rows =
                            yn[gi * d.ocg * d.p..(gi + 1) * d.ocg * d.p].chunks_exact_mut(d.p);
                        for (o, dst) in rows.enumerate() {
                            copy_short(dst, &c[o * nn + i * d.p..]);
                            if let Some(b) = bias {
                                let bv = b[gi * d.ocg + o];
                                dst.iter_mut().for_each(|v| *v += bv);
                            }
                        }
                    });
            }
        }
    }

    /// `dx = col2im(Wᵀ·dy)`, `pwt` holding Wᵀ packed per group.
    fn backward_data(&self, num: usize, dy: &[f32], pwt: &[f32], dx: &mut [f32], buf: &mut [f32]) {
        let (d, id, od) = (self.d, self.g.in_dim(), self.g.out_dim());
        let alen = packed::a_len(d.kd, d.ocg);
        let cg = self.g.in_channels / d.group;
        let gplane = cg * self.g2.ih * self.g2.iw;
        for (n0, cnt) in self.chunks(num) {
            let nn = cnt * d.p;
            let (pdy, rest) = buf.split_at_mut(packed::b_len(d.ocg, nn));
            let dcol = &mut rest[..d.kd * nn];
            for gi in 0..d.group {
                let fill = |j0: usize, j1: usize, panels: &mut [f32]| {
                    zero_tail_lanes(panels, d.ocg, j1 - j0);
                    for (i, qs) in images_in(j0, j1, d.p) {
                        let dyg = &dy[(n0 + i) * od + gi * d.ocg * d.p..];
                        let j = i * d.p + qs.start - j0;
                        for o in 0..d.ocg {
                            let src = &dyg[o * d.p..(o + 1) * d.p];
                            put_row(panels, d.ocg, o, j, &src[qs.clone()]);
                        }
                    }
                };
                packed::gemm_par_cols(
                    d.kd,
                    nn,
                    d.ocg,
                    &pwt[gi * alen..],
                    pdy,
                    dcol,
                    nn,
                    false,
                    fill,
                );
                let dcol = &*dcol;
                dx[n0 * id..(n0 + cnt) * id]
                    .par_chunks_mut(id)
                    .enumerate()
                    .for_each(|(i, dxn)| {
                        let dxg = &mut dxn[gi * gplane..(gi + 1) * gplane];
                        dxg.fill(0.0);
                        // col2im (Caffe's row order) from this image's columns.
                        self.g2.for_rows(cg, |r, ch, ki, kj| {
                            self.g2.add_row(&dcol[r * nn + i * d.p..], ch, ki, kj, dxg)
                        });
                    });
            }
        }
    }

    /// `dw += Σ_n dy_n · col(x_n)ᵀ` with K = the positions of a chunk of
    /// images; chunks in order, so the sums do not depend on threading.
    fn backward_filter(&self, num: usize, x: &[f32], dy: &[f32], dw: &mut [f32], buf: &mut [f32]) {
        let (d, od) = (self.d, self.g.out_dim());
        let (kh, kw) = (self.g2.kh, self.g2.kw);
        for (n0, cnt) in self.chunks(num) {
            let nn = cnt * d.p;
            let (pdy, rest) = buf.split_at_mut(packed::a_len(d.ocg, nn));
            let pcol = &mut rest[..packed::b_len(nn, d.kd)];
            for gi in 0..d.group {
                // A = dy of the chunk: row o, column (i, q) = dy_i[o·p + q],
                // packed in panels of MR rows ([column][MR]).
                pdy.par_chunks_mut(packed::MR * nn)
                    .enumerate()
                    .for_each(|(ip, panel)| {
                        let rows = (d.ocg - ip * packed::MR).min(packed::MR);
                        if rows < packed::MR {
                            panel.fill(0.0);
                        }
                        for r in 0..rows {
                            let o = gi * d.ocg + ip * packed::MR + r;
                            for i in 0..cnt {
                                let src = &dy[(n0 + i) * od + o * d.p..][..d.p];
                                let dst = panel[i * d.p * packed::MR + r..]
                                    .iter_mut()
                                    .step_by(packed::MR);
                                for (v, &s) in dst.zip(src) {
                                    *v = s;
                                }
                            }
                        }
                    });
                // B = the chunk's column matrices transposed (nn × kd):
                // tap t of image i at row i·p + q, lane t % NR.
                let fill = |t0: usize, t1: usize, panels: &mut [f32]| {
                    zero_tail_lanes(panels, nn, t1 - t0);
                    let mut row = vec![0f32; d.p];
                    for t in t0..t1 {
                        let (ch, ki, kj) = (t / (kh * kw), t / kw % kh, t % kw);
                        let off = (t - t0) / NR * nn * NR + (t - t0) % NR;
                        for i in 0..cnt {
                            let xg = self.group_image(x, n0 + i, gi);
                            let src = col_row(&self.g2, self.one, xg, ch, ki, kj, &mut row);
                            let dst = panels[off + i * d.p * NR..].iter_mut().step_by(NR);
                            for (v, &s) in dst.zip(src) {
                                *v = s;
                            }
                        }
                    }
                };
                let dwg = &mut dw[gi * d.ocg * d.kd..(gi + 1) * d.ocg * d.kd];
                packed::gemm_par_cols(d.ocg, d.kd, nn, pdy, pcol, dwg, d.kd, true, fill);
            }
        }
    }
}

impl ConvOps for CpuBackend {
    fn im2col(&self, g: &ConvGeometry, x: View, mut col: ViewMut) {
        im2col_host(g, x.host(g.in_dim()), col.host(g.col_len()));
    }

    fn col2im(&self, g: &ConvGeometry, col: View, mut x: ViewMut) {
        col2im_host(g, col.host(g.col_len()), x.host(g.in_dim()));
    }

    /// Packed weights, one buffer per concurrently running image, plus one
    /// weight-gradient partial per fixed image range (see `Plan`).
    fn conv_workspace_len(&self, g: &ConvGeometry, num: usize) -> usize {
        if Depthwise::new(g).is_some() {
            // The depthwise passes keep their own per-thread scratch; this
            // is what the generic bias gradient needs.
            return g.out_spatial();
        }
        Plan::new(g, num).len()
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
        if let Some(k) = Depthwise::new(g) {
            return k.forward(num, x, w, bias, y);
        }
        let Some(plan) = Plan::fit(g, num, ws.host_rest().len()) else {
            return generic::conv_forward(self, g, num, x, w, bias, y, ws);
        };
        let (id, od) = (g.in_dim(), g.out_dim());
        let x = x.host(num * id);
        let w = w.host(g.weight_len());
        let bias = bias.map(|b| b.host(g.out_channels));
        if plan.batch > 0 && g.out_spatial() < BATCH_P_FD {
            let (pw, buf, _) = plan.regions(ws.host_rest());
            pack_weights(g, w, pw);
            let b = Batched::new(g, plan.batch);
            return b.forward(num, x, pw, bias, y.host(num * od), buf);
        }
        let (pw, workers, _) = plan.split(ws.host_rest());
        pack_weights(g, w, pw);
        forward_images(g, num, x, pw, bias, y.host(num * od), &workers);
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
        if let Some(k) = Depthwise::new(g) {
            return k.backward_data(num, dy, w, dx);
        }
        let Some(plan) = Plan::fit(g, num, ws.host_rest().len()) else {
            return generic::conv_backward_data(self, g, num, dy, w, dx, ws);
        };
        let (id, od) = (g.in_dim(), g.out_dim());
        let d = Dims::new(g);
        let dy = dy.host(num * od);
        let w = w.host(g.weight_len());
        let batched = plan.batch > 0 && d.p < BATCH_P_FD;
        let (pwt, region, _) = plan.regions(ws.host_rest());
        if let Some(gt) = transposed(g).filter(|_| !batched) {
            let workers = Workers::new(region, &plan);
            pack_weights_transposed(g, &gt, w, pwt);
            return forward_images(&gt, num, dy, pwt, None, dx.host(num * id), &workers);
        }
        // A = Wᵀ per group: element (i, o) = w[o·kd + i].
        let alen = packed::a_len(d.kd, d.ocg);
        for gi in 0..d.group {
            let wg = &w[gi * d.ocg * d.kd..];
            packed::pack_a(d.kd, d.ocg, wg, 1, d.kd, &mut pwt[gi * alen..]);
        }
        let pwt = &*pwt;
        if batched {
            let (b, dx) = (Batched::new(g, plan.batch), dx.host(num * id));
            return b.backward_data(num, dy, pwt, dx, region);
        }
        let workers = Workers::new(region, &plan);
        if let Some(dr) = Direct::new(g) {
            // col2im fused into the GEMM: each tile of the column matrix
            // is added straight into the (padded) image.
            let cg = g.in_channels / d.group;
            let plane = dr.hp * dr.wp;
            return per_image(num, id, dx.host(num * id), &workers, |n, dxn, buf| {
                let dyn_ = &dy[n * od..(n + 1) * od];
                let (img, pdy) = buf.split_at_mut(dr.scratch_len(g));
                let dst: &mut [f32] = if dr.padded() { img } else { &mut *dxn };
                dst.fill(0.0);
                for gi in 0..d.group {
                    packed::pack_b(d.ocg, d.p, &dyn_[gi * d.ocg * d.p..], d.p, 1, pdy);
                    packed::gemm_scatter(
                        d.kd,
                        d.p,
                        d.ocg,
                        &pwt[gi * alen..],
                        pdy,
                        &mut dst[gi * cg * plane..],
                        &dr.off,
                        &dr.halves,
                    );
                }
                if dr.padded() {
                    dr.crop_image(img, g.in_channels, dxn);
                }
            });
        }
        let col_len = if g.is_1x1() { 0 } else { g.col_len() };
        per_image(num, id, dx.host(num * id), &workers, |n, dxn, buf| {
            let dyn_ = &dy[n * od..(n + 1) * od];
            let (col, pdy) = buf.split_at_mut(col_len);
            for gi in 0..d.group {
                let dyg = &dyn_[gi * d.ocg * d.p..];
                packed::pack_b(d.ocg, d.p, dyg, d.p, 1, pdy);
                // 1×1: the columns are the image, so dx is written directly.
                let dst = if g.is_1x1() {
                    &mut dxn[gi * d.kd * d.p..]
                } else {
                    &mut col[gi * d.kd * d.p..]
                };
                packed::gemm(d.kd, d.p, d.ocg, &pwt[gi * alen..], pdy, dst, d.p, false);
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
        dw: ViewMut,
        ws: ViewMut,
    ) {
        backward_filter(self, g, num, x, dy, dw, None, ws)
    }

    fn conv_backward_filter_bias(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        dy: View,
        dw: ViewMut,
        db: ViewMut,
        ws: ViewMut,
    ) {
        backward_filter(self, g, num, x, dy, dw, Some(db), ws)
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
            engine: Default::default(),
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
            // More than FILTER_Q output positions on the im2col path (strided,
            // or rows not a multiple of 8): the filter gradient in chunks that
            // end mid-row; kd = 363 (CaffeNet conv1's) and kd % 16 = 2.
            geom(3, &[41, 37], 4, &[5, 5], &[2, 2], &[2, 2], &[1, 1], 1),
            geom(4, &[20, 23], 6, &[3, 3], &[1, 1], &[0, 0], &[2, 2], 2),
            geom(3, &[99, 99], 5, &[11, 11], &[4, 4], &[0, 0], &[1, 1], 1),
            // Forward in chunks of output positions (forward_chunk), groups.
            geom(6, &[60, 50], 4, &[7, 7], &[2, 2], &[3, 3], &[1, 1], 2),
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
                // Each value sums num·p products in two different f32 orders:
                // the rounding difference grows like the square root of that.
                let terms = (num * g.out_spatial()) as f32;
                let tol = 1e-5 * (terms / 64.0).sqrt().max(1.0);
                close(&dw.read(w.len()), &dwg.read(w.len()), tol);
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
                        let s: f64 = (0..num)
                            .flat_map(|n| &dy[(n * oc + o) * os..][..os])
                            .map(|&v| v as f64)
                            .sum();
                        (0.5 + s) as f32
                    })
                    .collect();
                // f32 sums of num·os values: rounding grows like the root.
                let tol = 1e-5 * ((num * os) as f32 / 64.0).sqrt().max(1.0);
                close(&db.read(oc), &want, tol);
                close(&dbg.read(oc), &want, tol);
                // Fused filter and bias passes: the same dW, the same db sums.
                let mut dw2 = Buffer::from_vec(vec![1.0; w.len()]);
                let mut db2 = Buffer::from_vec(vec![0.5; oc]);
                be.conv_backward_filter_bias(
                    &g,
                    num,
                    xb.view(),
                    dyb.view(),
                    dw2.view_mut(),
                    db2.view_mut(),
                    ws.view_mut(),
                );
                assert_eq!(dw2.read(w.len()), dw.read(w.len()), "{g:?}");
                close(&db2.read(oc), &want, tol);
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
        // A workspace too small for the CPU plan runs the generic passes.
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

    /// Run `f` with the batched passes switched off (`false`) or on for
    /// every small plane (`true`) on this thread.
    fn with_batching<R>(on: bool, f: impl FnOnce() -> R) -> R {
        FORCE_BATCH.with(|v| v.set(Some(on)));
        let r = f();
        FORCE_BATCH.with(|v| v.set(None));
        r
    }

    #[test]
    fn first_layers_run_forward_in_chunks() {
        let conv1 = geom(3, &[227, 227], 96, &[11, 11], &[4, 4], &[0, 0], &[1, 1], 1);
        assert_eq!(forward_chunk(&conv1), Some(176));
        for g in geometries() {
            if g.num_spatial_axes() == 2 && g.in_shape[0] >= 60 {
                assert!(forward_chunk(&g).is_some(), "{g:?}");
            }
        }
        let deep = geom(256, &[56, 56], 64, &[3, 3], &[2, 2], &[1, 1], &[1, 1], 1);
        assert_eq!(forward_chunk(&deep), None);
    }

    #[test]
    fn only_small_planes_with_large_filters_run_batched() {
        // ResNet-50 res5 3×3 (512×4608 weights, 7×7) batches; LeNet's
        // conv2 (50×500, 8×8) and a large plane do not.
        let res5 = geom(512, &[7, 7], 512, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1);
        let lenet = geom(20, &[12, 12], 50, &[5, 5], &[1, 1], &[0, 0], &[1, 1], 1);
        let big = geom(64, &[56, 56], 64, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1);
        assert_eq!(batch_images(&res5, 8), Some(8));
        assert_eq!(batch_images(&lenet, 64), None);
        assert_eq!(batch_images(&big, 8), None);
    }

    /// Forward, data and filter gradient (dw starting from ones).
    fn passes(be: &CpuBackend, g: &ConvGeometry, num: usize, seed: u64) -> [Vec<f32>; 3] {
        let mut ws = be.alloc(be.conv_workspace_len(g, num));
        passes_in(be, g, num, seed, &mut ws)
    }

    /// `passes` with the workspace given.
    fn passes_in(
        be: &CpuBackend,
        g: &ConvGeometry,
        num: usize,
        seed: u64,
        ws: &mut Buffer,
    ) -> [Vec<f32>; 3] {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = Buffer::from_vec(rand_vec(num * g.in_dim(), &mut rng));
        let w = Buffer::from_vec(rand_vec(g.weight_len(), &mut rng));
        let b = Buffer::from_vec(rand_vec(g.out_channels, &mut rng));
        let dy = Buffer::from_vec(rand_vec(num * g.out_dim(), &mut rng));
        let mut y = Buffer::from_vec(vec![f32::NAN; num * g.out_dim()]);
        let mut dx = Buffer::from_vec(vec![f32::NAN; num * g.in_dim()]);
        let mut dw = Buffer::from_vec(vec![1.0; g.weight_len()]);
        be.conv_forward(
            g,
            num,
            x.view(),
            w.view(),
            Some(b.view()),
            y.view_mut(),
            ws.view_mut(),
        );
        be.conv_backward_data(g, num, dy.view(), w.view(), dx.view_mut(), ws.view_mut());
        be.conv_backward_filter(g, num, x.view(), dy.view(), dw.view_mut(), ws.view_mut());
        [
            y.read(num * g.out_dim()),
            dx.read(num * g.in_dim()),
            dw.read(g.weight_len()),
        ]
    }

    /// The net shares one workspace among its layers (`Ctx::workspace`):
    /// a pass must not depend on what an earlier pass, or another layer's,
    /// left in it, nor on it being exactly its own size.
    #[test]
    fn passes_do_not_depend_on_the_workspace_contents() {
        let be = CpuBackend::new();
        for g in geometries() {
            for batched in [false, true] {
                let num = 3;
                let clean = with_batching(batched, || passes(&be, &g, num, 21));
                let reused = with_batching(batched, || {
                    // Sized for this plan (batching changes it), and more.
                    let len = be.conv_workspace_len(&g, num) + 1000;
                    passes_in(&be, &g, num, 21, &mut Buffer::from_vec(vec![f32::NAN; len]))
                });
                for (a, b) in clean.iter().zip(&reused) {
                    assert_eq!(
                        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{g:?} batched={batched}"
                    );
                }
            }
        }
    }

    #[test]
    fn batched_passes_match_the_per_image_passes() {
        let be = CpuBackend::new();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let gs = [
            // ResNet-like 3×3 at 7×7 (p = 49: panels straddle images).
            geom(24, &[7, 7], 30, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1),
            // Groups, pad, stride 2, rectangular.
            geom(6, &[11, 9], 8, &[3, 3], &[2, 2], &[1, 1], &[1, 1], 2),
            // 1×1 (columns read in place), 1×1 with stride 2.
            geom(20, &[7, 7], 13, &[1, 1], &[1, 1], &[0, 0], &[1, 1], 1),
            geom(8, &[9, 9], 5, &[1, 1], &[2, 2], &[0, 0], &[1, 1], 1),
            // Dilation; output rows of 8 (the per-image Direct paths).
            geom(3, &[10, 12], 7, &[3, 3], &[1, 1], &[2, 2], &[2, 2], 1),
            geom(5, &[8, 8], 6, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1),
            // kd = 9·40 > KC, ocg > MC.
            geom(40, &[5, 5], 130, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1),
            // p = 255, just under the threshold: one image per GEMM.
            geom(2, &[15, 17], 3, &[1, 1], &[1, 1], &[0, 0], &[1, 1], 1),
        ];
        for (s, g) in gs.iter().enumerate() {
            assert!(
                with_batching(true, || batch_images(g, 1)).is_some(),
                "{g:?}"
            );
            // 25 images of p = 49 give two GEMMs (13 + 12 images).
            for num in [1, 3, 8, 25] {
                let seed = 100 + s as u64;
                let want = with_batching(false, || passes(&be, g, num, seed));
                let got = with_batching(true, || passes(&be, g, num, seed));
                for (pass, (got, want)) in got.iter().zip(&want).enumerate() {
                    // Sums over up to 25·49 products in another order.
                    let tol = if pass == 2 { 1e-4 } else { 1e-5 };
                    close(got, want, tol);
                }
                // Thread-count independent, bit for bit (filter included).
                let batched = || with_batching(true, || passes(&be, g, num, seed));
                assert_eq!(one.install(batched), got, "{g:?}");
                assert_eq!(three.install(batched), got, "{g:?}");
            }
        }
    }
}
