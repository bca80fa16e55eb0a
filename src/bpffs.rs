//! The bpffs root: where maps and programs are pinned, how it is mounted,
//! and the lock that serialises zfw processes working on the same root
//! (`lock.rs`).

use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::{shown, Context, Error, Result};

mod lock;
pub use lock::{lock_name, parse_timeout, Lock, DEFAULT_TIMEOUT, LOCK_DIR, TIMEOUT_ENV};

pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/zfw";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A bpffs root directory (`--bpffs DIR`, env ZFW_BPFFS).
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
    /// How long `lock` waits (`--lock-timeout`); None: $ZFW_LOCK_TIMEOUT
    /// or 60 s.
    pub lock_timeout: Option<std::time::Duration>,
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root {
            dir: dir.into(),
            lock_timeout: None,
        }
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.dir.join("maps")
    }

    pub fn progs_dir(&self) -> PathBuf {
        self.dir.join("progs")
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    pub fn prog_path(&self, name: &str) -> PathBuf {
        self.progs_dir().join(name)
    }

    // `is_loaded` / `require_loaded` (is the config map pinned here?) are
    // defined beside the map registry, in src/maps/mod.rs.

    /// Make sure `dir` exists on a bpffs: reuse the bpffs it lives on, or
    /// mount a new one on it (only on a new or empty directory: bpffs
    /// mounted over files would hide them).  Returns true when this call
    /// mounted it.  The root is checked (`check_root`) before it is used.
    pub fn ensure_mounted(&self) -> Result<bool> {
        let mounted = self.mount_if_needed()?;
        self.check_root()?;
        self.make_subdirs()?;
        Ok(mounted)
    }

    fn mount_if_needed(&self) -> Result<bool> {
        if self.dir.exists() {
            if is_bpffs(&self.dir) {
                return Ok(false);
            }
            let mut entries =
                fs::read_dir(&self.dir).ctx(|| format!("reading {}", shown_path(&self.dir)))?;
            if entries.next().is_some() {
                return Err(Error::usage(format!(
                    "--bpffs {}: not on bpffs and not empty; zfw mounts bpffs only on a new or empty directory (its files would be hidden)",
                    shown_path(&self.dir)
                )));
            }
        } else if let Some(parent) = self.dir.parent() {
            if parent.exists() && is_bpffs(parent) {
                new_dir(&self.dir)?;
                return Ok(false);
            }
            // /sys/fs/bpf itself may just not be mounted yet
            if parent == Path::new("/sys/fs/bpf") {
                fs::create_dir_all(parent).ctx(|| "creating /sys/fs/bpf".into())?;
                mount_bpffs(parent)?;
                new_dir(&self.dir)?;
                return Ok(true);
            }
        }
        if !self.dir.exists() {
            if let Some(parent) = self.dir.parent() {
                fs::create_dir_all(parent).ctx(|| format!("creating {}", shown_path(parent)))?;
            }
            new_dir(&self.dir)?;
        }
        mount_bpffs(&self.dir)?;
        Ok(true)
    }

    fn make_subdirs(&self) -> Result<()> {
        let root = open_dir(&self.dir)?;
        for d in [MAPS, PROGS] {
            match mkdirat(Some(root.as_raw_fd()), d, Mode::S_IRWXU) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("creating {}", shown_path(&self.dir.join(d))))
                }
            }
        }
        self.check_root()
    }

    /// Refuse a root that someone other than root could change: the root,
    /// its `maps` and `progs` directories and every directory above it must
    /// belong to root (or the user zfw runs as); the root and its
    /// subdirectories must not be writable by group or others, and a
    /// directory above only when it is sticky (as /sys/fs/bpf or /tmp);
    /// `maps` and `progs` must be directories, not links.  A root that does
    /// not exist passes (there is nothing in it to trust).
    pub fn check_root(&self) -> Result<()> {
        let Ok(canon) = self.dir.canonicalize() else {
            return Ok(());
        };
        let abs = if self.dir.is_absolute() {
            self.dir.clone()
        } else {
            std::env::current_dir()
                .map(|c| c.join(&self.dir))
                .unwrap_or_else(|_| self.dir.clone())
        };
        // the path as given (its links too) and where it leads
        for path in [&abs, &canon] {
            for anc in path.ancestors().skip(1) {
                check_entry(&self.dir, anc, Place::Above)?;
            }
            check_entry(&self.dir, path, Place::Root)?;
        }
        for d in [MAPS, PROGS] {
            let p = canon.join(d);
            if fs::symlink_metadata(&p).is_ok() {
                check_entry(&self.dir, &p, Place::Sub)?;
            }
        }
        Ok(())
    }

    /// Remove the pins zfw creates (`maps`: the names given, `progs`: the
    /// names given) and then the directories they leave empty: `maps`,
    /// `progs` and the root (unmounting the root when it is a bpffs mount
    /// of its own, never /sys/fs/bpf).  Links and anything zfw did not
    /// create are left where they are; every step works on directory fds
    /// and never follows a link.  Returns what was left behind (names
    /// relative to the root, escaped), empty when the root is gone.
    pub fn remove_pins(&self, maps: &[&str], progs: &[&str]) -> Result<Vec<String>> {
        if fs::symlink_metadata(&self.dir).is_err() {
            return Ok(Vec::new());
        }
        self.check_root()?;
        let root = open_dir(&self.dir)?;
        for (sub, names) in [(MAPS, maps), (PROGS, progs)] {
            let Some(dir) = open_sub(&root, sub)? else {
                continue;
            };
            for name in names {
                let Ok(st) = fstatat(Some(dir.as_raw_fd()), *name, AtFlags::AT_SYMLINK_NOFOLLOW)
                else {
                    continue;
                };
                // pins are regular files on bpffs; a link or a directory is
                // not something zfw made
                if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG {
                    continue;
                }
                unlinkat(Some(dir.as_raw_fd()), *name, UnlinkatFlags::NoRemoveDir)
                    .ctx(|| format!("unpinning {}", shown_path(&self.dir.join(sub).join(name))))?;
            }
            drop(dir);
            match unlinkat(Some(root.as_raw_fd()), sub, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOTEMPTY) | Err(Errno::EEXIST) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("removing {}", shown_path(&self.dir.join(sub))))
                }
            }
        }
        let own_mount = is_mount_point(&self.dir);
        let left = leftovers(&self.dir, own_mount)?;
        if !left.is_empty() {
            return Ok(left);
        }
        drop(root);
        if own_mount && self.dir.canonicalize().ok().as_deref() != Some(Path::new("/sys/fs/bpf")) {
            nix::mount::umount(&self.dir)
                .ctx(|| format!("unmounting {}", shown_path(&self.dir)))?;
        }
        if self.dir.exists() && !is_mount_point(&self.dir) {
            fs::remove_dir(&self.dir).ctx(|| format!("removing {}", shown_path(&self.dir)))?;
        }
        Ok(Vec::new())
    }
}

