//! The C zfw command line as OpenZiti drives it, replayed against the real
//! kernel with real traffic: the edge router's interceptor (tproxy
//! diverter) and ziti-edge-tunnel's diverter, call for call.

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::tun::{open_tun, Tunneler};
use common::*;

const SHORT: Duration = Duration::from_millis(700);
const LONG: Duration = Duration::from_secs(3);

/// `zfw --bpffs ROOT ARGV...` in `ns` (the legacy grammar after --bpffs).
fn z(ns: &Netns, root: &BpfRoot, argv: &str) -> Run {
    let w: Vec<&str> = argv.split_whitespace().collect();
    zfw(Some(ns), root, &w)
}

/// TCP from `src` (bound first) to `dst` in `ns`, echoing once.
fn tcp_from(ns: &Netns, src: &str, dst: &str, timeout: Duration) -> bool {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    use nix::sys::time::{TimeVal, TimeValLike};
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src.parse().unwrap(), dst.parse().unwrap())
    else {
        panic!("IPv4 only")
    };
    ns.enter(move || {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        bind(fd.as_raw_fd(), &SockaddrIn::from(src)).unwrap();
        let t = TimeVal::milliseconds(timeout.as_millis() as i64);
        setsockopt(&fd, sockopt::SendTimeout, &t).unwrap();
        if connect(fd.as_raw_fd(), &SockaddrIn::from(dst)).is_err() {
            return false;
        }
        echo_once(&mut TcpStream::from(fd), b"zfw-legacy")
    })
}

/// The `-L` rows about `dst`.
fn rows(out: &str, dst: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains(dst))
        .map(String::from)
        .collect()
}

/// The `-L -E` settings of `ifname`: name -> 0|1.
fn diag(out: &str, ifname: &str) -> std::collections::BTreeMap<String, u8> {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{ifname}: ")))
        .skip(2);
    let mut m = std::collections::BTreeMap::new();
    for l in lines.by_ref() {
        let Some((k, v)) = l.split_once(':') else {
            break;
        };
        m.insert(k.trim().to_string(), v.parse().unwrap());
    }
    m
}

fn nothing_left(ns: &Netns, root: &BpfRoot, ifaces: &[&str]) {
    assert!(!root.dir.exists(), "bpffs root removed");
    for i in ifaces {
        for dir in ["ingress", "egress"] {
            let out = ns.exec("tc", &["filter", "show", "dev", i, dir]);
            assert!(out.stdout.is_empty(), "{i} {dir}: {:?}", out.stdout);
        }
        let link = ns.exec("ip", &["link", "show", i]);
        assert!(
            !String::from_utf8_lossy(&link.stdout).contains("xdp"),
            "{i}: xdp left"
        );
    }
}

