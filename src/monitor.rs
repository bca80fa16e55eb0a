//! `zfw monitor`: read datapath events from rb_map and print one line (or
//! one JSON object) per event, until Ctrl-C or N events.
//!
//! Events are emitted for interfaces with `verbose` on, and for every drop
//! on every interface while a `monitor --all-drops` reads.  rb_map has one
//! reader: two would split its events between them.  The reader holds a
//! lease (monitor_map, docs/ARCHITECTURE.md §6) that it renews every
//! ZFW_MONITOR_RENEW_MS and clears when it ends; a second monitor is
//! refused while the holder lives.  A killed reader's lease lapses within
//! ZFW_MONITOR_LEASE_MS (and with it every-drop events), and a new monitor
//! takes over at once when the holder's process is gone.
//!
//! Nothing is lost silently: an event that finds rb_map full is counted by
//! the datapath (stats_map, docs/ARCHITECTURE.md §6); whenever that count
//! moves while the monitor reads, it prints `N events lost` (with `--json`
//! the record `{"lost":N}`), so events printed + lost = events emitted.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::decode::{self, addr};
use crate::error::{Context, Error, Result};
use crate::maps::{defs, Maps};
use crate::skel::{enum_name, from_bytes, names, types};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

#[derive(Debug, Default)]
pub struct MonitorOptions {
    pub iface: Option<u32>,
    pub json: bool,
    pub count: Option<u64>,
    pub all_drops: bool,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub time: String,
    pub ifindex: u32,
    pub iface: String,
    pub direction: String,
    pub kind: String,
    pub family: String,
    pub proto: String,
    pub src: String,
    pub sport: u16,
    pub dst: String,
    pub dport: u16,
    pub reason: String,
    pub code: u16,
}

fn wall_time(ts_ns: u64) -> String {
    let mono_now = decode::mono_now_ns();
    let wall_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let back = Duration::from_nanos(mono_now.saturating_sub(ts_ns));
    let t = wall_now.saturating_sub(back);
    let secs = t.as_secs();
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        t.subsec_micros()
    )
}

pub fn view(e: &types::zfw_event) -> EventView {
    EventView {
        time: wall_time(e.ts_ns),
        ifindex: e.ifindex,
        iface: decode::ifname(e.ifindex),
        direction: if i64::from(e.dir) == names::ZFW_DIR_EGRESS {
            "egress"
        } else {
            "ingress"
        }
        .into(),
        kind: enum_name(names::ZFW_EVENT_KIND, "ZFW_EV_", i64::from(e.kind)),
        family: decode::family(e.family).into(),
        proto: decode::proto(e.proto),
        src: addr(e.family, &e.saddr).to_string(),
        sport: e.sport,
        dst: addr(e.family, &e.daddr).to_string(),
        dport: e.dport,
        reason: decode::reason(e.reason),
        code: e.code,
    }
}

pub fn render(v: &EventView) -> String {
    let ep = |a: &str, p: u16| {
        if v.family == "ipv6" {
            format!("[{a}]:{p}")
        } else {
            format!("{a}:{p}")
        }
    };
    let code = if v.code != 0 {
        format!(" code={}", v.code)
    } else {
        String::new()
    };
    format!(
        "{} {} {} {} {} -> {} {}{}",
        v.time,
        if v.iface.is_empty() {
            v.ifindex.to_string()
        } else {
            v.iface.clone()
        },
        v.direction,
        v.proto,
        ep(&v.src, v.sport),
        ep(&v.dst, v.dport),
        v.reason,
        code
    )
}

/// Run the monitor loop; returns how many events were printed.
pub fn run(maps: &Maps, opts: &MonitorOptions) -> Result<u64> {
    // SAFETY: on_signal only stores to an atomic, which is async-signal-safe.
    unsafe {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_signal),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &action);
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGTERM, &action);
    }
    let lease = Lease::take(maps, opts.all_drops)?;
    // the baseline comes before --all-drops turns on more events
    let lost = LostWatch::start(maps)?;
    lease.renew(maps)?;
    let res = poll_loop(maps, opts, lost, &lease);
    lease.release(maps);
    res
}

const MS: u64 = 1_000_000;

/// This monitor's hold on rb_map (the reader's lease).
struct Lease {
    all_drops: bool,
}

/// Is process `pid` alive (in this pid namespace)?
fn alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

impl Lease {
    /// The live reader other than this process, if there is one.
    fn other_reader(maps: &Maps) -> Result<Option<u32>> {
        let me = std::process::id();
        Ok(reader(maps)?
            .filter(|(pid, _)| *pid != me && alive(*pid))
            .map(|(pid, _)| pid))
    }

    fn refused(pid: u32) -> Error {
        Error::runtime(format!(
            "monitor: another monitor (pid {pid}) is reading events; rb_map has one reader              (two would split its events): stop it first"
        ))
    }

    fn take(maps: &Maps, all_drops: bool) -> Result<Lease> {
        if let Some(pid) = Self::other_reader(maps)? {
            return Err(Self::refused(pid));
        }
        Ok(Lease { all_drops })
    }

    /// Renew; fails when another monitor took the lease meanwhile (two
    /// started at once: the later writer reads on).
    fn renew(&self, maps: &Maps) -> Result<()> {
        if let Some(pid) = Self::other_reader(maps)? {
            return Err(Self::refused(pid));
        }
        let l = types::zfw_monitor_lease {
            expires_ns: decode::mono_now_ns() + names::ZFW_MONITOR_LEASE_MS as u64 * MS,
            pid: std::process::id(),
            all_drops: u8::from(self.all_drops),
            ..Default::default()
        };
        maps.put(&defs::MONITOR_MAP, &0, &l)
    }

