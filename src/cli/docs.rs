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
    // into memory first: clap_complete panics when its writer fails
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "zfw", &mut buf);
    crate::out::write_bytes(&buf)
}

pub fn manpage() -> Result<()> {
    let cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| Error::runtime(format!("rendering the man page: {e}")))?;
    crate::out::write_bytes(&buf)
}
