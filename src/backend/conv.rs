//! Convolution kernels: im2col/col2im and the convolution passes.
//!
//! The passes have default bodies written once on `Math` (Caffe's scheme: per
//! image, im2col into a column buffer, then one GEMM per group), so a backend
//! only has to supply `im2col`/`col2im`; the CPU backend overrides the passes
//! to run the images of a batch in parallel.
use super::{Math, View, ViewMut};

/// The geometry of one convolution (2-D or N-D), resolved once in `reshape`.
///
/// Roles follow the GEMM, not the layer: `in` is the image that im2col reads
/// (a convolution's bottom), `out` the GEMM result (its top). A
/// deconvolution uses the same geometry with the roles swapped (its top is
/// the im2col side). Shapes are per image; the batch count is passed to the
/// passes separately.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvGeometry {
    /// Channels of the im2col side.
    pub in_channels: usize,
    /// Spatial dims of the im2col side.
    pub in_shape: Vec<usize>,
    /// Channels of the GEMM result.
    pub out_channels: usize,
    /// Spatial dims of the GEMM result (Caffe's output-size rule applied to
    /// `in_shape`).
    pub out_shape: Vec<usize>,
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub pad: Vec<usize>,
    pub dilation: Vec<usize>,
    pub group: usize,
    /// The layer's `engine` (Caffe's DEFAULT/CAFFE/CUDNN): which
    /// implementation a GPU backend uses; the CPU backend ignores it.
    pub engine: Engine,
}

/// Caffe's per-layer `engine` choice. DEFAULT lets the backend pick (on
/// a GPU: cuDNN where Caffe would use it), CAFFE asks for Caffe's own
/// im2col + GEMM kernels, CUDNN for cuDNN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    #[default]
    Default,
    Caffe,
    Cudnn,
}

impl Engine {
    /// From the proto enum's value (0 DEFAULT, 1 CAFFE, 2 CUDNN; anything
    /// else is DEFAULT, as prost keeps unknown values).
    pub fn from_proto(v: i32) -> Self {
        match v {
            1 => Engine::Caffe,
            2 => Engine::Cudnn,
            _ => Engine::Default,
        }
    }
}

impl ConvGeometry {
    /// Caffe's convolution output size along one axis (C integer division,
    /// which truncates toward zero); `None` when no window fits.
    pub fn output_size(
        input: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        dilation: usize,
    ) -> Option<usize> {
        let extent = (dilation * (kernel.max(1) - 1) + 1) as i64;
        let out = (input as i64 + 2 * pad as i64 - extent) / stride.max(1) as i64 + 1;
        (out > 0).then_some(out as usize)
    }
    pub fn num_spatial_axes(&self) -> usize {
        self.kernel.len()
    }
    /// Values per channel plane of the im2col side.
    pub fn in_spatial(&self) -> usize {
        self.in_shape.iter().product()
    }
    /// Values per channel plane of the GEMM result.
    pub fn out_spatial(&self) -> usize {
        self.out_shape.iter().product()
    }
    /// Values per image of the im2col side.
    pub fn in_dim(&self) -> usize {
        self.in_channels * self.in_spatial()
    }
    /// Values per image of the GEMM result.
    pub fn out_dim(&self) -> usize {
        self.out_channels * self.out_spatial()
    }
    /// Kernel positions per channel (product of the kernel dims).
    pub fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }
    /// Columns of one group's weight matrix (Caffe's kernel_dim_).
    pub fn kernel_dim(&self) -> usize {
        self.in_channels / self.group * self.kernel_size()
    }
    /// Values of the weight blob.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.kernel_dim()
    }
    /// Values of one image's column buffer.
    pub fn col_len(&self) -> usize {
        self.in_channels * self.kernel_size() * self.out_spatial()
    }
    /// im2col is the identity (Caffe's is_1x1_: kernel 1, stride 1, pad 0
    /// on every axis; dilation is irrelevant then).
    pub fn is_1x1(&self) -> bool {
        self.kernel.iter().all(|&k| k == 1)
            && self.stride.iter().all(|&s| s == 1)
            && self.pad.iter().all(|&p| p == 0)
    }
}

/// A depthwise 2-D convolution (`group` = input = output channels, one
/// filter per channel) as plain numbers. Both backends run such layers on
/// direct kernels instead of their general paths, and this one rule says
/// which layers those are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DepthwiseGeometry {
    pub c: usize,
    pub ih: usize,
    pub iw: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
}

