//! Masquerade packet tests (BPF_PROG_TEST_RUN): SNAT on egress, DNAT on
//! ingress, checksums in the rewritten bytes, port allocation, cleanup.
//! The test interface (IFINDEX) owns 10.0.0.2 / fd00::2; "inside" hosts are
//! 192.168.1.0/24 and fd01::/64, the remote peer 198.51.100.7 / 2001:db8::7.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use common::fixture::*;
use common::packet::*;
use common::*;
use zfw::skel::types;

const IN: &str = "192.168.1.10";
const OUT: &str = "10.0.0.2";
const REMOTE: &str = "198.51.100.7";
const IN6: &str = "fd01::10";
const OUT6: &str = "fd00::2";
const REMOTE6: &str = "2001:db8::7";

fn masq() -> Fixture {
    let f = Fixture::new();
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("masquerade"));
    f
}

/// Parsed view of an Ethernet + IPv4/IPv6 + L4 frame.
struct View<'a> {
    ip: &'a [u8],
    l4: &'a [u8],
}

fn view(frame: &[u8]) -> View<'_> {
    let ip = strip_ether(frame);
    let l4 = if ip[0] >> 4 == 4 {
        &ip[usize::from(ip[0] & 0xf) * 4..]
    } else {
        &ip[40..]
    };
    View { ip, l4 }
}

impl View<'_> {
    fn src(&self) -> IpAddr {
        if self.ip[0] >> 4 == 4 {
            IpAddr::from(<[u8; 4]>::try_from(&self.ip[12..16]).unwrap())
        } else {
            IpAddr::from(<[u8; 16]>::try_from(&self.ip[8..24]).unwrap())
        }
    }
    fn dst(&self) -> IpAddr {
        if self.ip[0] >> 4 == 4 {
            IpAddr::from(<[u8; 4]>::try_from(&self.ip[16..20]).unwrap())
        } else {
            IpAddr::from(<[u8; 16]>::try_from(&self.ip[24..40]).unwrap())
        }
    }
    fn sport(&self) -> u16 {
        u16::from_be_bytes([self.l4[0], self.l4[1]])
    }
    fn dport(&self) -> u16 {
        u16::from_be_bytes([self.l4[2], self.l4[3]])
    }
    fn echo_id(&self) -> u16 {
        u16::from_be_bytes([self.l4[4], self.l4[5]])
    }
    fn checksums_ok(&self) -> bool {
        (self.ip[0] >> 4 == 6 || ipv4_checksum_ok(self.ip)) && l4_checksum_ok(self.ip)
    }
}

/// An ICMPv6 message of type `ty` (no body) from `src` to `dst`.
fn icmp_message_frame(src: &str, dst: &str, ty: u8) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    let m = icmp_message(s, d, ty, 0, [0; 4], &[0; 16]);
    ether(SERVER_MAC, CLIENT_MAC, 0x86dd, &ip_packet(s, d, 58, &m))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4key(raddr: &str, rport: u16, nport: u16, proto: u8) -> types::zfw_nat_key {
    let a: Ipv4Addr = raddr.parse().unwrap();
    types::zfw_nat_key {
        raddr: [u32::from_ne_bytes(a.octets()), 0, 0, 0],
        rport,
        nport,
        ifindex: IFINDEX,
        family: 2,
        proto,
        ..Default::default()
    }
}

/// SNAT a SYN from IN:sport to REMOTE:80; returns the allocated port.
fn open_tcp(f: &Fixture, sport: u16) -> u16 {
    // SYN 0: the peer's SYN+ACK acknowledges 1 (the handshake's numbers
    // are checked: ARCHITECTURE.md §5)
    let r = f.egress_out(&tcp_full(IN, sport, REMOTE, 80, TCP_SYN, 0, 0, b""));
    assert_eq!(r.retval, TC_ACT_OK);
    let v = view(&r.data);
    assert_eq!(v.src(), ip(OUT));
    v.sport()
}

