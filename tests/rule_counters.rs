//! Per-rule counters (README "Rule counters"): exact counts of the first
//! packets of flows, over real traffic through namespaces and through
//! BPF_PROG_TEST_RUN on the real programs (cached decisions included);
//! `rule reset-counters` and `rule list --zero`; counters kept across
//! `apply` of the same set, across in-place rule changes that move a
//! key's ranges, and across a program replacement; never exported.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::fixture::*;
use common::packet::*;
use common::rulemodel::checked_ids;
use common::*;
use serde_json::{json, Value};
use zfw::rules::counters::{self, Counted};
use zfw::rules::model::{Action, Direction, Rule};
use zfw::rules::store;

/// Bytes of a UDP datagram's frame as TC sees it: Ethernet, IPv4, UDP.
const UDP_FRAME: u64 = 14 + 20 + 8;
const PAYLOAD: usize = 100;

/// `flows` UDP flows from the client to the server's `port`, each from a
/// socket of its own (a new source port) sending `per_flow` datagrams of
/// PAYLOAD bytes.
fn udp_flows(lab: &Lab, port: u16, flows: usize, per_flow: usize) {
    lab.client.enter(move || {
        for _ in 0..flows {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..per_flow {
                s.send_to(&[7u8; PAYLOAD], format!("{SERVER_IP}:{port}"))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    // the last datagrams are through the datapath once the veth has them
    std::thread::sleep(Duration::from_millis(100));
}

fn listed(lab: &Lab) -> Vec<Value> {
    let out = lab.zfw(&["rule", "list", "--json"]).ok().stdout;
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `rule list --json`'s counters of the rule on `proto` `ports`.
fn counts(lab: &Lab, proto: &str, ports: &str) -> (u64, u64, Value) {
    let rules = listed(lab);
    let r = rules
        .iter()
        .find(|r| r["proto"] == proto && r["ports"] == ports)
        .unwrap_or_else(|| panic!("no {proto} {ports} rule in {rules:?}"));
    let c = &r["counters"];
    (
        c["packets"].as_u64().expect("packets"),
        c["bytes"].as_u64().expect("bytes"),
        c["last_hit_s"].clone(),
    )
}

fn rule_add(lab: &Lab, proto: &str, ports: &str, extra: &[&str]) {
    let mut a = vec![
        "rule",
        "add",
        "--dst",
        "10.77.0.0/24",
        "--proto",
        proto,
        "--ports",
        ports,
    ];
    a.extend_from_slice(extra);
    lab.zfw(&a).ok();
}

#[test]
fn first_packets_are_counted_exactly_and_reset() {
    require_priv!();
    let lab = Lab::new();
    let web = tcp_listen(&lab.server, "0.0.0.0:0").serve_echo_forever();
    lab.load();
    let (ok_port, deny_port) = (5301u16, 5302u16);
    rule_add(&lab, "udp", &ok_port.to_string(), &["--service-id", "dns"]);
    rule_add(&lab, "udp", &deny_port.to_string(), &["--deny"]);
    rule_add(&lab, "tcp", &web.to_string(), &[]);
    rule_add(&lab, "tcp", "9999", &[]);

    // 20 admitted flows of 3 datagrams: only each flow's first is counted
    udp_flows(&lab, ok_port, 20, 3);
    let (p, b, last) = counts(&lab, "udp", &ok_port.to_string());
    assert_eq!(p, 20, "one per admitted flow");
    assert_eq!(b, 20 * (UDP_FRAME + PAYLOAD as u64));
    assert!(last.as_f64().unwrap() < 30.0, "{last}");
    // a denied flow gets no state: each of its datagrams is decided again
    // (the second from the decision cache) and counted
    udp_flows(&lab, deny_port, 4, 2);
    let (p, b, _) = counts(&lab, "udp", &deny_port.to_string());
    assert_eq!((p, b), (8, 8 * (UDP_FRAME + PAYLOAD as u64)));
    // 5 TCP connections, echoed: one SYN each
    for _ in 0..5 {
        let mut s = lab.connect(web);
        assert!(echo_once(&mut s, b"zfw"));
    }
    let (p, b, _) = counts(&lab, "tcp", &web.to_string());
    assert_eq!(p, 5, "one SYN per connection");
    assert_eq!(b % 5, 0, "{b}");
    assert!((14 + 20 + 20..=14 + 20 + 60).contains(&(b / 5)), "{b}");
    let (p, b, last) = counts(&lab, "tcp", "9999");
    assert_eq!((p, b, last), (0, 0, Value::Null), "a rule never hit");

    // the table shows the columns and the numbers; dump shows them too
    let t = lab.zfw(&["rule", "list"]).ok().stdout;
    let head = t.lines().next().unwrap();
    for col in ["packets", "bytes", "last hit"] {
        assert!(head.contains(col), "{head}");
    }
    let line = t.lines().find(|l| l.contains("dns")).unwrap();
    assert!(line.contains(" 20 ") && line.contains("2840"), "{line}");
    let d: Value =
        serde_json::from_str(&lab.zfw(&["dump", "--map", "rule_stats_map"]).ok().stdout).unwrap();
    let text = d.to_string();
    assert!(
        text.contains("\"service_id\":\"dns\"") && text.contains("\"packets\":20"),
        "{text}"
    );

    // reset: every counter 0, and counting goes on from there
    let r = lab.zfw(&["rule", "reset-counters"]).ok();
    assert!(r.stdout.contains("reset"), "{}", r.stdout);
    for r in listed(&lab) {
        assert_eq!(r["counters"]["packets"], 0, "{r}");
        assert_eq!(r["counters"]["last_hit_s"], Value::Null, "{r}");
    }
    udp_flows(&lab, ok_port, 3, 2);
    assert_eq!(counts(&lab, "udp", &ok_port.to_string()).0, 3);
    // list --zero prints the counts, then resets them
    let z = lab.zfw(&["rule", "list", "--json", "--zero"]).ok().stdout;
    let z: Value = serde_json::from_str(&z).unwrap();
    let dns = z
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service_id"] == "dns")
        .unwrap();
    assert_eq!(dns["counters"]["packets"], 3);
    assert_eq!(counts(&lab, "udp", &ok_port.to_string()).0, 0);
}

#[test]
fn counters_survive_apply_in_place_changes_and_program_replacement() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let doc = json!({"ingress": [
        {"dst": "10.77.0.0/24", "proto": "udp", "ports": "5401", "action": "allow"},
        {"dst": "10.77.0.2/32", "proto": "udp", "ports": "5402", "action": "allow"},
        {"dst": "10.77.0.0/24", "proto": "udp", "ports": "5403", "action": "allow"}
    ]});
    let f = TempFile::new("pol", &doc.to_string());
    lab.zfw(&["apply", &f.path_str()]).ok();
    udp_flows(&lab, 5401, 6, 2);
    udp_flows(&lab, 5402, 2, 1);
    udp_flows(&lab, 5403, 3, 1);
    assert_eq!(counts(&lab, "udp", "5401").0, 6);

    // export carries no counters, and applying it changes nothing
    let export = lab.zfw(&["export"]).ok().stdout;
    assert!(
        !export.contains("counters") && !export.contains("packets"),
        "{export}"
    );
    let e = TempFile::new("exp", &export);
    let r = lab.zfw(&["apply", "--prune", &e.path_str()]).ok();
    assert_eq!(r.stdout.trim(), "zfw: nothing to change");
    assert_eq!(counts(&lab, "udp", "5401").0, 6);

    // a whole-set rewrite: the unchanged rules keep theirs, the changed
    // one (now a deny) and the new one start at 0
    let doc2 = json!({"ingress": [
        {"dst": "10.77.0.0/24", "proto": "udp", "ports": "5401", "action": "allow"},
        {"dst": "10.77.0.2/32", "proto": "udp", "ports": "5402", "action": "allow"},
        {"dst": "10.77.0.0/24", "proto": "udp", "ports": "5403", "action": "deny"},
        {"dst": "10.77.0.0/24", "proto": "udp", "ports": "5404", "action": "allow"}
    ]});
    let f2 = TempFile::new("pol", &doc2.to_string());
    let r = lab.zfw(&["apply", &f2.path_str()]).ok();
    assert!(r.stdout.contains("2 change(s)"), "{}", r.stdout);
    assert_eq!(counts(&lab, "udp", "5401").0, 6);
    assert_eq!(counts(&lab, "udp", "5402").0, 2);
    assert_eq!(counts(&lab, "udp", "5403").0, 0, "changed: a new rule");
    assert_eq!(counts(&lab, "udp", "5404").0, 0);

    // an in-place add to the first key, whose next slot (the /32 key's)
    // is taken: the key's ranges move, their counters stay
    rule_add(&lab, "udp", "5405", &[]);
    assert_eq!(counts(&lab, "udp", "5401").0, 6);
    assert_eq!(counts(&lab, "udp", "5402").0, 2);
    assert_eq!(counts(&lab, "udp", "5405").0, 0);
    udp_flows(&lab, 5401, 1, 1);
    udp_flows(&lab, 5405, 2, 1);
    assert_eq!(counts(&lab, "udp", "5401").0, 7);
    assert_eq!(counts(&lab, "udp", "5405").0, 2);
    let del = "rule del --dst 10.77.0.2/32 --proto udp --ports 5402";
    lab.zfw(&del.split(' ').collect::<Vec<_>>()).ok();
    assert_eq!(counts(&lab, "udp", "5401").0, 7);

    // program replacement: the maps stay pinned, so do the counts, and the
    // new programs add to them
    lab.pretend_another_build();
    let r = lab.zfw(&["load", "--iface", "srv0"]).ok();
    assert!(r.stdout.contains("replaced"), "{}", r.stdout);
    assert_eq!(counts(&lab, "udp", "5401").0, 7);
    udp_flows(&lab, 5401, 2, 1);
    assert_eq!(counts(&lab, "udp", "5401").0, 9);
    assert_eq!(counts(&lab, "udp", "5405").0, 2);
}

fn rule(dir: Direction, dst: &str, proto: &str, ports: &str, action: Action) -> Rule {
    Rule {
        direction: dir,
        dst: dst.parse().unwrap(),
        src: if dst.contains(':') {
            "::/0"
        } else {
            "0.0.0.0/0"
        }
        .parse()
        .unwrap(),
        proto: proto.parse().unwrap(),
        ports: ports.parse().unwrap(),
        action,
        interfaces: vec![],
        service_id: None,
    }
}

fn packets_of(c: &[Counted], ports: &str, dir: Direction) -> (u64, u64) {
    let r = c
        .iter()
        .find(|c| c.rule.ports.to_string() == ports && c.rule.direction == dir)
        .unwrap();
    let h = r.hits.expect("a counter");
    (h.packets, h.bytes)
}

#[test]
fn test_run_table_cached_decisions_count_on_their_rule() {
    require_priv!();
    zfw::testkit::run::pin_cpu().unwrap();
    let f = Fixture::new();
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("outbound-filter"));
    let maps = f.root.maps();
    let i = Direction::Ingress;
    store::replace_all(
        &maps,
        &[
            rule(i, "10.0.0.0/24", "tcp", "80", Action::Allow),
            rule(i, "10.0.0.0/24", "udp", "53", Action::Deny),
            rule(i, "fd00::/64", "tcp", "443", Action::Allow),
            rule(i, "10.0.0.0/24", "tcp", "8080", Action::Allow),
            rule(
                Direction::Egress,
                "198.51.100.0/24",
                "udp",
                "123",
                Action::Allow,
            ),
        ],
    )
    .unwrap();
    let syn = tcp("192.0.2.1", 40000, "10.0.0.2", 80, TCP_SYN);
    let dns = udp("192.0.2.1", 40001, "10.0.0.2", 53, b"q");
    let syn6 = tcp("fd99::1", 40002, "fd00::2", 443, TCP_SYN);
    let ntp = udp("10.0.0.2", 40003, "198.51.100.1", 123, b"ntp");
    // (frame, program, runs, the rule's ports, direction)
    let table: [(&[u8], &str, u64, &str, Direction); 4] = [
        (&syn, POLICY, 5, "80", i),
        (&dns, POLICY, 3, "53", i),
        (&syn6, POLICY, 2, "443", i),
        (&ntp, EGRESS, 3, "123", Direction::Egress),
    ];
    for (frame, prog, n, _, _) in table {
        for _ in 0..n {
            f.root.prog(prog).run(frame, IFINDEX).expect("test run");
        }
    }
    // every run of the same frame after the first took its decision from
    // this CPU's matched_map (no state: prio 2 did not run), and counts
    // like the first; the egress flow's first packet created its state,
    // so its later packets are not decided again
    let c = counters::live_counted(&maps).unwrap();
    for (frame, _, n, ports, dir) in table {
        let n = if dir == Direction::Egress { 1 } else { n };
        let len = frame.len() as u64;
        assert_eq!(packets_of(&c, ports, dir), (n, n * len), "{ports} {dir:?}");
    }
    assert_eq!(packets_of(&c, "8080", i), (0, 0));
    let cached = maps.cached_decisions().unwrap();
    assert!(
        cached.iter().any(|s| s.key.dport == 80 && s.val.stat != 0),
        "the decision cache holds the rule's counter"
    );
    // a packet no rule matches counts nowhere
    let miss = tcp("192.0.2.1", 40004, "10.0.0.2", 81, TCP_SYN);
    f.root.prog(POLICY).run(&miss, IFINDEX).unwrap();
    let total: u64 = counters::live_counted(&maps)
        .unwrap()
        .iter()
        .map(|c| c.hits.unwrap().packets)
        .sum();
    assert_eq!(total, 5 + 3 + 2 + 1);
}

/// Ingress UDP rules on ports 1..=n of 10.0.0.0/24, applied as the live set.
/// A hit's time is the coarse clock's, read once per tick on each CPU
/// (policy.h, zfw_hit_now): within a tick or two of the hit, and a hit a
/// while later moves it on.
#[test]
fn the_last_hit_time_follows_the_clock() {
    require_priv!();
    zfw::testkit::run::pin_cpu().unwrap();
    let f = Fixture::new();
    let maps = f.root.maps();
    let r = rule(
        Direction::Ingress,
        "10.0.0.0/24",
        "tcp",
        "80",
        Action::Allow,
    );
    store::replace_all(&maps, &[r]).unwrap();
    let syn = tcp("192.0.2.1", 40000, "10.0.0.2", 80, TCP_SYN);
    let last = || {
        let c = counters::live_counted(&maps).unwrap();
        c[0].hits.expect("a counter").last_ns
    };
    // a tick is 10 ms at most (HZ >= 100): the coarse clock lags the
    // precise one by up to one, the per-tick read by one more
    let slack = 25_000_000;
    let mut prev = 0;
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        let before = zfw::decode::mono_now_ns();
        f.root.prog(POLICY).run(&syn, IFINDEX).unwrap();
        let after = zfw::decode::mono_now_ns();
        let t = last();
        assert!(
            t + slack >= before && t <= after,
            "hit {i}: {t} not in {before}..{after}"
        );
        assert!(
            i == 0 || t >= prev + 80_000_000,
            "hit {i}: {t} after {prev}"
        );
        prev = t;
    }
}

fn applied_udp_rules(maps: &zfw::maps::Maps, n: u16) -> Vec<Rule> {
    let rules: Vec<Rule> = (1..=n)
        .map(|p| {
            let ports = p.to_string();
            rule(
                Direction::Ingress,
                "10.0.0.0/24",
                "udp",
                &ports,
                Action::Allow,
            )
        })
        .collect();
    store::replace_all(maps, &rules).unwrap();
    rules
}

#[test]
fn a_full_counter_map_leaves_new_rules_uncounted_not_wrong() {
    require_priv!();
    // ids 1..3: three rules get counters, the fourth none
    let f = Fixture::with_sizes(&[("rule_stats_map", 4)]);
    let maps = f.root.maps();
    let i = Direction::Ingress;
    let rules = applied_udp_rules(&maps, 4);
    let c = counters::live_counted(&maps).unwrap();
    let ids: Vec<u32> = c.iter().map(|c| c.stat).collect();
    assert_eq!(ids, [1, 2, 3, 0]);
    for p in 1..=4u16 {
        f.root
            .prog(POLICY)
            .run(&udp("192.0.2.1", 40000 + p, "10.0.0.2", p, b"x"), IFINDEX)
            .unwrap();
    }
    let c = counters::live_counted(&maps).unwrap();
    let hits: Vec<Option<u64>> = c.iter().map(|c| c.hits.map(|h| h.packets)).collect();
    assert_eq!(hits, [Some(1), Some(1), Some(1), None]);
    // rule 1 goes: its id is free again and the next new rule takes it, from 0
    store::del(&maps, &rules[0].id()).unwrap();
    store::add(&maps, rule(i, "10.0.0.0/24", "udp", "9", Action::Allow)).unwrap();
    let c = counters::live_counted(&maps).unwrap();
    let nine = c.iter().find(|c| c.rule.ports.lo == 9).unwrap();
    assert_eq!((nine.stat, nine.hits.unwrap().packets), (1, 0));
}

/// Counter ids over many single-rule adds, updates and deletes (and a few
/// whole-set rewrites) with 7 ids for at most 6 live rules (an update needs
/// a second id while the old rule still counts on its own): each live rule
/// always has an id of its own, and rule_ids_map marks exactly the live
/// ones (no id is shared, none leaks: ARCHITECTURE.md §7 "Counters").
#[test]
fn counter_ids_stay_unique_and_none_leaks_over_many_adds_and_deletes() {
    require_priv!();
    let f = Fixture::with_sizes(&[("rule_stats_map", 8)]);
    let maps = f.root.maps();
    // load sized the record from rule_stats_map: one word for 8 ids
    assert_eq!(maps.max_entries(&zfw::maps::defs::RULE_IDS_MAP).unwrap(), 1);
    let i = Direction::Ingress;
    let mut live: Vec<Rule> = Vec::new();
    // a fixed xorshift sequence: the same run every time
    let mut x = 0x2545_f491u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let (mut adds, mut updates, mut dels) = (0, 0, 0);
    for round in 0..150u16 {
        let r = next();
        let at = (r >> 8) as usize % live.len().max(1);
        if live.is_empty() || (live.len() < 6 && r % 3 != 0) {
            // a new rule: on one of three keys (ranges appended, keys
            // moved) or a key of its own
            let dst = format!("10.0.{}.0/24", (r >> 4) % 4);
            let rule = rule(i, &dst, "udp", &(round + 1).to_string(), Action::Allow);
            assert_eq!(
                store::add(&maps, rule.clone()).unwrap(),
                store::AddOutcome::Added
            );
            live.push(rule);
            adds += 1;
        } else if r % 2 == 0 {
            // the same rule with another action: a new id, the old one free
            let old = &mut live[at];
            old.action = match old.action {
                Action::Allow => Action::Deny,
                _ => Action::Allow,
            };
            assert_eq!(
                store::add(&maps, old.clone()).unwrap(),
                store::AddOutcome::Updated
            );
            updates += 1;
        } else {
            store::del(&maps, &live.remove(at).id()).unwrap();
            dels += 1;
        }
        if round % 50 == 49 {
            store::replace_all(&maps, &live).unwrap();
        }
        let what = format!("after round {round}");
        let ids = checked_ids(&maps, true, &what);
        assert_eq!(ids.len(), live.len(), "{what}");
        assert!(
            ids.iter().all(|s| *s != 0),
            "{what}: a live rule without a counter id (ids leaked): {ids:?}"
        );
    }
    assert!(
        adds > 30 && updates > 10 && dels > 10,
        "{adds} {updates} {dels}"
    );
}

/// A rule change by a writer that does not keep rule_ids_map (an older
/// zfw: it bumps policy_gen and leaves `rule_ids_gen` as it was) makes the
/// record untrusted; the next `rule add` rebuilds it from the live ranges
/// instead of handing out an id a live rule has.
#[test]
fn an_id_record_another_writer_left_behind_is_rebuilt_not_trusted() {
    require_priv!();
    let f = Fixture::with_sizes(&[("rule_stats_map", 8)]);
    let maps = f.root.maps();
    let i = Direction::Ingress;
    applied_udp_rules(&maps, 3);
    assert_eq!(checked_ids(&maps, true, "after apply"), [1, 2, 3]);
    // that writer's change: its own ids, none of them marked
    let mut cfg = maps.config().unwrap();
    cfg.policy_gen += 1;
    maps.set_config(&cfg).unwrap();
    maps.put(&zfw::maps::defs::RULE_IDS_MAP, &0u32, &0u64)
        .unwrap();
    assert!(!zfw::rules::ids::trusted(&maps).unwrap());
    store::add(&maps, rule(i, "10.0.0.0/24", "udp", "9", Action::Allow)).unwrap();
    assert_eq!(checked_ids(&maps, true, "after rule add"), [1, 2, 3, 4]);
}
