//! Flow tables at scale (issue 18, README "Memory"): `zfw status --json`,
//! `zfw conntrack list --json > /dev/null` and `zfw gc`, run as the real
//! binary, over 65,536, 262,144 and 1,048,576 flows in tables sized
//! 1,048,576 (a bpffs root of the bench's own).  The flows are written from
//! user space in batch updates: real zfw_flow values, half of them live
//! (established TCP / fresh UDP, stamped now) and half past their idle
//! limit, which `gc` removes.  The rows report the wall time of each
//! command (process start included; list's output to /dev/null) per flow
//! in the ns column, and in total in the name with the command's CPU time
//! (user + system: on a shared machine the wall time includes waiting).
//!
//! `make bench` runs these last (about 20 s: the tables take 1.6 GB of
//! kernel memory; ZFW_BENCH_QUICK=1 skips them), ZFW_BENCH_ONLY=flows alone.
//! ZFW_BENCH_FLOW_SIZES=65536,262144 picks the fills, ZFW_BENCH_FLOW_RUNS
//! (default 3) the runs per figure (median; gc refills between runs).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Instant;

use zfw::bpffs::Root;
use zfw::maps::defs::{self, FLOW_TABLES};
use zfw::maps::Maps;
use zfw::net::{AF_INET, IPPROTO_TCP, IPPROTO_UDP};
use zfw::skel::{names, types};

use super::{env_num, median, Case};

/// The capacity every flow table gets.
const TABLE_SIZE: u32 = 1 << 20;

/// The tables the flows go to, a quarter each: the four assured tables (a
/// quarter of a table's capacity at the largest fill, so no LRU eviction).
const FILLED: [&defs::FlowTable; 4] = [
    &FLOW_TABLES[0], // tcp_map
    &FLOW_TABLES[1], // udp_map
    &FLOW_TABLES[3], // tcp_ingress_map
    &FLOW_TABLES[4], // udp_ingress_map
];

fn err(s: String) -> zfw::Error {
    zfw::Error::runtime(format!("bench: {s}"))
}

/// The zfw binary beside this one (built by `make build` with it).
fn zfw_bin() -> zfw::Result<std::path::PathBuf> {
    let p = std::env::current_exe()
        .map_err(|e| err(format!("locating the zfw binary: {e}")))?
        .with_file_name("zfw");
    if !p.exists() {
        return Err(err(format!("{} is missing (cargo build)", p.display())));
    }
    Ok(p)
}

