//! Chunked maps: range_map and service_map are indexed by range slot, and
//! stored as an array of maps (src/bpf/maps.h) whose inner arrays, the
//! chunks, hold `SLOTS` consecutive slots each.  A chunk exists only where
//! some rule's ranges lie: zfw makes it when a write first needs it and
//! drops it when no rule's span covers it any more (`rules::sets::trim_rule_maps`), so the
//! rule maps' memory follows the rules present (docs/ARCHITECTURE.md §6
//! "Chunks").  Callers see one map of slots: `Maps::get/put/del/put_many/
//! del_many/entries/count/max_entries/memlock` take the same registry rows
//! and slot numbers as for a plain array; they come here for these rows.
//!
//! Reads: a slot of a missing chunk reads as absent (the datapath ends the
//! key's scan there).  In service_map (counted by `Count::Keys`), an
//! all-zero id is absent too: deleting a slot's id zeroes it.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::{batch, Count, MapInfo, Maps};
use crate::error::{Context, Error, Result};
use crate::skel::names;

/// Slots per chunk.
pub const SLOTS: u32 = names::ZFW_CHUNK_SLOTS as u32;
const SHIFT: u32 = names::ZFW_CHUNK_SHIFT as u32;
const _: () = assert!(1 << SHIFT == SLOTS);

/// The chunk of slot `slot`, and the slot's index in it.
pub fn split(slot: u32) -> (u32, u32) {
    (slot >> SHIFT, slot & (SLOTS - 1))
}

/// Outer slots needed for `slots` slots (`--map-size range_map=N`).
pub fn chunks_for(slots: u32) -> u32 {
    slots.div_ceil(SLOTS).max(1)
}

/// The chunks spans `[first, first + count)` touch.
pub fn chunks_of(spans: impl IntoIterator<Item = (u32, u32)>) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for (first, count) in spans {
        if count > 0 {
            let last = first.saturating_add(count - 1);
            out.extend(split(first).0..=split(last).0);
        }
    }
    out
}

/// The chunk-local keys of `slots` (all in one chunk), as a flat buffer.
fn local_keys(slots: &[u32]) -> Vec<u8> {
    slots
        .iter()
        .flat_map(|s| split(*s).1.to_ne_bytes())
        .collect()
}

/// Runs of consecutive items in one chunk, in order: (chunk, item range).
fn runs(slots: &[u32]) -> Vec<(u32, std::ops::Range<usize>)> {
    let mut out: Vec<(u32, std::ops::Range<usize>)> = Vec::new();
    for (i, s) in slots.iter().enumerate() {
        let c = split(*s).0;
        match out.last_mut() {
            Some((lc, r)) if *lc == c => r.end = i + 1,
            _ => out.push((c, i..i + 1)),
        }
    }
    out
}

impl Maps {
    /// The inner map in slot `c` of array of maps `info`, if there is one,
    /// checked against the row.  The outer slot is read every time: another
    /// process may have replaced or dropped the map since this one last used
    /// it (a cached handle is reused only while it is still the one in place).
    pub(crate) fn inner_map(
        &self,
        info: &'static MapInfo,
        c: u32,
    ) -> Result<Option<Arc<MapHandle>>> {
        let outer = self.handle(info)?;
        if c >= outer.max_entries() {
            return Ok(None);
        }
        let Some(id) = outer
            .lookup(&c.to_ne_bytes(), MapFlags::ANY)
            .ctx(|| format!("reading {}", info.name))?
        else {
            self.chunk_cache().remove(&(info.name, c));
            return Ok(None);
        };
        let id = super::slot(&id)?;
        if let Some((cid, h)) = self.chunk_cache().get(&(info.name, c)) {
            if *cid == id {
                return Ok(Some(h.clone()));
            }
        }
        let h = MapHandle::from_map_id(id).ctx(|| format!("opening map {c} of {}", info.name))?;
        if Some(h.map_type()) != info.inner
            || h.key_size() as usize != info.key_size
            || h.value_size() as usize != info.value_size
            || (info.chunked() && h.max_entries() != SLOTS)
        {
            return Err(Error::runtime(format!(
                "map {c} of {} is not the {:?} of {} -> {} this zfw expects; run `zfw unload --all` first",
                info.name,
                info.inner,
                info.key_type,
                info.value_type
            )));
        }
        let h = Arc::new(h);
        self.chunk_cache().insert((info.name, c), (id, h.clone()));
        Ok(Some(h))
    }

