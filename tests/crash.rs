//! Crash consistency of rule writes (ARCHITECTURE.md §7, README "When a
//! rule command is killed"): the real `zfw` binary is killed with SIGKILL
//! at its N-th bpf() call (`strace -e inject=bpf:signal=SIGKILL:when=N`,
//! nothing test-only in the binary), for every N of `rule add` and
//! `rule del` on a small rule set and of `rule add`, `rule del`,
//! `rule flush` and `apply --prune` on a 1k-rule set, and at sampled N of
//! `rule add` and `apply --prune` on a 250k-rule set.  After each kill:
//! (a) every probe packet (BPF_PROG_TEST_RUN) is decided as the old or the
//!     new rule set decides it, and a state without a journal record
//!     already decides as it lists;
//! (b) after the next writing command (the same command again, or `gc`)
//!     every probe is decided exactly as `rule list` says;
//! (c) nothing stale is left: tproxy_map holds exactly the listed keys,
//!     dst_lpm_map exactly what a full rewrite of the list writes,
//!     service_map exactly the listed service ids, rule_ids_map exactly the
//!     listed rules' counter ids, no journal record;
//! and at every point no counter id names two live rules.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};

use common::fixture::*;
use common::packet::*;
use common::rulemodel::{by_key, checked_ids, compiled_lpm, decide, lpm_entries, rule, KeyOf};
use common::*;
use zfw::maps::{defs, Maps};
use zfw::rules::journal;
use zfw::rules::model::{Action, Prefix, Rule};
use zfw::rules::store;

static SPORT: AtomicU16 = AtomicU16::new(20000);

/// The rule `rule add` adds in the tests: a /8 with a new (dst len, src
/// len) pair, published to the /8's node and every stored descendant (the
/// write sequence issue 17 found cut short).
const ADD: &[&str] = &[
    "--dst",
    "10.0.0.0/8",
    "--src",
    "198.51.100.0/24",
    "--proto",
    "tcp",
    "--ports",
    "8081",
];

fn added() -> Rule {
    rule("10.0.0.0/8", "198.51.100.0/24", "8081", Action::Allow)
}

/// A set with a /8 over many /24 and /32 descendants.
fn small_set() -> Vec<Rule> {
    let mut v = vec![rule("10.0.0.0/8", "0.0.0.0/0", "22", Action::Allow)];
    for n in 0..32 {
        let a = if n % 5 == 0 {
            Action::Deny
        } else {
            Action::Allow
        };
        v.push(rule(&format!("10.1.{n}.0/24"), "0.0.0.0/0", "80", a));
    }
    for n in 0..16 {
        let mut r = rule(
            &format!("10.2.{n}.7/32"),
            "192.0.2.0/24",
            "443",
            Action::Allow,
        );
        if n % 4 == 0 {
            r.service_id = Some(format!("svc{n}"));
        }
        v.push(r);
    }
    v.push(rule("172.16.0.0/12", "0.0.0.0/0", "8081", Action::Allow));
    v
}

/// About `n` rules under one /8: host /32s (alternately with a source
/// prefix), and a /24 over each run of 256; `salt` shifts the addresses,
/// so two salts give overlapping, unequal sets.
fn big_set(n: usize, salt: usize) -> Vec<Rule> {
    // the /8 changes its action, and service ids their label, with the salt
    let a8 = [Action::Allow, Action::Deny][salt % 2];
    let mut v = vec![rule("10.0.0.0/8", "0.0.0.0/0", "22", a8)];
    for j in salt..salt + n - 1 {
        let (x, y, z) = (10 + j / 65536, (j / 256) % 256, j % 256);
        v.push(match (z, j % 2) {
            (0, _) => rule(
                &format!("10.{x}.{y}.0/24"),
                "0.0.0.0/0",
                "80",
                Action::Allow,
            ),
            (_, 0) => rule(
                &format!("10.{x}.{y}.{z}/32"),
                "192.0.2.0/24",
                "443",
                Action::Allow,
            ),
            _ => rule(
                &format!("10.{x}.{y}.{z}/32"),
                "0.0.0.0/0",
                "80",
                Action::Deny,
            ),
        });
        if j % 7 == 0 {
            v.last_mut().unwrap().service_id = Some(format!("svc{j}-{}", salt % 3));
        }
    }
    v
}

