//! What the rule store's writers (store.rs: whole sets; incremental.rs:
//! one rule) and the journal's recovery (journal.rs) share: one rule set
//! half cleared, the prefixes that need local routes, the policy
//! generation bump, interface names, and the outcome and errors of a rule
//! change.  It depends on no other writer, so the writers and the journal
//! form no import circle (ARCHITECTURE.md §7).

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::ifaddr;
use crate::maps::{chunked, defs, Maps};
use crate::rules::compile::set_region;
use crate::rules::live;
use crate::rules::model::{Action, Direction, Prefix, Rule, RuleId};
use crate::skel::types;

/// Resolve an interface name (or `#N` for one that has gone) to its index.
pub fn iface_index(name: &str) -> Result<u32> {
    if let Some(n) = name.strip_prefix('#') {
        return n.parse().map_err(|_| Error::UnknownIface(name.to_string()));
    }
    ifaddr::index_of(name)
}

/// Delete every entry of rule set `set` (keys, dst trie nodes, service
/// ids of its half of range_map): the leftovers of an interrupted write.
/// Writes put keys first and removals take them last, so a set without
/// keys has no trie nodes to clear.
pub(crate) fn clear_set(maps: &Maps, set: u8) -> Result<()> {
    let (lo, half) = set_region(set, maps.max_entries(&defs::RANGE_MAP)?);
    let labels: Vec<u32> = live::services(maps, lo, lo + half)?.into_keys().collect();
    maps.del_many(&defs::SERVICE_MAP, &labels)?;
    let keys: Vec<types::zfw_rule_key> = live::all_keys(maps)?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.set == set)
        .collect();
    if !keys.is_empty() {
        let lpm: Vec<types::zfw_lpm_key> = maps
            .entries::<types::zfw_lpm_key, types::zfw_lpm_val>(&defs::DST_LPM_MAP)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.set == set)
            .collect();
        maps.del_many(&defs::DST_LPM_MAP, &lpm)?;
        maps.del_many(&defs::TPROXY_MAP, &keys)?;
    }
    trim_rule_maps(maps)
}

/// Drop the range_map and service_map chunks no key's span covers (a
/// cleared set's, a compacted one's, those a cut write made), and fit
/// tproxy_map's table to its keys: the rule maps' memory follows the rules
/// present (ARCHITECTURE.md §6 "Chunks", "Grown tables").
/// Keys are written before the ranges they point at and removed after the
/// spans are left, so a chunk no key covers holds nothing a writer still
/// needs, and the datapath reads only chunks of the active set's keys.
pub(crate) fn trim_rule_maps(maps: &Maps) -> Result<()> {
    let spans = live::all_keys(maps)?;
    let keep = chunked::chunks_of(spans.iter().map(|(_, sp)| (sp.first, sp.count)));
    maps.drop_chunks_except(&defs::RANGE_MAP.info, &keep)?;
    maps.drop_chunks_except(&defs::SERVICE_MAP.info, &keep)?;
    maps.fit_table(&defs::TPROXY_MAP.info)
}

/// dst prefixes that need a local route: those of ingress TPROXY rules.
pub(crate) fn tproxy_prefixes(rules: &[Rule]) -> BTreeSet<Prefix> {
    rules
        .iter()
        .filter(|r| r.direction == Direction::Ingress && matches!(r.action, Action::Tproxy(_)))
        .map(|r| r.dst)
        .collect()
}

/// Invalidate every cached decision (matched_map) in O(1).
pub fn bump_gen(maps: &Maps) -> Result<()> {
    let mut cfg = maps.config()?;
    next_gen(&mut cfg);
    maps.set_config(&cfg)
}

/// The next policy_gen; a trusted counter id record (src/rules/ids.rs)
/// stays trusted, in the same config_map update.
pub fn next_gen(cfg: &mut types::zfw_config) {
    let trusted = cfg.rule_ids_gen == cfg.policy_gen;
    cfg.policy_gen = cfg.policy_gen.wrapping_add(1);
    if trusted {
        cfg.rule_ids_gen = cfg.policy_gen;
    }
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
