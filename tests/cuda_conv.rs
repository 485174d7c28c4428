//! On a GPU: the CUDA backend's `ConvOps` against the CPU backend.
//!
//! - im2col/col2im (2-D, 1-D, 3-D, 1×1; views at an odd offset):
//!   ‖gpu − cpu‖ / ‖cpu‖ ≤ 1e-5 (im2col copies exactly; col2im sums the same
//!   values in another order).
//! - The convolution passes (forward with and without bias, data, filter,
//!   filter + bias, bias alone) for engines CAFFE (im2col + cuBLAS GEMM),
//!   DEFAULT (cuDNN, except with dilation: generic, as Caffe) and CUDNN on
//!   plain 3×3, CaffeNet-conv1-like 11×11 stride 4, grouped, depthwise,
//!   1×1, dilated, rectangular and 3-D geometries, 1 and 3 images; the
//!   gradients start non-zero, so accumulation is checked. Tolerance 1e-4:
//!   cuBLAS and cuDNN (GEMM, FFT, Winograd algorithms) sum in other orders
//!   than the CPU's packed GEMM, which costs a few ulps per product sum.
//! - Depthwise geometries (group = channels, 2-D) run direct kernels for
//!   every engine: checked against the CPU backend's depthwise passes at
//!   1e-5 over strides, pads, dilations, odd sizes, 1 and 37 channels.
//!
//! Without a usable GPU these tests print why and pass, unless
//! RCAFFE_REQUIRE_CUDA=1 (scripts/gpu-check.sh sets it), which makes that a
//! failure.
#![cfg(feature = "cuda")]

use rcaffe::testing::backends::{assert_close, cuda_backend, test_data};

use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::{Buffer, ConvGeometry, ConvOps, Engine};

/// `v` in a new buffer of `be`, after `off` filler values (so the views
/// the passes get start at `off`: offset handling is checked too).
fn up<B: ConvOps + ?Sized>(be: &B, off: usize, v: &[f32]) -> Buffer {
    let mut all = vec![7.5f32; off];
    all.extend_from_slice(v);
    let mut b = be.alloc(all.len());
    b.write(&all);
    b
}

/// The `n` values after the first `off`.
fn down(b: &Buffer, off: usize, n: usize) -> Vec<f32> {
    b.read(off + n)[off..].to_vec()
}

/// A geometry with Caffe's output size.
#[allow(clippy::too_many_arguments)]
fn geom(
    in_channels: usize,
    in_shape: &[usize],
    out_channels: usize,
    kernel: &[usize],
    stride: &[usize],
    pad: &[usize],
    dilation: &[usize],
    group: usize,
    engine: Engine,
) -> ConvGeometry {
    let out_shape = (0..in_shape.len())
        .map(|d| {
            ConvGeometry::output_size(in_shape[d], kernel[d], stride[d], pad[d], dilation[d])
                .expect("a window fits")
        })
        .collect();
    ConvGeometry {
        in_channels,
        in_shape: in_shape.to_vec(),
        out_channels,
        out_shape,
        kernel: kernel.to_vec(),
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        dilation: dilation.to_vec(),
        group,
        engine,
    }
}

fn im2col_cases() -> Vec<(&'static str, ConvGeometry)> {
    let e = Engine::Default;
    vec![
        (
            "2-D strided, dilated, padded",
            geom(3, &[7, 9], 1, &[3, 2], &[2, 1], &[1, 0], &[1, 2], 1, e),
        ),
        (
            "2-D 3x3 pad 1",
            geom(2, &[5, 6], 1, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1, e),
        ),
        (
            "2-D 1x1",
            geom(4, &[3, 5], 1, &[1, 1], &[1, 1], &[0, 0], &[1, 1], 1, e),
        ),
        (
            "2-D kernel < stride",
            geom(2, &[9, 8], 1, &[2, 1], &[3, 2], &[1, 0], &[1, 1], 1, e),
        ),
        ("1-D", geom(4, &[11], 1, &[3], &[2], &[1], &[2], 1, e)),
        (
            "3-D",
            geom(
                2,
                &[5, 4, 6],
                1,
                &[3, 2, 2],
                &[2, 1, 2],
                &[1, 0, 1],
                &[1, 2, 1],
                1,
                e,
            ),
        ),
    ]
}

