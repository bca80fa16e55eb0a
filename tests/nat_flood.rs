//! A random-source SYN flood through the masquerading router (issue 20):
//! its mappings stay half-open (the flood never answers the server's
//! SYN-ACKs), so once the ports for the service are exhausted they give way
//! to new flows, and `zfw conntrack flush` frees all of them.  Real
//! namespaces, real forwarding, the server's real TCP stack.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::packet::*;
use common::router::*;
use common::*;
use zfw::skel::{names, types};

/// Sources of the flood: 10.82.0.0/16, routed back towards the client
/// namespace (which drops the SYN-ACKs: not its addresses).
const FLOOD_NET: &str = "10.82.0.0/16";
/// More SYNs than the 64,512 ports of one destination.
const FLOOD: usize = 80_000;

/// Send `FLOOD` SYNs from random 10.82.x.y:port to `dst` over a raw socket
/// in `ns`, paced in bursts; at most `limit`.  Returns how many were sent.
fn flood(ns: &Netns, dst: SocketAddrV4, limit: Duration) -> usize {
    ns.enter(move || {
        use nix::sys::socket::*;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::empty(),
            SockProtocol::Raw,
        )
        .expect("raw socket (IP_HDRINCL)");
        let to = SockaddrIn::from(dst);
        let end = Instant::now() + limit;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut sent = 0;
        while sent < FLOOD && Instant::now() < end {
            for _ in 0..200 {
                // xorshift: source address and port, sequence number
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let src = IpAddr::V4(Ipv4Addr::new(10, 82, (x >> 8) as u8, x as u8));
                let sport = 1024 + (x >> 16) as u16 % 64000;
                let seg = tcp_segment(
                    src,
                    IpAddr::V4(*dst.ip()),
                    sport,
                    dst.port(),
                    TCP_SYN,
                    (x >> 32) as u32,
                    0,
                    b"",
                );
                let pkt = ip_packet(src, IpAddr::V4(*dst.ip()), 6, &seg);
                if sendto(fd.as_raw_fd(), &pkt, &to, MsgFlags::empty()).is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        sent
    })
}

/// Masquerade mappings to the service whose inside host is a flood source,
/// by state.
fn flood_mappings(lab: &RouterLab) -> (usize, usize) {
    let mut half_open = 0;
    let mut established = 0;
    let entries = lab
        .root
        .maps()
        .entries::<types::zfw_nat_key, types::zfw_nat_val>(&zfw::maps::defs::MASQUERADE_MAP)
        .unwrap();
    for (k, v) in entries {
        let IpAddr::V4(a) = zfw::decode::addr(k.family, &v.addr) else {
            continue;
        };
        if a.octets()[..2] != [10, 82] {
            continue; // not a flood source
        }
        match i64::from(v.state) {
            names::ZFW_TCP_SYN_SENT | names::ZFW_TCP_SYN_RECV => half_open += 1,
            names::ZFW_TCP_ESTABLISHED => established += 1,
            _ => {}
        }
    }
    (half_open, established)
}

fn counter(lab: &RouterLab, name: &str) -> u64 {
    let r = lab.zfw(&["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn after_a_syn_flood_new_connections_get_through_and_flush_frees_every_port() {
    require_priv!();
    let lab = RouterLab::new();
    let (port, _peers) = tcp_echo_peers(&lab.server, "0.0.0.0:0");
    lab.load();
    lab.set_masquerade(true);
    let svc = format!("{R_SERVER}:{port}");
    assert!(tcp_echo_ok(&lab.client, &svc, Duration::from_secs(5)));
    // the router forwards the spoofed sources and routes the SYN-ACKs back
    for k in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.ri0.rp_filter=0",
    ] {
        assert!(lab.router.exec("sysctl", &["-qw", k]).status.success());
    }
    lab.router.ip(&["route", "add", FLOOD_NET, "via", R_CLIENT]);

    let t = Instant::now();
    let sent = flood(
        &lab.client,
        SocketAddrV4::new(R_SERVER.parse().unwrap(), port),
        Duration::from_secs(15),
    );
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (half_open, established) = flood_mappings(&lab);
    let evicted = counter(&lab, "nat_evicted");
    eprintln!(
        "flood: {sent} SYNs in {took:?}; {half_open} half-open flood mappings, \
         {established} established, {evicted} evicted"
    );
    assert!(sent > 64_512, "the flood was cut short: {sent}");
    assert_eq!(established, 0, "the flood's SYN-ACKs established nothing");
    assert!(
        evicted > 0,
        "the ports to the service were exhausted ({half_open} half-open)"
    );
    // a new connection gets a port at once, from a half-open mapping
    // (well within the 60-s half-open timeout)
    let t = Instant::now();
    assert!(
        tcp_echo_ok(&lab.client, &svc, Duration::from_secs(5)),
        "a new connection after the flood"
    );
    eprintln!("new connection after the flood: {:?}", t.elapsed());

    let out = lab.zfw(&["conntrack", "flush"]).ok();
    assert!(out.stdout.contains("masquerade mappings"), "{}", out.stdout);
    assert_eq!(
        flood_mappings(&lab),
        (0, 0),
        "flush freed the flood's ports"
    );
    let t = Instant::now();
    assert!(
        tcp_echo_ok(&lab.client, &svc, Duration::from_secs(2)),
        "a new connection right after the flush"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}