    /// Clear the lease if it is still ours (best effort: it lapses anyway).
    fn release(&self, maps: &Maps) {
        if let Ok(Some((pid, _))) = reader(maps) {
            if pid == std::process::id() {
                let _ = maps.put(&defs::MONITOR_MAP, &0, &types::zfw_monitor_lease::default());
            }
        }
    }
}

/// The monitor reading rb_map while its lease holds: (pid, all drops).
pub fn reader(maps: &Maps) -> Result<Option<(u32, bool)>> {
    if maps.handle(&defs::MONITOR_MAP).is_err() {
        return Ok(None);
    }
    let l = maps.get(&defs::MONITOR_MAP, &0)?.unwrap_or_default();
    let fresh = l.expires_ns != 0 && decode::mono_now_ns() <= l.expires_ns;
    Ok(fresh.then_some((l.pid, l.all_drops != 0)))
}

/// Events the datapath could not put into rb_map (it was full), summed
/// over CPUs since load; None when stats_map is not pinned (a root loaded
/// by an older zfw).
pub fn events_lost(maps: &Maps) -> Result<Option<u64>> {
    if maps.handle(&defs::STATS_MAP).is_err() {
        return Ok(None);
    }
    let slot = names::ZFW_STAT_EVENTS_LOST as u32;
    maps.percpu_sum(&defs::STATS_MAP, slot).map(Some)
}

/// The `--json` record of lost events.
#[derive(Debug, Serialize)]
pub struct LostView {
    pub lost: u64,
}

/// The line printed when `n` events were lost.
pub fn lost_line(n: u64, json: bool) -> String {
    if json {
        serde_json::to_string(&LostView { lost: n }).unwrap_or_default()
    } else {
        format!("{n} events lost")
    }
}

/// Print one line; false when stdout is gone.
fn emit_line(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}

/// Follows the lost-event counter: reports how far it moved since the last
/// look (the first look, at start, is the baseline).
struct LostWatch {
    seen: Option<u64>,
}

impl LostWatch {
    fn start(maps: &Maps) -> Result<Self> {
        Ok(LostWatch {
            seen: events_lost(maps)?,
        })
    }

    /// Print `N events lost` if the counter moved; false when stdout is gone.
    fn report(&mut self, maps: &Maps, json: bool) -> Result<bool> {
        let (Some(before), Some(now)) = (self.seen, events_lost(maps)?) else {
            return Ok(true);
        };
        if now <= before {
            return Ok(true);
        }
        self.seen = Some(now);
        Ok(emit_line(&lost_line(now - before, json)))
    }
}

fn poll_loop(
    maps: &Maps,
    opts: &MonitorOptions,
    mut lost: LostWatch,
    lease: &Lease,
) -> Result<u64> {
    let renew_every = Duration::from_millis(names::ZFW_MONITOR_RENEW_MS as u64);
    let mut renewed = std::time::Instant::now();
    let printed = RefCell::new(0u64);
    let failed = RefCell::new(None::<String>);
    let bad = RefCell::new(None::<Error>);
    let mut b = libbpf_rs::RingBufferBuilder::new();
    b.add(maps.handle(&defs::RB_MAP)?, |data: &[u8]| {
        // records are `zfw_event`s; anything else is another build's
        let e: types::zfw_event = match from_bytes(data) {
            Ok(e) => e,
            Err(err) => {
                *bad.borrow_mut() = Some(Error::runtime(format!(
                    "reading {}: {err}",
                    defs::RB_MAP.info.name
                )));
                return -1;
            }
        };
        if opts.iface.is_some_and(|i| i != e.ifindex) {
            return 0;
        }
        let v = view(&e);
        let line = if opts.json {
            serde_json::to_string(&v).unwrap_or_default()
        } else {
            render(&v)
        };
        if !emit_line(&line) {
            *failed.borrow_mut() = Some("stdout closed".into());
            return -1;
        }
        *printed.borrow_mut() += 1;
        if opts.count.is_some_and(|n| *printed.borrow() >= n) {
            return -1; // stop consuming
        }
        0
    })
    .ctx(|| format!("opening {}", defs::RB_MAP.info.name))?;
    let rb = b.build().ctx(|| "opening the ring buffer".into())?;
    loop {
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        if opts.count.is_some_and(|n| *printed.borrow() >= n) {
            break;
        }
        if renewed.elapsed() >= renew_every {
            lease.renew(maps)?;
            renewed = std::time::Instant::now();
        }
        let rc = rb.poll_raw(Duration::from_millis(200));
        if let Some(e) = bad.borrow_mut().take() {
            return Err(e);
        }
        if rc < 0 && rc != -(nix::errno::Errno::EINTR as i32) && failed.borrow().is_none() {
            if opts.count.is_some_and(|n| *printed.borrow() >= n) {
                break;
            }
            return Err(Error::runtime(format!("reading events: error {rc}")));
        }
        if failed.borrow().is_some() {
            break;
        }
        // after draining what the ring held: did the datapath lose any?
        if !lost.report(maps, opts.json)? {
            break;
        }
    }
    if failed.borrow().is_none() {
        let _ = lost.report(maps, opts.json)?;
    }
    let n = *printed.borrow();
    Ok(n)
}