fn host(p: &Prefix) -> String {
    let s = p.addr.to_string();
    if p.len >= 32 {
        return s;
    }
    let mut o = match p.addr {
        std::net::IpAddr::V4(a) => a.octets(),
        _ => unreachable!("IPv4 sets only"),
    };
    o[3] |= 1;
    std::net::Ipv4Addr::from(o).to_string()
}

type Probe = (String, String, u16);

/// Packets that tell the sets apart: each rule's own (src, dst, port), the
/// added rule's source and port under each dst, and a few misses.
fn probes(sets: &[&[Rule]], limit: usize) -> Vec<Probe> {
    let mut out = BTreeSet::new();
    for r in sets.iter().flat_map(|s| s.iter()) {
        let d = host(&r.dst);
        for src in [host(&r.src), "198.51.100.7".to_string()] {
            for port in [r.ports.lo, 8081] {
                out.insert((src.clone(), d.clone(), port));
            }
        }
    }
    out.insert(("198.51.100.7".into(), "10.200.0.1".into(), 8081));
    out.insert(("203.0.113.1".into(), "10.200.0.1".into(), 22));
    let v: Vec<Probe> = out.into_iter().collect();
    let step = v.len().div_ceil(limit).max(1);
    v.into_iter().step_by(step).collect()
}

fn verdict(f: &Fixture, p: &Probe) -> bool {
    let sport = SPORT.fetch_add(1, Ordering::SeqCst).max(1024);
    f.allowed(&tcp(&p.0, sport, &p.1, p.2, TCP_SYN))
}

fn allowed_by(rules: &[Rule], p: &Probe) -> bool {
    decide(rules, p.0.parse().unwrap(), p.1.parse().unwrap(), p.2) == Some(Action::Allow)
}

/// No cached decision and no flow from an earlier probe answers.
fn fresh(maps: &Maps) {
    store::bump_gen(maps).unwrap();
    zfw::conntrack::flush(maps).unwrap();
}

const STRACE: &str = "strace";

/// `zfw --bpffs ROOT ARGS` under strace; with `kill_at`, SIGKILLed at that
/// bpf() call.  Returns (killed, bpf calls traced, how many of them open
/// the pins before the first map access).
fn traced(f: &Fixture, args: &[String], kill_at: Option<usize>) -> (bool, usize, usize) {
    let log = format!("/tmp/zfwt-strace-{}.log", unique("st"));
    let d = f.root.dir.display().to_string();
    let mut a: Vec<String> = vec![
        "-f".into(),
        "-q".into(),
        "-o".into(),
        log.clone(),
        "-e".into(),
        "trace=bpf".into(),
    ];
    if let Some(n) = kill_at {
        a.push("-e".into());
        a.push(format!("inject=bpf:signal=SIGKILL:when={n}"));
    }
    a.push(env!("CARGO_BIN_EXE_zfw").into());
    a.push("--bpffs".into());
    a.push(d);
    a.extend(args.iter().cloned());
    let out = Command::new(STRACE).args(&a).output().expect("run strace");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let calls = text.lines().filter(|l| l.contains("bpf(")).count();
    // the calls before the first map access open the pins: a kill there
    // has written nothing, so the positions start at the first access
    let opens = text
        .lines()
        .filter(|l| l.contains("bpf("))
        .take_while(|l| l.contains("BPF_OBJ_GET"))
        .count();
    let killed = text.contains("killed by SIGKILL")
        || std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9);
    if !killed {
        assert!(
            out.status.success(),
            "zfw {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (killed, calls, opens)
}

/// (b) and (c): the state decides as it lists, and holds nothing else.
fn consistent(f: &Fixture, maps: &Maps, m: &Model, what: &str) -> Vec<Rule> {
    let listed = store::read_live(maps).unwrap();
    fresh(maps);
    let want = m.of(&listed);
    for (p, w) in m.probes.iter().zip(want) {
        assert_eq!(
            verdict(f, p),
            w,
            "{p:?} {what}: the datapath disagrees with rule list"
        );
    }
    let keys: BTreeSet<_> = by_key(&listed)
        .into_iter()
        .map(|k| (k.0, k.1, k.2, k.3))
        .collect();
    assert_eq!(
        maps.count(&defs::TPROXY_MAP).unwrap(),
        keys.len(),
        "tproxy_map entries beside the listed keys {what}"
    );
    let lpm = compiled_lpm(maps, &listed);
    assert_eq!(
        lpm_entries(maps),
        lpm,
        "dst_lpm_map of the active set {what}"
    );
    assert_eq!(
        maps.count(&defs::DST_LPM_MAP).unwrap(),
        lpm.len(),
        "dst_lpm_map entries of the inactive set {what}"
    );
    assert_eq!(
        maps.count(&defs::SERVICE_MAP).unwrap(),
        listed.iter().filter(|r| r.service_id.is_some()).count(),
        "service_map entries {what}"
    );
    assert_eq!(
        journal::pending(maps).unwrap(),
        None,
        "journal record left {what}"
    );
    checked_ids(maps, true, what);
    listed
}

/// The probes and what the old and the new set decide for each (the model
/// is slow on 1k rules; most listings are one of the two).
struct Model {
    probes: Vec<Probe>,
    old: (Vec<KeyOf>, Vec<bool>),
    new: (Vec<KeyOf>, Vec<bool>),
}

impl Model {
    fn new(before: &[Rule], after: &[Rule], limit: usize) -> Model {
        let probes = probes(&[before, after], limit);
        let of = |r: &[Rule]| (by_key(r), probes.iter().map(|p| allowed_by(r, p)).collect());
        Model {
            old: of(before),
            new: of(after),
            probes,
        }
    }

    /// What `listed` decides for each probe.
    fn of(&self, listed: &[Rule]) -> Vec<bool> {
        let k = by_key(listed);
        if k == self.old.0 {
            return self.old.1.clone();
        }
        if k == self.new.0 {
            return self.new.1.clone();
        }
        self.probes.iter().map(|p| allowed_by(listed, p)).collect()
    }
}

struct Case<'a> {
    name: &'a str,
    before: Vec<Rule>,
    after: Vec<Rule>,
    args: Vec<String>,
    /// kill positions: every one (None), or about this many spread over
    /// the command's calls
    samples: Option<usize>,
    probe_limit: usize,
}

