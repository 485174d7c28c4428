//! Record databases as Caffe's data layers see them: a cursor over
//! key/value records in key order that wraps around at the end, and the
//! multi-replica sharding of Caffe 1.0's `DataLayer::Skip`.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::leveldb::{LevelDbSource, LevelDbWriter};
use super::lmdb::{LmdbSource, LmdbWriter};
use super::position::ReaderPos;

/// Which kind of database a path holds (`DataParameter.backend`, and the
/// `--backend` flag of the conversion tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbBackend {
    Lmdb,
    LevelDb,
}

impl DbBackend {
    pub fn name(self) -> &'static str {
        match self {
            DbBackend::Lmdb => "lmdb",
            DbBackend::LevelDb => "leveldb",
        }
    }
}

impl std::str::FromStr for DbBackend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lmdb" => Ok(DbBackend::Lmdb),
            "leveldb" => Ok(DbBackend::LevelDb),
            _ => Err(Error::Data(format!(
                "unknown database backend '{s}' (expected lmdb or leveldb)"
            ))),
        }
    }
}

/// A cursor over a database's records in key order, like Caffe's
/// `db::Cursor`. It is always on a valid record: opening an empty database
/// is an error.
pub trait RecordSource: Send {
    /// The database path, for messages.
    fn path(&self) -> &Path;
    /// The current record's key.
    fn key(&self) -> &[u8];
    /// The current record's value.
    fn value(&self) -> &[u8];
    /// Step to the next record; past the last one go back to the first and
    /// return `true` (Caffe's "Restarting data prefetching from start.").
    fn advance(&mut self) -> Result<bool>;
    /// Put the cursor on the record with `key` (to resume a saved data
    /// position); `Ok(false)` when the database holds no such key, the
    /// cursor then being on some valid record. By default a scan of at most
    /// one pass from the current record.
    fn seek(&mut self, key: &[u8]) -> Result<bool> {
        let start = self.key().to_vec();
        loop {
            if self.key() == key {
                return Ok(true);
            }
            self.advance()?;
            if self.key() == start.as_slice() {
                return Ok(false);
            }
        }
    }
}

/// Open a database for reading; a missing path is an error naming it.
pub fn open_source(backend: DbBackend, path: &Path) -> Result<Box<dyn RecordSource>> {
    match backend {
        DbBackend::Lmdb => Ok(Box::new(LmdbSource::open(path)?)),
        DbBackend::LevelDb => Ok(Box::new(LevelDbSource::open(path)?)),
    }
}

/// Caffe's `Opened lmdb <path>` / `Opened leveldb <path>` line, with the
/// `file:line` of the backend's `Open`.
pub fn log_opened(backend: DbBackend, path: &Path) {
    let site = match backend {
        DbBackend::Lmdb => "db_lmdb.cpp:35",
        DbBackend::LevelDb => "db_leveldb.cpp:18",
    };
    crate::log::info(
        site,
        &format!("Opened {} {}", backend.name(), path.display()),
    );
}

/// A new database being written by a conversion tool (Caffe's
/// `db::Transaction`): `put` queues records, `commit` writes them at once
/// (Caffe's tools commit every 1000 records), `finish` commits the rest and
/// closes the database.
pub trait DbWriter {
    fn path(&self) -> &Path;
    fn put(&mut self, key: &[u8], value: &[u8]);
    fn commit(&mut self) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<()>;
}

impl DbWriter for LmdbWriter {
    fn path(&self) -> &Path {
        LmdbWriter::path(self)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        LmdbWriter::put(self, key, value)
    }
    fn commit(&mut self) -> Result<()> {
        LmdbWriter::commit(self)
    }
    fn finish(self: Box<Self>) -> Result<()> {
        LmdbWriter::finish(*self)
    }
}

impl DbWriter for LevelDbWriter {
    fn path(&self) -> &Path {
        LevelDbWriter::path(self)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        LevelDbWriter::put(self, key, value)
    }
    fn commit(&mut self) -> Result<()> {
        LevelDbWriter::commit(self)
    }
    fn finish(self: Box<Self>) -> Result<()> {
        LevelDbWriter::finish(*self)
    }
}

