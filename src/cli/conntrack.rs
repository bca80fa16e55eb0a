//! `conntrack list|flush` and `gc`.

use clap::{Args, Subcommand};

use crate::bpffs::Root;
use crate::error::Result;
use crate::maps::Maps;

#[derive(Debug, Subcommand)]
pub enum ConntrackCmd {
    /// Show every tracked flow, with its state: assured (seen both ways,
    /// TCP after its handshake: kept under a flood of new flows) or unassured
    List {
        /// One JSON document
        #[arg(long)]
        json: bool,
    },
    /// Forget every tracked flow and every masquerade mapping (established
    /// connections then need a rule again; masqueraded ones break and every
    /// masquerade port is free)
    Flush,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print the counts as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn conntrack(root: &Root, cmd: ConntrackCmd) -> Result<()> {
    crate::bpffs::check_privileges()?;
    let maps = Maps::open(root)?;
    match cmd {
        // streamed as the tables are read: a million flows are never one
        // string (README "Table pressure")
        ConntrackCmd::List { json } => {
            let mut w = crate::out::buffered();
            if json {
                crate::conntrack::write_json(&maps, &mut w)
            } else {
                crate::conntrack::write_table(&maps, &mut w)
            }
        }
        ConntrackCmd::Flush => {
            let _lock = root.lock()?;
            let n = crate::conntrack::flush(&maps)?;
            let nat = crate::nat::flush_nat(&maps)?;
            crate::outln!("zfw: removed {n} flows and {nat} masquerade mappings")?;
            Ok(())
        }
    }
}

pub fn gc(root: &Root, a: GcArgs) -> Result<()> {
    crate::bpffs::check_privileges()?;
    let maps = Maps::open(root)?;
    let _lock = root.lock()?;
    // the leftovers of an interrupted rule change (ARCHITECTURE.md §7)
    let recovered = crate::rules::journal::recover(&maps)?.map(|p| p.op);
    let flows = crate::conntrack::gc(&maps)?;
    let nat = crate::nat::gc_nat(&maps)?;
    if a.json {
        super::print_json(&serde_json::json!({
            "flows_removed": flows,
            "masquerade_removed": nat,
            "rule_change_recovered": recovered,
        }))
    } else {
        if let Some(op) = recovered {
            crate::outln!("zfw: finished an interrupted {op}")?;
        }
        crate::outln!("zfw: removed {flows} expired flows and {nat} stale masquerade mappings")?;
        Ok(())
    }
}
