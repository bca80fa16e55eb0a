//! Table pressure (issue 12, README "Table pressure"): established flows
//! survive a flood of new flows.  A router namespace runs zfw on its
//! outside interface and serves TCP and UDP echo on its outside address;
//! real clients in the outside namespace hold an idle and a busy TCP
//! connection and a bidirectional UDP flow while a raw socket there sends
//! at least FLOOD new flows from random sources to allowed ports: UDP, TCP
//! SYNs (the router's kernel answers them with SYN+ACKs: traffic both ways,
//! but no handshake completes) and bare SYN+ACKs, each packet twice (so
//! that an LRU sees the flood's entries used, as it sees ours).  Afterwards the three
//! flows still work, and their conntrack entries are the ones made before
//! the flood (same creation time: never evicted and re-created).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::packet::*;
use common::router::*;
use common::*;
use zfw::maps::defs;
use zfw::skel::{names, types};

/// New flows the flood must create (counted by the datapath: track_new).
const FLOOD: u64 = 150_000;
/// The flood's time limit.
const FLOOD_LIMIT: Duration = Duration::from_secs(90);
/// Sources of the flood, routed back towards the outside namespace (which
/// drops the router's answers: not its addresses).
const FLOOD_NET: &str = "10.82.0.0/16";

/// TCP echo server on `addr` in `ns`: echoes every read, connections may
/// idle for two minutes.
fn echo_server(ns: &Netns, addr: &str) -> u16 {
    let addr: SocketAddr = addr.parse().unwrap();
    let l = ns.enter(move || TcpListener::bind(addr).expect("bind"));
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn connect(ns: &Netns, addr: SocketAddr) -> TcpStream {
    ns.enter(move || TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect"))
}

fn udp_socket(ns: &Netns, to: SocketAddr) -> UdpSocket {
    ns.enter(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.connect(to).expect("connect udp");
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s
    })
}

/// One UDP round trip (a few tries: the flood may fill a queue).
fn udp_echo(s: &UdpSocket, msg: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    (0..3).any(|_| s.send(msg).is_ok() && matches!(s.recv(&mut buf), Ok(n) if &buf[..n] == msg))
}

/// The conntrack entry of the inbound flow from `sport` to `dport` (the
/// outside client to the router), in whichever table holds it, and whether
/// that table is an assured one.
fn entry(lab: &RouterLab, proto: u8, sport: u16, dport: u16) -> Option<(bool, types::zfw_flow)> {
    let maps = lab.root.maps();
    for t in defs::FLOW_TABLES
        .iter()
        .filter(|t| t.direction == "inbound")
    {
        for (k, v) in maps.entries(t.def).unwrap() {
            if k.proto == proto && k.sport == sport && k.dport == dport {
                return Some((t.assured, v));
            }
        }
    }
    None
}

fn track_new(lab: &RouterLab) -> u64 {
    let maps = lab.root.maps();
    maps.percpu_sum(&defs::COUNTERS_MAP, names::ZFW_R_TRACK_NEW as u32)
        .unwrap()
}

/// Send raw packets from random 10.82.x.y sources to `dst` from `ns`: UDP
/// to `udp_port`, SYNs and SYN+ACKs to `tcp_port`, in paced bursts, until
/// `done` says enough or the time limit; each packet twice.  Returns the
/// packets sent.
fn flood(
    ns: &Netns,
    dst: Ipv4Addr,
    tcp_port: u16,
    udp_port: u16,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    ns.spawn(move || {
        use nix::sys::socket::*;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::empty(),
            SockProtocol::Raw,
        )
        .expect("raw socket (IP_HDRINCL)");
        let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
        let end = Instant::now() + FLOOD_LIMIT;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut sent = 0u64;
        let d = IpAddr::V4(dst);
        while !done.load(Ordering::Relaxed) && Instant::now() < end {
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let src = IpAddr::V4(Ipv4Addr::new(10, 82, (x >> 8) as u8, x as u8));
                let sport = 1024 + (x >> 16) as u16 % 64000;
                let pkt = match (sent / 2) % 4 {
                    0 | 1 => ip_packet(src, d, 17, &udp_datagram(src, d, sport, udp_port, b"f")),
                    2 => ip_packet(
                        src,
                        d,
                        6,
                        &tcp_segment(src, d, sport, tcp_port, TCP_SYN, (x >> 32) as u32, 0, b""),
                    ),
                    _ => ip_packet(
                        src,
                        d,
                        6,
                        &tcp_segment(
                            src,
                            d,
                            sport,
                            tcp_port,
                            TCP_SYN | TCP_ACK,
                            (x >> 32) as u32,
                            1,
                            b"",
                        ),
                    ),
                };
                // twice: the second packet finds (and so references) the
                // new entry, which an LRU would otherwise evict first
                for _ in 0..2 {
                    if sendto(fd.as_raw_fd(), &pkt, &to, MsgFlags::empty()).is_ok() {
                        sent += 1;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    })
}

#[test]
fn assured_flows_survive_a_flood_of_new_flows() {
    require_priv!();
    let lab = RouterLab::new();
    let tport = echo_server(&lab.router, &format!("{R_OUTSIDE}:0"));
    let uport = udp_echo_server(&lab.router, &format!("{R_OUTSIDE}:0"));
    // the UDP flood goes to an allowed port nobody answers on
    let flood_uport = uport.wrapping_add(1).max(1024);
    lab.load();
    for (proto, port) in [("tcp", tport), ("udp", uport), ("udp", flood_uport)] {
        let p = port.to_string();
        let dst = format!("{R_OUTSIDE}/32");
        lab.zfw(&[
            "rule", "add", "--dst", &dst, "--proto", proto, "--ports", &p,
        ])
        .ok();
    }
    for k in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.ro0.rp_filter=0",
    ] {
        assert!(lab.router.exec("sysctl", &["-qw", k]).status.success());
    }
    lab.router.ip(&["route", "add", FLOOD_NET, "via", R_SERVER]);

    // the flows to keep: an idle and a busy TCP connection, a UDP flow
    let taddr: SocketAddr = format!("{R_OUTSIDE}:{tport}").parse().unwrap();
    let uaddr: SocketAddr = format!("{R_OUTSIDE}:{uport}").parse().unwrap();
    let mut idle = connect(&lab.server, taddr);
    let mut busy = connect(&lab.server, taddr);
    let udp = udp_socket(&lab.server, uaddr);
    assert!(echo_once(&mut idle, b"idle-before"));
    assert!(echo_once(&mut busy, b"busy-before"));
    assert!(udp_echo(&udp, b"udp-before"));
    let ports = [
        (6u8, idle.local_addr().unwrap().port(), tport),
        (6u8, busy.local_addr().unwrap().port(), tport),
        (17u8, udp.local_addr().unwrap().port(), uport),
    ];
    let before: Vec<types::zfw_flow> = ports
        .iter()
        .map(|&(proto, sp, dp)| {
            let (assured, f) = entry(&lab, proto, sp, dp).expect("the flow is tracked");
            assert!(assured, "a flow seen both ways is assured ({proto}, {sp})");
            f
        })
        .collect();

    // busy: echoes all through the flood, on the connection and the UDP flow
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let busy_thread = std::thread::spawn(move || {
        let (mut tcp_ok, mut udp_ok, mut udp_lost) = (0u32, 0u32, 0u32);
        let mut tcp_failed = None;
        while !d.load(Ordering::Relaxed) {
            if echo_once(&mut busy, b"busy") {
                tcp_ok += 1;
            } else {
                tcp_failed = Some(tcp_ok);
                break;
            }
            if udp_echo(&udp, b"udp-busy") {
                udp_ok += 1;
            } else {
                udp_lost += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (busy, udp, tcp_ok, tcp_failed, udp_ok, udp_lost)
    });

    let new0 = track_new(&lab);
    let t = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(
        &lab.server,
        R_OUTSIDE.parse().unwrap(),
        tport,
        flood_uport,
        stop.clone(),
    );
    // status and conntrack list answer during the flood, in bounded time
    let (mut status_max, mut list_max, mut unassured_seen) = (Duration::ZERO, Duration::ZERO, 0);
    while track_new(&lab) - new0 < FLOOD && t.elapsed() < FLOOD_LIMIT {
        let s = Instant::now();
        lab.zfw(&["status"]).ok();
        status_max = status_max.max(s.elapsed());
        let s = Instant::now();
        let r = lab.zfw(&["conntrack", "list", "--json"]).ok();
        list_max = list_max.max(s.elapsed());
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("conntrack list JSON");
        let flows = v.as_array().unwrap();
        unassured_seen = unassured_seen.max(flows.iter().filter(|f| f["assured"] == false).count());
        assert!(
            flows
                .iter()
                .any(|f| f["assured"] == true && f["sport"] == ports[0].1),
            "the idle connection is listed as assured during the flood"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    let took = t.elapsed();
    let created = track_new(&lab) - new0;
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let (mut busy, udp, tcp_ok, tcp_failed, udp_ok, udp_lost) = busy_thread.join().unwrap();
    let maps = lab.root.maps();
    let count = |d| maps.count(d).unwrap();
    eprintln!(
        "flood: {sent} packets, {created} new flows in {took:?}; tables now: \
         tcp_ingress {} / unassured {}, udp_ingress {} / unassured {}; \
         busy TCP echoes {tcp_ok} (failed after {tcp_failed:?}), UDP {udp_ok} ok, {udp_lost} lost; \
         slowest status {status_max:?}, conntrack list {list_max:?} \
         (up to {unassured_seen} unassured flows listed)",
        count(&defs::TCP_INGRESS_MAP),
        count(&defs::TCP_INGRESS_UNASSURED_MAP),
        count(&defs::UDP_INGRESS_MAP),
        count(&defs::UDP_INGRESS_UNASSURED_MAP),
    );
    assert!(
        created >= FLOOD,
        "the flood created {created} flows in {took:?}"
    );
    assert!(
        unassured_seen > 0,
        "conntrack list shows the unassured flood flows"
    );
    assert!(
        status_max < Duration::from_secs(10),
        "status took {status_max:?}"
    );
    assert!(
        list_max < Duration::from_secs(20),
        "conntrack list took {list_max:?}"
    );
    assert_eq!(
        tcp_failed, None,
        "the busy connection kept working through the flood"
    );
    assert!(udp_ok > 0, "the UDP flow kept working through the flood");

    // after the flood: all three still work, on the entries made before it
    assert!(
        echo_once(&mut idle, b"idle-after"),
        "the idle connection survived"
    );
    assert!(
        echo_once(&mut busy, b"busy-after"),
        "the busy connection survived"
    );
    assert!(udp_echo(&udp, b"udp-after"), "the UDP flow survived");
    for (&(proto, sp, dp), b) in ports.iter().zip(&before) {
        let (assured, f) = entry(&lab, proto, sp, dp).expect("still tracked");
        assert!(assured, "({proto}, {sp}) is still assured");
        assert_eq!(
            f.first_ns, b.first_ns,
            "({proto}, {sp}): the entry from before the flood, never evicted"
        );
    }
    // the flood's flows assured nothing: the main tables hold only ours
    assert_eq!(count(&defs::TCP_INGRESS_MAP), 2, "no flood SYN was assured");
    assert_eq!(
        count(&defs::UDP_INGRESS_MAP),
        1,
        "no flood datagram was assured"
    );
}
