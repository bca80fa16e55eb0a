//! Reading the live rule set back from the maps, in batch calls.
//!
//! A rule set is its tproxy_map keys (one per (dir, family, proto, dst,
//! src), each with a span of range_map), the range_map slots those spans
//! cover and the service ids of those slots (service_map).  Everything is
//! read with BPF_MAP_LOOKUP_BATCH (maps::batch): 250k rules cost a handful
//! of syscalls instead of ~4 per rule, and a failed batch is an error,
//! never a silently shorter rule set.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ifaddr;
use crate::maps::{defs, Maps};
use crate::rules::compile::{action_from_code, dir_from_code};
use crate::rules::model::{words_addr, Direction, Family, Ports, Prefix, Proto, Rule};
use crate::skel::{from_bytes, types};

/// Entries per batch call.
pub const BATCH: u32 = 8192;

pub type Span = (types::zfw_rule_key, types::zfw_rule_span);

/// The active rule set number.
pub fn active_set(maps: &Maps) -> Result<u8> {
    Ok(maps.config()?.active_set & 1)
}

/// Every tproxy_map entry (both sets).
pub fn all_keys(maps: &Maps) -> Result<Vec<Span>> {
    maps.entries(&defs::TPROXY_MAP)
}

/// The keys of rule set `set`, in range order.
pub fn set_keys(maps: &Maps, set: u8) -> Result<Vec<Span>> {
    let mut v: Vec<Span> = all_keys(maps)?
        .into_iter()
        .filter(|(k, _)| k.set == set)
        .collect();
    v.sort_by_key(|(_, sp)| sp.first);
    Ok(v)
}

/// range_map slots `[lo, hi)`, in slot order: every slot of a span is
/// written before its key, so a slot that is not there is an error.
pub fn ranges(maps: &Maps, lo: u32, hi: u32) -> Result<Vec<types::zfw_range>> {
    let e = maps.chunked_entries(&defs::RANGE_MAP.info, lo, hi)?;
    let want = hi.saturating_sub(lo) as usize;
    if e.len() != want {
        return Err(Error::runtime(format!(
            "reading range_map slots {lo}..{hi}: got {} of {want}",
            e.len()
        )));
    }
    e.iter().map(|(_, v)| from_bytes(v)).collect()
}

/// service_map entries whose slot lies in `[lo, hi)`.
pub fn services(maps: &Maps, lo: u32, hi: u32) -> Result<HashMap<u32, String>> {
    let mut out = HashMap::new();
    for (i, v) in maps.chunked_entries(&defs::SERVICE_MAP.info, lo, hi)? {
        out.insert(i, service_text(&from_bytes::<types::zfw_service_id>(&v)?));
    }
    Ok(out)
}

pub fn service_text(s: &types::zfw_service_id) -> String {
    let b: Vec<u8> =
        s.id.iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
    String::from_utf8_lossy(&b).into_owned()
}

fn iface_name(idx: u32) -> String {
    ifaddr::name_of(idx).unwrap_or_else(|| format!("#{idx}"))
}

/// What a tproxy_map key says: direction, family, protocol, dst, src.
pub fn decode_key(k: &types::zfw_rule_key) -> Result<(Direction, Family, Proto, Prefix, Prefix)> {
    let (Some(fam), Some(proto), Some(dir)) = (
        Family::from_af(k.family),
        Proto::from_number(k.proto),
        dir_from_code(k.dir),
    ) else {
        return Err(Error::runtime(format!(
            "tproxy_map holds a key zfw cannot decode (family {}, proto {}, dir {})",
            k.family, k.proto, k.dir
        )));
    };
    let dst = Prefix::new(words_addr(fam, &k.dst), k.dst_len);
    let src = Prefix::new(words_addr(fam, &k.src), k.src_len);
    Ok((dir, fam, proto, dst, src))
}

/// The rule a key's range slot `idx` holds.
pub fn decode_rule(
    k: &types::zfw_rule_key,
    idx: u32,
    r: &types::zfw_range,
    service_id: Option<String>,
) -> Result<Rule> {
    let (direction, _, proto, dst, src) = decode_key(k)?;
    let action = action_from_code(r.action, r.tproxy_port).ok_or_else(|| {
        Error::runtime(format!("range_map[{idx}] has unknown action {}", r.action))
    })?;
    Ok(Rule {
        direction,
        dst,
        src,
        proto,
        ports: Ports { lo: r.lo, hi: r.hi },
        action,
        interfaces: r
            .ifindex
            .iter()
            .take(usize::from(r.nif))
            .map(|i| iface_name(*i))
            .collect(),
        service_id,
    })
}

/// The live rule set as the maps hold it.
pub struct Live {
    pub set: u8,
    /// keys of the active set, in range order
    pub keys: Vec<Span>,
    /// every live rule: keys in range order, ranges in insertion order
    pub rules: Vec<Rule>,
    /// the service_map slots the active set uses
    pub service_slots: Vec<u32>,
    /// each rule's counter id (`zfw_range.stat`; 0: none), aligned with `rules`
    pub stats: Vec<u32>,
}

pub fn read(maps: &Maps) -> Result<Live> {
    read_set(maps, active_set(maps)?)
}

/// The range_map slots `[lo, hi)` the spans of `keys` lie in.
pub fn covered(keys: &[Span]) -> (u32, u32) {
    let lo = keys.iter().map(|(_, sp)| sp.first).min().unwrap_or(0);
    let hi = keys
        .iter()
        .map(|(_, sp)| sp.first.saturating_add(sp.count))
        .max()
        .unwrap_or(0);
    (lo, hi)
}

/// Rule set `set` as the maps hold it (the inactive one: what an
/// interrupted whole-set write left, ARCHITECTURE.md §7).
pub fn read_set(maps: &Maps, set: u8) -> Result<Live> {
    let keys = set_keys(maps, set)?;
    let (lo, hi) = covered(&keys);
    let slots = ranges(maps, lo, hi)?;
    let mut svc = services(maps, lo, hi)?;
    let mut rules = Vec::new();
    let mut service_slots = Vec::new();
    let mut stats = Vec::new();
    for (k, sp) in &keys {
        for idx in sp.first..sp.first.saturating_add(sp.count) {
            let r = slots.get((idx - lo) as usize).ok_or_else(|| {
                Error::runtime(format!("range_map has no slot {idx} (a live key's span)"))
            })?;
            let s = svc.remove(&idx);
            if s.is_some() {
                service_slots.push(idx);
            }
            rules.push(decode_rule(k, idx, r, s)?);
            stats.push(r.stat);
        }
    }
    Ok(Live {
        set,
        keys,
        rules,
        service_slots,
        stats,
    })
}
