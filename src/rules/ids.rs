//! Which counter ids are in use (ARCHITECTURE.md §7 "Counters"):
//! rule_ids_map, one bit per rule_stats_map slot (64 to a word), so that a
//! single `rule add` takes a free id from a few kilobytes instead of
//! reading every live range.
//!
//! The record is trusted only while `zfw_config.rule_ids_gen` equals
//! `policy_gen`.  While trusted it holds every id a range of either rule
//! set names (it may hold more: an id whose rule went in a change that was
//! cut short).  Every writer keeps that:
//! - a new id's bit is set before its counter is zeroed and before any
//!   range names it; a freed id's bit is cleared only after no live range
//!   names it (after the key or span update that drops it);
//! - every policy_gen bump of this build carries `rule_ids_gen` along in
//!   the same config_map update ([`sets::next_gen`]); a rule change by a
//!   writer that does not keep the record (an older zfw, which copies the
//!   field unchanged as padding) leaves it behind, and the next allocation
//!   rebuilds the record from the live ranges ([`sync`]);
//! - a whole-set write and the journal's recovery rewrite it to exactly the
//!   ids of the live set ([`sync`]), so an id a killed command left set is
//!   reclaimed by the next command (which recovers first).
//!
//! [`sets::next_gen`]: crate::rules::sets::next_gen

use crate::error::{Error, Result};
use crate::maps::{batch, defs, Maps};
use crate::rules::live;

/// Ids per word of rule_ids_map.
const PER_WORD: u32 = u64::BITS;

/// The word of rule_ids_map that holds `id`, and `id`'s bit in it.
fn locate(id: u32) -> (u32, u64) {
    (id / PER_WORD, 1u64 << (id % PER_WORD))
}

/// rule_ids_map's size for a rule_stats_map of `ids` slots.
pub fn words_for(ids: u32) -> u32 {
    ids.div_ceil(PER_WORD).max(1)
}

/// Does rule_ids_map hold every id the live ranges name?
pub fn trusted(maps: &Maps) -> Result<bool> {
    let c = maps.config()?;
    Ok(c.rule_ids_gen == c.policy_gen)
}

/// rule_ids_map as read, with the words changed since.
pub struct Record {
    words: Vec<u64>,
    /// rule_stats_map's size: ids 1..cap-1 exist
    cap: u32,
    changed: std::collections::BTreeSet<u32>,
}

impl Record {
    /// Every word of rule_ids_map (one batch read).
    pub fn read(maps: &Maps) -> Result<Record> {
        let h = maps.handle(&defs::RULE_IDS_MAP)?;
        let n = maps.max_entries(&defs::RULE_IDS_MAP)?;
        let e = batch::read(h, defs::RULE_IDS_MAP.info.name, n, Some((0, n)))?;
        let words: Vec<u64> = e
            .iter()
            .map(|(_, v)| {
                v.try_into()
                    .map(u64::from_ne_bytes)
                    .map_err(|_| Error::runtime("rule_ids_map: a word is not 8 bytes"))
            })
            .collect::<Result<_>>()?;
        if words.len() != n as usize {
            return Err(Error::runtime(format!(
                "reading rule_ids_map: got {} of {n} words",
                words.len()
            )));
        }
        // ids the bitmap cannot name are never handed out
        let cap = maps
            .max_entries(&defs::RULE_STATS_MAP)?
            .min(n.saturating_mul(PER_WORD));
        Ok(Record {
            words,
            cap,
            changed: Default::default(),
        })
    }

    pub fn has(&self, id: u32) -> bool {
        let (w, bit) = locate(id);
        self.words.get(w as usize).is_some_and(|x| x & bit != 0)
    }

    fn mark(&mut self, id: u32, used: bool) {
        let (w, bit) = locate(id);
        if let Some(x) = self.words.get_mut(w as usize) {
            let v = if used { *x | bit } else { *x & !bit };
            if v != *x {
                *x = v;
                self.changed.insert(w);
            }
        }
    }

    /// Mark `ids` used (id 0, "no counter", is never marked).
    pub fn set(&mut self, ids: impl IntoIterator<Item = u32>) {
        for i in ids.into_iter().filter(|i| *i != 0) {
            self.mark(i, true);
        }
    }

    /// Mark `id` free.
    pub fn clear(&mut self, id: u32) {
        self.mark(id, false);
    }

