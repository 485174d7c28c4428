//! `Data`: Caffe's prefetching Data layer over a record database of
//! `Datum`s. Tops: data (batch × C × H × W after the transformer) and,
//! optionally, label (batch).
//!
//! The layer keeps the position its stream reached after the last batch it
//! handed to the net (cursor and the transformer's random stream), so that
//! a snapshot can save it and a resumed run continue exactly there.
use std::path::Path;

use crate::data::position::StreamPos;
use crate::data::prefetch::{Batch, Prefetcher, WaitStats};
use crate::data::rng::transformer_seed;
use crate::data::source::{
    key_string, log_opened, open_source, DbBackend, Record, RecordSource, ShardedReader,
};
use crate::data::workers::{assemble_batch, default_workers, ItemJob, ItemLoader};
use crate::data::{decode_datum, DataTransformer};
use crate::error::{Error, Result};
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::log;
use crate::proto::caffe::data_parameter::Db;
use crate::proto::caffe::{LayerParameter, Phase, TransformationParameter};

/// Caffe's `file:line` for the messages this layer logs (rank 0 only).
const SITE_MEAN_FILE: &str = "data_transformer.cpp:25";
const SITE_OUTPUT_SIZE: &str = "data_layer.cpp:45";
const SITE_RESTART: &str = "data_layer.cpp:73";

pub struct DataLayer {
    source: String,
    /// Opened by the constructor, as Caffe's does; moved to the prefetch
    /// thread by `setup`.
    db: Option<Box<dyn RecordSource>>,
    batch_size: usize,
    prefetch: usize,
    transform: TransformationParameter,
    prefetcher: Option<Prefetcher>,
    backend: DbBackend,
    /// Set by `setup`: what a restart of the prefetch thread needs.
    run: Option<RunInfo>,
    /// Where the batch after the last one handed to the net comes from.
    next_pos: Option<StreamPos>,
}

#[derive(Clone, Copy)]
struct RunInfo {
    phase: Phase,
    rank: usize,
    world: usize,
    labels: bool,
}

impl RunInfo {
    /// Only TRAIN-phase layers shard: in Caffe only rank 0 tests.
    fn shard(&self) -> bool {
        self.phase == Phase::Train
    }
}

impl DataLayer {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let dp = lp.data_param.clone().unwrap_or_default();
        let source = dp.source().to_string();
        if source.is_empty() {
            return Err(layer_err!("data_param.source is not set"));
        }
        if dp.batch_size() == 0 {
            return Err(layer_err!("data_param.batch_size must be positive"));
        }
        // LEVELDB is the proto default, as in Caffe.
        let backend = match dp.backend() {
            Db::Leveldb => DbBackend::LevelDb,
            Db::Lmdb => DbBackend::Lmdb,
        };
        let db = open_source(backend, Path::new(&source))
            .map_err(|e| layer_err!("cannot open data source: {e}"))?;
        // Caffe logs this for the root solver only; the constructor does not
        // know the replica, so every replica logs it.
        log_opened(backend, Path::new(&source));
        Ok(DataLayer {
            db: Some(db),
            source,
            batch_size: dp.batch_size() as usize,
            prefetch: dp.prefetch() as usize,
            transform: lp.transform_param.clone().unwrap_or_default(),
            prefetcher: None,
            backend,
            run: None,
            next_pos: None,
        })
    }

    /// Start prefetching from `reader` with `transformer`'s random stream.
    fn start(
        &mut self,
        run: RunInfo,
        reader: ShardedReader,
        transformer: DataTransformer,
    ) -> Result<()> {
        let color = transformer.color_mode();
        let items = ItemLoader::new(
            default_workers(),
            "rcaffe-decode",
            transformer.clone(),
            move |rec: Record| decode_datum(&rec.value, &rec.key, color),
        )
        .map_err(|e| layer_err!("{e}"))?;
        let mut loader = Loader {
            reader,
            transformer,
            items,
            batch_size: self.batch_size,
            labels: run.labels,
            path: self.source.clone(),
            log_restarts: run.rank == 0,
        };
        self.prefetcher = Some(
            // A bounded channel of prefetch − 1 plus the batch waiting to be
            // sent: `prefetch` batches ahead, like Caffe's batch pool.
            Prefetcher::spawn("rcaffe-data", self.prefetch.saturating_sub(1), move || {
                loader.load()
            })
            .map_err(|e| layer_err!("{e}"))?,
        );
        Ok(())
    }
}

/// Everything the prefetch thread owns.
struct Loader {
    reader: ShardedReader,
    /// Draws each item's random numbers in record order.
    transformer: DataTransformer,
    items: ItemLoader<Record>,
    batch_size: usize,
    labels: bool,
    path: String,
    /// Rank 0 logs each wrap-around, as Caffe's root solver does.
    log_restarts: bool,
}

