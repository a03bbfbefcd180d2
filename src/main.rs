//! The `wharf` command: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc rather than the system allocator: see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wharf::cli::main(wharf::cli::Cli::parse())
}
