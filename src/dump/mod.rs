//! `zfw dump`: every pinned map decoded as JSON — addresses as text, ports
//! as numbers, protocol/state/action names, ages in seconds instead of raw
//! ktime, interface names beside indexes.

mod decoders;

use libbpf_rs::MapType;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::maps::{Maps, MAP_NAMES};

/// Decode one map into {"name", "type", "max_entries", "count", "entries"}.
pub fn dump_map(maps: &Maps, name: &str) -> Result<Value> {
    let ty = maps.map_type(name)?;
    let entries = decoders::entries(maps, name)?;
    let count = match ty {
        MapType::Array | MapType::PercpuArray => entries.len(),
        _ => maps.count(name)?,
    };
    Ok(json!({
        "name": name,
        "type": format!("{ty:?}"),
        "max_entries": maps.max_entries(name)?,
        "count": count,
        "entries": entries,
    }))
}

/// Check map names before dumping anything (unknown name: usage error).
pub fn validate(names: &[String]) -> Result<()> {
    for n in names {
        if !MAP_NAMES.contains(&n.as_str()) {
            return Err(Error::usage(format!(
                "unknown map '{n}' (known: {})",
                MAP_NAMES.join(", ")
            )));
        }
    }
    Ok(())
}

/// The named maps (all of them when `names` is empty), in MAP_NAMES order.
pub fn dump(maps: &Maps, names: &[String]) -> Result<Value> {
    validate(names)?;
    let mut out = serde_json::Map::new();
    for name in MAP_NAMES {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        if maps.handle(name).is_err() {
            continue;
        }
        out.insert(name.to_string(), dump_map(maps, name)?);
    }
    Ok(json!({ "bpffs": maps.root.dir.display().to_string(), "maps": Value::Object(out) }))
}
