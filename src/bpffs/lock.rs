//! The lock that serialises zfw processes working on one bpffs root
//! (README "Lifecycle", "The lock").
//!
//! It is an exclusive flock on a file of its own, `/run/zfw/NAME.lock`
//! (NAME: the root's canonical path), in a directory only root may enter
//! (0700), created 0600 with O_NOFOLLOW and checked (a regular file owned by
//! the user zfw runs as, no access for group or others) before it is
//! trusted.  An unprivileged user can open neither, so cannot stall root's
//! commands (the bpffs root directory itself is world-readable; a lock on it
//! could be taken by anyone).
//!
//! A command that finds the lock taken says once, on stderr, who holds it
//! (the holder's pid from /proc/locks and its command line) and waits at
//! most the lock timeout (`--lock-timeout SECS`, env ZFW_LOCK_TIMEOUT,
//! default 60 s; 0: do not wait), then fails with one line (exit 1).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::Root;
use crate::error::{shown, Context, Error, Result};

/// The directory of the lock files (root's, mode 0700).
pub const LOCK_DIR: &str = "/run/zfw";
/// How long a command waits for the lock unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The environment variable that sets the wait (seconds).
pub const TIMEOUT_ENV: &str = "ZFW_LOCK_TIMEOUT";
/// Longest wait accepted (a day): anything longer is a typo.
const MAX_TIMEOUT_S: f64 = 86_400.0;
/// How often a waiting command tries again.
const POLL: Duration = Duration::from_millis(20);

/// Held while a command changes state; released on drop (fd close).
pub struct Lock {
    _f: Flock<File>,
    dir: File,
    name: String,
}

impl Lock {
    /// Remove the lock file while holding it (`unload --all`: the root is
    /// gone).  A command waiting on the old file notices that it is no
    /// longer linked and takes the lock on a new one.
    pub fn remove(self) -> Result<()> {
        unlinkat(
            Some(self.dir.as_raw_fd()),
            self.name.as_str(),
            UnlinkatFlags::NoRemoveDir,
        )
        .ctx(|| format!("removing the lock file {LOCK_DIR}/{}", self.name))
    }
}

/// Seconds as the user wrote them (`30`, `0.5`) as a lock timeout.
pub fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_TIMEOUT_S).contains(&v) => {
            Ok(Duration::from_secs_f64(v))
        }
        _ => Err(format!(
            "'{}' is not a number of seconds from 0 to {MAX_TIMEOUT_S} (for example 30 or 0.5)",
            shown(s)
        )),
    }
}

impl Root {
    /// The lock timeout: `--lock-timeout`, else $ZFW_LOCK_TIMEOUT, else 60 s.
    fn lock_wait(&self) -> Result<Duration> {
        if let Some(t) = self.lock_timeout {
            return Ok(t);
        }
        match std::env::var(TIMEOUT_ENV) {
            Ok(v) if !v.is_empty() => {
                parse_timeout(&v).map_err(|e| Error::usage(format!("{TIMEOUT_ENV}: {e}")))
            }
            _ => Ok(DEFAULT_TIMEOUT),
        }
    }

    /// Where this root's lock file is.
    pub fn lock_path(&self) -> PathBuf {
        Path::new(LOCK_DIR).join(lock_name(&self.dir))
    }

    /// Take the root's lock, waiting at most the lock timeout (see the
    /// module doc).  Two zfw processes changing the same root never
    /// interleave.  Checks the root first (`check_root`).
    pub fn lock(&self) -> Result<Lock> {
        self.check_root()?;
        let wait = self.lock_wait()?;
        let dir = lock_dir()?;
        let name = lock_name(&self.dir);
        let start = Instant::now();
        let mut told = false;
        loop {
            let f = open_lock_file(&dir, &name)?;
            let st = fstat(f.as_raw_fd()).ctx(|| format!("checking {LOCK_DIR}/{name}"))?;
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(l) => {
                    // the file may have been removed (`unload --all`) between
                    // our open and our lock: then lock the new one
                    if still_linked(&dir, &name, &st) {
                        note_holder(&l);
                        return Ok(Lock { _f: l, dir, name });
                    }
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    let holder = holder(&st);
                    if start.elapsed() >= wait {
                        return Err(Error::runtime(format!(
                            "timed out after {} waiting for {holder} holding the lock on {} ({LOCK_DIR}/{name}); --lock-timeout or {TIMEOUT_ENV} sets the wait",
                            secs(wait),
                            self.dir.display()
                        )));
                    }
                    if !told {
                        eprintln!(
                            "zfw: waiting for {holder} holding the lock on {} (up to {})…",
                            self.dir.display(),
                            secs(wait)
                        );
                        told = true;
                    }
                    std::thread::sleep(POLL.min(wait.saturating_sub(start.elapsed())));
                }
                Err((_, e)) => {
                    return Err(e).ctx(|| format!("locking {LOCK_DIR}/{name}"));
                }
            }
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The lock file's name for a root: its canonical path without the first
/// `/`, with `/` as `-`,
/// bytes other than letters, digits, `.` and `_` as `%XX`; a long path is
/// cut and completed by a hash of the whole (names stay under 255 bytes).
pub fn lock_name(dir: &Path) -> String {
    let abs = dir.canonicalize().unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    });
    let bytes = abs.as_os_str().as_bytes();
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'/' => s.push('-'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' => s.push(b as char),
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    // no leading '-' (the path's first '/'): the name is no option to a shell tool
    let mut s = s.trim_start_matches('-').to_string();
    if s.is_empty() {
        s.push_str("root");
    }
    if s.len() > 200 {
        // FNV-1a: stable across builds, so every zfw finds the same file
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        s.truncate(180);
        s.push_str(&format!("~{h:016x}"));
    }
    s.push_str(".lock");
    s
}

/// Open (creating it 0700 if needed) and check the lock directory.
fn lock_dir() -> Result<File> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(LOCK_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).ctx(|| format!("creating {LOCK_DIR}")),
    }
    let fd = nix::fcntl::open(
        LOCK_DIR,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening {LOCK_DIR}"))?;
    // SAFETY: `fd` was just returned by open(2) and is owned by nobody else.
    let dir = unsafe { File::from_raw_fd(fd) };
    let st = fstat(dir.as_raw_fd()).ctx(|| format!("checking {LOCK_DIR}"))?;
    check_private(&st, LOCK_DIR, nix::libc::S_IFDIR)?;
    Ok(dir)
}

