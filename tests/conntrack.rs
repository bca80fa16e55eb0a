//! Connection tracking, packet by packet (BPF_PROG_TEST_RUN on the real
//! ingress prio 1 + prio 2 and egress programs).

mod common;

use common::fixture::*;
use common::packet::*;
use common::*;
use zfw::maps::{defs, MapDef};
use zfw::skel::types::{zfw_flow, zfw_flow_key};

type FlowTable = &'static MapDef<zfw_flow_key, zfw_flow>;

const C: &str = "10.0.0.1"; // remote peer
const S: &str = "10.0.0.2"; // this host (an interface address)

/// The flows of assured table `map` and of its unassured twin (a flow
/// moves from the second to the first when assured: README "Table
/// pressure").
fn flows(f: &Fixture, map: FlowTable) -> Vec<(zfw_flow_key, zfw_flow)> {
    let maps = f.root.maps();
    defs::flow_tables_of(map)
        .flat_map(|t| maps.entries(t.def).unwrap())
        .collect()
}

fn state(f: &Fixture, map: FlowTable) -> Option<String> {
    flows(f, map)
        .first()
        .map(|(_, v)| zfw::decode::tcp_state(v.state))
}

/// Make every entry of `map` look `secs` older (and the flow caches, which
/// trust a verdict for a few ticks, forget theirs: time passed for them too).
fn age(f: &Fixture, map: FlowTable, secs: u64) {
    let maps = f.root.maps();
    for t in defs::flow_tables_of(map) {
        for (k, mut v) in maps.entries(t.def).unwrap() {
            v.last_ns -= secs * 1_000_000_000;
            maps.put(t.def, &k, &v).unwrap();
        }
    }
    zfw::conntrack::invalidate_flow_caches(&maps).unwrap();
}

fn cin(flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    tcp_full(C, 40000, S, 22, flags, seq, ack, &[])
}
fn sout(flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    tcp_full(S, 22, C, 40000, flags, seq, ack, &[])
}

/// Inbound handshake to SSH (admitted without rules): returns the fixture.
fn inbound_established() -> Fixture {
    let f = Fixture::new();
    assert_eq!(f.ingress(&cin(TCP_SYN, 100, 0)), TC_ACT_UNSPEC);
    assert_eq!(
        state(&f, &defs::TCP_INGRESS_MAP).as_deref(),
        Some("syn_sent")
    );
    assert_eq!(f.egress(&sout(TCP_SYN | TCP_ACK, 500, 101)), TC_ACT_OK);
    assert_eq!(
        state(&f, &defs::TCP_INGRESS_MAP).as_deref(),
        Some("syn_recv")
    );
    assert_eq!(f.ingress(&cin(TCP_ACK, 101, 501)), TC_ACT_OK);
    assert_eq!(
        state(&f, &defs::TCP_INGRESS_MAP).as_deref(),
        Some("established")
    );
    f
}

#[test]
fn inbound_tcp_lifecycle_client_closes_first() {
    require_priv!();
    let f = inbound_established();
    let data = tcp_full(C, 40000, S, 22, TCP_ACK | TCP_PSH, 101, 501, b"hello");
    assert_eq!(f.ingress(&data), TC_ACT_OK);
    assert_eq!(f.ingress(&cin(TCP_FIN | TCP_ACK, 106, 501)), TC_ACT_OK);
    assert_eq!(
        state(&f, &defs::TCP_INGRESS_MAP).as_deref(),
        Some("fin_wait")
    );
    assert_eq!(f.egress(&sout(TCP_ACK, 501, 107)), TC_ACT_OK);
    assert_eq!(f.egress(&sout(TCP_FIN | TCP_ACK, 501, 107)), TC_ACT_OK);
    assert_eq!(
        state(&f, &defs::TCP_INGRESS_MAP).as_deref(),
        Some("closing")
    );
    // final ACK of the server's FIN ends the flow
    assert_eq!(f.ingress(&cin(TCP_ACK, 107, 502)), TC_ACT_OK);
    assert!(
        flows(&f, &defs::TCP_INGRESS_MAP).is_empty(),
        "entry removed after the final ACK"
    );
    // anything more from the client is a packet without state
    assert_eq!(f.ingress(&cin(TCP_ACK, 107, 502)), TC_ACT_SHOT);
}

