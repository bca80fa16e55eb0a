//! Turning an ordered rule list into map contents for one rule set.
//!
//! Layout (see src/bpf/policy.h for how the datapath reads it):
//! - one tproxy_map key per (direction, family, proto, dst, src), its value
//!   a span of range_map;
//! - range_map holds each key's ranges contiguously, in insertion order;
//!   rule set `s` owns the slots `[s * half, (s + 1) * half)` where `half`
//!   is half of range_map's size, so a new set can be built beside the live
//!   one;
//! - service_map maps a range slot to its service id;
//! - dst_lpm_map gets one entry per distinct dst prefix listing every
//!   (dst len, src len) pair of keys whose dst prefix contains it (itself
//!   and its stored ancestors), most specific first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::rules::model::{Action, Direction, Family, Prefix, Proto, Rule};
use crate::skel::{names, types};

/// What one rule set puts into the maps.
#[derive(Default)]
pub struct Compiled {
    pub keys: Vec<(types::zfw_rule_key, types::zfw_rule_span)>,
    /// range_map slots `base..base + ranges.len()`
    pub base: u32,
    pub ranges: Vec<types::zfw_range>,
    pub services: Vec<(u32, types::zfw_service_id)>,
    pub lpm: Vec<(types::zfw_lpm_key, types::zfw_lpm_val)>,
}

pub fn dir_code(d: Direction) -> u8 {
    match d {
        Direction::Ingress => names::ZFW_DIR_INGRESS as u8,
        Direction::Egress => names::ZFW_DIR_EGRESS as u8,
    }
}

pub fn dir_from_code(c: u8) -> Option<Direction> {
    [Direction::Ingress, Direction::Egress]
        .into_iter()
        .find(|d| dir_code(*d) == c)
}

pub fn action_code(a: Action) -> (u8, u16) {
    match a {
        Action::Allow => (names::ZFW_ACT_ALLOW as u8, 0),
        Action::Deny => (names::ZFW_ACT_DENY as u8, 0),
        Action::Tproxy(p) => (names::ZFW_ACT_TPROXY as u8, p),
        Action::Tunnel => (names::ZFW_ACT_TUNNEL as u8, 0),
    }
}

pub fn action_from_code(code: u8, port: u16) -> Option<Action> {
    match i64::from(code) {
        names::ZFW_ACT_ALLOW => Some(Action::Allow),
        names::ZFW_ACT_DENY => Some(Action::Deny),
        names::ZFW_ACT_TPROXY => Some(Action::Tproxy(port)),
        names::ZFW_ACT_TUNNEL => Some(Action::Tunnel),
        _ => None,
    }
}

/// One rule's range_map slot and its service_map entry.
pub fn encode_range(
    r: &Rule,
    ifindex: &dyn Fn(&str) -> Result<u32>,
) -> Result<(types::zfw_range, Option<types::zfw_service_id>)> {
    let (action, tproxy_port) = action_code(r.action);
    let mut rg = types::zfw_range {
        lo: r.ports.lo,
        hi: r.ports.hi,
        tproxy_port,
        action,
        nif: r.interfaces.len() as u8,
        ..Default::default()
    };
    for (slot, name) in rg.ifindex.iter_mut().zip(&r.interfaces) {
        *slot = ifindex(name)?;
    }
    let svc = r.service_id.as_ref().map(|id| {
        let mut s = types::zfw_service_id::default();
        for (d, b) in s.id.iter_mut().zip(id.bytes()) {
            *d = b as _;
        }
        s
    });
    Ok((rg, svc))
}

/// The tproxy_map key of a rule in rule set `set`.
pub fn rule_key(r: &Rule, set: u8) -> types::zfw_rule_key {
    types::zfw_rule_key {
        dst: r.dst.words(),
        src: r.src.words(),
        family: r.family().af(),
        proto: r.proto.number(),
        dst_len: r.dst.len,
        src_len: r.src.len,
        dir: dir_code(r.direction),
        set,
        ..Default::default()
    }
}

