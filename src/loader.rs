//! `zfw load` / `zfw unload`: load the datapath once per bpffs root, pin maps
//! and programs, attach to interfaces, and take it all away again.

use std::collections::BTreeMap;
use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapHandle, Program};
use serde::Serialize;

use crate::attach::{tc, xdp, PRIO_EGRESS, PRIO_POLICY, PRIO_TRACK};
use crate::bpffs::{check_privileges, Root};
use crate::error::{Context, Error, Result};
use crate::iface_state;
use crate::ifaddr;
use crate::maps::{defs, Maps};
use crate::skel::{names, types, zfw::ZfwSkelBuilder, BPF_BUILD_ID};

/// libbpf prints kernel extack notes (e.g. "Exclusivity flag on") for
/// conditions zfw handles itself; show its chatter only with ZFW_DEBUG set.
pub fn quiet_libbpf() {
    if std::env::var_os("ZFW_DEBUG").is_some() {
        return;
    }
    libbpf_rs::set_print(None);
}

/// Program names (as pinned under DIR/progs).
pub const PROG_POLICY: &str = "zfw_policy";
pub const PROG_TRACK: &str = "zfw_track_flow";
pub const PROG_EGRESS: &str = "zfw_egress_flow";
pub const PROG_XDP: &str = "zfw_xdp_tun_fast";
pub const PROG_NAMES: &[&str] = &[PROG_POLICY, PROG_TRACK, PROG_EGRESS, PROG_XDP];

// `enum zfw_hook`: the hooks user space records in diag_map
const HOOK_INGRESS: u32 = names::ZFW_HOOK_INGRESS as u32;
const HOOK_TRACK: u32 = names::ZFW_HOOK_TRACK as u32;
const HOOK_EGRESS: u32 = names::ZFW_HOOK_EGRESS as u32;
const HOOK_XDP: u32 = names::ZFW_HOOK_XDP_TUN as u32;
const HOOK_OWN_CLSACT: u32 = names::ZFW_HOOK_OWN_CLSACT as u32;

#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    pub ifaces: Vec<String>,
    pub tuns: Vec<String>,
    pub no_egress: bool,
    /// Map name -> max_entries, applied when the map is created.
    pub sizes: BTreeMap<String, u32>,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// "loaded" (new programs), "reused" (same build already pinned) or
    /// "replaced" (a different build was pinned; maps kept).
    pub programs: &'static str,
    pub interfaces: Vec<AttachReport>,
}

#[derive(Debug, Serialize)]
pub struct AttachReport {
    pub name: String,
    pub ifindex: u32,
    pub hooks: Vec<String>,
}

/// The loaded programs' fds, by name.
pub struct Programs {
    fds: BTreeMap<String, OwnedFd>,
}

impl Programs {
    /// Open the programs pinned under `root`.
    pub fn open(root: &Root) -> Result<Self> {
        root.check_root()?;
        let mut fds = BTreeMap::new();
        for name in PROG_NAMES {
            let p = root.prog_path(name);
            let fd = Program::fd_from_pinned_path(&p)
                .ctx(|| format!("opening pinned program {}", p.display()))?;
            fds.insert(name.to_string(), fd);
        }
        Ok(Programs { fds })
    }

    pub fn fd(&self, name: &str) -> BorrowedFd<'_> {
        self.fds[name].as_fd()
    }

    pub fn id(&self, name: &str) -> u32 {
        Program::id_from_fd(self.fd(name)).unwrap_or(0)
    }
}

/// A pinned map's max_entries and flags: a reload keeps the map as it
/// is, so an older build's preallocated map is reused as such (README
/// "Memory": a fresh load gets the new flags).
fn pinned_shape(root: &Root, name: &str) -> Option<(u32, u32)> {
    let h = MapHandle::from_pinned_path(root.map_path(name)).ok()?;
    let flags = h.info().ok()?.info.map_flags;
    Some((h.max_entries(), flags))
}

