//! XDP on tun interfaces: native where the driver supports it, else generic.

use std::os::fd::BorrowedFd;

use libbpf_rs::{Xdp, XdpFlags};

use crate::error::{Context, Result};

/// Attach `fd` to `ifindex`; returns the mode used ("native" or "generic").
pub fn attach(fd: BorrowedFd<'_>, ifindex: u32) -> Result<&'static str> {
    let xdp = Xdp::new(fd);
    // A program of ours in the other mode would make the kernel refuse.
    let _ = xdp.detach(ifindex as i32, XdpFlags::DRV_MODE);
    let _ = xdp.detach(ifindex as i32, XdpFlags::SKB_MODE);
    match xdp.attach(ifindex as i32, XdpFlags::DRV_MODE) {
        Ok(()) => Ok("native"),
        Err(_) => {
            xdp.attach(ifindex as i32, XdpFlags::SKB_MODE)
                .ctx(|| format!("attaching XDP (generic mode) on ifindex {ifindex}"))?;
            Ok("generic")
        }
    }
}

/// Detach whatever XDP program runs on `ifindex` in either mode.
pub fn detach(fd: BorrowedFd<'_>, ifindex: u32) -> Result<()> {
    let xdp = Xdp::new(fd);
    let _ = xdp.detach(ifindex as i32, XdpFlags::DRV_MODE);
    let _ = xdp.detach(ifindex as i32, XdpFlags::SKB_MODE);
    Ok(())
}

/// Id of the XDP program attached to `ifindex` (any mode), if any.
pub fn query(fd: BorrowedFd<'_>, ifindex: u32) -> Option<u32> {
    let q = Xdp::new(fd).query(ifindex as i32, XdpFlags::NONE).ok()?;
    [q.prog_id, q.drv_prog_id, q.skb_prog_id, q.hw_prog_id]
        .into_iter()
        .find(|id| *id != 0)
}