#[test]
fn snat_rewrites_tcp_source_and_checksums_and_reuses_the_mapping() {
    require_priv!();
    let f = masq();
    let syn = tcp_full(IN, 40000, REMOTE, 80, TCP_SYN, 7, 0, b"");
    let r = f.egress_out(&syn);
    assert_eq!(r.retval, TC_ACT_OK);
    let v = view(&r.data);
    assert_eq!(v.src(), ip(OUT), "source becomes the interface address");
    assert_eq!(v.dst(), ip(REMOTE));
    assert_eq!(v.dport(), 80);
    let nport = v.sport();
    assert!(nport >= 1024, "port {nport} in 1024-65535");
    assert!(v.checksums_ok(), "IP and TCP checksums valid after SNAT");
    assert_eq!(r.data.len(), syn.len());
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::MASQUERADE_MAP)
            .unwrap(),
        1
    );
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        1
    );
    // later packets of the flow keep the same translation
    for flags in [TCP_ACK, TCP_ACK | TCP_PSH] {
        let r = f.egress_out(&tcp_full(IN, 40000, REMOTE, 80, flags, 8, 1, b"payload"));
        assert_eq!(r.retval, TC_ACT_OK);
        let v = view(&r.data);
        assert_eq!((v.src(), v.sport()), (ip(OUT), nport));
        assert!(v.checksums_ok());
    }
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::MASQUERADE_MAP)
            .unwrap(),
        1
    );
    // without masquerade the same forwarded packet leaves untouched
    let g = Fixture::new();
    let r = g.egress_out(&syn);
    assert_eq!(r.data, syn);
}

#[test]
fn snat_udp_fixes_checksum_and_keeps_a_zero_checksum_zero() {
    require_priv!();
    let f = masq();
    let r = f.egress_out(&udp(IN, 5000, REMOTE, 53, b"query"));
    assert_eq!(r.retval, TC_ACT_OK);
    let v = view(&r.data);
    assert_eq!(v.src(), ip(OUT));
    assert_ne!(&v.l4[6..8], &[0, 0]);
    assert!(v.checksums_ok());
    // a datagram sent without checksum keeps none
    let mut nocsum = udp(IN, 5001, REMOTE, 53, b"query");
    nocsum[14 + 20 + 6] = 0;
    nocsum[14 + 20 + 7] = 0;
    let r = f.egress_out(&nocsum);
    assert_eq!(r.retval, TC_ACT_OK);
    let v = view(&r.data);
    assert_eq!(v.src(), ip(OUT));
    assert_eq!(&v.l4[6..8], &[0, 0], "zero UDP checksum stays zero");
    assert!(ipv4_checksum_ok(v.ip));
}

#[test]
fn udp_translated_from_the_cache_keeps_checksums_right_and_zero_zero() {
    require_priv!();
    pin_cpu();
    let f = masq();
    let mut nocsum = udp(IN, 5003, REMOTE, 53, b"query");
    nocsum[14 + 20 + 6] = 0;
    nocsum[14 + 20 + 7] = 0;
    // the first packets create and cache the flows, the rest come from the cache
    for i in 0..4 {
        let v4 = f.egress_out(&udp(IN, 5002, REMOTE, 53, b"query"));
        let v = view(&v4.data);
        assert_eq!(v.src(), ip(OUT), "packet {i}");
        assert!(v.checksums_ok(), "packet {i}: checksums");
        let z = f.egress_out(&nocsum);
        let v = view(&z.data);
        assert_eq!(v.src(), ip(OUT), "packet {i}");
        assert_eq!(&v.l4[6..8], &[0, 0], "packet {i}: zero stays zero");
        assert!(ipv4_checksum_ok(v.ip));
    }
    let n = f.counter("nat");
    assert_eq!(n, 8, "every packet translated");
    let d = zfw::dump::dump(&f.root.maps(), &["flow_cache_map".to_string()]).unwrap();
    let cached = d["maps"]["flow_cache_map"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["translate_to"].is_null() && s["pending_packets"].as_u64() > Some(0))
        .count();
    assert_eq!(cached, 2, "both flows translated from the cache: {d}");
}

