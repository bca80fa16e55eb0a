//! End to end: rules, interface settings and TPROXY set with the `zfw`
//! binary in a server namespace, exercised by real clients over veth.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use common::*;

const SHORT: Duration = Duration::from_millis(700);
const LONG: Duration = Duration::from_secs(3);

#[test]
fn tcp_and_udp_rules_allow_and_block_ipv4_and_ipv6() {
    require_priv!();
    let lab = Lab::new();
    let web = tcp_listen(&lab.server, "[::]:0").serve_echo();
    let dns = udp_echo_server(&lab.server, "0.0.0.0:0");
    let dns6 = udp_echo_server(&lab.server, "[::]:0");
    lab.load();
    let web4 = format!("{SERVER_IP}:{web}");
    let web6 = format!("[{SERVER_IP6}]:{web}");
    assert!(!tcp_echo_ok(&lab.client, &web4, SHORT));
    assert!(!udp_echo_ok(
        &lab.client,
        &format!("{SERVER_IP}:{dns}"),
        SHORT
    ));

    let p = web.to_string();
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.77.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        &p,
    ])
    .ok();
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.77.0.2/32",
        "--proto",
        "udp",
        "--ports",
        &dns.to_string(),
    ])
    .ok();
    assert!(tcp_echo_ok(&lab.client, &web4, LONG), "tcp allowed");
    assert!(
        udp_echo_ok(&lab.client, &format!("{SERVER_IP}:{dns}"), LONG),
        "udp allowed"
    );
    assert!(!tcp_echo_ok(&lab.client, &web6, SHORT), "no IPv6 rule yet");
    assert!(!udp_echo_ok(
        &lab.client,
        &format!("[{SERVER_IP6}]:{dns6}"),
        SHORT
    ));

    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "fd77::/64",
        "--proto",
        "tcp",
        "--ports",
        &p,
    ])
    .ok();
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "fd77::2/128",
        "--src",
        "fd77::1/128",
        "--proto",
        "udp",
        "--ports",
        &dns6.to_string(),
    ])
    .ok();
    assert!(tcp_echo_ok(&lab.client, &web6, LONG), "IPv6 tcp allowed");
    assert!(udp_echo_ok(
        &lab.client,
        &format!("[{SERVER_IP6}]:{dns6}"),
        LONG
    ));

    // a more specific deny blocks new connections again
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.77.0.2/32",
        "--proto",
        "tcp",
        "--ports",
        &p,
        "--deny",
    ])
    .ok();
    assert!(
        !tcp_echo_ok(&lab.client, &web4, SHORT),
        "deny /32 beats allow /24"
    );
    lab.zfw(&[
        "rule",
        "del",
        "--dst",
        "10.77.0.2/32",
        "--proto",
        "tcp",
        "--ports",
        &p,
    ])
    .ok();
    assert!(tcp_echo_ok(&lab.client, &web4, LONG));
}

#[test]
fn source_prefixes_filter_clients() {
    require_priv!();
    let lab = Lab::new();
    let web = tcp_listen(&lab.server, "0.0.0.0:0").serve_echo();
    lab.load();
    let p = web.to_string();
    let addr = format!("{SERVER_IP}:{web}");
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.77.0.2/32",
        "--src",
        "10.77.0.128/25",
        "--proto",
        "tcp",
        "--ports",
        &p,
    ])
    .ok();
    assert!(
        !tcp_echo_ok(&lab.client, &addr, SHORT),
        "client 10.77.0.1 is not in .128/25"
    );
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.77.0.2/32",
        "--src",
        "10.77.0.1/32",
        "--proto",
        "tcp",
        "--ports",
        &p,
    ])
    .ok();
    assert!(tcp_echo_ok(&lab.client, &addr, LONG));
}

