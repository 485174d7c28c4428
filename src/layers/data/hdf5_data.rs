//! `HDF5Data`: rows of float datasets from a list of HDF5 files, one
//! dataset per top, named after the top (Caffe's HDF5DataLayer). The list
//! file holds whitespace-separated paths. Files are loaded whole, one at a
//! time, in `forward`; with `shuffle`, the file order is shuffled at every
//! pass and the rows of each file at every load and every pass over it,
//! with `std::random_shuffle` on glibc's unseeded `rand()`, as in Caffe.
//! In TRAIN with several replicas, replica r keeps every N-th row.
//!
//! The layer reads in `forward` (no prefetching), so its position is its
//! own state: file order, file and row, row order and `rand()`'s stream;
//! it can be saved with a snapshot and restored.
use std::path::Path;

use serde_json::{json, Value};

use crate::data::hdf5;
use crate::data::position::{get_list, get_u64, glibc_from_json, glibc_to_json};
use crate::data::rng::{std_random_shuffle, GlibcRand};
use crate::error::{Error, Result};
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::log;
use crate::proto::caffe::{LayerParameter, Phase};

const SITE_LIST: &str = "hdf5_data_layer.cpp:84";
const SITE_NUM_FILES: &str = "hdf5_data_layer.cpp:97";

pub struct HDF5DataLayer {
    source: String,
    batch_size: usize,
    shuffle: bool,
    tops: Vec<String>,
    files: Vec<String>,
    file_perm: Vec<usize>,
    current_file: usize,
    /// The current file's datasets (shape, values), in top order.
    blobs: Vec<(Vec<usize>, Vec<f32>)>,
    row_perm: Vec<usize>,
    current_row: usize,
    offset: usize,
    rank: usize,
    world: usize,
    rand: GlibcRand,
}

impl HDF5DataLayer {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.hdf5_data_param.clone().unwrap_or_default();
        if p.source().is_empty() {
            return Err(layer_err!("hdf5_data_param.source is not set"));
        }
        if p.batch_size() == 0 {
            return Err(layer_err!("hdf5_data_param.batch_size must be positive"));
        }
        Ok(HDF5DataLayer {
            source: p.source().to_string(),
            batch_size: p.batch_size() as usize,
            shuffle: p.shuffle(),
            tops: lp.top.clone(),
            files: Vec::new(),
            file_perm: Vec::new(),
            current_file: 0,
            blobs: Vec::new(),
            row_perm: Vec::new(),
            current_row: 0,
            offset: 0,
            rank: 0,
            world: 1,
            rand: GlibcRand::new(1),
        })
    }

    fn rows(&self) -> usize {
        self.blobs[0].0[0]
    }

    /// Caffe's `LoadHDF5FileData`: read the current file, then (with
    /// `shuffle`) shuffle its rows.
    fn load_file(&mut self) -> Result<()> {
        self.read_file()?;
        if self.shuffle {
            std_random_shuffle(&mut self.row_perm, &mut self.rand);
        }
        Ok(())
    }

    /// Every top's dataset of the current file, same row count; rows in
    /// file order.
    fn read_file(&mut self) -> Result<()> {
        let name = self.files[self.file_perm[self.current_file]].clone();
        let path = Path::new(&name);
        let f = hdf5::open(path)?;
        let mut blobs = Vec::with_capacity(self.tops.len());
        for top in &self.tops {
            let (shape, values) = hdf5::read_dataset(&f, path, top)?;
            if shape.is_empty() || shape[0] == 0 {
                return Err(Error::Data(format!(
                    "{name}: dataset '{top}' must have at least one axis and one row \
                     (shape {shape:?})"
                )));
            }
            if let Some((s0, _)) = blobs.first() {
                let s0: &Vec<usize> = s0;
                if s0[0] != shape[0] {
                    return Err(Error::Data(format!(
                        "{name}: dataset '{top}' has {} rows but '{}' has {}",
                        shape[0], self.tops[0], s0[0]
                    )));
                }
            }
            if let Some((old, _)) = self.blobs.get(blobs.len()) {
                if old[1..] != shape[1..] {
                    return Err(Error::Data(format!(
                        "{name}: dataset '{top}' rows are {:?} but the previous file's are {:?}",
                        &shape[1..],
                        &old[1..]
                    )));
                }
            }
            blobs.push((shape, values));
        }
        self.blobs = blobs;
        self.row_perm = (0..self.rows()).collect();
        Ok(())
    }

    /// Caffe's `Next`: the next row, the next file at the end of one.
    fn next(&mut self) -> Result<()> {
        self.current_row += 1;
        if self.current_row == self.rows() {
            if self.files.len() > 1 {
                self.current_file += 1;
                if self.current_file == self.files.len() {
                    self.current_file = 0;
                    if self.shuffle {
                        std_random_shuffle(&mut self.file_perm, &mut self.rand);
                    }
                }
                self.load_file()?;
            }
            self.current_row = 0;
            if self.shuffle {
                std_random_shuffle(&mut self.row_perm, &mut self.rand);
            }
        }
        self.offset += 1;
        Ok(())
    }

    /// Restore a position `data_position` saved (see there).
    fn restore(&mut self, v: &Value) -> Result<()> {
        let bad = |what: String| Error::Data(format!("the saved data position {what}"));
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("?");
        if ty != "HDF5Data" {
            return Err(bad(format!("is one of a {ty} layer")));
        }
        let saved = (
            v.get("rank").and_then(Value::as_u64),
            v.get("world").and_then(Value::as_u64),
        );
        if saved != (Some(self.rank as u64), Some(self.world as u64)) {
            return Err(bad(format!(
                "is for replica {:?} of {:?}, this is replica {} of {}",
                saved.0, saved.1, self.rank, self.world
            )));
        }
        let is_perm = |p: &[usize], n: usize| {
            let mut seen = vec![false; n];
            p.len() == n
                && p.iter()
                    .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
        };
        let file_perm: Vec<usize> = get_list(v, "file_perm")?;
        if !is_perm(&file_perm, self.files.len()) {
            return Err(bad(format!(
                "does not order the {} files of {}",
                self.files.len(),
                self.source
            )));
        }
        let current_file = get_u64(v, "current_file")? as usize;
        if current_file >= self.files.len() {
            return Err(bad(format!(
                "names file {current_file} of {}",
                self.files.len()
            )));
        }
        let current_row = get_u64(v, "current_row")? as usize;
        let offset = get_u64(v, "offset")? as usize;
        let rand = glibc_from_json(v, "rand")?;
        let row_perm: Option<Vec<usize>> = match v.get("row_perm") {
            Some(_) => Some(get_list(v, "row_perm")?),
            None => None,
        };
        // Read the file, then commit: a failure leaves the layer as it was.
        let old = (
            std::mem::replace(&mut self.file_perm, file_perm),
            std::mem::replace(&mut self.current_file, current_file),
            std::mem::take(&mut self.blobs),
            std::mem::take(&mut self.row_perm),
        );
        let read = self.read_file().and_then(|()| {
            let rows = self.rows();
            if let Some(p) = &row_perm {
                if !is_perm(p, rows) {
                    return Err(bad(format!(
                        "does not order the {rows} rows of {}",
                        self.files[self.file_perm[self.current_file]]
                    )));
                }
            }
            if current_row >= rows {
                return Err(bad(format!("is at row {current_row} of {rows}")));
            }
            Ok(())
        });
        if let Err(e) = read {
            (self.file_perm, self.current_file, self.blobs, self.row_perm) = old;
            return Err(e);
        }
        if let Some(p) = row_perm {
            self.row_perm = p;
        }
        self.current_row = current_row;
        self.offset = offset;
        self.rand = rand;
        Ok(())
    }

    fn top_shape(&self, i: usize) -> Vec<usize> {
        let mut s = self.blobs[i].0.clone();
        s[0] = self.batch_size;
        s
    }
}

