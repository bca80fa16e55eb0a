//! Single-rule changes written in place (src/rules/incremental.rs): after
//! any mix of adds and deletes the maps hold what a full rewrite of the
//! same rule list would write (rules, trie lists), packets are decided by
//! the precedence rules, and between any two map writes of one change
//! every packet is decided as the old or the new rule set decides it.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};

use common::fixture::*;
use common::packet::*;
use common::rulemodel::{by_key, compiled_lpm, decide, lpm_entries, rule};
use zfw::maps::Maps;
use zfw::rules::incremental;
use zfw::rules::model::{Action, Prefix, Rule};
use zfw::rules::store::{self, AddOutcome};

static SPORT: AtomicU16 = AtomicU16::new(30000);

fn sp() -> u16 {
    SPORT.fetch_add(1, Ordering::SeqCst)
}

/// `zfw rule add` on a rule list (the semantics of the full rewrite).
fn model_add(list: &mut Vec<Rule>, r: Rule) -> AddOutcome {
    match list.iter_mut().find(|o| o.id() == r.id()) {
        Some(o) if *o == r => AddOutcome::Unchanged,
        Some(o) => {
            *o = r;
            AddOutcome::Updated
        }
        None => {
            list.push(r);
            AddOutcome::Added
        }
    }
}

fn allowed_by(rules: &[Rule], p: &(&str, &str, u16)) -> bool {
    decide(rules, p.0.parse().unwrap(), p.1.parse().unwrap(), p.2) == Some(Action::Allow)
}

fn verdict(f: &Fixture, p: &(&str, &str, u16)) -> bool {
    f.allowed(&tcp(p.0, sp(), p.1, p.2, TCP_SYN))
}

const PROBES: &[(&str, &str, u16)] = &[
    ("198.51.100.1", "10.1.2.3", 80),
    ("198.51.100.1", "10.1.2.3", 85),
    ("192.0.2.9", "10.1.2.3", 80),
    ("192.0.2.9", "10.1.2.3", 22),
    ("192.0.2.9", "10.1.2.3", 82),
    ("192.0.2.9", "10.1.2.3", 85),
    ("192.0.2.9", "10.1.2.200", 80),
    ("198.51.100.1", "10.1.2.200", 80),
    ("192.168.1.1", "10.1.2.7", 80),
    ("198.51.100.1", "10.1.9.9", 85),
    ("198.51.100.1", "10.9.9.9", 80),
    ("198.51.100.1", "10.9.9.9", 8080),
    ("198.51.100.1", "10.9.9.9", 9000),
    ("192.0.2.9", "10.9.9.9", 22),
    ("198.51.100.1", "172.20.0.1", 443),
    ("198.51.100.1", "10.1.2.3", 81),
    ("198.51.100.1", "10.1.2.3", 82),
    ("192.0.2.9", "10.1.5.5", 85),
];

fn check(f: &Fixture, maps: &Maps, expected: &[Rule], what: &str) {
    check_large(f, maps, expected, PROBES, what)
}

