//! `make bench`: ns/packet of the datapath via BPF_PROG_TEST_RUN, beside the
//! empty-program floor measured in the same run.  Prints a table and writes
//! target/bench.json ({"floor":{"tc_ns","xdp_ns"},"cases":[{"name","rules","ns"}]}).
//!
//! Each figure is the median of RUNS runs of REPEAT repetitions
//! (ZFW_BENCH_RUNS, default 5; ZFW_BENCH_REPEAT, default 1,000,000).

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use serde::Serialize;

use zfw::bpffs::Root;
use zfw::maps::Maps;
use zfw::skel::{empty::EmptySkelBuilder, types};
use zfw::testkit::packet::*;
use zfw::testkit::run::TestProg;

const IFINDEX: u32 = 1;

#[derive(Serialize)]
struct Floor {
    tc_ns: f64,
    xdp_ns: f64,
}

#[derive(Serialize)]
struct Case {
    name: String,
    rules: usize,
    ns: f64,
}

#[derive(Serialize)]
struct Report {
    floor: Floor,
    cases: Vec<Case>,
}

struct Bench {
    runs: usize,
    repeat: u32,
}

impl Bench {
    /// Median ns/packet of `prog` on `frame`.
    fn measure(&self, prog: &TestProg, frame: &[u8], cb: [u32; 5]) -> zfw::Result<f64> {
        let mut v = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            let r = prog.run_cb(frame, IFINDEX, cb, self.repeat)?;
            v.push(r.duration.as_nanos() as f64);
        }
        v.sort_by(|a, b| a.total_cmp(b));
        Ok(v[v.len() / 2])
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
        ..Default::default()
    };
    zfw::iface_state::copy_name(&mut st.name, "lo");
    maps.put("diag_map", &IFINDEX, &st)?;
    let mut a4 = types::zfw_if_addrs4 {
        count: 1,
        ..Default::default()
    };
    a4.addr[0] = u32::from_ne_bytes([10, 0, 0, 2]);
    maps.put("ifindex_ip_map", &IFINDEX, &a4)
}

fn reason(name: &str) -> u32 {
    zfw::skel::names::ZFW_REASON
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| *v as u32)
}

