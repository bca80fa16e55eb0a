//! The rule store's journal (journal_map, ARCHITECTURE.md §7): what makes a
//! rule change that was killed part-way (OOM killer, a timeout, Ctrl-C)
//! safe to find and to finish.
//!
//! Every writing entry point of the store (`rule add/del/flush`, `apply`,
//! the full rewrites) runs inside [`run`]: it first finishes whatever an
//! earlier, interrupted change left ([`recover`]), then writes a journal
//! record (op, pid, start time, active set), then the change itself in the
//! order store.rs's module doc describes, and clears the record last.  A
//! record the next command finds therefore means "a change was cut short
//! somewhere between its first and its last map write".
//!
//! Recovery does not need to know where: it brings the maps to the one
//! state that decides as `rule list` lists, whatever the interrupted change
//! had written, and every write it makes keeps the per-packet
//! "old or new" property of store.rs (it completes the cut change):
//! 1. the inactive rule set (the half-built new set of a whole-set write
//!    cut before its switch, or the half-removed old set of one cut after
//!    it) goes: local routes only it needed, then its keys, trie nodes and
//!    service ids.  The active set is what the datapath applies, so this
//!    rolls a switch that did not happen back and finishes one that did;
//! 2. the active set's dst_lpm_map nodes become what a full rewrite of its
//!    rules would write (compile.rs, the one definition of the pair lists):
//!    a key whose pair a cut `rule add` had not yet published to every
//!    node gets it (the add is finished: the rule was already listed), a
//!    pair a cut `rule del` had unpublished from some nodes while its key
//!    was still there gets it back (the delete is rolled back: the rule is
//!    still listed), stray nodes go;
//! 3. service ids on active-half slots no live span covers go (a cut
//!    write left them on free slots);
//! 4. the local routes of live TPROXY rules are (re)added;
//! 5. rule_ids_map becomes exactly the active set's counter ids (ids.rs:
//!    an id the cut change had marked is free again), policy_gen is
//!    bumped, and the record cleared.
//!
//! Recovery is idempotent and itself safe to kill: its record stays until
//! it is done, so the next command simply runs it again.  A change that
//! fails with an error (not killed) is recovered at once by the same call;
//! bad input (exit status 2) is refused before the first write and needs
//! none.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::Result;
use crate::maps::{defs, Maps};
use crate::netlink::route;
use crate::rules::compile::{self, set_region};
use crate::rules::ids;
use crate::rules::live;
use crate::rules::sets;
use crate::skel::{bytes_of, names, types};

/// What kind of change a journal record announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `rule add` (in place, or its full-rewrite fallback)
    RuleAdd,
    /// `rule del`
    RuleDel,
    /// `apply`, `rule flush`, any whole-set rewrite
    Replace,
}

impl Op {
    fn code(self) -> u32 {
        (match self {
            Op::RuleAdd => names::ZFW_JOURNAL_RULE_ADD,
            Op::RuleDel => names::ZFW_JOURNAL_RULE_DEL,
            Op::Replace => names::ZFW_JOURNAL_REPLACE,
        }) as u32
    }

    fn name_of(code: u32) -> &'static str {
        match code {
            c if c == names::ZFW_JOURNAL_RULE_ADD as u32 => "rule add",
            c if c == names::ZFW_JOURNAL_RULE_DEL as u32 => "rule del",
            c if c == names::ZFW_JOURNAL_REPLACE as u32 => "rule set rewrite",
            _ => "unknown change",
        }
    }
}

/// A journal record found in journal_map: a change in progress, or one
/// that was interrupted.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Pending {
    /// "rule add", "rule del" or "rule set rewrite"
    pub op: String,
    /// the process that started it
    pub pid: u32,
    /// when it started (seconds since the Unix epoch)
    pub started: u64,
    /// true while that process still runs (then the change is in
    /// progress, not interrupted)
    pub running: bool,
}

impl Pending {
    /// One line for `zfw status`.
    pub fn describe(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ago = now.saturating_sub(self.started);
        if self.running {
            format!(
                "{} in progress (pid {}, started {ago} s ago)",
                self.op, self.pid
            )
        } else {
            format!(
                "interrupted {} (pid {}, {ago} s ago): the next rule add/del/flush, apply, gc or load finishes or rolls it back",
                self.op, self.pid
            )
        }
    }
}

fn record(maps: &Maps) -> Result<types::zfw_journal> {
    Ok(maps.get(&defs::JOURNAL_MAP, &0u32)?.unwrap_or_default())
}

/// The pending journal record, if any.
pub fn pending(maps: &Maps) -> Result<Option<Pending>> {
    let r = record(maps)?;
    if r.op == names::ZFW_JOURNAL_NONE as u32 {
        return Ok(None);
    }
    Ok(Some(Pending {
        op: Op::name_of(r.op).to_string(),
        pid: r.pid,
        started: r.started,
        running: r.pid != std::process::id()
            && std::path::Path::new(&format!("/proc/{}", r.pid)).exists(),
    }))
}

