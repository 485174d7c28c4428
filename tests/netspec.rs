//! `net::spec` against real Caffe (golden caffemodels and logs) and against
//! small nets that exercise each rule of `Net::Init`.

use std::path::{Path, PathBuf};

use prost::Message;
use rcaffe::net::spec::{
    self, build, build_with_state, cli_net_state, default_num_blobs_or_err,
    default_num_param_blobs, filter_net, filter_net_logged, insert_splits, solver_net_state,
    NetSpec,
};
use rcaffe::proto::caffe::{LayerParameter, NetParameter, NetState, Phase};
use rcaffe::proto::text::parse_net_text;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden")
}

fn read_net(path: &Path) -> NetParameter {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_net_text(&text, &path.display().to_string()).unwrap()
}

fn net(text: &str) -> NetParameter {
    parse_net_text(text, "test.prototxt").unwrap()
}

fn build_default(param: &NetParameter, phase: Phase) -> NetSpec {
    build(param, phase, &default_num_blobs_or_err).unwrap()
}

fn build_err(param: &NetParameter, phase: Phase) -> String {
    build(param, phase, &default_num_blobs_or_err)
        .unwrap_err()
        .to_string()
}

fn layer_names(spec: &NetSpec) -> Vec<&str> {
    spec.layers.iter().map(|l| l.name()).collect()
}

fn layer<'a>(spec: &'a NetSpec, name: &str) -> &'a spec::LayerSpec {
    &spec.layers[spec
        .layer_id(name)
        .unwrap_or_else(|| panic!("no layer {name}"))]
}

fn outputs(spec: &NetSpec) -> Vec<&str> {
    spec.output_blob_ids
        .iter()
        .map(|&i| spec.blob_names[i].as_str())
        .collect()
}

fn stripped(l: &LayerParameter) -> LayerParameter {
    LayerParameter {
        blobs: Vec::new(),
        ..l.clone()
    }
}

