//! The CPU convolution passes against the backend-independent reference
//! passes (`backend::conv::generic`: per image im2col + one GEMM, Caffe's
//! scheme) on geometries that reach each of the CPU's code paths: the
//! direct (im2col-free) forward and its transposed use for the data
//! gradient, im2col into packed panels, 1×1, groups, dilation, stride,
//! padding, N-d, and thread pools of several sizes.
use rcaffe::backend::conv::generic;
use rcaffe::backend::cpu::CpuBackend;
use rcaffe::backend::{Buffer, ConvGeometry, ConvOps, Math};

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

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn close(what: &str, g: &ConvGeometry, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "{what} at {i}: {a} vs {b} for {g:?}"
        );
    }
}

fn geometries() -> Vec<ConvGeometry> {
    vec![
        // Direct forward (output rows of 8 and 16), no padding: LeNet conv2.
        geom(20, &[12, 12], 50, &[5, 5], &[1, 1], &[0, 0], &[1, 1], 1),
        // Direct forward with padding, transposed data gradient: cifar conv2/3.
        geom(8, &[16, 16], 12, &[5, 5], &[1, 1], &[2, 2], &[1, 1], 1),
        geom(7, &[8, 8], 9, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1),
        // ... with groups, a rectangular kernel and uneven padding.
        geom(6, &[9, 8], 4, &[2, 3], &[1, 1], &[1, 1], &[1, 1], 2),
        // Direct forward, dilation (data gradient through columns).
        geom(3, &[16, 16], 5, &[3, 3], &[1, 1], &[2, 2], &[2, 2], 1),
        // Direct forward with a row stride; columns for the data gradient.
        geom(3, &[17, 16], 4, &[3, 3], &[2, 1], &[1, 1], &[1, 1], 1),
        // Output rows not a multiple of 8: Direct over rows rounded up to 8
        // (7 → 8), or im2col into packed panels (stride 2).
        geom(3, &[6, 7], 4, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1),
        geom(3, &[9, 8], 4, &[5, 5], &[2, 2], &[2, 2], &[1, 1], 1),
        // ... wide Direct over planes too large to batch: padded (27 → 32,
        // CaffeNet conv2's width; its data gradient is the same shape),
        // unpadded (28 → 32: the last run reads the zeroed tail), and
        // grouped with dilation (23 → 24).
        geom(3, &[20, 27], 5, &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1),
        geom(2, &[18, 30], 3, &[3, 3], &[1, 1], &[0, 0], &[1, 1], 1),
        geom(4, &[19, 23], 6, &[3, 3], &[1, 1], &[2, 2], &[2, 2], 2),
        // LeNet conv1: direct forward, data gradient through columns.
        geom(1, &[28, 28], 20, &[5, 5], &[1, 1], &[0, 0], &[1, 1], 1),
        // 1×1, 1-D, 3-D, no spatial axes.
        geom(5, &[4, 6], 7, &[1, 1], &[1, 1], &[0, 0], &[1, 1], 1),
        // 1×1 with groups and a plane not a multiple of 8 (99 positions).
        geom(6, &[9, 11], 10, &[1, 1], &[1, 1], &[0, 0], &[1, 1], 2),
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
        geom(6, &[], 4, &[], &[], &[], &[], 2),
    ]
}

fn check(be: &CpuBackend, g: &ConvGeometry, num: usize) {
    let x = Buffer::from_vec(values(num * g.in_dim(), 1));
    let w = Buffer::from_vec(values(g.weight_len(), 2));
    let b = Buffer::from_vec(values(g.out_channels, 3));
    let dy = Buffer::from_vec(values(num * g.out_dim(), 4));
    let mut ws = be.alloc(be.conv_workspace_len(g, num));
    let mut gws = be.alloc(g.col_len() + g.out_spatial());
    let (ny, nx) = (num * g.out_dim(), num * g.in_dim());

    let mut y = Buffer::from_vec(vec![f32::NAN; ny]);
    let mut yg = Buffer::from_vec(vec![f32::NAN; ny]);
    be.conv_forward(
        g,
        num,
        x.view(),
        w.view(),
        Some(b.view()),
        y.view_mut(),
        ws.view_mut(),
    );
    generic::conv_forward(
        be,
        g,
        num,
        x.view(),
        w.view(),
        Some(b.view()),
        yg.view_mut(),
        gws.view_mut(),
    );
    close("forward", g, &y.read(ny), &yg.read(ny));

    let mut dx = Buffer::from_vec(vec![f32::NAN; nx]);
    let mut dxg = Buffer::from_vec(vec![f32::NAN; nx]);
    be.conv_backward_data(g, num, dy.view(), w.view(), dx.view_mut(), ws.view_mut());
    generic::conv_backward_data(
        be,
        g,
        num,
        dy.view(),
        w.view(),
        dxg.view_mut(),
        gws.view_mut(),
    );
    close("backward data", g, &dx.read(nx), &dxg.read(nx));

    // The filter gradient accumulates.
    let wl = g.weight_len();
    let mut dw = Buffer::from_vec(vec![0.25; wl]);
    let mut dwg = Buffer::from_vec(vec![0.25; wl]);
    be.conv_backward_filter(g, num, x.view(), dy.view(), dw.view_mut(), ws.view_mut());
    generic::conv_backward_filter(
        be,
        g,
        num,
        x.view(),
        dy.view(),
        dwg.view_mut(),
        gws.view_mut(),
    );
    close("backward filter", g, &dw.read(wl), &dwg.read(wl));
}

#[test]
fn cpu_passes_match_the_reference_passes() {
    let be = CpuBackend::new();
    for g in geometries() {
        for num in [1, 3] {
            check(&be, &g, num);
        }
    }
}

#[test]
fn cpu_passes_match_in_other_thread_pools_and_small_workspaces() {
    let be = CpuBackend::new();
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for g in geometries() {
                check(&be, &g, 5);
            }
        });
    }
    // A workspace sized for one thread, used from a larger pool: the passes
    // fall back to one worker rather than overrun it.
    let g = geometries().remove(1);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let len = one.install(|| be.conv_workspace_len(&g, 4));
    let four = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    four.install(|| {
        let x = Buffer::from_vec(values(4 * g.in_dim(), 5));
        let w = Buffer::from_vec(values(g.weight_len(), 6));
        let mut ws = be.alloc(len);
        let mut y = be.alloc(4 * g.out_dim());
        be.conv_forward(&g, 4, x.view(), w.view(), None, y.view_mut(), ws.view_mut());
        let mut gws = be.alloc(g.col_len() + g.out_spatial());
        let mut yg = be.alloc(4 * g.out_dim());
        generic::conv_forward(
            &be,
            &g,
            4,
            x.view(),
            w.view(),
            None,
            yg.view_mut(),
            gws.view_mut(),
        );
        close(
            "forward",
            &g,
            &y.read(4 * g.out_dim()),
            &yg.read(4 * g.out_dim()),
        );
    });
}
