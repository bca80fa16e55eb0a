//! Single-rule changes (`rule add`, `rule del`) written in place into the
//! live rule set (ARCHITECTURE.md §7).
//!
//! Only the affected key of the ACTIVE set changes, in an order such that
//! every state the datapath can observe between two map writes decides
//! every packet as the old or the new rule set would.  The datapath reads (policy.h): the dst_lpm_map node
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
//!
//! Cost: one batch read of tproxy_map (the live spans: free range_map
//! space, the key's dst prefix and its stored neighbours), a read of the
//! key's own ranges, one of rule_ids_map (a free counter id, src/rules/ids.rs:
//! not a read of every live range), and a handful of single-entry writes.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::maps::{defs, Maps};
use crate::netlink::route;
use crate::rules::compile::{self, lpm_key, rule_key, set_region};
use crate::rules::counters;
use crate::rules::ids;
use crate::rules::live::{self, decode_key, Span};
use crate::rules::model::{Action, Direction, Family, Prefix, Proto, Rule, RuleId};
use crate::rules::sets::{bump_gen, iface_index, no_such_rule, AddOutcome};
use crate::skel::{bytes_of, names, types};

type Group = (Direction, Family, Proto);

/// The live set as far as a one-key change needs it.
struct View {
    set: u8,
    /// active keys, in range order
    keys: Vec<Span>,
    /// total tproxy_map entries (both sets)
    total: usize,
    base: u32,
    half: u32,
}

fn view(maps: &Maps) -> Result<View> {
    let set = live::active_set(maps)?;
    let all = live::all_keys(maps)?;
    let total = all.len();
    let mut keys: Vec<Span> = all.into_iter().filter(|(k, _)| k.set == set).collect();
    keys.sort_by_key(|(_, sp)| sp.first);
    let (base, half) = set_region(set, maps.max_entries(&defs::RANGE_MAP)?);
    Ok(View {
        set,
        keys,
        total,
        base,
        half,
    })
}

impl View {
    fn find(&self, k: &types::zfw_rule_key) -> Option<types::zfw_rule_span> {
        self.keys
            .iter()
            .find(|(o, _)| bytes_of(o) == bytes_of(k))
            .map(|(_, sp)| *sp)
    }

    /// Is slot `idx` outside every live span (and inside the set's half)?
    fn slot_free(&self, idx: u32) -> bool {
        idx >= self.base
            && idx < self.base + self.half
            && !self
                .keys
                .iter()
                .any(|(_, sp)| idx >= sp.first && idx - sp.first < sp.count)
    }

    /// First fit for `n` contiguous slots no live span covers.  Slots a
    /// span gives up in this same change are never candidates (they were
    /// live when the view was read).
    fn free_run(&self, n: u32) -> Option<u32> {
        let mut at = self.base;
        for (_, sp) in &self.keys {
            if sp.first >= at + n {
                break;
            }
            at = at.max(sp.first.saturating_add(sp.count));
        }
        (at + n <= self.base + self.half).then_some(at)
    }

    /// (dst, src len) of the active keys of one group.
    fn group(&self, g: Group) -> Result<Vec<(Prefix, u8)>> {
        let mut v = Vec::new();
        for (k, _) in &self.keys {
            let (dir, fam, proto, dst, src) = decode_key(k)?;
            if (dir, fam, proto) == g {
                v.push((dst, src.len));
            }
        }
        Ok(v)
    }
}

/// Does prefix `a` contain prefix `b` (a is b or one of its ancestors)?
fn contains(a: &Prefix, b: &Prefix) -> bool {
    a.len <= b.len && Prefix::new(b.addr, a.len) == *a
}

/// The src lengths of the keys of dst `d` in `keys` (a group's keys).
fn own_srcs(d: &Prefix, keys: &[(Prefix, u8)]) -> BTreeSet<u8> {
    keys.iter()
        .filter(|(p, _)| p == d)
        .map(|(_, sl)| *sl)
        .collect()
}

