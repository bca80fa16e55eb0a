//! Packet tests of the policy engine (README.md "Rules": the
//! precedence) and of every interface flag with a datapath, IPv4 and IPv6,
//! through BPF_PROG_TEST_RUN on the real programs.  Rules are written with
//! the library's store (the same path `zfw rule add` takes).

mod common;

use std::sync::atomic::{AtomicU16, Ordering};

use common::fixture::*;
use common::packet::*;
use common::*;
use zfw::rules::model::{Action, Direction, Rule};
use zfw::rules::store;

static SPORT: AtomicU16 = AtomicU16::new(20000);

/// A fresh source port: each probe is a new flow (no conntrack shortcut).
fn sp() -> u16 {
    SPORT.fetch_add(1, Ordering::SeqCst)
}

fn rule(dst: &str, src: &str, proto: &str, ports: &str, action: Action) -> Rule {
    Rule {
        direction: Direction::Ingress,
        dst: dst.parse().unwrap(),
        src: src.parse().unwrap(),
        proto: proto.parse().unwrap(),
        ports: ports.parse().unwrap(),
        action,
        interfaces: vec![],
        service_id: None,
    }
}

fn set_rules(f: &Fixture, rules: &[Rule]) {
    store::replace_all(&f.root.maps(), rules).expect("write rules");
}

fn syn_ok(f: &Fixture, src: &str, dst: &str, dport: u16) -> bool {
    f.allowed(&tcp(src, sp(), dst, dport, TCP_SYN))
}

fn udp_ok(f: &Fixture, src: &str, dst: &str, dport: u16) -> bool {
    f.allowed(&udp(src, sp(), dst, dport, b"x"))
}

#[test]
fn longer_dst_prefix_beats_shorter_and_misses_fall_through() {
    require_priv!();
    let f = Fixture::new();
    for (wide, narrow, inside, outside, src) in [
        (
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "10.2.0.1",
            "0.0.0.0/0",
        ),
        ("fd00::/16", "fd00:1::/32", "fd00:1::5", "fd00:2::5", "::/0"),
    ] {
        let client = if src == "::/0" {
            "fd99::1"
        } else {
            "192.0.2.1"
        };
        set_rules(
            &f,
            &[
                rule(wide, src, "tcp", "80-90", Action::Allow),
                rule(narrow, src, "tcp", "80", Action::Deny),
            ],
        );
        assert!(
            !syn_ok(&f, client, inside, 80),
            "{narrow} deny wins in {narrow}"
        );
        assert!(
            syn_ok(&f, client, outside, 80),
            "{wide} allow outside {narrow}"
        );
        // the /16 key has no range for 85: the /8 key decides
        assert!(syn_ok(&f, client, inside, 85), "fall through to {wide}");
        assert!(
            !syn_ok(&f, client, inside, 91),
            "no range anywhere: default drop"
        );
        // the other way round: specific allow inside a general deny
        set_rules(
            &f,
            &[
                rule(wide, src, "tcp", "1-65535", Action::Deny),
                rule(narrow, src, "tcp", "443", Action::Allow),
            ],
        );
        assert!(syn_ok(&f, client, inside, 443));
        assert!(!syn_ok(&f, client, outside, 443));
    }
}

#[test]
fn longer_src_prefix_beats_shorter() {
    require_priv!();
    let f = Fixture::new();
    set_rules(
        &f,
        &[
            rule("10.5.0.0/16", "0.0.0.0/0", "tcp", "443", Action::Allow),
            rule("10.5.0.0/16", "192.168.0.0/16", "tcp", "443", Action::Deny),
            rule("10.5.0.0/16", "192.168.7.0/24", "tcp", "443", Action::Allow),
            rule("fd05::/32", "::/0", "udp", "53", Action::Deny),
            rule("fd05::/32", "fd77::/64", "udp", "53", Action::Allow),
        ],
    );
    assert!(syn_ok(&f, "203.0.113.9", "10.5.1.1", 443));
    assert!(!syn_ok(&f, "192.168.1.1", "10.5.1.1", 443), "/16 src deny");
    assert!(syn_ok(&f, "192.168.7.1", "10.5.1.1", 443), "/24 src allow");
    assert!(udp_ok(&f, "fd77::9", "fd05::1", 53));
    assert!(!udp_ok(&f, "fd78::9", "fd05::1", 53));
}

