//! The rule model the packet tests decide by (precedence of README.md
//! "Rules": longest dst, then longest src, first fitting range of a key),
//! and the trie a full rewrite of a rule list writes: shared by
//! tests/rules_incremental.rs and tests/crash.rs.
#![allow(dead_code)]

use std::net::IpAddr;

use zfw::maps::Maps;
use zfw::rules::compile;
use zfw::rules::model::{Action, Direction, Prefix, Rule};
use zfw::rules::store;
use zfw::skel::{bytes_of, types};

pub type KeyOf = (
    Direction,
    u8,
    String,
    String,
    Vec<(u16, u16, String, Option<String>)>,
);

/// An ingress TCP rule without interfaces or service id.
pub fn rule(dst: &str, src: &str, ports: &str, action: Action) -> Rule {
    Rule {
        direction: Direction::Ingress,
        dst: dst.parse().unwrap(),
        src: src.parse().unwrap(),
        proto: "tcp".parse().unwrap(),
        ports: ports.parse().unwrap(),
        action,
        interfaces: vec![],
        service_id: None,
    }
}

/// Rules grouped by key (keys sorted, ranges in insertion order): the
/// order of keys in a listing is the order of their spans in range_map,
/// which in-place changes do not keep; the order inside a key is the
/// precedence and must be kept.
pub fn by_key(rules: &[Rule]) -> Vec<KeyOf> {
    let mut keys: Vec<KeyOf> = Vec::new();
    let mut at: std::collections::HashMap<(Direction, u8, String, String), usize> =
        Default::default();
    for r in rules {
        let (d, s) = (r.dst.to_string(), r.src.to_string());
        let range = (
            r.ports.lo,
            r.ports.hi,
            r.action.to_string(),
            r.service_id.clone(),
        );
        let id = (r.direction, r.proto.number(), d.clone(), s.clone());
        match at.get(&id) {
            Some(&i) => keys[i].4.push(range),
            None => {
                at.insert(id, keys.len());
                keys.push((r.direction, r.proto.number(), d, s, vec![range]));
            }
        }
    }
    keys.sort_by(|a, b| (a.0, a.1, &a.2, &a.3).cmp(&(b.0, b.1, &b.2, &b.3)));
    keys
}

/// The decision of the precedence rules (README.md "Rules"): longest dst, then
/// longest src; first fitting range of a key in insertion order; a key
/// without one falls through.  None = no match (default drop).
///
/// The keys containing the packet have distinct (dst len, src len) (the
/// lengths fix the prefixes), so this is: among the rules whose dst, src
/// and ports contain the packet, those of the longest (dst, src) lengths,
/// the first of them in the list (O(n) per call, for the large sets).
pub fn decide(rules: &[Rule], src: IpAddr, dst: IpAddr, port: u16) -> Option<Action> {
    let mut best: Option<((u8, u8), Action)> = None;
    for r in rules {
        let fits = r.dst.family() == Prefix::new(dst, 0).family()
            && Prefix::new(dst, r.dst.len) == r.dst
            && Prefix::new(src, r.src.len) == r.src
            && r.ports.lo <= port
            && port <= r.ports.hi;
        let lens = (r.dst.len, r.src.len);
        if fits && best.is_none_or(|(b, _)| lens > b) {
            best = Some((lens, r.action));
        }
    }
    best.map(|(_, a)| a)
}

/// The active set's trie nodes, as bytes, sorted.
pub fn lpm_entries(maps: &Maps) -> Vec<(Vec<u8>, Vec<u8>)> {
    let set = store::active_set(maps).unwrap();
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = maps
        .entries::<types::zfw_lpm_key, types::zfw_lpm_val>(&zfw::maps::defs::DST_LPM_MAP)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.set == set)
        .map(|(k, v)| (bytes_of(&k).to_vec(), bytes_of(&v).to_vec()))
        .collect();
    v.sort();
    v
}

/// What a full rewrite of `rules` would write into the trie.
pub fn compiled_lpm(maps: &Maps, rules: &[Rule]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let set = store::active_set(maps).unwrap();
    let max = maps.max_entries(&zfw::maps::defs::RANGE_MAP).unwrap();
    let c = compile::compile(rules, set, max, &store::iface_index, &[]).unwrap();
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = c
        .lpm
        .iter()
        .map(|(k, v)| (bytes_of(k).to_vec(), bytes_of(v).to_vec()))
        .collect();
    v.sort();
    v
}

/// The live rules' counter ids (0: none), checked: no id names two live
/// rules, and while rule_ids_map is trusted it marks each of them; with
/// `exact` it is trusted and marks nothing else (no id leaked).
/// ARCHITECTURE.md §7 "Counters".
pub fn checked_ids(maps: &Maps, exact: bool, what: &str) -> Vec<u32> {
    use zfw::rules::{counters, ids};
    let stats: Vec<u32> = counters::live_counted(maps)
        .unwrap()
        .iter()
        .map(|c| c.stat)
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for s in stats.iter().filter(|s| **s != 0) {
        assert!(
            seen.insert(*s),
            "counter id {s} names two live rules {what}"
        );
    }
    let trusted = ids::trusted(maps).unwrap();
    assert!(trusted || !exact, "rule_ids_map not trusted {what}");
    if trusted {
        let rec = ids::Record::read(maps).unwrap();
        let n = maps.max_entries(&zfw::maps::defs::RULE_STATS_MAP).unwrap();
        for i in 0..n {
            let live = seen.contains(&i);
            if live {
                assert!(
                    rec.has(i),
                    "live counter id {i} free in rule_ids_map {what}"
                );
            } else if exact {
                assert!(!rec.has(i), "counter id {i} leaked (no live rule) {what}");
            }
        }
    }
    stats
}
