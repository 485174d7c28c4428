//! Caffe's binary protobuf files: `.caffemodel` (`NetParameter`),
//! `.binaryproto` (`BlobProto` or `BlobProtoVector`) and `.solverstate`
//! (`SolverState`).
//!
//! prost encodes fields in tag order and proto2 `[packed = true]` floats
//! packed, exactly as protobuf C++ does, so a file decoded and re-encoded is
//! byte-identical (checked against real Caffe output in
//! `tests/binary_format.rs`). Reads are bounded by the file's length (prost
//! never allocates more than the input holds) and by Caffe's own 2 GiB limit;
//! writes go to a temporary file in the target's directory that is renamed
//! over the target, so a crash never leaves a half-written model behind.
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::caffe::{
    BlobProto, BlobProtoVector, Datum, NetParameter, SolverParameter, SolverState,
};

/// Caffe's `kProtoReadBytesLimit` (INT_MAX): protobuf C++ cannot parse more.
pub const PROTO_READ_BYTES_LIMIT: u64 = i32::MAX as u64;

/// A prost message with its protobuf full name, for error messages.
pub trait NamedMessage: Message + Default {
    const FULL_NAME: &'static str;
}

macro_rules! named {
    ($($t:ty => $n:literal),* $(,)?) => {
        $(impl NamedMessage for $t { const FULL_NAME: &'static str = $n; })*
    };
}
named! {
    NetParameter => "caffe.NetParameter",
    BlobProto => "caffe.BlobProto",
    BlobProtoVector => "caffe.BlobProtoVector",
    SolverState => "caffe.SolverState",
    SolverParameter => "caffe.SolverParameter",
    Datum => "caffe.Datum",
}

/// Decode `bytes` (the contents of `path`) as an `M`.
pub fn decode_bytes<M: NamedMessage>(bytes: &[u8], path: &Path) -> Result<M> {
    M::decode(bytes).map_err(|e| {
        Error::format(
            path,
            format!("not a valid {} (truncated or corrupt): {e}", M::FULL_NAME),
        )
    })
}

/// Read a whole file, refusing anything over [`PROTO_READ_BYTES_LIMIT`].
fn read_limited(path: &Path, what: &str) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // The metadata length is only a hint (pipes, /proc); the `take` below is
    // what actually bounds the allocation.
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
    if hint > PROTO_READ_BYTES_LIMIT {
        return Err(too_big(path, what, hint));
    }
    let mut bytes = Vec::with_capacity(hint as usize);
    file.take(PROTO_READ_BYTES_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > PROTO_READ_BYTES_LIMIT {
        return Err(too_big(path, what, bytes.len() as u64));
    }
    Ok(bytes)
}

fn too_big(path: &Path, what: &str, len: u64) -> Error {
    Error::format(
        path,
        format!(
            "{len} bytes is over the {PROTO_READ_BYTES_LIMIT}-byte limit for a {what} \
             (Caffe's kProtoReadBytesLimit)"
        ),
    )
}

/// Read and decode a binary protobuf file as an `M`.
pub fn decode_file<M: NamedMessage>(path: &Path) -> Result<M> {
    let bytes = read_limited(path, M::FULL_NAME)?;
    decode_bytes(&bytes, path)
}

/// Like [`decode_file`], but an empty file is an error: Caffe always writes
/// at least one field into a model or a solver state, so an empty one is a
/// file truncated to nothing.
fn decode_nonempty<M: NamedMessage>(path: &Path) -> Result<M> {
    let bytes = read_limited(path, M::FULL_NAME)?;
    if bytes.is_empty() {
        return Err(Error::format(
            path,
            format!("empty file: not a valid {}", M::FULL_NAME),
        ));
    }
    decode_bytes(&bytes, path)
}

/// Write `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed and synced, then renamed over `path`.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // Through a symlink, as Caffe's ofstream writes: replace the file it
    // points to, not the link.
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(p) => {
                resolved = p;
                resolved.as_path()
            }
            Err(_) => path,
        },
        _ => path,
    };
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
    // tempfile creates 0600 files; ask for 0666 so that the process umask
    // decides, as for any file Caffe writes.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // Make the rename itself durable; failure here is not worth an error.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Encode `msg` and write it atomically to `path`.
pub fn write_message_atomic<M: NamedMessage>(path: &Path, msg: &M) -> Result<()> {
    let len = msg.encoded_len() as u64;
    if len > PROTO_READ_BYTES_LIMIT {
        // Neither Caffe nor we could read it back.
        return Err(too_big(path, M::FULL_NAME, len));
    }
    write_bytes_atomic(path, &msg.encode_to_vec())
}

/// Read a `.caffemodel` (no upgrade; see `upgrade::load_net_binary`).
pub fn read_net_binary(path: &Path) -> Result<NetParameter> {
    decode_nonempty(path)
}

pub fn write_net_binary(path: &Path, net: &NetParameter) -> Result<()> {
    write_message_atomic(path, net)
}

/// Read a single-blob `.binaryproto` (a mean file).
pub fn read_blob_proto(path: &Path) -> Result<BlobProto> {
    decode_nonempty(path)
}

pub fn write_blob_proto(path: &Path, blob: &BlobProto) -> Result<()> {
    write_message_atomic(path, blob)
}

/// Read a `BlobProtoVector` `.binaryproto` (an empty file is zero blobs).
pub fn read_blob_proto_vector(path: &Path) -> Result<BlobProtoVector> {
    decode_file(path)
}

pub fn write_blob_proto_vector(path: &Path, blobs: &BlobProtoVector) -> Result<()> {
    write_message_atomic(path, blobs)
}

pub fn read_solver_state(path: &Path) -> Result<SolverState> {
    decode_nonempty(path)
}

pub fn write_solver_state(path: &Path, state: &SolverState) -> Result<()> {
    write_message_atomic(path, state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.caffemodel");
        let net = NetParameter {
            name: Some("a".into()),
            ..Default::default()
        };
        write_net_binary(&p, &net).unwrap();
        let net2 = NetParameter {
            name: Some("bb".into()),
            ..Default::default()
        };
        write_net_binary(&p, &net2).unwrap();
        assert_eq!(read_net_binary(&p).unwrap(), net2);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.caffemodel")]);
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_goes_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.caffemodel");
        let link = dir.path().join("link.caffemodel");
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink("real.caffemodel", &link).unwrap();
        let net = NetParameter {
            name: Some("n".into()),
            ..Default::default()
        };
        write_net_binary(&link, &net).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(read_net_binary(&target).unwrap(), net);
    }

    #[test]
    fn errors_are_one_line_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.caffemodel");
        // Field 1 (name), length 100, but only 3 bytes follow.
        std::fs::write(&p, [0x0a, 100, b'a', b'b', b'c']).unwrap();
        let e = read_net_binary(&p).unwrap_err().to_string();
        assert!(e.contains("bad.caffemodel"), "{e}");
        assert!(e.contains("not a valid caffe.NetParameter"), "{e}");
        assert!(!e.contains('\n'), "{e}");

        std::fs::write(&p, []).unwrap();
        let e = read_net_binary(&p).unwrap_err().to_string();
        assert!(e.contains("empty file"), "{e}");
        assert!(read_blob_proto_vector(&p).unwrap().blobs.is_empty());

        let e = read_solver_state(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
