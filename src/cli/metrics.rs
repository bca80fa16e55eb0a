//! `metrics`: Prometheus metrics, printed once or served over HTTP.

use std::io::Write;

use clap::Args;

use crate::bpffs::Root;
use crate::error::{Error, Result};
use crate::maps::Maps;
use crate::metrics::{rules, serve, RuleSeries};

#[derive(Debug, Args)]
#[command(after_help = metrics_help())]
pub struct MetricsArgs {
    /// Serve GET /metrics over HTTP on ADDR:PORT instead of printing once
    /// (without a value: 127.0.0.1:9475)
    #[arg(
        long,
        value_name = "ADDR:PORT",
        num_args = 0..=1,
        default_missing_value = serve::DEFAULT_LISTEN
    )]
    pub listen: Option<String>,
    /// Per-rule series (zfw_rule_packets, zfw_rule_bytes) for at most N
    /// rules, those with the most packets first; `all` for every rule
    /// (default: 100)
    #[arg(long, value_name = "N|all")]
    pub rule_series: Option<String>,
    /// Per-rule series only for rules that have a service id
    #[arg(long)]
    pub rule_series_service_only: bool,
}

fn metrics_help() -> String {
    crate::metrics::help_text()
}

pub fn metrics(root: &Root, a: MetricsArgs) -> Result<()> {
    let addr = a.listen.as_deref().map(serve::parse_listen).transpose()?;
    let series = RuleSeries {
        max: match &a.rule_series {
            Some(s) => rules::parse_max(s).map_err(Error::usage)?,
            None => Some(rules::DEFAULT_MAX),
        },
        service_only: a.rule_series_service_only,
    };
    crate::bpffs::check_privileges()?;
    // fail now, with the usual line, when nothing is loaded
    let maps = Maps::open(root)?;
    let Some(addr) = addr else {
        let text = crate::metrics::exposition(&maps, &series)?;
        let mut out = std::io::stdout().lock();
        return match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::runtime(format!("writing metrics: {e}"))),
        };
    };
    drop(maps);
    serve::serve(root, addr, &series, |bound| {
        eprintln!("zfw: serving http://{bound}/metrics");
    })
}
