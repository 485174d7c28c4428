//! The log of a short `rcaffe train` run read the way Caffe's own tools
//! read Caffe logs: `tools/extra/parse_log.py` (its regular expressions
//! and row logic, ported here without a regex engine),
//! `extract_seconds.py` (MMDD date and time from the first two fields)
//! and `parse_log.sh` (awk fields `$9` and `$11`).
use std::path::Path;
use std::process::Command;

fn golden() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden/train")
}

/// Train LeNet for 4 iterations (display 1, tests at 0, 2, 4; lr halves
/// every iteration) and return the log.
fn short_run() -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = golden().join("data").canonicalize().unwrap();
    let net = std::fs::read_to_string(golden().join("sgd/net.prototxt"))
        .unwrap()
        .replace("\"../data/", &format!("\"{}/", data.display()));
    std::fs::write(dir.path().join("net.prototxt"), net).unwrap();
    let solver = "net: \"net.prototxt\"\ntest_iter: 2\ntest_interval: 2\nbase_lr: 0.01\n\
                  momentum: 0.9\nlr_policy: \"step\"\ngamma: 0.5\nstepsize: 1\ndisplay: 1\n\
                  max_iter: 4\nsnapshot_prefix: \"short\"\nrandom_seed: 1\n";
    std::fs::write(dir.path().join("solver.prototxt"), solver).unwrap();
    let weights = golden().join("init.caffemodel");
    let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
        .args(["train", "-solver", "solver.prototxt", "-weights"])
        .arg(&weights)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

// ------------------------------------------------ parse_log.py's regexes --

/// `Iteration (\d+)`: the first "Iteration " followed by digits.
fn re_iteration(line: &str) -> Option<f64> {
    let mut rest = line;
    while let Some(i) = rest.find("Iteration ") {
        rest = &rest[i + "Iteration ".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            return digits.parse().ok();
        }
    }
    None
}

/// `<kind> net output #(\d+): (\S+) = ([\.\deE+-]+)`.
fn re_output(line: &str, kind: &str) -> Option<(String, f64)> {
    let marker = format!("{kind} net output #");
    let mut rest = line;
    while let Some(i) = rest.find(&marker) {
        rest = &rest[i + marker.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let Some(after) = rest[digits..].strip_prefix(": ").filter(|_| digits > 0) else {
            continue;
        };
        let name_len = after.find(char::is_whitespace).unwrap_or(after.len());
        let (name, tail) = after.split_at(name_len);
        let Some(tail) = tail.strip_prefix(" = ").filter(|_| !name.is_empty()) else {
            continue;
        };
        let value: String = tail
            .chars()
            .take_while(|c| c.is_ascii_digit() || ".eE+-".contains(*c))
            .collect();
        if !value.is_empty() {
            // Python's float() of the match; a malformed one would raise.
            return Some((name.to_string(), value.parse().unwrap()));
        }
    }
    None
}

/// `lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)`.
fn re_lr(line: &str) -> Option<f64> {
    let i = line.find("lr = ")?;
    let s = &line[i + 5..];
    let b = s.as_bytes();
    let mut k = 0;
    if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
        k += 1;
    }
    let int_start = k;
    while k < b.len() && b[k].is_ascii_digit() {
        k += 1;
    }
    let int_digits = k - int_start;
    let mut end = k;
    if k < b.len() && b[k] == b'.' {
        let frac_start = k + 1;
        let mut j = frac_start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > frac_start {
            end = j;
        }
    }
    if end == k && int_digits == 0 {
        return None;
    }
    // Optional exponent: [eE]?[-+]?[0-9]+
    let mut j = end;
    if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
        j += 1;
    }
    if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
        j += 1;
    }
    let exp_digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
    if exp_digits > 0 {
        end = j + exp_digits;
    }
    s[..end].parse().ok()
}

// ------------------------------------------------- extract_seconds.py --

/// Seconds since the epoch-less origin from `I<MMDD> <hh:mm:ss.uuuuuu>`;
/// `None` where Python's int()/datetime() would raise.
fn line_time(line: &str) -> Option<f64> {
    let mut f = line.split_whitespace();
    let (d, t) = (f.next()?, f.next()?);
    let month: u32 = d.get(1..3)?.parse().ok()?;
    let day: u32 = d.get(3..5)?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let pos = t.rfind('.')?;
    let hms: Vec<u32> = t[..pos]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let micro: u32 = t[pos + 1..].parse().ok()?;
    if hms.len() != 3 || hms[0] > 23 || hms[1] > 59 || hms[2] > 59 || micro > 999_999 {
        return None;
    }
    let days = f64::from(month * 31 + day);
    Some(days * 86400.0 + f64::from(hms[0] * 3600 + hms[1] * 60 + hms[2]) + f64::from(micro) * 1e-6)
}

#[derive(Debug, Clone)]
struct Row {
    iters: f64,
    seconds: f64,
    lr: f64,
    cols: Vec<(String, f64)>,
}

impl Row {
    fn len(&self) -> usize {
        3 + self.cols.len()
    }
}

