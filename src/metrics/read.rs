//! The readings `zfw metrics` and `zfw top` share: per-reason packet
//! counters, map fill levels and flow counts, each read once from the
//! pinned maps.  Both commands show the same numbers because they come
//! from these functions (README "Observability").

use std::collections::BTreeMap;

use crate::error::Result;
use crate::maps::{defs, Count, Maps};
use crate::skel::{enum_name, names};

/// The packets counted under one verdict reason since load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonCount {
    /// `status`'s name of the reason (`drop_no_rule`, ...)
    pub reason: String,
    /// its verdict class (see [`verdict`])
    pub verdict: String,
    pub packets: u64,
}

/// The verdict class of a reason: its name's prefix (`pass_*`, `drop_*`),
/// else what the packet was handed to (tproxy, tunnel, nat, track, xdp).
pub fn verdict(reason: &str) -> &str {
    match reason.split('_').next().unwrap_or(reason) {
        "pass" => "pass",
        "drop" => "drop",
        other => other,
    }
}

/// Every reason's counter (zero ones included), pending XDP redirects
/// added (src/maps/pending.rs), in the ABI's order.
pub fn packets(maps: &Maps) -> Result<Vec<ReasonCount>> {
    let mut out = Vec::new();
    for (_, v) in names::ZFW_REASON.iter().filter(|(n, _)| *n != "ZFW_R_MAX") {
        let packets = crate::maps::pending::reason_count(maps, *v as u32)?;
        let reason = enum_name(names::ZFW_REASON, "ZFW_R_", *v);
        let verdict = verdict(&reason).to_string();
        out.push(ReasonCount {
            reason,
            verdict,
            packets,
        });
    }
    Ok(out)
}

/// One pinned map's fill level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub name: &'static str,
    /// counted as `status` counts it (`Maps::count`)
    pub entries: u64,
    /// max_entries (bytes for the ring buffer)
    pub capacity: u32,
    /// whether `entries` measures use (keys, interfaces, cached decisions),
    /// rather than an array's slots (always all) or nothing (the ring)
    pub measures_use: bool,
}

/// The fill level of every pinned map present, in registry order.
pub fn map_fill(maps: &Maps) -> Result<Vec<MapFill>> {
    let mut out = Vec::new();
    for info in defs::pinned().filter(|i| maps.handle(*i).is_ok()) {
        out.push(MapFill {
            name: info.name,
            entries: maps.count(info)? as u64,
            capacity: maps.max_entries(info)?,
            measures_use: !matches!(info.count, Count::Slots | Count::Nothing),
        });
    }
    Ok(out)
}

/// A class of tracked flows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowClass {
    pub proto: String,
    /// the side that opened it: `inbound` or `outbound` (defs::FLOW_TABLES)
    pub direction: &'static str,
    /// the TCP state name (`established`, ...); `active` for other protocols
    pub state: String,
    /// in the main tables (seen both ways), not the unassured ones
    /// (README "Table pressure")
    pub assured: bool,
}

impl FlowClass {
    /// The state as `top` shows it: unassured flows say so.
    pub fn state_text(&self) -> String {
        if self.assured {
            self.state.clone()
        } else {
            format!("{} (unassured)", self.state)
        }
    }
}

/// Tracked flows by protocol, direction and state (each flow table walked
/// once, in batches).
pub fn flows(maps: &Maps) -> Result<BTreeMap<FlowClass, u64>> {
    let mut out = BTreeMap::new();
    for t in &defs::FLOW_TABLES {
        if maps.handle(t.def).is_err() {
            continue;
        }
        for (k, f) in maps.entries(t.def)? {
            let state = if k.proto == crate::net::IPPROTO_TCP {
                crate::decode::tcp_state(f.state)
            } else {
                "active".to_string()
            };
            let class = FlowClass {
                proto: crate::decode::proto(k.proto),
                direction: t.direction,
                state,
                assured: t.assured,
            };
            *out.entry(class).or_default() += 1;
        }
    }
    Ok(out)
}