    /// The lowest free id, marked used; 0 when every id is taken.
    pub fn take(&mut self) -> u32 {
        for (w, x) in self.words.iter().enumerate() {
            let free = !x & if w == 0 { !1u64 } else { !0 };
            if free == 0 {
                continue;
            }
            let id = w as u32 * PER_WORD + free.trailing_zeros();
            if id >= self.cap {
                return 0;
            }
            self.mark(id, true);
            return id;
        }
        0
    }

    /// Exactly `ids`, whatever the record held.
    fn assign(&mut self, ids: impl IntoIterator<Item = u32>) {
        let mut want = vec![0u64; self.words.len()];
        for i in ids.into_iter().filter(|i| *i != 0) {
            let (w, bit) = locate(i);
            if let Some(x) = want.get_mut(w as usize) {
                *x |= bit;
            }
        }
        for (w, (have, want)) in self.words.iter_mut().zip(want).enumerate() {
            if *have != want {
                *have = want;
                self.changed.insert(w as u32);
            }
        }
    }

    /// Write the changed words (one batch call; the kernel writes them one
    /// at a time, each whole).
    pub fn write(&mut self, maps: &Maps) -> Result<()> {
        let items: Vec<(u32, u64)> = self
            .changed
            .iter()
            .map(|w| (*w, self.words[*w as usize]))
            .collect();
        maps.put_many(&defs::RULE_IDS_MAP, &items)?;
        self.changed.clear();
        Ok(())
    }
}

/// Make rule_ids_map hold exactly `used` (the ids of the ranges that are
/// live once the caller's change is done), then trust it at the current
/// policy_gen.  Each word is written whole and holds the live ids before
/// and after its write, so a cut sync leaves a record that is still a
/// superset (and untrusted if it was).
pub fn sync(maps: &Maps, used: impl IntoIterator<Item = u32>) -> Result<()> {
    let mut r = Record::read(maps)?;
    r.assign(used);
    r.write(maps)?;
    let mut c = maps.config()?;
    if c.rule_ids_gen != c.policy_gen {
        c.rule_ids_gen = c.policy_gen;
        maps.set_config(&c)?;
    }
    Ok(())
}

/// The record, rebuilt from the active set's ranges when it is not
/// trusted (another writer changed the rules).  `spans`: the live keys of
/// the active set (no switch is in progress: the caller recovered).
pub fn current(maps: &Maps, spans: &[live::Span]) -> Result<Record> {
    if !trusted(maps)? {
        let (lo, hi) = live::covered(spans);
        let slots = live::ranges(maps, lo, hi)?;
        let used = spans.iter().flat_map(|(_, sp)| {
            let slots = &slots;
            (sp.first..sp.first.saturating_add(sp.count))
                .filter_map(move |i| slots.get((i - lo) as usize).map(|r| r.stat))
        });
        sync(maps, used)?;
    }
    Record::read(maps)
}

/// Free `id` once no live range names it any more; nothing to do while
/// the record is untrusted (the next allocation rebuilds it).
pub fn release(maps: &Maps, id: u32) -> Result<()> {
    if id == 0 || !trusted(maps)? {
        return Ok(());
    }
    let (w, bit) = locate(id);
    let Some(x) = maps.get(&defs::RULE_IDS_MAP, &w)? else {
        return Ok(());
    };
    let v: u64 = x & !bit;
    if v != x {
        maps.put(&defs::RULE_IDS_MAP, &w, &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(words: usize, cap: u32) -> Record {
        Record {
            words: vec![0; words],
            cap,
            changed: Default::default(),
        }
    }

    #[test]
    fn take_hands_out_the_lowest_free_id_never_0_and_never_past_the_map() {
        let mut r = rec(2, 70);
        assert_eq!(r.take(), 1);
        r.set([2, 3, 64]);
        assert_eq!(r.take(), 4);
        r.clear(2);
        assert_eq!(r.take(), 2);
        r.set(5..64);
        assert_eq!(r.take(), 65);
        r.set(66..70);
        assert_eq!(r.take(), 0, "ids 70..127 are past rule_stats_map");
        assert!(!r.has(0));
    }

    #[test]
    fn assign_rewrites_only_the_words_that_differ() {
        let mut r = rec(3, 192);
        r.set([1, 130]);
        r.changed.clear();
        r.assign([1, 70]);
        assert_eq!(r.changed.iter().copied().collect::<Vec<_>>(), [1, 2]);
        assert!(r.has(1) && r.has(70) && !r.has(130));
    }

    #[test]
    fn words_cover_every_id() {
        assert_eq!(words_for(65536), 1024);
        assert_eq!(words_for(65537), 1025);
        assert_eq!(words_for(4), 1);
    }
}
