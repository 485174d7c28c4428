//! A small packed single-precision GEMM for the convolution passes.
//!
//! The convolution GEMMs are small (M = output channels, 20–64; N = output
//! positions or kernel_dim; K up to ~1000) and run once per image. A general
//! GEMM repacks both operands on every call; here the callers pack them
//! once, in the layout the micro-kernel reads, and usually as a side effect
//! of work they do anyway: the weights once per pass, the column matrix
//! while im2col writes it (see `conv.rs`). The kernel then only streams.
//!
//! Layouts (`MR` = 6 rows, `NR` = 16 columns):
//! - packed A (m×k): `m.div_ceil(MR)` panels; panel `i` holds rows
//!   `i·MR .. i·MR + MR` as `[k][MR]` (rows past `m` are zero);
//! - packed B (k×n): `n.div_ceil(NR)` panels; panel `j` holds columns
//!   `j·NR .. j·NR + NR` as `[k][NR]` (columns past `n` are zero).
//!
//! Besides packed operands, the kernel can read B rows through an offset
//! table (`gemm_indirect`: a convolution's input image read in place), read
//! A rows in place (`gemm_rows_indirect`: the filter gradient), and add C
//! into an image through an offset table (`gemm_scatter`: col2im fused in),
//! so the common convolutions never build a column matrix.
//!
//! The 6×16 tile keeps 12 eight-wide accumulators in registers with AVX2
//! and FMA (chosen at run time); other CPUs run a portable tile.

/// Rows of a packed-A panel (rows of one C tile).
pub(crate) const MR: usize = 6;
/// Columns of a packed-B panel (columns of one C tile).
pub(crate) const NR: usize = 16;
/// K values per block: a 16-column B sliver of this depth (16 KiB) stays in
/// L1 while the A panels stream past it.
const KC: usize = 256;
/// Rows of A per M block at most: an MC×KC block of packed A (144 KiB)
/// stays in L2 while every column panel streams past it, so
/// a large A is read from memory once per K block, not once per panel.
const MC: usize = 144;

/// Values of packed A for an m×k matrix.
pub(crate) fn a_len(m: usize, k: usize) -> usize {
    m.div_ceil(MR) * MR * k
}

/// Values of packed B for a k×n matrix.
pub(crate) fn b_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * NR * k
}

/// Pack A (m×k), element `(i, p)` at `a[i·rs + p·cs]`, into `out`.
pub(crate) fn pack_a(m: usize, k: usize, a: &[f32], rs: usize, cs: usize, out: &mut [f32]) {
    if k == 0 {
        return;
    }
    let out = &mut out[..a_len(m, k)];
    for (ip, panel) in out.chunks_exact_mut(MR * k).enumerate() {
        let rows = (m - ip * MR).min(MR);
        if rows < MR {
            panel.fill(0.0);
        }
        for r in 0..rows {
            let row = (ip * MR + r) * rs;
            for (p, dst) in panel.iter_mut().skip(r).step_by(MR).enumerate() {
                *dst = a[row + p * cs];
            }
        }
    }
}