/// Load the BPF object, reusing pinned maps, and pin its programs.
fn load_programs(root: &Root, sizes: &BTreeMap<String, u32>) -> Result<()> {
    let mut storage = MaybeUninit::uninit();
    let mut open = ZfwSkelBuilder::default()
        .open(&mut storage)
        .ctx(|| "opening the zfw BPF object".into())?;
    for mut m in open.open_object_mut().maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        if crate::maps::registry::is_libbpf_internal(&name) {
            continue;
        }
        // every map of the object has a registry row (a unit test checks
        // it); the row says whether it is pinned
        let Some(info) = defs::by_name(&name) else {
            return Err(Error::runtime(format!(
                "the BPF object has a map {} that src/maps/defs.rs does not describe",
                name.escape_debug()
            )));
        };
        info.check_layout(m.map_type(), m.key_size(), m.value_size())
            .map_err(|e| {
                Error::runtime(format!(
                    "the BPF object does not match src/maps/defs.rs: {e}"
                ))
            })?;
        if !info.pinned() {
            continue;
        }
        let pin = root.map_path(info.name);
        let pinned = if pin.exists() {
            pinned_shape(root, info.name)
        } else {
            None
        };
        let max = match pinned {
            Some((max, _)) => Some(max),
            None if pin.exists() => None,
            // one bit per counter id of rule_stats_map, pinned or new
            // (ARCHITECTURE.md §7 "Counters")
            None if info.name == defs::RULE_IDS_MAP.info.name => {
                let stats = defs::RULE_STATS_MAP.info.name;
                let ids = pinned_shape(root, stats)
                    .map(|(n, _)| n)
                    .or_else(|| sizes.get(stats).copied())
                    .unwrap_or(crate::skel::names::ZFW_RULE_STATS_SLOTS as u32);
                Some(crate::rules::ids::words_for(ids))
            }
            // a grown table's capacity is a setting (stamp_config), its
            // outer array has one slot
            None if info.grown() => None,
            // a chunked map's size is given in slots, its outer array
            // holds chunks (src/maps/chunked.rs)
            None if info.chunked() => sizes
                .get(info.name)
                .map(|n| crate::maps::chunked::chunks_for(*n)),
            None => sizes.get(info.name).copied(),
        };
        if let Some(max) = max {
            m.set_max_entries(max).ctx(|| format!("sizing {name}"))?;
        }
        if let Some((_, flags)) = pinned {
            m.set_map_flags(flags).ctx(|| format!("flags of {name}"))?;
        }
        m.set_pin_path(&pin)
            .ctx(|| format!("pin path for {name}"))?;
    }
    if std::env::var_os("ZFW_VERIFIER_STATS").is_some() {
        // the kernel's per-program verifier statistics, printed by libbpf's
        // debug log (with ZFW_DEBUG): how close each program is to the limit
        for mut p in open.open_object_mut().progs_mut() {
            p.set_log_level(4);
        }
        fn stats(_: libbpf_rs::PrintLevel, msg: String) {
            for l in msg
                .lines()
                .filter(|l| l.contains("processed") || l.contains("LOAD LOG"))
            {
                eprintln!("{l}");
            }
        }
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, stats)));
    }
    let skel = open.load().map_err(|e| {
        if e.kind() == libbpf_rs::ErrorKind::InvalidInput {
            Error::runtime(format!(
                "the maps pinned under {} do not match this zfw build ({e}); run `zfw --bpffs {} unload --all` first",
                root.dir.display(),
                root.dir.display()
            ))
        } else {
            Error::Bpf {
                context: "loading the zfw BPF programs (ZFW_DEBUG=1 shows the verifier log)".into(),
                source: e,
            }
        }
    })?;
    for mut p in skel.object().progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        let path = root.prog_path(&name);
        if path.exists() {
            fs::remove_file(&path).ctx(|| format!("replacing {}", path.display()))?;
        }
        p.pin(&path).ctx(|| format!("pinning {}", path.display()))?;
    }
    Ok(())
}

/// Make sure this build's programs are pinned; returns what happened.
fn ensure_programs(root: &Root, sizes: &BTreeMap<String, u32>) -> Result<&'static str> {
    let abi = crate::skel::names::ZFW_ABI_VERSION as u32;
    let have_progs = PROG_NAMES.iter().all(|n| root.prog_path(n).exists());
    if root.is_loaded() {
        // another build's maps: say which ABI made them before how they differ
        let maps = Maps::open_matching(root)?;
        let cfg = maps.config().unwrap_or_default();
        if cfg.abi_version != 0 && cfg.abi_version != abi {
            return Err(Error::runtime(format!(
                "maps under {} were created by a zfw with ABI v{}, this one is v{abi}; run `zfw --bpffs {} unload --all` first",
                root.dir.display(),
                cfg.abi_version,
                root.dir.display()
            )));
        }
        maps.require_match()?;
        if have_progs && cfg.build_id == BPF_BUILD_ID {
            return Ok("reused");
        }
        load_programs(root, sizes)?;
        return Ok("replaced");
    }
    load_programs(root, sizes)?;
    Ok("loaded")
}