impl Loader {
    /// Caffe's `DataLayer::load_batch`: records and random draws in order,
    /// decode + transform on the workers; the batch takes its item shape
    /// from its first record and every other record must match it.
    fn load(&mut self) -> Result<Batch> {
        let in_source = |e: Error| Error::Data(format!("{}: {e}", self.path));
        let before = self.reader.restarts();
        let mut jobs = Vec::with_capacity(self.batch_size);
        let mut keys = Vec::with_capacity(self.batch_size);
        for _ in 0..self.batch_size {
            let restarts = self.reader.restarts();
            let rec = self.reader.next_record().map_err(in_source)?;
            if self.log_restarts && self.reader.restarts() > restarts {
                log::info(SITE_RESTART, "Restarting data prefetching from start.");
            }
            let key = key_string(&rec.key);
            jobs.push(ItemJob {
                src: rec,
                draws: self.transformer.draw(),
                name: format!("record '{key}'"),
            });
            keys.push(key);
        }
        let items = self.items.run(jobs);
        let mut batch = assemble_batch(items, self.labels, self.reader.restarts() - before, |i| {
            format!("record '{}'", keys[i])
        })
        .map_err(in_source)?;
        batch.pos = Some(StreamPos::Records {
            reader: self.reader.position(),
            rng: self.transformer.rng().clone(),
        });
        Ok(batch)
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
        let src = self
            .db
            .take()
            .ok_or_else(|| layer_err!("setup called twice"))?;
        let root = cx.rank == 0;
        let labels = io.n_tops() > 1;
        let run = RunInfo {
            phase: cx.phase,
            rank: cx.rank,
            world: cx.world,
            labels,
        };
        let reader = ShardedReader::new(src, cx.rank, cx.world, run.shard())
            .map_err(|e| layer_err!("{e}"))?;
        if let (true, Some(m)) = (root, &self.transform.mean_file) {
            log::info(SITE_MEAN_FILE, &format!("Loading mean file from: {m}"));
        }
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
        if root {
            log::info(
                SITE_OUTPUT_SIZE,
                &format!("output data size: {},{c},{h},{w}", self.batch_size),
            );
        }
        if labels {
            io.top_mut(1).reshape(&[self.batch_size])?;
        }
        self.next_pos = Some(StreamPos::Records {
            reader: reader.position(),
            rng: transformer.rng().clone(),
        });
        self.run = Some(run);
        self.start(run, reader, transformer)?;
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
        let mut batch = p.next_batch().map_err(|e| layer_err!("{e}"))?;
        if let Some(pos) = batch.pos.take() {
            self.next_pos = Some(pos);
        }
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

    fn data_position(&self) -> Option<serde_json::Value> {
        let (run, pos) = (self.run?, self.next_pos.as_ref()?);
        let mut m = pos.to_json();
        m.insert("type".into(), "Data".into());
        m.insert("source".into(), self.source.clone().into());
        m.insert("rank".into(), run.rank.into());
        m.insert("world".into(), run.world.into());
        Some(serde_json::Value::Object(m))
    }

    /// Reopen the database on the saved record and restart prefetching
    /// there with the saved random stream. Everything that can fail is done
    /// before the running prefetcher is stopped.
    fn restore_data_position(&mut self, v: &serde_json::Value) -> Result<()> {
        let run = self
            .run
            .ok_or_else(|| layer_err!("data position restored before setup"))?;
        let ty = v.get("type").and_then(|t| t.as_str()).unwrap_or("?");
        if ty != "Data" {
            return Err(layer_err!("the saved data position is one of a {ty} layer"));
        }
        let saved = (
            v.get("rank").and_then(|r| r.as_u64()),
            v.get("world").and_then(|r| r.as_u64()),
        );
        if saved != (Some(run.rank as u64), Some(run.world as u64)) {
            return Err(layer_err!(
                "the saved data position is for replica {:?} of {:?}, this is replica {} of {}",
                saved.0,
                saved.1,
                run.rank,
                run.world
            ));
        }
        let pos = StreamPos::records_from_json(v).map_err(|e| layer_err!("{e}"))?;
        let StreamPos::Records { reader: rp, rng } = &pos else {
            unreachable!("records_from_json gives Records")
        };
        let src = open_source(self.backend, Path::new(&self.source))
            .map_err(|e| layer_err!("cannot open data source: {e}"))?;
        let reader = ShardedReader::resume(src, run.rank, run.world, run.shard(), rp)
            .map_err(|e| layer_err!("{e}"))?;
        let mut transformer =
            DataTransformer::new(&self.transform, run.phase, 0).map_err(|e| layer_err!("{e}"))?;
        transformer.set_rng(rng.clone());
        self.prefetcher = None; // stops and joins the old thread
        self.next_pos = Some(pos);
        self.start(run, reader, transformer)
    }

    fn data_wait(&self) -> Option<WaitStats> {
        self.prefetcher.as_ref().map(Prefetcher::stats)
    }
}
