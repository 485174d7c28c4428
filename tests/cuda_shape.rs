//! On a GPU: the CUDA backend's `ShapeOps` against the CPU backend, every
//! method on random data at several shapes (odd sizes, views at offsets,
//! repeated indices, ArgMax ties and top-k > 1, ignored samples, legacy
//! contrastive loss).
//!
//! Tolerances: copies, gathers, crops, ArgMax (indices and values) and the
//! scatter-add (the GPU adds each destination's rows in the CPU's order)
//! must match exactly; everything else ‖gpu−cpu‖/‖cpu‖ ≤ 1e-5. The GPU
//! sums reductions and losses in double and the CPU in float, so the sizes
//! of the float-summed cases are kept where the CPU's own rounding stays
//! well below that; one long row is checked against an f64 reference.
//!
//! Without a usable GPU these tests print why and pass, unless
//! RCAFFE_REQUIRE_CUDA=1 (scripts/gpu-check.sh sets it).
#![cfg(feature = "cuda")]

use rcaffe::testing::backends::{assert_close, cuda_backend, test_data};

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::cuda::CudaBackend;
use rcaffe::backend::shape::{ArgMaxOut, Reduce};
use rcaffe::backend::{Buffer, Math, ShapeOps};

/// Deterministic integers in `0..m`.
fn ints(n: usize, m: usize, seed: u32) -> Vec<usize> {
    test_data(n, seed)
        .iter()
        .enumerate()
        .map(|(i, v)| (((v + 2.0) * 1000.0) as usize + i * 7) % m)
        .collect()
}

fn up(be: &CudaBackend, v: &[f32]) -> Buffer {
    let mut b = be.alloc(v.len());
    b.write(v);
    b
}

/// The same values on both backends.
fn pair(be: &CudaBackend, v: &[f32]) -> (Buffer, Buffer) {
    (up(be, v), Buffer::from_vec(v.to_vec()))
}

fn same(what: &str, gpu: &[f32], cpu: &[f32]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!(
            g.to_bits() == c.to_bits() || (g.is_nan() && c.is_nan()),
            "{what}: element {i}: gpu {g} cpu {c}"
        );
    }
}

fn close_scalar(what: &str, gpu: f32, cpu: f32, tol: f64) {
    assert_close(what, &[gpu], &[cpu], tol);
}

#[test]
fn copy_blocks_gather_scatter_and_crop_match_exactly() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    // (blocks, len, x_stride, y_stride, x offset, y offset)
    for &(blocks, len, xs, ys, xo, yo) in &[
        (1, 1, 1, 1, 0, 0),
        (3, 5, 7, 11, 2, 1),
        (17, 129, 129, 300, 0, 3),
        (40, 33, 99, 33, 5, 0),
        // More blocks than one launch row holds (the grid's y strides).
        (70_000, 3, 4, 5, 1, 2),
    ] {
        let x = test_data(blocks * xs + len + xo, 1);
        let y0 = test_data(blocks * ys + len + yo, 2);
        let (gx, cx) = pair(&be, &x);
        for acc in [false, true] {
            let (mut gy, mut cy) = pair(&be, &y0);
            be.copy_blocks(blocks, len, gx.at(xo), xs, gy.at_mut(yo), ys, acc);
            cpu.copy_blocks(blocks, len, cx.at(xo), xs, cy.at_mut(yo), ys, acc);
            same(
                &format!("copy_blocks {blocks}x{len} acc={acc}"),
                &gy.read(y0.len()),
                &cy.read(y0.len()),
            );
        }
    }

    // Rows gathered with repeats, then scattered back (repeats accumulate
    // in order), from and into views at offsets.
    for &(n_src, n_idx, row) in &[(1, 1, 1), (5, 9, 7), (40, 301, 33), (1000, 64, 300)] {
        let idx = ints(n_idx, n_src, 3);
        let src = test_data(n_src * row + 4, 4);
        let (gs, cs) = pair(&be, &src);
        let mut gd = be.alloc(n_idx * row + 2);
        let mut cd = cpu.alloc(n_idx * row + 2);
        be.gather_rows(&idx, row, gs.at(4), gd.at_mut(2));
        cpu.gather_rows(&idx, row, cs.at(4), cd.at_mut(2));
        let (g, c) = (gd.read(n_idx * row + 2), cd.read(n_idx * row + 2));
        same(&format!("gather_rows {n_idx}x{row}"), &g, &c);
        let acc0 = test_data(n_src * row + 1, 5);
        let (mut ga, mut ca) = pair(&be, &acc0);
        let (gsrc, csrc) = pair(&be, &test_data(n_idx * row, 6));
        be.scatter_add_rows(&idx, row, gsrc.view(), ga.at_mut(1));
        cpu.scatter_add_rows(&idx, row, csrc.view(), ca.at_mut(1));
        same(
            &format!("scatter_add_rows {n_idx}x{row}"),
            &ga.read(acc0.len()),
            &ca.read(acc0.len()),
        );
    }

    // Crops of 0 to 4 axes; the backward pass writes into a non-zero dx,
    // whose values outside the window must stay.
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[], &[], &[]),
        (&[10], &[4], &[3]),
        (&[2, 3, 4], &[1, 2, 2], &[1, 1, 2]),
        (&[3, 5, 7, 9], &[2, 3, 4, 5], &[1, 1, 2, 3]),
        (&[2, 8, 33, 31], &[2, 8, 17, 30], &[0, 0, 9, 1]),
    ];
    for &(ins, outs, offs) in cases {
        let (ni, no): (usize, usize) = (ins.iter().product(), outs.iter().product());
        let (gx, cx) = pair(&be, &test_data(ni, 7));
        let mut gy = be.alloc(no);
        let mut cy = cpu.alloc(no);
        be.crop_forward(ins, outs, offs, gx.view(), gy.view_mut());
        cpu.crop_forward(ins, outs, offs, cx.view(), cy.view_mut());
        same(&format!("crop_forward {ins:?}"), &gy.read(no), &cy.read(no));
        let (gdy, cdy) = pair(&be, &test_data(no, 8));
        let (mut gdx, mut cdx) = pair(&be, &test_data(ni, 9));
        be.crop_backward(ins, outs, offs, gdy.view(), gdx.view_mut());
        cpu.crop_backward(ins, outs, offs, cdy.view(), cdx.view_mut());
        same(
            &format!("crop_backward {ins:?}"),
            &gdx.read(ni),
            &cdx.read(ni),
        );
    }
    be.sync().unwrap();
}