/// range_map slots owned by rule set `set` in a range_map of `max` slots.
pub fn set_region(set: u8, max: u32) -> (u32, u32) {
    let half = max / 2;
    (u32::from(set & 1) * half, half)
}

type KeyId = (Direction, Family, Proto, Prefix, Prefix);
type GroupId = (Direction, Family, Proto);

/**
 * Compile `rules` (in insertion order; ids unique) into rule set `set`.
 * `ifindex` resolves an interface name.  `range_max` is range_map's size.
 * `stats` gives each rule's counter id (aligned with `rules`; a rule past
 * its end gets 0, no counter: compiles that only size or list a set).
 */
pub fn compile(
    rules: &[Rule],
    set: u8,
    range_max: u32,
    ifindex: &dyn Fn(&str) -> Result<u32>,
    stats: &[u32],
) -> Result<Compiled> {
    let max_per_key = names::ZFW_MAX_RANGES_PER_KEY as usize;
    let max_pairs = names::ZFW_MAX_PAIRS as usize;
    let (base, half) = set_region(set, range_max);

    // keys in order of first appearance, each with its rules in order
    let mut order: Vec<KeyId> = Vec::new();
    let mut by_key: HashMap<KeyId, Vec<(&Rule, u32)>> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        let k = (r.direction, r.family(), r.proto, r.dst, r.src);
        let e = by_key.entry(k).or_insert_with(|| {
            order.push(k);
            Vec::new()
        });
        e.push((r, stats.get(i).copied().unwrap_or(0)));
        if e.len() > max_per_key {
            return Err(too_many_ranges(r));
        }
    }
    if rules.len() > half as usize {
        return Err(Error::runtime(format!(
            "range_map is full: the rule set needs {} port ranges, a rule set holds at most {half} (range_map has {range_max} slots, half per rule set); nothing changed",
            rules.len()
        )));
    }

    let mut out = Compiled {
        base,
        ..Default::default()
    };
    let mut groups: BTreeMap<GroupId, BTreeMap<Prefix, BTreeSet<u8>>> = BTreeMap::new();
    for k in &order {
        let rs = &by_key[k];
        let first = base + out.ranges.len() as u32;
        for (r, stat) in rs {
            let (mut rg, svc) = encode_range(r, ifindex)?;
            rg.stat = *stat;
            let idx = base + out.ranges.len() as u32;
            if let Some(s) = svc {
                out.services.push((idx, s));
            }
            out.ranges.push(rg);
        }
        out.keys.push((
            rule_key(rs[0].0, set),
            types::zfw_rule_span {
                first,
                count: rs.len() as u32,
            },
        ));
        groups
            .entry((k.0, k.1, k.2))
            .or_default()
            .entry(k.3)
            .or_default()
            .insert(k.4.len);
    }

    for ((dir, fam, proto), dsts) in &groups {
        // only the dst lengths in use can hold ancestors
        let lens: BTreeSet<u8> = dsts.keys().map(|d| d.len).collect();
        let index: HashMap<&Prefix, &BTreeSet<u8>> = dsts.iter().collect();
        for d in dsts.keys() {
            let mut pairs: Vec<(u8, u8)> = Vec::new();
            for &l in lens.iter().rev().filter(|l| **l <= d.len) {
                let anc = Prefix::new(d.addr, l);
                if let Some(srcs) = index.get(&anc) {
                    for s in srcs.iter().rev() {
                        pairs.push((l, *s));
                    }
                }
            }
            if pairs.len() > max_pairs {
                return Err(too_many_pairs(*dir, *proto, d, pairs.len()));
            }
            let mut v = types::zfw_lpm_val {
                npairs: pairs.len() as u16,
                ..Default::default()
            };
            for (i, (dl, sl)) in pairs.iter().enumerate() {
                v.dst_len[i] = *dl;
                v.src_len[i] = *sl;
            }
            out.lpm.push((lpm_key(*dir, *fam, *proto, set, d), v));
        }
    }
    Ok(out)
}