/// Open (creating it 0600) and check one lock file, never following a link.
fn open_lock_file(dir: &File, name: &str) -> Result<File> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .ctx(|| format!("opening the lock file {LOCK_DIR}/{name}"))?;
    // SAFETY: `fd` was just returned by openat(2) and is owned by nobody else.
    let f = unsafe { File::from_raw_fd(fd) };
    let st = fstat(f.as_raw_fd()).ctx(|| format!("checking {LOCK_DIR}/{name}"))?;
    check_private(&st, &format!("{LOCK_DIR}/{name}"), nix::libc::S_IFREG)?;
    Ok(f)
}

/// A lock directory or file is trusted only when it is of the expected
/// kind, owned by the user zfw runs as, and closed to group and others.
fn check_private(st: &FileStat, what: &str, kind: nix::libc::mode_t) -> Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    if st.st_mode & nix::libc::S_IFMT != kind {
        return Err(Error::runtime(format!(
            "{what} is not a {}; zfw's lock must be (remove it)",
            if kind == nix::libc::S_IFDIR {
                "directory"
            } else {
                "regular file"
            }
        )));
    }
    if st.st_uid != euid || st.st_mode & 0o077 != 0 {
        return Err(Error::runtime(format!(
            "{what} is owned by uid {} with mode {:o}; zfw's lock must be owned by uid {euid} and closed to group and others (remove it)",
            st.st_uid,
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

fn still_linked(dir: &File, name: &str, st: &FileStat) -> bool {
    fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map(|now| now.st_ino == st.st_ino && now.st_dev == st.st_dev)
    .unwrap_or(false)
}

/// Write our pid into the file we hold, for people who look (`cat`); who
/// holds a lock is read from the kernel (/proc/locks), not from here.
fn note_holder(l: &Flock<File>) {
    let mut f: &File = l;
    let _ = f.set_len(0);
    let _ = writeln!(f, "{}", std::process::id());
}

/// Who holds the flock on the file `st` describes: "zfw pid N (ARGS)",
/// "pid N (COMM)", or "another process" when the kernel does not say.
fn holder(st: &FileStat) -> String {
    let dev = format!(
        "{:02x}:{:02x}:{}",
        nix::libc::major(st.st_dev),
        nix::libc::minor(st.st_dev),
        st.st_ino
    );
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    // "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"; waiters are "1: -> FLOCK ..."
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == dev)
            .then(|| f[4].parse::<u32>().ok())
            .flatten()
    });
    let Some(pid) = pid else {
        return "another process".into();
    };
    describe_pid(pid)
}

/// "zfw pid N (ARGS)" for a zfw process, "pid N (COMM)" otherwise.
fn describe_pid(pid: u32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let comm = comm.trim_end();
    if !comm.starts_with("zfw") {
        return format!("pid {pid} ({})", shown(comm));
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .skip(1)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        return format!("zfw pid {pid}");
    }
    format!("zfw pid {pid} ({})", shown(&args.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_are_the_path_escaped_and_bounded() {
        let n = lock_name(Path::new("/nonexistent-zfw/a b/c"));
        assert_eq!(n, "nonexistent%2Dzfw-a%20b-c.lock");
        let long = format!("/nonexistent/{}", "x".repeat(400));
        let n = lock_name(Path::new(&long));
        assert!(
            n.len() < 255 && n.ends_with(".lock") && n.contains('~'),
            "{n}"
        );
        assert_ne!(n, lock_name(Path::new(&format!("{long}y"))));
    }

    #[test]
    fn timeouts_parse_as_seconds() {
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        for bad in ["", "-1", "x", "inf", "NaN", "1e9"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
