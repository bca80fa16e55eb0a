//! `zfw rule add|del|list|flush|reset-counters`.

use clap::{Args, Subcommand};

use crate::bpffs::{check_privileges, Root};
use crate::error::{Error, Result};
use crate::iface_state;
use crate::maps::Maps;
use crate::rules::counters::{self, Counted, Hits};
use crate::rules::model::{Action, Direction, Ports, Prefix, Proto, Rule, RuleId};
use crate::rules::store::{self, AddOutcome};

#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    /// Add a rule (an identical live rule makes this a no-op)
    #[command(long_about = add_help())]
    Add(AddArgs),
    /// Delete a rule (exit 2 when it does not exist)
    Del(DelArgs),
    /// List the live rules with their hit counters
    #[command(long_about = LIST_HELP)]
    List(ListArgs),
    /// Remove all rules (of one direction with --ingress/--egress)
    Flush(FlushArgs),
    /// Set every rule's hit counters (packets, bytes, last hit) to zero
    ResetCounters,
}

/// `rule list --help`: what the counter columns count (README "Rule counters").
const LIST_HELP: &str = "List the live rules with their hit counters.

PACKETS and BYTES count the first packets of the flows each rule admitted
or denied (a flow's later packets take the established fast path and are
not counted), plus packets a deny ended of flows an older rule set had
admitted; LAST HIT is how long ago the latest was, `-` never.  A rule
keeps its counters while it stays unchanged (rule add of other rules,
apply, zfw load again); a new or changed rule starts at 0.  `rule
reset-counters` (or `--zero` here) sets them to 0.  `export` and `apply`
never carry counters.  A rule shows `-` for all three when rule_stats_map
had no free counter for it (zfw load --map-size rule_stats_map=N on a
fresh load).";

