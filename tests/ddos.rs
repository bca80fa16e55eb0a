//! DDoS protection: whitelist-only admission to protected ports (the C zfw's
//! semantics), SYN counting, the per-source SYN rate limit, and the CLI.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::catch_all::*;
use common::fixture::*;
use common::packet::*;
use common::*;

fn protect(f: &Fixture, port: u32) {
    f.root
        .maps()
        .put(&zfw::maps::defs::DDOS_DPORT_MAP, &port, &1u32)
        .unwrap();
}

fn whitelist(f: &Fixture, ip: &str) {
    let k = zfw::ddos::addr_key(ip.parse().unwrap());
    f.root
        .maps()
        .put(&zfw::maps::defs::DDOS_SADDR_MAP, &k, &1u32)
        .unwrap();
}

fn syn_count(maps: &zfw::maps::Maps, ifindex: u32) -> u64 {
    maps.get::<u32, u64>(&zfw::maps::defs::SYN_COUNT_MAP, &ifindex)
        .unwrap()
        .unwrap_or(0)
}

fn ddos_fixture() -> Fixture {
    let f = Fixture::new();
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("ddos"));
    install_catch_all_rule(&f.root.maps(), AF_INET, TCP, action("allow"));
    install_catch_all_rule(&f.root.maps(), AF_INET6, TCP, action("allow"));
    protect(&f, 8080);
    f
}

#[test]
fn protected_port_admits_only_whitelisted_sources() {
    require_priv!();
    let f = ddos_fixture();
    let maps = f.root.maps();
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40000, "10.0.0.2", 8080, TCP_SYN)),
        TC_ACT_SHOT
    );
    assert_eq!(f.counter("drop_ddos"), 1);
    assert_eq!(syn_count(&maps, IFINDEX), 1);

    whitelist(&f, "10.0.0.1");
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40001, "10.0.0.2", 8080, TCP_SYN)),
        TC_ACT_UNSPEC,
        "a whitelisted source goes on to the rules"
    );
    assert_eq!(syn_count(&maps, IFINDEX), 2);
    // IPv6 whitelist entries are separate
    assert_eq!(
        f.ingress(&tcp("fd00::1", 40000, "fd00::2", 8080, TCP_SYN)),
        TC_ACT_SHOT
    );
    whitelist(&f, "fd00::1");
    assert_eq!(
        f.ingress(&tcp("fd00::1", 40001, "fd00::2", 8080, TCP_SYN)),
        TC_ACT_UNSPEC
    );
    assert_eq!(syn_count(&maps, IFINDEX), 4);
}

#[test]
fn unprotected_ports_foreign_addresses_and_ddos_off_are_not_affected() {
    require_priv!();
    let f = ddos_fixture();
    let maps = f.root.maps();
    // another port
    assert_eq!(
        f.ingress(&tcp("10.0.0.9", 40000, "10.0.0.2", 9090, TCP_SYN)),
        TC_ACT_UNSPEC
    );
    // not one of the interface's addresses (forwarded traffic)
    assert_eq!(
        f.ingress(&tcp("10.0.0.9", 40001, "10.0.0.50", 8080, TCP_SYN)),
        TC_ACT_UNSPEC
    );
    assert_eq!(syn_count(&maps, IFINDEX), 0);
    // ddos off on the interface
    f.set_flags(zfw::iface_state::default_flags());
    assert_eq!(
        f.ingress(&tcp("10.0.0.9", 40002, "10.0.0.2", 8080, TCP_SYN)),
        TC_ACT_UNSPEC
    );
    assert_eq!(syn_count(&maps, IFINDEX), 0);
    assert_eq!(f.counter("drop_ddos"), 0);
}

#[test]
fn a_protected_ssh_port_is_protected_too() {
    require_priv!();
    let f = ddos_fixture();
    protect(&f, 22);
    assert_eq!(
        f.ingress(&tcp("10.0.0.9", 40000, "10.0.0.2", 22, TCP_SYN)),
        TC_ACT_SHOT
    );
    whitelist(&f, "10.0.0.9");
    assert_eq!(
        f.ingress(&tcp("10.0.0.9", 40001, "10.0.0.2", 22, TCP_SYN)),
        TC_ACT_UNSPEC
    );
}

#[test]
fn established_flows_are_not_subject_to_the_syn_check() {
    require_priv!();
    let f = ddos_fixture();
    whitelist(&f, "10.0.0.1");
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40000, "10.0.0.2", 8080, TCP_SYN)),
        TC_ACT_UNSPEC
    );
    // the whitelist entry goes away; the flow admitted before keeps working
    let k = zfw::ddos::addr_key("10.0.0.1".parse().unwrap());
    f.root
        .maps()
        .del(&zfw::maps::defs::DDOS_SADDR_MAP, &k)
        .unwrap();
    f.egress(&tcp("10.0.0.2", 8080, "10.0.0.1", 40000, TCP_SYN | TCP_ACK));
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40000, "10.0.0.2", 8080, TCP_ACK)),
        TC_ACT_OK
    );
}

