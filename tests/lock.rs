//! The bpffs root's lock (README "Lifecycle"): a root-owned 0600 file
//! under /run/zfw that no other user can open; a command that finds it
//! taken says who holds it, once, and gives up after ZFW_LOCK_TIMEOUT.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NOBODY: u32 = 65534;

/// `zfw --bpffs ROOT ARGS` in `ns` with extra environment.
fn zfw_env(ns: &Netns, root: &BpfRoot, env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg(env!("CARGO_BIN_EXE_zfw"))
        .arg("--bpffs")
        .arg(&root.dir)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run zfw");
    Run::from(out)
}

const RULE: &[&str] = &[
    "rule",
    "add",
    "--dst",
    "10.9.0.0/24",
    "--proto",
    "tcp",
    "--ports",
    "80",
];

/// A process of user nobody holding flock(1) on `path` for a few seconds;
/// None when it could not take it.  Killed on drop.
struct Held(std::process::Child);

impl Held {
    fn take(path: &std::path::Path) -> Option<Held> {
        let mut child = Command::new("flock")
            .args(["-n", "-E", "9"])
            .arg(path)
            .args(["-c", "echo held; sleep 5"])
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn flock as nobody");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() == "held" {
            Some(Held(child))
        } else {
            let _ = child.wait();
            None
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_unprivileged_user_cannot_stall_rule_add() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    // the root as a umask-022 mkdir leaves it: anyone may open it
    std::fs::set_permissions(&lab.root.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lock_file = lab.root.root().lock_path();
    assert!(lock_file.exists(), "load made the lock file");
    let md = std::fs::symlink_metadata(&lock_file).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600, "{lock_file:?}");
    assert!(
        Held::take(&lock_file).is_none(),
        "nobody must not be able to take the lock file"
    );
    // nobody holds what it can open: the root directory
    let _dir = Held::take(&lab.root.dir).expect("nobody can flock the 0755 root dir");
    let t = Instant::now();
    let r = zfw_env(&lab.server, &lab.root, &[("ZFW_LOCK_TIMEOUT", "3")], RULE).ok();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "rule add waited {took:?}");
    assert!(!r.stderr.contains("waiting"), "{}", r.stderr);
}

#[test]
fn a_held_lock_is_reported_once_and_times_out() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let before = lab.zfw(&["rule", "list", "--json"]).ok().stdout;
    let held = lab.root.root().lock().expect("take the lock");
    let t = Instant::now();
    let r = zfw_env(&lab.server, &lab.root, &[("ZFW_LOCK_TIMEOUT", "0.5")], RULE);
    let took = t.elapsed();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    let me = format!("pid {} (", std::process::id());
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(
        lines[0].starts_with("zfw: waiting for ") && lines[0].contains(&me),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("(up to 0.5 s)"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("error: timed out after 0.5 s waiting for ") && lines[1].contains(&me),
        "{}",
        lines[1]
    );
    drop(held);
    assert_eq!(lab.zfw(&["rule", "list", "--json"]).ok().stdout, before);

    // a bad timeout is a usage error, before anything changes
    let r = zfw_env(
        &lab.server,
        &lab.root,
        &[("ZFW_LOCK_TIMEOUT", "soon\n")],
        RULE,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("ZFW_LOCK_TIMEOUT: 'soon\\x0a'"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.zfw(&["rule", "list", "--json"]).ok().stdout, before);

    // free again: no message, no wait
    let r = zfw_env(&lab.server, &lab.root, &[("ZFW_LOCK_TIMEOUT", "0")], RULE).ok();
    assert!(r.stderr.is_empty(), "{}", r.stderr);

    // unload --all removes the root and its lock file
    let lock_file = lab.root.root().lock_path();
    lab.zfw(&["unload", "--all"]).ok();
    assert!(!lock_file.exists(), "{lock_file:?}");
}

#[test]
fn a_waiting_command_goes_on_when_the_lock_is_released() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let held = lab.root.root().lock().expect("take the lock");
    let waiter = std::thread::spawn({
        let ns = lab.server.path();
        let dir = lab.root.dir.clone();
        move || {
            Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .arg(env!("CARGO_BIN_EXE_zfw"))
                .arg("--bpffs")
                .arg(&dir)
                .args(RULE)
                .env("ZFW_LOCK_TIMEOUT", "10")
                .output()
                .expect("run zfw")
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let out = waiter.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("zfw: waiting for "), "{err}");
    let list = lab.zfw(&["rule", "list", "--json"]).ok().stdout;
    assert!(list.contains("10.9.0.0/24"), "{list}");
}
