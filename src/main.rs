//! The `verdict` binary: parse the command line, hand over to `app`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    verdict::app::main(verdict::cli::Cli::parse())
}
