//! One flow as `conntrack list` shows it, borrowed: the names it repeats
//! (interface, protocol, TCP state) are decoded once per walk and the
//! addresses formatted as they are written, so listing a million flows
//! allocates nothing per flow (README "Memory").  [`FlowRow::write_json`]
//! writes the JSON object serde writes for the owned [`FlowView`] (same
//! fields, order and layout: checked byte for byte by the tests below)
//! without serde's per-field calls, a third of what listing a million
//! flows cost.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;

use super::{is_expired, Flow, FlowView};
use crate::decode;
use crate::maps::defs::FlowTable;
use crate::net::IPPROTO_TCP;
use crate::skel::types;

/// A flow, borrowing its names from [`Names`].
pub type FlowRow<'a> = Flow<&'a str, IpAddr>;

/// `s` as a JSON string: as it is when nothing in it needs escaping (the
/// tables' names, protocols, states, most interface names), else serde's.
fn json_str(b: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|c| (b' '..=b'~').contains(&c) && c != b'"' && c != b'\\')
    {
        b.push(b'"');
        b.extend_from_slice(s.as_bytes());
        b.push(b'"');
    } else {
        // writing to a Vec cannot fail
        let _ = serde_json::to_writer(&mut *b, s);
    }
}

/// `v` in decimal (what `{}` writes, without the formatting machinery:
/// a million rows have seven numbers each).
fn decimal(b: &mut Vec<u8>, mut v: u64) {
    let mut d = [0u8; 20];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b.extend_from_slice(&d[i..]);
}

/// `a` as a JSON string: its Display form (which never needs escaping),
/// IPv4 written octet by octet.
fn address(b: &mut Vec<u8>, a: IpAddr) {
    b.push(b'"');
    match a {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    b.push(b'.');
                }
                decimal(b, o.into());
            }
        }
        // writing to a Vec cannot fail
        IpAddr::V6(_) => {
            let _ = write!(b, "{a}");
        }
    }
    b.push(b'"');
}

impl FlowRow<'_> {
    /**
     * Append this row to `b` as element `index` of the array `conntrack
     * list --json` writes: serde_json's pretty layout (two-space indent,
     * `"key": value`), the separator before it included; the array's
     * brackets are the caller's ([`super::write_json`]).
     */
    pub fn write_json(&self, b: &mut Vec<u8>, index: usize) {
        b.extend_from_slice(if index == 0 { b"\n  {" } else { b",\n  {" });
        let key = |b: &mut Vec<u8>, k: &str, first: bool| {
            b.extend_from_slice(if first { b"\n    \"" } else { b",\n    \"" });
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(b"\": ");
        };
        let num = |b: &mut Vec<u8>, k: &str, v: u64| {
            key(b, k, false);
            decimal(b, v);
        };
        let float = |b: &mut Vec<u8>, k: &str, v: f64| {
            key(b, k, false);
            // writing to a Vec cannot fail
            let _ = serde_json::to_writer(&mut *b, &v);
        };
        let boolean = |b: &mut Vec<u8>, k: &str, v: bool| {
            key(b, k, false);
            b.extend_from_slice(if v { b"true" } else { b"false" });
        };
        let string = |b: &mut Vec<u8>, k: &str, v: &str| {
            key(b, k, false);
            json_str(b, v);
        };
        let addr = |b: &mut Vec<u8>, k: &str, v: IpAddr| {
            key(b, k, false);
            address(b, v);
        };
        key(b, "direction", true);
        json_str(b, self.direction);
        string(b, "map", self.map);
        boolean(b, "assured", self.assured);
        string(b, "family", self.family);
        string(b, "proto", self.proto);
        addr(b, "src", self.src);
        num(b, "sport", self.sport.into());
        addr(b, "dst", self.dst);
        num(b, "dport", self.dport.into());
        string(b, "iface", self.iface);
        num(b, "ifindex", self.ifindex.into());
        string(b, "state", self.state);
        float(b, "age_s", self.age_s);
        float(b, "idle_s", self.idle_s);
        boolean(b, "expired", self.expired);
        num(b, "packets_orig", self.packets_orig);
        num(b, "packets_reply", self.packets_reply);
        num(b, "bytes_orig", self.bytes_orig);
        num(b, "bytes_reply", self.bytes_reply);
        b.extend_from_slice(b"\n  }");
    }

    pub fn to_view(&self) -> FlowView {
        FlowView {
            direction: self.direction.to_string(),
            map: self.map.to_string(),
            assured: self.assured,
            family: self.family.to_string(),
            proto: self.proto.to_string(),
            src: self.src.to_string(),
            sport: self.sport,
            dst: self.dst.to_string(),
            dport: self.dport,
            iface: self.iface.to_string(),
            ifindex: self.ifindex,
            state: self.state.to_string(),
            age_s: self.age_s,
            idle_s: self.idle_s,
            expired: self.expired,
            packets_orig: self.packets_orig,
            packets_reply: self.packets_reply,
            bytes_orig: self.bytes_orig,
            bytes_reply: self.bytes_reply,
        }
    }
}

