//! The `rcaffe` command line: Caffe's tool names as subcommands, gflags
//! spellings accepted (see `args`). Each subcommand lives in its own file
//! as thin glue from arguments to library calls.
//!
//! To add a command: a variant in [`Command`] (its clap `Args` struct in
//! the command's file) and one arm in [`run`].
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub mod args;
pub mod compute_image_mean;
pub mod convert;
pub mod convert_imageset;
pub mod device_query;
pub mod test;
pub mod time;
pub mod train;
pub mod upgrade;

#[derive(Debug, Parser)]
#[command(
    name = "rcaffe",
    version,
    about = "A Caffe-compatible deep-learning trainer",
    long_about = "A Caffe-compatible deep-learning trainer.\n\n\
                  Flags may be written as with Caffe's gflags: -solver x, -solver=x, --solver=x."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum Command {
    /// Train or fine-tune a model
    Train(train::TrainArgs),
    /// Score a model
    Test(test::TestArgs),
    /// Benchmark model execution time
    Time(time::TimeArgs),
    /// Show device diagnostic information
    DeviceQuery(device_query::DeviceQueryArgs),
    /// Convert MNIST IDX image and label files into a database of Datums
    ConvertMnistData(convert::ConvertMnistArgs),
    /// Convert a set of images (a list file of `path label`) into a database of Datums
    ConvertImageset(convert_imageset::ConvertImagesetArgs),
    /// Compute the mean image of a database of Datums
    ComputeImageMean(compute_image_mean::ComputeImageMeanArgs),
    /// Upgrade a net prototxt from any older format (V0, V1, input fields ...)
    UpgradeNetProtoText(upgrade::InOut),
    /// Upgrade a solver prototxt (`solver_type` enum → `type` string)
    UpgradeSolverProtoText(upgrade::InOut),
    /// Upgrade a binary .caffemodel from any older format
    UpgradeNetProtoBinary(upgrade::InOut),
}

/// Run a parsed command; `Ok` carries the exit status (Caffe's upgrade
/// tools exit 1 when an upgrade had problems but still wrote the output).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train(a) => train::run(&a),
        Command::Test(a) => test::run(&a),
        Command::Time(a) => time::run(&a),
        Command::DeviceQuery(a) => device_query::run(&a),
        Command::ConvertMnistData(a) => convert::run(&a),
        Command::ConvertImageset(a) => convert_imageset::run(&a),
        Command::ComputeImageMean(a) => compute_image_mean::run(&a),
        Command::UpgradeNetProtoText(a) => upgrade::net_text(&a),
        Command::UpgradeSolverProtoText(a) => upgrade::solver_text(&a),
        Command::UpgradeNetProtoBinary(a) => upgrade::net_binary(&a),
    }
}

/// The whole program: normalise argv, parse, run, and turn any error into
/// one line `rcaffe: <error>` with exit status 1.
pub fn main() -> ExitCode {
    let kinds = args::FlagKinds::from_command(&Cli::command());
    let argv = args::normalize(std::env::args_os(), &kinds);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        // Usage errors, --help and --version: clap's text and status.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` joins the context chain on one line.
            eprintln!("rcaffe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