impl Layer for HDF5DataLayer {
    fn type_name(&self) -> &'static str {
        "HDF5Data"
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

    fn setup(&mut self, cx: &mut Ctx, io: &mut Io) -> Result<Vec<crate::tensor::Blob>> {
        if cx.rank == 0 {
            log::info(
                SITE_LIST,
                &format!("Loading list of HDF5 filenames from: {}", self.source),
            );
        }
        let text = std::fs::read_to_string(&self.source)
            .map_err(|e| layer_err!("{}", Error::io(&self.source, e)))?;
        self.files = text.split_whitespace().map(str::to_string).collect();
        if cx.rank == 0 {
            log::info(
                SITE_NUM_FILES,
                &format!("Number of HDF5 files: {}", self.files.len()),
            );
        }
        if self.files.is_empty() {
            return Err(layer_err!(
                "must have at least 1 HDF5 filename listed in {}",
                self.source
            ));
        }
        if self.tops.len() != io.n_tops() {
            return Err(layer_err!(
                "every top needs a name: it names the dataset read into it"
            ));
        }
        self.file_perm = (0..self.files.len()).collect();
        if self.shuffle {
            std_random_shuffle(&mut self.file_perm, &mut self.rand);
        }
        self.load_file().map_err(|e| layer_err!("{e}"))?;
        if cx.phase == Phase::Train {
            (self.rank, self.world) = (cx.rank, cx.world);
        }
        for i in 0..io.n_tops() {
            let s = self.top_shape(i);
            io.top_mut(i).reshape(&s)?;
        }
        Ok(Vec::new())
    }

    fn reshape(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        for i in 0..io.n_tops() {
            let s = self.top_shape(i);
            io.top_mut(i).reshape(&s)?;
        }
        Ok(())
    }

    fn forward(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let n = io.n_tops();
        let mut out: Vec<Vec<f32>> = (0..n)
            .map(|j| vec![0.0; self.top_shape(j).iter().product()])
            .collect();
        for i in 0..self.batch_size {
            while self.offset % self.world != self.rank {
                self.next().map_err(|e| layer_err!("{e}"))?;
            }
            let row = self.row_perm[self.current_row];
            for (j, o) in out.iter_mut().enumerate() {
                let dim = o.len() / self.batch_size;
                o[i * dim..(i + 1) * dim]
                    .copy_from_slice(&self.blobs[j].1[row * dim..(row + 1) * dim]);
            }
            self.next().map_err(|e| layer_err!("{e}"))?;
        }
        for (j, o) in out.iter().enumerate() {
            let s = self.top_shape(j);
            let top = io.top_mut(j);
            top.reshape(&s)?;
            top.set_data(o)?;
        }
        Ok(())
    }

    fn data_position(&self) -> Option<Value> {
        if self.blobs.is_empty() {
            return None;
        }
        let mut v = json!({
            "type": "HDF5Data",
            "source": self.source,
            "rank": self.rank,
            "world": self.world,
            "file_perm": self.file_perm,
            "current_file": self.current_file,
            "current_row": self.current_row,
            "offset": self.offset,
            "rand": glibc_to_json(&self.rand),
        });
        // Without shuffle the rows stay in file order.
        if self.shuffle {
            v["row_perm"] = json!(self.row_perm);
        }
        Some(v)
    }

    fn restore_data_position(&mut self, v: &Value) -> Result<()> {
        self.restore(v).map_err(|e| layer_err!("{e}"))
    }
}
