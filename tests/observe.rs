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

/// A `zfw monitor` the test started: killed when the test ends, also by a
/// failed assertion (a leftover reader would hold its root's lease).
struct Monitor(Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Monitor {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Monitor {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// `zfw monitor ARGS` in `ns` with stdout into `out` (read while it runs).
fn spawn_to_file(ns: &Netns, root: &BpfRoot, args: &[&str], out: &Path) -> Monitor {
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
        .map(Monitor)
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

/// Start `monitor ARGS` to `out` and wait until it holds the reader's lease.
fn reading_monitor(ns: &Netns, root: &BpfRoot, args: &[&str], out: &Path) -> Monitor {
    let m = spawn_to_file(ns, root, args, out);
    let t0 = Instant::now();
    while lease_holder(root) != Some(m.id()) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "monitor never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // its ring buffer is open
    m
}

/// The pid of the monitor holding the reader's lease.
fn lease_holder(root: &BpfRoot) -> Option<u32> {
    zfw::monitor::reader(&root.maps())
        .unwrap()
        .map(|(pid, _)| pid)
}

/// `n` drops on `dev` by BPF_PROG_TEST_RUN of the policy program (each one
/// an event if the all-drops lease holds).
fn send_drops(ns: &Netns, root: &BpfRoot, dev: &str, n: u32) {
    let drops_before = drops(root);
    let pin = root.dir.join("progs").join(fixture::POLICY);
    let dev = dev.to_string();
    let r = ns.enter(move || {
        let ifindex = zfw::ifaddr::index_of(&dev).unwrap();
        let frame = udp("10.9.0.1", 40000, "10.9.0.2", 5353, b"x");
        TestProg::open(&pin)
            .unwrap()
            .run_cb(&frame, ifindex, [0; 5], n)
            .unwrap()
    });
    assert_eq!(r.retval, TC_ACT_SHOT);
    assert_eq!(drops(root) - drops_before, u64::from(n));
}

/// Wait until `monitor`'s output file has `n` events (at most 5 s), then
/// return (events, lost) so far.
fn wait_events(out: &Path, n: u64) -> (u64, u64) {
    let t0 = Instant::now();
    loop {
        let got = tally(&std::fs::read_to_string(out).unwrap_or_default());
        if got.0 + got.1 >= n || t0.elapsed() > Duration::from_secs(5) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let mut child = reading_monitor(ns, root, &a, &out);
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    send_drops(ns, root, dev, sent);
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

#[test]
fn a_second_monitor_is_refused_while_one_reads_and_takes_over_when_it_exits() {
    require_priv!();
    let dp = quiet_datapath("oba");
    let (ns, root, dev) = &dp;
    let (out_a, out_b) = (
        std::env::temp_dir().join(format!("{}.out", unique("mona"))),
        std::env::temp_dir().join(format!("{}.out", unique("monb"))),
    );
    let mut a = reading_monitor(ns, root, &["monitor", "--all-drops", "--json"], &out_a);
    // a second reader would take part of a's events: refused, in one line
    let out_r = std::env::temp_dir().join(format!("{}.out", unique("monr")));
    let mut second = spawn_to_file(ns, root, &["monitor", "--json", "--count", "1"], &out_r);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "a second monitor was not refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    let _ = std::fs::remove_file(&out_r);
    assert_eq!(status.code(), Some(1), "{err}");
    let want = format!("another monitor (pid {}) is reading events", a.id());
    assert!(
        err.contains(&want) && err.trim().lines().count() == 1,
        "{err}"
    );
    // longer than a lease: a's renewals keep it
    std::thread::sleep(Duration::from_millis(
        zfw::skel::names::ZFW_MONITOR_LEASE_MS as u64 + 500,
    ));
    assert_eq!(lease_holder(root), Some(a.id()));
    send_drops(ns, root, dev, 10);
    assert_eq!(wait_events(&out_a, 10), (10, 0), "a reads every drop");
    kill(Pid::from_raw(a.id() as i32), Signal::SIGINT).unwrap();
    assert!(a.wait().unwrap().success());
    // a clean exit hands over at once
    assert_eq!(lease_holder(root), None);
    let mut b = reading_monitor(ns, root, &["monitor", "--all-drops", "--json"], &out_b);
    send_drops(ns, root, dev, 10);
    assert_eq!(wait_events(&out_b, 10), (10, 0), "b reads every drop");
    kill(Pid::from_raw(b.id() as i32), Signal::SIGINT).unwrap();
    assert!(b.wait().unwrap().success());
    let _ = std::fs::remove_file(&out_a);
    let _ = std::fs::remove_file(&out_b);
}

#[test]
fn a_killed_all_drops_monitor_stops_drop_events_within_its_lease() {
    require_priv!();
    let dp = quiet_datapath("obk");
    let (ns, root, dev) = &dp;
    let lease = Duration::from_millis(zfw::skel::names::ZFW_MONITOR_LEASE_MS as u64);
    let tmp = |tag: &str| std::env::temp_dir().join(format!("{}.out", unique(tag)));
    let (out_k, out_p, out_k2) = (tmp("monk"), tmp("monp"), tmp("monk2"));

    // a reader killed: the next monitor takes over at once (its process is
    // gone), long before the lease would run out
    let mut k = reading_monitor(ns, root, &["monitor", "--all-drops", "--json"], &out_k);
    let text = zfw(Some(ns), root, &["status"]).ok().stdout;
    let want = format!("MONITOR  pid {} reading events (every drop)", k.id());
    assert!(text.contains(&want), "{text}");
    kill(Pid::from_raw(k.id() as i32), Signal::SIGKILL).unwrap();
    let _ = k.wait();
    let killed = Instant::now();
    let mut p = reading_monitor(ns, root, &["monitor", "--json"], &out_p);
    assert!(killed.elapsed() < lease, "took {:?}", killed.elapsed());
    // a plain monitor: no drop events
    send_drops(ns, root, dev, 10);
    std::thread::sleep(Duration::from_millis(700));
    kill(Pid::from_raw(p.id() as i32), Signal::SIGINT).unwrap();
    assert!(p.wait().unwrap().success());
    let text = std::fs::read_to_string(&out_p).unwrap();
    assert_eq!(
        tally(&text),
        (0, 0),
        "drop events for a plain monitor: {text}"
    );

    // a reader killed and nobody after it: its every-drop events end when
    // the lease runs out, with no zfw command in between.  Drops sent then
    // with no reader are not emitted: the 4 KiB ring would overflow and
    // count them as lost
    let mut k2 = reading_monitor(ns, root, &["monitor", "--all-drops", "--json"], &out_k2);
    kill(Pid::from_raw(k2.id() as i32), Signal::SIGKILL).unwrap();
    let _ = k2.wait();
    let killed = Instant::now();
    while zfw::monitor::reader(&root.maps()).unwrap().is_some() {
        assert!(
            killed.elapsed() < lease + Duration::from_millis(100),
            "the lease outlived its term"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let lost = zfw::monitor::events_lost(&root.maps()).unwrap();
    send_drops(ns, root, dev, 5000);
    assert_eq!(
        zfw::monitor::events_lost(&root.maps()).unwrap(),
        lost,
        "drops were still emitted after the lease ran out"
    );
    let st: serde_json::Value =
        serde_json::from_str(&zfw(Some(ns), root, &["status", "--json"]).ok().stdout).unwrap();
    assert_eq!(st["monitor"], serde_json::Value::Null);
    for f in [out_k, out_p, out_k2] {
        let _ = std::fs::remove_file(f);
    }
}
