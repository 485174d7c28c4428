//! Convolution (Caffe's ConvolutionLayer): N-d cross-correlation with
//! groups, dilation and per-axis pad/stride/kernel; several bottom/top pairs
//! share one set of weights.
use super::conv_param::ConvSpatial;
use crate::backend::{ConvGeometry, Engine};
use crate::error::Result;
use crate::fillers::fill;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer, Slot};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::Blob;

#[derive(Debug)]
pub struct Convolution {
    num_output: usize,
    bias_term: bool,
    group: usize,
    spatial: ConvSpatial,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
    // Resolved in setup.
    channel_axis: usize,
    channels: usize,
    kernel_shape: Vec<usize>,
    strides: Vec<usize>,
    pads: Vec<usize>,
    dilations: Vec<usize>,
    engine: Engine,
    // Resolved in reshape.
    geom: ConvGeometry,
    num: usize,
}

impl Convolution {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.convolution_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            return Err(layer_err!("convolution_param.num_output must be positive"));
        }
        if p.group() == 0 {
            return Err(layer_err!("convolution_param.group must be positive"));
        }
        Ok(Convolution {
            num_output: p.num_output() as usize,
            bias_term: p.bias_term(),
            engine: Engine::from_proto(p.engine.unwrap_or(0)),
            group: p.group() as usize,
            spatial: ConvSpatial::new(&p)?,
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            channel_axis: 0,
            channels: 0,
            kernel_shape: Vec::new(),
            strides: Vec::new(),
            pads: Vec::new(),
            dilations: Vec::new(),
            geom: ConvGeometry::default(),
            num: 0,
        })
    }

    fn weight_shape(&self) -> Vec<usize> {
        let mut s = vec![self.num_output, self.channels / self.group];
        s.extend_from_slice(&self.kernel_shape);
        s
    }
}

