//! Grown tables: tproxy_map holds the rule keys of both rule sets in one
//! hash table, the only map in an array of maps (src/bpf/maps.h).  A hash
//! table's bucket array is sized when it is made (16 bytes per key of
//! capacity, 16.8 MB for the 800,000 keys zfw allows by default), so zfw
//! makes the table for the keys present and replaces it by a larger copy
//! when a write needs room, and by a smaller one when a whole-set write
//! left it mostly empty (`fit_table`).  The capacity `--map-size
//! tproxy_map=N` sets at the first load is `zfw_config.rule_keys_max`
//! (docs/ARCHITECTURE.md §6 "Grown tables").
//!
//! A replacement is a copy, then one write of the outer slot: the datapath
//! reads the old table or the new one, which hold the same keys, and a
//! process killed before the swap leaves the old table in place (the copy
//! goes with the process).  Only the rule store writes the table, under the
//! root's lock.

use std::sync::Arc;

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::{batch, MapInfo, Maps};
use crate::error::{Context, Result};
use crate::skel::names;

const MIN: u32 = names::ZFW_RULE_KEYS_MIN as u32;

/// The table size for `n` keys: half again as many, a power of two (the
/// kernel rounds the bucket array up to one anyway), within [MIN, cap].
pub fn fit(n: usize, cap: u32) -> u32 {
    let want = (n as u64 + n as u64 / 2).max(u64::from(MIN));
    let want = want.next_power_of_two().min(u64::from(u32::MAX));
    (want as u32).min(cap.max(MIN))
}

impl Maps {
    /// How many keys tproxy_map's table may grow to.
    pub(crate) fn grown_cap(&self) -> Result<u32> {
        Ok(match self.config()?.rule_keys_max {
            0 => names::ZFW_RULE_KEYS_MAX as u32,
            n => n,
        })
    }

    /// The table in place, if any.
    pub fn table(&self, info: &'static MapInfo) -> Result<Option<Arc<MapHandle>>> {
        self.inner_map(info, 0)
    }

    /// How many keys the table in place holds room for (None: no table).
    pub fn table_size(&self, info: &'static MapInfo) -> Result<Option<u32>> {
        Ok(self.table(info)?.map(|t| t.max_entries()))
    }

    /// A table with room for `need` keys: the one in place, or a copy of it
    /// made larger and put in its place.
    fn table_for(&self, info: &'static MapInfo, need: usize) -> Result<Arc<MapHandle>> {
        let old = self.table(info)?;
        if let Some(t) = &old {
            if need <= t.max_entries() as usize {
                return Ok(t.clone());
            }
        }
        self.replace_table(info, old.as_deref(), fit(need, self.grown_cap()?))
    }

    /// Copy `old` (if any) into a new table of `size` keys and put it in
    /// the outer slot.
    fn replace_table(
        &self,
        info: &'static MapInfo,
        old: Option<&MapHandle>,
        size: u32,
    ) -> Result<Arc<MapHandle>> {
        let name = format!("{}_keys", info.name.trim_end_matches("_map"));
        let flags = libbpf_sys::BPF_F_NO_PREALLOC;
        let h = self.make_inner(info, MapType::Hash, &name, size, flags)?;
        if let Some(old) = old {
            let e = batch::read(old, info.name, 8192, None)?;
            batch::update(&h, info.name, &e.keys, &e.values, 8192)?;
        }
        self.place_inner(info, 0, &h)?;
        Ok(h)
    }

    /// After a whole-set write: a table four times larger than its keys
    /// need is replaced by one that fits them.
    pub(crate) fn fit_table(&self, info: &'static MapInfo) -> Result<()> {
        let Some(t) = self.table(info)? else {
            return Ok(());
        };
        let n = batch::count(&t, info.name, 8192)?;
        let size = fit(n, self.grown_cap()?);
        if t.max_entries() > size.saturating_mul(4) {
            self.replace_table(info, Some(&t), size)?;
        }
        Ok(())
    }

    pub(crate) fn grown_get(&self, info: &'static MapInfo, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(t) = self.table(info)? else {
            return Ok(None);
        };
        t.lookup(key, MapFlags::ANY)
            .ctx(|| format!("reading {}", info.name))
    }

    /// Write `keys`/`vals` (concatenated), growing the table when they do
    /// not fit: a single key is written and the table grown only if the
    /// kernel finds it full (no count of the keys per `rule add`); several
    /// are counted in beside the keys present first.
    pub(crate) fn grown_put(&self, info: &'static MapInfo, keys: &[u8], vals: &[u8]) -> Result<()> {
        let n = keys.len() / info.key_size.max(1);
        if let (1, Some(t)) = (n, self.table(info)?) {
            match t.update(keys, vals, MapFlags::ANY) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::TooBig => {}
                Err(e) => return Err(e).ctx(|| format!("writing {}", info.name)),
            }
        }
        let have = match self.table(info)? {
            Some(t) => batch::count(&t, info.name, 8192)?,
            None => 0,
        };
        let t = self.table_for(info, have + n)?;
        batch::update(&t, info.name, keys, vals, 8192)
    }

    /// Delete `keys`; Ok(number deleted).
    pub(crate) fn grown_del(&self, info: &'static MapInfo, keys: &[u8]) -> Result<usize> {
        let Some(t) = self.table(info)? else {
            return Ok(0);
        };
        batch::delete(&t, info.name, keys, 8192)
    }

    pub(crate) fn grown_entries(&self, info: &'static MapInfo) -> Result<batch::Entries> {
        match self.table(info)? {
            Some(t) => batch::read(&t, info.name, 8192, None),
            None => Ok(batch::Entries {
                key_size: info.key_size,
                value_size: info.value_size,
                keys: Vec::new(),
                values: Vec::new(),
            }),
        }
    }

    pub(crate) fn grown_count(&self, info: &'static MapInfo) -> Result<usize> {
        match self.table(info)? {
            Some(t) => batch::count(&t, info.name, 8192),
            None => Ok(0),
        }
    }

    pub(crate) fn grown_memlock(&self, info: &'static MapInfo) -> Result<u64> {
        let mut n = super::fd_memlock(self.handle(info)?, info.name)?;
        if let Some(t) = self.table(info)? {
            n += super::fd_memlock(&t, info.name)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_fits_its_keys_with_room_within_the_cap() {
        assert_eq!(fit(0, 800_000), MIN);
        assert_eq!(fit(10, 800_000), MIN);
        assert_eq!(fit(1000, 800_000), 2048);
        assert_eq!(fit(250_000, 800_000), 524_288);
        assert_eq!(fit(600_000, 800_000), 800_000);
        assert_eq!(fit(5, 80), MIN);
    }
}
