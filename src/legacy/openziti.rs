//! `zfw load --openziti-config FILE`: the start-up file of the C zfw's
//! start scripts (/opt/openziti/etc/ebpf_config.json), with their
//! defaults:
//!
//! `{"InternalInterfaces": [{"Name": "ens33", "OutboundPassThroughTrack":
//! true, "PerInterfaceRules": false}], "ExternalInterfaces": [...]}`
//!
//! Every interface gets ingress; egress unless OutboundPassThroughTrack is
//! false (default true on both lists); per-interface-rules as
//! PerInterfaceRules says (default false on internal, true on external
//! interfaces).  `Name` is mandatory and InternalInterfaces must list at
//! least one interface.  The whole file is checked before anything is
//! attached; an error names the field.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::bpffs::Root;
use crate::error::{Error, Result};
use crate::ifaddr;
use crate::loader::{self, LoadOptions, LoadReport};

use super::request::{Target, Toggle};
use super::text::shown;

/// One interface of the file, with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartIface {
    pub name: String,
    pub external: bool,
    /// OutboundPassThroughTrack: attach egress (flow tracking) too
    pub track: bool,
    pub per_interface_rules: bool,
}

fn field_err(file: &str, path: &str, what: &str) -> Error {
    Error::usage(format!("{file}: {path}: {what}"))
}

fn flag(file: &str, path: &str, o: &Map<String, Value>, key: &str, default: bool) -> Result<bool> {
    match o.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(field_err(
            file,
            &format!("{path}.{key}"),
            "expected true or false",
        )),
    }
}

fn list(
    file: &str,
    top: &Map<String, Value>,
    key: &str,
    external: bool,
) -> Result<Vec<StartIface>> {
    let items = match top.get(key) {
        None if external => return Ok(Vec::new()),
        None => return Err(field_err(file, key, "missing: list at least one interface")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(field_err(file, key, "expected a list of interfaces")),
    };
    if items.is_empty() && !external {
        return Err(field_err(file, key, "empty: list at least one interface"));
    }
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let path = format!("{key}[{i}]");
        let Value::Object(o) = it else {
            return Err(field_err(file, &path, "expected an object"));
        };
        for k in o.keys() {
            if !["Name", "OutboundPassThroughTrack", "PerInterfaceRules"].contains(&k.as_str()) {
                return Err(field_err(
                    file,
                    &format!("{path}.{}", shown(k)),
                    "unknown field (Name, OutboundPassThroughTrack, PerInterfaceRules)",
                ));
            }
        }
        let name = match o.get("Name") {
            None => {
                return Err(field_err(
                    file,
                    &format!("{path}.Name"),
                    "missing (mandatory)",
                ))
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(field_err(
                    file,
                    &format!("{path}.Name"),
                    "expected an interface name",
                ))
            }
        };
        if ifaddr::index_of(&name).is_err() {
            return Err(field_err(
                file,
                &format!("{path}.Name"),
                &format!("unknown interface '{}'", shown(&name)),
            ));
        }
        out.push(StartIface {
            track: flag(file, &path, o, "OutboundPassThroughTrack", true)?,
            per_interface_rules: flag(file, &path, o, "PerInterfaceRules", external)?,
            name,
            external,
        });
    }
    Ok(out)
}

/// Check the file's text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<StartIface>> {
    let v: Value = crate::json::from_str(text).map_err(|e| Error::usage(e.message(file)))?;
    let Value::Object(top) = v else {
        return Err(Error::usage(format!("{file}: expected a JSON object")));
    };
    for k in top.keys() {
        if k != "InternalInterfaces" && k != "ExternalInterfaces" {
            return Err(field_err(
                file,
                &shown(k),
                "unknown field (InternalInterfaces, ExternalInterfaces)",
            ));
        }
    }
    let mut all = list(file, &top, "InternalInterfaces", false)?;
    let ext = list(file, &top, "ExternalInterfaces", true)?;
    for (i, e) in ext.into_iter().enumerate() {
        if all.iter().any(|a| a.name == e.name) {
            return Err(field_err(
                file,
                &format!("ExternalInterfaces[{i}].Name"),
                &format!("'{}' is listed twice", shown(&e.name)),
            ));
        }
        all.push(e);
    }
    Ok(all)
}

/// Attach what `path` says; nothing is attached when the file is bad.
pub fn load(root: &Root, path: &Path, sizes: &BTreeMap<String, u32>) -> Result<LoadReport> {
    let file = shown(&path.display().to_string());
    let text = std::fs::read_to_string(path).map_err(|e| Error::usage(format!("{file}: {e}")))?;
    let ifaces = parse(&text, &file)?;
    let fresh_root = !root.is_loaded();
    let attached_before: Vec<String> = if !fresh_root {
        crate::maps::Maps::open(root)?
            .ifaces()?
            .into_iter()
            .map(|(_, st)| crate::iface_state::name_str(&st.name))
            .collect()
    } else {
        Vec::new()
    };
    let group = |track: bool| -> Vec<String> {
        ifaces
            .iter()
            .filter(|i| i.track == track)
            .map(|i| i.name.clone())
            .collect()
    };
    let mut report: Option<LoadReport> = None;
    let mut done: Vec<String> = Vec::new();
    let res = (|| {
        for (names, no_egress) in [(group(true), false), (group(false), true)] {
            if names.is_empty() {
                continue;
            }
            let rep = loader::load(
                root,
                &LoadOptions {
                    ifaces: names.clone(),
                    no_egress,
                    sizes: sizes.clone(),
                    ..Default::default()
                },
            )?;
            done.extend(names);
            match &mut report {
                None => report = Some(rep),
                Some(r) => r.interfaces.extend(rep.interfaces),
            }
        }
        for on in [true, false] {
            let set: Vec<(Toggle, Target)> = ifaces
                .iter()
                .filter(|i| i.per_interface_rules == on)
                .map(|i| (Toggle::PerInterfaceRules, Target::If(i.name.clone())))
                .collect();
            if !set.is_empty() {
                super::exec_iface::set_bits(root, &set, on, true)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        // a rejected start-up changes nothing: take off what this call attached
        let fresh: Vec<String> = done
            .into_iter()
            .filter(|n| !attached_before.contains(n))
            .collect();
        if fresh_root && root.is_loaded() {
            let _ = loader::unload_all(root);
        } else if !fresh.is_empty() && root.is_loaded() {
            let _ = loader::unload_ifaces(root, &fresh);
        }
        return Err(e);
    }
    report.ok_or_else(|| Error::runtime("no interface to attach"))
}
