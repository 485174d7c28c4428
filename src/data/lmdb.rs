//! LMDB databases in Caffe's layout: a directory holding `data.mdb` (and
//! usually `lock.mdb`), one unnamed database, keys in byte order.
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use lmdb::{Cursor, Database, Environment, EnvironmentFlags, Transaction, WriteFlags};

use super::source::RecordSource;
use crate::error::{Error, Result};

/// Records copied out per read transaction: the cursor cannot outlive its
/// transaction, so it reads ahead in chunks and remembers the last key.
const CHUNK_RECORDS: usize = 256;
const CHUNK_BYTES: usize = 16 << 20;

fn lmdb_err(path: &Path, what: &str, e: lmdb::Error) -> Error {
    Error::Data(format!("{}: LMDB {what} failed: {e}", path.display()))
}

/// The read-only environment of `path`, shared by every source of this
/// process that reads it. LMDB forbids opening one environment twice in a
/// process: its locks on `lock.mdb` are POSIX record locks, which belong to
/// the process, so a second open believes it is alone and may reset the
/// reader table under the first, and closing either releases both's locks.
/// That happened when a restored data position (or a train and a test net
/// on one database) opened the source again while the old one was alive:
/// reads then saw an empty database, under load. A weak map: the
/// environment closes when its last source is dropped.
fn shared_env(path: &Path) -> Result<Arc<Environment>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Environment>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let mut open = OPEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(env) = open.get(&key).and_then(Weak::upgrade) {
        return Ok(env);
    }
    let base = EnvironmentFlags::READ_ONLY | EnvironmentFlags::NO_TLS;
    let flags_open = |flags| Environment::new().set_flags(flags).open(path);
    let env = if path.join("lock.mdb").exists() {
        flags_open(base).or_else(|_| flags_open(base | EnvironmentFlags::NO_LOCK))
    } else {
        flags_open(base | EnvironmentFlags::NO_LOCK)
    }
    .map_err(|e| lmdb_err(path, "open", e))?;
    let env = Arc::new(env);
    open.retain(|_, w| w.strong_count() > 0);
    open.insert(key, Arc::downgrade(&env));
    Ok(env)
}

/// A read cursor over an LMDB database that wraps around at the end.
pub struct LmdbSource {
    env: Arc<Environment>,
    db: Database,
    path: PathBuf,
    /// The current record first, then those read ahead.
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Key of the last record in `buf` (where the next chunk starts).
    last_key: Vec<u8>,
}

impl LmdbSource {
    /// Open `path` read-only. Without a `lock.mdb` (read-only copies such
    /// as the golden data), or when the lock file cannot be opened for
    /// writing, the database is opened without locking so that nothing is
    /// written next to it.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::Data(format!(
                "{}: LMDB database not found (expected a directory holding data.mdb)",
                path.display()
            )));
        }
        if !path.join("data.mdb").is_file() {
            return Err(Error::Data(format!(
                "{}: not an LMDB database (no data.mdb in the directory)",
                path.display()
            )));
        }
        let env = shared_env(path)?;
        let db = env
            .open_db(None)
            .map_err(|e| lmdb_err(path, "open database", e))?;
        let mut s = LmdbSource {
            env,
            db,
            path: path.to_path_buf(),
            buf: VecDeque::new(),
            last_key: Vec::new(),
        };
        s.load(false)?;
        if s.buf.is_empty() {
            return Err(Error::Data(format!(
                "{}: the LMDB database holds no records",
                path.display()
            )));
        }
        Ok(s)
    }

    /// Append the next chunk: from the first record, or after `last_key`.
    fn load(&mut self, after_last: bool) -> Result<()> {
        let start = after_last.then(|| (self.last_key.clone(), true));
        self.load_chunk(start)
    }

    /// Append a chunk: from the first record, or from a key (excluded when
    /// the flag says so).
    fn load_chunk(&mut self, start: Option<(Vec<u8>, bool)>) -> Result<()> {
        let path = &self.path;
        let txn = self
            .env
            .begin_ro_txn()
            .map_err(|e| lmdb_err(path, "read transaction", e))?;
        let mut cur = txn
            .open_ro_cursor(self.db)
            .map_err(|e| lmdb_err(path, "cursor", e))?;
        let iter = match &start {
            Some((key, _)) => cur.iter_from(key),
            None => cur.iter_start(),
        };
        let (mut n, mut bytes) = (0, 0);
        for item in iter {
            let (k, v) = item.map_err(|e| lmdb_err(path, "read", e))?;
            if matches!(&start, Some((key, true)) if k == key.as_slice()) {
                continue;
            }
            self.buf.push_back((k.to_vec(), v.to_vec()));
            n += 1;
            bytes += k.len() + v.len();
            if n >= CHUNK_RECORDS || bytes >= CHUNK_BYTES {
                break;
            }
        }
        if let Some((k, _)) = self.buf.back() {
            self.last_key.clone_from(k);
        }
        Ok(())
    }
}

impl RecordSource for LmdbSource {
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
                "{}: the LMDB database became empty while reading",
                self.path.display()
            )));
        }
        Ok(true)
    }
    /// A direct B-tree lookup instead of the default scan.
    fn seek(&mut self, key: &[u8]) -> Result<bool> {
        self.buf.clear();
        self.load_chunk(Some((key.to_vec(), false)))?;
        if self.buf.front().is_some_and(|(k, _)| k.as_slice() == key) {
            return Ok(true);
        }
        // Not there: back on the first record, so the cursor stays valid.
        self.buf.clear();
        self.load(false)?;
        if self.buf.is_empty() {
            return Err(Error::Data(format!(
                "{}: the LMDB database became empty while reading",
                self.path.display()
            )));
        }
        Ok(false)
    }
}