/// Pack B (k×n), element `(p, j)` at `b[p·rs + j·cs]`, into `out`.
pub(crate) fn pack_b(k: usize, n: usize, b: &[f32], rs: usize, cs: usize, out: &mut [f32]) {
    if k == 0 {
        return;
    }
    let out = &mut out[..b_len(k, n)];
    for (jp, panel) in out.chunks_exact_mut(NR * k).enumerate() {
        let j0 = jp * NR;
        let cols = (n - j0).min(NR);
        if cs == 1 && cols == NR {
            // Fixed-size copies (two vector moves, not a memcpy call each).
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let src: &[f32; NR] = b[p * rs + j0..][..NR].try_into().unwrap();
                dst.copy_from_slice(src);
            }
        } else if cs == 1 {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst[..cols].copy_from_slice(&b[p * rs + j0..p * rs + j0 + cols]);
                dst[cols..].fill(0.0);
            }
        } else {
            // Column by column: a transposed source (rs = 1) is read in
            // order, the panel written with stride NR.
            if cols < NR {
                for dst in panel.chunks_exact_mut(NR) {
                    dst[cols..].fill(0.0);
                }
            }
            #[cfg(target_arch = "x86_64")]
            if rs == 1 && cols == NR && k >= 8 && std::is_x86_feature_detected!("avx") {
                // A full panel of a transposed source: 16 rows of the
                // source, read in runs of 8 and turned by 8×8 transposes.
                let src: [&[f32]; NR] = std::array::from_fn(|c| &b[(j0 + c) * cs..][..k]);
                // SAFETY: the CPU has AVX (checked above); `src` rows are
                // k long and `panel` is k×NR, as `x86::pack_t16` needs.
                unsafe { x86::pack_t16(k, &src, panel) };
                continue;
            }
            for c in 0..cols {
                let col = (j0 + c) * cs;
                if rs == 1 {
                    let src = &b[col..col + k];
                    for (row, &v) in panel.chunks_exact_mut(NR).zip(src) {
                        row[c] = v;
                    }
                } else {
                    for (row, p) in panel.chunks_exact_mut(NR).zip(0..k) {
                        row[c] = b[col + p * rs];
                    }
                }
            }
        }
    }
}

/// Where the micro-kernel reads B: packed panels, or rows of a source
/// matrix through an offset table (see `gemm_indirect`).
#[derive(Clone, Copy)]
enum BSrc<'a> {
    Packed(&'a [f32]),
    Indirect {
        src: &'a [f32],
        off: &'a [usize],
        halves: &'a [usize],
    },
}

/// `C = A·B` (or `C += A·B` when `accumulate`) from packed operands; C is
/// m×n with row stride `ldc`. Sums run over k in order within each KC
/// block, blocks in order (deterministic, independent of threading).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    pa: &[f32],
    pb: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(pb.len() >= b_len(k, n), "packed gemm operand too short");
    let c = CDst::dense(m, n, c, ldc, accumulate);
    run(m, n, k, pa, BSrc::Packed(pb), c);
}

/// `gemm` with B packed on the fly and the work split over column panels
/// run as rayon tasks: `fill(j0, j1, panels)` writes columns `j0..j1` of
/// packed B (`j0` a multiple of NR) into `panels` (their panels, `k` deep)
/// just before the task multiplies them, so each task's panels are still
/// in cache. `pb` holds packed B (`b_len(k, n)`). Every element of C is
/// one tile's sum over k, so the result does not depend on the split.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_par_cols(
    m: usize,
    n: usize,
    k: usize,
    pa: &[f32],
    pb: &mut [f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    fill: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    use rayon::prelude::*;
    let dst = CDst::dense(m, n, c, ldc, accumulate);
    if m == 0 || n == 0 || k == 0 {
        return run(m, n, k, pa, BSrc::Packed(&[]), dst);
    }
    assert!(
        pa.len() >= a_len(m, k) && pb.len() >= b_len(k, n),
        "packed gemm operand too short"
    );
    let c = SendPtr(c.as_mut_ptr());
    // A few tasks per thread (for balance on a busy machine), each at
    // least 4 panels wide: every task streams all of A once.
    let panels = n.div_ceil(NR);
    let tasks = (2 * rayon::current_num_threads())
        .min(panels.div_ceil(4))
        .max(1);
    let per = panels.div_ceil(tasks);
    pb[..b_len(k, n)]
        .par_chunks_mut(per * NR * k)
        .enumerate()
        .for_each(|(t, chunk)| {
            let j0 = t * per * NR;
            let j1 = (j0 + per * NR).min(n);
            fill(j0, j1, chunk);
            let c = &c;
            // SAFETY: tasks write disjoint column ranges of C, whose
            // extent `CDst::dense` checked.
            let dst = CDst::Dense {
                c: unsafe { c.0.add(j0) },
                ldc,
                accumulate,
            };
            run(m, j1 - j0, k, pa, BSrc::Packed(chunk), dst);
        });
}

