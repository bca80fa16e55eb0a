//! Masquerade port choice and half-open mappings (BPF_PROG_TEST_RUN), as
//! src/bpf/nat.h describes them: the inside port is kept when it is free
//! for the destination, a port another inside host closed recently is not
//! given out again for that destination, a TCP mapping is established only
//! by the inside host's ACK of the peer's SYN-ACK, and under exhaustion a
//! half-open mapping gives way.  The test interface owns 10.0.0.2; inside
//! hosts are 192.168.1.0/24, the peer 198.51.100.7.

mod common;

use std::net::Ipv4Addr;

use common::fixture::*;
use common::packet::*;
use common::*;
use zfw::skel::{names, types};

const A: &str = "192.168.1.10";
const B: &str = "192.168.1.11";
const OUT: &str = "10.0.0.2";
const REMOTE: &str = "198.51.100.7";
const NSEC: u64 = 1_000_000_000;

fn masq() -> Fixture {
    let f = Fixture::new();
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("masquerade"));
    f
}

fn st(s: i64) -> u8 {
    s as u8
}

fn a4(s: &str) -> [u32; 4] {
    let a: Ipv4Addr = s.parse().unwrap();
    [u32::from_ne_bytes(a.octets()), 0, 0, 0]
}

fn key(rport: u16, nport: u16) -> types::zfw_nat_key {
    types::zfw_nat_key {
        raddr: a4(REMOTE),
        rport,
        nport,
        ifindex: IFINDEX,
        family: 2,
        proto: 6,
        ..Default::default()
    }
}

/// Source address and port of an egress frame after SNAT.
fn src_of(frame: &[u8]) -> (Ipv4Addr, u16) {
    let ip = strip_ether(frame);
    let l4 = &ip[usize::from(ip[0] & 0xf) * 4..];
    (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        u16::from_be_bytes([l4[0], l4[1]]),
    )
}

/// SNAT the SYN of `host:sport -> REMOTE:rport`; the translated port.
fn syn(f: &Fixture, host: &str, sport: u16, rport: u16) -> u16 {
    let r = f.egress_out(&tcp_full(host, sport, REMOTE, rport, TCP_SYN, 100, 0, b""));
    assert_eq!(r.retval, TC_ACT_OK, "SYN {host}:{sport} translated");
    let (a, p) = src_of(&r.data);
    assert_eq!(a.to_string(), OUT);
    p
}

/// A full connection `host:sport -> REMOTE:80` on port `n`, closed by the
/// peer first (it keeps TIME_WAIT, as a web server does).
fn handshake_and_close(f: &Fixture, host: &str, sport: u16, n: u16) {
    synack(f, n, 500);
    f.egress(&tcp_full(host, sport, REMOTE, 80, TCP_ACK, 101, 501, b""));
    f.ingress(&tcp_full(
        REMOTE,
        80,
        OUT,
        n,
        TCP_FIN | TCP_ACK,
        501,
        101,
        b"",
    ));
    f.egress(&tcp_full(
        host,
        sport,
        REMOTE,
        80,
        TCP_FIN | TCP_ACK,
        101,
        502,
        b"",
    ));
    f.ingress(&tcp_full(REMOTE, 80, OUT, n, TCP_ACK, 502, 102, b""));
}

/// The peer's SYN-ACK (sequence `seq`) to the SYN of `syn` on port `n`.
fn synack(f: &Fixture, n: u16, seq: u32) -> u32 {
    f.ingress(&tcp_full(
        REMOTE,
        80,
        OUT,
        n,
        TCP_SYN | TCP_ACK,
        seq,
        101,
        b"",
    ))
}

fn state_of(f: &Fixture, rport: u16, n: u16) -> Option<u8> {
    let v: Option<types::zfw_nat_val> = f
        .root
        .maps()
        .get(&zfw::maps::defs::MASQUERADE_MAP, &key(rport, n))
        .unwrap();
    v.map(|v| v.state)
}