#[test]
fn dnat_restores_the_inside_destination_and_replies_pass_default_deny() {
    require_priv!();
    let f = masq();
    let nport = open_tcp(&f, 40000);
    // no rules at all: the reply is let in only as a known (tracked) flow
    let r = f.ingress_out(&tcp_full(
        REMOTE,
        80,
        OUT,
        nport,
        TCP_SYN | TCP_ACK,
        99,
        1,
        b"",
    ));
    assert_eq!(r.retval, TC_ACT_OK);
    let v = view(&r.data);
    assert_eq!(v.dst(), ip(IN), "destination restored");
    assert_eq!(v.dport(), 40000);
    assert_eq!(v.src(), ip(REMOTE));
    assert!(v.checksums_ok(), "checksums valid after DNAT");
    assert_eq!(f.counter("pass_known_flow"), 1);
    // data both ways
    let r = f.egress_out(&tcp_full(IN, 40000, REMOTE, 80, TCP_ACK, 8, 100, b"GET /"));
    assert_eq!(view(&r.data).sport(), nport);
    let r = f.ingress_out(&tcp_full(
        REMOTE, 80, OUT, nport, TCP_ACK, 100, 13, b"200 OK",
    ));
    assert_eq!(r.retval, TC_ACT_OK);
    assert!(view(&r.data).checksums_ok());
    // another port on the same address is not a reply: default deny
    let other = tcp(REMOTE, 80, OUT, nport ^ 1, TCP_SYN | TCP_ACK);
    assert_eq!(f.ingress(&other), TC_ACT_SHOT);
    // nor is the right port from another peer
    let spoof = tcp("198.51.100.8", 80, OUT, nport, TCP_SYN | TCP_ACK);
    assert_eq!(f.ingress(&spoof), TC_ACT_SHOT);
}

#[test]
fn collisions_are_retried_against_masquerade_map() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    // a quarter of the ports towards REMOTE:80 are taken
    let mut taken = HashSet::new();
    // live mappings (an idle one would be taken over)
    let bogus = types::zfw_nat_val {
        addr: [u32::from_ne_bytes([192, 168, 9, 9]), 0, 0, 0],
        port: 1,
        state: 3,
        last_ns: zfw::decode::mono_now_ns(),
        ..Default::default()
    };
    for p in (1024u16..=65535).filter(|p| p % 4 == 0) {
        maps.put(
            &zfw::maps::defs::MASQUERADE_MAP,
            &v4key(REMOTE, 80, p, 6),
            &bogus,
        )
        .unwrap();
        taken.insert(p);
    }
    // 40 flows: without retries about ten of them would hit a taken port
    for i in 0..40u16 {
        let nport = open_tcp(&f, 41000 + i);
        assert!(!taken.contains(&nport), "flow {i} got taken port {nport}");
    }
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        40
    );
    // the pre-filled entries are untouched
    let v: types::zfw_nat_val = maps
        .get(
            &zfw::maps::defs::MASQUERADE_MAP,
            &v4key(REMOTE, 80, 4096, 6),
        )
        .unwrap()
        .unwrap();
    assert_eq!(v.port, 1);
}

