//! DummyData: tops filled by fillers. Constant fillers run once at setup;
//! the others refill their tops on every forward (Caffe).
use crate::error::Result;
use crate::fillers;
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::proto::caffe::{FillerParameter, LayerParameter};
use crate::tensor::Blob;

use super::input::dims;

#[derive(Debug)]
pub struct DummyData {
    /// 0 (constant 0), 1 (for every top) or one per top.
    fillers: Vec<FillerParameter>,
    shape: ShapeSpec,
    /// Resolved per top in setup.
    shapes: Vec<Vec<usize>>,
}

#[derive(Debug)]
enum ShapeSpec {
    Shapes(Vec<Vec<usize>>),
    /// Deprecated num/channels/height/width lists (1 or one per top each).
    Legacy([Vec<u32>; 4]),
}

impl DummyData {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.dummy_data_param.clone().unwrap_or_default();
        let legacy = !(p.num.is_empty()
            && p.channels.is_empty()
            && p.height.is_empty()
            && p.width.is_empty());
        let shape = if legacy {
            if !p.shape.is_empty() {
                return Err(layer_err!(
                    "both shape and legacy fields (num, channels, height, width) were specified"
                ));
            }
            ShapeSpec::Legacy([p.num, p.channels, p.height, p.width])
        } else {
            ShapeSpec::Shapes(p.shape.iter().map(dims).collect::<Result<_>>()?)
        };
        let fillers = if p.data_filler.is_empty() {
            vec![FillerParameter::default()]
        } else {
            p.data_filler
        };
        Ok(DummyData {
            fillers,
            shape,
            shapes: Vec::new(),
        })
    }

    fn filler(&self, top: usize) -> &FillerParameter {
        &self.fillers[if self.fillers.len() == 1 { 0 } else { top }]
    }

    fn resolve_shapes(&self, nt: usize) -> Result<Vec<Vec<usize>>> {
        let pick = |n: usize, what: &str| -> Result<()> {
            if n == 1 || n == nt {
                Ok(())
            } else {
                Err(layer_err!(
                    "{what} must be specified once, or once per top ({n} given, {nt} tops)"
                ))
            }
        };
        match &self.shape {
            ShapeSpec::Shapes(s) => {
                pick(s.len(), "shape")?;
                Ok((0..nt)
                    .map(|t| s[if s.len() == 1 { 0 } else { t }].clone())
                    .collect())
            }
            ShapeSpec::Legacy(l) => {
                for (v, what) in l.iter().zip(["num", "channels", "height", "width"]) {
                    pick(v.len(), what)?;
                }
                Ok((0..nt)
                    .map(|t| {
                        l.iter()
                            .map(|v| v[if v.len() == 1 { 0 } else { t }] as usize)
                            .collect()
                    })
                    .collect())
            }
        }
    }
}

fn is_constant(f: &FillerParameter) -> bool {
    f.r#type() == "constant"
}

impl Layer for DummyData {
    fn type_name(&self) -> &'static str {
        "DummyData"
    }
    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(0),
            max_bottoms: Some(0),
            min_tops: Some(1),
            max_tops: None,
            equal_bottom_top: false,
        }
    }
    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<Blob>> {
        let nt = io.n_tops();
        let nf = self.fillers.len();
        if nf != 1 && nf != nt {
            return Err(layer_err!(
                "give 0, 1 or one data_filler per top ({nf} data_fillers, {nt} tops)"
            ));
        }
        self.shapes = self.resolve_shapes(nt)?;
        for t in 0..nt {
            io.top_mut(t).reshape(&self.shapes[t])?;
            let f = self.filler(t);
            if is_constant(f) {
                fillers::fill(f, io.top_mut(t), &mut cx.rng)?;
            }
        }
        Ok(Vec::new())
    }
    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        for t in 0..io.n_tops() {
            let s = self
                .shapes
                .get(t)
                .ok_or_else(|| layer_err!("reshape before setup"))?;
            io.top_mut(t).reshape(s)?;
        }
        Ok(())
    }
    fn forward(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<()> {
        for t in 0..io.n_tops() {
            let f = self.filler(t);
            if !is_constant(f) {
                fillers::fill(f, io.top_mut(t), &mut cx.rng)?;
            }
        }
        Ok(())
    }
}
