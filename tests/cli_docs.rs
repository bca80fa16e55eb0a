//! Generated documentation matches the real command line (no root needed).

use std::process::Command;

fn zfw(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_zfw"))
        .args(args)
        .output()
        .expect("run zfw");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn manpage_and_completions_come_from_the_clap_definitions() {
    let (code, man, _) = zfw(&["manpage"]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH zfw 1"));
    for cmd in ["load", "unload", "status", "conntrack", "dump", "monitor"] {
        assert!(man.contains(cmd), "man page lacks {cmd}");
    }
    let (code, bash, _) = zfw(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(bash.contains("--bpffs") && bash.contains("unload"));
    let (code, _, err) = zfw(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value"), "{err}");
}

#[test]
fn usage_errors_exit_2_with_one_line_reasons() {
    let (code, _, err) = zfw(&["monitor", "--count", "0"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = zfw(&["dump", "--map", "nope"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("error: unknown map 'nope'"), "{err}");
}