#[test]
fn port_exhaustion_drops_and_never_sends_the_inside_address() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    // every port held by a live established mapping: nothing to take over
    let bogus = types::zfw_nat_val {
        state: 3,
        last_ns: zfw::decode::mono_now_ns(),
        ..Default::default()
    };
    for p in 1024u16..=65535 {
        maps.put(
            &zfw::maps::defs::MASQUERADE_MAP,
            &v4key(REMOTE, 80, p, 6),
            &bogus,
        )
        .unwrap();
    }
    let r = f.egress_out(&tcp(IN, 40000, REMOTE, 80, TCP_SYN));
    assert_eq!(r.retval, TC_ACT_SHOT, "no free port: dropped");
    assert_eq!(f.counter("drop_nat_exhausted"), 1);
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        0
    );
    // an event says why
    let name = |t: &[(&str, i64)], n: &str| t.iter().find(|(k, _)| *k == n).unwrap().1;
    let ev = f.events();
    assert!(
        ev.iter().any(|e| i64::from(e.kind)
            == name(zfw::skel::names::ZFW_EVENT_KIND, "ZFW_EV_NAT")
            && i64::from(e.reason)
                == name(zfw::skel::names::ZFW_REASON, "ZFW_R_DROP_NAT_EXHAUSTED")
            && i64::from(e.code) == name(zfw::skel::names::ZFW_NAT_ERR, "ZFW_NAT_E_EXHAUSTED")
            && e.sport == 40000
            && e.dport == 80),
        "exhaustion event: {ev:?}"
    );
    // another peer port still has room
    assert_eq!(f.egress(&tcp(IN, 40000, REMOTE, 443, TCP_SYN)), TC_ACT_OK);
}

#[test]
fn a_non_syn_without_mapping_is_dropped_not_leaked() {
    require_priv!();
    let f = masq();
    assert_eq!(f.egress(&tcp(IN, 40000, REMOTE, 80, TCP_ACK)), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_nat_untranslatable"), 1);
}

#[test]
fn the_hosts_own_traffic_is_not_translated() {
    require_priv!();
    let f = masq();
    let own = tcp(OUT, 40000, REMOTE, 80, TCP_SYN);
    let r = f.egress_out(&own);
    assert_eq!((r.retval, &r.data), (TC_ACT_OK, &own));
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::MASQUERADE_MAP)
            .unwrap(),
        0
    );
    // nor are packets sent before the host has an address, or link-local
    for frame in [
        udp("0.0.0.0", 68, "255.255.255.255", 67, b"dhcp discover"),
        udp("192.168.1.10", 68, "255.255.255.255", 67, b"dhcp"),
        icmp_message_frame("::", "ff02::16", 143),
        icmp_message_frame("fe80::1", "ff02::2", 133),
        tcp("fe80::1", 40000, "fe80::2", 80, TCP_SYN),
    ] {
        let r = f.egress_out(&frame);
        assert_eq!((r.retval, &r.data), (TC_ACT_OK, &frame));
    }
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::MASQUERADE_MAP)
            .unwrap(),
        0
    );
    // its reply comes back through the normal known-flow path
    let reply = tcp(REMOTE, 80, OUT, 40000, TCP_SYN | TCP_ACK);
    let r = f.ingress_out(&reply);
    assert_eq!((r.retval, &r.data), (TC_ACT_OK, &reply));
    // traffic to the host itself (SSH) is unchanged
    let ssh = tcp(REMOTE, 50000, OUT, 22, TCP_SYN);
    let r = f.ingress_out(&ssh);
    assert_eq!((r.retval, &r.data), (TC_ACT_UNSPEC, &ssh));
}

#[test]
fn tcp_mapping_goes_after_fin_from_both_sides_and_the_final_ack() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    let n = open_tcp(&f, 40000);
    f.ingress(&tcp_full(REMOTE, 80, OUT, n, TCP_SYN | TCP_ACK, 0, 1, b""));
    f.egress(&tcp_full(IN, 40000, REMOTE, 80, TCP_ACK, 1, 1, b""));
    // inside closes, the peer acknowledges and closes too
    f.egress(&tcp_full(
        IN,
        40000,
        REMOTE,
        80,
        TCP_FIN | TCP_ACK,
        1,
        1,
        b"",
    ));
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_MAP).unwrap(),
        1,
        "one FIN: kept"
    );
    let r = f.ingress_out(&tcp_full(REMOTE, 80, OUT, n, TCP_FIN | TCP_ACK, 1, 2, b""));
    assert_eq!(r.retval, TC_ACT_OK);
    assert_eq!(view(&r.data).dst(), ip(IN));
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_MAP).unwrap(),
        1,
        "final ACK pending"
    );
    let r = f.egress_out(&tcp_full(IN, 40000, REMOTE, 80, TCP_ACK, 2, 2, b""));
    assert_eq!(r.retval, TC_ACT_OK);
    assert_eq!(view(&r.data).src(), ip(OUT), "the final ACK is translated");
    assert_eq!(maps.count(&zfw::maps::defs::MASQUERADE_MAP).unwrap(), 0);
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        0
    );
}

