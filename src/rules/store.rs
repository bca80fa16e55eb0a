//! The live rule set: read back from the maps (live.rs, batch reads),
//! replaced as a whole (here), or changed one rule at a time
//! (incremental.rs).
//!
//! Whole-set write (`apply`, `rule flush`, and `rule add/del` when
//! range_map has no room in one piece).  The complete new rule set - both
//! directions - is built into the inactive rule set (`set = 1 -
//! active_set`: its own tproxy_map/dst_lpm_map keys and its own half of
//! range_map), capacity is checked before anything is written, the set is
//! written, and then `active_set` flips and `policy_gen` is bumped with one
//! config_map update.  The datapath therefore sees either the old or the
//! new rule set, never a mix, and matched_map entries of older generations
//! stop counting at the same instant.  Afterwards the old set's entries are
//! deleted.  A failure before the flip leaves the live rules untouched (the
//! partial inactive set is cleared by the next write).  This also compacts
//! range_map: the new set's ranges are contiguous from its half's start.
//!
//! Single-rule write (`rule add`, `rule del`): only the affected key of the
//! ACTIVE set changes, in an order such that every state the datapath can
//! observe between two map writes decides every packet as the old or the
//! new rule set would.  The datapath reads (policy.h): the dst_lpm_map node
//! of the packet's longest stored dst prefix D, whose pair list names the
//! (dst len, src len) combinations to probe; tproxy_map for each of them;
//! the probed key's span of range_map.  Each of these single writes is
//! atomic for a reader (a hash or trie update swaps a whole element; a
//! range_map slot is only written while no span covers it).  Add:
//! 1. write the key's new range list into range_map slots no live span
//!    covers (appended right after its span if that slot is free, else the
//!    whole list copied into the first free run): unreachable so far;
//! 2. TPROXY: add the local route;
//! 3. point the key at the new span (new key: insert it).  An existing key
//!    switches from its old list to its new one in one update.  A new key
//!    whose (dst len, src len) pair is already on its dst's path is probed
//!    from now on: that single insert is the whole change.  A new key with
//!    a new pair is not probed yet (no list names its pair);
//! 4. publish the new pair: the dst prefix's node (inserted if new, its
//!    list = pairs of its stored ancestors and itself), then every stored
//!    descendant's list.  A packet whose longest stored prefix already has
//!    the new list probes the new key (present since step 3) and otherwise
//!    exactly the old keys; one whose node still has the old list never
//!    probes the new key, and no other key differs: old decision;
//! 5. bump policy_gen: cached decisions taken before (with the old
//!    generation) stop counting; later ones see every write above;
//! 6. forget the service ids of slots a moved span left.
//!
//! Delete runs the same steps backwards: a key losing one of several
//! ranges gets a shrunk span (first or last range) or a copy of its
//! remaining list in free slots, then the span update, then the gen bump;
//! a key losing its last range first has its pair unpublished (descendant
//! lists, then its dst node: updated, or deleted when no key with that dst
//! is left), then the key is deleted (nothing probes it any more), then the
//! gen bump, then the route and service ids go.
//!
//! Freed slots are reused only by a later command, never within the one
//! that freed them; a program still scanning an old span when a later
//! command rewrites those slots would have to stay inside one BPF program
//! run for the whole of that command's start-up (milliseconds): TC programs
//! run in microseconds with preemption off, so we accept that window.
//! Free space is the complement of the live spans (read from tproxy_map);
//! when no run of free slots is long enough the change falls back to the
//! whole-set write, which compacts.

use std::collections::BTreeSet;

use libbpf_rs::{MapCore, MapFlags};

use crate::error::{Context, Error, Result};
use crate::ifaddr;
use crate::maps::Maps;
use crate::maps::{defs, MapId};
use crate::netlink::route;
use crate::rules::compile::{self, set_region, Compiled};
use crate::rules::counters;
use crate::rules::incremental;
use crate::rules::journal::{self, Op};
use crate::rules::live::{self, Live};
use crate::rules::model::{Action, Direction, Prefix, Rule, RuleId};
use crate::skel::{bytes_of, from_bytes, types};

const BATCH: usize = live::BATCH as usize;

pub use live::active_set;