/// The router: client 1 (10.91.1.2, and .3) behind r1, client 2
/// (10.91.2.2) behind r2; the service 10.91.100.10:5000 is intercepted
/// to the router's TPROXY listener on 127.0.0.1.
#[test]
fn edge_router_interceptor_sequence() {
    require_priv!();
    let c1 = Netns::new("rc1");
    let c2 = Netns::new("rc2");
    let rtr = Netns::new("rtr");
    veth(&c1, "c1", &rtr, "r1");
    veth(&c2, "c2", &rtr, "r2");
    c1.ip(&["addr", "add", "10.91.1.2/24", "dev", "c1"]);
    c1.ip(&["addr", "add", "10.91.1.3/24", "dev", "c1"]);
    c2.ip(&["addr", "add", "10.91.2.2/24", "dev", "c2"]);
    rtr.ip(&["addr", "add", "10.91.1.1/24", "dev", "r1"]);
    rtr.ip(&["addr", "add", "10.91.2.1/24", "dev", "r2"]);
    c1.ip(&["route", "add", "10.91.100.0/24", "via", "10.91.1.1"]);
    c2.ip(&["route", "add", "10.91.100.0/24", "via", "10.91.2.1"]);
    let root = BpfRoot::in_ns(&rtr);
    let port = tcp_listen(&rtr, "127.0.0.1:0").serve_echo_forever();
    let svc = "10.91.100.10:5000";
    let ok1 = || tcp_from(&c1, "10.91.1.2:0", svc, LONG);
    let ok2 = || tcp_from(&c2, "10.91.2.2:0", svc, LONG);
    let blocked1 = || !tcp_from(&c1, "10.91.1.2:0", svc, SHORT);
    let blocked2 = || !tcp_from(&c2, "10.91.2.2:0", svc, SHORT);

    // start-up: the version probe, then the start script's attach sequence
    let v = z(&rtr, &root, "-V").ok();
    assert_eq!(v.stdout, format!("{}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(z(&rtr, &root, "-L -E").code, 1, "not loaded yet");
    for i in ["r1", "r2"] {
        z(
            &rtr,
            &root,
            &format!("-X {i} -O /opt/openziti/bin/zfw_tc_ingress.o -z ingress"),
        )
        .ok();
        z(
            &rtr,
            &root,
            &format!("-X {i} -O /opt/openziti/bin/zfw_tc_outbound_track.o -z egress"),
        )
        .ok();
        z(&rtr, &root, &format!("-P {i}")).ok();
    }
    let e = z(&rtr, &root, "-L -E").ok();
    for i in ["r1", "r2"] {
        let d = diag(&e.stdout, i);
        assert_eq!(d.len(), 15, "{i}: {d:?}");
        for k in ["tc ingress filter", "tc egress filter", "per interface"] {
            assert_eq!(d[k], 1, "{i} {k}");
        }
    }
    assert!(blocked1() && blocked2(), "no rule yet: default deny");

    // the interceptor: one -I per interface and per allowed source
    let insert = |i: &str, src: &str| {
        format!("-I -c 10.91.100.10 -m 32 -p tcp -o {src} -n 32 -l 5000 -h 5000 -t {port} -s 3Ds1HqEdbbN0RxsDC2zGvn -N {i}")
    };
    for i in ["r1", "r2"] {
        for src in ["10.91.1.2", "10.91.2.2"] {
            z(&rtr, &root, &insert(i, src)).ok();
        }
    }
    let again = z(&rtr, &root, &insert("r1", "10.91.1.2")).ok();
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
    let l = z(&rtr, &root, "-L").ok();
    let r = rows(&l.stdout, "10.91.100.10/32");
    assert_eq!(r.len(), 2, "one rule per source:\n{}", l.stdout);
    for row in &r {
        assert!(row.starts_with("accept 3Ds1HqEdbbN0RxsDC2zGvn"), "{row}");
        assert!(
            row.contains(&format!("TPROXY redirect 127.0.0.1:{port}")),
            "{row}"
        );
        assert!(
            row.contains("dpts=5000:5000") && row.ends_with("[r1,r2]"),
            "{row}"
        );
    }
    assert!(l.stdout.contains("Rule Count: 2 / "), "{}", l.stdout);
    // both interfaces carry the rule (the C zfw would keep only r2)
    assert!(ok1(), "client 1 via r1 to the TPROXY listener");
    assert!(ok2(), "client 2 via r2");
    assert!(
        !tcp_from(&c1, "10.91.1.3:0", svc, SHORT),
        "a source the service does not allow"
    );
    assert!(
        !tcp_from(&c1, "10.91.1.2:0", "10.91.100.10:5001", SHORT),
        "another port"
    );

    // stop intercepting: one -D per interface and source
    let delete = |i: &str, src: &str| {
        format!("-D -c 10.91.100.10 -m 32 -p tcp -o {src} -n 32 -l 5000 -h 5000 -N {i}")
    };
    for src in ["10.91.1.2", "10.91.2.2"] {
        z(&rtr, &root, &delete("r1", src)).ok();
    }
    let l = z(&rtr, &root, "-L").ok();
    assert!(
        rows(&l.stdout, "10.91.100.10/32")
            .iter()
            .all(|r| r.ends_with("[r2]")),
        "{}",
        l.stdout
    );
    assert!(blocked1(), "r1 left the rule");
    assert!(ok2(), "r2 still has it");
    for src in ["10.91.1.2", "10.91.2.2"] {
        z(&rtr, &root, &delete("r2", src)).ok();
    }
    let l = z(&rtr, &root, "-L").ok();
    assert!(
        rows(&l.stdout, "10.91.100.10/32").is_empty(),
        "{}",
        l.stdout
    );
    assert!(blocked1() && blocked2(), "blocked again");

    z(&rtr, &root, "-Q").ok();
    nothing_left(&rtr, &root, &["r1", "r2"]);
    let routes = rtr.exec("ip", &["route", "show", "table", "local"]);
    assert!(!String::from_utf8_lossy(&routes.stdout).contains("10.91.100.10"));
    assert_eq!(z(&rtr, &root, "-Q").code, 1, "nothing to remove");
}

/// UDP echo on `addr` in `ns` that counts what it answered.
fn udp_counter(ns: &Netns, addr: &str) -> Arc<AtomicU64> {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = ns.enter(move || UdpSocket::bind(addr).expect("bind"));
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((len, peer)) = s.recv_from(&mut buf) {
            c.fetch_add(1, Ordering::SeqCst);
            let _ = s.send_to(&buf[..len], peer);
        }
    });
    n
}

