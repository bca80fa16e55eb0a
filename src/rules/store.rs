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
//! active set changes, in place; incremental.rs gives the order of its
//! writes beside the code, and why every state between two of them decides
//! as the old or the new rule set.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::maps::Maps;
use crate::maps::{defs, MapId};
use crate::netlink::route;
use crate::rules::compile::{self, Compiled};
use crate::rules::counters;
use crate::rules::ids;
use crate::rules::incremental;
use crate::rules::journal::{self, Op};
use crate::rules::live::{self, Live};
use crate::rules::model::{Direction, Rule, RuleId};
use crate::rules::sets;
use crate::skel::types;

pub use live::active_set;
pub use sets::{bump_gen, iface_index, AddOutcome};
pub(crate) use sets::{clear_set, no_such_rule, tproxy_prefixes};

/// Every live rule (both directions), keys in range order, ranges in
/// insertion order.
pub fn read_live(maps: &Maps) -> Result<Vec<Rule>> {
    Ok(live::read(maps)?.rules)
}

/// Delete what the live set `old` holds: trie nodes first (`lpm`, compiled
/// from its rules), then service ids, then keys, so that a set whose keys
/// are gone has nothing else left either.
fn remove_live(maps: &Maps, old: &Live, lpm: &Compiled) -> Result<()> {
    let nodes: Vec<types::zfw_lpm_key> = lpm.lpm.iter().map(|(k, _)| *k).collect();
    maps.del_many(&defs::DST_LPM_MAP, &nodes)?;
    maps.del_many(&defs::SERVICE_MAP, &old.service_slots)?;
    let keys: Vec<types::zfw_rule_key> = old.keys.iter().map(|(k, _)| *k).collect();
    maps.del_many(&defs::TPROXY_MAP, &keys)
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

/// Write a compiled (inactive) set: keys first (see clear_set), in batch
/// calls (ARCHITECTURE.md §7: a cut batch is a cut sequence of puts).
fn write_compiled(maps: &Maps, c: &Compiled) -> Result<()> {
    maps.put_many(&defs::TPROXY_MAP, &c.keys)?;
    let slots: Vec<(u32, types::zfw_range)> = (c.base..).zip(c.ranges.iter().copied()).collect();
    maps.put_many(&defs::RANGE_MAP, &slots)?;
    maps.put_many(&defs::SERVICE_MAP, &c.services)?;
    maps.put_many(&defs::DST_LPM_MAP, &c.lpm)
}

/// Remove the local routes the live TPROXY rules needed (`unload --all`).
pub fn remove_routes(maps: &Maps) -> Result<()> {
    for p in tproxy_prefixes(&read_live(maps)?) {
        route::del_local(&p)?;
    }
    Ok(())
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
    // fresh ids are marked used and start at zero before any range names
    // them (ARCHITECTURE.md §7 "Counters")
    if ids::trusted(maps)? {
        let mut rec = ids::Record::read(maps)?;
        rec.set(fresh.iter().copied());
        rec.write(maps)?;
    }
    counters::zero(maps, &fresh)?;
    write_compiled(maps, &c)?;

    let before = tproxy_prefixes(old);
    let after = tproxy_prefixes(rules);
    for p in after.difference(&before) {
        route::add_local(p)?;
    }
    let mut cfg = maps.config()?;
    cfg.active_set = next;
    sets::next_gen(&mut cfg);
    maps.set_config(&cfg)?;
    // routes before entries: a cut removal leaves only map entries, which
    // recovery finds (ARCHITECTURE.md §7)
    for p in before.difference(&after) {
        route::del_local(p)?;
    }
    remove_live(maps, old_set, &live_c)?;
    sets::trim_rule_maps(maps)?;
    // the old set's ids that no rule kept are free
    ids::sync(maps, stats)
}

/// Replace the whole live rule set (both directions) with `rules`.
pub fn replace_all(maps: &Maps, rules: &[Rule]) -> Result<()> {
    journal::run(maps, Op::Replace, || {
        let old = live::read(maps)?;
        write_set(maps, &old, rules)
    })
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
