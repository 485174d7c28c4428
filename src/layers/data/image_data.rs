//! `ImageData`: Caffe's prefetching layer over a list file of `path label`
//! lines. Images are read as `ReadImageToCVMat` does (colour BGR or grey,
//! OpenCV's bilinear resize to `new_height × new_width`), transformed, and
//! batched with their labels. Tops: data, label.
//!
//! Random numbers follow Caffe's order on the global stream seeded with
//! the solver's `random_seed`: the transformer's first `InitRand` (when it
//! needs random numbers), the shuffle seed, the `rand_skip` draw, the
//! transformer's second `InitRand`. The list is reshuffled at every pass.
//! In TRAIN with several replicas, replica r keeps every N-th item, as the
//! Data layer does (Caffe 1.0 gives every replica the whole list).
//!
//! The position after the last batch handed to the net (passes over the
//! list, index, the transformer's random stream) can be saved and
//! restored; the list order follows from the number of passes, since each
//! reshuffle continues the shuffle stream.
use std::path::PathBuf;

use crate::data::image::read_image;
use crate::data::position::StreamPos;
use crate::data::prefetch::{Batch, Prefetcher, WaitStats};
use crate::data::rng::{caffe_shuffle, Mt19937};
use crate::data::workers::{assemble_batch, default_workers, ItemJob, ItemLoader};
use crate::data::DataTransformer;
use crate::error::{Error, Result};
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::log;
use crate::proto::caffe::{LayerParameter, Phase, TransformationParameter};
use crate::tools::{parse_list_file, ListEntry};

const SITE_OPENING: &str = "image_data_layer.cpp:38";
const SITE_SHUFFLING: &str = "image_data_layer.cpp:53";
const SITE_TOTAL: &str = "image_data_layer.cpp:63";
const SITE_SKIPPING: &str = "image_data_layer.cpp:70";
const SITE_OUTPUT_SIZE: &str = "image_data_layer.cpp:90";

pub struct ImageDataLayer {
    source: String,
    root_folder: String,
    batch_size: usize,
    rand_skip: u32,
    shuffle: bool,
    new_height: usize,
    new_width: usize,
    is_color: bool,
    prefetch: usize,
    transform: TransformationParameter,
    prefetcher: Option<Prefetcher>,
    /// Set by `setup`: what a restart of the prefetch thread needs.
    run: Option<RunInfo>,
    /// Where the batch after the last one handed to the net comes from.
    next_pos: Option<StreamPos>,
}

#[derive(Clone, Copy)]
struct RunInfo {
    phase: crate::proto::caffe::Phase,
    seed: u64,
    rank: usize,
    world: usize,
    /// Items in the list at set-up (a restored position must match it).
    items: usize,
}

/// The list and random streams as set-up leaves them (Caffe's order of
/// draws on the global stream), before any batch.
struct Start {
    lines: Vec<ListEntry>,
    shuffle: Option<Mt19937>,
    pos: usize,
    transformer: DataTransformer,
}

