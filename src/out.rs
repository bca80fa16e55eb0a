//! Writing what a command prints to stdout without panicking (README
//! "Command line": output).  `println!` panics when stdout fails (a closed
//! pipe, a full disk); every command's output goes through [`write`]
//! (`outln!` / `out!`) instead, which returns the failure as
//! [`Error::Output`].  The binaries end quietly with exit 141 (128 +
//! SIGPIPE, as coreutils killed by SIGPIPE) on a closed pipe, and print one
//! line with exit 1 on any other write error.

use std::io::Write;

use crate::error::{Error, Result};

/// Write `s` to stdout and flush it.
pub fn write(s: &str) -> Result<()> {
    write_bytes(s.as_bytes())
}

/// Write `b` to stdout and flush it.
pub fn write_bytes(b: &[u8]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(b)
        .and_then(|()| o.flush())
        .map_err(Error::Output)
}

/// A buffered writer on stdout, for output too large to build as one
/// string (`conntrack list` of a million flows); its write errors are the
/// caller's to turn into [`Error::Output`].
pub fn buffered() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock())
}

/// `println!` that returns the write error instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::out::write(&format!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` that returns the write error instead of panicking.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out::write(&format!($($t)*))
    };
}