#[test]
fn longer_dst_wins_even_over_a_longer_src() {
    require_priv!();
    let f = Fixture::new();
    set_rules(
        &f,
        &[
            rule("10.0.0.0/8", "192.0.2.0/24", "tcp", "22", Action::Allow),
            rule("10.9.0.0/16", "0.0.0.0/0", "tcp", "22", Action::Deny),
        ],
    );
    assert!(!syn_ok(&f, "192.0.2.1", "10.9.0.1", 22));
    assert!(syn_ok(&f, "192.0.2.1", "10.8.0.1", 22));
}

#[test]
fn ranges_of_one_key_are_tried_in_insertion_order() {
    require_priv!();
    let f = Fixture::new();
    set_rules(
        &f,
        &[
            rule("10.1.0.0/16", "0.0.0.0/0", "tcp", "80-90", Action::Deny),
            rule("10.1.0.0/16", "0.0.0.0/0", "tcp", "85", Action::Allow),
            rule("10.2.0.0/16", "0.0.0.0/0", "tcp", "85", Action::Allow),
            rule("10.2.0.0/16", "0.0.0.0/0", "tcp", "80-90", Action::Deny),
        ],
    );
    assert!(
        !syn_ok(&f, "192.0.2.1", "10.1.0.1", 85),
        "first range (deny) wins"
    );
    assert!(
        syn_ok(&f, "192.0.2.1", "10.2.0.1", 85),
        "first range (allow) wins"
    );
    assert!(!syn_ok(&f, "192.0.2.1", "10.2.0.1", 86));
    // IPv6, UDP
    set_rules(
        &f,
        &[
            rule("fd00::/64", "::/0", "udp", "5000", Action::Allow),
            rule("fd00::/64", "::/0", "udp", "4000-6000", Action::Deny),
        ],
    );
    assert!(udp_ok(&f, "fd99::1", "fd00::7", 5000));
    assert!(!udp_ok(&f, "fd99::1", "fd00::7", 5001));
}

/// The rule walk runs its first pairs, and the first ranges of each of
/// their keys, as plain loops and the rest in bpf_loop (policy.h,
/// ARCHITECTURE.md §7): decisions on both sides of that line, and across
/// it, are the precedence's.
#[test]
fn decisions_alike_in_the_inline_walk_and_past_it() {
    require_priv!();
    let f = Fixture::new();
    let inline_ranges = zfw::skel::names::ZFW_WALK_INLINE_RANGES as u16;
    assert_eq!(
        zfw::skel::names::ZFW_WALK_INLINE_PAIRS,
        4,
        "the 6 pairs below straddle it"
    );
    assert!(inline_ranges < 40, "the 40 ranges below go past it");
    // one key with 40 single-port denies (1001..=1040), under a less
    // specific key that allows 1000-2000
    let mut rules: Vec<Rule> = (1001..=1040)
        .map(|p| {
            rule(
                "10.5.0.0/24",
                "0.0.0.0/0",
                "tcp",
                &p.to_string(),
                Action::Deny,
            )
        })
        .collect();
    rules.push(rule(
        "10.5.0.0/16",
        "0.0.0.0/0",
        "tcp",
        "1000-2000",
        Action::Allow,
    ));
    // an address with 6 pairs (/32 down to /27): port 7 only the least
    // specific key allows, 8 the next, 9 the 4th
    for (len, port) in [(32, 100), (31, 101), (30, 102), (29, 9), (28, 8), (27, 7)] {
        let dst = zfw::rules::model::Prefix::new("10.6.0.1".parse().unwrap(), len);
        rules.push(rule(
            &dst.to_string(),
            "0.0.0.0/0",
            "tcp",
            &port.to_string(),
            Action::Allow,
        ));
    }
    set_rules(&f, &rules);
    for p in [1001, 1000 + inline_ranges, 1001 + inline_ranges, 1040] {
        assert!(!syn_ok(&f, "192.0.2.1", "10.5.0.9", p), "{p}: its deny");
    }
    assert!(
        syn_ok(&f, "192.0.2.1", "10.5.0.9", 1041),
        "past a long key the next pair decides"
    );
    assert!(syn_ok(&f, "192.0.2.1", "10.5.1.9", 1020), "outside the /24");
    for p in [100, 101, 102, 9, 8, 7] {
        assert!(syn_ok(&f, "192.0.2.1", "10.6.0.1", p), "pair of port {p}");
    }
    assert!(!syn_ok(&f, "192.0.2.1", "10.6.0.1", 10), "no pair's key");
    assert!(!syn_ok(&f, "192.0.2.1", "10.6.0.2", 100), "only the /32's");
}

