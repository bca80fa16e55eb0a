//! `make bench`: ns/packet of the datapath via BPF_PROG_TEST_RUN, beside the
//! empty-program floor measured in the same run.  Prints a table and writes
//! target/bench.json ({"floor":{"tc_ns","xdp_ns"},"cases":[{"name","rules","ns"}]}).
//!
//! Each figure is the median of RUNS runs of REPEAT repetitions
//! (ZFW_BENCH_RUNS, default 9; ZFW_BENCH_REPEAT, default 1,000,000).
//! Every run of a case is preceded by a run of the empty program of the same
//! kind; the case's "x floor" is the median of those paired ratios (its
//! "floor" column: median ns / median ratio).  On a busy VM the floor drifts
//! by a quarter between runs, and a ratio against a floor measured seconds
//! earlier would mostly measure the drift.  The bench
//! pins itself to one CPU for the same reason.
//! ZFW_BENCH_QUICK=1 skips the cases that build large rule sets.
//! The flow-table cases (status, conntrack list and gc at up to 1M flows,
//! flows.rs; about 20 s and 1.6 GB of kernel memory) run last;
//! ZFW_BENCH_ONLY=flows runs them alone.  Whole short connections, step by
//! step (lifecycle.rs): ZFW_BENCH_ONLY=connection.

mod dump;
mod flows;
mod lifecycle;
mod memory;
mod policy;
mod tunnel;

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use serde::Serialize;

use zfw::bpffs::Root;
use zfw::maps::{defs, Maps};
use zfw::net::{AF_INET, IPPROTO_TCP};
use zfw::skel::{bench::BenchSkelBuilder, empty::EmptySkelBuilder, names, types};
use zfw::testkit::packet::*;
use zfw::testkit::run::TestProg;

#[path = "store.rs"]
mod store_cases;

const IFINDEX: u32 = 1;

#[derive(Serialize)]
struct Floor {
    tc_ns: f64,
    xdp_ns: f64,
}

