//! `zfw metrics` against a live datapath with real traffic: scraped over
//! HTTP, parsed by a strict OpenMetrics parser.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zfw::maps::defs;

/// `GET path` (or another method) over HTTP/1.0 from inside `ns`:
/// (status code, headers, body); None when nothing listens yet.
fn http(ns: &Netns, method: &str, addr: &str, path: &str) -> Option<(u16, String, String)> {
    let (method, addr, path) = (method.to_string(), addr.to_string(), path.to_string());
    ns.enter(move || {
        use std::io::{Read, Write};
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "{method} {path} HTTP/1.0\r\nHost: zfw\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, head.to_string(), body.to_string()))
    })
}

type Exposition = openmetrics_parser::MetricsExposition<
    openmetrics_parser::OpenMetricsType,
    openmetrics_parser::OpenMetricsValue,
>;

/// The value of the sample of `family` whose labels include `want`.
fn sample(m: &Exposition, family: &str, want: &[(&str, &str)]) -> Option<f64> {
    use openmetrics_parser::OpenMetricsValue as V;
    let f = m.families.get(family)?;
    f.iter_samples().find_map(|s| {
        let l = s.get_labelset().ok()?;
        if !want.iter().all(|(k, v)| l.get_label_value(k) == Some(*v)) {
            return None;
        }
        match &s.value {
            V::Counter(c) => Some(c.value.as_f64()),
            V::Gauge(g) => Some(g.as_f64()),
            _ => None,
        }
    })
}

/// Parse strictly and check every documented metric is there, typed.
fn check_documented(text: &str) -> Exposition {
    use openmetrics_parser::OpenMetricsType as T;
    let m = openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("not valid OpenMetrics: {e:?}\n{text}"));
    for doc in zfw::metrics::METRICS {
        let f = m
            .families
            .get(doc.name)
            .unwrap_or_else(|| panic!("{} missing\n{text}", doc.name));
        let want = match doc.kind {
            "counter" => T::Counter,
            _ => T::Gauge,
        };
        assert_eq!(f.family_type, want, "{}", doc.name);
        let mut got: Vec<&str> = f.get_label_names().iter().map(String::as_str).collect();
        let mut want = doc.labels.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{} labels", doc.name);
    }
    m
}