#[test]
fn explicit_deny_default_drop_and_protocols_are_separate() {
    require_priv!();
    let f = Fixture::new();
    set_rules(
        &f,
        &[
            rule("10.0.0.2/32", "0.0.0.0/0", "udp", "53", Action::Allow),
            rule("10.0.0.2/32", "0.0.0.0/0", "tcp", "53", Action::Deny),
        ],
    );
    assert!(udp_ok(&f, "192.0.2.1", "10.0.0.2", 53));
    assert!(!syn_ok(&f, "192.0.2.1", "10.0.0.2", 53));
    assert_eq!(f.counter("drop_rule_deny"), 1);
    assert!(!udp_ok(&f, "192.0.2.1", "10.0.0.2", 54));
    assert_eq!(f.counter("drop_no_rule"), 1);
    assert_eq!(f.counter("pass_rule"), 1);
    // an allowed UDP flow is tracked by prio 2: its next datagram is known
    let d = udp("192.0.2.1", 31000, "10.0.0.2", 53, b"x");
    assert_eq!(f.ingress(&d), TC_ACT_UNSPEC);
    assert_eq!(f.ingress(&d), TC_ACT_OK);
    assert_eq!(f.counter("pass_known_flow"), 1);
}

#[test]
fn per_interface_rules_honour_only_rules_listing_the_interface() {
    require_priv!();
    let f = Fixture::new();
    let mut on_lo = rule("10.1.0.0/16", "0.0.0.0/0", "tcp", "80", Action::Allow);
    on_lo.interfaces = vec!["lo".into()];
    let mut elsewhere = rule("10.2.0.0/16", "0.0.0.0/0", "tcp", "80", Action::Allow);
    elsewhere.interfaces = vec!["#4242".into()];
    let everywhere = rule("10.3.0.0/16", "0.0.0.0/0", "tcp", "80", Action::Allow);
    let mut v6 = rule("fd01::/64", "::/0", "tcp", "80", Action::Allow);
    v6.interfaces = vec!["lo".into()];
    set_rules(&f, &[on_lo, elsewhere, everywhere, v6]);
    // without the flag, interface lists do not restrict
    for dst in ["10.1.0.1", "10.2.0.1", "10.3.0.1", "fd01::1"] {
        assert!(
            syn_ok(
                &f,
                if dst.contains(':') {
                    "fd99::1"
                } else {
                    "192.0.2.1"
                },
                dst,
                80
            ),
            "{dst}"
        );
    }
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("per_interface_rules"));
    store::bump_gen(&f.root.maps()).unwrap();
    assert!(syn_ok(&f, "192.0.2.1", "10.1.0.1", 80), "rule lists lo");
    assert!(
        !syn_ok(&f, "192.0.2.1", "10.2.0.1", 80),
        "rule lists another interface"
    );
    assert!(
        !syn_ok(&f, "192.0.2.1", "10.3.0.1", 80),
        "rule lists no interface"
    );
    assert!(syn_ok(&f, "fd99::1", "fd01::1", 80));
}