#[test]
fn a_new_connection_on_a_closing_tuple_keeps_its_mapping() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    let n = open_tcp(&f, 40000);
    f.ingress(&tcp_full(REMOTE, 80, OUT, n, TCP_SYN | TCP_ACK, 0, 1, b""));
    f.egress(&tcp_full(
        IN,
        40000,
        REMOTE,
        80,
        TCP_FIN | TCP_ACK,
        1,
        1,
        b"",
    ));
    f.ingress(&tcp_full(REMOTE, 80, OUT, n, TCP_FIN | TCP_ACK, 1, 2, b""));
    // the final ACK got lost; the inside host opens the same tuple again
    let r = f.egress_out(&tcp_full(IN, 40000, REMOTE, 80, TCP_SYN, 5000, 0, b""));
    assert_eq!(view(&r.data).sport(), n, "same mapping");
    let r = f.ingress_out(&tcp_full(
        REMOTE,
        80,
        OUT,
        n,
        TCP_SYN | TCP_ACK,
        9000,
        5001,
        b"",
    ));
    assert_eq!(view(&r.data).dst(), ip(IN));
    let r = f.egress_out(&tcp_full(IN, 40000, REMOTE, 80, TCP_ACK, 5001, 9001, b""));
    assert_eq!(view(&r.data).src(), ip(OUT));
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_MAP).unwrap(),
        1,
        "new connection keeps it"
    );
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        1
    );
}

#[test]
fn tcp_mapping_goes_on_rst_from_either_side() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    let n = open_tcp(&f, 40000);
    // a RST before the SYN-ACK acknowledges the SYN (ARCHITECTURE.md §5)
    let r = f.ingress_out(&tcp_full(REMOTE, 80, OUT, n, TCP_RST | TCP_ACK, 0, 1, b""));
    assert_eq!(view(&r.data).dst(), ip(IN), "the RST itself is translated");
    assert_eq!(maps.count(&zfw::maps::defs::MASQUERADE_MAP).unwrap(), 0);
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        0
    );
    open_tcp(&f, 40001);
    let r = f.egress_out(&tcp(IN, 40001, REMOTE, 80, TCP_RST));
    assert_eq!(view(&r.data).src(), ip(OUT));
    assert_eq!(maps.count(&zfw::maps::defs::MASQUERADE_MAP).unwrap(), 0);
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        0
    );
}

#[test]
fn icmp_echo_is_masqueraded_by_identifier() {
    require_priv!();
    let f = masq();
    let r = f.egress_out(&icmp_echo(IN, REMOTE, false, 0x1234, 1));
    assert_eq!(r.retval, TC_ACT_OK);
    let v = view(&r.data);
    assert_eq!(v.src(), ip(OUT));
    assert!(v.checksums_ok());
    let id = v.echo_id();
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::ICMP_MASQUERADE_MAP)
            .unwrap(),
        1
    );
    let r = f.ingress_out(&icmp_echo(REMOTE, OUT, true, id, 1));
    assert_eq!(r.retval, TC_ACT_OK, "the echo reply is let in");
    let v = view(&r.data);
    assert_eq!((v.dst(), v.echo_id()), (ip(IN), 0x1234));
    assert!(v.checksums_ok());
    assert_eq!(f.counter("pass_icmp_reply"), 1);
}