/// Resolve an interface name (or `#N` for one that has gone) to its index.
pub fn iface_index(name: &str) -> Result<u32> {
    if let Some(n) = name.strip_prefix('#') {
        return n.parse().map_err(|_| Error::UnknownIface(name.to_string()));
    }
    ifaddr::index_of(name)
}

/// Every live rule (both directions), keys in range order, ranges in
/// insertion order.
pub fn read_live(maps: &Maps) -> Result<Vec<Rule>> {
    Ok(live::read(maps)?.rules)
}

fn delete_keys(maps: &Maps, keys: &[types::zfw_rule_key]) -> Result<()> {
    let h = maps.handle(&defs::TPROXY_MAP)?;
    for chunk in keys.chunks(BATCH) {
        let mut buf = Vec::with_capacity(std::mem::size_of_val(chunk));
        for k in chunk {
            buf.extend_from_slice(bytes_of(k));
        }
        if h.delete_batch(&buf, chunk.len() as u32, MapFlags::ANY, MapFlags::ANY)
            .is_err()
        {
            for k in chunk {
                maps.del(&defs::TPROXY_MAP, k)?;
            }
        }
    }
    Ok(())
}

/// Delete what the live set `old` holds: trie nodes first (`lpm`, compiled
/// from its rules), then service ids, then keys, so that a set whose keys
/// are gone has nothing else left either.
fn remove_live(maps: &Maps, old: &Live, lpm: &Compiled) -> Result<()> {
    for (k, _) in &lpm.lpm {
        maps.del(&defs::DST_LPM_MAP, k)?;
    }
    for i in &old.service_slots {
        maps.del(&defs::SERVICE_MAP, i)?;
    }
    let keys: Vec<types::zfw_rule_key> = old.keys.iter().map(|(k, _)| *k).collect();
    delete_keys(maps, &keys)
}

/// Delete every entry of rule set `set` (keys, dst trie nodes, service
/// ids of its half of range_map): the leftovers of an interrupted write.
/// Writes put keys first and removals take them last, so a set without
/// keys has no trie nodes to clear.
pub(crate) fn clear_set(maps: &Maps, set: u8) -> Result<()> {
    let (lo, half) = set_region(set, maps.max_entries(&defs::RANGE_MAP)?);
    for i in live::services(maps, lo, lo + half)?.keys() {
        maps.del(&defs::SERVICE_MAP, i)?;
    }
    let keys: Vec<types::zfw_rule_key> = live::all_keys(maps)?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.set == set)
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let mut lpm: Vec<types::zfw_lpm_key> = Vec::new();
    for k in maps.raw_keys(&defs::DST_LPM_MAP)? {
        let k: types::zfw_lpm_key = from_bytes(&k)?;
        if k.set == set {
            lpm.push(k);
        }
    }
    for k in &lpm {
        maps.del(&defs::DST_LPM_MAP, k)?;
    }
    delete_keys(maps, &keys)
}

fn capacity(maps: &Maps, m: impl MapId, used: usize, adding: usize) -> Result<()> {
    let name = m.info()?.name;
    let max = maps.max_entries(m)? as usize;
    if used + adding > max {
        return Err(Error::runtime(format!(
            "{name} is full: the new rule set needs {adding} entries beside the {used} live ones, {name} holds {max}; nothing changed (zfw load --map-size {name}=N on a fresh load)"
        )));
    }
    Ok(())
}

/// Write a compiled (inactive) set: keys first (see clear_set).
fn write_compiled(maps: &Maps, c: &Compiled) -> Result<()> {
    let th = maps.handle(&defs::TPROXY_MAP)?;
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
    let rh = maps.handle(&defs::RANGE_MAP)?;
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
        maps.put(&defs::SERVICE_MAP, i, s)?;
    }
    for (k, v) in &c.lpm {
        maps.put(&defs::DST_LPM_MAP, k, v)?;
    }
    Ok(())
}

