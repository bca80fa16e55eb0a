//! Whole short connections through the real programs, packet by packet
//! (`ZFW_BENCH_ONLY=connection`): what `make bench-traffic`'s connections
//! per second pay in the datapath, step by step.
//!
//! The repeated runs of the other rows replay one packet on state that the
//! first repetition made, so they never time a flow's creation, its move to
//! the main table or its removal.  Here every connection is new: CONNS
//! connections (distinct client ports) each run the 18 program runs of a
//! forwarded TCP connection once (the router's two hooks per packet, the
//! interfaces being the same test ifindex): the handshake, a request and
//! its response, the server's close and the client's.  Each run is one
//! BPF_PROG_TEST_RUN of one repetition, paired with a run of the empty
//! program on the same frame; a step's figure is the median over the
//! connections, and the connection's is the sum of its steps.  The caches
//! are warm (one CPU, nothing else running), so this is a lower bound of
//! what the same connection costs among real traffic.  ZFW_BENCH_CONNS
//! sets the number of connections (default 4,000; 500 with
//! ZFW_BENCH_QUICK; at most 40,000), e.g. for `perf record`.

use zfw::bpffs::Root;
use zfw::maps::{defs, Maps};
use zfw::net::{AF_INET, IPPROTO_TCP};
use zfw::testkit::packet::*;
use zfw::testkit::run::{TestProg, TC_ACT_OK, TC_ACT_UNSPEC};

use super::{median, setup_iface, Bench, Case, IFINDEX};

const CLIENT: &str = "10.1.0.1";
const SERVER: &str = "10.2.0.2";
const PORT: u16 = 5202;

/// Which program a step runs: ingress (prio 1, then prio 2 when prio 1
/// hands the packet on) or egress.
#[derive(Clone, Copy, PartialEq)]
enum Hook {
    Ingress,
    Egress,
}

/// One packet of the connection: from the client?, flags, seq, ack, payload.
struct Packet {
    what: &'static str,
    from_client: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    len: usize,
}

/// The connection (client numbers from 100, server's from 500): 9 packets,
/// each through ingress and then egress.
const PACKETS: [Packet; 9] = [
    Packet {
        what: "SYN",
        from_client: true,
        flags: TCP_SYN,
        seq: 100,
        ack: 0,
        len: 0,
    },
    Packet {
        what: "SYN+ACK",
        from_client: false,
        flags: TCP_SYN | TCP_ACK,
        seq: 500,
        ack: 101,
        len: 0,
    },
    Packet {
        what: "ACK (established)",
        from_client: true,
        flags: TCP_ACK,
        seq: 101,
        ack: 501,
        len: 0,
    },
    Packet {
        what: "request",
        from_client: true,
        flags: TCP_ACK | TCP_PSH,
        seq: 101,
        ack: 501,
        len: 64,
    },
    Packet {
        what: "response",
        from_client: false,
        flags: TCP_ACK | TCP_PSH,
        seq: 501,
        ack: 165,
        len: 64,
    },
    Packet {
        what: "server FIN",
        from_client: false,
        flags: TCP_FIN | TCP_ACK,
        seq: 565,
        ack: 165,
        len: 0,
    },
    Packet {
        what: "client ACK",
        from_client: true,
        flags: TCP_ACK,
        seq: 165,
        ack: 566,
        len: 0,
    },
    Packet {
        what: "client FIN",
        from_client: true,
        flags: TCP_FIN | TCP_ACK,
        seq: 165,
        ack: 566,
        len: 0,
    },
    Packet {
        what: "final ACK",
        from_client: false,
        flags: TCP_ACK,
        seq: 566,
        ack: 166,
        len: 0,
    },
];

fn frame(p: &Packet, port: u16) -> Vec<u8> {
    let payload = vec![0x5a; p.len];
    if p.from_client {
        tcp_full(CLIENT, port, SERVER, PORT, p.flags, p.seq, p.ack, &payload)
    } else {
        tcp_full(SERVER, PORT, CLIENT, port, p.flags, p.seq, p.ack, &payload)
    }
}

struct Progs {
    policy: TestProg,
    track: TestProg,
    egress: TestProg,
}