#[test]
fn icmp_errors_are_translated_outer_and_quoted_headers() {
    require_priv!();
    let f = masq();
    let r = f.egress_out(&udp(IN, 5000, REMOTE, 53, b"query"));
    let sent = strip_ether(&r.data).to_vec();
    let nport = view(&r.data).sport();
    // the peer answers "port unreachable", quoting what it received
    let err = icmp_error(REMOTE, OUT, 3, 3, &sent);
    let r = f.ingress_out(&err);
    assert_eq!(r.retval, TC_ACT_OK);
    assert_eq!(f.counter("pass_icmp_error"), 1);
    let outer = strip_ether(&r.data);
    assert_eq!(view(&r.data).dst(), ip(IN));
    assert!(
        ipv4_checksum_ok(outer) && l4_checksum_ok(outer),
        "outer/ICMP checksums"
    );
    let quoted = &outer[28..];
    assert!(ipv4_checksum_ok(quoted), "quoted IP checksum");
    assert_eq!(
        &quoted[12..16],
        &[192, 168, 1, 10],
        "quoted source restored"
    );
    assert_eq!(u16::from_be_bytes([quoted[20], quoted[21]]), 5000);
    assert_ne!(nport, 0);

    // the inside host's own error about the flow leaves with the outside view
    let reply = udp(REMOTE, 53, IN, 5000, b"answer");
    let err = icmp_error(IN, REMOTE, 3, 3, strip_ether(&reply));
    let r = f.egress_out(&err);
    assert_eq!(r.retval, TC_ACT_OK);
    let outer = strip_ether(&r.data);
    assert_eq!(view(&r.data).src(), ip(OUT), "outer source translated");
    assert!(ipv4_checksum_ok(outer) && l4_checksum_ok(outer));
    let quoted = &outer[28..];
    assert!(ipv4_checksum_ok(quoted));
    assert_eq!(
        &quoted[16..20],
        &[10, 0, 0, 2],
        "quoted destination translated"
    );
    assert_eq!(u16::from_be_bytes([quoted[22], quoted[23]]), nport);
    // this host's own error about a reply it un-translated (e.g. the inside
    // host is unreachable): the quoted packet gets the outside view back,
    // the outer source (ours) stays
    let err = icmp_error(OUT, REMOTE, 3, 1, strip_ether(&reply));
    let r = f.egress_out(&err);
    assert_eq!(r.retval, TC_ACT_OK);
    let outer = strip_ether(&r.data);
    assert_eq!(view(&r.data).src(), ip(OUT));
    assert!(ipv4_checksum_ok(outer) && l4_checksum_ok(outer));
    let quoted = &outer[28..];
    assert!(ipv4_checksum_ok(quoted));
    assert_eq!(
        &quoted[16..20],
        &[10, 0, 0, 2],
        "no inside address in the quote"
    );
    assert_eq!(u16::from_be_bytes([quoted[22], quoted[23]]), nport);
    // an error from inside about an untranslated flow is not let out
    let stray = udp(REMOTE, 53, IN, 6000, b"x");
    let err = icmp_error(IN, REMOTE, 3, 3, strip_ether(&stray));
    assert_eq!(f.egress(&err), TC_ACT_SHOT);
}