/// dst prefixes that need a local route: those of ingress TPROXY rules.
pub(crate) fn tproxy_prefixes(rules: &[Rule]) -> BTreeSet<Prefix> {
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
/// rule set; see the module doc.  `old` is the live set it replaces.
fn write_set(maps: &Maps, old_set: &Live, rules: &[Rule]) -> Result<()> {
    let old = &old_set.rules[..];
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
    let live = old_set.set;
    let next = 1 - live;
    let range_max = maps.max_entries(&defs::RANGE_MAP)?;
    // counters: unchanged rules keep theirs (ARCHITECTURE.md §7 "Counters")
    let (stats, fresh) = counters::assign(maps, old_set, rules)?;
    let c = compile::compile(rules, next, range_max, &iface_index, &stats)?;
    // what the live set occupies (it was compiled from these rules)
    let live_c = compile::compile(old, live, range_max, &iface_index, &old_set.stats)?;
    clear_set(maps, next)?;
    capacity(maps, &defs::TPROXY_MAP, live_c.keys.len(), c.keys.len())?;
    capacity(maps, &defs::DST_LPM_MAP, live_c.lpm.len(), c.lpm.len())?;
    capacity(
        maps,
        &defs::SERVICE_MAP,
        live_c.services.len(),
        c.services.len(),
    )?;
    // fresh ids start at zero before any range names them
    counters::zero(maps, &fresh)?;
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
    // routes before entries: a cut removal leaves only map entries, which
    // recovery finds (ARCHITECTURE.md §7)
    for p in before.difference(&after) {
        route::del_local(p)?;
    }
    remove_live(maps, old_set, &live_c)
}

/// Replace the whole live rule set (both directions) with `rules`.
pub fn replace_all(maps: &Maps, rules: &[Rule]) -> Result<()> {
    journal::run(maps, Op::Replace, || {
        let old = live::read(maps)?;
        write_set(maps, &old, rules)
    })
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

/// Add one rule: incrementally (see the module doc), or by a full rewrite
/// when the active half of range_map has no contiguous room left for the
/// key's ranges (which compacts it).
pub fn add(maps: &Maps, rule: Rule) -> Result<AddOutcome> {
    rule.validate()?;
    for n in &rule.interfaces {
        iface_index(n)?;
    }
    journal::run(maps, Op::RuleAdd, || match incremental::add(maps, &rule)? {
        Some(o) => Ok(o),
        None => add_full_now(maps, rule),
    })
}

/// `add` as a full two-set rewrite.
pub fn add_full(maps: &Maps, rule: Rule) -> Result<AddOutcome> {
    rule.validate()?;
    journal::run(maps, Op::RuleAdd, || add_full_now(maps, rule))
}

fn add_full_now(maps: &Maps, rule: Rule) -> Result<AddOutcome> {
    let old = live::read(maps)?;
    let mut new = old.rules.clone();
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

pub(crate) fn no_such_rule(id: &RuleId) -> Error {
    Error::usage(format!(
        "no such {} rule: dst {} src {} {} ports {}",
        id.direction.name(),
        id.dst,
        id.src,
        id.proto.name(),
        id.ports
    ))
}

/// Delete the rule `id`; a rule that does not exist is a usage error.
/// Incremental, or a full rewrite when the key's remaining ranges need
/// room range_map does not have in one piece.
pub fn del(maps: &Maps, id: &RuleId) -> Result<()> {
    journal::run(maps, Op::RuleDel, || {
        if incremental::del(maps, id)? {
            return Ok(());
        }
        del_full_now(maps, id)
    })
}

/// `del` as a full two-set rewrite.
pub fn del_full(maps: &Maps, id: &RuleId) -> Result<()> {
    journal::run(maps, Op::RuleDel, || del_full_now(maps, id))
}

fn del_full_now(maps: &Maps, id: &RuleId) -> Result<()> {
    let old = live::read(maps)?;
    if !old.rules.iter().any(|r| r.id() == *id) {
        return Err(no_such_rule(id));
    }
    let new: Vec<Rule> = old
        .rules
        .iter()
        .filter(|r| r.id() != *id)
        .cloned()
        .collect();
    write_set(maps, &old, &new)
}

/// Remove every rule of the given directions; returns how many went.
pub fn flush(maps: &Maps, dirs: &[Direction]) -> Result<usize> {
    journal::run(maps, Op::Replace, || flush_now(maps, dirs))
}

fn flush_now(maps: &Maps, dirs: &[Direction]) -> Result<usize> {
    let old = live::read(maps)?;
    let new: Vec<Rule> = old
        .rules
        .iter()
        .filter(|r| !dirs.contains(&r.direction))
        .cloned()
        .collect();
    let n = old.rules.len() - new.len();
    write_set(maps, &old, &new)?;
    Ok(n)
}
