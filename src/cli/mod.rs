//! Command-line definitions (clap derive) and dispatch.  The binary only
//! parses and calls `run`; each command group has its own module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bpffs::{Root, DEFAULT_ROOT};
use crate::error::Result;

pub mod apply;
pub mod audit;
pub mod conntrack;
pub mod ddos;
pub mod docs;
pub mod iface;
pub mod lifecycle;
pub mod metrics;
pub mod nat;
pub mod ot;
pub mod rules;
pub mod top;

#[derive(Debug, Parser)]
#[command(
    name = "zfw",
    version,
    about = "Stateful eBPF firewall for Linux hosts and routers",
    after_help = "The C zfw's command line (v0.9.21) works too, for OpenZiti's router and \
ziti-edge-tunnel: `zfw -I -c 10.0.0.1 -m 32 -l 80 -h 80 -t 0 -p tcp`, `zfw -L`, `zfw -Q`, ... \
(`zfw -?` lists its flags; `zfw --bpffs DIR -L` or ZFW_BPFFS=DIR for another root). \
README: \"Replacing the C zfw under OpenZiti\".\n\n\
Commands that change state take the bpffs root's lock (/run/zfw/NAME.lock, root's, 0600). \
A command that finds it taken says who holds it and waits at most ZFW_LOCK_TIMEOUT seconds \
(default 60; 0: do not wait), then fails (exit 1). The root, its maps/ and progs/ and every \
directory above it must belong to root and be closed to writes by others."
)]
pub struct Cli {
    /// bpffs directory holding zfw's pinned maps and programs
    #[arg(long, global = true, env = "ZFW_BPFFS", default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub bpffs: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

const WATCH_HELP: &str = "Follow the kernel's interface addresses live.

Subscribes to rtnetlink link and address notifications and, within
milliseconds of each change on an interface zfw is attached to, rewrites the
addresses the datapath uses for the SSH and ICMP echo exceptions and for
masquerade; logs one line per change on stdout. Masquerade mappings made with
an address the interface no longer has are dropped (a UDP/ICMP flow gets a new
mapping with the current address on its next packet; a TCP connection through
the old address ends). Everything is re-read at start, after a notification
overflow (ENOBUFS) and on SIGTERM/SIGINT. An attached interface deleted and
re-created under the same name is re-attached with its settings (logged as a
WARNING).

Lease: the watcher renews a lease every 1 s; while it is more than 3 s old
(watcher killed or hung) the datapath grants no SSH or ICMP echo exception to
interface addresses (established connections and rules are not affected).
SIGTERM/SIGINT end it cleanly and return to static mode (addresses refreshed
only by zfw commands, as without a watcher). Run it as a service:
packaging/zfw-watch.service (Restart=always).

Garbage collection: every --gc-interval seconds (default 30, 0: never) it
does what `zfw gc` does to flows and masquerade mappings: it removes expired
flows and stale mappings. The main flow tables do not evict (README \"Table
pressure\"), so on a host where flows often end without a FIN or RST (UDP,
vanished peers) this is what keeps them from filling with dead entries.";

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Remove expired flows and stale masquerade mappings every SECS seconds (0: never)
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub gc_interval: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the datapath and attach it to interfaces (then exit; it keeps running)
    Load(lifecycle::LoadArgs),
    /// Detach interfaces, or everything (--all: also removes the pins)
    Unload(lifecycle::UnloadArgs),
    /// Show interfaces, hooks, settings, map fill levels and counters
    Status(lifecycle::StatusArgs),
    /// Tracked connections
    #[command(subcommand)]
    Conntrack(conntrack::ConntrackCmd),
    /// Remove expired flow state and stale masquerade mappings (half-open ones after 60 s)
    Gc(conntrack::GcArgs),
    /// Follow interface addresses live (long-running; run it as a service)
    #[command(long_about = WATCH_HELP)]
    Watch(WatchArgs),
    /// Print every map (or --map NAME) decoded as JSON
    Dump(audit::DumpArgs),
    /// Stream datapath events (drops, state changes) until Ctrl-C or --count
    Monitor(audit::MonitorArgs),
    /// Prometheus metrics: print them once, or serve GET /metrics (--listen)
    Metrics(metrics::MetricsArgs),
    /// Live view: packets/s by verdict and reason, map fill, flows (q quits)
    #[command(long_about = top::TOP_HELP)]
    Top(top::TopArgs),
    /// Print shell completions
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff)
    Manpage,
    /// Add, delete, list and flush rules
    #[command(subcommand)]
    Rule(rules::RuleCmd),
    /// Per-interface settings
    #[command(subcommand)]
    Iface(iface::IfaceCmd),
    /// SYN protection: protected ports, whitelist, per-source SYN rate limit
    Ddos(ddos::DdosArgs),
    /// OT protocol filtering settings (DNP3 function codes)
    Ot(ot::OtArgs),
    /// Masquerade (NAT) mappings
    Masquerade {
        #[command(subcommand)]
        cmd: nat::MasqueradeCmd,
    },
    /// Make the live policy match a policy file (validated in full first)
    Apply(apply::ApplyArgs),
    /// Print the live policy in the format `apply` reads
    Export,
}

/// Run a parsed command line; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    crate::loader::quiet_libbpf();
    let root = Root::new(cli.bpffs.clone());
    let res: Result<()> = match cli.command {
        Command::Load(a) => lifecycle::load(&root, a),
        Command::Unload(a) => lifecycle::unload(&root, a),
        Command::Status(a) => lifecycle::status(&root, a),
        Command::Conntrack(c) => conntrack::conntrack(&root, c),
        Command::Gc(a) => conntrack::gc(&root, a),
        Command::Watch(a) => crate::watch::run(&root, a.gc_interval),
        Command::Dump(a) => audit::dump(&root, a),
        Command::Monitor(a) => audit::monitor(&root, a),
        Command::Metrics(a) => metrics::metrics(&root, a),
        Command::Top(a) => top::top(&root, a),
        Command::Completions(a) => docs::completions(a),
        Command::Manpage => docs::manpage(),
        Command::Rule(c) => rules::run(&root, c),
        Command::Iface(c) => iface::run(&root, c),
        Command::Ddos(a) => ddos::run(&root, a),
        Command::Ot(a) => ot::run(&root, a),
        Command::Masquerade { cmd } => nat::masquerade(&root, cmd),
        Command::Apply(a) => apply::apply(&root, a),
        Command::Export => apply::export(&root),
    };
    match res {
        Ok(()) => 0,
        // the reader went away (`zfw export | head -c1`): quietly, as coreutils
        Err(e) if e.is_broken_pipe() => e.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Print clap's help or version, or its usage error as one line (its
/// first, with control bytes escaped and cut: it may quote the user's
/// words), and return the exit status; a failed write is handled as every
/// command's output is (src/out.rs).
pub fn clap_exit(e: &clap::Error) -> i32 {
    if e.use_stderr() {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("error: bad usage");
        eprintln!("{}", escape_line(first));
        return e.exit_code();
    }
    match e.print() {
        Ok(()) => e.exit_code(),
        Err(w) => {
            let err = crate::error::Error::Output(w);
            if !err.is_broken_pipe() {
                eprintln!("error: {err}");
            }
            err.exit_code()
        }
    }
}

/// A message line with control characters as `\xNN`, cut after 300 bytes.
fn escape_line(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= 300 {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Print one JSON document on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| crate::error::Error::runtime(format!("encoding JSON: {e}")))?;
    crate::outln!("{s}")?;
    Ok(())
}