/// Kill `case.args` at every chosen bpf() position and check (a), (b), (c);
/// returns (positions tried, positions where the kill landed).
fn crash_case(f: &Fixture, case: &Case) -> (usize, usize) {
    let maps = f.root.maps();
    let m = Model::new(&case.before, &case.after, case.probe_limit);
    store::replace_all(&maps, &case.before).unwrap();
    let (_, calls, opens) = traced(f, &case.args, None);
    assert!(calls > 10, "{}: only {calls} bpf calls traced", case.name);
    let got = consistent(f, &maps, &m, "after an uninterrupted run");
    assert_eq!(by_key(&got), by_key(&case.after), "{}", case.name);

    let (mut tried, mut landed) = (0, 0);
    // every position from the first map access, or `n` spread evenly
    // (each in the middle of its share of the calls)
    let (stride, mut pos) = match case.samples {
        None => (1, opens + 1),
        Some(n) => {
            let s = (calls - opens).div_ceil(n).max(1);
            (s, opens + 1 + s / 2)
        }
    };
    let mut status_seen = false;
    while pos <= calls + 1 {
        store::replace_all(&maps, &case.before).unwrap();
        let (killed, _, _) = traced(f, &case.args, Some(pos));
        tried += 1;
        landed += usize::from(killed);
        let at = format!("{} killed at bpf call {pos} of {calls}", case.name);
        // (a) old or new, per packet
        fresh(&maps);
        let listed = store::read_live(&maps).unwrap();
        let pending = journal::pending(&maps).unwrap();
        let now = match pending {
            None => m.of(&listed),
            Some(_) => Vec::new(),
        };
        for (i, p) in m.probes.iter().enumerate() {
            let got = verdict(f, p);
            let (old, new) = (m.old.1[i], m.new.1[i]);
            assert!(
                got == old || got == new,
                "{p:?} {at}: {got}, old set {old}, new set {new}"
            );
            if pending.is_none() {
                assert_eq!(
                    got, now[i],
                    "{p:?} {at}: no journal record, yet the datapath disagrees with rule list"
                );
            }
        }
        if let Some(p) = &pending {
            assert!(!p.running, "{at}: {p:?}");
        }
        // counter ids: never shared, each live one marked in a trusted record
        checked_ids(&maps, pending.is_none(), &at);
        // `status` reports the pending change (once per case: it is slow)
        if pending.is_some() && !status_seen {
            status_seen = true;
            let s = zfw(None, &f.root, &["status", "--json"]).ok();
            let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
            assert_eq!(
                v["rule_change"]["running"], false,
                "{at}: status {}",
                s.stdout
            );
        }
        // (b), (c) after the next writing command: the same command again
        // (even positions) or gc (odd)
        if pos % 2 == 0 {
            let r = zfw(
                None,
                &f.root,
                &case.args.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            );
            let gone = r.stderr.contains("no such");
            assert!(r.code == 0 || gone, "{at}: re-run failed: {}", r.stderr);
            let l = consistent(f, &maps, &m, &format!("{at}, then re-run"));
            assert_eq!(by_key(&l), by_key(&case.after), "{at}, then re-run");
        } else {
            zfw(None, &f.root, &["gc"]).ok();
            let l = consistent(f, &maps, &m, &format!("{at}, then gc"));
            assert!(
                by_key(&l) == by_key(&case.after) || by_key(&l) == by_key(&case.before),
                "{at}, then gc: neither old nor new set listed"
            );
        }
        pos += stride;
    }
    eprintln!(
        "{}: {calls} bpf calls ({opens} opening pins), {tried} kill positions tried, {landed} killed, leftovers found: 0",
        case.name
    );
    assert!(status_seen, "{}: no kill left a journal record", case.name);
    (tried, landed)
}

