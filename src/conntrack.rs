//! Connection state as user space sees it: `zfw conntrack list|flush` and
//! `zfw gc`.  The datapath's tables and timeouts are described in
//! src/bpf/conntrack.h; the timeouts come from zfw_abi.h.

use std::collections::HashMap;

use serde::Serialize;

use crate::decode;
use crate::error::Result;
use crate::maps::Maps;
use crate::skel::{bytes_of, types};

/// (map, direction the flow was opened from, protocol label)
pub const FLOW_MAPS: &[(&str, &str)] = &[
    ("tcp_map", "outbound"),
    ("udp_map", "outbound"),
    ("icmp_echo_map", "outbound"),
    ("tcp_ingress_map", "inbound"),
    ("udp_ingress_map", "inbound"),
];

#[derive(Debug, Serialize)]
pub struct FlowView {
    pub direction: String,
    pub map: String,
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
    let s = if proto != 6 {
        if proto == 17 {
            n::ZFW_UDP_TIMEOUT_S
        } else {
            n::ZFW_ICMP_TIMEOUT_S
        }
    } else {
        match i64::from(state) {
            n::ZFW_TCP_ESTABLISHED => n::ZFW_TCP_EST_TIMEOUT_S,
            n::ZFW_TCP_SYN_SENT | n::ZFW_TCP_SYN_RECV => n::ZFW_TCP_OPEN_TIMEOUT_S,
            _ => n::ZFW_TCP_CLOSE_TIMEOUT_S,
        }
    };
    s as u64
}

fn is_expired(now: u64, k: &types::zfw_flow_key, f: &types::zfw_flow) -> bool {
    now.saturating_sub(f.last_ns) > timeout_s(k.proto, f.state) * 1_000_000_000
}

pub fn view(
    now: u64,
    map: &str,
    dir: &str,
    k: &types::zfw_flow_key,
    f: &types::zfw_flow,
) -> FlowView {
    let state = if k.proto == 6 {
        decode::tcp_state(f.state)
    } else {
        "active".to_string()
    };
    FlowView {
        direction: dir.to_string(),
        map: map.to_string(),
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

/// The tuple seen from the other end.
pub fn reversed(k: &types::zfw_flow_key) -> types::zfw_flow_key {
    types::zfw_flow_key {
        saddr: k.daddr,
        daddr: k.saddr,
        sport: k.dport,
        dport: k.sport,
        ..*k
    }
}

/// Packet and byte counts the per-CPU flow caches admitted but have not yet
/// added to their flows (src/bpf/flowcache.h), by (table, flow key):
/// [packets orig, bytes orig, packets reply, bytes reply].
type Pending = HashMap<(&'static str, Vec<u8>), [u64; 4]>;

fn cache_pending(maps: &Maps) -> Result<Pending> {
    let mut out = Pending::new();
    for (_, per_cpu) in maps.percpu_entries::<types::zfw_flow_cache>("flow_cache_map")? {
        // (tunnel slots' flows have no conntrack entry)
        for s in per_cpu
            .iter()
            .filter(|s| s.dir != 0 && s.pkts != 0 && s.tun_ifindex == 0)
        {
            let table = match (s.key.proto, s.inbound != 0) {
                (6, false) => "tcp_map",
                (6, true) => "tcp_ingress_map",
                (17, false) => "udp_map",
                (17, true) => "udp_ingress_map",
                _ => continue,
            };
            // a DNAT slot is keyed by the tuple as it arrived; conntrack saw
            // the inside destination (see zfw_flow_cache in zfw_abi.h)
            let mut ct = s.key;
            if s.nat != 0 && i64::from(s.dir) == crate::skel::names::ZFW_DIR_INGRESS + 1 {
                ct.daddr = s.naddr;
                ct.dport = s.nport;
            }
            let key = if s.from_orig != 0 { ct } else { reversed(&ct) };
            let e = out.entry((table, bytes_of(&key).to_vec())).or_default();
            let i = if s.from_orig != 0 { 0 } else { 2 };
            e[i] += s.pkts;
            e[i + 1] += s.bytes;
        }
    }
    Ok(out)
}

/// Every tracked flow, its counters including packets still counted in
/// the flow caches.
pub fn list(maps: &Maps) -> Result<Vec<FlowView>> {
    let now = decode::mono_now_ns();
    let pending = cache_pending(maps)?;
    let mut out = Vec::new();
    for (map, dir) in FLOW_MAPS {
        for (k, mut f) in maps.entries::<types::zfw_flow_key, types::zfw_flow>(map)? {
            if let Some(p) = pending.get(&(*map, bytes_of(&k).to_vec())) {
                f.pkts_orig += p[0];
                f.bytes_orig += p[1];
                f.pkts_reply += p[2];
                f.bytes_reply += p[3];
            }
            out.push(view(now, map, dir, &k, &f));
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
    let v: u32 = maps.get("ct_epoch_map", &global)?.unwrap_or(0);
    maps.put("ct_epoch_map", &global, &v.wrapping_add(1))
}

/// Remove every flow; returns how many.
pub fn flush(maps: &Maps) -> Result<usize> {
    let mut n = 0;
    for (map, _) in FLOW_MAPS {
        for k in maps.raw_keys(map)? {
            let key: types::zfw_flow_key = crate::skel::from_bytes(&k);
            if maps.del(map, &key)? {
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
    for (map, _) in FLOW_MAPS {
        for (k, f) in maps.entries::<types::zfw_flow_key, types::zfw_flow>(map)? {
            if is_expired(now, &k, &f) && maps.del(map, &k)? {
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
        "{:<9} {:<6} {:<44} {:<44} {:<12} {:<12} {:>8} {:>8} {:>10}\n",
        "DIR", "PROTO", "SOURCE", "DESTINATION", "IFACE", "STATE", "AGE", "IDLE", "PKTS"
    );
    for f in flows {
        s.push_str(&format!(
            "{:<9} {:<6} {:<44} {:<44} {:<12} {:<12} {:>8.1} {:>8.1} {:>10}\n",
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