/// Writes a new LMDB database (conversion tools). Records are buffered and
/// written one transaction per `commit`, as Caffe's tools commit every 1000
/// records; the map grows by doubling when it fills, like Caffe's LMDB.
pub struct LmdbWriter {
    env: Environment,
    db: Database,
    path: PathBuf,
    map_size: usize,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
}

impl LmdbWriter {
    /// Create the database directory `path`; an existing path is refused
    /// (Caffe's `mkdir` check), so nothing is ever overwritten.
    pub fn create(path: &Path) -> Result<Self> {
        if path.exists() {
            return Err(Error::Data(format!(
                "{}: already exists; refusing to overwrite an existing database",
                path.display()
            )));
        }
        std::fs::create_dir(path).map_err(|e| Error::io(path, e))?;
        let map_size = 64 << 20;
        let env = Environment::new()
            .set_map_size(map_size)
            .open_with_permissions(path, 0o664)
            .map_err(|e| lmdb_err(path, "create", e))?;
        let db = env
            .open_db(None)
            .map_err(|e| lmdb_err(path, "open database", e))?;
        Ok(LmdbWriter {
            env,
            db,
            path: path.to_path_buf(),
            map_size,
            pending: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue one record (written by the next `commit`).
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.pending.push((key.to_vec(), value.to_vec()));
    }

    fn try_write(&self) -> std::result::Result<(), lmdb::Error> {
        let mut txn = self.env.begin_rw_txn()?;
        for (k, v) in &self.pending {
            txn.put(self.db, k, v, WriteFlags::empty())?;
        }
        txn.commit()
    }

    /// Write the queued records in one transaction.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        loop {
            match self.try_write() {
                Ok(()) => break,
                Err(lmdb::Error::MapFull) => {
                    self.map_size *= 2;
                    self.env
                        .set_map_size(self.map_size)
                        .map_err(|e| lmdb_err(&self.path, "map resize", e))?;
                }
                Err(e) => return Err(lmdb_err(&self.path, "write", e)),
            }
        }
        self.pending.clear();
        Ok(())
    }

    /// Commit what is left and flush to disk.
    pub fn finish(mut self) -> Result<()> {
        self.commit()?;
        self.env
            .sync(true)
            .map_err(|e| lmdb_err(&self.path, "sync", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(src: &mut LmdbSource, n: usize) -> Vec<(Vec<u8>, bool)> {
        (0..n)
            .map(|_| {
                let k = src.key().to_vec();
                (k, src.advance().unwrap())
            })
            .collect()
    }

    #[test]
    fn write_then_read_in_key_order_with_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = LmdbWriter::create(&path).unwrap();
        // Out of order and more than one chunk; values big enough to make
        // the 64 MiB map grow at least once.
        let n = CHUNK_RECORDS + 7;
        let big = vec![7u8; (80 << 20) / n];
        for i in (0..n).rev() {
            w.put(format!("{i:08}").as_bytes(), &big);
        }
        w.commit().unwrap();
        w.put(b"zzz", b"last");
        w.finish().unwrap();
        assert!(
            LmdbWriter::create(&path).is_err(),
            "existing db must be refused"
        );

        let mut src = LmdbSource::open(&path).unwrap();
        assert_eq!(src.key(), b"00000000");
        let got = collect(&mut src, n + 2);
        for (i, (k, wrapped)) in got.iter().enumerate().take(n) {
            assert_eq!(k, format!("{i:08}").as_bytes());
            assert!(!wrapped);
        }
        assert_eq!(got[n].0, b"zzz");
        assert!(got[n].1, "advancing past the last record wraps");
        assert_eq!(got[n + 1].0, b"00000000");
        assert_eq!(src.value().len(), big.len());
    }

    #[test]
    fn missing_and_empty_databases_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = LmdbSource::open(&missing).err().unwrap().to_string();
        assert!(e.contains("nope") && e.contains("not found"), "{e}");
        let empty = dir.path().join("empty");
        LmdbWriter::create(&empty).unwrap().finish().unwrap();
        let e = LmdbSource::open(&empty).err().unwrap().to_string();
        assert!(e.contains("no records"), "{e}");
    }

    /// Two sources of one database share one environment (LMDB's rule),
    /// which closes with the last of them; each keeps its own position,
    /// and one outliving the other keeps reading.
    #[test]
    fn sources_of_one_database_share_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = LmdbWriter::create(&path).unwrap();
        for i in 0..5 {
            w.put(format!("{i:08}").as_bytes(), b"v");
        }
        w.finish().unwrap();
        let mut a = LmdbSource::open(&path).unwrap();
        // Another spelling of the same directory finds the same environment.
        let b = LmdbSource::open(&dir.path().join("./db")).unwrap();
        assert!(Arc::ptr_eq(&a.env, &b.env));
        a.advance().unwrap();
        assert_eq!((a.key(), b.key()), (&b"00000001"[..], &b"00000000"[..]));
        drop(b);
        assert_eq!(collect(&mut a, 5).last().unwrap().0, b"00000000");
        let weak = Arc::downgrade(&a.env);
        drop(a);
        assert!(weak.upgrade().is_none(), "closed with its last source");
    }
}