/// C's base pointer, shared by tasks that write disjoint columns.
struct SendPtr(*mut f32);
// SAFETY: only used by `gemm_par_cols`, whose tasks write disjoint
// elements.
unsafe impl Sync for SendPtr {}

/// `C = A·B` (or `+=`) with B read in place from `src`: element `(p, j)`
/// of B is `src[off[p] + halves[j / 8] + j % 8]`. The columns come in
/// groups of 8 that are contiguous in `src` (n must be a multiple of 8);
/// a convolution reads its input image this way without im2col: `off[p]`
/// is the offset of kernel tap `p`, `halves[g]` the start of 8 output
/// positions on one output row.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_indirect(
    m: usize,
    n: usize,
    k: usize,
    pa: &[f32],
    src: &[f32],
    off: &[usize],
    halves: &[usize],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(n.is_multiple_of(8) && off.len() >= k && halves.len() >= n / 8);
    let reach = off[..k].iter().max().copied().unwrap_or(0)
        + halves[..n / 8].iter().max().copied().unwrap_or(0)
        + 8;
    assert!(
        k == 0 || n == 0 || reach <= src.len(),
        "indirect gemm source too short"
    );
    let b = BSrc::Indirect { src, off, halves };
    let c = CDst::dense(m, n, c, ldc, accumulate);
    run(m, n, k, pa, b, c);
}

