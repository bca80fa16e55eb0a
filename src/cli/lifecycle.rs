//! `load`, `unload`, `status`.

use std::collections::BTreeMap;

use clap::Args;

use crate::bpffs::Root;
use crate::error::{Error, Result};
use crate::loader::{self, LoadOptions};
use crate::status;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Interface to protect (TC ingress prio 1 + 2, egress prio 1); repeatable
    #[arg(long = "iface", value_name = "IF", num_args = 1..)]
    pub iface: Vec<String>,
    /// tun interface for tunnel mode (XDP fast path)
    #[arg(long = "tun", value_name = "IF", num_args = 1..)]
    pub tun: Vec<String>,
    /// Do not attach the egress program
    #[arg(long)]
    pub no_egress: bool,
    /// Map size override applied when maps are first created, e.g. tcp_map=131072 (range_map and
    /// service_map: slots, rounded up to chunks of 16384); repeatable
    #[arg(long = "map-size", value_name = "MAP=N")]
    pub map_size: Vec<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    /// Attach as the C zfw's start scripts do from their ebpf_config.json
    /// (InternalInterfaces / ExternalInterfaces) instead of --iface
    #[arg(long, value_name = "FILE", conflicts_with_all = ["iface", "tun", "no_egress"])]
    pub openziti_config: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct UnloadArgs {
    /// Detach these interfaces
    #[arg(long = "iface", value_name = "IF", num_args = 1..)]
    pub iface: Vec<String>,
    /// Detach everything and remove the bpffs directory
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON document instead of tables
    #[arg(long)]
    pub json: bool,
}

fn parse_sizes(specs: &[String]) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for s in specs {
        let (name, n) = s.split_once('=').ok_or_else(|| {
            Error::usage(format!(
                "--map-size '{}': expected MAP=ENTRIES",
                crate::error::shown(s)
            ))
        })?;
        // the registry says which maps the datapath sizes itself (one
        // config slot, a counter per reason, power-of-two caches, ...)
        if !crate::maps::defs::by_name(name).is_some_and(|m| m.resizable()) {
            return Err(Error::usage(format!(
                "--map-size '{}': no resizable map named '{}'",
                crate::error::shown(s),
                crate::error::shown(name)
            )));
        }
        let n: u32 = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::usage(format!(
                "--map-size '{}': entries must be a positive integer",
                crate::error::shown(s)
            ))
        })?;
        // a ring buffer's size is in bytes: the kernel takes a power of
        // two that is a multiple of the page size
        // SAFETY: sysconf only reads a system constant
        let page =
            u32::try_from(unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let is_ring =
            crate::maps::defs::by_name(name).is_some_and(|m| m.kind == libbpf_rs::MapType::RingBuf);
        if is_ring && (!n.is_power_of_two() || n < page) {
            return Err(Error::usage(format!(
                "--map-size '{}': a ring buffer's size is bytes, a power of two of at least {page}",
                s.escape_debug()
            )));
        }
        out.insert(name.to_string(), n);
    }
    Ok(out)
}

pub fn load(root: &Root, a: LoadArgs) -> Result<()> {
    let sizes = parse_sizes(&a.map_size)?;
    let rep = match &a.openziti_config {
        Some(file) => crate::legacy::openziti::load(root, file, &sizes)?,
        None => loader::load(
            root,
            &LoadOptions {
                ifaces: a.iface,
                tuns: a.tun,
                no_egress: a.no_egress,
                sizes,
            },
        )?,
    };
    if a.json {
        return super::print_json(&rep);
    }
    crate::outln!(
        "zfw: programs {} (bpffs {})",
        rep.programs,
        root.dir.display()
    )?;
    for i in &rep.interfaces {
        crate::outln!(
            "zfw: {} (ifindex {}): {}",
            i.name,
            i.ifindex,
            i.hooks.join(", ")
        )?;
    }
    Ok(())
}

pub fn unload(root: &Root, a: UnloadArgs) -> Result<()> {
    if a.all {
        loader::unload_all(root)?;
        if root.dir.exists() {
            crate::outln!("zfw: unloaded everything, kept {}", root.dir.display())?;
        } else {
            crate::outln!("zfw: unloaded everything, removed {}", root.dir.display())?;
        }
    } else {
        for name in loader::unload_ifaces(root, &a.iface)? {
            crate::outln!("zfw: detached {name}")?;
        }
    }
    Ok(())
}

pub fn status(root: &Root, a: StatusArgs) -> Result<()> {
    let s = status::status(root)?;
    if a.json {
        super::print_json(&s)
    } else {
        crate::out!("{}", status::render(&s))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::defs;

    #[test]
    fn map_size_takes_the_resizable_maps_of_the_registry_only() {
        for info in defs::ALL {
            let r = parse_sizes(&[format!("{}=4096", info.name)]);
            assert_eq!(r.is_ok(), info.resizable(), "{}", info.name);
            if let Err(e) = r {
                assert_eq!(e.exit_code(), 2);
                assert!(e.to_string().contains("no resizable map"), "{e}");
            }
        }
        // the datapath sizes these itself (as before the registry)
        let fixed: Vec<&str> = defs::pinned()
            .filter(|i| !i.resizable())
            .map(|i| i.name)
            .collect();
        let was_fixed = [
            &defs::CONFIG_MAP.info,
            &defs::WATCH_MAP.info,
            &defs::MONITOR_MAP.info,
            &defs::JOURNAL_MAP.info,
            &defs::MATCHED_MAP.info,
            // sized from rule_stats_map at load (ARCHITECTURE.md §7 "Counters")
            &defs::RULE_IDS_MAP.info,
            &defs::FLOW_CACHE_MAP.info,
            &defs::CT_EPOCH_MAP.info,
            &defs::TUN_CACHE_MAP.info,
            &defs::COUNTERS_MAP.info,
            &defs::STATS_MAP.info,
        ];
        assert_eq!(fixed, was_fixed.map(|i| i.name));
        let (tcp, diag) = (defs::TCP_MAP.info.name, defs::DIAG_MAP.info.name);
        let sizes = parse_sizes(&[format!("{tcp}=8"), format!("{diag}=9")]).unwrap();
        assert_eq!((sizes[tcp], sizes[diag]), (8, 9));
        let bad = [
            tcp.to_string(),
            format!("{tcp}=0"),
            format!("{tcp}=x"),
            format!("{tcp}x=8"),
            "=8".to_string(),
        ];
        for bad in bad {
            let e = parse_sizes(std::slice::from_ref(&bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        // rb_map takes bytes: a power of two, at least a page
        let rb = defs::RB_MAP.info.name;
        assert_eq!(parse_sizes(&[format!("{rb}=4096")]).unwrap()[rb], 4096);
        for bad in [
            format!("{rb}=4095"),
            format!("{rb}=6144"),
            format!("{rb}=2048"),
        ] {
            let e = parse_sizes(std::slice::from_ref(&bad)).unwrap_err();
            assert!(e.to_string().contains("power of two"), "{bad}: {e}");
        }
        let e = parse_sizes(&["tcp\u{1b}[2J=8".into()]).unwrap_err();
        assert!(!e.to_string().contains('\u{1b}'), "escaped: {e}");
    }
}
