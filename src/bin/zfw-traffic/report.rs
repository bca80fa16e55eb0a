//! Rows, medians and target/bench-traffic.json of `make bench-traffic`.
//!
//! A row is (metric, rule count, masquerade).  Each of its pairs holds one
//! baseline trial and one zfw trial run back to back (the order alternates
//! between pairs); the row's figures are the medians of each side, and its
//! ratio is the median of the pairs' zfw / baseline ratios.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::lab::{Fw, Res};
use super::traffic::Measured;
use super::Config;

pub const TARGET: f64 = 0.95;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Metric {
    Cps,
    Gbps,
    Udp,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "cps" => Some(Metric::Cps),
            "gbps" => Some(Metric::Gbps),
            "udp" => Some(Metric::Udp),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cps => "tcp_conn_per_s",
            Metric::Gbps => "tcp_stream_gbit_per_s",
            Metric::Udp => "udp_small_pkt_per_s",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Metric::Cps => "TCP conn/s",
            Metric::Gbps => "TCP Gbit/s",
            Metric::Udp => "UDP pkt/s",
        }
    }
}

fn baseline_name(masq: bool) -> &'static str {
    if masq {
        "nftables masquerade"
    } else {
        "no firewall"
    }
}

#[derive(Serialize)]
pub struct Trial {
    pub firewall: &'static str,
    #[serde(flatten)]
    pub measured: Measured,
    /// the server's TcpExtPAWSTimewait: SYNs its TIME_WAIT sockets rejected
    pub server_paws_timewait: u64,
    /// SYNs the client sent again (client TcpExtTCPSynRetrans)
    pub client_syn_retrans: u64,
    /// SYN-ACKs the server sent again (server TcpExtTCPSynRetrans)
    pub server_syn_retrans: u64,
    /// connections / UDP batches the server saw from the router's address
    /// (translated) and from the client's own addresses
    pub peers_translated: u64,
    pub peers_untranslated: u64,
    pub nstat_client: BTreeMap<String, u64>,
    pub nstat_server: BTreeMap<String, u64>,
    /// zfw trials: counters_map deltas (packets per reason), non-zero only
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zfw_counters: Option<BTreeMap<String, u64>>,
}

impl Trial {
    pub fn new(
        fw: Fw,
        measured: Measured,
        nstat_client: BTreeMap<String, u64>,
        nstat_server: BTreeMap<String, u64>,
        zfw_counters: Option<BTreeMap<String, u64>>,
        peers_translated: u64,
        peers_untranslated: u64,
    ) -> Trial {
        let g = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
        Trial {
            firewall: if fw == Fw::Zfw { "zfw" } else { "baseline" },
            server_paws_timewait: g(&nstat_server, "TcpExtPAWSTimewait"),
            client_syn_retrans: g(&nstat_client, "TcpExtTCPSynRetrans"),
            server_syn_retrans: g(&nstat_server, "TcpExtTCPSynRetrans"),
            measured,
            peers_translated,
            peers_untranslated,
            nstat_client,
            nstat_server,
            zfw_counters,
        }
    }
}

/// Non-zero `after - before` per counter.
pub fn counter_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

#[derive(Serialize)]
pub struct Pair {
    pub index: usize,
    pub first: &'static str,
    pub ratio: f64,
    pub baseline: Trial,
    pub zfw: Trial,
}

