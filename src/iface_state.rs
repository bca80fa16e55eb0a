//! Per-interface settings (diag_map) and interface addresses
//! (ifindex_ip_map / ifindex_ip6_map).
//!
//! Addresses are read from the kernel (getifaddrs, i.e. netlink) by
//! `zfw watch` within milliseconds of every change (src/watch.rs), and by
//! `zfw load` and every command that reads or changes interface state
//! (`iface set/show`, `status`, `rule add`, `apply`); there is no cron job.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ifaddr;
use crate::maps::{defs, Maps};
use crate::net::{addr_words, words_addr, Family};
use crate::skel::{names, types};

/// Settings of an interface zfw meets for the first time: SSH and IPv6 on,
/// like the BPF side's default for interfaces without a diag_map entry.
pub fn default_flags() -> u32 {
    (names::ZFW_IF_SSH | names::ZFW_IF_IPV6) as u32
}

/// The settings, as (json name, bit), straight from `enum zfw_if_flag`.
pub fn flag_table() -> Vec<(String, u32)> {
    names::ZFW_IF_FLAG
        .iter()
        .map(|(n, v)| {
            (
                n.trim_start_matches("ZFW_IF_").to_ascii_lowercase(),
                *v as u32,
            )
        })
        .collect()
}

/// Bit of a setting named `icmp_echo` or `icmp-echo`.
pub fn flag_bit(name: &str) -> Option<u32> {
    let want = name.replace('-', "_");
    flag_table()
        .into_iter()
        .find(|(n, _)| *n == want)
        .map(|(_, b)| b)
}

pub fn copy_name(dst: &mut [i8; 16], name: &str) {
    *dst = [0; 16];
    for (d, b) in dst.iter_mut().zip(name.bytes().take(15)) {
        *d = b as i8;
    }
}

pub fn name_str(src: &[i8; 16]) -> String {
    let bytes: Vec<u8> = src
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// diag_map entry of `ifindex`, or a fresh one with default settings.
pub fn get_or_default(maps: &Maps, ifindex: u32, name: &str) -> Result<types::zfw_iface> {
    let slots = maps.max_entries(&defs::DIAG_MAP)?;
    if ifindex >= slots {
        let diag = defs::DIAG_MAP.info.name;
        return Err(Error::runtime(format!(
            "interface {name} has ifindex {ifindex}, beyond {diag}'s {slots} slots; load into a new bpffs root with --map-size {diag}=N"
        )));
    }
    let mut st = match maps.get(&defs::DIAG_MAP, &ifindex)? {
        Some(st) if st.hooks | st.flags != 0 => st,
        _ => types::zfw_iface {
            flags: default_flags(),
            ..Default::default()
        },
    };
    st.hooks |= names::ZFW_HOOK_CONFIGURED as u32;
    copy_name(&mut st.name, name);
    Ok(st)
}

/// Store the settings of `ifindex`.  The flow caches decided packets under
/// the old settings (masquerade or not, IPv6 allowed or not, ...), so they
/// forget everything.
pub fn store(maps: &Maps, ifindex: u32, st: &types::zfw_iface) -> Result<()> {
    maps.put(&defs::DIAG_MAP, &ifindex, st)?;
    crate::conntrack::invalidate_flow_caches(maps)
}

/// Write the current addresses of interface `name` into the address maps.
pub fn refresh_addrs(maps: &Maps, ifindex: u32, name: &str) -> Result<()> {
    let max = names::ZFW_MAX_IF_ADDRS as usize;
    let (v4, v6) = ifaddr::addresses(name);
    let mut a4 = types::zfw_if_addrs4::default();
    for (slot, a) in a4.addr.iter_mut().zip(v4.iter().take(max)) {
        *slot = addr_words((*a).into())[0];
    }
    a4.count = v4.len().min(max) as u32;
    maps.put(&defs::IFINDEX_IP_MAP, &ifindex, &a4)?;
    let mut a6 = types::zfw_if_addrs6::default();
    for (slot, a) in a6.addr.iter_mut().zip(v6.iter().take(max)) {
        slot.a = addr_words((*a).into());
    }
    a6.count = v6.len().min(max) as u32;
    maps.put(&defs::IFINDEX_IP6_MAP, &ifindex, &a6)?;
    Ok(())
}

/// Refresh the addresses of every interface zfw knows in this namespace.
pub fn refresh_all(maps: &Maps) -> Result<()> {
    for (idx, st) in maps.ifaces()? {
        let name = name_str(&st.name);
        if ifaddr::index_of(&name).ok() == Some(idx) {
            refresh_addrs(maps, idx, &name)?;
        }
    }
    Ok(())
}

/// The addresses of `ifindex` as the datapath sees them (IPv4 in the
/// kernel's order, primary first, then IPv6).
pub fn addrs(maps: &Maps, ifindex: u32) -> Result<Vec<std::net::IpAddr>> {
    let mut out = Vec::new();
    if let Some(a4) = maps.get(&defs::IFINDEX_IP_MAP, &ifindex)? {
        for a in a4.addr.iter().take(a4.count as usize) {
            out.push(words_addr(Family::V4, &[*a, 0, 0, 0]));
        }
    }
    if let Some(a6) = maps.get(&defs::IFINDEX_IP6_MAP, &ifindex)? {
        for a in a6.addr.iter().take(a6.count as usize) {
            out.push(words_addr(Family::V6, &a.a));
        }
    }
    Ok(out)
}

/// One interface's settings, for `iface show` and `status`.
#[derive(Debug, Serialize, Clone)]
pub struct IfaceView {
    pub name: String,
    pub ifindex: u32,
    pub settings: std::collections::BTreeMap<String, bool>,
    pub addresses: Vec<String>,
}

pub fn view(maps: &Maps, ifindex: u32, st: &types::zfw_iface) -> Result<IfaceView> {
    let settings = flag_table()
        .into_iter()
        .map(|(n, b)| (n, st.flags & b != 0))
        .collect();
    let addresses = addrs(maps, ifindex)?
        .iter()
        .map(|a| a.to_string())
        .collect();
    Ok(IfaceView {
        name: name_str(&st.name),
        ifindex,
        settings,
        addresses,
    })
}

/// Resolve `IF|all` to the diag_map entries it names.
pub fn select(maps: &Maps, which: &str) -> Result<Vec<(u32, types::zfw_iface)>> {
    let all = maps.ifaces()?;
    if which == "all" {
        return Ok(all);
    }
    let idx = ifaddr::index_of(which)?;
    all.into_iter()
        .find(|(i, _)| *i == idx)
        .map(|e| vec![e])
        .ok_or_else(|| {
            Error::usage(format!(
                "zfw is not attached to interface '{}' (zfw load --iface {})",
                crate::error::shown(which),
                crate::error::shown(which)
            ))
        })
}
