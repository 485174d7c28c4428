//! rcaffe's data positions: beside each snapshot's solver state, a file
//! `<prefix>_iter_<N>.datapos` (JSON) holds, for every data layer of the
//! train and test nets, where its stream stands after the last batch the
//! net consumed (cursor, random streams; see `Layer::data_position`).
//! Caffe's `.solverstate` has no such field and Caffe restarts the data at
//! record 0 on resume; keeping the position in a separate file leaves the
//! solver state exactly as Caffe writes and reads it.
//!
//! On resume, a present and matching file puts every data layer back where
//! it was, so that training continues bit for bit; without one the layers
//! restart from their first record, as Caffe's do. A file that does not fit
//! (other iteration, other net, changed database) is reported and ignored
//! for the layers concerned: never fatal, since the run can always continue
//! as Caffe would.
//!
//! The net's own random stream (Dropout masks) needs no saving: the solver
//! reseeds it from the iteration number every iteration (`Net::reseed_rng`).
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::log::{info, site, warn};
use crate::net::Net;

/// The `format` field of the files this version writes.
pub const FORMAT: &str = "rcaffe-datapos-1";

/// The data position file of a solver state: `x.solverstate` and
/// `x.solverstate.h5` → `x.datapos`.
pub fn path_for(state_file: &Path) -> PathBuf {
    let name = state_file.to_string_lossy();
    let base = name
        .strip_suffix(".solverstate.h5")
        .or_else(|| name.strip_suffix(".solverstate"))
        .unwrap_or(&name);
    PathBuf::from(format!("{base}.datapos"))
}

fn positions(net: &Net) -> Map<String, Value> {
    net.data_positions().into_iter().collect()
}

/// The file's contents for the nets as they stand at iteration `iter`, or
/// `None` when no layer has a position to save.
pub fn collect(iter: i32, state_file: &Path, train: &Net, tests: &[Net]) -> Option<Value> {
    let train_pos = positions(train);
    let test_pos: Vec<Map<String, Value>> = tests.iter().map(positions).collect();
    if train_pos.is_empty() && test_pos.iter().all(Map::is_empty) {
        return None;
    }
    let state_name = state_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(json!({
        "format": FORMAT,
        "iter": iter,
        "solverstate": state_name,
        "train_net": train_pos,
        "test_nets": test_pos,
    }))
}

/// Read and check a data position file against the solver state's
/// iteration.
fn read(path: &Path, iter: i32) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(path, format!("not a data position file: {e}")))?;
    match v.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        other => {
            return Err(Error::format(
                path,
                format!("unknown data position format {other:?} (this rcaffe reads {FORMAT})"),
            ))
        }
    }
    let saved = v.get("iter").and_then(Value::as_i64);
    if saved != Some(i64::from(iter)) {
        return Err(Error::format(
            path,
            format!(
                "written at iteration {} but the solver state is at iteration {iter}",
                saved.map_or("?".into(), |i| i.to_string())
            ),
        ));
    }
    Ok(v)
}

/// Put the data layers of `net` (`which`: "train net", "test net #0")
/// where `saved` says; returns the layers restored.
fn restore_net(net: &mut Net, saved: Option<&Value>, which: &str, file: &Path) -> Vec<String> {
    let mut done = Vec::new();
    let empty = Map::new();
    let saved = saved.and_then(Value::as_object).unwrap_or(&empty);
    for (name, _) in net.data_positions() {
        let Some(pos) = saved.get(&name) else {
            warn(
                site::SOLVER_RESTORING,
                &format!(
                    "{}: no data position for layer '{name}' of the {which}; it restarts \
                     from its first record",
                    file.display()
                ),
            );
            continue;
        };
        match net.restore_data_position(&name, pos) {
            Ok(()) => done.push(name),
            Err(e) => warn(
                site::SOLVER_RESTORING,
                &format!(
                    "{}: cannot restore the data position of the {which}: {e}; the layer \
                     restarts from its first record",
                    file.display()
                ),
            ),
        }
    }
    done
}

/// On resume from `state_file` at iteration `iter`: restore the data
/// positions saved beside it, or say why the data restarts from record 0.
pub fn restore(state_file: &Path, iter: i32, train: &mut Net, tests: &mut [Net]) {
    let has_positions =
        !train.data_positions().is_empty() || tests.iter().any(|t| !t.data_positions().is_empty());
    if !has_positions {
        return;
    }
    let path = path_for(state_file);
    if !path.exists() {
        info(
            site::SOLVER_RESTORING,
            &format!(
                "No data position file {} beside the solver state: the data layers restart \
                 from their first record, as Caffe's do",
                path.display()
            ),
        );
        return;
    }
    let v = match read(&path, iter) {
        Ok(v) => v,
        Err(e) => {
            warn(
                site::SOLVER_RESTORING,
                &format!("{e}; ignored: the data layers restart from their first record"),
            );
            return;
        }
    };
    let mut restored = Vec::new();
    for name in restore_net(train, v.get("train_net"), "train net", &path) {
        restored.push(format!("'{name}' (train net)"));
    }
    for (i, net) in tests.iter_mut().enumerate() {
        let saved = v.get("test_nets").and_then(|t| t.get(i));
        for name in restore_net(net, saved, &format!("test net #{i}"), &path) {
            restored.push(format!("'{name}' (test net #{i})"));
        }
    }
    if !restored.is_empty() {
        info(
            site::SOLVER_RESTORING,
            &format!(
                "Restoring data positions from {}: layer {}",
                path.display(),
                restored.join(", layer ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_checks() {
        assert_eq!(
            path_for(Path::new("d/snap_iter_25.solverstate")),
            PathBuf::from("d/snap_iter_25.datapos")
        );
        assert_eq!(
            path_for(Path::new("snap_iter_25.solverstate.h5")),
            PathBuf::from("snap_iter_25.datapos")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.datapos");
        std::fs::write(&p, json!({"format": FORMAT, "iter": 25}).to_string()).unwrap();
        assert!(read(&p, 25).is_ok());
        let e = read(&p, 30).unwrap_err().to_string();
        assert!(
            e.contains("iteration 25") && e.contains("iteration 30"),
            "{e}"
        );
        std::fs::write(&p, "{\"format\": \"other\"}").unwrap();
        let e = read(&p, 25).unwrap_err().to_string();
        assert!(e.contains("unknown data position format"), "{e}");
        std::fs::write(&p, "not json").unwrap();
        let e = read(&p, 25).unwrap_err().to_string();
        assert!(e.contains("not a data position file"), "{e}");
    }
}
