//! The policy state as `apply` and `export` see it: read from the maps,
//! computed from a file (the desired state), and the difference between
//! two states as one line per change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use crate::apply::file::Policy;
use crate::ddos;
use crate::error::Result;
use crate::iface_state::{self, flag_table};
use crate::ifaddr;
use crate::maps::Maps;
use crate::ot;
use crate::rules::model::{Direction, Family, Prefix, Proto, Rule, RuleId};
use crate::rules::store;

/// Everything a policy file describes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// both directions; within one (dir, family, proto, dst, src) key the
    /// order is the precedence order
    pub rules: Vec<Rule>,
    /// attached interfaces visible here: name -> (ifindex, settings bits)
    pub ifaces: BTreeMap<String, (u32, u32)>,
    pub ddos_ports: BTreeSet<u16>,
    pub ddos_allow: BTreeSet<IpAddr>,
    pub dnp3: BTreeSet<u8>,
}

/// Read the live state from the maps.
pub fn read(maps: &Maps) -> Result<State> {
    let mut ifaces = BTreeMap::new();
    for (idx, st) in maps.ifaces()? {
        let name = iface_state::name_str(&st.name);
        // an entry whose name no longer resolves to its index here (other
        // namespace, renamed, gone) is not something a file could name
        if ifaddr::index_of(&name).ok() == Some(idx) {
            ifaces.insert(name, (idx, st.flags));
        }
    }
    Ok(State {
        rules: store::read_live(maps)?,
        ifaces,
        ddos_ports: ddos::ports(maps)?.into_iter().collect(),
        ddos_allow: ddos::allowed(maps)?.into_iter().collect(),
        dnp3: ot::dnp3_codes(maps)?.into_iter().collect(),
    })
}

fn merged<T: Ord + Clone>(
    live: &BTreeSet<T>,
    file: Option<&BTreeSet<T>>,
    prune: bool,
) -> BTreeSet<T> {
    match (file, prune) {
        (Some(f), true) => f.clone(),
        (None, true) => BTreeSet::new(),
        (Some(f), false) => live.union(f).cloned().collect(),
        (None, false) => live.clone(),
    }
}

fn desired_rules(
    live: &[Rule],
    file: Option<&Vec<Rule>>,
    dir: Direction,
    prune: bool,
) -> Vec<Rule> {
    if prune {
        return file.cloned().unwrap_or_default();
    }
    let mut out: Vec<Rule> = live
        .iter()
        .filter(|r| r.direction == dir)
        .cloned()
        .collect();
    let mut pos: HashMap<RuleId, usize> =
        out.iter().enumerate().map(|(i, r)| (r.id(), i)).collect();
    for r in file.into_iter().flatten() {
        match pos.get(&r.id()) {
            Some(&i) => out[i] = r.clone(),
            None => {
                pos.insert(r.id(), out.len());
                out.push(r.clone());
            }
        }
    }
    out
}

/// The state `policy` asks for, starting from `live`.  Without `prune`
/// the file only adds and updates; with it, the file is the whole policy
/// (an absent section means empty) except interface settings the file
/// does not name, which keep their values.
pub fn desired(live: &State, policy: &Policy, prune: bool) -> State {
    let mut rules = desired_rules(
        &live.rules,
        policy.ingress.as_ref(),
        Direction::Ingress,
        prune,
    );
    rules.extend(desired_rules(
        &live.rules,
        policy.egress.as_ref(),
        Direction::Egress,
        prune,
    ));
    let mut ifaces = live.ifaces.clone();
    let table = flag_table();
    for (name, settings) in policy.interfaces.iter().flatten() {
        if let Some((_, flags)) = ifaces.get_mut(name) {
            for (k, on) in settings {
                if let Some((_, bit)) = table.iter().find(|(n, _)| n == k) {
                    if *on {
                        *flags |= bit;
                    } else {
                        *flags &= !bit;
                    }
                }
            }
        }
    }
    State {
        rules,
        ifaces,
        ddos_ports: merged(&live.ddos_ports, policy.ddos_ports.as_ref(), prune),
        ddos_allow: merged(&live.ddos_allow, policy.ddos_allow.as_ref(), prune),
        dnp3: merged(&live.dnp3, policy.dnp3_fcodes.as_ref(), prune),
    }
}

type KeyId = (Direction, Family, Proto, Prefix, Prefix);

fn key_of(r: &Rule) -> KeyId {
    (r.direction, r.family(), r.proto, r.dst, r.src)
}

