//! Masquerade end to end: client -> router (zfw on its outside veth,
//! masquerade on) -> server that has no route back to the client subnet.
//! Real sockets, real kernel forwarding.

mod common;

use std::time::Duration;

use common::router::*;
use common::*;

const SHORT: Duration = Duration::from_millis(700);
const LONG: Duration = Duration::from_secs(5);

#[test]
fn tcp_udp_and_ping_are_masqueraded_and_the_server_sees_only_the_router() {
    require_priv!();
    let lab = RouterLab::new();
    let (tport, tpeers) = tcp_echo_peers(&lab.server, "[::]:0");
    let (uport, upeers) = udp_echo_peers(&lab.server, "0.0.0.0:0");
    lab.load();
    // no route back to the client: nothing works without masquerade
    assert!(!tcp_echo_ok(
        &lab.client,
        &format!("{R_SERVER}:{tport}"),
        SHORT
    ));
    assert!(!ping_ok(&lab.client, R_SERVER));

    lab.set_masquerade(true);
    assert!(
        tcp_echo_ok(&lab.client, &format!("{R_SERVER}:{tport}"), LONG),
        "TCP through the masquerading router"
    );
    assert!(
        udp_echo_ok(&lab.client, &format!("{R_SERVER}:{uport}"), LONG),
        "UDP through the masquerading router"
    );
    assert!(ping_ok(&lab.client, R_SERVER), "ping through the router");
    assert!(only_peer(&tpeers, &format!("::ffff:{R_OUTSIDE}")) || only_peer(&tpeers, R_OUTSIDE));
    assert!(only_peer(&upeers, R_OUTSIDE), "UDP peer is the router");

    // the mappings are visible; the inside address only on the inside column
    let r = lab.zfw(&["masquerade", "list", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert!(list.iter().any(|e| e["proto"] == "udp"
        && e["inside"].as_str().unwrap().starts_with(R_CLIENT)
        && e["outside"].as_str().unwrap().starts_with(R_OUTSIDE)));
    assert!(list.iter().any(|e| e["proto"] == "icmp"));
    let table = lab.zfw(&["masquerade", "list"]).ok();
    assert!(table.stdout.contains("ro0"), "{}", table.stdout);
    // dump decodes both directions of the mapping
    let d = lab
        .zfw(&[
            "dump",
            "--map",
            "masquerade_map",
            "--map",
            "masquerade_reverse_map",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let fwd = v["maps"]["masquerade_map"]["entries"].as_array().unwrap();
    assert!(fwd
        .iter()
        .any(|e| e["inside"].as_str().unwrap_or("").starts_with(R_CLIENT)
            && e["iface"] == OUTSIDE_IF));
    let rev = v["maps"]["masquerade_reverse_map"]["entries"]
        .as_array()
        .unwrap();
    assert!(rev.iter().any(|e| e["translated"]
        .as_str()
        .unwrap_or("")
        .starts_with(R_OUTSIDE)));
    // nothing is stale yet
    let gc = lab.zfw(&["gc"]).ok();
    assert!(gc.stdout.contains("removed 0"), "{}", gc.stdout);
}

#[test]
fn the_routers_own_traffic_keeps_working_with_masquerade_on() {
    require_priv!();
    let lab = RouterLab::new();
    let (tport, tpeers) = tcp_echo_peers(&lab.server, "0.0.0.0:0");
    let ssh = tcp_listen(&lab.router, "0.0.0.0:22").serve_echo();
    lab.load();
    lab.set_masquerade(true);
    assert!(tcp_echo_ok(
        &lab.router,
        &format!("{R_SERVER}:{tport}"),
        LONG
    ));
    assert!(only_peer(&tpeers, R_OUTSIDE));
    assert!(ping_ok(&lab.router, R_SERVER));
    // traffic to the router itself (SSH on the outside address)
    assert!(tcp_echo_ok(
        &lab.server,
        &format!("{R_OUTSIDE}:{ssh}"),
        LONG
    ));
    let r = lab.zfw(&["masquerade", "list", "--json"]).ok();
    assert_eq!(r.stdout.trim(), "[]", "no mapping for the host's own flows");
}

#[test]
fn two_hundred_parallel_connections_all_succeed() {
    require_priv!();
    let lab = RouterLab::new();
    let (tport, tpeers) = tcp_echo_peers(&lab.server, "0.0.0.0:0");
    lab.load();
    lab.set_masquerade(true);
    let dst = format!("{R_SERVER}:{tport}");
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let dst = dst.clone();
            lab.client.spawn(move || {
                use std::io::{Read, Write};
                let addr: std::net::SocketAddr = dst.parse().unwrap();
                let Ok(mut s) =
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(15))
                else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
                if s.write_all(b"zfw-hello").is_err() {
                    return false;
                }
                let mut buf = [0u8; 16];
                matches!(s.read(&mut buf), Ok(9))
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(ok, 200, "all 200 connections echo");
    assert_eq!(tpeers.lock().unwrap().len(), 200);
    assert!(only_peer(&tpeers, R_OUTSIDE));
}

#[test]
fn ipv6_static_pat_tcp_udp_and_ping() {
    require_priv!();
    let lab = RouterLab::new();
    let (tport, tpeers) = tcp_echo_peers(&lab.server, "[::]:0");
    let (uport, upeers) = udp_echo_peers(&lab.server, "[::]:0");
    lab.load();
    assert!(!tcp_echo_ok(
        &lab.client,
        &format!("[{R_SERVER6}]:{tport}"),
        SHORT
    ));
    lab.set_masquerade(true);
    assert!(tcp_echo_ok(
        &lab.client,
        &format!("[{R_SERVER6}]:{tport}"),
        LONG
    ));
    assert!(udp_echo_ok(
        &lab.client,
        &format!("[{R_SERVER6}]:{uport}"),
        LONG
    ));
    assert!(ping_ok(&lab.client, R_SERVER6));
    assert!(only_peer(&tpeers, R_OUTSIDE6));
    assert!(only_peer(&upeers, R_OUTSIDE6));
}

#[test]
fn icmp_port_unreachable_reaches_the_inside_client() {
    require_priv!();
    let lab = RouterLab::new();
    lab.load();
    lab.set_masquerade(true);
    // a connected UDP socket learns of the closed port through the
    // translated ICMP error: ECONNREFUSED instead of a timeout
    let refused = lab.client.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(format!("{R_SERVER}:9")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send(b"anyone?").unwrap();
        let mut buf = [0u8; 16];
        match s.recv(&mut buf) {
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            Ok(_) => false,
        }
    });
    assert!(refused, "port unreachable translated back to the client");
}

#[test]
fn masquerade_without_egress_hook_is_reported_and_cli_errors_are_one_line() {
    require_priv!();
    let lab = RouterLab::new();
    lab.zfw(&["load", "--iface", OUTSIDE_IF, "--no-egress"])
        .ok();
    // the CLI refuses, names the missing hook, and changes nothing
    let r = lab.zfw(&["iface", "set", OUTSIDE_IF, "--masquerade", "on"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("needs the egress hook"), "{}", r.stderr);
    let shown = lab.zfw(&["iface", "show", OUTSIDE_IF, "--json"]).ok();
    assert!(
        shown.stdout.contains("\"masquerade\": false"),
        "{}",
        shown.stdout
    );
    lab.set_masquerade(true);
    let r = lab.zfw(&["masquerade", "list"]).ok();
    assert!(
        r.stderr.contains("masquerade on ro0 needs the egress hook"),
        "{}",
        r.stderr
    );
    // bad usage: exit 2, one line; nothing loaded: exit 1
    let bad = lab.zfw(&["masquerade", "show"]);
    assert_eq!(bad.code, 2);
    let empty = BpfRoot::new();
    let r = zfw(None, &empty, &["masquerade", "list"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("not loaded"), "{}", r.stderr);
    let r = zfw(None, &empty, &["gc"]);
    assert_eq!(r.code, 1);
}

#[test]
fn translations_from_the_flow_cache_carry_checksums_the_hosts_verify() {
    require_priv!();
    let lab = RouterLab::new();
    // No checksum offload on the router's interfaces: every packet it
    // forwards gets its checksum computed in software from what zfw left in
    // the header (for the CHECKSUM_PARTIAL packets veth delivers: the
    // pseudo-header sum the fast path updates), and the hosts verify it.
    for dev in ["ri0", OUTSIDE_IF] {
        let out = lab.router.exec("ethtool", &["-K", dev, "tx", "off"]);
        assert!(
            out.status.success(),
            "ethtool -K {dev} tx off: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tport = tcp_listen(&lab.server, "[::]:0").serve_echo_forever();
    lab.load();
    lab.set_masquerade(true);
    let target: std::net::SocketAddr = format!("{R_SERVER}:{tport}").parse().unwrap();
    let mut conn = lab
        .client
        .enter(move || std::net::TcpStream::connect_timeout(&target, LONG))
        .expect("connects through the router");
    // after the first packets each way, the rest are translated from the
    // flow cache
    for i in 0..50 {
        assert!(
            echo_once(&mut conn, format!("message {i}").as_bytes()),
            "echo {i}"
        );
    }
    // no segment arrived with a bad checksum, none had to be sent again
    for ns in [&lab.client, &lab.server] {
        assert_eq!(tcp_stat(ns, "InCsumErrors"), 0, "bad checksums");
        assert_eq!(tcp_stat(ns, "RetransSegs"), 0, "retransmissions");
    }
    let d = lab.zfw(&["dump", "--map", "flow_cache_map"]).ok();
    let v: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let slots = v["maps"]["flow_cache_map"]["entries"].as_array().unwrap();
    let nat_pending: u64 = slots
        .iter()
        .filter(|s| !s["translate_to"].is_null())
        .map(|s| s["pending_packets"].as_u64().unwrap())
        .sum();
    assert!(
        nat_pending > 0,
        "packets were translated from the cache: {slots:?}"
    );
}

/// A counter of the Tcp line of /proc/net/snmp in namespace `ns`.
fn tcp_stat(ns: &Netns, name: &str) -> u64 {
    let out = ns.exec("cat", &["/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let i = names.split_whitespace().position(|n| n == name).unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}