#[test]
fn icmp_echo_and_ssh_settings() {
    require_priv!();
    let lab = Lab::new();
    let ssh = tcp_listen(&lab.server, "[::]:22").serve_echo();
    assert_eq!(ssh, 22);
    lab.load();
    assert!(!ping_ok(&lab.client, SERVER_IP));
    lab.zfw(&["iface", "set", "srv0", "--icmp-echo", "on"]).ok();
    assert!(ping_ok(&lab.client, SERVER_IP), "echo on");
    assert!(ping_ok(&lab.client, SERVER_IP6), "echo on, IPv6");
    lab.zfw(&["iface", "set", "all", "--icmp-echo", "off"]).ok();
    assert!(!ping_ok(&lab.client, SERVER_IP), "echo off again");

    assert!(
        tcp_echo_ok(&lab.client, &format!("{SERVER_IP}:22"), LONG),
        "SSH on by default"
    );
    lab.zfw(&["iface", "set", "srv0", "--ssh", "off"]).ok();
    assert!(
        !tcp_echo_ok(&lab.client, &format!("{SERVER_IP}:22"), SHORT),
        "--ssh off"
    );
    assert!(!tcp_echo_ok(
        &lab.client,
        &format!("[{SERVER_IP6}]:22"),
        SHORT
    ));
    let show = lab.zfw(&["iface", "show", "srv0", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(v[0]["settings"]["ssh"], false);
    assert_eq!(v[0]["settings"]["icmp_echo"], false);
    assert!(v[0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == SERVER_IP));
}

#[test]
fn ipv6_off_blocks_ipv6_but_keeps_neighbour_discovery() {
    require_priv!();
    let lab = Lab::new();
    let web = tcp_listen(&lab.server, "[::]:0").serve_echo();
    lab.load();
    let p = web.to_string();
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "fd77::/64",
        "--proto",
        "tcp",
        "--ports",
        &p,
    ])
    .ok();
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.77.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        &p,
    ])
    .ok();
    lab.zfw(&["iface", "set", "srv0", "--ipv6", "off"]).ok();
    // flush neighbours: the client must resolve the server again (ND passes)
    lab.client.ip(&["-6", "neigh", "flush", "dev", "cli0"]);
    assert!(!tcp_echo_ok(
        &lab.client,
        &format!("[{SERVER_IP6}]:{web}"),
        SHORT
    ));
    assert!(tcp_echo_ok(
        &lab.client,
        &format!("{SERVER_IP}:{web}"),
        LONG
    ));
    lab.zfw(&["iface", "set", "srv0", "--ipv6", "on"]).ok();
    assert!(
        tcp_echo_ok(&lab.client, &format!("[{SERVER_IP6}]:{web}"), LONG),
        "ND kept working"
    );
}

fn local_routes(ns: &Netns, v6: bool) -> String {
    let fam = if v6 { "-6" } else { "-4" };
    String::from_utf8_lossy(
        &ns.exec("ip", &[fam, "route", "show", "table", "local"])
            .stdout,
    )
    .into_owned()
}

#[test]
fn tproxy_hands_tcp_for_a_non_local_prefix_to_a_loopback_listener() {
    require_priv!();
    let lab = Lab::new();
    lab.client
        .ip(&["route", "add", "10.99.0.0/24", "via", SERVER_IP]);
    lab.client
        .ip(&["-6", "route", "add", "fd99::/64", "via", SERVER_IP6]);
    let l4 = lab
        .server
        .enter(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let l6 = lab.server.enter(|| TcpListener::bind("[::1]:0").unwrap());
    let (p4, p6) = (
        l4.local_addr().unwrap().port(),
        l6.local_addr().unwrap().port(),
    );
    let seen = |l: TcpListener| {
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let local = s.local_addr().unwrap();
            use std::io::{Read, Write};
            let mut b = [0u8; 16];
            let n = s.read(&mut b).unwrap();
            s.write_all(&b[..n]).unwrap();
            local
        })
    };
    let (h4, h6) = (seen(l4), seen(l6));
    lab.load();
    assert!(
        !tcp_echo_ok(&lab.client, "10.99.0.5:80", SHORT),
        "no rule: dropped"
    );
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.99.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        "80",
        "--tproxy-port",
        &p4.to_string(),
        "--service-id",
        "web",
    ])
    .ok();
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "fd99::/64",
        "--proto",
        "tcp",
        "--ports",
        "80",
        "--tproxy-port",
        &p6.to_string(),
    ])
    .ok();
    assert!(
        local_routes(&lab.server, false).contains("10.99.0.0/24"),
        "local route installed"
    );
    assert!(local_routes(&lab.server, true).contains("fd99::/64"));
    assert!(
        tcp_echo_ok(&lab.client, "10.99.0.5:80", LONG),
        "TPROXY to 127.0.0.1:{p4}"
    );
    assert_eq!(
        h4.join().unwrap(),
        "10.99.0.5:80".parse::<SocketAddr>().unwrap(),
        "original destination kept"
    );
    assert!(
        tcp_echo_ok(&lab.client, "[fd99::7]:80", LONG),
        "TPROXY to [::1]:{p6}"
    );
    assert_eq!(
        h6.join().unwrap(),
        "[fd99::7]:80".parse::<SocketAddr>().unwrap()
    );
    let list = lab.zfw(&["rule", "list"]).ok().stdout;
    assert!(
        list.contains("TPROXY") && list.contains(&format!("-> {p4}")) && list.contains("web"),
        "{list}"
    );
    // adding again is a no-op; the route stays single
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.99.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        "80",
        "--tproxy-port",
        &p4.to_string(),
        "--service-id",
        "web",
    ])
    .ok();
    assert_eq!(
        local_routes(&lab.server, false)
            .matches("10.99.0.0/24")
            .count(),
        1
    );
    // the last rule needing the route takes it along
    lab.zfw(&[
        "rule",
        "del",
        "--dst",
        "10.99.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        "80",
    ])
    .ok();
    assert!(!local_routes(&lab.server, false).contains("10.99.0.0/24"));
    lab.zfw(&["rule", "flush"]).ok();
    assert!(!local_routes(&lab.server, true).contains("fd99::/64"));
    // unload --all takes the routes of live TPROXY rules along
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.99.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        "80",
        "--tproxy-port",
        &p4.to_string(),
    ])
    .ok();
    assert!(local_routes(&lab.server, false).contains("10.99.0.0/24"));
    lab.zfw(&["unload", "--all"]).ok();
    assert!(!local_routes(&lab.server, false).contains("10.99.0.0/24"));
}

