//! `zfw watch` on a host: the SSH and ICMP echo exceptions follow the
//! interface's addresses within a second of `ip addr`, with no zfw command
//! in between; an interface re-created under its name is re-attached; a
//! killed watcher's address copy stops granting exceptions within the lease;
//! its periodic gc removes expired flows.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::watch::*;
use common::*;

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(3);
/// The bound from `ip addr` to the new behaviour.
const WITHIN: Duration = Duration::from_secs(1);

/// The addresses the datapath uses for `dev` (ifindex_ip_map / ip6).
fn datapath_addrs(lab: &Lab, dev: &str) -> Vec<IpAddr> {
    Datapath::new(lab, dev).addrs()
}

/// The pinned maps, opened once, and the ifindex of one interface: reading
/// them costs microseconds, so polling measures the watcher, not the test.
struct Datapath {
    maps: zfw::maps::Maps,
    idx: u32,
}

impl Datapath {
    fn new(lab: &Lab, dev: &str) -> Datapath {
        let maps = lab.root.maps();
        let idx = maps
            .ifaces()
            .unwrap()
            .into_iter()
            .find(|(_, st)| zfw::iface_state::name_str(&st.name) == dev)
            .map(|(i, _)| i)
            .expect("attached");
        Datapath { maps, idx }
    }

    fn addrs(&self) -> Vec<IpAddr> {
        zfw::iface_state::addrs(&self.maps, self.idx).unwrap()
    }

    fn has(&self, a: &str) -> bool {
        self.addrs().contains(&a.parse().unwrap())
    }
}

fn has(lab: &Lab, dev: &str, a: &str) -> bool {
    Datapath::new(lab, dev).has(a)
}

/// The MAC of `dev` in `ns` (for a static neighbour entry on the client:
/// the kernel answers neither ARP-less IPv6 ND for an address on `lo`).
fn mac(ns: &Netns, dev: &str) -> String {
    let out = sh("ip", &["-n", &ns.name, "-o", "link", "show", dev]);
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let i = s.find("link/ether ").expect("ether") + 11;
    s[i..i + 17].to_string()
}

/// The client sends packets for `addr` to srv0's MAC (the server answers
/// no IPv6 neighbour solicitation for an address on `lo`).
fn neigh_to_srv0(lab: &Lab, addr: &str) {
    let m = mac(&lab.server, "srv0");
    lab.client
        .ip(&["neigh", "replace", addr, "lladdr", &m, "dev", "cli0"]);
}

/// A host lab with zfw on srv0, SSH (port 22) and ICMP echo exceptions on.
fn host_lab() -> (Lab, u16) {
    let lab = Lab::new();
    let ssh = tcp_listen(&lab.server, "[::]:22").serve_echo();
    lab.load();
    lab.zfw(&["iface", "set", "srv0", "--icmp-echo", "on"]).ok();
    (lab, ssh)
}

/// Move `old` from srv0 to lo and give srv0 `new` instead; the delay until
/// the datapath has `new` (ms) is printed, and SSH and echo to `new` must
/// work within a second while `old` (now on lo) gets neither.
fn renumber(lab: &Lab, ssh: u16, old: &str, new: &str, plen: &str, v6: bool) -> Duration {
    let fam = if v6 { "-6" } else { "-4" };
    let nodad: &[&str] = if v6 { &["nodad"] } else { &[] };
    let host_len = if v6 { "128" } else { "32" };
    let dp = Datapath::new(lab, "srv0");
    let t0 = Instant::now();
    let (new_p, old_h) = (format!("{new}/{plen}"), format!("{old}/{host_len}"));
    // (deleting the primary first: a secondary in its subnet would go with
    // it unless promote_secondaries is on)
    lab.server
        .ip(&[fam, "addr", "del", &format!("{old}/{plen}"), "dev", "srv0"]);
    let mut add = vec![fam, "addr", "add", new_p.as_str(), "dev", "srv0"];
    add.extend_from_slice(nodad);
    let t_add = Instant::now();
    lab.server.ip(&add);
    let ip_took = t_add.elapsed();
    wait_until(WITHIN, || dp.has(new)).expect("new address in the datapath");
    // from the start of the `ip addr add` (a process of its own) to the
    // datapath holding the new address
    let delay = t_add.elapsed();
    let mut lo = vec![fam, "addr", "add", old_h.as_str(), "dev", "lo"];
    lo.extend_from_slice(nodad);
    lab.server.ip(&lo);
    wait_until(WITHIN, || dp.has(new) && !dp.has(old))
        .unwrap_or_else(|| panic!("datapath addresses {:?}", dp.addrs()));
    // the old address still answers the client, from lo
    neigh_to_srv0(lab, old);
    let ep = |a: &str| {
        if v6 {
            format!("[{a}]:{ssh}")
        } else {
            format!("{a}:{ssh}")
        }
    };
    assert!(tcp_echo_ok(&lab.client, &ep(new), LONG), "SSH to {new}");
    assert!(ping_ok(&lab.client, new), "echo to {new}");
    assert!(
        t0.elapsed() < WITHIN + Duration::from_millis(500),
        "{:?} from ip addr to SSH and echo on {new}",
        t0.elapsed()
    );
    assert!(
        !tcp_echo_ok(&lab.client, &ep(old), SHORT),
        "SSH to {old} on lo"
    );
    assert!(!ping_ok(&lab.client, old), "echo to {old} on lo");
    eprintln!("ip addr add {new} -> datapath has it: {delay:?} (of which the ip command itself {ip_took:?})");
    delay
}