#[derive(Serialize)]
pub(crate) struct Case {
    name: String,
    rules: usize,
    ns: f64,
    /// the empty program, interleaved with this case's runs (packet cases)
    #[serde(skip_serializing_if = "Option::is_none")]
    floor_ns: Option<f64>,
    /// memory rows (memory.rs): the sum of the maps' memlock
    #[serde(skip_serializing_if = "Option::is_none")]
    memlock_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Report {
    floor: Floor,
    cases: Vec<Case>,
}

struct Bench {
    runs: usize,
    repeat: u32,
    empty_tc: TestProg,
    empty_xdp: TestProg,
    /// median floor of the last measure() call
    last_floor: std::cell::Cell<f64>,
}

/// Stop unless the bench's handshake left an established TCP flow to or
/// from `port`: the established rows would otherwise time the full path
/// (the datapath checks the handshake's numbers: ARCHITECTURE.md §5).
pub(crate) fn require_established(maps: &Maps, port: u16, what: &str) -> zfw::Result<()> {
    let ok = zfw::conntrack::list(maps)?
        .iter()
        .any(|e| (e.sport == port || e.dport == port) && e.state == "established");
    if ok {
        Ok(())
    } else {
        Err(zfw::Error::runtime(format!(
            "bench: {what} did not establish its flow"
        )))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Bench {
    /// Median ns/packet of `prog` on `frame`; each run follows a run of the
    /// empty program of the same kind (see the module doc).
    fn measure(&self, prog: &TestProg, frame: &[u8], cb: [u32; 5]) -> zfw::Result<f64> {
        let empty = if prog.is_xdp() {
            &self.empty_xdp
        } else {
            &self.empty_tc
        };
        let mut v = Vec::with_capacity(self.runs);
        let mut ratio = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            let f = empty.run_cb(frame, IFINDEX, [0; 5], self.repeat)?;
            let f = (f.duration.as_nanos() as f64).max(1.0);
            let r = prog.run_cb(frame, IFINDEX, cb, self.repeat)?;
            let ns = r.duration.as_nanos() as f64;
            v.push(ns);
            ratio.push(ns / f);
        }
        // the floor that gives the median paired ratio at the median time
        let ns = median(v);
        self.last_floor.set(ns / median(ratio));
        Ok(ns)
    }

    /// The floor measured beside the last measure() call.
    fn floor(&self) -> Option<f64> {
        Some(self.last_floor.get())
    }

    /// Report the next case against `floor` (a figure derived from
    /// earlier measure() calls rather than measured itself).
    fn set_floor(&self, floor: f64) {
        self.last_floor.set(floor);
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn setup_iface(maps: &Maps) -> zfw::Result<()> {
    let mut st = types::zfw_iface {
        flags: zfw::iface_state::default_flags(),
        hooks: zfw::skel::names::ZFW_HOOK_CONFIGURED as u32,
        ..Default::default()
    };
    zfw::iface_state::copy_name(&mut st.name, "lo");
    maps.put(&defs::DIAG_MAP, &IFINDEX, &st)?;
    let mut a4 = types::zfw_if_addrs4 {
        count: 1,
        ..Default::default()
    };
    a4.addr[0] = u32::from_ne_bytes([10, 0, 0, 2]);
    maps.put(&defs::IFINDEX_IP_MAP, &IFINDEX, &a4)
}

fn run() -> zfw::Result<Report> {
    let only_flows = std::env::var("ZFW_BENCH_ONLY").is_ok_and(|v| v == "flows");
    // one CPU: a migration between a case and its floor would compare two
    // cores' caches and clocks (measuring unpinned is still valid, so no error)
    let _ = zfw::testkit::run::pin_cpu();
    // the floor: programs that do nothing
    let mut storage = MaybeUninit::uninit();
    let empty = EmptySkelBuilder::default()
        .open(&mut storage)
        .and_then(|o| o.load())
        .map_err(|e| zfw::Error::runtime(format!("loading empty programs: {e}")))?;
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map_err(|e| zfw::Error::runtime(e.to_string()))
    };
    let bench = Bench {
        runs: env_num("ZFW_BENCH_RUNS", 9).max(1) as usize,
        repeat: env_num("ZFW_BENCH_REPEAT", 1_000_000) as u32,
        empty_tc: TestProg::from_fd(dup(empty.progs.empty_tc.as_fd())?, false),
        empty_xdp: TestProg::from_fd(dup(empty.progs.empty_xdp.as_fd())?, true),
        last_floor: std::cell::Cell::new(0.0),
    };
    let syn = tcp("10.0.0.1", 40000, "10.0.0.2", 8080, TCP_SYN);
    let floor = Floor {
        tc_ns: bench.measure(&bench.empty_tc, &syn, [0; 5])?,
        xdp_ns: bench.measure(&bench.empty_xdp, &syn[14..], [0; 5])?,
    };

    if only_flows {
        return Ok(Report {
            floor,
            cases: flows::flow_cases()?,
        });
    }
    let root = Root::new(format!("/sys/fs/bpf/zfw-bench-{}", std::process::id()));
    zfw::loader::load_detached(&root)?;
    // ZFW_BENCH_QUICK=1: only the per-packet cases that need no big rule set;
    // ZFW_BENCH_ONLY=store|ruleadd|dump|status|tunnel: only the rule-store
    // cases (apply, add/del/list), only the single-rule add/del/list cases
    // at 250,000 rules, the conntrack dump case, status with full decision
    // caches, or the tunnel/OT cases
    let quick = std::env::var_os("ZFW_BENCH_QUICK").is_some()
        || std::env::var("ZFW_BENCH_ONLY").is_ok_and(|v| v == "tunnel");
    let only_store = std::env::var("ZFW_BENCH_ONLY").is_ok_and(|v| v == "store");
    let only = |what: &str| std::env::var("ZFW_BENCH_ONLY").is_ok_and(|v| v == what);
    let only_dump = std::env::var("ZFW_BENCH_ONLY").is_ok_and(|v| v == "dump");
    let result = (|| {
        let mut c = Vec::new();
        if only_dump {
            return dump::dump_cases(&root, 65_535);
        }
        if std::env::var("ZFW_BENCH_ONLY").is_ok_and(|v| v == "status") {
            return dump::status_cases(&root);
        }
        if only("cover") {
            return cover_cases(&root);
        }
        if only("apply") {
            return apply_cases(&root);
        }
        if only("policy") {
            return policy::policy_cases(&bench, &root);
        }
        if only("memory") {
            return memory::memory_cases();
        }
        if only("connection") {
            return lifecycle::connection_cases(&bench, &root);
        }
        if only("ruleadd") {
            return store_cases::cases(&Maps::open(&root)?, 250_000);
        }
        if !only_store {
            c.extend(cases(&bench, &root)?);
        }
        if !quick && !only_store {
            c.extend(policy::policy_cases(&bench, &root)?);
        }
        if !quick {
            c.extend(apply_cases(&root)?);
            c.extend(store_cases::cases(&Maps::open(&root)?, 250_000)?);
            c.extend(cover_cases(&root)?);
        }
        if !quick && !only_store {
            c.extend(dump::dump_cases(&root, 65_535)?);
            c.extend(dump::status_cases(&root)?);
        }
        if !only_store {
            c.extend(lifecycle::connection_cases(&bench, &root)?);
        }
        if !quick && !only_store {
            c.extend(memory::memory_cases()?);
            c.extend(flows::flow_cases()?);
        }
        Ok(c)
    })();
    let _ = zfw::loader::unload_all(&root);
    Ok(Report {
        floor,
        cases: result?,
    })
}

fn cases(bench: &Bench, root: &Root) -> zfw::Result<Vec<Case>> {
    let maps = Maps::open(root)?;
    setup_iface(&maps)?;
    let pin = |n: &str| TestProg::open(&root.prog_path(n));
    let policy = pin("zfw_policy")?;
    let track = pin("zfw_track_flow")?;
    let egress = pin("zfw_egress_flow")?;
    let mut out = Vec::new();
    let mut add = |name: &str, rules: usize, ns: f64| {
        out.push(Case {
            name: name.into(),
            rules,
            ns,
            floor_ns: bench.floor(),
            memlock_bytes: None,
        })
    };

    if std::env::var("ZFW_BENCH_ONLY").is_ok_and(|v| v == "tunnel") {
        tunnel::tunnel_ot_cases(bench, &maps, &policy, &egress, &mut add)?;
        return Ok(out);
    }
    add(
        "ingress ARP (pass)",
        0,
        bench.measure(&policy, &arp(), [0; 5])?,
    );
    let syn = tcp("10.0.0.1", 40000, "10.0.0.2", 8080, TCP_SYN);
    add(
        "ingress truncated TCP (drop)",
        0,
        bench.measure(&policy, &syn[..14 + 20 + 10], [0; 5])?,
    );
    add(
        "ingress SYN, no rule (drop)",
        0,
        bench.measure(&policy, &syn, [0; 5])?,
    );
    let ssh = tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_SYN);
    let p1 = policy.run(&ssh, IFINDEX)?;
    let p2 = bench.measure(&track, &ssh, p1.cb)?;
    add(
        "ingress SSH SYN (prio 1 + prio 2)",
        0,
        bench.measure(&policy, &ssh, [0; 5])? + p2,
    );

    // an established inbound flow: handshake through the real programs
    policy
        .run_cb(&ssh, IFINDEX, [0; 5], 1)
        .and_then(|r| track.run_cb(&ssh, IFINDEX, r.cb, 1))?;
    egress.run(
        &tcp("10.0.0.2", 22, "10.0.0.1", 40000, TCP_SYN | TCP_ACK),
        IFINDEX,
    )?;
    let ack = tcp_full(
        "10.0.0.1", 40000, "10.0.0.2", 22, TCP_ACK, 1001, 1001, b"data",
    );
    policy.run(&ack, IFINDEX)?;
    require_established(&maps, 22, "the inbound SSH handshake")?;
    add(
        "ingress established TCP (prio 1 fast path)",
        0,
        bench.measure(&policy, &ack, [0; 5])?,
    );
    let reply = tcp_full(
        "10.0.0.2", 22, "10.0.0.1", 40000, TCP_ACK, 1001, 1005, b"data",
    );
    add(
        "egress established TCP",
        0,
        bench.measure(&egress, &reply, [0; 5])?,
    );
    tunnel::tunnel_ot_cases(bench, &maps, &policy, &egress, &mut add)?;

    // Masquerade.  BPF_PROG_TEST_RUN repeats on one buffer, so a packet
    // that is really translated is, from the second repetition on, another
    // packet.  The NAT cases therefore use mappings that translate a flow
    // onto itself (written into the maps here): every repetition runs the
    // full existing-mapping path -- lookups, state, checksum helpers,
    // stores -- and leaves the same bytes behind.
    let mut st = types::zfw_iface {
        flags: zfw::iface_state::default_flags() | names::ZFW_IF_MASQUERADE as u32,
        ..Default::default()
    };
    zfw::iface_state::copy_name(&mut st.name, "lo");
    maps.put(&defs::DIAG_MAP, &IFINDEX, &st)?;
    let v4 = |a: [u8; 4]| [u32::from_ne_bytes(a), 0, 0, 0];
    let (inside, remote, ours) = (
        v4([192, 168, 1, 10]),
        v4([198, 51, 100, 7]),
        v4([10, 0, 0, 2]),
    );
    let flow = |s: [u32; 4], sp: u16, d: [u32; 4], dp: u16| types::zfw_flow_key {
        saddr: s,
        daddr: d,
        sport: sp,
        dport: dp,
        ifindex: IFINDEX,
        family: AF_INET,
        proto: IPPROTO_TCP,
        ..Default::default()
    };
    let mapping = |r: [u32; 4], rp: u16, np: u16| types::zfw_nat_key {
        raddr: r,
        rport: rp,
        nport: np,
        ifindex: IFINDEX,
        family: AF_INET,
        proto: IPPROTO_TCP,
        ..Default::default()
    };
    let now = zfw::decode::mono_now_ns();
    let est = zfw::skel::names::ZFW_TCP_ESTABLISHED as u8;
    // egress: the forwarded flow 192.168.1.10:40000 -> 198.51.100.7:80
    let rev = types::zfw_nat_rev {
        naddr: inside,
        nport: 40000,
        state: est,
        last_ns: now,
        ..Default::default()
    };
    maps.put(
        &defs::MASQUERADE_REVERSE_MAP,
        &flow(inside, 40000, remote, 80),
        &rev,
    )?;
    let val = types::zfw_nat_val {
        addr: inside,
        port: 40000,
        state: est,
        last_ns: now,
        ..Default::default()
    };
    maps.put(&defs::MASQUERADE_MAP, &mapping(remote, 80, 40000), &val)?;
    // the handshake, so that conntrack holds an established flow
    egress.run(
        &tcp("192.168.1.10", 40000, "198.51.100.7", 80, TCP_SYN),
        IFINDEX,
    )?;
    policy.run(
        &tcp("198.51.100.7", 80, "192.168.1.10", 40000, TCP_SYN | TCP_ACK),
        IFINDEX,
    )?;
    let fwd = tcp_full(
        "192.168.1.10",
        40000,
        "198.51.100.7",
        80,
        TCP_ACK,
        1001,
        1001,
        b"data",
    );
    let r = egress.run(&fwd, IFINDEX)?;
    if r.retval != 0 || r.data != fwd {
        return Err(zfw::Error::runtime("bench: SNAT set-up did not take"));
    }
    add(
        "egress SNAT TCP, existing mapping",
        0,
        bench.measure(&egress, &fwd, [0; 5])?,
    );
    // ingress: replies of 10.0.0.2:40001 -> 198.51.100.7:80
    let val = types::zfw_nat_val {
        addr: ours,
        port: 40001,
        naddr4: ours[0],
        state: est,
        last_ns: now,
        ..Default::default()
    };
    maps.put(&defs::MASQUERADE_MAP, &mapping(remote, 80, 40001), &val)?;
    egress.run(
        &tcp("10.0.0.2", 40001, "198.51.100.7", 80, TCP_SYN),
        IFINDEX,
    )?;
    policy.run(
        &tcp("198.51.100.7", 80, "10.0.0.2", 40001, TCP_SYN | TCP_ACK),
        IFINDEX,
    )?;
    egress.run(
        &tcp("10.0.0.2", 40001, "198.51.100.7", 80, TCP_ACK),
        IFINDEX,
    )?;
    let back = tcp_full(
        "198.51.100.7",
        80,
        "10.0.0.2",
        40001,
        TCP_ACK,
        1,
        5,
        b"data",
    );
    let before = maps.percpu_sum(&defs::COUNTERS_MAP, names::ZFW_R_NAT as u32)?;
    policy.run(&back, IFINDEX)?;
    if maps.percpu_sum(&defs::COUNTERS_MAP, names::ZFW_R_NAT as u32)? != before + 1 {
        return Err(zfw::Error::runtime("bench: DNAT set-up did not take"));
    }
    add(
        "ingress DNAT TCP + known flow (prio 1)",
        0,
        bench.measure(&policy, &back, [0; 5])?,
    );
    Ok(out)
}

/// (dst len, src len) pairs the generated rule sets use: 4 x 4 = 16.
const DST_LENS: [u8; 4] = [16, 20, 24, 28];
const SRC_LENS: [u8; 4] = [0, 8, 16, 24];
/// Port ranges per key, the same at every size: the per-key scan is bounded
/// by ZFW_MAX_RANGES_PER_KEY anyway, and the bench asks how cost grows with
/// the number of rules and prefixes.
const RANGES_PER_KEY: usize = 10;

fn key_prefixes(k: usize) -> (String, String) {
    let pair = k % 16;
    let (dl, sl) = (DST_LENS[pair / 4], SRC_LENS[pair % 4]);
    let d = std::net::Ipv4Addr::from(((k as u32 + 1) << 16) & 0x7fff_ffff);
    let s = std::net::Ipv4Addr::from(0xc000_0000 | ((k as u32 + 1) << 8));
    let d = zfw::rules::model::Prefix::new(d.into(), dl);
    let s = zfw::rules::model::Prefix::new(s.into(), sl);
    (d.to_string(), s.to_string())
}

/// `n` ingress TCP rules over n / RANGES_PER_KEY keys (distinct dst
/// prefixes, 16 length pairs), plus a catch-all 0.0.0.0/0 key so every
/// lookup walks two pairs.
pub(crate) fn rule_set(n: usize) -> Vec<zfw::rules::model::Rule> {
    use zfw::rules::model::{Action, Direction, Rule};
    let mk = |dst: &str, src: &str, ports: String, action| Rule {
        direction: Direction::Ingress,
        dst: dst.parse().unwrap_or_else(|_| panic!("{dst}")),
        src: src.parse().unwrap_or_else(|_| panic!("{src}")),
        proto: zfw::rules::model::Proto::Tcp,
        ports: ports.parse().unwrap_or_else(|_| panic!("{ports}")),
        action,
        interfaces: vec![],
        service_id: None,
    };
    let mut v = vec![mk("0.0.0.0/0", "0.0.0.0/0", "1".into(), Action::Deny)];
    let keys = n.saturating_sub(1).div_ceil(RANGES_PER_KEY).max(1);
    'outer: for k in 0..keys {
        let (d, s) = key_prefixes(k);
        for j in 0..RANGES_PER_KEY {
            if v.len() >= n {
                break 'outer;
            }
            let lo = 100 + 10 * j;
            v.push(mk(&d, &s, format!("{lo}-{}", lo + 5), Action::Allow));
        }
    }
    v
}

/// A SYN to the rule's dst prefix from inside its src prefix.
fn frame_to_last_key(last: &zfw::rules::model::Rule, dport: u16) -> Vec<u8> {
    let src = match last.src.addr {
        std::net::IpAddr::V4(a) => std::net::Ipv4Addr::from(u32::from(a) | 1).to_string(),
        a => a.to_string(),
    };
    tcp(&src, 40000, &last.dst.addr.to_string(), dport, TCP_SYN)
}

/// bench.bpf.c's programs, loaded against the maps pinned under `root`:
/// `main` is `bench_first_packet` (xdp false) or `bench_xdp_tun`.
pub(crate) struct BenchProgs {
    pub main: TestProg,
    /// bench_xdp_head_pair: push and pop an Ethernet header
    pub head_pair: TestProg,
    /// bench_xdp_push_redirect: push, write, redirect, pop: no lookup
    pub push_redirect: TestProg,
    /// bench_flow_uncached: ingress with the packet's flow cache slot emptied
    pub flow_uncached: TestProg,
    /// bench_step_parse, bench_step_known, bench_step_rules: steps of the
    /// first-packet path alone (policy.rs, the per-step rows)
    pub step_parse: TestProg,
    pub step_known: TestProg,
    pub step_rules: TestProg,
}

fn bench_progs(root: &Root, xdp: bool) -> zfw::Result<BenchProgs> {
    let mut storage = MaybeUninit::uninit();
    let mut open = BenchSkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| zfw::Error::runtime(format!("opening the bench object: {e}")))?;
    for mut m in open.open_object_mut().maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        let pin = root.map_path(&name);
        if pin.exists() {
            m.reuse_pinned_map(&pin)
                .map_err(|e| zfw::Error::runtime(format!("reusing {name}: {e}")))?;
        }
    }
    let skel = open
        .load()
        .map_err(|e| zfw::Error::runtime(format!("loading the bench object: {e}")))?;
    let prog = if xdp {
        &skel.progs.bench_xdp_tun
    } else {
        &skel.progs.bench_first_packet
    };
    let fd = |p: &libbpf_rs::ProgramMut<'_>| {
        p.as_fd()
            .try_clone_to_owned()
            .map_err(|e| zfw::Error::runtime(e.to_string()))
    };
    Ok(BenchProgs {
        main: TestProg::from_fd(fd(prog)?, xdp),
        head_pair: TestProg::from_fd(fd(&skel.progs.bench_xdp_head_pair)?, true),
        push_redirect: TestProg::from_fd(fd(&skel.progs.bench_xdp_push_redirect)?, true),
        flow_uncached: TestProg::from_fd(fd(&skel.progs.bench_flow_uncached)?, false),
        step_parse: TestProg::from_fd(fd(&skel.progs.bench_step_parse)?, false),
        step_known: TestProg::from_fd(fd(&skel.progs.bench_step_known)?, false),
        step_rules: TestProg::from_fd(fd(&skel.progs.bench_step_rules)?, false),
    })
}

