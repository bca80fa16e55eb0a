//! Counts the per-CPU caches hold back.  Packets the flow cache admits are
//! counted in its slots and added to their conntrack entries later; XDP
//! redirects are counted in the tun cache's slots and added to counters_map
//! when a slot is refilled (docs/ARCHITECTURE.md §5).  Whoever shows flow
//! counters (`conntrack list`) or verdict counters (`status`, `dump`) adds
//! these; this module is the one place that reads them.

use std::collections::HashMap;

use super::{defs, Maps};
use crate::error::Result;
use crate::net::{IPPROTO_TCP, IPPROTO_UDP};
use crate::skel::{bytes_of, names, types};

/// Packets and bytes the flow caches admitted for one conntrack entry but
/// have not added to it yet: [packets orig, bytes orig, packets reply,
/// bytes reply].
pub type FlowPending = [u64; 4];

/// Pending counts by (conntrack table name, flow key bytes).
pub type FlowsPending = HashMap<(&'static str, Vec<u8>), FlowPending>;

/// The conntrack table a cached flow's counters belong to (the choice
/// src/bpf/flowcache.h makes when it adds them back: this assured table, or
/// its unassured twin when the flow is not assured yet; `conntrack list`
/// looks the counts of both up under this name).
fn flow_table(proto: u8, inbound: bool) -> Option<&'static str> {
    let def = match (proto, inbound) {
        (IPPROTO_TCP, false) => &defs::TCP_MAP,
        (IPPROTO_TCP, true) => &defs::TCP_INGRESS_MAP,
        (IPPROTO_UDP, false) => &defs::UDP_MAP,
        (IPPROTO_UDP, true) => &defs::UDP_INGRESS_MAP,
        _ => return None,
    };
    Some(def.info.name)
}

/// The conntrack key of a flow cache slot: a DNAT slot is keyed by the
/// tuple as it arrived, conntrack saw the inside destination (see
/// zfw_flow_cache in zfw_abi.h); a reply slot holds the reversed tuple.
fn conntrack_key(s: &types::zfw_flow_cache) -> types::zfw_flow_key {
    let mut ct = s.key;
    if s.nat != 0 && i64::from(s.dir) == names::ZFW_DIR_INGRESS + 1 {
        ct.daddr = s.naddr;
        ct.dport = s.nport;
    }
    if s.from_orig != 0 {
        ct
    } else {
        types::zfw_flow_key {
            saddr: ct.daddr,
            daddr: ct.saddr,
            sport: ct.dport,
            dport: ct.sport,
            ..ct
        }
    }
}

/// Every flow's pending counts, summed over the CPUs' flow cache slots.
pub fn flows(maps: &Maps) -> Result<FlowsPending> {
    let mut out = FlowsPending::new();
    for (_, per_cpu) in maps.percpu_entries(&defs::FLOW_CACHE_MAP)? {
        // (tunnel slots' flows have no conntrack entry)
        for s in per_cpu
            .iter()
            .filter(|s| s.dir != 0 && s.pkts != 0 && s.tun_ifindex == 0)
        {
            let Some(table) = flow_table(s.key.proto, s.inbound != 0) else {
                continue;
            };
            let key = conntrack_key(s);
            let e = out.entry((table, bytes_of(&key).to_vec())).or_default();
            let i = if s.from_orig != 0 { 0 } else { 2 };
            e[i] += s.pkts;
            e[i + 1] += s.bytes;
        }
    }
    Ok(out)
}

/// Packets counted under verdict reason `reason`, summed over CPUs, with
/// the XDP redirects still pending in the tun cache's slots.
pub fn reason_count(maps: &Maps, reason: u32) -> Result<u64> {
    let mut n = maps.percpu_sum(&defs::COUNTERS_MAP, reason)?;
    if i64::from(reason) == names::ZFW_R_XDP_REDIRECT && maps.handle(&defs::TUN_CACHE_MAP).is_ok() {
        for (_, per_cpu) in maps.percpu_entries(&defs::TUN_CACHE_MAP)? {
            n += per_cpu.iter().map(|s| s.pkts).sum::<u64>();
        }
    }
    Ok(n)
}