#[test]
fn renumbering_ipv4_and_ipv6_moves_the_exceptions_within_a_second() {
    require_priv!();
    let (lab, ssh) = host_lab();
    let w = Watch::start(&lab.server, &lab.root);
    renumber(&lab, ssh, SERVER_IP, "10.77.0.3", "24", false);
    renumber(&lab, ssh, SERVER_IP6, "fd77::3", "64", true);
    assert!(w
        .log()
        .iter()
        .any(|l| l.contains("srv0") && l.contains("added 10.77.0.3")));
    assert!(w.stop().success());
}

#[test]
fn a_secondary_address_survives_the_primary_going() {
    require_priv!();
    let (lab, ssh) = host_lab();
    let out = lab.server.exec(
        "sysctl",
        &["-qw", "net.ipv4.conf.srv0.promote_secondaries=1"],
    );
    assert!(out.status.success());
    let _w = Watch::start(&lab.server, &lab.root);
    lab.server
        .ip(&["addr", "add", "10.77.0.4/24", "dev", "srv0"]);
    lab.server
        .ip(&["-6", "addr", "add", "fd77::4/64", "dev", "srv0", "nodad"]);
    assert!(wait_until(WITHIN, || has(&lab, "srv0", "10.77.0.4")
        && has(&lab, "srv0", "fd77::4"))
    .is_some());
    renumber(&lab, ssh, SERVER_IP, "10.77.0.5", "24", false);
    // the secondary was promoted and kept its exception
    assert!(tcp_echo_ok(&lab.client, &format!("10.77.0.4:{ssh}"), LONG));
    renumber(&lab, ssh, SERVER_IP6, "fd77::5", "64", true);
    assert!(tcp_echo_ok(&lab.client, &format!("[fd77::4]:{ssh}"), LONG));
}

#[test]
fn a_hundred_rapid_add_del_cycles_end_in_the_kernels_state() {
    require_priv!();
    let (lab, _ssh) = host_lab();
    let _w = Watch::start(&lab.server, &lab.root);
    let mut batch = String::new();
    for i in 0..100 {
        batch.push_str(&format!("addr add 10.77.1.{i}/32 dev srv0\n"));
        batch.push_str(&format!("addr add fd77:1::{i}/128 dev srv0 nodad\n"));
        if i != 42 {
            batch.push_str(&format!("addr del 10.77.1.{i}/32 dev srv0\n"));
            batch.push_str(&format!("addr del fd77:1::{i}/128 dev srv0\n"));
        }
    }
    batch.push_str(&format!("addr del {SERVER_IP}/24 dev srv0\n"));
    let f = TempFile::new("batch", &batch);
    let t0 = Instant::now();
    lab.server.ip(&["-batch", &f.path_str()]);
    let want = |lab: &Lab| {
        let (v4, v6) = lab.server.enter(|| zfw::ifaddr::addresses("srv0"));
        let mut k: Vec<IpAddr> = v4.into_iter().map(IpAddr::V4).collect();
        k.extend(v6.into_iter().map(IpAddr::V6));
        k
    };
    let kernel = want(&lab);
    assert!(kernel.contains(&"10.77.1.42".parse().unwrap()));
    assert!(!kernel.contains(&SERVER_IP.parse().unwrap()));
    let dp = Datapath::new(&lab, "srv0");
    let d = wait_until(WITHIN, || dp.addrs() == kernel);
    assert!(
        d.is_some(),
        "kernel {kernel:?}, datapath {:?}",
        datapath_addrs(&lab, "srv0")
    );
    eprintln!(
        "400 address events: datapath matches the kernel {:?} after ip -batch returned ({:?} in all)",
        d.unwrap(),
        t0.elapsed()
    );
}