#[test]
fn ipv6_static_pat_rewrites_the_address_and_keeps_the_port() {
    require_priv!();
    let f = masq();
    let r = f.egress_out(&tcp(IN6, 40000, REMOTE6, 80, TCP_SYN));
    assert_eq!(r.retval, TC_ACT_OK);
    let v = view(&r.data);
    assert_eq!((v.src(), v.sport()), (ip(OUT6), 40000));
    assert!(v.checksums_ok());
    let r = f.ingress_out(&tcp(REMOTE6, 80, OUT6, 40000, TCP_SYN | TCP_ACK));
    assert_eq!(r.retval, TC_ACT_OK);
    let v = view(&r.data);
    assert_eq!((v.dst(), v.dport()), (ip(IN6), 40000));
    assert!(v.checksums_ok());
    // UDP and echo the same way
    let r = f.egress_out(&udp(IN6, 5000, REMOTE6, 53, b"q"));
    assert!(view(&r.data).checksums_ok());
    assert_eq!(view(&r.data).src(), ip(OUT6));
    let r = f.egress_out(&icmp_echo(IN6, REMOTE6, false, 77, 1));
    assert_eq!(view(&r.data).src(), ip(OUT6));
    assert!(view(&r.data).checksums_ok());
    let r = f.ingress_out(&icmp_echo(REMOTE6, OUT6, true, 77, 1));
    assert_eq!(r.retval, TC_ACT_OK);
    assert_eq!(view(&r.data).dst(), ip(IN6));
    assert!(view(&r.data).checksums_ok());
    // a second inside host with the same port to the same peer conflicts
    assert_eq!(
        f.egress(&tcp("fd01::11", 40000, REMOTE6, 80, TCP_SYN)),
        TC_ACT_SHOT
    );
}

#[test]
fn idle_udp_mappings_stop_admitting_replies_and_gc_removes_them() {
    require_priv!();
    let f = masq();
    let maps = f.root.maps();
    let r = f.egress_out(&udp(IN, 5000, REMOTE, 53, b"q"));
    let n = view(&r.data).sport();
    open_tcp(&f, 40000);
    assert_eq!(zfw::nat::gc_nat(&maps).unwrap(), 0, "fresh mappings stay");
    assert_eq!(zfw::nat::list_nat(&maps).unwrap().len(), 2);
    // age the UDP mapping past 30 s in both tables
    for (k, mut v) in maps
        .entries::<types::zfw_nat_key, types::zfw_nat_val>(&zfw::maps::defs::MASQUERADE_MAP)
        .unwrap()
    {
        if k.proto == 17 {
            v.last_ns = 1;
            maps.put(&zfw::maps::defs::MASQUERADE_MAP, &k, &v).unwrap();
            let rk = zfw::nat::reverse_key(&k, &v);
            let mut rv: types::zfw_nat_rev = maps
                .get(&zfw::maps::defs::MASQUERADE_REVERSE_MAP, &rk)
                .unwrap()
                .unwrap();
            rv.last_ns = 1;
            maps.put(&zfw::maps::defs::MASQUERADE_REVERSE_MAP, &rk, &rv)
                .unwrap();
        }
    }
    let reply = udp(REMOTE, 53, OUT, n, b"a");
    let r = f.ingress_out(&reply);
    assert_eq!(r.retval, TC_ACT_SHOT, "expired mapping admits nothing");
    assert_eq!(r.data, reply, "and translates nothing");
    assert_eq!(zfw::nat::gc_nat(&maps).unwrap(), 1);
    let left = zfw::nat::list_nat(&maps).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].proto, "tcp");
    assert_eq!(
        maps.count(&zfw::maps::defs::MASQUERADE_REVERSE_MAP)
            .unwrap(),
        1
    );
}

/// An established masqueraded TCP flow IN:sport -> REMOTE:80 whose packets
/// both ways are now translated from this CPU's flow cache; returns the
/// outside port.
fn cached_masq_flow(f: &Fixture, sport: u16) -> u16 {
    pin_cpu();
    let nport = open_tcp(f, sport);
    let synack = tcp_full(REMOTE, 80, OUT, nport, TCP_SYN | TCP_ACK, 99, 1, b"");
    assert_eq!(f.ingress(&synack), TC_ACT_OK);
    assert_eq!(
        f.egress(&tcp_full(IN, sport, REMOTE, 80, TCP_ACK, 8, 100, b"")),
        TC_ACT_OK
    );
    // one more packet each way through the tables: they fill the slots
    f.egress_out(&tcp_full(IN, sport, REMOTE, 80, TCP_ACK, 8, 100, b"a"));
    f.ingress_out(&tcp_full(REMOTE, 80, OUT, nport, TCP_ACK, 100, 9, b"b"));
    nport
}

