//! The bpffs root: where maps and programs are pinned, how it is mounted,
//! and the lock that serialises zfw processes working on the same root.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/zfw";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A bpffs root directory (`--bpffs DIR`, env ZFW_BPFFS).
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root { dir: dir.into() }
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
    /// mount a new one on it.  Returns true when this call mounted it.
    pub fn ensure_mounted(&self) -> Result<bool> {
        if self.dir.exists() {
            if is_bpffs(&self.dir) {
                self.make_subdirs()?;
                return Ok(false);
            }
        } else if let Some(parent) = self.dir.parent() {
            if parent.exists() && is_bpffs(parent) {
                fs::create_dir_all(&self.dir).ctx(|| format!("creating {}", self.dir.display()))?;
                self.make_subdirs()?;
                return Ok(false);
            }
            // /sys/fs/bpf itself may just not be mounted yet
            if parent == Path::new("/sys/fs/bpf") {
                fs::create_dir_all(parent).ctx(|| "creating /sys/fs/bpf".into())?;
                mount_bpffs(parent)?;
                fs::create_dir_all(&self.dir).ctx(|| format!("creating {}", self.dir.display()))?;
                self.make_subdirs()?;
                return Ok(true);
            }
        }
        fs::create_dir_all(&self.dir).ctx(|| format!("creating {}", self.dir.display()))?;
        if !is_bpffs(&self.dir) {
            mount_bpffs(&self.dir)?;
        }
        self.make_subdirs()?;
        Ok(true)
    }

    fn make_subdirs(&self) -> Result<()> {
        for d in [self.maps_dir(), self.progs_dir()] {
            fs::create_dir_all(&d).ctx(|| format!("creating {}", d.display()))?;
        }
        Ok(())
    }

    /// Remove every pin and the directory itself (unmounting it when it is a
    /// bpffs mount point of its own).
    pub fn remove_all(&self) -> Result<()> {
        for d in [self.maps_dir(), self.progs_dir()] {
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    fs::remove_file(e.path())
                        .ctx(|| format!("unpinning {}", e.path().display()))?;
                }
            }
            if d.exists() {
                fs::remove_dir(&d).ctx(|| format!("removing {}", d.display()))?;
            }
        }
        if is_mount_point(&self.dir) {
            nix::mount::umount(&self.dir).ctx(|| format!("unmounting {}", self.dir.display()))?;
        }
        if self.dir.exists() {
            fs::remove_dir(&self.dir).ctx(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Take the root's lock (flock on the directory), blocking until free.
    /// Two zfw processes changing the same root never interleave.
    pub fn lock(&self) -> Result<Lock> {
        let f = File::open(&self.dir).ctx(|| format!("opening {}", self.dir.display()))?;
        let l = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("locking {}", self.dir.display()))?;
        Ok(Lock { _f: l })
    }
}

/// Held while a command changes state; released on drop (fd close).
pub struct Lock {
    _f: nix::fcntl::Flock<File>,
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
