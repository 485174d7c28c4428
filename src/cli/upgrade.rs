//! Caffe's `upgrade_net_proto_text`, `upgrade_solver_proto_text` and
//! `upgrade_net_proto_binary`: read, upgrade, write (atomically), with
//! Caffe's messages on stderr. As in Caffe, an upgrade with problems still
//! writes its output and exits with status 1; an unreadable input is an
//! error and writes nothing.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use rcaffe::proto::upgrade::{self, Report};
use rcaffe::proto::{binary, text};

use super::log_message;

#[derive(Debug, Args)]
pub struct InOut {
    /// The file to upgrade
    pub input: PathBuf,
    /// Where to write the upgraded file (replaced atomically)
    pub output: PathBuf,
}

/// Print an upgrade's messages; returns Caffe's `success`.
fn report(r: &Report) -> bool {
    for n in &r.notes {
        log_message(&n.text);
    }
    if !r.success {
        log_message("Encountered error(s) while upgrading prototxt; see details above.");
    }
    r.success
}

fn already_latest(input: &Path) -> bool {
    log_message(&format!("File already in latest proto format: {}", input.display()));
    true
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
        report(&upgrade::upgrade_net(&mut net, &a.input.display().to_string())?)
    } else {
        already_latest(&a.input)
    };
    binary::write_bytes_atomic(&a.output, text::print_net(&net).as_bytes())?;
    log_message(&format!(
        "Wrote upgraded NetParameter text proto to {}",
        a.output.display()
    ));
    Ok(status(success))
}

pub fn solver_text(a: &InOut) -> anyhow::Result<ExitCode> {
    let mut solver = text::read_solver_text(&a.input)?;
    let success = if upgrade::solver_needs_type_upgrade(&solver) {
        report(&upgrade::upgrade_solver(
            &mut solver,
            &a.input.display().to_string(),
        )?)
    } else {
        already_latest(&a.input)
    };
    binary::write_bytes_atomic(&a.output, text::print_solver(&solver).as_bytes())?;
    log_message(&format!(
        "Wrote upgraded SolverParameter text proto to {}",
        a.output.display()
    ));
    Ok(status(success))
}

pub fn net_binary(a: &InOut) -> anyhow::Result<ExitCode> {
    let mut net = binary::read_net_binary(&a.input)?;
    let success = if upgrade::net_needs_upgrade(&net) {
        report(&upgrade::upgrade_net(&mut net, &a.input.display().to_string())?)
    } else {
        already_latest(&a.input)
    };
    binary::write_net_binary(&a.output, &net)?;
    log_message(&format!(
        "Wrote upgraded NetParameter binary proto to {}",
        a.output.display()
    ));
    Ok(status(success))
}
