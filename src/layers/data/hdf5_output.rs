//! `HDF5Output`: writes its two bottoms to the HDF5 file `file_name` as
//! datasets `data` and `label` with Caffe's legacy 4-D shapes
//! (`num × channels × height × width`). The file is created (truncated) at
//! set-up. Caffe writes the datasets once and fails on the next forward;
//! here every forward appends its rows, so a whole pass can be saved.
use std::path::PathBuf;

use ndarray::{s, ArrayView4};

use crate::data::hdf5;
use crate::error::{Error, Result};
use crate::layer_err;
use crate::layers::{Arity, Ctx, Io, Layer};
use crate::log;
use crate::proto::caffe::LayerParameter;

const SITE_SAVING: &str = "hdf5_output_layer.cpp:33";
const SITE_SAVED: &str = "hdf5_output_layer.cpp:41";

pub struct HDF5OutputLayer {
    file_name: PathBuf,
    file: Option<::hdf5::File>,
    rows: usize,
}

impl HDF5OutputLayer {
    pub fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.hdf5_output_param.clone().unwrap_or_default();
        if p.file_name().is_empty() {
            return Err(layer_err!("hdf5_output_param.file_name is not set"));
        }
        Ok(HDF5OutputLayer {
            file_name: PathBuf::from(p.file_name()),
            file: None,
            rows: 0,
        })
    }

    /// Append `values` (rows of a 4-D legacy shape) to dataset `name`.
    fn append(&self, name: &str, dims: [usize; 4], values: &[f32]) -> Result<()> {
        let f = self.file.as_ref().expect("opened by setup");
        let path = &self.file_name;
        let err = |what: &str, e: ::hdf5::Error| {
            Error::Data(format!(
                "{}: HDF5 {what} '{name}' failed: {e}",
                path.display()
            ))
        };
        let ds = if self.rows == 0 {
            f.new_dataset::<f32>()
                .chunk([dims[0].max(1), dims[1], dims[2], dims[3]])
                .shape((0.., dims[1], dims[2], dims[3]))
                .create(name)
                .map_err(|e| err("creating dataset", e))?
        } else {
            f.dataset(name).map_err(|e| err("opening dataset", e))?
        };
        let old = ds.shape();
        if old[1..] != dims[1..] {
            return Err(Error::Data(format!(
                "{}: '{name}' rows are {:?} but this batch's are {:?}",
                path.display(),
                &old[1..],
                &dims[1..]
            )));
        }
        let n0 = self.rows;
        ds.resize([n0 + dims[0], dims[1], dims[2], dims[3]])
            .map_err(|e| err("resizing dataset", e))?;
        let view = ArrayView4::from_shape(dims, values).expect("values match dims");
        ds.write_slice(view, s![n0.., .., .., ..])
            .map_err(|e| err("writing dataset", e))
    }
}

/// Caffe's legacy `num, channels, height, width` of a shape.
fn legacy_dims(shape: &[usize]) -> Result<[usize; 4]> {
    if shape.len() > 4 {
        return Err(layer_err!(
            "bottoms of more than 4 axes cannot be saved (shape {shape:?})"
        ));
    }
    let d = |i: usize| shape.get(i).copied().unwrap_or(1);
    Ok([d(0), d(1), d(2), d(3)])
}

impl Layer for HDF5OutputLayer {
    fn type_name(&self) -> &'static str {
        "HDF5Output"
    }

    fn arity(&self) -> Arity {
        Arity::exact(2, 0)
    }

    fn setup(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<Vec<crate::tensor::Blob>> {
        self.file = Some(hdf5::create(&self.file_name).map_err(|e| layer_err!("{e}"))?);
        self.rows = 0;
        Ok(Vec::new())
    }

    fn reshape(&mut self, _cx: &mut Ctx, _io: &mut Io) -> Result<()> {
        Ok(())
    }

    fn forward(&mut self, _cx: &mut Ctx, io: &mut Io) -> Result<()> {
        let dd = legacy_dims(io.bottom(0).shape())?;
        let ld = legacy_dims(io.bottom(1).shape())?;
        if dd[0] != ld[0] {
            return Err(layer_err!(
                "data and label must have the same number of rows ({} and {})",
                dd[0],
                ld[0]
            ));
        }
        log::info(
            SITE_SAVING,
            &format!("Saving HDF5 file {}", self.file_name.display()),
        );
        let (data, label) = (io.bottom(0).data_vec(), io.bottom(1).data_vec());
        self.append("data", dd, &data)
            .and_then(|_| self.append("label", ld, &label))
            .map_err(|e| layer_err!("{e}"))?;
        self.rows += dd[0];
        if let Some(f) = &self.file {
            f.flush()
                .map_err(|e| layer_err!("{}: HDF5 flush failed: {e}", self.file_name.display()))?;
        }
        log::info(SITE_SAVED, &format!("Successfully saved {} rows", dd[0]));
        Ok(())
    }
}
