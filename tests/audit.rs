//! `zfw dump` and `zfw monitor` against a live datapath.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn dump_covers_every_map_as_json() {
    require_priv!();
    let lab = Lab::new();
    let ssh = tcp_listen(&lab.server, "[::]:22").serve_echo();
    lab.load();
    // hold an SSH connection open while dumping
    let target: std::net::SocketAddr = format!("{SERVER_IP}:{ssh}").parse().unwrap();
    let conn = lab
        .client
        .enter(move || std::net::TcpStream::connect_timeout(&target, Duration::from_secs(3)));
    let _conn = conn.expect("SSH connects");
    let r = lab.zfw(&["dump"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("dump is one JSON document");
    for name in zfw::maps::defs::pinned().map(|m| m.name) {
        let m = &v["maps"][name];
        assert_eq!(m["name"], name, "{name} missing");
        assert!(m["max_entries"].as_u64().unwrap() > 0, "{name}");
        assert!(m["entries"].is_array(), "{name}");
    }
    let diag = &v["maps"]["diag_map"]["entries"][0];
    assert_eq!(diag["iface"], "srv0");
    assert_eq!(diag["settings"]["ssh"], true);
    let addrs = &v["maps"]["ifindex_ip_map"]["entries"][0]["addresses"];
    assert!(addrs.as_array().unwrap().iter().any(|a| a == SERVER_IP));
    // the SSH connection left an inbound TCP flow with names, not numbers
    let flow = &v["maps"]["tcp_ingress_map"]["entries"][0];
    assert_eq!(flow["src"], CLIENT_IP);
    assert_eq!(flow["dport"], 22);
    assert_eq!(flow["iface"], "srv0");
    assert!(flow["state"].is_string());
    assert!(flow["age_s"].as_f64().unwrap() < 60.0);
    let counters = v["maps"]["counters_map"]["entries"].as_array().unwrap();
    assert!(counters
        .iter()
        .any(|c| c["reason"] == "pass_ssh" && c["packets"].as_u64().unwrap() >= 1));
}

#[test]
fn dump_selected_maps_and_unknown_name() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let r = lab
        .zfw(&["dump", "--map", "tcp_map", "--map", "config_map"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let maps = v["maps"].as_object().unwrap();
    assert_eq!(maps.len(), 2);
    assert_eq!(
        maps["config_map"]["entries"][0]["abi_version"],
        zfw::skel::names::ZFW_ABI_VERSION
    );
    let r = lab.zfw(&["dump", "--map", "no_such_map"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown map 'no_such_map'"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn monitor_reports_a_dropped_connection() {
    require_priv!();
    let lab = Lab::new();
    let web = tcp_listen(&lab.server, "0.0.0.0:8080").serve_echo();
    lab.load();
    let child = zfw_spawn(
        &lab.server,
        &lab.root,
        &["monitor", "--all-drops", "--json", "--iface", "srv0"],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!tcp_echo_ok(
        &lab.client,
        &format!("{SERVER_IP}:{web}"),
        Duration::from_millis(600)
    ));
    // Ctrl-C ends the monitor cleanly
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().expect("monitor exits on SIGINT");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let e = events
        .iter()
        .find(|e| e["proto"] == "tcp")
        .expect("an event for the TCP SYN");
    assert_eq!(e["reason"], "drop_no_rule");
    assert_eq!(e["proto"], "tcp");
    assert_eq!(e["src"], CLIENT_IP);
    assert_eq!(e["dport"], 8080);
    assert_eq!(e["iface"], "srv0");
    assert_eq!(e["direction"], "ingress");
    // a clean exit hands the reader's lease back (every-drop events end)
    assert_eq!(zfw::monitor::reader(&lab.root.maps()).unwrap(), None);
}

#[test]
fn monitor_count_exits_after_n_events() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let child = zfw_spawn(
        &lab.server,
        &lab.root,
        &["monitor", "--all-drops", "--json", "--count", "2"],
    );
    std::thread::sleep(Duration::from_millis(500));
    // two dropped connection attempts: at least two drop events
    for port in [8081, 8082] {
        assert!(!tcp_echo_ok(
            &lab.client,
            &format!("{SERVER_IP}:{port}"),
            Duration::from_millis(400)
        ));
    }
    let out = child.wait_with_output().expect("monitor exits by itself");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    for l in text.lines() {
        let e: serde_json::Value = serde_json::from_str(l).expect("JSON per line");
        assert!(e["reason"].as_str().unwrap().starts_with("drop_"), "{l}");
    }
}