/// `parse_line_for_net_output`: rows complete when they have as many
/// columns as the first row.
fn net_output(
    kind: &str,
    line: &str,
    row: &mut Option<Row>,
    rows: &mut Vec<Row>,
    iteration: f64,
    seconds: f64,
    lr: f64,
) {
    if let Some((name, value)) = re_output(line, kind) {
        if row.as_ref().is_none_or(|r| r.iters != iteration) {
            if let Some(r) = row.take() {
                rows.push(r);
            }
            *row = Some(Row {
                iters: iteration,
                seconds,
                lr,
                cols: Vec::new(),
            });
        }
        row.as_mut().unwrap().cols.push((name, value));
    }
    if let (Some(r), Some(first)) = (row.as_ref(), rows.first()) {
        if r.len() == first.len() {
            rows.push(row.take().unwrap());
        }
    }
}

/// `parse_log`: (train rows, test rows).
fn parse_log(log: &str) -> (Vec<Row>, Vec<Row>) {
    let start = log
        .lines()
        .find(|l| l.contains("Solving"))
        .and_then(line_time)
        .expect("no parsable 'Solving' line");
    let (mut iteration, mut lr) = (-1.0, f64::NAN);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let (mut train_row, mut test_row) = (None, None);
    for line in log.lines() {
        if let Some(i) = re_iteration(line) {
            iteration = i;
        }
        if iteration == -1.0 {
            continue;
        }
        let Some(t) = line_time(line) else { continue };
        let seconds = t - start;
        if let Some(v) = re_lr(line) {
            lr = v;
        }
        net_output(
            "Train",
            line,
            &mut train_row,
            &mut train,
            iteration,
            seconds,
            lr,
        );
        net_output(
            "Test",
            line,
            &mut test_row,
            &mut test,
            iteration,
            seconds,
            lr,
        );
    }
    for rows in [&mut train, &mut test] {
        // fix_initial_nan_learning_rate
        if rows.len() > 1 && rows[0].lr.is_nan() {
            rows[0].lr = rows[1].lr;
        }
    }
    (train, test)
}

#[test]
fn caffe_log_parsers_read_rcaffe_logs() {
    let log = short_run();

    // Every prefixed line: glog's four fields, MMDD date, `file:line] `.
    let mut prefixed = 0;
    for line in log.lines().filter(|l| l.starts_with(['I', 'W', 'E', 'F'])) {
        let Some((head, _)) = line.split_once("] ") else {
            continue;
        };
        let fields: Vec<&str> = head.split_whitespace().collect();
        if fields.len() != 4 || fields[0].len() != 5 || !fields[3].contains(".cpp:") {
            continue; // a continuation line of a multi-line message
        }
        assert!(line_time(line).is_some(), "unparsable time: {line}");
        assert!(fields[2].parse::<u32>().is_ok(), "thread id: {line}");
        let (_, lineno) = fields[3].rsplit_once(':').unwrap();
        assert!(lineno.parse::<u32>().is_ok(), "file:line: {line}");
        prefixed += 1;
    }
    assert!(prefixed > 30, "{log}");

    let (train, test) = parse_log(&log);
    let iters = |rows: &[Row]| rows.iter().map(|r| r.iters).collect::<Vec<_>>();
    assert_eq!(iters(&train), [0.0, 1.0, 2.0, 3.0], "{train:?}");
    assert_eq!(iters(&test), [0.0, 2.0, 4.0], "{test:?}");
    // The lr of a row is the last lr line before it (Caffe prints the lr
    // after the outputs); the first row copies the second's.
    let lrs = |rows: &[Row]| rows.iter().map(|r| r.lr as f32).collect::<Vec<_>>();
    assert_eq!(lrs(&train), [0.01, 0.01, 0.005, 0.0025]);
    assert_eq!(lrs(&test), [0.005, 0.005, 0.00125]);
    for r in &train {
        assert_eq!(r.cols.len(), 1);
        assert_eq!(r.cols[0].0, "loss");
        assert!(r.cols[0].1 > 0.0 && r.cols[0].1 < 10.0);
    }
    for r in &test {
        let names: Vec<&str> = r.cols.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["accuracy", "loss"]);
        assert!((0.0..=1.0).contains(&r.cols[0].1));
    }
    for rows in [&train, &test] {
        assert!(rows.windows(2).all(|w| w[0].seconds <= w[1].seconds));
        assert!(rows.iter().all(|r| (0.0..600.0).contains(&r.seconds)));
    }

    // parse_log.sh: awk $9 of the lr lines, $11 of the test output lines,
    // and a "] Solving " line to time from.
    assert!(log.lines().any(|l| l.contains("] Solving ")));
    let field = |l: &str, n: usize| l.split_whitespace().nth(n - 1).unwrap_or("").to_string();
    let lr9: Vec<String> = log
        .lines()
        .filter(|l| l.contains(", lr = "))
        .map(|l| field(l, 9))
        .collect();
    assert_eq!(lr9, ["0.01", "0.005", "0.0025", "0.00125"]);
    let acc11: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("Test net output #0"))
        .map(|l| field(l, 11).parse().unwrap())
        .collect();
    let want: Vec<f64> = test.iter().map(|r| r.cols[0].1).collect();
    assert_eq!(acc11, want);
    let loss11: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("Test net output #1"))
        .map(|l| field(l, 11).parse().unwrap())
        .collect();
    assert_eq!(loss11, test.iter().map(|r| r.cols[1].1).collect::<Vec<_>>());
    // The train loss: everything after the first '=' of ", loss = " lines.
    let losses: Vec<f64> = log
        .lines()
        .filter(|l| l.contains(", loss = "))
        .map(|l| l.split_once('=').unwrap().1.trim().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 5, "4 display lines and the final one");
    let displayed: Vec<f64> = train.iter().map(|r| r.cols[0].1).collect();
    assert_eq!(&losses[..4], &displayed[..]);

    // Caffe's closing lines, from solver.cpp and caffe.cpp.
    assert!(log.contains(" solver.cpp:327] Iteration 4, loss = "));
    assert!(log.contains(" solver.cpp:332] Optimization Done.\n"));
    assert!(log.ends_with(" caffe.cpp:250] Optimization Done.\n"));
    assert!(log
        .contains(" solver.cpp:464] Snapshotting to binary proto file short_iter_4.caffemodel\n"));
}

