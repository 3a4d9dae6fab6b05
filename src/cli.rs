//! The command line (design §1): `verdict run`, `verdict validate`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

/// verdict turns live OpenTelemetry telemetry into release decisions:
/// PROMOTED or ROLLED_BACK, per versioned validation contract.
#[derive(Debug, Parser)]
#[command(name = "verdict", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server with a pipeline file.
    Run {
        /// Pipeline file (YAML).
        #[arg(short, long, default_value = "pipelines/default.yaml")]
        config: PathBuf,
        /// How long a graceful stop may take before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
    /// Check a pipeline file and print every problem with its path.
    Validate {
        /// Pipeline file (YAML).
        #[arg(short, long, default_value = "pipelines/default.yaml")]
        config: PathBuf,
    },
}
