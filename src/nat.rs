//! Masquerade mappings (masquerade_map, icmp_masquerade_map and
//! masquerade_reverse_map, written by src/bpf/nat.h): list them, and remove
//! the stale ones (`zfw gc`).
//!
//! A mapping is one entry in masquerade_map (or icmp_masquerade_map for ICMP
//! echo) keyed by the outside view (remote peer, remote port, allocated
//! port, outside interface) plus its twin in masquerade_reverse_map keyed by
//! the inside flow.  The datapath removes TCP mappings on RST or after the
//! final ACK of a close; idle UDP/ICMP mappings (and TCP ones whose close
//! was never seen) are left for `gc_nat`.

use serde::Serialize;

use crate::decode;
use crate::error::Result;
use crate::maps::Maps;
use crate::skel::{abi_const, enum_name, names, types};

const NSEC: u64 = 1_000_000_000;
const MAPS: [&str; 2] = ["masquerade_map", "icmp_masquerade_map"];
const REV_MAP: &str = "masquerade_reverse_map";

/// One translated flow, for `zfw masquerade list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NatEntry {
    pub ifindex: u32,
    pub proto: String,
    /// Inside source, as the inside host sent it.
    pub inside: String,
    /// The source the remote peer sees (absent if the reverse entry is gone).
    pub outside: Option<String>,
    pub remote: String,
    /// TCP state ("udp" for UDP and ICMP echo).
    pub state: String,
    /// Seconds since the last packet in either direction.
    pub idle_s: u64,
}

/// Masquerade on an interface needs both TC directions: SNAT runs in the
/// egress program, DNAT in ingress.  Err names what is missing and how to
/// fix it (for `iface set IF --masquerade on` and `masquerade list`).
fn hook(name: &str) -> u32 {
    names::ZFW_HOOK
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| *v as u32)
}

pub fn check_hooks(name: &str, st: &types::zfw_iface) -> Result<()> {
    let missing: Vec<&str> = [
        ("ZFW_HOOK_EGRESS", "egress"),
        ("ZFW_HOOK_INGRESS", "ingress"),
    ]
    .into_iter()
    .filter(|(c, _)| st.hooks & hook(c) == 0)
    .map(|(_, n)| n)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(crate::Error::usage(format!(
        "masquerade on {name} needs the {} hook, which is not attached (zfw load --iface {name}, without --no-egress)",
        missing.join(" and ")
    )))
}

/// The masquerade_reverse_map key of a mapping.
pub fn reverse_key(k: &types::zfw_nat_key, v: &types::zfw_nat_val) -> types::zfw_flow_key {
    types::zfw_flow_key {
        saddr: v.addr,
        daddr: k.raddr,
        sport: v.port,
        dport: k.rport,
        ifindex: k.ifindex,
        family: k.family,
        proto: k.proto,
        ..Default::default()
    }
}

/// The masquerade_map key a reverse entry points at.
pub fn forward_key(rk: &types::zfw_flow_key, r: &types::zfw_nat_rev) -> types::zfw_nat_key {
    types::zfw_nat_key {
        raddr: rk.daddr,
        rport: rk.dport,
        nport: r.nport,
        ifindex: rk.ifindex,
        family: rk.family,
        proto: rk.proto,
        ..Default::default()
    }
}

/// Idle limit of a mapping in state `state` (enum zfw_tcp_state).
pub fn timeout_ns(proto: u8, state: u8) -> u64 {
    let tcp = |n: &str| abi_const(n) as u64 * NSEC;
    if proto != 6 {
        return tcp("ZFW_NAT_UDP_TIMEOUT_S");
    }
    match enum_name(names::ZFW_TCP_STATE, "ZFW_TCP_", i64::from(state)).as_str() {
        "established" => tcp("ZFW_NAT_TCP_EST_TIMEOUT_S"),
        "syn_sent" | "syn_recv" => tcp("ZFW_NAT_TCP_OPEN_TIMEOUT_S"),
        _ => tcp("ZFW_NAT_TCP_CLOSE_TIMEOUT_S"),
    }
}

