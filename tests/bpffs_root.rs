//! The bpffs root is trusted only when no one but root can change it; zfw
//! removes only the pins it made, never through a link, and never mounts
//! bpffs over a directory's files (README "Lifecycle").

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use libbpf_rs::{MapHandle, MapType};

/// A directory of another tool's pins on /sys/fs/bpf, removed on drop.
struct Foreign {
    dir: PathBuf,
}

impl Foreign {
    fn new() -> Foreign {
        let dir = PathBuf::from(format!("/sys/fs/bpf/zfwt-{}", unique("frn")));
        std::fs::create_dir(&dir).unwrap();
        Foreign { dir }
    }

    /// Pin a small map of another tool at `path`.
    fn pin(path: &Path) {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let mut m = MapHandle::create(MapType::Hash, Some("foreign"), 4, 4, 1, &opts)
            .expect("create a foreign map");
        m.pin(path).expect("pin the foreign map");
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tc_bpf(ns: &Netns, dev: &str) -> bool {
    let out = ns.exec("tc", &["filter", "show", "dev", dev, "ingress"]);
    String::from_utf8_lossy(&out.stdout).contains("bpf")
}

fn assert_one_line(r: &Run, code: i32, has: &str) {
    assert_eq!(r.code, code, "{}{}", r.stderr, r.stdout);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains(has), "{}", r.stderr);
}

#[test]
fn a_root_another_user_owns_or_may_write_is_refused() {
    require_priv!();
    let lab = Lab::new();
    std::fs::create_dir(&lab.root.dir).unwrap();
    std::os::unix::fs::chown(&lab.root.dir, Some(65534), Some(65534)).unwrap();
    let r = lab.zfw(&["load", "--iface", "srv0"]);
    assert_one_line(&r, 2, "is owned by uid 65534");
    assert!(!lab.root.dir.join("maps").exists(), "nothing pinned");
    assert!(!tc_bpf(&lab.server, "srv0"), "nothing attached");

    std::os::unix::fs::chown(&lab.root.dir, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&lab.root.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = lab.zfw(&["load", "--iface", "srv0"]);
    assert_one_line(&r, 2, "is writable by group or others (mode 777)");
    assert!(!lab.root.dir.join("maps").exists(), "nothing pinned");

    // loaded in a good root that is then handed to another user: every
    // command refuses it, unload --all too, and the pins stay
    std::fs::set_permissions(&lab.root.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    lab.load();
    std::os::unix::fs::chown(&lab.root.dir, Some(65534), None).unwrap();
    for args in [
        &["unload", "--all"][..],
        &["rule", "list"][..],
        &["status"][..],
    ] {
        let r = lab.zfw(args);
        assert_one_line(&r, 2, "is owned by uid 65534");
    }
    assert!(lab.root.dir.join("maps/tcp_map").exists());
    assert!(tc_bpf(&lab.server, "srv0"));
    std::os::unix::fs::chown(&lab.root.dir, Some(0), None).unwrap();
}

#[test]
fn unload_all_removes_only_what_zfw_pinned_and_follows_no_link() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let f = Foreign::new();
    let foreign_pin = f.dir.join("pin");
    Foreign::pin(&foreign_pin);
    let root = &lab.root.dir;
    // a link among zfw's pins, a link among its programs, a pin of another
    // tool in the root itself
    std::os::unix::fs::symlink(&foreign_pin, root.join("maps/evil")).unwrap();
    std::os::unix::fs::symlink(&foreign_pin, root.join("progs/zfw_extra")).unwrap();
    Foreign::pin(&root.join("other_tool"));

    let r = lab.zfw(&["unload", "--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("left ")
            && r.stderr.contains("maps/evil")
            && r.stderr.contains("other_tool"),
        "{}",
        r.stderr
    );
    assert!(foreign_pin.exists(), "the foreign pin survives");
    assert!(
        root.join("other_tool").exists(),
        "the foreign file survives"
    );
    assert!(std::fs::symlink_metadata(root.join("maps/evil")).is_ok());
    assert!(std::fs::symlink_metadata(root.join("progs/zfw_extra")).is_ok());
    for m in zfw::maps::defs::pinned() {
        assert!(
            !root.join("maps").join(m.name).exists(),
            "{} unpinned",
            m.name
        );
    }
    assert!(!root.join("progs/zfw_policy").exists());
    assert!(!tc_bpf(&lab.server, "srv0"));
}

#[test]
fn a_maps_directory_that_is_a_link_is_refused_and_its_target_survives() {
    require_priv!();
    let lab = Lab::new();
    let f = Foreign::new();
    // another tool's directory holding pins with zfw's map names, and a
    // root whose maps/ leads there
    Foreign::pin(&f.dir.join("config_map"));
    Foreign::pin(&f.dir.join("tcp_map"));
    let root = &lab.root.dir;
    std::fs::create_dir(root).unwrap();
    std::os::unix::fs::symlink(&f.dir, root.join("maps")).unwrap();
    for args in [
        &["unload", "--all"][..],
        &["rule", "list"][..],
        &["load", "--iface", "srv0"][..],
    ] {
        let r = lab.zfw(args);
        assert_one_line(&r, 2, "is a symbolic link");
    }
    assert!(f.dir.join("tcp_map").exists(), "the foreign pins survive");
    assert!(
        f.dir.join("config_map").exists(),
        "the foreign pins survive"
    );
    assert!(!tc_bpf(&lab.server, "srv0"), "nothing attached");
}

#[test]
fn bpffs_is_mounted_only_on_a_new_or_empty_directory() {
    require_priv!();
    let lab = Lab::new();
    let dir = PathBuf::from(format!("/tmp/zfwt-{}", unique("dir")));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    let d = dir.display().to_string();
    let z = env!("CARGO_BIN_EXE_zfw");
    let run = |args: &[&str]| {
        let mut a = vec!["--bpffs", &d];
        a.extend_from_slice(args);
        let out = lab.server.exec(z, &a);
        Run::from(out)
    };
    let mounted = || {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(d.as_str()))
    };
    let r = run(&["load", "--iface", "srv0"]);
    assert_one_line(&r, 2, "not on bpffs and not empty");
    assert!(!mounted(), "nothing mounted over {d}");
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "mine"
    );
    assert!(!tc_bpf(&lab.server, "srv0"));

    // empty: zfw mounts its own bpffs there, and takes it away again
    std::fs::remove_file(dir.join("keep.txt")).unwrap();
    run(&["load", "--iface", "srv0"]).ok();
    assert!(mounted());
    run(&["unload", "--all"]).ok();
    assert!(!mounted());
    let _ = std::fs::remove_dir(&dir);
}
