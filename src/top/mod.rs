//! `zfw top`: the datapath's counters as rates, refreshed once a second
//! (README "zfw top").  A sample reads the pinned maps through the readers
//! `zfw metrics` uses (`metrics::read`); a view is the difference of two
//! samples.  On a terminal `tui` draws it with ratatui; otherwise `text`
//! prints one plain block per interval.
//!
//! The "top rules" rows rank the rules by hits per second over the
//! interval (their counters: README "Rule counters").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::maps::Maps;
use crate::metrics::read::{self, FlowClass, MapFill, ReasonCount};

pub mod text;
pub mod tui;

/// How often a view is drawn or printed.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// What the maps held at one instant.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub packets: Vec<ReasonCount>,
    pub maps: Vec<MapFill>,
    pub flows: BTreeMap<FlowClass, u64>,
    pub events_lost: Option<u64>,
    pub policy_gen: u32,
    /// every live rule with a counter: (counter id, label), packets
    pub rules: Vec<((u32, String), u64)>,
}

/// How a rule is named in `top`: direction, key, service id, action.
fn rule_name(c: &crate::rules::counters::Counted) -> String {
    let r = &c.rule;
    let svc = r
        .service_id
        .as_ref()
        .map(|s| format!(" [{s}]"))
        .unwrap_or_default();
    let action = match r.action {
        crate::rules::model::Action::Allow => "allow".to_string(),
        crate::rules::model::Action::Deny => "deny".into(),
        crate::rules::model::Action::Tproxy(p) => format!("tproxy {p}"),
        crate::rules::model::Action::Tunnel => "tunnel".into(),
    };
    format!(
        "{} {}{svc} {action}",
        r.direction.name(),
        crate::metrics::rules::rule_label(c),
    )
}

/// Read one sample.
pub fn sample(maps: &Maps) -> Result<Sample> {
    Ok(Sample {
        at: Instant::now(),
        packets: read::packets(maps)?,
        maps: read::map_fill(maps)?,
        flows: read::flows(maps)?,
        events_lost: crate::monitor::events_lost(maps)?,
        policy_gen: maps.config()?.policy_gen,
        rules: crate::rules::counters::live_counted(maps)?
            .iter()
            .filter_map(|c| Some(((c.stat, rule_name(c)), c.hits?.packets)))
            .collect(),
    })
}

/// Rows of the "top rules" block.
pub const TOP_RULES: usize = 10;

/// A counter over one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    /// the reason, or the verdict class for the per-verdict rows
    pub name: String,
    pub verdict: String,
    /// since load
    pub total: u64,
    /// in this interval (None: the first sample, no interval yet)
    pub delta: Option<u64>,
}

impl Rate {
    /// Packets per second over `secs`.
    pub fn per_s(&self, secs: f64) -> Option<f64> {
        let d = self.delta?;
        (secs > 0.0).then(|| d as f64 / secs)
    }
}

/// What `top` shows: the rates between two samples.
#[derive(Clone, Debug)]
pub struct View {
    /// seconds between the two samples (0 for the first view)
    pub interval_s: f64,
    /// one row per verdict class (all of them, zero ones too)
    pub verdicts: Vec<Rate>,
    /// the reasons that have counted something since load
    pub reasons: Vec<Rate>,
    pub maps: Vec<MapFill>,
    pub flows: BTreeMap<FlowClass, u64>,
    pub events_lost: Option<Rate>,
    pub policy_gen: u32,
    /// the TOP_RULES rules with the most hits in the interval (then since
    /// load), hit at least once; `name` says the rule, `verdict` is empty
    pub rules: Vec<Rate>,
    /// rules that have counters (hit or not)
    pub rules_counted: usize,
}

fn delta(prev: Option<u64>, now: u64) -> Option<u64> {
    // counters only grow while the maps live; saturate should they not
    prev.map(|p| now.saturating_sub(p))
}