/// `C += A·B` where B (k×n, k = `oh·ow`) is packed and A (m×k) is read in
/// place: `A(i, q) = src[off[i] + (q / ow)·row_step + q % ow]`. This is a
/// convolution's filter gradient with the roles of taps and outputs as
/// rows of C (`C = dWᵀ`): `off[i]` is the offset of kernel tap `i`, `q` an
/// output position, `src` the (padded) image — no column matrix is built.
/// Sums run over q in order (deterministic).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_rows_indirect(
    m: usize,
    n: usize,
    oh: usize,
    ow: usize,
    row_step: usize,
    src: &[f32],
    off: &[usize],
    pb: &[f32],
    c: &mut [f32],
    ldc: usize,
) {
    let k = oh * ow;
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let reach = off[..m].iter().max().copied().unwrap_or(0) + (oh - 1) * row_step + ow;
    assert!(
        reach <= src.len() && pb.len() >= b_len(k, n) && ldc >= n && c.len() >= (m - 1) * ldc + n,
        "indirect gemm operand too short"
    );
    let (src, off, pb, c) = (src.as_ptr(), off.as_ptr(), pb.as_ptr(), c.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked above); every
            // address read or written was checked above.
            unsafe { rows_indirect_avx2(m, n, oh, ow, row_step, src, off, pb, c, ldc) };
            return;
        }
    }
    // SAFETY: every address read or written was checked above.
    unsafe { rows_indirect_body::<false>(m, n, oh, ow, row_step, src, off, pb, c, ldc) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_indirect_avx2(
    m: usize,
    n: usize,
    oh: usize,
    ow: usize,
    row_step: usize,
    src: *const f32,
    off: *const usize,
    pb: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    rows_indirect_body::<true>(m, n, oh, ow, row_step, src, off, pb, c, ldc)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_indirect_body<const AVX2: bool>(
    m: usize,
    n: usize,
    oh: usize,
    ow: usize,
    row_step: usize,
    src: *const f32,
    off: *const usize,
    pb: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    let k = oh * ow;
    for jp in 0..n.div_ceil(NR) {
        let cols = (n - jp * NR).min(NR);
        let b = pb.add(jp * k * NR);
        for ip in 0..m.div_ceil(MR) {
            let ct = c.add(ip * MR * ldc + jp * NR);
            let o = off.add(ip * MR);
            macro_rules! go {
                ($r:literal) => {{
                    let t = |i: usize| -> [*const f32; $r] {
                        let base = src.add(i * row_step);
                        std::array::from_fn(|r| base.add(*o.add(r)))
                    };
                    #[cfg(target_arch = "x86_64")]
                    if AVX2 {
                        // A last panel of ≤ 8 columns (ocg = 20, 50 …)
                        // runs half-width: no FMAs on the zero padding.
                        if cols <= 8 {
                            x86::tile_rows_indirect::<$r, true>(oh, ow, t, b, ct, ldc, cols);
                        } else {
                            x86::tile_rows_indirect::<$r, false>(oh, ow, t, b, ct, ldc, cols);
                        }
                        continue;
                    }
                    tile_rows_indirect::<$r>(oh, ow, t, b, ct, ldc, cols);
                }};
            }
            match (m - ip * MR).min(MR) {
                6 => go!(6),
                5 => go!(5),
                4 => go!(4),
                3 => go!(3),
                2 => go!(2),
                _ => go!(1),
            }
        }
    }
}

/// R×NR tile of `C +=` over `oh` rows of `ow` positions: `rows(i)` gives
/// the R row pointers of A for output row `i` (consecutive positions are
/// consecutive values); B is packed (steps by NR). Portable version.
#[inline(always)]
unsafe fn tile_rows_indirect<const R: usize>(
    oh: usize,
    ow: usize,
    rows: impl Fn(usize) -> [*const f32; R],
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[0f32; NR]; R];
    let mut bp = b;
    for i in 0..oh {
        let a = rows(i);
        for j in 0..ow {
            let bv = &*(bp as *const [f32; NR]);
            for r in 0..R {
                let av = *a[r].add(j);
                for (x, &y) in acc[r].iter_mut().zip(bv) {
                    *x += av * y;
                }
            }
            bp = bp.add(NR);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
        for (d, &v) in row.iter_mut().zip(acc) {
            *d += v;
        }
    }
}

/// `dst[off[i] + halves[j / 8] + j % 8] += (A·B)(i, j)` from packed A and
/// B: C scattered straight into an image (n a multiple of 8). This is
/// col2im fused into the data-gradient GEMM of a convolution: row `i` of C
/// is kernel tap `i`, whose column-matrix row lands in the image at offset
/// `off[i]`, and each run of 8 output positions at `halves[g]`. Rows that
/// overlap in `dst` are summed tile by tile (within a tile, over k in order).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_scatter(
    m: usize,
    n: usize,
    k: usize,
    pa: &[f32],
    pb: &[f32],
    dst: &mut [f32],
    off: &[usize],
    halves: &[usize],
) {
    assert!(n.is_multiple_of(8) && off.len() >= m && halves.len() >= n / 8);
    assert!(pb.len() >= b_len(k, n), "packed gemm operand too short");
    if m == 0 || n == 0 {
        return;
    }
    let reach = off[..m].iter().max().copied().unwrap_or(0)
        + halves[..n / 8].iter().max().copied().unwrap_or(0)
        + 8;
    assert!(reach <= dst.len(), "scatter gemm destination too short");
    let (off, halves) = (off.as_ptr(), halves.as_ptr());
    run(
        m,
        n,
        k,
        pa,
        BSrc::Packed(pb),
        CDst::Scatter { dst, off, halves },
    );
}

/// Where `run` puts C: rows of a matrix (m rows of n values from `c`,
/// row stride `ldc`), or scattered (`gemm_scatter`).
enum CDst<'a> {
    Dense {
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    },
    Scatter {
        dst: &'a mut [f32],
        off: *const usize,
        halves: *const usize,
    },
}

impl CDst<'_> {
    /// The m×n matrix at the start of `c`, checked to fit.
    fn dense(m: usize, n: usize, c: &mut [f32], ldc: usize, accumulate: bool) -> CDst<'_> {
        assert!(
            m == 0 || n == 0 || (ldc >= n && c.len() >= (m - 1) * ldc + n),
            "gemm output too short"
        );
        CDst::Dense {
            c: c.as_mut_ptr(),
            ldc,
            accumulate,
        }
    }
}