/// Every mapping, sorted by interface, protocol and inside source.
pub fn list_nat(maps: &Maps) -> Result<Vec<NatEntry>> {
    let now = decode::mono_now_ns();
    let mut out = Vec::new();
    for m in MAPS {
        for (k, v) in maps.entries::<types::zfw_nat_key, types::zfw_nat_val>(m)? {
            let rev: Option<types::zfw_nat_rev> = maps.get(REV_MAP, &reverse_key(&k, &v))?;
            let last = rev.map_or(v.last_ns, |r| r.last_ns.max(v.last_ns));
            let state = if k.proto == 6 {
                enum_name(names::ZFW_TCP_STATE, "ZFW_TCP_", i64::from(v.state))
            } else {
                "udp".to_string()
            };
            out.push(NatEntry {
                ifindex: k.ifindex,
                proto: decode::proto(k.proto),
                inside: decode::endpoint(decode::addr(k.family, &v.addr), v.port),
                outside: rev.map(|r| decode::endpoint(decode::addr(k.family, &r.naddr), r.nport)),
                remote: decode::endpoint(decode::addr(k.family, &k.raddr), k.rport),
                state,
                idle_s: now.saturating_sub(last) / NSEC,
            });
        }
    }
    out.sort_by(|a, b| {
        (a.ifindex, &a.proto, &a.inside, &a.remote)
            .cmp(&(b.ifindex, &b.proto, &b.inside, &b.remote))
    });
    Ok(out)
}

/// Remove stale mappings: idle past their timeout (UDP/ICMP echo 30 s; TCP
/// by state), and reverse entries whose twin is gone.  Returns how many
/// mappings were removed.
pub fn gc_nat(maps: &Maps) -> Result<usize> {
    let now = decode::mono_now_ns();
    let mut removed = 0;
    for m in MAPS {
        for (k, v) in maps.entries::<types::zfw_nat_key, types::zfw_nat_val>(m)? {
            let rk = reverse_key(&k, &v);
            let rev: Option<types::zfw_nat_rev> = maps.get(REV_MAP, &rk)?;
            let last = rev.map_or(v.last_ns, |r| r.last_ns.max(v.last_ns));
            if now.saturating_sub(last) > timeout_ns(k.proto, v.state) {
                maps.del(REV_MAP, &rk)?;
                if maps.del(m, &k)? {
                    removed += 1;
                }
            }
        }
    }
    for (rk, r) in maps.entries::<types::zfw_flow_key, types::zfw_nat_rev>(REV_MAP)? {
        let m = if rk.proto == 6 || rk.proto == 17 {
            MAPS[0]
        } else {
            MAPS[1]
        };
        let fwd: Option<types::zfw_nat_val> = maps.get(m, &forward_key(&rk, &r))?;
        if fwd.is_none() && maps.del(REV_MAP, &rk)? {
            removed += 1;
        }
    }
    if removed > 0 {
        // flow caches may hold the translations of removed mappings
        crate::conntrack::invalidate_flow_caches(maps)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_follow_the_abi_constants() {
        assert_eq!(timeout_ns(17, 7), 30 * NSEC);
        assert_eq!(timeout_ns(1, 7), 30 * NSEC);
        assert_eq!(timeout_ns(6, 3), 3600 * NSEC);
        assert_eq!(timeout_ns(6, 1), 60 * NSEC);
        assert_eq!(timeout_ns(6, 5), 120 * NSEC);
    }

    #[test]
    fn masquerade_needs_egress_and_ingress_hooks() {
        let mut st = types::zfw_iface {
            hooks: hook("ZFW_HOOK_INGRESS") | hook("ZFW_HOOK_TRACK"),
            ..Default::default()
        };
        let e = check_hooks("eth0", &st).unwrap_err();
        assert!(e.to_string().contains("needs the egress hook"), "{e}");
        assert_eq!(e.exit_code(), 2);
        st.hooks |= hook("ZFW_HOOK_EGRESS");
        assert!(check_hooks("eth0", &st).is_ok());
        st.hooks = hook("ZFW_HOOK_EGRESS");
        assert!(check_hooks("eth0", &st).is_err());
    }

    #[test]
    fn keys_round_trip() {
        let k = types::zfw_nat_key {
            raddr: [7, 0, 0, 0],
            rport: 80,
            nport: 5000,
            ifindex: 3,
            family: decode::AF_INET,
            proto: 6,
            ..Default::default()
        };
        let v = types::zfw_nat_val {
            addr: [9, 0, 0, 0],
            port: 40000,
            ..Default::default()
        };
        let r = types::zfw_nat_rev {
            nport: 5000,
            ..Default::default()
        };
        let rk = reverse_key(&k, &v);
        assert_eq!((rk.sport, rk.dport, rk.saddr[0]), (40000, 80, 9));
        let back = forward_key(&rk, &r);
        assert_eq!(crate::skel::bytes_of(&back), crate::skel::bytes_of(&k));
    }
}