#[test]
fn reduce_rows_forward_and_backward_match() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    // Short rows (a thread per row), long rows (a block per row), empty rows.
    for &(rows, dim) in &[(1, 1), (7, 5), (1000, 3), (3, 1000), (65, 257), (4, 0)] {
        let x = test_data(rows * dim + 1, 10);
        let (gx, cx) = pair(&be, &x);
        let (gdy, cdy) = pair(&be, &test_data(rows, 11));
        for op in [Reduce::Sum, Reduce::Asum, Reduce::SumSq] {
            let what = format!("{op:?} {rows}x{dim}");
            let mut gy = be.alloc(rows);
            let mut cy = cpu.alloc(rows);
            be.reduce_rows(op, rows, dim, -0.5, gx.at(1), gy.view_mut());
            cpu.reduce_rows(op, rows, dim, -0.5, cx.at(1), cy.view_mut());
            assert_close(
                &format!("reduce_rows {what}"),
                &gy.read(rows),
                &cy.read(rows),
                1e-5,
            );
            let (mut gdx, mut cdx) = pair(&be, &test_data(rows * dim, 12));
            be.reduce_rows_backward(op, rows, dim, 1.5, gx.at(1), gdy.view(), gdx.view_mut());
            cpu.reduce_rows_backward(op, rows, dim, 1.5, cx.at(1), cdy.view(), cdx.view_mut());
            same(
                &format!("reduce_rows_backward {what}"),
                &gdx.read(rows * dim),
                &cdx.read(rows * dim),
            );
        }
    }
    // One long row against the exact sum: the CPU's float running sum is
    // itself off by more than 1e-5 here; the GPU sums in double.
    let n = 70_001;
    let x = test_data(n, 13);
    let gx = up(&be, &x);
    let mut gy = be.alloc(1);
    for op in [Reduce::Sum, Reduce::Asum, Reduce::SumSq] {
        be.reduce_rows(op, 1, n, 1.0, gx.view(), gy.view_mut());
        let term = |v: f32| {
            let v = f64::from(v);
            match op {
                Reduce::Sum => v,
                Reduce::Asum => v.abs(),
                Reduce::SumSq => v * v,
            }
        };
        let exact: f64 = x.iter().map(|&v| term(v)).sum();
        let scale: f64 = x.iter().map(|&v| term(v).abs()).sum();
        let got = f64::from(gy.read(1)[0]);
        assert!(
            (got - exact).abs() <= 1e-6 * scale,
            "reduce_rows {op:?} 1x{n}: {got} vs {exact}"
        );
    }
    be.sync().unwrap();
}

