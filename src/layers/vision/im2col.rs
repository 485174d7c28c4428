//! Im2col (Caffe's Im2colLayer): the column buffer of a convolution as a
//! blob. The top is `(outer..., C·Πkernel, out...)`: row `c·Πkernel + kernel
//! offset` holds, per output position, the input value the window reads
//! there (0 in the padding). Backward is col2im: each input's gradient is
//! the sum of the column entries that read it.
use crate::backend::ConvGeometry;
use crate::error::Result;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::LayerParameter;
use crate::tensor::Blob;

use super::conv_param::{ConvSpatial, Spatial};

#[derive(Debug)]
pub struct Im2col {
    fields: ConvSpatial,
    // Resolved in setup.
    spatial: Spatial,
    // Resolved in reshape: in = the bottom, out = the output positions.
    geom: ConvGeometry,
    num: usize,
}

impl Im2col {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        // Only the spatial fields matter: num_output, group, bias and
        // fillers are ignored, as in Caffe.
        let p = lp.convolution_param.clone().unwrap_or_default();
        Ok(Im2col {
            fields: ConvSpatial::new(&p)?,
            spatial: Spatial::default(),
            geom: ConvGeometry::default(),
            num: 0,
        })
    }
}

impl Layer for Im2col {
    fn type_name(&self) -> &'static str {
        "Im2col"
    }

    fn arity(&self) -> Arity {
        Arity::exact(1, 1)
    }

    fn setup(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        self.spatial = self.fields.resolve(io.bottom(0).shape(), 1)?;
        Ok(Vec::new())
    }

    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shape = io.bottom(0).shape().to_vec();
        let s = &self.spatial;
        s.check_rank(&shape)?;
        let axis = s.channel_axis;
        let in_shape = shape[axis + 1..].to_vec();
        let mut out_shape = Vec::with_capacity(in_shape.len());
        for (i, &size) in in_shape.iter().enumerate() {
            let o =
                ConvGeometry::output_size(size, s.kernel[i], s.stride[i], s.pad[i], s.dilation[i])
                    .ok_or_else(|| {
                        layer_err!(
                            "spatial axis {i}: input {size} with pad {} is smaller than the kernel extent {}",
                            s.pad[i],
                            s.extent(i)
                        )
                    })?;
            out_shape.push(o);
        }
        let channels = shape[axis];
        let kernel_size: usize = s.kernel.iter().product();
        let mut top_shape = shape[..axis].to_vec();
        top_shape.push(channels * kernel_size);
        top_shape.extend_from_slice(&out_shape);
        io.top_mut(0).reshape(&top_shape)?;
        self.num = shape[..axis].iter().product();
        self.geom = ConvGeometry {
            in_channels: channels,
            in_shape,
            // The GEMM side is unused: im2col alone, as one group.
            out_channels: channels * kernel_size,
            out_shape,
            kernel: s.kernel.clone(),
            stride: s.stride.clone(),
            pad: s.pad.clone(),
            dilation: s.dilation.clone(),
            group: 1,
            engine: Default::default(),
        };
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let g = &self.geom;
        let (bottom_dim, top_dim) = (g.in_dim(), g.col_len());
        let ([x], [y]) = io.split([Slot::B(0)], [Slot::T(0)])?;
        for n in 0..self.num {
            cx.be
                .im2col(g, x.data.at(n * bottom_dim), y.data.at_mut(n * top_dim));
        }
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        if !propagate_down.first().copied().unwrap_or(false) {
            return Ok(());
        }
        let g = &self.geom;
        let (bottom_dim, top_dim) = (g.in_dim(), g.col_len());
        let ([y], [x]) = io.split([Slot::T(0)], [Slot::B(0)])?;
        for n in 0..self.num {
            cx.be
                .col2im(g, y.diff.at(n * top_dim), x.diff.at_mut(n * bottom_dim));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn golden_case_matches_caffe() {
        check_golden("im2col_3x3_s2_pad1");
    }

    /// LAYERS.md's definition for 2-D: row `(c·kh + i)·kw + j`, column
    /// `oh·out_w + ow`, value `x[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]`
    /// or 0 outside the image.
    #[test]
    fn forward_matches_the_definition() {
        let (k, s, p, d) = ([3usize, 2], [2usize, 1], [1usize, 0], [1usize, 2]);
        let (n, c, h, w) = (2usize, 3usize, 6usize, 7usize);
        let (layer, tops) = run_forward(
            "type: 'Im2col' convolution_param { kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 \
             pad_h: 1 pad_w: 0 dilation: 1 dilation: 2 }",
            &[&[n, c, h, w]],
        );
        drop(layer);
        let oh = (h + 2 * p[0] - (d[0] * (k[0] - 1) + 1)) / s[0] + 1;
        let ow = (w + 2 * p[1] - (d[1] * (k[1] - 1) + 1)) / s[1] + 1;
        assert_eq!(tops[0].shape(), &[n, c * k[0] * k[1], oh, ow]);
        // run_forward's bottoms are random_blobs(shapes, 2).
        let x = random_blobs(&[&[n, c, h, w]], 2)[0].data_vec();
        let y = tops[0].data_vec();
        for img in 0..n {
            for ci in 0..c {
                for i in 0..k[0] {
                    for j in 0..k[1] {
                        let row = (ci * k[0] + i) * k[1] + j;
                        for a in 0..oh {
                            for b in 0..ow {
                                let r = (a * s[0] + i * d[0]) as i64 - p[0] as i64;
                                let q = (b * s[1] + j * d[1]) as i64 - p[1] as i64;
                                let want = if r < 0 || q < 0 || r >= h as i64 || q >= w as i64 {
                                    0.0
                                } else {
                                    x[((img * c + ci) * h + r as usize) * w + q as usize]
                                };
                                let got = y[((img * c * k[0] * k[1] + row) * oh + a) * ow + b];
                                assert_eq!(got, want, "image {img} row {row} at ({a}, {b})");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn output_shape_nd_and_channel_axis() {
        let (_, tops) = run_forward(
            "type: 'Im2col' convolution_param { axis: 2 kernel_size: 2 kernel_size: 1 kernel_size: 3 \
             stride: 2 pad: 1 }",
            &[&[2, 3, 2, 5, 4, 6]],
        );
        // axes: (5+2−2)/2+1 = 3, (4+2−1)/2+1 = 3, (6+2−3)/2+1 = 3.
        assert_eq!(tops[0].shape(), &[2, 3, 12, 3, 3, 3]);
        let (_, tops) = run_forward(
            "type: 'Im2col' convolution_param { kernel_size: 3 }",
            &[&[2, 4, 7]],
        );
        assert_eq!(tops[0].shape(), &[2, 12, 5]);
    }

    #[test]
    fn gradients_pad_stride_dilation() {
        check_gradients(
            "type: 'Im2col' convolution_param { kernel_size: 3 stride: 2 pad: 1 }",
            &[&[2, 2, 5, 5]],
        );
        check_gradients(
            "type: 'Im2col' convolution_param { kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 \
             pad_h: 0 pad_w: 1 dilation: 2 }",
            &[&[1, 2, 5, 6]],
        );
        // Overlapping windows (stride 1), so col2im sums several entries.
        check_gradients(
            "type: 'Im2col' convolution_param { kernel_size: 2 pad: 1 }",
            &[&[2, 1, 3, 4]],
        );
    }

    #[test]
    fn gradients_nd() {
        check_gradients(
            "type: 'Im2col' convolution_param { kernel_size: 2 stride: 1 pad: 1 dilation: 1 }",
            &[&[1, 2, 3, 2, 3]],
        );
        check_gradients(
            "type: 'Im2col' convolution_param { kernel_size: 3 stride: 2 pad: 2 dilation: 2 }",
            &[&[2, 2, 6]],
        );
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for (text, shape, msg) in [
            (
                "type: 'Im2col'",
                &[1usize, 1, 5, 5][..],
                "kernel_size must be specified",
            ),
            (
                "type: 'Im2col' convolution_param { kernel_size: 3 }",
                &[2, 3],
                "at least 1 spatial",
            ),
            (
                "type: 'Im2col' convolution_param { kernel_size: 7 }",
                &[1, 1, 5, 5],
                "kernel extent 7",
            ),
            (
                "type: 'Im2col' convolution_param { kernel_size: 3 stride: 0 }",
                &[1, 1, 5, 5],
                "stride dimensions must be nonzero",
            ),
        ] {
            let err = try_setup(text, &[shape]).unwrap_err().to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }
}
