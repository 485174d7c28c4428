//! Prototxt parsing and printing against real files: the zoo (parse results
//! listed in PARSE_CHECK.md, made with protobuf C++) and Caffe's own printed
//! output in golden/.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use rcaffe::proto::caffe::{NetParameter, SolverParameter};
use rcaffe::proto::text::{
    parse_net_text, parse_solver_text, print_net, print_solver, read_net_text, read_solver_text,
};
use rcaffe::Error;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

struct Entry {
    path: String,
    solver: bool,
    ok: bool,
    /// For FAIL rows: "line:col : message".
    error: String,
}

fn parse_check() -> Vec<Entry> {
    let list =
        std::fs::read_to_string(shared().join("zoo/PARSE_CHECK.md")).expect("PARSE_CHECK.md");
    list.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split(" | ").map(str::trim).collect();
            assert!(cols.len() >= 5, "bad PARSE_CHECK row: {l}");
            Entry {
                path: cols[0].to_string(),
                solver: match cols[1] {
                    "Solver" => true,
                    "NetPar" => false,
                    other => panic!("unknown message {other} in {l}"),
                },
                ok: cols[2] == "OK",
                error: cols[4].to_string(),
            }
        })
        .collect()
}

fn parse_any(text: &str, path: &str, solver: bool) -> Result<(), Error> {
    if solver {
        parse_solver_text(text, path).map(drop)
    } else {
        parse_net_text(text, path).map(drop)
    }
}

#[test]
fn zoo_parses_like_protobuf_cpp() {
    let entries = parse_check();
    assert!(entries.len() > 100);
    let (mut ok, mut fail) = (0, 0);
    for e in &entries {
        let file = shared().join("zoo").join(&e.path);
        let res = if e.solver {
            read_solver_text(&file).map(drop)
        } else {
            read_net_text(&file).map(drop)
        };
        if e.ok {
            if let Err(err) = res {
                panic!("{} should parse: {err}", e.path);
            }
            ok += 1;
            continue;
        }
        // "483:3 : Message type "caffe.LayerParameter" has no field named "roi_pooling_param"."
        let (pos, want_msg) = e.error.split_once(" : ").expect("error column");
        let (want_line, want_col) = pos.split_once(':').expect("line:col");
        let want_field = want_msg.rsplit('"').nth(1).expect("quoted field name");
        match res {
            Err(Error::Parse { line, col, msg, .. }) => {
                assert_eq!(line.to_string(), want_line, "{}: {msg}", e.path);
                assert_eq!(col.to_string(), want_col, "{}: {msg}", e.path);
                assert_eq!(msg, want_msg, "{}", e.path);
                assert!(msg.contains(want_field));
            }
            other => panic!("{} should fail at {pos}, got {other:?}", e.path),
        }
        fail += 1;
    }
    assert_eq!((ok, fail), (107, 8));
}

