//! The per-CPU flow cache in front of the conntrack tables
//! (src/bpf/flowcache.h): packets of cached flows are admitted without the
//! table, but every event that ends a flow or changes what may pass ends the
//! cached verdict too, and the cache's packets still show in the counters.
//!
//! The tests pin themselves to one CPU: the cache is per CPU, and a packet
//! run on another CPU than the one that filled the slot would take the table
//! path and hide a stale slot.

mod common;

use common::fixture::*;
use common::packet::*;
use common::*;

const C: &str = "10.0.0.1"; // remote peer
const S: &str = "10.0.0.2"; // this host
const C6: &str = "fd00::1";
const S6: &str = "fd00::2";

fn cin(flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    tcp_full(C, 41000, S, 22, flags, seq, ack, data)
}

fn sout(flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    tcp_full(S, 22, C, 41000, flags, seq, ack, data)
}

/// An established inbound SSH flow whose verdict sits in this CPU's cache.
fn cached_flow() -> Fixture {
    pin_cpu();
    let f = Fixture::new();
    assert_eq!(f.ingress(&cin(TCP_SYN, 100, 0, b"")), TC_ACT_UNSPEC);
    assert_eq!(f.egress(&sout(TCP_SYN | TCP_ACK, 500, 101, b"")), TC_ACT_OK);
    assert_eq!(f.ingress(&cin(TCP_ACK, 101, 501, b"")), TC_ACT_OK);
    // the first data packet goes through the table and fills the slot
    assert_eq!(f.ingress(&cin(TCP_ACK, 101, 501, b"x")), TC_ACT_OK);
    f
}

type Pkt<'a> = &'a dyn Fn(u8, u32, u32, &[u8]) -> Vec<u8>;

/// An inbound handshake (client packets from `c`, server's from `s`), then
/// data that fills this CPU's cache and a packet admitted from it.
fn handshake_and_cache(f: &Fixture, c: Pkt, s: Pkt) {
    assert_eq!(f.ingress(&c(TCP_SYN, 1, 0, b"")), TC_ACT_UNSPEC);
    assert_eq!(f.egress(&s(TCP_SYN | TCP_ACK, 9, 2, b"")), TC_ACT_OK);
    assert_eq!(f.ingress(&c(TCP_ACK, 2, 10, b"")), TC_ACT_OK);
    assert_eq!(f.ingress(&c(TCP_ACK, 2, 10, b"a")), TC_ACT_OK);
    assert_eq!(f.ingress(&c(TCP_ACK, 3, 10, b"b")), TC_ACT_OK);
}

fn flow(f: &Fixture) -> serde_json::Value {
    let list = zfw::conntrack::list(&f.root.maps()).unwrap();
    let tcp: Vec<_> = list.iter().filter(|e| e.proto == "tcp").collect();
    assert_eq!(tcp.len(), 1, "one tcp flow");
    serde_json::to_value(tcp[0]).unwrap()
}

#[test]
fn a_cached_flow_is_admitted_and_every_packet_counted() {
    require_priv!();
    let f = cached_flow();
    let slots = f.flow_cache_slots();
    let s = slots
        .iter()
        .find(|s| s["hook"] == "ingress" && s["dst"] == format!("{S}:22"))
        .expect("the flow is cached");
    assert_eq!(s["flow_direction"], "inbound");
    assert_eq!(s["packet_direction"], "original");
    assert_eq!(s["current"], true);

    let before = flow(&f);
    let pending_before = pending(&f);
    let data = cin(TCP_ACK | TCP_PSH, 102, 501, b"hello");
    for _ in 0..5 {
        assert_eq!(f.ingress(&data), TC_ACT_OK);
    }
    let reply = sout(TCP_ACK, 501, 107, b"ok");
    for _ in 0..3 {
        assert_eq!(f.egress(&reply), TC_ACT_OK);
    }
    let after = flow(&f);
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(n(&after, "packets_orig") - n(&before, "packets_orig"), 5);
    assert_eq!(
        n(&after, "bytes_orig") - n(&before, "bytes_orig"),
        5 * (20 + 20 + 5)
    );
    assert_eq!(n(&after, "packets_reply") - n(&before, "packets_reply"), 3);
    assert_eq!(
        n(&after, "bytes_reply") - n(&before, "bytes_reply"),
        3 * (20 + 20 + 2)
    );
    // the counts above are equal whether the table or the cache admitted
    // the packets: the slots' pending packets say the cache did
    let pending_after = pending(&f);
    assert_eq!(pending_after.0 - pending_before.0, 5, "ingress slot");
    // the first reply takes the table and fills the egress slot
    assert_eq!(pending_after.1 - pending_before.1, 2, "egress slot");
}

/// Pending (not yet folded into the table) packets of this CPU's ingress
/// and egress cache slots of the SSH flow.
fn pending(f: &Fixture) -> (u64, u64) {
    let slots = f.flow_cache_slots();
    let of = |hook: &str| -> u64 {
        slots
            .iter()
            .filter(|s| s["hook"] == hook && s["current"] == true)
            .filter(|s| s["dst"] == format!("{S}:22") || s["src"] == format!("{S}:22"))
            .map(|s| s["pending_packets"].as_u64().unwrap())
            .sum()
    };
    (of("ingress"), of("egress"))
}

