//! The library's one error type.  Every variant prints as one line; the
//! binary maps it to an exit code (2: bad usage or input, 1: runtime).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line usage or input (exit 2).
    #[error("{0}")]
    Usage(String),
    /// An interface named by the user does not exist (exit 2).
    #[error("unknown interface '{0}'")]
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
            _ => 1,
        }
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
