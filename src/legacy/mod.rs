//! The C zfw v0.9.21 command line (`zfw -I -c ... -t PORT`), run on this
//! zfw's engine: what OpenZiti's edge router (`tproxy:/opt/openziti/bin/zfw`)
//! and ziti-edge-tunnel (`ZITI_DIVERTER`) drive, one process per change,
//! reading only the exit status.  README: "Replacing the C zfw under
//! OpenZiti" lists every flag and where this one differs.
//!
//! Layers: `argp` scans argv (GNU argp rules, exit 64 on bad options);
//! `request` takes each option's value and `combine` checks the
//! combination in the C zfw's order, giving a typed [`Request`] (or a
//! [`Fail`], exit 1 like C); `exec`/`exec_iface` run it on the library
//! (rules store, loader, interface settings, ddos, ot, conntrack,
//! monitor); `output` prints the C zfw's columns.  `openziti` reads the
//! start scripts' ebpf_config.json for `zfw load --openziti-config`.

pub mod argp;
pub mod combine;
pub mod exec;
pub mod exec_iface;
pub mod lo_addr;
pub mod openziti;
pub mod output;
pub mod request;
pub mod text;

pub use request::{Fail, Interfaces, Kernel, Request};

use crate::bpffs::Root;
use crate::error::Error;

/// Read a C zfw command line (`args` without argv[0]): every option's
/// value as it comes, then the combination.  `ifs` resolves interface
/// names (the kernel's, or a test's table).
pub fn parse(prog: &str, args: &[String], ifs: &dyn Interfaces) -> Result<Request, Fail> {
    let scan = argp::scan(prog, args);
    let mut o = request::Opts::default();
    for (key, val) in &scan.opts {
        match key {
            argp::Key::Help => return Ok(Request::Help),
            argp::Key::Usage => return Ok(Request::Usage),
            argp::Key::Version => return Ok(Request::Version),
            _ => o.take(*key, val.as_deref(), ifs)?,
        }
    }
    if let Some(e) = scan.error {
        return Err(Fail::Argp(e));
    }
    if !scan.words.is_empty() {
        return Err(Fail::TooMany);
    }
    combine::resolve(&o)
}

/// Run a C zfw command line on bpffs root `root`; returns the exit status.
pub fn run(root: &Root, prog: &str, args: &[String]) -> i32 {
    crate::loader::quiet_libbpf();
    let req = match parse(prog, args, &Kernel) {
        Ok(r) => r,
        Err(f) => {
            let (out, err) = f.render(prog);
            let _ = crate::out::write(&out);
            eprint!("{err}");
            return f.exit_code();
        }
    };
    match exec::run(root, req) {
        Ok(()) => 0,
        // the reader went away: quietly, as coreutils (src/out.rs)
        Err(e) if e.is_broken_pipe() => e.exit_code(),
        Err(e @ Error::NotLoaded(_)) => {
            // on stdout, where the C zfw says it: the start scripts' and
            // cron's readiness probe `zfw -L -E` reads only the status
            let _ = crate::outln!("{e}: attach it first (zfw -X IF -O FILE -z ingress)");
            1
        }
        Err(e) => {
            eprintln!("{prog}: {e}");
            1
        }
    }
}
