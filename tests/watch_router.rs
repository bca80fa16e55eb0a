//! `zfw watch` on a masquerading router: when the outside address changes,
//! new forwarded flows leave with the new source at once, the flows mapped
//! with the old address are dropped (and re-mapped on their next packet),
//! the router's own traffic works, and an outside interface without IPv4
//! stops translating (counted) instead of sending a stale source.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::catch_all::counter;
use common::router::*;
use common::watch::*;
use common::*;

const LONG: Duration = Duration::from_secs(5);
const NEW_OUTSIDE: &str = "10.81.2.7";

fn ro0_addrs(lab: &RouterLab) -> Vec<IpAddr> {
    let maps = lab.root.maps();
    let idx = lab
        .router
        .enter(|| zfw::ifaddr::index_of(OUTSIDE_IF).unwrap());
    zfw::iface_state::addrs(&maps, idx).unwrap()
}

/// A UDP socket of the client with a fixed source port: every datagram is
/// the same flow (the same masquerade mapping).
fn client_flow(lab: &RouterLab) -> UdpSocket {
    lab.client
        .enter(|| UdpSocket::bind("0.0.0.0:0").expect("bind"))
}

#[test]
fn outside_renumber_under_masquerade_new_source_at_once_old_never_after() {
    require_priv!();
    let lab = RouterLab::new();
    let (tport, tpeers) = tcp_echo_peers(&lab.server, "0.0.0.0:0");
    let (uport, upeers) = udp_echo_peers(&lab.server, "0.0.0.0:0");
    lab.load();
    lab.set_masquerade(true);
    let w = Watch::start(&lab.router, &lab.root);
    let dst: SocketAddr = format!("{R_SERVER}:{uport}").parse().unwrap();
    // an existing flow, sending every 5 ms through the change
    let flow = client_flow(&lab);
    flow.send_to(b"zfw-udp", dst).unwrap();
    assert!(tcp_echo_ok(
        &lab.client,
        &format!("{R_SERVER}:{tport}"),
        LONG
    ));
    let sender = std::thread::spawn(move || {
        for _ in 0..300 {
            let _ = flow.send_to(b"zfw-udp", dst);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    lab.router
        .ip(&["addr", "del", &format!("{R_OUTSIDE}/24"), "dev", OUTSIDE_IF]);
    lab.router.ip(&[
        "addr",
        "add",
        &format!("{NEW_OUTSIDE}/24"),
        "dev",
        OUTSIDE_IF,
    ]);
    // the watcher rewrites the address within milliseconds; until then a
    // packet may still carry the old one (README "Addresses follow the
    // kernel live"), so the test starts its new flows once it has
    let new: IpAddr = NEW_OUTSIDE.parse().unwrap();
    let seen_by_zfw = wait_until(Duration::from_secs(1), || {
        ro0_addrs(&lab).iter().find(|a| a.is_ipv4()) == Some(&new)
    });
    assert!(seen_by_zfw.is_some(), "{:?}", ro0_addrs(&lab));
    eprintln!("renumber -> zfw has the new address: {:?}", t0.elapsed());
    // new TCP / UDP / ICMP flows go out with the new address
    assert!(
        tcp_echo_ok(&lab.client, &format!("{R_SERVER}:{tport}"), LONG),
        "forwarded TCP after the change"
    );
    assert!(
        udp_echo_ok(&lab.client, &dst.to_string(), LONG),
        "forwarded UDP"
    );
    assert!(ping_ok(&lab.client, R_SERVER), "forwarded ping");
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    eprintln!("renumber -> new TCP, UDP and ping through the router: {took:?}");
    let old: IpAddr = R_OUTSIDE.parse().unwrap();
    assert_eq!(*tpeers.lock().unwrap().last().unwrap(), new);
    // the ICMP echo mapping carries the new address
    let list = lab.zfw(&["masquerade", "list", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["proto"] == "icmp"
            && e["outside"].as_str().unwrap_or("").starts_with(NEW_OUTSIDE)));
    assert!(
        v.as_array().unwrap().iter().all(|e| !e["outside"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("{R_OUTSIDE}:"))),
        "a mapping with the old address survived: {v}"
    );
    sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // the server's view of the UDP stream: the old source, then only the
    // new one (the old flow was re-mapped, nothing old after the change)
    let seen = upeers.lock().unwrap().clone();
    let first_new = seen
        .iter()
        .position(|a| *a == new)
        .expect("new source seen");
    assert!(seen[..first_new].iter().all(|a| *a == old));
    assert!(
        seen[first_new..].iter().all(|a| *a == new),
        "the old source after the new one: {seen:?}"
    );
    let n_new = seen.iter().filter(|a| **a == new).count();
    assert!(n_new > 100, "the old flow was re-mapped ({n_new} new)");
    // the router's own traffic, from its new address
    assert!(tcp_echo_ok(
        &lab.router,
        &format!("{R_SERVER}:{tport}"),
        LONG
    ));
    assert_eq!(*tpeers.lock().unwrap().last().unwrap(), new);
    assert!(ping_ok(&lab.router, R_SERVER));
    assert!(w
        .log()
        .iter()
        .any(|l| l.contains("dropped") && l.contains("masquerade")));
}

#[test]
fn no_ipv4_on_the_outside_interface_counts_drops_instead_of_a_stale_source() {
    require_priv!();
    let lab = RouterLab::new();
    let (uport, upeers) = udp_echo_peers(&lab.server, "0.0.0.0:0");
    lab.load();
    lab.set_masquerade(true);
    let _w = Watch::start(&lab.router, &lab.root);
    let dst: SocketAddr = format!("{R_SERVER}:{uport}").parse().unwrap();
    let flow = client_flow(&lab);
    flow.set_read_timeout(Some(LONG)).unwrap();
    flow.send_to(b"zfw-udp", dst).unwrap();
    let mut buf = [0u8; 16];
    assert!(flow.recv_from(&mut buf).is_ok(), "mapped");
    // the outside interface loses its IPv4 address but keeps a route
    lab.router
        .ip(&["addr", "del", &format!("{R_OUTSIDE}/24"), "dev", OUTSIDE_IF]);
    lab.router
        .ip(&["route", "add", "10.81.2.0/24", "dev", OUTSIDE_IF]);
    assert!(
        wait_until(Duration::from_secs(1), || ro0_addrs(&lab)
            .iter()
            .all(|a| !a.is_ipv4()))
        .is_some(),
        "{:?}",
        ro0_addrs(&lab)
    );
    let maps = lab.root.maps();
    let before = counter(&maps, "drop_nat_no_addr");
    let seen = upeers.lock().unwrap().len();
    for _ in 0..5 {
        flow.send_to(b"zfw-udp", dst).unwrap();
    }
    assert!(!udp_echo_ok(
        &lab.client,
        &dst.to_string(),
        Duration::from_millis(300)
    ));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        upeers.lock().unwrap().len(),
        seen,
        "a packet reached the server: {:?}",
        upeers.lock().unwrap()
    );
    assert!(counter(&maps, "drop_nat_no_addr") >= before + 6);
}