const MAPS: &str = "maps";
const PROGS: &str = "progs";

/// A path shown in a message: escaped and cut like any untrusted value.
pub fn shown_path(p: &Path) -> String {
    shown(&p.to_string_lossy())
}

/// Where a checked entry is, relative to the root.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Above,
    Root,
    Sub,
}

fn check_entry(root: &Path, p: &Path, place: Place) -> Result<()> {
    let md = fs::symlink_metadata(p).ctx(|| format!("checking {}", shown_path(p)))?;
    let euid = nix::unistd::geteuid().as_raw();
    let refuse = |why: String| {
        Err(Error::usage(format!(
            "bpffs root {}: {} {why}; zfw uses a root only when it and every directory above it belong to root and only root may change them",
            shown_path(root),
            shown_path(p)
        )))
    };
    if md.uid() != 0 && md.uid() != euid {
        return refuse(format!("is owned by uid {}", md.uid()));
    }
    let ft = md.file_type();
    if ft.is_symlink() {
        if place == Place::Sub {
            return refuse("is a symbolic link".into());
        }
        return Ok(());
    }
    if !ft.is_dir() {
        return refuse("is not a directory".into());
    }
    let mode = md.mode();
    let writable = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if writable && (place != Place::Above || !sticky) {
        return refuse(format!(
            "is writable by group or others (mode {:o})",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// A new directory, 0700 whatever the umask.
fn new_dir(p: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(p)
        .ctx(|| format!("creating {}", shown_path(p)))
}

fn open_dir(p: &Path) -> Result<File> {
    File::open(p).ctx(|| format!("opening {}", shown_path(p)))
}

/// `root/name` as a directory fd, never through a link; None when absent.
fn open_sub(root: &File, name: &str) -> Result<Option<File>> {
    match nix::fcntl::openat(
        Some(root.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        // SAFETY: `fd` was just returned by openat(2) and is owned by nobody else.
        Ok(fd) => Ok(Some(unsafe { File::from_raw_fd(fd) })),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e).ctx(|| format!("opening {name} (a directory, not a link)")),
    }
}

/// What the kernel puts at the top of every new bpffs mount (with
/// CONFIG_BPF_PRELOAD): not someone's files.
const MOUNT_FILES: &[&str] = &["maps.debug", "progs.debug"];

/// What is left in the root after zfw removed its own (escaped names);
/// on a bpffs mount of its own, the kernel's files do not count.
fn leftovers(dir: &Path, own_mount: bool) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for e in fs::read_dir(dir).ctx(|| format!("reading {}", shown_path(dir)))? {
        let e = e.ctx(|| format!("reading {}", shown_path(dir)))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if own_mount && MOUNT_FILES.contains(&name.as_str()) {
            continue;
        }
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let inside: Vec<String> = match fs::read_dir(e.path()) {
            Ok(sub) if is_dir => sub
                .flatten()
                .map(|s| shown(&format!("{name}/{}", s.file_name().to_string_lossy())))
                .collect(),
            _ => Vec::new(),
        };
        if inside.is_empty() {
            left.push(shown(&name));
        }
        left.extend(inside);
    }
    left.sort();
    Ok(left)
}

// f_type's width differs between architectures, hence the cast.
#[allow(clippy::unnecessary_cast)]
fn is_bpffs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type().0 as i64 == BPF_FS_MAGIC)
        .unwrap_or(false)
}

fn is_mount_point(p: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = match p.canonicalize() {
        Ok(c) => c,
        Err(_) => return false,
    };
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|m| Path::new(m) == want)
}

fn mount_bpffs(p: &Path) -> Result<()> {
    nix::mount::mount(
        Some("bpf"),
        p,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .ctx(|| format!("mounting bpffs on {}", p.display()))
}

/// Check for the capabilities zfw needs; a clear error instead of EPERM soup.
pub fn check_privileges() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_BPF: u64 = 1 << 39;
    let bpf_ok = cap_eff & (CAP_BPF | CAP_SYS_ADMIN) != 0;
    let net_ok = cap_eff & CAP_NET_ADMIN != 0;
    match (bpf_ok, net_ok) {
        (true, true) => Ok(()),
        (false, _) => Err(Error::NotRoot("missing CAP_BPF; run as root".into())),
        (_, false) => Err(Error::NotRoot("missing CAP_NET_ADMIN; run as root".into())),
    }
}