/// Rules by key, in precedence order within each key: what the datapath
/// sees (the order between keys does not matter to it).
fn canon(rules: &[Rule]) -> BTreeMap<KeyId, Vec<&Rule>> {
    let mut m: BTreeMap<KeyId, Vec<&Rule>> = BTreeMap::new();
    for r in rules {
        m.entry(key_of(r)).or_default().push(r);
    }
    m
}

/// Do two rule lists put the same thing into the maps?
pub fn same_rules(a: &[Rule], b: &[Rule]) -> bool {
    a.len() == b.len() && canon(a) == canon(b)
}

/// One difference between two states.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    RuleAdd(Rule),
    RuleDel(Rule),
    RuleUpdate {
        old: Rule,
        new: Rule,
    },
    /// the ranges of one key keep their members but change their order
    RuleReorder(Rule),
    Iface {
        name: String,
        setting: String,
        from: bool,
        to: bool,
    },
    DdosPort {
        port: u16,
        add: bool,
    },
    DdosAllow {
        ip: IpAddr,
        add: bool,
    },
    Dnp3 {
        code: u8,
        add: bool,
    },
}

fn rule_text(r: &Rule) -> String {
    let mut s = format!("{} {} {}", r.direction.name(), r.proto.name(), r.dst);
    if r.src.len != 0 {
        s.push_str(&format!(" from {}", r.src));
    }
    s.push_str(&format!(" {} {}", r.ports, r.action));
    if !r.interfaces.is_empty() {
        s.push_str(&format!(" iface {}", r.interfaces.join(",")));
    }
    if let Some(id) = &r.service_id {
        s.push_str(&format!(" service {id}"));
    }
    s
}

fn sign(add: bool) -> char {
    if add {
        '+'
    } else {
        '-'
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::RuleAdd(r) => write!(f, "+ {}", rule_text(r)),
            Change::RuleDel(r) => write!(f, "- {}", rule_text(r)),
            Change::RuleUpdate { old, new } => {
                write!(f, "~ {} (was {})", rule_text(new), rule_text(old))
            }
            Change::RuleReorder(r) => write!(
                f,
                "~ {} {} {} from {}: port ranges reordered",
                r.direction.name(),
                r.proto.name(),
                r.dst,
                r.src
            ),
            Change::Iface {
                name,
                setting,
                from,
                to,
            } => {
                write!(
                    f,
                    "~ iface {name} {setting} {} -> {}",
                    on_off(*from),
                    on_off(*to)
                )
            }
            Change::DdosPort { port, add } => write!(f, "{} ddos port {port}", sign(*add)),
            Change::DdosAllow { ip, add } => write!(f, "{} ddos allow {ip}", sign(*add)),
            Change::Dnp3 { code, add } => write!(f, "{} dnp3 fcode {code}", sign(*add)),
        }
    }
}

fn set_diff<T: Ord + Copy>(
    a: &BTreeSet<T>,
    b: &BTreeSet<T>,
    mk: impl Fn(T, bool) -> Change,
) -> Vec<Change> {
    let mut v: Vec<Change> = a.difference(b).map(|x| mk(*x, false)).collect();
    v.extend(b.difference(a).map(|x| mk(*x, true)));
    v
}

