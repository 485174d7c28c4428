//! Deconvolution (Caffe's DeconvolutionLayer): the transposed convolution.
//! Caffe builds it on BaseConvolutionLayer with reverse_dimensions(), so
//! the convolution passes run with roles swapped: the top is the im2col
//! side, forward is a convolution's data-backward (Wᵀ·x, then col2im) plus
//! bias, the data gradient is a convolution's forward of the top diff, and
//! the weight gradient correlates the top diff's columns with the bottom.
use crate::backend::{Buffer, ConvGeometry, Engine};
use crate::error::Result;
use crate::fillers::fill;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::Blob;

use super::conv_param::{ConvSpatial, Spatial};

#[derive(Debug)]
pub struct Deconvolution {
    num_output: usize,
    bias_term: bool,
    group: usize,
    fields: ConvSpatial,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
    // Resolved in setup.
    spatial: Spatial,
    /// Channels of the bottom.
    channels: usize,
    engine: Engine,
    // Resolved in reshape.
    /// in = the top (im2col side), out = the bottom (GEMM side).
    geom: ConvGeometry,
    num: usize,
    /// Ones over the top's spatial positions: Caffe's bias multiplier.
    ones: Buffer,
}

impl Deconvolution {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.convolution_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            return Err(layer_err!("convolution_param.num_output must be positive"));
        }
        if p.group() == 0 {
            return Err(layer_err!("convolution_param.group must be positive"));
        }
        Ok(Deconvolution {
            num_output: p.num_output() as usize,
            bias_term: p.bias_term(),
            engine: Engine::from_proto(p.engine.unwrap_or(0)),
            group: p.group() as usize,
            fields: ConvSpatial::new(&p)?,
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            spatial: Spatial::default(),
            channels: 0,
            geom: ConvGeometry::default(),
            num: 0,
            ones: Buffer::default(),
        })
    }

    /// Caffe's reversed weight shape: (bottom channels, num_output / group, kernel...).
    fn weight_shape(&self) -> Vec<usize> {
        let mut s = vec![self.channels, self.num_output / self.group];
        s.extend_from_slice(&self.spatial.kernel);
        s
    }

    /// Caffe's deconvolution output size: `stride·(in − 1) + extent − 2·pad`.
    fn output_shape(&self, in_shape: &[usize]) -> Result<Vec<usize>> {
        let s = &self.spatial;
        in_shape
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let out = s.stride[i] as i64 * (size as i64 - 1) + s.extent(i) as i64
                    - 2 * s.pad[i] as i64;
                if out > 0 {
                    Ok(out as usize)
                } else {
                    Err(layer_err!(
                        "spatial axis {i}: input {size} with stride {}, kernel extent {} and pad {} \
                         gives output size {out}",
                        s.stride[i],
                        s.extent(i),
                        s.pad[i]
                    ))
                }
            })
            .collect()
    }
}