fn set_rate(f: &Fixture, rate: u32, burst: u32) {
    let maps = f.root.maps();
    let mut cfg = maps.config().unwrap();
    cfg.syn_rate = rate;
    cfg.syn_burst = burst;
    maps.set_config(&cfg).unwrap();
}

#[test]
fn syn_rate_limit_admits_sources_within_their_bucket() {
    require_priv!();
    let f = ddos_fixture();
    set_rate(&f, 1, 2);
    let syn = |src: &str, sport: u16| f.ingress(&tcp(src, sport, "10.0.0.2", 8080, TCP_SYN));
    // two new sources: the newcomer bucket (burst 2) admits both
    assert_eq!(syn("10.0.0.11", 40000), TC_ACT_UNSPEC);
    assert_eq!(syn("10.0.0.12", 40000), TC_ACT_UNSPEC);
    // a third new source finds the newcomer bucket empty: its first SYN is
    // dropped, but it now has a bucket of its own
    assert_eq!(syn("10.0.0.13", 40000), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_syn_rate"), 1);
    // ... so its retransmission gets in (a spoofed source never retransmits)
    assert_eq!(syn("10.0.0.13", 40000), TC_ACT_UNSPEC);
    // the first source has one token left of its burst of two
    assert_eq!(syn("10.0.0.11", 40001), TC_ACT_UNSPEC);
    assert_eq!(syn("10.0.0.11", 40002), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_syn_rate"), 2);
    // whitelisted sources are not rate limited
    whitelist(&f, "10.0.0.11");
    for p in 40003..40010 {
        assert_eq!(syn("10.0.0.11", p), TC_ACT_UNSPEC);
    }
    assert_eq!(
        f.counter("drop_ddos"),
        0,
        "rate limiting replaces the refusal"
    );
    // rate off again: back to whitelist-only
    set_rate(&f, 0, 0);
    assert_eq!(syn("10.0.0.12", 40011), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_ddos"), 1);
}

#[test]
fn syn_rate_limit_buckets_ipv6_sources_per_64() {
    require_priv!();
    let f = ddos_fixture();
    set_rate(&f, 1, 1);
    let syn = |src: &str, sport: u16| f.ingress(&tcp(src, sport, "fd00::2", 8080, TCP_SYN));
    assert_eq!(syn("fd00:1:2:3::1", 40000), TC_ACT_UNSPEC);
    // another address of the same /64 shares the (now empty) bucket
    assert_eq!(syn("fd00:1:2:3::2", 40001), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_syn_rate"), 1);
}

// ---- CLI -------------------------------------------------------------------

fn loaded_root() -> BpfRoot {
    let r = BpfRoot::new();
    zfw::loader::load_detached(&r.root()).expect("load");
    r
}

#[test]
fn ddos_cli_manages_ports_whitelist_and_rate() {
    require_priv!();
    let r = loaded_root();
    let z = |a: &[&str]| zfw(None, &r, a);
    z(&["ddos", "port", "add", "8080"]).ok();
    z(&["ddos", "port", "add", "443"]).ok();
    assert!(z(&["ddos", "port", "add", "443"])
        .ok()
        .stdout
        .contains("already"));
    assert_eq!(z(&["ddos", "port", "list"]).ok().stdout, "443\n8080\n");
    assert_eq!(
        z(&["ddos", "port", "list", "--json"])
            .ok()
            .stdout
            .replace([' ', '\n'], ""),
        "[443,8080]"
    );
    z(&["ddos", "port", "del", "443"]).ok();
    assert_eq!(z(&["ddos", "port", "list"]).ok().stdout, "8080\n");

    z(&["ddos", "allow", "add", "192.0.2.1"]).ok();
    z(&["ddos", "allow", "add", "2001:db8::1"]).ok();
    assert_eq!(
        z(&["ddos", "allow", "list"]).ok().stdout,
        "192.0.2.1\n2001:db8::1\n"
    );
    z(&["ddos", "allow", "del", "2001:db8::1"]).ok();
    assert_eq!(z(&["ddos", "allow", "list"]).ok().stdout, "192.0.2.1\n");

    assert!(z(&["ddos", "rate"]).ok().stdout.contains("off"));
    z(&["ddos", "rate", "100", "20"]).ok();
    let cfg = r.maps().config().unwrap();
    assert_eq!((cfg.syn_rate, cfg.syn_burst), (100, 20));
    assert!(z(&["ddos", "rate", "--json"])
        .ok()
        .stdout
        .contains("\"burst\": 20"));
    z(&["ddos", "rate", "50"]).ok();
    let cfg = r.maps().config().unwrap();
    assert_eq!((cfg.syn_rate, cfg.syn_burst), (50, 50));
    z(&["ddos", "rate", "off"]).ok();
    assert_eq!(r.maps().config().unwrap().syn_rate, 0);
}

#[test]
fn ddos_cli_rejects_bad_input_and_changes_nothing() {
    require_priv!();
    let r = loaded_root();
    let z = |a: &[&str]| zfw(None, &r, a);
    z(&["ddos", "port", "add", "8080"]).ok();
    z(&["ddos", "rate", "10", "5"]).ok();
    for args in [
        &["ddos", "port", "add", "0"][..],
        &["ddos", "port", "add", "65536"],
        &["ddos", "port", "add", "http"],
        &["ddos", "port", "add"],
        &["ddos", "port", "del", "9999"],
        &["ddos", "port", "list", "80"],
        &["ddos", "port", "drop", "80"],
        &["ddos", "allow", "add", "10.0.0.300"],
        &["ddos", "allow", "add", "10.0.0.0/24"],
        &["ddos", "allow", "del", "192.0.2.77"],
        &["ddos", "rate", "0", "5"],
        &["ddos", "rate", "10", "0"],
        &["ddos", "rate", "fast"],
        &["ddos", "rate", "2000000"],
        &["ddos", "rate", "off", "3"],
    ] {
        let out = z(args);
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(!out.stderr.trim().is_empty(), "{args:?}: needs a message");
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: an error line first, got {}",
            out.stderr
        );
    }
    assert_eq!(z(&["ddos", "port", "list"]).ok().stdout, "8080\n");
    assert_eq!(z(&["ddos", "allow", "list"]).ok().stdout, "");
    let cfg = r.maps().config().unwrap();
    assert_eq!((cfg.syn_rate, cfg.syn_burst), (10, 5));
}

#[test]
fn ddos_cli_without_zfw_loaded_says_so() {
    require_priv!();
    let r = BpfRoot::new();
    let out = zfw(None, &r, &["ddos", "port", "list"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not loaded"), "{}", out.stderr);
}

// ---- end to end: a SYN flood with random sources ---------------------------

/// Tcp InSegs of `ns`: every segment the TCP stack received.
fn tcp_in_segs(ns: &Netns) -> u64 {
    let out = ns.exec("cat", &["/proc/net/snmp"]);
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let names: Vec<&str> = lines[0].split_whitespace().collect();
    let vals: Vec<&str> = lines[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == "InSegs").unwrap();
    vals[i].parse().unwrap()
}

/// Next unused source index: every flood of the test binary uses fresh sources.
static NEXT_SOURCE: AtomicU64 = AtomicU64::new(0);

/// Source number `i` of the flood: a permutation of 100.64.0.0/10 (odd
/// multiplier mod 2^22), so addresses look random and never repeat.
fn flood_source(i: u64) -> Ipv4Addr {
    let x = (i.wrapping_mul(0x2545_f491) & 0x3f_ffff) as u32;
    Ipv4Addr::from(0x6440_0000 | x)
}

/// A SYN flood from random, never repeated sources to `dst:port`, sent with
/// a raw socket from `ns`: `count` SYNs, or until `stop` when given.
fn syn_flood(
    ns: &Netns,
    dst: Ipv4Addr,
    port: u16,
    count: u64,
    stop: Option<Arc<AtomicBool>>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    ns.spawn(move || {
        let fd = raw_ip_socket();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
        let mut n = 0u64;
        loop {
            if let Some(s) = &stop {
                if s.load(Ordering::SeqCst) {
                    break;
                }
            } else if n >= count {
                break;
            }
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = (seed >> 33) as u32;
            let src = flood_source(NEXT_SOURCE.fetch_add(1, Ordering::SeqCst));
            let sport = 1024 + (r >> 20) as u16 % 60000;
            let seg = tcp_segment(src.into(), dst.into(), sport, port, TCP_SYN, r, 0, &[]);
            let pkt = ip_packet(src.into(), dst.into(), TCP, &seg);
            let rc = raw_send_v4(fd, &pkt, dst);
            if rc > 0 {
                n += 1;
                sent.fetch_add(1, Ordering::SeqCst);
            }
            if stop.is_some() {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        // SAFETY: fd came from socket() above and is closed once.
        unsafe { nix::libc::close(fd) };
    })
}

fn flood_lab() -> (Lab, u32) {
    let lab = Lab::new();
    for k in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.srv0.rp_filter=0",
    ] {
        lab.server.exec("sysctl", &["-qw", k]);
    }
    lab.load();
    let maps = lab.root.maps();
    let srv = maps.ifaces().unwrap()[0].0;
    install_catch_all_rule(&maps, AF_INET, TCP, action("allow"));
    (lab, srv)
}

#[test]
fn syn_flood_from_random_sources_never_reaches_the_listener() {
    require_priv!();
    let (lab, srv) = flood_lab();
    let maps = lab.root.maps();
    let port = tcp_listen(&lab.server, "0.0.0.0:8080").serve_echo();
    let dst: Ipv4Addr = SERVER_IP.parse().unwrap();

    // control: without DDoS protection the flood reaches the TCP stack
    let sent = Arc::new(AtomicU64::new(0));
    let before = tcp_in_segs(&lab.server);
    syn_flood(&lab.client, dst, port, 300, None, sent.clone())
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        tcp_in_segs(&lab.server) - before >= 300,
        "control: the unprotected listener sees the flood"
    );

    lab.zfw(&["ddos", "port", "add", &port.to_string()]).ok();
    lab.zfw(&["ddos", "allow", "add", CLIENT_IP]).ok();
    set_iface_flag(&maps, srv, "ddos", true);

    // the flood alone: not one segment reaches TCP
    let sent = Arc::new(AtomicU64::new(0));
    let before = tcp_in_segs(&lab.server);
    syn_flood(&lab.client, dst, port, 2000, None, sent.clone())
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        tcp_in_segs(&lab.server),
        before,
        "no flood SYN may reach the listener"
    );
    let flood = sent.load(Ordering::SeqCst);
    assert_eq!(flood, 2000);
    assert_eq!(counter(&maps, "drop_ddos"), flood);
    assert_eq!(
        maps.get::<u32, u64>(&zfw::maps::defs::SYN_COUNT_MAP, &srv)
            .unwrap(),
        Some(flood)
    );

    // during a flood, the whitelisted client still connects
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let t = syn_flood(&lab.client, dst, port, 0, Some(stop.clone()), sent.clone());
    std::thread::sleep(Duration::from_millis(200));
    let ok = tcp_echo_ok(
        &lab.client,
        &format!("{SERVER_IP}:{port}"),
        Duration::from_secs(3),
    );
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
    assert!(ok, "the whitelisted client connects during the flood");
    assert!(sent.load(Ordering::SeqCst) > 0);
    assert_eq!(
        counter(&maps, "drop_ddos"),
        flood + sent.load(Ordering::SeqCst)
    );

    // status shows the per-interface SYN count
    let st = lab.zfw(&["status", "--json"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert!(v["syn_counts"]["srv0"].as_u64().unwrap() > flood);
}

#[test]
fn with_a_syn_rate_limit_a_non_whitelisted_client_connects_during_a_flood() {
    require_priv!();
    let (lab, srv) = flood_lab();
    let maps = lab.root.maps();
    let port = tcp_listen(&lab.server, "0.0.0.0:8080").serve_echo();
    let dst: Ipv4Addr = SERVER_IP.parse().unwrap();
    lab.zfw(&["ddos", "port", "add", &port.to_string()]).ok();
    set_iface_flag(&maps, srv, "ddos", true);
    let target = format!("{SERVER_IP}:{port}");

    // whitelist only (no rate limit): a client not on the list is refused
    assert!(!tcp_echo_ok(
        &lab.client,
        &target,
        Duration::from_millis(700)
    ));

    lab.zfw(&["ddos", "rate", "2", "2"]).ok();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let t = syn_flood(&lab.client, dst, port, 0, Some(stop.clone()), sent.clone());
    // let the flood drain the newcomer bucket first
    let started = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let ok = tcp_echo_ok(&lab.client, &target, Duration::from_secs(5));
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(ok, "a legitimate client gets through the rate limit");
    let flood = sent.load(Ordering::SeqCst);
    let limited = counter(&maps, "drop_syn_rate");
    assert!(flood > 1000, "the flood ran ({flood} SYNs)");
    // admitted new flows: the newcomer bucket (burst 2 + 2/s) plus our client
    let admitted = counter(&maps, "pass_rule");
    let bound = 2 + (2.0 * secs).ceil() as u64 + 1;
    assert!(
        admitted <= bound,
        "at most burst + rate x {secs:.1} s of the flood got in: {admitted} > {bound}"
    );
    assert!(
        limited + admitted >= flood,
        "{limited} + {admitted} < {flood}"
    );
}