fn hook_names(hooks: u32) -> Vec<String> {
    let mut v = Vec::new();
    if hooks & HOOK_INGRESS != 0 {
        v.push("ingress/1".to_string());
    }
    if hooks & HOOK_TRACK != 0 {
        v.push("ingress/2".to_string());
    }
    if hooks & HOOK_EGRESS != 0 {
        v.push("egress/1".to_string());
    }
    if hooks & HOOK_XDP != 0 {
        v.push("xdp".to_string());
    }
    v
}

/// Attach the TC programs to one interface (replace in place if present).
fn attach_tc(progs: &Programs, ifindex: u32, egress: bool, mut hooks: u32) -> Result<u32> {
    if tc::ensure_clsact(ifindex)? {
        hooks |= HOOK_OWN_CLSACT;
    }
    tc::attach(progs.fd(PROG_POLICY), ifindex, true, PRIO_POLICY)?;
    tc::attach(progs.fd(PROG_TRACK), ifindex, true, PRIO_TRACK)?;
    hooks |= HOOK_INGRESS | HOOK_TRACK;
    if egress {
        tc::attach(progs.fd(PROG_EGRESS), ifindex, false, PRIO_EGRESS)?;
        hooks |= HOOK_EGRESS;
    } else if hooks & HOOK_EGRESS != 0 {
        tc::detach(progs.fd(PROG_EGRESS), ifindex, false, PRIO_EGRESS)?;
        hooks &= !HOOK_EGRESS;
    }
    Ok(hooks)
}

/// Load (or reuse) the datapath under `root` without attaching it anywhere:
/// for benchmarks and packet tests, which drive the programs with
/// BPF_PROG_TEST_RUN.
pub fn load_detached(root: &Root) -> Result<()> {
    load_detached_with(root, &BTreeMap::new())
}

/// `load_detached` with map sizes (name -> max_entries) for maps it creates.
pub fn load_detached_with(root: &Root, sizes: &BTreeMap<String, u32>) -> Result<()> {
    check_privileges()?;
    let fresh = !root.is_loaded();
    let res = (|| {
        root.ensure_mounted()?;
        let _lock = root.lock()?;
        ensure_programs(root, sizes)?;
        let maps = Maps::open(root)?;
        stamp_config(&maps, sizes)
    })();
    rollback_if_fresh(root, fresh, res)
}

/// Record this build's ABI and object in config_map, and, at the first
/// load under a root, how many keys tproxy_map's table may grow to
/// (`--map-size tproxy_map=N`; ARCHITECTURE.md §6 "Grown tables").
fn stamp_config(maps: &Maps, sizes: &BTreeMap<String, u32>) -> Result<()> {
    let mut cfg = maps.config()?;
    cfg.abi_version = crate::skel::names::ZFW_ABI_VERSION as u32;
    cfg.build_id = BPF_BUILD_ID;
    if cfg.rule_keys_max == 0 {
        cfg.rule_keys_max = sizes
            .get(defs::TPROXY_MAP.info.name)
            .copied()
            .unwrap_or(crate::skel::names::ZFW_RULE_KEYS_MAX as u32);
    }
    maps.set_config(&cfg)
}

/// A load that fails on a root it created leaves nothing behind: a
/// rejected command changes nothing.
fn rollback_if_fresh<T>(root: &Root, fresh: bool, res: Result<T>) -> Result<T> {
    if res.is_err() && fresh {
        if root.is_loaded() {
            let _ = unload_all(root);
        } else if root.dir.exists() {
            let _ = remove_pins(root);
        }
    }
    res
}

/// `zfw load`: see the module doc.  Validates every name before changing
/// anything.
pub fn load(root: &Root, opts: &LoadOptions) -> Result<LoadReport> {
    check_privileges()?;
    if opts.ifaces.is_empty() && opts.tuns.is_empty() {
        return Err(Error::usage("load needs at least one --iface (or --tun)"));
    }
    let mut ifaces = Vec::new();
    for name in &opts.ifaces {
        ifaces.push((name.clone(), ifaddr::index_of(name)?));
    }
    let mut tuns = Vec::new();
    for name in &opts.tuns {
        tuns.push((name.clone(), ifaddr::index_of(name)?));
    }
    if tuns.len() > 1 {
        return Err(Error::usage("only one --tun interface can be registered"));
    }
    for (name, _) in &tuns {
        if opts.ifaces.contains(name) {
            return Err(Error::usage(format!(
                "interface '{}' cannot be both --iface and --tun",
                crate::error::shown(name)
            )));
        }
    }

    let fresh = !root.is_loaded();
    let res = attach_all(root, opts, &ifaces, &tuns);
    rollback_if_fresh(root, fresh, res)
}