fn write(maps: &Maps, op: Op) -> Result<()> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let r = types::zfw_journal {
        op: op.code(),
        pid: std::process::id(),
        started,
        from_set: u32::from(live::active_set(maps)?),
        ..Default::default()
    };
    maps.put(&defs::JOURNAL_MAP, &0u32, &r)
}

fn clear(maps: &Maps) -> Result<()> {
    maps.put(&defs::JOURNAL_MAP, &0u32, &types::zfw_journal::default())
}

/// Finish or roll back an interrupted change, if the journal holds one
/// (see the module doc).  Returns what was recovered.  The caller holds
/// the root's lock.
pub fn recover(maps: &Maps) -> Result<Option<Pending>> {
    let Some(p) = pending(maps)? else {
        return Ok(None);
    };
    reconcile(maps)?;
    clear(maps)?;
    Ok(Some(p))
}

/// Run the store change `f` under a journal record: recover first, record,
/// change, clear.  A failed change is recovered before its error returns.
pub fn run<T>(maps: &Maps, op: Op, f: impl FnOnce() -> Result<T>) -> Result<T> {
    recover(maps)?;
    write(maps, op)?;
    let r = f();
    match &r {
        // bad input is refused before the first write: nothing to undo
        // (and a refused command changes nothing, not even policy_gen)
        Ok(_) => clear(maps)?,
        Err(e) if e.exit_code() == 2 => clear(maps)?,
        Err(_) => {
            if reconcile(maps).is_ok() {
                clear(maps)?;
            }
        }
    }
    r
}

/// Bring the maps to the state that decides as the active set lists.
fn reconcile(maps: &Maps) -> Result<()> {
    let active = live::active_set(maps)?;
    let inactive = 1 - active;
    let now = live::read(maps)?;

    // 1. the inactive set: routes only it needed (a set cut before its
    // switch had added them; one cut after it had not removed them yet),
    // then everything else of it.  Its slots may be half written: a set
    // that does not decode has added no routes (keys and ranges are
    // written before the routes).
    if let Ok(other) = live::read_set(maps, inactive) {
        let keep = sets::tproxy_prefixes(&now.rules);
        for p in sets::tproxy_prefixes(&other.rules).difference(&keep) {
            route::del_local(p)?;
        }
    }
    sets::clear_set(maps, inactive)?;

    // 2. the active set's trie as a full rewrite would write it
    let range_max = maps.max_entries(&defs::RANGE_MAP)?;
    let want = compile::compile(
        &now.rules,
        active,
        range_max,
        &sets::iface_index,
        &now.stats,
    )?;
    let want: HashMap<Vec<u8>, types::zfw_lpm_val> = want
        .lpm
        .into_iter()
        .map(|(k, v)| (bytes_of(&k).to_vec(), v))
        .collect();
    let have = maps.entries(&defs::DST_LPM_MAP)?;
    let mut seen = BTreeSet::new();
    let (mut stale, mut fix) = (Vec::new(), Vec::new());
    for (k, v) in &have {
        let kb = bytes_of(k).to_vec();
        match want.get(&kb) {
            Some(w) if k.set == active => {
                if bytes_of(w) != bytes_of(v) {
                    fix.push((*k, *w));
                }
                seen.insert(kb);
            }
            // a node of the inactive set, or a stray node of the active one
            _ => stale.push(*k),
        }
    }
    for (kb, w) in &want {
        if !seen.contains(kb) {
            fix.push((crate::skel::from_bytes(kb)?, *w));
        }
    }
    // each node write moves only the packets whose longest stored prefix
    // it is from the old decision to the new one, so their order is free
    // and batch calls keep the property (ARCHITECTURE.md §7)
    maps.del_many(&defs::DST_LPM_MAP, &stale)?;
    maps.put_many(&defs::DST_LPM_MAP, &fix)?;

    // 3. labels of free slots in the active half
    let (lo, half) = set_region(active, range_max);
    let used: BTreeSet<u32> = now
        .keys
        .iter()
        .flat_map(|(_, sp)| sp.first..sp.first.saturating_add(sp.count))
        .collect();
    let free: Vec<u32> = live::services(maps, lo, lo + half)?
        .into_keys()
        .filter(|i| !used.contains(i))
        .collect();
    maps.del_many(&defs::SERVICE_MAP, &free)?;

    // 4. routes of the live TPROXY rules
    for p in sets::tproxy_prefixes(&now.rules) {
        route::add_local(&p)?;
    }

    // 5. the counter ids in use are exactly the active set's (an id a cut
    // change had marked, or freed without marking, is put right), then no
    // cached decision of an intermediate state survives
    ids::sync(maps, now.stats.iter().copied())?;
    sets::bump_gen(maps)
}