#[test]
fn in_place_adds_and_deletes_equal_a_full_rewrite() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let mut expected = vec![
        rule("10.0.0.0/8", "0.0.0.0/0", "80", Action::Allow),
        rule("10.1.0.0/16", "0.0.0.0/0", "80-90", Action::Deny),
        rule("10.1.2.0/24", "192.168.0.0/16", "80", Action::Allow),
    ];
    store::replace_all(&maps, &expected).unwrap();
    check(&f, &maps, &expected, "the initial full write");
    let gen = maps.config().unwrap().policy_gen;

    let adds = [
        (
            "a new dst prefix",
            rule("172.16.0.0/12", "0.0.0.0/0", "443", Action::Allow),
        ),
        (
            "a new pair under an existing prefix",
            rule("10.0.0.0/8", "192.0.2.0/24", "22", Action::Allow),
        ),
        (
            "a longer prefix under an existing one",
            rule("10.1.2.128/25", "0.0.0.0/0", "80", Action::Allow),
        ),
        (
            "a range appended to an existing key",
            rule("10.0.0.0/8", "0.0.0.0/0", "8080", Action::Allow),
        ),
        (
            "a second range appended",
            rule("10.0.0.0/8", "0.0.0.0/0", "9000", Action::Allow),
        ),
        (
            "a new key on an existing pair",
            rule("10.1.2.0/24", "192.168.0.0/16", "85", Action::Allow),
        ),
        (
            "an action change (kept in place)",
            rule("10.0.0.0/8", "0.0.0.0/0", "80", Action::Deny),
        ),
        (
            "a new key with a service id",
            rule("10.1.2.0/24", "0.0.0.0/0", "80", Action::Allow),
        ),
    ];
    for (what, mut r) in adds {
        if what.contains("service id") {
            r.service_id = Some("svc-1".into());
        }
        let want = model_add(&mut expected, r.clone());
        assert_eq!(store::add(&maps, r).unwrap(), want, "{what}");
        check(&f, &maps, &expected, what);
    }
    // an identical rule: nothing changes, not even the generation
    let again = rule("10.0.0.0/8", "0.0.0.0/0", "9000", Action::Allow);
    let g = maps.config().unwrap().policy_gen;
    assert_eq!(store::add(&maps, again).unwrap(), AddOutcome::Unchanged);
    assert_eq!(maps.config().unwrap().policy_gen, g);
    assert_ne!(g, gen, "every change bumped policy_gen");

    let dels = [
        (
            "a middle range of a key",
            rule("10.0.0.0/8", "0.0.0.0/0", "8080", Action::Allow),
        ),
        (
            "the first range of a key",
            rule("10.0.0.0/8", "0.0.0.0/0", "80", Action::Deny),
        ),
        (
            "the last range of a key (its node goes)",
            rule("10.1.2.128/25", "0.0.0.0/0", "80", Action::Allow),
        ),
        (
            "a key whose pair goes from the descendants",
            rule("10.0.0.0/8", "192.0.2.0/24", "22", Action::Allow),
        ),
        (
            "a key whose pair stays (another key has it)",
            rule("10.1.2.0/24", "192.168.0.0/16", "80", Action::Allow),
        ),
        (
            "the only key of a prefix",
            rule("172.16.0.0/12", "0.0.0.0/0", "443", Action::Allow),
        ),
    ];
    for (what, r) in dels {
        store::del(&maps, &r.id()).unwrap();
        expected.retain(|o| o.id() != r.id());
        check(&f, &maps, &expected, what);
    }
    // deleting what is not there: a usage error, nothing changes
    let g = maps.config().unwrap().policy_gen;
    let gone = rule("172.16.0.0/12", "0.0.0.0/0", "443", Action::Allow);
    let e = store::del(&maps, &gone.id()).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let other_ports = rule("10.1.0.0/16", "0.0.0.0/0", "80", Action::Deny);
    assert_eq!(
        store::del(&maps, &other_ports.id())
            .unwrap_err()
            .exit_code(),
        2
    );
    assert_eq!(maps.config().unwrap().policy_gen, g);
    check(&f, &maps, &expected, "refused deletes");

    // a full rewrite of the same list gives the same rules and trie
    store::replace_all(&maps, &expected).unwrap();
    check(&f, &maps, &expected, "a full rewrite");
    // service ids of moved or freed slots do not linger
    let svc = maps.count(&zfw::maps::defs::SERVICE_MAP).unwrap();
    assert_eq!(
        svc,
        expected.iter().filter(|r| r.service_id.is_some()).count()
    );
}

/// Run `change` (one in-place add or del) with a check after each of its
/// map writes: every probe is decided as `before` or `after` decides it
/// (policy_gen bumped first so no cached decision answers).
fn observed(
    f: &Fixture,
    maps: &Maps,
    before: &[Rule],
    after: &[Rule],
    change: &mut dyn FnMut(&Maps, incremental::Observer),
) -> usize {
    observed_with(f, maps, PROBES, before, after, change)
}