#[test]
fn inbound_tcp_simultaneous_close() {
    require_priv!();
    let f = inbound_established();
    assert_eq!(f.ingress(&cin(TCP_FIN | TCP_ACK, 101, 501)), TC_ACT_OK);
    assert_eq!(f.egress(&sout(TCP_FIN | TCP_ACK, 501, 101)), TC_ACT_OK);
    assert_eq!(
        state(&f, &defs::TCP_INGRESS_MAP).as_deref(),
        Some("closing")
    );
    // each side ACKs the other's FIN; the first final ACK ends tracking
    assert_eq!(f.egress(&sout(TCP_ACK, 502, 102)), TC_ACT_OK);
    assert!(flows(&f, &defs::TCP_INGRESS_MAP).is_empty());
}

#[test]
fn rst_from_either_side_ends_the_flow() {
    require_priv!();
    let f = inbound_established();
    assert_eq!(
        f.ingress(&cin(TCP_RST, 101, 0)),
        TC_ACT_OK,
        "the RST itself is delivered"
    );
    assert!(flows(&f, &defs::TCP_INGRESS_MAP).is_empty());
    let f = inbound_established();
    assert_eq!(f.egress(&sout(TCP_RST | TCP_ACK, 501, 101)), TC_ACT_OK);
    assert!(flows(&f, &defs::TCP_INGRESS_MAP).is_empty());
    assert_eq!(f.ingress(&cin(TCP_ACK, 101, 501)), TC_ACT_SHOT);
}

/// A bare SYN skips the unassured tables before the policy step
/// (ARCHITECTURE.md §5): a retransmitted SYN, in either direction, must
/// advance the entry its first copy created, never replace it (a replaced
/// entry is SYN_SENT again and the handshake's ACK would not establish it).
#[test]
fn a_retransmitted_syn_advances_the_flow_it_opened() {
    require_priv!();
    let f = Fixture::new();
    assert_eq!(f.ingress(&cin(TCP_SYN, 100, 0)), TC_ACT_UNSPEC);
    assert_eq!(f.egress(&sout(TCP_SYN | TCP_ACK, 500, 101)), TC_ACT_OK);
    assert_eq!(f.ingress(&cin(TCP_SYN, 100, 0)), TC_ACT_UNSPEC);
    let (_, v) = flows(&f, &defs::TCP_INGRESS_MAP)[0];
    assert_eq!(zfw::decode::tcp_state(v.state), "syn_recv");
    assert_eq!(
        (v.pkts_orig, v.pkts_reply),
        (2, 1),
        "one entry took all three"
    );
    assert_eq!(f.ingress(&cin(TCP_ACK, 101, 501)), TC_ACT_OK);
    assert_eq!(
        state(&f, &defs::TCP_INGRESS_MAP).as_deref(),
        Some("established")
    );
    assert_eq!(
        f.counter("track_new"),
        1,
        "the retransmission opened no flow"
    );

    let out = |fl: u8, seq: u32, ack: u32| tcp_full(S, 50000, C, 443, fl, seq, ack, &[]);
    let back = |fl: u8, seq: u32, ack: u32| tcp_full(C, 443, S, 50000, fl, seq, ack, &[]);
    assert_eq!(f.egress(&out(TCP_SYN, 10, 0)), TC_ACT_OK);
    assert_eq!(f.ingress(&back(TCP_SYN | TCP_ACK, 900, 11)), TC_ACT_OK);
    assert_eq!(f.egress(&out(TCP_SYN, 10, 0)), TC_ACT_OK);
    assert_eq!(state(&f, &defs::TCP_MAP).as_deref(), Some("syn_recv"));
    assert_eq!(f.egress(&out(TCP_ACK, 11, 901)), TC_ACT_OK);
    assert_eq!(state(&f, &defs::TCP_MAP).as_deref(), Some("established"));
    assert_eq!(f.counter("track_new"), 2);
}

