//! `zfw status`: interfaces and their hooks (with program ids as the kernel
//! reports them), settings, map fill levels and verdict counters.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::attach::{tc, xdp, PRIO_EGRESS, PRIO_POLICY, PRIO_TRACK};
use crate::bpffs::Root;
use crate::error::Result;
use crate::iface_state;
use crate::loader::{Programs, PROG_EGRESS, PROG_NAMES, PROG_POLICY, PROG_TRACK, PROG_XDP};
use crate::maps::{defs, Maps};
use crate::skel::{enum_name, names};

#[derive(Debug, Serialize)]
pub struct MonitorStatus {
    pub pid: u32,
    pub all_drops: bool,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub bpffs: String,
    pub programs: BTreeMap<String, u32>,
    pub interfaces: Vec<IfaceStatus>,
    pub maps: Vec<MapStatus>,
    pub counters: BTreeMap<String, u64>,
    /// SYNs to DDoS-protected ports, per interface (syn_count_map)
    pub syn_counts: BTreeMap<String, u64>,
    /// Events the datapath could not queue for `monitor` (rb_map full),
    /// since load; null when the root has no stats_map (older zfw)
    pub events_lost: Option<u64>,
    /// The `zfw monitor` reading events (its lease holds), and whether it
    /// asked for every drop (`--all-drops`)
    pub monitor: Option<MonitorStatus>,
    /// kernel memory of every map listed, in bytes (sum of memory_bytes)
    pub memory_bytes: u64,
    /// A rule change whose journal record is still set: in progress, or
    /// interrupted (ARCHITECTURE.md §7); null when none is pending
    pub rule_change: Option<crate::rules::journal::Pending>,
}

#[derive(Debug, Serialize)]
pub struct IfaceStatus {
    pub name: String,
    pub ifindex: u32,
    /// hook -> attached program id (None: not attached)
    pub hooks: BTreeMap<String, Option<u32>>,
    pub settings: BTreeMap<String, bool>,
    pub addresses: Vec<String>,
    pub present: bool,
}

#[derive(Debug, Serialize)]
pub struct MapStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub map_type: String,
    pub max_entries: u32,
    pub entries: usize,
    /// kernel memory it holds (bpftool's bytes_memlock)
    pub memory_bytes: u64,
}

pub fn status(root: &Root) -> Result<Status> {
    let maps = Maps::open(root)?;
    let progs = Programs::open(root)?;
    iface_state::refresh_all(&maps)?;
    let programs = PROG_NAMES
        .iter()
        .map(|n| (n.to_string(), progs.id(n)))
        .collect();
    let mut interfaces = Vec::new();
    for (idx, st) in maps.ifaces()? {
        let v = iface_state::view(&maps, idx, &st)?;
        let present = crate::ifaddr::name_of(idx).as_deref() == Some(v.name.as_str());
        let mut hooks = BTreeMap::new();
        if present {
            hooks.insert(
                "ingress_prio1".into(),
                tc::query(progs.fd(PROG_POLICY), idx, true, PRIO_POLICY),
            );
            hooks.insert(
                "ingress_prio2".into(),
                tc::query(progs.fd(PROG_TRACK), idx, true, PRIO_TRACK),
            );
            hooks.insert(
                "egress_prio1".into(),
                tc::query(progs.fd(PROG_EGRESS), idx, false, PRIO_EGRESS),
            );
            hooks.insert("xdp".into(), xdp::query(progs.fd(PROG_XDP), idx));
        }
        interfaces.push(IfaceStatus {
            name: v.name,
            ifindex: idx,
            hooks,
            settings: v.settings,
            addresses: v.addresses,
            present,
        });
    }
    let mut map_list = Vec::new();
    for info in defs::pinned() {
        if maps.handle(info).is_err() {
            continue;
        }
        map_list.push(MapStatus {
            name: info.name.to_string(),
            map_type: format!("{:?}", maps.map_type(info)?),
            max_entries: maps.max_entries(info)?,
            entries: maps.count(info)?,
            memory_bytes: maps.memlock(info)?,
        });
    }
    let mut counters = BTreeMap::new();
    for (_, v) in names::ZFW_REASON.iter().filter(|(n, _)| *n != "ZFW_R_MAX") {
        let c = reason_count(&maps, *v as u32)?;
        if c > 0 {
            counters.insert(enum_name(names::ZFW_REASON, "ZFW_R_", *v), c);
        }
    }
    let syn_counts = crate::ddos::syn_counts(&maps)?
        .into_iter()
        .map(|(name, _, n)| (name, n))
        .collect();
    Ok(Status {
        bpffs: root.dir.display().to_string(),
        programs,
        interfaces,
        counters,
        syn_counts,
        events_lost: crate::monitor::events_lost(&maps)?,
        monitor: crate::monitor::reader(&maps)?
            .map(|(pid, all_drops)| MonitorStatus { pid, all_drops }),
        memory_bytes: map_list.iter().map(|m| m.memory_bytes).sum(),
        maps: map_list,
        rule_change: crate::rules::journal::pending(&maps)?,
    })
}

