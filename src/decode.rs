//! Turning raw ABI values into what people read: addresses as text,
//! protocol and state names, ages in seconds, interface names.

use std::net::IpAddr;

use crate::net::{self, Family, AF_INET, AF_INET6};
use crate::skel::{enum_name, names};

/// An address stored as four network-order words in a key of family
/// `family` (anything but AF_INET6 reads as IPv4, word 0).
pub fn addr(family: u8, words: &[u32; 4]) -> IpAddr {
    let f = if family == AF_INET6 {
        Family::V6
    } else {
        Family::V4
    };
    net::words_addr(f, words)
}

pub fn family(f: u8) -> &'static str {
    match f {
        AF_INET => "ipv4",
        AF_INET6 => "ipv6",
        _ => "unknown",
    }
}

pub fn proto(p: u8) -> String {
    match p {
        net::IPPROTO_ICMP => "icmp".into(),
        net::IPPROTO_TCP => "tcp".into(),
        net::IPPROTO_UDP => "udp".into(),
        net::IPPROTO_ICMPV6 => "icmpv6".into(),
        net::IPPROTO_VRRP => "vrrp".into(),
        n => n.to_string(),
    }
}

pub fn tcp_state(s: u8) -> String {
    enum_name(names::ZFW_TCP_STATE, "ZFW_TCP_", i64::from(s))
}

pub fn reason(r: u16) -> String {
    enum_name(names::ZFW_REASON, "ZFW_R_", i64::from(r))
}

pub fn action(a: u8) -> String {
    enum_name(names::ZFW_ACTION, "ZFW_ACT_", i64::from(a))
}

/// `addr:port`, bracketing IPv6.
pub fn endpoint(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns() and its coarse twin.
pub fn mono_now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Seconds since a datapath timestamp (0 for timestamps in the future).
pub fn age_s(now_ns: u64, ts_ns: u64) -> f64 {
    (now_ns.saturating_sub(ts_ns) as f64 / 1e9 * 10.0).round() / 10.0
}

thread_local! {
    /// ifindex -> name, read once per process (dumps decode thousands of
    /// entries); refreshed when an index is not in it.
    static IFNAMES: std::cell::RefCell<Option<std::collections::HashMap<u32, String>>> =
        const { std::cell::RefCell::new(None) };
}

fn read_ifnames() -> std::collections::HashMap<u32, String> {
    nix::net::if_::if_nameindex()
        .map(|l| {
            l.iter()
                .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Interface name of an index (empty when unknown here).
pub fn ifname(idx: u32) -> String {
    IFNAMES.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|m| !m.contains_key(&idx)) {
            let mut m = read_ifnames();
            m.entry(idx).or_default(); // remember a miss: one refresh per index
            *c = Some(m);
        }
        c.as_ref()
            .and_then(|m| m.get(&idx).cloned())
            .unwrap_or_default()
    })
}

/// A C string field.
pub fn cstr(b: &[i8]) -> String {
    let v: Vec<u8> = b
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&v).into_owned()
}

pub fn mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