#[test]
fn outbound_tcp_lifecycle_replies_allowed_then_closed() {
    require_priv!();
    let f = Fixture::new();
    // a connection this host opens to C:443 (not SSH, no rules: replies only by state)
    let out = |fl: u8, seq: u32, ack: u32| tcp_full(S, 50000, C, 443, fl, seq, ack, &[]);
    let back = |fl: u8, seq: u32, ack: u32| tcp_full(C, 443, S, 50000, fl, seq, ack, &[]);
    assert_eq!(
        f.ingress(&back(TCP_SYN | TCP_ACK, 900, 11)),
        TC_ACT_SHOT,
        "no state yet"
    );
    assert_eq!(f.egress(&out(TCP_SYN, 10, 0)), TC_ACT_OK);
    assert_eq!(state(&f, &defs::TCP_MAP).as_deref(), Some("syn_sent"));
    assert_eq!(f.ingress(&back(TCP_SYN | TCP_ACK, 900, 11)), TC_ACT_OK);
    assert_eq!(state(&f, &defs::TCP_MAP).as_deref(), Some("syn_recv"));
    assert_eq!(f.egress(&out(TCP_ACK, 11, 901)), TC_ACT_OK);
    assert_eq!(state(&f, &defs::TCP_MAP).as_deref(), Some("established"));
    assert_eq!(f.ingress(&back(TCP_ACK | TCP_PSH, 901, 11)), TC_ACT_OK);
    // server closes first this time
    assert_eq!(f.ingress(&back(TCP_FIN | TCP_ACK, 901, 11)), TC_ACT_OK);
    assert_eq!(f.egress(&out(TCP_FIN | TCP_ACK, 11, 902)), TC_ACT_OK);
    assert_eq!(state(&f, &defs::TCP_MAP).as_deref(), Some("closing"));
    assert_eq!(f.ingress(&back(TCP_ACK, 902, 12)), TC_ACT_OK);
    assert!(flows(&f, &defs::TCP_MAP).is_empty());
    assert_eq!(f.ingress(&back(TCP_ACK, 902, 12)), TC_ACT_SHOT);
}

#[test]
fn spoofed_ack_fin_rst_without_state_are_dropped() {
    require_priv!();
    let f = Fixture::new();
    for fl in [
        TCP_ACK,
        TCP_FIN,
        TCP_FIN | TCP_ACK,
        TCP_RST,
        TCP_RST | TCP_ACK,
        TCP_ACK | TCP_PSH,
    ] {
        assert_eq!(
            f.ingress(&tcp_full(C, 443, S, 50000, fl, 1, 1, b"x")),
            TC_ACT_SHOT,
            "flags {fl:#x}"
        );
    }
    assert!(flows(&f, &defs::TCP_MAP).is_empty() && flows(&f, &defs::TCP_INGRESS_MAP).is_empty());
}

#[test]
fn udp_outbound_expires_and_only_its_creator_revives_it() {
    require_priv!();
    let f = Fixture::new();
    let q = udp(S, 5353, C, 53, b"query");
    let a = udp(C, 53, S, 5353, b"answer");
    assert_eq!(f.ingress(&a), TC_ACT_SHOT, "unsolicited");
    assert_eq!(f.egress(&q), TC_ACT_OK);
    assert_eq!(f.ingress(&a), TC_ACT_OK, "reply to our query");
    age(&f, &defs::UDP_MAP, 31);
    assert_eq!(
        f.ingress(&a),
        TC_ACT_SHOT,
        "expired: the remote side cannot revive it"
    );
    assert_eq!(f.egress(&q), TC_ACT_OK);
    assert_eq!(f.ingress(&a), TC_ACT_OK, "our next datagram revived it");
    let (_, v) = flows(&f, &defs::UDP_MAP).pop().unwrap();
    assert_eq!(
        (v.pkts_orig, v.pkts_reply),
        (1, 1),
        "a fresh entry: the expired one was removed"
    );
}

#[test]
fn udp_inbound_revived_by_its_originator_only() {
    require_priv!();
    let f = Fixture::new();
    // an inbound UDP flow as prio 2 would have recorded it
    let q = udp(C, 6000, S, 53, b"q");
    let r = udp(S, 53, C, 6000, b"r");
    let maps = f.root.maps();
    let mut k = zfw_flow_key {
        sport: 6000,
        dport: 53,
        ifindex: IFINDEX,
        family: zfw::net::AF_INET,
        proto: zfw::net::IPPROTO_UDP,
        ..Default::default()
    };
    k.saddr[0] = u32::from_ne_bytes([10, 0, 0, 1]);
    k.daddr[0] = u32::from_ne_bytes([10, 0, 0, 2]);
    let v = zfw_flow {
        state: 7,
        last_ns: zfw::decode::mono_now_ns(),
        ..Default::default()
    };
    maps.put(&zfw::maps::defs::UDP_INGRESS_MAP, &k, &v).unwrap();
    assert_eq!(f.ingress(&q), TC_ACT_OK);
    assert_eq!(f.egress(&r), TC_ACT_OK);
    age(&f, &defs::UDP_INGRESS_MAP, 31);
    assert_eq!(f.ingress(&q), TC_ACT_OK, "the originator revives its flow");
    assert_eq!(flows(&f, &defs::UDP_INGRESS_MAP).len(), 1);
}