/// `observed` with these probes.
fn observed_with(
    f: &Fixture,
    maps: &Maps,
    probes: &[(&str, &str, u16)],
    before: &[Rule],
    after: &[Rule],
    change: &mut dyn FnMut(&Maps, incremental::Observer),
) -> usize {
    let mut steps = 0;
    let mut obs = || {
        steps += 1;
        store::bump_gen(maps).unwrap();
        for p in probes {
            let got = verdict(f, p);
            let (old, new) = (allowed_by(before, p), allowed_by(after, p));
            assert!(
                got == old || got == new,
                "{p:?} after write {steps}: {got}, old set {old}, new set {new}"
            );
        }
    };
    change(maps, &mut obs);
    for p in probes {
        assert_eq!(verdict(f, p), allowed_by(after, p), "{p:?} when done");
    }
    steps
}

#[test]
fn every_state_between_the_writes_decides_as_the_old_or_the_new_set() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let base = vec![
        rule("10.1.0.0/16", "0.0.0.0/0", "80", Action::Deny),
        rule("10.1.2.0/24", "0.0.0.0/0", "81", Action::Allow),
        rule("10.1.2.3/32", "0.0.0.0/0", "82", Action::Allow),
        rule("10.1.2.3/32", "0.0.0.0/0", "85", Action::Deny),
    ];
    store::replace_all(&maps, &base).unwrap();
    // a new key whose pair (8, 24) is new: a new node above three stored
    // descendants, each of whose lists changes
    let k = rule("10.0.0.0/8", "192.0.2.0/24", "80-90", Action::Allow);
    let mut with_k = base.clone();
    with_k.push(k.clone());
    let steps = observed(&f, &maps, &base, &with_k, &mut |m, obs| {
        let o = incremental::add_observed(m, &k, obs).unwrap();
        assert_eq!(o, Some(AddOutcome::Added));
    });
    assert!(steps >= 6, "ranges, key, 4 trie nodes, gen: {steps} writes");
    check(&f, &maps, &with_k, "the observed add");

    // an action change in the middle of a key (copied to free slots)
    let mut changed = with_k.clone();
    let mid = rule("10.1.2.3/32", "0.0.0.0/0", "82", Action::Deny);
    model_add(&mut changed, mid.clone());
    observed(&f, &maps, &with_k, &changed, &mut |m, obs| {
        incremental::add_observed(m, &mid, obs).unwrap();
    });
    check(&f, &maps, &changed, "the observed update");

    // and the key goes again: its pair leaves every list, then the key
    observed(
        &f,
        &maps,
        &changed,
        &{
            let mut v = changed.clone();
            v.retain(|r| r.id() != k.id());
            v
        },
        &mut |m, obs| {
            assert!(incremental::del_observed(m, &k.id(), obs).unwrap());
        },
    );
}