fn state(phase: Phase, level: i32, stages: &[&str]) -> NetState {
    let mut s = NetState {
        level: Some(level),
        stage: stages.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    s.set_phase(phase);
    s
}

// ---------------------------------------------------------------------------
// Golden: real Caffe

/// The layers Caffe saved in its snapshots (splits, phase, default loss
/// weights and all) equal the spec built from the same prototxt.
#[test]
fn golden_train_snapshots_match_spec() {
    let mut checked = 0;
    for entry in std::fs::read_dir(golden().join("train")).unwrap() {
        let dir = entry.unwrap().path();
        let model = dir.join("final_iter_50.caffemodel");
        if !model.exists() {
            continue;
        }
        let saved = NetParameter::decode(std::fs::read(&model).unwrap().as_slice()).unwrap();
        let spec = build_default(&read_net(&dir.join("net.prototxt")), Phase::Train);
        let key = |l: &LayerParameter| {
            (
                l.name().to_string(),
                l.r#type().to_string(),
                l.bottom.clone(),
                l.top.clone(),
            )
        };
        let want: Vec<_> = saved.layer.iter().map(key).collect();
        let got: Vec<_> = spec.layers.iter().map(|l| key(&l.param)).collect();
        assert_eq!(got, want, "{}", dir.display());
        for (l, s) in spec.layers.iter().zip(&saved.layer) {
            assert_eq!(
                l.param,
                stripped(s),
                "{}: layer {}",
                dir.display(),
                s.name()
            );
            assert_eq!(
                l.param_ids.len(),
                s.blobs.len(),
                "{}: layer {}",
                dir.display(),
                s.name()
            );
        }
        assert_eq!(spec.name, saved.name());
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} golden snapshots found");
}

/// What one `Net::Init` printed: its filter messages, the printed filtered
/// net, and the per-layer wiring and backward decisions.
#[derive(Default, Debug)]
struct LoggedNet {
    filter_log: Vec<String>,
    printed: String,
    layers: Vec<String>,
    bottoms: Vec<Vec<String>>,
    tops: Vec<Vec<String>>,
    loss_weights: Vec<Vec<f32>>,
    /// (layer, needs backward) in the order logged (last layer first).
    backward: Vec<(String, bool)>,
    outputs: Vec<String>,
}

fn glog_message(line: &str) -> Option<(&str, &str)> {
    // "I20261129 08:59:59.349962 25814 net.cpp:296] message"
    let first = line.chars().next()?;
    if !"IWEF".contains(first) || !line.as_bytes().get(1)?.is_ascii_digit() {
        return None;
    }
    let close = line.find("] ")?;
    let source = line[..close].rsplit(' ').next()?;
    Some((source, &line[close + 2..]))
}

fn parse_log(text: &str) -> Vec<LoggedNet> {
    let mut nets = Vec::new();
    let mut cur = LoggedNet::default();
    let mut printing = false;
    for line in text.lines() {
        let Some((source, msg)) = glog_message(line) else {
            if printing {
                cur.printed.push_str(line);
                cur.printed.push('\n');
            }
            continue;
        };
        printing = false;
        if !source.starts_with("net.cpp:") {
            continue;
        }
        if msg.starts_with("The NetState") {
            cur.filter_log.push(msg.to_string());
        } else if msg.starts_with("Initializing net from parameters:") {
            printing = true;
        } else if let Some(name) = msg.strip_prefix("Creating Layer ") {
            cur.layers.push(name.to_string());
            cur.bottoms.push(Vec::new());
            cur.tops.push(Vec::new());
            cur.loss_weights.push(Vec::new());
        } else if let Some(w) = msg.strip_prefix("    with loss weight ") {
            cur.loss_weights
                .last_mut()
                .unwrap()
                .push(w.parse().unwrap());
        } else if let Some(name) = msg.strip_suffix(" does not need backward computation.") {
            cur.backward.push((name.to_string(), false));
        } else if let Some(name) = msg.strip_suffix(" needs backward computation.") {
            cur.backward.push((name.to_string(), true));
        } else if let Some(name) = msg.strip_prefix("This network produces output ") {
            cur.outputs.push(name.to_string());
        } else if msg == "Network initialization done." {
            nets.push(std::mem::take(&mut cur));
        } else if let Some(layer) = cur.layers.last() {
            if let Some(b) = msg.strip_prefix(&format!("{layer} <- ")) {
                cur.bottoms.last_mut().unwrap().push(b.to_string());
            } else if let Some(t) = msg.strip_prefix(&format!("{layer} -> ")) {
                cur.tops.last_mut().unwrap().push(t.to_string());
            }
        }
    }
    nets
}

fn clear_sources(p: &mut NetParameter) {
    for l in &mut p.layer {
        if let Some(d) = l.data_param.as_mut() {
            d.source = None;
        }
    }
}

fn check_logged_net(logged: &LoggedNet, net_file: &Path, expected_state: &NetState, what: &str) {
    let param = read_net(net_file);
    let mut printed = parse_net_text(&logged.printed, what).unwrap();
    assert_eq!(
        printed.state.as_ref(),
        Some(expected_state),
        "{what}: state"
    );
    let spec = build_with_state(&param, expected_state, &default_num_blobs_or_err).unwrap();

    assert_eq!(
        spec.filter_log, logged.filter_log,
        "{what}: filter messages"
    );
    let mut filtered = spec.filtered.clone();
    clear_sources(&mut filtered);
    clear_sources(&mut printed);
    assert_eq!(filtered, printed, "{what}: filtered net");

    assert_eq!(layer_names(&spec), logged.layers, "{what}: layers");
    for (i, l) in spec.layers.iter().enumerate() {
        let bottoms: Vec<_> = l
            .bottom_ids
            .iter()
            .map(|&b| spec.blob_names[b].clone())
            .collect();
        assert_eq!(
            bottoms,
            logged.bottoms[i],
            "{what}: bottoms of {}",
            l.name()
        );
        let tops: Vec<_> = l
            .top_ids
            .iter()
            .zip(&l.top_in_place)
            .map(|(&t, &inplace)| {
                let n = &spec.blob_names[t];
                if inplace {
                    format!("{n} (in-place)")
                } else {
                    n.clone()
                }
            })
            .collect();
        assert_eq!(tops, logged.tops[i], "{what}: tops of {}", l.name());
        let lw: Vec<f32> = l
            .loss_weights
            .iter()
            .copied()
            .filter(|&w| w != 0.0)
            .collect();
        assert_eq!(
            lw,
            logged.loss_weights[i],
            "{what}: loss weights of {}",
            l.name()
        );
    }
    let backward: Vec<_> = spec
        .layers
        .iter()
        .rev()
        .map(|l| (l.name().to_string(), l.need_backward))
        .collect();
    assert_eq!(backward, logged.backward, "{what}: need backward");
    assert_eq!(outputs(&spec), logged.outputs, "{what}: outputs");
}

/// Every net Caffe built in the golden logs: `caffe train` (train and test
/// nets, solver state merging), `caffe test` and `caffe time` (CLI state).
#[test]
fn golden_logs_match_spec() {
    let g = golden();
    let cli_stage = vec![String::new()]; // Caffe splits an empty --stage into [""]
    let cli_train_state = NetState {
        level: Some(0),
        stage: cli_stage.clone(),
        ..Default::default()
    };
    let mut runs: Vec<(PathBuf, PathBuf, &str)> = Vec::new();
    for entry in std::fs::read_dir(g.join("train")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("train") && name.ends_with(".log") {
                runs.push((f, dir.join("net.prototxt"), "train"));
            }
        }
    }
    let trained = g.join("train/trained/lenet_train_test.prototxt");
    runs.push((
        g.join("logs/caffe_train_lenet_fmnist_full_10000.log"),
        trained.clone(),
        "train",
    ));
    runs.push((g.join("train/trained/test.log"), trained.clone(), "test"));
    runs.push((
        g.join("logs/caffe_test_lenet_fmnist_full.log"),
        trained,
        "test",
    ));
    runs.push((
        g.join("logs/caffe_time_lenet.log"),
        g.join("train/sgd/net.prototxt"),
        "time",
    ));
    assert!(runs.len() >= 20);
    for (log, net_file, kind) in &runs {
        let nets = parse_log(&std::fs::read_to_string(log).unwrap());
        let param = read_net(net_file);
        let states: Vec<NetState> = match *kind {
            "train" => vec![
                solver_net_state(Phase::Train, param.state.as_ref(), Some(&cli_train_state)),
                solver_net_state(Phase::Test, param.state.as_ref(), None),
            ],
            "test" => vec![cli_net_state(&param, Phase::Test, 0, &cli_stage)],
            _ => vec![cli_net_state(&param, Phase::Train, 0, &cli_stage)],
        };
        assert_eq!(nets.len(), states.len(), "{}", log.display());
        for (i, (logged, st)) in nets.iter().zip(&states).enumerate() {
            check_logged_net(logged, net_file, st, &format!("{} net #{i}", log.display()));
        }
    }
}

