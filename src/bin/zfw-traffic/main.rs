//! `make bench-traffic`: real traffic through a client -- router -- server
//! lab of network namespaces, the same trials alternately with and without
//! zfw on the router.  Prints medians of paired trials and the ratio
//! zfw / baseline per row, and writes target/bench-traffic.json.
//! Knobs and method: docs/BENCH.md.

mod lab;
mod nstat;
mod policy;
mod report;
mod traffic;

use std::path::PathBuf;
use std::time::Instant;

use lab::{stopped, Fw, Lab, Res};
use report::{Metric, Pair, Report, Row, Trial};
use traffic::{Client, Servers, PROBE_PORT};

pub struct Config {
    pub secs: f64,
    pub pairs: usize,
    pub metrics: Vec<Metric>,
    pub rules: Vec<usize>,
    pub masq: Vec<bool>,
    /// (client CPU, server CPU)
    pub cpus: Option<(usize, usize)>,
    pub client_addrs: usize,
    pub workers: usize,
    pub quick: bool,
    pub json: PathBuf,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn num<T: std::str::FromStr>(name: &str, default: T, ok: impl Fn(&T) -> bool) -> Res<T> {
    match env(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<T>() {
            Ok(x) if ok(&x) => Ok(x),
            _ => Err(format!(
                "{name}: bad value {:?}",
                v.escape_debug().to_string()
            )),
        },
    }
}

fn list<T>(name: &str, default: &str, parse: impl Fn(&str) -> Option<T>) -> Res<Vec<T>> {
    let v = env(name).unwrap_or_else(|| default.to_string());
    let out: Option<Vec<T>> = v.split(',').map(|s| parse(s.trim())).collect();
    match out {
        Some(o) if !o.is_empty() => Ok(o),
        _ => Err(format!(
            "{name}: bad list {:?}",
            v.escape_debug().to_string()
        )),
    }
}

impl Config {
    fn from_env() -> Res<Config> {
        let quick = env("ZFW_TRAFFIC_QUICK").as_deref() == Some("1");
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpus = match env("ZFW_TRAFFIC_CPUS").as_deref() {
            None if ncpu >= 2 => Some((0, 1)),
            None => None,
            Some("none") => None,
            Some(v) => {
                let c: Vec<usize> = list("ZFW_TRAFFIC_CPUS", v, |s| s.parse().ok())?;
                match c[..] {
                    [a, b] if a < ncpu && b < ncpu => Some((a, b)),
                    _ => return Err(format!("ZFW_TRAFFIC_CPUS: want CLIENT,SERVER below {ncpu}")),
                }
            }
        };
        Ok(Config {
            secs: num(
                "ZFW_TRAFFIC_SECS",
                if quick { 1.0 } else { 3.0 },
                |s: &f64| (0.2..=60.0).contains(s),
            )?,
            pairs: num("ZFW_TRAFFIC_TRIALS", if quick { 3 } else { 5 }, |n| {
                (1..=100).contains(n)
            })?,
            metrics: list("ZFW_TRAFFIC_ONLY", "cps,gbps,udp", Metric::parse)?,
            rules: list("ZFW_TRAFFIC_RULES", "10,250000", |s| {
                s.parse().ok().filter(|n| *n >= policy::MIN_RULES)
            })?,
            masq: list("ZFW_TRAFFIC_MASQ", "off,on", |s| match s {
                "off" => Some(false),
                "on" => Some(true),
                _ => None,
            })?,
            cpus,
            client_addrs: num("ZFW_TRAFFIC_CLIENT_ADDRS", 1, |n| (1..=200).contains(n))?,
            workers: num("ZFW_TRAFFIC_WORKERS", 4, |n| (1..=64).contains(n))?,
            quick,
            json: env("ZFW_TRAFFIC_JSON").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-traffic.json"),
                PathBuf::from,
            ),
        })
    }
}

/// The zfw binary beside this one (target/release/zfw), or $ZFW_TRAFFIC_ZFW.
fn zfw_bin() -> Res<PathBuf> {
    let p = match env("ZFW_TRAFFIC_ZFW") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|e| format!("current_exe: {e}"))?
            .with_file_name("zfw"),
    };
    if !p.is_file() {
        return Err(format!("no zfw binary at {} (build it first)", p.display()));
    }
    Ok(p)
}

