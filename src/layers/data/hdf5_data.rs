//! `HDF5Data`: rows of float datasets from a list of HDF5 files, one
//! dataset per top, named after the top (Caffe's HDF5DataLayer). The list
//! file holds whitespace-separated paths. Files are loaded whole, one at a
//! time, in `forward`; with `shuffle`, the file order is shuffled at every
//! pass and the rows of each file at every load and every pass over it,
//! with `std::random_shuffle` on glibc's unseeded `rand()`, as in Caffe.
//! In TRAIN with several replicas, replica r keeps every N-th row.
use std::path::Path;

use crate::data::hdf5;
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

    /// Caffe's `LoadHDF5FileData`: every top's dataset, same row count.
    fn load_file(&mut self) -> Result<()> {
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
        if self.shuffle {
            std_random_shuffle(&mut self.row_perm, &mut self.rand);
        }
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
}