#[test]
fn metrics_are_served_over_http_and_count_the_packets_sent() {
    require_priv!();
    const SENT: usize = 7;
    const RULE_FLOWS: usize = 3;
    let lab = Lab::new();
    let ssh = tcp_listen(&lab.server, "0.0.0.0:22").serve_echo();
    lab.load();
    // real traffic: an SSH connection (allowed, tracked; held open while
    // scraping) and SENT UDP datagrams to a port no rule allows (dropped)
    let _conn = lab.connect(ssh);
    lab.send_udp(SENT, 9999);
    // a rule with a service id that admits RULE_FLOWS flows (one datagram each)
    let add = "rule add --dst 10.77.0.2/32 --proto udp --ports 5320 --service-id svc-m";
    lab.zfw(&add.split(' ').collect::<Vec<_>>()).ok();
    for _ in 0..RULE_FLOWS {
        lab.send_udp(1, 5320);
    }
    std::thread::sleep(Duration::from_millis(200));
    let port = lab.server.enter(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let addr = format!("127.0.0.1:{port}");
    let mut child = zfw_spawn(&lab.server, &lab.root, &["metrics", "--listen", &addr]);
    let t0 = Instant::now();
    let (code, head, body) = loop {
        if let Some(r) = http(&lab.server, "GET", &addr, "/metrics") {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "metrics never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("application/openmetrics-text"),
        "{head}"
    );
    let m = check_documented(&body);
    let drops = sample(
        &m,
        "zfw_packets",
        &[("reason", "drop_no_rule"), ("verdict", "drop")],
    );
    assert_eq!(drops, Some(SENT as f64), "{body}");
    assert!(sample(&m, "zfw_packets", &[("reason", "pass_ssh")]).unwrap() >= 1.0);
    let inbound = sample(
        &m,
        "zfw_flows",
        &[
            ("proto", "tcp"),
            ("direction", "inbound"),
            ("state", "assured"),
        ],
    );
    assert!(inbound.unwrap_or(0.0) >= 1.0, "{body}");
    let cap = sample(&m, "zfw_map_capacity", &[("map", "tcp_ingress_map")]);
    let maps = lab.root.maps();
    let want = maps.max_entries(&defs::TCP_INGRESS_MAP).unwrap();
    assert_eq!(cap, Some(f64::from(want)));
    let gen = maps.config().unwrap().policy_gen;
    assert_eq!(
        sample(&m, "zfw_policy_generation", &[]),
        Some(f64::from(gen))
    );
    assert_eq!(sample(&m, "zfw_events_lost", &[]), Some(0.0));
    assert_eq!(
        sample(&m, "zfw_rules", &[("direction", "ingress")]),
        Some(1.0)
    );
    let rule = [
        ("direction", "ingress"),
        ("rule", "udp 10.77.0.2/32 from 0.0.0.0/0 5320"),
        ("service_id", "svc-m"),
    ];
    // Ethernet, IPv4, UDP and the 3 bytes send_udp sends
    let frame = (14 + 20 + 8 + 3) as f64;
    assert_eq!(
        sample(&m, "zfw_rule_packets", &rule),
        Some(RULE_FLOWS as f64),
        "{body}"
    );
    assert_eq!(
        sample(&m, "zfw_rule_bytes", &rule),
        Some(RULE_FLOWS as f64 * frame)
    );
    assert_eq!(sample(&m, "zfw_rule_series_omitted", &[]), Some(0.0));
    // read-only, one path
    assert_eq!(http(&lab.server, "GET", &addr, "/").unwrap().0, 404);
    assert_eq!(http(&lab.server, "POST", &addr, "/metrics").unwrap().0, 405);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let _ = child.wait();
    // printed once: the same families
    let once = lab.zfw(&["metrics"]).ok();
    check_documented(&once.stdout);
    // the cap on per-rule series: none, or only rules with a service id
    let none = lab.zfw(&["metrics", "--rule-series", "0"]).ok().stdout;
    assert!(!none.contains("zfw_rule_packets_total{"), "{none}");
    assert!(none.contains("\nzfw_rule_series_omitted 1\n"), "{none}");
    let svc = lab
        .zfw(&["metrics", "--rule-series-service-only"])
        .ok()
        .stdout;
    assert!(svc.contains("service_id=\"svc-m\""), "{svc}");
    let r = lab.zfw(&["metrics", "--rule-series", "lots"]);
    assert_eq!((r.code, r.stderr.lines().count()), (2, 1), "{}", r.stderr);
    assert!(r.stderr.contains("--rule-series 'lots'"), "{}", r.stderr);
}

#[test]
fn metrics_refuses_a_bad_listen_address_in_one_line() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    for (bad, code) in [
        ("nonsense", 2),
        ("127.0.0.1", 2),
        ("127.0.0.1:99999", 2),
        ("bad\u{1b}[2J:1", 2),
        // well-formed, but not an address of this namespace
        ("192.0.2.1:9475", 1),
    ] {
        let r = lab.zfw(&["metrics", "--listen", bad]);
        assert_eq!(r.code, code, "{bad}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("--listen"), "{bad}: {}", r.stderr);
        assert!(!r.stderr.contains('\u{1b}'), "{bad}: escaped");
        assert!(r.stdout.is_empty(), "{bad}");
    }
}

/// The packaged Grafana dashboard and unit name only metrics zfw exposes.
#[test]
fn packaging_uses_the_documented_metric_names() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let dash = std::fs::read_to_string(dir.join("zfw-grafana-dashboard.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    let mut used = std::collections::BTreeSet::new();
    for p in v["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            for (i, _) in e.match_indices("zfw_") {
                let name: String = e[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used.insert(name);
            }
        }
    }
    let known: Vec<String> = zfw::metrics::METRICS
        .iter()
        .map(|m| match m.kind {
            "counter" => format!("{}_total", m.name),
            _ => m.name.to_string(),
        })
        .collect();
    for name in &used {
        assert!(
            known.contains(name),
            "the dashboard uses {name}, zfw has no such series"
        );
    }
    assert!(used.len() >= 8, "{used:?}");
    let unit = std::fs::read_to_string(dir.join("zfw-metrics.service")).unwrap();
    assert!(unit.contains("zfw metrics --listen"), "{unit}");
}

/// README and `zfw metrics --help` document every metric; README shows a
/// monitor event record and the lost record.
#[test]
fn readme_and_help_document_every_metric_and_the_monitor_records() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zfw"))
        .args(["metrics", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for m in zfw::metrics::METRICS {
        let row = format!("| `{}` | {} |", m.name, m.kind);
        assert!(readme.contains(&row), "README lacks the row of {}", m.name);
        assert!(help.contains(m.name), "--help lacks {}", m.name);
    }
    assert!(help.contains("--listen"), "{help}");
    assert!(
        readme.contains("{\"lost\":37}"),
        "README lacks the lost record"
    );
    let event = readme
        .lines()
        .find(|l| l.starts_with("{\"time\""))
        .expect("README shows an event record");
    let v: serde_json::Value = serde_json::from_str(event).unwrap();
    for field in [
        "iface",
        "direction",
        "kind",
        "proto",
        "src",
        "dst",
        "reason",
    ] {
        assert!(v.get(field).is_some(), "README's event lacks {field}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zfw"))
        .args(["monitor", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("{\"lost\":N}"));
}