impl Layer for Convolution {
    fn type_name(&self) -> &'static str {
        "Convolution"
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
        let s = self.spatial.resolve(&shape, 0)?;
        self.channel_axis = s.channel_axis;
        self.kernel_shape = s.kernel;
        self.strides = s.stride;
        self.pads = s.pad;
        self.dilations = s.dilation;
        self.channels = shape[self.channel_axis];
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
        let n = self.kernel_shape.len();
        if shape.len() != self.channel_axis + 1 + n {
            return Err(layer_err!(
                "bottom num_axes may not change (was {}, now {})",
                self.channel_axis + 1 + n,
                shape.len()
            ));
        }
        if shape[self.channel_axis] != self.channels {
            return Err(layer_err!(
                "input size incompatible with convolution kernel: {} channels, expected {}",
                shape[self.channel_axis],
                self.channels
            ));
        }
        if let Some((i, s)) = shapes.iter().enumerate().find(|(_, s)| *s != shape) {
            return Err(layer_err!(
                "all inputs must have the same shape: bottom {i} is {s:?}, bottom 0 is {shape:?}"
            ));
        }
        let in_shape = shape[self.channel_axis + 1..].to_vec();
        let mut out_shape = Vec::with_capacity(n);
        for (i, &size) in in_shape.iter().enumerate() {
            let o = ConvGeometry::output_size(
                size,
                self.kernel_shape[i],
                self.strides[i],
                self.pads[i],
                self.dilations[i],
            )
            .ok_or_else(|| {
                layer_err!(
                    "spatial axis {i}: input {size} with pad {} is smaller than the kernel extent {}",
                    self.pads[i],
                    self.dilations[i] * (self.kernel_shape[i] - 1) + 1
                )
            })?;
            out_shape.push(o);
        }
        let mut top_shape = shape[..self.channel_axis].to_vec();
        top_shape.push(self.num_output);
        top_shape.extend_from_slice(&out_shape);
        for t in 0..io.n_tops() {
            io.top_mut(t).reshape(&top_shape)?;
        }
        self.num = shape[..self.channel_axis].iter().product();
        self.geom = ConvGeometry {
            in_channels: self.channels,
            in_shape,
            out_channels: self.num_output,
            out_shape,
            kernel: self.kernel_shape.clone(),
            stride: self.strides.clone(),
            pad: self.pads.clone(),
            dilation: self.dilations.clone(),
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
        Ok(())
    }

    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let bias_slot = Slot::P(if self.bias_term { 1 } else { 0 });
        for i in 0..io.n_bottoms() {
            let ([x, w, b], [y]) = io.split([Slot::B(i), Slot::P(0), bias_slot], [Slot::T(i)])?;
            cx.be.conv_forward(
                &self.geom,
                self.num,
                x.data.view(),
                w.data.view(),
                self.bias_term.then(|| b.data.view()),
                y.data.view_mut(),
                cx.workspace.view_mut(),
            );
        }
        Ok(())
    }

    fn backward(&mut self, cx: &mut Ctx, io: &mut Io, propagate_down: &[bool]) -> Result<()> {
        let g = &self.geom;
        for i in 0..io.n_tops() {
            if self.bias_term {
                let ([x, y], [w, b]) =
                    io.split([Slot::B(i), Slot::T(i)], [Slot::P(0), Slot::P(1)])?;
                cx.be.conv_backward_filter_bias(
                    g,
                    self.num,
                    x.data.view(),
                    y.diff.view(),
                    w.diff.view_mut(),
                    b.diff.view_mut(),
                    cx.workspace.view_mut(),
                );
            } else {
                let ([x, y], [w]) = io.split([Slot::B(i), Slot::T(i)], [Slot::P(0)])?;
                cx.be.conv_backward_filter(
                    g,
                    self.num,
                    x.data.view(),
                    y.diff.view(),
                    w.diff.view_mut(),
                    cx.workspace.view_mut(),
                );
            }
            if propagate_down.get(i).copied().unwrap_or(false) {
                let ([y, w], [x]) = io.split([Slot::T(i), Slot::P(0)], [Slot::B(i)])?;
                cx.be.conv_backward_data(
                    g,
                    self.num,
                    y.diff.view(),
                    w.data.view(),
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

    #[test]
    fn golden_cases_match_caffe() {
        for case in [
            "conv_1x1",
            "conv_3x3_pad1",
            "conv_5x5_stride2_pad2",
            "conv_dilation2",
            "conv_group2",
            "conv_no_bias",
            "conv_rect_kernel_stride",
        ] {
            check_golden(case);
        }
    }

    #[test]
    fn output_shape_follows_caffe() {
        let (_, tops) = run_forward(
            "type: 'Convolution' convolution_param { num_output: 3 kernel_size: 3 stride: 2 pad: 1 }",
            &[&[2, 4, 7, 8]],
        );
        assert_eq!(tops[0].shape(), &[2, 3, 4, 4]);
        // N-d with per-axis fields and axis 2 (axes before it fold into num).
        let (_, tops) = run_forward(
            "type: 'Convolution' convolution_param { num_output: 2 axis: 2 \
             kernel_size: 2 kernel_size: 3 kernel_size: 1 stride: 1 stride: 2 stride: 1 \
             pad: 0 pad: 1 pad: 0 dilation: 2 }",
            &[&[2, 3, 2, 5, 6, 4]],
        );
        assert_eq!(tops[0].shape(), &[2, 3, 2, 3, 2, 4]);
    }

    #[test]
    fn gradients_2d_with_groups_dilation_and_shared_weights() {
        // Two bottom/top pairs share the weights; batch of 1 included.
        check_gradients(
            "type: 'Convolution' convolution_param { num_output: 4 group: 2 \
             kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 1 \
             weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.3 } }",
            &[&[2, 4, 6, 5], &[2, 4, 6, 5]],
        );
        check_gradients(
            "type: 'Convolution' convolution_param { num_output: 3 kernel_size: 3 dilation: 2 pad: 2 \
             weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.3 } }",
            &[&[1, 2, 6, 6]],
        );
    }

    #[test]
    fn gradients_1x1_nd_and_no_bias() {
        check_gradients(
            "type: 'Convolution' convolution_param { num_output: 3 kernel_size: 1 \
             weight_filler { type: 'gaussian' std: 0.3 } bias_filler { type: 'gaussian' std: 0.3 } }",
            &[&[3, 2, 3, 4]],
        );
        check_gradients(
            "type: 'Convolution' convolution_param { num_output: 2 kernel_size: 2 stride: 1 pad: 1 \
             bias_term: false weight_filler { type: 'gaussian' std: 0.3 } }",
            &[&[2, 2, 3, 4, 3]],
        );
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for (text, shape, msg) in [
            (
                "type: 'Convolution' convolution_param { num_output: 0 kernel_size: 3 }",
                &[1usize, 1, 5, 5][..],
                "num_output",
            ),
            (
                "type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 kernel_h: 3 }",
                &[1, 1, 5, 5],
                "not both",
            ),
            (
                "type: 'Convolution' convolution_param { num_output: 2 }",
                &[1, 1, 5, 5],
                "kernel_size must be specified",
            ),
            (
                "type: 'Convolution' convolution_param { num_output: 3 kernel_size: 3 group: 2 }",
                &[1, 4, 5, 5],
                "multiple of group",
            ),
            (
                "type: 'Convolution' convolution_param { num_output: 2 kernel_h: 3 kernel_w: 3 }",
                &[1, 1, 5, 5, 5],
                "2D",
            ),
            (
                "type: 'Convolution' convolution_param { num_output: 2 kernel_size: 7 }",
                &[1, 1, 5, 5],
                "kernel extent",
            ),
        ] {
            let err = try_setup(text, &[shape]).unwrap_err().to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }
}
