//! Binary files against real Caffe output: every `.caffemodel`,
//! `.binaryproto` and `.solverstate` under `../shared/golden`, decoded and
//! re-encoded, is byte-identical; and no mutation of a file makes a reader
//! panic.
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rcaffe::proto::binary::{self, NamedMessage};
use rcaffe::proto::caffe::{BlobProto, BlobProtoVector, NetParameter, SolverState};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn files_with(ext: &str) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(&golden(), &mut all);
    let mut v: Vec<_> = all
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// Decode with the typed reader, re-encode, compare; also write it back
/// through the atomic writer and compare the file.
fn round_trip<M: NamedMessage>(
    path: &Path,
    read: fn(&Path) -> rcaffe::Result<M>,
    write: fn(&Path, &M) -> rcaffe::Result<()>,
    tmp: &Path,
) -> std::result::Result<(), String> {
    let bytes = std::fs::read(path).unwrap();
    let msg = read(path).map_err(|e| e.to_string())?;
    let again = msg.encode_to_vec();
    if again != bytes {
        let at = again.iter().zip(&bytes).position(|(a, b)| a != b);
        return Err(format!(
            "{}: re-encoded {} bytes vs {} on disk, first difference at {at:?}",
            path.display(),
            again.len(),
            bytes.len()
        ));
    }
    let out = tmp.join("out");
    write(&out, &msg).map_err(|e| e.to_string())?;
    if std::fs::read(&out).unwrap() != bytes {
        return Err(format!("{}: written file differs", path.display()));
    }
    Ok(())
}

/// `train/data/mean.binaryproto` (compute_image_mean) is one BlobProto;
/// every other `.binaryproto` in golden is a BlobProtoVector.
fn is_single_blob(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "mean.binaryproto")
}

#[test]
fn golden_binary_files_round_trip_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for p in files_with("caffemodel") {
        n += 1;
        if let Err(e) = round_trip(
            &p,
            binary::read_net_binary,
            binary::write_net_binary,
            tmp.path(),
        ) {
            failures.push(e);
        }
    }
    for p in files_with("solverstate") {
        n += 1;
        if let Err(e) = round_trip(
            &p,
            binary::read_solver_state,
            binary::write_solver_state,
            tmp.path(),
        ) {
            failures.push(e);
        }
    }
    for p in files_with("binaryproto") {
        n += 1;
        let r = if is_single_blob(&p) {
            round_trip(
                &p,
                binary::read_blob_proto,
                binary::write_blob_proto,
                tmp.path(),
            )
        } else {
            round_trip(
                &p,
                binary::read_blob_proto_vector,
                binary::write_blob_proto_vector,
                tmp.path(),
            )
        };
        if let Err(e) = r {
            failures.push(e);
        }
    }
    eprintln!("{n} golden binary files round-tripped");
    assert!(n >= 400, "only {n} golden binary files found");
    assert!(
        failures.is_empty(),
        "{} of {n} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_contents_are_sane() {
    let mean = binary::read_blob_proto(&golden().join("train/data/mean.binaryproto")).unwrap();
    assert_eq!(
        (mean.num, mean.channels, mean.height, mean.width),
        (Some(1), Some(1), Some(28), Some(28))
    );
    assert_eq!(mean.data.len(), 28 * 28);

    let net = binary::read_net_binary(&golden().join("train/init.caffemodel")).unwrap();
    assert!(net.layer.iter().any(|l| !l.blobs.is_empty()));

    let st =
        binary::read_solver_state(&golden().join("train/resume/snap_iter_25.solverstate")).unwrap();
    assert_eq!(st.iter, Some(25));
    assert!(!st.history.is_empty());
}

#[test]
fn truncated_large_files_give_one_line_errors() {
    for name in [
        "train/init.caffemodel",
        "train/sgd/final_iter_50.solverstate",
    ] {
        let bytes = std::fs::read(golden().join(name)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut");
        // Cut in the middle of the big packed float field.
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = if name.ends_with("caffemodel") {
            binary::read_net_binary(&p).unwrap_err().to_string()
        } else {
            binary::read_solver_state(&p).unwrap_err().to_string()
        };
        assert!(e.contains("truncated or corrupt"), "{e}");
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

// ------------------------------------------------------------ fuzzing ----

/// Small golden inputs (the per-layer caffemodels and a few solverstate /
/// blob files cut to their first KiB) so that 10 000 cases stay fast.
fn seeds() -> &'static [(Vec<u8>, u8)] {
    use std::sync::OnceLock;
    static SEEDS: OnceLock<Vec<(Vec<u8>, u8)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut v = Vec::new();
        for p in files_with("caffemodel") {
            let b = std::fs::read(&p).unwrap();
            if b.len() <= 64 * 1024 {
                v.push((b, 0));
            } else {
                v.push((b[..4096].to_vec(), 0));
            }
        }
        for p in files_with("solverstate") {
            v.push((std::fs::read(&p).unwrap()[..4096].to_vec(), 1));
        }
        for p in files_with("binaryproto").iter().take(20) {
            let b = std::fs::read(p).unwrap();
            v.push((b[..b.len().min(4096)].to_vec(), 2));
        }
        v
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    /// A length-delimited field header with a huge varint length.
    HugeLen(usize, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), any::<u64>()).prop_map(|(i, n)| Mutation::HugeLen(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len().max(1);
    match m {
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::Flip(i, x) => {
            if !bytes.is_empty() {
                bytes[i % len] ^= x;
            }
        }
        Mutation::Insert(i, b) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::HugeLen(i, n) => {
            let at = i % (bytes.len() + 1);
            // Field 7 (layer blobs / shape), wire type 2, then the varint.
            let mut hdr = vec![(7 << 3) | 2];
            let mut n = *n | (1 << 40);
            while n >= 0x80 {
                hdr.push((n as u8) | 0x80);
                n >>= 7;
            }
            hdr.push(n as u8);
            bytes.splice(at..at, hdr);
        }
    }
}

fn decode_all(bytes: &[u8], kind: u8) {
    let p = Path::new("fuzz");
    // Decoding must return, Ok or Err, for every message type.
    let _ = binary::decode_bytes::<NetParameter>(bytes, p);
    if kind != 0 {
        let _ = binary::decode_bytes::<SolverState>(bytes, p);
        let _ = binary::decode_bytes::<BlobProtoVector>(bytes, p);
        let _ = binary::decode_bytes::<BlobProto>(bytes, p);
    }
    if let Err(e) = binary::decode_bytes::<NetParameter>(bytes, p) {
        assert!(!e.to_string().contains('\n'));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn mutated_files_never_panic(seed in any::<prop::sample::Index>(), muts in proptest::collection::vec(mutation(), 1..4)) {
        let seeds = seeds();
        let (orig, kind) = &seeds[seed.index(seeds.len())];
        let mut bytes = orig.clone();
        for m in &muts {
            apply(&mut bytes, m);
        }
        decode_all(&bytes, *kind);
    }
}

#[test]
fn readers_survive_mutated_files_on_disk() {
    // The file-level readers (size checks, empty files) on a few mutants.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m");
    for (orig, _) in seeds().iter().take(10) {
        for cut in [0, 1, orig.len() / 3] {
            std::fs::write(&p, &orig[..cut]).unwrap();
            let _ = binary::read_net_binary(&p);
            let _ = binary::read_solver_state(&p);
            let _ = binary::read_blob_proto(&p);
            let _ = binary::read_blob_proto_vector(&p);
        }
    }
}
