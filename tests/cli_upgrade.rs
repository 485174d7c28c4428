//! The real `rcaffe` binary's upgrade tools against Caffe's own output.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcaffe::proto::binary;
use rcaffe::proto::caffe::{
    v1_layer_parameter::LayerType, BlobProto, NetParameter, V1LayerParameter,
};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn rcaffe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(args)
        .output()
        .expect("run rcaffe")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn upgrade_net_proto_text_matches_caffe() {
    let dir = tempfile::tempdir().unwrap();
    for (sub, name) in [
        ("legacy_v0", "imagenet_train_with_padding_layers_v0"),
        ("legacy_v1", "lenet_train_test_v1"),
    ] {
        let input = shared().join(format!("zoo/{sub}/{name}.prototxt"));
        let out = dir.path().join(format!("{name}.prototxt"));
        let o = rcaffe(&["upgrade_net_proto_text", s(&input), s(&out)]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        assert!(
            stderr.contains("Successfully upgraded file specified using deprecated"),
            "{stderr}"
        );
        let want = std::fs::read(shared().join(format!("golden/upgrade/{name}.upgraded.prototxt")))
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), want, "{name}");
    }
}

#[test]
fn upgrade_solver_proto_text_matches_caffe_with_gflags_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let name = "lenet_solver_rmsprop_legacy_solver_type_enum";
    let input = shared().join(format!("zoo/legacy_v1/{name}.prototxt"));
    let out = dir.path().join("solver.prototxt");
    let o = rcaffe(&["upgrade_solver_proto_text", s(&input), s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want =
        std::fs::read(shared().join(format!("golden/upgrade/{name}.upgraded.prototxt"))).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), want);

    // Already current: Caffe says so and still writes the file.
    let out2 = dir.path().join("again.prototxt");
    let o = rcaffe(&["upgrade_solver_proto_text", s(&out), s(&out2)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("File already in latest proto format"));
    assert_eq!(std::fs::read(&out2).unwrap(), want);
}

#[test]
fn upgrade_net_proto_binary_keeps_weights() {
    let dir = tempfile::tempdir().unwrap();
    let blob = BlobProto {
        data: vec![1.0, 2.0, 3.0],
        ..Default::default()
    };
    let v1 = NetParameter {
        name: Some("old".into()),
        layers: vec![V1LayerParameter {
            name: Some("ip".into()),
            r#type: Some(LayerType::InnerProduct as i32),
            blobs: vec![blob.clone()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let input = dir.path().join("old.caffemodel");
    let out = dir.path().join("new.caffemodel");
    binary::write_net_binary(&input, &v1).unwrap();
    let o = rcaffe(&["upgrade_net_proto_binary", s(&input), s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let net = binary::read_net_binary(&out).unwrap();
    assert!(net.layers.is_empty());
    assert_eq!(net.layer[0].r#type(), "InnerProduct");
    assert_eq!(net.layer[0].blobs, vec![blob]);
}

#[test]
fn malformed_prototxt_is_one_line_with_position() {
    let dir = tempfile::tempdir().unwrap();
    // Caffe's own syntax-error case: `dim 3` lacks its colon (6:36).
    let input = shared().join("golden/logs/errors/prototxt_syntax.prototxt");
    let out = dir.path().join("out.prototxt");
    let o = rcaffe(&["upgrade_net_proto_text", s(&input), s(&out)]);
    assert!(!o.status.success());
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let want = format!("rcaffe: {}:6:", input.display());
    assert!(stderr.starts_with(&want), "{stderr}");
    assert!(!out.exists(), "nothing written on error");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    // Missing file.
    let o = rcaffe(&["upgrade_net_proto_text", "/nonexistent/x.prototxt", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("rcaffe: /nonexistent/x.prototxt"),
        "{stderr}"
    );
    // Garbage caffemodel.
    let bad = dir.path().join("bad.caffemodel");
    std::fs::write(&bad, [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1]).unwrap();
    let o = rcaffe(&["upgrade_net_proto_binary", s(&bad), s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("not a valid caffe.NetParameter"),
        "{stderr}"
    );
    // Usage error: clap's message, non-zero.
    let o = rcaffe(&["upgrade_net_proto_text", "only_one_arg"]);
    assert!(!o.status.success());
    // Unknown command.
    let o = rcaffe(&["frobnicate"]);
    assert!(!o.status.success());
}
