//! Kernel memory rows (issue 18 target 1, README "Memory"): the sum of
//! every pinned map's memlock, as `zfw status` shows it, for a root at
//! default capacities with nothing loaded and with 250,000 rules, and (in
//! flows.rs) for tables of 1,048,576 flows each holding 1,048,576 flows.
//! The figure is in the row's name and in `memlock_bytes`; the ns column
//! is empty (these are not per-packet rows).

use zfw::bpffs::Root;
use zfw::maps::{defs, Maps};

use super::Case;

/// The memlock of every pinned map under `maps`' root, in bytes.
pub fn total(maps: &Maps) -> zfw::Result<u64> {
    defs::pinned().map(|info| maps.memlock(info)).sum()
}

pub fn row(what: &str, rules: usize, bytes: u64) -> Case {
    Case {
        name: format!("memlock {what}: {:.1} MB", bytes as f64 / 1e6),
        rules,
        ns: 0.0,
        floor_ns: None,
        memlock_bytes: Some(bytes),
    }
}

/// Idle and with 250,000 rules, in a root of its own.
pub fn memory_cases() -> zfw::Result<Vec<Case>> {
    let root = Root::new(format!("/sys/fs/bpf/zfw-bench-mem-{}", std::process::id()));
    let res = (|| {
        zfw::loader::load_detached(&root)?;
        let maps = Maps::open(&root)?;
        let mut out = vec![row("idle, default capacities", 0, total(&maps)?)];
        zfw::rules::store::replace_all(&maps, &super::rule_set(250_000))?;
        out.push(row("250k rules", 250_000, total(&maps)?));
        zfw::rules::store::replace_all(&maps, &[])?;
        out.push(row("after rule flush", 0, total(&maps)?));
        Ok(out)
    })();
    let _ = zfw::loader::unload_all(&root);
    res
}