#[test]
fn im2col_and_col2im_match_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    const OFF: usize = 3;
    for (i, (name, g)) in im2col_cases().into_iter().enumerate() {
        let (id, cl) = (g.in_dim(), g.col_len());
        let x = test_data(id, 10 + i as u32);
        let (gx, cx) = (up(&be, OFF, &x), up(&cpu, OFF, &x));
        let (mut gc, mut cc) = (up(&be, OFF, &vec![9.0; cl]), up(&cpu, OFF, &vec![9.0; cl]));
        be.im2col(&g, gx.at(OFF), gc.at_mut(OFF));
        cpu.im2col(&g, cx.at(OFF), cc.at_mut(OFF));
        be.sync().unwrap();
        assert_close(
            &format!("im2col {name}"),
            &down(&gc, OFF, cl),
            &down(&cc, OFF, cl),
            1e-5,
        );
        // The filler before the view is untouched.
        assert_eq!(
            gc.read(OFF),
            vec![7.5; OFF],
            "im2col {name} wrote before its view"
        );

        let col = test_data(cl, 20 + i as u32);
        let (gc, cc) = (up(&be, OFF, &col), up(&cpu, OFF, &col));
        let (mut gx, mut cx) = (up(&be, OFF, &vec![9.0; id]), up(&cpu, OFF, &vec![9.0; id]));
        be.col2im(&g, gc.at(OFF), gx.at_mut(OFF));
        cpu.col2im(&g, cc.at(OFF), cx.at_mut(OFF));
        be.sync().unwrap();
        assert_close(
            &format!("col2im {name}"),
            &down(&gx, OFF, id),
            &down(&cx, OFF, id),
            1e-5,
        );
        assert_eq!(
            gx.read(OFF),
            vec![7.5; OFF],
            "col2im {name} wrote before its view"
        );
    }
}

/// Every pass's results on one backend, from the same inputs.
struct Passes {
    y_bias: Vec<f32>,
    y: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
    dw_fb: Vec<f32>,
    db_fb: Vec<f32>,
    db: Vec<f32>,
}

/// Views start 4 values (16 bytes) into their buffers.
const OFF: usize = 4;

fn run_passes<B: ConvOps + ?Sized>(be: &B, g: &ConvGeometry, num: usize, seed: u32) -> Passes {
    let (id, od, wl, oc) = (g.in_dim(), g.out_dim(), g.weight_len(), g.out_channels);
    let x = up(be, OFF, &test_data(num * id, seed));
    let w = up(be, OFF, &test_data(wl, seed + 1));
    let b = up(be, OFF, &test_data(oc, seed + 2));
    let dy = up(be, OFF, &test_data(num * od, seed + 3));
    let dw0 = test_data(wl, seed + 4);
    let db0 = test_data(oc, seed + 5);
    let mut ws = be.alloc(be.conv_workspace_len(g, num));

    let mut y = up(be, OFF, &vec![3.0; num * od]);
    be.conv_forward(
        g,
        num,
        x.at(OFF),
        w.at(OFF),
        Some(b.at(OFF)),
        y.at_mut(OFF),
        ws.view_mut(),
    );
    let y_bias = down(&y, OFF, num * od);
    be.conv_forward(
        g,
        num,
        x.at(OFF),
        w.at(OFF),
        None,
        y.at_mut(OFF),
        ws.view_mut(),
    );
    let y_plain = down(&y, OFF, num * od);

    let mut dx = up(be, OFF, &vec![3.0; num * id]);
    be.conv_backward_data(g, num, dy.at(OFF), w.at(OFF), dx.at_mut(OFF), ws.view_mut());

    let mut dw = up(be, OFF, &dw0);
    be.conv_backward_filter(g, num, x.at(OFF), dy.at(OFF), dw.at_mut(OFF), ws.view_mut());

    let (mut dw_fb, mut db_fb) = (up(be, OFF, &dw0), up(be, OFF, &db0));
    be.conv_backward_filter_bias(
        g,
        num,
        x.at(OFF),
        dy.at(OFF),
        dw_fb.at_mut(OFF),
        db_fb.at_mut(OFF),
        ws.view_mut(),
    );

    let mut db = up(be, OFF, &db0);
    be.conv_backward_bias(
        num,
        oc,
        g.out_spatial(),
        dy.at(OFF),
        db.at_mut(OFF),
        ws.view_mut(),
    );

    Passes {
        y_bias,
        y: y_plain,
        dx: down(&dx, OFF, num * id),
        dw: down(&dw, OFF, wl),
        dw_fb: down(&dw_fb, OFF, wl),
        db_fb: down(&db_fb, OFF, oc),
        db: down(&db, OFF, oc),
    }
}