/// CPU time (user + system) of the waited-for children so far, in ns.
fn children_cpu_ns() -> f64 {
    let mut u = std::mem::MaybeUninit::<nix::libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given
    let ru = unsafe {
        nix::libc::getrusage(nix::libc::RUSAGE_CHILDREN, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: nix::libc::timeval| t.tv_sec as f64 * 1e9 + t.tv_usec as f64 * 1e3;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One timed command: wall and CPU time in ns.
#[derive(Clone, Copy)]
struct Took {
    wall: f64,
    cpu: f64,
}

/// Run `zfw --bpffs ROOT ARGS`, stdout to /dev/null or captured; its wall
/// and CPU time (the machine may be shared: CPU time is what the command
/// itself cost) and its stdout.
fn timed(root: &Root, args: &[&str], capture: bool) -> zfw::Result<(Took, String)> {
    let mut c = Command::new(zfw_bin()?);
    c.arg("--bpffs").arg(&root.dir).args(args);
    c.stdout(if capture {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let cpu = children_cpu_ns();
    let t = Instant::now();
    let out = c
        .output()
        .map_err(|e| err(format!("running zfw {}: {e}", args.join(" "))))?;
    let ns = Took {
        wall: t.elapsed().as_nanos() as f64,
        cpu: children_cpu_ns() - cpu,
    };
    if !out.status.success() {
        return Err(err(format!(
            "zfw {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok((ns, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Flow `i` of a fill: a distinct key in table `i % 4`; odd flows are past
/// their idle limit by 5 s.
fn flow(i: u32, now: u64) -> (usize, types::zfw_flow_key, types::zfw_flow) {
    let table = (i % 4) as usize;
    let proto = if table.is_multiple_of(2) {
        IPPROTO_TCP
    } else {
        IPPROTO_UDP
    };
    let j = i / 4;
    let mut k = types::zfw_flow_key {
        sport: (j % 50_000) as u16 + 10_000,
        dport: 443,
        ifindex: 1,
        family: AF_INET,
        proto,
        ..Default::default()
    };
    k.saddr[0] = u32::from_ne_bytes([10, 0, 0, 2]);
    k.daddr[0] = u32::from_ne_bytes((0xc600_0000u32 | (j / 50_000)).to_be_bytes());
    let expired = i % 2 == 1;
    let (state, idle_s) = match (proto, expired) {
        (IPPROTO_TCP, false) => (names::ZFW_TCP_ESTABLISHED, 0),
        (IPPROTO_TCP, true) => (names::ZFW_TCP_SYN_SENT, names::ZFW_TCP_OPEN_TIMEOUT_S + 5),
        (_, false) => (0, 0),
        (_, true) => (0, names::ZFW_UDP_TIMEOUT_S + 5),
    };
    let last = now - idle_s as u64 * 1_000_000_000;
    let f = types::zfw_flow {
        first_ns: last,
        last_ns: last,
        state: state as u8,
        pkts_orig: 3,
        pkts_reply: 2,
        bytes_orig: 180,
        bytes_reply: 120,
        ..Default::default()
    };
    (table, k, f)
}

/// Write `n` flows (see [`flow`]) with batch updates.
fn fill(maps: &Maps, n: u32) -> zfw::Result<()> {
    let now = zfw::decode::mono_now_ns();
    let limit = (names::ZFW_TCP_OPEN_TIMEOUT_S + 5) as u64 * 1_000_000_000;
    if now <= limit {
        return Err(err(
            "the machine is up too briefly to date expired flows".into()
        ));
    }
    let mut per: Vec<Vec<(types::zfw_flow_key, types::zfw_flow)>> = vec![Vec::new(); 4];
    for i in 0..n {
        let (t, k, f) = flow(i, now);
        per[t].push((k, f));
    }
    for (t, items) in FILLED.iter().zip(&per) {
        maps.put_many(t.def, items)?;
    }
    Ok(())
}

/// Flows `status --json` counts in the flow tables.
fn status_flows(json: &str) -> zfw::Result<usize> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| err(format!("status --json: {e}")))?;
    let maps = v["maps"]
        .as_array()
        .ok_or_else(|| err("status --json has no maps".into()))?;
    Ok(maps
        .iter()
        .filter(|m| {
            m["name"]
                .as_str()
                .and_then(defs::by_name)
                .is_some_and(|i| defs::flow_table(i).is_some())
        })
        .filter_map(|m| m["entries"].as_u64())
        .sum::<u64>() as usize)
}

/// The rows of one fill of `n` flows.
fn one_size(root: &Root, maps: &Maps, n: u32, runs: usize) -> zfw::Result<Vec<Case>> {
    let (mut t_status, mut t_list, mut t_gc) = (Vec::new(), Vec::new(), Vec::new());
    fill(maps, n)?;
    let mem = super::memory::row(
        &format!("{n} flows (tables of {TABLE_SIZE})"),
        0,
        super::memory::total(maps)?,
    );
    for _ in 0..runs {
        let (ns, out) = timed(root, &["status", "--json"], true)?;
        let seen = status_flows(&out)?;
        if seen != n as usize {
            return Err(err(format!("status counted {seen} of {n} flows")));
        }
        t_status.push(ns);
        t_list.push(timed(root, &["conntrack", "list", "--json"], false)?.0);
    }
    // what list wrote is checked through the same code, untimed
    let mut listed = 0usize;
    zfw::conntrack::for_each_row(maps, |_| {
        listed += 1;
        Ok(())
    })?;
    if listed != n as usize {
        return Err(err(format!("conntrack list saw {listed} of {n} flows")));
    }
    for run in 0..runs {
        if run > 0 {
            fill(maps, n)?;
        }
        let (ns, out) = timed(root, &["gc", "--json"], true)?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| err(format!("gc --json: {e}")))?;
        let removed = v["flows_removed"].as_u64().unwrap_or(0) as u32;
        let left: usize = FLOW_TABLES
            .iter()
            .map(|t| maps.count(t.def))
            .sum::<zfw::Result<usize>>()?;
        if removed != n / 2 || left != (n - n / 2) as usize {
            return Err(err(format!(
                "gc removed {removed} of {} expired flows, {left} left of {}",
                n / 2,
                n - n / 2
            )));
        }
        t_gc.push(ns);
    }
    zfw::conntrack::flush(maps)?;
    let row = |what: &str, v: Vec<Took>| {
        let ns = median(v.iter().map(|t| t.wall).collect());
        let cpu = median(v.iter().map(|t| t.cpu).collect());
        Case {
            name: format!(
                "flows {n}: {what} ({:.0} ms, cpu {:.0})",
                ns / 1e6,
                cpu / 1e6
            ),
            rules: 0,
            ns: ns / f64::from(n),
            floor_ns: None,
            memlock_bytes: None,
        }
    };
    Ok(vec![
        mem,
        row("status --json", t_status),
        row("conntrack list --json", t_list),
        row("gc, half expired", t_gc),
    ])
}

/// Let this thread, and so the zfw commands it starts, run on every CPU
/// the machine allows: the packet cases pin the bench to one, but a user's
/// `conntrack list` reads the tables on one core while it formats on
/// another (src/conntrack.rs).
fn unpin() -> zfw::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut all = CpuSet::new();
    for c in 0..CpuSet::count() {
        all.set(c)
            .map_err(|e| err(format!("building a CPU set: {e}")))?;
    }
    // the kernel keeps the CPUs of this set that exist and are allowed
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &all)
        .map_err(|e| err(format!("sched_setaffinity: {e}")))
}

/// The rows of every fill, in a root of their own (unloaded at the end).
pub fn flow_cases() -> zfw::Result<Vec<Case>> {
    unpin()?;
    let sizes: Vec<u32> = std::env::var("ZFW_BENCH_FLOW_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![65_536, 262_144, TABLE_SIZE]);
    let runs = env_num("ZFW_BENCH_FLOW_RUNS", 3).max(1) as usize;
    let root = Root::new(format!(
        "/sys/fs/bpf/zfw-bench-flows-{}",
        std::process::id()
    ));
    let table_sizes: BTreeMap<String, u32> = FLOW_TABLES
        .iter()
        .map(|t| (t.def.info.name.to_string(), TABLE_SIZE))
        .collect();
    let res = (|| {
        zfw::loader::load_detached_with(&root, &table_sizes)?;
        let maps = Maps::open(&root)?;
        let mut out = Vec::new();
        for &n in &sizes {
            if n > TABLE_SIZE {
                return Err(err(format!("{n} flows do not fit tables of {TABLE_SIZE}")));
            }
            out.extend(one_size(&root, &maps, n, runs)?);
        }
        Ok(out)
    })();
    let _ = zfw::loader::unload_all(&root);
    res
}
