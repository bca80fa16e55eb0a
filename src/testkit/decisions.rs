//! Overwrite the decision cache (matched_map) in place, for tests and
//! benchmarks that must tell a decision served from the cache from one the
//! rules made: a poisoned slot keeps its key and generation, so only a
//! packet answered from the cache sees the poisoned action.

use crate::error::{Error, Result};
use crate::maps::{defs, Maps};
use crate::skel::bytes_of;

/// Set the action of every filled matched_map slot, on every CPU, to
/// `action` (an `enum zfw_action` code).  Returns the number of slots
/// rewritten.
pub fn poison_cached_actions(maps: &Maps, action: u8) -> Result<usize> {
    let h = maps.handle(&defs::MATCHED_MAP)?;
    let mut n = 0;
    for (slot, per_cpu) in maps.percpu_entries(&defs::MATCHED_MAP)? {
        if per_cpu.iter().all(|s| s.key.family == 0) {
            continue;
        }
        let vals: Vec<Vec<u8>> = per_cpu
            .into_iter()
            .map(|mut s| {
                s.val.action = action;
                bytes_of(&s).to_vec()
            })
            .collect();
        libbpf_rs::MapCore::update_percpu(h, &slot.to_ne_bytes(), &vals, libbpf_rs::MapFlags::ANY)
            .map_err(|e| {
                Error::runtime(format!("poisoning {}: {e}", defs::MATCHED_MAP.info.name))
            })?;
        n += 1;
    }
    Ok(n)
}