#[test]
fn tproxy_hands_udp_to_a_loopback_listener() {
    require_priv!();
    let lab = Lab::new();
    lab.client
        .ip(&["route", "add", "10.98.0.0/24", "via", SERVER_IP]);
    let s = lab.server.enter(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    let port = s.local_addr().unwrap().port();
    s.set_read_timeout(Some(LONG)).unwrap();
    lab.load();
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.98.0.0/24",
        "--proto",
        "udp",
        "--ports",
        "53",
        "--tproxy-port",
        &port.to_string(),
    ])
    .ok();
    lab.client.enter(|| {
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.send_to(b"zfw-udp", "10.98.0.9:53").unwrap();
    });
    let mut buf = [0u8; 32];
    let (n, peer) = s
        .recv_from(&mut buf)
        .expect("datagram handed to the listener");
    assert_eq!(&buf[..n], b"zfw-udp");
    assert_eq!(peer.ip().to_string(), CLIENT_IP);
}

#[test]
fn per_interface_rules_need_the_rule_to_list_the_interface() {
    require_priv!();
    let lab = Lab::new();
    let web = tcp_listen(&lab.server, "0.0.0.0:0").serve_echo();
    lab.load();
    let p = web.to_string();
    let addr = format!("{SERVER_IP}:{web}");
    let rule = [
        "rule",
        "add",
        "--dst",
        "10.77.0.2/32",
        "--proto",
        "tcp",
        "--ports",
        &p,
    ];
    let mut on_lo = rule.to_vec();
    on_lo.extend(["--iface", "lo"]);
    lab.zfw(&on_lo).ok();
    assert!(
        tcp_echo_ok(&lab.client, &addr, LONG),
        "lists ignored without the flag"
    );
    lab.zfw(&["iface", "set", "srv0", "--per-interface-rules", "on"])
        .ok();
    assert!(
        !tcp_echo_ok(&lab.client, &addr, SHORT),
        "the rule lists only lo"
    );
    let mut on_srv = rule.to_vec();
    on_srv.extend(["--iface", "lo", "--iface", "srv0"]);
    lab.zfw(&on_srv).ok();
    assert!(tcp_echo_ok(&lab.client, &addr, LONG), "now it lists srv0");
}

#[test]
fn interface_addresses_are_refreshed_by_zfw_commands() {
    require_priv!();
    let lab = Lab::new();
    let _ssh = tcp_listen(&lab.server, "0.0.0.0:22").serve_echo();
    lab.load();
    lab.server
        .ip(&["addr", "add", "10.77.0.3/24", "dev", "srv0"]);
    // the datapath does not know the new address yet: no SSH exception
    assert!(!tcp_echo_ok(&lab.client, "10.77.0.3:22", SHORT));
    let show = lab.zfw(&["iface", "show", "srv0"]).ok().stdout;
    assert!(show.contains("10.77.0.3"), "{show}");
    assert!(tcp_echo_ok(&lab.client, "10.77.0.3:22", LONG), "refreshed");
    lab.server
        .ip(&["addr", "del", "10.77.0.3/24", "dev", "srv0"]);
    lab.zfw(&["rule", "list"]).ok();
    let v: serde_json::Value =
        serde_json::from_str(&lab.zfw(&["iface", "show", "--json"]).ok().stdout).unwrap();
    assert!(!v[0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "10.77.0.3"));
}
