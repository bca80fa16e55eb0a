//! Running a [`Request`] on the library: rules (`-I`, `-D`, `-F`, `-L`)
//! and lists here, interfaces and lifecycle in `exec_iface.rs`.

use std::net::IpAddr;

use crate::bpffs::{check_privileges, Root};
use crate::error::{Error, Result};
use crate::maps::{defs, Maps};
use crate::rules::model::{Action, Direction, Ports, Proto, Rule};
use crate::rules::store::{self, AddOutcome};
use crate::{ddos, iface_state, ot};

use super::exec_iface;
use super::lo_addr;
use super::output::{self, Caps};
use super::request::{max_rule_ifaces, ListArgs, Request, RuleArgs};

/// Where `-A` finds the user's rules (the C zfw's path);
/// `$ZFW_USER_RULES` names another (tests).
pub const USER_RULES: &str = "/opt/openziti/bin/user/user_rules.sh";

/// The maps of a loaded root (root needed; "not loaded" otherwise).
pub fn open(root: &Root) -> Result<Maps> {
    check_privileges()?;
    root.require_loaded()?;
    Maps::open(root)
}

pub fn run(root: &Root, req: Request) -> Result<()> {
    match req {
        Request::Help => crate::out!("{}", super::text::help())?,
        Request::Usage => crate::out!("{}", super::text::usage_line())?,
        Request::Version => crate::outln!("{}", env!("CARGO_PKG_VERSION"))?,
        Request::UserRules => user_rules(root)?,
        Request::Insert(r) => insert(root, &r)?,
        Request::Delete(r) => delete(root, &r)?,
        Request::Flush(dirs) => {
            let maps = open(root)?;
            let _lock = root.lock()?;
            let n = store::flush(&maps, &dirs)?;
            crate::outln!("zfw: flushed {n} rule(s)")?;
        }
        Request::List(a) => list(root, &a)?,
        Request::FlushBinds => {
            check_privileges()?;
            for p in lo_addr::flush()? {
                crate::outln!("Prefix: {p} removed from loopback")?;
            }
        }
        Request::Bind { prefix, remove } => {
            open(root)?;
            let msg = match remove {
                false if lo_addr::add(&prefix)? => "Added to loopback",
                false => "was already on loopback",
                true if lo_addr::del(&prefix)? => "removed from loopback",
                true => "is not on loopback (bind prefix does not exist)",
            };
            crate::outln!("Prefix: {prefix} {msg}")?;
        }
        Request::FlushDnp3 => {
            let maps = open(root)?;
            let _lock = root.lock()?;
            crate::outln!(
                "zfw: removed {} DNP3 function code(s)",
                ot::dnp3_flush(&maps)?
            )?;
        }
        Request::ListDdosAddrs => {
            for ip in ddos::allowed(&open(root)?)? {
                crate::outln!("{ip}")?;
            }
        }
        Request::ListDdosPorts => {
            for p in ddos::ports(&open(root)?)? {
                crate::outln!("{p}")?;
            }
        }
        Request::ListDnp3 => {
            for c in ot::dnp3_codes(&open(root)?)? {
                crate::outln!("{c}")?;
            }
        }
        Request::Gc => {
            let maps = open(root)?;
            let _lock = root.lock()?;
            let flows = crate::conntrack::gc(&maps)?;
            let nat = crate::nat::gc_nat(&maps)?;
            crate::outln!(
                "zfw: removed {flows} expired flows and {nat} stale masquerade mappings"
            )?;
        }
        Request::DdosAddr { ip, remove } => {
            let maps = open(root)?;
            let _lock = root.lock()?;
            let ip = IpAddr::V4(ip);
            if remove {
                ddos::allow_del(&maps, ip)?;
                crate::outln!("Removed source address {ip} from the DDoS whitelist")?;
            } else if ddos::allow_add(&maps, ip)? {
                crate::outln!("{ip}: Added to DDOS Whitelist")?;
            } else {
                crate::outln!("Key already exists: {ip}")?;
            }
        }
        Request::DdosPort { port, remove } => {
            let maps = open(root)?;
            let _lock = root.lock()?;
            if remove {
                ddos::port_del(&maps, port)?;
                crate::outln!("Removed destination port {port} from the DDoS port list")?;
            } else if ddos::port_add(&maps, port)? {
                crate::outln!("{port}: Added to ddos port list")?;
            } else {
                crate::outln!("Key already exists: {port}")?;
            }
        }
        Request::Dnp3 { code, remove } => {
            let maps = open(root)?;
            let _lock = root.lock()?;
            if remove {
                ot::dnp3_del(&maps, code)?;
                crate::outln!("{code}: removed from the dnp3 function code list")?;
            } else if ot::dnp3_add(&maps, code)? {
                crate::outln!("{code}: Added to dnp3 function code list")?;
            } else {
                crate::outln!("Key already exists: {code}")?;
            }
        }
        Request::InitTc(t) => exec_iface::init_tc(root, &t)?,
        Request::InitXdp(name) => exec_iface::init_xdp(root, &name)?,
        Request::Disable => exec_iface::disable(root)?,
        Request::TcFilter {
            target,
            dir,
            detach,
        } => exec_iface::tc_filter(root, &target, dir, detach)?,
        Request::Toggles { set, on } => exec_iface::toggles(root, &set, on)?,
        Request::ListDiag => exec_iface::list_diag(root)?,
        Request::Monitor { target, log } => exec_iface::monitor(root, &target, log.as_deref())?,
    }
    Ok(())
}

