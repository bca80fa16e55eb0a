//! The binary in the C zfw's grammar: every refusal with its exit code
//! and stream, and nothing touched; `zfw load --openziti-config`; the help
//! texts naming the legacy grammar.

mod common;

#[path = "legacy/cases.rs"]
mod cases;

use std::process::Command;

use cases::{COMBINATIONS, IFACE_FLAGS, VALUES};
use common::*;

/// A namespace with the interfaces the case tables name: eth0, eth1
/// (altname lan1), ens33, ziti0.
fn case_ns() -> Netns {
    let ns = Netns::new("lgc");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.ip(&[
        "link", "add", "ens33", "type", "veth", "peer", "name", "ziti0",
    ]);
    ns.ip(&["link", "property", "add", "dev", "eth1", "altname", "lan1"]);
    ns
}

fn run(ns: &Netns, root: &BpfRoot, argv: &str) -> Run {
    let w: Vec<&str> = argv.split_whitespace().collect();
    zfw(Some(ns), root, &w)
}

#[test]
fn every_refusal_exits_with_the_c_code_and_changes_nothing() {
    require_priv!();
    let ns = case_ns();
    let root = BpfRoot::in_ns(&ns);
    // `zfw` alone is zfw's own grammar (its help)
    for (argv, msg) in COMBINATIONS.iter().filter(|(a, _)| !a.is_empty()) {
        let r = run(&ns, &root, argv);
        assert_eq!(r.code, 1, "{argv}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{argv}: {}", r.stdout);
        let mut lines = r.stderr.lines();
        assert_eq!(
            lines.next(),
            Some(format!("zfw : {msg}").as_str()),
            "{argv}"
        );
        assert!(
            lines.next().unwrap_or("").starts_with("Usage: zfw -I"),
            "{argv}: {}",
            r.stderr
        );
    }
    let mut values: Vec<(String, String, bool)> = VALUES
        .iter()
        .map(|(a, m, e)| (a.to_string(), m.to_string(), *e))
        .collect();
    for (f, name) in IFACE_FLAGS {
        values.push((
            format!("{f} -d"),
            format!("Interface name or all required as arg to {name}: -d"),
            true,
        ));
        values.push((
            format!("{f} eth7"),
            "Interface not found: eth7".into(),
            false,
        ));
    }
    for (argv, msg, stderr) in &values {
        let r = run(&ns, &root, argv);
        assert_eq!(r.code, 1, "{argv}: {}{}", r.stdout, r.stderr);
        if *stderr {
            assert_eq!(
                r.stderr,
                format!("{msg}\nzfw --help for more info\n"),
                "{argv}"
            );
            assert!(r.stdout.is_empty(), "{argv}");
        } else {
            assert_eq!(r.stdout, format!("{msg}\n"), "{argv}");
            assert!(r.stderr.is_empty(), "{argv}");
        }
    }
    let try_help = "Try `zfw --help' or `zfw --usage' for more information.\n";
    for (argv, first) in [
        ("-K", "zfw: invalid option -- 'K'"),
        ("-I -c", "zfw: option requires an argument -- 'c'"),
        ("--low-port", "zfw: option '--low-port' requires an argument"),
        ("--flush=all", "zfw: option '--flush' doesn't allow an argument"),
        ("--nonsense", "zfw: unrecognized option '--nonsense'"),
        ("--in", "zfw: option '--in' is ambiguous; possibilities: '--insert' '--init-tc' '--interface' '--init-xdp' '--intercepts'"),
        ("-L stray", "zfw: Too many arguments"),
    ] {
        let r = run(&ns, &root, argv);
        assert_eq!(r.code, 64, "{argv}: {}", r.stderr);
        assert_eq!(r.stderr, format!("{first}\n{try_help}"), "{argv}");
    }
    // a runtime refusal exits 1 too (the C zfw's code), and -L -E, the
    // start scripts' readiness probe, says "not loaded" with 1
    let r = run(&ns, &root, "-I -c 10.0.0.1 -m 32 -l 9 -h 8 -t 0 -p tcp");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("INVALID PORT RANGE: low_port(9) > high_port(8)"),
        "{}",
        r.stderr
    );
    assert_eq!(run(&ns, &root, "-L -E").code, 1);
    assert_eq!(run(&ns, &root, "-Q").code, 1);
    assert!(!root.dir.exists(), "nothing was created");
}

#[test]
fn help_texts_name_the_legacy_grammar() {
    let out = Command::new(env!("CARGO_BIN_EXE_zfw"))
        .arg("--help")
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        s.contains("C zfw's command line") && s.contains("Replacing the C zfw under OpenZiti"),
        "{s}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_zfw"))
        .arg("-?")
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for f in [
        "-I, --insert",
        "-t, --tproxy-port=PORT",
        "-V, --version",
        "-Q, --disable-ebpf",
    ] {
        assert!(s.contains(f), "{f}: {s}");
    }
}