impl DepthwiseGeometry {
    /// `g`'s depthwise geometry, if it is one: 2-D, any stride, pad and
    /// dilation, and the output size Caffe's rule gives (the direct
    /// kernels' bounds rely on it).
    pub fn new(g: &ConvGeometry) -> Option<DepthwiseGeometry> {
        let ok = g.num_spatial_axes() == 2
            && g.group > 0
            && g.group == g.in_channels
            && g.group == g.out_channels
            && g.in_shape.len() == 2
            && g.out_shape.len() == 2
            && [&g.stride, &g.pad, &g.dilation]
                .iter()
                .all(|v| v.len() == 2)
            && g.kernel
                .iter()
                .chain(&g.stride)
                .chain(&g.dilation)
                .all(|&v| v > 0)
            && g.in_shape.iter().chain(&g.out_shape).all(|&v| v > 0);
        if !ok {
            return None;
        }
        let k = DepthwiseGeometry {
            c: g.in_channels,
            ih: g.in_shape[0],
            iw: g.in_shape[1],
            oh: g.out_shape[0],
            ow: g.out_shape[1],
            kh: g.kernel[0],
            kw: g.kernel[1],
            sh: g.stride[0],
            sw: g.stride[1],
            ph: g.pad[0],
            pw: g.pad[1],
            dh: g.dilation[0],
            dw: g.dilation[1],
        };
        let fits = ConvGeometry::output_size(k.ih, k.kh, k.sh, k.ph, k.dh) == Some(k.oh)
            && ConvGeometry::output_size(k.iw, k.kw, k.sw, k.pw, k.dw) == Some(k.ow);
        fits.then_some(k)
    }

    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }
    pub fn in_plane(&self) -> usize {
        self.ih * self.iw
    }
    pub fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
}

