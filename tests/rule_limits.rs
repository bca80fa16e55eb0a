//! The rule limits (README "Limits"): port ranges per key and (dst len,
//! src len) pairs on one address's path.  At the limit the datapath
//! decides by the last range / the last pair; one past it, `apply` (the
//! full write) and `rule add` (in place) refuse with exit 2, naming the
//! limit, and nothing changes.

mod common;

use std::sync::atomic::{AtomicU16, Ordering};

use common::fixture::*;
use common::packet::*;
use zfw::rules::model::{Action, Direction, Prefix, Rule};
use zfw::rules::store;
use zfw::skel::names;

static SPORT: AtomicU16 = AtomicU16::new(31000);

fn rule(dst: Prefix, src: &str, port: u16, action: Action) -> Rule {
    Rule {
        direction: Direction::Ingress,
        dst,
        src: src.parse().unwrap(),
        proto: "tcp".parse().unwrap(),
        ports: port.to_string().parse().unwrap(),
        action,
        interfaces: vec![],
        service_id: None,
    }
}

fn allowed(f: &Fixture, src: &str, dst: &str, port: u16) -> bool {
    let sport = SPORT.fetch_add(1, Ordering::SeqCst);
    f.allowed(&tcp(src, sport, dst, port, TCP_SYN))
}

/// `r` is refused with exit 2 naming `limit`, by `rule add` and by a full
/// write of `rules` + `r`; the live rules stay `rules`.
fn refused(f: &Fixture, rules: &[Rule], r: Rule, limit: i64) {
    let maps = f.root.maps();
    let gen = maps.config().unwrap().policy_gen;
    let e = store::add(&maps, r.clone()).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains(&limit.to_string()), "{e}");
    assert!(e.to_string().contains("nothing changed"), "{e}");
    let mut all = rules.to_vec();
    all.push(r);
    let e = store::replace_all(&maps, &all).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains(&limit.to_string()), "{e}");
    assert_eq!(store::read_live(&maps).unwrap(), rules, "nothing changed");
    assert_eq!(maps.config().unwrap().policy_gen, gen);
}

#[test]
fn port_ranges_per_key_at_the_limit_and_one_past() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let n = names::ZFW_MAX_RANGES_PER_KEY as u16;
    assert!(n >= 250, "OpenZiti adds one range per service");
    let dst: Prefix = "10.9.0.0/16".parse().unwrap();
    // n single-port ranges on one key; only the last one allows
    let mut rules: Vec<Rule> = (1..=n)
        .map(|p| {
            rule(
                dst,
                "0.0.0.0/0",
                p,
                if p == n { Action::Allow } else { Action::Deny },
            )
        })
        .collect();
    store::replace_all(&maps, &rules).unwrap();
    assert!(
        allowed(&f, "192.0.2.9", "10.9.1.1", n),
        "the last range decides"
    );
    assert!(!allowed(&f, "192.0.2.9", "10.9.1.1", n - 1));
    // in place at the limit: the last range goes and comes back
    let last = rules.pop().unwrap();
    store::del(&maps, &last.id()).unwrap();
    assert!(!allowed(&f, "192.0.2.9", "10.9.1.1", n));
    store::add(&maps, last.clone()).unwrap();
    rules.push(last);
    assert!(allowed(&f, "192.0.2.9", "10.9.1.1", n));
    assert_eq!(store::read_live(&maps).unwrap(), rules);
    refused(
        &f,
        &rules,
        rule(dst, "0.0.0.0/0", n + 1, Action::Allow),
        n.into(),
    );
}

#[test]
fn length_pairs_on_one_path_at_the_limit_and_one_past() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let max = names::ZFW_MAX_PAIRS as u8;
    assert_eq!(max % 2, 0);
    let a: std::net::IpAddr = "10.1.2.3".parse().unwrap();
    // max / 2 nested dst prefixes of 10.1.2.3 (/32 down), two src lengths
    // each: `max` pairs on its path.  Port 7 is denied by the most
    // specific key; port 5 only by the least specific one, so the walk
    // must reach the last pair.
    let lens: Vec<u8> = (33 - max / 2..=32).rev().collect();
    let mut rules = Vec::new();
    for &l in &lens {
        let d = Prefix::new(a, l);
        rules.push(rule(d, "192.0.2.0/24", 7, Action::Deny));
        rules.push(rule(d, "0.0.0.0/0", 7, Action::Deny));
    }
    let least = Prefix::new(a, lens[lens.len() - 1]);
    rules.push(rule(least, "0.0.0.0/0", 5, Action::Allow));
    store::replace_all(&maps, &rules).unwrap();
    let rules = store::read_live(&maps).unwrap();
    assert!(
        allowed(&f, "192.0.2.9", "10.1.2.3", 5),
        "the last pair decides"
    );
    assert!(!allowed(&f, "192.0.2.9", "10.1.2.3", 7));
    assert!(allowed(&f, "198.51.100.1", "10.1.2.3", 5));
    // one more dst length above them all: max + 1 pairs under it
    let above = Prefix::new(a, lens[lens.len() - 1] - 1);
    refused(
        &f,
        &rules,
        rule(above, "0.0.0.0/0", 9, Action::Allow),
        max.into(),
    );
    // a new key on a pair already on the path does not count
    let beside = rule(Prefix::new(a, 32), "198.51.100.0/24", 8, Action::Allow);
    store::add(&maps, beside).unwrap();
    assert!(allowed(&f, "198.51.100.1", "10.1.2.3", 8));
}
