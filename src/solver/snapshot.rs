//! Snapshots and resume (Caffe's `Solver::Snapshot` / `Restore`):
//! `<prefix>_iter_<N>.caffemodel` + `.solverstate` (`snapshot_format:
//! BINARYPROTO`) or `.caffemodel.h5` + `.solverstate.h5` (`HDF5`, feature
//! `hdf5`), plus rcaffe's data positions (`datapos`).
//!
//! Every file is written to a hidden temporary name in the target's
//! directory (`.<name>.<random>.tmp`, never taken for a snapshot), synced
//! and renamed into place, so a crash or kill leaves either the complete
//! new file or none. Order: model, data positions, solver state — a solver
//! state on disk always has its model and positions beside it.
use std::path::{Path, PathBuf};

use super::{datapos, Solver};
use crate::error::{Error, Result};
use crate::log::{info, site};
use crate::net::Net;
use crate::proto::caffe::solver_parameter::SnapshotFormat;
use crate::proto::caffe::{SolverParameter, SolverState};
use crate::proto::{binary, upgrade};
use crate::tensor::Blob;

/// Test hook: with this variable set to a number of milliseconds, every
/// snapshot file waits that long between its complete temporary file and
/// the rename (after a line saying so), so that a test can kill the
/// process in the middle of a snapshot deterministically.
pub const TEST_DELAY_ENV: &str = "RCAFFE_TEST_SNAPSHOT_DELAY_MS";

/// Caffe 1.0's `file:line` of the HDF5 snapshot lines.
const SITE_SNAPSHOT_MODEL_HDF5: &str = "solver.cpp:474";
const SITE_SNAPSHOT_STATE_HDF5: &str = "sgd_solver.cpp:294";
const SITE_IGNORING_LAYER: &str = "net.cpp:1080";

fn is_hdf5(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".h5")
}

/// The error for an HDF5 file in a build without the `hdf5` feature.
#[cfg(not(feature = "hdf5"))]
pub(crate) fn hdf5_unsupported(what: &str) -> Error {
    Error::Solver(format!(
        "{what} needs HDF5 support, which this rcaffe was built without: rebuild with \
         `cargo build --features hdf5` (needs the system libhdf5, Debian: libhdf5-dev)"
    ))
}

/// Refuse `snapshot_format: HDF5` up front in a build without HDF5.
pub(crate) fn check_format(p: &SolverParameter) -> Result<()> {
    #[cfg(not(feature = "hdf5"))]
    if p.snapshot_format() == SnapshotFormat::Hdf5 {
        return Err(hdf5_unsupported("snapshot_format: HDF5"));
    }
    let _ = p;
    Ok(())
}