/// Self-check: a poisoned cache entry decides for zfw_policy but not for
/// bench_first_packet, which must take the full first-packet path.
/// `zfw apply` throughput: a policy file of N rules (as text) parsed,
/// validated, diffed against the live (empty) state and written, as ns per
/// rule (rules/second = 1e9 / ns); then the same file again, which finds
/// nothing to change.  Medians of RUNS runs at 10k, one run at 250k.
/// `rule add`/`rule del` of 0.0.0.0/0 over 10k, 100k and 250k rules, and
/// of ::/0 over 250k (ZFW_BENCH_COVER_SIZES=10000,100000 picks sizes).
fn cover_cases(root: &Root) -> zfw::Result<Vec<Case>> {
    let maps = Maps::open(root)?;
    let sizes: Vec<usize> = std::env::var("ZFW_BENCH_COVER_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 250_000]);
    let mut out = Vec::new();
    for &n in &sizes {
        out.extend(store_cases::covering_cases(&maps, n, false)?);
    }
    if let Some(&n) = sizes.iter().max() {
        out.extend(store_cases::covering_cases(&maps, n, true)?);
    }
    Ok(out)
}

fn apply_cases(root: &Root) -> zfw::Result<Vec<Case>> {
    let maps = Maps::open(root)?;
    let mut out = Vec::new();
    for n in [10_000usize, 250_000] {
        let rules = rule_set(n);
        let doc = serde_json::json!({
            "ingress": rules.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        });
        let text = doc.to_string();
        let runs = if n > 10_000 { 1 } else { 5 };
        let (mut first, mut again) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            zfw::rules::store::replace_all(&maps, &[])?;
            for (times, expect_changes) in [(&mut first, true), (&mut again, false)] {
                let t = std::time::Instant::now();
                let policy = zfw::apply::parse("bench.json", &text, &mut |_| {})?;
                let _lock = root.lock()?;
                let plan = zfw::apply::plan(&maps, "bench.json", &policy, false)?;
                zfw::apply::execute(&maps, &plan, &mut |_| {})?;
                times.push(t.elapsed().as_nanos() as f64 / n as f64);
                if plan.changes.is_empty() == expect_changes {
                    return Err(zfw::Error::runtime(
                        "bench: apply did not do what it should",
                    ));
                }
            }
        }
        // 1 % of the rules changed (every 100th gets another action)
        let mut edited = Vec::new();
        for _ in 0..runs {
            let json: Vec<_> = rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut r = r.clone();
                    if i % 100 == 50 {
                        r.action = zfw::rules::model::Action::Deny;
                    }
                    r.to_json()
                })
                .collect();
            let text = serde_json::json!({ "ingress": json }).to_string();
            let t = std::time::Instant::now();
            let policy = zfw::apply::parse("bench.json", &text, &mut |_| {})?;
            let _lock = root.lock()?;
            let plan = zfw::apply::plan(&maps, "bench.json", &policy, false)?;
            let diffed = t.elapsed().as_nanos() as f64;
            zfw::apply::execute(&maps, &plan, &mut |_| {})?;
            edited.push((t.elapsed().as_nanos() as f64 / n as f64, diffed));
            if plan.changes.len() != n / 100 {
                return Err(zfw::Error::runtime(
                    "bench: edited apply changed other rules",
                ));
            }
            // back to the original set for the next run
            zfw::rules::store::replace_all(&maps, &rules)?;
        }
        edited.sort_by(|a, b| a.0.total_cmp(&b.0));
        for v in [&mut first, &mut again] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        let (e_ns, e_diff) = edited[edited.len() / 2];
        out.push(Case {
            name: format!(
                "apply {n} rules: ns per rule ({:.0} rules/s)",
                1e9 / first[first.len() / 2]
            ),
            rules: n,
            ns: first[first.len() / 2],
            floor_ns: None,
            memlock_bytes: None,
        });
        out.push(Case {
            name: format!("re-apply {n} rules, no change: ns per rule"),
            rules: n,
            ns: again[again.len() / 2],
            floor_ns: None,
            memlock_bytes: None,
        });
        out.push(Case {
            name: format!(
                "re-apply {n} rules, 1% changed: ns per rule ({:.2} s, parse+diff {:.2} s)",
                e_ns * n as f64 / 1e9,
                e_diff / 1e9
            ),
            rules: n,
            ns: e_ns,
            floor_ns: None,
            memlock_bytes: None,
        });
    }
    zfw::rules::store::replace_all(&maps, &[])?;
    Ok(out)
}

