//! `masquerade list` and `gc`.

use clap::{Args, Subcommand};

use crate::bpffs::Root;
use crate::error::Result;
use crate::iface_state;
use crate::maps::Maps;
use crate::nat;

#[derive(Debug, Subcommand)]
pub enum MasqueradeCmd {
    /// Show the translated flows (masquerade_map + masquerade_reverse_map)
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// One JSON document instead of a table
    #[arg(long)]
    pub json: bool,
}

fn iface_name(maps: &Maps, ifindex: u32) -> String {
    maps.ifaces()
        .ok()
        .and_then(|v| v.into_iter().find(|(i, _)| *i == ifindex))
        .map(|(_, st)| iface_state::name_str(&st.name))
        .unwrap_or_else(|| ifindex.to_string())
}

pub fn masquerade(root: &Root, cmd: MasqueradeCmd) -> Result<()> {
    let MasqueradeCmd::List(a) = cmd;
    let maps = Maps::open(root)?;
    let bit = iface_state::flag_bit("masquerade").unwrap_or(0);
    for (_, st) in maps.ifaces()? {
        if st.flags & bit != 0 {
            if let Err(e) = nat::check_hooks(&iface_state::name_str(&st.name), &st) {
                eprintln!("warning: {e}");
            }
        }
    }
    let entries = nat::list_nat(&maps)?;
    if a.json {
        return super::print_json(&entries);
    }
    crate::outln!(
        "{:<10} {:<6} {:<44} {:<44} {:<44} {:<12} {:>6}",
        "IFACE",
        "PROTO",
        "INSIDE",
        "OUTSIDE",
        "REMOTE",
        "STATE",
        "IDLE"
    )?;
    for e in &entries {
        crate::outln!(
            "{:<10} {:<6} {:<44} {:<44} {:<44} {:<12} {:>5}s",
            iface_name(&maps, e.ifindex),
            e.proto,
            e.inside,
            e.outside.as_deref().unwrap_or("-"),
            e.remote,
            e.state,
            e.idle_s
        )?;
    }
    Ok(())
}