fn run() -> zfw::Result<Report> {
    let bench = Bench {
        runs: env_num("ZFW_BENCH_RUNS", 5) as usize,
        repeat: env_num("ZFW_BENCH_REPEAT", 1_000_000) as u32,
    };
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
    let empty_tc = TestProg::from_fd(dup(empty.progs.empty_tc.as_fd())?, false);
    let empty_xdp = TestProg::from_fd(dup(empty.progs.empty_xdp.as_fd())?, true);
    let syn = tcp("10.0.0.1", 40000, "10.0.0.2", 8080, TCP_SYN);
    let floor = Floor {
        tc_ns: bench.measure(&empty_tc, &syn, [0; 5])?,
        xdp_ns: bench.measure(&empty_xdp, &syn[14..], [0; 5])?,
    };

    let root = Root::new(format!("/sys/fs/bpf/zfw-bench-{}", std::process::id()));
    zfw::loader::load_detached(&root)?;
    let result = cases(&bench, &root);
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
        })
    };

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
    let ack = tcp_full("10.0.0.1", 40000, "10.0.0.2", 22, TCP_ACK, 1001, 1, b"data");
    policy.run(&ack, IFINDEX)?;
    add(
        "ingress established TCP (prio 1 fast path)",
        0,
        bench.measure(&policy, &ack, [0; 5])?,
    );
    let reply = tcp_full("10.0.0.2", 22, "10.0.0.1", 40000, TCP_ACK, 1, 1005, b"data");
    add(
        "egress established TCP",
        0,
        bench.measure(&egress, &reply, [0; 5])?,
    );

    // Masquerade.  BPF_PROG_TEST_RUN repeats on one buffer, so a packet
    // that is really translated is, from the second repetition on, another
    // packet.  The NAT cases therefore use mappings that translate a flow
    // onto itself (written into the maps here): every repetition runs the
    // full existing-mapping path -- lookups, state, checksum helpers,
    // stores -- and leaves the same bytes behind.
    let mut st = types::zfw_iface {
        flags: zfw::iface_state::default_flags()
            | zfw::iface_state::flag_bit("masquerade").unwrap_or(0),
        ..Default::default()
    };
    zfw::iface_state::copy_name(&mut st.name, "lo");
    maps.put("diag_map", &IFINDEX, &st)?;
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
        family: 2,
        proto: 6,
        ..Default::default()
    };
    let mapping = |r: [u32; 4], rp: u16, np: u16| types::zfw_nat_key {
        raddr: r,
        rport: rp,
        nport: np,
        ifindex: IFINDEX,
        family: 2,
        proto: 6,
        ..Default::default()
    };
    let now = zfw::nat::now_ns()?;
    let est = zfw::skel::names::ZFW_TCP_STATE
        .iter()
        .find(|(n, _)| *n == "ZFW_TCP_ESTABLISHED")
        .map_or(0, |(_, v)| *v as u8);
    // egress: the forwarded flow 192.168.1.10:40000 -> 198.51.100.7:80
    let rev = types::zfw_nat_rev {
        naddr: inside,
        nport: 40000,
        state: est,
        last_ns: now,
        ..Default::default()
    };
    maps.put(
        "masquerade_reverse_map",
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
    maps.put("masquerade_map", &mapping(remote, 80, 40000), &val)?;
    egress.run(
        &tcp("192.168.1.10", 40000, "198.51.100.7", 80, TCP_SYN),
        IFINDEX,
    )?;
    let fwd = tcp_full(
        "192.168.1.10",
        40000,
        "198.51.100.7",
        80,
        TCP_ACK,
        1,
        1,
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
    maps.put("masquerade_map", &mapping(remote, 80, 40001), &val)?;
    egress.run(
        &tcp("10.0.0.2", 40001, "198.51.100.7", 80, TCP_SYN),
        IFINDEX,
    )?;
    policy.run(
        &tcp("198.51.100.7", 80, "10.0.0.2", 40001, TCP_SYN | TCP_ACK),
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
    let before = maps.percpu_sum("counters_map", reason("ZFW_R_NAT"))?;
    policy.run(&back, IFINDEX)?;
    if maps.percpu_sum("counters_map", reason("ZFW_R_NAT"))? != before + 1 {
        return Err(zfw::Error::runtime("bench: DNAT set-up did not take"));
    }
    add(
        "ingress DNAT TCP + known flow (prio 1)",
        0,
        bench.measure(&policy, &back, [0; 5])?,
    );
    Ok(out)
}

fn main() {
    zfw::cli::quiet_libbpf();
    let report = match run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    };
    println!(
        "{:<48} {:>8} {:>10} {:>8}",
        "case", "rules", "ns/pkt", "x floor"
    );
    println!(
        "{:<48} {:>8} {:>10.1} {:>8}",
        "floor: empty TC program", "-", report.floor.tc_ns, "1.0"
    );
    println!(
        "{:<48} {:>8} {:>10.1} {:>8}",
        "floor: empty XDP program", "-", report.floor.xdp_ns, "1.0"
    );
    for c in &report.cases {
        let base = if c.name.starts_with("xdp") {
            report.floor.xdp_ns
        } else {
            report.floor.tc_ns
        };
        println!(
            "{:<48} {:>8} {:>10.1} {:>8.2}",
            c.name,
            c.rules,
            c.ns,
            c.ns / base
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench.json");
    match serde_json::to_string_pretty(&report) {
        Ok(s) => {
            if let Err(e) = std::fs::write(&path, s) {
                eprintln!("error: writing {}: {e}", path.display());
                std::process::exit(1);
            }
            println!("\nwrote {}", path.display());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
