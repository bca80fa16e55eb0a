//! zfw command-line entry point: parse, dispatch, exit.

use clap::Parser;

fn main() {
    let cli = zfw::cli::Cli::parse();
    std::process::exit(zfw::cli::run(cli));
}