/// ziti-edge-tunnel in diverter mode: client 10.92.0.2 -- e0 10.92.0.1;
/// the tun ziti0 (100.64.0.1/10) read by a stand-in tunneler; the
/// service 100.64.0.5 udp/5000 also has a host listener (on lo) that only
/// the catch-all rule reaches.
#[test]
fn ziti_edge_tunnel_diverter_sequence() {
    require_priv!();
    let cli = Netns::new("zc");
    let edge = Netns::new("ze");
    veth(&cli, "c0", &edge, "e0");
    cli.ip(&["addr", "add", "10.92.0.2/24", "dev", "c0"]);
    edge.ip(&["addr", "add", "10.92.0.1/24", "dev", "e0"]);
    cli.ip(&["route", "add", "100.64.0.0/10", "via", "10.92.0.1"]);
    let tun = open_tun(&edge, "ziti0");
    edge.ip(&["addr", "add", "100.64.0.1/10", "dev", "ziti0"]);
    edge.ip(&["addr", "add", "100.64.0.5/32", "dev", "lo"]);
    let tunneler = Tunneler::start(tun);
    let host = udp_counter(&edge, "100.64.0.5:5000");
    let tcp_port = tcp_listen(&edge, "10.92.0.1:0").serve_echo_forever();
    let tcp_ok = |t| tcp_from(&cli, "10.92.0.2:0", &format!("10.92.0.1:{tcp_port}"), t);
    let root = BpfRoot::in_ns(&edge);

    // diverter_init: -Q first (nothing loaded: exit 1, which it ignores)
    assert_eq!(z(&edge, &root, "-Q").code, 1);
    for (dir, obj) in [
        ("ingress", "zfw_tc_ingress.o"),
        ("egress", "zfw_tc_outbound_track.o"),
    ] {
        z(
            &edge,
            &root,
            &format!("-X e0 -O /opt/openziti/bin/{obj} -z {dir}"),
        )
        .ok();
        z(&edge, &root, "-T e0").ok();
        z(&edge, &root, "-6 e0").ok();
        z(&edge, &root, "-q e0").ok();
    }
    let d = diag(&z(&edge, &root, "-L -E").ok().stdout, "e0");
    for k in [
        "tun mode intercept",
        "ipv6 enable",
        "pass non tuple",
        "tc egress filter",
    ] {
        assert_eq!(d[k], 1, "{k}: {d:?}");
    }
    let link =
        String::from_utf8_lossy(&edge.exec("ip", &["link", "show", "ziti0"]).stdout).into_owned();
    assert!(
        link.contains("xdp"),
        "tun mode registered ziti0 as the tun: {link}"
    );
    assert!(!tcp_ok(SHORT), "default deny before the catch-alls");
    // set_diverter: the catch-alls that pass everything else to the host
    for c in ["0.0.0.0", "::"] {
        for p in ["tcp", "udp"] {
            z(
                &edge,
                &root,
                &format!("-I -c {c} -m 0 -l 1 -h 65535 -t 0 -p {p}"),
            )
            .ok();
        }
    }
    assert!(tcp_ok(LONG), "the catch-all passes TCP to the host");

    // a service: a random tproxy port, tun mode makes it a tunnel rule
    let rand = 1024 + (std::process::id() % 60000);
    z(
        &edge,
        &root,
        &format!(
            "-I -c 100.64.0.5 -m 32 -l 5000 -h 5000 -t {rand} -p udp -s 5tYcGpbWy6hWAT8yS3yNIX"
        ),
    )
    .ok();
    // firewall mode's DNS range rule (port 65535)
    z(
        &edge,
        &root,
        "-I -c 100.64.0.0 -m 10 -l 1 -h 65535 -t 65535 -p udp",
    )
    .ok();
    let l = z(&edge, &root, "-L").ok();
    let r = rows(&l.stdout, "100.64.0.5/32");
    assert_eq!(r.len(), 1, "{}", l.stdout);
    assert!(
        r[0].contains("5tYcGpbWy6hWAT8yS3yNIX") && r[0].contains("TUNMODE redirect:ziti0"),
        "{}",
        r[0]
    );
    assert!(
        rows(&l.stdout, "100.64.0.0/10")[0].contains("TUNMODE redirect:ziti0"),
        "{}",
        l.stdout
    );
    assert!(l.stdout.contains("PASSTHRU to 0.0.0.0/0"), "{}", l.stdout);
    assert!(
        udp_echo_ok(&cli, "100.64.0.5:5000", LONG),
        "through the tun"
    );
    assert!(tunneler.seen.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        host.load(Ordering::SeqCst),
        0,
        "the host listener saw nothing"
    );

    // removing it (ziti-edge-tunnel sends another random port) and the
    // DNS range: the catch-all hands the service's packets to the host
    let rand2 = 1024 + ((std::process::id() / 7) % 60000);
    z(
        &edge,
        &root,
        &format!(
            "-D -c 100.64.0.5 -m 32 -l 5000 -h 5000 -t {rand2} -p udp -s 5tYcGpbWy6hWAT8yS3yNIX"
        ),
    )
    .ok();
    z(&edge, &root, "-D -c 100.64.0.0 -m 10 -l 1 -h 65535 -p udp").ok();
    let seen = tunneler.seen.load(Ordering::SeqCst);
    assert!(
        udp_echo_ok(&cli, "100.64.0.5:5000", LONG),
        "to the host listener"
    );
    assert_eq!(host.load(Ordering::SeqCst), 1);
    assert_eq!(
        tunneler.seen.load(Ordering::SeqCst),
        seen,
        "not into the tun"
    );

    // a hosted service's allowed source made local, then cleanup
    z(&edge, &root, "-B 10.93.0.0 -m 24").ok();
    let lo = |ns: &Netns| {
        String::from_utf8_lossy(&ns.exec("ip", &["addr", "show", "dev", "lo"]).stdout).into_owned()
    };
    assert!(lo(&edge).contains("10.93.0.0/24"), "{}", lo(&edge));
    z(&edge, &root, "-F -j").ok();
    assert!(!lo(&edge).contains("10.93.0.0/24"), "{}", lo(&edge));
    assert!(
        lo(&edge).contains("100.64.0.5/32"),
        "an address zfw did not add stays"
    );
    z(&edge, &root, "-Q").ok();
    nothing_left(&edge, &root, &["e0", "ziti0"]);
}
