//! Running the interface and lifecycle requests on the library: `-X`,
//! `-H`, `-Z`, `-Q`, the toggles, `-L -E`, `-M`.

use std::os::fd::AsRawFd;

use crate::bpffs::{check_privileges, Root};
use crate::error::{Context, Error, Result};
use crate::iface_state;
use crate::ifaddr;
use crate::loader::{self, LoadOptions};
use crate::maps::{defs, Maps};
use crate::rules::model::Direction;
use crate::rules::store;
use crate::skel::{names, types};

use super::exec::open;
use super::lo_addr;
use super::output::{self, Diag};
use super::request::{Target, Toggle};

const HOOK_INGRESS: u32 = names::ZFW_HOOK_INGRESS as u32;
const HOOK_EGRESS: u32 = names::ZFW_HOOK_EGRESS as u32;
const HOOK_TUN_MODE: u32 = names::ZFW_HOOK_TUN_MODE as u32;

/// The C zfw leaves interfaces named ziti* (OpenZiti's tun) alone.
fn is_ziti(name: &str) -> bool {
    name.starts_with("ziti")
}

/// `-H IF|all`: both directions.
pub fn init_tc(root: &Root, t: &Target) -> Result<()> {
    let ifaces = attachable(t)?;
    report(loader::load(
        root,
        &LoadOptions {
            ifaces,
            ..Default::default()
        },
    )?)?;
    Ok(())
}

/// `-Z IF`: register IF as the tun (zfw's XDP program on it).
pub fn init_xdp(root: &Root, name: &str) -> Result<()> {
    if name == "all" {
        return Err(Error::usage("-Z, --init-xdp needs the tun's name, not all"));
    }
    report(loader::load(
        root,
        &LoadOptions {
            tuns: vec![name.to_string()],
            ..Default::default()
        },
    )?)?;
    Ok(())
}

/// `-Q`: everything off, the pins and zfw's lo addresses gone; "not
/// loaded" (exit 1) when there is nothing.
pub fn disable(root: &Root) -> Result<()> {
    check_privileges()?;
    root.require_loaded()?;
    loader::unload_all(root)?;
    for p in lo_addr::flush()? {
        crate::outln!("Prefix: {p} removed from loopback")?;
    }
    crate::outln!("zfw: detached everything, removed {}", root.dir.display())?;
    Ok(())
}

fn report(rep: loader::LoadReport) -> Result<()> {
    for i in rep.interfaces {
        crate::outln!(
            "zfw: {} (ifindex {}): {}",
            i.name,
            i.ifindex,
            i.hooks.join(", ")
        )?;
    }
    Ok(())
}

/// `IF|all` for attaching: `all` is every interface of the namespace but
/// lo and ziti* (the C zfw attaches lo too and passes all its traffic).
fn attachable(t: &Target) -> Result<Vec<String>> {
    match t {
        Target::If(n) if is_ziti(n) => Err(Error::usage(format!(
            "{n}:zfw does not allow tc filters on ziti tun interfaces!"
        ))),
        Target::If(n) => Ok(vec![n.clone()]),
        Target::All => Ok(ifaddr::all_names()
            .into_iter()
            .filter(|n| n != "lo" && !is_ziti(n))
            .collect()),
    }
}

/// The hooks zfw recorded on `name` (0: none, or not loaded).
fn hooks_of(root: &Root, name: &str) -> Result<u32> {
    if !root.is_loaded() {
        return Ok(0);
    }
    let idx = ifaddr::index_of(name)?;
    let maps = Maps::open(root)?;
    Ok(maps.get(&defs::DIAG_MAP, &idx)?.map_or(0, |st| st.hooks))
}

/// `-X IF -O FILE -z DIR [-d]`.  This zfw's programs are built in (FILE is
/// not read) and its egress program runs beside the ingress ones, so
/// egress needs ingress first and detaching ingress detaches both.
pub fn tc_filter(root: &Root, target: &Target, dir: Direction, detach: bool) -> Result<()> {
    check_privileges()?;
    let names = match (target, detach) {
        (Target::All, true) => open(root)?
            .ifaces()?
            .into_iter()
            .map(|(_, st)| iface_state::name_str(&st.name))
            .filter(|n| ifaddr::index_of(n).is_ok())
            .collect(),
        _ => attachable(target)?,
    };
    for name in names {
        let hooks = hooks_of(root, &name)?;
        let load = |no_egress| {
            loader::load(
                root,
                &LoadOptions {
                    ifaces: vec![name.clone()],
                    no_egress,
                    ..Default::default()
                },
            )
        };
        match (dir, detach) {
            (Direction::Ingress, false) => report(load(hooks & HOOK_EGRESS == 0)?)?,
            (Direction::Egress, false) => {
                if hooks & HOOK_INGRESS == 0 {
                    return Err(Error::runtime(format!(
                        "-z egress on {name} needs -z ingress there first (zfw -X {name} -O FILE -z ingress): this zfw's egress program works beside its ingress one"
                    )));
                }
                report(load(false)?)?
            }
            (Direction::Ingress, true) => {
                if hooks & HOOK_INGRESS != 0 {
                    loader::unload_ifaces(root, std::slice::from_ref(&name))?;
                }
            }
            (Direction::Egress, true) => {
                if hooks & HOOK_EGRESS != 0 {
                    report(load(true)?)?;
                    // as in C: without egress, no outbound filtering or masquerade
                    set_bits(
                        root,
                        &[
                            (Toggle::OutboundFilter, Target::If(name.clone())),
                            (Toggle::Masquerade, Target::If(name.clone())),
                        ],
                        false,
                        true,
                    )?;
                }
            }
        }
        crate::outln!(
            "Set tc filter enable to {} for {} on {name}",
            u8::from(!detach),
            dir.name()
        )?;
    }
    Ok(())
}

