//! HDF5 files in Caffe's layouts (feature `hdf5`, against the system
//! libhdf5):
//!
//! - data files of `HDF5Data` / `HDF5Output`: one float dataset per top,
//!   named after it, first axis = rows (any numeric type is read as float,
//!   as `H5LTread_dataset_float` converts);
//! - `snapshot_format: HDF5` weights (`Net::ToHDF5`): groups `data` (and
//!   `diff`) holding one group per layer, in it datasets `0`, `1`, … per
//!   learnable blob;
//!   Only parameters that own their storage are saved; a layer sharing a
//!   parameter (by `ParamSpec` name) has no dataset for it, as in Caffe;
//! - solver states (`SnapshotSolverStateToHDF5`): `iter`, `current_step`
//!   (scalar int datasets, `H5LTmake_dataset_int` of rank 0), `learned_net`
//!   (a fixed-length string) and a group `history` of datasets `0`, `1`, ….
use std::path::Path;

use hdf5::types::FixedAscii;

use crate::error::{Error, Result};
use crate::proto::caffe::{BlobProto, BlobShape, LayerParameter, NetParameter, SolverState};
use crate::tensor::Blob;

fn h5_err(path: &Path, what: &str, e: hdf5::Error) -> Error {
    Error::Data(format!("{}: HDF5 {what} failed: {e}", path.display()))
}

/// Longest `learned_net` string a solver state can hold.
const MAX_STRING: usize = 4096;

/// Read dataset `name` of an open file as float values and its shape.
pub fn read_dataset(file: &hdf5::File, path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let ds = file.dataset(name).map_err(|e| {
        Error::Data(format!(
            "{}: no dataset '{name}' ({e}); the file must hold one dataset per top",
            path.display()
        ))
    })?;
    let shape = ds.shape();
    let values = ds
        .read_raw::<f32>()
        .map_err(|e| h5_err(path, &format!("reading dataset '{name}'"), e))?;
    Ok((shape, values))
}

pub fn open(path: &Path) -> Result<hdf5::File> {
    hdf5::File::open(path).map_err(|e| h5_err(path, "open", e))
}

pub fn create(path: &Path) -> Result<hdf5::File> {
    hdf5::File::create(path).map_err(|e| h5_err(path, "create", e))
}

fn write_f32(g: &hdf5::Group, path: &Path, name: &str, shape: &[usize], v: &[f32]) -> Result<()> {
    let ds = g
        .new_dataset::<f32>()
        .shape(shape)
        .create(name)
        .map_err(|e| h5_err(path, &format!("creating dataset '{name}'"), e))?;
    ds.write_raw(v)
        .map_err(|e| h5_err(path, &format!("writing dataset '{name}'"), e))
}

/// A scalar int dataset (Caffe's `hdf5_save_int`).
fn write_i32(g: &hdf5::Group, path: &Path, name: &str, v: i32) -> Result<()> {
    let ds = g
        .new_dataset::<i32>()
        .shape(())
        .create(name)
        .map_err(|e| h5_err(path, &format!("creating dataset '{name}'"), e))?;
    ds.write_scalar(&v)
        .map_err(|e| h5_err(path, &format!("writing dataset '{name}'"), e))
}

/// An int dataset's (first) value: scalar as Caffe writes, or 1-element.
fn read_i32(g: &hdf5::Group, path: &Path, name: &str) -> Result<i32> {
    let v = g
        .dataset(name)
        .and_then(|d| d.read_raw::<i32>())
        .map_err(|e| h5_err(path, &format!("reading '{name}'"), e))?;
    v.first()
        .copied()
        .ok_or_else(|| Error::format(path, format!("dataset '{name}' is empty")))
}

/// A blob's shape as Caffe saves it (`Blob::shape()`, legacy 4-D dims
/// when the proto has no `shape`).
fn proto_dims(b: &BlobProto) -> Result<Vec<usize>> {
    Blob::proto_shape(b).map_err(|e| Error::Data(e.to_string()))
}

fn blob_from(shape: Vec<usize>, data: Vec<f32>) -> BlobProto {
    BlobProto {
        shape: Some(BlobShape {
            dim: shape.iter().map(|&d| d as i64).collect(),
        }),
        data,
        ..Default::default()
    }
}

