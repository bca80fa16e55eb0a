//! A router namespace with zfw on its outside interface (no masquerade):
//! inside clients get out and their replies back, outside-initiated
//! connections are refused unless a rule admits them, and with
//! outbound-filter on, egress rules decide what may leave.

mod common;

use std::time::Duration;

use common::router::*;
use common::*;

const SHORT: Duration = Duration::from_millis(700);
const LONG: Duration = Duration::from_secs(3);

/// RouterLab with a route back from the server to the client subnet (plain
/// routing, no NAT) and zfw loaded on the outside interface.
fn routed() -> RouterLab {
    let lab = RouterLab::new();
    lab.server
        .ip(&["route", "add", "10.81.1.0/24", "via", R_OUTSIDE]);
    lab.server
        .ip(&["-6", "route", "add", "fd81:1::/64", "via", R_OUTSIDE6]);
    lab.load();
    lab
}

#[test]
fn inside_clients_get_out_and_replies_come_back_without_rules() {
    require_priv!();
    let lab = routed();
    let (tport, tpeers) = tcp_echo_peers(&lab.server, "[::]:7000");
    let (uport, _) = udp_echo_peers(&lab.server, "[::]:7001");
    assert!(tcp_echo_ok(
        &lab.client,
        &format!("{R_SERVER}:{tport}"),
        LONG
    ));
    assert!(tcp_echo_ok(
        &lab.client,
        &format!("[{R_SERVER6}]:{tport}"),
        LONG
    ));
    assert!(udp_echo_ok(
        &lab.client,
        &format!("{R_SERVER}:{uport}"),
        LONG
    ));
    assert!(ping_ok(&lab.client, R_SERVER));
    assert!(ping_ok(&lab.client, R_SERVER6));
    // routed, not translated: the server saw the client itself
    assert!(tpeers
        .lock()
        .unwrap()
        .iter()
        .any(|a| a.to_canonical().to_string() == R_CLIENT));
    // the router tracked the forwarded flows on its outside interface
    let ct = lab.zfw(&["conntrack", "list", "--json"]).ok();
    let flows: serde_json::Value = serde_json::from_str(&ct.stdout).unwrap();
    assert!(flows
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["direction"] == "outbound" && f["src"] == R_CLIENT));
}

#[test]
fn outside_initiated_connections_are_refused_unless_a_rule_admits_them() {
    require_priv!();
    let lab = routed();
    let (port, _) = tcp_echo_peers(&lab.client, "[::]:7100");
    assert!(!tcp_echo_ok(
        &lab.server,
        &format!("{R_CLIENT}:{port}"),
        SHORT
    ));
    assert!(!tcp_echo_ok(
        &lab.server,
        &format!("[{R_CLIENT6}]:{port}"),
        SHORT
    ));
    assert!(!ping_ok(&lab.server, R_CLIENT));
    // a rule for the inside host's service admits it (forwarded, not local)
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.81.1.2/32",
        "--proto",
        "tcp",
        "--ports",
        &port.to_string(),
    ])
    .ok();
    assert!(tcp_echo_ok(
        &lab.server,
        &format!("{R_CLIENT}:{port}"),
        LONG
    ));
    assert!(
        !tcp_echo_ok(&lab.server, &format!("[{R_CLIENT6}]:{port}"), SHORT),
        "the IPv4 rule does not open IPv6"
    );
}

#[test]
fn outbound_filter_applies_egress_allow_and_deny_precedence_end_to_end() {
    require_priv!();
    let lab = routed();
    let (a, _) = tcp_echo_peers(&lab.server, "[::]:7200");
    let (b, _) = tcp_echo_peers(&lab.server, "[::]:7201");
    let (u, _) = udp_echo_peers(&lab.server, "[::]:7202");
    lab.zfw(&["iface", "set", OUTSIDE_IF, "--outbound-filter", "on"])
        .ok();
    assert!(
        !tcp_echo_ok(&lab.client, &format!("{R_SERVER}:{a}"), SHORT),
        "no egress rule: nothing leaves"
    );
    lab.zfw(&[
        "rule",
        "add",
        "--egress",
        "--dst",
        "10.81.2.0/24",
        "--proto",
        "tcp",
        "--ports",
        "7200-7201",
    ])
    .ok();
    lab.zfw(&[
        "rule",
        "add",
        "--egress",
        "--dst",
        "10.81.2.2/32",
        "--proto",
        "tcp",
        "--ports",
        "7201",
        "--deny",
    ])
    .ok();
    assert!(
        tcp_echo_ok(&lab.client, &format!("{R_SERVER}:{a}"), LONG),
        "allowed by the /24"
    );
    assert!(
        !tcp_echo_ok(&lab.client, &format!("{R_SERVER}:{b}"), SHORT),
        "the /32 deny wins"
    );
    assert!(
        !udp_echo_ok(&lab.client, &format!("{R_SERVER}:{u}"), SHORT),
        "no udp egress rule"
    );
    // outbound filtering off again: everything leaves
    lab.zfw(&["iface", "set", OUTSIDE_IF, "--outbound-filter", "off"])
        .ok();
    assert!(tcp_echo_ok(&lab.client, &format!("{R_SERVER}:{b}"), LONG));
    assert!(udp_echo_ok(&lab.client, &format!("{R_SERVER}:{u}"), LONG));
}