/**
 * The dst_lpm_map pair lists of stored prefix `d` (when stored) and of
 * its stored descendants, given a group's `keys`: each lists every
 * (dst len, src len) of keys whose dst contains the node, most specific
 * first (the order compile.rs writes).  `d` comes first, then the others
 * in prefix order.
 *
 * One pass over the keys (the pairs above `d`, the keys under it), a sort
 * of the keys under `d`, and a walk in prefix order with a stack of the
 * ancestors inside the subtree: O(n log n) for the whole subtree, where a
 * list per node from all the keys would be O(n) per node (issue 19).
 */
fn subtree_lists(d: &Prefix, keys: &[(Prefix, u8)]) -> Vec<(Prefix, Vec<(u8, u8)>)> {
    let mut above: BTreeSet<(u8, u8)> = BTreeSet::new();
    let mut under: Vec<(Prefix, u8)> = Vec::new();
    for (p, sl) in keys {
        if p.len < d.len {
            if contains(p, d) {
                above.insert((p.len, *sl));
            }
        } else if contains(d, p) {
            under.push((*p, *sl));
        }
    }
    let above: Vec<(u8, u8)> = above.into_iter().rev().collect();
    // prefix order (an ancestor sorts before its descendants: its address
    // is theirs masked), src lengths longest first
    under.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    under.dedup();
    let mut out: Vec<(Prefix, Vec<(u8, u8)>)> = Vec::new();
    // indexes into `out` of the stored ancestors of the current node
    let mut stack: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < under.len() {
        let p = under[i].0;
        let mut list: Vec<(u8, u8)> = Vec::new();
        while i < under.len() && under[i].0 == p {
            list.push((p.len, under[i].1));
            i += 1;
        }
        while let Some(&top) = stack.last() {
            if contains(&out[top].0, &p) {
                break;
            }
            stack.pop();
        }
        match stack.last() {
            Some(&top) => list.extend_from_slice(&out[top].1),
            None => list.extend_from_slice(&above),
        }
        stack.push(out.len());
        out.push((p, list));
    }
    out
}

fn lpm_val(pairs: &[(u8, u8)]) -> types::zfw_lpm_val {
    let mut v = types::zfw_lpm_val {
        npairs: pairs.len() as u16,
        ..Default::default()
    };
    for (i, (dl, sl)) in pairs.iter().enumerate() {
        v.dst_len[i] = *dl;
        v.src_len[i] = *sl;
    }
    v
}

/// A dst_lpm_map write: Some(value) = put, None = delete the node.
type LpmWrite = (types::zfw_lpm_key, Option<types::zfw_lpm_val>);

/**
 * The dst_lpm_map writes that turn the lists of group `g` from `before`
 * into `after` (the group's keys without/with the keys of dst `d` that
 * change: the two differ in keys of dst `d` only): the node of `d` and of
 * its stored descendants, `d` first.  Empty when `d`'s src lengths, and so
 * its (dst len, src len) pairs, are the same either way.  Otherwise every
 * node of the subtree changes: a pair of dst length `d.len` on a node
 * under `d` can only come from `d`'s own keys.
 */
fn lpm_changes(
    g: Group,
    set: u8,
    d: &Prefix,
    before: &[(Prefix, u8)],
    after: &[(Prefix, u8)],
) -> Result<Vec<LpmWrite>> {
    let max_pairs = names::ZFW_MAX_PAIRS as usize;
    let (was, now) = (own_srcs(d, before), own_srcs(d, after));
    if was == now {
        return Ok(Vec::new());
    }
    let lists = subtree_lists(d, after);
    let mut out = Vec::with_capacity(lists.len() + 1);
    if now.is_empty() {
        // the node of d goes (was is not empty: they differ)
        out.push((lpm_key(g.0, g.1, g.2, set, d), None));
    }
    for (p, list) in lists {
        if list.len() > max_pairs {
            return Err(too_many_pairs(g, &p, list.len()));
        }
        out.push((lpm_key(g.0, g.1, g.2, set, &p), Some(lpm_val(&list))));
    }
    Ok(out)
}

/// The error of a dst whose trie list would exceed ZFW_MAX_PAIRS.
pub(crate) fn too_many_pairs(g: Group, p: &Prefix, n: usize) -> Error {
    compile::too_many_pairs(g.0, g.2, p, n)
}