impl Layer for Deconvolution {
    fn type_name(&self) -> &'static str {
        "Deconvolution"
    }

    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(1),
            min_tops: Some(1),
            equal_bottom_top: true,
            ..Default::default()
        }
    }

    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        let shape = io.bottom(0).shape().to_vec();
        self.spatial = self.fields.resolve(&shape, 0)?;
        self.channels = shape[self.spatial.channel_axis];
        if !self.channels.is_multiple_of(self.group) {
            return Err(layer_err!(
                "the {} input channels are not a multiple of group {}",
                self.channels,
                self.group
            ));
        }
        if !self.num_output.is_multiple_of(self.group) {
            return Err(layer_err!(
                "num_output {} is not a multiple of group {}",
                self.num_output,
                self.group
            ));
        }
        let mut weight = Blob::new(cx.be.as_ref(), &self.weight_shape());
        fill(&self.weight_filler, &mut weight, &mut cx.rng)?;
        let mut blobs = vec![weight];
        if self.bias_term {
            let mut bias = Blob::new(cx.be.as_ref(), &[self.num_output]);
            fill(&self.bias_filler, &mut bias, &mut cx.rng)?;
            blobs.push(bias);
        }
        Ok(blobs)
    }

    fn reshape(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let shapes = io.bottom_shapes();
        let shape = &shapes[0];
        self.spatial.check_rank(shape)?;
        let axis = self.spatial.channel_axis;
        if shape[axis] != self.channels {
            return Err(layer_err!(
                "input size incompatible with convolution kernel: {} channels, expected {}",
                shape[axis],
                self.channels
            ));
        }
        if let Some((i, s)) = shapes.iter().enumerate().find(|(_, s)| *s != shape) {
            return Err(layer_err!(
                "all inputs must have the same shape: bottom {i} is {s:?}, bottom 0 is {shape:?}"
            ));
        }
        let in_shape = shape[axis + 1..].to_vec();
        let out_shape = self.output_shape(&in_shape)?;
        let mut top_shape = shape[..axis].to_vec();
        top_shape.push(self.num_output);
        top_shape.extend_from_slice(&out_shape);
        for t in 0..io.n_tops() {
            io.top_mut(t).reshape(&top_shape)?;
        }
        self.num = shape[..axis].iter().product();
        let s = &self.spatial;
        self.geom = ConvGeometry {
            in_channels: self.num_output,
            in_shape: out_shape,
            out_channels: self.channels,
            out_shape: in_shape,
            kernel: s.kernel.clone(),
            stride: s.stride.clone(),
            pad: s.pad.clone(),
            dilation: s.dilation.clone(),
            group: self.group,
            engine: self.engine,
        };
        let want = self.weight_shape();
        if io.param(0).shape() != want.as_slice() {
            return Err(layer_err!(
                "incorrect weight shape: expected {want:?}, got {:?}",
                io.param(0).shape()
            ));
        }
        if self.bias_term && io.param(1).shape() != [self.num_output] {
            return Err(layer_err!(
                "incorrect bias shape: expected [{}], got {:?}",
                self.num_output,
                io.param(1).shape()
            ));
        }
        let need = cx.be.conv_workspace_len(&self.geom, self.num);
        cx.reserve_workspace(need);
        let spatial = self.geom.in_spatial();
        if self.bias_term && self.ones.len() != spatial {
            self.ones = cx.be.alloc(spatial);
            cx.be.set(spatial, 1.0, self.ones.view_mut());
        }
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let g = &self.geom;
        let (top_dim, spatial) = (g.in_dim(), g.in_spatial());
        for i in 0..io.n_bottoms() {
            let ([x, w], [y]) = io.split([Slot::B(i), Slot::P(0)], [Slot::T(i)])?;
            cx.be.conv_backward_data(
                g,
                self.num,
                x.data.view(),
                w.data.view(),
                y.data.view_mut(),
                cx.workspace.view_mut(),
            );
            if self.bias_term {
                let ([b], [y]) = io.split([Slot::P(1)], [Slot::T(i)])?;
                // Caffe's forward_cpu_bias, image by image: y += b ⊗ ones.
                for n in 0..self.num {
                    cx.be.gemm(
                        false,
                        false,
                        self.num_output,
                        spatial,
                        1,
                        1.0,
                        b.data.view(),
                        self.ones.view(),
                        1.0,
                        y.data.at_mut(n * top_dim),
                    );
                }
            }
        }
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let g = &self.geom;
        let weight_grad = io.param_propagate_down(0);
        let bias_grad = self.bias_term && io.param_propagate_down(1);
        for i in 0..io.n_tops() {
            if bias_grad {
                let ([y], [b]) = io.split([Slot::T(i)], [Slot::P(1)])?;
                cx.be.conv_backward_bias(
                    self.num,
                    self.num_output,
                    g.in_spatial(),
                    y.diff.view(),
                    b.diff.view_mut(),
                    cx.workspace.view_mut(),
                );
            }
            if weight_grad {
                // dW += Σ_images col(dy) ⋆ x: the top diff is the im2col side.
                let ([y, x], [w]) = io.split([Slot::T(i), Slot::B(i)], [Slot::P(0)])?;
                cx.be.conv_backward_filter(
                    g,
                    self.num,
                    y.diff.view(),
                    x.data.view(),
                    w.diff.view_mut(),
                    cx.workspace.view_mut(),
                );
            }
            if propagate_down.get(i).copied().unwrap_or(false) {
                // dx = W ⊛ dy: a convolution's forward, without bias.
                let ([y, w], [x]) = io.split([Slot::T(i), Slot::P(0)], [Slot::B(i)])?;
                cx.be.conv_forward(
                    g,
                    self.num,
                    y.diff.view(),
                    w.data.view(),
                    None,
                    x.diff.view_mut(),
                    cx.workspace.view_mut(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::layers::Io;
    use crate::tensor::Blob;

    #[test]
    fn golden_case_matches_caffe() {
        check_golden("deconv_stride2");
    }

    #[test]
    fn output_shape_follows_caffe() {
        // stride·(in−1) + dilation·(k−1) + 1 − 2·pad: 2·(3−1) + 4 − 2 = 6, 2·3 + 4 − 2 = 8.
        let (_, tops) = run_forward(
            "type: 'Deconvolution' convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 }",
            &[&[2, 4, 3, 4]],
        );
        assert_eq!(tops[0].shape(), &[2, 3, 6, 8]);
        // N-d, per-axis fields, dilation, channel axis 2.
        let (_, tops) = run_forward(
            "type: 'Deconvolution' convolution_param { num_output: 2 axis: 2 \
             kernel_size: 2 kernel_size: 3 kernel_size: 1 stride: 1 stride: 2 stride: 3 \
             pad: 0 pad: 1 pad: 0 dilation: 2 }",
            &[&[2, 3, 2, 5, 6, 4]],
        );
        // axis 0: 1·4 + 3 = 7; axis 1: 2·5 + 5 − 2 = 13; axis 2: 3·3 + 1 = 10.
        assert_eq!(tops[0].shape(), &[2, 3, 2, 7, 13, 10]);
    }

    /// The definition, independent of the convolution passes: every input
    /// value scatters `x·W[c, o, k]` to output position `i·stride − pad +
    /// k·dilation` of output channel `o` of its group.
    #[allow(clippy::too_many_arguments)]
    fn direct_deconv(
        x: &[f32],
        shape: [usize; 4],
        w: &[f32],
        b: &[f32],
        o: usize,
        group: usize,
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        d: [usize; 2],
    ) -> (Vec<f32>, [usize; 2]) {
        let [n, c, h, wd] = shape;
        let oh = s[0] * (h - 1) + d[0] * (k[0] - 1) + 1 - 2 * p[0];
        let ow = s[1] * (wd - 1) + d[1] * (k[1] - 1) + 1 - 2 * p[1];
        let (cg, og) = (c / group, o / group);
        let mut y = vec![0f32; n * o * oh * ow];
        for img in 0..n {
            for oc in 0..o {
                for v in &mut y[(img * o + oc) * oh * ow..][..oh * ow] {
                    *v = b.get(oc).copied().unwrap_or(0.0);
                }
            }
            for ci in 0..c {
                let gi = ci / cg;
                for i in 0..h {
                    for j in 0..wd {
                        let xv = x[((img * c + ci) * h + i) * wd + j];
                        for oo in 0..og {
                            let oc = gi * og + oo;
                            for ki in 0..k[0] {
                                for kj in 0..k[1] {
                                    let r = (i * s[0] + ki * d[0]) as i64 - p[0] as i64;
                                    let q = (j * s[1] + kj * d[1]) as i64 - p[1] as i64;
                                    if r < 0 || q < 0 || r >= oh as i64 || q >= ow as i64 {
                                        continue;
                                    }
                                    let wv = w[((ci * og + oo) * k[0] + ki) * k[1] + kj];
                                    y[((img * o + oc) * oh + r as usize) * ow + q as usize] +=
                                        xv * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, [oh, ow])
    }

    #[test]
    fn forward_matches_the_definition() {
        for (body, group, k, s, p, d, bias) in [
            ("kernel_size: 4 stride: 2 pad: 1", 1, [4, 4], [2, 2], [1, 1], [1, 1], true),
            (
                "group: 2 kernel_h: 3 kernel_w: 2 stride_h: 3 stride_w: 1 pad_h: 1 pad_w: 0 dilation: 2",
                2,
                [3, 2],
                [3, 1],
                [1, 0],
                [2, 2],
                true,
            ),
            ("kernel_size: 1 bias_term: false", 1, [1, 1], [1, 1], [0, 0], [1, 1], false),
        ] {
            let text = format!(
                "type: 'Deconvolution' convolution_param {{ num_output: 4 {body} \
                 weight_filler {{ type: 'gaussian' std: 0.5 }} bias_filler {{ type: 'gaussian' std: 0.5 }} }}"
            );
            let shape = [2usize, 4, 3, 5];
            let mut layer = make_layer(&text).unwrap();
            let mut arena = random_blobs(&[&shape], 11);
            let mut cx = cx();
            let params = {
                let mut io = Io::new(&mut arena, &[0], &[], &[]);
                layer.setup(&mut cx, &mut io).unwrap()
            };
            let np = params.len();
            assert_eq!(np, if bias { 2 } else { 1 });
            arena.push(Blob::default());
            arena.extend(params);
            let pids: Vec<usize> = (2..2 + np).collect();
            let mut io = Io::new(&mut arena, &[0], &[1], &pids);
            layer.reshape(&mut cx, &mut io).unwrap();
            layer.forward(&mut cx, &mut io).unwrap();
            let b = if bias { arena[3].data_vec() } else { vec![] };
            let (want, [oh, ow]) = direct_deconv(
                &arena[0].data_vec(),
                shape,
                &arena[2].data_vec(),
                &b,
                4,
                group,
                k,
                s,
                p,
                d,
            );
            assert_eq!(arena[1].shape(), &[2, 4, oh, ow], "{body}");
            for (a, w) in arena[1].data_vec().iter().zip(&want) {
                assert!((a - w).abs() < 1e-4, "{body}: {a} vs {w}");
            }
        }
    }

    const FILLERS: &str =
        "weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.3 }";

    #[test]
    fn gradients_stride_pad_and_groups() {
        check_gradients(
            &format!(
                "type: 'Deconvolution' convolution_param {{ num_output: 3 kernel_size: 4 stride: 2 \
                 pad: 1 {FILLERS} }}"
            ),
            &[&[2, 2, 3, 4]],
        );
        check_gradients(
            &format!(
                "type: 'Deconvolution' convolution_param {{ num_output: 4 group: 2 kernel_h: 3 \
                 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 {FILLERS} }}"
            ),
            &[&[1, 4, 3, 3]],
        );
    }

    #[test]
    fn gradients_dilation_shared_weights_and_no_bias() {
        // Two bottom/top pairs share the weights.
        check_gradients(
            &format!(
                "type: 'Deconvolution' convolution_param {{ num_output: 2 kernel_size: 3 \
                 dilation: 2 pad: 1 stride: 2 {FILLERS} }}"
            ),
            &[&[2, 3, 3, 3], &[2, 3, 3, 3]],
        );
        check_gradients(
            "type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 2 stride: 2 \
             bias_term: false weight_filler { type: 'gaussian' std: 0.3 } }",
            &[&[2, 3, 2, 3]],
        );
    }

    #[test]
    fn gradients_1x1_and_3d() {
        check_gradients(
            &format!(
                "type: 'Deconvolution' convolution_param {{ num_output: 3 kernel_size: 1 {FILLERS} }}"
            ),
            &[&[2, 2, 3, 4]],
        );
        check_gradients(
            &format!(
                "type: 'Deconvolution' convolution_param {{ num_output: 2 kernel_size: 2 stride: 2 \
                 pad: 1 {FILLERS} }}"
            ),
            &[&[1, 2, 2, 3, 2]],
        );
    }

    #[test]
    fn frozen_weights_get_no_gradient() {
        // lr_mult 0 (FCN's fixed bilinear upsampling): Caffe skips the weight
        // gradient; the data gradient is still computed.
        let mut layer = make_layer(
            "type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 4 stride: 2 \
             bias_term: false weight_filler { type: 'bilinear' } }",
        )
        .unwrap();
        let mut arena = random_blobs(&[&[1, 2, 3, 3]], 5);
        let mut cx = cx();
        let params = {
            let mut io = Io::new(&mut arena, &[0], &[], &[]);
            layer.setup(&mut cx, &mut io).unwrap()
        };
        arena.push(Blob::default());
        arena.extend(params);
        let flags = [false];
        let mut io = Io::new(&mut arena, &[0], &[1], &[2]).with_param_propagate_down(&flags);
        layer.reshape(&mut cx, &mut io).unwrap();
        layer.forward(&mut cx, &mut io).unwrap();
        let n = io.top(0).count();
        io.top_mut(0).set_diff(&vec![1.0; n]).unwrap();
        let m = io.param(0).count();
        io.param_mut(0).set_diff(&vec![0.0; m]).unwrap();
        layer.backward(&mut cx, &mut io, &[true]).unwrap();
        assert!(io.param(0).diff_vec().iter().all(|&v| v == 0.0));
        assert!(io.bottom(0).diff_vec().iter().any(|&v| v != 0.0));
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for (text, shape, msg) in [
            (
                "type: 'Deconvolution' convolution_param { kernel_size: 3 }",
                &[1usize, 1, 5, 5][..],
                "num_output",
            ),
            ("type: 'Deconvolution'", &[1, 1, 5, 5], "num_output"),
            (
                "type: 'Deconvolution' convolution_param { num_output: 2 }",
                &[1, 1, 5, 5],
                "kernel_size must be specified",
            ),
            (
                "type: 'Deconvolution' convolution_param { num_output: 3 kernel_size: 3 group: 2 }",
                &[1, 4, 5, 5],
                "multiple of group",
            ),
            (
                "type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 3 group: 2 }",
                &[1, 3, 5, 5],
                "multiple of group",
            ),
            (
                "type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 1 pad: 1 }",
                &[1, 1, 2, 2],
                "output size 0",
            ),
            (
                "type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 2 group: 0 }",
                &[1, 1, 2, 2],
                "group must be positive",
            ),
        ] {
            let err = try_setup(text, &[shape]).unwrap_err().to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }
}