/// The names rows repeat, decoded once each per walk.
#[derive(Default)]
pub struct Names {
    ifaces: HashMap<u32, String>,
    protos: HashMap<u8, String>,
    /// by (protocol, state): only TCP flows have states
    states: HashMap<(u8, u8), String>,
}

impl Names {
    /// The row of flow `k` -> `f` of `table` at monotonic time `now`.
    pub fn row(
        &mut self,
        now: u64,
        table: &FlowTable,
        k: &types::zfw_flow_key,
        f: &types::zfw_flow,
    ) -> FlowRow<'_> {
        let state_key = (k.proto, if k.proto == IPPROTO_TCP { f.state } else { 0 });
        self.ifaces
            .entry(k.ifindex)
            .or_insert_with(|| decode::ifname(k.ifindex));
        self.protos
            .entry(k.proto)
            .or_insert_with(|| decode::proto(k.proto));
        self.states.entry(state_key).or_insert_with(|| {
            if k.proto == IPPROTO_TCP {
                decode::tcp_state(f.state)
            } else {
                "active".to_string()
            }
        });
        FlowRow {
            direction: table.direction,
            map: table.def.info.name,
            assured: table.assured,
            family: decode::family(k.family),
            proto: &self.protos[&k.proto],
            src: decode::addr(k.family, &k.saddr),
            sport: k.sport,
            dst: decode::addr(k.family, &k.daddr),
            dport: k.dport,
            iface: &self.ifaces[&k.ifindex],
            ifindex: k.ifindex,
            state: &self.states[&state_key],
            age_s: decode::age_s(now, f.first_ns),
            idle_s: decode::age_s(now, f.last_ns),
            expired: is_expired(now, k, f),
            packets_orig: f.pkts_orig,
            packets_reply: f.pkts_reply,
            bytes_orig: f.bytes_orig,
            bytes_reply: f.bytes_reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::defs::FLOW_TABLES;
    use crate::net::{AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_UDP};
    use crate::skel::names as n;

    /// The hand-written rows make the document serde makes of the owned
    /// views (the schema of `conntrack list --json`), for TCP states, UDP,
    /// ICMP, IPv6, names seen a second time from the cache, a name that
    /// needs escaping, and arrays of no, one and several flows.
    #[test]
    fn rows_write_the_json_serde_writes_for_their_views() {
        let now = 5_000_000_000_000u64;
        let mut names = Names::default();
        names.ifaces.insert(9, "we\"ird\\if\u{e9}".into());
        let flows = [
            (IPPROTO_TCP, AF_INET, n::ZFW_TCP_ESTABLISHED as u8, 1u32),
            (IPPROTO_TCP, AF_INET, n::ZFW_TCP_SYN_SENT as u8, 1),
            (IPPROTO_TCP, AF_INET6, n::ZFW_TCP_ESTABLISHED as u8, 7),
            (IPPROTO_UDP, AF_INET, 0, 9),
            (IPPROTO_ICMP, AF_INET, 3, 4_000_000),
            (IPPROTO_TCP, AF_INET, 200, 1),
            (IPPROTO_UDP, AF_INET6, 0, 1),
        ];
        let mut rows = Vec::new();
        for (i, (proto, family, state, ifindex)) in flows.into_iter().enumerate() {
            let k = types::zfw_flow_key {
                saddr: [0x0100_000a | (i as u32 * 37) << 24, 0, 0, (i as u32) << 8],
                daddr: [0x0200_000a, 0x20, 0, 1],
                sport: 40000 + i as u16,
                dport: 443,
                ifindex,
                family,
                proto,
                ..Default::default()
            };
            let f = types::zfw_flow {
                first_ns: now - 90_123_456_789,
                last_ns: now - (i as u64) * 40_000_000_000,
                state,
                pkts_orig: 3,
                pkts_reply: [0, 9, 10, 99, 100, 1 << 40, 12345][i],
                bytes_orig: u64::MAX - i as u64,
                bytes_reply: 7,
                ..Default::default()
            };
            rows.push((k, f, &FLOW_TABLES[i % FLOW_TABLES.len()]));
        }
        for n in [0, 1, rows.len()] {
            let mut ours = vec![b'['];
            let mut views = Vec::new();
            for (i, (k, f, t)) in rows.iter().take(n).enumerate() {
                let row = names.row(now, t, k, f);
                row.write_json(&mut ours, i);
                views.push(row.to_view());
            }
            ours.extend_from_slice(if n == 0 { b"]" } else { b"\n]" });
            let serde = serde_json::to_string_pretty(&views).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), serde);
        }
    }
}
