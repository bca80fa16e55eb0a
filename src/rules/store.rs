//! The live rule set: read back from the maps alone, and replaced as a
//! whole.
//!
//! Write path.  Every change (add, del, flush, a later `apply`) builds the
//! complete new rule set - both directions - into the inactive rule set
//! (`set = 1 - active_set`: its own tproxy_map/dst_lpm_map keys and its own
//! half of range_map), checks capacity before writing anything, writes it,
//! and then flips `active_set` and bumps `policy_gen` with one config_map
//! update.  The datapath therefore sees either the old or the new rule set,
//! never a mix, and matched_map entries of older generations stop counting
//! at the same instant.  Afterwards the old set's entries are deleted.  A
//! failure before the flip leaves the live rules untouched (the partial
//! inactive set is cleared by the next write).

use std::collections::BTreeSet;

use libbpf_rs::{MapCore, MapFlags};

use crate::error::{Context, Error, Result};
use crate::ifaddr;
use crate::maps::Maps;
use crate::netlink::route;
use crate::rules::compile::{self, action_from_code, dir_from_code, set_region, Compiled};
use crate::rules::model::{words_addr, Action, Direction, Family, Prefix, Proto, Rule, RuleId};
use crate::skel::{bytes_of, from_bytes, types};

const BATCH: usize = 8192;

/// The active rule set number.
pub fn active_set(maps: &Maps) -> Result<u8> {
    Ok(maps.config()?.active_set & 1)
}

fn iface_name(idx: u32) -> String {
    ifaddr::name_of(idx).unwrap_or_else(|| format!("#{idx}"))
}

/// Resolve an interface name (or `#N` for one that has gone) to its index.
pub fn iface_index(name: &str) -> Result<u32> {
    if let Some(n) = name.strip_prefix('#') {
        return n.parse().map_err(|_| Error::UnknownIface(name.to_string()));
    }
    ifaddr::index_of(name)
}

fn rule_keys(maps: &Maps) -> Result<Vec<types::zfw_rule_key>> {
    Ok(maps
        .raw_keys("tproxy_map")?
        .iter()
        .map(|k| from_bytes::<types::zfw_rule_key>(k))
        .collect())
}

/// Every live rule (both directions), keys in range order, ranges in
/// insertion order.
pub fn read_live(maps: &Maps) -> Result<Vec<Rule>> {
    let set = active_set(maps)?;
    let mut spans = Vec::new();
    for k in rule_keys(maps)?.into_iter().filter(|k| k.set == set) {
        if let Some(sp) = maps.get::<_, types::zfw_rule_span>("tproxy_map", &k)? {
            spans.push((k, sp));
        }
    }
    spans.sort_by_key(|(_, sp)| sp.first);
    let needed: u64 = spans.iter().map(|(_, sp)| u64::from(sp.count)).sum();
    let ranges = read_ranges(maps, &spans, needed)?;
    let mut services = std::collections::HashMap::new();
    for k in maps.raw_keys("service_map")? {
        let idx: u32 = from_bytes(&k);
        if let Some(s) = maps.get::<u32, types::zfw_service_id>("service_map", &idx)? {
            let b: Vec<u8> =
                s.id.iter()
                    .take_while(|c| **c != 0)
                    .map(|c| *c as u8)
                    .collect();
            services.insert(idx, String::from_utf8_lossy(&b).into_owned());
        }
    }
    let mut out = Vec::new();
    for (k, sp) in spans {
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
        for idx in sp.first..sp.first.saturating_add(sp.count) {
            let r = ranges.get(idx as usize).copied().ok_or_else(|| {
                Error::runtime(format!("range_map has no slot {idx} (rule {dst} {src})"))
            })?;
            let action = action_from_code(r.action, r.tproxy_port).ok_or_else(|| {
                Error::runtime(format!("range_map[{idx}] has unknown action {}", r.action))
            })?;
            let service_id = services.get(&idx).cloned();
            out.push(Rule {
                direction: dir,
                dst,
                src,
                proto,
                ports: crate::rules::model::Ports { lo: r.lo, hi: r.hi },
                action,
                interfaces: r
                    .ifindex
                    .iter()
                    .take(usize::from(r.nif))
                    .map(|i| iface_name(*i))
                    .collect(),
                service_id,
            });
        }
    }
    Ok(out)
}