/// What turns `from` into `to`: removals first, then updates, then
/// additions in the file's order.
pub fn diff(from: &State, to: &State) -> Vec<Change> {
    let mut out = Vec::new();
    // the common prefix of the two lists by rule id (a re-applied file
    // keeps the live order): compared in place, no hashing (issue 19); ids
    // are unique in each list, so the tails share no id with the prefix
    let same = from
        .rules
        .iter()
        .zip(&to.rules)
        .take_while(|(a, b)| a.id() == b.id())
        .count();
    let (from_tail, to_tail) = (&from.rules[same..], &to.rules[same..]);
    let old: HashMap<RuleId, &Rule> = from_tail.iter().map(|r| (r.id(), r)).collect();
    let new: HashMap<RuleId, &Rule> = to_tail.iter().map(|r| (r.id(), r)).collect();
    for r in from_tail {
        if !new.contains_key(&r.id()) {
            out.push(Change::RuleDel(r.clone()));
        }
    }
    for (o, r) in from.rules[..same].iter().zip(&to.rules[..same]) {
        if o != r {
            out.push(Change::RuleUpdate {
                old: o.clone(),
                new: r.clone(),
            });
        }
    }
    for r in to_tail {
        match old.get(&r.id()) {
            Some(o) if *o != r => out.push(Change::RuleUpdate {
                old: (*o).clone(),
                new: r.clone(),
            }),
            Some(_) => {}
            None => out.push(Change::RuleAdd(r.clone())),
        }
    }
    // reordered: the rules a key keeps (in both lists) in another order.
    // Within a key, the common prefix's rules come first on both sides
    // and in the same order, so comparing the kept rules of the tails
    // decides it.
    let (co, cn) = (canon(&from.rules), canon(&to.rules));
    for (k, rs) in &cn {
        let Some(os) = co.get(k) else { continue };
        // the same ids in the same order: nothing reordered
        if rs.len() == os.len() && rs.iter().zip(os).all(|(a, b)| a.id() == b.id()) {
            continue;
        }
        let kept = |r: &&Rule, there: &HashMap<RuleId, &Rule>| there.contains_key(&r.id());
        let a: Vec<RuleId> = rs
            .iter()
            .filter(|r| kept(r, &old))
            .map(|r| r.id())
            .collect();
        let b: Vec<RuleId> = os
            .iter()
            .filter(|r| kept(r, &new))
            .map(|r| r.id())
            .collect();
        if a != b {
            out.push(Change::RuleReorder(rs[0].clone()));
        }
    }
    let table = flag_table();
    for (name, (_, to_flags)) in &to.ifaces {
        let from_flags = from.ifaces.get(name).map_or(0, |(_, f)| *f);
        for (setting, bit) in &table {
            let (a, b) = (from_flags & bit != 0, to_flags & bit != 0);
            if a != b {
                out.push(Change::Iface {
                    name: name.clone(),
                    setting: setting.clone(),
                    from: a,
                    to: b,
                });
            }
        }
    }
    out.extend(set_diff(&from.ddos_ports, &to.ddos_ports, |port, add| {
        Change::DdosPort { port, add }
    }));
    out.extend(set_diff(&from.ddos_allow, &to.ddos_allow, |ip, add| {
        Change::DdosAllow { ip, add }
    }));
    out.extend(set_diff(&from.dnp3, &to.dnp3, |code, add| Change::Dnp3 {
        code,
        add,
    }));
    out
}