/// A key that would hold more than ZFW_MAX_RANGES_PER_KEY port ranges
/// (README "Limits").
pub fn too_many_ranges(r: &Rule) -> Error {
    let max = names::ZFW_MAX_RANGES_PER_KEY;
    Error::usage(format!(
        "more than {max} port ranges for dst {} src {} {} ({}): one (dst, src, proto) key holds at most {max}; merge adjacent or overlapping port ranges into one, or spread the rules over more specific src or dst prefixes (README \"Limits\"); nothing changed",
        r.dst,
        r.src,
        r.proto.name(),
        r.direction.name()
    ))
}

/// A dst whose trie list would name more than ZFW_MAX_PAIRS (dst len, src
/// len) pairs (README "Limits").
pub fn too_many_pairs(dir: Direction, proto: Proto, d: &Prefix, n: usize) -> Error {
    let max = names::ZFW_MAX_PAIRS;
    Error::usage(format!(
        "dst {d} ({}, {}) lies under {n} distinct (dst length, src length) combinations of rules (its own and its covering prefixes'); the datapath follows at most {max} per address: use fewer distinct src prefix lengths under these dst prefixes, or fewer nesting levels of dst prefixes (README \"Limits\"); nothing changed",
        proto.name(),
        dir.name(),
    ))
}

pub fn lpm_key(
    dir: Direction,
    fam: Family,
    proto: Proto,
    set: u8,
    d: &Prefix,
) -> types::zfw_lpm_key {
    types::zfw_lpm_key {
        prefixlen: 32 + u32::from(d.len),
        family: fam.af(),
        proto: proto.number(),
        dir: dir_code(dir),
        set,
        addr: d.words(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::Ports;

    fn rule(dst: &str, src: &str, ports: &str) -> Rule {
        Rule {
            direction: Direction::Ingress,
            dst: dst.parse().unwrap(),
            src: src.parse().unwrap(),
            proto: Proto::Tcp,
            ports: ports.parse::<Ports>().unwrap(),
            action: Action::Allow,
            interfaces: vec![],
            service_id: None,
        }
    }

    #[test]
    fn keys_group_ranges_contiguously_and_lpm_lists_ancestor_pairs() {
        let rules = vec![
            rule("10.0.0.0/8", "0.0.0.0/0", "80"),
            rule("10.1.0.0/16", "192.168.0.0/16", "80"),
            rule("10.0.0.0/8", "0.0.0.0/0", "90"),
        ];
        let c = compile(&rules, 1, 100, &|_| Ok(1), &[]).unwrap();
        assert_eq!(c.base, 50);
        assert_eq!(c.keys.len(), 2);
        assert_eq!((c.keys[0].1.first, c.keys[0].1.count), (50, 2));
        assert_eq!((c.keys[1].1.first, c.keys[1].1.count), (52, 1));
        assert_eq!(c.ranges[1].lo, 90);
        let deep = c.lpm.iter().find(|(k, _)| k.prefixlen == 48).unwrap();
        assert_eq!(deep.1.npairs, 2);
        assert_eq!((deep.1.dst_len[0], deep.1.src_len[0]), (16, 16));
        assert_eq!((deep.1.dst_len[1], deep.1.src_len[1]), (8, 0));
        assert!(c.lpm.iter().all(|(k, _)| k.set == 1));
    }

    #[test]
    fn a_set_larger_than_half_the_range_map_is_refused() {
        let rules: Vec<Rule> = (1..=6)
            .map(|p| rule("10.0.0.0/8", "0.0.0.0/0", &p.to_string()))
            .collect();
        assert!(compile(&rules, 0, 10, &|_| Ok(1), &[]).is_err());
        assert!(compile(&rules, 0, 12, &|_| Ok(1), &[]).is_ok());
    }
}