#[test]
fn the_inside_port_is_kept_when_free_for_the_destination() {
    require_priv!();
    let f = masq();
    assert_eq!(syn(&f, A, 40000, 80), 40000, "TCP keeps its port");
    let r = f.egress_out(&udp(A, 5353, REMOTE, 53, b"q"));
    assert_eq!(src_of(&r.data).1, 5353, "UDP keeps its port");
    let r = f.egress_out(&icmp_echo(A, REMOTE, false, 0x4242, 1));
    let ip = strip_ether(&r.data);
    assert_eq!(u16::from_be_bytes([ip[24], ip[25]]), 0x4242, "echo id kept");
    // below the range it is not kept
    let p = syn(&f, A, 700, 80);
    assert!(p >= 1024, "port {p}");
}

#[test]
fn a_conflicting_mapping_gets_another_port() {
    require_priv!();
    let f = masq();
    assert_eq!(syn(&f, A, 40000, 80), 40000);
    let b = syn(&f, B, 40000, 80);
    assert_ne!(
        b, 40000,
        "the second host's port is taken for that destination"
    );
    // another destination port is another destination: free there
    assert_eq!(syn(&f, B, 40000, 443), 40000);
    // a live mapping of another host is never taken over, an idle one is
    let maps = f.root.maps();
    let live = types::zfw_nat_val {
        addr: a4("192.168.1.99"),
        port: 41000,
        state: st(names::ZFW_TCP_ESTABLISHED),
        last_ns: zfw::decode::mono_now_ns(),
        ..Default::default()
    };
    maps.put(&zfw::maps::defs::MASQUERADE_MAP, &key(80, 41000), &live)
        .unwrap();
    assert_ne!(syn(&f, A, 41000, 80), 41000);
    // (half-open, so that 61 s of age suffice: CLOCK_MONOTONIC starts at boot)
    let idle = types::zfw_nat_val {
        state: st(names::ZFW_TCP_SYN_SENT),
        last_ns: zfw::decode::mono_now_ns() - 61 * NSEC,
        ..live
    };
    maps.put(&zfw::maps::defs::MASQUERADE_MAP, &key(80, 41001), &idle)
        .unwrap();
    assert_eq!(
        syn(&f, A, 41001, 80),
        41001,
        "an expired mapping is taken over"
    );
    let v: types::zfw_nat_val = maps
        .get(&zfw::maps::defs::MASQUERADE_MAP, &key(80, 41001))
        .unwrap()
        .unwrap();
    assert_eq!(v.addr, a4(A));
}

#[test]
fn a_port_closed_by_another_host_is_not_reused_for_that_destination() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    let n = syn(&f, A, 40000, 80);
    assert_eq!(n, 40000);
    handshake_and_close(&f, A, 40000, n);
    assert_eq!(state_of(&f, 80, n), None, "closed: the mapping is gone");
    let c: types::zfw_nat_closed = maps
        .get(&zfw::maps::defs::MASQUERADE_CLOSED_MAP, &key(80, n))
        .unwrap()
        .expect("a record of the closed port");
    assert_eq!((c.addr, c.port), (a4(A), 40000));
    // the peer may hold TIME_WAIT for OUT:40000: another host must not get it
    for _ in 0..20 {
        let p = syn(&f, B, 40000, 80);
        assert_ne!(p, 40000, "recently closed port reused for another host");
        f.egress(&tcp(B, 40000, REMOTE, 80, TCP_RST));
    }
    // the same host and port may: its timestamps continue
    assert_eq!(syn(&f, A, 40000, 80), 40000);
    f.egress(&tcp(A, 40000, REMOTE, 80, TCP_RST));
    // for another destination the port is free
    assert_eq!(syn(&f, B, 40000, 443), 40000);
    // after the TIME_WAIT span it is free for everyone again
    let old = types::zfw_nat_closed {
        closed_ns: zfw::decode::mono_now_ns() - 121 * NSEC,
        ..c
    };
    maps.put(&zfw::maps::defs::MASQUERADE_CLOSED_MAP, &key(80, n), &old)
        .unwrap();
    assert_eq!(syn(&f, B, 40000, 80), 40000);
    // a reset leaves no record (the peer holds no TIME_WAIT)
    f.egress(&tcp(B, 40000, REMOTE, 80, TCP_RST));
    maps.del(&zfw::maps::defs::MASQUERADE_CLOSED_MAP, &key(80, n))
        .unwrap();
    syn(&f, A, 40000, 80);
    f.egress(&tcp(A, 40000, REMOTE, 80, TCP_RST));
    let rec: Option<types::zfw_nat_closed> = maps
        .get(&zfw::maps::defs::MASQUERADE_CLOSED_MAP, &key(80, n))
        .unwrap();
    assert!(rec.is_none(), "RST: no record");
}