/// One line of counts, e.g. `3 changes: 2 rules added, 1 interface setting`.
pub fn summary(changes: &[Change]) -> String {
    let mut n = [0usize; 6];
    for c in changes {
        let i = match c {
            Change::RuleAdd(_) => 0,
            Change::RuleDel(_) => 1,
            Change::RuleUpdate { .. } | Change::RuleReorder(_) => 2,
            Change::Iface { .. } => 3,
            Change::DdosPort { .. } | Change::DdosAllow { .. } => 4,
            Change::Dnp3 { .. } => 5,
        };
        n[i] += 1;
    }
    let names = [
        "rule(s) added",
        "rule(s) removed",
        "rule(s) updated",
        "interface setting(s)",
        "ddos entry(ies)",
        "dnp3 code(s)",
    ];
    let parts: Vec<String> = n
        .iter()
        .zip(names)
        .filter(|(k, _)| **k > 0)
        .map(|(k, name)| format!("{k} {name}"))
        .collect();
    format!("{} change(s): {}", changes.len(), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::{Action, Ports};

    fn rule(dst: &str, ports: &str, action: Action) -> Rule {
        Rule {
            direction: Direction::Ingress,
            dst: dst.parse().unwrap(),
            src: "0.0.0.0/0".parse().unwrap(),
            proto: Proto::Tcp,
            ports: ports.parse::<Ports>().unwrap(),
            action,
            interfaces: vec![],
            service_id: None,
        }
    }

    fn policy(rules: Vec<Rule>) -> Policy {
        Policy {
            ingress: Some(rules),
            ..Default::default()
        }
    }

    #[test]
    fn without_prune_the_file_adds_and_updates_in_place() {
        let live = State {
            rules: vec![
                rule("10.0.0.0/8", "80", Action::Allow),
                rule("10.0.0.0/8", "90", Action::Allow),
            ],
            ..Default::default()
        };
        let p = policy(vec![
            rule("10.0.0.0/8", "90", Action::Deny),
            rule("10.1.0.0/16", "22", Action::Allow),
        ]);
        let d = desired(&live, &p, false);
        assert_eq!(d.rules.len(), 3);
        assert_eq!(d.rules[1].action, Action::Deny);
        let ch = diff(&live, &d);
        assert_eq!(ch.len(), 2, "{ch:?}");
        assert_eq!(
            ch[0].to_string(),
            "~ ingress tcp 10.0.0.0/8 90 deny (was ingress tcp 10.0.0.0/8 90 allow)"
        );
        assert_eq!(ch[1].to_string(), "+ ingress tcp 10.1.0.0/16 22 allow");
        assert!(diff(&d, &desired(&d, &p, false)).is_empty(), "idempotent");
    }

    #[test]
    fn prune_removes_what_the_file_lacks_and_sees_reorders() {
        let live = State {
            rules: vec![
                rule("10.0.0.0/8", "80", Action::Allow),
                rule("10.0.0.0/8", "90", Action::Allow),
            ],
            ddos_ports: [443u16].into(),
            ..Default::default()
        };
        let d = desired(
            &live,
            &policy(vec![rule("10.0.0.0/8", "90", Action::Allow)]),
            true,
        );
        let ch: Vec<String> = diff(&live, &d).iter().map(|c| c.to_string()).collect();
        assert_eq!(ch, ["- ingress tcp 10.0.0.0/8 80 allow", "- ddos port 443"]);
        let swapped = policy(vec![
            rule("10.0.0.0/8", "90", Action::Allow),
            rule("10.0.0.0/8", "80", Action::Allow),
        ]);
        let d = desired(&live, &swapped, true);
        let ch = diff(&live, &d);
        assert!(matches!(ch[0], Change::RuleReorder(_)), "{ch:?}");
        assert!(!same_rules(&live.rules, &d.rules));
        // keys interleaved differently but each key's order equal: same
        let a = vec![
            rule("10.0.0.0/8", "80", Action::Allow),
            rule("10.1.0.0/16", "1", Action::Allow),
            rule("10.0.0.0/8", "90", Action::Allow),
        ];
        let b = vec![a[0].clone(), a[2].clone(), a[1].clone()];
        assert!(same_rules(&a, &b));
        assert!(summary(&ch).starts_with("2 change(s): 1 rule(s) updated, 1 ddos"));
    }

    /// The diff before its common-prefix fast path (issue 19): every id
    /// looked up in maps of the whole lists.
    fn reference(from: &[Rule], to: &[Rule]) -> Vec<Change> {
        let mut out = Vec::new();
        let old: HashMap<RuleId, &Rule> = from.iter().map(|r| (r.id(), r)).collect();
        let new: HashMap<RuleId, &Rule> = to.iter().map(|r| (r.id(), r)).collect();
        out.extend(
            from.iter()
                .filter(|r| !new.contains_key(&r.id()))
                .map(|r| Change::RuleDel(r.clone())),
        );
        for r in to {
            match old.get(&r.id()) {
                Some(o) if *o != r => out.push(Change::RuleUpdate {
                    old: (*o).clone(),
                    new: r.clone(),
                }),
                Some(_) => {}
                None => out.push(Change::RuleAdd(r.clone())),
            }
        }
        let (co, cn) = (canon(from), canon(to));
        for (k, rs) in &cn {
            let Some(os) = co.get(k) else { continue };
            let a: Vec<RuleId> = rs
                .iter()
                .map(|r| r.id())
                .filter(|i| old.contains_key(i))
                .collect();
            let b: Vec<RuleId> = os
                .iter()
                .map(|r| r.id())
                .filter(|i| new.contains_key(i))
                .collect();
            if a != b {
                out.push(Change::RuleReorder(rs[0].clone()));
            }
        }
        out
    }

    #[test]
    fn the_diff_equals_the_reference_on_edited_lists() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut below = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let dsts = ["10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "192.0.2.0/24"];
        let base: Vec<Rule> = (0..40)
            .map(|i| rule(dsts[i % 4], &(100 + i).to_string(), Action::Allow))
            .collect();
        for case in 0..300 {
            let mut to = base.clone();
            for op in 0..1 + below(4) {
                let n = to.len();
                match below(5) {
                    0 => {
                        to.remove(below(n));
                    }
                    1 => to.swap(below(n), below(n)),
                    2 => to[below(n)].action = Action::Deny,
                    3 => to.push(rule(
                        dsts[below(4)],
                        &(1000 + 4 * case + op).to_string(),
                        Action::Allow,
                    )),
                    _ => {
                        let r = to.remove(below(n));
                        to.insert(below(n), r);
                    }
                }
            }
            let (a, b) = (
                State {
                    rules: base.clone(),
                    ..Default::default()
                },
                State {
                    rules: to.clone(),
                    ..Default::default()
                },
            );
            assert_eq!(diff(&a, &b), reference(&base, &to), "case {case}");
            assert_eq!(diff(&b, &a), reference(&to, &base), "case {case} backwards");
        }
    }
}
