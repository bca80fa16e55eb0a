//! `zfw top` (README "zfw top"): on a pseudo-terminal, the live view shows
//! the counts of real traffic, refreshes, and `q` / Ctrl-C end it with the
//! terminal restored; without a terminal, its text blocks give the right
//! rates for a known number of BPF_PROG_TEST_RUN drops.

mod common;

use std::io::{BufRead, Read, Write};
use std::num::NonZeroU16;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixture::*;
use common::packet::*;
use common::*;

const ROWS: u16 = 60;
const COLS: u16 = 160;

/// `zfw top` running on a pseudo-terminal of ROWS x COLS, its output fed
/// to a VT100 screen model; killed on drop if it is still running.
struct PtyTop {
    child: Child,
    master: std::fs::File,
    slave: OwnedFd,
    screen: Arc<Mutex<vt100::Parser>>,
}

impl PtyTop {
    fn start(root: &BpfRoot) -> PtyTop {
        let ws = nix::pty::Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let d = root.dir.display().to_string();
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zfw"));
        cmd.args(["--bpffs", &d, "top"])
            .stdin(io(&pty.slave))
            .stdout(io(&pty.slave))
            .stderr(io(&pty.slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a new
        // session whose controlling terminal is the pty (stdin), as a shell
        // would give it
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn zfw top");
        let master = std::fs::File::from(pty.master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            NonZeroU16::new(ROWS).unwrap(),
            NonZeroU16::new(COLS).unwrap(),
            0,
        )));
        let (mut r, s) = (master.try_clone().unwrap(), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            // ends with EIO once the child and our slave copy are gone
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().process(&buf[..n]);
            }
        });
        PtyTop {
            child,
            master,
            slave: pty.slave,
            screen,
        }
    }

    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Wait until the screen satisfies `ok`; the last screen either way.
    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.text();
            if ok(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "zfw top never showed {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// Wait for the exit (at most 5 s); its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "zfw top did not exit; screen:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the pty is back in canonical mode with echo (raw mode off).
    fn cooked(&self) -> bool {
        use nix::sys::termios::{tcgetattr, LocalFlags};
        let t = tcgetattr(&self.slave).unwrap();
        t.local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    }
}

