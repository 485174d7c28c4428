//! Caffe's upgrades against real Caffe output: every legacy file in
//! `../shared/zoo/legacy_v{0,1}`, upgraded and printed, must equal what
//! `upgrade_net_proto_text` / `upgrade_solver_proto_text` wrote
//! (`../shared/golden/upgrade/<name>.upgraded.prototxt`) byte for byte.
use std::path::{Path, PathBuf};

use rcaffe::proto::caffe::{
    v1_layer_parameter::LayerType, BlobProto, BlobShape, LayerParameter, NetParameter, ParamSpec,
    SolverParameter, V0LayerParameter, V1LayerParameter,
};
use rcaffe::proto::{binary, text, upgrade};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn legacy_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["legacy_v0", "legacy_v1"] {
        for e in std::fs::read_dir(shared().join("zoo").join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "prototxt") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn is_solver(text: &str) -> bool {
    // Solvers name their nets; nets have layers.
    !text.contains("layers {") && !text.contains("layer {")
}

/// Upgrade one legacy file as Caffe's tools do and print it.
fn upgrade_file(path: &Path) -> String {
    let src = std::fs::read_to_string(path).unwrap();
    let name = path.display().to_string();
    if is_solver(&src) {
        let mut s = text::parse_solver_text(&src, &name).unwrap();
        upgrade::upgrade_solver_as_needed(&mut s, &name).unwrap();
        text::print_solver(&s)
    } else {
        let mut n = text::parse_net_text(&src, &name).unwrap();
        assert!(upgrade::net_needs_upgrade(&n), "{name}");
        let msgs = upgrade::upgrade_net_as_needed(&mut n, &name).unwrap();
        assert!(!msgs.is_empty());
        text::print_net(&n)
    }
}

#[test]
fn legacy_files_upgrade_byte_identical_to_caffe() {
    let files = legacy_files();
    assert_eq!(files.len(), 17, "expected 17 legacy files");
    let mut failures = Vec::new();
    for f in &files {
        let stem = f.file_stem().unwrap().to_str().unwrap();
        let golden = shared()
            .join("golden/upgrade")
            .join(format!("{stem}.upgraded.prototxt"));
        let want = std::fs::read_to_string(&golden).unwrap();
        let got = upgrade_file(f);
        if got != want {
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(got.lines().count().min(want.lines().count()));
            failures.push(format!(
                "{stem}: first difference at line {}: got {:?}, want {:?}",
                line + 1,
                got.lines().nth(line),
                want.lines().nth(line)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn upgraded_files_need_no_further_upgrade() {
    for f in legacy_files() {
        let src = std::fs::read_to_string(&f).unwrap();
        if is_solver(&src) {
            continue;
        }
        let printed = upgrade_file(&f);
        let mut n = text::parse_net_text(&printed, "x").unwrap();
        assert!(!upgrade::net_needs_upgrade(&n), "{}", f.display());
        let before = n.clone();
        assert!(upgrade::upgrade_net_as_needed(&mut n, "x")
            .unwrap()
            .is_empty());
        assert_eq!(n, before);
    }
}

#[test]
fn caffe_messages() {
    let src = "name: 'n' layers { name: 'ip' type: INNER_PRODUCT bottom: 'x' top: 'y' }";
    let mut n = text::parse_net_text(src, "n.prototxt").unwrap();
    let msgs = upgrade::upgrade_net_as_needed(&mut n, "n.prototxt").unwrap();
    assert_eq!(
        msgs,
        vec![
            "Attempting to upgrade input file specified using deprecated V1LayerParameter: n.prototxt",
            "Successfully upgraded file specified using deprecated V1LayerParameter",
        ]
    );
    assert_eq!(n.layer[0].r#type(), "InnerProduct");
}

fn blob(values: &[f32]) -> BlobProto {
    BlobProto {
        num: Some(1),
        channels: Some(1),
        height: Some(1),
        width: Some(values.len() as i32),
        data: values.to_vec(),
        ..Default::default()
    }
}

#[test]
fn v1_caffemodel_upgrade_keeps_blobs() {
    let w = blob(&[1.0, -2.5, 3.25]);
    let b = blob(&[0.5]);
    let v1 = NetParameter {
        name: Some("old".into()),
        input: vec!["data".into()],
        layers: vec![V1LayerParameter {
            name: Some("ip".into()),
            r#type: Some(LayerType::InnerProduct as i32),
            bottom: vec!["data".into()],
            top: vec!["ip".into()],
            blobs: vec![w.clone(), b.clone()],
            blobs_lr: vec![1.0, 2.0],
            ..Default::default()
        }],
        ..Default::default()
    };
    // Through a real file, as `upgrade_net_proto_binary` and weight loading do.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("old.caffemodel");
    binary::write_net_binary(&p, &v1).unwrap();
    let net = upgrade::load_net_binary(&p).unwrap();
    assert!(net.layers.is_empty());
    // An `input` without shapes (old caffemodels) is dropped, no Input layer.
    assert!(net.input.is_empty());
    assert_eq!(net.layer.len(), 1);
    let l = &net.layer[0];
    assert_eq!(l.name(), "ip");
    assert_eq!(l.r#type(), "InnerProduct");
    assert_eq!(l.blobs, vec![w, b]);
    assert_eq!(l.param.len(), 2);
    assert_eq!(l.param[1].lr_mult, Some(2.0));
    assert_eq!(l.param[1].decay_mult, None);
}

#[test]
fn v0_caffemodel_upgrade_keeps_blobs() {
    let w = blob(&[4.0, 5.0]);
    let v0 = NetParameter {
        input: vec!["data".into()],
        layers: vec![V1LayerParameter {
            bottom: vec!["data".into()],
            top: vec!["c".into()],
            layer: Some(V0LayerParameter {
                name: Some("c".into()),
                r#type: Some("conv".into()),
                num_output: Some(2),
                kernelsize: Some(1),
                blobs: vec![w.clone()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut net = v0;
    upgrade::upgrade_net_as_needed(&mut net, "m").unwrap();
    assert_eq!(net.layer[0].r#type(), "Convolution");
    assert_eq!(net.layer[0].blobs, vec![w]);
    assert_eq!(
        net.layer[0].convolution_param.as_ref().unwrap().kernel_size,
        vec![1]
    );
}

#[test]
fn input_fields_become_a_front_input_layer() {
    let mut net = NetParameter {
        input: vec!["a".into(), "b".into()],
        input_shape: vec![BlobShape { dim: vec![1, 2] }, BlobShape { dim: vec![3] }],
        layer: vec![LayerParameter {
            name: Some("x".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    upgrade::upgrade_net_as_needed(&mut net, "m").unwrap();
    assert_eq!(net.layer.len(), 2);
    assert_eq!(net.layer[0].name(), "input");
    assert_eq!(net.layer[0].top, vec!["a", "b"]);
    assert_eq!(
        net.layer[0].input_param.as_ref().unwrap().shape[1].dim,
        vec![3]
    );
    assert_eq!(net.layer[1].name(), "x");
    assert!(net.input.is_empty() && net.input_shape.is_empty());

    // Too few dims is an error, not an out-of-bounds read.
    let mut bad = NetParameter {
        input: vec!["a".into()],
        input_dim: vec![1, 2],
        ..Default::default()
    };
    assert!(upgrade::upgrade_net_as_needed(&mut bad, "m").is_err());
}

#[test]
fn batch_norm_params_zeroed() {
    let spec = ParamSpec {
        name: Some("s".into()),
        lr_mult: Some(1.0),
        ..Default::default()
    };
    let mut net = NetParameter {
        layer: vec![LayerParameter {
            r#type: Some("BatchNorm".into()),
            param: vec![spec.clone(), spec.clone(), spec],
            ..Default::default()
        }],
        ..Default::default()
    };
    let msgs = upgrade::upgrade_net_as_needed(&mut net, "m").unwrap();
    assert_eq!(msgs.len(), 2);
    for p in &net.layer[0].param {
        assert_eq!((p.lr_mult, p.decay_mult), (Some(0.0), Some(0.0)));
        assert_eq!(p.name(), "s");
    }
}

#[test]
fn fatal_cases_are_errors() {
    // Both `layer` and `layers`.
    let mut both = NetParameter {
        layer: vec![LayerParameter::default()],
        layers: vec![V1LayerParameter::default()],
        ..Default::default()
    };
    let e = upgrade::upgrade_net_as_needed(&mut both, "both.prototxt").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("both.prototxt: Refusing to upgrade"),
        "{e}"
    );

    // Unknown V0 type.
    let mut v0 = NetParameter {
        layers: vec![V1LayerParameter {
            layer: Some(V0LayerParameter {
                r#type: Some("nope".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = upgrade::upgrade_net_as_needed(&mut v0, "v0").unwrap_err();
    assert!(e.to_string().contains("Unknown layer name: nope"), "{e}");

    // Unknown V1 enum value (possible in a binary file).
    let mut v1 = NetParameter {
        layers: vec![V1LayerParameter {
            r#type: Some(999),
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = upgrade::upgrade_net_as_needed(&mut v1, "v1").unwrap_err();
    assert!(
        e.to_string()
            .contains("Unknown V1LayerParameter layer type: 999"),
        "{e}"
    );

    // solver_type and type together.
    let mut s = SolverParameter {
        solver_type: Some(1),
        r#type: Some("SGD".into()),
        ..Default::default()
    };
    let e = upgrade::upgrade_solver_as_needed(&mut s, "s").unwrap_err();
    assert!(e.to_string().contains("cannot be both specified"), "{e}");
}

#[test]
fn v0_field_on_wrong_layer_type_is_reported_not_fatal() {
    let mut net = NetParameter {
        input: vec!["d".into()],
        layers: vec![V1LayerParameter {
            bottom: vec!["d".into()],
            top: vec!["r".into()],
            layer: Some(V0LayerParameter {
                name: Some("r".into()),
                r#type: Some("relu".into()),
                num_output: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = upgrade::upgrade_net(&mut net, "f").unwrap();
    assert!(!r.success);
    let texts = r.texts();
    assert!(texts.contains(&"Unknown parameter num_output for layer type relu".to_string()));
    assert_eq!(net.layer[0].r#type(), "ReLU");
}

#[test]
fn snapshot_prefix_fixup() {
    let mut s = SolverParameter::default();
    let msg = upgrade::upgrade_snapshot_prefix(&mut s, Path::new("a/b/solver.prototxt")).unwrap();
    assert_eq!(s.snapshot_prefix(), "a/b/solver");
    assert!(msg.contains("a/b/solver"));

    let dir = tempfile::tempdir().unwrap();
    let mut s = SolverParameter {
        snapshot_prefix: Some(dir.path().display().to_string()),
        ..Default::default()
    };
    upgrade::upgrade_snapshot_prefix(&mut s, Path::new("x/lenet_solver.prototxt")).unwrap();
    assert_eq!(
        Path::new(s.snapshot_prefix()),
        dir.path().join("lenet_solver")
    );

    let mut s = SolverParameter {
        snapshot_prefix: Some("snap".into()),
        ..Default::default()
    };
    assert!(upgrade::upgrade_snapshot_prefix(&mut s, Path::new("s.prototxt")).is_none());
}
