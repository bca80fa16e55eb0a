//! The library's one error type.  Every variant prints as one line; the
//! binary maps it to an exit code (2: bad usage or input, 1: runtime, 141:
//! stdout's reader went away).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line usage or input (exit 2).
    #[error("{0}")]
    Usage(String),
    /// An interface named by the user does not exist (exit 2).
    #[error("unknown interface '{}'", shown(.0))]
    UnknownIface(String),
    /// Nothing is pinned under the bpffs root.
    #[error("zfw is not loaded (bpffs {})", .0.display())]
    NotLoaded(PathBuf),
    /// Missing privileges.
    #[error("zfw needs root (CAP_BPF/CAP_SYS_ADMIN and CAP_NET_ADMIN): {0}")]
    NotRoot(String),
    /// A libbpf call failed.
    #[error("{context}: {source}")]
    Bpf {
        context: String,
        #[source]
        source: libbpf_rs::Error,
    },
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing to stdout failed (src/out.rs): a closed pipe ends the
    /// command quietly (exit 141), anything else is exit 1.
    #[error("writing stdout: {0}")]
    Output(std::io::Error),
    /// Any other runtime failure, already phrased for the user.
    #[error("{0}")]
    Runtime(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Exit status for the CLI: 2 for bad usage/input, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::UnknownIface(_) => 2,
            e if e.is_broken_pipe() => 141,
            _ => 1,
        }
    }

    /// The reader of stdout went away: end quietly (exit 141, no message).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn runtime(msg: impl Into<String>) -> Self {
        Error::Runtime(msg.into())
    }
}

/// Attach context to libbpf and io results.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, libbpf_rs::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Bpf {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::errno::Errno> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: what(),
            source: std::io::Error::from(e),
        })
    }
}

/// Longest part of an untrusted value shown in a message.
pub const SHOWN_MAX: usize = 64;

/// `s` made safe to print in a one-line message: printable ASCII as is,
/// every other byte (control characters, newlines, NUL, non-ASCII) as
/// `\xNN`, cut after [`SHOWN_MAX`] bytes (marked with `...`).  Every
/// error that names a value the user or a file supplied shows it so.
pub fn shown(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    for &c in b.iter().take(SHOWN_MAX) {
        if (0x20..0x7f).contains(&c) && c != b'\\' {
            out.push(c as char);
        } else if c == b'\\' {
            out.push_str("\\\\");
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    if b.len() > SHOWN_MAX {
        out.push_str("...");
    }
    out
}
