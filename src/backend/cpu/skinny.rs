//! GEMMs with one small dimension (InnerProduct with a small batch).
//!
//! With a batch of 16, fc6's products are memory-bound: W (151 MB) is
//! touched once per product and only 16 multiply-adds happen per W value.
//! A general GEMM packs W first (one extra copy through memory); these
//! kernels read W in place, once, and use every W value loaded for all
//! batch rows while it is in cache. Three shapes (row-major, `c =
//! alpha·op(a)·op(b) + beta·c`; InnerProduct's `transpose: true` swaps
//! which of them each pass uses, never adds one):
//!
//! - `dot`  (`a` m×k, `b` n×k, m small): `x·Wᵀ`. 2 A rows × 4 B rows of
//!   eight-lane accumulators walk K; lane partials stay in a buffer across
//!   K blocks and are summed horizontally at the end.
//! - `rows` (`a` m×k, `b` k×n, m small): `dy·W`. A 6×16 C tile in
//!   registers walks a block of B rows read in place with B's row stride.
//! - `rank` (`aᵀ`: `a` k×m, `b` k×n, k small): `dW += dyᵀ·x`. Each 6×16 C
//!   tile is finished in registers over all k and written once.
//!
//! Work is split into tasks whose boundaries depend only on the shape, and
//! every C element is one fixed chain of multiply-adds, so results do not
//! depend on the thread count or on which tile shape handled an element.

use rayon::prelude::*;

/// The largest "small" dimension handled here (beyond it the general GEMM
/// reuses each W value enough to be compute-bound and wins).
const SMALL: usize = 32;
/// Fewer values than this in the big operand: the general GEMM is as good.
const BIG_MIN: usize = 1 << 14;
/// Multiply-adds from which a product is split across threads.
const PAR_MIN: usize = 1 << 18;

/// `dot`: C columns (B rows) per task.
const DOT_JW: usize = 64;
/// `dot`: K values per block (multiple of 8): W rows are read in 8 KiB
/// runs, the 4 B rows of a tile (32 KiB) stay in cache while all A rows
/// pass, and the A block (m×KC, ≤ 256 KiB) stays in L2. (512 measured
/// slower: shorter runs starve the prefetchers.)
const DOT_KC: usize = 2048;
/// `rows`: about this many C columns per task (rounded to 16).
const ROWS_JW: usize = 1024;
/// `rows`: B rows per block. The block (ROWS_KC × band, ≤ 128 KiB) is
/// copied row by row into 16-column slivers: W is read from memory in long
/// sequential runs, and the tiles read the copy from L2 without the L1 set
/// conflicts of W's row stride (a multiple of 4 KiB in fc layers).
const ROWS_KC: usize = 32;
/// `rank`: C rows per task (multiple of 6).
const RANK_ROWS: usize = 48;
/// `rank`: C columns per block (multiple of 16): the k×JW block of B stays
/// in L2 while the task's C rows stream past it.
const RANK_JW: usize = 1024;

/// Computes `c = alpha·op(a)·op(b) + beta·c` when the shape is one of the
/// skinny ones above and large enough to matter; returns false (and leaves
/// `c` alone) otherwise. Expects `m, n, k > 0` and operands at least as
/// long as the shape needs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn try_gemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) -> bool {
    let par = m * n * k >= PAR_MIN && rayon::current_thread_index().is_none();
    gemm_with(trans_a, trans_b, m, n, k, alpha, a, b, beta, c, par)
}

#[allow(clippy::too_many_arguments)]
fn gemm_with(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    par: bool,
) -> bool {
    if m == 0 || n == 0 || k == 0 {
        return false;
    }
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "gemm operand too short"
    );
    let (a, b, c) = (&a[..m * k], &b[..k * n], &mut c[..m * n]);
    match (trans_a, trans_b) {
        (false, true) if m <= SMALL && k >= 8 && n * k >= BIG_MIN => {
            dot(m, n, k, alpha, a, b, beta, c, par)
        }
        (false, false) if m <= SMALL && n >= 16 && n * k >= BIG_MIN => {
            rows(m, n, k, alpha, a, b, beta, c, par)
        }
        (true, false) if k <= SMALL && n >= 16 && m * n >= BIG_MIN => {
            rank(m, n, k, alpha, a, b, beta, c, par)
        }
        _ => return false,
    }
    true
}

