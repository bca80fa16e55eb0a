//! TC attach/detach/query on the clsact qdisc.

use std::os::fd::BorrowedFd;

use libbpf_rs::{TcAttachPoint, TcHook, TcHookBuilder, TC_EGRESS, TC_INGRESS};

use super::TC_HANDLE;
use crate::error::{Context, Error, Result};

fn hook(fd: BorrowedFd<'_>, ifindex: u32, ap: TcAttachPoint, prio: u32) -> TcHook {
    TcHookBuilder::new(fd)
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(TC_HANDLE)
        .priority(prio)
        .hook(ap)
}

fn point(ingress: bool) -> TcAttachPoint {
    if ingress {
        TC_INGRESS
    } else {
        TC_EGRESS
    }
}

/// Create the clsact qdisc if missing.  Returns true when zfw created it
/// (and so may remove it again on unload).
pub fn ensure_clsact(ifindex: u32) -> Result<bool> {
    let mut h = libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: TC_INGRESS,
        ..Default::default()
    };
    // SAFETY: h is a properly sized, initialised bpf_tc_hook.
    let rc = unsafe { libbpf_sys::bpf_tc_hook_create(&mut h) };
    match rc {
        0 => Ok(true),
        e if -e == libc_eexist() => Ok(false),
        e => Err(Error::Io {
            context: format!("creating clsact qdisc on ifindex {ifindex}"),
            source: std::io::Error::from_raw_os_error(-e),
        }),
    }
}

fn libc_eexist() -> i32 {
    nix::errno::Errno::EEXIST as i32
}

/// Attach (or replace in place) program `fd` at ingress/egress `prio`.
pub fn attach(fd: BorrowedFd<'_>, ifindex: u32, ingress: bool, prio: u32) -> Result<()> {
    hook(fd, ifindex, point(ingress), prio).attach().ctx(|| {
        format!(
            "attaching TC {} prio {prio} on ifindex {ifindex}",
            dir(ingress)
        )
    })?;
    Ok(())
}

/// Remove zfw's filter at ingress/egress `prio`; missing is fine.
pub fn detach(fd: BorrowedFd<'_>, ifindex: u32, ingress: bool, prio: u32) -> Result<()> {
    match hook(fd, ifindex, point(ingress), prio).detach() {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), libbpf_rs::ErrorKind::NotFound) => Ok(()),
        Err(e) if e.to_string().contains("No such device") => Ok(()),
        Err(e) => Err(e).ctx(|| {
            format!(
                "detaching TC {} prio {prio} on ifindex {ifindex}",
                dir(ingress)
            )
        }),
    }
}

/// Program id of the filter zfw owns at ingress/egress `prio`, if any.
pub fn query(fd: BorrowedFd<'_>, ifindex: u32, ingress: bool, prio: u32) -> Option<u32> {
    hook(fd, ifindex, point(ingress), prio)
        .query()
        .ok()
        .filter(|id| *id != 0)
}

/// Delete the clsact qdisc (only call when zfw created it).
pub fn destroy_clsact(fd: BorrowedFd<'_>, ifindex: u32) -> Result<()> {
    let mut h = TcHookBuilder::new(fd)
        .ifindex(ifindex as i32)
        .hook(TC_INGRESS | TC_EGRESS);
    match h.destroy() {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), libbpf_rs::ErrorKind::NotFound) => Ok(()),
        Err(e) => Err(e).ctx(|| format!("removing clsact qdisc on ifindex {ifindex}")),
    }
}

fn dir(ingress: bool) -> &'static str {
    if ingress {
        "ingress"
    } else {
        "egress"
    }
}