#[test]
fn decisions_are_cached_and_a_rule_change_invalidates_the_cache() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    assert!(!syn_ok(&f, "192.0.2.1", "10.7.0.1", 8080));
    assert_eq!(
        maps.count(&zfw::maps::defs::MATCHED_MAP).unwrap(),
        1,
        "the miss is cached"
    );
    let gen0 = maps.config().unwrap().policy_gen;
    // cached "no match" must not survive a rule change
    store::add(
        &maps,
        rule("10.7.0.0/16", "0.0.0.0/0", "tcp", "8080", Action::Allow),
    )
    .unwrap();
    assert_ne!(maps.config().unwrap().policy_gen, gen0);
    assert!(
        syn_ok(&f, "192.0.2.1", "10.7.0.1", 8080),
        "new rule seen despite the cache"
    );
    // a cached allow must not survive a change to deny
    store::add(
        &maps,
        rule("10.7.0.0/16", "0.0.0.0/0", "tcp", "8080", Action::Deny),
    )
    .unwrap();
    assert!(!syn_ok(&f, "192.0.2.1", "10.7.0.1", 8080));
    // deletion back to default drop, IPv6 too
    store::add(&maps, rule("fd07::/64", "::/0", "udp", "9", Action::Allow)).unwrap();
    assert!(udp_ok(&f, "fd99::1", "fd07::1", 9));
    let id = rule("fd07::/64", "::/0", "udp", "9", Action::Allow).id();
    store::del(&maps, &id).unwrap();
    assert!(!udp_ok(&f, "fd99::1", "fd07::1", 9));
    // repeated packets of one decision are served from the cache: poison
    // the cached "no match" with "allow" (same key, same generation), and
    // only a packet answered from the cache is let through
    assert!(!udp_ok(&f, "fd99::1", "fd07::1", 9));
    let allow = zfw::rules::compile::action_code(Action::Allow).0;
    let poisoned = zfw::testkit::decisions::poison_cached_actions(&maps, allow).unwrap();
    assert!(poisoned >= 1, "the decision is in the cache");
    for _ in 0..3 {
        assert!(
            udp_ok(&f, "fd99::1", "fd07::1", 9),
            "the decision was served from the cache"
        );
    }
    // and a rule change retires the poisoned entry with the rest
    store::add(&maps, rule("fd08::/64", "::/0", "udp", "9", Action::Allow)).unwrap();
    assert!(!udp_ok(&f, "fd99::1", "fd07::1", 9));
}

#[test]
fn egress_rules_apply_with_outbound_filter() {
    require_priv!();
    let f = Fixture::new();
    let out = |dport| tcp("10.0.0.2", sp(), "198.51.100.7", dport, TCP_SYN);
    assert_eq!(f.egress(&out(443)), TC_ACT_OK, "no outbound filter: pass");
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("outbound_filter"));
    assert_eq!(
        f.egress(&out(443)),
        TC_ACT_SHOT,
        "outbound filter: default drop"
    );
    let mut r = rule("198.51.100.0/24", "0.0.0.0/0", "tcp", "443", Action::Allow);
    r.direction = Direction::Egress;
    store::add(&f.root.maps(), r).unwrap();
    assert_eq!(f.egress(&out(443)), TC_ACT_OK);
    assert_eq!(f.egress(&out(444)), TC_ACT_SHOT);
    // egress rules do not open ingress
    assert!(!syn_ok(&f, "192.0.2.1", "198.51.100.7", 443));
}

#[test]
fn icmp_echo_flag_ipv4_and_ipv6() {
    require_priv!();
    let f = Fixture::new();
    let req = icmp_echo("192.0.2.1", "10.0.0.2", false, 7, 1);
    let req6 = icmp_echo("fd99::1", "fd00::2", false, 7, 1);
    assert_eq!(f.ingress(&req), TC_ACT_SHOT);
    assert_eq!(f.ingress(&req6), TC_ACT_SHOT);
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("icmp_echo"));
    assert_eq!(f.ingress(&req), TC_ACT_OK);
    assert_eq!(f.ingress(&req6), TC_ACT_OK);
    // only to interface addresses
    assert_eq!(
        f.ingress(&icmp_echo("192.0.2.1", "10.0.0.99", false, 7, 2)),
        TC_ACT_SHOT
    );
}

#[test]
fn vrrp_flag() {
    require_priv!();
    let f = Fixture::new();
    let s = "10.0.0.1".parse().unwrap();
    let d = "224.0.0.18".parse().unwrap();
    let vrrp = ether(
        [1, 0, 0x5e, 0, 0, 0x12],
        CLIENT_MAC,
        0x0800,
        &ip_packet(s, d, 112, &[0x21, 1, 100, 1, 0, 1, 0, 0, 10, 0, 0, 100]),
    );
    assert_eq!(f.ingress(&vrrp), TC_ACT_SHOT);
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("vrrp"));
    assert_eq!(f.ingress(&vrrp), TC_ACT_OK);
    assert_eq!(f.counter("pass_vrrp"), 1);
}

#[test]
fn ssh_flag_ipv6_and_rules_still_apply_with_ssh_off() {
    require_priv!();
    let f = Fixture::new();
    assert!(syn_ok(&f, "fd99::1", "fd00::2", 22));
    f.set_flags(Fixture::flag("ipv6"));
    assert!(!syn_ok(&f, "fd99::1", "fd00::2", 22));
    assert!(!syn_ok(&f, "192.0.2.1", "10.0.0.2", 22));
    // with ssh off, a rule can still let SSH in
    set_rules(
        &f,
        &[rule(
            "10.0.0.2/32",
            "192.0.2.0/24",
            "tcp",
            "22",
            Action::Allow,
        )],
    );
    assert!(syn_ok(&f, "192.0.2.1", "10.0.0.2", 22));
    assert!(!syn_ok(&f, "198.51.100.1", "10.0.0.2", 22));
}