impl Pair {
    pub fn new(index: usize, trials: Vec<Trial>) -> Res<Pair> {
        let first = trials.first().map_or("baseline", |t| t.firewall);
        let mut it = trials.into_iter();
        let (a, b) = (
            it.next().ok_or("pair: no trials")?,
            it.next().ok_or("pair: one trial")?,
        );
        let (baseline, zfw) = if a.firewall == "zfw" { (b, a) } else { (a, b) };
        if baseline.measured.value <= 0.0 {
            return Err(format!(
                "pair {index}: the baseline trial measured nothing ({} done, {} errors)",
                baseline.measured.done, baseline.measured.errors
            ));
        }
        Ok(Pair {
            index,
            first,
            ratio: zfw.measured.value / baseline.measured.value,
            baseline,
            zfw,
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[derive(Serialize)]
pub struct Row {
    pub metric: &'static str,
    pub rules: usize,
    pub masquerade: bool,
    pub baseline: &'static str,
    pub baseline_median: f64,
    pub zfw_median: f64,
    /// median of the pairs' zfw / baseline ratios
    pub ratio: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
    pub target: f64,
    pub meets_target: bool,
    /// sums over the row's zfw trials and baseline trials
    pub zfw_server_paws_timewait: u64,
    pub zfw_client_syn_retrans: u64,
    pub baseline_server_paws_timewait: u64,
    pub baseline_client_syn_retrans: u64,
    pub pairs: Vec<Pair>,
    #[serde(skip)]
    kind: Option<Metric>,
}

impl Row {
    pub fn new(metric: Metric, rules: usize, masq: bool, pairs: Vec<Pair>) -> Row {
        let ratios: Vec<f64> = pairs.iter().map(|p| p.ratio).collect();
        let ratio = median(ratios.clone());
        let sum = |f: &dyn Fn(&Pair) -> u64| pairs.iter().map(f).sum::<u64>();
        Row {
            metric: metric.name(),
            rules,
            masquerade: masq,
            baseline: baseline_name(masq),
            baseline_median: median(pairs.iter().map(|p| p.baseline.measured.value).collect()),
            zfw_median: median(pairs.iter().map(|p| p.zfw.measured.value).collect()),
            ratio,
            ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratio_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            target: TARGET,
            meets_target: ratio >= TARGET,
            zfw_server_paws_timewait: sum(&|p| p.zfw.server_paws_timewait),
            zfw_client_syn_retrans: sum(&|p| p.zfw.client_syn_retrans),
            baseline_server_paws_timewait: sum(&|p| p.baseline.server_paws_timewait),
            baseline_client_syn_retrans: sum(&|p| p.baseline.client_syn_retrans),
            pairs,
            kind: Some(metric),
        }
    }

    fn fmt(&self, v: f64) -> String {
        match self.kind {
            Some(Metric::Gbps) => format!("{v:.2}"),
            _ => format!("{v:.0}"),
        }
    }

    pub fn line(&self) -> String {
        let syn = if self.kind == Some(Metric::Cps) {
            format!(
                "  syn-retrans {}/{} paws-tw {}/{}",
                self.baseline_client_syn_retrans,
                self.zfw_client_syn_retrans,
                self.baseline_server_paws_timewait,
                self.zfw_server_paws_timewait
            )
        } else {
            String::new()
        };
        format!(
            "{:<11} {:>7} {:<4} {:>20} {:>12} {:>12}  {:>5.3} [{:.2}-{:.2}] {}{}",
            self.kind.map_or("", Metric::short),
            self.rules,
            if self.masquerade { "on" } else { "off" },
            self.baseline,
            self.fmt(self.baseline_median),
            self.fmt(self.zfw_median),
            self.ratio,
            self.ratio_min,
            self.ratio_max,
            if self.meets_target {
                "ok"
            } else {
                "BELOW 0.95"
            },
            syn
        )
    }
}

#[derive(Serialize)]
struct Settings {
    trial_secs: f64,
    pairs: usize,
    client_cpu: Option<usize>,
    server_cpu: Option<usize>,
    client_addrs: usize,
    cps_workers: usize,
    quick: bool,
}

#[derive(Serialize)]
pub struct Report {
    settings: Settings,
    baselines: BTreeMap<&'static str, &'static str>,
    kernel: String,
    cpus: usize,
    loadavg_start: String,
    loadavg_end: String,
    wall_secs: f64,
    complete: bool,
    pub rows: Vec<Row>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Report {
    pub fn new(cfg: &Config) -> Report {
        let mut baselines = BTreeMap::new();
        baselines.insert(
            "masquerade_off",
            "no firewall: the router only forwards (no netfilter rules, no conntrack)",
        );
        baselines.insert(
            "masquerade_on",
            "nftables: one nat postrouting chain, oifname ro0 masquerade (conntrack + NAT, no filtering)",
        );
        Report {
            settings: Settings {
                trial_secs: cfg.secs,
                pairs: cfg.pairs,
                client_cpu: cfg.cpus.map(|c| c.0),
                server_cpu: cfg.cpus.map(|c| c.1),
                client_addrs: cfg.client_addrs,
                cps_workers: cfg.workers,
                quick: cfg.quick,
            },
            baselines,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
            wall_secs: 0.0,
            complete: false,
            rows: Vec::new(),
        }
    }

    pub fn finish(&mut self, wall: f64, complete: bool) {
        self.wall_secs = wall;
        self.complete = complete;
        self.loadavg_end = loadavg();
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "\nreal traffic through the router: medians of {} paired trials of {} s \
             (ratio = median of zfw/baseline per pair, [min-max])\n",
            self.settings.pairs, self.settings.trial_secs
        );
        s += &format!(
            "{:<11} {:>7} {:<4} {:>20} {:>12} {:>12}  ratio\n",
            "metric", "rules", "masq", "baseline", "baseline", "zfw"
        );
        for r in &self.rows {
            s += &r.line();
            s.push('\n');
        }
        s += &format!(
            "load average {} at the start, {} at the end; {} CPUs; {:.0} s{}\n",
            self.loadavg_start,
            self.loadavg_end,
            self.cpus,
            self.wall_secs,
            if self.complete { "" } else { "; INCOMPLETE" }
        );
        s
    }

    pub fn write(&self, path: &Path) -> Res<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| format!("json: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}