#[test]
fn a_fragmented_range_map_is_compacted_by_a_full_rewrite() {
    require_priv!();
    // range_map of two chunks: one chunk's slots per rule set
    const HALF: u32 = zfw::maps::chunked::SLOTS;
    let f = Fixture::with_sizes(&[("range_map", 2 * HALF)]);
    let maps = f.root.maps();
    let half = maps.max_entries(&zfw::maps::defs::RANGE_MAP).unwrap() / 2;
    assert_eq!(half, HALF);
    // HALF - 3 ranges: keys 10.0.0.0../32 with 100 ranges each (the last fewer)
    let mk = |i: u32| {
        let a = std::net::Ipv4Addr::from(0x0a00_0000u32 | (i / 100));
        rule(
            &format!("{a}/32"),
            "0.0.0.0/0",
            &format!("{}", 1000 + i % 100),
            Action::Allow,
        )
    };
    let mut rules: Vec<Rule> = (0..HALF - 3).map(mk).collect();
    store::replace_all(&maps, &rules).unwrap();
    let set = store::active_set(&maps).unwrap();
    let gone = |rules: &mut Vec<Rule>, i: u32| {
        let r = mk(i);
        rules.retain(|o| o.id() != r.id());
        r
    };
    // the last range of the last key: its span shrinks, in place
    let r = gone(&mut rules, HALF - 4);
    store::del(&maps, &r.id()).unwrap();
    assert_eq!(store::active_set(&maps).unwrap(), set, "deleted in place");
    // a range appended to the last key: the slot after its span is free
    let r = mk(HALF - 4);
    store::add(&maps, r.clone()).unwrap();
    rules.push(r);
    assert_eq!(store::active_set(&maps).unwrap(), set, "appended in place");
    assert_eq!(by_key(&store::read_live(&maps).unwrap()), by_key(&rules));
    // a middle range of a 100-range key: its 99 others need a free run
    // of 99 slots, there are 3, so the whole set is rewritten (compacted)
    let r = gone(&mut rules, 150);
    store::del(&maps, &r.id()).unwrap();
    assert_ne!(
        store::active_set(&maps).unwrap(),
        set,
        "fell back to a full rewrite"
    );
    assert_eq!(by_key(&store::read_live(&maps).unwrap()), by_key(&rules));
    // a new key fits in place again after the compaction
    let set = store::active_set(&maps).unwrap();
    let r = rule("10.200.0.1/32", "0.0.0.0/0", "443", Action::Allow);
    store::add(&maps, r.clone()).unwrap();
    assert_eq!(store::active_set(&maps).unwrap(), set, "added in place");
    rules.push(r);
    assert_eq!(by_key(&store::read_live(&maps).unwrap()), by_key(&rules));
    assert!(verdict(&f, &("198.51.100.1", "10.200.0.1", 443)));
    assert!(
        verdict(&f, &("198.51.100.1", "10.0.0.1", 1051)),
        "rule 151 kept"
    );
    assert!(
        !verdict(&f, &("198.51.100.1", "10.0.0.1", 1050)),
        "rule 150 went"
    );
    // a set larger than the half is refused, nothing changes
    let before = store::read_live(&maps).unwrap();
    let big = rule("10.201.0.0/16", "0.0.0.0/0", "1-2", Action::Allow);
    let more: Vec<Rule> = (0..3)
        .map(|i| {
            rule(
                "10.202.0.0/16",
                "0.0.0.0/0",
                &format!("{}", 10 + i),
                Action::Allow,
            )
        })
        .collect();
    for r in more {
        store::add(&maps, r.clone()).unwrap();
        rules.push(r);
    }
    assert_eq!(store::read_live(&maps).unwrap().len(), HALF as usize);
    let e = store::add(&maps, big).unwrap_err();
    assert_eq!(e.exit_code(), 1, "{e}");
    assert_eq!(store::read_live(&maps).unwrap().len(), before.len() + 3);
}

#[test]
fn an_add_cut_short_before_its_trie_writes_is_finished_by_the_same_add() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let base = vec![rule("10.1.0.0/16", "0.0.0.0/0", "80", Action::Deny)];
    store::replace_all(&maps, &base).unwrap();
    let k = rule("10.0.0.0/8", "192.0.2.0/24", "80", Action::Allow);
    let probe = ("192.0.2.9", "10.9.9.9", 80);
    // the process dies right after the key write (write 2: ranges, key)
    let mut n = 0;
    let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = incremental::add_observed(&maps, &k, &mut || {
            n += 1;
            if n == 2 {
                panic!("cut short");
            }
        });
    }));
    assert!(cut.is_err());
    store::bump_gen(&maps).unwrap();
    assert!(!verdict(&f, &probe), "the key is not published yet");
    assert_eq!(
        store::read_live(&maps).unwrap().len(),
        2,
        "but it is listed"
    );
    // the script re-runs the add: identical rule, and now it is enforced
    assert_eq!(store::add(&maps, k.clone()).unwrap(), AddOutcome::Unchanged);
    assert!(verdict(&f, &probe));
    let mut all = base.clone();
    all.push(k);
    check(&f, &maps, &all, "the finished add");
}