fn policy_file(rules: &[Rule]) -> TempFile {
    let ingress: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| {
            let mut o = serde_json::json!({
                "dst": r.dst.to_string(),
                "src": r.src.to_string(),
                "proto": "tcp",
                "ports": r.ports.to_string(),
                "action": r.action.to_string(),
            });
            if let Some(s) = &r.service_id {
                o["service_id"] = serde_json::json!(s);
            }
            o
        })
        .collect();
    TempFile::new(
        "crash",
        &serde_json::json!({ "ingress": ingress }).to_string(),
    )
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Kills that land in the recovery of an earlier kill: 29 of 30 runs of
/// `rule add` (30 different rules) are killed, each at a position that
/// moves through the command, so many land while the run is still
/// finishing the change the previous kill left; a last, complete run of
/// each command then leaves the state deciding as it lists, with nothing
/// stale.
#[test]
fn a_burst_of_killed_rule_adds_converges_after_one_complete_run() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    let before = small_set();
    let adds: Vec<Rule> = (0..30)
        .map(|i| {
            rule(
                &format!("10.3.{i}.0/24"),
                "198.51.100.0/24",
                "8081",
                Action::Allow,
            )
        })
        .collect();
    let args = |r: &Rule| -> Vec<String> {
        let mut v = strs(&["rule", "add", "--dst", &r.dst.to_string()]);
        v.extend(strs(&[
            "--src",
            &r.src.to_string(),
            "--proto",
            "tcp",
            "--ports",
            "8081",
        ]));
        v
    };
    let mut after = before.clone();
    after.extend(adds.iter().cloned());
    let m = Model::new(&before, &after, 300);
    store::replace_all(&maps, &before).unwrap();
    let (_, calls, opens) = traced(&f, &args(&adds[0]), None);
    store::replace_all(&maps, &before).unwrap();
    let (mut killed, mut pending_seen) = (0, 0);
    for (i, r) in adds.iter().enumerate().take(29) {
        let pos = opens + 1 + (i * 7) % (calls - opens);
        killed += usize::from(traced(&f, &args(r), Some(pos)).0);
        pending_seen += usize::from(journal::pending(&maps).unwrap().is_some());
    }
    assert!(killed >= 28, "only {killed} of 29 kills landed");
    assert!(pending_seen > 0, "no kill left a change to recover");
    traced(&f, &args(&adds[29]), None);
    let listed = consistent(&f, &maps, &m, "after 29 killed adds and one complete one");
    assert!(listed.contains(&adds[29]), "the complete add is listed");
    // the killed adds are each either listed (and applied) or absent
    for r in &adds[..29] {
        traced(&f, &args(r), None);
    }
    let listed = consistent(&f, &maps, &m, "after every add ran once completely");
    assert_eq!(by_key(&listed), by_key(&after), "every rule added once");
}

#[test]
fn a_killed_rule_add_or_del_is_finished_or_rolled_back_at_every_position() {
    require_priv!();
    let f = Fixture::new();
    let s = small_set();
    let mut with = s.clone();
    with.push(added());
    let mut add = strs(&["rule", "add"]);
    add.extend(strs(ADD));
    let mut del = strs(&["rule", "del"]);
    del.extend(strs(ADD));
    for case in [
        Case {
            name: "rule add",
            before: s.clone(),
            after: with.clone(),
            args: add,
            samples: None,
            probe_limit: 400,
        },
        Case {
            name: "rule del",
            before: with,
            after: s,
            args: del,
            samples: None,
            probe_limit: 400,
        },
    ] {
        let (tried, landed) = crash_case(&f, &case);
        assert!(
            landed + 1 >= tried,
            "{}: kills that did not land",
            case.name
        );
    }
}