#[test]
fn a_killed_watchers_copy_stops_granting_within_the_lease_and_sigterm_returns_to_static() {
    require_priv!();
    let (lab, ssh) = host_lab();
    let lease = Duration::from_millis(zfw::skel::names::ZFW_WATCH_LEASE_MS as u64);
    let w = Watch::start(&lab.server, &lab.root);
    let t_kill = Instant::now();
    w.kill();
    // the address moves to lo while nobody watches: the copy is stale
    lab.server
        .ip(&["addr", "del", &format!("{SERVER_IP}/24"), "dev", "srv0"]);
    lab.server
        .ip(&["addr", "add", "10.77.0.3/24", "dev", "srv0"]);
    lab.server
        .ip(&["addr", "add", &format!("{SERVER_IP}/32"), "dev", "lo"]);
    neigh_to_srv0(&lab, SERVER_IP);
    let old = format!("{SERVER_IP}:{ssh}");
    // still granted from the stale copy: the lease has not run out yet
    // (it was renewed at most one period before the kill)
    assert!(
        tcp_echo_ok(&lab.client, &old, SHORT),
        "stale copy, fresh lease"
    );
    assert!(t_kill.elapsed() < lease - Duration::from_millis(1200));
    let stopped = wait_until(lease + Duration::from_secs(1), || {
        !tcp_echo_ok(&lab.client, &old, Duration::from_millis(150))
    });
    let after = t_kill.elapsed();
    assert!(stopped.is_some(), "the lease never ran out");
    assert!(
        after <= lease + Duration::from_millis(500),
        "exception to the removed address lasted {after:?} after the kill"
    );
    eprintln!("watcher SIGKILLed: exception to the moved address stopped after {after:?}");
    assert!(!ping_ok(&lab.client, SERVER_IP));

    // a new watcher (Restart=always) re-syncs: the current address works
    let w = Watch::start(&lab.server, &lab.root);
    assert!(tcp_echo_ok(&lab.client, &format!("10.77.0.3:{ssh}"), LONG));
    assert!(!tcp_echo_ok(&lab.client, &old, SHORT));
    // SIGTERM: static mode, the exceptions outlive the lease
    assert!(w.stop().success());
    let l = lab
        .root
        .maps()
        .get(&zfw::maps::defs::WATCH_MAP, &0)
        .unwrap()
        .unwrap();
    assert_eq!(l.expires_ns, 0, "a clean stop clears the lease");
    std::thread::sleep(lease + Duration::from_millis(300));
    assert!(tcp_echo_ok(&lab.client, &format!("10.77.0.3:{ssh}"), LONG));
    assert!(ping_ok(&lab.client, "10.77.0.3"));
}

#[test]
fn an_interface_recreated_under_its_name_is_reattached() {
    require_priv!();
    let (lab, ssh) = host_lab();
    let web = tcp_listen(&lab.server, "0.0.0.0:8080").serve_echo();
    let make = || {
        veth(&lab.client, "cli1", &lab.server, "srv1");
        lab.client
            .ip(&["addr", "add", "10.77.9.1/24", "dev", "cli1"]);
        lab.server
            .ip(&["addr", "add", "10.77.9.2/24", "dev", "srv1"]);
    };
    make();
    lab.zfw(&["load", "--iface", "srv1"]).ok();
    lab.zfw(&["iface", "set", "srv1", "--icmp-echo", "on"]).ok();
    let blocked = |lab: &Lab| !tcp_echo_ok(&lab.client, &format!("10.77.9.2:{web}"), SHORT);
    assert!(blocked(&lab), "zfw protects srv1");
    let w = Watch::start(&lab.server, &lab.root);
    lab.server.ip(&["link", "del", "srv1"]);
    assert!(w.wait_line("was deleted", WITHIN), "{:?}", w.log());
    make();
    assert!(
        w.wait_line("re-created", WITHIN),
        "not re-attached: {:?}",
        w.log()
    );
    // protected again, with its settings and its new address
    let ssh_ok = wait_until(WITHIN, || {
        tcp_echo_ok(&lab.client, &format!("10.77.9.2:{ssh}"), SHORT)
    });
    assert!(ssh_ok.is_some(), "SSH to srv1's address");
    assert!(ping_ok(&lab.client, "10.77.9.2"), "icmp-echo kept");
    assert!(blocked(&lab), "8080 blocked on the new srv1");
    let line = w
        .log()
        .into_iter()
        .find(|l| l.contains("re-created"))
        .unwrap();
    assert!(line.contains("WARNING") && line.contains("srv1"), "{line}");
    let show = lab.zfw(&["iface", "show", "srv1", "--json"]).ok();
    assert!(show.stdout.contains("10.77.9.2"), "{}", show.stdout);
}