/// Where one tile's values go: `Dense`, the first `cols` columns of R rows
/// at `c` (row stride `ldc`), written or added; `Scatter`, row `r` added at
/// `base + off[r]`, columns 0..8 at `+ h0` and 8..16 (when `cols` > 8) at
/// `+ h1`.
#[derive(Clone, Copy)]
enum Out {
    Dense {
        c: *mut f32,
        ldc: usize,
        cols: usize,
        acc: bool,
    },
    Scatter {
        base: *mut f32,
        off: *const usize,
        h0: usize,
        h1: usize,
        cols: usize,
    },
}

/// Store one tile (rows of 16 values: `row(r)`) as `out` says.
#[inline(always)]
unsafe fn store_tile<const R: usize>(out: Out, row: impl Fn(usize) -> [f32; NR]) {
    match out {
        Out::Dense { c, ldc, cols, acc } => {
            for r in 0..R {
                let v = row(r);
                let dst = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
                if acc {
                    for (d, &x) in dst.iter_mut().zip(&v) {
                        *d += x;
                    }
                } else {
                    dst.copy_from_slice(&v[..cols]);
                }
            }
        }
        Out::Scatter {
            base,
            off,
            h0,
            h1,
            cols,
        } => {
            for r in 0..R {
                let v = row(r);
                let p = base.add(*off.add(r));
                let lo = std::slice::from_raw_parts_mut(p.add(h0), 8);
                for (d, &x) in lo.iter_mut().zip(&v[..8]) {
                    *d += x;
                }
                if cols > 8 {
                    let hi = std::slice::from_raw_parts_mut(p.add(h1), 8);
                    for (d, &x) in hi.iter_mut().zip(&v[8..]) {
                        *d += x;
                    }
                }
            }
        }
    }
}

/// Length checks and dispatch to the widest kernel the CPU has.
#[allow(clippy::too_many_arguments)]
fn run(m: usize, n: usize, k: usize, pa: &[f32], b: BSrc, mut c: CDst) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(pa.len() >= a_len(m, k), "packed gemm operand too short");
    if let CDst::Dense { c, ldc, accumulate } = &mut c {
        if k == 0 && !*accumulate {
            for i in 0..m {
                // SAFETY: C's extent was checked by `CDst::dense`.
                unsafe { std::slice::from_raw_parts_mut(c.add(i * *ldc), n) }.fill(0.0);
            }
        }
    }
    if k == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked above); operand
            // lengths were checked against the addressed ranges.
            unsafe { run_avx2(m, n, k, pa, b, c) };
            return;
        }
    }
    // SAFETY: operand lengths were checked against the addressed ranges.
    unsafe { body::<false>(m, n, k, pa, b, c) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn run_avx2(m: usize, n: usize, k: usize, pa: &[f32], b: BSrc, c: CDst) {
    body::<true>(m, n, k, pa, b, c)
}

/// The blocked loop around the micro-kernel (`AVX2`: the AVX2/FMA tile,
/// else the portable one).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn body<const AVX2: bool>(m: usize, n: usize, k: usize, pa: &[f32], b: BSrc, c: CDst) {
    // Equal blocks no deeper than KC (e.g. 800 → 4 × 200, not 3 × 256 + 32).
    let blocks = k.div_ceil(KC);
    let kc = k.div_ceil(blocks);
    let pa = pa.as_ptr();
    let (c, ldc, accumulate) = match c {
        CDst::Dense { c, ldc, accumulate } => (Ok(c), ldc, accumulate),
        CDst::Scatter { dst, off, halves } => (Err((dst.as_mut_ptr(), off, halves)), 0, true),
    };
    // M blocks (GotoBLAS order: K block, M block, column panel, row
    // panel). A scattered C keeps one block: its tiles may overlap in the
    // destination, and their order fixes the rounding.
    // Equal blocks of whole row panels (256 rows → 2 × 128, not 144 + 112).
    let mc = if c.is_ok() {
        let blocks = m.div_ceil(MC);
        m.div_ceil(blocks).next_multiple_of(MR)
    } else {
        m.next_multiple_of(MR)
    }
    .max(MR);
    let mut p0 = 0;
    while p0 < k {
        let kb = (k - p0).min(kc);
        let acc = accumulate || p0 > 0;
        for i0 in (0..m).step_by(mc) {
            let ips = i0 / MR..(i0 + mc).min(m).div_ceil(MR);
            for jp in 0..n.div_ceil(NR) {
                let cols = (n - jp * NR).min(NR);
                for ip in ips.clone() {
                    let a = pa.add(ip * k * MR + p0 * MR);
                    let ct = match c {
                        Ok(c) => Out::Dense {
                            c: c.add(ip * MR * ldc + jp * NR),
                            ldc,
                            cols,
                            acc,
                        },
                        Err((base, off, halves)) => Out::Scatter {
                            base,
                            off: off.add(ip * MR),
                            h0: *halves.add(2 * jp),
                            h1: if cols > 8 { *halves.add(2 * jp + 1) } else { 0 },
                            cols,
                        },
                    };
                    let rows = (m - ip * MR).min(MR);
                    match b {
                        BSrc::Packed(pb) => {
                            let b0 = pb.as_ptr().add(jp * k * NR + p0 * NR);
                            let rowp = |p: usize| (b0.add(p * NR), b0.add(p * NR + 8));
                            tile_rows::<AVX2>(rows, kb, a, rowp, ct);
                        }
                        BSrc::Indirect { src, off, halves } => {
                            let h0 = src.as_ptr().add(halves[2 * jp]);
                            // A last panel of 8 columns reads its half twice.
                            let h1 = src.as_ptr().add(halves[(2 * jp + 1).min(n / 8 - 1)]);
                            let off = off.as_ptr().add(p0);
                            let rowp = |p: usize| {
                                let o = *off.add(p);
                                (h0.add(o), h1.add(o))
                            };
                            tile_rows::<AVX2>(rows, kb, a, rowp, ct);
                        }
                    }
                }
            }
        }
        p0 += kb;
    }
}