fn conv_cases() -> Vec<(&'static str, ConvGeometry)> {
    let d = Engine::Default;
    vec![
        (
            "3x3 pad 1",
            geom(3, &[9, 11], 4, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1, d),
        ),
        (
            "11x11 stride 4 (conv1-like)",
            geom(3, &[35, 35], 8, &[11, 11], &[4, 4], &[0, 0], &[1, 1], 1, d),
        ),
        (
            "group 2",
            geom(4, &[8, 7], 6, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 2, d),
        ),
        (
            "depthwise",
            geom(5, &[9, 9], 5, &[3, 3], &[2, 2], &[1, 1], &[1, 1], 5, d),
        ),
        (
            "1x1",
            geom(6, &[5, 7], 3, &[1, 1], &[1, 1], &[0, 0], &[1, 1], 1, d),
        ),
        (
            "dilation 2",
            geom(3, &[10, 9], 4, &[3, 3], &[1, 1], &[2, 2], &[2, 2], 1, d),
        ),
        (
            "rectangular kernel and stride",
            geom(2, &[12, 9], 3, &[3, 5], &[2, 1], &[1, 2], &[1, 1], 1, d),
        ),
        (
            "3-D (generic whatever the engine)",
            geom(
                2,
                &[4, 5, 6],
                3,
                &[2, 3, 2],
                &[1, 2, 1],
                &[0, 1, 1],
                &[1, 1, 1],
                1,
                d,
            ),
        ),
    ]
}

#[test]
fn conv_passes_match_the_cpu_backend_for_every_engine() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (i, (name, g0)) in conv_cases().into_iter().enumerate() {
        for engine in [Engine::Caffe, Engine::Default, Engine::Cudnn] {
            let g = ConvGeometry {
                engine,
                ..g0.clone()
            };
            // Caffe's choice: cuDNN for 2 spatial axes unless CAFFE, or
            // DEFAULT with a dilation; its passes need no column buffer.
            let dilated = g.dilation.iter().any(|&d| d > 1);
            let cudnn = g.num_spatial_axes() == 2
                && (engine == Engine::Cudnn || (engine == Engine::Default && !dilated));
            for num in [1, 3] {
                let what = format!("{name}, {engine:?}, num {num}");
                let wl = be.conv_workspace_len(&g, num);
                // Depthwise runs direct kernels (whatever the engine) that
                // need only the bias gradient's ones vector, as cuDNN.
                if cudnn || is_depthwise(&g) {
                    assert_eq!(wl, g.in_spatial().max(g.out_spatial()), "{what}: workspace");
                } else {
                    assert!(wl >= g.col_len() + g.out_spatial(), "{what}: workspace");
                }
                let seed = 100 * i as u32 + num as u32;
                let gp = run_passes(&be, &g, num, seed);
                be.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
                let cp = run_passes(&cpu, &g, num, seed);
                let tol = 1e-4;
                assert_close(
                    &format!("{what}: forward + bias"),
                    &gp.y_bias,
                    &cp.y_bias,
                    tol,
                );
                assert_close(&format!("{what}: forward"), &gp.y, &cp.y, tol);
                assert_close(&format!("{what}: backward data"), &gp.dx, &cp.dx, tol);
                assert_close(&format!("{what}: backward filter"), &gp.dw, &cp.dw, tol);
                assert_close(
                    &format!("{what}: filter of filter+bias"),
                    &gp.dw_fb,
                    &cp.dw_fb,
                    tol,
                );
                assert_close(
                    &format!("{what}: bias of filter+bias"),
                    &gp.db_fb,
                    &cp.db_fb,
                    tol,
                );
                assert_close(&format!("{what}: backward bias"), &gp.db, &cp.db, tol);
            }
        }
    }
}

fn is_depthwise(g: &ConvGeometry) -> bool {
    g.num_spatial_axes() == 2 && g.group == g.in_channels && g.group == g.out_channels
}

