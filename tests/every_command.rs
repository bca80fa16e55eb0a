//! Every subcommand (walked from the clap definitions, so a new one is
//! covered without touching this file) against bad situations and bad
//! input: nothing loaded, a user who is not root, unknown options, control
//! characters and huge values.  Each ends with one line on stderr and its
//! exit status, never a panic (101), and changes nothing: the policy
//! (`export`), the rule maps (`dump`) and the TC filters are as before.

mod common;

use std::process::{Command, Stdio};

use clap::CommandFactory;
use common::*;

/// Every leaf command line of zfw's own grammar (`rule add`, `status`...).
fn leaves() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        let subs: Vec<&clap::Command> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push(path.clone());
        }
        for s in subs {
            path.push(s.get_name().to_string());
            walk(s, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(&zfw::cli::Cli::command(), &mut Vec::new(), &mut out);
    out
}

/// What a bad run must look like: not a panic, one line (when it failed),
/// nothing but printable text.
fn check(what: &str, r: &Run, codes: &[i32]) {
    assert_ne!(r.code, 101, "{what}: panicked: {}", r.stderr);
    assert!(
        codes.contains(&r.code),
        "{what}: exit {}: {}",
        r.code,
        r.stderr
    );
    if r.code != 0 {
        assert_eq!(r.stderr.lines().count(), 1, "{what}: {}", r.stderr);
    }
    assert!(
        r.stderr
            .trim_end_matches('\n')
            .chars()
            .all(|c| !c.is_control()),
        "{what}: raw control bytes: {:?}",
        r.stderr
    );
    assert!(
        r.stderr.len() < 1000,
        "{what}: {} bytes of stderr",
        r.stderr.len()
    );
}

fn run(ns: &Netns, root: &str, args: &[String], uid: Option<u32>) -> Run {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", ns.path().display()));
    if let Some(u) = uid {
        // nsenter as root, then zfw as this user
        c.args([
            "setpriv",
            &format!("--reuid={u}"),
            &format!("--regid={u}"),
            "--clear-groups",
            "--",
        ]);
    }
    c.arg(env!("CARGO_BIN_EXE_zfw"))
        .arg("--bpffs")
        .arg(root)
        .args(args)
        .env("ZFW_LOCK_TIMEOUT", "2")
        .stdin(Stdio::null());
    Run::from(c.output().expect("run zfw"))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The bad-input classes, appended to a command line.
fn bad_inputs() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("an unknown option", strs(&["--no-such-option"])),
        ("a control character", strs(&["x\n\u{1}y"])),
        ("a NUL-free huge word", vec!["9".repeat(100_000)]),
        (
            "an option with a control character",
            strs(&["--no\u{1b}[2J"]),
        ),
    ]
}

#[test]
fn every_subcommand_with_nothing_loaded_and_as_another_user() {
    require_priv!();
    let ns = Netns::new("evc");
    let root = BpfRoot::in_ns(&ns);
    let d = root.dir.display().to_string();
    let leaves = leaves();
    assert!(leaves.len() > 20, "{leaves:?}");
    for leaf in &leaves {
        let what = leaf.join(" ");
        // nothing loaded: every command fails in one line or succeeds
        // (completions and manpage need nothing); none creates the root
        let r = run(&ns, &d, leaf, None);
        check(&format!("{what} (nothing loaded)"), &r, &[0, 1, 2]);
        assert!(!root.dir.exists(), "{what} created {d}");
        // not root: the same, and still nothing there
        let r = run(&ns, &d, leaf, Some(65534));
        check(&format!("{what} (as nobody)"), &r, &[0, 1, 2]);
        assert!(!root.dir.exists(), "{what} as nobody created {d}");
        for (class, extra) in bad_inputs() {
            let mut args = leaf.clone();
            args.extend(extra);
            let r = run(&ns, &d, &args, None);
            check(&format!("{what} with {class}"), &r, &[1, 2]);
            assert!(!root.dir.exists(), "{what} with {class} created {d}");
        }
    }
}