impl ImageDataLayer {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.image_data_param.clone().unwrap_or_default();
        if p.source().is_empty() {
            return Err(layer_err!("image_data_param.source is not set"));
        }
        if p.batch_size() == 0 {
            return Err(layer_err!("image_data_param.batch_size must be positive"));
        }
        let (h, w) = (p.new_height(), p.new_width());
        if (h == 0) != (w == 0) {
            return Err(layer_err!(
                "image_data_param: new_height and new_width must be set together \
                 (got {h} and {w})"
            ));
        }
        Ok(ImageDataLayer {
            source: p.source().to_string(),
            root_folder: p.root_folder().to_string(),
            batch_size: p.batch_size() as usize,
            rand_skip: p.rand_skip(),
            shuffle: p.shuffle(),
            new_height: h as usize,
            new_width: w as usize,
            is_color: p.is_color(),
            // BasePrefetchingDataLayer takes its depth from data_param.
            prefetch: lp.data_param.as_ref().map_or(4, |d| d.prefetch()) as usize,
            transform: lp.transform_param.clone().unwrap_or_default(),
            prefetcher: None,
            run: None,
            next_pos: None,
        })
    }

    /// Read the list, shuffle it, skip and seed the transformer as Caffe's
    /// set-up does; logs only when `log` (rank 0, first set-up).
    fn prepare(&self, run: RunInfo, log: bool) -> Result<Start> {
        let info = |site: &str, msg: String| {
            if log {
                log::info(site, &msg);
            }
        };
        info(SITE_OPENING, format!("Opening file {}", self.source));
        let mut lines =
            parse_list_file(std::path::Path::new(&self.source)).map_err(|e| layer_err!("{e}"))?;
        if lines.is_empty() {
            return Err(layer_err!("{}: the list file is empty", self.source));
        }
        let mut transformer =
            DataTransformer::new(&self.transform, run.phase, 0).map_err(|e| layer_err!("{e}"))?;
        let needs_rand = transformer.needs_rand();
        let mut global = Mt19937::new(run.seed as u32);
        if needs_rand {
            global.next_u32();
        }
        let shuffle = if self.shuffle {
            info(SITE_SHUFFLING, "Shuffling data".into());
            let mut g = Mt19937::new(global.next_u32());
            caffe_shuffle(&mut lines, &mut g);
            Some(g)
        } else {
            None
        };
        info(SITE_TOTAL, format!("A total of {} images.", lines.len()));
        let mut pos = 0;
        if self.rand_skip > 0 {
            let skip = global.next_u32() % self.rand_skip;
            info(SITE_SKIPPING, format!("Skipping first {skip} data points."));
            if skip as usize >= lines.len() {
                return Err(layer_err!(
                    "{}: not enough images ({}) to skip {skip}",
                    self.source,
                    lines.len()
                ));
            }
            pos = skip as usize;
        }
        if needs_rand {
            transformer.reseed(global.next_u32());
        }
        Ok(Start {
            lines,
            shuffle,
            pos,
            transformer,
        })
    }

    /// Reads one list entry as an image (`ReadImageToCVMat`).
    fn reader(&self) -> impl Fn(&ListEntry) -> Result<crate::data::DecodedDatum> + Send + Sync {
        let root_folder = self.root_folder.clone();
        let (nh, nw, color) = (self.new_height, self.new_width, self.is_color);
        let list = self.source.clone();
        move |e: &ListEntry| {
            let path = PathBuf::from(format!("{root_folder}{}", e.path));
            read_image(&path, nh, nw, color)
                .map(|img| img.into_datum(e.label))
                .map_err(|m| Error::Data(format!("{list}:{}: could not load image: {m}", e.line)))
        }
    }

    fn start(&mut self, cursor: ListCursor, transformer: DataTransformer) -> Result<()> {
        let read = self.reader();
        let items = ItemLoader::new(
            default_workers(),
            "rcaffe-image",
            transformer.clone(),
            move |e: ListEntry| read(&e),
        )
        .map_err(|e| layer_err!("{e}"))?;
        let mut loader = Loader {
            cursor,
            transformer,
            items,
            batch_size: self.batch_size,
            list: self.source.clone(),
        };
        self.prefetcher = Some(
            Prefetcher::spawn(
                "rcaffe-imagedata",
                self.prefetch.saturating_sub(1),
                move || loader.load(),
            )
            .map_err(|e| layer_err!("{e}"))?,
        );
        Ok(())
    }
}

/// The list cursor of the prefetch thread: Caffe's `lines_id_`, reshuffled
/// at each wrap-around, sharded like `ShardedReader`.
struct ListCursor {
    lines: Vec<ListEntry>,
    pos: usize,
    shuffle: Option<Mt19937>,
    rank: usize,
    world: usize,
    offset: usize,
    /// Completed passes over the list (reshuffles).
    passes: u64,
}

impl ListCursor {
    fn step(&mut self) {
        self.pos += 1;
        self.offset += 1;
        if self.pos >= self.lines.len() {
            self.pos = 0;
            self.passes += 1;
            if let Some(g) = &mut self.shuffle {
                caffe_shuffle(&mut self.lines, g);
            }
        }
    }

    /// A cursor over `start`'s list that continues from `pos` (the list
    /// reshuffled `passes` times, as the cursor that saved it had done).
    fn new(start: &mut Start, rank: usize, world: usize, pos: Option<&StreamPos>) -> Result<Self> {
        let mut c = ListCursor {
            lines: std::mem::take(&mut start.lines),
            pos: start.pos,
            shuffle: start.shuffle.take(),
            rank,
            world,
            offset: 0,
            passes: 0,
        };
        if let Some(StreamPos::List {
            passes,
            pos,
            offset,
            ..
        }) = pos
        {
            if *pos >= c.lines.len() {
                return Err(Error::Data(format!(
                    "the saved data position is at item {pos} but the list has {} items",
                    c.lines.len()
                )));
            }
            if let Some(g) = &mut c.shuffle {
                for _ in 0..*passes {
                    caffe_shuffle(&mut c.lines, g);
                }
            }
            (c.pos, c.offset, c.passes) = (*pos, *offset as usize, *passes);
        }
        Ok(c)
    }

    fn position(&self, rng: &Mt19937) -> StreamPos {
        StreamPos::List {
            passes: self.passes,
            pos: self.pos,
            offset: self.offset as u64,
            rng: rng.clone(),
        }
    }

    fn next(&mut self) -> ListEntry {
        while self.offset % self.world != self.rank {
            self.step();
        }
        let e = self.lines[self.pos].clone();
        self.step();
        e
    }
}