/// Write `path` through a temporary file: `write` fills the temporary
/// path, which is then synced and renamed over `path`.
fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::format(path, "not a file name"))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // tempfile creates 0600 files; 0666 lets the umask decide, as for any
    // file Caffe writes.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(dir).map_err(|e| Error::io(path, e))?;
    write(tmp.path())?;
    // The writer may have replaced the file at the temporary path: sync
    // what is there now.
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    if let Some(ms) = std::env::var(TEST_DELAY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        crate::log::warn(
            site::SOLVER_SNAPSHOT_MODEL,
            &format!(
                "{TEST_DELAY_ENV}: pausing {ms} ms before renaming {} to {}",
                tmp.path().display(),
                path.display()
            ),
        );
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        // Make the rename itself durable; not worth an error.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Load the weights of `path` into `net` (Caffe's `CopyTrainedLayersFrom`:
/// a `.h5` name is an HDF5 model, anything else a binary proto). Logs the
/// source layers the net has no use for.
pub fn load_weights_file(net: &mut Net, path: &Path) -> Result<()> {
    if is_hdf5(path) {
        return copy_from_hdf5(net, path);
    }
    let weights = upgrade::load_net_binary(path)?;
    for ignored in net.copy_trained_layers_from(&weights)? {
        info(
            SITE_IGNORING_LAYER,
            &format!("Ignoring source layer {ignored}"),
        );
    }
    Ok(())
}

#[cfg(not(feature = "hdf5"))]
fn copy_from_hdf5(_net: &mut Net, path: &Path) -> Result<()> {
    Err(hdf5_unsupported(&format!(
        "{}: an HDF5 model (.caffemodel.h5)",
        path.display()
    )))
}

/// Caffe's `CopyTrainedLayersFromHDF5`: layers matched by name; a
/// parameter the file does not hold is fine when it is shared in the net
/// (its owner loads it), else an error.
#[cfg(feature = "hdf5")]
fn copy_from_hdf5(net: &mut Net, path: &Path) -> Result<()> {
    use crate::data::hdf5;
    for src in hdf5::read_net_hdf5_layers(path)? {
        let name = &src.name;
        let Some(li) = net.spec().layer_id(name) else {
            info(
                SITE_IGNORING_LAYER,
                &format!("Ignoring source layer {name}"),
            );
            continue;
        };
        let n_target = net.layer_params(li).len();
        let incompatible = || {
            Error::Net(format!(
                "{}: Incompatible number of blobs for layer '{name}': the file has {} \
                 datasets, the net has {n_target} parameters",
                path.display(),
                src.num_links
            ))
        };
        if src.num_links > n_target {
            return Err(incompatible());
        }
        for j in 0..n_target {
            let Some(bp) = src.blobs.get(j).and_then(Option::as_ref) else {
                let pid = net.spec().layers[li].param_ids[j];
                if net.spec().params[pid].owner.is_some() {
                    continue;
                }
                return Err(incompatible());
            };
            let target = net.layer_param_mut(li, j);
            if !target.shape_equals(bp) {
                let src_shape = Blob::proto_shape(bp)
                    .map(|s| crate::tensor::shape_string(&s))
                    .unwrap_or_else(|e| e.to_string());
                return Err(Error::Net(format!(
                    "{}: Cannot load param {j} of layer '{name}'; shape mismatch. Source \
                     shape is {src_shape}; target shape is {}",
                    path.display(),
                    target.shape_string()
                )));
            }
            target
                .copy_from_proto(bp)
                .map_err(|e| Error::Net(format!("layer '{name}' param {j}: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(feature = "hdf5")]
fn write_model_hdf5(
    path: &Path,
    net: &crate::proto::caffe::NetParameter,
    diff: bool,
) -> Result<()> {
    write_atomically(path, |tmp| {
        crate::data::hdf5::write_net_hdf5(tmp, net, diff)
    })
}

#[cfg(not(feature = "hdf5"))]
fn write_model_hdf5(
    _path: &Path,
    _net: &crate::proto::caffe::NetParameter,
    _diff: bool,
) -> Result<()> {
    Err(hdf5_unsupported("snapshot_format: HDF5"))
}

#[cfg(feature = "hdf5")]
fn write_state_hdf5(path: &Path, state: &SolverState) -> Result<()> {
    write_atomically(path, |tmp| {
        crate::data::hdf5::write_solver_state_hdf5(tmp, state)
    })
}

#[cfg(not(feature = "hdf5"))]
fn write_state_hdf5(_path: &Path, _state: &SolverState) -> Result<()> {
    Err(hdf5_unsupported("snapshot_format: HDF5"))
}

#[cfg(feature = "hdf5")]
fn read_state_hdf5(path: &Path) -> Result<SolverState> {
    crate::data::hdf5::read_solver_state_hdf5(path)
}

#[cfg(not(feature = "hdf5"))]
fn read_state_hdf5(path: &Path) -> Result<SolverState> {
    Err(hdf5_unsupported(&format!(
        "{}: an HDF5 solver state (.solverstate.h5)",
        path.display()
    )))
}

/// A binary solver state, or the error that says a model was given.
fn read_state_binary(state_file: &Path) -> Result<SolverState> {
    match binary::read_solver_state(state_file) {
        Ok(s) => Ok(s),
        // A common mix-up (Caffe's "Incorrect length of history blobs").
        Err(e) => match binary::read_net_binary(state_file) {
            Ok(net) if !net.layer.is_empty() || !net.layers.is_empty() => {
                Err(Error::Solver(format!(
                    "{f}: this is a model (.caffemodel), not a solver state; --snapshot \
                     needs the .solverstate file written next to it (to start a new run \
                     from these weights instead, use --weights {f})",
                    f = state_file.display()
                )))
            }
            _ => Err(e),
        },
    }
}

impl Solver {
    pub(super) fn snapshot_filename(&self, ext: &str) -> String {
        format!("{}_iter_{}{ext}", self.param.snapshot_prefix(), self.iter)
    }

    /// Write `<prefix>_iter_<iter>.caffemodel` and `.solverstate` (`.h5`
    /// names with `snapshot_format: HDF5`), and the data positions beside
    /// them, each through a temporary file renamed into place. Returns the
    /// model and solver state paths.
    pub fn snapshot(&mut self) -> Result<(PathBuf, PathBuf)> {
        self.check_state_finite()?;
        let hdf5 = self.param.snapshot_format() == SnapshotFormat::Hdf5;
        let proto = self.net.to_proto(self.param.snapshot_diff());
        let model = if hdf5 {
            let model = self.snapshot_filename(".caffemodel.h5");
            info(
                SITE_SNAPSHOT_MODEL_HDF5,
                &format!("Snapshotting to HDF5 file {model}"),
            );
            write_model_hdf5(Path::new(&model), &proto, self.param.snapshot_diff())?;
            model
        } else {
            let model = self.snapshot_filename(".caffemodel");
            info(
                site::SOLVER_SNAPSHOT_MODEL,
                &format!("Snapshotting to binary proto file {model}"),
            );
            // Encoded by the binary writer (which checks the size limit).
            write_atomically(Path::new(&model), |tmp| {
                binary::write_net_binary(tmp, &proto)
            })?;
            model
        };
        drop(proto);
        let state = self.solver_state(&model);
        let state_file = self.snapshot_filename(if hdf5 {
            ".solverstate.h5"
        } else {
            ".solverstate"
        });
        let state_path = PathBuf::from(&state_file);
        if let Some(pos) = datapos::collect(self.iter, &state_path, &self.net, &self.test_nets) {
            let bytes = serde_json::to_vec(&pos)
                .map_err(|e| Error::Solver(format!("cannot encode the data positions: {e}")))?;
            let path = datapos::path_for(&state_path);
            write_atomically(&path, |tmp| {
                std::fs::write(tmp, &bytes).map_err(|e| Error::io(tmp, e))
            })?;
        }
        if hdf5 {
            info(
                SITE_SNAPSHOT_STATE_HDF5,
                &format!("Snapshotting solver state to HDF5 file {state_file}"),
            );
            write_state_hdf5(&state_path, &state)?;
        } else {
            info(
                site::SGD_SNAPSHOT_STATE,
                &format!("Snapshotting solver state to binary proto file {state_file}"),
            );
            write_atomically(&state_path, |tmp| binary::write_solver_state(tmp, &state))?;
        }
        let pair = (PathBuf::from(model), state_path);
        self.last_snapshot = Some(pair.clone());
        Ok(pair)
    }

    /// The last snapshot this solver wrote, if any.
    pub fn last_snapshot(&self) -> Option<&(PathBuf, PathBuf)> {
        self.last_snapshot.as_ref()
    }

    /// The solverstate Caffe writes: iteration, model file, history blobs
    /// (set by set), lr step.
    pub fn solver_state(&self, learned_net: &str) -> SolverState {
        SolverState {
            iter: Some(self.iter),
            learned_net: Some(learned_net.to_string()),
            history: self.history().map(|b| b.to_proto(false)).collect(),
            current_step: Some(self.current_step),
        }
    }

    /// Resume from a `.solverstate` or `.solverstate.h5` (Caffe's
    /// `Restore`): iteration, lr step, the weights of `learned_net` (into
    /// the train net; test nets follow at the next test) and the history;
    /// then rcaffe's data positions when saved beside it.
    pub fn restore(&mut self, state_file: &Path) -> Result<()> {
        let sibling = Self::solverstate_for(state_file)?;
        let state_file = sibling.as_path();
        let state = if is_hdf5(state_file) {
            read_state_hdf5(state_file)?
        } else {
            read_state_binary(state_file)?
        };
        let expected: usize = self.history.iter().map(Vec::len).sum();
        if state.history.len() != expected {
            let hint = if state.history.is_empty() && state.iter.is_none() {
                " (is it a .caffemodel? --snapshot needs the .solverstate file)"
            } else {
                ""
            };
            return Err(Error::Solver(format!(
                "{}: Incorrect length of history blobs ({} vs. {expected} for a {} solver \
                 on this net){hint}",
                state_file.display(),
                state.history.len(),
                self.rule.type_name()
            )));
        }
        if let Some(learned) = state.learned_net.as_deref().filter(|s| !s.is_empty()) {
            let path = Self::resolve_learned_net(learned, state_file);
            load_weights_file(&mut self.net, &path)?;
        }
        self.iter = state.iter();
        self.current_step = state.current_step();
        info(site::SGD_RESTORING_HISTORY, "SGDSolver: restoring history");
        let n = self.net.num_learnable();
        for (k, proto) in state.history.iter().enumerate() {
            let (set, i) = (k / n.max(1), k % n.max(1));
            let restored = Blob::from_proto(&*self.be, proto).map_err(|e| {
                Error::Solver(format!("{}: history blob {k}: {e}", state_file.display()))
            })?;
            let want = self.net.learnable(i).count();
            if restored.count() != want {
                return Err(Error::Solver(format!(
                    "{}: history blob {k} has shape {} but parameter '{}' has {} values",
                    state_file.display(),
                    restored.shape_string(),
                    self.net.learnable_name(i),
                    want
                )));
            }
            self.history[set][i] = restored;
        }
        datapos::restore(state_file, self.iter, &mut self.net, &mut self.test_nets);
        Ok(())
    }

    /// `--snapshot x.caffemodel`: the `x.solverstate` written next to it
    /// (with a line saying so), or an error that says exactly what to pass.
    /// Other paths are returned unchanged.
    fn solverstate_for(path: &Path) -> Result<PathBuf> {
        let name = path.to_string_lossy();
        let split = [
            (".caffemodel.h5", ".solverstate.h5"),
            (".caffemodel", ".solverstate"),
        ]
        .into_iter()
        .find_map(|(model, state)| name.strip_suffix(model).map(|base| (base, state)));
        let Some((base, ext)) = split else {
            return Ok(path.to_path_buf());
        };
        let sibling = PathBuf::from(format!("{base}{ext}"));
        if sibling.exists() {
            info(
                site::SOLVER_RESTORING,
                &format!(
                    "{} is a model; resuming from its solver state {}",
                    path.display(),
                    sibling.display()
                ),
            );
            return Ok(sibling);
        }
        Err(Error::Solver(format!(
            "{p} is a model, not a solver state, and there is no {s} next to it: --snapshot \
             needs the .solverstate file a snapshot writes with the model (--snapshot {s}); \
             to start a new run from these weights instead, use --weights {p}",
            p = path.display(),
            s = sibling.display()
        )))
    }

    /// `learned_net` as written (relative to the directory training ran
    /// in); if that does not exist, next to the solverstate (so moved
    /// snapshot pairs still resume).
    pub(super) fn resolve_learned_net(learned: &str, state_file: &Path) -> PathBuf {
        let p = PathBuf::from(learned);
        if p.exists() || p.is_absolute() {
            return p;
        }
        if let (Some(dir), Some(name)) = (state_file.parent(), p.file_name()) {
            let beside = dir.join(name);
            if beside.exists() {
                return beside;
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a_iter_1.caffemodel");
        write_atomically(&p, |tmp| {
            std::fs::write(tmp, b"abc").map_err(|e| Error::io(tmp, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        // A failing writer leaves neither the file nor a temporary.
        let q = dir.path().join("b_iter_1.caffemodel");
        let e = write_atomically(&q, |_| Err(Error::Solver("disk full".into())));
        assert!(e.is_err());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a_iter_1.caffemodel".to_string()]);
    }
}
