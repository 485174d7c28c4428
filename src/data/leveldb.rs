//! LevelDB databases in Caffe's layout (Caffe's default `backend` for Data
//! layers and its tools), through the pure-Rust `rusty-leveldb`, which
//! reads and writes the C++ library's files (log, tables, manifest).
//!
//! Opening a LevelDB writes to its directory (lock file, info log, log
//! recovery), as the C++ library does. A database whose directory or files
//! lack write permission (read-only copies such as the golden data) is
//! therefore opened from a private temporary copy, so nothing is ever
//! written next to it.
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use rusty_leveldb::{compressor, CompressorId, LdbIterator, Options, WriteBatch, DB};

use super::source::RecordSource;
use crate::error::{Error, Result};
use crate::log;

/// Records copied out per iterator (see `LmdbSource`: the cursor is not
/// kept between calls so that the source stays `Send`).
const CHUNK_RECORDS: usize = 256;
const CHUNK_BYTES: usize = 16 << 20;

const SITE_COPY: &str = "db_leveldb.cpp:15";

fn ldb_err(path: &Path, what: &str, e: rusty_leveldb::Status) -> Error {
    Error::Data(format!("{}: LevelDB {what} failed: {e}", path.display()))
}

/// Caffe's `LevelDB::Open` options: 64 KiB blocks, a 256 MiB write buffer
/// (small databases stay in the log file, as Caffe's do), at most 100 open
/// files, snappy-compressed tables.
fn caffe_options(create: bool) -> Options {
    Options {
        create_if_missing: create,
        // The crate creates the directory (for its info log) before this
        // check would run; `LevelDbWriter::create` refuses existing paths.
        error_if_exists: false,
        block_size: 65536,
        write_buffer_size: 268_435_456,
        max_open_files: 100,
        compressor: compressor::SnappyCompressor::ID,
        ..Options::default()
    }
}

/// True when the directory or one of its files is not writable by mode
/// bits (checked by bits, not by trying: root could write anyway).
fn read_only(dir: &Path) -> bool {
    let ro = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().readonly())
            .unwrap_or(true)
    };
    ro(dir)
        || std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false) && ro(&e.path()))
}

/// Copy the database files (not its lock or info logs) into a new
/// temporary directory with write permission.
fn private_copy(dir: &Path) -> Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix("rcaffe-leveldb-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name();
        let skip = name == "LOCK" || name == "LOG" || name == "LOG.old";
        if skip || !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let to = tmp.path().join(&name);
        std::fs::copy(e.path(), &to).map_err(|err| Error::io(e.path(), err))?;
        let mut perm = std::fs::metadata(&to)
            .map_err(|err| Error::io(&to, err))?
            .permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&to, perm).map_err(|err| Error::io(&to, err))?;
    }
    Ok(tmp)
}

/// A read cursor over a LevelDB database that wraps around at the end.
pub struct LevelDbSource {
    /// Declared before `_copy`: the database closes before its temporary
    /// copy is removed.
    db: DB,
    path: PathBuf,
    _copy: Option<tempfile::TempDir>,
    /// The current record first, then those read ahead.
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Key of the last record in `buf` (where the next chunk starts).
    last_key: Vec<u8>,
}

impl LevelDbSource {
    /// Open `path` for reading (Caffe's `db::READ`: never created).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::Data(format!(
                "{}: LevelDB database not found (expected a directory holding CURRENT)",
                path.display()
            )));
        }
        if !path.join("CURRENT").is_file() {
            return Err(Error::Data(format!(
                "{}: not a LevelDB database (no CURRENT file in the directory)",
                path.display()
            )));
        }
        let copy = if read_only(path) {
            log::info(
                SITE_COPY,
                &format!(
                    "{} is read-only: reading it from a temporary copy",
                    path.display()
                ),
            );
            Some(private_copy(path)?)
        } else {
            None
        };
        let at = copy.as_ref().map_or(path, |t| t.path());
        let (db, copy) = match DB::open(at, caffe_options(false)) {
            Ok(db) => (db, copy),
            // Another reader in this process (e.g. the TEST net over the
            // TRAIN net's database) holds the lock: read a private copy.
            Err(e) if e.code == rusty_leveldb::StatusCode::LockError && copy.is_none() => {
                log::info(
                    SITE_COPY,
                    &format!(
                        "{} is locked by another reader: reading it from a temporary copy",
                        path.display()
                    ),
                );
                let tmp = private_copy(path)?;
                let db = DB::open(tmp.path(), caffe_options(false))
                    .map_err(|e| ldb_err(path, "open", e))?;
                (db, Some(tmp))
            }
            Err(e) => return Err(ldb_err(path, "open", e)),
        };
        let mut s = LevelDbSource {
            db,
            path: path.to_path_buf(),
            _copy: copy,
            buf: VecDeque::new(),
            last_key: Vec::new(),
        };
        s.load(false)?;
        if s.buf.is_empty() {
            return Err(Error::Data(format!(
                "{}: the LevelDB database holds no records",
                path.display()
            )));
        }
        Ok(s)
    }

    /// Append the next chunk: from the first record, or after `last_key`.
    fn load(&mut self, after_last: bool) -> Result<()> {
        let mut it = self
            .db
            .new_iter()
            .map_err(|e| ldb_err(&self.path, "iterator", e))?;
        if after_last {
            it.seek(&self.last_key);
            if it.valid()
                && it
                    .current()
                    .is_some_and(|(k, _)| k[..] == self.last_key[..])
            {
                it.advance();
            }
        } else {
            it.seek_to_first();
        }
        let (mut n, mut bytes) = (0, 0);
        while it.valid() {
            let Some((k, v)) = it.current() else { break };
            bytes += k.len() + v.len();
            self.buf.push_back((k.to_vec(), v.to_vec()));
            n += 1;
            if n >= CHUNK_RECORDS || bytes >= CHUNK_BYTES {
                break;
            }
            it.advance();
        }
        if let Some((k, _)) = self.buf.back() {
            self.last_key.clone_from(k);
        }
        Ok(())
    }
}

