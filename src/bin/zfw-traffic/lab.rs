//! The client -- router -- server lab of `make bench-traffic`: three network
//! namespaces joined by veth pairs, the router forwarding between them, and
//! the four states a trial runs in (no firewall, nftables masquerade, zfw,
//! zfw with masquerade).  Everything the lab creates is removed on drop, on
//! Ctrl-C (the trial loops poll `stopped()`), and by the next run when a
//! run was killed outright (`remove_stale`).
//!
//! Addresses (docs/BENCH.md):
//!   client 10.91.1.2 (.. 10.91.1.(1+K) with K addresses)/24 on cl0, default
//!          route via the router
//!   router 10.91.1.1/24 on ri0 (inside), 10.91.2.1/24 on ro0 (outside)
//!   server 10.91.2.2/24 on sv0; a route back to 10.91.1.0/24 only while
//!          masquerade is off, so untranslated traffic cannot be answered.
//! zfw is loaded on both router interfaces: the client's packets enter ri0,
//! where the ingress rules must admit them; masquerade runs on ro0.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

pub type Res<T> = std::result::Result<T, String>;

pub const CLIENT_NET: &str = "10.91.1.0/24";
pub const SERVER_NET: &str = "10.91.2.0/24";
pub const ROUTER_IN: Ipv4Addr = Ipv4Addr::new(10, 91, 1, 1);
pub const ROUTER_OUT: Ipv4Addr = Ipv4Addr::new(10, 91, 2, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 91, 2, 2);
pub const INSIDE_IF: &str = "ri0";
pub const OUTSIDE_IF: &str = "ro0";
/// Every name this bench creates starts with this (then the pid).
pub const PREFIX: &str = "zfwtr-";
const NFT_TABLE: &str = "zfwtraffic";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Ctrl-C, SIGTERM and SIGHUP only set a flag: the running trial ends at
/// its next check, and the lab is torn down by the normal return path.
pub fn catch_signals() -> Res<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &act) }.map_err(|e| format!("sigaction {sig}: {e}"))?;
    }
    Ok(())
}

pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Run a command; on failure the error names it with the first line of its
/// stderr.  `quiet` discards stdout (apply of 250k rules prints a line each).
pub fn run(cmd: &str, args: &[&str], quiet: bool) -> Res<String> {
    let mut c = Command::new(cmd);
    c.args(args).stdin(Stdio::null());
    if quiet {
        c.stdout(Stdio::null());
    }
    let out = c.output().map_err(|e| format!("running {cmd}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "{cmd} {} failed ({}): {}",
            args.join(" "),
            out.status,
            line.chars().take(200).collect::<String>()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Which firewall the router runs during a trial.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fw {
    /// plain forwarding (masquerade off) or nftables masquerade (on)
    Baseline,
    Zfw,
}

pub struct Lab {
    pub pid: u32,
    pub client: PathBuf,
    pub router: PathBuf,
    pub server: PathBuf,
    names: Vec<String>,
    pub bpffs: PathBuf,
    pub tmp: PathBuf,
    zfw_bin: PathBuf,
    pub client_addrs: Vec<Ipv4Addr>,
    zfw_attached: bool,
    nft_on: bool,
    route_back: bool,
}

fn ns_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/netns/{name}"))
}

/// A process that exists and is not a zombie (a killed run whose parent
/// has not reaped it yet is dead for this purpose).
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": COMM may hold spaces, STATE follows the last ')'
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn stale_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let pid: u32 = rest.split('-').next()?.parse().ok()?;
    (!pid_alive(pid)).then_some(pid)
}

/// Remove namespaces, bpffs roots and temp dirs left by a bench run that
/// was killed (its pid is gone).  The veth pairs and TC hooks went with the
/// namespaces; what remains of a root is its pins.
pub fn remove_stale() {
    if let Ok(d) = std::fs::read_dir("/run/netns") {
        for e in d.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if stale_pid(&name).is_some() {
                let _ = run("ip", &["netns", "del", &name], true);
            }
        }
    }
    for dir in [PathBuf::from("/sys/fs/bpf"), std::env::temp_dir()] {
        if let Ok(d) = std::fs::read_dir(&dir) {
            for e in d.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if stale_pid(&name).is_some() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

impl Lab {
    /// Build the three namespaces.  On error the partial lab is removed
    /// (by drop) before the error is returned.
    pub fn build(zfw_bin: PathBuf, n_client_addrs: usize) -> Res<Lab> {
        let pid = std::process::id();
        let base = format!("{PREFIX}{pid}");
        let tmp = std::env::temp_dir().join(&base);
        let mut lab = Lab {
            pid,
            client: ns_path(&format!("{base}-cli")),
            router: ns_path(&format!("{base}-rtr")),
            server: ns_path(&format!("{base}-srv")),
            names: Vec::new(),
            bpffs: PathBuf::from(format!("/sys/fs/bpf/{base}")),
            tmp,
            zfw_bin,
            client_addrs: (0..n_client_addrs)
                .map(|i| Ipv4Addr::new(10, 91, 1, 2 + i as u8))
                .collect(),
            zfw_attached: false,
            nft_on: false,
            route_back: false,
        };
        std::fs::create_dir_all(&lab.tmp).map_err(|e| format!("{}: {e}", lab.tmp.display()))?;
        for role in ["cli", "rtr", "srv"] {
            let name = format!("{base}-{role}");
            run("ip", &["netns", "add", &name], true)?;
            lab.names.push(name.clone());
            run("ip", &["-n", &name, "link", "set", "lo", "up"], true)?;
        }
        let [cli, rtr, srv] = [0, 1, 2].map(|i| lab.names[i].clone());
        for (a, na, b, nb) in [
            ("cl0", &cli, INSIDE_IF, &rtr),
            (OUTSIDE_IF, &rtr, "sv0", &srv),
        ] {
            run(
                "ip",
                &[
                    "link", "add", a, "netns", na, "type", "veth", "peer", "name", b, "netns", nb,
                ],
                true,
            )?;
            run("ip", &["-n", na, "link", "set", a, "up"], true)?;
            run("ip", &["-n", nb, "link", "set", b, "up"], true)?;
        }
        for a in lab.client_addrs.clone() {
            run(
                "ip",
                &["-n", &cli, "addr", "add", &format!("{a}/24"), "dev", "cl0"],
                true,
            )?;
        }
        run(
            "ip",
            &[
                "-n",
                &cli,
                "route",
                "add",
                "default",
                "via",
                &ROUTER_IN.to_string(),
                "src",
                &lab.client_addrs[0].to_string(),
            ],
            true,
        )?;
        let ri = format!("{ROUTER_IN}/24");
        let ro = format!("{ROUTER_OUT}/24");
        run(
            "ip",
            &["-n", &rtr, "addr", "add", &ri, "dev", INSIDE_IF],
            true,
        )?;
        run(
            "ip",
            &["-n", &rtr, "addr", "add", &ro, "dev", OUTSIDE_IF],
            true,
        )?;
        let sv = format!("{SERVER}/24");
        run("ip", &["-n", &srv, "addr", "add", &sv, "dev", "sv0"], true)?;
        lab.sysctl(&lab.router.clone(), "net.ipv4.ip_forward=1")?;
        // 64k ephemeral ports per client address (docs/BENCH.md: TIME_WAIT)
        lab.sysctl(
            &lab.client.clone(),
            "net.ipv4.ip_local_port_range=1024 65535",
        )?;
        lab.set_route_back(true)?;
        Ok(lab)
    }

    fn sysctl(&self, ns: &Path, kv: &str) -> Res<()> {
        self.exec(ns, "sysctl", &["-qw", kv], true).map(|_| ())
    }

    /// Run `cmd` in namespace `ns` (nsenter --net: the mount namespace, and
    /// so the bpffs pins, stay as they are).
    pub fn exec(&self, ns: &Path, cmd: &str, args: &[&str], quiet: bool) -> Res<String> {
        let net = format!("--net={}", ns.display());
        let mut a = vec![net.as_str(), cmd];
        a.extend_from_slice(args);
        run("nsenter", &a, quiet)
    }

    /// `zfw --bpffs ROOT ARGS` in the router.
    pub fn zfw(&self, args: &[&str], quiet: bool) -> Res<String> {
        let root = self.bpffs.display().to_string();
        let bin = self.zfw_bin.display().to_string();
        let mut a = vec!["--bpffs", root.as_str()];
        a.extend_from_slice(args);
        self.exec(&self.router, &bin, &a, quiet)
    }

    /// With masquerade on the server has no route back to the client
    /// subnet: only translated traffic gets answers.
    pub fn set_route_back(&mut self, on: bool) -> Res<()> {
        if on == self.route_back {
            return Ok(());
        }
        let verb = if on { "add" } else { "del" };
        let via = ROUTER_OUT.to_string();
        let srv = self.server.clone();
        self.exec(&srv, "ip", &["route", verb, CLIENT_NET, "via", &via], true)?;
        self.route_back = on;
        Ok(())
    }

    /// First load: creates the pins; the rules stay in them while zfw is
    /// detached between trials.
    pub fn load_zfw(&mut self) -> Res<()> {
        self.zfw(&["load", "--iface", INSIDE_IF, "--iface", OUTSIDE_IF], true)?;
        self.zfw_attached = true;
        Ok(())
    }

    /// `zfw apply FILE --prune`: the file becomes the whole policy.
    pub fn apply(&self, file: &Path) -> Res<()> {
        let f = file.display().to_string();
        self.zfw(&["apply", &f, "--prune"], true).map(|_| ())
    }

    /// Put the router in state (`fw`, `masq`).  Baseline with masquerade is
    /// nftables masquerade on ro0; without, no firewall at all.  zfw off
    /// means detached from both interfaces (`unload --iface`: programs,
    /// rules and flow tables stay pinned, so attaching again is quick).
    pub fn set_state(&mut self, fw: Fw, masq: bool) -> Res<()> {
        self.set_route_back(!masq)?;
        let want_nft = fw == Fw::Baseline && masq;
        if self.nft_on && !want_nft {
            let r = self.router.clone();
            self.exec(&r, "nft", &["delete", "table", "ip", NFT_TABLE], true)?;
            self.nft_on = false;
        }
        if fw == Fw::Baseline && self.zfw_attached {
            self.zfw(
                &["unload", "--iface", INSIDE_IF, "--iface", OUTSIDE_IF],
                true,
            )?;
            self.zfw_attached = false;
        }
        if want_nft && !self.nft_on {
            self.nft_masquerade()?;
            self.nft_on = true;
        }
        if fw == Fw::Zfw {
            if !self.zfw_attached {
                self.load_zfw()?;
            }
            let m = if masq { "on" } else { "off" };
            self.zfw(&["iface", "set", OUTSIDE_IF, "--masquerade", m], true)?;
        }
        Ok(())
    }

    fn nft_masquerade(&self) -> Res<()> {
        let file = self.tmp.join("masquerade.nft");
        let text = format!(
            "table ip {NFT_TABLE} {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{OUTSIDE_IF}\" masquerade\n  }}\n}}\n"
        );
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        let f = file.display().to_string();
        self.exec(&self.router, "nft", &["-f", &f], true)
            .map(|_| ())
    }

    /// The datapath's per-reason packet counters (`zfw dump --map
    /// counters_map`), by reason name.
    pub fn zfw_counters(&self) -> Res<std::collections::BTreeMap<String, u64>> {
        let name = zfw::maps::defs::COUNTERS_MAP.info.name;
        let out = self.zfw(&["dump", "--map", name], false)?;
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("zfw dump: {e}"))?;
        let entries = v["maps"][name]["entries"]
            .as_array()
            .ok_or("zfw dump: no counters_map entries")?;
        let mut m = std::collections::BTreeMap::new();
        for e in entries {
            if let (Some(r), Some(p)) = (e["reason"].as_str(), e["packets"].as_u64()) {
                m.insert(r.to_string(), p);
            }
        }
        Ok(m)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.bpffs.exists() {
            let _ = self.zfw(&["unload", "--all"], true);
            let _ = std::fs::remove_dir_all(&self.bpffs);
        }
        for name in self.names.drain(..).rev() {
            let _ = run("ip", &["netns", "del", &name], true);
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