/// Every per-layer golden case: the layers Caffe saved (with their own edits
/// to their parameters) and their blob counts equal the spec's.
#[test]
fn golden_layer_cases_match_spec() {
    let mut checked = 0;
    for entry in std::fs::read_dir(golden().join("layers")).unwrap() {
        let dir = entry.unwrap().path();
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        let phase = match case["phase"].as_str() {
            Some("TEST") => Phase::Test,
            _ => Phase::Train,
        };
        let param = read_net(&dir.join("net.prototxt"));
        let st = cli_net_state(&param, phase, 0, &[]);
        let spec = build_with_state(&param, &st, &default_num_blobs_or_err)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let model = dir.join("params.caffemodel");
        if model.exists() {
            let saved = NetParameter::decode(std::fs::read(&model).unwrap().as_slice()).unwrap();
            assert_eq!(spec.layers.len(), saved.layer.len(), "{}", dir.display());
            for (l, s) in spec.layers.iter().zip(&saved.layer) {
                assert_eq!(l.param, stripped(s), "{}", dir.display());
                assert_eq!(
                    l.param_ids.len(),
                    s.blobs.len(),
                    "{}: {}",
                    dir.display(),
                    s.name()
                );
            }
        } else {
            let n_params = case["params"].as_array().map_or(0, |a| a.len());
            assert_eq!(n_params, 0, "{}", dir.display());
            assert!(
                spec.params.is_empty(),
                "{}: {:?}",
                dir.display(),
                spec.params
            );
        }
        checked += 1;
    }
    assert!(checked >= 100, "only {checked} cases");
}

#[test]
fn golden_unknown_bottom_error() {
    let dir = golden().join("logs/errors");
    let log = std::fs::read_to_string(dir.join("unknown_bottom.log")).unwrap();
    let want = log
        .lines()
        .find_map(|l| {
            glog_message(l)
                .filter(|(s, _)| s.starts_with("insert_splits.cpp"))
                .map(|(_, m)| m)
        })
        .unwrap();
    let param = read_net(&dir.join("unknown_bottom.prototxt"));
    assert_eq!(build_err(&param, Phase::Train), want);
}

// ---------------------------------------------------------------------------
// NetState rules

const RULES_NET: &str = r#"
name: "rules"
layer { name: "always" type: "Input" top: "a" input_param { shape { dim: 1 } } }
layer { name: "train_only" type: "Input" top: "b" include { phase: TRAIN } }
layer { name: "not_test" type: "Input" top: "c" exclude { phase: TEST } }
layer { name: "min1" type: "Input" top: "d" include { min_level: 1 } }
layer { name: "max1" type: "Input" top: "e" include { max_level: 1 } }
layer { name: "stage_ab" type: "Input" top: "f" include { stage: "a" stage: "b" } }
layer { name: "not_stage_b" type: "Input" top: "g" include { not_stage: "b" } }
layer { name: "either" type: "Input" top: "h" include { stage: "x" } include { phase: TEST max_level: 0 } }
layer { name: "excl_stage_a" type: "Input" top: "i" exclude { stage: "a" } }
layer { name: "test_level2" type: "Input" top: "j" include { phase: TEST min_level: 2 max_level: 2 } }
"#;

fn kept(st: &NetState) -> Vec<String> {
    let f = filter_net(&net(RULES_NET), st).unwrap();
    f.layer.iter().map(|l| l.name().to_string()).collect()
}

#[test]
fn netstate_rules() {
    assert_eq!(
        kept(&state(Phase::Train, 0, &[])),
        [
            "always",
            "train_only",
            "not_test",
            "max1",
            "not_stage_b",
            "excl_stage_a"
        ]
    );
    assert_eq!(
        kept(&state(Phase::Test, 0, &[])),
        ["always", "max1", "not_stage_b", "either", "excl_stage_a"]
    );
    assert_eq!(
        kept(&state(Phase::Test, 2, &["a", "b"])),
        ["always", "min1", "stage_ab", "test_level2"]
    );
    assert_eq!(
        kept(&state(Phase::Train, 1, &["a", "x"])),
        [
            "always",
            "train_only",
            "not_test",
            "min1",
            "max1",
            "not_stage_b",
            "either"
        ]
    );
    // The filtered net carries the state it was filtered with.
    let st = state(Phase::Test, 2, &["a"]);
    assert_eq!(filter_net(&net(RULES_NET), &st).unwrap().state, Some(st));
}

