//! `ddos port|allow add|del|list`, `ddos rate [RATE [BURST] | off]`.

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::bpffs::Root;
use crate::ddos;
use crate::error::{Error, Result};
use crate::maps::Maps;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListAction {
    Add,
    Del,
    List,
}

#[derive(Debug, Args)]
pub struct DdosArgs {
    #[command(subcommand)]
    pub cmd: DdosCmd,
}

#[derive(Debug, Subcommand)]
pub enum DdosCmd {
    /// Ports on the interface addresses whose SYNs only whitelisted sources may send
    Port(PortArgs),
    /// Source addresses admitted to the protected ports (the whitelist)
    Allow(AllowArgs),
    /// Per-source SYN rate limit for sources not on the whitelist: RATE BURST, or off
    Rate(RateArgs),
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub action: ListAction,
    /// TCP port 1-65535 (add, del)
    pub port: Option<String>,
    /// list: one JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AllowArgs {
    pub action: ListAction,
    /// IPv4 or IPv6 address (add, del)
    pub ip: Option<String>,
    /// list: one JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RateArgs {
    /// SYNs per second per source, or `off`; without it, show the setting
    pub rate: Option<String>,
    /// Bucket depth (SYNs a source may send at once); default RATE
    pub burst: Option<String>,
    /// Show the setting as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct RateView {
    enabled: bool,
    rate: u32,
    burst: u32,
}

fn operand<'a>(action: ListAction, v: &'a Option<String>, what: &str) -> Result<Option<&'a str>> {
    match (action, v) {
        (ListAction::List, Some(x)) => Err(Error::usage(format!(
            "list takes no {what} (got '{}')",
            crate::error::shown(x)
        ))),
        (ListAction::List, None) => Ok(None),
        (_, None) => Err(Error::usage(format!("add/del need a {what}"))),
        (_, Some(x)) => Ok(Some(x.as_str())),
    }
}

pub fn run(root: &Root, a: DdosArgs) -> Result<()> {
    match a.cmd {
        DdosCmd::Port(p) => port(root, p),
        DdosCmd::Allow(p) => allow(root, p),
        DdosCmd::Rate(r) => rate(root, r),
    }
}

fn port(root: &Root, a: PortArgs) -> Result<()> {
    let arg = operand(a.action, &a.port, "port")?;
    let port = arg.map(ddos::parse_port).transpose()?;
    let maps = Maps::open(root)?;
    // add/del read, then write: hold the root's lock (apply does too)
    let _lock = root.lock()?;
    match (a.action, port) {
        (ListAction::Add, Some(p)) => {
            if ddos::port_add(&maps, p)? {
                crate::outln!("zfw: DDoS protection on for port {p}")?;
            } else {
                crate::outln!("zfw: port {p} was already protected")?;
            }
        }
        (ListAction::Del, Some(p)) => {
            ddos::port_del(&maps, p)?;
            crate::outln!("zfw: DDoS protection off for port {p}")?;
        }
        _ => {
            let ports = ddos::ports(&maps)?;
            if a.json {
                return super::print_json(&ports);
            }
            for p in ports {
                crate::outln!("{p}")?;
            }
        }
    }
    Ok(())
}

fn allow(root: &Root, a: AllowArgs) -> Result<()> {
    let arg = operand(a.action, &a.ip, "address")?;
    let ip = arg.map(ddos::parse_ip).transpose()?;
    let maps = Maps::open(root)?;
    let _lock = root.lock()?;
    match (a.action, ip) {
        (ListAction::Add, Some(ip)) => {
            if ddos::allow_add(&maps, ip)? {
                crate::outln!("zfw: {ip} added to the DDoS whitelist")?;
            } else {
                crate::outln!("zfw: {ip} was already on the DDoS whitelist")?;
            }
        }
        (ListAction::Del, Some(ip)) => {
            ddos::allow_del(&maps, ip)?;
            crate::outln!("zfw: {ip} removed from the DDoS whitelist")?;
        }
        _ => {
            let v: Vec<String> = ddos::allowed(&maps)?
                .iter()
                .map(|a| a.to_string())
                .collect();
            if a.json {
                return super::print_json(&v);
            }
            for s in v {
                crate::outln!("{s}")?;
            }
        }
    }
    Ok(())
}

fn parse_num(s: &str, what: &str) -> Result<u32> {
    s.parse::<u32>().map_err(|_| {
        Error::usage(format!(
            "SYN {what} '{}': expected a number 1-{} (or `off`)",
            crate::error::shown(s),
            ddos::MAX_RATE
        ))
    })
}

fn rate(root: &Root, a: RateArgs) -> Result<()> {
    let limit = match (a.rate.as_deref(), a.burst.as_deref()) {
        (None, _) => {
            let maps = Maps::open(root)?;
            let cur = ddos::rate(&maps)?;
            let (rate, burst) = cur.unwrap_or((0, 0));
            if a.json {
                return super::print_json(&RateView {
                    enabled: cur.is_some(),
                    rate,
                    burst,
                });
            }
            match cur {
                Some(_) => crate::outln!("SYN rate limit: {rate}/s per source, burst {burst}")?,
                None => crate::outln!("SYN rate limit: off")?,
            }
            return Ok(());
        }
        (Some("off"), None) => None,
        (Some("off"), Some(b)) => {
            return Err(Error::usage(format!(
                "`ddos rate off` takes no burst (got '{}')",
                crate::error::shown(b)
            )))
        }
        (Some(r), b) => {
            let rate = parse_num(r, "rate")?;
            let burst = b
                .map(|b| parse_num(b, "burst"))
                .transpose()?
                .unwrap_or(rate);
            Some((rate, burst))
        }
    };
    if let Some((r, b)) = limit {
        // validate before touching the maps
        if r == 0 || b == 0 || r > ddos::MAX_RATE || b > ddos::MAX_RATE {
            return Err(Error::usage(format!(
                "SYN rate {r} / burst {b}: both must be 1-{} (use `ddos rate off` to disable)",
                ddos::MAX_RATE
            )));
        }
    }
    let maps = Maps::open(root)?;
    ddos::set_rate(&maps, limit)?;
    match limit {
        Some((r, b)) => crate::outln!("zfw: SYN rate limit {r}/s per source, burst {b}")?,
        None => crate::outln!("zfw: SYN rate limit off")?,
    }
    Ok(())
}