/// The diag_map bit of a toggle: (in `flags` or `hooks`, bit, set when on).
fn bit_of(t: Toggle) -> (bool, u32, bool) {
    let f = |v: i64| (true, v as u32, true);
    match t {
        Toggle::IcmpEcho => f(names::ZFW_IF_ICMP_ECHO),
        Toggle::Verbose => f(names::ZFW_IF_VERBOSE),
        Toggle::DisableSsh => (true, names::ZFW_IF_SSH as u32, false),
        Toggle::PerInterfaceRules => f(names::ZFW_IF_PER_INTERFACE_RULES),
        Toggle::TunMode => (false, HOOK_TUN_MODE, true),
        Toggle::Vrrp => f(names::ZFW_IF_VRRP),
        Toggle::Eapol => f(names::ZFW_IF_EAPOL),
        Toggle::PassNonTuple => f(names::ZFW_IF_PASS_NON_TUPLE),
        Toggle::Ddos => f(names::ZFW_IF_DDOS),
        Toggle::OutboundFilter => f(names::ZFW_IF_OUTBOUND_FILTER),
        Toggle::Masquerade => f(names::ZFW_IF_MASQUERADE),
        Toggle::OtFiltering => f(names::ZFW_IF_OT_FILTERING),
        Toggle::Ipv6 => f(names::ZFW_IF_IPV6),
    }
}

fn toggle_name(t: Toggle) -> &'static str {
    match t {
        Toggle::IcmpEcho => "icmp-echo",
        Toggle::Verbose => "verbose",
        Toggle::DisableSsh => "disable_ssh",
        Toggle::PerInterfaceRules => "per_interface rule aware",
        Toggle::TunMode => "tun mode",
        Toggle::Vrrp => "vrrp mode",
        Toggle::Eapol => "eapol",
        Toggle::PassNonTuple => "pass-non-tuple",
        Toggle::Ddos => "ddos detect",
        Toggle::OutboundFilter => "outbound_filter",
        Toggle::Masquerade => "masquerade",
        Toggle::OtFiltering => "ot filtering",
        Toggle::Ipv6 => "ipv6_enable",
    }
}

pub fn toggles(root: &Root, set: &[(Toggle, Target)], on: bool) -> Result<()> {
    set_bits(root, set, on, false)?;
    if on && set.iter().any(|(t, _)| *t == Toggle::TunMode) {
        ensure_tun(root, &open(root)?)?;
    }
    Ok(())
}