#[test]
fn netstate_messages_match_caffe() {
    let mut log = Vec::new();
    filter_net_logged(&net(RULES_NET), &state(Phase::Train, 0, &["b"]), &mut log).unwrap();
    assert_eq!(
        log,
        [
            // Exclude rules that do not match log as well.
            "The NetState phase (0) differed from the phase (1) specified by a rule in layer not_test",
            "The NetState level (0) is above the min_level (1) specified by a rule in layer min1",
            "The NetState did not contain stage 'a' specified by a rule in layer stage_ab",
            "The NetState contained a not_stage 'b' specified by a rule in layer not_stage_b",
            "The NetState did not contain stage 'x' specified by a rule in layer either",
            "The NetState phase (0) differed from the phase (1) specified by a rule in layer either",
            "The NetState did not contain stage 'a' specified by a rule in layer excl_stage_a",
            "The NetState phase (0) differed from the phase (1) specified by a rule in layer test_level2",
        ]
    );
    let mut log = Vec::new();
    filter_net_logged(&net(RULES_NET), &state(Phase::Test, 3, &[]), &mut log).unwrap();
    assert!(log.contains(
        &"The NetState level (3) is above the max_level (1) specified by a rule in layer max1"
            .to_string()
    ));
}

#[test]
fn include_and_exclude_is_an_error() {
    let p = net(
        r#"layer { name: "bad" type: "Input" top: "a" include { phase: TRAIN } exclude { phase: TEST } }"#,
    );
    let e = filter_net(&p, &state(Phase::Train, 0, &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'bad'") && e.contains("not both"), "{e}");
    assert!(build_err(&p, Phase::Train).contains("not both"));
}

#[test]
fn state_merging() {
    let file_state = state(Phase::Test, 3, &["s"]);
    // Solver: the file's state is merged over the requested phase.
    let s = solver_net_state(Phase::Train, Some(&file_state), None);
    assert_eq!(
        (s.phase(), s.level(), s.stage.clone()),
        (Phase::Test, 3, vec!["s".to_string()])
    );
    let solver_state = NetState {
        stage: vec!["t".into()],
        ..Default::default()
    };
    let s = solver_net_state(Phase::Train, None, Some(&solver_state));
    assert_eq!(
        (s.phase(), s.level(), s.stage.clone()),
        (Phase::Train, 0, vec!["t".to_string()])
    );
    assert_eq!(s.level, None);
    // CLI: phase and level forced, stages appended.
    let p = NetParameter {
        state: Some(file_state),
        ..Default::default()
    };
    let s = cli_net_state(&p, Phase::Train, 0, &["u".to_string()]);
    assert_eq!(
        (s.phase(), s.level, s.stage.clone()),
        (
            Phase::Train,
            Some(0),
            vec!["s".to_string(), "u".to_string()]
        )
    );
    // build() uses the solver rule: a phase in the file wins.
    let p = net(
        r#"state { phase: TEST } layer { name: "t" type: "Input" top: "a" include { phase: TEST } }"#,
    );
    let spec = build_default(&p, Phase::Train);
    assert_eq!(spec.phase, Phase::Test);
    assert_eq!(layer_names(&spec), ["t"]);
    assert_eq!(spec.layers[0].param.phase(), Phase::Test);
}

// ---------------------------------------------------------------------------
// Splits, in-place, loss weights, outputs

#[test]
fn split_for_blob_consumed_twice() {
    let p = net(r#"
        layer { name: "data" type: "Input" top: "data" top: "label" }
        layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" }
        layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
        layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
        "#);
    let s = insert_splits(&p).unwrap();
    let summary: Vec<_> = s
        .layer
        .iter()
        .map(|l| (l.name(), l.r#type(), l.bottom.join(","), l.top.join(",")))
        .collect();
    assert_eq!(
        summary,
        [
            ("data", "Input", "".into(), "data,label".into()),
            (
                "label_data_1_split",
                "Split",
                "label".into(),
                "label_data_1_split_0,label_data_1_split_1".into()
            ),
            ("ip", "InnerProduct", "data".into(), "ip".into()),
            (
                "ip_ip_0_split",
                "Split",
                "ip".into(),
                "ip_ip_0_split_0,ip_ip_0_split_1,ip_ip_0_split_2".into()
            ),
            (
                "acc",
                "Accuracy",
                "ip_ip_0_split_0,label_data_1_split_0".into(),
                "acc".into()
            ),
            (
                "loss",
                "SoftmaxWithLoss",
                "ip_ip_0_split_1,label_data_1_split_1".into(),
                "loss".into()
            ),
            ("relu", "ReLU", "ip_ip_0_split_2".into(), "ip".into()),
        ]
    );
    // The split layer carries nothing but its wiring.
    let split = &s.layer[1];
    assert!(
        split.loss_weight.is_empty() && split.propagate_down.is_empty() && split.phase.is_none()
    );
    // The in-place ReLU now reads a split output but writes "ip": Caffe's
    // well-known "produced by multiple sources" failure.
    let e = build_err(&p, Phase::Train);
    assert_eq!(
        e,
        "Top blob 'ip' produced by multiple sources (layer 'relu', top index 0)"
    );
}

#[test]
fn split_moves_loss_weight_of_a_consumed_loss_top() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" top: "y" }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p" top: "q" loss_weight: 2 loss_weight: 3 }
        layer { name: "l2" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "l2" }
        "#);
    let s = insert_splits(&p).unwrap();
    let ip = &s.layer[1];
    // Only "p" is consumed, but Caffe clears the producer's whole list, so
    // "q" loses its weight too.
    assert!(ip.loss_weight.is_empty(), "producer's weights are cleared");
    let split = &s.layer[2];
    assert_eq!(split.name(), "p_ip_0_split");
    assert_eq!(split.top, ["p_ip_0_split_0", "p_ip_0_split_1"]);
    assert_eq!(split.loss_weight, [2.0, 0.0]);
    // Consumers start at split output 1.
    assert_eq!(s.layer[3].bottom, ["p_ip_0_split_1", "y"]);

    let spec = build_default(&p, Phase::Train);
    assert_eq!(layer(&spec, "ip").loss_weights, [0.0, 0.0]);
    assert_eq!(layer(&spec, "p_ip_0_split").loss_weights, [2.0, 0.0]);
    assert_eq!(outputs(&spec), ["l2", "p_ip_0_split_0", "q"]);
    let w = |n: &str| spec.blob_loss_weights[spec.blob_id(n).unwrap()];
    assert_eq!((w("p_ip_0_split_0"), w("l2"), w("q")), (2.0, 1.0, 0.0));
    assert!(spec
        .layers
        .iter()
        .filter(|l| l.name() != "in")
        .all(|l| l.need_backward));
}

#[test]
fn default_loss_weight_does_not_split_but_explicit_does() {
    // A loss top with Caffe's implicit weight, consumed once: no split (the
    // implicit weight is unknown to InsertSplits), so the loss blob is no
    // output and still carries weight 1.
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" top: "y" }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" }
        layer { name: "s" type: "Silence" bottom: "loss" }
        "#);
    let spec = build_default(&p, Phase::Train);
    assert_eq!(layer_names(&spec), ["in", "loss", "s"]);
    assert_eq!(layer(&spec, "loss").loss_weights, [1.0]);
    assert_eq!(layer(&spec, "loss").param.loss_weight, [1.0]);
    assert!(outputs(&spec).is_empty());
    // The same with an explicit weight counts as a use: split.
    let p2 = net(r#"
        layer { name: "in" type: "Input" top: "x" top: "y" }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" loss_weight: 1 }
        layer { name: "s" type: "Silence" bottom: "loss" }
        "#);
    let spec = build_default(&p2, Phase::Train);
    assert_eq!(layer_names(&spec), ["in", "loss", "loss_loss_0_split", "s"]);
    // Having lost its explicit weight, the loss layer gets the default 1
    // again, as in Caffe (LossLayer::LayerSetUp runs after InsertSplits).
    assert_eq!(layer(&spec, "loss").loss_weights, [1.0]);
    assert_eq!(layer(&spec, "loss_loss_0_split").loss_weights, [1.0, 0.0]);
}

#[test]
fn legacy_input_split_names() {
    let p = net(r#"
        input: "data"
        layer { name: "a" type: "ReLU" bottom: "data" top: "a" }
        layer { name: "b" type: "ReLU" bottom: "data" top: "b" }
        "#);
    let s = insert_splits(&p).unwrap();
    assert_eq!(s.layer[0].name(), "data_input_0_split");
    assert_eq!(s.layer[1].bottom, ["data_input_0_split_0"]);
    assert_eq!(s.layer[2].bottom, ["data_input_0_split_1"]);
}

#[test]
fn in_place_reuses_the_blob() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" }
        layer { name: "relu" type: "ReLU" bottom: "y" top: "y" }
        layer { name: "drop" type: "Dropout" bottom: "y" top: "y" }
        layer { name: "ip2" type: "InnerProduct" bottom: "y" top: "z" }
        "#);
    let spec = build_default(&p, Phase::Train);
    assert_eq!(spec.blob_names, ["x", "y", "z"]);
    let y = spec.blob_id("y").unwrap();
    for n in ["relu", "drop"] {
        assert_eq!(
            (
                layer(&spec, n).bottom_ids.clone(),
                layer(&spec, n).top_ids.clone()
            ),
            (vec![y], vec![y])
        );
        assert_eq!(layer(&spec, n).top_in_place, [true]);
    }
    assert_eq!(layer(&spec, "ip").top_in_place, [false]);
    assert_eq!(spec.input_blob_ids, [0]);
    assert_eq!(outputs(&spec), ["z"]);
    // No loss anywhere: nothing needs backward.
    assert!(spec.layers.iter().all(|l| !l.need_backward));
    // Default phase inheritance.
    assert!(spec.layers.iter().all(|l| l.param.phase() == Phase::Train));
}

#[test]
fn outputs_are_sorted_by_name() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "zeta" top: "Alpha" top: "beta" top: "_u" }
        "#);
    let spec = build_default(&p, Phase::Test);
    assert_eq!(outputs(&spec), ["Alpha", "_u", "beta", "zeta"]);
    assert_eq!(spec.input_blob_ids, [0, 1, 2, 3]);
}

#[test]
fn automatic_top_for_loss_without_tops() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" top: "y" }
        layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "y" }
        "#);
    let spec = build_default(&p, Phase::Train);
    let loss = layer(&spec, "loss");
    assert_eq!(loss.num_auto_tops(), 1);
    assert_eq!(spec.blob_names[loss.top_ids[0]], spec::AUTOMATIC_TOP);
    assert_eq!(loss.loss_weights, [1.0]);
    assert!(loss.need_backward && layer(&spec, "ip").need_backward);
    assert!(outputs(&spec).is_empty(), "automatic tops are not outputs");
}

