//! `zfw metrics`: the datapath's counters and table fill levels as
//! Prometheus metrics, encoded by the `prometheus-client` crate in the
//! OpenMetrics text format (what Prometheus scrapes; never written by hand
//! here).  Printed once (node_exporter textfile use) or served on
//! `GET /metrics` (`serve`).
//!
//! Every scrape reads the pinned maps afresh into a new registry, so the
//! values are the maps' own (counters since load); nothing is kept between
//! scrapes.  Reading is O(entries) per map: each table is walked once (hash
//! maps in batches, see `Maps::count`), never a lookup per key per key.
//!
//! Names (all prefixed `zfw_`) are listed in [`METRICS`], the README and
//! `zfw metrics --help` show the same list.

use std::collections::BTreeMap;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::maps::{defs, Maps};

pub mod read;
pub mod rules;
pub mod serve;

pub use rules::RuleSeries;

pub use read::verdict;

/// One documented metric: name as exposed (OpenMetrics adds `_total` to a
/// counter's samples), type, labels and help text.
pub struct MetricDoc {
    pub name: &'static str,
    pub kind: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Every metric `zfw metrics` exposes.
pub const METRICS: &[MetricDoc] = &[
    MetricDoc {
        name: "zfw_packets",
        kind: "counter",
        labels: &["reason", "verdict"],
        help: "Packets by verdict reason since load (counters_map)",
    },
    MetricDoc {
        name: "zfw_map_entries",
        kind: "gauge",
        labels: &["map"],
        help: "Entries in use per pinned map, counted as zfw status does",
    },
    MetricDoc {
        name: "zfw_map_capacity",
        kind: "gauge",
        labels: &["map"],
        help: "Capacity (max_entries; bytes for the ring buffer) per pinned map",
    },
    MetricDoc {
        name: "zfw_flows",
        kind: "gauge",
        labels: &["proto", "direction", "state"],
        help: "Tracked flows by protocol, by the direction that opened them and by state (assured: seen both ways, in the main tables; unassured)",
    },
    MetricDoc {
        name: "zfw_ddos_syns",
        kind: "counter",
        labels: &["interface"],
        help: "SYNs to DDoS-protected ports per interface (syn_count_map)",
    },
    MetricDoc {
        name: "zfw_masquerade_mappings",
        kind: "gauge",
        labels: &["proto"],
        help: "Masquerade (SNAT) mappings by protocol",
    },
    MetricDoc {
        name: "zfw_events_lost",
        kind: "counter",
        labels: &[],
        help: "Events the datapath could not queue for zfw monitor (ring buffer full)",
    },
    MetricDoc {
        name: "zfw_policy_generation",
        kind: "gauge",
        labels: &[],
        help: "Policy generation, bumped on every rule change",
    },
    MetricDoc {
        name: "zfw_rules",
        kind: "gauge",
        labels: &["direction"],
        help: "Live rules by direction",
    },
    MetricDoc {
        name: "zfw_rule_packets",
        kind: "counter",
        labels: &["direction", "rule", "service_id"],
        help: "First packets of the flows a rule admitted or denied (rule list's PACKETS; --rule-series caps how many rules are exposed)",
    },
    MetricDoc {
        name: "zfw_rule_bytes",
        kind: "counter",
        labels: &["direction", "rule", "service_id"],
        help: "Bytes of those packets (rule list's BYTES)",
    },
    MetricDoc {
        name: "zfw_rule_series_omitted",
        kind: "gauge",
        labels: &[],
        help: "Rules with counters that got no zfw_rule_* series (--rule-series cap or --rule-series-service-only)",
    },
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    proto: String,
    direction: String,
    /// "assured" (main table) or "unassured" (README "Table pressure")
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IfaceLabels {
    interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtoLabels {
    proto: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirLabels {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    direction: String,
    /// `proto dst from src ports` (rules::rule_label)
    rule: String,
    /// empty when the rule has none
    service_id: String,
}

/// The registry entry of a documented metric (its name without the
/// `zfw_` prefix the registry adds).
fn doc(name: &str) -> &'static MetricDoc {
    METRICS
        .iter()
        .find(|m| m.name.strip_prefix("zfw_") == Some(name))
        .unwrap_or_else(|| unreachable!("metric {name} is not in METRICS"))
}

fn register<M: prometheus_client::registry::Metric + Clone>(reg: &mut Registry, name: &str, m: &M) {
    reg.register(name, doc(name).help, m.clone());
}

/// The protocols whose flow and mapping series are always exposed (0
/// while there are none), so that a dashboard's series exist from the
/// first scrape; others appear when they have entries.
const PROTOS: [u8; 4] = [
    crate::net::IPPROTO_TCP,
    crate::net::IPPROTO_UDP,
    crate::net::IPPROTO_ICMP,
    crate::net::IPPROTO_ICMPV6,
];

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Read the maps into a fresh registry.
fn collect(maps: &Maps, series: &RuleSeries) -> Result<Registry> {
    let mut reg = Registry::with_prefix("zfw");

    let packets = Family::<ReasonLabels, Counter>::default();
    register(&mut reg, "packets", &packets);
    for c in read::packets(maps)? {
        let (reason, verdict) = (c.reason, c.verdict);
        packets
            .get_or_create(&ReasonLabels { reason, verdict })
            .inc_by(c.packets);
    }

    let (entries, capacity) = (
        Family::<MapLabels, Gauge>::default(),
        Family::<MapLabels, Gauge>::default(),
    );
    register(&mut reg, "map_entries", &entries);
    register(&mut reg, "map_capacity", &capacity);
    for m in read::map_fill(maps)? {
        let l = MapLabels {
            map: m.name.to_string(),
        };
        entries.get_or_create(&l).set(gauge_value(m.entries));
        capacity.get_or_create(&l).set(i64::from(m.capacity));
    }

    let flows = Family::<FlowLabels, Gauge>::default();
    register(&mut reg, "flows", &flows);
    let mut by_flow: BTreeMap<(String, &str, bool), u64> = BTreeMap::new();
    for t in &defs::FLOW_TABLES {
        for p in PROTOS {
            by_flow
                .entry((crate::decode::proto(p), t.direction, t.assured))
                .or_default();
        }
    }
    for (class, n) in read::flows(maps)? {
        *by_flow
            .entry((class.proto, class.direction, class.assured))
            .or_default() += n;
    }
    for ((proto, direction, assured), n) in by_flow {
        let direction = direction.to_string();
        let state = if assured { "assured" } else { "unassured" }.to_string();
        flows
            .get_or_create(&FlowLabels {
                proto,
                direction,
                state,
            })
            .set(gauge_value(n));
    }

    let syns = Family::<IfaceLabels, Counter>::default();
    register(&mut reg, "ddos_syns", &syns);
    for (_, st) in maps.ifaces()? {
        let interface = crate::iface_state::name_str(&st.name);
        drop(syns.get_or_create(&IfaceLabels { interface }));
    }
    for (interface, _, n) in crate::ddos::syn_counts(maps)? {
        syns.get_or_create(&IfaceLabels { interface }).inc_by(n);
    }

    let nat = Family::<ProtoLabels, Gauge>::default();
    register(&mut reg, "masquerade_mappings", &nat);
    let mut by_proto: BTreeMap<String, u64> = PROTOS
        .iter()
        .map(|p| (crate::decode::proto(*p), 0))
        .collect();
    for def in defs::NAT_FORWARD {
        if maps.handle(def).is_err() {
            continue;
        }
        for (k, _) in maps.entries(def)? {
            *by_proto.entry(crate::decode::proto(k.proto)).or_default() += 1;
        }
    }
    for (proto, n) in by_proto {
        nat.get_or_create(&ProtoLabels { proto })
            .set(gauge_value(n));
    }

    let lost = Counter::<u64>::default();
    register(&mut reg, "events_lost", &lost);
    lost.inc_by(crate::monitor::events_lost(maps)?.unwrap_or(0));

    let generation = Gauge::<i64>::default();
    register(&mut reg, "policy_generation", &generation);
    generation.set(i64::from(maps.config()?.policy_gen));

    let rules = Family::<DirLabels, Gauge>::default();
    register(&mut reg, "rules", &rules);
    let mut by_dir: BTreeMap<&str, u64> = [("ingress", 0), ("egress", 0)].into();
    let counted = crate::rules::counters::live_counted(maps)?;
    for c in &counted {
        *by_dir.entry(c.rule.direction.name()).or_default() += 1;
    }
    for (direction, n) in by_dir {
        let direction = direction.to_string();
        rules
            .get_or_create(&DirLabels { direction })
            .set(gauge_value(n));
    }

    let (packets, bytes) = (
        Family::<RuleLabels, Counter>::default(),
        Family::<RuleLabels, Counter>::default(),
    );
    register(&mut reg, "rule_packets", &packets);
    register(&mut reg, "rule_bytes", &bytes);
    let (shown, omitted) = rules::pick(counted, series);
    for c in &shown {
        let l = RuleLabels {
            direction: c.rule.direction.name().to_string(),
            rule: rules::rule_label(c),
            service_id: c.rule.service_id.clone().unwrap_or_default(),
        };
        let h = c.hits.unwrap_or_default();
        packets.get_or_create(&l).inc_by(h.packets);
        bytes.get_or_create(&l).inc_by(h.bytes);
    }
    let left_out = Gauge::<i64>::default();
    register(&mut reg, "rule_series_omitted", &left_out);
    left_out.set(gauge_value(omitted as u64));
    Ok(reg)
}

/// The OpenMetrics text exposition of the datapath under `maps`, with
/// per-rule series as `series` allows.
pub fn exposition(maps: &Maps, series: &RuleSeries) -> Result<String> {
    let reg = collect(maps, series)?;
    let mut out = String::new();
    encode(&mut out, &reg).map_err(|e| Error::runtime(format!("encoding metrics: {e}")))?;
    Ok(out)
}

/// The metric names, types and labels as one help paragraph.
pub fn help_text() -> String {
    let mut s = String::from("Metrics (OpenMetrics text; counters' samples end in _total):\n");
    for m in METRICS {
        let labels = if m.labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", m.labels.join(","))
        };
        s.push_str(&format!("  {}{labels} {}: {}\n", m.name, m.kind, m.help));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_get_a_verdict_class() {
        assert_eq!(verdict("pass_rule"), "pass");
        assert_eq!(verdict("drop_no_rule"), "drop");
        assert_eq!(verdict("tproxy"), "tproxy");
        assert_eq!(verdict("track_new"), "track");
    }

    #[test]
    fn every_metric_is_documented_once_with_a_known_type() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("zfw_"), "{}", m.name);
            assert!(matches!(m.kind, "counter" | "gauge"), "{}", m.name);
            assert!(help_text().contains(m.name));
        }
    }
}
