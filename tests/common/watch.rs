//! `zfw watch` running in a namespace for the tests: its log lines are
//! collected as they come; dropped = SIGTERM (a clean stop).
#![allow(dead_code)]

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

pub struct Watch {
    pub child: Spawned,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    /// Start `zfw watch` in `ns` and wait until it follows the root.
    pub fn start(ns: &Netns, root: &BpfRoot) -> Watch {
        Watch::start_with(ns, root, &[])
    }

    /// `start` with `zfw watch OPTIONS`.
    pub fn start_with(ns: &Netns, root: &BpfRoot, options: &[&str]) -> Watch {
        let mut args = vec!["watch"];
        args.extend_from_slice(options);
        let mut child = zfw_spawn(ns, root, &args);
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let out = child.stdout.take().expect("stdout");
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
                l.lock().unwrap().push(line);
            }
        });
        let w = Watch { child, lines };
        assert!(
            w.wait_line("following", Duration::from_secs(10)),
            "zfw watch did not start: {:?}",
            w.log()
        );
        w
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait until a log line contains `what`.
    pub fn wait_line(&self, what: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log().iter().any(|l| l.contains(what))).is_some()
    }

    pub fn signal(&mut self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal zfw watch");
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let st = self.child.wait().expect("wait zfw watch");
        std::mem::forget(self);
        st
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Poll `f` every 5 ms until it is true or `limit` passes; the time it
/// took, or None.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if f() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
