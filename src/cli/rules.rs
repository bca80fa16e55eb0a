//! `zfw rule add|del|list|flush`.

use clap::{Args, Subcommand};

use crate::bpffs::{check_privileges, Root};
use crate::error::{Error, Result};
use crate::iface_state;
use crate::maps::Maps;
use crate::rules::model::{Action, Direction, Ports, Prefix, Proto, Rule, RuleId};
use crate::rules::store::{self, AddOutcome};

#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    /// Add a rule (an identical live rule makes this a no-op)
    #[command(long_about = add_help())]
    Add(AddArgs),
    /// Delete a rule (exit 2 when it does not exist)
    Del(DelArgs),
    /// List the live rules
    List(ListArgs),
    /// Remove all rules (of one direction with --ingress/--egress)
    Flush(FlushArgs),
}

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
    /// Print the RULE objects as one JSON array
    #[arg(long)]
    pub json: bool,
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
    let rules: Vec<Rule> = store::read_live(&maps)?
        .into_iter()
        .filter(|r| r.direction == dir)
        .filter(|r| dst.is_none_or(|d| r.dst == d))
        .filter(|r| proto.is_none_or(|p| r.proto == p))
        .collect();
    if a.json {
        let v: Vec<_> = rules.iter().map(Rule::to_json).collect();
        return super::print_json(&v);
    }
    crate::out!("{}", table(&rules))?;
    Ok(())
}

/// The C zfw's listing columns: type, service id, proto, origin,
/// destination, ports, mapping, interfaces.
pub fn table(rules: &[Rule]) -> String {
    let mut rows = vec![[
        "type".to_string(),
        "service id".into(),
        "proto".into(),
        "origin".into(),
        "destination".into(),
        "ports".into(),
        "mapping".into(),
        "interfaces".into(),
    ]];
    for r in rules {
        let (ty, mapping) = match r.action {
            Action::Allow => ("ALLOW", "-".to_string()),
            Action::Deny => ("DENY", "-".to_string()),
            Action::Tproxy(p) => ("TPROXY", format!("-> {p}")),
            Action::Tunnel => ("TUNNEL", "-> tun".to_string()),
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
        ]);
    }
    let mut w = [0usize; 8];
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