/// A callback run after every map write the datapath can observe (tests
/// check decisions between the writes).
pub type Observer<'a> = &'a mut dyn FnMut();

/// dst_lpm_map writes per batch call in `add`/`del` (a covering prefix
/// rewrites every stored descendant's list: 250,000 single updates are
/// 250,000 syscalls).  A batch update applies its elements one at a time,
/// in order (the kernel's generic batch loop), so the datapath sees the
/// same sequence of states as single writes; `add_observed` and
/// `del_observed` write one element per call to observe each of them.
const LPM_BATCH: usize = live::BATCH as usize;

fn apply_lpm(maps: &Maps, writes: &[LpmWrite], obs: Observer, batch: usize) -> Result<()> {
    let batch = batch.max(1);
    let mut i = 0;
    while i < writes.len() {
        let put = writes[i].1.is_some();
        let mut j = i + 1;
        while j < writes.len() && j - i < batch && writes[j].1.is_some() == put {
            j += 1;
        }
        let run = &writes[i..j];
        if run.len() == 1 || !write_batch(maps, run)? {
            for (k, v) in run {
                match v {
                    Some(v) => maps.put(&defs::DST_LPM_MAP, k, v)?,
                    None => {
                        maps.del(&defs::DST_LPM_MAP, k)?;
                    }
                }
                if batch == 1 {
                    obs();
                }
            }
        }
        if batch > 1 {
            obs();
        }
        i = j;
    }
    Ok(())
}

/// One batch call for a run of puts (or of deletes).  Ok(false): the
/// kernel refused the batch (no batch ops, a key already gone); the caller
/// writes the run one element at a time (idempotent: what the batch
/// already wrote is written again with the same value, in the same order).
fn write_batch(maps: &Maps, run: &[LpmWrite]) -> Result<bool> {
    let h = maps.handle(&defs::DST_LPM_MAP)?;
    let mut ks = Vec::with_capacity(run.len() * std::mem::size_of::<types::zfw_lpm_key>());
    let mut vs = Vec::new();
    for (k, v) in run {
        ks.extend_from_slice(bytes_of(k));
        if let Some(v) = v {
            vs.extend_from_slice(bytes_of(v));
        }
    }
    let n = run.len() as u32;
    let f = libbpf_rs::MapFlags::ANY;
    let r = if run[0].1.is_some() {
        libbpf_rs::MapCore::update_batch(h, &ks, &vs, n, f, f)
    } else {
        libbpf_rs::MapCore::delete_batch(h, &ks, n, f, f)
    };
    Ok(r.is_ok())
}

/// Does the trie list `rule`'s (dst len, src len) pair for its dst (the
/// longest stored prefix containing the dst, looked up at the dst's
/// length, names the pair exactly when a key of that dst and src length
/// is published)?
fn published(maps: &Maps, rule: &Rule, set: u8) -> Result<bool> {
    let k = lpm_key(rule.direction, rule.family(), rule.proto, set, &rule.dst);
    let Some(v) = maps.get::<_, types::zfw_lpm_val>(&defs::DST_LPM_MAP, &k)? else {
        return Ok(false);
    };
    let n = usize::from(v.npairs).min(v.dst_len.len());
    Ok((0..n).any(|i| v.dst_len[i] == rule.dst.len && v.src_len[i] == rule.src.len))
}

/// A range slot's contents: the range and its service id.
type Slot = (types::zfw_range, Option<types::zfw_service_id>);

fn encode(r: &Rule) -> Result<Slot> {
    compile::encode_range(r, &iface_index)
}

/// A key's slots as the maps hold them.
fn read_slots(maps: &Maps, sp: &types::zfw_rule_span) -> Result<Vec<Slot>> {
    let end = sp.first.saturating_add(sp.count);
    let ranges = live::ranges(maps, sp.first, end)?;
    let mut out = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.into_iter().enumerate() {
        let s =
            maps.get::<u32, types::zfw_service_id>(&defs::SERVICE_MAP, &(sp.first + i as u32))?;
        out.push((r, s));
    }
    Ok(out)
}