impl RecordSource for LevelDbSource {
    fn path(&self) -> &Path {
        &self.path
    }
    fn key(&self) -> &[u8] {
        &self.buf[0].0
    }
    fn value(&self) -> &[u8] {
        &self.buf[0].1
    }
    fn advance(&mut self) -> Result<bool> {
        self.buf.pop_front();
        if !self.buf.is_empty() {
            return Ok(false);
        }
        self.load(true)?;
        if !self.buf.is_empty() {
            return Ok(false);
        }
        self.load(false)?;
        if self.buf.is_empty() {
            return Err(Error::Data(format!(
                "{}: the LevelDB database became empty while reading",
                self.path.display()
            )));
        }
        Ok(true)
    }
}

/// Writes a new LevelDB database, one write batch per `commit` (Caffe's
/// `LevelDBTransaction`).
pub struct LevelDbWriter {
    db: DB,
    path: PathBuf,
    batch: WriteBatch,
    pending: usize,
}

impl LevelDbWriter {
    /// Create the database `path`; an existing path is refused (Caffe's
    /// `error_if_exists`), so nothing is ever overwritten.
    pub fn create(path: &Path) -> Result<Self> {
        if path.exists() {
            return Err(Error::Data(format!(
                "{}: already exists; refusing to overwrite an existing database",
                path.display()
            )));
        }
        let db = DB::open(path, caffe_options(true)).map_err(|e| ldb_err(path, "create", e))?;
        Ok(LevelDbWriter {
            db,
            path: path.to_path_buf(),
            batch: WriteBatch::default(),
            pending: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue one record (written by the next `commit`).
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.batch.put(key, value);
        self.pending += 1;
    }

    /// Write the queued records as one batch.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.pending = 0;
        self.db
            .write(batch, false)
            .map_err(|e| ldb_err(&self.path, "write", e))
    }

    /// Commit what is left, flush and close.
    pub fn finish(mut self) -> Result<()> {
        self.commit()?;
        self.db.close().map_err(|e| ldb_err(&self.path, "close", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_in_key_order_with_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = LevelDbWriter::create(&path).unwrap();
        let n = CHUNK_RECORDS + 7;
        for i in (0..n).rev() {
            w.put(format!("{i:08}").as_bytes(), &[i as u8; 10]);
            if i % 100 == 0 {
                w.commit().unwrap();
            }
        }
        w.put(b"zzz", b"last");
        w.finish().unwrap();
        assert!(LevelDbWriter::create(&path).is_err());

        let mut src = LevelDbSource::open(&path).unwrap();
        for i in 0..n {
            assert_eq!(src.key(), format!("{i:08}").as_bytes());
            assert_eq!(src.value(), &[i as u8; 10]);
            assert!(!src.advance().unwrap());
        }
        assert_eq!(src.key(), b"zzz");
        assert!(
            src.advance().unwrap(),
            "advancing past the last record wraps"
        );
        assert_eq!(src.key(), b"00000000");
    }

    #[test]
    fn two_readers_of_one_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = LevelDbWriter::create(&path).unwrap();
        w.put(b"a", b"1");
        w.finish().unwrap();
        let a = LevelDbSource::open(&path).unwrap();
        let b = LevelDbSource::open(&path).unwrap();
        assert_eq!((a.key(), b.key()), (&b"a"[..], &b"a"[..]));
    }

    #[test]
    fn missing_empty_and_read_only_databases() {
        let dir = tempfile::tempdir().unwrap();
        let e = LevelDbSource::open(&dir.path().join("nope"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("nope") && e.contains("not found"), "{e}");
        let empty = dir.path().join("empty");
        LevelDbWriter::create(&empty).unwrap().finish().unwrap();
        let e = LevelDbSource::open(&empty).err().unwrap().to_string();
        assert!(e.contains("no records"), "{e}");

        // A read-only database is read from a copy: its directory is left
        // exactly as it was.
        let ro = dir.path().join("ro");
        let mut w = LevelDbWriter::create(&ro).unwrap();
        w.put(b"k", b"v");
        w.finish().unwrap();
        let _ = std::fs::remove_file(ro.join("LOCK"));
        let listing = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (e.file_name(), e.metadata().unwrap().len())
                })
                .collect();
            v.sort();
            v
        };
        for e in std::fs::read_dir(&ro).unwrap() {
            let p = e.unwrap().path();
            let mut perm = std::fs::metadata(&p).unwrap().permissions();
            perm.set_readonly(true);
            std::fs::set_permissions(&p, perm).unwrap();
        }
        let before = listing(&ro);
        let src = LevelDbSource::open(&ro).unwrap();
        assert_eq!((src.key(), src.value()), (&b"k"[..], &b"v"[..]));
        drop(src);
        assert_eq!(listing(&ro), before);
    }
}
