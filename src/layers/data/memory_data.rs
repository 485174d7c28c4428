//! `MemoryData`: batches from arrays the program hands over (pycaffe's
//! `set_input_arrays`, C++'s `MemoryDataLayer::Reset`). Tops: data
//! (`batch_size × channels × height × width`) and label (`batch_size`).
//!
//! The program reaches the layer through a [`MemoryFeed`], a shared handle
//! looked up by the layer's name with [`memory_feed`]: the layer attaches
//! to the feed of its name when it is created, so the handle may be taken
//! before or after the net is built. Each forward takes the next
//! `batch_size` items and wraps around, as Caffe does.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::data::{DataTransformer, DecodedDatum};
use crate::error::{Error, Result};
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::log;
use crate::proto::caffe::{LayerParameter, TransformationParameter};

const SITE_NO_TRANSFORM: &str = "memory_data_layer.cpp:60";

#[derive(Default)]
struct FeedState {
    /// `[batch_size, channels, height, width]`, once a layer has attached.
    dims: Option<[usize; 4]>,
    data: Arc<Vec<f32>>,
    labels: Arc<Vec<f32>>,
    n: usize,
    pos: usize,
    /// The attached layer's transformer, for `add_datums`.
    transformer: Option<DataTransformer>,
    has_transform: bool,
}

/// A shared handle onto the arrays of the `MemoryData` layer(s) with one
/// name. Cloning gives another handle onto the same arrays.
#[derive(Clone, Default)]
pub struct MemoryFeed(Arc<Mutex<FeedState>>);

/// The feed of the `MemoryData` layer named `layer_name` (created empty
/// when no layer or caller has asked for it yet). Nets of one process that
/// have a `MemoryData` layer of the same name share its feed.
pub fn memory_feed(layer_name: &str) -> MemoryFeed {
    static FEEDS: OnceLock<Mutex<HashMap<String, MemoryFeed>>> = OnceLock::new();
    let mut m = FEEDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    m.entry(layer_name.to_string()).or_default().clone()
}

impl MemoryFeed {
    fn state(&self) -> MutexGuard<'_, FeedState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The layer's `[batch_size, channels, height, width]`, once attached.
    pub fn dims(&self) -> Option<[usize; 4]> {
        self.state().dims
    }

    /// Caffe's `Reset(data, labels, n)`: `n` items of `channels × height ×
    /// width` values and one label each; `n` must be a multiple of the
    /// batch size. Arrays are used as given (no transformation, as in
    /// Caffe). The next forward starts at item 0.
    pub fn reset(&self, data: Vec<f32>, labels: Vec<f32>) -> Result<()> {
        self.set_arrays(data, labels, true)
    }

    fn set_arrays(&self, data: Vec<f32>, labels: Vec<f32>, from_reset: bool) -> Result<()> {
        let mut s = self.state();
        let n = labels.len();
        if n == 0 {
            return Err(Error::Data("MemoryData reset: no items given".into()));
        }
        if let Some([b, c, h, w]) = s.dims {
            if !n.is_multiple_of(b) {
                return Err(Error::Data(format!(
                    "MemoryData reset: {n} items is not a multiple of the batch size {b}"
                )));
            }
            if data.len() != n * c * h * w {
                return Err(Error::Data(format!(
                    "MemoryData reset: {} values for {n} items of {c}x{h}x{w} ({} expected)",
                    data.len(),
                    n * c * h * w
                )));
            }
        } else if !data.len().is_multiple_of(n) {
            return Err(Error::Data(format!(
                "MemoryData reset: {} values do not split into {n} items",
                data.len()
            )));
        }
        if from_reset && s.has_transform {
            log::warn(
                SITE_NO_TRANSFORM,
                "MemoryData does not transform array data on Reset()",
            );
        }
        s.data = Arc::new(data);
        s.labels = Arc::new(labels);
        s.n = n;
        s.pos = 0;
        Ok(())
    }

    /// Caffe's `AddDatumVector`: transform decoded images with the layer's
    /// transformer (its crop, mirror, mean, scale) and use them as the
    /// layer's data, their labels as labels.
    pub fn add_datums(&self, datums: &[DecodedDatum]) -> Result<()> {
        let (mut t, dims) = {
            let s = self.state();
            match (&s.transformer, s.dims) {
                (Some(t), Some(d)) => (t.clone(), d),
                _ => {
                    return Err(Error::Data(
                        "MemoryData add_datums: the layer has not been set up yet".into(),
                    ))
                }
            }
        };
        let [_, c, h, w] = dims;
        let mut data = vec![0.0; datums.len() * c * h * w];
        for (i, d) in datums.iter().enumerate() {
            let shape = t.output_shape(d)?;
            if shape != [c, h, w] {
                return Err(Error::Data(format!(
                    "MemoryData add_datums: item {i} transforms to {}x{}x{}, the layer takes \
                     {c}x{h}x{w}",
                    shape[0], shape[1], shape[2]
                )));
            }
            t.transform(d, &mut data[i * c * h * w..(i + 1) * c * h * w])?;
        }
        let labels = datums.iter().map(|d| d.label as f32).collect();
        // Keep the transformer's random stream going across calls.
        self.state().transformer = Some(t);
        self.set_arrays(data, labels, false)
    }