/// export, the rule maps decoded, and the TC filters.
fn snapshot(lab: &Lab) -> String {
    let e = lab.zfw(&["export"]).ok().stdout;
    let m = lab
        .zfw(&[
            "dump",
            "--map",
            "tproxy_map",
            "--map",
            "dst_lpm_map",
            "--map",
            "service_map",
            "--map",
            "diag_map",
        ])
        .ok()
        .stdout;
    let mut tc = String::new();
    for dir in ["ingress", "egress"] {
        let out = lab
            .server
            .exec("tc", &["filter", "show", "dev", "srv0", dir]);
        tc.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    format!("{e}\n{m}\n{tc}")
}

#[test]
fn every_subcommand_with_bad_input_changes_nothing_that_is_loaded() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    lab.zfw(&[
        "rule",
        "add",
        "--dst",
        "10.8.0.0/24",
        "--proto",
        "tcp",
        "--ports",
        "80",
        "--service-id",
        "web",
    ])
    .ok();
    let before = snapshot(&lab);
    let d = lab.root.dir.display().to_string();
    let huge = format!("10.0.0.{}", "1".repeat(100_000));
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    for leaf in leaves() {
        for (class, extra) in bad_inputs() {
            let mut args = leaf.clone();
            args.extend(extra);
            cases.push((format!("{} with {class}", leaf.join(" ")), args));
        }
    }
    // bad values of the options that change state
    let rule = |extra: &[&str]| {
        let mut v = strs(&["rule", "add", "--proto", "tcp", "--ports", "80"]);
        v.extend(strs(extra));
        v
    };
    for (what, args) in [
        ("a bad dst", rule(&["--dst", "10.0.0.300/24"])),
        ("a huge dst", rule(&["--dst", &huge])),
        ("a dst with a newline", rule(&["--dst", "10.0.0.0/24\n"])),
        (
            "a service id with NUL-like control",
            rule(&["--dst", "10.1.0.0/24", "--service-id", "a\u{1}b"]),
        ),
        (
            "a service id with a newline",
            rule(&["--dst", "10.1.0.0/24", "--service-id", "a\nb"]),
        ),
        (
            "an interface with a newline",
            rule(&["--dst", "10.1.0.0/24", "--iface", "srv0\n"]),
        ),
        (
            "iface set with a newline",
            strs(&["iface", "set", "srv0\n", "--ssh", "off"]),
        ),
        ("ddos port add x", strs(&["ddos", "port", "add", "x\u{7f}"])),
        (
            "ddos allow add bad",
            strs(&["ddos", "allow", "add", "1.2.3.4\n"]),
        ),
        ("ot dnp3 add 300", strs(&["ot", "dnp3", "add", "300"])),
        ("dump --map bad", strs(&["dump", "--map", "tcp_map\n"])),
        ("load --iface bad", strs(&["load", "--iface", "nope\u{1}"])),
        ("unload --iface bad", strs(&["unload", "--iface", "nope\n"])),
        (
            "apply a missing file",
            strs(&["apply", "/nonexistent/\u{1b}[2J.json"]),
        ),
    ] {
        cases.push((what.to_string(), args));
    }
    for (what, args) in &cases {
        let r = run(&lab.server, &d, args, None);
        check(what, &r, &[1, 2]);
        let r = run(&lab.server, &d, args, Some(65534));
        check(&format!("{what} (as nobody)"), &r, &[1, 2]);
    }
    // every leaf as nobody, as it comes: refused, nothing changed
    for leaf in leaves() {
        let r = run(&lab.server, &d, &leaf, Some(65534));
        check(&format!("{} (as nobody)", leaf.join(" ")), &r, &[0, 1, 2]);
    }
    assert_eq!(snapshot(&lab), before, "bad input changed something");
}
