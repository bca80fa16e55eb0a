//! Command-line definitions (clap derive) and dispatch.  The binary only
//! parses and calls `run`; each command group has its own module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bpffs::{Root, DEFAULT_ROOT};
use crate::error::Result;

pub mod lifecycle;
pub mod nat;

#[derive(Debug, Parser)]
#[command(
    name = "zfw",
    version,
    about = "Stateful eBPF firewall for Linux hosts and routers"
)]
pub struct Cli {
    /// bpffs directory holding zfw's pinned maps and programs
    #[arg(long, global = true, env = "ZFW_BPFFS", default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub bpffs: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the datapath and attach it to interfaces (then exit; it keeps running)
    Load(lifecycle::LoadArgs),
    /// Detach interfaces, or everything (--all: also removes the pins)
    Unload(lifecycle::UnloadArgs),
    /// Show interfaces, hooks, settings, map fill levels and counters
    Status(lifecycle::StatusArgs),
    /// Masquerade (NAT) mappings
    Masquerade {
        #[command(subcommand)]
        cmd: nat::MasqueradeCmd,
    },
    /// Remove stale state: idle or orphaned masquerade mappings
    Gc(nat::GcArgs),
}

/// Run a parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    quiet_libbpf();
    let root = Root::new(cli.bpffs.clone());
    let res: Result<()> = match cli.command {
        Command::Load(a) => lifecycle::load(&root, a),
        Command::Unload(a) => lifecycle::unload(&root, a),
        Command::Status(a) => lifecycle::status(&root, a),
        Command::Masquerade { cmd } => nat::masquerade(&root, cmd),
        Command::Gc(a) => nat::gc(&root, a),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Print one JSON document on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| crate::error::Error::runtime(format!("encoding JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

/// libbpf prints kernel extack notes (e.g. "Exclusivity flag on") for
/// conditions zfw handles itself; show its chatter only with ZFW_DEBUG set.
pub fn quiet_libbpf() {
    if std::env::var_os("ZFW_DEBUG").is_some() {
        return;
    }
    libbpf_rs::set_print(None);
}