/// A deterministic generator (xorshift64): the large sets are the same on
/// every run.
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const SRCS4: [&str; 3] = ["0.0.0.0/0", "198.51.0.0/16", "198.51.100.0/24"];
const SRCS6: [&str; 2] = ["::/0", "2001:db8::/32"];

/// `n4` IPv4 and `n6` IPv6 rules with nested dst prefixes of many lengths
/// (under 10.64.0.0/14 and fd10::/30), a few src prefixes, allow and deny
/// on single ports and ranges.  Ids are unique.
fn nested_set(g: &mut Gen, n4: usize, n6: usize) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut per_key = std::collections::HashMap::new();
    while out.len() < n4 + n6 {
        let v4 = out.len() < n4;
        let (dst, src) = if v4 {
            let a = 0x0a40_0000 | (g.below(4) << 16 | g.below(64) << 8 | g.below(256)) as u32;
            let len = [8, 12, 16, 20, 24, 28, 32][g.below(7) as usize];
            let d = Prefix::new(std::net::Ipv4Addr::from(a).into(), len);
            (d, SRCS4[g.below(3) as usize])
        } else {
            let a: std::net::Ipv6Addr = format!(
                "fd10:{:x}:{:x}::{:x}",
                g.below(4),
                g.below(64),
                g.below(256)
            )
            .parse()
            .unwrap();
            let len = [16, 32, 48, 64, 128][g.below(5) as usize];
            (Prefix::new(a.into(), len), SRCS6[g.below(2) as usize])
        };
        let lo = 1 + g.below(90) as u16;
        let hi = lo + [0, 0, 5][g.below(3) as usize];
        let action = if g.below(3) == 0 {
            Action::Deny
        } else {
            Action::Allow
        };
        let r = rule(&dst.to_string(), src, &format!("{lo}-{hi}"), action);
        // keys of short dst prefixes fill up: stay far below the per-key limit
        let n = per_key.entry((r.dst, r.src)).or_insert(0usize);
        if *n < 60 && seen.insert(r.id()) {
            *n += 1;
            out.push(r);
        }
    }
    out
}

/// Packets inside (and beside) the rules' prefixes, from each src, to the
/// rules' ports and to 22: (src, dst, port) as text.
fn probes_of(g: &mut Gen, rules: &[Rule], n: usize) -> Vec<(String, String, u16)> {
    (0..n)
        .map(|_| {
            let r = &rules[g.below(rules.len() as u64) as usize];
            let (dst, src) = match r.dst.addr {
                IpAddr::V4(a) => {
                    let host = (g.below(1 << 8) as u32) & (u32::MAX >> r.dst.len.min(31));
                    let src = ["192.0.2.9", "198.51.7.7", "198.51.100.7"][g.below(3) as usize];
                    (
                        std::net::Ipv4Addr::from(u32::from(a) | host).to_string(),
                        src,
                    )
                }
                IpAddr::V6(a) => {
                    let host = if r.dst.len < 128 {
                        g.below(3) as u128
                    } else {
                        0
                    };
                    let src = ["2001:db8::7", "2001:dead::7"][g.below(2) as usize];
                    (
                        std::net::Ipv6Addr::from(u128::from(a) | host).to_string(),
                        src,
                    )
                }
            };
            let port = [r.ports.lo, r.ports.hi + 1, 22][g.below(3) as usize];
            (src.to_string(), dst, port)
        })
        .collect()
}

fn as_probes(v: &[(String, String, u16)]) -> Vec<(&str, &str, u16)> {
    v.iter()
        .map(|(s, d, p)| (s.as_str(), d.as_str(), *p))
        .collect()
}