#[test]
fn argmax_matches_with_ties_and_top_k() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    // (outer, dim, inner, k)
    for &(outer, dim, inner, k) in &[
        (1, 1, 1, 1),
        (4, 10, 1, 1),
        (3, 17, 5, 4),
        (2, 33, 1, 33),
        (64, 1000, 1, 5),
        (5, 6, 49, 6),
    ] {
        let n = outer * dim * inner;
        // Values on a coarse grid, so most columns hold ties (broken to the
        // larger index).
        let x: Vec<f32> = test_data(n, 14).iter().map(|v| (v * 2.0).round()).collect();
        let (gx, cx) = pair(&be, &x);
        let mut modes = vec![ArgMaxOut::Indices, ArgMaxOut::Values];
        if inner == 1 {
            modes.push(ArgMaxOut::IndicesThenValues);
        }
        for out in modes {
            let m = outer
                * k
                * inner
                * if out == ArgMaxOut::IndicesThenValues {
                    2
                } else {
                    1
                };
            let mut gy = be.alloc(m);
            let mut cy = cpu.alloc(m);
            be.argmax(outer, dim, inner, k, out, gx.view(), gy.view_mut());
            cpu.argmax(outer, dim, inner, k, out, cx.view(), cy.view_mut());
            same(
                &format!("argmax {outer}x{dim}x{inner} k={k} {out:?}"),
                &gy.read(m),
                &cy.read(m),
            );
        }
    }
    be.sync().unwrap();
}

#[test]
fn sigmoid_cross_entropy_matches() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for &n in &[1usize, 257, 2001] {
        let x: Vec<f32> = test_data(n, 15).iter().map(|v| v * 4.0).collect();
        let t: Vec<f32> = test_data(n, 16)
            .iter()
            .map(|v| (v > &0.0) as i32 as f32)
            .collect();
        let (gx, cx) = pair(&be, &x);
        let (gt, ct) = pair(&be, &t);
        let some: Vec<bool> = (0..n).map(|i| i % 5 != 2).collect();
        for keep in [&[][..], &some[..]] {
            let what = format!("n={n} ignoring={}", !keep.is_empty());
            let gl = be.sigmoid_ce_loss(n, gx.view(), gt.view(), keep);
            let cl = cpu.sigmoid_ce_loss(n, cx.view(), ct.view(), keep);
            close_scalar(&format!("sigmoid_ce_loss {what}"), gl, cl, 1e-5);
            let (mut gd, mut cd) = pair(&be, &test_data(n, 17));
            be.sigmoid_ce_grad(n, gx.view(), gt.view(), keep, 0.25, gd.view_mut());
            cpu.sigmoid_ce_grad(n, cx.view(), ct.view(), keep, 0.25, cd.view_mut());
            assert_close(
                &format!("sigmoid_ce_grad {what}"),
                &gd.read(n),
                &cd.read(n),
                1e-5,
            );
        }
    }
    be.sync().unwrap();
}

#[test]
fn hinge_and_multinomial_logistic_match() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for &(rows, dim) in &[(1, 1), (5, 7), (64, 10), (257, 1000)] {
        let n = rows * dim;
        let labels = ints(rows, dim, 18);
        let (gx, cx) = pair(&be, &test_data(n, 19));
        let mut gv = be.alloc(n);
        let mut cv = cpu.alloc(n);
        be.hinge_margins(dim, &labels, gx.view(), gv.view_mut());
        cpu.hinge_margins(dim, &labels, cx.view(), cv.view_mut());
        assert_close(
            &format!("hinge_margins {rows}x{dim}"),
            &gv.read(n),
            &cv.read(n),
            1e-5,
        );
        for l2 in [false, true] {
            let mut gd = be.alloc(n);
            let mut cd = cpu.alloc(n);
            be.hinge_grad(dim, &labels, l2, -0.3, gv.view(), gd.view_mut());
            cpu.hinge_grad(dim, &labels, l2, -0.3, cv.view(), cd.view_mut());
            assert_close(
                &format!("hinge_grad {rows}x{dim} l2={l2}"),
                &gd.read(n),
                &cd.read(n),
                1e-5,
            );
        }
        // Probabilities in [0, 1), some exactly 0 (clamped to 1e-20).
        let p: Vec<f32> = test_data(n, 20).iter().map(|v| v.abs() / 2.0).collect();
        let (gp, cp) = pair(&be, &p);
        let gl = be.multinomial_logistic_loss(dim, &labels, gp.view());
        let cl = cpu.multinomial_logistic_loss(dim, &labels, cp.view());
        close_scalar(
            &format!("multinomial_logistic_loss {rows}x{dim}"),
            gl,
            cl,
            1e-5,
        );
        let (mut gd, mut cd) = pair(&be, &test_data(n, 21));
        be.multinomial_logistic_grad(dim, &labels, -0.5, gp.view(), gd.view_mut());
        cpu.multinomial_logistic_grad(dim, &labels, -0.5, cp.view(), cd.view_mut());
        assert_close(
            &format!("multinomial_logistic_grad {rows}x{dim}"),
            &gd.read(n),
            &cd.read(n),
            1e-5,
        );
    }
    be.sync().unwrap();
}

