//! Egress rules on interfaces with outbound-filter on, and what a rule
//! change does to flows that are already established (packet tests).

mod common;

use common::fixture::*;
use common::packet::*;
use common::*;

const C: &str = "10.0.0.1"; // remote
const S: &str = "10.0.0.2"; // this host

fn outbound_filter(f: &Fixture) {
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("outbound_filter"));
}

#[test]
fn outbound_filter_honours_egress_rule_precedence() {
    require_priv!();
    let f = Fixture::new();
    let syn = |dst: &str, port: u16| tcp(S, 50000, dst, port, TCP_SYN);
    // without outbound filtering everything leaves
    assert_eq!(f.egress(&syn("192.0.2.10", 443)), TC_ACT_OK);
    outbound_filter(&f);
    assert_eq!(
        f.egress(&syn("192.0.2.11", 443)),
        TC_ACT_SHOT,
        "no egress rule: drop"
    );
    f.rule(&[
        "add",
        "--egress",
        "--dst",
        "192.0.2.0/24",
        "--proto",
        "tcp",
        "--ports",
        "443",
    ]);
    f.rule(&[
        "add",
        "--egress",
        "--dst",
        "192.0.2.128/25",
        "--proto",
        "tcp",
        "--ports",
        "443",
        "--deny",
    ]);
    assert_eq!(
        f.egress(&syn("192.0.2.12", 443)),
        TC_ACT_OK,
        "allowed by the /24"
    );
    assert_eq!(
        f.egress(&syn("192.0.2.200", 443)),
        TC_ACT_SHOT,
        "the longer /25 deny wins"
    );
    assert_eq!(
        f.egress(&syn("192.0.2.12", 80)),
        TC_ACT_SHOT,
        "port outside the range"
    );
    assert_eq!(
        f.egress(&udp(S, 5353, "192.0.2.12", 443, b"q")),
        TC_ACT_SHOT,
        "udp has no rule"
    );
    // the allowed flow is tracked: its reply comes back with default-deny ingress
    assert_eq!(
        f.ingress(&tcp("192.0.2.12", 443, S, 50000, TCP_SYN | TCP_ACK)),
        TC_ACT_OK
    );
    // ingress rules do not open egress
    f.rule(&[
        "add",
        "--dst",
        "192.0.2.0/24",
        "--proto",
        "udp",
        "--ports",
        "53",
    ]);
    assert_eq!(f.egress(&udp(S, 5353, "192.0.2.12", 53, b"q")), TC_ACT_SHOT);
    assert!(f.counter("drop_egress_rule") >= 5);
}

#[test]
fn outbound_filter_still_lets_replies_of_admitted_inbound_flows_out() {
    require_priv!();
    let f = Fixture::new();
    outbound_filter(&f);
    // SSH in, reply out: no egress rule needed for the reply direction
    assert_eq!(f.ingress(&tcp(C, 40000, S, 22, TCP_SYN)), TC_ACT_UNSPEC);
    assert_eq!(
        f.egress(&tcp(S, 22, C, 40000, TCP_SYN | TCP_ACK)),
        TC_ACT_OK
    );
    // ARP and ICMPv6 neighbour discovery leave regardless
    assert_eq!(f.egress(&arp()), TC_ACT_OK);
    let (s6, d6) = (
        "fe80::2".parse().unwrap(),
        "ff02::1:ff00:1".parse().unwrap(),
    );
    let na = icmp_message(s6, d6, 136, 0, [0; 4], &[0; 16]);
    let na = ether(
        [0x33, 0x33, 0xff, 0, 0, 1],
        SERVER_MAC,
        0x86dd,
        &ip_packet(s6, d6, zfw::net::IPPROTO_ICMPV6, &na),
    );
    assert_eq!(f.egress(&na), TC_ACT_OK);
}

#[test]
fn a_deny_added_later_ends_an_established_inbound_flow_but_other_changes_do_not() {
    require_priv!();
    let f = Fixture::new();
    f.rule(&[
        "add",
        "--dst",
        "10.0.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        "8000-8100",
    ]);
    let c_ack = |port: u16| tcp_full(C, 40000, S, port, TCP_ACK, 101, 501, b"x");
    for port in [8080u16, 8081] {
        assert_eq!(
            f.ingress(&tcp_full(C, 40000, S, port, TCP_SYN, 100, 0, &[])),
            TC_ACT_UNSPEC
        );
        assert_eq!(
            f.egress(&tcp_full(
                S,
                port,
                C,
                40000,
                TCP_SYN | TCP_ACK,
                500,
                101,
                &[]
            )),
            TC_ACT_OK
        );
        assert_eq!(f.ingress(&c_ack(port)), TC_ACT_OK);
    }
    // an unrelated rule change: both flows keep running
    f.rule(&[
        "add",
        "--dst",
        "10.9.0.0/16",
        "--proto",
        "udp",
        "--ports",
        "53",
    ]);
    assert_eq!(f.ingress(&c_ack(8080)), TC_ACT_OK);
    // removing the allow rule: established flows keep running, new ones are refused
    f.rule(&[
        "del",
        "--dst",
        "10.0.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        "8000-8100",
    ]);
    assert_eq!(f.ingress(&c_ack(8080)), TC_ACT_OK);
    assert_eq!(
        f.ingress(&tcp_full(C, 40001, S, 8080, TCP_SYN, 1, 0, &[])),
        TC_ACT_SHOT
    );
    // an explicit deny that matches 8081 ends that flow only
    f.rule(&[
        "add",
        "--dst",
        "10.0.0.2/32",
        "--proto",
        "tcp",
        "--ports",
        "8081",
        "--deny",
    ]);
    assert_eq!(f.ingress(&c_ack(8081)), TC_ACT_SHOT);
    assert_eq!(f.ingress(&c_ack(8081)), TC_ACT_SHOT, "the flow is gone");
    assert_eq!(f.ingress(&c_ack(8080)), TC_ACT_OK);
}

#[test]
fn an_egress_deny_added_later_ends_an_established_outbound_flow() {
    require_priv!();
    let f = Fixture::new();
    outbound_filter(&f);
    f.rule(&[
        "add",
        "--egress",
        "--dst",
        "192.0.2.0/24",
        "--proto",
        "tcp",
        "--ports",
        "443",
    ]);
    let out = tcp_full(S, 50000, "192.0.2.12", 443, TCP_SYN, 10, 0, &[]);
    assert_eq!(f.egress(&out), TC_ACT_OK);
    let data = tcp_full(S, 50000, "192.0.2.12", 443, TCP_ACK, 11, 901, b"x");
    assert_eq!(f.egress(&data), TC_ACT_OK);
    f.rule(&[
        "add",
        "--egress",
        "--dst",
        "192.0.2.12/32",
        "--proto",
        "tcp",
        "--ports",
        "443",
        "--deny",
    ]);
    assert_eq!(f.egress(&data), TC_ACT_SHOT);
    assert!(f
        .root
        .maps()
        .entries::<zfw::skel::types::zfw_flow_key, zfw::skel::types::zfw_flow>(
            &zfw::maps::defs::TCP_MAP
        )
        .unwrap()
        .is_empty());
}
