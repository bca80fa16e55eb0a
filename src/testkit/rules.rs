//! One catch-all ingress rule written straight into the policy maps, laid out
//! exactly as the rule compiler lays rules out (see src/bpf/policy.h).  For
//! packet tests and benchmarks that need a rule without going through the
//! rule CLI.

use crate::error::Result;
use crate::maps::{defs, Maps};
use crate::skel::{names, types};

/// Value of `enum zfw_action` member `ZFW_ACT_<NAME>` ("allow", "tunnel", ...).
pub fn action(name: &str) -> Option<u8> {
    let want = format!("ZFW_ACT_{}", name.to_ascii_uppercase());
    names::ZFW_ACTION
        .iter()
        .find(|(n, _)| *n == want)
        .map(|(_, v)| *v as u8)
}

/// Install the ingress rule "dst 0/0, src 0/0, ports 0-65535 -> `action`"
/// for `family` (AF_INET/AF_INET6) and `proto` (TCP/UDP) in the active set:
///   - tproxy_map: key (dst/0, src/0, family, proto, ingress, set) -> a span
///     of one range at a per-(family, proto) range_map index;
///   - range_map[index]: 0-65535, `action`, any interface;
///   - dst_lpm_map: prefix length 32 (the family/proto/dir/set header bits
///     only, i.e. dst length 0) -> the one (dst len 0, src len 0) pair;
///   - config_map: policy_gen + 1, so cached decisions are re-evaluated.
pub fn install_catch_all_rule(maps: &Maps, family: u8, proto: u8, action: u8) -> Result<()> {
    let mut cfg = maps.config()?;
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
    let span = types::zfw_rule_span {
        first: index,
        count: 1,
    };
    maps.put(&defs::TPROXY_MAP, &key, &span)?;
    let range = types::zfw_range {
        lo: 0,
        hi: 65535,
        action,
        ..Default::default()
    };
    maps.put(&defs::RANGE_MAP, &index, &range)?;
    let lk = types::zfw_lpm_key {
        prefixlen: 32,
        family,
        proto,
        dir: 0,
        set,
        ..Default::default()
    };
    let lv = types::zfw_lpm_val {
        npairs: 1,
        ..Default::default()
    };
    maps.put(&defs::DST_LPM_MAP, &lk, &lv)?;
    cfg.policy_gen = cfg.policy_gen.wrapping_add(1);
    maps.set_config(&cfg)
}