/// Apply toggles: every target and precondition is checked before the
/// first write.  `quiet`: no "Set ..." lines.
pub(crate) fn set_bits(root: &Root, set: &[(Toggle, Target)], on: bool, quiet: bool) -> Result<()> {
    let maps = open(root)?;
    let _lock = root.lock()?;
    let mut plan: Vec<(u32, types::zfw_iface, Toggle)> = Vec::new();
    for (t, target) in set {
        let sel = match target {
            Target::All => iface_state::select(&maps, "all")?
                .into_iter()
                .filter(|(_, st)| !is_ziti(&iface_state::name_str(&st.name)))
                .collect(),
            Target::If(n) if is_ziti(n) => {
                return Err(Error::usage(format!(
                    "{n}:zfw does not allow setting on ziti tun interfaces!"
                )))
            }
            Target::If(n) => {
                let idx = ifaddr::index_of(n)?;
                vec![(idx, iface_state::get_or_default(&maps, idx, n)?)]
            }
        };
        for (idx, st) in sel {
            let name = iface_state::name_str(&st.name);
            if on && *t == Toggle::OutboundFilter && st.hooks & HOOK_EGRESS == 0 {
                return Err(Error::usage(format!(
                    "outbound filter not set, no egress filter exists for {name} (set it first with zfw -X {name} -O FILE -z egress)"
                )));
            }
            if on && *t == Toggle::Masquerade {
                crate::nat::check_hooks(&name, &st)?;
            }
            plan.push((idx, st, *t));
        }
    }
    for (idx, _, t) in &plan {
        // several toggles may name one interface: start from the latest
        let mut st = maps
            .get(&defs::DIAG_MAP, idx)?
            .filter(|s| s.hooks | s.flags != 0)
            .unwrap_or(
                plan.iter()
                    .find(|(i, _, _)| i == idx)
                    .map(|p| p.1)
                    .unwrap_or_default(),
            );
        let name = iface_state::name_str(&st.name);
        let (in_flags, bit, set_when_on) = bit_of(*t);
        let word = if in_flags {
            &mut st.flags
        } else {
            &mut st.hooks
        };
        if on == set_when_on {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        iface_state::store(&maps, *idx, &st)?;
        if !quiet {
            crate::outln!("Set {} to {} for {name}", toggle_name(*t), u8::from(on))?;
        }
    }
    iface_state::refresh_all(&maps)?;
    store::bump_gen(&maps)
}

/// Is tun mode on where a rule on `ifaces` applies (any interface zfw
/// knows, for a rule without `-N`)?
pub fn tun_mode(maps: &Maps, ifaces: &[String]) -> Result<bool> {
    let known = maps.ifaces()?;
    let on = |idx: u32| {
        known
            .iter()
            .any(|(i, st)| *i == idx && st.hooks & HOOK_TUN_MODE != 0)
    };
    if ifaces.is_empty() {
        return Ok(known.iter().any(|(i, _)| on(*i)));
    }
    Ok(ifaces
        .iter()
        .filter_map(|n| ifaddr::index_of(n).ok())
        .any(on))
}

/// Tunnel rules need a registered tun.  ziti-edge-tunnel attaches the C
/// zfw's XDP object itself (`ip link set TUN xdpgeneric obj ...`), which
/// this zfw does not ship; instead the first interface named ziti* is
/// registered here, as `zfw -Z` would.
pub fn ensure_tun(root: &Root, maps: &Maps) -> Result<()> {
    if let Some(ti) = maps.get(&defs::IFINDEX_TUN_MAP, &0)? {
        if ti.ifindex != 0 && ifaddr::name_of(ti.ifindex).is_some() {
            return Ok(());
        }
    }
    let Some(tun) = ifaddr::all_names().into_iter().find(|n| is_ziti(n)) else {
        eprintln!(
            "zfw: tun mode: no tun is registered and no ziti* interface exists; tunnel rules drop until `zfw -Z TUN`"
        );
        return Ok(());
    };
    report(loader::load(
        root,
        &LoadOptions {
            tuns: vec![tun],
            ..Default::default()
        },
    )?)?;
    Ok(())
}

/// `-L -E`: every interface of the namespace (as in C), with zfw's
/// settings where it has them.  Exit 1 when zfw is not loaded.
pub fn list_diag(root: &Root) -> Result<()> {
    let maps = open(root)?;
    let known = maps.ifaces()?;
    let mut all: Vec<(u32, String)> = nix::net::if_::if_nameindex()
        .map(|l| {
            l.iter()
                .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    all.dedup();
    let list: Vec<Diag> = all
        .into_iter()
        .map(|(idx, name)| {
            let st = known
                .iter()
                .find(|(i, _)| *i == idx)
                .map(|(_, st)| *st)
                .unwrap_or(types::zfw_iface {
                    flags: iface_state::default_flags(),
                    ..Default::default()
                });
            let f = |b: i64| st.flags & b as u32 != 0;
            Diag {
                name,
                ifindex: idx,
                icmp_echo: f(names::ZFW_IF_ICMP_ECHO),
                pass_non_tuple: f(names::ZFW_IF_PASS_NON_TUPLE),
                ipv6: f(names::ZFW_IF_IPV6),
                verbose: f(names::ZFW_IF_VERBOSE),
                ssh_disable: !f(names::ZFW_IF_SSH),
                outbound_filter: f(names::ZFW_IF_OUTBOUND_FILTER),
                per_interface: f(names::ZFW_IF_PER_INTERFACE_RULES),
                tc_ingress: st.hooks & HOOK_INGRESS != 0,
                tc_egress: st.hooks & HOOK_EGRESS != 0,
                tun_mode: st.hooks & HOOK_TUN_MODE != 0,
                vrrp: f(names::ZFW_IF_VRRP),
                eapol: f(names::ZFW_IF_EAPOL),
                ddos: f(names::ZFW_IF_DDOS),
                masquerade: f(names::ZFW_IF_MASQUERADE),
                ot_filtering: f(names::ZFW_IF_OT_FILTERING),
            }
        })
        .collect();
    crate::out!("{}", output::diag(&list))?;
    Ok(())
}

/// `-M IF|all [-W FILE]`: our event lines, appended to FILE with -W.
pub fn monitor(root: &Root, target: &Target, log: Option<&str>) -> Result<()> {
    let maps = open(root)?;
    let iface = match target {
        Target::All => None,
        Target::If(n) => Some(ifaddr::index_of(n)?),
    };
    if let Some(path) = log {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("opening {}", super::text::shown(path)))?;
        nix::unistd::dup2(f.as_raw_fd(), 1).ctx(|| "writing events to the log file".into())?;
    }
    crate::monitor::run(
        &maps,
        &crate::monitor::MonitorOptions {
            iface,
            ..Default::default()
        },
    )?;
    Ok(())
}