/// Run one step; returns (ns of the programs, ns of the empty program run
/// as many times on the same frame), or an error when the datapath did not
/// pass the packet (the bench would time a drop path).
fn step(bench: &Bench, p: &Progs, hook: Hook, frame: &[u8]) -> zfw::Result<(f64, f64)> {
    let empty = |n: u32| -> zfw::Result<f64> {
        let mut t = 0.0;
        for _ in 0..n {
            t += bench
                .empty_tc
                .run_cb(frame, IFINDEX, [0; 5], 1)?
                .duration
                .as_nanos() as f64;
        }
        Ok(t)
    };
    let pass = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(zfw::Error::runtime(format!(
                "bench: the connection's {what} was not passed"
            )))
        }
    };
    match hook {
        Hook::Ingress => {
            let r = p.policy.run_cb(frame, IFINDEX, [0; 5], 1)?;
            let mut ns = r.duration.as_nanos() as f64;
            let mut runs = 1;
            if r.retval == TC_ACT_UNSPEC {
                let t = p.track.run_cb(frame, IFINDEX, r.cb, 1)?;
                ns += t.duration.as_nanos() as f64;
                runs += 1;
                pass(
                    t.retval == TC_ACT_OK || t.retval == TC_ACT_UNSPEC,
                    "ingress (prio 2)",
                )?;
            } else {
                pass(r.retval == TC_ACT_OK, "ingress")?;
            }
            Ok((ns, empty(runs)?))
        }
        Hook::Egress => {
            let r = p.egress.run_cb(frame, IFINDEX, [0; 5], 1)?;
            pass(r.retval == TC_ACT_OK, "egress")?;
            Ok((r.duration.as_nanos() as f64, empty(1)?))
        }
    }
}

/// Every tracked flow (all nine tables).
fn flows(maps: &Maps) -> zfw::Result<usize> {
    let mut n = 0;
    for t in &defs::FLOW_TABLES {
        n += maps.count(t.def)?;
    }
    Ok(n)
}

pub(crate) fn connection_cases(bench: &Bench, root: &Root) -> zfw::Result<Vec<Case>> {
    let maps = Maps::open(root)?;
    setup_iface(&maps)?;
    let allow = zfw::testkit::rules::action("allow").expect("the allow action");
    zfw::testkit::rules::install_catch_all_rule(&maps, AF_INET, IPPROTO_TCP, allow)?;
    let pin = |n: &str| TestProg::open(&root.prog_path(n));
    let p = Progs {
        policy: pin("zfw_policy")?,
        track: pin("zfw_track_flow")?,
        egress: pin("zfw_egress_flow")?,
    };
    let quick = std::env::var_os("ZFW_BENCH_QUICK").is_some();
    // ZFW_BENCH_CONNS: more connections, for a profiler to sample
    let conns =
        super::env_num("ZFW_BENCH_CONNS", if quick { 500 } else { 4000 }).clamp(1, 40_000) as u16;
    let steps = PACKETS.len() * 2;
    let mut ns = vec![Vec::with_capacity(conns as usize); steps];
    let mut floor = vec![Vec::with_capacity(conns as usize); steps];
    let before = flows(&maps)?;
    for c in 0..conns {
        let port = 20000 + c;
        for (i, pk) in PACKETS.iter().enumerate() {
            let f = frame(pk, port);
            for (j, hook) in [Hook::Ingress, Hook::Egress].into_iter().enumerate() {
                let (t, e) = step(bench, &p, hook, &f)?;
                ns[2 * i + j].push(t);
                floor[2 * i + j].push(e);
            }
        }
        // a connection that left state behind was not the one intended
        if c == 0 && flows(&maps)? != before {
            return Err(zfw::Error::runtime(
                "bench: the connection's flows were not removed by its close",
            ));
        }
    }
    let mut out = Vec::new();
    let (mut total, mut total_floor) = (0.0, 0.0);
    for (s, (v, e)) in ns.into_iter().zip(floor).enumerate() {
        let (t, f) = (median(v), median(e));
        total += t;
        total_floor += f;
        let pk = &PACKETS[s / 2];
        let hook = if s % 2 == 0 { "ingress" } else { "egress" };
        let side = if pk.from_client { "client" } else { "server" };
        bench.set_floor(f);
        out.push(Case {
            name: format!("connection step {:>2}: {hook} {} ({side})", s + 1, pk.what),
            rules: 1,
            ns: t,
            floor_ns: bench.floor(),
            memlock_bytes: None,
        });
    }
    bench.set_floor(total_floor);
    out.insert(
        0,
        Case {
            name: format!("forwarded TCP connection, {steps} hook runs (ns per connection)"),
            rules: 1,
            ns: total,
            floor_ns: bench.floor(),
            memlock_bytes: None,
        },
    );
    Ok(out)
}