/// `rule add --help`: what it does and the limits (README "Limits").
fn add_help() -> String {
    use crate::skel::names::{ZFW_MAX_PAIRS, ZFW_MAX_RANGES_PER_KEY};
    format!(
        "Add a rule (an identical live rule makes this a no-op).

Limits (README \"Limits\"); past either one the rule is refused (exit 2) and
nothing changes:
- at most {ZFW_MAX_RANGES_PER_KEY} port ranges per (dst, src, proto, direction) key: merge
  adjacent ranges, or use more specific src or dst prefixes;
- at most {ZFW_MAX_PAIRS} distinct (dst length, src length) combinations on one address's
  path, per protocol and direction: the rules of its dst prefix and of every
  rule dst prefix containing it.  Use fewer distinct src lengths under nested
  dst prefixes, or fewer nesting levels."
    )
}

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Destination prefix (CIDR), IPv4 or IPv6
    #[arg(long, value_name = "CIDR")]
    pub dst: String,
    /// Source prefix (CIDR); default: any address of the dst's family
    #[arg(long, value_name = "CIDR")]
    pub src: Option<String>,
    /// tcp or udp
    #[arg(long, value_name = "tcp|udp")]
    pub proto: String,
    /// Destination port or range P-Q
    #[arg(long, value_name = "P[-Q]")]
    pub ports: String,
    /// An egress rule (applies on interfaces with outbound-filter on)
    #[arg(long)]
    pub egress: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub m: MatchArgs,
    /// Drop matching flows
    #[arg(long, group = "action")]
    pub deny: bool,
    /// Hand matching flows to the listener on 127.0.0.1:N / [::1]:N
    #[arg(long, value_name = "N", group = "action")]
    pub tproxy_port: Option<String>,
    /// Redirect matching flows into the tun interface
    #[arg(long, group = "action")]
    pub tunnel: bool,
    /// Only on this interface (with per-interface-rules); repeatable
    #[arg(long = "iface", value_name = "IF")]
    pub iface: Vec<String>,
    /// Audit label (up to 32 characters)
    #[arg(long, value_name = "ID")]
    pub service_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    #[command(flatten)]
    pub m: MatchArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Egress rules instead of ingress
    #[arg(long)]
    pub egress: bool,
    /// Only rules with this dst prefix
    #[arg(long, value_name = "CIDR")]
    pub dst: Option<String>,
    /// Only rules of this protocol
    #[arg(long, value_name = "tcp|udp")]
    pub proto: Option<String>,
    /// Print the RULE objects as one JSON array, each with a "counters"
    /// object {packets, bytes, last_hit_s} (null: no counter)
    #[arg(long)]
    pub json: bool,
    /// Reset every rule's counters after listing them
    #[arg(long)]
    pub zero: bool,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct FlushArgs {
    /// Only ingress rules
    #[arg(long)]
    pub ingress: bool,
    /// Only egress rules
    #[arg(long)]
    pub egress: bool,
}

fn prefix(flag: &str, s: &str) -> Result<Prefix> {
    s.parse()
        .map_err(|e| Error::usage(format!("--{flag}: {e}")))
}

fn dir_of(egress: bool) -> Direction {
    if egress {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

fn rule_id(m: &MatchArgs) -> Result<RuleId> {
    let dst = prefix("dst", &m.dst)?;
    let src = match &m.src {
        Some(s) => prefix("src", s)?,
        None => Prefix::any(dst.family()),
    };
    if src.family() != dst.family() {
        return Err(Error::usage(format!(
            "--src {src} and --dst {dst} are of different address families"
        )));
    }
    Ok(RuleId {
        direction: dir_of(m.egress),
        dst,
        src,
        proto: m
            .proto
            .parse::<Proto>()
            .map_err(|e| Error::usage(format!("--proto: {e}")))?,
        ports: m
            .ports
            .parse::<Ports>()
            .map_err(|e| Error::usage(format!("--ports: {e}")))?,
    })
}

fn open(root: &Root) -> Result<Maps> {
    check_privileges()?;
    Maps::open(root)
}

pub fn run(root: &Root, cmd: RuleCmd) -> Result<()> {
    match cmd {
        RuleCmd::Add(a) => add(root, a),
        RuleCmd::Del(a) => {
            let id = rule_id(&a.m)?;
            let maps = open(root)?;
            let _lock = root.lock()?;
            store::del(&maps, &id)?;
            crate::outln!(
                "zfw: deleted {} rule {} -> {} {} {}",
                id.direction.name(),
                id.src,
                id.dst,
                id.proto.name(),
                id.ports
            )?;
            Ok(())
        }
        RuleCmd::List(a) => list(root, a),
        RuleCmd::ResetCounters => {
            let maps = open(root)?;
            let _lock = root.lock()?;
            counters::reset_all(&maps)?;
            crate::outln!("zfw: rule counters reset")?;
            Ok(())
        }
        RuleCmd::Flush(a) => {
            let dirs = match (a.ingress, a.egress) {
                (true, _) => vec![Direction::Ingress],
                (_, true) => vec![Direction::Egress],
                _ => vec![Direction::Ingress, Direction::Egress],
            };
            let maps = open(root)?;
            let _lock = root.lock()?;
            let n = store::flush(&maps, &dirs)?;
            crate::outln!("zfw: flushed {n} rule(s)")?;
            Ok(())
        }
    }
}

fn add(root: &Root, a: AddArgs) -> Result<()> {
    let id = rule_id(&a.m)?;
    let action = if a.deny {
        Action::Deny
    } else if a.tunnel {
        Action::Tunnel
    } else if let Some(p) = &a.tproxy_port {
        Action::Tproxy(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            Error::usage(format!(
                "--tproxy-port '{}': expected a port 1-65535",
                crate::error::shown(p)
            ))
        })?)
    } else {
        Action::Allow
    };
    let rule = Rule {
        direction: id.direction,
        dst: id.dst,
        src: id.src,
        proto: id.proto,
        ports: id.ports,
        action,
        interfaces: a.iface,
        service_id: a.service_id,
    };
    rule.validate()?;
    let maps = open(root)?;
    let _lock = root.lock()?;
    iface_state::refresh_all(&maps)?;
    let what = match store::add(&maps, rule)? {
        AddOutcome::Added => "added",
        AddOutcome::Unchanged => "unchanged (identical rule is live)",
        AddOutcome::Updated => "updated",
    };
    crate::outln!(
        "zfw: {} rule {} -> {} {} {}: {what}",
        id.direction.name(),
        id.src,
        id.dst,
        id.proto.name(),
        id.ports
    )?;
    Ok(())
}

fn list(root: &Root, a: ListArgs) -> Result<()> {
    let dir = dir_of(a.egress);
    let dst = a.dst.as_deref().map(|d| prefix("dst", d)).transpose()?;
    let proto = a
        .proto
        .as_deref()
        .map(|p| {
            p.parse::<Proto>()
                .map_err(|e| Error::usage(format!("--proto: {e}")))
        })
        .transpose()?;
    let maps = open(root)?;
    let rules: Vec<Counted> = counters::live_counted(&maps)?
        .into_iter()
        .filter(|c| c.rule.direction == dir)
        .filter(|c| dst.is_none_or(|d| c.rule.dst == d))
        .filter(|c| proto.is_none_or(|p| c.rule.proto == p))
        .collect();
    let now = crate::decode::mono_now_ns();
    if a.json {
        let v: Vec<serde_json::Value> = rules.iter().map(|c| counted_json(c, now)).collect();
        super::print_json(&v)?;
    } else {
        crate::out!("{}", table(&rules, now))?;
    }
    if a.zero {
        let _lock = root.lock()?;
        counters::reset_all(&maps)?;
    }
    Ok(())
}

/// Seconds since `last_ns` (None: never hit).
fn last_hit_s(h: &Hits, now: u64) -> Option<f64> {
    (h.last_ns != 0).then(|| crate::decode::age_s(now, h.last_ns))
}

/// A RULE object with its `counters` (null: the rule has no counter).
pub fn counted_json(c: &Counted, now: u64) -> serde_json::Value {
    let mut v = serde_json::to_value(c.rule.to_json()).unwrap_or_default();
    v["counters"] = match &c.hits {
        Some(h) => serde_json::json!({
            "packets": h.packets,
            "bytes": h.bytes,
            "last_hit_s": last_hit_s(h, now),
        }),
        None => serde_json::Value::Null,
    };
    v
}

/// An age in the listing: `12s`, `5m`, `3h`, `2d`; `-` never.
fn age_text(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{}s", s as u64),
        Some(s) if s < 7200.0 => format!("{}m", (s / 60.0) as u64),
        Some(s) if s < 172_800.0 => format!("{}h", (s / 3600.0) as u64),
        Some(s) => format!("{}d", (s / 86400.0) as u64),
    }
}

