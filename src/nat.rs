//! Masquerade mappings (masquerade_map, icmp_masquerade_map and
//! masquerade_reverse_map, written by src/bpf/nat.h): list them, and remove
//! the stale ones (`zfw gc`).
//!
//! A mapping is one entry in masquerade_map (or icmp_masquerade_map for ICMP
//! echo) keyed by the outside view (remote peer, remote port, allocated
//! port, outside interface) plus its twin in masquerade_reverse_map keyed by
//! the inside flow.  The datapath removes TCP mappings on RST or after the
//! final ACK of a close (recording the port in masquerade_closed_map, so
//! that another inside host does not get it for the same peer within
//! ZFW_NAT_TIME_WAIT_S), and takes over an expired mapping whose port a new
//! flow picks; other idle mappings (UDP/ICMP, half-open TCP, TCP whose
//! close was never seen) are left for `gc_nat`.  `flush_nat` (`zfw
//! conntrack flush`) removes every mapping.

use serde::Serialize;

use crate::decode;
use crate::error::Result;
use crate::maps::defs::{
    MASQUERADE_CLOSED_MAP as CLOSED_MAP, MASQUERADE_REVERSE_MAP as REV_MAP, NAT_FORWARD,
};
use crate::maps::Maps;
use crate::net::{IPPROTO_TCP, IPPROTO_UDP};
use crate::skel::{enum_name, names, types};

