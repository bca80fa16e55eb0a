//! Policy setup for tests that need a rule without the rule CLI: one
//! catch-all ingress rule written straight into the policy maps, exactly as
//! the rule compiler lays rules out (src/bpf/policy.h); plus counters,
//! clocks and interface flags.
#![allow(dead_code)]

use zfw::maps::Maps;
use zfw::skel::{names, types};

pub const AF_INET: u8 = zfw::net::AF_INET;
pub const AF_INET6: u8 = zfw::net::AF_INET6;
pub const TCP: u8 = zfw::net::IPPROTO_TCP;
pub const UDP: u8 = zfw::net::IPPROTO_UDP;

/// Value of `enum zfw_action` member `ZFW_ACT_<NAME>` ("allow", "tunnel", ...).
pub fn action(name: &str) -> u8 {
    zfw::testkit::rules::action(name).unwrap_or_else(|| panic!("no action {name}"))
}

/// Value of `enum zfw_reason` member `ZFW_R_<NAME>`.
pub fn reason(name: &str) -> u32 {
    let want = format!("ZFW_R_{}", name.to_ascii_uppercase());
    names::ZFW_REASON
        .iter()
        .find(|(n, _)| *n == want)
        .unwrap_or_else(|| panic!("no reason {name}"))
        .1 as u32
}

/// Sum over CPUs of the verdict counter `name` (e.g. "xdp_redirect").
pub fn counter(maps: &Maps, name: &str) -> u64 {
    zfw::status::reason_count(maps, reason(name)).unwrap()
}

/// Install one catch-all ingress rule (dst 0/0, src 0/0, ports 0-65535) for
/// `family` and `proto` with `action`; see zfw::testkit::rules for the layout.
pub fn install_catch_all_rule(maps: &Maps, family: u8, proto: u8, action: u8) {
    zfw::testkit::rules::install_catch_all_rule(maps, family, proto, action).unwrap()
}

/// bpf_ktime_get_ns() as user space sees it (CLOCK_MONOTONIC).
pub fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Set or clear interface flags (diag_map) of `ifindex`.
pub fn set_iface_flag(maps: &Maps, ifindex: u32, flag: &str, on: bool) {
    let bit = zfw::iface_state::flag_bit(flag).unwrap_or_else(|| panic!("no flag {flag}"));
    let mut st: types::zfw_iface = maps
        .get(&zfw::maps::defs::DIAG_MAP, &ifindex)
        .unwrap()
        .expect("iface");
    if on {
        st.flags |= bit;
    } else {
        st.flags &= !bit;
    }
    maps.put(&zfw::maps::defs::DIAG_MAP, &ifindex, &st).unwrap();
}

/// IPv4 address as the datapath stores it (network byte order word).
pub fn v4(s: &str) -> u32 {
    let a: std::net::Ipv4Addr = s.parse().unwrap();
    u32::from_ne_bytes(a.octets())
}
