//! `zfw apply FILE|- [--dry-run] [--prune]` and `zfw export`.

use std::io::{IsTerminal, Read, Write};

use clap::Args;

use crate::apply::{self, export, state};
use crate::bpffs::{check_privileges, Root};
use crate::error::{Context, Error, Result};
use crate::iface_state;
use crate::maps::Maps;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Policy file (JSON, the format `zfw export` prints); `-` reads stdin
    #[arg(value_name = "FILE|-")]
    pub file: String,
    /// Print the difference to the live policy and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove live rules, ddos entries and dnp3 codes the file lacks
    #[arg(long)]
    pub prune: bool,
}

/// A one-line progress display on stderr, only when it is a terminal.
struct Progress {
    on: bool,
    shown: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn show(&mut self, msg: &str) {
        if self.on {
            eprint!("\r\x1b[Kzfw: apply: {msg}...");
            self.shown = true;
        }
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

fn read_input(file: &str) -> Result<(String, String)> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::usage(format!("<stdin>: {e}")))?;
        return Ok(("<stdin>".into(), s));
    }
    let name = crate::error::shown(file);
    let text = std::fs::read_to_string(file).map_err(|e| Error::usage(format!("{name}: {e}")))?;
    Ok((name, text))
}

pub fn apply(root: &Root, a: ApplyArgs) -> Result<()> {
    let mut progress = Progress::new();
    progress.show("reading the file");
    let (name, text) = read_input(&a.file)?;
    progress.show("validating");
    let policy = apply::parse(&name, &text, &mut |m| progress.show(m))?;
    drop(text);
    check_privileges()?;
    let maps = Maps::open(root)?;
    let _lock = root.lock()?;
    // an interrupted change first, so the plan compares with what is in
    // force (ARCHITECTURE.md §7)
    crate::rules::journal::recover(&maps)?;
    progress.show("reading the live policy");
    let plan = apply::plan(&maps, &name, &policy, a.prune)?;
    if !a.dry_run && !plan.changes.is_empty() {
        apply::execute(&maps, &plan, &mut |m| progress.show(m))?;
        iface_state::refresh_all(&maps)?;
    }
    progress.clear();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let w = |out: &mut dyn Write, s: &str| writeln!(out, "{s}").ctx(|| "writing stdout".into());
    if plan.changes.is_empty() {
        w(&mut out, "zfw: nothing to change")?;
        return Ok(());
    }
    for c in &plan.changes {
        w(&mut out, &c.to_string())?;
    }
    w(&mut out, &state::summary(&plan.changes))?;
    if a.dry_run {
        w(&mut out, "zfw: dry run: nothing changed")?;
    } else {
        w(&mut out, "zfw: applied")?;
    }
    out.flush().ctx(|| "writing stdout".into())
}

pub fn export(root: &Root) -> Result<()> {
    check_privileges()?;
    let maps = Maps::open(root)?;
    let live = {
        let _lock = root.lock()?;
        state::read(&maps)?
    };
    super::print_json(&export::document(&live))
}