#[test]
fn ipv6_off_drops_ipv6_rules_too() {
    require_priv!();
    let f = Fixture::new();
    set_rules(&f, &[rule("fd00::/64", "::/0", "tcp", "80", Action::Allow)]);
    assert!(syn_ok(&f, "fd99::1", "fd00::2", 80));
    f.set_flags(Fixture::flag("ssh"));
    assert!(!syn_ok(&f, "fd99::1", "fd00::2", 80));
}

#[test]
fn a_full_rule_set_is_refused_and_the_live_rules_stay() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let half = maps.max_entries(&zfw::maps::defs::RANGE_MAP).unwrap() / 2;
    // one more range than a rule set's half of range_map
    set_rules(
        &f,
        &[rule("10.1.0.0/16", "0.0.0.0/0", "tcp", "80", Action::Allow)],
    );
    let too_many: Vec<Rule> = (0..=half)
        .map(|i| {
            rule(
                &format!("10.{}.{}.0/24", 100 + (i >> 15), (i >> 7) & 255),
                "0.0.0.0/0",
                "tcp",
                &format!("{}", 1 + (i & 127)),
                Action::Allow,
            )
        })
        .collect();
    let err = store::replace_all(&maps, &too_many).unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(store::read_live(&maps).unwrap().len(), 1);
    assert!(syn_ok(&f, "192.0.2.1", "10.1.0.1", 80));
}

#[test]
fn holds_250k_ranges_over_100k_prefix_keys_per_family() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    // IPv4: 100,000 dst /32 keys; IPv6: 100,000 dst /128 keys; 250,000
    // ranges in each (half of the keys have 3 ranges, half 2)
    let mut rules = Vec::with_capacity(500_000);
    for fam in 0..2 {
        for k in 0u32..100_000 {
            let dst = if fam == 0 {
                std::net::Ipv4Addr::from(0x0a00_0000 | k).to_string() + "/32"
            } else {
                format!("fd00::{:x}:{:x}/128", k >> 16, k & 0xffff)
            };
            let src = if fam == 0 { "0.0.0.0/0" } else { "::/0" };
            let n = if k < 50_000 { 3 } else { 2 };
            for j in 0..n {
                let lo = 1000 + 10 * j;
                rules.push(rule(
                    &dst,
                    src,
                    "tcp",
                    &format!("{lo}-{}", lo + 5),
                    Action::Allow,
                ));
            }
        }
    }
    assert_eq!(rules.len(), 2 * 250_000);
    let t = std::time::Instant::now();
    store::replace_all(&maps, &rules).expect("a full-size rule set fits");
    eprintln!("replace_all of {} rules: {:?}", rules.len(), t.elapsed());
    assert_eq!(maps.count(&zfw::maps::defs::TPROXY_MAP).unwrap(), 200_000);
    assert!(syn_ok(&f, "192.0.2.1", "10.0.0.0", 1021), "key 0, range 3");
    assert!(
        syn_ok(&f, "192.0.2.1", "10.1.134.159", 1011),
        "key 99999, range 2"
    );
    assert!(
        !syn_ok(&f, "192.0.2.1", "10.1.134.159", 1021),
        "key 99999 has 2 ranges"
    );
    assert!(syn_ok(&f, "fd99::1", "fd00::1:869f", 1001));
    assert!(
        !syn_ok(&f, "192.0.2.1", "10.1.134.160", 1001),
        "beyond the last key"
    );
    // and a rule change at that size still works
    let t = std::time::Instant::now();
    store::add(
        &maps,
        rule("10.1.134.160/32", "0.0.0.0/0", "tcp", "1001", Action::Allow),
    )
    .unwrap();
    eprintln!("one rule add at {} rules: {:?}", rules.len(), t.elapsed());
    assert!(syn_ok(&f, "192.0.2.1", "10.1.134.160", 1001));
    assert_eq!(store::read_live(&maps).unwrap().len(), rules.len() + 1);
}