#[test]
fn infogain_matches_with_ignored_columns() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    // (outer, ch, inner)
    for &(outer, ch, inner) in &[(1, 1, 1), (4, 5, 1), (3, 7, 6), (8, 60, 9)] {
        let cols = outer * inner;
        let n = cols * ch;
        let labels: Vec<Option<usize>> = ints(cols, ch, 22)
            .into_iter()
            .enumerate()
            .map(|(i, l)| (i % 4 != 1).then_some(l))
            .collect();
        let p: Vec<f32> = test_data(n, 23).iter().map(|v| v.abs() / 2.0).collect();
        let h: Vec<f32> = test_data(ch * ch, 24).iter().map(|v| v.abs()).collect();
        let (gp, cp) = pair(&be, &p);
        let (gh, chh) = pair(&be, &h);
        let gl = be.infogain_loss(ch, inner, &labels, gp.view(), gh.view());
        let cl = cpu.infogain_loss(ch, inner, &labels, cp.view(), chh.view());
        close_scalar(&format!("infogain_loss {outer}x{ch}x{inner}"), gl, cl, 1e-5);
        let (mut gd, mut cd) = pair(&be, &test_data(n, 25));
        be.infogain_grad(ch, inner, &labels, 0.7, gp.view(), gh.view(), gd.view_mut());
        cpu.infogain_grad(
            ch,
            inner,
            &labels,
            0.7,
            cp.view(),
            chh.view(),
            cd.view_mut(),
        );
        assert_close(
            &format!("infogain_grad {outer}x{ch}x{inner}"),
            &gd.read(n),
            &cd.read(n),
            1e-5,
        );
    }
    be.sync().unwrap();
}

#[test]
fn contrastive_matches_incl_legacy() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for &(rows, ch) in &[(1, 1), (64, 2), (257, 10), (33, 300)] {
        let n = rows * ch;
        let similar: Vec<bool> = ints(rows, 3, 26).iter().map(|&v| v == 0).collect();
        let (gdiff, cdiff) = pair(&be, &test_data(n, 27));
        // Mean d² is about 4/3·ch: margins that put about half the
        // dissimilar rows inside.
        let d2 = 4.0 / 3.0 * ch as f32;
        for (legacy, margin) in [(false, d2.sqrt()), (true, d2)] {
            let what = format!("{rows}x{ch} legacy={legacy}");
            let mut gsq = be.alloc(rows);
            let mut csq = cpu.alloc(rows);
            let gl =
                be.contrastive_loss(ch, &similar, margin, legacy, gdiff.view(), gsq.view_mut());
            let cl =
                cpu.contrastive_loss(ch, &similar, margin, legacy, cdiff.view(), csq.view_mut());
            close_scalar(&format!("contrastive_loss {what}"), gl, cl, 1e-5);
            assert_close(
                &format!("contrastive dist_sq {what}"),
                &gsq.read(rows),
                &csq.read(rows),
                1e-5,
            );
            for alpha in [0.125, -0.125] {
                let mut gd = be.alloc(n);
                let mut cd = cpu.alloc(n);
                // The CPU's squared distances for both, so a row on the
                // margin's edge cannot flip between them.
                let gsq_cpu = up(&be, &csq.read(rows));
                be.contrastive_grad(
                    ch,
                    &similar,
                    margin,
                    legacy,
                    alpha,
                    gdiff.view(),
                    gsq_cpu.view(),
                    gd.view_mut(),
                );
                cpu.contrastive_grad(
                    ch,
                    &similar,
                    margin,
                    legacy,
                    alpha,
                    cdiff.view(),
                    csq.view(),
                    cd.view_mut(),
                );
                assert_close(
                    &format!("contrastive_grad {what} alpha={alpha}"),
                    &gd.read(n),
                    &cd.read(n),
                    1e-5,
                );
            }
        }
    }
    be.sync().unwrap();
}