struct Loader {
    cursor: ListCursor,
    transformer: DataTransformer,
    items: ItemLoader<ListEntry>,
    batch_size: usize,
    list: String,
}

impl Loader {
    fn load(&mut self) -> Result<Batch> {
        let mut jobs = Vec::with_capacity(self.batch_size);
        let mut names = Vec::with_capacity(self.batch_size);
        for _ in 0..self.batch_size {
            let e = self.cursor.next();
            let name = format!("{}:{}: {}", self.list, e.line, e.path);
            names.push(name.clone());
            jobs.push(ItemJob {
                src: e,
                draws: self.transformer.draw(),
                name,
            });
        }
        let mut batch = assemble_batch(self.items.run(jobs), true, 0, |i| names[i].clone())?;
        batch.pos = Some(self.cursor.position(self.transformer.rng()));
        Ok(batch)
    }
}

impl Layer for ImageDataLayer {
    fn type_name(&self) -> &'static str {
        "ImageData"
    }

    fn arity(&self) -> Arity {
        Arity {
            min_bottoms: Some(0),
            max_bottoms: Some(0),
            min_tops: Some(2),
            max_tops: Some(2),
            equal_bottom_top: false,
        }
    }

    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<crate::tensor::Blob>> {
        let root = cx.rank == 0;
        // In TRAIN with replicas, each keeps every N-th item.
        let shard = cx.phase == Phase::Train && cx.world > 1;
        let mut run = RunInfo {
            phase: cx.phase,
            seed: cx.seed,
            rank: if shard { cx.rank } else { 0 },
            world: if shard { cx.world } else { 1 },
            items: 0,
        };
        let mut start = self.prepare(run, root)?;
        run.items = start.lines.len();
        // The first image shapes the tops, as in Caffe's set-up.
        let first_entry = &start.lines[start.pos];
        let first = (self.reader())(first_entry).map_err(|e| layer_err!("{e}"))?;
        let [c, h, w] = start
            .transformer
            .output_shape(&first)
            .map_err(|e| layer_err!("{}: {e}", first_entry.path))?;
        io.top_mut(0).reshape(&[self.batch_size, c, h, w])?;
        if root {
            log::info(
                SITE_OUTPUT_SIZE,
                &format!("output data size: {},{c},{h},{w}", self.batch_size),
            );
        }
        io.top_mut(1).reshape(&[self.batch_size])?;

        let cursor = ListCursor::new(&mut start, run.rank, run.world, None)
            .map_err(|e| layer_err!("{e}"))?;
        self.next_pos = Some(cursor.position(start.transformer.rng()));
        self.run = Some(run);
        self.start(cursor, start.transformer)?;
        Ok(Vec::new())
    }

    /// Tops take each batch's shape in `forward`.
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
        m.insert("type".into(), "ImageData".into());
        m.insert("source".into(), self.source.clone().into());
        m.insert("items".into(), run.items.into());
        m.insert("rank".into(), run.rank.into());
        m.insert("world".into(), run.world.into());
        Some(serde_json::Value::Object(m))
    }

    /// Rebuild the list as set-up did, replay the saved number of
    /// reshuffles, and restart prefetching at the saved item with the saved
    /// random stream. Everything that can fail is done before the running
    /// prefetcher is stopped.
    fn restore_data_position(&mut self, v: &serde_json::Value) -> Result<()> {
        let run = self
            .run
            .ok_or_else(|| layer_err!("data position restored before setup"))?;
        let ty = v.get("type").and_then(|t| t.as_str()).unwrap_or("?");
        if ty != "ImageData" {
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
        let pos = StreamPos::list_from_json(v).map_err(|e| layer_err!("{e}"))?;
        let StreamPos::List { rng, .. } = &pos else {
            unreachable!("list_from_json gives List")
        };
        let mut start = self.prepare(run, false)?;
        let saved_items = v.get("items").and_then(|n| n.as_u64());
        if saved_items != Some(start.lines.len() as u64) {
            return Err(layer_err!(
                "{} lists {} images but the saved data position is for a list of {}",
                self.source,
                start.lines.len(),
                saved_items.map_or("?".into(), |n| n.to_string())
            ));
        }
        let cursor = ListCursor::new(&mut start, run.rank, run.world, Some(&pos))
            .map_err(|e| layer_err!("{}: {e}", self.source))?;
        let mut transformer = start.transformer;
        transformer.set_rng(rng.clone());
        self.prefetcher = None; // stops and joins the old thread
        self.next_pos = Some(pos);
        self.start(cursor, transformer)
    }

    fn data_wait(&self) -> Option<WaitStats> {
        self.prefetcher.as_ref().map(Prefetcher::stats)
    }
}
