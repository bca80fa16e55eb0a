//! Tunnel mode: ingress `tunnel` rules redirect client flows into the
//! registered tun (recording tun_map state), and XDP on the tun sends the
//! tunneler's replies straight back out of the client's interface.

mod common;

use std::time::Duration;

use common::catch_all::*;
use common::fixture::*;
use common::packet::*;
use common::*;
use zfw::skel::types;

const SERVICE: &str = "100.64.0.10";

fn register_tun(f: &Fixture, ifindex: u32) {
    let ti = types::zfw_tun_iface {
        ifindex,
        ..Default::default()
    };
    f.root
        .maps()
        .put(&zfw::maps::defs::IFINDEX_TUN_MAP, &0u32, &ti)
        .unwrap();
}

/// tun_map key of a client flow (the tuple as it arrived, ifindex 0).
fn tun_key(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> types::zfw_flow_key {
    let mut k = types::zfw_flow_key {
        sport,
        dport,
        family: AF_INET,
        proto,
        ..Default::default()
    };
    k.saddr[0] = v4(src);
    k.daddr[0] = v4(dst);
    k
}

#[test]
fn tunnel_rule_redirects_into_the_tun_and_records_the_flow() {
    require_priv!();
    let f = Fixture::new();
    install_catch_all_rule(&f.root.maps(), AF_INET, UDP, action("tunnel"));
    let frame = udp("10.0.0.1", 40000, SERVICE, 5000, b"hello");

    // no tun registered: nowhere to send it
    assert_eq!(f.ingress(&frame), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_no_tunnel"), 1);
    assert_eq!(f.root.maps().count(&zfw::maps::defs::TUN_MAP).unwrap(), 0);

    register_tun(&f, IFINDEX);
    let before = mono_ns();
    assert_eq!(f.ingress(&frame), TC_ACT_REDIRECT);
    assert_eq!(f.counter("tunnel"), 1);
    let st: types::zfw_tun_state = f
        .root
        .maps()
        .get(
            &zfw::maps::defs::TUN_MAP,
            &tun_key("10.0.0.1", 40000, SERVICE, 5000, UDP),
        )
        .unwrap()
        .expect("tun_map entry for the client flow");
    assert_eq!(st.ifindex, IFINDEX);
    assert_eq!(st.client_mac, CLIENT_MAC);
    assert_eq!(st.our_mac, SERVER_MAC);
    // tun_map uses the coarse clock: it may lag the fine one by a tick
    assert!(st.last_ns + 50_000_000 >= before);

    // more of the flow refreshes the entry in place: the packets right
    // after come from the flow cache, which goes back to the rules (and
    // refreshes the entry) when its slot is 32 ticks old -- at most 320 ms
    let first = st.last_ns;
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(f.ingress(&frame), TC_ACT_REDIRECT);
    let st2: types::zfw_tun_state = f
        .root
        .maps()
        .get(
            &zfw::maps::defs::TUN_MAP,
            &tun_key("10.0.0.1", 40000, SERVICE, 5000, UDP),
        )
        .unwrap()
        .unwrap();
    assert!(st2.last_ns > first);
    assert_eq!(f.root.maps().count(&zfw::maps::defs::TUN_MAP).unwrap(), 1);

    // a TCP flow without a tunnel rule is not redirected
    assert_eq!(
        f.ingress(&tcp("10.0.0.1", 40001, SERVICE, 5000, TCP_SYN)),
        TC_ACT_SHOT
    );
}

fn xdp_run(f: &Fixture, ip: &[u8]) -> RunResult {
    f.root.prog(XDP).run(ip, 0).expect("xdp test run")
}

fn put_tun_state(f: &Fixture, key: &types::zfw_flow_key, last_ns: u64) {
    let st = types::zfw_tun_state {
        last_ns,
        ifindex: 7,
        client_mac: CLIENT_MAC,
        our_mac: SERVER_MAC,
    };
    // a new entry: no CPU has a cached copy of a flow not seen before
    f.root
        .maps()
        .put(&zfw::maps::defs::TUN_MAP, key, &st)
        .unwrap();
}

#[test]
fn xdp_fast_path_pushes_ethernet_and_redirects_fresh_flows_only() {
    require_priv!();
    let f = Fixture::new();
    let key = tun_key("10.0.0.1", 40000, SERVICE, 5000, UDP);
    // the tunneler's reply, as the tun delivers it: starts at the IP header
    let reply = udp(SERVICE, 5000, "10.0.0.1", 40000, b"answer");
    let reply_ip = strip_ether(&reply).to_vec();

    // miss: the stack gets it unchanged
    let r = xdp_run(&f, &reply_ip);
    assert_eq!(r.retval, XDP_PASS);
    assert_eq!(r.data, reply_ip);

    // fresh entry (20 s idle): Ethernet header with the stored MACs, redirected
    put_tun_state(&f, &key, mono_ns() - 20_000_000_000);
    let r = xdp_run(&f, &reply_ip);
    assert_eq!(r.retval, XDP_REDIRECT);
    assert_eq!(r.data.len(), reply_ip.len() + 14);
    assert_eq!(&r.data[0..6], &CLIENT_MAC, "dst MAC = the client's");
    assert_eq!(&r.data[6..12], &SERVER_MAC, "src MAC = ours");
    assert_eq!(&r.data[12..14], &[0x08, 0x00]);
    assert_eq!(&r.data[14..], &reply_ip[..]);
    assert_eq!(f.counter("xdp_redirect"), 1);
    // the reply refreshed the entry (replies keep the flow fresh too)
    let st: types::zfw_tun_state = f
        .root
        .maps()
        .get(&zfw::maps::defs::TUN_MAP, &key)
        .unwrap()
        .unwrap();
    assert!(
        mono_ns() - st.last_ns < 1_000_000_000,
        "last_ns not refreshed"
    );

    // more replies come from this CPU's cache, counted exactly
    for _ in 0..4 {
        assert_eq!(xdp_run(&f, &reply_ip).retval, XDP_REDIRECT);
    }
    assert_eq!(f.counter("xdp_redirect"), 5);

    // stale entry (31 s idle) of another client port: slow path
    let stale_key = tun_key("10.0.0.1", 40001, SERVICE, 5000, UDP);
    put_tun_state(&f, &stale_key, mono_ns() - 31_000_000_000);
    let stale = udp(SERVICE, 5000, "10.0.0.1", 40001, b"answer");
    assert_eq!(xdp_run(&f, strip_ether(&stale)).retval, XDP_PASS);
    // an entry just inside the window still hits
    let key2 = tun_key("10.0.0.1", 40002, SERVICE, 5000, UDP);
    put_tun_state(&f, &key2, mono_ns() - 29_000_000_000);
    let inside = udp(SERVICE, 5000, "10.0.0.1", 40002, b"answer");
    assert_eq!(xdp_run(&f, strip_ether(&inside)).retval, XDP_REDIRECT);
    assert_eq!(f.counter("xdp_redirect"), 6);

    // other ports of the same hosts are other flows
    let other = udp(SERVICE, 5001, "10.0.0.1", 40000, b"answer");
    assert_eq!(xdp_run(&f, strip_ether(&other)).retval, XDP_PASS);
    // garbage and truncated packets pass to the stack untouched
    assert_eq!(xdp_run(&f, &[0u8; 20]).retval, XDP_PASS);
    assert_eq!(xdp_run(&f, &reply_ip[..24]).retval, XDP_PASS);
    // an IP length that ends before the ports: the stack drops it
    let mut short = reply_ip.clone();
    short[2..4].copy_from_slice(&22u16.to_be_bytes());
    assert_eq!(xdp_run(&f, &short).retval, XDP_PASS);
    // a fragment goes to the stack for reassembly
    let mut frag = reply_ip.clone();
    frag[6] |= 0x20; // more fragments
    assert_eq!(xdp_run(&f, &frag).retval, XDP_PASS);
    // ICMP is never a tunnel reply
    let ping = icmp_echo(SERVICE, "10.0.0.1", true, 40000, 1);
    assert_eq!(xdp_run(&f, strip_ether(&ping)).retval, XDP_PASS);
}

/// A UDP catch-all tunnel rule, a registered tun and one client flow sent
/// into it: the fixture, the client's frame and the tunneler's reply (IP).
fn tunnelled_udp_flow() -> (Fixture, Vec<u8>, Vec<u8>) {
    let f = Fixture::new();
    install_catch_all_rule(&f.root.maps(), AF_INET, UDP, action("tunnel"));
    register_tun(&f, IFINDEX);
    let frame = udp("10.0.0.1", 40000, SERVICE, 5000, b"hello");
    assert_eq!(f.ingress(&frame), TC_ACT_REDIRECT);
    let reply = udp(SERVICE, 5000, "10.0.0.1", 40000, b"answer");
    let reply_ip = strip_ether(&reply).to_vec();
    (f, frame, reply_ip)
}

#[test]
fn xdp_replies_follow_a_client_that_moved_at_once() {
    require_priv!();
    pin_cpu();
    let (f, frame, reply_ip) = tunnelled_udp_flow();
    // the first reply fills this CPU's cache, the second comes from it
    for _ in 0..2 {
        let r = xdp_run(&f, &reply_ip);
        assert_eq!(r.retval, XDP_REDIRECT);
        assert_eq!(&r.data[0..6], &CLIENT_MAC);
    }
    // the client shows up with another MAC (a failover, a new NIC)
    let moved = [0x02, 0, 0, 0, 0x77, 0x77];
    let mut frame2 = frame.clone();
    frame2[6..12].copy_from_slice(&moved);
    assert_eq!(f.ingress(&frame2), TC_ACT_REDIRECT);
    let r = xdp_run(&f, &reply_ip);
    assert_eq!(r.retval, XDP_REDIRECT);
    assert_eq!(&r.data[0..6], &moved, "the next reply goes to the new MAC");
}

/// Run the XDP program on `ip` from a thread pinned to `cpu` (each CPU has
/// its own tun cache).
fn xdp_run_on(f: &Fixture, cpu: usize, ip: &[u8]) -> RunResult {
    use nix::sched::{sched_setaffinity, CpuSet};
    let path = f.root.dir.join("progs").join(XDP);
    let ip = ip.to_vec();
    std::thread::spawn(move || {
        let mut one = CpuSet::new();
        one.set(cpu).unwrap();
        sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
        zfw::testkit::run::TestProg::open(&path)
            .unwrap()
            .run(&ip, 0)
            .unwrap()
    })
    .join()
    .unwrap()
}

/// The CPUs this process may run on.
fn usable_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    (0..CpuSet::count())
        .filter(|c| set.is_set(*c).unwrap_or(false))
        .collect()
}

#[test]
fn xdp_replies_on_every_cpu_follow_a_moved_client() {
    require_priv!();
    let cpus = usable_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: needs two CPUs to hold two tun caches");
        return;
    }
    let (f, frame, reply_ip) = tunnelled_udp_flow();
    // both CPUs cache the flow
    for &cpu in &cpus[..2] {
        for _ in 0..2 {
            let r = xdp_run_on(&f, cpu, &reply_ip);
            assert_eq!(r.retval, XDP_REDIRECT);
            assert_eq!(&r.data[0..6], &CLIENT_MAC);
        }
    }
    // the client comes back with another MAC, seen by the first CPU
    let moved = [0x02, 0, 0, 0, 0x77, 0x78];
    let mut frame2 = frame.clone();
    frame2[6..12].copy_from_slice(&moved);
    let path = f.root.dir.join("progs").join(POLICY);
    let cpu0 = cpus[0];
    std::thread::spawn(move || {
        let mut one = nix::sched::CpuSet::new();
        one.set(cpu0).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
        let r = zfw::testkit::run::TestProg::open(&path)
            .unwrap()
            .run(&frame2, IFINDEX)
            .unwrap();
        assert_eq!(r.retval, TC_ACT_REDIRECT);
    })
    .join()
    .unwrap();
    // the second CPU's next reply goes to the new MAC, not its cached one
    let r = xdp_run_on(&f, cpus[1], &reply_ip);
    assert_eq!(r.retval, XDP_REDIRECT);
    assert_eq!(
        &r.data[0..6],
        &moved,
        "the other CPU still used the old MAC"
    );
    assert_eq!(f.counter("xdp_redirect"), 5);
}