/// The range_map slots of `spans` (indexed by slot): one lookup per slot
/// for small rule sets, else all of range_map in batches (an array: every
/// slot is returned, so a short read is an error, never a silently shorter
/// rule set).
fn read_ranges(
    maps: &Maps,
    spans: &[(types::zfw_rule_key, types::zfw_rule_span)],
    needed: u64,
) -> Result<Vec<types::zfw_range>> {
    let h = maps.handle("range_map")?;
    let max = h.max_entries() as usize;
    let mut out = vec![types::zfw_range::default(); max];
    if needed <= BATCH as u64 {
        for (_, sp) in spans {
            for idx in sp.first..sp.first.saturating_add(sp.count) {
                let r = maps
                    .get("range_map", &idx)?
                    .ok_or_else(|| Error::runtime(format!("range_map has no slot {idx}")))?;
                if let Some(slot) = out.get_mut(idx as usize) {
                    *slot = r;
                }
            }
        }
        return Ok(out);
    }
    let mut seen = 0usize;
    let it = h
        .lookup_batch(BATCH as u32, MapFlags::ANY, MapFlags::ANY)
        .ctx(|| "reading range_map".into())?;
    for (k, v) in it {
        let idx: u32 = from_bytes(&k);
        if let Some(slot) = out.get_mut(idx as usize) {
            *slot = from_bytes(&v);
            seen += 1;
        }
    }
    if seen != max {
        return Err(Error::runtime(format!(
            "reading range_map: got {seen} of {max} slots"
        )));
    }
    Ok(out)
}

/// Delete the entries `c` wrote (a set compiled from the rules it holds):
/// trie nodes first, then service ids, then keys, so that a set whose keys
/// are gone has nothing else left either.
fn remove_compiled(maps: &Maps, c: &Compiled) -> Result<()> {
    for (k, _) in &c.lpm {
        maps.del("dst_lpm_map", k)?;
    }
    for (i, _) in &c.services {
        maps.del("service_map", i)?;
    }
    let h = maps.handle("tproxy_map")?;
    for chunk in c.keys.chunks(BATCH) {
        let mut buf = Vec::with_capacity(std::mem::size_of_val(chunk));
        for (k, _) in chunk {
            buf.extend_from_slice(bytes_of(k));
        }
        if h.delete_batch(&buf, chunk.len() as u32, MapFlags::ANY, MapFlags::ANY)
            .is_err()
        {
            for (k, _) in chunk {
                maps.del("tproxy_map", k)?;
            }
        }
    }
    Ok(())
}

/// Delete every entry of rule set `set` (keys, dst trie nodes, service
/// ids): the leftovers of an interrupted write.  Writes put keys first and
/// removals take them last, so a set without keys has nothing to clear.
fn clear_set(maps: &Maps, set: u8) -> Result<()> {
    let keys: Vec<types::zfw_rule_key> = rule_keys(maps)?
        .into_iter()
        .filter(|k| k.set == set)
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let lpm: Vec<types::zfw_lpm_key> = maps
        .raw_keys("dst_lpm_map")?
        .iter()
        .map(|k| from_bytes::<types::zfw_lpm_key>(k))
        .filter(|k| k.set == set)
        .collect();
    for k in &lpm {
        maps.del("dst_lpm_map", k)?;
    }
    let (lo, half) = set_region(set, maps.max_entries("range_map")?);
    let svc: Vec<u32> = maps
        .raw_keys("service_map")?
        .iter()
        .map(|k| from_bytes::<u32>(k))
        .filter(|i| *i >= lo && *i < lo + half)
        .collect();
    for i in &svc {
        maps.del("service_map", i)?;
    }
    let h = maps.handle("tproxy_map")?;
    for chunk in keys.chunks(BATCH) {
        let mut buf = Vec::with_capacity(std::mem::size_of_val(chunk));
        for k in chunk {
            buf.extend_from_slice(bytes_of(k));
        }
        if h.delete_batch(&buf, chunk.len() as u32, MapFlags::ANY, MapFlags::ANY)
            .is_err()
        {
            for k in chunk {
                maps.del("tproxy_map", k)?;
            }
        }
    }
    Ok(())
}

