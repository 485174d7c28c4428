//! Golden cases (real BVLC Caffe outputs) for LSTM, RNN and LSTMUnit, run
//! through a `Net` on the CPU backend: tops, bottom diffs and param diffs.
use rcaffe::testing::golden::{assert_case, run_case};

/// Every comparison passes, and tops, bottom diffs (and param diffs where
/// the layer has params) were all compared.
fn check(case: &str, has_params: bool) {
    assert_case(case);
    let r = run_case(case).unwrap();
    let has = |p: &str| r.comparisons.iter().any(|c| c.what.starts_with(p));
    assert!(has("top "), "{}", r.summary());
    assert!(has("bottom diff "), "{}", r.summary());
    assert_eq!(has("param "), has_params, "{}", r.summary());
}

#[test]
fn lstm() {
    check("lstm", true);
}

#[test]
fn lstm_static_input() {
    check("lstm_static_input", true);
}

#[test]
fn lstm_unit() {
    check("lstm_unit", false);
}

#[test]
fn rnn() {
    check("rnn", true);
}