    /// Caffe's `set_batch_size`; the next forward starts at item 0.
    pub fn set_batch_size(&self, batch_size: usize) -> Result<()> {
        let mut s = self.state();
        if batch_size == 0 {
            return Err(Error::Data(
                "MemoryData: batch size must be positive".into(),
            ));
        }
        match &mut s.dims {
            // Start the arrays over: the old position may not be a
            // multiple of the new size.
            Some(d) => d[0] = batch_size,
            None => {
                return Err(Error::Data(
                    "MemoryData set_batch_size: the layer has not been created yet".into(),
                ))
            }
        }
        s.pos = 0;
        Ok(())
    }
}

pub struct MemoryDataLayer {
    feed: MemoryFeed,
    transform: TransformationParameter,
}

impl MemoryDataLayer {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.memory_data_param.unwrap_or_default();
        let dims = [p.batch_size(), p.channels(), p.height(), p.width()].map(|v| v as usize);
        if dims.contains(&0) {
            return Err(layer_err!(
                "memory_data_param: batch_size, channels, height and width must all be \
                 positive (got {}, {}, {}, {})",
                dims[0],
                dims[1],
                dims[2],
                dims[3]
            ));
        }
        let feed = memory_feed(&lp.name.clone().unwrap_or_default());
        feed.state().dims = Some(dims);
        Ok(MemoryDataLayer {
            feed,
            transform: lp.transform_param.clone().unwrap_or_default(),
        })
    }

    /// This layer's feed (the same as `memory_feed(<layer name>)`).
    pub fn feed(&self) -> MemoryFeed {
        self.feed.clone()
    }
}

impl Layer for MemoryDataLayer {
    fn type_name(&self) -> &'static str {
        "MemoryData"
    }

    fn arity(&self) -> Arity {
        Arity::exact(0, 2)
    }

    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<crate::tensor::Blob>> {
        let t = DataTransformer::new(
            &self.transform,
            cx.phase,
            crate::data::rng::transformer_seed(cx.seed),
        )
        .map_err(|e| layer_err!("{e}"))?;
        let mut s = self.feed.state();
        s.has_transform = self.transform != TransformationParameter::default();
        s.transformer = Some(t);
        let [b, c, h, w] = s.dims.expect("set by the constructor");
        drop(s);
        io.top_mut(0).reshape(&[b, c, h, w])?;
        io.top_mut(1).reshape(&[b])?;
        Ok(Vec::new())
    }

    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let [b, c, h, w] = self.feed.dims().expect("set by the constructor");
        io.top_mut(0).reshape(&[b, c, h, w])?;
        io.top_mut(1).reshape(&[b])?;
        Ok(())
    }

    fn forward(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let (data, labels, pos, [b, c, h, w]) = {
            let mut s = self.feed.state();
            if s.n == 0 {
                return Err(layer_err!(
                    "MemoryData needs its arrays: call reset (or add_datums) on \
                     memory_feed(<layer name>) before the first forward"
                ));
            }
            let dims = s.dims.expect("set by the constructor");
            if !s.n.is_multiple_of(dims[0]) || s.data.len() != s.n * dims[1] * dims[2] * dims[3] {
                return Err(layer_err!(
                    "MemoryData: the arrays given ({} items, {} values) do not fit batches of \
                     {}x{}x{}x{}",
                    s.n,
                    s.data.len(),
                    dims[0],
                    dims[1],
                    dims[2],
                    dims[3]
                ));
            }
            let pos = s.pos;
            s.pos = (s.pos + dims[0]) % s.n;
            (s.data.clone(), s.labels.clone(), pos, dims)
        };
        let per = c * h * w;
        let top = io.top_mut(0);
        top.reshape(&[b, c, h, w])?;
        top.set_data(&data[pos * per..(pos + b) * per])?;
        let top = io.top_mut(1);
        top.reshape(&[b])?;
        top.set_data(&labels[pos..pos + b])?;
        Ok(())
    }
}