#[test]
fn syntax_error_position_matches_caffe_log() {
    // golden/logs/errors/prototxt_syntax.log: `6:36: Expected ":", found "3".`
    let path = shared().join("golden/logs/errors/prototxt_syntax.prototxt");
    match read_net_text(&path) {
        Err(Error::Parse { line, col, msg, .. }) => {
            assert_eq!((line, col), (6, 36), "{msg}");
            assert!(msg.ends_with("found \"3\"."), "{msg}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn missing_file_is_io_error() {
    let err = read_net_text(Path::new("/nonexistent/net.prototxt")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn errors_name_type_and_field() {
    let err = parse_net_text("name: \"x\"\nlayer {\n  bogus: 1\n}\n", "t").unwrap_err();
    assert_eq!(
        err.to_string(),
        "t:3:3: Message type \"caffe.LayerParameter\" has no field named \"bogus\"."
    );
    // Positions below are where protobuf C++ reports these errors.
    let err = parse_net_text("name: \"a\"\nname: \"b\"\n", "t").unwrap_err();
    assert_eq!(
        err.to_string(),
        "t:2:5: Non-repeated field \"name\" is specified multiple times."
    );
    let err = parse_net_text("layer {\n  name: \"a\"\n", "t").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Parse {
                line: 3,
                col: 1,
                ..
            }
        ),
        "{err}"
    );
    let err = parse_solver_text("solver_mode: TPU\n# c\n  type: \"SGD\"", "t").unwrap_err();
    assert_eq!(
        err.to_string(),
        "t:3:3: Unknown enumeration value of \"TPU\" for field \"solver_mode\"."
    );
    let err = parse_net_text("layer { pooling_param { pool: 0x7 } }", "t").unwrap_err();
    assert_eq!(
        err.to_string(),
        "t:1:35: Unknown enumeration value of \"7\" for field \"pool\"."
    );
    let err = parse_solver_text("test_iter: -5000000000\n", "t").unwrap_err();
    assert_eq!(
        err.to_string(),
        "t:1:13: Integer out of range (5000000000)."
    );
    let err = parse_solver_text("\tbase_lr 0.1\n", "t").unwrap_err();
    assert_eq!(
        err.to_string(),
        "t:1:17: Expected ':' or a message value, found \"0.1\"."
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = "[a/caffe.NetParameter] {".repeat(100_000);
    let err = parse_net_text(&text, "deep").unwrap_err();
    assert!(err.to_string().contains("too deep"), "{err}");
}

fn prototxts_under(dir: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![shared().join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("golden dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "prototxt") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn is_solver_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("solver"))
}

fn reprint(f: &Path) -> String {
    if is_solver_file(f) {
        print_solver(&read_solver_text(f).expect("golden solver parses"))
    } else {
        print_net(&read_net_text(f).expect("golden net parses"))
    }
}

/// golden/upgrade/ holds what Caffe's C++ `TextFormat::Print` wrote
/// (upgrade_net_proto_text and friends): we must reproduce it exactly.
#[test]
fn golden_upgraded_prints_byte_identical() {
    let files = prototxts_under("golden/upgrade");
    assert_eq!(files.len(), 17);
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read golden");
        let printed = reprint(f);
        if printed != text {
            let line = printed
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .map_or(0, |i| i + 1);
            bad.push(format!("{} (first difference at line {line})", f.display()));
        }
    }
    assert!(bad.is_empty(), "{} differ:\n{}", bad.len(), bad.join("\n"));
}

/// golden/layers/*/net.prototxt were printed by Python protobuf (pycaffe),
/// which spells integral floats `1.0` where C++ writes `1`; everything else
/// must match byte for byte.
#[test]
fn golden_layer_nets_print_like_protobuf() {
    let files = prototxts_under("golden/layers");
    assert!(files.len() >= 100, "found {}", files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read golden");
        let printed = reprint(f);
        assert_eq!(
            printed.lines().count(),
            text.lines().count(),
            "{}",
            f.display()
        );
        for (i, (ours, theirs)) in printed.lines().zip(text.lines()).enumerate() {
            let python_float = theirs.strip_suffix(".0") == Some(ours);
            assert!(
                ours == theirs || python_float,
                "{}:{}: {ours:?} vs {theirs:?}",
                f.display(),
                i + 1
            );
        }
        assert!(printed.ends_with('\n') == text.ends_with('\n'));
    }
}

#[test]
fn zoo_parse_print_parse_round_trip() {
    for e in parse_check().iter().filter(|e| e.ok) {
        let file = shared().join("zoo").join(&e.path);
        if e.solver {
            let a: SolverParameter = read_solver_text(&file).unwrap();
            let text = print_solver(&a);
            let b = parse_solver_text(&text, &e.path).unwrap();
            assert_eq!(a, b, "{}", e.path);
            assert_eq!(print_solver(&b), text, "{}", e.path);
        } else {
            let a: NetParameter = read_net_text(&file).unwrap();
            let text = print_net(&a);
            let b = parse_net_text(&text, &e.path).unwrap();
            assert_eq!(a, b, "{}", e.path);
            assert_eq!(print_net(&b), text, "{}", e.path);
        }
    }
}

#[test]
fn special_values_print_like_protobuf() {
    let mut s = SolverParameter {
        base_lr: Some(1e-8),
        momentum: Some(f32::INFINITY),
        weight_decay: Some(f32::NAN),
        delta: Some(-f32::INFINITY),
        snapshot_prefix: Some("dir/\"x\"\n\u{e9}".into()),
        ..Default::default()
    };
    s.test_iter = vec![1, 2];
    let text = print_solver(&s);
    assert!(text.contains("test_iter: 1\ntest_iter: 2\n"), "{text}");
    assert!(text.contains("base_lr: 1e-08\n"), "{text}");
    assert!(text.contains("momentum: inf\n"), "{text}");
    assert!(text.contains("weight_decay: nan\n"), "{text}");
    assert!(text.contains("delta: -inf\n"), "{text}");
    assert!(
        text.contains("snapshot_prefix: \"dir/\\\"x\\\"\\n\\303\\251\"\n"),
        "{text}"
    );
    // Fields in number order: test_iter (3) before base_lr (5).
    assert!(text.find("test_iter").unwrap() < text.find("base_lr").unwrap());
    let back = parse_solver_text(&text, "t").unwrap();
    assert_eq!(back.snapshot_prefix, s.snapshot_prefix);
    assert_eq!(back.momentum, s.momentum);
    assert!(back.weight_decay.unwrap().is_nan());
}

/// The zoo texts, loaded once for the property test.
fn corpus() -> &'static [(bool, String)] {
    static CORPUS: OnceLock<Vec<(bool, String)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        parse_check()
            .into_iter()
            .map(|e| {
                let text = std::fs::read_to_string(shared().join("zoo").join(&e.path)).unwrap();
                (e.solver, text)
            })
            .collect()
    })
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    ":",
    "\"",
    "'",
    "<",
    ">",
    "[",
    "]",
    ",",
    ";",
    "#",
    "\\",
    "-",
    ".",
    "/",
    "\n",
    " ",
    "\t",
    "\0",
    "0",
    "7",
    "00",
    "0x",
    "0xfF",
    "1e",
    "1.5e-3",
    "1e999",
    "-1e-999",
    "9999999999999999999999",
    "-2147483649",
    "4294967296",
    "inf",
    "-nan",
    "1f",
    "0777",
    "\\777",
    "\\x",
    "\\u12",
    "\\U0010ffff",
    "é",
    "true",
    "t",
    "2",
    "MAX",
    "GPU",
    "TPU",
    "layer",
    "layers",
    "name",
    "type",
    "top",
    "bottom",
    "param",
    "convolution_param",
    "weight_filler",
    "input_shape",
    "dim",
    "net_param",
    "layer {",
    "name: ",
    "[caffe.NetParameter]",
    "[a/caffe.NetParameter]",
    "[a/b]",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, prop::sample::Index),
    Delete(prop::sample::Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        6 => (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(i, t)| Mutation::Insert(i, t)),
        2 => (any::<prop::sample::Index>(), 1usize..20).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut b = text.as_bytes().to_vec();
    for m in muts {
        match m {
            Mutation::Flip(i, v) if !b.is_empty() => {
                let i = i.index(b.len());
                b[i] = *v;
            }
            Mutation::Truncate(i) => b.truncate(i.index(b.len() + 1)),
            Mutation::Insert(i, t) => {
                let at = i.index(b.len() + 1);
                let tok = TOKENS[t.index(TOKENS.len())].as_bytes();
                b.splice(at..at, tok.iter().copied());
            }
            Mutation::Delete(i, n) if !b.is_empty() => {
                let at = i.index(b.len());
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    // 10 000 mutated files in all; each parse is a few hundred microseconds.
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn mutated_zoo_files_never_panic(
        file in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..8),
    ) {
        let (solver, text) = &corpus()[file.index(corpus().len())];
        let mutated = apply(text, &muts);
        // Errors are fine; a panic fails the test. Parse as both messages to
        // cover more error paths.
        let _ = parse_any(&mutated, "mutated", *solver);
        let _ = parse_any(&mutated, "mutated", !*solver);
        if let Ok(net) = parse_net_text(&mutated, "mutated") {
            // Compare printed text, not structs: a mutation can produce NaN.
            let printed = print_net(&net);
            let again = parse_net_text(&printed, "printed").map(|n| print_net(&n));
            prop_assert_eq!(again.ok(), Some(printed));
        }
    }
}

fn c_printf_g(v: f64, prec: usize) -> String {
    let mut buf = [0u8; 64];
    let fmt = c"%.*g";
    // SAFETY: the buffer is large enough for any %.17g and is NUL-terminated
    // by snprintf; the format takes exactly an int and a double.
    let n = unsafe {
        libc::snprintf(
            buf.as_mut_ptr().cast(),
            buf.len(),
            fmt.as_ptr(),
            prec as libc::c_int,
            v,
        )
    };
    String::from_utf8_lossy(&buf[..n as usize]).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    /// Our %g must agree with the C library's, which protobuf C++ calls.
    #[test]
    fn format_g_matches_libc(bits in any::<u64>(), small in any::<f32>(), prec in prop::sample::select(vec![1usize, 6, 9, 15, 17])) {
        for v in [f64::from_bits(bits), f64::from(small)] {
            if v.is_finite() {
                prop_assert_eq!(rcaffe::proto::text::format_g(v, prec), c_printf_g(v, prec));
            }
        }
    }

    /// What we print reads back as the same value.
    #[test]
    fn printed_floats_round_trip(v in any::<f32>(), d in any::<f64>()) {
        use rcaffe::proto::text::{simple_dtoa, simple_ftoa};
        if v.is_finite() {
            prop_assert_eq!(simple_ftoa(v).parse::<f32>().ok(), Some(v));
        }
        if d.is_finite() {
            prop_assert_eq!(simple_dtoa(d).parse::<f64>().ok(), Some(d));
        }
    }
}