#[test]
fn loss_layer_with_two_tops_needs_two_weights() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" top: "y" }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss" top: "prob" }
        "#);
    let e = build_err(&p, Phase::Train);
    assert!(
        e.contains("'loss'") && e.contains("once per top blob"),
        "{e}"
    );
    let mut p = p;
    p.layer[1].loss_weight = vec![1.0, 0.0];
    let spec = build_default(&p, Phase::Train);
    assert_eq!(layer(&spec, "loss").loss_weights, [1.0, 0.0]);
    assert_eq!(outputs(&spec), ["loss", "prob"]);
}

// ---------------------------------------------------------------------------
// Param sharing

#[test]
fn named_params_are_shared() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "a" top: "b" top: "y" }
        layer { name: "ip_a" type: "InnerProduct" bottom: "a" top: "fa"
                param { name: "w" lr_mult: 2 } param { lr_mult: 3 decay_mult: 0 } }
        layer { name: "ip_b" type: "InnerProduct" bottom: "b" top: "fb"
                param { name: "w" decay_mult: 5 } param { name: "bias_b" } }
        layer { name: "ip_c" type: "InnerProduct" bottom: "fb" top: "fc"
                param { name: "bias_b" lr_mult: 4 } inner_product_param { bias_term: false } }
        layer { name: "cat" type: "Concat" bottom: "fa" bottom: "fc" top: "f" }
        layer { name: "loss" type: "EuclideanLoss" bottom: "f" bottom: "y" top: "loss" }
        "#);
    let spec = build_default(&p, Phase::Train);
    let names: Vec<_> = spec
        .params
        .iter()
        .map(|p| p.display_name.as_str())
        .collect();
    assert_eq!(names, ["w", "1", "w", "bias_b", "bias_b"]);
    let owners: Vec<_> = spec.params.iter().map(|p| p.owner).collect();
    assert_eq!(owners, [None, None, Some(0), None, Some(3)]);
    assert_eq!(spec.learnable_params, [0, 1, 3]);
    assert_eq!(spec.learnable_param_ids, [0, 1, 0, 2, 2]);
    assert_eq!(layer(&spec, "ip_b").param_ids, [2, 3]);
    assert_eq!(layer(&spec, "ip_c").param_ids, [4]);
    // Owner values win where set; a sharer fills in what the owner left unset.
    assert_eq!(spec.params_lr, [2.0, 3.0, 4.0]);
    assert_eq!(spec.params_weight_decay, [5.0, 0.0, 1.0]);
    assert_eq!(spec.has_params_lr, [true, true, true]);
    assert_eq!(spec.has_params_decay, [true, true, false]);
    let pi = &spec.params[4];
    assert_eq!(
        (pi.layer_id, pi.param_index),
        (spec.layer_id("ip_c").unwrap(), 0)
    );
}