#[test]
fn icmp_echo_replies_match_by_id_and_expire() {
    require_priv!();
    for (s, c) in [(S, C), ("fd00::2", "fd00::1")] {
        let f = Fixture::new();
        assert_eq!(
            f.ingress(&icmp_echo(c, s, true, 77, 1)),
            TC_ACT_SHOT,
            "unsolicited reply"
        );
        assert_eq!(f.egress(&icmp_echo(s, c, false, 77, 1)), TC_ACT_OK);
        assert_eq!(f.ingress(&icmp_echo(c, s, true, 77, 1)), TC_ACT_OK);
        assert_eq!(
            f.ingress(&icmp_echo(c, s, true, 78, 1)),
            TC_ACT_SHOT,
            "other id"
        );
        age(&f, &defs::ICMP_ECHO_MAP, 31);
        assert_eq!(
            f.ingress(&icmp_echo(c, s, true, 77, 2)),
            TC_ACT_SHOT,
            "expired"
        );
    }
}

#[test]
fn icmp_errors_pass_only_for_tracked_flows() {
    require_priv!();
    let f = Fixture::new();
    let q = udp(S, 5353, C, 53, b"query");
    let quoted = strip_ether(&q).to_vec();
    let unreach = icmp_error(C, S, 3, 3, &quoted);
    assert_eq!(f.ingress(&unreach), TC_ACT_SHOT, "no flow yet");
    assert_eq!(f.egress(&q), TC_ACT_OK);
    assert_eq!(
        f.ingress(&unreach),
        TC_ACT_OK,
        "port unreachable for our flow"
    );
    let other = strip_ether(&udp(S, 5354, C, 53, b"x")).to_vec();
    assert_eq!(
        f.ingress(&icmp_error(C, S, 3, 3, &other)),
        TC_ACT_SHOT,
        "unknown quoted flow"
    );
    assert_eq!(
        f.ingress(&icmp_error("10.9.9.9", S, 11, 0, &quoted)),
        TC_ACT_OK,
        "time exceeded from a router"
    );
    // IPv6: packet too big for an outbound TCP flow
    let syn6 = tcp("fd00::2", 50000, "fd00::1", 443, TCP_SYN);
    let ptb = icmp_error("fd00::1", "fd00::2", 2, 0, strip_ether(&syn6));
    assert_eq!(f.ingress(&ptb), TC_ACT_SHOT);
    assert_eq!(f.egress(&syn6), TC_ACT_OK);
    assert_eq!(f.ingress(&ptb), TC_ACT_OK);
    // a truncated quote is malformed
    let short = icmp_error(C, S, 3, 3, &quoted[..10]);
    assert_eq!(f.ingress(&short), TC_ACT_SHOT);
}

