//! The `zfw rule` and `zfw iface` command lines: listing, JSON, errors
//! (exit 2, one line, nothing changed), idempotence, capacity.

mod common;

use common::*;
use serde_json::Value;

fn rules_json(lab: &Lab, egress: bool) -> Value {
    let mut a = vec!["rule", "list", "--json"];
    if egress {
        a.push("--egress");
    }
    serde_json::from_str(&lab.zfw(&a).ok().stdout).expect("one JSON document")
}

fn add(lab: &Lab, args: &[&str]) -> Run {
    let mut a = vec!["rule", "add"];
    a.extend_from_slice(args);
    lab.zfw(&a)
}

#[test]
fn list_prints_a_table_and_rule_objects() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    add(
        &lab,
        &[
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "80-90",
            "--service-id",
            "svc1",
        ],
    )
    .ok();
    add(
        &lab,
        &[
            "--dst",
            "10.1.0.0/16",
            "--src",
            "192.168.0.0/16",
            "--proto",
            "udp",
            "--ports",
            "53",
            "--deny",
            "--iface",
            "srv0",
        ],
    )
    .ok();
    add(
        &lab,
        &[
            "--dst",
            "fd00::/8",
            "--proto",
            "tcp",
            "--ports",
            "443",
            "--tproxy-port",
            "7777",
        ],
    )
    .ok();
    add(
        &lab,
        &[
            "--dst",
            "198.51.100.0/24",
            "--proto",
            "tcp",
            "--ports",
            "25",
            "--egress",
        ],
    )
    .ok();

    let v = rules_json(&lab, false);
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["dst"], "10.1.0.0/16");
    assert_eq!(a[0]["src"], "0.0.0.0/0");
    assert_eq!(a[0]["ports"], "80-90");
    assert_eq!(a[0]["action"], "allow");
    assert_eq!(a[0]["service_id"], "svc1");
    assert_eq!(a[1]["action"], "deny");
    assert_eq!(a[1]["proto"], "udp");
    assert_eq!(a[1]["interfaces"][0], "srv0");
    assert_eq!(a[2]["action"]["tproxy"], 7777);
    assert_eq!(a[2]["src"], "::/0");
    let e = rules_json(&lab, true);
    assert_eq!(e.as_array().unwrap().len(), 1);
    assert_eq!(e[0]["dst"], "198.51.100.0/24");

    let t = lab.zfw(&["rule", "list"]).ok().stdout;
    let head = t.lines().next().unwrap();
    for col in [
        "type",
        "service id",
        "proto",
        "origin",
        "destination",
        "ports",
        "mapping",
        "interfaces",
    ] {
        assert!(head.contains(col), "{head}");
    }
    assert!(
        t.contains("DENY") && t.contains("192.168.0.0/16") && t.contains("srv0"),
        "{t}"
    );
    assert!(t.contains("-> 7777"), "{t}");
    let f = lab
        .zfw(&[
            "rule",
            "list",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "udp",
            "--json",
        ])
        .ok();
    let f: Value = serde_json::from_str(&f.stdout).unwrap();
    assert_eq!(f.as_array().unwrap().len(), 1);

    // flush one direction only
    lab.zfw(&["rule", "flush", "--egress"]).ok();
    assert_eq!(rules_json(&lab, true).as_array().unwrap().len(), 0);
    assert_eq!(rules_json(&lab, false).as_array().unwrap().len(), 3);
    lab.zfw(&["rule", "flush"]).ok();
    assert_eq!(rules_json(&lab, false).as_array().unwrap().len(), 0);
}