/// One trial of `metric` with the router in state (`fw`, `masq`).
fn trial(
    lab: &mut Lab,
    srv: &Servers,
    cl: &Client,
    cfg: &Config,
    metric: Metric,
    fw: Fw,
    masq: bool,
) -> Res<Trial> {
    lab.set_state(fw, masq)?;
    let before = if fw == Fw::Zfw {
        Some(lab.zfw_counters()?)
    } else {
        None
    };
    let (c0, s0) = (nstat::read(&cl.ns)?, nstat::read(&lab.server)?);
    srv.seen.take_peers();
    let m = match metric {
        Metric::Cps => cl.cps(cfg.secs, traffic::CPS_PORTS[usize::from(fw == Fw::Zfw)])?,
        Metric::Gbps => cl.stream(cfg.secs, &srv.seen)?,
        Metric::Udp => cl.udp(cfg.secs, &srv.seen)?,
    };
    // connections still closing belong to this trial's counters
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (c1, s1) = (nstat::read(&cl.ns)?, nstat::read(&lab.server)?);
    let label = format!("{} {:?} masquerade {masq}", metric.name(), fw);
    let (from_router, from_client) = match &m.error {
        Some(e) if fw == Fw::Baseline => return Err(format!("{label}: {e}")),
        Some(e) => {
            eprintln!("bench-traffic: {label}: {e} (counted as 0)");
            srv.seen.take_peers()
        }
        None => traffic::check_peers(&srv.seen, masq, &label)?,
    };
    let zfw = match before {
        Some(b) => {
            let after = lab.zfw_counters()?;
            let d = report::counter_delta(&b, &after);
            if d.get("pass_rule").copied().unwrap_or(0) == 0 && !stopped() {
                return Err(format!(
                    "{label}: no packet was admitted by a rule (pass_rule did not move); \
                     the trial did not test the policy"
                ));
            }
            Some(d)
        }
        None => None,
    };
    Ok(Trial::new(
        fw,
        m,
        nstat::delta(&c0, &c1),
        nstat::delta(&s0, &s1),
        zfw,
        from_router,
        from_client,
    ))
}

/// Before the rows of one (rules, masquerade) configuration: the probe
/// port must answer without zfw and be dropped by zfw (default deny: the
/// trial's traffic passes because a rule admits it).
fn probe(lab: &mut Lab, cl: &Client, masq: bool) -> Res<()> {
    lab.set_state(Fw::Baseline, masq)?;
    if !cl.probe(PROBE_PORT)? {
        return Err(format!(
            "lab: the server's port {PROBE_PORT} does not answer without zfw (masquerade {masq})"
        ));
    }
    lab.set_state(Fw::Zfw, masq)?;
    if cl.probe(PROBE_PORT)? {
        return Err(format!(
            "lab: zfw let a connection to port {PROBE_PORT} through, which no rule admits"
        ));
    }
    Ok(())
}