/// Write slots at `at..` (free slots: nothing the datapath can reach).
fn write_slots(maps: &Maps, at: u32, slots: &[Slot]) -> Result<()> {
    let ranges: Vec<(u32, types::zfw_range)> = slots
        .iter()
        .enumerate()
        .map(|(i, (r, _))| (at + i as u32, *r))
        .collect();
    maps.put_many(&defs::RANGE_MAP, &ranges)?;
    for (i, (_, s)) in slots.iter().enumerate() {
        let idx = at + i as u32;
        match s {
            Some(s) => maps.put(&defs::SERVICE_MAP, &idx, s)?,
            // a label left on a free slot must not name this range
            None => {
                maps.del(&defs::SERVICE_MAP, &idx)?;
            }
        }
    }
    Ok(())
}

/// Drop the service ids of slots no span uses any more.
fn forget_slots(maps: &Maps, slots: impl Iterator<Item = u32>) -> Result<()> {
    for i in slots {
        maps.del(&defs::SERVICE_MAP, &i)?;
    }
    Ok(())
}

fn slots_of(sp: &types::zfw_rule_span) -> std::ops::Range<u32> {
    sp.first..sp.first.saturating_add(sp.count)
}

/// Is another live ingress TPROXY rule on dst `d` left beside the range
/// (`key`, `lo`..`hi`)?  Its local route must then stay.
fn other_tproxy(
    maps: &Maps,
    v: &View,
    d: &Prefix,
    key: &types::zfw_rule_key,
    ports: (u16, u16),
) -> Result<bool> {
    let (tproxy, _) = compile::action_code(Action::Tproxy(0));
    for (k, sp) in &v.keys {
        let (dir, _, _, dst, _) = decode_key(k)?;
        if dir != Direction::Ingress || dst != *d {
            continue;
        }
        let same_key = bytes_of(k) == bytes_of(key);
        for r in live::ranges(maps, sp.first, sp.first.saturating_add(sp.count))? {
            if r.action == tproxy && !(same_key && (r.lo, r.hi) == ports) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn is_tproxy_ingress(r: &Rule) -> bool {
    r.direction == Direction::Ingress && matches!(r.action, Action::Tproxy(_))
}

/**
 * Add `rule` in place.  Ok(None): range_map's active half has no room in
 * one piece for the key's ranges; the caller rewrites the whole set.
 */
pub fn add(maps: &Maps, rule: &Rule) -> Result<Option<AddOutcome>> {
    add_in(maps, rule, &mut || {}, LPM_BATCH)
}

/// `add`, calling `obs` after each map write (trie writes one at a time).
pub fn add_observed(maps: &Maps, rule: &Rule, obs: Observer) -> Result<Option<AddOutcome>> {
    add_in(maps, rule, obs, 1)
}

/// `add` with trie writes in batches of `batch`, `obs` after each call.
fn add_in(maps: &Maps, rule: &Rule, obs: Observer, batch: usize) -> Result<Option<AddOutcome>> {
    let v = view(maps)?;
    let key = rule_key(rule, v.set);
    let new_slot = encode(rule)?;
    let old_span = v.find(&key);
    let old_slots = match &old_span {
        Some(sp) => read_slots(maps, sp)?,
        None => Vec::new(),
    };
    let pos = old_slots
        .iter()
        .position(|(r, _)| (r.lo, r.hi) == (rule.ports.lo, rule.ports.hi));
    let mut slots = old_slots.clone();
    let g = (rule.direction, rule.family(), rule.proto);
    let outcome = match pos {
        Some(i)
            if counters::same_range(&new_slot.0, &slots[i].0)
                && slots[i].1.as_ref().map(bytes_of) == new_slot.1.as_ref().map(bytes_of) =>
        {
            // a change cut short between its key and its trie writes left
            // the key unpublished: finish it (the writes are idempotent)
            if !published(maps, rule, v.set)? {
                let after = v.group(g)?;
                let mut before = after.clone();
                before.retain(|(d, sl)| !(*d == rule.dst && *sl == rule.src.len));
                apply_lpm(
                    maps,
                    &lpm_changes(g, v.set, &rule.dst, &before, &after)?,
                    obs,
                    batch,
                )?;
                bump_gen(maps)?;
            }
            return Ok(Some(AddOutcome::Unchanged));
        }
        Some(i) => {
            slots[i] = new_slot;
            AddOutcome::Updated
        }
        None => {
            slots.push(new_slot);
            AddOutcome::Added
        }
    };
    let max_per_key = names::ZFW_MAX_RANGES_PER_KEY as usize;
    if slots.len() > max_per_key {
        return Err(compile::too_many_ranges(rule));
    }
    let live_ranges: usize = v.keys.iter().map(|(_, sp)| sp.count as usize).sum();
    if live_ranges + 1 > v.half as usize && outcome == AddOutcome::Added {
        // the full rewrite reports the capacity error
        return Ok(None);
    }
    if old_span.is_none() && v.total + 1 > maps.max_entries(&defs::TPROXY_MAP)? as usize {
        return Err(Error::runtime(format!(
            "tproxy_map is full ({} entries); nothing changed",
            v.total
        )));
    }

    // where the key's ranges go: appended right after its span when that
    // slot is free, else the whole list copied into a free run
    let (span, written_at, from): (types::zfw_rule_span, u32, usize) = match old_span {
        Some(sp) if outcome == AddOutcome::Added && v.slot_free(sp.first + sp.count) => (
            types::zfw_rule_span {
                first: sp.first,
                count: sp.count + 1,
            },
            sp.first + sp.count,
            slots.len() - 1,
        ),
        _ => match v.free_run(slots.len() as u32) {
            Some(at) => (
                types::zfw_rule_span {
                    first: at,
                    count: slots.len() as u32,
                },
                at,
                0,
            ),
            None => return Ok(None),
        },
    };

    // the trie: only a new key can bring a new (dst len, src len) pair
    let (lpm, before) = if old_span.is_none() {
        let before = v.group(g)?;
        let mut after = before.clone();
        after.push((rule.dst, rule.src.len));
        (lpm_changes(g, v.set, &rule.dst, &before, &after)?, before)
    } else {
        (Vec::new(), Vec::new())
    };

    // 0. a new or changed rule counts from zero on an id no range names
    // (ARCHITECTURE.md §7 "Counters"), taken once nothing can refuse the
    // change: a refused command writes nothing
    let at = pos.unwrap_or(slots.len() - 1);
    let replaced = pos.map_or(0, |i| old_slots[i].0.stat);
    slots[at].0.stat = counters::fresh_beside(maps, &v.keys)?;
    // 1. ranges (and their service ids) into slots no span covers
    write_slots(maps, written_at, &slots[from..])?;
    obs();
    // 2. the local route a TPROXY rule needs, before it can match
    if is_tproxy_ingress(rule) {
        route::add_local(&rule.dst)?;
    }
    // 3. the key points at its ranges: one atomic hash update
    maps.put(&defs::TPROXY_MAP, &key, &span)?;
    obs();
    // 4. publish a new pair: the dst's node, then its descendants
    if let Err(e) = apply_lpm(maps, &lpm, obs, batch) {
        if old_span.is_none() {
            // put back the nodes that took the new list, then the key
            let mut after = before.clone();
            after.push((rule.dst, rule.src.len));
            if let Ok(undo) = lpm_changes(g, v.set, &rule.dst, &after, &before) {
                let _ = apply_lpm(maps, &undo, &mut || {}, batch);
            }
            let _ = maps.del(&defs::TPROXY_MAP, &key);
        }
        return Err(e);
    }
    // 5. cached decisions of the old set stop counting
    bump_gen(maps)?;
    obs();
    // 6. the replaced rule's id is free (no live range names it), and the
    // slots the key left (a moved span) lose their labels
    ids::release(maps, replaced)?;
    if let Some(sp) = old_span {
        if span.first != sp.first {
            forget_slots(maps, slots_of(&sp))?;
        }
        // an old TPROXY range replaced by another action
        if let Some(i) = pos {
            let (tproxy, _) = compile::action_code(Action::Tproxy(0));
            if old_slots[i].0.action == tproxy
                && !is_tproxy_ingress(rule)
                && rule.direction == Direction::Ingress
                && !other_tproxy(maps, &view(maps)?, &rule.dst, &key, (0, 0))?
            {
                route::del_local(&rule.dst)?;
            }
        }
    }
    Ok(Some(outcome))
}

/**
 * Delete rule `id` in place.  Ok(false): the key's remaining ranges need
 * a free run range_map does not have; the caller rewrites the whole set.
 * A rule that does not exist is a usage error.
 */
pub fn del(maps: &Maps, id: &RuleId) -> Result<bool> {
    del_in(maps, id, &mut || {}, LPM_BATCH)
}

/// `del`, calling `obs` after each map write (trie writes one at a time).
pub fn del_observed(maps: &Maps, id: &RuleId, obs: Observer) -> Result<bool> {
    del_in(maps, id, obs, 1)
}

/// `del` with trie writes in batches of `batch`, `obs` after each call.
fn del_in(maps: &Maps, id: &RuleId, obs: Observer, batch: usize) -> Result<bool> {
    let v = view(maps)?;
    let probe = Rule {
        direction: id.direction,
        dst: id.dst,
        src: id.src,
        proto: id.proto,
        ports: id.ports,
        action: Action::Deny,
        interfaces: Vec::new(),
        service_id: None,
    };
    let key = rule_key(&probe, v.set);
    let Some(sp) = v.find(&key) else {
        return Err(no_such_rule(id));
    };
    let slots = read_slots(maps, &sp)?;
    let Some(i) = slots
        .iter()
        .position(|(r, _)| (r.lo, r.hi) == (id.ports.lo, id.ports.hi))
    else {
        return Err(no_such_rule(id));
    };
    let (tproxy, _) = compile::action_code(Action::Tproxy(0));
    let drop_route = id.direction == Direction::Ingress
        && slots[i].0.action == tproxy
        && !other_tproxy(maps, &v, &id.dst, &key, (id.ports.lo, id.ports.hi))?;
    let last = sp.count as usize - 1;

    if sp.count == 1 {
        // the key goes: unpublish its pair if it was the last of it, then
        // the key (nothing lists it any more), then the cache
        let g = (id.direction, id.dst.family(), id.proto);
        let before = v.group(g)?;
        let mut after = before.clone();
        if let Some(j) = after
            .iter()
            .position(|(d, sl)| *d == id.dst && *sl == id.src.len)
        {
            after.remove(j);
        }
        apply_lpm(
            maps,
            &lpm_removals(g, v.set, &id.dst, &before, &after)?,
            obs,
            batch,
        )?;
        maps.del(&defs::TPROXY_MAP, &key)?;
        obs();
        bump_gen(maps)?;
        obs();
        forget_slots(maps, slots_of(&sp))?;
    } else {
        let new_span = if i == last {
            types::zfw_rule_span {
                first: sp.first,
                count: sp.count - 1,
            }
        } else if i == 0 {
            types::zfw_rule_span {
                first: sp.first + 1,
                count: sp.count - 1,
            }
        } else {
            let rest: Vec<Slot> = slots
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, s)| *s)
                .collect();
            let Some(at) = v.free_run(rest.len() as u32) else {
                return Ok(false);
            };
            write_slots(maps, at, &rest)?;
            obs();
            types::zfw_rule_span {
                first: at,
                count: rest.len() as u32,
            }
        };
        maps.put(&defs::TPROXY_MAP, &key, &new_span)?;
        obs();
        bump_gen(maps)?;
        obs();
        let keep = slots_of(&new_span);
        forget_slots(maps, slots_of(&sp).filter(|s| !keep.contains(s)))?;
    }
    // no live range names the rule's counter id any more
    ids::release(maps, slots[i].0.stat)?;
    if drop_route {
        route::del_local(&id.dst)?;
    }
    Ok(true)
}

/// `lpm_changes` from `before` to `after` in deletion order: the stored
/// descendants first, the dst's own node last.
fn lpm_removals(
    g: Group,
    set: u8,
    d: &Prefix,
    before: &[(Prefix, u8)],
    after: &[(Prefix, u8)],
) -> Result<Vec<LpmWrite>> {
    // lpm_changes puts the dst's own node first
    let mut w = lpm_changes(g, set, d, before, after)?;
    if !w.is_empty() {
        w.rotate_left(1);
    }
    Ok(w)
}
