//! Packet tests of the ingress verdict order's foundation (steps 1-4, 6, 8
//! default), run with BPF_PROG_TEST_RUN on the pinned programs.

mod common;

use common::fixture::*;
use common::packet::*;
use common::*;

#[test]
fn arp_always_passes() {
    require_priv!();
    let f = Fixture::new();
    assert_eq!(f.ingress(&arp()), TC_ACT_OK);
    assert_eq!(f.counter("pass_arp"), 1);
}

#[test]
fn non_ip_needs_pass_non_tuple_and_eapol_its_flag() {
    require_priv!();
    let f = Fixture::new();
    let lldp = ether([1, 0x80, 0xc2, 0, 0, 0xe], CLIENT_MAC, 0x88cc, &[0; 46]);
    let eapol = ether([1, 0x80, 0xc2, 0, 0, 3], CLIENT_MAC, 0x888e, &[0; 46]);
    assert_eq!(f.ingress(&lldp), TC_ACT_SHOT);
    assert_eq!(f.ingress(&eapol), TC_ACT_SHOT);
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("eapol"));
    assert_eq!(f.ingress(&eapol), TC_ACT_OK);
    assert_eq!(f.ingress(&lldp), TC_ACT_SHOT);
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("pass_non_tuple"));
    assert_eq!(f.ingress(&lldp), TC_ACT_OK);
}

#[test]
fn truncated_and_malformed_ipv4_drop() {
    require_priv!();
    let f = Fixture::new();
    let good = tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_SYN);
    // cut inside the TCP header, and tot_len > frame (the kernel's test
    // runner itself refuses frames that end inside the IPv4 header)
    for cut in [14 + 20 + 10, good.len() - 1] {
        assert_eq!(f.ingress(&good[..cut]), TC_ACT_SHOT, "cut at {cut}");
    }
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44; // ihl 4 < 5
    assert_eq!(f.ingress(&bad_ihl), TC_ACT_SHOT);
    let mut bad_doff = good.clone();
    bad_doff[14 + 20 + 12] = 0x40; // doff 4 < 5
    assert_eq!(f.ingress(&bad_doff), TC_ACT_SHOT);
    let mut bad_ver = good.clone();
    bad_ver[14] = 0x55;
    assert_eq!(f.ingress(&bad_ver), TC_ACT_SHOT);
    assert!(f.counter("drop_malformed") >= 5);
    // the untouched frame is fine (SSH to the interface address)
    assert!(f.allowed(&good));
}

#[test]
fn syn_to_closed_port_is_dropped_by_default() {
    require_priv!();
    let f = Fixture::new();
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40000, "10.0.0.2", 8080, TCP_SYN)),
        TC_ACT_SHOT
    );
    assert_eq!(
        f.ingress(&udp("10.0.0.1", 40000, "10.0.0.2", 53, b"q")),
        TC_ACT_SHOT
    );
    assert_eq!(
        f.ingress(&tcp("fd00::1", 40000, "fd00::2", 8080, TCP_SYN)),
        TC_ACT_SHOT
    );
    assert_eq!(f.counter("drop_no_rule"), 3);
}

#[test]
fn ssh_to_interface_address_passes_unless_off() {
    require_priv!();
    let f = Fixture::new();
    let syn = tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_SYN);
    let syn6 = tcp("fd00::1", 40000, "fd00::2", 22, TCP_SYN);
    assert_eq!(f.ingress(&syn), TC_ACT_UNSPEC, "SSH SYN goes on to prio 2");
    assert_eq!(f.ingress(&syn6), TC_ACT_UNSPEC);
    // not an interface address: no SSH exception
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40001, "10.0.0.9", 22, TCP_SYN)),
        TC_ACT_SHOT
    );
    f.set_flags(Fixture::flag("ipv6"));
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40002, "10.0.0.2", 22, TCP_SYN)),
        TC_ACT_SHOT
    );
}

#[test]
fn bare_ack_without_state_is_dropped() {
    require_priv!();
    let f = Fixture::new();
    for flags in [
        TCP_ACK,
        TCP_ACK | TCP_PSH,
        TCP_FIN | TCP_ACK,
        TCP_RST,
        TCP_SYN | TCP_ACK,
    ] {
        assert_eq!(
            f.ingress(&tcp("10.0.0.1", 40000, "10.0.0.2", 22, flags)),
            TC_ACT_SHOT,
            "flags {flags:#x}"
        );
    }
    assert_eq!(f.counter("drop_no_state"), 5);
}

#[test]
fn ipv6_off_drops_all_but_neighbour_discovery() {
    require_priv!();
    let f = Fixture::new();
    f.set_flags(Fixture::flag("ssh")); // ipv6 off
    let ns = {
        let (s, d) = (
            "fe80::1".parse().unwrap(),
            "ff02::1:ff00:2".parse().unwrap(),
        );
        let m = icmp_message(s, d, 135, 0, [0; 4], &[0; 16]);
        ether(
            [0x33, 0x33, 0xff, 0, 0, 2],
            CLIENT_MAC,
            0x86dd,
            &ip_packet(s, d, 58, &m),
        )
    };
    assert_eq!(f.ingress(&ns), TC_ACT_OK);
    assert_eq!(
        f.ingress(&tcp("fd00::1", 40000, "fd00::2", 22, TCP_SYN)),
        TC_ACT_SHOT
    );
    assert_eq!(f.counter("drop_ipv6_off"), 1);
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_SYN)),
        TC_ACT_UNSPEC
    );
}

#[test]
fn ssh_flow_is_tracked_by_prio2_and_then_takes_the_fast_path() {
    require_priv!();
    let f = Fixture::new();
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_SYN)),
        TC_ACT_UNSPEC
    );
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::TCP_INGRESS_UNASSURED_MAP)
            .unwrap(),
        1,
        "a new flow starts unassured"
    );
    // the reply leaves through egress, then the client's ACK is a known flow
    assert_eq!(
        f.egress(&tcp("10.0.0.2", 22, "10.0.0.1", 40000, TCP_SYN | TCP_ACK)),
        TC_ACT_OK
    );
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_ACK)),
        TC_ACT_OK
    );
    assert_eq!(f.counter("pass_known_flow"), 1);
    // the completed handshake assured the flow: it moved to the main table
    let maps = f.root.maps();
    assert_eq!(maps.count(&zfw::maps::defs::TCP_INGRESS_MAP).unwrap(), 1);
    assert_eq!(
        maps.count(&zfw::maps::defs::TCP_INGRESS_UNASSURED_MAP)
            .unwrap(),
        0
    );
}