fn depthwise_cases() -> Vec<(&'static str, ConvGeometry)> {
    let e = Engine::Default;
    let dw = |c, shape: &[usize], k: &[usize], s: &[usize], p: &[usize], d: &[usize]| {
        geom(c, shape, c, k, s, p, d, c, e)
    };
    vec![
        (
            "3x3 stride 1 pad 1, C=37",
            dw(37, &[10, 12], &[3, 3], &[1, 1], &[1, 1], &[1, 1]),
        ),
        (
            "3x3 stride 2 pad 1, C=37, odd sizes",
            dw(37, &[13, 11], &[3, 3], &[2, 2], &[1, 1], &[1, 1]),
        ),
        (
            "5x3 kernel, dilation 2, 13x11",
            dw(3, &[13, 11], &[5, 3], &[1, 2], &[2, 1], &[2, 2]),
        ),
        (
            "C=1, 3x3 pad 1",
            dw(1, &[7, 5], &[3, 3], &[1, 1], &[1, 1], &[1, 1]),
        ),
        (
            "stride 3 > kernel 2, pad 0",
            dw(4, &[11, 9], &[2, 2], &[3, 3], &[0, 0], &[1, 1]),
        ),
        (
            "pad beyond the kernel, 1x1 input",
            dw(2, &[1, 1], &[3, 3], &[1, 1], &[2, 2], &[1, 1]),
        ),
        (
            "MobileNet-like 3x3 stride 2, 32 channels",
            dw(32, &[28, 28], &[3, 3], &[2, 2], &[1, 1], &[1, 1]),
        ),
    ]
}

/// The direct depthwise kernels (every engine dispatches to them) against
/// the CPU backend's depthwise passes: forward with and without bias, data,
/// filter and filter + bias onto non-zero gradients, bias alone; views at
/// an offset. Tolerance 1e-5: both sum the same products in other orders
/// (the GPU's filter gradient in double). The filter gradient is also
/// bit-identical between runs (a fixed-order block reduction).
#[test]
fn depthwise_passes_match_the_cpu_backend() {
    let Some(be) = cuda_backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    for (i, (name, g0)) in depthwise_cases().into_iter().enumerate() {
        for engine in [Engine::Caffe, Engine::Default, Engine::Cudnn] {
            let g = ConvGeometry {
                engine,
                ..g0.clone()
            };
            for num in [1, 3] {
                let what = format!("depthwise {name}, {engine:?}, num {num}");
                assert_eq!(
                    be.conv_workspace_len(&g, num),
                    g.in_spatial().max(g.out_spatial()),
                    "{what}: workspace"
                );
                let seed = 1000 + 100 * i as u32 + num as u32;
                let gp = run_passes(&be, &g, num, seed);
                be.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
                let cp = run_passes(&cpu, &g, num, seed);
                let tol = 1e-5;
                let pairs = [
                    ("forward + bias", &gp.y_bias, &cp.y_bias),
                    ("forward", &gp.y, &cp.y),
                    ("backward data", &gp.dx, &cp.dx),
                    ("backward filter", &gp.dw, &cp.dw),
                    ("filter of filter+bias", &gp.dw_fb, &cp.dw_fb),
                    ("bias of filter+bias", &gp.db_fb, &cp.db_fb),
                    ("backward bias", &gp.db, &cp.db),
                ];
                for (pass, got, want) in pairs {
                    assert_close(&format!("{what}: {pass}"), got, want, tol);
                }
                let again = run_passes(&be, &g, num, seed);
                be.sync().unwrap();
                assert_eq!(again.dw, gp.dw, "{what}: filter gradient not deterministic");
            }
        }
    }
}

/// Two filter passes into one dw (starting non-zero).
fn twice<B: ConvOps>(be: &B, g: &ConvGeometry, num: usize) -> Vec<f32> {
    let (id, od, wl) = (g.in_dim(), g.out_dim(), g.weight_len());
    let x = up(be, 0, &test_data(num * id, 1));
    let dy = up(be, 0, &test_data(num * od, 2));
    let mut dw = up(be, 0, &test_data(wl, 3));
    let mut ws = be.alloc(be.conv_workspace_len(g, num));
    for _ in 0..2 {
        be.conv_backward_filter(g, num, x.view(), dy.view(), dw.view_mut(), ws.view_mut());
    }
    dw.read(wl)
}

#[test]
fn repeated_passes_reuse_plans_and_accumulate() {
    let Some(be) = cuda_backend() else {
        return;
    };
    // beta = 1 twice, with the plan built in conv_workspace_len and reused.
    let g = geom(
        4,
        &[10, 10],
        6,
        &[3, 3],
        &[1, 1],
        &[1, 1],
        &[1, 1],
        2,
        Engine::Default,
    );
    let gpu_dw = twice(&be, &g, 2);
    be.sync().unwrap();
    assert_close(
        "two accumulated filter passes",
        &gpu_dw,
        &twice(&CpuBackend::new(), &g, 2),
        1e-4,
    );
}