fn attach_all(
    root: &Root,
    opts: &LoadOptions,
    ifaces: &[(String, u32)],
    tuns: &[(String, u32)],
) -> Result<LoadReport> {
    root.ensure_mounted()?;
    let _lock = root.lock()?;
    let programs = ensure_programs(root, &opts.sizes)?;
    let progs = Programs::open(root)?;
    let maps = Maps::open(root)?;

    stamp_config(&maps, &opts.sizes)?;
    // a rule change killed part-way is finished or rolled back
    // (ARCHITECTURE.md §7)
    crate::rules::journal::recover(&maps)?;

    let mut report = LoadReport {
        programs,
        interfaces: Vec::new(),
    };

    // New programs: move every interface attached before onto them.
    if programs == "replaced" {
        for (ifindex, st) in maps.ifaces()? {
            if ifaces.iter().any(|(_, i)| *i == ifindex) || tuns.iter().any(|(_, i)| *i == ifindex)
            {
                continue;
            }
            if ifaddr::name_of(ifindex).is_none() {
                continue;
            }
            let mut st = st;
            if st.hooks & (HOOK_INGRESS | HOOK_TRACK) != 0 {
                st.hooks = attach_tc(&progs, ifindex, st.hooks & HOOK_EGRESS != 0, st.hooks)?;
            }
            if st.hooks & HOOK_XDP != 0 {
                xdp::attach(progs.fd(PROG_XDP), ifindex)?;
            }
            iface_state::store(&maps, ifindex, &st)?;
        }
    }

    for (name, ifindex) in ifaces {
        let mut st = iface_state::get_or_default(&maps, *ifindex, name)?;
        st.hooks = attach_tc(&progs, *ifindex, !opts.no_egress, st.hooks)?;
        iface_state::store(&maps, *ifindex, &st)?;
        iface_state::refresh_addrs(&maps, *ifindex, name)?;
        report.interfaces.push(AttachReport {
            name: name.clone(),
            ifindex: *ifindex,
            hooks: hook_names(st.hooks),
        });
    }
    for (name, ifindex) in tuns {
        let mut st = iface_state::get_or_default(&maps, *ifindex, name)?;
        let mode = xdp::attach(progs.fd(PROG_XDP), *ifindex)?;
        st.hooks |= HOOK_XDP;
        iface_state::store(&maps, *ifindex, &st)?;
        let mut ti = types::zfw_tun_iface {
            ifindex: *ifindex,
            ..Default::default()
        };
        iface_state::copy_name(&mut ti.name, name);
        maps.put(&defs::IFINDEX_TUN_MAP, &0, &ti)?;
        let mut hooks = hook_names(st.hooks);
        if let Some(h) = hooks.iter_mut().find(|h| *h == "xdp") {
            *h = format!("xdp ({mode})");
        }
        report.interfaces.push(AttachReport {
            name: name.clone(),
            ifindex: *ifindex,
            hooks,
        });
    }
    Ok(report)
}

/// `zfw watch`: interface `name` was deleted and re-created (ifindex `old`
/// -> `new`).  Attach the same hooks to the new device, move its settings
/// (and the tun registration) to the new index and forget the old one.
/// The caller holds the root's lock.  Returns the hooks now attached.
pub fn reattach(root: &Root, maps: &Maps, old: u32, new: u32, name: &str) -> Result<Vec<String>> {
    let progs = Programs::open(root)?;
    let Some(was) = maps.get(&defs::DIAG_MAP, &old)? else {
        return Err(Error::runtime(format!(
            "ifindex {old} has no settings to move to {name}"
        )));
    };
    let mut st = iface_state::get_or_default(maps, new, name)?;
    st.flags = was.flags;
    let keep = names::ZFW_HOOK_CONFIGURED as u32 | names::ZFW_HOOK_TUN_MODE as u32;
    st.hooks = was.hooks & keep;
    if was.hooks & (HOOK_INGRESS | HOOK_TRACK) != 0 {
        st.hooks = attach_tc(&progs, new, was.hooks & HOOK_EGRESS != 0, st.hooks)?;
    }
    if was.hooks & HOOK_XDP != 0 {
        xdp::attach(progs.fd(PROG_XDP), new)?;
        st.hooks |= HOOK_XDP;
        if let Some(mut ti) = maps.get(&defs::IFINDEX_TUN_MAP, &0)? {
            if ti.ifindex == old {
                ti.ifindex = new;
                maps.put(&defs::IFINDEX_TUN_MAP, &0, &ti)?;
            }
        }
    }
    iface_state::store(maps, new, &st)?;
    maps.del(&defs::DIAG_MAP, &old)?;
    maps.del(&defs::IFINDEX_IP_MAP, &old)?;
    maps.del(&defs::IFINDEX_IP6_MAP, &old)?;
    iface_state::refresh_addrs(maps, new, name)?;
    Ok(hook_names(st.hooks))
}