/// Create a new database (Caffe's `db::NEW`); an existing path is refused.
pub fn create_writer(backend: DbBackend, path: &Path) -> Result<Box<dyn DbWriter>> {
    Ok(match backend {
        DbBackend::Lmdb => Box::new(LmdbWriter::create(path)?),
        DbBackend::LevelDb => Box::new(LevelDbWriter::create(path)?),
    })
}

/// One record, copied out of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A record key for messages: the text when it is UTF-8, else escaped bytes.
pub fn key_string(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => s.to_string(),
        Err(_) => key.escape_ascii().to_string(),
    }
}

/// Reads records in Caffe's order for replica `rank` of `world`: every
/// record visited gets the next offset (counting across wrap-arounds), and
/// only offsets with `offset % world == rank` are kept. With `shard` false
/// (TEST-phase layers, where only rank 0 runs) every record is kept.
pub struct ShardedReader {
    src: Box<dyn RecordSource>,
    rank: u64,
    world: u64,
    shard: bool,
    offset: u64,
    restarts: u64,
}

impl ShardedReader {
    pub fn new(src: Box<dyn RecordSource>, rank: usize, world: usize, shard: bool) -> Result<Self> {
        if world == 0 || rank >= world {
            return Err(Error::Data(format!(
                "invalid replica {rank} of {world} for {}",
                src.path().display()
            )));
        }
        Ok(ShardedReader {
            src,
            rank: rank as u64,
            world: world as u64,
            shard,
            offset: 0,
            restarts: 0,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.src.path().to_path_buf()
    }

    /// The record under the cursor, without moving (Caffe reads it at
    /// set-up to infer the top shape).
    pub fn peek(&self) -> Record {
        Record {
            key: self.src.key().to_vec(),
            value: self.src.value().to_vec(),
        }
    }

    fn step(&mut self) -> Result<()> {
        if self.src.advance()? {
            self.restarts += 1;
        }
        self.offset += 1;
        Ok(())
    }

    /// Where the reader stands (see `position`).
    pub fn position(&self) -> ReaderPos {
        ReaderPos {
            offset: self.offset,
            restarts: self.restarts,
            key: self.src.key().to_vec(),
        }
    }

    /// A reader over `src` (freshly opened) that continues from `pos`: the
    /// cursor on `pos.key`, the visit and wrap-around counts restored.
    pub fn resume(
        src: Box<dyn RecordSource>,
        rank: usize,
        world: usize,
        shard: bool,
        pos: &ReaderPos,
    ) -> Result<Self> {
        let mut r = Self::new(src, rank, world, shard)?;
        if !r.src.seek(&pos.key)? {
            return Err(Error::Data(format!(
                "{}: the saved data position is at record '{}', which the database does not \
                 hold (did it change since the snapshot?)",
                r.src.path().display(),
                key_string(&pos.key)
            )));
        }
        r.offset = pos.offset;
        r.restarts = pos.restarts;
        Ok(r)
    }

    /// The next record this replica keeps; the cursor moves past it.
    pub fn next_record(&mut self) -> Result<Record> {
        while self.shard && self.offset % self.world != self.rank {
            self.step()?;
        }
        let r = self.peek();
        self.step()?;
        Ok(r)
    }

    /// How many times the cursor has gone back to the first record.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An in-memory source for tests.
    pub(crate) struct VecSource {
        path: PathBuf,
        recs: Vec<Record>,
        pos: usize,
    }

    impl VecSource {
        pub(crate) fn new(n: usize) -> Self {
            VecSource {
                path: PathBuf::from("mem"),
                recs: (0..n)
                    .map(|i| Record {
                        key: format!("{i:08}").into_bytes(),
                        value: vec![i as u8],
                    })
                    .collect(),
                pos: 0,
            }
        }
    }

    impl RecordSource for VecSource {
        fn path(&self) -> &Path {
            &self.path
        }
        fn key(&self) -> &[u8] {
            &self.recs[self.pos].key
        }
        fn value(&self) -> &[u8] {
            &self.recs[self.pos].value
        }
        fn advance(&mut self) -> Result<bool> {
            self.pos += 1;
            if self.pos == self.recs.len() {
                self.pos = 0;
                return Ok(true);
            }
            Ok(false)
        }
    }

    fn take(r: &mut ShardedReader, n: usize) -> Vec<u8> {
        (0..n).map(|_| r.next_record().unwrap().value[0]).collect()
    }

    #[test]
    fn sharding_counts_offsets_across_wraps() {
        // 5 records, 2 replicas: offsets 0,2,4 | 6=rec1, 8=rec3 | 10=rec0 ...
        let mut r0 = ShardedReader::new(Box::new(VecSource::new(5)), 0, 2, true).unwrap();
        assert_eq!(take(&mut r0, 6), vec![0, 2, 4, 1, 3, 0]);
        let mut r1 = ShardedReader::new(Box::new(VecSource::new(5)), 1, 2, true).unwrap();
        assert_eq!(take(&mut r1, 6), vec![1, 3, 0, 2, 4, 1]);
        // TEST phase: no sharding.
        let mut t = ShardedReader::new(Box::new(VecSource::new(5)), 1, 2, false).unwrap();
        assert_eq!(take(&mut t, 7), vec![0, 1, 2, 3, 4, 0, 1]);
        assert_eq!(t.restarts(), 1);
    }

    #[test]
    fn restart_is_counted_when_the_last_record_is_consumed() {
        let mut r = ShardedReader::new(Box::new(VecSource::new(3)), 0, 1, true).unwrap();
        take(&mut r, 2);
        assert_eq!(r.restarts(), 0);
        take(&mut r, 1);
        assert_eq!(r.restarts(), 1);
        assert!(ShardedReader::new(Box::new(VecSource::new(3)), 2, 2, true).is_err());
    }

    #[test]
    fn a_resumed_reader_continues_the_stream() {
        for (rank, world) in [(0, 1), (1, 3)] {
            let mut a = ShardedReader::new(Box::new(VecSource::new(7)), rank, world, true).unwrap();
            take(&mut a, 9);
            let pos = a.position();
            let mut b = ShardedReader::resume(Box::new(VecSource::new(7)), rank, world, true, &pos)
                .unwrap();
            assert_eq!(b.position(), pos);
            assert_eq!(take(&mut a, 11), take(&mut b, 11));
            assert_eq!(a.restarts(), b.restarts());
        }
        let mut pos = ShardedReader::new(Box::new(VecSource::new(3)), 0, 1, true)
            .unwrap()
            .position();
        pos.key = b"elsewhere".to_vec();
        let e = ShardedReader::resume(Box::new(VecSource::new(3)), 0, 1, true, &pos)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("'elsewhere'"), "{e}");
    }

    #[test]
    fn backend_names() {
        assert_eq!("LMDB".parse::<DbBackend>().unwrap(), DbBackend::Lmdb);
        assert_eq!("leveldb".parse::<DbBackend>().unwrap(), DbBackend::LevelDb);
        assert!("rocksdb".parse::<DbBackend>().is_err());
        assert!(open_source(DbBackend::LevelDb, Path::new("x"))
            .err()
            .unwrap()
            .to_string()
            .contains("LevelDB database not found"));
    }

    #[test]
    fn writers_of_both_backends_read_back() {
        let dir = tempfile::tempdir().unwrap();
        for b in [DbBackend::Lmdb, DbBackend::LevelDb] {
            let path = dir.path().join(b.name());
            let mut w = create_writer(b, &path).unwrap();
            assert_eq!(w.path(), path);
            w.put(b"b", b"2");
            w.commit().unwrap();
            w.put(b"a", b"1");
            w.finish().unwrap();
            assert!(create_writer(b, &path).is_err());
            let mut s = open_source(b, &path).unwrap();
            assert_eq!((s.key(), s.value()), (&b"a"[..], &b"1"[..]));
            assert!(!s.advance().unwrap());
            assert_eq!((s.key(), s.value()), (&b"b"[..], &b"2"[..]));
            assert!(s.advance().unwrap());
            // Seeking, including to a missing key (the cursor stays valid).
            assert!(s.seek(b"b").unwrap());
            assert_eq!(s.value(), b"2");
            assert!(!s.seek(b"c").unwrap());
            assert!(s.key() == b"a" || s.key() == b"b");
            assert!(s.seek(b"a").unwrap());
            assert_eq!(s.value(), b"1");
        }
    }
}