/// Bytes as MiB with one decimal (KiB below 1 MiB).
fn mib(b: u64) -> String {
    if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    }
}

/// Human-readable rendering.
pub fn render(s: &Status) -> String {
    let mut out = format!("bpffs {}\n", s.bpffs);
    if let Some(p) = &s.rule_change {
        out.push_str(&format!("RULE CHANGE PENDING: {}\n", p.describe()));
    }
    out.push_str("programs:");
    for (n, id) in &s.programs {
        out.push_str(&format!(" {n}={id}"));
    }
    out.push_str(
        "\n\nINTERFACE        IFINDEX  INGRESS/1  INGRESS/2  EGRESS/1   XDP        SETTINGS\n",
    );
    for i in &s.interfaces {
        let h = |k: &str| match i.hooks.get(k).copied().flatten() {
            Some(id) => format!("id {id}"),
            None => "-".to_string(),
        };
        let on: Vec<&str> = i
            .settings
            .iter()
            .filter(|(_, v)| **v)
            .map(|(k, _)| k.as_str())
            .collect();
        out.push_str(&format!(
            "{:<16} {:<8} {:<10} {:<10} {:<10} {:<10} {}{}\n",
            i.name,
            i.ifindex,
            h("ingress_prio1"),
            h("ingress_prio2"),
            h("egress_prio1"),
            h("xdp"),
            on.join(","),
            if i.present { "" } else { " (interface gone)" }
        ));
    }
    out.push_str("\nMAP                      TYPE              MEMORY  ENTRIES / MAX\n");
    for m in &s.maps {
        out.push_str(&format!(
            "{:<24} {:<13} {:>10}  {} / {}\n",
            m.name,
            m.map_type,
            mib(m.memory_bytes),
            m.entries,
            m.max_entries
        ));
    }
    out.push_str(&format!("{:<38} {:>10}\n", "total", mib(s.memory_bytes)));
    if !s.counters.is_empty() {
        out.push_str("\nCOUNTER                  PACKETS\n");
        for (k, v) in &s.counters {
            out.push_str(&format!("{k:<24} {v}\n"));
        }
    }
    if let Some(n) = s.events_lost {
        out.push_str(&format!("\nEVENTS LOST (ring buffer full)  {n}\n"));
    }
    if let Some(m) = &s.monitor {
        let what = if m.all_drops {
            "every drop"
        } else {
            "verbose interfaces"
        };
        out.push_str(&format!(
            "\nMONITOR  pid {} reading events ({what})\n",
            m.pid
        ));
    }
    if !s.syn_counts.is_empty() {
        out.push_str("\nSYN (DDoS-protected ports)  COUNT\n");
        for (k, v) in &s.syn_counts {
            out.push_str(&format!("{k:<28} {v}\n"));
        }
    }
    out
}

/// Packets counted under a verdict reason, pending XDP redirects included
/// (the one reader of pending counts is src/maps/pending.rs).
pub use crate::maps::pending::reason_count;