#[test]
fn xdp_fast_path_serves_ipv4_replies_with_options() {
    require_priv!();
    pin_cpu();
    let f = Fixture::new();
    let key = tun_key("10.0.0.1", 40000, SERVICE, 5000, UDP);
    put_tun_state(&f, &key, mono_ns());
    let reply = udp(SERVICE, 5000, "10.0.0.1", 40000, b"answer");
    // the same reply with a 4-byte option (NOP NOP NOP EOL): IHL 6
    let ip = strip_ether(&reply);
    let mut opt = ip[..20].to_vec();
    opt[0] = 0x46;
    opt.extend_from_slice(&[1, 1, 1, 0]);
    opt.extend_from_slice(&ip[20..]);
    let len = (opt.len() as u16).to_be_bytes();
    opt[2..4].copy_from_slice(&len);
    for _ in 0..2 {
        let r = xdp_run(&f, &opt);
        assert_eq!(r.retval, XDP_REDIRECT);
        assert_eq!(&r.data[0..6], &CLIENT_MAC);
        assert_eq!(&r.data[14..], &opt[..]);
    }
    // and the plain reply of the same flow uses its own slot
    assert_eq!(xdp_run(&f, ip).retval, XDP_REDIRECT);
    assert_eq!(f.counter("xdp_redirect"), 3);
    // dump shows this CPU's slots: one matched on the header, one on the key
    let v = zfw::dump::dump(&f.root.maps(), &["tun_cache_map".to_string()]).unwrap();
    let slots = v["maps"]["tun_cache_map"]["entries"]
        .as_array()
        .expect("tun_cache_map entries");
    let mut kinds: Vec<&str> = slots.iter().map(|s| s["match"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["ipv4 header", "key"], "{v}");
    for s in slots {
        assert_eq!(s["client"], "10.0.0.1:40000");
        assert_eq!(s["service"], "100.64.0.10:5000");
        assert_eq!(s["client_mac"], zfw::decode::mac(&CLIENT_MAC));
    }
    let pending: u64 = slots
        .iter()
        .map(|s| s["pending_redirects"].as_u64().unwrap())
        .sum();
    assert_eq!(pending, 3);
}

#[test]
fn xdp_fast_path_handles_ipv6() {
    require_priv!();
    let f = Fixture::new();
    install_catch_all_rule(&f.root.maps(), AF_INET6, TCP, action("tunnel"));
    register_tun(&f, IFINDEX);
    let syn = tcp("fd00::1", 40000, "fd64::10", 443, TCP_SYN);
    assert_eq!(f.ingress(&syn), TC_ACT_REDIRECT);
    let reply = tcp("fd64::10", 443, "fd00::1", 40000, TCP_SYN | TCP_ACK);
    let r = xdp_run(&f, strip_ether(&reply));
    assert_eq!(r.retval, XDP_REDIRECT);
    assert_eq!(&r.data[12..14], &[0x86, 0xdd]);
    assert_eq!(&r.data[0..6], &CLIENT_MAC);
}

/// MAC address of `dev` in `ns`.
fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = sh("ip", &["-n", &ns.name, "-o", "link", "show", dev]);
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let mac = s
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {s}"));
    let v: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
fn client_udp_to_a_tunnel_service_is_answered_through_the_tun() {
    require_priv!();
    let lab = Lab::new();
    let tun_name = unique("ztun");
    let tun = open_tun_dev(&lab, &tun_name);
    lab.client.ip(&[
        "route",
        "add",
        "100.64.0.0/24",
        "via",
        SERVER_IP,
        "dev",
        "cli0",
    ]);
    let out = lab
        .zfw(&["load", "--iface", "srv0", "--tun", &tun_name])
        .ok();
    assert!(
        out.stdout.contains("xdp (generic)") || out.stdout.contains("xdp (native)"),
        "{}",
        out.stdout
    );
    let maps = lab.root.maps();
    let target = format!("{SERVICE}:5000");

    // no tunnel rule: default deny, the tunneler sees nothing
    assert!(!udp_echo_ok(
        &lab.client,
        &target,
        Duration::from_millis(700)
    ));
    assert_eq!(tun.seen.load(std::sync::atomic::Ordering::SeqCst), 0);

    // the user's way: a tunnel-mode rule for the service prefix
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "100.64.0.0/24",
        "--proto",
        "udp",
        "--ports",
        "5000",
        "--tunnel",
    ])
    .ok();
    assert!(
        udp_echo_ok(&lab.client, &target, Duration::from_secs(3)),
        "the tunneler's answer must come back to the client"
    );
    assert!(tun.seen.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // the tun got an L3 packet: bpf_redirect stripped the Ethernet header
    let first = tun.first.lock().unwrap().clone().unwrap();
    assert_eq!(first[0] >> 4, 4, "packet read from the tun starts at IPv4");
    assert_eq!(&first[16..20], &[100, 64, 0, 10]);
    // the reply took the XDP fast path (the server namespace does not
    // forward, so the slow path could not have delivered it)
    assert!(counter(&maps, "xdp_redirect") >= 1);
    assert!(counter(&maps, "tunnel") >= 1);
    // tun_map holds the flow: client interface and both MACs
    let srv_idx = lab.server.enter(|| zfw::ifaddr::index_of("srv0").unwrap());
    let entries: Vec<(types::zfw_flow_key, types::zfw_tun_state)> =
        maps.entries(&zfw::maps::defs::TUN_MAP).unwrap();
    assert_eq!(entries.len(), 1);
    let (k, st) = &entries[0];
    assert_eq!(k.daddr[0], v4(SERVICE));
    assert_eq!(k.saddr[0], v4(CLIENT_IP));
    assert_eq!(k.dport, 5000);
    assert_eq!(st.ifindex, srv_idx);
    assert_eq!(st.client_mac, mac_of(&lab.client, "cli0"));
    assert_eq!(st.our_mac, mac_of(&lab.server, "srv0"));
    // and `zfw dump --map tun_map` shows it decoded
    let d = lab.zfw(&["dump", "--map", "tun_map"]).ok();
    let v: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let e = &v["maps"]["tun_map"]["entries"][0];
    assert_eq!(
        e["client"].as_str().unwrap(),
        format!("{CLIENT_IP}:{}", k.sport)
    );
    assert_eq!(e["service"], format!("{SERVICE}:5000"));
    assert_eq!(e["iface"], "srv0");
    assert_eq!(e["proto"], "udp");
    drop(tun);
}