#[test]
fn bad_input_exits_2_with_one_line_and_changes_nothing() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    add(
        &lab,
        &["--dst", "10.1.0.0/16", "--proto", "tcp", "--ports", "80"],
    )
    .ok();
    let before = rules_json(&lab, false);
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.2.0/16",
            "--proto",
            "tcp",
            "--ports",
            "80",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/33",
            "--proto",
            "tcp",
            "--ports",
            "80",
        ],
        vec![
            "rule", "add", "--dst", "banana", "--proto", "tcp", "--ports", "80",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "icmp",
            "--ports",
            "80",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "90-80",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "0",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--src",
            "fd00::/8",
            "--proto",
            "tcp",
            "--ports",
            "80",
        ],
        vec![
            "rule",
            "add",
            "--egress",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "81",
            "--tunnel",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "81",
            "--tproxy-port",
            "0",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "81",
            "--tproxy-port",
            "80",
            "--egress",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "81",
            "--iface",
            "nosuch0",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "81",
            "--service-id",
            "a-service-id-much-longer-than-32-chars",
        ],
        vec![
            "rule",
            "add",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "81",
            "--iface",
            "lo",
            "--iface",
            "lo",
            "--iface",
            "lo",
            "--iface",
            "lo",
            "--iface",
            "lo",
        ],
        vec![
            "rule",
            "del",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "81",
        ],
        vec![
            "rule",
            "del",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "udp",
            "--ports",
            "80",
        ],
        vec![
            "rule",
            "del",
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "80",
            "--egress",
        ],
        vec!["iface", "set", "srv0"],
        vec!["iface", "set", "nosuch0", "--ssh", "off"],
        vec!["iface", "set", "lo", "--ssh", "off"],
        vec!["iface", "show", "nosuch0"],
    ];
    for c in &cases {
        let r = lab.zfw(c);
        assert_eq!(r.code, 2, "{c:?}: {}{}", r.stdout, r.stderr);
        assert_eq!(
            r.stderr.trim_end().lines().count(),
            1,
            "{c:?}: one line: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{c:?} printed {}", r.stdout);
    }
    assert_eq!(rules_json(&lab, false), before);
    // an ingress tunnel rule is fine (the tun comes with load --tun)
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.1.0.0/16",
        "--proto",
        "tcp",
        "--ports",
        "81",
        "--tunnel",
    ])
    .ok();
    let listed = lab.zfw(&["rule", "list", "--json"]).ok();
    assert!(listed.stdout.contains("\"tunnel\""), "{}", listed.stdout);
    // nothing loaded: a runtime error, exit 1
    let other = BpfRoot::new();
    let r = zfw(Some(&lab.server), &other, &["rule", "list"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not loaded"), "{}", r.stderr);
}

#[test]
fn identical_add_is_a_no_op_and_a_changed_action_updates_in_place() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let r = ["--dst", "10.1.0.0/16", "--proto", "tcp", "--ports", "80"];
    add(&lab, &r).ok();
    add(
        &lab,
        &[
            "--dst",
            "10.1.0.0/16",
            "--proto",
            "tcp",
            "--ports",
            "70-90",
            "--deny",
        ],
    )
    .ok();
    let out = add(&lab, &r).ok().stdout;
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(rules_json(&lab, false).as_array().unwrap().len(), 2);
    let mut deny = r.to_vec();
    deny.push("--deny");
    let out = add(&lab, &deny).ok().stdout;
    assert!(out.contains("updated"), "{out}");
    let v = rules_json(&lab, false);
    assert_eq!(v[0]["action"], "deny", "kept its place (first)");
    assert_eq!(v[1]["ports"], "70-90");
    lab.zfw(&[
        "rule",
        "del",
        "--dst",
        "10.1.0.0/16",
        "--proto",
        "tcp",
        "--ports",
        "80",
    ])
    .ok();
    assert_eq!(rules_json(&lab, false).as_array().unwrap().len(), 1);
}

#[test]
fn a_full_map_is_a_clear_error_and_the_rules_stay() {
    require_priv!();
    let lab = Lab::new();
    // both rule sets live side by side while a change is made: 6 keys hold
    // a live set of at most 3 while the next one is written
    lab.zfw(&["load", "--iface", "srv0", "--map-size", "tproxy_map=6"])
        .ok();
    let mut n = 0;
    let err = loop {
        let dst = format!("10.{n}.0.0/16");
        let r = add(&lab, &["--dst", &dst, "--proto", "tcp", "--ports", "80"]);
        if r.code != 0 {
            break r;
        }
        n += 1;
        assert!(n < 10, "tproxy_map never filled");
    };
    assert_eq!(err.code, 1);
    assert!(err.stderr.contains("tproxy_map is full"), "{}", err.stderr);
    assert_eq!(err.stderr.trim_end().lines().count(), 1);
    assert_eq!(rules_json(&lab, false).as_array().unwrap().len(), n);
    // the live rules still work, deleting still works
    lab.zfw(&[
        "rule",
        "del",
        "--dst",
        "10.0.0.0/16",
        "--proto",
        "tcp",
        "--ports",
        "80",
    ])
    .ok();
    assert_eq!(rules_json(&lab, false).as_array().unwrap().len(), n - 1);
}

#[test]
fn iface_set_stores_and_shows_every_setting() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let flags = [
        "icmp-echo",
        "ssh",
        "pass-non-tuple",
        "ipv6",
        "verbose",
        "per-interface-rules",
        "outbound-filter",
        "masquerade",
        "vrrp",
        "eapol",
        "ddos",
        "ot-filtering",
    ];
    for on in ["on", "off"] {
        let mut a = vec!["iface", "set", "srv0"];
        for f in &flags {
            a.push(Box::leak(format!("--{f}").into_boxed_str()));
            a.push(on);
        }
        lab.zfw(&a).ok();
        let v: Value =
            serde_json::from_str(&lab.zfw(&["iface", "show", "--json"]).ok().stdout).unwrap();
        let s = &v[0]["settings"];
        for f in &flags {
            assert_eq!(s[f.replace('-', "_")], on == "on", "{f} {on}");
        }
        let t = lab.zfw(&["iface", "show", "srv0"]).ok().stdout;
        assert!(t.contains("masquerade") && t.contains("srv0"), "{t}");
    }
    let r = lab.zfw(&["iface", "set", "srv0", "--ssh", "maybe"]);
    assert_eq!(r.code, 2);
}