#[test]
fn regex_ports_match_the_patterns() {
    assert_eq!(re_iteration("x] Iteration 12, lr = 0.1"), Some(12.0));
    assert_eq!(re_iteration("x] Iteration: 3 forward"), None);
    assert_eq!(re_lr("Iteration 0, lr = 0.00999925"), Some(0.00999925));
    assert_eq!(re_lr("lr = 1e-05"), Some(1e-5));
    assert_eq!(re_lr("lr = -2.5E+03x"), Some(-2500.0));
    assert_eq!(re_lr("lr = nan"), None);
    assert_eq!(
        re_output(
            "    Train net output #0: loss = 2.3 (* 1 = 2.3 loss)",
            "Train"
        ),
        Some(("loss".to_string(), 2.3))
    );
    assert_eq!(re_output("Test net output #1: acc = inf", "Test"), None);
    assert!(line_time("I1129 09:05:04.210510 25814 solver.cpp:414] x").is_some());
    // The YYYYMMDD form of newer glogs is what Caffe's parser cannot read.
    assert!(line_time("I20261129 09:05:04.210510 25814 solver.cpp:414] x").is_none());
}

/// `rcaffe test` and `rcaffe time` print Caffe's lines.
#[test]
fn test_and_time_commands_log_like_caffe() {
    let dir = tempfile::tempdir().unwrap();
    let data = golden().join("data").canonicalize().unwrap();
    let net = std::fs::read_to_string(golden().join("sgd/net.prototxt"))
        .unwrap()
        .replace("\"../data/", &format!("\"{}/", data.display()));
    std::fs::write(dir.path().join("net.prototxt"), net).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rcaffe"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}:\n{log}");
        log
    };
    let weights = golden().join("init.caffemodel").display().to_string();
    let log = run(&[
        "test",
        "--model=net.prototxt",
        "--weights",
        &weights,
        "-iterations",
        "2",
    ]);
    for needle in [
        " caffe.cpp:275] Use CPU.\n",
        " caffe.cpp:281] Running for 2 iterations.\n",
        " caffe.cpp:304] Batch 0, accuracy = ",
        " caffe.cpp:304] Batch 1, loss = ",
        " caffe.cpp:309] Loss: ",
        " caffe.cpp:321] accuracy = ",
    ] {
        assert!(log.contains(needle), "missing {needle:?}:\n{log}");
    }
    // The loss line carries its weight, as Caffe prints it.
    let line = log
        .lines()
        .find(|l| l.contains("caffe.cpp:321] loss = "))
        .unwrap();
    let v = line
        .split("loss = ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(line.ends_with(&format!("{v} (* 1 = {v} loss)")), "{line}");

    let log = run(&["time", "-model", "net.prototxt", "-iterations", "2"]);
    for needle in [
        " caffe.cpp:343] Use CPU.\n",
        " caffe.cpp:351] Performing Forward\n",
        " caffe.cpp:356] Initial loss: ",
        " caffe.cpp:357] Performing Backward\n",
        " caffe.cpp:365] *** Benchmark begins ***\n",
        " caffe.cpp:366] Testing for 2 iterations.\n",
        " caffe.cpp:394] Iteration: 2 forward-backward time: ",
        " caffe.cpp:397] Average time per layer: \n",
        " caffe.cpp:400]      conv1\tforward: ",
        " caffe.cpp:403]        ip1\tbackward: ",
        " caffe.cpp:408] Average Forward pass: ",
        " caffe.cpp:410] Average Backward pass: ",
        " caffe.cpp:412] Average Forward-Backward: ",
        " caffe.cpp:414] Total Time: ",
        " caffe.cpp:415] *** Benchmark ends ***\n",
    ] {
        assert!(log.contains(needle), "missing {needle:?}:\n{log}");
    }
    let n_layers = log.matches("\tforward: ").count();
    assert_eq!(n_layers, 9, "one line per LeNet layer:\n{log}");
}