#[test]
fn cached_flows_are_translated_with_valid_checksums_every_time() {
    require_priv!();
    let f = masq();
    let nport = cached_masq_flow(&f, 40100);
    let nat_before = f.counter("nat");
    let counts = |f: &Fixture| {
        let list = zfw::conntrack::list(&f.root.maps()).unwrap();
        let e = list.iter().find(|e| e.sport == 40100).expect("the flow");
        (e.packets_orig, e.packets_reply)
    };
    let (orig, reply) = counts(&f);
    for i in 0..4u32 {
        let out = f.egress_out(&tcp_full(IN, 40100, REMOTE, 80, TCP_ACK, 9 + i, 101, b"xy"));
        assert_eq!(out.retval, TC_ACT_OK);
        let v = view(&out.data);
        assert_eq!((v.src(), v.sport()), (ip(OUT), nport));
        assert!(v.checksums_ok(), "SNAT from the cache: checksums");
        let back = tcp_full(REMOTE, 80, OUT, nport, TCP_ACK, 101 + i, 11, b"z");
        let r = f.ingress_out(&back);
        assert_eq!(r.retval, TC_ACT_OK);
        let v = view(&r.data);
        assert_eq!((v.dst(), v.dport()), (ip(IN), 40100));
        assert!(v.checksums_ok(), "DNAT from the cache: checksums");
    }
    let slots = zfw::dump::dump(&f.root.maps(), &["flow_cache_map".to_string()]).unwrap();
    assert!(
        slots["maps"]["flow_cache_map"]["entries"]
            .as_array()
            .unwrap()
            .len()
            >= 2,
        "both directions cached: {slots}"
    );
    // the replies came from the slot keyed by the tuple they arrive with,
    // which carries the way to the inside host (ARCHITECTURE.md §5)
    let arrival = format!("{OUT}:{nport}");
    let inside = format!("{IN}:40100");
    let dnat = slots["maps"]["flow_cache_map"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| {
            s["hook"] == "ingress"
                && s["dst"] == arrival.as_str()
                && s["translate_to"] == inside.as_str()
                && s["pending_packets"].as_u64() > Some(0)
        });
    assert!(
        dnat,
        "a DNAT slot under the arrival tuple served the replies: {slots}"
    );
    assert_eq!(f.counter("nat"), nat_before + 8, "every packet counted");
    // and conntrack counts the packets of both cached directions
    assert_eq!(counts(&f), (orig + 4, reply + 4));
}

#[test]
fn turning_masquerade_off_stops_cached_translations_at_once() {
    require_priv!();
    let f = masq();
    cached_masq_flow(&f, 40101);
    // what `zfw iface set` does (directly: a CLI run outlasts the slots'
    // freshness and would prove nothing): store, and the caches forget
    let maps = f.root.maps();
    let mut st: types::zfw_iface = maps
        .get(&zfw::maps::defs::DIAG_MAP, &IFINDEX)
        .unwrap()
        .unwrap();
    st.flags &= !Fixture::flag("masquerade");
    zfw::iface_state::store(&maps, IFINDEX, &st).unwrap();
    let out = f.egress_out(&tcp_full(IN, 40101, REMOTE, 80, TCP_ACK, 9, 101, b"q"));
    assert_eq!(view(&out.data).src(), ip(IN), "no longer translated");
}

#[test]
fn a_mapping_reset_from_outside_is_not_used_from_the_cache() {
    require_priv!();
    let f = masq();
    let nport = cached_masq_flow(&f, 40102);
    let rst = tcp_full(REMOTE, 80, OUT, nport, TCP_RST, 100, 0, b"");
    assert_eq!(f.ingress(&rst), TC_ACT_OK);
    // the mapping and the flow are gone: the inside host's next packet is
    // dropped, never sent out with or without a stale translation
    let out = f.egress_out(&tcp_full(IN, 40102, REMOTE, 80, TCP_ACK, 9, 101, b"q"));
    assert_eq!(out.retval, TC_ACT_SHOT);
}