fn main() {
    zfw::loader::quiet_libbpf();
    let report = match run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    };
    println!(
        "{:<48} {:>8} {:>10} {:>8} {:>8}",
        "case", "rules", "ns/pkt", "floor", "x floor"
    );
    println!(
        "{:<48} {:>8} {:>10.1} {:>8} {:>8}",
        "floor: empty TC program", "-", report.floor.tc_ns, "-", "1.0"
    );
    println!(
        "{:<48} {:>8} {:>10.1} {:>8} {:>8}",
        "floor: empty XDP program", "-", report.floor.xdp_ns, "-", "1.0"
    );
    for c in &report.cases {
        match c.floor_ns {
            Some(f) if f > 0.0 => println!(
                "{:<48} {:>8} {:>10.1} {:>8.1} {:>8.2}",
                c.name,
                c.rules,
                c.ns,
                f,
                c.ns / f
            ),
            _ if c.memlock_bytes.is_some() => println!(
                "{:<48} {:>8} {:>10} {:>8} {:>8}",
                c.name, c.rules, "-", "-", "-"
            ),
            _ => println!(
                "{:<48} {:>8} {:>10.1} {:>8} {:>8}",
                c.name, c.rules, c.ns, "-", "-"
            ),
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench.json");
    match serde_json::to_string_pretty(&report) {
        Ok(s) => {
            if let Err(e) = std::fs::write(&path, s) {
                eprintln!("error: writing {}: {e}", path.display());
                std::process::exit(1);
            }
            println!(
                "\n* includes one extra bpf_xdp_adjust_head that restores the frame for the next repetition"
            );
            println!(
                "** includes the bench program's parse and lookup that empty the flow cache slot"
            );
            println!("\nwrote {}", path.display());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
