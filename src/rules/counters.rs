//! Per-rule counters (ARCHITECTURE.md §7 "Counters"): rule_stats_map, a
//! per-CPU array the datapath adds to on the first packet of every flow a
//! rule decides (src/bpf/policy.h, `zfw_rule_hit`).
//!
//! Each rule's range_map slot names its counter (`zfw_range.stat`, 1..N-1;
//! 0: none).  The rule store gives a rule a counter id when the rule is
//! new or changed and copies the id with the rule otherwise, so a rule
//! keeps its counts across `apply`, across moves of its key's span and
//! across program replacement (the maps stay pinned); counts never appear
//! in a policy file.  A whole-set write, which reads every live range
//! anyway, takes the ids the old set's ranges leave free; a single-rule
//! add takes one from rule_ids_map, the record of the ids in use
//! (src/rules/ids.rs), so that it does not read every range.  A fresh id
//! is marked in that record, then zeroed, before any range names it.  When
//! every id is taken a new rule gets 0 and shows no counts (`zfw load
//! --map-size rule_stats_map=N` on a fresh load).

use crate::error::Result;
use crate::maps::{batch, defs, Maps};
use crate::rules::ids;
use crate::rules::live::{self, Live};
use crate::rules::model::Rule;
use crate::skel::{bytes_of, from_bytes, types};

/// What one rule decided, summed over the CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    pub packets: u64,
    pub bytes: u64,
    /// CLOCK_MONOTONIC ns of the latest hit on any CPU; 0: never
    pub last_ns: u64,
}

/// A live rule with its counter (`hits` None: the rule has no counter id).
#[derive(Clone, Debug)]
pub struct Counted {
    pub rule: Rule,
    pub stat: u32,
    pub hits: Option<Hits>,
}

/// Every rule_stats_map slot, summed over the CPUs (index = counter id).
pub fn read_all(maps: &Maps) -> Result<Vec<Hits>> {
    let h = maps.handle(&defs::RULE_STATS_MAP)?;
    let name = defs::RULE_STATS_MAP.info.name;
    let n = maps.max_entries(&defs::RULE_STATS_MAP)?;
    let e = batch::read(h, name, live::BATCH, Some((0, n)))?;
    let elem = std::mem::size_of::<types::zfw_rule_stats>();
    let stride = elem.div_ceil(8) * 8;
    let mut out = Vec::with_capacity(e.len());
    for (_, per_cpu) in e.iter() {
        let mut sum = Hits::default();
        for cpu in per_cpu.chunks_exact(stride) {
            let s: types::zfw_rule_stats = from_bytes(&cpu[..elem])?;
            sum.packets += s.packets;
            sum.bytes += s.bytes;
            sum.last_ns = sum.last_ns.max(s.last_ns);
        }
        out.push(sum);
    }
    Ok(out)
}

/// The live rules (as `store::read_live` lists them) with their counters.
pub fn live_counted(maps: &Maps) -> Result<Vec<Counted>> {
    let l = live::read(maps)?;
    let all = read_all(maps)?;
    Ok(l.rules
        .into_iter()
        .zip(l.stats)
        .map(|(rule, stat)| {
            let hits = (stat != 0).then(|| all.get(stat as usize).copied().unwrap_or_default());
            Counted { rule, stat, hits }
        })
        .collect())
}

/// Set the counters `ids` to zero on every CPU (id 0 is skipped).
pub fn zero(maps: &Maps, ids: &[u32]) -> Result<()> {
    let h = maps.handle(&defs::RULE_STATS_MAP)?;
    let name = defs::RULE_STATS_MAP.info.name;
    let stride = batch::value_stride(h)?;
    let ids: Vec<u32> = ids.iter().copied().filter(|i| *i != 0).collect();
    for chunk in ids.chunks(live::BATCH as usize) {
        let keys: Vec<u8> = chunk.iter().flat_map(|i| i.to_ne_bytes()).collect();
        let values = vec![0u8; stride * chunk.len()];
        batch::write(h, name, &keys, &values, chunk.len() as u32)?;
    }
    Ok(())
}

/// `rule reset-counters`: every counter back to zero.
pub fn reset_all(maps: &Maps) -> Result<()> {
    let n = maps.max_entries(&defs::RULE_STATS_MAP)?;
    zero(maps, &(1..n).collect::<Vec<u32>>())
}

/// Counter ids not used by any live range, handed out lowest first.
pub struct Ids {
    used: Vec<bool>,
    next: u32,
}

impl Ids {
    /// The ids free beside `used` (the ids of the ranges that stay live).
    pub fn free_beside(maps: &Maps, used: impl IntoIterator<Item = u32>) -> Result<Ids> {
        let n = maps.max_entries(&defs::RULE_STATS_MAP)? as usize;
        let mut v = vec![false; n];
        if let Some(z) = v.first_mut() {
            *z = true; // 0 means "no counter"
        }
        for i in used {
            if let Some(u) = v.get_mut(i as usize) {
                *u = true;
            }
        }
        Ok(Ids { used: v, next: 1 })
    }

    /// A free id (0 when all are taken), marked used.
    pub fn take(&mut self) -> u32 {
        while (self.next as usize) < self.used.len() {
            let i = self.next;
            self.next += 1;
            if !self.used[i as usize] {
                self.used[i as usize] = true;
                return i;
            }
        }
        0
    }
}

/// Counter ids for the rule set `rules` replacing `old`: a rule identical
/// to a live one keeps that rule's id, any other takes a free one.
/// Returns the ids (aligned with `rules`) and the fresh ones, which the
/// caller zeroes before writing the set.
pub fn assign(maps: &Maps, old: &Live, rules: &[Rule]) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut by_id: std::collections::HashMap<_, (&Rule, u32)> = old
        .rules
        .iter()
        .zip(&old.stats)
        .map(|(r, s)| (r.id(), (r, *s)))
        .collect();
    let mut kept = vec![0u32; rules.len()];
    for (i, r) in rules.iter().enumerate() {
        if let Some((o, s)) = by_id.remove(&r.id()) {
            if o == r {
                kept[i] = s;
            }
        }
    }
    // every id of the old set stays taken: its rules count until the switch
    let mut ids = Ids::free_beside(maps, old.stats.iter().copied())?;
    let mut fresh = Vec::new();
    for s in kept.iter_mut().filter(|s| **s == 0) {
        *s = ids.take();
        fresh.push(*s);
    }
    Ok((kept, fresh))
}

/// One fresh counter id (marked in rule_ids_map, zeroed) for a rule added
/// in place beside the live keys `spans`; 0 when all are taken.
pub fn fresh_beside(maps: &Maps, spans: &[live::Span]) -> Result<u32> {
    let mut rec = ids::current(maps, spans)?;
    let id = rec.take();
    rec.write(maps)?;
    zero(maps, &[id])?;
    Ok(id)
}

/// Two ranges are the same rule whatever their counter ids.
pub fn same_range(a: &types::zfw_range, b: &types::zfw_range) -> bool {
    let mut a = *a;
    a.stat = b.stat;
    bytes_of(&a) == bytes_of(b)
}