fn capacity(maps: &Maps, name: &str, used: usize, adding: usize) -> Result<()> {
    let max = maps.max_entries(name)? as usize;
    if used + adding > max {
        return Err(Error::runtime(format!(
            "{name} is full: the new rule set needs {adding} entries beside the {used} live ones, {name} holds {max}; nothing changed (zfw load --map-size {name}=N on a fresh load)"
        )));
    }
    Ok(())
}

/// Write a compiled (inactive) set: keys first (see clear_set).
fn write_compiled(maps: &Maps, c: &Compiled) -> Result<()> {
    let th = maps.handle("tproxy_map")?;
    for chunk in c.keys.chunks(BATCH) {
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (k, v) in chunk {
            ks.extend_from_slice(bytes_of(k));
            vs.extend_from_slice(bytes_of(v));
        }
        th.update_batch(&ks, &vs, chunk.len() as u32, MapFlags::ANY, MapFlags::ANY)
            .ctx(|| "writing tproxy_map".into())?;
    }
    let rh = maps.handle("range_map")?;
    let mut at = c.base;
    for chunk in c.ranges.chunks(BATCH) {
        let mut ks = Vec::with_capacity(chunk.len() * 4);
        let mut vs = Vec::with_capacity(std::mem::size_of_val(chunk));
        for r in chunk {
            ks.extend_from_slice(&at.to_ne_bytes());
            vs.extend_from_slice(bytes_of(r));
            at += 1;
        }
        rh.update_batch(&ks, &vs, chunk.len() as u32, MapFlags::ANY, MapFlags::ANY)
            .ctx(|| "writing range_map".into())?;
    }
    for (i, s) in &c.services {
        maps.put("service_map", i, s)?;
    }
    for (k, v) in &c.lpm {
        maps.put("dst_lpm_map", k, v)?;
    }
    Ok(())
}

/// dst prefixes that need a local route: those of ingress TPROXY rules.
fn tproxy_prefixes(rules: &[Rule]) -> BTreeSet<Prefix> {
    rules
        .iter()
        .filter(|r| r.direction == Direction::Ingress && matches!(r.action, Action::Tproxy(_)))
        .map(|r| r.dst)
        .collect()
}

/// Remove the local routes the live TPROXY rules needed (`unload --all`).
pub fn remove_routes(maps: &Maps) -> Result<()> {
    for p in tproxy_prefixes(&read_live(maps)?) {
        route::del_local(&p)?;
    }
    Ok(())
}

/// Invalidate every cached decision (matched_map) in O(1).
pub fn bump_gen(maps: &Maps) -> Result<()> {
    let mut cfg = maps.config()?;
    cfg.policy_gen = cfg.policy_gen.wrapping_add(1);
    maps.set_config(&cfg)
}