/// Write a net's learnable blobs (`NetParameter` as `Net::to_proto` gives
/// it) in Caffe's `.caffemodel.h5` layout (`Net::ToHDF5`): every layer gets
/// a group; a parameter whose `ParamSpec` name an earlier layer already
/// used is that layer's, and only its owner saves its values. With `diff`,
/// the diffs too, of every parameter.
pub fn write_net_hdf5(path: &Path, net: &NetParameter, diff: bool) -> Result<()> {
    let mut owned_names = std::collections::HashSet::new();
    let f = create(path)?;
    let data = f
        .create_group("data")
        .map_err(|e| h5_err(path, "creating group 'data'", e))?;
    let diffs = if diff {
        Some(
            f.create_group("diff")
                .map_err(|e| h5_err(path, "creating group 'diff'", e))?,
        )
    } else {
        None
    };
    for l in &net.layer {
        let name = l.name();
        let g = data
            .create_group(name)
            .map_err(|e| h5_err(path, &format!("creating group 'data/{name}'"), e))?;
        let gd = match &diffs {
            Some(d) => Some(
                d.create_group(name)
                    .map_err(|e| h5_err(path, &format!("creating group 'diff/{name}'"), e))?,
            ),
            None => None,
        };
        for (i, b) in l.blobs.iter().enumerate() {
            let dims = proto_dims(b)?;
            let pname = l.param.get(i).map_or("", |p| p.name());
            if pname.is_empty() || owned_names.insert(pname.to_string()) {
                write_f32(&g, path, &i.to_string(), &dims, &b.data)?;
            }
            if let Some(gd) = &gd {
                write_f32(gd, path, &i.to_string(), &dims, &b.diff)?;
            }
        }
    }
    Ok(())
}

/// One layer group of a `.caffemodel.h5`: dataset `i` of the group is
/// `blobs[i]`; `None` where the file has no dataset `i` (a shared
/// parameter its owner saved).
#[derive(Debug, Clone, PartialEq)]
pub struct Hdf5Layer {
    pub name: String,
    pub blobs: Vec<Option<BlobProto>>,
    /// How many links the group holds (Caffe checks it against the net).
    pub num_links: usize,
}

/// Read every layer group of a `.caffemodel.h5` (Caffe's layout, in the
/// file's link order).
pub fn read_net_hdf5_layers(path: &Path) -> Result<Vec<Hdf5Layer>> {
    let f = open(path)?;
    let data = f
        .group("data")
        .map_err(|e| h5_err(path, "opening group 'data'", e))?;
    let names = data
        .member_names()
        .map_err(|e| h5_err(path, "listing layers", e))?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let g = data
            .group(&name)
            .map_err(|e| h5_err(path, &format!("opening group 'data/{name}'"), e))?;
        let members = g
            .member_names()
            .map_err(|e| h5_err(path, &format!("listing 'data/{name}'"), e))?;
        let last = members.iter().filter_map(|m| m.parse::<usize>().ok()).max();
        let mut blobs = Vec::new();
        for i in last.map_or(0..0, |l| 0..l + 1) {
            if !g.link_exists(&i.to_string()) {
                blobs.push(None);
                continue;
            }
            let ds = g
                .dataset(&i.to_string())
                .map_err(|e| h5_err(path, &format!("opening 'data/{name}/{i}'"), e))?;
            let v = ds
                .read_raw::<f32>()
                .map_err(|e| h5_err(path, &format!("reading 'data/{name}/{i}'"), e))?;
            blobs.push(Some(blob_from(ds.shape(), v)));
        }
        out.push(Hdf5Layer {
            name,
            blobs,
            num_links: members.len(),
        });
    }
    Ok(out)
}

/// Read a `.caffemodel.h5` into a `NetParameter` of named layers with
/// their blobs, up to the first one the file does not hold.
pub fn read_net_hdf5(path: &Path) -> Result<NetParameter> {
    let mut net = NetParameter::default();
    for l in read_net_hdf5_layers(path)? {
        net.layer.push(LayerParameter {
            name: Some(l.name),
            blobs: l.blobs.into_iter().map_while(|b| b).collect(),
            ..Default::default()
        });
    }
    Ok(net)
}

/// Write a solver state in Caffe's `.solverstate.h5` layout.
pub fn write_solver_state_hdf5(path: &Path, s: &SolverState) -> Result<()> {
    if s.learned_net().len() >= MAX_STRING {
        return Err(Error::Data(format!(
            "{}: learned_net '{}' is longer than the {} characters a solver state holds",
            path.display(),
            s.learned_net(),
            MAX_STRING - 1
        )));
    }
    let f = create(path)?;
    write_i32(&f, path, "iter", s.iter())?;
    let learned =
        FixedAscii::<MAX_STRING>::from_ascii(s.learned_net().as_bytes()).map_err(|e| {
            Error::Data(format!(
                "{}: learned_net '{}' cannot be stored: {e}",
                path.display(),
                s.learned_net()
            ))
        })?;
    f.new_dataset::<FixedAscii<MAX_STRING>>()
        .create("learned_net")
        .and_then(|d| d.write_scalar(&learned))
        .map_err(|e| h5_err(path, "writing 'learned_net'", e))?;
    write_i32(&f, path, "current_step", s.current_step())?;
    let h = f
        .create_group("history")
        .map_err(|e| h5_err(path, "creating group 'history'", e))?;
    for (i, b) in s.history.iter().enumerate() {
        write_f32(&h, path, &i.to_string(), &proto_dims(b)?, &b.data)?;
    }
    Ok(())
}