/// `tile` for 1..=MR rows, AVX2 or portable.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_rows<const AVX2: bool>(
    rows: usize,
    k: usize,
    a: *const f32,
    b: impl Fn(usize) -> (*const f32, *const f32),
    out: Out,
) {
    macro_rules! go {
        ($r:literal) => {{
            #[cfg(target_arch = "x86_64")]
            if AVX2 {
                return x86::tile::<$r>(k, a, b, out);
            }
            tile::<$r>(k, a, b, out)
        }};
    }
    match rows {
        6 => go!(6),
        5 => go!(5),
        4 => go!(4),
        3 => go!(3),
        2 => go!(2),
        _ => go!(1),
    }
}

/// One R×NR tile of C over `k` values: `a` steps by MR; `b(p)` gives the
/// two 8-value halves of B's row `p`; the first `cols` columns of the R
/// rows at `c` (row stride `ldc`) are written or accumulated into.
/// Portable version (plain multiply and add).
#[inline(always)]
unsafe fn tile<const R: usize>(
    k: usize,
    a: *const f32,
    b: impl Fn(usize) -> (*const f32, *const f32),
    out: Out,
) {
    let mut acc = [[0f32; NR]; R];
    for p in 0..k {
        let (b0, b1) = b(p);
        let (b0, b1) = (&*(b0 as *const [f32; 8]), &*(b1 as *const [f32; 8]));
        let av = &*(a.add(p * MR) as *const [f32; MR]);
        for r in 0..R {
            for j in 0..8 {
                acc[r][j] += av[r] * b0[j];
                acc[r][j + 8] += av[r] * b1[j];
            }
        }
    }
    store_tile::<R>(out, |r| acc[r]);
}