#[test]
fn shared_param_mismatch_is_an_error() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "a" }
        layer { name: "p1" type: "PReLU" bottom: "a" top: "b" param { name: "s" lr_mult: 1 } }
        layer { name: "p2" type: "PReLU" bottom: "b" top: "c" param { name: "s" lr_mult: 2 } }
        "#);
    let e = build_err(&p, Phase::Train);
    assert!(
        e.contains("Shared param 's' has mismatched lr_mult")
            && e.contains("'p2'")
            && e.contains("'p1'"),
        "{e}"
    );
}

#[test]
fn too_many_params_is_an_error() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "a" }
        layer { name: "ip" type: "InnerProduct" bottom: "a" top: "b" param {} param {} param {} }
        "#);
    let e = build_err(&p, Phase::Train);
    assert!(
        e.contains("Too many params specified for layer 'ip'"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// Need-backward analysis

const BACKWARD_NET: &str = r#"
    name: "bw"
    layer { name: "in" type: "Input" top: "data" top: "label" }
    layer { name: "frozen" type: "InnerProduct" bottom: "data" top: "f" param { lr_mult: 0 } param { lr_mult: 0 } }
    layer { name: "ip1" type: "InnerProduct" bottom: "f" top: "h" }
    layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }
    layer { name: "side" type: "InnerProduct" bottom: "h" top: "side" }
    layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "out" }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "label" top: "loss" }
