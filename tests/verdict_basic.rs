//! Packet tests of the ingress verdict order's foundation (ARCHITECTURE.md
//! §3: non-IP, malformed, IPv6 off, SSH, no state, default drop), as a
//! table of cases run with BPF_PROG_TEST_RUN on the pinned programs.

mod common;

use common::fixture::*;
use common::packet::*;
use common::*;

/// One packet case: interface flags (None: the defaults `load` sets), the
/// frame, the TC action prio 1 returns and every verdict reason counter
/// the ingress chain moved (prio 1 and, when it hands on, prio 2).
struct Case {
    name: &'static str,
    flags: Option<u32>,
    frame: Vec<u8>,
    want: u32,
    reasons: &'static [&'static str],
}

fn case(name: &'static str, frame: Vec<u8>, want: u32, reasons: &'static [&'static str]) -> Case {
    Case {
        name,
        flags: None,
        frame,
        want,
        reasons,
    }
}

fn with(flags: &[&str], mut c: Case) -> Case {
    c.flags = Some(flags.iter().map(|f| Fixture::flag(f)).fold(0, |a, b| a | b));
    c
}

fn plus_default(flags: &[&str], mut c: Case) -> Case {
    c = with(flags, c);
    c.flags = c.flags.map(|f| f | zfw::iface_state::default_flags());
    c
}

fn lldp() -> Vec<u8> {
    ether([1, 0x80, 0xc2, 0, 0, 0xe], CLIENT_MAC, 0x88cc, &[0; 46])
}

fn eapol() -> Vec<u8> {
    ether([1, 0x80, 0xc2, 0, 0, 3], CLIENT_MAC, 0x888e, &[0; 46])
}

fn neighbour_solicitation() -> Vec<u8> {
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
}

fn ssh_syn() -> Vec<u8> {
    tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_SYN)
}

/// `ssh_syn` with byte `at` set to `v` (a malformed header field).
fn mangled(at: usize, v: u8) -> Vec<u8> {
    let mut f = ssh_syn();
    f[at] = v;
    f
}

fn cases() -> Vec<Case> {
    let good = ssh_syn();
    vec![
        case("arp", arp(), TC_ACT_OK, &["pass_arp"]),
        case(
            "lldp, no pass_non_tuple",
            lldp(),
            TC_ACT_SHOT,
            &["drop_non_tuple"],
        ),
        case("eapol, flag off", eapol(), TC_ACT_SHOT, &["drop_non_tuple"]),
        plus_default(
            &["eapol"],
            case("eapol, flag on", eapol(), TC_ACT_OK, &["pass_eapol"]),
        ),
        plus_default(
            &["eapol"],
            case(
                "lldp, eapol flag only",
                lldp(),
                TC_ACT_SHOT,
                &["drop_non_tuple"],
            ),
        ),
        plus_default(
            &["pass_non_tuple"],
            case(
                "lldp, pass_non_tuple",
                lldp(),
                TC_ACT_OK,
                &["pass_non_tuple"],
            ),
        ),
        // the kernel's test runner itself refuses frames that end inside
        // the IPv4 header: cut inside the TCP header, and tot_len > frame
        case(
            "cut inside the tcp header",
            good[..14 + 20 + 10].to_vec(),
            TC_ACT_SHOT,
            &["drop_malformed"],
        ),
        case(
            "tot_len beyond the frame",
            good[..good.len() - 1].to_vec(),
            TC_ACT_SHOT,
            &["drop_malformed"],
        ),
        case("ihl 4", mangled(14, 0x44), TC_ACT_SHOT, &["drop_malformed"]),
        case(
            "doff 4",
            mangled(14 + 20 + 12, 0x40),
            TC_ACT_SHOT,
            &["drop_malformed"],
        ),
        case(
            "ip version 5",
            mangled(14, 0x55),
            TC_ACT_SHOT,
            &["drop_malformed"],
        ),
        case(
            "tcp syn, closed port",
            tcp("10.0.0.1", 40000, "10.0.0.2", 8080, TCP_SYN),
            TC_ACT_SHOT,
            &["drop_no_rule"],
        ),
        case(
            "udp, closed port",
            udp("10.0.0.1", 40000, "10.0.0.2", 53, b"q"),
            TC_ACT_SHOT,
            &["drop_no_rule"],
        ),
        case(
            "tcp6 syn, closed port",
            tcp("fd00::1", 40000, "fd00::2", 8080, TCP_SYN),
            TC_ACT_SHOT,
            &["drop_no_rule"],
        ),
        case(
            "ssh syn to the interface address",
            ssh_syn(),
            TC_ACT_UNSPEC,
            &["pass_ssh", "track_new"],
        ),
        case(
            "ssh6 syn to the interface address",
            tcp("fd00::1", 40000, "fd00::2", 22, TCP_SYN),
            TC_ACT_UNSPEC,
            &["pass_ssh", "track_new"],
        ),
        case(
            "ssh syn, not an interface address",
            tcp("10.0.0.1", 40001, "10.0.0.9", 22, TCP_SYN),
            TC_ACT_SHOT,
            &["drop_no_rule"],
        ),
        with(
            &["ipv6"],
            case(
                "ssh syn, ssh off",
                ssh_syn(),
                TC_ACT_SHOT,
                &["drop_no_rule"],
            ),
        ),
        case(
            "bare ack",
            tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_ACK),
            TC_ACT_SHOT,
            &["drop_no_state"],
        ),
        case(
            "ack psh",
            tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_ACK | TCP_PSH),
            TC_ACT_SHOT,
            &["drop_no_state"],
        ),
        case(
            "fin ack",
            tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_FIN | TCP_ACK),
            TC_ACT_SHOT,
            &["drop_no_state"],
        ),
        case(
            "rst",
            tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_RST),
            TC_ACT_SHOT,
            &["drop_no_state"],
        ),
        case(
            "syn ack",
            tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_SYN | TCP_ACK),
            TC_ACT_SHOT,
            &["drop_no_state"],
        ),
        with(
            &["ssh"],
            case(
                "neighbour solicitation, ipv6 off",
                neighbour_solicitation(),
                TC_ACT_OK,
                &["pass_nd"],
            ),
        ),
        with(
            &["ssh"],
            case(
                "ssh6 syn, ipv6 off",
                tcp("fd00::1", 40000, "fd00::2", 22, TCP_SYN),
                TC_ACT_SHOT,
                &["drop_ipv6_off"],
            ),
        ),
        with(
            &["ssh"],
            case(
                "ssh syn, ipv6 off",
                ssh_syn(),
                TC_ACT_UNSPEC,
                &["pass_ssh", "track_new"],
            ),
        ),
    ]
}

/// Each case on a fresh fixture: the action and the exact reasons.
#[test]
fn stateless_packets_get_their_action_and_reason() {
    require_priv!();
    for c in cases() {
        let f = Fixture::new();
        if let Some(flags) = c.flags {
            f.set_flags(flags);
        }
        let (action, reasons) = f.decide(&c.frame);
        assert_eq!(action, c.want, "{}: action", c.name);
        assert_eq!(reasons, c.reasons, "{}: reasons", c.name);
    }
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
