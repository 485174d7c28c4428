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
use std::path::PathBuf;

use crate::data::image::read_image;
use crate::data::prefetch::{Batch, Prefetcher};
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
        })
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
}

impl ListCursor {
    fn step(&mut self) {
        self.pos += 1;
        self.offset += 1;
        if self.pos >= self.lines.len() {
            self.pos = 0;
            if let Some(g) = &mut self.shuffle {
                caffe_shuffle(&mut self.lines, g);
            }
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
        assemble_batch(self.items.run(jobs), true, 0, |i| names[i].clone())
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
        let info = |site: &str, msg: String| {
            if root {
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
            DataTransformer::new(&self.transform, cx.phase, 0).map_err(|e| layer_err!("{e}"))?;
        let needs_rand = transformer.needs_rand();
        let mut global = Mt19937::new(cx.seed as u32);
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
        // The first image shapes the tops, as in Caffe's set-up.
        let root_folder = self.root_folder.clone();
        let (nh, nw, color) = (self.new_height, self.new_width, self.is_color);
        let list = self.source.clone();
        let read = move |e: &ListEntry| -> Result<crate::data::DecodedDatum> {
            let path = PathBuf::from(format!("{root_folder}{}", e.path));
            read_image(&path, nh, nw, color)
                .map(|img| img.into_datum(e.label))
                .map_err(|m| Error::Data(format!("{list}:{}: could not load image: {m}", e.line)))
        };
        let first = read(&lines[pos]).map_err(|e| layer_err!("{e}"))?;
        let [c, h, w] = transformer
            .output_shape(&first)
            .map_err(|e| layer_err!("{}: {e}", lines[pos].path))?;
        io.top_mut(0).reshape(&[self.batch_size, c, h, w])?;
        info(
            SITE_OUTPUT_SIZE,
            format!("output data size: {},{c},{h},{w}", self.batch_size),
        );
        io.top_mut(1).reshape(&[self.batch_size])?;

        let shard = cx.phase == Phase::Train && cx.world > 1;
        let cursor = ListCursor {
            lines,
            pos,
            shuffle,
            rank: if shard { cx.rank } else { 0 },
            world: if shard { cx.world } else { 1 },
            offset: 0,
        };
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
        let batch = p.next_batch().map_err(|e| layer_err!("{e}"))?;
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