fn open_tun_dev(lab: &Lab, name: &str) -> common::tun::Tunneler {
    common::tun::Tunneler::start(common::tun::open_tun(&lab.server, name))
}

#[test]
fn load_tun_registers_the_tun_and_unload_takes_it_away() {
    require_priv!();
    let ns = Netns::new("tun");
    let root = BpfRoot::in_ns(&ns);
    let name = unique("ztun");
    ns.ip(&["tuntap", "add", "dev", &name, "mode", "tun"]);
    ns.ip(&["link", "set", &name, "up"]);
    // a name that is not an interface: usage error, nothing loaded
    let bad = zfw(Some(&ns), &root, &["load", "--tun", "nosuchtun0"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(!root.dir.join("maps").exists());

    zfw(Some(&ns), &root, &["load", "--tun", &name]).ok();
    let idx = ns.enter({
        let n = name.clone();
        move || zfw::ifaddr::index_of(&n).unwrap()
    });
    let maps = root.maps();
    let ti: types::zfw_tun_iface = maps
        .get(&zfw::maps::defs::IFINDEX_TUN_MAP, &0u32)
        .unwrap()
        .unwrap();
    assert_eq!(ti.ifindex, idx);
    assert_eq!(zfw::iface_state::name_str(&ti.name), name);
    let link = sh("ip", &["-n", &ns.name, "-d", "link", "show", &name]);
    assert!(String::from_utf8_lossy(&link.stdout).contains("xdpgeneric"));
    let st = zfw(Some(&ns), &root, &["status", "--json"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&st).unwrap();
    let tun = v["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name.as_str())
        .expect("tun in status");
    assert!(tun["hooks"]["xdp"].as_u64().is_some(), "{tun}");

    zfw(Some(&ns), &root, &["unload", "--iface", &name]).ok();
    assert!(maps
        .get::<u32, types::zfw_tun_iface>(&zfw::maps::defs::IFINDEX_TUN_MAP, &0u32)
        .unwrap()
        .is_none());
    let link = sh("ip", &["-n", &ns.name, "-d", "link", "show", &name]);
    assert!(!String::from_utf8_lossy(&link.stdout).contains("xdp"));
}

#[test]
fn tcp_tunnel_flows_go_on_after_the_syn() {
    require_priv!();
    pin_cpu();
    let f = Fixture::new();
    install_catch_all_rule(&f.root.maps(), AF_INET, TCP, action("tunnel"));
    register_tun(&f, IFINDEX);
    let c = |flags: u8| tcp("10.0.0.1", 40000, SERVICE, 443, flags);
    assert_eq!(f.ingress(&c(TCP_SYN)), TC_ACT_REDIRECT);
    // the first ACK goes through the rules, the next come from the cache
    for _ in 0..3 {
        assert_eq!(f.ingress(&c(TCP_ACK)), TC_ACT_REDIRECT);
    }
    assert_eq!(tunnel_slots(&f).len(), 1);
    // FIN and RST are never decided by the cache; they still reach the tun
    assert_eq!(f.ingress(&c(TCP_ACK | TCP_FIN)), TC_ACT_REDIRECT);
    assert_eq!(f.ingress(&c(TCP_RST)), TC_ACT_REDIRECT);
    assert_eq!(f.counter("tunnel"), 6);
    // a segment of a connection the tunnel never saw has no state anywhere
    let stray = tcp("10.0.0.1", 40001, SERVICE, 443, TCP_ACK);
    assert_eq!(f.ingress(&stray), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_no_state"), 1);
    // the tunnel entry is not a pass: once the rule says allow instead, the
    // connection's later segments have no state to go on
    install_catch_all_rule(&f.root.maps(), AF_INET, TCP, action("allow"));
    assert_eq!(f.ingress(&c(TCP_ACK)), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_no_state"), 2);
}

/// This CPU's flow cache slots that send a flow into a tun.
fn tunnel_slots(f: &Fixture) -> Vec<serde_json::Value> {
    f.flow_cache_slots()
        .into_iter()
        .filter(|s| !s["tunnel_to"].is_null())
        .collect()
}

#[test]
fn tunnelled_flows_are_redirected_from_the_flow_cache() {
    require_priv!();
    pin_cpu();
    let f = Fixture::new();
    install_catch_all_rule(&f.root.maps(), AF_INET, UDP, action("tunnel"));
    register_tun(&f, IFINDEX);
    let frame = udp("10.0.0.1", 40000, SERVICE, 5000, b"hello");
    // the first packet goes through the rules and leaves its way in the cache
    assert_eq!(f.ingress(&frame), TC_ACT_REDIRECT);
    let slots = tunnel_slots(&f);
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!(slots[0]["src"], "10.0.0.1:40000");
    assert_eq!(slots[0]["dst"], "100.64.0.10:5000");
    // the rest come from it, each counted; the slot's pending counts are
    // not a conntrack flow's (a tunnelled flow has none)
    for _ in 0..5 {
        assert_eq!(f.ingress(&frame), TC_ACT_REDIRECT);
    }
    assert_eq!(f.counter("tunnel"), 6);
    assert!(zfw::conntrack::list(&f.root.maps()).unwrap().is_empty());
    // a rule change ends the cached way at once: now the rules say deny
    install_catch_all_rule(&f.root.maps(), AF_INET, UDP, action("deny"));
    assert_eq!(f.ingress(&frame), TC_ACT_SHOT);
    assert_eq!(f.counter("tunnel"), 6);
}
