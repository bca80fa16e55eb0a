//! `zfw watch`: follow the kernel's interface addresses live
//! (ARCHITECTURE.md §6, watch_map).
//!
//! A long-running process subscribed to rtnetlink link and address
//! notifications (`netlink::events`).  On each notification about an
//! interface zfw is attached to it reads that interface's addresses from
//! the kernel and rewrites ifindex_ip_map / ifindex_ip6_map, drops the
//! masquerade mappings made with an address the interface no longer has
//! and logs one line per change.  Everything is re-read at start, after a
//! notification overflow (ENOBUFS) and before a clean stop.  An attached
//! interface that is deleted and re-created under the same name (new
//! ifindex) is re-attached with its settings, loudly.
//!
//! Safety while the watcher is down: it renews a lease in watch_map every
//! ZFW_WATCH_RENEW_MS; the datapath grants the interface-address SSH and
//! ICMP echo exceptions only while the lease is fresh (ZFW_WATCH_LEASE_MS).
//! SIGTERM / SIGINT: a last re-sync, then the lease is cleared (static
//! mode, as without a watcher).
//!
//! Every `gc_interval_s` seconds it also removes expired flows and stale
//! masquerade mappings, as `zfw gc` does: the main flow tables do not
//! evict (ARCHITECTURE.md §5), so dead flows that no packet will visit
//! again leave through this.  A gc that fails is logged, not fatal: the
//! addresses are the watcher's first job.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::bpffs::{check_privileges, Root};
use crate::decode::mono_now_ns;
use crate::error::{Context, Error, Result};
use crate::iface_state::{self, name_str};
use crate::ifaddr;
use crate::maps::{defs, Maps};
use crate::netlink::events::{Batch, Event, Subscription};
use crate::skel::{names, types};

const MS: u64 = 1_000_000;
const RENEW_NS: u64 = names::ZFW_WATCH_RENEW_MS as u64 * MS;
const LEASE_NS: u64 = names::ZFW_WATCH_LEASE_MS as u64 * MS;

/// Hooks that make an interface one zfw is attached to.
const ATTACHED: u32 = (names::ZFW_HOOK_INGRESS
    | names::ZFW_HOOK_TRACK
    | names::ZFW_HOOK_EGRESS
    | names::ZFW_HOOK_XDP_TUN) as u32;

fn log(line: &str) {
    // stdout is line-buffered: one line reaches the journal at once.  A
    // closed or full stdout must not stop the watcher: the line is lost.
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "zfw watch: {line}");
}

struct Watcher<'a> {
    root: &'a Root,
    maps: Maps,
    /// Attached interfaces seen deleted (reported once each).
    gone: BTreeSet<u32>,
}