/// `alpha·s + beta·c`, not reading `c` when beta is 0 (it may be garbage).
#[inline(always)]
fn combine(alpha: f32, s: f32, beta: f32, c: f32) -> f32 {
    if beta == 0.0 {
        alpha * s
    } else {
        alpha * s + beta * c
    }
}

/// Splits the m×n row-major `c` into column bands `w` wide: band `t` is the
/// m row pieces of columns `t·w ..`.
fn col_bands(c: &mut [f32], m: usize, n: usize, w: usize) -> Vec<Vec<&mut [f32]>> {
    let mut bands: Vec<Vec<&mut [f32]>> =
        (0..n.div_ceil(w)).map(|_| Vec::with_capacity(m)).collect();
    for row in c.chunks_exact_mut(n).take(m) {
        for (t, piece) in row.chunks_mut(w).enumerate() {
            bands[t].push(piece);
        }
    }
    bands
}

/// Width of the column bands of an n-column product: about `target`, a
/// multiple of 16, and (when parallel) a band count that divides evenly
/// among the threads. Band edges never change an element's summation.
fn band_width(n: usize, target: usize, par: bool) -> usize {
    let threads = if par {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    let bands = n.div_ceil(target).div_ceil(threads) * threads;
    n.div_ceil(bands).div_ceil(16) * 16
}

fn for_each_task<T: Send>(tasks: Vec<T>, par: bool, f: impl Fn(usize, T) + Sync + Send) {
    if par {
        tasks.into_par_iter().enumerate().for_each(|(t, x)| f(t, x));
    } else {
        tasks.into_iter().enumerate().for_each(|(t, x)| f(t, x));
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c (m×n) = alpha·a (m×k)·bᵀ (b: n×k) + beta·c`.
#[allow(clippy::too_many_arguments)]
fn dot(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    par: bool,
) {
    let k8 = k / 8 * 8;
    let avx2 = has_avx2();
    for_each_task(col_bands(c, m, n, DOT_JW), par, |t, mut band| {
        let j0 = t * DOT_JW;
        let jn = band[0].len();
        let bt = &b[j0 * k..(j0 + jn) * k];
        // Eight lane partials per C element, [i][j][lane].
        let mut acc = vec![0f32; m * jn * 8];
        // SAFETY: the kernel reads a[i·k + p], bt[j·k + p] for i < m,
        // j < jn, p < k8 ≤ k and writes acc[(i·jn + j)·8 ..][..8]; all in
        // bounds. `avx2` was checked on this CPU.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                dot_avx2(m, k8, k, a.as_ptr(), bt.as_ptr(), jn, acc.as_mut_ptr());
            } else {
                dot_body::<P8>(m, k8, k, a.as_ptr(), bt.as_ptr(), jn, acc.as_mut_ptr());
            }
            #[cfg(not(target_arch = "x86_64"))]
            dot_body::<P8>(m, k8, k, a.as_ptr(), bt.as_ptr(), jn, acc.as_mut_ptr());
        }
        for (i, crow) in band.iter_mut().enumerate() {
            let ar = &a[i * k..(i + 1) * k];
            for (j, cv) in crow.iter_mut().enumerate() {
                let l = &acc[(i * jn + j) * 8..][..8];
                let mut s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
                let br = &bt[j * k..(j + 1) * k];
                for p in k8..k {
                    s += ar[p] * br[p];
                }
                *cv = combine(alpha, s, beta, *cv);
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(
    m: usize,
    k8: usize,
    k: usize,
    a: *const f32,
    b: *const f32,
    jn: usize,
    acc: *mut f32,
) {
    dot_body::<x86::A8>(m, k8, k, a, b, jn, acc)
}

/// Lane partials of `a (m×k)·bᵀ (jn×k)` over the first `k8` values, added
/// into `acc`.
#[inline(always)]
unsafe fn dot_body<V: Simd>(
    m: usize,
    k8: usize,
    k: usize,
    a: *const f32,
    b: *const f32,
    jn: usize,
    acc: *mut f32,
) {
    let mut p0 = 0;
    while p0 < k8 {
        let kb = (k8 - p0).min(DOT_KC);
        let mut j = 0;
        while j < jn {
            let s = (jn - j).min(4);
            let bp = b.add(j * k + p0);
            let mut i = 0;
            while i < m {
                let r = (m - i).min(2);
                let ap = a.add(i * k + p0);
                let cp = acc.add((i * jn + j) * 8);
                macro_rules! go {
                    ($r:literal, $s:literal) => {
                        dot_tile::<V, $r, $s>(kb, ap, bp, k, cp, jn)
                    };
                }
                match (r, s) {
                    (2, 4) => go!(2, 4),
                    (2, 3) => go!(2, 3),
                    (2, 2) => go!(2, 2),
                    (2, _) => go!(2, 1),
                    (_, 4) => go!(1, 4),
                    (_, 3) => go!(1, 3),
                    (_, 2) => go!(1, 2),
                    _ => go!(1, 1),
                }
                i += r;
            }
            j += s;
        }
        p0 += kb;
    }
}

/// R A rows × S B rows (both with row stride `ld`) over `kb` values (a
/// multiple of 8), lane partials added into `acc` (row stride `jn` elements
/// of 8 lanes).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn dot_tile<V: Simd, const R: usize, const S: usize>(
    kb: usize,
    a: *const f32,
    b: *const f32,
    ld: usize,
    acc: *mut f32,
    jn: usize,
) {
    let mut t = [[V::zero(); S]; R];
    for r in 0..R {
        for s in 0..S {
            t[r][s] = V::load(acc.add((r * jn + s) * 8));
        }
    }
    let mut q = 0;
    while q < kb {
        let mut bv = [V::zero(); S];
        for s in 0..S {
            bv[s] = V::load(b.add(s * ld + q));
        }
        for r in 0..R {
            let av = V::load(a.add(r * ld + q));
            for s in 0..S {
                t[r][s] = V::fma(av, bv[s], t[r][s]);
            }
        }
        q += 8;
    }
    for r in 0..R {
        for s in 0..S {
            t[r][s].store(acc.add((r * jn + s) * 8));
        }
    }
}

/// `c (m×n) = alpha·a (m×k)·b (k×n) + beta·c`.
#[allow(clippy::too_many_arguments)]
fn rows(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    par: bool,
) {
    let avx2 = has_avx2();
    let jw = band_width(n, ROWS_JW, par);
    for_each_task(col_bands(c, m, n, jw), par, |t, mut band| {
        let j0 = t * jw;
        let jn = band[0].len();
        let j16 = jn / 16 * 16;
        let mut acc = vec![0f32; m * jn];
        let mut pack = vec![0f32; ROWS_KC * j16];
        // SAFETY: the kernel reads a[i·k + p], b[p·n + j0 + j] for i < m,
        // p < k, j < j16 ≤ jn (j0 + jn ≤ n), writes pack[..kb·j16] with
        // kb ≤ ROWS_KC and acc[i·jn + j]; all in bounds. `avx2` was checked
        // on this CPU.
        unsafe {
            let (ap, bp) = (a.as_ptr(), b.as_ptr().add(j0));
            let (cp, pp) = (acc.as_mut_ptr(), pack.as_mut_ptr());
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                rows_avx2(m, k, n, ap, bp, j16, jn, cp, pp);
            } else {
                rows_body::<P8>(m, k, n, ap, bp, j16, jn, cp, pp);
            }
            #[cfg(not(target_arch = "x86_64"))]
            rows_body::<P8>(m, k, n, ap, bp, j16, jn, cp, pp);
        }
        // Columns past the last 16-wide tile (only in the last band).
        if j16 < jn {
            for p in 0..k {
                let br = &b[p * n + j0 + j16..p * n + j0 + jn];
                for i in 0..m {
                    let av = a[i * k + p];
                    for (s, &bv) in acc[i * jn + j16..(i + 1) * jn].iter_mut().zip(br) {
                        *s += av * bv;
                    }
                }
            }
        }
        for (i, crow) in band.iter_mut().enumerate() {
            for (cv, &s) in crow.iter_mut().zip(&acc[i * jn..(i + 1) * jn]) {
                *cv = combine(alpha, s, beta, *cv);
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx2(
    m: usize,
    k: usize,
    ldb: usize,
    a: *const f32,
    b: *const f32,
    j16: usize,
    jn: usize,
    acc: *mut f32,
    pack: *mut f32,
) {
    rows_body::<x86::A8>(m, k, ldb, a, b, j16, jn, acc, pack)
}

/// `acc (m×jn, first j16 columns) += a (m×k)·b (k×j16, row stride ldb)`;
/// `pack` has room for ROWS_KC·j16 values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_body<V: Simd>(
    m: usize,
    k: usize,
    ldb: usize,
    a: *const f32,
    b: *const f32,
    j16: usize,
    jn: usize,
    acc: *mut f32,
    pack: *mut f32,
) {
    let mut p0 = 0;
    while p0 < k {
        let kb = (k - p0).min(ROWS_KC);
        // Copy the block row by row (long sequential reads of B) into
        // slivers: columns j.. of the block at pack[j·kb ..] as [kb][16].
        for p in 0..kb {
            let row = b.add((p0 + p) * ldb);
            let mut j = 0;
            while j < j16 {
                let dst = pack.add(j * kb + p * 16);
                V::load(row.add(j)).store(dst);
                V::load(row.add(j + 8)).store(dst.add(8));
                j += 16;
            }
        }
        let mut j = 0;
        while j < j16 {
            let bp = pack.add(j * kb);
            let mut i = 0;
            while i < m {
                let r = (m - i).min(6);
                let ap = a.add(i * k + p0);
                let cp = acc.add(i * jn + j);
                macro_rules! go {
                    ($r:literal) => {
                        rows_tile::<V, $r>(kb, ap, k, bp, cp, jn)
                    };
                }
                match r {
                    6 => go!(6),
                    5 => go!(5),
                    4 => go!(4),
                    3 => go!(3),
                    2 => go!(2),
                    _ => go!(1),
                }
                i += r;
            }
            j += 16;
        }
        p0 += kb;
    }
}

/// R×16 tile of `acc` (row stride `ldc`) += R rows of `a` (stride `lda`,
/// `kb` values) times a packed sliver `b` ([kb][16]).
#[inline(always)]
unsafe fn rows_tile<V: Simd, const R: usize>(
    kb: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    acc: *mut f32,
    ldc: usize,
) {
    let mut lo = [V::zero(); R];
    let mut hi = [V::zero(); R];
    for r in 0..R {
        lo[r] = V::load(acc.add(r * ldc));
        hi[r] = V::load(acc.add(r * ldc + 8));
    }
    for p in 0..kb {
        let bp = b.add(p * 16);
        let (b0, b1) = (V::load(bp), V::load(bp.add(8)));
        for r in 0..R {
            let av = V::splat(*a.add(r * lda + p));
            lo[r] = V::fma(av, b0, lo[r]);
            hi[r] = V::fma(av, b1, hi[r]);
        }
    }
    for r in 0..R {
        lo[r].store(acc.add(r * ldc));
        hi[r].store(acc.add(r * ldc + 8));
    }
}

/// `c (m×n) = alpha·aᵀ (a: k×m)·b (k×n) + beta·c`, k small.
#[allow(clippy::too_many_arguments)]
fn rank(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    par: bool,
) {
    let avx2 = has_avx2();
    let n16 = n / 16 * 16;
    // B (k×n, small) as 16-column slivers [n16/16][k][16], once: a tile
    // reads one contiguous sliver instead of k rows at B's row stride
    // (a multiple of 4 KiB in fc layers: all in one L1 set).
    let mut pb = vec![0f32; k * n16];
    for (s, sliver) in pb.chunks_exact_mut(16 * k).enumerate() {
        for (p, dst) in sliver.chunks_exact_mut(16).enumerate() {
            dst.copy_from_slice(&b[p * n + 16 * s..p * n + 16 * s + 16]);
        }
    }
    let pb = &pb;
    let tasks: Vec<&mut [f32]> = c.chunks_mut(RANK_ROWS * n).collect();
    for_each_task(tasks, par, |t, ct| {
        let i0 = t * RANK_ROWS;
        let rows = ct.len() / n;
        // SAFETY: the kernel reads a[p·m + i0 + i] for p < k, i < rows
        // (i0 + rows ≤ m), the k·n16 values of `pb`, and reads/writes
        // ct[i·n + j] for j < n16 ≤ n; all in bounds. `avx2` was checked on
        // this CPU.
        unsafe {
            let (ap, bp, cp) = (a.as_ptr().add(i0), pb.as_ptr(), ct.as_mut_ptr());
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                rank_avx2(rows, n16, k, ap, m, bp, n, alpha, beta, cp);
            } else {
                rank_body::<P8>(rows, n16, k, ap, m, bp, n, alpha, beta, cp);
            }
            #[cfg(not(target_arch = "x86_64"))]
            rank_body::<P8>(rows, n16, k, ap, m, bp, n, alpha, beta, cp);
        }
        for (i, crow) in ct.chunks_exact_mut(n).enumerate() {
            for (j, cv) in crow.iter_mut().enumerate().skip(n16) {
                let mut s = 0.0;
                for p in 0..k {
                    s += a[p * m + i0 + i] * b[p * n + j];
                }
                *cv = combine(alpha, s, beta, *cv);
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rank_avx2(
    rows: usize,
    n16: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    c: *mut f32,
) {
    rank_body::<x86::A8>(rows, n16, k, a, lda, b, ldc, alpha, beta, c)
}

/// The first `n16` columns of `rows` rows of C (row stride `ldc`):
/// `c = alpha·aᵀ·b + beta·c`, `a` k×rows (stride `lda`), `b` k×n16 packed
/// as 16-column slivers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rank_body<V: Simd>(
    rows: usize,
    n16: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    c: *mut f32,
) {
    let mut j0 = 0;
    while j0 < n16 {
        let jw = (n16 - j0).min(RANK_JW);
        let mut i = 0;
        while i < rows {
            let r = (rows - i).min(6);
            let mut j = j0;
            while j < j0 + jw {
                let (ap, bp, cp) = (a.add(i), b.add(j * k), c.add(i * ldc + j));
                macro_rules! go {
                    ($r:literal) => {
                        rank_tile::<V, $r>(k, ap, lda, bp, alpha, beta, cp, ldc)
                    };
                }
                match r {
                    6 => go!(6),
                    5 => go!(5),
                    4 => go!(4),
                    3 => go!(3),
                    2 => go!(2),
                    _ => go!(1),
                }
                j += 16;
            }
            i += r;
        }
        j0 += jw;
    }
}

/// R×16 tile of C (row stride `ldc`) = alpha·Σ_p a[p][0..R]ᵀ·b[p] + beta·C,
/// `b` a packed sliver ([k][16]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rank_tile<V: Simd, const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    alpha: f32,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    let mut lo = [V::zero(); R];
    let mut hi = [V::zero(); R];
    for p in 0..k {
        let bp = b.add(p * 16);
        let (b0, b1) = (V::load(bp), V::load(bp.add(8)));
        let ap = a.add(p * lda);
        for r in 0..R {
            let av = V::splat(*ap.add(r));
            lo[r] = V::fma(av, b0, lo[r]);
            hi[r] = V::fma(av, b1, hi[r]);
        }
    }
    let al = V::splat(alpha);
    let be = V::splat(beta);
    for r in 0..R {
        let cp = c.add(r * ldc);
        let (mut v0, mut v1) = (V::mul(al, lo[r]), V::mul(al, hi[r]));
        if beta != 0.0 {
            v0 = V::add(v0, V::mul(be, V::load(cp)));
            v1 = V::add(v1, V::mul(be, V::load(cp.add(8))));
        }
        v0.store(cp);
        v1.store(cp.add(8));
    }
}

/// Eight f32 lanes: AVX2 registers or a portable array. `fma` is fused on
/// AVX2 and a separate multiply and add in the portable version.
trait Simd: Copy {
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `a·b + c`.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
}

#[derive(Clone, Copy)]
struct P8([f32; 8]);

impl Simd for P8 {
    #[inline(always)]
    unsafe fn zero() -> Self {
        P8([0.0; 8])
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        P8([v; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        P8(std::ptr::read_unaligned(p as *const [f32; 8]))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; 8], self.0)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        P8(std::array::from_fn(|l| a.0[l] * b.0[l] + c.0[l]))
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        P8(std::array::from_fn(|l| a.0[l] * b.0[l]))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        P8(std::array::from_fn(|l| a.0[l] + b.0[l]))
    }
}

/// The AVX2/FMA lanes; only used inside `#[target_feature(enable =
/// "avx2,fma")]` functions, into which everything here inlines.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(super) struct A8(__m256);

    impl Simd for A8 {
        #[inline(always)]
        unsafe fn zero() -> Self {
            A8(_mm256_setzero_ps())
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            A8(_mm256_set1_ps(v))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            A8(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            A8(_mm256_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn mul(a: Self, b: Self) -> Self {
            A8(_mm256_mul_ps(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            A8(_mm256_add_ps(a.0, b.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.731 + seed as f32 * 1.37).sin() * 1.5)
            .collect()
    }

    /// f64 reference `alpha·op(a)·op(b) + beta·c` and, per element, the sum
    /// of |terms| (the scale of f32 rounding error).
    #[allow(clippy::too_many_arguments)]
    fn naive(
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &[f32],
        b: &[f32],
        beta: f32,
        c: &[f32],
    ) -> (Vec<f64>, Vec<f64>) {
        let mut out = vec![0.0; m * n];
        let mut mag = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut g) = (0f64, 0f64);
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] } as f64;
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] } as f64;
                    s += av * bv;
                    g += (av * bv).abs();
                }
                let cv = if beta == 0.0 {
                    0.0
                } else {
                    beta as f64 * c[i * n + j] as f64
                };
                out[i * n + j] = alpha as f64 * s + cv;
                mag[i * n + j] = (alpha as f64).abs() * g + cv.abs();
            }
        }
        (out, mag)
    }

    /// (trans_a, trans_b, m, n, k) for each kernel with the given small
    /// dimension: InnerProduct's forward (x·Wᵀ, or x·W with `transpose`),
    /// weight gradient (dyᵀ·x or xᵀ·dy) and data gradient (dy·W or dy·Wᵀ)
    /// all land on these three.
    fn shapes(s: usize) -> [(bool, bool, usize, usize, usize); 3] {
        [
            // dot: crosses K blocks (DOT_KC) with a tail of 5, B rows not a
            // multiple of 4 and more than one band.
            (false, true, s, 131, 2 * DOT_KC + 13),
            // rows: several bands, a 19-column last band, K blocks + tail.
            (false, false, s, 1043, 75),
            // rank: C rows not a multiple of 6 across tasks, columns past
            // RANK_JW with a 4-column tail.
            (true, false, 203, 1092, s),
        ]
    }

    #[test]
    fn kernels_match_naive() {
        for s in [1, 3, 7, 16, 17, 32] {
            for (ta, tb, m, n, k) in shapes(s) {
                let a = values(m * k, 1);
                let b = values(k * n, 2);
                let c0 = values(m * n, 3);
                for (alpha, beta) in [(1.0, 0.0), (0.5, 0.0), (1.0, 1.0), (-1.5, 0.25)] {
                    // beta = 0 must not read C: start from NaN.
                    let mut c = if beta == 0.0 {
                        vec![f32::NAN; m * n]
                    } else {
                        c0.clone()
                    };
                    assert!(
                        try_gemm(ta, tb, m, n, k, alpha, &a, &b, beta, &mut c),
                        "shape {ta} {tb} {m}x{n}x{k} not taken"
                    );
                    let (want, mag) = naive(ta, tb, m, n, k, alpha, &a, &b, beta, &c0);
                    for e in 0..m * n {
                        let tol = 1e-6 * k as f64 * mag[e] + 1e-30;
                        assert!(
                            (c[e] as f64 - want[e]).abs() <= tol,
                            "{ta} {tb} {m}x{n}x{k} a={alpha} b={beta} @{e}: {} vs {}",
                            c[e],
                            want[e]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn portable_kernels_match_naive() {
        // The non-AVX2 kernels, called directly on this machine.
        let (m, n, k) = (7, 37, 531);
        let a = values(m * k, 4);
        let b = values(n * k, 5);
        let (want, mag) = naive(false, true, m, n, k, 1.0, &a, &b, 0.0, &[]);
        let k8 = k / 8 * 8;
        let mut acc = vec![0f32; m * n * 8];
        unsafe { dot_body::<P8>(m, k8, k, a.as_ptr(), b.as_ptr(), n, acc.as_mut_ptr()) };
        for i in 0..m {
            for j in 0..n {
                let mut s: f32 = acc[(i * n + j) * 8..][..8].iter().sum();
                s += (k8..k).map(|p| a[i * k + p] * b[j * k + p]).sum::<f32>();
                let e = i * n + j;
                assert!(
                    (s as f64 - want[e]).abs() <= 1e-6 * k as f64 * mag[e],
                    "dot {e}"
                );
            }
        }
        let (want, mag) = naive(false, false, m, n, k, 1.0, &a, &b, 0.0, &[]);
        let n16 = n / 16 * 16;
        let mut acc = vec![0f32; m * n];
        let mut pack = vec![0f32; ROWS_KC * n16];
        let (ap, bp, pp) = (a.as_ptr(), b.as_ptr(), pack.as_mut_ptr());
        unsafe { rows_body::<P8>(m, k, n, ap, bp, n16, n, acc.as_mut_ptr(), pp) };
        for i in 0..m {
            for j in 0..n16 {
                let e = i * n + j;
                let d = (acc[e] as f64 - want[e]).abs();
                assert!(d <= 1e-6 * k as f64 * mag[e], "rows {e}");
            }
        }
        let (want, mag) = naive(true, false, n, n, m, 2.0, &a, &b, 0.5, &b);
        let mut c = b[..n * n].to_vec();
        // b's first m rows (k = m, n columns) as [n16/16][m][16] slivers.
        let pb: Vec<f32> = (0..n16 / 16)
            .flat_map(|s| (0..m).flat_map(move |p| (0..16).map(move |l| (p, 16 * s + l))))
            .map(|(p, j)| b[p * n + j])
            .collect();
        let (ap, bp) = (a.as_ptr(), pb.as_ptr());
        unsafe { rank_body::<P8>(n, n16, m, ap, n, bp, n, 2.0, 0.5, c.as_mut_ptr()) };
        for i in 0..n {
            for j in 0..n16 {
                let e = i * n + j;
                assert!(
                    (c[e] as f64 - want[e]).abs() <= 1e-6 * m as f64 * mag[e],
                    "rank {e}"
                );
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let in_pool = |threads: usize, f: &(dyn Fn() -> Vec<f32> + Sync)| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(f)
        };
        for (ta, tb, m, n, k) in shapes(16) {
            let a = values(m * k, 6);
            let b = values(k * n, 7);
            let c0 = values(m * n, 8);
            let run = |par: bool| {
                let mut c = c0.clone();
                assert!(gemm_with(ta, tb, m, n, k, 0.7, &a, &b, 1.0, &mut c, par));
                c
            };
            let serial = run(false);
            let one = in_pool(1, &|| run(true));
            let two = in_pool(2, &|| run(true));
            let four = in_pool(4, &|| run(true));
            // From outside any pool: the global pool, parallel when large.
            let mut top = c0.clone();
            assert!(try_gemm(ta, tb, m, n, k, 0.7, &a, &b, 1.0, &mut top));
            for other in [&one, &two, &four, &top] {
                assert!(
                    serial
                        .iter()
                        .zip(other.iter())
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{ta} {tb} {m}x{n}x{k}"
                );
            }
        }
    }

    #[test]
    fn other_shapes_are_declined() {
        let a = vec![1.0; 64 * 64];
        let mut c = vec![7.0; 64 * 64];
        // Both dimensions of C large and K large: the general GEMM's job.
        assert!(!try_gemm(false, true, 64, 64, 64, 1.0, &a, &a, 0.0, &mut c));
        assert!(!try_gemm(true, true, 4, 64, 64, 1.0, &a, &a, 0.0, &mut c));
        // Too small to matter.
        assert!(!try_gemm(false, false, 4, 16, 16, 1.0, &a, &a, 0.0, &mut c));
        assert!(c.iter().all(|&v| v == 7.0));
    }
}