/// `v` advanced by `k` elements.
#[inline]
pub(crate) fn at(v: View<'_>, k: usize) -> View<'_> {
    View {
        buf: v.buf,
        off: v.off + k,
    }
}

/// `v` advanced by `k` elements, reborrowed.
#[inline]
pub(crate) fn at_mut<'a>(v: &'a mut ViewMut<'_>, k: usize) -> ViewMut<'a> {
    let off = v.off + k;
    v.buf.at_mut(off)
}

/// Convolution kernels. `num` is the number of images (Caffe's num_: the
/// product of the axes before the channel axis); images are contiguous
/// blocks of `in_dim()` / `out_dim()` values. Weights are
/// `(out_channels, in_channels / group, kernel...)`.
#[allow(clippy::too_many_arguments)]
pub trait ConvOps: Math {
    /// One image `x` (`in_dim()` values) into its column buffer `col`
    /// (`col_len()` values: rows `(c·kernel_size + kernel offset)`, columns
    /// the output positions; zero where the window reads padding).
    fn im2col(&self, g: &ConvGeometry, x: View, col: ViewMut);

    /// The adjoint of `im2col`: overwrite `x` with the sum of the column
    /// entries that read each of its values.
    fn col2im(&self, g: &ConvGeometry, col: View, x: ViewMut);

    /// Scratch the passes below need for `num` images (values).
    fn conv_workspace_len(&self, g: &ConvGeometry, _num: usize) -> usize {
        g.col_len() + g.out_spatial()
    }

    /// `y = W ⊛ x (+ bias)` for `num` images (`y` is overwritten).
    fn conv_forward(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        w: View,
        bias: Option<View>,
        y: ViewMut,
        ws: ViewMut,
    ) {
        generic::conv_forward(self, g, num, x, w, bias, y, ws)
    }

    /// `dx = Wᵀ ⊛ dy` for `num` images (`dx` is overwritten).
    fn conv_backward_data(
        &self,
        g: &ConvGeometry,
        num: usize,
        dy: View,
        w: View,
        dx: ViewMut,
        ws: ViewMut,
    ) {
        generic::conv_backward_data(self, g, num, dy, w, dx, ws)
    }

    /// `dw += Σ_images dy ⋆ x` (accumulates, as Caffe's param diffs do).
    fn conv_backward_filter(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        dy: View,
        dw: ViewMut,
        ws: ViewMut,
    ) {
        generic::conv_backward_filter(self, g, num, x, dy, dw, ws)
    }

    /// `conv_backward_bias` (over `g`'s output) then `conv_backward_filter`,
    /// the convolution layer's order when it has a bias; a backend may fuse
    /// the two so that `dy` is read once.
    #[allow(clippy::too_many_arguments)]
    fn conv_backward_filter_bias(
        &self,
        g: &ConvGeometry,
        num: usize,
        x: View,
        dy: View,
        dw: ViewMut,
        db: ViewMut,
        mut ws: ViewMut,
    ) {
        let (c, s) = (g.out_channels, g.out_spatial());
        self.conv_backward_bias(num, c, s, dy, db, ws.rb());
        self.conv_backward_filter(g, num, x, dy, dw, ws);
    }

    /// `db[c] += Σ_images Σ_positions dy[c]` over `num` images of
    /// `channels × spatial` values (accumulates). `ws` needs `spatial` values.
    fn conv_backward_bias(
        &self,
        num: usize,
        channels: usize,
        spatial: usize,
        dy: View,
        db: ViewMut,
        ws: ViewMut,
    ) {
        generic::conv_backward_bias(self, num, channels, spatial, dy, db, ws)
    }
}

/// The default passes, written once on `Math` + im2col/col2im (public so
/// a backend that overrides a pass can still be checked against them).
#[allow(clippy::too_many_arguments)]
pub mod generic {
    use super::*;

    /// `y = W ⊛ x (+ bias)` for `num` images (`y` is overwritten).
    pub fn conv_forward<B: ConvOps + ?Sized>(
        be: &B,
        g: &ConvGeometry,
        num: usize,
        x: View,
        w: View,
        bias: Option<View>,
        mut y: ViewMut,
        mut ws: ViewMut,
    ) {
        let (id, od, s) = (g.in_dim(), g.out_dim(), g.out_spatial());
        let (ocg, kd) = (g.out_channels / g.group, g.kernel_dim());
        let (wo, co, oo) = (ocg * kd, kd * s, ocg * s);
        let col_len = g.col_len();
        if bias.is_some() {
            // The ones vector Caffe's bias GEMM multiplies by.
            be.set(s, 1.0, at_mut(&mut ws, col_len));
        }
        for n in 0..num {
            let xn = at(x, n * id);
            if !g.is_1x1() {
                be.im2col(g, xn, ws.rb());
            }
            let col = if g.is_1x1() { xn } else { ws.as_view() };
            for gi in 0..g.group {
                be.gemm(
                    false,
                    false,
                    ocg,
                    s,
                    kd,
                    1.0,
                    at(w, gi * wo),
                    at(col, gi * co),
                    0.0,
                    at_mut(&mut y, n * od + gi * oo),
                );
            }
            if let Some(b) = bias {
                let ones = at(ws.as_view(), col_len);
                be.gemm(
                    false,
                    false,
                    g.out_channels,
                    s,
                    1,
                    1.0,
                    b,
                    ones,
                    1.0,
                    at_mut(&mut y, n * od),
                );
            }
        }
    }

    /// `dx = Wᵀ ⊛ dy` for `num` images (`dx` is overwritten).
    pub fn conv_backward_data<B: ConvOps + ?Sized>(
        be: &B,
        g: &ConvGeometry,
        num: usize,
        dy: View,
        w: View,
        mut dx: ViewMut,
        mut ws: ViewMut,
    ) {
        let (id, od, s) = (g.in_dim(), g.out_dim(), g.out_spatial());
        let (ocg, kd) = (g.out_channels / g.group, g.kernel_dim());
        let (wo, co, oo) = (ocg * kd, kd * s, ocg * s);
        for n in 0..num {
            for gi in 0..g.group {
                let dst = if g.is_1x1() {
                    at_mut(&mut dx, n * id + gi * co)
                } else {
                    at_mut(&mut ws, gi * co)
                };
                be.gemm(
                    true,
                    false,
                    kd,
                    s,
                    ocg,
                    1.0,
                    at(w, gi * wo),
                    at(dy, n * od + gi * oo),
                    0.0,
                    dst,
                );
            }
            if !g.is_1x1() {
                be.col2im(g, ws.as_view(), at_mut(&mut dx, n * id));
            }
        }
    }

    /// `dw += Σ_images dy ⋆ x` (accumulates, as Caffe's param diffs do).
    pub fn conv_backward_filter<B: ConvOps + ?Sized>(
        be: &B,
        g: &ConvGeometry,
        num: usize,
        x: View,
        dy: View,
        mut dw: ViewMut,
        mut ws: ViewMut,
    ) {
        let (id, od, s) = (g.in_dim(), g.out_dim(), g.out_spatial());
        let (ocg, kd) = (g.out_channels / g.group, g.kernel_dim());
        let (wo, co, oo) = (ocg * kd, kd * s, ocg * s);
        for n in 0..num {
            let xn = at(x, n * id);
            if !g.is_1x1() {
                be.im2col(g, xn, ws.rb());
            }
            let col = if g.is_1x1() { xn } else { ws.as_view() };
            for gi in 0..g.group {
                be.gemm(
                    false,
                    true,
                    ocg,
                    kd,
                    s,
                    1.0,
                    at(dy, n * od + gi * oo),
                    at(col, gi * co),
                    1.0,
                    at_mut(&mut dw, gi * wo),
                );
            }
        }
    }

    /// `db[c] += Σ_images Σ_positions dy[c]` over `num` images of
    /// `channels × spatial` values (accumulates). `ws` needs `spatial` values.
    pub fn conv_backward_bias<B: ConvOps + ?Sized>(
        be: &B,
        num: usize,
        channels: usize,
        spatial: usize,
        dy: View,
        mut db: ViewMut,
        mut ws: ViewMut,
    ) {
        be.set(spatial, 1.0, ws.rb());
        for n in 0..num {
            be.gemv(
                false,
                channels,
                spatial,
                1.0,
                at(dy, n * channels * spatial),
                ws.as_view(),
                1.0,
                db.rb(),
            );
        }
    }
}
