//! Policy setup for tests that need a rule before the rule CLI exists on
//! their branch: one catch-all ingress rule written straight into the
//! policy maps, exactly as the rule compiler lays rules out (src/bpf/policy.h).
#![allow(dead_code)]

use zfw::maps::Maps;
use zfw::skel::{names, types};

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// Value of `enum zfw_action` member `ZFW_ACT_<NAME>` ("allow", "tunnel", ...).
pub fn action(name: &str) -> u8 {
    let want = format!("ZFW_ACT_{}", name.to_ascii_uppercase());
    names::ZFW_ACTION
        .iter()
        .find(|(n, _)| *n == want)
        .unwrap_or_else(|| panic!("no action {name}"))
        .1 as u8
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
    maps.percpu_sum("counters_map", reason(name)).unwrap()
}

/// Install one ingress rule "dst 0/0, src 0/0, ports 0-65535 -> `action`"
/// for `family` (AF_INET/AF_INET6) and `proto` (TCP/UDP) in the active set:
///   - tproxy_map: key (dst/0, src/0, family, proto, ingress, set) ->
///     span of one range starting at a per-(family, proto) range_map index;
///   - range_map[index]: 0-65535, `action`, any interface;
///   - dst_lpm_map: prefix length 32 (the family/proto/dir/set header bits
///     only, i.e. dst length 0) -> the one (dst len 0, src len 0) pair;
///   - config_map: policy_gen + 1, so cached decisions are re-evaluated.
pub fn install_catch_all_rule(maps: &Maps, family: u8, proto: u8, action: u8) {
    let mut cfg = maps.config().unwrap();
    let set = cfg.active_set & 1;
    let index = 1000 + u32::from(family) * 256 + u32::from(proto);
    let key = types::zfw_rule_key {
        family,
        proto,
        dst_len: 0,
        src_len: 0,
        dir: 0,
        set,
        ..Default::default()
    };
    maps.put(
        "tproxy_map",
        &key,
        &types::zfw_rule_span {
            first: index,
            count: 1,
        },
    )
    .unwrap();
    let range = types::zfw_range {
        lo: 0,
        hi: 65535,
        action,
        ..Default::default()
    };
    maps.put("range_map", &index, &range).unwrap();
    let lk = types::zfw_lpm_key {
        prefixlen: 32,
        family,
        proto,
        dir: 0,
        set,
        ..Default::default()
    };
    let mut lv = types::zfw_lpm_val {
        npairs: 1,
        ..Default::default()
    };
    lv.dst_len[0] = 0;
    lv.src_len[0] = 0;
    maps.put("dst_lpm_map", &lk, &lv).unwrap();
    cfg.policy_gen = cfg.policy_gen.wrapping_add(1);
    maps.set_config(&cfg).unwrap();
}

/// bpf_ktime_get_ns() as user space sees it (CLOCK_MONOTONIC).
pub fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Set or clear interface flags (diag_map) of `ifindex`.
pub fn set_iface_flag(maps: &Maps, ifindex: u32, flag: &str, on: bool) {
    let bit = zfw::iface_state::flag_bit(flag).unwrap_or_else(|| panic!("no flag {flag}"));
    let mut st: types::zfw_iface = maps.get("diag_map", &ifindex).unwrap().expect("iface");
    if on {
        st.flags |= bit;
    } else {
        st.flags &= !bit;
    }
    maps.put("diag_map", &ifindex, &st).unwrap();
}

/// IPv4 address as the datapath stores it (network byte order word).
pub fn v4(s: &str) -> u32 {
    let a: std::net::Ipv4Addr = s.parse().unwrap();
    u32::from_ne_bytes(a.octets())
}
