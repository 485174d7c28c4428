//! Caffe's `upgrade_net_proto_text`, `upgrade_solver_proto_text` and
//! `upgrade_net_proto_binary`: read, upgrade, write (atomically), with
//! Caffe's messages on stderr. As in Caffe, an upgrade with problems still
//! writes its output and exits with status 1; an unreadable input is an
//! error and writes nothing.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use rcaffe::log::{error, info};
use rcaffe::proto::upgrade::{self, Report};
use rcaffe::proto::{binary, text};

/// Which of Caffe's three tools is running: its messages name its source.
#[derive(Clone, Copy)]
struct Tool(&'static str);

impl Tool {
    // Sites of the tools' own messages (tools/upgrade_*.cpp; approximate).
    fn site(self, line: u32) -> String {
        format!("{}.cpp:{line}", self.0)
    }
}

const NET_TEXT: Tool = Tool("upgrade_net_proto_text");
const SOLVER_TEXT: Tool = Tool("upgrade_solver_proto_text");
const NET_BINARY: Tool = Tool("upgrade_net_proto_binary");

#[derive(Debug, Args)]
pub struct InOut {
    /// The file to upgrade
    pub input: PathBuf,
    /// Where to write the upgraded file (replaced atomically)
    pub output: PathBuf,
}

/// Log an upgrade's messages; returns Caffe's `success`.
fn report(tool: Tool, r: &Report) -> bool {
    r.log();
    if !r.success {
        error(
            &tool.site(36),
            "Encountered error(s) while upgrading prototxt; see details above.",
        );
    }
    r.success
}

fn already_latest(tool: Tool, input: &Path) -> bool {
    error(
        &tool.site(40),
        &format!("File already in latest proto format: {}", input.display()),
    );
    true
}

fn wrote(tool: Tool, what: &str, output: &Path) {
    info(
        &tool.site(51),
        &format!("Wrote upgraded {what} to {}", output.display()),
    );
}

fn status(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn net_text(a: &InOut) -> anyhow::Result<ExitCode> {
    let mut net = text::read_net_text(&a.input)?;
    let success = if upgrade::net_needs_upgrade(&net) {
        report(
            NET_TEXT,
            &upgrade::upgrade_net(&mut net, &a.input.display().to_string())?,
        )
    } else {
        already_latest(NET_TEXT, &a.input)
    };
    binary::write_bytes_atomic(&a.output, text::print_net(&net).as_bytes())?;
    wrote(NET_TEXT, "NetParameter text proto", &a.output);
    Ok(status(success))
}

pub fn solver_text(a: &InOut) -> anyhow::Result<ExitCode> {
    let mut solver = text::read_solver_text(&a.input)?;
    let success = if upgrade::solver_needs_type_upgrade(&solver) {
        report(
            SOLVER_TEXT,
            &upgrade::upgrade_solver(&mut solver, &a.input.display().to_string())?,
        )
    } else {
        already_latest(SOLVER_TEXT, &a.input)
    };
    binary::write_bytes_atomic(&a.output, text::print_solver(&solver).as_bytes())?;
    wrote(SOLVER_TEXT, "SolverParameter text proto", &a.output);
    Ok(status(success))
}

pub fn net_binary(a: &InOut) -> anyhow::Result<ExitCode> {
    let mut net = binary::read_net_binary(&a.input)?;
    let success = if upgrade::net_needs_upgrade(&net) {
        report(
            NET_BINARY,
            &upgrade::upgrade_net(&mut net, &a.input.display().to_string())?,
        )
    } else {
        already_latest(NET_BINARY, &a.input)
    };
    binary::write_net_binary(&a.output, &net)?;
    wrote(NET_BINARY, "NetParameter binary proto", &a.output);
    Ok(status(success))
}
