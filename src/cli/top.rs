//! `top`: a live view of the datapath's counters (README "zfw top").

use std::io::IsTerminal;

use clap::Args;

use crate::bpffs::Root;
use crate::error::Result;
use crate::maps::Maps;

pub const TOP_HELP: &str = "Live view of the datapath, refreshed once a second.

Shows packets/s and totals by verdict and by verdict reason (the per-CPU
counters `status` shows), every pinned map's fill (entries / capacity, fullest
first), the top rules by hits/s, tracked flows by protocol, direction and
state, and ring-buffer events lost. On a terminal it is a full-screen view: q, Esc or Ctrl-C quits and
restores the terminal. When stdout is not a terminal, or with --once or
--count, it prints a plain text block after every second instead (rates over
that second, PACKETS = packets in it, TOTAL = since load), blocks separated by
a blank line.

The \"top rules\" rows rank the rules by hits/s in the last interval: the
first packets of the flows each rule admitted or denied (rule list's PACKETS
column), the 10 busiest that were ever hit.";

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one text block (after one second) and exit
    #[arg(long, conflicts_with = "count")]
    pub once: bool,
    /// Print N text blocks, one per second, and exit
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

pub fn top(root: &Root, a: TopArgs) -> Result<()> {
    if a.count == Some(0) {
        return Err(crate::Error::usage("--count must be at least 1"));
    }
    crate::bpffs::check_privileges()?;
    let maps = Maps::open(root)?;
    let count = if a.once { Some(1) } else { a.count };
    if count.is_none() && std::io::stdout().is_terminal() {
        return crate::top::tui::run(&maps, &root.dir.display().to_string());
    }
    crate::top::text::run(&maps, count)
}
