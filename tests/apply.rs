//! `zfw apply` and `zfw export` on real pinned maps in a server namespace:
//! dry run, apply, idempotence, prune, export round trip, stdin, every
//! validation error (exit 2, one line, nothing changed), map-full
//! atomicity checked end to end with a real client, and two applies at once.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_millis(700);
const LONG: Duration = Duration::from_secs(3);

fn export(lab: &Lab) -> Value {
    serde_json::from_str(&lab.zfw(&["export"]).ok().stdout).expect("export is one JSON document")
}

fn apply(lab: &Lab, doc: &Value, extra: &[&str]) -> Run {
    let f = TempFile::new("pol", &doc.to_string());
    let p = f.path_str();
    let mut a = vec!["apply", p.as_str()];
    a.extend_from_slice(extra);
    lab.zfw(&a)
}

fn allow_port(port: u16) -> Value {
    json!({"dst": "10.77.0.0/24", "proto": "tcp", "ports": port.to_string()})
}

#[test]
fn apply_dry_run_idempotence_prune_and_export_round_trip() {
    require_priv!();
    let lab = Lab::new();
    let web = tcp_listen(&lab.server, "0.0.0.0:0").serve_echo();
    lab.load();
    let addr = format!("{SERVER_IP}:{web}");
    assert!(!tcp_echo_ok(&lab.client, &addr, SHORT));
    let empty = export(&lab);

    let doc = json!({
        "interfaces": {"srv0": {"icmp_echo": true}},
        "ingress": [
            allow_port(web),
            {"dst": "10.9.0.0/16", "src": "192.168.0.0/16", "proto": "udp", "ports": "53-54",
             "action": "deny", "interfaces": ["srv0"], "service_id": "dns"},
            {"dst": "fd00::/8", "proto": "tcp", "ports": "443", "action": {"tproxy": 7777}}
        ],
        "egress": [{"dst": "0.0.0.0/0", "proto": "udp", "ports": "1-1023", "action": "deny"}],
        "ddos": {"ports": [443], "allow": ["192.0.2.1"]},
        "dnp3_fcodes": [129]
    });

    // dry run: prints the difference, changes nothing
    let r = apply(&lab, &doc, &["--dry-run"]).ok();
    assert!(
        r.stdout
            .contains(&format!("+ ingress tcp 10.77.0.0/24 {web} allow")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("~ iface srv0 icmp_echo off -> on"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("+ ddos port 443"), "{}", r.stdout);
    assert!(r.stdout.contains("+ dnp3 fcode 129"), "{}", r.stdout);
    assert!(r.stdout.contains("8 change(s)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("dry run: nothing changed"),
        "{}",
        r.stdout
    );
    assert_eq!(export(&lab), empty, "a dry run changed the live state");
    assert!(!tcp_echo_ok(&lab.client, &addr, SHORT));
    assert!(
        r.stderr.is_empty(),
        "no progress line when piped: {:?}",
        r.stderr
    );

    // apply: the policy is in force, end to end
    let r = apply(&lab, &doc, &[]).ok();
    assert!(r.stdout.contains("zfw: applied"), "{}", r.stdout);
    assert!(
        r.stderr.is_empty(),
        "no progress line when piped: {:?}",
        r.stderr
    );
    assert!(tcp_echo_ok(&lab.client, &addr, LONG));
    assert!(ping_ok(&lab.client, SERVER_IP));

    // the same file again: nothing to change; the export applies as a no-op
    let r = apply(&lab, &doc, &[]).ok();
    assert_eq!(r.stdout.trim(), "zfw: nothing to change");
    let live = export(&lab);
    assert_eq!(live["ingress"].as_array().unwrap().len(), 3);
    assert_eq!(live["interfaces"]["srv0"]["icmp_echo"], true);
    assert_eq!(
        live["ddos"],
        json!({"ports": [443], "allow": ["192.0.2.1"]})
    );
    assert_eq!(live["dnp3_fcodes"], json!([129]));
    for extra in [&[][..], &["--prune"][..]] {
        let r = apply(&lab, &live, extra).ok();
        assert_eq!(r.stdout.trim(), "zfw: nothing to change", "{extra:?}");
    }
    // rule list --json prints the same RULE objects, each with its
    // counters (which export leaves out)
    for (dir, args) in [
        ("ingress", &["rule", "list", "--json"][..]),
        ("egress", &["rule", "list", "--egress", "--json"][..]),
    ] {
        let mut listed: Value = serde_json::from_str(&lab.zfw(args).ok().stdout).unwrap();
        for r in listed.as_array_mut().unwrap() {
            let c = r.as_object_mut().unwrap().remove("counters");
            assert!(c.unwrap()["packets"].is_u64(), "{dir}");
        }
        assert_eq!(listed, live[dir], "{dir}");
    }

    // without --prune a smaller file only adds/updates: the web rule stays
    let small = json!({"ingress": [
        {"dst": "10.9.0.0/16", "src": "192.168.0.0/16", "proto": "udp", "ports": "53-54", "action": "allow"}
    ]});
    let r = apply(&lab, &small, &[]).ok();
    assert!(
        r.stdout
            .contains("~ ingress udp 10.9.0.0/16 from 192.168.0.0/16 53-54 allow (was"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 change(s)"), "{}", r.stdout);
    assert!(tcp_echo_ok(&lab.client, &addr, LONG));

    // with --prune everything the file lacks goes (rules, ddos, dnp3, egress)
    let r = apply(&lab, &small, &["--prune"]).ok();
    assert!(
        r.stdout
            .contains(&format!("- ingress tcp 10.77.0.0/24 {web} allow")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("- ddos port 443"), "{}", r.stdout);
    assert!(
        r.stdout.contains("- egress udp 0.0.0.0/0 1-1023 deny"),
        "{}",
        r.stdout
    );
    let after = export(&lab);
    assert_eq!(after["ingress"].as_array().unwrap().len(), 1);
    assert_eq!(after["egress"], json!([]));
    assert_eq!(after["ddos"], json!({"ports": [], "allow": []}));
    assert_eq!(after["dnp3_fcodes"], json!([]));
    assert_eq!(
        after["interfaces"]["srv0"]["icmp_echo"], true,
        "prune keeps settings"
    );
    assert!(
        !tcp_echo_ok(&lab.client, &addr, SHORT),
        "the pruned rule still lets traffic in"
    );

    // back to the full policy from stdin, then the empty export with --prune
    let r = zfw_stdin(
        &lab.server,
        &lab.root,
        &["apply", "-", "--prune"],
        &live.to_string(),
    )
    .ok();
    assert!(r.stdout.contains("zfw: applied"), "{}", r.stdout);
    assert_eq!(export(&lab), live);
    assert!(tcp_echo_ok(&lab.client, &addr, LONG));
    apply(&lab, &empty, &["--prune"]).ok();
    assert_eq!(export(&lab), empty);
}

#[test]
fn every_bad_file_exits_2_with_one_line_and_changes_nothing() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let good = json!({"ingress": [allow_port(80)], "ddos": {"ports": [443]}});
    apply(&lab, &good, &[]).ok();
    let before = export(&lab);

    let rule = |r: Value| {
        let mut rules: Vec<Value> = (0..1500).map(|p| allow_port(1000 + p)).collect();
        rules.push(r);
        json!({"ingress": rules, "ddos": {"ports": [8443]}, "dnp3_fcodes": [5]})
    };
    let cases: Vec<(String, &str)> = vec![
        (rule(json!({"dst": "10.0.0.300/24", "proto": "tcp", "ports": "80"})).to_string(), "ingress[1500].dst: '10.0.0.300/24'"),
        (rule(json!({"dst": "10.0.0.1/24", "proto": "tcp", "ports": "80"})).to_string(), "ingress[1500].dst: '10.0.0.1/24' has host bits set"),
        (rule(json!({"dst": "10.0.0.0/24", "proto": "tcp", "ports": "0"})).to_string(), "ingress[1500].ports:"),
        (rule(json!({"dst": "10.0.0.0/24", "proto": "tcp", "ports": "65536"})).to_string(), "ingress[1500].ports:"),
        (rule(json!({"dst": "10.0.0.0/24", "proto": "tcp", "ports": "90-80"})).to_string(), "ingress[1500].ports: ports '90-80': the range is backwards"),
        (rule(json!({"dst": "10.0.0.0/24", "proto": "sctp", "ports": "80"})).to_string(), "ingress[1500].proto: protocol 'sctp'"),
        (rule(json!({"dst": "10.0.0.0/24", "src": "fd00::/8", "proto": "tcp", "ports": "80"})).to_string(), "ingress[1500].src: fd00::/8 and dst 10.0.0.0/24 are of different address families"),
        (rule(json!({"dst": "10.0.0.0/24", "proto": "tcp", "ports": "80", "prio": 1})).to_string(), "ingress[1500].prio: unknown field"),
        (rule(json!({"dst": "10.0.0.0/24", "proto": "tcp", "ports": "80", "interfaces": ["nosuch0"]})).to_string(), "ingress[1500].interfaces[0]: unknown interface 'nosuch0'"),
        (rule(json!({"dst": "10.0.0.0/24", "proto": "tcp", "ports": "80", "action": {"tproxy": 70000}})).to_string(), "ingress[1500].action:"),
        (json!({"interfaces": {"nosuch0": {"ssh": true}}, "ddos": {"ports": [1]}}).to_string(), "interfaces.nosuch0: no interface named 'nosuch0'"),
        (json!({"interfaces": {"lo": {"ssh": true}}, "ddos": {"ports": [1]}}).to_string(), "interfaces.lo: zfw is not attached to lo"),
        (json!({"interfaces": {"srv0": {"sshd": true}}}).to_string(), "interfaces.srv0.sshd: unknown field"),
        (json!({"ingress": [], "nat": {}}).to_string(), "nat: unknown field"),
        (json!({"ddos": {"ports": [443], "allow": ["not-an-ip"]}}).to_string(), "ddos.allow[0]: 'not-an-ip'"),
        (json!({"dnp3_fcodes": [1, 300]}).to_string(), "dnp3_fcodes[1]: function code 300"),
        ({
            let t = rule(json!({"dst": "10.0.0.0/24", "proto": "tcp", "ports": "80"})).to_string();
            t[..t.len() - 40].to_string()
        }, "truncated JSON"),
        ("{\"ingress\": [\n  {\"dst\": \"10.0.0.0/24\",,}\n]}".into(), "line 2, column 25: invalid JSON"),
    ];
    for (text, want) in &cases {
        let f = TempFile::new("bad", text);
        let r = lab.zfw(&["apply", &f.path_str()]);
        assert_eq!(r.code, 2, "{want}: {}{}", r.stdout, r.stderr);
        let line = r.stderr.trim_end();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(
            line.contains(&format!("{}: ", f.path_str())),
            "names the file: {line}"
        );
        assert!(line.contains(want), "got: {line}\nwant: {want}");
        assert!(r.stdout.is_empty(), "{}", r.stdout);
        // --dry-run validates the same way
        assert_eq!(
            lab.zfw(&["apply", &f.path_str(), "--dry-run", "--prune"])
                .code,
            2
        );
        assert_eq!(export(&lab), before, "{want}: the live state changed");
    }
    let r = zfw_stdin(&lab.server, &lab.root, &["apply", "-"], "{\"ingress\": [");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("<stdin>: line 1, column 13: truncated JSON"),
        "{}",
        r.stderr
    );
    let r = lab.zfw(&["apply", "/nonexistent/policy.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/nonexistent/policy.json: No such file"),
        "{}",
        r.stderr
    );
    assert_eq!(export(&lab), before);
}

#[test]
fn a_full_map_half_way_leaves_the_old_policy_working() {
    require_priv!();
    let lab = Lab::new();
    let web = tcp_listen(&lab.server, "0.0.0.0:0").serve_echo();
    lab.zfw(&[
        "load",
        "--iface",
        "srv0",
        "--map-size",
        "tproxy_map=8",
        "--map-size",
        "ddos_saddr_map=4",
    ])
    .ok();
    let addr = format!("{SERVER_IP}:{web}");
    let old = json!({"ingress": [allow_port(web)], "ddos": {"allow": ["192.0.2.1"]}});
    apply(&lab, &old, &[]).ok();
    assert!(tcp_echo_ok(&lab.client, &addr, LONG));
    let before = export(&lab);

    // more rule keys than the two rule sets can hold beside each other
    let many: Vec<Value> = (1..=10)
        .map(|i| json!({"dst": format!("10.{i}.0.0/16"), "proto": "tcp", "ports": "80"}))
        .collect();
    let r = apply(&lab, &json!({"ingress": many}), &["--prune"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("tproxy_map is full"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing changed"), "{}", r.stderr);
    assert!(!r.stderr.trim_end().contains('\n'), "{}", r.stderr);
    assert!(!r.stdout.contains("applied"), "{}", r.stdout);
    assert_eq!(export(&lab), before);
    assert!(
        tcp_echo_ok(&lab.client, &addr, LONG),
        "the old policy stopped working"
    );

    // the rule set fits but the whitelist does not: no part of it lands
    let allow: Vec<String> = (1..=6).map(|i| format!("198.51.100.{i}")).collect();
    let doc =
        json!({"ingress": [allow_port(web + 1)], "ddos": {"allow": allow}, "dnp3_fcodes": [7]});
    let r = apply(&lab, &doc, &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("ddos_saddr_map is full"), "{}", r.stderr);
    assert_eq!(export(&lab), before);
    assert!(tcp_echo_ok(&lab.client, &addr, LONG));

    // and a policy that fits still applies afterwards
    let r = apply(&lab, &json!({"ingress": [allow_port(web + 1)]}), &[]).ok();
    assert!(r.stdout.contains("zfw: applied"));
    assert!(tcp_echo_ok(&lab.client, &addr, LONG));
}

#[test]
fn two_applies_at_once_end_with_one_complete_policy() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let policy = |base: u16, dnp3: u8| {
        let rules: Vec<Value> = (0..300)
            .map(|i| {
                json!({"dst": format!("10.{}.{}.{}/32", base / 100, i / 250, i % 250),
                       "src": "0.0.0.0/0", "proto": "tcp", "ports": base.to_string(),
                       "action": "allow"})
            })
            .collect();
        json!({"ingress": rules, "ddos": {"ports": [base]}, "dnp3_fcodes": [dnp3]})
    };
    let a = TempFile::new("pa", &policy(1000, 1).to_string());
    let b = TempFile::new("pb", &policy(2000, 2).to_string());
    let (pa, pb) = (a.path_str(), b.path_str());
    for round in 0..4 {
        let ca = zfw_spawn(&lab.server, &lab.root, &["apply", "--prune", &pa]);
        let cb = zfw_spawn(&lab.server, &lab.root, &["apply", "--prune", &pb]);
        for c in [ca, cb] {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let live = export(&lab);
        let want = if live["ddos"]["ports"] == json!([1000]) {
            policy(1000, 1)
        } else {
            policy(2000, 2)
        };
        assert_eq!(
            live["ingress"], want["ingress"],
            "round {round}: a mix of two policies"
        );
        assert_eq!(
            live["ddos"]["ports"], want["ddos"]["ports"],
            "round {round}"
        );
        assert_eq!(live["dnp3_fcodes"], want["dnp3_fcodes"], "round {round}");
        // only the active rule set holds keys: nothing left behind
        let maps = lab.root.maps();
        assert_eq!(
            maps.count(&zfw::maps::defs::TPROXY_MAP).unwrap(),
            300,
            "round {round}"
        );
    }
}

#[test]
fn a_long_apply_shows_progress_on_a_terminal_only() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let rules: Vec<Value> = (0..20_000u32)
        .map(|i| {
            json!({"dst": format!("10.{}.{}.0/24", i / 256, i % 256), "src": "0.0.0.0/0",
                   "proto": "udp", "ports": "5353", "action": "allow"})
        })
        .collect();
    let doc = json!({"ingress": rules});
    let f = TempFile::new("big", &doc.to_string());
    // stderr a terminal (script(1) gives the command a pty)
    let cmd = format!(
        "nsenter --net={} {} --bpffs {} apply {}",
        lab.server.path().display(),
        env!("CARGO_BIN_EXE_zfw"),
        lab.root.dir.display(),
        f.path_str()
    );
    let out = sh("script", &["-qec", &cmd, "/dev/null"]);
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("zfw: apply: validating rules 10000/20000..."),
        "{tty:.300}"
    );
    assert!(
        tty.contains("zfw: apply: writing 20000 rules..."),
        "{tty:.300}"
    );
    assert!(tty.contains("\r\x1b[K"), "the progress line is cleared");
    assert!(tty.contains("20000 change(s): 20000 rule(s) added"));
    let live = export(&lab);
    assert_eq!(live["ingress"], doc["ingress"]);
    // piped: no progress, and the same file is now a no-op
    let r = lab.zfw(&["apply", &f.path_str()]).ok();
    assert!(r.stderr.is_empty(), "{:?}", r.stderr);
    assert_eq!(r.stdout.trim(), "zfw: nothing to change");
}