#[test]
fn a_mapping_is_established_only_by_the_inside_ack_of_the_syn_ack() {
    require_priv!();
    let f = masq();
    let n = syn(&f, A, 40000, 80);
    assert_eq!(state_of(&f, 80, n), Some(st(names::ZFW_TCP_SYN_SENT)));
    assert_eq!(synack(&f, n, 7000), TC_ACT_OK, "the SYN-ACK is let in");
    assert_eq!(
        state_of(&f, 80, n),
        Some(st(names::ZFW_TCP_SYN_RECV)),
        "the SYN-ACK alone leaves it half-open"
    );
    // an ACK that does not acknowledge the SYN-ACK does not complete it
    f.egress(&tcp_full(A, 40000, REMOTE, 80, TCP_ACK, 101, 1234, b""));
    assert_eq!(state_of(&f, 80, n), Some(st(names::ZFW_TCP_SYN_RECV)));
    let list = zfw::nat::list_nat(&f.root.maps()).unwrap();
    assert_eq!(list[0].state, "syn_recv", "{list:?}");
    f.egress(&tcp_full(A, 40000, REMOTE, 80, TCP_ACK, 101, 7001, b""));
    assert_eq!(state_of(&f, 80, n), Some(st(names::ZFW_TCP_ESTABLISHED)));
    let rev: types::zfw_nat_rev = f
        .root
        .maps()
        .get(
            &zfw::maps::defs::MASQUERADE_REVERSE_MAP,
            &zfw::nat::reverse_key(
                &key(80, n),
                &types::zfw_nat_val {
                    addr: a4(A),
                    port: 40000,
                    ..Default::default()
                },
            ),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        rev.state,
        st(names::ZFW_TCP_ESTABLISHED),
        "both entries agree"
    );
}

/// Age a mapping (both entries) to `secs` ago.
fn age(f: &Fixture, k: &types::zfw_nat_key, secs: u64) {
    let maps = f.root.maps();
    let mut v: types::zfw_nat_val = maps
        .get(&zfw::maps::defs::MASQUERADE_MAP, k)
        .unwrap()
        .unwrap();
    let t = zfw::decode::mono_now_ns() - secs * NSEC;
    v.last_ns = t;
    maps.put(&zfw::maps::defs::MASQUERADE_MAP, k, &v).unwrap();
    let rk = zfw::nat::reverse_key(k, &v);
    let mut r: types::zfw_nat_rev = maps
        .get(&zfw::maps::defs::MASQUERADE_REVERSE_MAP, &rk)
        .unwrap()
        .unwrap();
    r.last_ns = t;
    maps.put(&zfw::maps::defs::MASQUERADE_REVERSE_MAP, &rk, &r)
        .unwrap();
}

