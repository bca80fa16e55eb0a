//! The per-rule series of `zfw metrics` (README "Rule counters"):
//! `zfw_rule_packets` and `zfw_rule_bytes` per rule, labelled by
//! direction, rule key and service id, under a cap on their number (a
//! rule set of 250,000 rules must not become 500,000 series per scrape).

use crate::rules::counters::Counted;

/// Which rules get series of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSeries {
    /// at most this many rules (None: every rule); those with the most
    /// packets first, ties in `rule list` order
    pub max: Option<usize>,
    /// only rules that carry a service id
    pub service_only: bool,
}

impl Default for RuleSeries {
    fn default() -> Self {
        RuleSeries {
            max: Some(DEFAULT_MAX),
            service_only: false,
        }
    }
}

/// The default cap of `--rule-series`.
pub const DEFAULT_MAX: usize = 100;

/// Parse `--rule-series N|all`; Err: the one-line usage message.
pub fn parse_max(s: &str) -> Result<Option<usize>, String> {
    if s == "all" {
        return Ok(None);
    }
    s.parse::<usize>().map(Some).map_err(|_| {
        format!(
            "--rule-series '{}': expected a number of rules or `all`",
            crate::error::shown(s)
        )
    })
}

/// The rule's key as its label: `tcp 10.0.0.0/24 from 0.0.0.0/0 80-90`.
pub fn rule_label(c: &Counted) -> String {
    let r = &c.rule;
    format!("{} {} from {} {}", r.proto.name(), r.dst, r.src, r.ports)
}

/// The rules that get series, in the order they are exposed, and how
/// many counted rules were left out by the cap.
pub fn pick(rules: Vec<Counted>, opt: &RuleSeries) -> (Vec<Counted>, usize) {
    let mut v: Vec<Counted> = rules
        .into_iter()
        .filter(|c| c.hits.is_some())
        .filter(|c| !opt.service_only || c.rule.service_id.is_some())
        .collect();
    // stable: equal counts keep the listing's order
    v.sort_by_key(|c| std::cmp::Reverse(c.hits.map_or(0, |h| h.packets)));
    let keep = opt.max.unwrap_or(v.len()).min(v.len());
    let omitted = v.len() - keep;
    v.truncate(keep);
    (v, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::counters::Hits;
    use crate::rules::model::{Action, Direction, Rule};

    fn counted(port: &str, svc: Option<&str>, packets: Option<u64>) -> Counted {
        Counted {
            rule: Rule {
                direction: Direction::Ingress,
                dst: "10.0.0.0/24".parse().unwrap(),
                src: "0.0.0.0/0".parse().unwrap(),
                proto: "tcp".parse().unwrap(),
                ports: port.parse().unwrap(),
                action: Action::Allow,
                interfaces: vec![],
                service_id: svc.map(str::to_string),
            },
            stat: 1,
            hits: packets.map(|packets| Hits {
                packets,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_cap_keeps_the_busiest_rules_and_counts_the_rest() {
        let rules = || {
            vec![
                counted("1", None, Some(5)),
                counted("2", Some("b"), Some(9)),
                counted("3", Some("c"), Some(5)),
                counted("4", None, None),
            ]
        };
        let ports = |v: &[Counted]| v.iter().map(|c| c.rule.ports.lo).collect::<Vec<_>>();
        let (v, omitted) = pick(
            rules(),
            &RuleSeries {
                max: Some(2),
                service_only: false,
            },
        );
        assert_eq!((ports(&v), omitted), (vec![2, 1], 1));
        let (v, omitted) = pick(
            rules(),
            &RuleSeries {
                max: None,
                service_only: true,
            },
        );
        assert_eq!((ports(&v), omitted), (vec![2, 3], 0));
        assert_eq!(rule_label(&v[0]), "tcp 10.0.0.0/24 from 0.0.0.0/0 2");
        assert_eq!(parse_max("all"), Ok(None));
        assert_eq!(parse_max("0"), Ok(Some(0)));
        assert!(parse_max("x").unwrap_err().contains("--rule-series 'x'"));
    }
}
