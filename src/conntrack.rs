//! Connection state as user space sees it: `zfw conntrack list|flush` and
//! `zfw gc`.  The datapath's tables and timeouts are described in
//! src/bpf/conntrack.h; the timeouts come from zfw_abi.h.

use serde::Serialize;

use crate::decode;
use crate::error::Result;
use crate::maps::defs::{FlowTable, CT_EPOCH_MAP, FLOW_TABLES};
use crate::maps::{pending, Maps};
use crate::net::IPPROTO_TCP;
use crate::skel::{bytes_of, types};

#[derive(Debug, Serialize)]
pub struct FlowView {
    pub direction: String,
    pub map: String,
    /// Seen both ways (TCP: handshake completed): in a main table, which a
    /// flood of new flows cannot evict (README "Table pressure").
    pub assured: bool,
    pub family: String,
    pub proto: String,
    pub src: String,
    pub sport: u16,
    pub dst: String,
    pub dport: u16,
    pub iface: String,
    pub ifindex: u32,
    pub state: String,
    pub age_s: f64,
    pub idle_s: f64,
    pub expired: bool,
    pub packets_orig: u64,
    pub packets_reply: u64,
    pub bytes_orig: u64,
    pub bytes_reply: u64,
}

/// Idle limit of an entry in seconds (the datapath's rule, see conntrack.h).
pub fn timeout_s(proto: u8, state: u8) -> u64 {
    use crate::skel::names as n;
    let s = match proto {
        IPPROTO_TCP => match i64::from(state) {
            n::ZFW_TCP_ESTABLISHED => n::ZFW_TCP_EST_TIMEOUT_S,
            n::ZFW_TCP_SYN_SENT | n::ZFW_TCP_SYN_RECV => n::ZFW_TCP_OPEN_TIMEOUT_S,
            _ => n::ZFW_TCP_CLOSE_TIMEOUT_S,
        },
        // UDP and ICMP echo: the datapath's one datagram timeout
        _ => n::ZFW_UDP_TIMEOUT_S,
    };
    s as u64
}

fn is_expired(now: u64, k: &types::zfw_flow_key, f: &types::zfw_flow) -> bool {
    now.saturating_sub(f.last_ns) > timeout_s(k.proto, f.state) * 1_000_000_000
}

pub fn view(now: u64, table: &FlowTable, k: &types::zfw_flow_key, f: &types::zfw_flow) -> FlowView {
    let state = if k.proto == IPPROTO_TCP {
        decode::tcp_state(f.state)
    } else {
        "active".to_string()
    };
    FlowView {
        direction: table.direction.to_string(),
        map: table.def.info.name.to_string(),
        assured: table.assured,
        family: decode::family(k.family).to_string(),
        proto: decode::proto(k.proto),
        src: decode::addr(k.family, &k.saddr).to_string(),
        sport: k.sport,
        dst: decode::addr(k.family, &k.daddr).to_string(),
        dport: k.dport,
        iface: decode::ifname(k.ifindex),
        ifindex: k.ifindex,
        state,
        age_s: decode::age_s(now, f.first_ns),
        idle_s: decode::age_s(now, f.last_ns),
        expired: is_expired(now, k, f),
        packets_orig: f.pkts_orig,
        packets_reply: f.pkts_reply,
        bytes_orig: f.bytes_orig,
        bytes_reply: f.bytes_reply,
    }
}

/// Every tracked flow, its counters including packets still counted in
/// the flow caches.
pub fn list(maps: &Maps) -> Result<Vec<FlowView>> {
    let now = decode::mono_now_ns();
    let pending = pending::flows(maps)?;
    let mut out = Vec::new();
    for t in &FLOW_TABLES {
        // the flow caches count under the assured table's name (pending.rs)
        let map = t.main.info.name;
        for (k, mut f) in maps.entries(t.def)? {
            if let Some(p) = pending.get(&(map, bytes_of(&k).to_vec())) {
                f.pkts_orig += p[0];
                f.bytes_orig += p[1];
                f.pkts_reply += p[2];
                f.bytes_reply += p[3];
            }
            out.push(view(now, t, &k, &f));
        }
    }
    Ok(out)
}

/**
 * Make every CPU's flow cache forget what it holds: after user space removed
 * flow entries, their cached verdicts must not outlive them.  The global
 * slot of ct_epoch_map is written only here (under the root's lock), so a
 * read-add-write cannot undo a bump of the datapath's (it bumps buckets).
 */
pub fn invalidate_flow_caches(maps: &Maps) -> Result<()> {
    let global = crate::skel::names::ZFW_CT_EPOCH_BUCKETS as u32;
    let v = maps.get(&CT_EPOCH_MAP, &global)?.unwrap_or(0);
    maps.put(&CT_EPOCH_MAP, &global, &v.wrapping_add(1))
}

/// Remove every flow; returns how many.
pub fn flush(maps: &Maps) -> Result<usize> {
    let mut n = 0;
    for t in &FLOW_TABLES {
        for k in maps.raw_keys(t.def)? {
            let key: types::zfw_flow_key = crate::skel::from_bytes(&k)?;
            if maps.del(t.def, &key)? {
                n += 1;
            }
        }
    }
    invalidate_flow_caches(maps)?;
    Ok(n)
}

/// Remove flows past their idle limit; returns how many.
pub fn gc(maps: &Maps) -> Result<usize> {
    let now = decode::mono_now_ns();
    let mut n = 0;
    for t in &FLOW_TABLES {
        for (k, f) in maps.entries(t.def)? {
            if is_expired(now, &k, &f) && maps.del(t.def, &k)? {
                n += 1;
            }
        }
    }
    if n > 0 {
        invalidate_flow_caches(maps)?;
    }
    Ok(n)
}

/// Table rendering for people.
pub fn render(flows: &[FlowView]) -> String {
    let mut s = format!(
        "{:<9} {:<6} {:<44} {:<44} {:<12} {:<12} {:<9} {:>8} {:>8} {:>10}\n",
        "DIR", "PROTO", "SOURCE", "DESTINATION", "IFACE", "STATE", "ASSURED", "AGE", "IDLE", "PKTS"
    );
    for f in flows {
        s.push_str(&format!(
            "{:<9} {:<6} {:<44} {:<44} {:<12} {:<12} {:<9} {:>8.1} {:>8.1} {:>10}\n",
            f.direction,
            f.proto,
            endpoint(&f.src, f.sport, &f.family),
            endpoint(&f.dst, f.dport, &f.family),
            f.iface,
            if f.expired {
                format!("{}*", f.state)
            } else {
                f.state.clone()
            },
            if f.assured { "assured" } else { "unassured" },
            f.age_s,
            f.idle_s,
            f.packets_orig + f.packets_reply
        ));
    }
    s.push_str(&format!(
        "{} flows (* = expired, removed by `zfw gc` or the next packet)\n",
        flows.len()
    ));
    s
}

fn endpoint(a: &str, p: u16, fam: &str) -> String {
    if fam == "ipv6" {
        format!("[{a}]:{p}")
    } else {
        format!("{a}:{p}")
    }
}