#[test]
fn half_open_mappings_time_out_after_60_s_and_gc_frees_them() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    let h = syn(&f, A, 40000, 80);
    synack(&f, h, 7000);
    let e = syn(&f, A, 40001, 80);
    synack(&f, e, 9000);
    f.egress(&tcp_full(A, 40001, REMOTE, 80, TCP_ACK, 101, 9001, b""));
    age(&f, &key(80, h), 61);
    age(&f, &key(80, e), 61);
    // the peer's retransmitted SYN-ACK does not keep the half-open one alive
    synack(&f, h, 7000);
    assert_eq!(
        zfw::nat::gc_nat(&maps).unwrap(),
        1,
        "the half-open mapping goes"
    );
    assert_eq!(state_of(&f, 80, h), None);
    assert_eq!(state_of(&f, 80, e), Some(st(names::ZFW_TCP_ESTABLISHED)));
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        1
    );
}

#[test]
fn under_exhaustion_a_half_open_mapping_gives_way_and_an_established_one_never() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    let now = zfw::decode::mono_now_ns();
    // every port to REMOTE:80 is held by a live mapping; 3 in 4 half-open
    // (of 10 candidates, one is half-open but once in 250,000 runs)
    for p in 1024u16..=65535 {
        let v = types::zfw_nat_val {
            addr: a4("192.168.9.9"),
            port: p,
            state: st(if p % 4 != 0 {
                names::ZFW_TCP_SYN_RECV
            } else {
                names::ZFW_TCP_ESTABLISHED
            }),
            last_ns: now,
            ..Default::default()
        };
        maps.put(&zfw::maps::defs::MASQUERADE_MAP, &key(80, p), &v)
            .unwrap();
    }
    let before = maps.count(&zfw::maps::defs::MASQUERADE_MAP).unwrap();
    let n = syn(&f, A, 40000, 80);
    assert_ne!(n % 4, 0, "port {n}: an established mapping was taken");
    assert_eq!(f.counter("nat_evicted"), 1);
    assert_eq!(f.counter("drop_nat_exhausted"), 0);
    let v: types::zfw_nat_val = maps
        .get(&zfw::maps::defs::MASQUERADE_MAP, &key(80, n))
        .unwrap()
        .unwrap();
    assert_eq!((v.addr, v.port), (a4(A), 40000), "the new flow holds it");
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_MAP).unwrap(),
        before
    );
    // established only: the new flow is dropped
    for p in (1024u16..=65535).filter(|p| p % 4 != 0) {
        let mut v: types::zfw_nat_val = maps
            .get(&zfw::maps::defs::MASQUERADE_MAP, &key(80, p))
            .unwrap()
            .unwrap();
        v.state = st(names::ZFW_TCP_ESTABLISHED);
        maps.put(&zfw::maps::defs::MASQUERADE_MAP, &key(80, p), &v)
            .unwrap();
    }
    let r = f.egress_out(&tcp(B, 40000, REMOTE, 80, TCP_SYN));
    assert_eq!(r.retval, TC_ACT_SHOT);
    assert_eq!(f.counter("drop_nat_exhausted"), 1);
}

#[test]
fn conntrack_flush_frees_every_masquerade_port() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    for i in 0..5 {
        let n = syn(&f, A, 40000 + i, 80);
        synack(&f, n, 7000);
        f.egress(&tcp_full(A, 40000 + i, REMOTE, 80, TCP_ACK, 101, 7001, b""));
    }
    f.egress(&udp(A, 5000, REMOTE, 53, b"q"));
    f.egress(&icmp_echo(A, REMOTE, false, 9, 1));
    let out = zfw(None, &f.root, &["conntrack", "flush"]).ok();
    assert!(
        out.stdout.contains("and 7 masquerade mappings"),
        "{}",
        out.stdout
    );
    use zfw::maps::defs::{ICMP_MASQUERADE_MAP, MASQUERADE_MAP, MASQUERADE_REVERSE_MAP};
    for m in [
        &MASQUERADE_MAP.info,
        &ICMP_MASQUERADE_MAP.info,
        &MASQUERADE_REVERSE_MAP.info,
    ] {
        assert_eq!(maps.count(m).unwrap(), 0, "{} empty after flush", m.name);
    }
    // and the ports are free: the same flows get their own ports again
    assert_eq!(syn(&f, A, 40000, 80), 40000);
}
