//! Caffe's log lines: glog's prefix and Caffe's message formats.
//!
//! Every line is `<S><MMDD> <hh:mm:ss.uuuuuu> <tid> <file>:<line>] <msg>`,
//! e.g. `I1129 09:05:04.210510 25814 solver.cpp:414] ...`. Tools written
//! for Caffe logs (`parse_log.sh`, `extract_seconds.py`) read fields by
//! position and the date as MMDD, so the prefix keeps exactly four
//! whitespace-separated fields and each message keeps the `file:line` of
//! the Caffe statement that prints it (see [`site`]).
//!
//! Numbers in messages print as C++ `ostream` does by default: `%g` with 6
//! significant digits ([`g`]).
use std::io::Write;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, Local, Timelike};

/// glog's severities; the first letter starts each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Fatal,
}

impl Severity {
    pub fn letter(self) -> char {
        match self {
            Severity::Info => 'I',
            Severity::Warning => 'W',
            Severity::Error => 'E',
            Severity::Fatal => 'F',
        }
    }
}

/// The `file:line` of the Caffe statement behind each message kind
/// (BVLC Caffe 1.0 / master as in the golden logs).
pub mod site {
    // tools/caffe.cpp
    pub const CAFFE_TRAIN_USE_CPU: &str = "caffe.cpp:197";
    pub const CAFFE_TRAIN_USING_GPUS: &str = "caffe.cpp:205";
    pub const CAFFE_RESUMING: &str = "caffe.cpp:235";
    pub const CAFFE_STARTING: &str = "caffe.cpp:239";
    pub const CAFFE_DONE: &str = "caffe.cpp:250";
    pub const CAFFE_TEST_USE_CPU: &str = "caffe.cpp:275";
    pub const CAFFE_TEST_RUNNING: &str = "caffe.cpp:281";
    pub const CAFFE_TEST_BATCH: &str = "caffe.cpp:304";
    pub const CAFFE_TEST_LOSS: &str = "caffe.cpp:309";
    pub const CAFFE_TEST_SCORE: &str = "caffe.cpp:321";
    pub const CAFFE_TIME_USE_CPU: &str = "caffe.cpp:343";
    pub const CAFFE_TIME_FORWARD: &str = "caffe.cpp:351";
    pub const CAFFE_TIME_INITIAL_LOSS: &str = "caffe.cpp:356";
    pub const CAFFE_TIME_BACKWARD: &str = "caffe.cpp:357";
    pub const CAFFE_TIME_BEGINS: &str = "caffe.cpp:365";
    pub const CAFFE_TIME_TESTING_FOR: &str = "caffe.cpp:366";
    pub const CAFFE_TIME_ITERATION: &str = "caffe.cpp:394";
    pub const CAFFE_TIME_PER_LAYER: &str = "caffe.cpp:397";
    pub const CAFFE_TIME_LAYER_FORWARD: &str = "caffe.cpp:400";
    pub const CAFFE_TIME_LAYER_BACKWARD: &str = "caffe.cpp:403";
    pub const CAFFE_TIME_AVG_FORWARD: &str = "caffe.cpp:408";
    pub const CAFFE_TIME_AVG_BACKWARD: &str = "caffe.cpp:410";
    pub const CAFFE_TIME_AVG_FB: &str = "caffe.cpp:412";
    pub const CAFFE_TIME_TOTAL: &str = "caffe.cpp:414";
    pub const CAFFE_TIME_ENDS: &str = "caffe.cpp:415";
    pub const CAFFE_DEVICE_QUERY: &str = "caffe.cpp:155";
    pub const COMMON_DEVICE_QUERY: &str = "common.cpp:181";
    // src/caffe/solver.cpp
    pub const SOLVER_INIT: &str = "solver.cpp:45";
    pub const SOLVER_SCAFFOLDING: &str = "solver.cpp:57";
    pub const SOLVER_FINETUNING: &str = "solver.cpp:72";
    pub const SOLVER_TRAIN_NET_PARAM: &str = "solver.cpp:87";
    pub const SOLVER_TRAIN_NET_FILE: &str = "solver.cpp:91";
    pub const SOLVER_NET_PARAM: &str = "solver.cpp:97";
    pub const SOLVER_NET_FILE: &str = "solver.cpp:102";
    pub const SOLVER_TEST_NET: &str = "solver.cpp:190";
    pub const SOLVER_DISPLAY: &str = "solver.cpp:239";
    pub const SOLVER_TRAIN_OUTPUT: &str = "solver.cpp:258";
    pub const SOLVER_SOLVING: &str = "solver.cpp:289";
    pub const SOLVER_LR_POLICY: &str = "solver.cpp:290";
    pub const SOLVER_RESTORING: &str = "solver.cpp:299";
    pub const SOLVER_STOPPED_EARLY: &str = "solver.cpp:313";
    pub const SOLVER_FINAL_LOSS: &str = "solver.cpp:327";
    pub const SOLVER_DONE: &str = "solver.cpp:332";
    pub const SOLVER_TESTING: &str = "solver.cpp:347";
    pub const SOLVER_TEST_INTERRUPTED: &str = "solver.cpp:397";
    pub const SOLVER_TEST_LOSS: &str = "solver.cpp:401";
    pub const SOLVER_TEST_OUTPUT: &str = "solver.cpp:414";
    pub const SOLVER_SNAPSHOT_MODEL: &str = "solver.cpp:464";
    // src/caffe/solvers/sgd_solver.cpp
    pub const SGD_MULTISTEP: &str = "sgd_solver.cpp:50";
    pub const SGD_CLIP: &str = "sgd_solver.cpp:99";
    pub const SGD_LR: &str = "sgd_solver.cpp:112";
    pub const SGD_SNAPSHOT_STATE: &str = "sgd_solver.cpp:284";
    pub const SGD_RESTORING_HISTORY: &str = "sgd_solver.cpp:336";
    // src/caffe/net.cpp: debug_info (Caffe 1.0 line numbers)
    pub const NET_FORWARD_TOP: &str = "net.cpp:593";
    pub const NET_FORWARD_PARAM: &str = "net.cpp:605";
    pub const NET_BACKWARD_BOTTOM: &str = "net.cpp:621";
    pub const NET_BACKWARD_PARAM: &str = "net.cpp:632";
    pub const NET_UPDATE: &str = "net.cpp:649";
    pub const NET_UPDATE_SHARED: &str = "net.cpp:657";
    pub const NET_BACKWARD_ALL: &str = "net.cpp:721";
    // tools/convert_mnist_data.cpp
    pub const MNIST_TOTAL: &str = "convert_mnist_data.cpp:88";
    pub const MNIST_ROWS_COLS: &str = "convert_mnist_data.cpp:89";
    pub const MNIST_PROCESSED: &str = "convert_mnist_data.cpp:108";
}