/// `rule add` / `rule del` of [`ADD`], `rule flush` and `apply --prune`
/// from `before` to `after`, killed at every position or about `samples`.
fn four_cases(
    before: &[Rule],
    after: &[Rule],
    file: &TempFile,
    samples: Option<usize>,
    probe_limit: usize,
) -> Vec<Case<'static>> {
    let mut with = before.to_vec();
    with.push(added());
    let cmd = |c: &[&str]| {
        let mut v = strs(c);
        v.extend(strs(ADD));
        v
    };
    let case = |name, before: &[Rule], after: &[Rule], args| Case {
        name,
        before: before.to_vec(),
        after: after.to_vec(),
        args,
        samples,
        probe_limit,
    };
    vec![
        case("rule add", before, &with, cmd(&["rule", "add"])),
        case("rule del", &with, before, cmd(&["rule", "del"])),
        case("rule flush", before, &[], strs(&["rule", "flush"])),
        case(
            "apply --prune",
            before,
            after,
            vec!["apply".into(), "--prune".into(), file.path_str()],
        ),
    ]
}

#[test]
fn a_killed_command_on_1k_rules_is_finished_or_rolled_back_at_every_position() {
    require_priv!();
    let f = Fixture::new();
    let before = big_set(1000, 0);
    let after = big_set(1000, 501);
    let file = policy_file(&after);
    let mut positions = 0;
    for case in four_cases(&before, &after, &file, None, 300) {
        let (tried, landed) = crash_case(&f, &case);
        assert!(
            landed + 1 >= tried,
            "{}: kills that did not land",
            case.name
        );
        positions += tried;
    }
    eprintln!("1k rules: {positions} kill positions, leftovers found: 0");
}

#[test]
fn a_killed_command_on_250k_rules_is_finished_or_rolled_back_at_sampled_positions() {
    require_priv!();
    let f = Fixture::new();
    let before = big_set(250_000, 0);
    let after = big_set(250_000, 100_001);
    let file = policy_file(&after);
    let cases = four_cases(&before, &after, &file, Some(SAMPLES_250K), 200);
    // rule add (the write sequence issue 17 found cut short) and apply
    for case in cases
        .iter()
        .filter(|c| c.name != "rule del" && c.name != "rule flush")
    {
        crash_case(&f, case);
    }
}

/// Kill positions sampled from each command on 250k rules.
const SAMPLES_250K: usize = 3;

/// The set size of the capacity test: tproxy_map holds two of them.
const HALF: usize = 40;

#[test]
fn the_leftovers_of_a_killed_switch_do_not_take_the_room_of_the_next_apply() {
    require_priv!();
    let f = Fixture::with_sizes(&[("tproxy_map", 2 * HALF as u32)]);
    let maps = f.root.maps();
    let sets: Vec<Vec<Rule>> = (0..3).map(|i| big_set(HALF, 1001 * i)).collect();
    let files: Vec<TempFile> = sets.iter().map(|s| policy_file(s)).collect();
    let apply = |i: usize| vec!["apply".into(), "--prune".into(), files[i].path_str()];
    store::replace_all(&maps, &sets[0]).unwrap();
    let (_, calls, opens) = traced(&f, &apply(1), None);
    let mut left = 0;
    for pos in opens + 1..=calls {
        store::replace_all(&maps, &sets[0]).unwrap();
        if !traced(&f, &apply(1), Some(pos)).0 {
            continue;
        }
        let keys = maps.count(&defs::TPROXY_MAP).unwrap();
        let live = store::read_live(&maps).unwrap().len();
        if keys > live {
            left += 1;
        }
        // the full map holds the live set, the leftovers and nothing more:
        // the next apply has room only once the leftovers are reclaimed
        let r = zfw(None, &f.root, &["apply", "--prune", &files[2].path_str()]);
        assert_eq!(
            r.code, 0,
            "killed at bpf call {pos} of {calls} with {keys} keys for {live} live rules: {}",
            r.stderr
        );
        let listed = store::read_live(&maps).unwrap();
        assert_eq!(by_key(&listed), by_key(&sets[2]), "killed at {pos}");
        assert_eq!(
            maps.count(&defs::TPROXY_MAP).unwrap(),
            HALF,
            "killed at {pos}"
        );
    }
    assert!(left > 0, "no kill left entries beside the live set");
}