/// `zfw watch` (see the module doc).  Returns on SIGTERM / SIGINT, or
/// when zfw is unloaded from the root.
pub fn run(root: &Root, gc_interval_s: u64) -> Result<()> {
    check_privileges()?;
    root.require_loaded()?;
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGTERM);
    sigs.add(Signal::SIGINT);
    sigs.thread_block()
        .ctx(|| "blocking SIGTERM and SIGINT".into())?;
    let sigfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .ctx(|| "opening a signalfd".into())?;
    // subscribe first: a change during the first sync is then not missed
    let mut sub = Subscription::open()?;
    let maps = Maps::open(root)?;
    refuse_second_watcher(&maps)?;
    let mut w = Watcher {
        root,
        maps,
        gone: BTreeSet::new(),
    };
    w.resync("start")?;
    w.renew()?;
    let n = w.attached()?.len();
    log(&format!(
        "following {n} interface(s) under {}; lease {} ms, renewed every {} ms",
        root.dir.display(),
        names::ZFW_WATCH_LEASE_MS,
        names::ZFW_WATCH_RENEW_MS
    ));
    let gc_every = gc_interval_s.saturating_mul(1000 * MS);
    let mut next_renew = mono_now_ns() + RENEW_NS;
    let mut next_gc = mono_now_ns().saturating_add(gc_every);
    loop {
        let due = if gc_every > 0 {
            next_renew.min(next_gc)
        } else {
            next_renew
        };
        let wait_ms = due.saturating_sub(mono_now_ns()) / MS;
        let timeout = PollTimeout::try_from(wait_ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let (sig_ready, nl_ready) = {
            let mut fds = [
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(sub.fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::runtime(format!("poll: {e}"))),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if sig_ready {
            if let Ok(Some(s)) = sigfd.read_signal() {
                return w.stop(s.ssi_signo);
            }
        }
        if nl_ready {
            match sub.read()? {
                Batch::Events(ev) => w.apply(&ev)?,
                Batch::Resync(why) => {
                    log(&format!("{why}: re-reading every interface"));
                    w.resync("overflow")?;
                }
            }
        }
        if mono_now_ns() >= next_renew {
            if !root.is_loaded() {
                log(&format!(
                    "zfw is no longer loaded under {}; exiting",
                    root.dir.display()
                ));
                return Ok(());
            }
            w.renew()?;
            next_renew = mono_now_ns() + RENEW_NS;
        }
        if gc_every > 0 && mono_now_ns() >= next_gc {
            w.gc();
            next_gc = mono_now_ns().saturating_add(gc_every);
        }
    }
}

/// Two watchers on one root would fight over the lease: refuse while
/// another live process holds a fresh one.
fn refuse_second_watcher(maps: &Maps) -> Result<()> {
    let Some(l) = maps.get(&defs::WATCH_MAP, &0)? else {
        return Ok(());
    };
    let me = std::process::id();
    let alive = Path::new(&format!("/proc/{}", l.pid)).exists();
    if l.expires_ns > mono_now_ns() && l.pid != me && l.pid != 0 && alive {
        return Err(Error::usage(format!(
            "another zfw watch (pid {}) follows this bpffs root",
            l.pid
        )));
    }
    Ok(())
}

/// Addresses as a sorted-by-kernel-order list, for the change log.
fn show(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return "none".into();
    }
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Watcher<'_> {
    /// Interfaces zfw is attached to: (ifindex, settings).
    fn attached(&self) -> Result<Vec<(u32, types::zfw_iface)>> {
        let mut v = self.maps.ifaces()?;
        v.retain(|(_, st)| st.hooks & ATTACHED != 0);
        Ok(v)
    }

    /// The settings of `idx` if zfw is attached to it.
    fn find(&self, idx: u32) -> Result<Option<types::zfw_iface>> {
        let st = self.maps.get(&defs::DIAG_MAP, &idx)?;
        Ok(st.filter(|st| st.hooks & ATTACHED != 0))
    }

    /// The periodic gc (module doc); logs what it removed, if anything.
    fn gc(&self) {
        let res = crate::conntrack::gc(&self.maps)
            .and_then(|f| crate::nat::gc_nat(&self.maps).map(|n| (f, n)));
        match res {
            Ok((0, 0)) => {}
            Ok((f, n)) => log(&format!(
                "gc: removed {f} expired flows and {n} stale masquerade mappings"
            )),
            Err(e) => log(&format!("gc failed (the next one is tried on time): {e}")),
        }
    }

    fn renew(&self) -> Result<()> {
        let l = types::zfw_watch_lease {
            expires_ns: mono_now_ns() + LEASE_NS,
            pid: std::process::id(),
            ..Default::default()
        };
        self.maps.put(&defs::WATCH_MAP, &0, &l)
    }

    /// Clean stop: addresses current, then static mode.
    fn stop(&mut self, signo: u32) -> Result<()> {
        self.resync("stop")?;
        self.maps
            .put(&defs::WATCH_MAP, &0, &types::zfw_watch_lease::default())?;
        log(&format!(
            "signal {signo}: stopped; static mode (addresses are refreshed by zfw commands only)"
        ));
        Ok(())
    }

    /// Re-read every attached interface.
    fn resync(&mut self, _why: &str) -> Result<()> {
        let _lock = self.root.lock()?;
        for (idx, st) in self.attached()? {
            let name = name_str(&st.name);
            match ifaddr::name_of(idx) {
                Some(now) if now == name => self.sync_iface(idx, &name)?,
                Some(now) => self.renamed(idx, &name, &now)?,
                None => match ifaddr::index_of(&name) {
                    Ok(new) if new != idx => self.recreated(idx, new, &name)?,
                    _ => self.gone(idx, &name)?,
                },
            }
        }
        Ok(())
    }

    /// Handle one batch of notifications.
    fn apply(&mut self, events: &[Event]) -> Result<()> {
        let _lock = self.root.lock()?;
        // one array slot per event; the scan of every slot (a re-created
        // interface's old index, by name) only for a link zfw does not know
        let mut dirty = BTreeSet::new();
        for e in events {
            match e {
                Event::Addr { ifindex } => {
                    if self.find(*ifindex)?.is_some() {
                        dirty.insert(*ifindex);
                    }
                }
                Event::LinkNew { ifindex, name } => {
                    if let Some(st) = self.find(*ifindex)? {
                        let was = name_str(&st.name);
                        if !name.is_empty() && *name != was {
                            self.renamed(*ifindex, &was, name)?;
                        }
                        dirty.insert(*ifindex);
                    } else if let Some((old, _)) = self.attached()?.into_iter().find(|(i, st)| {
                        name_str(&st.name) == *name
                            && ifaddr::name_of(*i).as_deref() != Some(name.as_str())
                    }) {
                        self.recreated(old, *ifindex, name)?;
                    }
                }
                Event::LinkGone { ifindex, .. } => {
                    if let Some(st) = self.find(*ifindex)? {
                        self.gone(*ifindex, &name_str(&st.name))?;
                        dirty.remove(ifindex);
                    }
                }
            }
        }
        for idx in dirty {
            if let Some(st) = self.maps.get(&defs::DIAG_MAP, &idx)? {
                let name = name_str(&st.name);
                if ifaddr::name_of(idx).as_deref() == Some(name.as_str()) {
                    self.sync_iface(idx, &name)?;
                }
            }
        }
        Ok(())
    }

    /// Rewrite the address maps of one interface from the kernel; log and
    /// drop stale masquerade mappings when they changed.
    fn sync_iface(&mut self, idx: u32, name: &str) -> Result<()> {
        self.gone.remove(&idx);
        let before = iface_state::addrs(&self.maps, idx)?;
        iface_state::refresh_addrs(&self.maps, idx, name)?;
        let after = iface_state::addrs(&self.maps, idx)?;
        if before == after {
            return Ok(());
        }
        let added: Vec<IpAddr> = after
            .iter()
            .filter(|a| !before.contains(a))
            .copied()
            .collect();
        let removed: Vec<IpAddr> = before
            .iter()
            .filter(|a| !after.contains(a))
            .copied()
            .collect();
        let dropped = crate::nat::purge_outside_addr(&self.maps, idx, &after)?;
        let mut line = format!(
            "{name} (ifindex {idx}): addresses {} (added {}, removed {})",
            show(&after),
            show(&added),
            show(&removed)
        );
        if dropped > 0 {
            line.push_str(&format!(
                "; dropped {dropped} masquerade mapping(s) of removed addresses"
            ));
        }
        log(&line);
        Ok(())
    }

    fn renamed(&mut self, idx: u32, was: &str, now: &str) -> Result<()> {
        if let Some(mut st) = self.maps.get(&defs::DIAG_MAP, &idx)? {
            iface_state::copy_name(&mut st.name, now);
            self.maps.put(&defs::DIAG_MAP, &idx, &st)?;
        }
        log(&format!("{was} (ifindex {idx}) is now called {now}"));
        self.sync_iface(idx, now)
    }

    /// An attached interface vanished: no address of it is trusted any
    /// more, and its mappings go.  Its settings stay, for `recreated`.
    fn gone(&mut self, idx: u32, name: &str) -> Result<()> {
        if !self.gone.insert(idx) {
            return Ok(());
        }
        self.maps.del(&defs::IFINDEX_IP_MAP, &idx)?;
        self.maps.del(&defs::IFINDEX_IP6_MAP, &idx)?;
        crate::nat::purge_outside_addr(&self.maps, idx, &[])?;
        log(&format!(
            "WARNING: interface {name} (ifindex {idx}) was deleted; zfw will re-attach it if an interface named {name} appears again"
        ));
        Ok(())
    }

    fn recreated(&mut self, old: u32, new: u32, name: &str) -> Result<()> {
        crate::nat::purge_outside_addr(&self.maps, old, &[])?;
        let hooks = crate::loader::reattach(self.root, &self.maps, old, new, name)?;
        self.gone.remove(&old);
        log(&format!(
            "WARNING: interface {name} was re-created (ifindex {old} -> {new}): re-attached zfw ({}) with its settings",
            hooks.join(", ")
        ));
        let after = iface_state::addrs(&self.maps, new)?;
        log(&format!(
            "{name} (ifindex {new}): addresses {}",
            show(&after)
        ));
        Ok(())
    }
}