/// Make `rules` (both directions, insertion order, unique ids) the live
/// rule set; see the module doc.  `old` is the live set it replaces (for
/// the TPROXY routes).
fn write_set(maps: &Maps, old: &[Rule], rules: &[Rule]) -> Result<()> {
    for r in rules {
        r.validate()?;
    }
    let mut seen = BTreeSet::new();
    for r in rules {
        if !seen.insert(r.id()) {
            return Err(Error::usage(format!(
                "duplicate rule: dst {} src {} {} ports {} ({})",
                r.dst,
                r.src,
                r.proto.name(),
                r.ports,
                r.direction.name()
            )));
        }
    }
    let live = active_set(maps)?;
    let next = 1 - live;
    let range_max = maps.max_entries("range_map")?;
    let c = compile::compile(rules, next, range_max, &iface_index)?;
    // what the live set occupies (it was compiled from these rules)
    let live_c = compile::compile(old, live, range_max, &iface_index)?;
    clear_set(maps, next)?;
    capacity(maps, "tproxy_map", live_c.keys.len(), c.keys.len())?;
    capacity(maps, "dst_lpm_map", live_c.lpm.len(), c.lpm.len())?;
    capacity(maps, "service_map", live_c.services.len(), c.services.len())?;
    write_compiled(maps, &c)?;

    let before = tproxy_prefixes(old);
    let after = tproxy_prefixes(rules);
    for p in after.difference(&before) {
        route::add_local(p)?;
    }
    let mut cfg = maps.config()?;
    cfg.active_set = next;
    cfg.policy_gen = cfg.policy_gen.wrapping_add(1);
    maps.set_config(&cfg)?;
    remove_compiled(maps, &live_c)?;
    for p in before.difference(&after) {
        route::del_local(p)?;
    }
    Ok(())
}

/// Replace the whole live rule set (both directions) with `rules`.
pub fn replace_all(maps: &Maps, rules: &[Rule]) -> Result<()> {
    let old = read_live(maps)?;
    write_set(maps, &old, rules)
}

/// Replace the rules of one direction, keeping the other's.
pub fn replace_dir(maps: &Maps, dir: Direction, rules: &[Rule]) -> Result<()> {
    let old = read_live(maps)?;
    let mut all: Vec<Rule> = old.iter().filter(|r| r.direction != dir).cloned().collect();
    all.extend(rules.iter().filter(|r| r.direction == dir).cloned());
    write_set(maps, &old, &all)
}

#[derive(Debug, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// An identical rule was live: nothing changed.
    Unchanged,
    /// A rule with the same key and ports got the new action/interfaces/id
    /// (it keeps its place in the order).
    Updated,
}

pub fn add(maps: &Maps, rule: Rule) -> Result<AddOutcome> {
    rule.validate()?;
    for n in &rule.interfaces {
        iface_index(n)?;
    }
    let old = read_live(maps)?;
    let mut new = old.clone();
    let outcome = match new.iter_mut().find(|r| r.id() == rule.id()) {
        Some(r) if *r == rule => return Ok(AddOutcome::Unchanged),
        Some(r) => {
            *r = rule;
            AddOutcome::Updated
        }
        None => {
            new.push(rule);
            AddOutcome::Added
        }
    };
    write_set(maps, &old, &new)?;
    Ok(outcome)
}

/// Delete the rule `id`; a rule that does not exist is a usage error.
pub fn del(maps: &Maps, id: &RuleId) -> Result<()> {
    let old = read_live(maps)?;
    if !old.iter().any(|r| r.id() == *id) {
        return Err(Error::usage(format!(
            "no such {} rule: dst {} src {} {} ports {}",
            id.direction.name(),
            id.dst,
            id.src,
            id.proto.name(),
            id.ports
        )));
    }
    let new: Vec<Rule> = old.iter().filter(|r| r.id() != *id).cloned().collect();
    write_set(maps, &old, &new)
}

/// Remove every rule of the given directions; returns how many went.
pub fn flush(maps: &Maps, dirs: &[Direction]) -> Result<usize> {
    let old = read_live(maps)?;
    let new: Vec<Rule> = old
        .iter()
        .filter(|r| !dirs.contains(&r.direction))
        .cloned()
        .collect();
    let n = old.len() - new.len();
    write_set(maps, &old, &new)?;
    Ok(n)
}