/// The C zfw's listing columns (type, service id, proto, origin,
/// destination, ports, mapping, interfaces), then the counters: packets,
/// bytes, last hit.
pub fn table(rules: &[Counted], now: u64) -> String {
    let mut rows = vec![[
        "type".to_string(),
        "service id".into(),
        "proto".into(),
        "origin".into(),
        "destination".into(),
        "ports".into(),
        "mapping".into(),
        "interfaces".into(),
        "packets".into(),
        "bytes".into(),
        "last hit".into(),
    ]];
    for c in rules {
        let r = &c.rule;
        let (ty, mapping) = match r.action {
            Action::Allow => ("ALLOW", "-".to_string()),
            Action::Deny => ("DENY", "-".to_string()),
            Action::Tproxy(p) => ("TPROXY", format!("-> {p}")),
            Action::Tunnel => ("TUNNEL", "-> tun".to_string()),
        };
        let (packets, bytes, last) = match &c.hits {
            Some(h) => (
                h.packets.to_string(),
                h.bytes.to_string(),
                age_text(last_hit_s(h, now)),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        rows.push([
            ty.to_string(),
            r.service_id.clone().unwrap_or_else(|| "-".into()),
            r.proto.name().to_string(),
            r.src.to_string(),
            r.dst.to_string(),
            r.ports.to_string(),
            mapping,
            if r.interfaces.is_empty() {
                "*".into()
            } else {
                r.interfaces.join(",")
            },
            packets,
            bytes,
            last,
        ]);
    }
    let mut w = [0usize; 11];
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut s = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s.push_str(&format!("{} rule(s)\n", rules.len()));
    s
}
