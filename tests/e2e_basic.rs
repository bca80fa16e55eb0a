//! End to end: a client namespace talks to a server namespace protected by
//! `zfw load`; real sockets, real kernel.

mod common;

use std::time::Duration;

use common::*;

const SHORT: Duration = Duration::from_millis(700);
const LONG: Duration = Duration::from_secs(3);

#[test]
fn default_deny_except_ssh_and_host_initiated_traffic_works() {
    require_priv!();
    let lab = Lab::new();
    // [::] listeners are dual-stack: one socket serves IPv4 and IPv6
    let web = tcp_listen(&lab.server, "[::]:8080").serve_echo();
    let ssh = tcp_listen(&lab.server, "[::]:22").serve_echo();
    let client_srv = tcp_listen(&lab.client, "0.0.0.0:9000").serve_echo();
    // before zfw: everything reachable
    assert!(tcp_echo_ok(
        &lab.client,
        &format!("{SERVER_IP}:{web}"),
        LONG
    ));

    lab.load();
    assert!(
        !tcp_echo_ok(&lab.client, &format!("{SERVER_IP}:{web}"), SHORT),
        "8080 must be blocked"
    );
    assert!(
        tcp_echo_ok(&lab.client, &format!("{SERVER_IP}:{ssh}"), LONG),
        "SSH to the interface address passes"
    );
    assert!(
        tcp_echo_ok(&lab.server, &format!("{CLIENT_IP}:{client_srv}"), LONG),
        "the protected host's own outbound connection works"
    );
    // IPv6 the same
    assert!(!tcp_echo_ok(
        &lab.client,
        &format!("[{SERVER_IP6}]:{web}"),
        SHORT
    ));
    assert!(tcp_echo_ok(
        &lab.client,
        &format!("[{SERVER_IP6}]:{ssh}"),
        LONG
    ));

    // unload: reachable again
    lab.zfw(&["unload", "--all"]).ok();
    assert!(tcp_echo_ok(
        &lab.client,
        &format!("{SERVER_IP}:{web}"),
        LONG
    ));
}

#[test]
fn udp_and_ping_default_deny_and_host_initiated_replies() {
    require_priv!();
    let lab = Lab::new();
    let port = udp_echo_server(&lab.server, "0.0.0.0:5353");
    let cport = udp_echo_server(&lab.client, "0.0.0.0:5400");
    lab.load();
    assert!(
        !udp_echo_ok(&lab.client, &format!("{SERVER_IP}:{port}"), SHORT),
        "inbound UDP blocked"
    );
    assert!(
        udp_echo_ok(&lab.server, &format!("{CLIENT_IP}:{cport}"), LONG),
        "host-initiated UDP works"
    );
    assert!(
        !ping_ok(&lab.client, SERVER_IP),
        "echo request needs icmp-echo"
    );
    assert!(ping_ok(&lab.server, CLIENT_IP), "host-initiated ping works");
}
