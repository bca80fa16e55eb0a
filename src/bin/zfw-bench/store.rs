//! Rule-store cases of zfw-bench: what one rule change and one full read
//! cost on a big rule set (wall time per operation, as a user running
//! `zfw rule add` in a loop sees it, minus process start-up).

use std::time::Instant;

use zfw::maps::Maps;
use zfw::rules::model::{Action, Direction, Proto, Rule};
use zfw::rules::store;

use super::{rule_set, Case};

/// Operations timed per case (median reported): ZFW_BENCH_STORE_OPS,
/// default 21.
fn ops() -> usize {
    std::env::var("ZFW_BENCH_STORE_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21usize)
        .max(1)
}

fn rule(dst: String, src: &str, ports: String) -> zfw::Result<Rule> {
    Ok(Rule {
        direction: Direction::Ingress,
        dst: dst.parse().map_err(zfw::Error::runtime)?,
        src: src.parse().map_err(zfw::Error::runtime)?,
        proto: Proto::Tcp,
        ports: ports.parse().map_err(zfw::Error::runtime)?,
        action: Action::Allow,
        interfaces: vec![],
        service_id: None,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `rule list` (read_live), `rule add` and `rule del` of single rules on a
/// live set of `n` rules: new /32 keys, ranges appended to an existing key.
pub fn cases(maps: &Maps, n: usize) -> zfw::Result<Vec<Case>> {
    let rules = rule_set(n);
    store::replace_all(maps, &rules)?;
    let mut out = Vec::new();
    let mut t_list = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let live = store::read_live(maps)?;
        t_list.push(t.elapsed().as_nanos() as f64);
        if live.len() != n {
            return Err(zfw::Error::runtime("bench: read_live lost rules"));
        }
    }
    out.push(Case {
        name: format!("store: rule list {n} rules (ns per list)"),
        rules: n,
        ns: median(t_list),
        floor_ns: None,
        memlock_bytes: None,
    });
    let last = &rules[rules.len() - 1];
    let mut added = Vec::new();
    let (mut t_new, mut t_app) = (Vec::new(), Vec::new());
    for i in 0..ops() {
        // a new key: its own /32 dst
        let r = rule(
            format!("172.16.{}.{}/32", i / 200, i % 200 + 1),
            "0.0.0.0/0",
            "443".into(),
        )?;
        let t = Instant::now();
        store::add(maps, r.clone())?;
        t_new.push(t.elapsed().as_nanos() as f64);
        added.push(r);
        // a range appended to the last (existing) key
        let r = Rule {
            ports: format!("{}", 20000 + i)
                .parse()
                .map_err(zfw::Error::runtime)?,
            ..last.clone()
        };
        let t = Instant::now();
        store::add(maps, r.clone())?;
        t_app.push(t.elapsed().as_nanos() as f64);
        added.push(r);
    }
    let mut t_del = Vec::new();
    for r in &added {
        let t = Instant::now();
        store::del(maps, &r.id())?;
        t_del.push(t.elapsed().as_nanos() as f64);
    }
    if store::read_live(maps)?.len() != n {
        return Err(zfw::Error::runtime("bench: add/del did not round-trip"));
    }
    for (what, v) in [
        ("rule add, new key", t_new),
        ("rule add, range on existing key", t_app),
        ("rule del", t_del),
    ] {
        out.push(op_case(format!("{what} on"), n, v));
    }
    store::replace_all(maps, &[])?;
    Ok(out)
}

/// A row of ns per operation (median of `v`).
fn op_case(what: String, n: usize, v: Vec<f64>) -> Case {
    Case {
        name: format!("store: {what} {n} rules (ns per op)"),
        rules: n,
        ns: median(v),
        floor_ns: None,
        memlock_bytes: None,
    }
}

/// `n` rules, each its own key (dst a distinct /32 or /128, src any, tcp
/// 80): `n` trie nodes, all under 0.0.0.0/0 or ::/0.
fn distinct_keys(n: usize, v6: bool) -> zfw::Result<Vec<Rule>> {
    (0..n)
        .map(|i| {
            let i = i as u32;
            let (dst, src) = if v6 {
                (
                    format!("2001:db8::{:x}:{:x}/128", i >> 16, i & 0xffff),
                    "::/0",
                )
            } else {
                (
                    std::net::Ipv4Addr::from(0x0a00_0000 | i).to_string() + "/32",
                    "0.0.0.0/0",
                )
            };
            rule(dst, src, "80".into())
        })
        .collect()
}

/// Covering prefixes (issue 19): `rule add` and `rule del` of a rule on
/// 0.0.0.0/0 (or ::/0) whose (dst len, src len) pair is new, over `n`
/// rules that are each their own key, so every one of the `n` trie nodes
/// lists the new pair.  Operations per row: ZFW_BENCH_COVER_OPS, default 5.
pub fn covering_cases(maps: &Maps, n: usize, v6: bool) -> zfw::Result<Vec<Case>> {
    let rules = distinct_keys(n, v6)?;
    store::replace_all(maps, &rules)?;
    let ops = std::env::var("ZFW_BENCH_COVER_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    let (any, all) = if v6 {
        ("::/0", "::/0")
    } else {
        ("0.0.0.0/0", "0.0.0.0/0")
    };
    let cover = rule(any.into(), all, "22".into())?;
    let (mut t_add, mut t_del) = (Vec::new(), Vec::new());
    for _ in 0..ops {
        let t = Instant::now();
        if store::add(maps, cover.clone())? != store::AddOutcome::Added {
            return Err(zfw::Error::runtime("bench: covering add was not an add"));
        }
        t_add.push(t.elapsed().as_nanos() as f64);
        let t = Instant::now();
        store::del(maps, &cover.id())?;
        t_del.push(t.elapsed().as_nanos() as f64);
    }
    if store::read_live(maps)?.len() != n {
        return Err(zfw::Error::runtime("bench: covering add/del lost rules"));
    }
    store::replace_all(maps, &[])?;
    Ok(vec![
        op_case(format!("rule add {any} covering"), n, t_add),
        op_case(format!("rule del {any} covering"), n, t_del),
    ])
}