/// The AVX2/FMA tile: 2·R eight-wide accumulators stay in registers (the
/// auto-vectorised portable tile spills for some R, so this one is
/// written with intrinsics).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Out, MR, NR};
    use std::arch::x86_64::*;

    /// Same contract as `super::tile`; only called from AVX2+FMA code.
    #[inline(always)]
    pub(super) unsafe fn tile<const R: usize>(
        k: usize,
        a: *const f32,
        b: impl Fn(usize) -> (*const f32, *const f32),
        out: Out,
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        for p in 0..k {
            let (b0, b1) = b(p);
            let (v0, v1) = (_mm256_loadu_ps(b0), _mm256_loadu_ps(b1));
            let ap = a.add(p * MR);
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*ap.add(r));
                lo[r] = _mm256_fmadd_ps(av, v0, lo[r]);
                hi[r] = _mm256_fmadd_ps(av, v1, hi[r]);
            }
        }
        match out {
            Out::Dense { c, ldc, cols, acc } => store::<R>(lo, hi, c, ldc, cols, acc),
            Out::Scatter {
                base,
                off,
                h0,
                h1,
                cols,
            } => {
                for r in 0..R {
                    let p = base.add(*off.add(r));
                    let d = p.add(h0);
                    _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), lo[r]));
                    if cols > 8 {
                        let d = p.add(h1);
                        _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), hi[r]));
                    }
                }
            }
        }
    }

    /// Packs one full B panel from 16 source columns stored as rows
    /// (`src[c][p]` is B(p, c)) into `panel` (`[k][NR]`). Needs AVX, rows
    /// of length ≥ k and a panel of length ≥ k·NR.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn pack_t16(k: usize, src: &[&[f32]; NR], panel: &mut [f32]) {
        let out = panel.as_mut_ptr();
        let k8 = k / 8 * 8;
        for p in (0..k8).step_by(8) {
            for half in 0..2 {
                let r: [__m256; 8] =
                    std::array::from_fn(|i| _mm256_loadu_ps(src[half * 8 + i].as_ptr().add(p)));
                // 8×8 transpose: pairs, then quads, then 128-bit halves.
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let cols = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (q, v) in cols.into_iter().enumerate() {
                    _mm256_storeu_ps(out.add((p + q) * NR + half * 8), v);
                }
            }
        }
        for p in k8..k {
            for (c, row) in src.iter().enumerate() {
                *out.add(p * NR + c) = row[p];
            }
        }
    }

    /// Same contract as `super::tile_rows_indirect`; only called from
    /// AVX2+FMA code.
    #[inline(always)]
    /// `HALF`: only the first 8 columns (`cols` ≤ 8) are computed.
    pub(super) unsafe fn tile_rows_indirect<const R: usize, const HALF: bool>(
        oh: usize,
        ow: usize,
        rows: impl Fn(usize) -> [*const f32; R],
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let mut bp = b;
        for i in 0..oh {
            let a = rows(i);
            for j in 0..ow {
                let v0 = _mm256_loadu_ps(bp);
                if HALF {
                    for r in 0..R {
                        let av = _mm256_broadcast_ss(&*a[r].add(j));
                        lo[r] = _mm256_fmadd_ps(av, v0, lo[r]);
                    }
                } else {
                    let v1 = _mm256_loadu_ps(bp.add(8));
                    for r in 0..R {
                        let av = _mm256_broadcast_ss(&*a[r].add(j));
                        lo[r] = _mm256_fmadd_ps(av, v0, lo[r]);
                        hi[r] = _mm256_fmadd_ps(av, v1, hi[r]);
                    }
                }
                bp = bp.add(NR);
            }
        }
        store::<R>(lo, hi, c, ldc, cols, true);
    }

    /// Write (or add) the R×NR tile `lo | hi` into the first `cols`
    /// columns of the rows at `c`.
    #[inline(always)]
    unsafe fn store<const R: usize>(
        lo: [__m256; R],
        hi: [__m256; R],
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
    ) {
        if cols == NR {
            for r in 0..R {
                let cp = c.add(r * ldc);
                let (mut v0, mut v1) = (lo[r], hi[r]);
                if accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cp));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cp.add(8)));
                }
                _mm256_storeu_ps(cp, v0);
                _mm256_storeu_ps(cp.add(8), v1);
            }
        } else {
            let mut t = [0f32; NR];
            for r in 0..R {
                _mm256_storeu_ps(t.as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(t.as_mut_ptr().add(8), hi[r]);
                let row = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
                if accumulate {
                    for (d, &v) in row.iter_mut().zip(&t) {
                        *d += v;
                    }
                } else {
                    row.copy_from_slice(&t[..cols]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| (a[i * k + p] * b[p * n + j]) as f64).sum();
            }
        }
        c
    }

    #[test]
    fn packed_gemm_matches_naive_on_edge_shapes() {
        // Shapes around the tile edges, k across block boundaries, a strided C.
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 15, 3),
            (6, 16, 7),
            (7, 17, 257),
            (13, 33, 600),
            (20, 25, 576),
            // Several M blocks with a row tail, several K blocks.
            (250, 37, 600),
            (127, 20, 300),
            (0, 4, 3),
            (3, 4, 0),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37) % 19) as f32 * 0.1 - 0.9)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 11) % 23) as f32 * 0.1 - 1.1)
                .collect();
            let mut pa = vec![f32::NAN; a_len(m, k)];
            let mut pb = vec![f32::NAN; b_len(k, n)];
            pack_a(m, k, &a, k, 1, &mut pa);
            pack_b(k, n, &b, n, 1, &mut pb);
            let ldc = n + 3;
            let want = naive(m, n, k, &a, &b);
            for accumulate in [false, true] {
                let mut c = vec![0.5f32; m * ldc];
                gemm(m, n, k, &pa, &pb, &mut c, ldc, accumulate);
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j] as f64;
                        let expect = if j >= n {
                            0.5 // untouched padding
                        } else {
                            want[i * n + j] + if accumulate { 0.5 } else { 0.0 }
                        };
                        assert!(
                            (got - expect).abs() <= 1e-4 * (1.0 + expect.abs()),
                            "{m}x{n}x{k} acc={accumulate} at ({i},{j}): {got} vs {expect}"
                        );
                    }
                }
            }
            // Transposed sources pack to the same panels.
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let mut pa2 = vec![f32::NAN; a_len(m, k)];
            let mut pb2 = vec![f32::NAN; b_len(k, n)];
            pack_a(m, k, &at, 1, m, &mut pa2);
            pack_b(k, n, &bt, 1, k, &mut pb2);
            assert_eq!(pa, pa2);
            assert_eq!(pb, pb2);
        }
    }

    #[test]
    fn blocked_and_parallel_gemms_give_the_same_bits() {
        // Each element is one tile's sum over k: splitting the rows (M
        // blocks) or the columns (tasks) must not change a bit.
        let (m, n, k) = (257, 90, 530);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37) % 19) as f32 * 0.1 - 0.9)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 11) % 23) as f32 * 0.1 - 1.1)
            .collect();
        let mut pa = vec![0.0; a_len(m, k)];
        let mut pb = vec![0.0; b_len(k, n)];
        pack_a(m, k, &a, k, 1, &mut pa);
        pack_b(k, n, &b, n, 1, &mut pb);
        for accumulate in [false, true] {
            let mut whole = vec![0.25f32; m * n];
            gemm(m, n, k, &pa, &pb, &mut whole, n, accumulate);
            // Row panel by row panel: no M blocking at all.
            let mut rows = vec![0.25f32; m * n];
            for ip in 0..m.div_ceil(MR) {
                let r = (m - ip * MR).min(MR);
                let c = &mut rows[ip * MR * n..];
                gemm(r, n, k, &pa[ip * MR * k..], &pb, c, n, accumulate);
            }
            assert_eq!(whole, rows);
            for threads in [1, 2, 5] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut par = vec![0.25f32; m * n];
                let mut pb2 = vec![f32::NAN; b_len(k, n)];
                pool.install(|| {
                    gemm_par_cols(
                        m,
                        n,
                        k,
                        &pa,
                        &mut pb2,
                        &mut par,
                        n,
                        accumulate,
                        |j0, j1, p| {
                            assert_eq!(j0 % NR, 0);
                            pack_b(k, j1 - j0, &b[j0..], n, 1, p)
                        },
                    )
                });
                assert_eq!(whole, par, "{threads} threads");
            }
        }
    }
}