    /// Chunk `c` of `info`, made (all slots zero) and put in place if it
    /// was not there.
    fn chunk_or_make(&self, info: &'static MapInfo, c: u32) -> Result<Arc<MapHandle>> {
        if let Some(h) = self.inner_map(info, c)? {
            return Ok(h);
        }
        let outer = self.handle(info)?;
        if c >= outer.max_entries() {
            return Err(Error::runtime(format!(
                "slot {} is past {} ({} slots)",
                u64::from(c) * u64::from(SLOTS),
                info.name,
                u64::from(outer.max_entries()) * u64::from(SLOTS)
            )));
        }
        // range_chunk, service_chunk (bpftool map show)
        let name = format!("{}_chunk", info.name.trim_end_matches("_map"));
        let h = self.make_inner(info, MapType::Array, &name, SLOTS, 0)?;
        self.place_inner(info, c, &h)?;
        Ok(h)
    }

    /// A new, empty map with `info`'s key and value sizes, to be an inner
    /// map of `info` (chunks here, tables in grown.rs).
    pub(crate) fn make_inner(
        &self,
        info: &'static MapInfo,
        kind: MapType,
        name: &str,
        max_entries: u32,
        flags: u32,
    ) -> Result<Arc<MapHandle>> {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: flags,
            ..Default::default()
        };
        let h = MapHandle::create(
            kind,
            Some(name),
            info.key_size as u32,
            info.value_size as u32,
            max_entries,
            &opts,
        )
        .ctx(|| format!("making a map of {max_entries} for {}", info.name))?;
        Ok(Arc::new(h))
    }

    /// Put `h` in outer slot `c` of `info`, in place of whatever was there
    /// (one map update: readers see the old map or the new one).  The next
    /// use reads the slot and opens the map by its id.
    pub(crate) fn place_inner(&self, info: &'static MapInfo, c: u32, h: &MapHandle) -> Result<()> {
        let fd = h.as_fd().as_raw_fd() as u32;
        self.handle(info)?
            .update(&c.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .ctx(|| format!("putting map {c} in {}", info.name))
    }

    /// The chunk numbers `info` holds.
    pub fn chunk_numbers(&self, info: &'static MapInfo) -> Result<Vec<u32>> {
        let outer = self.handle(info)?;
        let mut out = Vec::new();
        for c in 0..outer.max_entries() {
            if outer
                .lookup(&c.to_ne_bytes(), MapFlags::ANY)
                .ctx(|| format!("reading {}", info.name))?
                .is_some()
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Drop every chunk of `info` not in `keep`.  The datapath reads only
    /// chunks the active rule set's spans cover; a program still using a
    /// dropped chunk keeps it until the kernel frees it after the program's
    /// run.
    pub(crate) fn drop_chunks_except(
        &self,
        info: &'static MapInfo,
        keep: &BTreeSet<u32>,
    ) -> Result<()> {
        let outer = self.handle(info)?;
        for c in self.chunk_numbers(info)? {
            if !keep.contains(&c) {
                outer
                    .delete(&c.to_ne_bytes())
                    .ctx(|| format!("dropping chunk {c} of {}", info.name))?;
                self.chunk_cache().remove(&(info.name, c));
            }
        }
        Ok(())
    }

    pub(crate) fn chunked_get(
        &self,
        info: &'static MapInfo,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let (c, i) = split(super::slot(key)?);
        let Some(h) = self.inner_map(info, c)? else {
            return Ok(None);
        };
        let v = h
            .lookup(&i.to_ne_bytes(), MapFlags::ANY)
            .ctx(|| format!("reading {}", info.name))?;
        Ok(v.filter(|v| !(sparse(info) && is_zero(v))))
    }

    /// Write `vals` (concatenated values) at `slots`, in order.
    pub(crate) fn chunked_put(
        &self,
        info: &'static MapInfo,
        slots: &[u32],
        vals: &[u8],
    ) -> Result<()> {
        let vs = info.value_size;
        for (c, r) in runs(slots) {
            let h = self.chunk_or_make(info, c)?;
            let ks = local_keys(&slots[r.clone()]);
            batch::update(&h, info.name, &ks, &vals[r.start * vs..r.end * vs], 8192)?;
        }
        Ok(())
    }

    /// Zero `slots` (a slot of a missing chunk is already absent).
    pub(crate) fn chunked_del(&self, info: &'static MapInfo, slots: &[u32]) -> Result<()> {
        for (c, r) in runs(slots) {
            let Some(h) = self.inner_map(info, c)? else {
                continue;
            };
            let ks = local_keys(&slots[r.clone()]);
            let zero = vec![0u8; info.value_size * r.len()];
            batch::update(&h, info.name, &ks, &zero, 8192)?;
        }
        Ok(())
    }

    /// The (slot, value) pairs of slots `[lo, hi)` present (see the module
    /// doc), in slot order, a chunk per batch read.
    pub(crate) fn chunked_entries(
        &self,
        info: &'static MapInfo,
        lo: u32,
        hi: u32,
    ) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut out = Vec::new();
        if lo >= hi {
            return Ok(out);
        }
        for c in split(lo).0..=split(hi - 1).0 {
            let Some(h) = self.inner_map(info, c)? else {
                continue;
            };
            let base = c * SLOTS;
            let (a, b) = (lo.max(base) - base, (hi - base).min(SLOTS));
            let e = batch::read(&h, info.name, 4096, Some((a, b)))?;
            for (k, v) in e.iter() {
                if !(sparse(info) && is_zero(v)) {
                    out.push((base + super::slot(k)?, v.to_vec()));
                }
            }
        }
        Ok(out)
    }

    /// Entries present (service_map: ids set), or every slot of the map.
    pub(crate) fn chunked_count(&self, info: &'static MapInfo) -> Result<usize> {
        if !sparse(info) {
            return Ok(self.chunked_max(info)? as usize);
        }
        Ok(self
            .chunked_entries(info, 0, self.chunked_max(info)?)?
            .len())
    }

    pub(crate) fn chunked_max(&self, info: &'static MapInfo) -> Result<u32> {
        Ok(self.handle(info)?.max_entries().saturating_mul(SLOTS))
    }

    /// The outer map's memory plus its chunks'.
    pub(crate) fn chunked_memlock(&self, info: &'static MapInfo) -> Result<u64> {
        let mut n = super::fd_memlock(self.handle(info)?, info.name)?;
        for c in 0..self.handle(info)?.max_entries() {
            if let Some(h) = self.inner_map(info, c)? {
                n += super::fd_memlock(&h, info.name)?;
            }
        }
        Ok(n)
    }
}

/// A map whose all-zero values are absent entries (service ids), not
/// values (ranges).
fn sparse(info: &MapInfo) -> bool {
    info.count == Count::Keys
}

fn is_zero(v: &[u8]) -> bool {
    v.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_split_into_chunks_and_runs_keep_order() {
        assert_eq!(split(0), (0, 0));
        assert_eq!(split(SLOTS - 1), (0, SLOTS - 1));
        assert_eq!(split(SLOTS), (1, 0));
        assert_eq!(chunks_for(1_048_576), 64);
        assert_eq!(chunks_for(1), 1);
        assert_eq!(chunks_for(SLOTS + 1), 2);
        let s = [SLOTS - 1, SLOTS, SLOTS + 1, 3, 4];
        assert_eq!(runs(&s), vec![(0, 0..1), (1, 1..3), (0, 3..5)]);
        let want: BTreeSet<u32> = [0, 1, 3].into_iter().collect();
        assert_eq!(chunks_of([(SLOTS - 2, 4), (3 * SLOTS, 1), (7, 0)]), want);
    }
}
