//! `zfw completions SHELL` and `zfw manpage`: generated from the clap
//! definitions, so they never drift from the real command line.

use clap::{Args, CommandFactory};

use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: clap_complete::Shell,
}

pub fn completions(a: CompletionsArgs) -> Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "zfw", &mut std::io::stdout());
    Ok(())
}

pub fn manpage() -> Result<()> {
    let cmd = super::Cli::command();
    clap_mangen::Man::new(cmd)
        .render(&mut std::io::stdout())
        .map_err(|e| Error::runtime(format!("writing the man page: {e}")))
}
