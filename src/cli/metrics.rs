//! `metrics`: Prometheus metrics, printed once or served over HTTP.

use std::io::Write;

use clap::Args;

use crate::bpffs::Root;
use crate::error::{Error, Result};
use crate::maps::Maps;
use crate::metrics::serve;

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
}

fn metrics_help() -> String {
    crate::metrics::help_text()
}

pub fn metrics(root: &Root, a: MetricsArgs) -> Result<()> {
    let addr = a.listen.as_deref().map(serve::parse_listen).transpose()?;
    crate::bpffs::check_privileges()?;
    // fail now, with the usual line, when nothing is loaded
    let maps = Maps::open(root)?;
    let Some(addr) = addr else {
        let text = crate::metrics::exposition(&maps)?;
        let mut out = std::io::stdout().lock();
        return match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::runtime(format!("writing metrics: {e}"))),
        };
    };
    drop(maps);
    serve::serve(root, addr, |bound| {
        eprintln!("zfw: serving http://{bound}/metrics");
    })
}