/// The view of `now`, with rates against `prev` when there is one.
pub fn view(prev: Option<&Sample>, now: &Sample) -> View {
    let before: BTreeMap<&str, u64> = prev
        .map(|p| {
            p.packets
                .iter()
                .map(|c| (c.reason.as_str(), c.packets))
                .collect()
        })
        .unwrap_or_default();
    let mut reasons = Vec::new();
    let mut verdicts: Vec<Rate> = Vec::new();
    for c in &now.packets {
        let d = prev.map(|_| {
            c.packets
                .saturating_sub(*before.get(c.reason.as_str()).unwrap_or(&0))
        });
        let i = match verdicts.iter().position(|v| v.name == c.verdict) {
            Some(i) => i,
            None => {
                verdicts.push(Rate {
                    name: c.verdict.clone(),
                    verdict: c.verdict.clone(),
                    total: 0,
                    delta: prev.map(|_| 0),
                });
                verdicts.len() - 1
            }
        };
        let v = &mut verdicts[i];
        v.total += c.packets;
        v.delta = v.delta.zip(d).map(|(a, b)| a + b);
        if c.packets > 0 {
            reasons.push(Rate {
                name: c.reason.clone(),
                verdict: c.verdict.clone(),
                total: c.packets,
                delta: d,
            });
        }
    }
    let events_lost = now.events_lost.map(|n| Rate {
        name: "events_lost".into(),
        verdict: String::new(),
        total: n,
        delta: prev.and_then(|p| delta(p.events_lost, n)),
    });
    // a rule (counter id and name) new since `prev` counted from 0
    let was: BTreeMap<&(u32, String), u64> = prev
        .map(|p| p.rules.iter().map(|(k, n)| (k, *n)).collect())
        .unwrap_or_default();
    let mut rules: Vec<Rate> = now
        .rules
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| Rate {
            name: k.1.clone(),
            verdict: String::new(),
            total: *n,
            delta: prev.map(|_| n.saturating_sub(*was.get(k).unwrap_or(&0))),
        })
        .collect();
    // stable: equal rates keep the listing's order
    rules.sort_by_key(|r| std::cmp::Reverse((r.delta.unwrap_or(0), r.total)));
    rules.truncate(TOP_RULES);
    View {
        rules,
        rules_counted: now.rules.len(),
        interval_s: prev.map_or(0.0, |p| now.at.duration_since(p.at).as_secs_f64()),
        verdicts,
        reasons,
        maps: now.maps.clone(),
        flows: now.flows.clone(),
        events_lost,
        policy_gen: now.policy_gen,
    }
}

/// `n` per second as shown: one decimal, `-` before there is an interval.
pub fn rate_text(r: &Rate, secs: f64) -> String {
    match r.per_s(secs) {
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

/// A map's fill as a fraction of its capacity (0 when it has none).
pub fn fill_ratio(m: &MapFill) -> f64 {
    if m.capacity == 0 {
        return 0.0;
    }
    (m.entries as f64 / f64::from(m.capacity)).clamp(0.0, 1.0)
}

/// The line every view ends with: how many rules the ranking covers.
pub fn rules_summary(v: &View) -> String {
    format!(
        "top rules: {} shown of {} with counters, by hits/s (first packets of flows)",
        v.rules.len(),
        v.rules_counted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, counts: &[(&str, u64)]) -> Sample {
        Sample {
            at,
            packets: counts
                .iter()
                .map(|(r, n)| ReasonCount {
                    reason: r.to_string(),
                    verdict: read::verdict(r).to_string(),
                    packets: *n,
                })
                .collect(),
            maps: Vec::new(),
            flows: BTreeMap::new(),
            events_lost: Some(3),
            policy_gen: 1,
            rules: Vec::new(),
        }
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let t0 = Instant::now();
        let a = sample(
            t0,
            &[("pass_rule", 10), ("drop_no_rule", 0), ("drop_ssh", 4)],
        );
        let b = sample(
            t0 + Duration::from_secs(2),
            &[("pass_rule", 30), ("drop_no_rule", 0), ("drop_ssh", 5)],
        );
        let first = view(None, &a);
        assert_eq!(first.interval_s, 0.0);
        assert!(first.reasons.iter().all(|r| r.delta.is_none()));
        let v = view(Some(&a), &b);
        assert_eq!(v.interval_s, 2.0);
        let names: Vec<&str> = v.reasons.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["pass_rule", "drop_ssh"], "zero reasons left out");
        assert_eq!(v.reasons[0].delta, Some(20));
        assert_eq!(v.reasons[0].per_s(v.interval_s), Some(10.0));
        let drop = v.verdicts.iter().find(|r| r.name == "drop").unwrap();
        assert_eq!((drop.total, drop.delta), (5, Some(1)));
        assert_eq!(rate_text(drop, v.interval_s), "0.5");
        assert_eq!(v.events_lost.unwrap().delta, Some(0));
    }

    #[test]
    fn top_rules_rank_by_hits_in_the_interval() {
        let t0 = Instant::now();
        let mut a = sample(t0, &[]);
        a.rules = vec![
            ((1, "a".into()), 100),
            ((2, "b".into()), 5),
            ((3, "c".into()), 0),
        ];
        let mut b = sample(t0 + Duration::from_secs(1), &[]);
        // a: +1, b: +7, c: never hit, d: new (from 0), a changed rule gets a new id
        b.rules = vec![
            ((1, "a".into()), 101),
            ((2, "b".into()), 12),
            ((3, "c".into()), 0),
            ((4, "d".into()), 3),
        ];
        let v = view(Some(&a), &b);
        let got: Vec<(&str, Option<u64>)> =
            v.rules.iter().map(|r| (r.name.as_str(), r.delta)).collect();
        assert_eq!(got, [("b", Some(7)), ("d", Some(3)), ("a", Some(1))]);
        assert_eq!(v.rules_counted, 4);
        assert!(rules_summary(&v).starts_with("top rules: 3 shown of 4"));
        // the first view has no interval: ranked by totals
        let v = view(None, &b);
        assert_eq!(v.rules[0].name, "a");
    }
}