#[test]
fn conntrack_list_and_gc_via_cli() {
    require_priv!();
    let f = inbound_established();
    f.egress(&udp(S, 5353, C, 53, b"q"));
    let r = zfw(None, &f.root, &["conntrack", "list", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let tcp = list.iter().find(|e| e["proto"] == "tcp").unwrap();
    assert_eq!(tcp["direction"], "inbound");
    assert_eq!(tcp["state"], "established");
    assert_eq!(tcp["src"], C);
    assert_eq!(tcp["dport"], 22);
    let udp_e = list.iter().find(|e| e["proto"] == "udp").unwrap();
    assert_eq!(udp_e["direction"], "outbound");
    // nothing is stale yet
    let r = zfw(None, &f.root, &["gc", "--json"]).ok();
    assert!(r.stdout.contains("\"flows_removed\": 0"), "{}", r.stdout);
    age(&f, &defs::UDP_MAP, 31);
    let r = zfw(None, &f.root, &["gc", "--json"]).ok();
    assert!(r.stdout.contains("\"flows_removed\": 1"), "{}", r.stdout);
    let t = zfw(None, &f.root, &["conntrack", "list"]).ok();
    assert!(
        t.stdout.contains("established") && t.stdout.contains("1 flows"),
        "{}",
        t.stdout
    );
    zfw(None, &f.root, &["conntrack", "flush"]).ok();
    assert!(flows(&f, &defs::TCP_INGRESS_MAP).is_empty());
}

/// A flow of the batch tests: distinct per (table, i); TCP flows are
/// established, UDP ones fresh, unless `expired` (UDP past its 30 s, TCP a
/// handshake past its 60 s: src/conntrack.rs `timeout_s`).
fn stamped_flow(proto: u8, i: u32, expired: bool, now: u64) -> (zfw_flow_key, zfw_flow) {
    let mut k = zfw_flow_key {
        sport: 10_000 + (i % 40_000) as u16,
        dport: 443,
        ifindex: IFINDEX,
        family: zfw::net::AF_INET,
        proto,
        ..Default::default()
    };
    k.saddr[0] = u32::from_ne_bytes([10, 0, 0, 2]);
    k.daddr[0] = u32::from_ne_bytes([198, 51, (i / 40_000) as u8, 7]);
    let tcp = proto == zfw::net::IPPROTO_TCP;
    let (state, idle_s) = match (tcp, expired) {
        (true, false) => (zfw::skel::names::ZFW_TCP_ESTABLISHED, 0),
        (true, true) => (zfw::skel::names::ZFW_TCP_SYN_SENT, 65),
        (false, e) => (0, if e { 35 } else { 0 }),
    };
    let last = now - idle_s * 1_000_000_000;
    let f = zfw_flow {
        first_ns: last,
        last_ns: last,
        state: state as u8,
        pkts_orig: 1,
        ..Default::default()
    };
    (k, f)
}

/// (map, src, sport, dst, dport) of every flow `conntrack list --json` lists.
fn listed(f: &Fixture) -> Vec<Listed> {
    let r = zfw(None, &f.root, &["conntrack", "list", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut out: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["map"].as_str().unwrap().to_string(),
                e["src"].as_str().unwrap().to_string(),
                e["sport"].as_u64().unwrap(),
                e["dst"].as_str().unwrap().to_string(),
                e["dport"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

type Listed = (String, String, u64, String, u64);

/// Sorted lists `got` and `want` are equal; else how they differ, briefly
/// (tens of thousands of flows).
fn assert_same(got: &[Listed], want: &[Listed], what: &str) {
    if got == want {
        return;
    }
    let mut dup: Vec<&Listed> = got
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    dup.truncate(3);
    let missing: Vec<&Listed> = want
        .iter()
        .filter(|e| got.binary_search(e).is_err())
        .take(3)
        .collect();
    let extra: Vec<&Listed> = got
        .iter()
        .filter(|e| want.binary_search(e).is_err())
        .take(3)
        .collect();
    panic!(
        "{what}: {} flows, {} expected; repeated {dup:?}, missing {missing:?}, extra {extra:?}",
        got.len(),
        want.len()
    );
}

fn as_listed(map: FlowTable, k: &zfw_flow_key) -> Listed {
    let a = |w: &[u32; 4]| zfw::decode::addr(k.family, w).to_string();
    (
        map.info.name.to_string(),
        a(&k.saddr),
        k.sport.into(),
        a(&k.daddr),
        k.dport.into(),
    )
}

/// More flows than one batch read or delete (8192, src/conntrack.rs), in
/// two tables: `conntrack list --json` lists each exactly once, and `gc`
/// removes exactly the expired ones, in batch deletes across the reads,
/// and keeps every live one.
#[test]
fn gc_and_list_over_several_batches_miss_and_repeat_nothing() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let now = zfw::decode::mono_now_ns();
    assert!(
        now > 70_000_000_000,
        "the machine must be up 70 s to date expired flows"
    );
    let (mut live, mut expired) = (Vec::new(), Vec::new());
    for (map, proto, n) in [
        (&defs::TCP_MAP, zfw::net::IPPROTO_TCP, 30_000u32),
        (&defs::UDP_MAP, zfw::net::IPPROTO_UDP, 21_000),
    ] {
        let mut items = Vec::new();
        for i in 0..n {
            // runs of live and expired flows of several lengths
            let e = (i / 7) % 3 != 0 || i % 11 == 0;
            let (k, v) = stamped_flow(proto, i, e, now);
            items.push((k, v));
            if e { &mut expired } else { &mut live }.push(as_listed(map, &k));
        }
        maps.put_many(map, &items).unwrap();
    }
    let mut all: Vec<_> = live.iter().chain(&expired).cloned().collect();
    all.sort();
    live.sort();
    assert_same(&listed(&f), &all, "conntrack list: every flow once");
    assert_eq!(maps.count(&defs::TCP_MAP).unwrap(), 30_000);

    let r = zfw(None, &f.root, &["gc", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["flows_removed"], expired.len(), "{}", r.stdout);
    // what is left, read key by key through another path than gc's
    let mut left: Vec<_> = [&defs::TCP_MAP, &defs::UDP_MAP]
        .into_iter()
        .flat_map(|m| {
            let keys = maps.raw_keys(m).unwrap();
            keys.into_iter().map(move |k| {
                let k: zfw_flow_key = zfw::skel::from_bytes(&k).unwrap();
                as_listed(m, &k)
            })
        })
        .collect();
    left.sort();
    assert_same(&left, &live, "gc kept exactly the live flows");
    assert_same(&listed(&f), &live, "conntrack list after gc");
    let r = zfw(None, &f.root, &["gc", "--json"]).ok();
    assert!(r.stdout.contains("\"flows_removed\": 0"), "{}", r.stdout);
}

/// A full main table (README "Table pressure"): its assured flows stay, none
/// evicted however many flows come after them; a flow assured while it is
/// full works on from its unassured entry (counted as ct_main_full) and
/// moves in once there is room.
#[test]
fn a_full_main_table_evicts_nothing_and_a_new_flow_works_from_its_unassured_entry() {
    require_priv!();
    const FULL: u16 = 4;
    let f = Fixture::with_sizes(&[("tcp_ingress_map", FULL as u32)]);
    let seg =
        |port: u16, flags: u8, seq: u32, ack: u32| tcp_full(C, port, S, 22, flags, seq, ack, &[]);
    let reply =
        |port: u16, flags: u8, seq: u32, ack: u32| tcp_full(S, 22, C, port, flags, seq, ack, &[]);
    let open = |port: u16| {
        assert_eq!(f.ingress(&seg(port, TCP_SYN, 100, 0)), TC_ACT_UNSPEC);
        assert_eq!(
            f.egress(&reply(port, TCP_SYN | TCP_ACK, 500, 101)),
            TC_ACT_OK
        );
        assert_eq!(
            f.ingress(&seg(port, TCP_ACK, 101, 501)),
            TC_ACT_OK,
            "port {port}"
        );
    };
    let main = |f: &Fixture| -> Vec<(u16, u64)> {
        let mut v: Vec<_> = f
            .root
            .maps()
            .entries(&defs::TCP_INGRESS_MAP)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.sport, v.first_ns))
            .collect();
        v.sort();
        v
    };
    for port in 40000..40000 + FULL {
        open(port);
    }
    let before = main(&f);
    assert_eq!(before.len(), FULL as usize);
    assert_eq!(f.counter("ct_main_full"), 0);

    // the table is full: the next flow is assured but cannot move in
    let late = 40000 + FULL;
    open(late);
    assert_eq!(main(&f), before, "an assured flow was evicted or replaced");
    assert_eq!(f.counter("ct_main_full"), 1);
    let unassured = f
        .root
        .maps()
        .entries(&defs::TCP_INGRESS_UNASSURED_MAP)
        .unwrap();
    assert_eq!(unassured.len(), 1);
    assert_eq!(
        (
            unassured[0].0.sport,
            zfw::decode::tcp_state(unassured[0].1.state).as_str()
        ),
        (late, "established")
    );
    // it works both ways from there, and every flow before it is intact
    let data = tcp_full(C, late, S, 22, TCP_ACK | TCP_PSH, 101, 501, b"hello");
    assert_eq!(f.ingress(&data), TC_ACT_OK);
    assert_eq!(
        f.egress(&tcp_full(
            S,
            22,
            C,
            late,
            TCP_ACK | TCP_PSH,
            501,
            106,
            b"hi"
        )),
        TC_ACT_OK
    );
    assert_eq!(main(&f), before, "an assured flow was evicted or replaced");
    for port in 40000..40000 + FULL {
        assert_eq!(
            f.ingress(&seg(port, TCP_ACK, 101, 501)),
            TC_ACT_OK,
            "port {port}"
        );
    }

    // one flow ends: the late one moves in on its next packet that the flow
    // cache does not serve (its slot trusts the entry for a few ticks)
    assert_eq!(
        f.ingress(&seg(40000, TCP_RST | TCP_ACK, 101, 501)),
        TC_ACT_OK
    );
    zfw::conntrack::invalidate_flow_caches(&f.root.maps()).unwrap();
    assert_eq!(
        f.ingress(&tcp_full(C, late, S, 22, TCP_ACK, 106, 503, &[])),
        TC_ACT_OK
    );
    let now: Vec<u16> = main(&f).into_iter().map(|(p, _)| p).collect();
    assert_eq!(now, (40001..=late).collect::<Vec<_>>());
    assert!(f
        .root
        .maps()
        .entries(&defs::TCP_INGRESS_UNASSURED_MAP)
        .unwrap()
        .is_empty());
}