#[test]
fn rst_ends_a_cached_flow_at_once() {
    require_priv!();
    let f = cached_flow();
    assert_eq!(f.ingress(&cin(TCP_ACK, 102, 501, b"y")), TC_ACT_OK);
    assert_eq!(f.ingress(&cin(TCP_RST, 103, 0, b"")), TC_ACT_OK);
    // the slot still holds the flow, but its epoch moved on
    assert_eq!(
        f.ingress(&cin(TCP_ACK, 103, 501, b"z")),
        TC_ACT_SHOT,
        "no state after the RST"
    );
}

#[test]
fn rst_from_this_side_ends_the_cached_reply_path_too() {
    require_priv!();
    let f = cached_flow();
    assert_eq!(f.egress(&sout(TCP_ACK, 501, 103, b"a")), TC_ACT_OK);
    assert_eq!(f.egress(&sout(TCP_RST, 502, 0, b"")), TC_ACT_OK);
    assert_eq!(f.ingress(&cin(TCP_ACK, 102, 502, b"z")), TC_ACT_SHOT);
}

#[test]
fn fin_moves_a_cached_flow_back_to_the_table() {
    require_priv!();
    let f = cached_flow();
    // the reply direction is cached on egress too
    assert_eq!(f.egress(&sout(TCP_ACK, 501, 102, b"r")), TC_ACT_OK);
    assert_eq!(f.ingress(&cin(TCP_FIN | TCP_ACK, 102, 502, b"")), TC_ACT_OK);
    // data after a FIN is a table decision (state fin_wait), still allowed
    assert_eq!(f.egress(&sout(TCP_ACK, 502, 103, b"late")), TC_ACT_OK);
    let slots = f.flow_cache_slots();
    assert!(
        slots.iter().all(|s| s["current"] == false),
        "no slot may stay current once the flow left established: {slots:?}"
    );
}

#[test]
fn conntrack_flush_ends_cached_flows() {
    require_priv!();
    let f = cached_flow();
    zfw(None, &f.root, &["conntrack", "flush"]).ok();
    assert_eq!(f.ingress(&cin(TCP_ACK, 102, 501, b"z")), TC_ACT_SHOT);
}

#[test]
fn a_deny_rule_ends_a_cached_flow() {
    require_priv!();
    pin_cpu();
    let f = Fixture::new();
    f.rule(&[
        "add",
        "--dst",
        "10.0.0.2/32",
        "--proto",
        "tcp",
        "--ports",
        "8080",
    ]);
    let c = |flags, seq, ack, d: &[u8]| tcp_full(C, 41001, S, 8080, flags, seq, ack, d);
    let s = |flags, seq, ack, d: &[u8]| tcp_full(S, 8080, C, 41001, flags, seq, ack, d);
    handshake_and_cache(&f, &c, &s);
    f.rule(&[
        "add",
        "--dst",
        "10.0.0.2/32",
        "--src",
        "10.0.0.1/32",
        "--proto",
        "tcp",
        "--ports",
        "8080",
        "--deny",
    ]);
    assert_eq!(f.ingress(&c(TCP_ACK, 4, 10, b"c")), TC_ACT_SHOT);
}

#[test]
fn ipv6_off_is_honoured_for_cached_ipv6_flows() {
    require_priv!();
    pin_cpu();
    let f = Fixture::new();
    let ipv6 = Fixture::flag("ipv6");
    f.set_flags(zfw::iface_state::default_flags() | ipv6);
    let c = |flags, seq, ack, d: &[u8]| tcp_full(C6, 41002, S6, 22, flags, seq, ack, d);
    let s = |flags, seq, ack, d: &[u8]| tcp_full(S6, 22, C6, 41002, flags, seq, ack, d);
    handshake_and_cache(&f, &c, &s);
    f.set_flags(zfw::iface_state::default_flags() & !ipv6);
    assert_eq!(f.ingress(&c(TCP_ACK, 4, 10, b"c")), TC_ACT_SHOT);
}

#[test]
fn verbose_interfaces_see_an_event_for_cached_packets() {
    require_priv!();
    let f = cached_flow();
    let before = f.counter("pass_known_flow");
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("verbose"));
    let mut mon = std::process::Command::new(env!("CARGO_BIN_EXE_zfw"))
        .args(["--bpffs", &f.root.dir.display().to_string()])
        .args(["monitor", "--json", "--count", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // the wait outlasted the slot's freshness: the first packet refills it
    // from the table, the second is admitted from the cache
    assert_eq!(f.ingress(&cin(TCP_ACK, 102, 501, b"v")), TC_ACT_OK);
    assert_eq!(f.ingress(&cin(TCP_ACK, 103, 501, b"w")), TC_ACT_OK);
    let t0 = std::time::Instant::now();
    while mon.try_wait().unwrap().is_none() && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = mon.kill();
    let out = mon.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.matches("pass_known_flow").count(),
        2,
        "an event per packet: {out}"
    );
    assert_eq!(f.counter("pass_known_flow"), before + 2);
}