#[test]
fn openziti_start_up_config_attaches_like_the_start_scripts() {
    require_priv!();
    let ns = Netns::new("loz");
    for (a, b) in [("i0", "i0p"), ("x0", "x0p")] {
        ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        ns.ip(&["link", "set", a, "up"]);
    }
    let root = BpfRoot::in_ns(&ns);
    let load = |text: &str| {
        let f = TempFile::new("ozc", text);
        zfw(
            Some(&ns),
            &root,
            &["load", "--openziti-config", &f.path_str()],
        )
    };
    let internal = r#"{"InternalInterfaces":[{"Name":"i0"}]"#;
    for (text, err) in [
        (
            "{}",
            "InternalInterfaces: missing: list at least one interface",
        ),
        (
            r#"{"InternalInterfaces":[]}"#,
            "InternalInterfaces: empty: list at least one interface",
        ),
        (
            r#"{"InternalInterfaces":{"Name":"i0"}}"#,
            "InternalInterfaces: expected a list of interfaces",
        ),
        (
            r#"{"InternalInterfaces":["i0"]}"#,
            "InternalInterfaces[0]: expected an object",
        ),
        (
            r#"{"InternalInterfaces":[{"OutboundPassThroughTrack":true}]}"#,
            "InternalInterfaces[0].Name: missing (mandatory)",
        ),
        (
            r#"{"InternalInterfaces":[{"Name":7}]}"#,
            "InternalInterfaces[0].Name: expected an interface name",
        ),
        (
            r#"{"InternalInterfaces":[{"Name":"nope0"}]}"#,
            "InternalInterfaces[0].Name: unknown interface 'nope0'",
        ),
        (
            r#"{"InternalInterfaces":[{"Name":"i0","PerInterfaceRules":"yes"}]}"#,
            "InternalInterfaces[0].PerInterfaceRules: expected true or false",
        ),
        (
            r#"{"InternalInterfaces":[{"Name":"i0","OutboundPassThroughTrak":true}]}"#,
            "InternalInterfaces[0].OutboundPassThroughTrak: unknown field",
        ),
        (
            &format!(r#"{internal},"ExternalInterfaces":[{{"Name":"x0"}},{{"Name":"i0"}}]}}"#),
            "ExternalInterfaces[1].Name: 'i0' is listed twice",
        ),
        (
            &format!(
                r#"{internal},"ExternalInterfaces":[{{"Name":"x0","OutboundPassThroughTrack":1}}]}}"#
            ),
            "ExternalInterfaces[0].OutboundPassThroughTrack: expected true or false",
        ),
        (
            &format!(r#"{internal},"Extra":1}}"#),
            "Extra: unknown field",
        ),
        (
            &format!(r#"{internal},"\u001b[2J":1}}"#),
            "\\x1b[2J: unknown field",
        ),
        ("InternalInterfaces", "line 1, column 1: invalid JSON"),
        (
            &format!(r#"{internal},"InternalInterfaces":[]}}"#),
            ": InternalInterfaces: duplicate key",
        ),
    ] {
        let r = load(text);
        assert_eq!(r.code, 2, "{text}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{text}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("error: /tmp/zfwt-") && r.stderr.contains(err),
            "{text}: {}",
            r.stderr
        );
        assert!(!root.dir.exists(), "{text}: nothing attached");
    }
    let r = zfw(
        Some(&ns),
        &root,
        &["load", "--openziti-config", "/nonexistent/ebpf_config.json"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = zfw(
        Some(&ns),
        &root,
        &["load", "--openziti-config", "/x", "--iface", "i0"],
    );
    assert_eq!(r.code, 2, "one or the other: {}", r.stderr);

    // the defaults: internal = track, no per-interface rules; external =
    // track, per-interface rules
    load(&format!(
        r#"{internal},"ExternalInterfaces":[{{"Name":"x0","OutboundPassThroughTrack":false}}]}}"#
    ))
    .ok();
    let d = |name: &str| {
        let out = Command::new("nsenter")
            .args([
                &format!("--net={}", ns.path().display()),
                env!("CARGO_BIN_EXE_zfw"),
                "-L",
                "-E",
            ])
            .env("ZFW_BPFFS", &root.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ZFW_BPFFS names the root for the legacy grammar"
        );
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let block: String = s
            .split("\n\n")
            .find(|b| b.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {s}"))
            .into();
        block
    };
    for (i, ingress, egress, per_if) in [("i0", 1, 1, 0), ("x0", 1, 0, 1)] {
        let b = d(i);
        assert!(
            b.contains(&format!("tc ingress filter       :{ingress}")),
            "{b}"
        );
        assert!(
            b.contains(&format!("tc egress filter        :{egress}")),
            "{b}"
        );
        assert!(
            b.contains(&format!("per interface           :{per_if}")),
            "{b}"
        );
    }
    // a bad file on a loaded root changes nothing either
    let before = d("x0");
    let r = load(
        r#"{"InternalInterfaces":[{"Name":"x0","PerInterfaceRules":false},{"Name":"gone0"}]}"#,
    );
    assert_eq!(r.code, 2);
    assert_eq!(d("x0"), before);
}
