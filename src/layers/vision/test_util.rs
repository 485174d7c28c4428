//! Test helpers for the vision layers: build a layer from a prototxt
//! fragment, drive it over an arena, check gradients, and replay a golden
//! case (real Caffe's bottoms, weights, tops and diffs) through the layer
//! directly, without a Net.
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::cpu::CpuBackend;
use crate::error::Result;
use crate::layers::{create_layer, Ctx, Io, Layer};
use crate::proto::binary::{read_blob_proto_vector, read_net_binary};
use crate::proto::caffe::{BlobProto, LayerParameter, Phase};
use crate::proto::text::parse_net_text;
use crate::tensor::Blob;
use crate::testing::golden::{compare, golden_dir, tolerance_for};
use crate::testing::gradient::GradientChecker;

pub fn cx() -> Ctx {
    Ctx::new(Arc::new(CpuBackend::new()), Phase::Train, 1701)
}

/// A layer from the body of a prototxt `layer { ... }` block.
pub fn parse_layer(body: &str) -> LayerParameter {
    let net = parse_net_text(&format!("layer {{ name: 'layer' {body} }}"), "test")
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    net.layer[0].clone()
}

pub fn make_layer(body: &str) -> Result<Box<dyn Layer>> {
    create_layer(&parse_layer(body))
}

/// Normal(0, 1)-ish bottoms of the given shapes.
pub fn random_blobs(shapes: &[&[usize]], seed: u64) -> Vec<Blob> {
    let mut rng = StdRng::seed_from_u64(seed);
    shapes
        .iter()
        .map(|s| {
            let n: usize = s.iter().product();
            let v = (0..n).map(|_| rng.gen_range(-1.5f32..1.5)).collect();
            Blob::from_host(s, v)
        })
        .collect()
}

/// Arena layout `[bottoms..., tops..., params...]`: the ids of each group.
pub fn wiring(nb: usize, nt: usize, np: usize) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    (
        (0..nb).collect(),
        (nb..nb + nt).collect(),
        (nb + nt..nb + nt + np).collect(),
    )
}

/// Create the layer, set it up on random bottoms and report the first error.
pub fn try_setup(body: &str, shapes: &[&[usize]]) -> Result<()> {
    let mut layer = make_layer(body)?;
    let mut arena = random_blobs(shapes, 1);
    let (b, t, _) = wiring(shapes.len(), shapes.len(), 0);
    let mut cx = cx();
    let mut io = Io::new(&mut arena, &b, &[], &[]);
    let n = layer.setup(&mut cx, &mut io)?.len();
    arena.resize_with(2 * shapes.len() + n, Blob::default);
    let p: Vec<usize> = (2 * shapes.len()..2 * shapes.len() + n).collect();
    GradientChecker::setup(layer.as_mut(), &mut cx, &mut arena, &b, &t, &p)
}

/// Set up and forward one layer with as many tops as bottoms; returns the
/// layer and its tops.
pub fn run_forward(body: &str, shapes: &[&[usize]]) -> (Box<dyn Layer>, Vec<Blob>) {
    let mut layer = make_layer(body).unwrap();
    let mut arena = random_blobs(shapes, 2);
    let nb = shapes.len();
    let mut cx = cx();
    let np = {
        let b: Vec<usize> = (0..nb).collect();
        let mut io = Io::new(&mut arena, &b, &[], &[]);
        layer.setup(&mut cx, &mut io).unwrap().len()
    };
    let (b, t, p) = wiring(nb, nb, np);
    GradientChecker::setup(layer.as_mut(), &mut cx, &mut arena, &b, &t, &p).unwrap();
    let mut io = Io::new(&mut arena, &b, &t, &p);
    layer.forward(&mut cx, &mut io).unwrap();
    let tops = t.iter().map(|&i| arena[i].clone()).collect();
    (layer, tops)
}

/// Finite-difference check (step 1e-2, threshold 1e-2) of every bottom and
/// param of a layer with as many tops as bottoms, on random bottoms.
pub fn check_gradients(body: &str, shapes: &[&[usize]]) {
    check_gradients_on(body, random_blobs(shapes, 3), shapes.len(), &[]);
}