const NSEC: u64 = 1_000_000_000;

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
pub fn check_hooks(name: &str, st: &types::zfw_iface) -> Result<()> {
    let missing: Vec<&str> = [
        (names::ZFW_HOOK_EGRESS, "egress"),
        (names::ZFW_HOOK_INGRESS, "ingress"),
    ]
    .into_iter()
    .filter(|(bit, _)| st.hooks & (*bit as u32) == 0)
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

/// Idle limit of a mapping in state `state` (enum zfw_tcp_state): the
/// flows' rule (`conntrack::timeout_s`), as the datapath's
/// `zfw_nat_timeout_ns` (src/bpf/nat.h) applies it.  Half-open TCP
/// (SYN_SENT, SYN_RECV: the inside host has not yet acknowledged the peer's
/// SYN-ACK) gets ZFW_TCP_OPEN_TIMEOUT_S.
pub fn timeout_ns(proto: u8, state: u8) -> u64 {
    crate::conntrack::timeout_s(proto, state) * NSEC
}

/// Every mapping, sorted by interface, protocol and inside source.
pub fn list_nat(maps: &Maps) -> Result<Vec<NatEntry>> {
    let now = decode::mono_now_ns();
    let mut out = Vec::new();
    for m in NAT_FORWARD {
        for (k, v) in maps.entries(m)? {
            let rev = maps.get(&REV_MAP, &reverse_key(&k, &v))?;
            let last = rev.map_or(v.last_ns, |r| r.last_ns.max(v.last_ns));
            let state = if k.proto == IPPROTO_TCP {
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

/// Remove every mapping (both tables and the reverse entries), so that
/// every masquerade port is free again; returns how many mappings there
/// were.  The records of recently closed ports stay: they hold no port,
/// they only keep the chooser from giving one to another inside host while
/// the peer may still be in TIME_WAIT.
pub fn flush_nat(maps: &Maps) -> Result<usize> {
    let mut n = 0;
    for m in NAT_FORWARD {
        for k in maps.raw_keys(m)? {
            let key: types::zfw_nat_key = crate::skel::from_bytes(&k)?;
            if maps.del(m, &key)? {
                n += 1;
            }
        }
    }
    for k in maps.raw_keys(&REV_MAP)? {
        let key: types::zfw_flow_key = crate::skel::from_bytes(&k)?;
        maps.del(&REV_MAP, &key)?;
    }
    // flow caches may hold the translations
    crate::conntrack::invalidate_flow_caches(maps)?;
    Ok(n)
}

/// Remove stale mappings: idle past their timeout (UDP/ICMP echo 30 s; TCP
/// by state: half-open 60 s), reverse entries whose twin is gone, and
/// records of closed ports older than ZFW_NAT_TIME_WAIT_S (not counted).
/// Returns how many mappings were removed.
pub fn gc_nat(maps: &Maps) -> Result<usize> {
    let now = decode::mono_now_ns();
    let mut removed = 0;
    for m in NAT_FORWARD {
        for (k, v) in maps.entries(m)? {
            let rk = reverse_key(&k, &v);
            let rev = maps.get(&REV_MAP, &rk)?;
            let last = rev.map_or(v.last_ns, |r| r.last_ns.max(v.last_ns));
            if now.saturating_sub(last) > timeout_ns(k.proto, v.state) {
                maps.del(&REV_MAP, &rk)?;
                if maps.del(m, &k)? {
                    removed += 1;
                }
            }
        }
    }
    for (rk, r) in maps.entries(&REV_MAP)? {
        // TCP and UDP mappings, then ICMP echo ones
        let m = if rk.proto == IPPROTO_TCP || rk.proto == IPPROTO_UDP {
            NAT_FORWARD[0]
        } else {
            NAT_FORWARD[1]
        };
        let fwd = maps.get(m, &forward_key(&rk, &r))?;
        if fwd.is_none() && maps.del(&REV_MAP, &rk)? {
            removed += 1;
        }
    }
    let tw = names::ZFW_NAT_TIME_WAIT_S as u64 * NSEC;
    for (k, c) in maps.entries(&CLOSED_MAP)? {
        if now.saturating_sub(c.closed_ns) > tw {
            maps.del(&CLOSED_MAP, &k)?;
        }
    }
    if removed > 0 {
        // flow caches may hold the translations of removed mappings
        crate::conntrack::invalidate_flow_caches(maps)?;
    }
    Ok(removed)
}

/// `zfw watch`, after the addresses of `ifindex` changed: remove every
/// mapping of that interface whose outside address is not among `keep`
/// (its addresses now), so that no packet leaves with a gone source.  The
/// next packet of such a flow starts a new mapping with the current
/// address (UDP, ICMP echo; a TCP flow cannot restart mid-stream and is
/// dropped as untranslatable).  Returns how many mappings went.
pub fn purge_outside_addr(maps: &Maps, ifindex: u32, keep: &[std::net::IpAddr]) -> Result<usize> {
    let mut removed = 0;
    for (rk, r) in maps.entries(&REV_MAP)? {
        if rk.ifindex != ifindex || keep.contains(&decode::addr(rk.family, &r.naddr)) {
            continue;
        }
        let m = if rk.proto == IPPROTO_TCP || rk.proto == IPPROTO_UDP {
            NAT_FORWARD[0]
        } else {
            NAT_FORWARD[1]
        };
        maps.del(m, &forward_key(&rk, &r))?;
        if maps.del(&REV_MAP, &rk)? {
            removed += 1;
        }
    }
    if removed > 0 {
        // flow caches hold the translations of removed mappings
        crate::conntrack::invalidate_flow_caches(maps)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_come_from_zfw_abi_h() {
        let state = |s: i64| s as u8;
        assert_eq!(
            timeout_ns(IPPROTO_UDP, state(names::ZFW_TCP_UDP)),
            30 * NSEC
        );
        assert_eq!(
            timeout_ns(crate::net::IPPROTO_ICMP, state(names::ZFW_TCP_UDP)),
            30 * NSEC
        );
        assert_eq!(
            timeout_ns(IPPROTO_TCP, state(names::ZFW_TCP_ESTABLISHED)),
            3600 * NSEC
        );
        assert_eq!(
            timeout_ns(IPPROTO_TCP, state(names::ZFW_TCP_SYN_SENT)),
            60 * NSEC
        );
        assert_eq!(
            timeout_ns(IPPROTO_TCP, state(names::ZFW_TCP_SYN_RECV)),
            60 * NSEC
        );
        assert_eq!(
            timeout_ns(IPPROTO_TCP, state(names::ZFW_TCP_CLOSING)),
            120 * NSEC
        );
    }

    #[test]
    fn masquerade_needs_egress_and_ingress_hooks() {
        let mut st = types::zfw_iface {
            hooks: (names::ZFW_HOOK_INGRESS | names::ZFW_HOOK_TRACK) as u32,
            ..Default::default()
        };
        let e = check_hooks("eth0", &st).unwrap_err();
        assert!(e.to_string().contains("needs the egress hook"), "{e}");
        assert_eq!(e.exit_code(), 2);
        st.hooks |= names::ZFW_HOOK_EGRESS as u32;
        assert!(check_hooks("eth0", &st).is_ok());
        st.hooks = names::ZFW_HOOK_EGRESS as u32;
        assert!(check_hooks("eth0", &st).is_err());
    }

    #[test]
    fn keys_round_trip() {
        let k = types::zfw_nat_key {
            raddr: [7, 0, 0, 0],
            rport: 80,
            nport: 5000,
            ifindex: 3,
            family: crate::net::AF_INET,
            proto: IPPROTO_TCP,
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