#[test]
fn a_notification_overflow_is_followed_by_a_full_resync() {
    require_priv!();
    let (lab, _ssh) = host_lab();
    let mut w = Watch::start(&lab.server, &lab.root);
    // a stopped watcher reads nothing: thousands of events overflow its
    // socket's receive buffer (ENOBUFS) and notifications are lost
    w.signal(nix::sys::signal::Signal::SIGSTOP);
    let mut batch = String::new();
    for i in 0..3000 {
        let a = format!("10.78.{}.{}/32", i / 250, i % 250 + 1);
        batch.push_str(&format!("addr add {a} dev srv0\naddr del {a} dev srv0\n"));
    }
    batch.push_str(&format!("addr del {SERVER_IP}/24 dev srv0\n"));
    batch.push_str("addr add 10.77.0.9/24 dev srv0\n");
    let f = TempFile::new("batch", &batch);
    lab.server.ip(&["-batch", &f.path_str()]);
    w.signal(nix::sys::signal::Signal::SIGCONT);
    assert!(
        w.wait_line("ENOBUFS", Duration::from_secs(5)),
        "no overflow seen: {:?}",
        w.log()
    );
    let dp = Datapath::new(&lab, "srv0");
    assert!(
        wait_until(WITHIN, || dp.has("10.77.0.9") && !dp.has(SERVER_IP)).is_some(),
        "{:?}",
        dp.addrs()
    );
    assert!(dp.addrs().iter().all(|a| a.to_string() != "10.78.0.1"));
}

/// The main flow tables do not evict (README "Table pressure"): a flow that
/// no packet visits again leaves through the watcher's periodic gc, and a
/// live one stays.
#[test]
fn the_watchers_gc_removes_expired_flows_and_keeps_live_ones() {
    require_priv!();
    use zfw::maps::defs::UDP_MAP;
    use zfw::skel::types::{zfw_flow, zfw_flow_key};
    let lab = Lab::new();
    lab.load();
    let maps = lab.root.maps();
    let now = zfw::decode::mono_now_ns();
    let key = |sport: u16| {
        let mut k = zfw_flow_key {
            sport,
            dport: 53,
            ifindex: 1,
            family: zfw::net::AF_INET,
            proto: zfw::net::IPPROTO_UDP,
            ..Default::default()
        };
        k.saddr[0] = u32::from_ne_bytes([10, 77, 0, 2]);
        k.daddr[0] = u32::from_ne_bytes([10, 77, 0, 1]);
        k
    };
    let flow = |idle_s: u64| zfw_flow {
        state: zfw::skel::names::ZFW_TCP_UDP as u8,
        first_ns: now - 200_000_000_000,
        last_ns: now - idle_s * 1_000_000_000,
        pkts_orig: 1,
        ..Default::default()
    };
    let (dead, live) = (key(5001), key(5002));
    maps.put(&UDP_MAP, &dead, &flow(100)).unwrap();
    maps.put(&UDP_MAP, &live, &flow(0)).unwrap();
    let w = Watch::start_with(&lab.server, &lab.root, &["--gc-interval", "1"]);
    assert!(
        wait_until(Duration::from_secs(5), || maps
            .get(&UDP_MAP, &dead)
            .unwrap()
            .is_none())
        .is_some(),
        "an expired flow outlived 5 gc intervals: {:?}",
        w.log()
    );
    assert!(
        maps.get(&UDP_MAP, &live).unwrap().is_some(),
        "a live flow went"
    );
    assert!(
        w.wait_line("gc: removed 1 expired flows", SHORT),
        "{:?}",
        w.log()
    );
}