/// The rule list, the whole trie against a full rewrite, and every probe
/// against the model.
fn check_large(
    f: &Fixture,
    maps: &Maps,
    expected: &[Rule],
    probes: &[(&str, &str, u16)],
    what: &str,
) {
    let live = store::read_live(maps).unwrap();
    assert_eq!(by_key(&live), by_key(expected), "rule list after {what}");
    let (got, want) = (lpm_entries(maps), compiled_lpm(maps, expected));
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "dst_lpm_map after {what} differs from a full rewrite: {} nodes, {} expected, first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
    for p in probes {
        assert_eq!(verdict(f, p), allowed_by(expected, p), "{p:?} after {what}");
    }
}

#[test]
fn covering_prefixes_on_a_large_set_equal_a_full_rewrite() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut expected = nested_set(&mut g, 4000, 1000);
    let probes = probes_of(&mut g, &expected, 300);
    let probes = as_probes(&probes);
    store::replace_all(&maps, &expected).unwrap();
    let set = store::active_set(&maps).unwrap();
    check_large(&f, &maps, &expected, &probes, "the initial full write");
    // (rule, add?) in order; every covering add has a pair no node listed
    let steps = [
        (rule("0.0.0.0/0", "0.0.0.0/0", "22", Action::Allow), true),
        (rule("::/0", "::/0", "22", Action::Allow), true),
        (
            rule("10.0.0.0/8", "192.0.2.0/25", "1-1000", Action::Deny),
            true,
        ),
        (rule("0.0.0.0/0", "0.0.0.0/0", "80-90", Action::Deny), true),
        (rule("10.64.0.0/15", "0.0.0.0/0", "22", Action::Deny), true),
        (rule("fd00::/8", "2001:db8::/32", "22", Action::Deny), true),
        (rule("0.0.0.0/0", "0.0.0.0/0", "22", Action::Allow), false),
        (
            rule("10.0.0.0/8", "192.0.2.0/25", "1-1000", Action::Deny),
            false,
        ),
        (rule("::/0", "::/0", "22", Action::Allow), false),
        (rule("0.0.0.0/0", "0.0.0.0/0", "80-90", Action::Deny), false),
        (rule("10.64.0.0/15", "0.0.0.0/0", "22", Action::Deny), false),
        (rule("fd00::/8", "2001:db8::/32", "22", Action::Deny), false),
    ];
    for (r, add) in steps {
        let what = format!(
            "{} {} src {} {}",
            if add { "add" } else { "del" },
            r.dst,
            r.src,
            r.ports
        );
        if add {
            let want = model_add(&mut expected, r.clone());
            assert_eq!(store::add(&maps, r).unwrap(), want, "{what}");
        } else {
            store::del(&maps, &r.id()).unwrap();
            expected.retain(|o| o.id() != r.id());
        }
        assert_eq!(store::active_set(&maps).unwrap(), set, "{what} in place");
        check_large(&f, &maps, &expected, &probes, &what);
    }
}

#[test]
fn every_state_of_a_covering_add_and_del_decides_as_the_old_or_the_new_set() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    let base = nested_set(&mut g, 300, 100);
    let probes = probes_of(&mut g, &base, 40);
    let probes = as_probes(&probes);
    store::replace_all(&maps, &base).unwrap();
    let nodes = lpm_entries(&maps).len();
    for cover in [
        rule("0.0.0.0/0", "0.0.0.0/0", "1-65535", Action::Deny),
        rule("::/0", "::/0", "1-65535", Action::Allow),
    ] {
        let mut with = base.clone();
        with.push(cover.clone());
        let steps = observed_with(&f, &maps, &probes, &base, &with, &mut |m, obs| {
            let o = incremental::add_observed(m, &cover, obs).unwrap();
            assert_eq!(o, Some(AddOutcome::Added));
        });
        assert!(
            steps > nodes / 4,
            "{} wrote its descendants one by one: {steps} writes",
            cover.dst
        );
        check_large(&f, &maps, &with, &probes, "the observed covering add");
        observed_with(&f, &maps, &probes, &with, &base, &mut |m, obs| {
            assert!(incremental::del_observed(m, &cover.id(), obs).unwrap());
        });
        check_large(&f, &maps, &base, &probes, "the observed covering del");
    }
}