type Sink = Box<dyn Write + Send>;

/// Where lines go: stderr unless redirected (tests, embedding programs).
static SINK: Mutex<Option<Sink>> = Mutex::new(None);

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Drop INFO lines logged by the calling thread (warnings and errors still
/// print): the worker replicas of data-parallel training, as Caffe's
/// `LOG_IF(INFO, Caffe::root_solver())` keeps them quiet.
pub fn set_thread_quiet(quiet: bool) {
    QUIET.with(|q| q.set(quiet));
}

/// Send every following line to `w` instead of stderr (`None`: back to
/// stderr). Returns the previous sink.
pub fn set_sink(w: Option<Sink>) -> Option<Sink> {
    let mut s = SINK.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::replace(&mut *s, w)
}

/// The OS thread id glog prints (the process id on the main thread).
fn thread_id() -> u32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        (unsafe { libc::gettid() }) as u32
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::process::id()
    }
}

/// glog's line prefix, up to and including `"] "`.
pub fn prefix(sev: Severity, site: &str, t: &DateTime<Local>, tid: u32) -> String {
    format!(
        "{}{:02}{:02} {:02}:{:02}:{:02}.{:06} {:>5} {}] ",
        sev.letter(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1000 % 1_000_000,
        tid,
        site
    )
}

/// Write one message (which may span several lines, as Caffe's proto
/// dumps do: continuation lines carry no prefix).
pub fn log(sev: Severity, site: &str, msg: &str) {
    if sev == Severity::Info && QUIET.with(|q| q.get()) {
        return;
    }
    let mut line = prefix(sev, site, &Local::now(), thread_id());
    line.push_str(msg);
    // glog ends a line only if the message does not (proto dumps do).
    if !msg.ends_with('\n') {
        line.push('\n');
    }
    let mut s = SINK.lock().unwrap_or_else(|e| e.into_inner());
    match s.as_mut() {
        Some(w) => {
            let _ = w.write_all(line.as_bytes());
            let _ = w.flush();
        }
        None => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

pub fn info(site: &str, msg: &str) {
    log(Severity::Info, site, msg);
}

pub fn warn(site: &str, msg: &str) {
    log(Severity::Warning, site, msg);
}

pub fn error(site: &str, msg: &str) {
    log(Severity::Error, site, msg);
}

/// `LOG(INFO)` with `format!` arguments: `glog_info!(site::X, "a {}", b)`.
#[macro_export]
macro_rules! glog_info {
    ($site:expr, $($t:tt)*) => { $crate::log::info($site, &format!($($t)*)) };
}

/// A number as C++ `ostream << value` prints it with default flags:
/// `%g`, 6 significant digits (`2.30259`, `0.00992565`, `1e-05`, `nan`).
pub fn g(v: impl Into<f64>) -> String {
    let v: f64 = v.into();
    if v.is_nan() {
        // glibc prints the sign of a NaN.
        return if v.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    crate::proto::text::format_g(v, 6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ostream_number_format() {
        assert_eq!(g(std::f32::consts::LN_10), "2.30259");
        assert_eq!(g(0.00992565f32), "0.00992565");
        assert_eq!(g(0.01f32), "0.01");
        assert_eq!(g(1e-5f32), "1e-05");
        assert_eq!(g(1.92673e-05f32), "1.92673e-05");
        assert_eq!(g(0.1f32), "0.1");
        assert_eq!(g(1.0f32), "1");
        assert_eq!(g(100.0f32), "100");
        assert_eq!(g(1234567.0f32), "1.23457e+06");
        assert_eq!(g(0.0f32), "0");
        assert_eq!(g(-0.5f32), "-0.5");
        assert_eq!(g(f32::NAN), "nan");
        assert_eq!(g(f32::INFINITY), "inf");
        assert_eq!(g(f32::NEG_INFINITY), "-inf");
        // The float is widened exactly, then rounded to 6 digits.
        assert_eq!(g(0.894f32), "0.894");
        assert_eq!(g(0.8974f32), "0.8974");
        assert_eq!(g(0.89739990234375f64), "0.8974");
    }

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_go_to_the_sink_with_one_newline() {
        let buf = Shared::default();
        let old = set_sink(Some(Box::new(buf.clone())));
        info(site::SOLVER_DONE, "Optimization Done.");
        info(site::SOLVER_INIT, "dump:\nline 1\n");
        set_sink(old);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        // Other tests may log at the same time; look for ours.
        let done = text
            .lines()
            .find(|l| l.ends_with("Optimization Done."))
            .unwrap();
        assert!(
            done.starts_with('I') && done.contains(" solver.cpp:332] "),
            "{done}"
        );
        assert!(text.contains("] dump:\nline 1\n"), "{text}");
        assert!(!text.contains("line 1\n\n"), "{text}");
    }

    #[test]
    fn glog_prefix_has_four_fields() {
        let t = Local
            .with_ymd_and_hms(2026, 11, 29, 9, 5, 4)
            .unwrap()
            .checked_add_signed(chrono::Duration::microseconds(210510))
            .unwrap();
        let p = prefix(Severity::Info, site::SOLVER_TEST_OUTPUT, &t, 25814);
        assert_eq!(p, "I1129 09:05:04.210510 25814 solver.cpp:414] ");
        let p = prefix(Severity::Warning, "net.cpp:1", &t, 7);
        assert_eq!(p, "W1129 09:05:04.210510     7 net.cpp:1] ");
        assert_eq!(p.split_whitespace().count(), 4);
    }
}
