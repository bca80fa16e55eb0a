//! Output that cannot be written (README "Command line"): a closed pipe
//! ends the command quietly with exit 141, as coreutils; any other write
//! error is one line on stderr and exit 1; never a panic (exit 101).

mod common;

use std::process::{Command, Stdio};

use common::*;

/// Commands that print, each run with stdout closed and on /dev/full.
const PRINTERS: &[&[&str]] = &[
    &["rule", "list"],
    &["rule", "list", "--json"],
    &["export"],
    &["status"],
    &["status", "--json"],
    &["dump"],
    &["dump", "--map", "diag_map"],
    &["conntrack", "list"],
    &["conntrack", "list", "--json"],
    &["iface", "show"],
    &["iface", "show", "--json"],
    &["ddos", "port", "list"],
    &["gc"],
    &["completions", "bash"],
    &["manpage"],
    &["--help"],
    &["-L"],
    &["-L", "-E"],
];

fn zfw_cmd(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", lab.server.path().display()))
        .arg(env!("CARGO_BIN_EXE_zfw"))
        .arg("--bpffs")
        .arg(&lab.root.dir)
        .args(args)
        .stdin(Stdio::null());
    c
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_one_line() {
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
    ])
    .ok();
    lab.zfw(&["ddos", "port", "add", "443"]).ok();
    for args in PRINTERS {
        // the reader is gone before zfw writes a byte
        let (rd, wr) = nix::unistd::pipe().unwrap();
        drop(rd);
        let out = zfw_cmd(&lab, args)
            .stdout(Stdio::from(wr))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let r = Run::from(out);
        assert_eq!(r.code, 141, "{args:?} on a closed pipe: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?} on a closed pipe");

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = zfw_cmd(&lab, args)
            .stdout(Stdio::from(full))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let r = Run::from(out);
        assert_eq!(r.code, 1, "{args:?} > /dev/full: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("writing stdout: No space left on device"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // as the issue ran it: a shell pipeline into head -c1
    for cmd in ["export", "status --json", "dump", "rule list"] {
        let line = format!(
            "{} --bpffs {} {cmd} | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}}",
            env!("CARGO_BIN_EXE_zfw"),
            lab.root.dir.display()
        );
        let out = lab.server.exec("bash", &["-c", &line]);
        let r = Run::from(out);
        let code = r.stdout.trim();
        assert!(
            code == "0" || code == "141",
            "{cmd} | head -c1: exit {code}: {}",
            r.stderr
        );
        assert_eq!(r.stderr, "", "{cmd} | head -c1");
    }
}