impl Drop for PtyTop {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The words of the table row (one pane of a screen line, between box
/// borders) that starts with `first`.
fn row(screen: &str, first: &str) -> Option<Vec<String>> {
    screen.lines().flat_map(|l| l.split('│')).find_map(|pane| {
        let words: Vec<String> = pane.split_whitespace().map(String::from).collect();
        (words.first().map(String::as_str) == Some(first)).then_some(words)
    })
}

/// The TOTAL column of a reason or verdict row (its last word).
fn total(screen: &str, first: &str) -> Option<u64> {
    row(screen, first)?.last()?.parse().ok()
}

#[test]
fn top_on_a_terminal_shows_real_counts_refreshes_and_quits_on_q() {
    require_priv!();
    const SENT: u64 = 7;
    const MORE: u64 = 5;
    const RULE_FLOWS: u64 = 4;
    let lab = Lab::new();
    let ssh = tcp_listen(&lab.server, "0.0.0.0:22").serve_echo_forever();
    lab.load();
    // an SSH connection held open (an inbound TCP flow, established) and
    // SENT datagrams to a port no rule allows (drop_no_rule)
    let _conn = lab.connect(ssh);
    lab.send_udp(SENT as usize, 9999);
    // and a rule that admits RULE_FLOWS flows: its hits are a top rule
    let add = "rule add --dst 10.77.0.2/32 --proto udp --ports 5310 --service-id svc-top";
    lab.zfw(&add.split(' ').collect::<Vec<_>>()).ok();
    for _ in 0..RULE_FLOWS {
        lab.send_udp(1, 5310);
    }
    std::thread::sleep(Duration::from_millis(200));

    let mut top = PtyTop::start(&lab.root);
    // a screen read while top is drawing holds half a frame: wait for
    // every row this test reads, not only the first one
    let s = top.wait_screen("the drop_no_rule, tcp flow, rule and map rows", |s| {
        total(s, "drop_no_rule") == Some(SENT)
            && row(s, "tcp").is_some()
            && row(s, "ingress").is_some()
            && row(s, "tcp_ingress_map").is_some()
    });
    assert!(s.contains("Packets/s by verdict"), "{s}");
    assert!(total(&s, "drop").unwrap() >= SENT, "{s}");
    assert!(total(&s, "pass_ssh").unwrap() >= 1, "{s}");
    let flows = row(&s, "tcp").unwrap_or_else(|| panic!("no tcp flow row\n{s}"));
    assert_eq!(flows[1..], ["inbound", "established", "1"], "{s}");
    let map = row(&s, "tcp_ingress_map").unwrap_or_else(|| panic!("no map row\n{s}"));
    assert_eq!(map.last().unwrap(), "1/65535", "{s}");
    assert!(s.contains("events lost 0"), "{s}");
    // the rule's row: its key, service id and action, its total of hits
    let rule = row(&s, "ingress").unwrap();
    assert_eq!(
        rule[1..7],
        [
            "udp",
            "10.77.0.2/32",
            "from",
            "0.0.0.0/0",
            "5310",
            "[svc-top]"
        ],
        "{s}"
    );
    assert_eq!(rule.last().unwrap(), &RULE_FLOWS.to_string(), "{s}");
    assert!(s.contains("Top rules by hits/s"), "{s}");
    assert!(s.contains("top rules: 1 shown of 1 with counters"), "{s}");
    // arrays always hold every slot: no fill bar for them
    assert!(row(&s, "config_map").is_none(), "{s}");

    // it refreshes: more drops show up, with a rate
    lab.send_udp(MORE as usize, 9999);
    lab.send_udp(1, 5310);
    let s = top.wait_screen("the new totals", |s| {
        total(s, "drop_no_rule") == Some(SENT + MORE) && total(s, "ingress") == Some(RULE_FLOWS + 1)
    });
    let r = row(&s, "drop_no_rule").unwrap();
    assert_ne!(r[1], "-", "a rate once there is an interval: {s}");

    top.send(b"q");
    let st = top.wait_exit();
    assert!(st.success(), "{st:?}");
    assert!(top.cooked(), "raw mode left on");
    // the reader thread may still be processing the last bytes top wrote
    // before it exited (the escape that leaves the alternate screen)
    let t0 = Instant::now();
    while top.screen.lock().unwrap().screen().alternate_screen() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "alternate screen left on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn top_quits_on_ctrl_c_and_restores_the_terminal() {
    require_priv!();
    let f = Fixture::new();
    let mut top = PtyTop::start(&f.root);
    top.wait_screen("its first frame", |s| s.contains("Packets/s by reason"));
    assert!(!top.cooked(), "raw mode while running");
    top.send(&[0x03]);
    let st = top.wait_exit();
    assert!(st.success(), "{st:?}");
    assert!(top.cooked(), "raw mode left on");
}

/// One text block: interval, and the reason rows (name -> rate, packets,
/// total).
struct Block {
    interval_s: f64,
    rows: Vec<(String, String, String, String)>,
}

fn parse_blocks(out: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    for b in out.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let head = b.lines().next().unwrap();
        let secs = head
            .strip_prefix("zfw top: interval ")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("bad block head: {head}"));
        let rows = b
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.len() == 5 && w[0].contains('_'))
            .map(|w| (w[0].into(), w[2].into(), w[3].into(), w[4].into()))
            .collect();
        blocks.push(Block {
            interval_s: secs.parse().unwrap(),
            rows,
        });
    }
    blocks
}

