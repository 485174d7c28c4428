//! `Data`: Caffe's prefetching Data layer over a record database of
//! `Datum`s. Tops: data (batch × C × H × W after the transformer) and,
//! optionally, label (batch).
use std::path::Path;

use crate::data::prefetch::{Batch, Prefetcher};
use crate::data::rng::transformer_seed;
use crate::data::source::{open_source, DbBackend, ShardedReader};
use crate::data::{decode_datum, DataTransformer};
use crate::error::{Error, Result};
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::proto::caffe::data_parameter::Db;
use crate::proto::caffe::{LayerParameter, Phase, TransformationParameter};

pub struct DataLayer {
    source: String,
    batch_size: usize,
    prefetch: usize,
    transform: TransformationParameter,
    prefetcher: Option<Prefetcher>,
    restarts: u64,
}

impl DataLayer {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let dp = lp.data_param.clone().unwrap_or_default();
        let source = dp.source().to_string();
        if source.is_empty() {
            return Err(layer_err!("data_param.source is not set"));
        }
        if dp.backend() == Db::Leveldb {
            return Err(layer_err!(
                "data_param.backend is LEVELDB (the default when no backend is given) for \
                 source '{source}': LevelDB sources are not supported yet (they come in a later \
                 issue); use an LMDB source with `backend: LMDB`"
            ));
        }
        if dp.batch_size() == 0 {
            return Err(layer_err!("data_param.batch_size must be positive"));
        }
        Ok(DataLayer {
            source,
            batch_size: dp.batch_size() as usize,
            prefetch: dp.prefetch() as usize,
            transform: lp.transform_param.clone().unwrap_or_default(),
            prefetcher: None,
            restarts: 0,
        })
    }

    /// How many times the source went back to its first record in the
    /// batches delivered so far (Caffe logs "Restarting data prefetching
    /// from start." each time).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

/// Everything the prefetch thread owns.
struct Loader {
    reader: ShardedReader,
    transformer: DataTransformer,
    batch_size: usize,
    labels: bool,
    path: String,
}

impl Loader {
    /// Caffe's `DataLayer::load_batch`: the batch takes its item shape from
    /// its first record; every other record must transform to that shape.
    fn load(&mut self) -> Result<Batch> {
        let in_source = |e: Error| Error::Data(format!("{}: {e}", self.path));
        let color = self.transformer.color_mode();
        let before = self.reader.restarts();
        let mut data = Vec::new();
        let mut labels = Vec::with_capacity(if self.labels { self.batch_size } else { 0 });
        let mut item_shape = [0; 3];
        for i in 0..self.batch_size {
            let rec = self.reader.next_record().map_err(in_source)?;
            let d = decode_datum(&rec.value, &rec.key, color).map_err(in_source)?;
            let shape = self.transformer.output_shape(&d).map_err(|e| {
                in_source(Error::Data(format!(
                    "record '{}': {e}",
                    crate::data::source::key_string(&rec.key)
                )))
            })?;
            if i == 0 {
                item_shape = shape;
                data = vec![0.0; self.batch_size * shape.iter().product::<usize>()];
            } else if shape != item_shape {
                return Err(in_source(Error::Data(format!(
                    "record '{}' gives a {}x{}x{} item but the batch's first gives {}x{}x{} \
                     (images of different sizes need a crop_size)",
                    crate::data::source::key_string(&rec.key),
                    shape[0],
                    shape[1],
                    shape[2],
                    item_shape[0],
                    item_shape[1],
                    item_shape[2]
                ))));
            }
            let per = item_shape.iter().product::<usize>();
            self.transformer
                .transform(&d, &mut data[i * per..(i + 1) * per])
                .map_err(in_source)?;
            if self.labels {
                labels.push(d.label as f32);
            }
        }
        let mut shape = vec![self.batch_size];
        shape.extend(item_shape);
        Ok(Batch {
            shape,
            data,
            labels: self.labels.then_some(labels),
            restarts: self.reader.restarts() - before,
        })
    }
}

impl Layer for DataLayer {
    fn type_name(&self) -> &'static str {
        "Data"
    }

    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(0),
            max_bottoms: Some(0),
            min_tops: Some(1),
            max_tops: Some(2),
            equal_bottom_top: false,
        }
    }

    /// Open the source, shape the tops from the first record (Caffe's
    /// DataLayerSetUp) and start prefetching.
    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<crate::tensor::Blob>> {
        let src = open_source(DbBackend::Lmdb, Path::new(&self.source))
            .map_err(|e| layer_err!("cannot open data source: {e}"))?;
        // Only TRAIN-phase layers shard: in Caffe only rank 0 tests.
        let reader = ShardedReader::new(src, cx.rank, cx.world, cx.phase == Phase::Train)
            .map_err(|e| layer_err!("{e}"))?;
        let transformer =
            DataTransformer::new(&self.transform, cx.phase, transformer_seed(cx.seed))
                .map_err(|e| layer_err!("{e}"))?;
        let first = reader.peek();
        let d = decode_datum(&first.value, &first.key, transformer.color_mode())
            .map_err(|e| layer_err!("{}: {e}", self.source))?;
        let [c, h, w] = transformer
            .output_shape(&d)
            .map_err(|e| layer_err!("{}: first record: {e}", self.source))?;
        io.top_mut(0).reshape(&[self.batch_size, c, h, w])?;
        let labels = io.n_tops() > 1;
        if labels {
            io.top_mut(1).reshape(&[self.batch_size])?;
        }
        let mut loader = Loader {
            reader,
            transformer,
            batch_size: self.batch_size,
            labels,
            path: self.source.clone(),
        };
        self.prefetcher = Some(
            Prefetcher::spawn("rcaffe-data", self.prefetch, move || loader.load())
                .map_err(|e| layer_err!("{e}"))?,
        );
        Ok(Vec::new())
    }

    /// Tops take each batch's shape in `forward` (Caffe reshapes on the fly).
    fn reshape(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<()> {
        Ok(())
    }

    fn forward(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let p = self
            .prefetcher
            .as_mut()
            .ok_or_else(|| layer_err!("forward called before setup"))?;
        let batch = p.next().map_err(|e| layer_err!("{e}"))?;
        self.restarts += batch.restarts;
        let top = io.top_mut(0);
        top.reshape(&batch.shape)?;
        top.set_data(&batch.data)?;
        if let Some(labels) = &batch.labels {
            let top = io.top_mut(1);
            top.reshape(&[labels.len()])?;
            top.set_data(labels)?;
        }
        Ok(())
    }
}