"#;

fn backward_flags(spec: &NetSpec) -> Vec<(&str, bool)> {
    spec.layers
        .iter()
        .map(|l| (l.name(), l.need_backward))
        .collect()
}

#[test]
fn need_backward_prunes_branches_and_frozen_prefix() {
    let spec = build_default(&net(BACKWARD_NET), Phase::Train);
    assert_eq!(
        backward_flags(&spec),
        [
            ("in", false),
            ("frozen", false),
            ("ip1", true),
            ("relu", true),
            ("h_relu_0_split", true),
            ("side", false),
            ("ip2", true),
            ("loss", true),
        ]
    );
    let frozen = layer(&spec, "frozen");
    assert_eq!(frozen.param_propagate_down, [false, false]);
    assert_eq!(frozen.bottom_need_backward, [false]);
    assert_eq!(
        layer(&spec, "ip1").bottom_need_backward,
        [false],
        "frozen output needs no gradient"
    );
    assert_eq!(layer(&spec, "ip2").bottom_need_backward, [true]);
    assert_eq!(
        layer(&spec, "side").bottom_need_backward,
        [false],
        "side branch reaches no loss"
    );
    assert_eq!(layer(&spec, "loss").bottom_need_backward, [true, false]);
    assert_eq!(outputs(&spec), ["loss", "side"]);
}

#[test]
fn propagate_down_false_skips_the_producer() {
    let mut p = net(BACKWARD_NET);
    let loss = p.layer.iter_mut().find(|l| l.name() == "loss").unwrap();
    loss.propagate_down = vec![false, false];
    let spec = build_default(&p, Phase::Train);
    let l = layer(&spec, "loss");
    assert!(
        l.need_backward,
        "the layer flag still follows its bottoms' blobs"
    );
    assert_eq!(l.bottom_need_backward, [false, false]);
    // ip2's only top is skipped: no backward there, nor (through the split,
    // whose other top goes to the loss-less side branch) above it.
    for n in ["ip2", "h_relu_0_split", "relu", "ip1", "frozen", "side"] {
        assert!(!layer(&spec, n).need_backward, "{n}");
    }
    // propagate_down true does not force a gradient the blob does not need.
    let mut p = net(BACKWARD_NET);
    let ip1 = p.layer.iter_mut().find(|l| l.name() == "ip1").unwrap();
    ip1.propagate_down = vec![true];
    let spec = build_default(&p, Phase::Train);
    assert_eq!(
        layer(&spec, "ip1").bottom_need_backward,
        [true],
        "explicit value replaces the blob's flag"
    );
    assert!(!layer(&spec, "frozen").need_backward);
}

#[test]
fn propagate_down_count_is_checked() {
    let mut p = net(BACKWARD_NET);
    p.layer[6].propagate_down = vec![true];
    let e = build_err(&p, Phase::Train);
    assert!(
        e.contains("'loss'") && e.contains("either 0 or bottom_size times"),
        "{e}"
    );
}

#[test]
fn force_backward_marks_everything() {
    let mut p = net(BACKWARD_NET);
    p.force_backward = Some(true);
    let spec = build_default(&p, Phase::Train);
    assert!(spec.force_backward);
    assert!(spec.layers.iter().all(|l| l.need_backward));
    assert!(spec
        .layers
        .iter()
        .all(|l| l.param_propagate_down.iter().all(|&p| p)));
    assert_eq!(layer(&spec, "frozen").bottom_need_backward, [true]);
    assert_eq!(layer(&spec, "side").bottom_need_backward, [true]);
    // Loss layers never force a gradient into their labels.
    assert_eq!(layer(&spec, "loss").bottom_need_backward, [true, false]);
    assert!(spec.blob_need_backward[spec.blob_id("data").unwrap()]);
    assert!(!spec.blob_need_backward[spec.blob_id("label").unwrap()]);
    assert!(spec::allow_force_backward("EuclideanLoss", 1));
    assert!(!spec::allow_force_backward("ContrastiveLoss", 2));
    assert!(!spec::allow_force_backward("LSTM", 1));
}

