//! The `wharf` command: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    wharf::cli::main(wharf::cli::Cli::parse())
}
