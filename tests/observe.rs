//! Observability against a live datapath: lost ring-buffer events are
//! counted and reported by `monitor` and `status`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::packet::*;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zfw::maps::defs;

/// `zfw monitor ARGS` in `ns` with stdout into `out` (read while it runs).
fn spawn_to_file(ns: &Netns, root: &BpfRoot, args: &[&str], out: &Path) -> Child {
    let net = format!("--net={}", ns.path().display());
    let d = root.dir.display().to_string();
    // nsenter without --fork execs zfw: the child's pid is zfw's
    Command::new("nsenter")
        .args([net.as_str(), env!("CARGO_BIN_EXE_zfw"), "--bpffs", &d])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("monitor output file"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zfw")
}

/// (events, lost) in monitor's `--json` output (so far); panics on any line
/// that is neither an event nor a `{"lost":N}` record.
fn tally(text: &str) -> (u64, u64) {
    let (mut events, mut lost) = (0, 0);
    // a line still being written has no newline yet
    for l in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        if let Some(n) = v.get("lost") {
            assert_eq!(v.as_object().unwrap().len(), 1, "{l}");
            lost += n.as_u64().expect("lost is a count");
        } else {
            assert_eq!(v["reason"], "drop_no_rule", "{l}");
            events += 1;
        }
    }
    (events, lost)
}

fn drops(root: &BpfRoot) -> u64 {
    let maps = root.maps();
    zfw::skel::names::ZFW_REASON
        .iter()
        .filter(|(n, _)| n.starts_with("ZFW_R_DROP_"))
        .map(|(_, r)| zfw::status::reason_count(&maps, *r as u32).unwrap())
        .sum()
}

/// A datapath with a 4 KiB ring on a veth left down in a namespace of its
/// own: no real packet reaches it, so the only events are the test's.
fn quiet_datapath(tag: &str) -> (Netns, BpfRoot, String) {
    let ns = Netns::new(tag);
    let (dev, peer) = (format!("{tag}0"), format!("{tag}1"));
    ns.ip(&["link", "add", &dev, "type", "veth", "peer", "name", &peer]);
    let root = BpfRoot::in_ns(&ns);
    zfw(
        Some(&ns),
        &root,
        &["load", "--iface", &dev, "--map-size", "rb_map=4096"],
    )
    .ok();
    assert_eq!(root.maps().max_entries(&defs::RB_MAP).unwrap(), 4096);
    (ns, root, dev)
}

/// Run `zfw monitor --all-drops ARGS`, stall it (SIGSTOP) while `sent`
/// drops are emitted by BPF_PROG_TEST_RUN on `dev`, let it go on, wait
/// until `done(output)` (at most 10 s) and a little more, stop it (SIGINT)
/// and return its output.
fn flood_a_stalled_monitor(
    (ns, root, dev): &(Netns, BpfRoot, String),
    args: &[&str],
    sent: u32,
    done: impl Fn(&Path) -> bool,
) -> String {
    let out: PathBuf = std::env::temp_dir().join(format!("{}.out", unique("mon")));
    let mut a = vec!["monitor", "--all-drops"];
    a.extend_from_slice(args);
    let mut child = spawn_to_file(ns, root, &a, &out);
    let pid = Pid::from_raw(child.id() as i32);
    let t0 = Instant::now();
    while root.maps().config().unwrap().log_all_drops == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "monitor never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // its ring buffer is open
    let drops_before = drops(root);
    kill(pid, Signal::SIGSTOP).unwrap();
    let pin = root.dir.join("progs").join(fixture::POLICY);
    let dev = dev.clone();
    let r = ns.enter(move || {
        let ifindex = zfw::ifaddr::index_of(&dev).unwrap();
        let frame = udp("10.9.0.1", 40000, "10.9.0.2", 5353, b"x");
        TestProg::open(&pin)
            .unwrap()
            .run_cb(&frame, ifindex, [0; 5], sent)
            .unwrap()
    });
    assert_eq!(r.retval, TC_ACT_SHOT);
    assert_eq!(drops(root) - drops_before, u64::from(sent));
    kill(pid, Signal::SIGCONT).unwrap();
    let t0 = Instant::now();
    while !done(&out) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500)); // nothing more comes
    kill(pid, Signal::SIGINT).unwrap();
    assert!(child.wait().expect("monitor exits on SIGINT").success());
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    text
}

#[test]
fn monitor_reports_exactly_the_events_a_full_ring_lost() {
    require_priv!();
    const SENT: u32 = 5000;
    let dp = quiet_datapath("obs");
    let text = flood_a_stalled_monitor(&dp, &["--json"], SENT, |out| {
        let (e, l) = tally(&std::fs::read_to_string(out).unwrap_or_default());
        e + l >= u64::from(SENT)
    });
    let (events, lost) = tally(&text);
    eprintln!("{SENT} sent: {events} read, {lost} lost");
    assert!(lost > 0, "a 4 KiB ring cannot hold {SENT} events");
    assert!(events > 0, "the ring's contents were read");
    assert_eq!(
        events + lost,
        u64::from(SENT),
        "{events} read + {lost} lost"
    );
    // status shows the same count (nothing was lost before the monitor)
    let (ns, root, _) = &dp;
    let st = zfw(Some(ns), root, &["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["events_lost"], lost);
    let text = zfw(Some(ns), root, &["status"]).ok().stdout;
    assert!(
        text.contains(&format!("EVENTS LOST (ring buffer full)  {lost}")),
        "{text}"
    );
}

#[test]
fn monitor_text_says_how_many_events_were_lost() {
    require_priv!();
    const SENT: u32 = 1000;
    let dp = quiet_datapath("obt");
    let text = flood_a_stalled_monitor(&dp, &[], SENT, |out| {
        // the ring is drained before the count is looked at
        std::fs::read_to_string(out).is_ok_and(|t| t.contains(" events lost\n"))
    });
    let lost: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_suffix(" events lost"))
        .map(|n| n.parse().expect("a count"))
        .collect();
    let events = text.lines().filter(|l| l.contains("drop_no_rule")).count() as u64;
    assert!(!lost.is_empty(), "{text}");
    assert_eq!(events + lost.iter().sum::<u64>(), u64::from(SENT), "{text}");
}