#[test]
fn batchnorm_masks_its_statistics() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" top: "y" }
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" }
        layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "y" top: "loss" }
        "#);
    let spec = build_default(&p, Phase::Train);
    let bn = layer(&spec, "bn");
    // Net::Init reads the prototxt's (empty) ParamSpecs, so the statistics
    // count as trainable for need-backward, but the layer's own copy gets
    // lr_mult 0, which the solver uses.
    assert!(bn.need_backward);
    assert_eq!(bn.param_propagate_down, [true, true, true]);
    assert_eq!(bn.param.param.len(), 3);
    assert_eq!(spec.params_lr, [0.0, 0.0, 0.0]);
    assert_eq!(spec.has_params_lr, [true, true, true]);
    let mut p = p;
    p.layer[1].param = vec![Default::default()];
    let e = build_err(&p, Phase::Train);
    assert!(
        e.contains("'bn'") && e.contains("batch normalization statistics"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// Errors and blob counts

#[test]
fn unknown_bottom_and_duplicate_top() {
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" }
        layer { name: "conv1" type: "ReLU" bottom: "nope" top: "y" }
        "#);
    assert_eq!(
        build_err(&p, Phase::Train),
        "Unknown bottom blob 'nope' (layer 'conv1', bottom index 0)"
    );
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" }
        layer { name: "a" type: "ReLU" bottom: "x" top: "y" }
        layer { name: "b" type: "Input" top: "y" }
        "#);
    assert_eq!(
        build_err(&p, Phase::Train),
        "Top blob 'y' produced by multiple sources (layer 'b', top index 0)"
    );
    // In-place means same name at the same index: top 1 == bottom 0 is a duplicate.
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" top: "z" }
        layer { name: "s" type: "Slice" bottom: "x" top: "w" top: "x" }
        "#);
    assert_eq!(
        build_err(&p, Phase::Train),
        "Top blob 'x' produced by multiple sources (layer 's', top index 1)"
    );
    // A consumed blob is gone for later layers (Net::Init's own check).
    let p = net(r#"
        layer { name: "in" type: "Input" top: "x" }
        layer { name: "e" type: "Eltwise" bottom: "x" bottom: "x" top: "y" }
        "#);
    let spec = build_default(&p, Phase::Train);
    assert_eq!(
        layer(&spec, "e").param.bottom,
        ["x_in_0_split_0", "x_in_0_split_1"]
    );
    // Unknown types come from the caller's num_blobs.
    let p = net(r#"layer { name: "py" type: "Python" top: "x" }"#);
    let e = build_err(&p, Phase::Train);
    assert!(e.contains("Python") && e.contains("'py'"), "{e}");
    let spec = build(&p, Phase::Train, &|_| Ok(0)).unwrap();
    assert_eq!(outputs(&spec), ["x"]);
}

#[test]
fn default_param_blob_counts() {
    let l = |text: &str| net(&format!("layer {{ {text} }}")).layer.remove(0);
    let n = |text: &str| default_num_param_blobs(&l(text));
    assert_eq!(n(r#"type: "Convolution""#), Some(2));
    assert_eq!(
        n(r#"type: "Convolution" convolution_param { bias_term: false }"#),
        Some(1)
    );
    assert_eq!(n(r#"type: "Deconvolution""#), Some(2));
    assert_eq!(
        n(r#"type: "InnerProduct" inner_product_param { bias_term: false }"#),
        Some(1)
    );
    assert_eq!(n(r#"type: "Embed""#), Some(2));
    assert_eq!(n(r#"type: "PReLU""#), Some(1));
    assert_eq!(n(r#"type: "Parameter""#), Some(1));
    assert_eq!(n(r#"type: "BatchNorm""#), Some(3));
    assert_eq!(n(r#"type: "Scale" bottom: "a""#), Some(1));
    assert_eq!(
        n(r#"type: "Scale" bottom: "a" scale_param { bias_term: true }"#),
        Some(2)
    );
    assert_eq!(n(r#"type: "Scale" bottom: "a" bottom: "b""#), Some(0));
    assert_eq!(
        n(r#"type: "Scale" bottom: "a" bottom: "b" scale_param { bias_term: true }"#),
        Some(1)
    );
    assert_eq!(n(r#"type: "Bias" bottom: "a""#), Some(1));
    assert_eq!(n(r#"type: "Bias" bottom: "a" bottom: "b""#), Some(0));
    assert_eq!(n(r#"type: "LSTM" bottom: "x" bottom: "c""#), Some(3));
    assert_eq!(
        n(r#"type: "LSTM" bottom: "x" bottom: "c" bottom: "s""#),
        Some(4)
    );
    assert_eq!(
        n(
            r#"type: "LSTM" bottom: "x" bottom: "c" bottom: "h0" bottom: "c0" recurrent_param { expose_hidden: true }"#
        ),
        Some(3)
    );
    assert_eq!(n(r#"type: "RNN" bottom: "x" bottom: "c""#), Some(5));
    assert_eq!(
        n(r#"type: "RNN" bottom: "x" bottom: "c" bottom: "s""#),
        Some(6)
    );
    assert_eq!(n(r#"type: "Im2col""#), Some(0));
    assert_eq!(n(r#"type: "SoftmaxWithLoss""#), Some(0));
    assert_eq!(n(r#"type: "Python""#), None);
    assert_eq!(n(r#"type: "Nope""#), None);
}