#[test]
fn top_without_a_terminal_prints_blocks_with_the_right_rates() {
    require_priv!();
    const BEFORE: u64 = 3;
    const SENT: u64 = 250;
    const DENIED: u64 = 40;
    let f = Fixture::new();
    let drop = udp("10.0.0.1", 40000, "10.0.0.2", 9999, b"q");
    let denied = udp("10.0.0.1", 40000, "10.0.0.2", 7000, b"q");
    let deny = zfw::rules::model::Rule {
        direction: zfw::rules::model::Direction::Ingress,
        dst: "10.0.0.0/24".parse().unwrap(),
        src: "0.0.0.0/0".parse().unwrap(),
        proto: "udp".parse().unwrap(),
        ports: "7000".parse().unwrap(),
        action: zfw::rules::model::Action::Deny,
        interfaces: vec![],
        service_id: None,
    };
    zfw::rules::store::add(&f.root.maps(), deny).unwrap();
    for _ in 0..BEFORE {
        assert_eq!(f.ingress(&drop), TC_ACT_SHOT);
    }
    let d = f.root.dir.display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zfw"))
        .args(["--bpffs", &d, "top", "--count", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
            l.lock().unwrap().push(line);
        }
    });
    // after the first block, SENT drops (BPF_PROG_TEST_RUN: milliseconds)
    let t0 = Instant::now();
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("top rules:"))
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "no first block");
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..SENT {
        assert_eq!(f.ingress(&drop), TC_ACT_SHOT);
    }
    // and DENIED packets a rule drops: its hits
    for _ in 0..DENIED {
        assert_eq!(f.ingress(&denied), TC_ACT_SHOT);
    }
    let st = child.wait().unwrap();
    reader.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(st.success(), "{st:?} {err}");
    let text = lines.lock().unwrap().join("\n");
    let blocks = parse_blocks(&text);
    assert_eq!(blocks.len(), 3, "{text}");
    let mut counted = 0;
    for (i, b) in blocks.iter().enumerate() {
        assert!(
            (0.9..3.0).contains(&b.interval_s),
            "block {i}: interval {}\n{text}",
            b.interval_s
        );
        let (_, rate, packets, tot) = b
            .rows
            .iter()
            .find(|r| r.0 == "drop_no_rule")
            .unwrap_or_else(|| panic!("block {i} has no drop_no_rule row\n{text}"));
        let (rate, packets, tot): (f64, u64, u64) = (
            rate.parse().unwrap(),
            packets.parse().unwrap(),
            tot.parse().unwrap(),
        );
        if i == 0 {
            assert_eq!((packets, tot), (0, BEFORE), "{text}");
        }
        counted += packets;
        assert_eq!(tot, BEFORE + counted, "block {i}\n{text}");
        let want = packets as f64 / b.interval_s;
        assert!(
            (rate - want).abs() <= 0.05 + want * 0.002,
            "block {i}: rate {rate}, {packets} packets in {} s\n{text}",
            b.interval_s
        );
    }
    assert_eq!(counted, SENT, "every drop counted once\n{text}");
    // the deny rule's row in each block: HITS in the interval, TOTAL; all
    // DENIED hits land in some interval, the rate is HITS / interval
    let mut hits = 0;
    for (i, b) in text.split("\n\n").enumerate() {
        let w: Vec<&str> = b
            .lines()
            .find(|l| l.starts_with("ingress udp 10.0.0.0/24 from 0.0.0.0/0 7000 deny"))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        if w.is_empty() {
            assert_eq!(hits, 0, "block {i}: the rule row went away\n{text}");
            continue;
        }
        let n = w.len();
        let (rate, d, tot): (f64, u64, u64) = (
            w[n - 3].parse().unwrap(),
            w[n - 2].parse().unwrap(),
            w[n - 1].parse().unwrap(),
        );
        hits += d;
        assert_eq!(tot, hits, "block {i}\n{text}");
        let want = d as f64 / blocks[i].interval_s;
        assert!(
            (rate - want).abs() <= 0.05 + want * 0.002,
            "block {i}\n{text}"
        );
    }
    assert_eq!(hits, DENIED, "{text}");
    assert!(text.contains("EVENTS LOST 0"), "{text}");
}

#[test]
fn top_count_zero_is_a_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_zfw"))
        .args(["top", "--count", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// README and `zfw top --help` describe the same command: its options,
/// both modes, and that there are no per-rule rows yet.
#[test]
fn readme_and_help_document_top() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_zfw"))
        .args(["top", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        readme.contains("  top [--once | --count N]"),
        "README's command list"
    );
    for word in ["--once", "--count", "not a terminal", "Ctrl-C"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
        assert!(readme.contains(word), "README lacks {word}");
    }
    assert!(help.contains("top rules"), "{help}");
    assert!(help.contains("hits/s"), "{help}");
    assert!(readme.contains("top rules by hits/s"), "README");
    // README's example block is what `top` prints: its first and last lines
    assert!(readme.contains("\nzfw top: interval 1.000 s, policy generation"));
    assert!(readme.contains("\nTOP RULE "));
    assert!(readme.contains("\ntop rules: 1 shown of 1 with counters, by hits/s"));
}