fn run(cfg: &Config, report: &mut Report) -> Res<()> {
    lab::remove_stale();
    if cfg.masq.contains(&true) {
        lab::run("nft", &["--version"], true).map_err(|_| {
            "nft not found: the masquerade rows compare zfw with nftables masquerade \
             (install nftables: scripts/install-deps.sh), or set ZFW_TRAFFIC_MASQ=off"
                .to_string()
        })?;
    }
    let mut lab = Lab::build(zfw_bin()?, cfg.client_addrs)?;
    let (ccpu, scpu) = match cfg.cpus {
        Some((c, s)) => (Some(c), Some(s)),
        None => (None, None),
    };
    let srv = Servers::start(&lab.server, scpu, lab::ROUTER_OUT)?;
    let cl = Client {
        ns: lab.client.clone(),
        cpu: ccpu,
        addrs: lab.client_addrs.clone(),
        workers: cfg.workers,
    };
    eprintln!(
        "bench-traffic: lab {} ready ({})",
        lab.pid,
        match cfg.cpus {
            Some((c, s)) => format!("client on cpu {c}, server on cpu {s}"),
            None => "client and server not pinned".into(),
        }
    );
    lab.load_zfw()?;
    for &n in &cfg.rules {
        let file = lab.tmp.join(format!("policy-{n}.json"));
        policy::write(&file, n)?;
        let t = Instant::now();
        lab.apply(&file)?;
        eprintln!(
            "bench-traffic: {n} rules applied in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let _ = std::fs::remove_file(&file);
        for &masq in &cfg.masq {
            probe(&mut lab, &cl, masq)?;
            for &metric in &cfg.metrics {
                let mut pairs = Vec::new();
                for i in 0..cfg.pairs {
                    // alternate which side goes first, so drift cancels
                    let order = if i % 2 == 0 {
                        [Fw::Baseline, Fw::Zfw]
                    } else {
                        [Fw::Zfw, Fw::Baseline]
                    };
                    let mut got = Vec::new();
                    for fw in order {
                        if stopped() {
                            return Err("interrupted".into());
                        }
                        got.push(trial(&mut lab, &srv, &cl, cfg, metric, fw, masq)?);
                    }
                    if stopped() {
                        return Err("interrupted".into());
                    }
                    pairs.push(Pair::new(i, got)?);
                }
                let row = Row::new(metric, n, masq, pairs);
                eprintln!("{}", row.line());
                report.rows.push(row);
            }
        }
    }
    drop(srv);
    drop(lab);
    Ok(())
}

const HELP: &str = "\
zfw-traffic (make bench-traffic): real traffic through a client -- router -- server
lab of network namespaces, alternately with and without zfw on the router.
Needs root.  Prints a table, writes target/bench-traffic.json.  Settings (env):
  ZFW_TRAFFIC_QUICK=1         1-s trials, 3 pairs (about 2 min instead of 10)
  ZFW_TRAFFIC_SECS=S          trial length in seconds (default 3)
  ZFW_TRAFFIC_TRIALS=N        paired trials per row (default 5)
  ZFW_TRAFFIC_ONLY=LIST       metrics: cps,gbps,udp (default all)
  ZFW_TRAFFIC_RULES=LIST      rule counts (default 10,250000; at least 8)
  ZFW_TRAFFIC_MASQ=LIST       off,on (default both)
  ZFW_TRAFFIC_CPUS=C,S|none   client and server CPUs (default 0,1)
  ZFW_TRAFFIC_CLIENT_ADDRS=K  client source addresses, i.e. hosts behind the NAT (default 1)
  ZFW_TRAFFIC_WORKERS=W       concurrent connection-rate clients (default 4)
  ZFW_TRAFFIC_JSON=FILE       output file (default target/bench-traffic.json)
  ZFW_TRAFFIC_ZFW=FILE        the zfw binary (default: beside this one)
Method and baselines: docs/BENCH.md.
";

fn main() {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{HELP}");
            return;
        }
        Some(a) => {
            eprintln!(
                "zfw-traffic: unexpected argument {:?} (settings come from the environment; see --help)",
                a.escape_debug().to_string()
            );
            std::process::exit(2);
        }
    }
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zfw-traffic: {e}");
            std::process::exit(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("zfw-traffic: needs root (network namespaces, BPF)");
        std::process::exit(1);
    }
    if let Err(e) = lab::catch_signals() {
        eprintln!("zfw-traffic: {e}");
        std::process::exit(1);
    }
    let mut report = Report::new(&cfg);
    let t = Instant::now();
    let res = run(&cfg, &mut report);
    report.finish(t.elapsed().as_secs_f64(), res.is_ok());
    print!("{}", report.table());
    if let Err(e) = report.write(&cfg.json) {
        eprintln!("zfw-traffic: {e}");
    } else {
        println!("written to {}", cfg.json.display());
    }
    match res {
        Ok(()) => {}
        Err(_) if stopped() => {
            eprintln!("zfw-traffic: interrupted; lab removed");
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("zfw-traffic: {e}");
            std::process::exit(1);
        }
    }
}
