//! `zfw monitor`: read datapath events from rb_map and print one line (or
//! one JSON object) per event, until Ctrl-C or N events.
//!
//! Events are emitted for interfaces with `verbose` on, and for every drop
//! on every interface while zfw_config.log_all_drops is set (`monitor
//! --all-drops` sets it for as long as it runs).
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
    // the baseline comes before --all-drops turns on more events
    let lost = LostWatch::start(maps)?;
    let mut cfg_before = None;
    if opts.all_drops {
        let mut cfg = maps.config()?;
        cfg_before = Some(cfg.log_all_drops);
        cfg.log_all_drops = 1;
        maps.set_config(&cfg)?;
    }
    let res = poll_loop(maps, opts, lost);
    if let Some(prev) = cfg_before {
        let mut cfg = maps.config()?;
        cfg.log_all_drops = prev;
        maps.set_config(&cfg)?;
    }
    res
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

fn poll_loop(maps: &Maps, opts: &MonitorOptions, mut lost: LostWatch) -> Result<u64> {
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
