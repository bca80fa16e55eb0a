//! `dump` and `monitor`.

use clap::Args;

use crate::bpffs::Root;
use crate::error::Result;
use crate::maps::Maps;

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Only this map (repeatable); default: every map
    #[arg(long = "map", value_name = "NAME")]
    pub map: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Only events of this interface
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// One JSON object per line; {"lost":N} when N events could not be
    /// queued (ring buffer full; text mode: "N events lost")
    #[arg(long)]
    pub json: bool,
    /// Exit after N events
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Also report every drop on every interface while running (and at
    /// most 3 s after a killed monitor: the reader's lease lapses).  One
    /// monitor reads at a time; a second is refused with the reader's pid
    #[arg(long)]
    pub all_drops: bool,
}

pub fn dump(root: &Root, a: DumpArgs) -> Result<()> {
    crate::dump::validate(&a.map)?;
    crate::bpffs::check_privileges()?;
    let maps = Maps::open(root)?;
    let v = crate::dump::dump(&maps, &a.map)?;
    super::print_json(&v)
}

pub fn monitor(root: &Root, a: MonitorArgs) -> Result<()> {
    if a.count == Some(0) {
        return Err(crate::Error::usage("--count must be at least 1"));
    }
    let iface = a
        .iface
        .as_deref()
        .map(crate::ifaddr::index_of)
        .transpose()?;
    crate::bpffs::check_privileges()?;
    let maps = Maps::open(root)?;
    let opts = crate::monitor::MonitorOptions {
        iface,
        json: a.json,
        count: a.count,
        all_drops: a.all_drops,
    };
    crate::monitor::run(&maps, &opts)?;
    Ok(())
}
