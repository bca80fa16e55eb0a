//! Bench cases of the tunnel fast path (ingress redirect, XDP on the tun)
//! and of OT inspection (DNP3).

use zfw::maps::{defs, Maps};
use zfw::net::{AF_INET, IPPROTO_UDP};
use zfw::skel::types;
use zfw::testkit::packet::*;
use zfw::testkit::run::TestProg;

use super::{bench_progs, Bench, IFINDEX};

/// Tunnel fast path, tunnel redirect and OT inspection (issue 7).
pub(crate) fn tunnel_ot_cases(
    bench: &Bench,
    maps: &Maps,
    policy: &TestProg,
    egress: &TestProg,
    add: &mut impl FnMut(&str, usize, f64),
) -> zfw::Result<()> {
    use zfw::testkit::rules::{action, install_catch_all_rule};
    let act = |n: &str| action(n).ok_or_else(|| zfw::Error::runtime(format!("no action {n}")));
    let tun = types::zfw_tun_iface {
        ifindex: IFINDEX,
        ..Default::default()
    };
    maps.put(&defs::IFINDEX_TUN_MAP, &0, &tun)?;
    install_catch_all_rule(maps, AF_INET, IPPROTO_UDP, act("tunnel")?)?;
    let req = udp("10.0.0.1", 40000, "100.64.0.10", 5000, b"tunnel");
    policy.run(&req, IFINDEX)?; // records tun_map, warms the decision cache
    add(
        "ingress tunnel redirect (flow cache)",
        1,
        bench.measure(policy, &req, [0; 5])?,
    );
    // the same flow when the flow cache does not hold it: the rules (from
    // the rule cache) and tun_map, once per flow and every 32 ticks after
    let progs = bench_progs(&maps.root, true)?;
    if progs.flow_uncached.run(&req, IFINDEX)?.retval != zfw::testkit::run::TC_ACT_REDIRECT {
        return Err(zfw::Error::runtime(
            "bench: the uncached tunnel flow was not redirected",
        ));
    }
    add(
        "ingress tunnel redirect, flow not cached (rule cache)**",
        1,
        bench.measure(&progs.flow_uncached, &req, [0; 5])?,
    );
    let xdp = TestProg::open(&maps.root.prog_path("zfw_xdp_tun_fast"))?;
    let reply = udp("100.64.0.10", 5000, "10.0.0.1", 40000, b"answer");
    let r = xdp.run(&reply[14..], 0)?;
    if r.retval != zfw::testkit::run::XDP_REDIRECT {
        return Err(zfw::Error::runtime(
            "bench: the tun reply missed the fast path",
        ));
    }
    // BPF_PROG_TEST_RUN does not reset the XDP buffer between repetitions:
    // the hit is timed with bench.bpf.c's bench_xdp_tun, the real path plus
    // one bpf_xdp_adjust_head that restores the frame (an upper bound)
    let (hit_prog, pair) = (&progs.main, &progs.head_pair);
    let r = hit_prog.run(&reply[14..], 0)?;
    if r.retval != zfw::testkit::run::XDP_REDIRECT || r.data != reply[14..] {
        return Err(zfw::Error::runtime(
            "bench: bench_xdp_tun did not redirect and restore the frame",
        ));
    }
    let hit = bench.measure(hit_prog, &reply[14..], [0; 5])?;
    let hit_floor = bench.floor().unwrap_or(1.0);
    add("xdp tun fast path hit (redirect)*", 1, hit);
    // the restore's share: half of what a push + pop adds to its floor,
    // both as paired ratios (the floor drifts between measurements)
    let pair_ns = bench.measure(pair, &reply[14..], [0; 5])?;
    let pair_extra = pair_ns / bench.floor().unwrap_or(pair_ns) - 1.0;
    let estimate = hit / hit_floor - (pair_extra / 2.0).max(0.0);
    bench.set_floor(hit_floor);
    add(
        "xdp tun fast path hit, restore subtracted (estimate)",
        1,
        estimate * hit_floor,
    );
    // the same push/write/redirect/pop with no lookup: what no hit can beat
    add(
        "xdp push + redirect + restore, no lookup (reference)*",
        0,
        bench.measure(&progs.push_redirect, &reply[14..], [0; 5])?,
    );
    // a stale entry (and no cached copy of it): the entry of the flow above
    // under another client port, idle for longer than the 30 s window
    let (mut key, fresh) = maps
        .entries(&defs::TUN_MAP)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            zfw::Error::runtime(format!("bench: no {} entry", defs::TUN_MAP.info.name))
        })?;
    key.sport = 40001;
    let stale = types::zfw_tun_state {
        last_ns: 0,
        ..fresh
    };
    maps.put(&defs::TUN_MAP, &key, &stale)?;
    let stale_reply = udp("100.64.0.10", 5000, "10.0.0.1", 40001, b"answer");
    if xdp.run(&stale_reply[14..], 0)?.retval != zfw::testkit::run::XDP_PASS {
        return Err(zfw::Error::runtime("bench: a stale tun entry was used"));
    }
    add(
        "xdp tun stale entry (pass to stack)",
        1,
        bench.measure(&xdp, &stale_reply[14..], [0; 5])?,
    );
    let miss = udp("100.64.0.11", 5000, "10.0.0.1", 40000, b"answer");
    add(
        "xdp tun miss (pass)",
        1,
        bench.measure(&xdp, &miss[14..], [0; 5])?,
    );

    // DNP3: an established outbound flow to an outstation, ot_filtering on
    let mut st = maps
        .get(&defs::DIAG_MAP, &IFINDEX)?
        .ok_or_else(|| zfw::Error::runtime("bench interface missing"))?;
    st.flags |= zfw::skel::names::ZFW_IF_OT_FILTERING as u32;
    maps.put(&defs::DIAG_MAP, &IFINDEX, &st)?;
    maps.put(&defs::DNP3_FCODE_MAP, &129, &1)?;
    // the handshake completes, so the response belongs to an assured flow
    // (a response on a half-open flow would measure the unassured lookups)
    egress.run(
        &tcp_full("10.0.0.2", 40000, "10.0.0.5", 20000, TCP_SYN, 0, 0, &[]),
        IFINDEX,
    )?;
    policy.run(
        &tcp_full(
            "10.0.0.5",
            20000,
            "10.0.0.2",
            40000,
            TCP_SYN | TCP_ACK,
            0,
            1,
            &[],
        ),
        IFINDEX,
    )?;
    egress.run(
        &tcp_full("10.0.0.2", 40000, "10.0.0.5", 20000, TCP_ACK, 1, 1, &[]),
        IFINDEX,
    )?;
    crate::require_established(maps, 20000, "the DNP3 handshake")?;
    let dnp3 = [
        0x05, 0x64, 10, 0x44, 1, 0, 10, 0, 0xaa, 0xbb, 0xc0, 0xc0, 129, 0, 0, 0xcc, 0xdd,
    ];
    let resp = tcp_full(
        "10.0.0.5",
        20000,
        "10.0.0.2",
        40000,
        TCP_ACK | TCP_PSH,
        1,
        1,
        &dnp3,
    );
    add(
        "ingress DNP3 response inspected + known flow",
        0,
        bench.measure(policy, &resp, [0; 5])?,
    );
    Ok(())
}