/// The same on given bottoms, with `ntops` tops; `objective` restricts the
/// tops entering the objective (empty: all).
pub fn check_gradients_on(body: &str, bottoms: Vec<Blob>, ntops: usize, objective: &[usize]) {
    let mut layer = make_layer(body).unwrap();
    let nb = bottoms.len();
    let mut arena = bottoms;
    let mut cx = cx();
    let np = {
        let b: Vec<usize> = (0..nb).collect();
        let mut io = Io::new(&mut arena, &b, &[], &[]);
        layer.setup(&mut cx, &mut io).unwrap().len()
    };
    let (b, t, p) = wiring(nb, ntops, np);
    let mut checker = GradientChecker::new(1e-2, 1e-2);
    if !objective.is_empty() {
        checker = checker.objective_tops(objective);
    }
    checker
        .check_layer(layer.as_mut(), &mut cx, &mut arena, &b, &t, &p)
        .unwrap_or_else(|e| panic!("{body}: {e}"));
}

fn values(p: &BlobProto) -> Vec<f32> {
    if p.double_data.is_empty() {
        p.data.clone()
    } else {
        p.double_data.iter().map(|&d| d as f32).collect()
    }
}

/// Replay `../shared/golden/layers/<case>` through the layer directly: load
/// bottoms and Caffe's weights, forward, compare tops; then set the top
/// diffs, zero the param diffs, backward, compare bottom and param diffs.
pub fn check_golden(case: &str) {
    let dir = golden_dir().join("layers").join(case);
    let read = |f: &str| read_blob_proto_vector(&dir.join(f)).unwrap().blobs;
    let text = std::fs::read_to_string(dir.join("net.prototxt")).unwrap();
    let net = parse_net_text(&text, case).unwrap();
    let lp = net.layer.iter().find(|l| l.name() == "layer").unwrap();
    let tol = tolerance_for(lp.r#type());
    let mut layer = create_layer(lp).unwrap();
    let bottoms = read("bottoms.binaryproto");
    let (nb, nt) = (lp.bottom.len(), lp.top.len());
    let mut arena: Vec<Blob> = bottoms
        .iter()
        .map(|bp| Blob::from_host(&Blob::proto_shape(bp).unwrap(), values(bp)))
        .collect();
    let mut cx = cx();
    let learned = {
        let b: Vec<usize> = (0..nb).collect();
        let mut io = Io::new(&mut arena, &b, &[], &[]);
        layer.setup(&mut cx, &mut io).unwrap()
    };
    let (b, t, p) = wiring(nb, nt, learned.len());
    arena.resize_with(nb + nt, Blob::default);
    arena.extend(learned);
    let params_file = dir.join("params.caffemodel");
    if Path::new(&params_file).exists() {
        let weights = read_net_binary(&params_file).unwrap();
        let l = weights.layer.iter().find(|l| l.name() == "layer").unwrap();
        assert_eq!(l.blobs.len(), p.len(), "{case}: param count");
        for (&id, bp) in p.iter().zip(&l.blobs) {
            assert!(arena[id].shape_equals(bp), "{case}: param shape");
            arena[id].copy_from_proto(bp).unwrap();
        }
    }
    let mut fails = Vec::new();
    let mut io = Io::new(&mut arena, &b, &t, &p);
    layer.reshape(&mut cx, &mut io).unwrap();
    layer.forward(&mut cx, &mut io).unwrap();
    for (j, want) in read("tops.binaryproto").iter().enumerate() {
        let top = io.top(j);
        assert_eq!(
            top.shape(),
            Blob::proto_shape(want).unwrap().as_slice(),
            "{case}: top {j} shape"
        );
        fails.push(compare(
            &format!("top {j}"),
            &top.data_vec(),
            &values(want),
            tol,
        ));
    }
    for (j, d) in read("top_diffs.binaryproto").iter().enumerate() {
        io.top_mut(j).set_diff(&values(d)).unwrap();
    }
    for j in 0..p.len() {
        let n = io.param(j).count();
        io.param_mut(j).set_diff(&vec![0.0; n]).unwrap();
    }
    layer.backward(&mut cx, &mut io, &vec![true; nb]).unwrap();
    for (j, want) in read("bottom_diffs.binaryproto").iter().enumerate() {
        fails.push(compare(
            &format!("bottom diff {j}"),
            &io.bottom(j).diff_vec(),
            &values(want),
            tol,
        ));
    }
    if !p.is_empty() {
        for (j, want) in read("param_diffs.binaryproto").iter().enumerate() {
            fails.push(compare(
                &format!("param diff {j}"),
                &io.param(j).diff_vec(),
                &values(want),
                tol,
            ));
        }
    }
    let bad: Vec<String> = fails
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "{}: max abs {:.3e}, max rel {:.3e}",
                c.what, c.max_abs, c.max_rel
            )
        })
        .collect();
    assert!(bad.is_empty(), "{case}: {bad:?}");
}