/// Take zfw off one interface (ifindex in this namespace).
fn detach_iface(progs: &Programs, maps: &Maps, ifindex: u32, st: &types::zfw_iface) -> Result<()> {
    // Only touch the device if it is still the one zfw attached to (same
    // index and name in this namespace; a vanished one took its hooks along),
    // and only the hooks zfw recorded there.
    if ifaddr::name_of(ifindex).as_deref() == Some(iface_state::name_str(&st.name).as_str()) {
        if st.hooks & HOOK_INGRESS != 0 {
            tc::detach(progs.fd(PROG_POLICY), ifindex, true, PRIO_POLICY)?;
        }
        if st.hooks & HOOK_TRACK != 0 {
            tc::detach(progs.fd(PROG_TRACK), ifindex, true, PRIO_TRACK)?;
        }
        if st.hooks & HOOK_EGRESS != 0 {
            tc::detach(progs.fd(PROG_EGRESS), ifindex, false, PRIO_EGRESS)?;
        }
        if st.hooks & HOOK_XDP != 0 {
            xdp::detach(progs.fd(PROG_XDP), ifindex)?;
        }
        if st.hooks & HOOK_OWN_CLSACT != 0 {
            tc::destroy_clsact(progs.fd(PROG_POLICY), ifindex)?;
        }
    }
    maps.del(&defs::DIAG_MAP, &ifindex)?;
    crate::conntrack::invalidate_flow_caches(maps)?;
    maps.del(&defs::IFINDEX_IP_MAP, &ifindex)?;
    maps.del(&defs::IFINDEX_IP6_MAP, &ifindex)?;
    if let Some(ti) = maps.get(&defs::IFINDEX_TUN_MAP, &0)? {
        if ti.ifindex == ifindex {
            maps.del(&defs::IFINDEX_TUN_MAP, &0)?;
        }
    }
    Ok(())
}

/// `zfw unload --iface X...`: detach those interfaces, keep the rest.
pub fn unload_ifaces(root: &Root, names: &[String]) -> Result<Vec<String>> {
    check_privileges()?;
    root.require_loaded()?;
    let _lock = root.lock()?;
    let maps = Maps::open(root)?;
    let progs = Programs::open(root)?;
    let known = maps.ifaces()?;
    let mut targets = Vec::new();
    for name in names {
        let idx = ifaddr::index_of(name)?;
        let Some((_, st)) = known.iter().find(|(i, _)| *i == idx) else {
            return Err(Error::usage(format!(
                "zfw is not attached to interface '{}'",
                crate::error::shown(name)
            )));
        };
        targets.push((name.clone(), idx, *st));
    }
    for (_, idx, st) in &targets {
        detach_iface(&progs, &maps, *idx, st)?;
    }
    Ok(targets.into_iter().map(|(n, _, _)| n).collect())
}

/// `zfw unload --all`: detach every interface and remove every pin.
pub fn unload_all(root: &Root) -> Result<()> {
    check_privileges()?;
    root.require_loaded()?;
    let lock = root.lock()?;
    {
        // another build's maps too (that is when `load` asks for this):
        // what this build cannot read fails with the difference
        let maps = Maps::open_matching(root)?;
        if let Ok(progs) = Programs::open(root) {
            for (idx, st) in maps.ifaces()? {
                detach_iface(&progs, &maps, idx, &st)?;
            }
        }
        crate::rules::store::remove_routes(&maps)?;
    }
    let left = remove_pins(root)?;
    if left.is_empty() {
        // the root is gone: so is its lock (held until here)
        lock.remove()?;
    } else {
        eprintln!(
            "zfw: left {} in place: it holds what zfw did not create: {}",
            crate::bpffs::shown_path(&root.dir),
            shown_list(&left)
        );
    }
    Ok(())
}

/// Remove what zfw pins under `root` (the registry's pinned maps and the
/// programs) and the directories that leaves empty; see `Root::remove_pins`.
fn remove_pins(root: &Root) -> Result<Vec<String>> {
    let maps: Vec<&str> = defs::pinned().map(|m| m.name).collect();
    root.remove_pins(&maps, PROG_NAMES)
}

/// The first few of `names`, and how many more.
fn shown_list(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(" and {} more", names.len() - 5));
    }
    s
}