fn proto_word(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    }
}

fn same_key(x: &Rule, r: &RuleArgs) -> bool {
    x.direction == r.dir && x.dst == r.dst && x.src == r.src && x.proto == r.proto
}

/// The C zfw takes port 0; no packet has it, so a range from 0 starts at 1.
fn low_port(r: &RuleArgs) -> u16 {
    r.low.max(1)
}

/// `-I`: one rule per (direction, dst, src, proto, low port), as in C.
/// Inserting it again with other interfaces adds them to its list (the
/// C zfw replaces the list); the other fields take the new values.
fn insert(root: &Root, r: &RuleArgs) -> Result<()> {
    let high = r.high.unwrap_or(r.low);
    let low = low_port(r);
    if r.low > high || low > high {
        return Err(Error::runtime(format!(
            "INSERT FAILURE -- INVALID PORT RANGE: low_port({}) > high_port({high})",
            r.low
        )));
    }
    let maps = open(root)?;
    let tproxy = r.tproxy.unwrap_or(0);
    let action = if r.deny {
        Action::Deny
    } else if tproxy == 0 {
        Action::Allow
    } else if exec_iface::tun_mode(&maps, &r.ifaces)? {
        Action::Tunnel
    } else {
        Action::Tproxy(tproxy)
    };
    if action == Action::Tunnel {
        // takes the root's lock itself
        exec_iface::ensure_tun(root, &maps)?;
    }
    let _lock = root.lock()?;
    iface_state::refresh_all(&maps)?;
    let live = store::read_live(&maps)?;
    let old = live
        .iter()
        .find(|x| same_key(x, r) && x.ports.lo == low)
        .cloned();
    let mut interfaces = old
        .as_ref()
        .map(|o| o.interfaces.clone())
        .unwrap_or_default();
    for i in &r.ifaces {
        if !interfaces.contains(i) {
            interfaces.push(i.clone());
        }
    }
    if interfaces.len() > max_rule_ifaces() {
        return Err(Error::runtime(format!(
            "A rule can be assigned to a maximum of {} interfaces (this one would list {})",
            max_rule_ifaces(),
            interfaces.join(",")
        )));
    }
    let rule = Rule {
        direction: r.dir,
        dst: r.dst,
        src: r.src,
        proto: r.proto,
        ports: Ports { lo: low, hi: high },
        action,
        interfaces,
        service_id: r
            .service
            .clone()
            .or_else(|| old.as_ref().and_then(|o| o.service_id.clone())),
    };
    crate::outln!("Adding {} mapping", proto_word(r.proto))?;
    let outcome = store::add(&maps, rule.clone())?;
    // the same low port with another high port: the new range replaces it
    if let Some(o) = old.filter(|o| o.ports.hi != high) {
        store::del(&maps, &o.id())?;
    }
    if r.route && r.dir == Direction::Ingress && lo_addr::add(&r.dst)? {
        crate::outln!("binding route {} to loopback", r.dst)?;
    }
    let what = match outcome {
        AddOutcome::Added => "added",
        AddOutcome::Updated => "updated",
        AddOutcome::Unchanged => "unchanged (already in place)",
    };
    crate::outln!(
        "zfw: {} {} {} -> {} dpts={}:{} {} [{}]: {what}",
        r.dir.name(),
        r.proto.name(),
        r.src,
        r.dst,
        rule.ports.lo,
        rule.ports.hi,
        rule.action,
        rule.interfaces.join(",")
    )?;
    Ok(())
}

