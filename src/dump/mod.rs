//! `zfw dump`: every pinned map decoded as JSON — addresses as text, ports
//! as numbers, protocol/state/action names, ages in seconds instead of raw
//! ktime, interface names beside indexes.  Which maps there are and how
//! each is decoded is the registry's (src/maps/defs.rs).

mod decoders;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::maps::{defs, MapInfo, Maps};

/// Decode one map into {"name", "type", "max_entries", "count", "entries"}.
/// Arrays count the entries shown (slots in use), other maps what
/// `status` counts.
pub fn dump_map(maps: &Maps, info: &'static MapInfo) -> Result<Value> {
    let ty = maps.map_type(info)?;
    let entries = decoders::entries(maps, info)?;
    let count = if info.is_array() {
        entries.len()
    } else {
        maps.count(info)?
    };
    Ok(json!({
        "name": info.name,
        "type": format!("{ty:?}"),
        "max_entries": maps.max_entries(info)?,
        "count": count,
        "entries": entries,
    }))
}

/// The pinned map a user named (`dump --map NAME`; unknown: usage error).
pub fn lookup(name: &str) -> Result<&'static MapInfo> {
    defs::by_name(name).filter(|i| i.pinned()).ok_or_else(|| {
        let known: Vec<&str> = defs::pinned().map(|i| i.name).collect();
        Error::usage(format!(
            "unknown map '{}' (known: {})",
            crate::error::shown(name),
            known.join(", ")
        ))
    })
}

/// Check map names before dumping anything.
pub fn validate(names: &[String]) -> Result<()> {
    names.iter().try_for_each(|n| lookup(n).map(|_| ()))
}

/// The named maps (all of them when `names` is empty), in registry order.
pub fn dump(maps: &Maps, names: &[String]) -> Result<Value> {
    validate(names)?;
    let mut out = serde_json::Map::new();
    for info in defs::pinned() {
        if !names.is_empty() && !names.iter().any(|n| n == info.name) {
            continue;
        }
        if maps.handle(info).is_err() {
            continue;
        }
        out.insert(info.name.to_string(), dump_map(maps, info)?);
    }
    Ok(json!({ "bpffs": maps.root.dir.display().to_string(), "maps": Value::Object(out) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_takes_the_pinned_maps_of_the_registry_by_name() {
        for info in defs::pinned() {
            assert!(std::ptr::eq(lookup(info.name).unwrap(), info));
        }
        let scratch = defs::POLICY_SCRATCH_MAP.info.name;
        for bad in ["nosuch", scratch, "TCP_MAP", ""] {
            let e = lookup(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().starts_with(&format!("unknown map '{bad}'")));
            let (tcp, udp) = (defs::TCP_MAP.info.name, defs::UDP_MAP.info.name);
            assert!(e.to_string().contains(&format!("{tcp}, {udp}")), "{e}");
            let known = e.to_string();
            let known = known.split("(known: ").nth(1).unwrap();
            assert!(!known.contains("scratch"), "{e}");
        }
        assert!(!lookup("x\u{1b}y")
            .unwrap_err()
            .to_string()
            .contains('\u{1b}'));
        let (tcp, rb) = (defs::TCP_MAP.info.name, defs::RB_MAP.info.name);
        assert!(validate(&[tcp.into(), rb.into()]).is_ok());
        assert!(validate(&[tcp.into(), "nope".into()]).is_err());
    }
}