/// Read a `.solverstate.h5` (Caffe's or ours); `learned_net` is optional,
/// as in Caffe's `RestoreSolverStateFromHDF5`.
pub fn read_solver_state_hdf5(path: &Path) -> Result<SolverState> {
    let f = open(path)?;
    let learned = if f.link_exists("learned_net") {
        let s: FixedAscii<MAX_STRING> = f
            .dataset("learned_net")
            .and_then(|d| d.read_scalar())
            .map_err(|e| h5_err(path, "reading 'learned_net'", e))?;
        Some(s.as_str().to_string())
    } else {
        None
    };
    let h = f
        .group("history")
        .map_err(|e| h5_err(path, "opening group 'history'", e))?;
    let mut history = Vec::new();
    for i in 0.. {
        if !h.link_exists(&i.to_string()) {
            break;
        }
        let ds = h
            .dataset(&i.to_string())
            .map_err(|e| h5_err(path, &format!("opening 'history/{i}'"), e))?;
        let v = ds
            .read_raw::<f32>()
            .map_err(|e| h5_err(path, &format!("reading 'history/{i}'"), e))?;
        history.push(blob_from(ds.shape(), v));
    }
    Ok(SolverState {
        iter: Some(read_i32(&f, path, "iter")?),
        learned_net: learned,
        history,
        current_step: Some(read_i32(&f, path, "current_step")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_and_solver_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let blob = |shape: Vec<usize>, v: f32| {
            let n = shape.iter().product();
            blob_from(shape, vec![v; n])
        };
        let net = NetParameter {
            layer: vec![
                LayerParameter {
                    name: Some("data".into()),
                    ..Default::default()
                },
                LayerParameter {
                    name: Some("ip".into()),
                    blobs: vec![blob(vec![2, 3], 0.5), blob(vec![2], -1.0)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let p = dir.path().join("m.caffemodel.h5");
        write_net_hdf5(&p, &net, false).unwrap();
        let back = read_net_hdf5(&p).unwrap();
        let ip = back.layer.iter().find(|l| l.name() == "ip").unwrap();
        assert_eq!(ip.blobs, net.layer[1].blobs);
        assert!(back
            .layer
            .iter()
            .any(|l| l.name() == "data" && l.blobs.is_empty()));

        // A shared parameter (ParamSpec name "w" again) is saved by its
        // owner only; the sharer's group has no dataset for it.
        let spec = |n: &str| crate::proto::caffe::ParamSpec {
            name: Some(n.into()),
            ..Default::default()
        };
        let shared = NetParameter {
            layer: vec![
                LayerParameter {
                    name: Some("a".into()),
                    param: vec![spec("w")],
                    blobs: vec![blob(vec![2], 1.0)],
                    ..Default::default()
                },
                LayerParameter {
                    name: Some("b".into()),
                    param: vec![spec("w"), spec("")],
                    blobs: vec![blob(vec![2], 1.0), blob(vec![3], 2.0)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let p = dir.path().join("shared.caffemodel.h5");
        write_net_hdf5(&p, &shared, false).unwrap();
        let layers = read_net_hdf5_layers(&p).unwrap();
        let b = layers.iter().find(|l| l.name == "b").unwrap();
        assert_eq!(b.blobs, vec![None, Some(blob(vec![3], 2.0))]);
        assert_eq!(b.num_links, 1);
        let f = hdf5::File::open(&p).unwrap();
        assert!(f.link_exists("data/a/0") && !f.link_exists("data/b/0"));

        let s = SolverState {
            iter: Some(25),
            learned_net: Some("snap_iter_25.caffemodel.h5".into()),
            history: vec![blob(vec![2, 3], 0.25), blob(vec![2], 2.0)],
            current_step: Some(3),
        };
        let p = dir.path().join("s.solverstate.h5");
        write_solver_state_hdf5(&p, &s).unwrap();
        assert_eq!(read_solver_state_hdf5(&p).unwrap(), s);
        // Caffe's hdf5_save_int writes rank-0 datasets.
        let f = hdf5::File::open(&p).unwrap();
        assert_eq!(f.dataset("iter").unwrap().ndim(), 0);
        assert_eq!(f.dataset("iter").unwrap().read_scalar::<i32>().unwrap(), 25);
        let e = read_solver_state_hdf5(&dir.path().join("none.h5")).unwrap_err();
        assert!(e.to_string().contains("none.h5"), "{e}");
    }
}