/// `-D`: the rule with that key and low port goes (`-h`, `-t`, `-s` are
/// ignored, as in C).  With `-N`, only those interfaces leave its list;
/// the rule goes with the last one (so the router's one `-D` per
/// interface undoes its one `-I` per interface).
fn delete(root: &Root, r: &RuleArgs) -> Result<()> {
    let low = low_port(r);
    let maps = open(root)?;
    let _lock = root.lock()?;
    let live = store::read_live(&maps)?;
    if !live.iter().any(|x| same_key(x, r)) {
        return Err(Error::runtime(format!(
            "no {} {} rule for {} from {}",
            r.dir.name(),
            r.proto.name(),
            r.dst,
            r.src
        )));
    }
    let Some(rule) = live.iter().find(|x| same_key(x, r) && x.ports.lo == low) else {
        crate::outln!("mapping[{low}] does not exist")?;
        return Ok(());
    };
    crate::outln!("Attempting to remove {} mapping", proto_word(r.proto))?;
    let rest: Vec<String> = rule
        .interfaces
        .iter()
        .filter(|i| !r.ifaces.contains(i))
        .cloned()
        .collect();
    if !r.ifaces.is_empty() && !rest.is_empty() && rest.len() < rule.interfaces.len() {
        store::add(
            &maps,
            Rule {
                interfaces: rest.clone(),
                ..rule.clone()
            },
        )?;
        crate::outln!(
            "mapping[{low}]: removed {}, still on [{}]",
            r.ifaces.join(","),
            rest.join(",")
        )?;
        return Ok(());
    }
    store::del(&maps, &rule.id())?;
    crate::outln!("mapping[{low}] removed")?;
    if r.route && r.dir == Direction::Ingress && lo_addr::del(&r.dst)? {
        crate::outln!("unbinding route {} from loopback", r.dst)?;
    }
    Ok(())
}

fn list(root: &Root, a: &ListArgs) -> Result<()> {
    let maps = open(root)?;
    let rules = store::read_live(&maps)?;
    let tun = maps
        .get(&defs::IFINDEX_TUN_MAP, &0)?
        .filter(|t| t.ifindex != 0)
        .map(|t| iface_state::name_str(&t.name));
    // a rule set may use half of each map (README, Rules)
    let caps = Caps {
        rules: maps.max_entries(&defs::RANGE_MAP)? as usize / 2,
        keys: maps.max_entries(&defs::TPROXY_MAP)? as usize / 2,
    };
    crate::out!("{}", output::rules(&rules, a, tun.as_deref(), caps))?;
    Ok(())
}

/// `-A`: run the user's rule script, if there is one, with ZFW_BPFFS set
/// to this root (so the zfw it runs works on the same one).
fn user_rules(root: &Root) -> Result<()> {
    open(root)?;
    let path = std::env::var("ZFW_USER_RULES").unwrap_or_else(|_| USER_RULES.to_string());
    if !std::path::Path::new(&path).exists() {
        crate::outln!(
            "zfw: no user rules ({} does not exist)",
            super::text::shown(&path)
        )?;
        return Ok(());
    }
    let st = std::process::Command::new(&path)
        .env("ZFW_BPFFS", &root.dir)
        .status()
        .map_err(|e| Error::runtime(format!("running {}: {e}", super::text::shown(&path))))?;
    if !st.success() {
        return Err(Error::runtime(format!(
            "adding user defined rules: {} exited with {st}",
            super::text::shown(&path)
        )));
    }
    Ok(())
}
