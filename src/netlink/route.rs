//! `local PREFIX dev lo table local` routes over rtnetlink.
//!
//! A TPROXY rule hands flows for any address of its dst prefix to a
//! listener on loopback; the kernel only delivers such packets locally
//! (instead of forwarding or dropping them) when the prefix is routed as
//! local.  zfw marks the routes it installs with its own protocol number,
//! so removing them never touches a route someone else made.

use std::net::IpAddr;

use nix::libc;
use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

use crate::error::{Context, Error, Result};
use crate::net::Prefix;

/// rtm_protocol of the routes zfw installs ("z"); the kernel does not
/// interpret values above RTPROT_STATIC.
pub const RTPROT_ZFW: u8 = 0x7a;

/// Append one rtnetlink attribute (padded to 4 bytes).
pub(crate) fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn message(kind: u16, flags: u16, p: &Prefix, oif: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    // struct rtmsg
    b.push(p.family().af());
    b.push(p.len);
    b.push(0); // src_len
    b.push(0); // tos
    b.push(libc::RT_TABLE_LOCAL);
    b.push(RTPROT_ZFW);
    b.push(libc::RT_SCOPE_HOST);
    b.push(libc::RTN_LOCAL);
    b.extend_from_slice(&0u32.to_ne_bytes());
    let dst = match p.addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    push_attr(&mut b, libc::RTA_DST, &dst);
    push_attr(&mut b, libc::RTA_OIF, &oif.to_ne_bytes());
    push_attr(
        &mut b,
        libc::RTA_TABLE,
        &u32::from(libc::RT_TABLE_LOCAL).to_ne_bytes(),
    );
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&kind.to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&1u32.to_ne_bytes());
    b
}

/// A bound rtnetlink socket.
pub(crate) fn open_socket() -> Result<std::os::fd::OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .ctx(|| "opening a netlink socket".into())?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, 0),
    )
    .ctx(|| "binding a netlink socket".into())?;
    Ok(fd)
}

/// Send one request and return the kernel's errno (0 = done).
pub(crate) fn request(msg: &[u8]) -> Result<i32> {
    let fd = open_socket()?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    send(raw, msg, MsgFlags::empty()).ctx(|| "sending a route request".into())?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = recv(raw, &mut buf, MsgFlags::empty()).ctx(|| "reading netlink".into())?;
        let mut off = 0;
        while off + 16 <= n {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if ty == libc::NLMSG_ERROR as u16 && off + 20 <= n {
                let e = i32::from_ne_bytes([
                    buf[off + 16],
                    buf[off + 17],
                    buf[off + 18],
                    buf[off + 19],
                ]);
                return Ok(-e);
            }
            if len < 16 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

pub(crate) fn lo_index() -> Result<u32> {
    nix::net::if_::if_nametoindex("lo").ctx(|| "finding the loopback interface".into())
}

/// Install `local PREFIX dev lo table local`.  Idempotent: an existing
/// route for the prefix (ours, or one the host already has) is left alone.
pub fn add_local(p: &Prefix) -> Result<()> {
    let flags =
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let msg = message(libc::RTM_NEWROUTE, flags, p, lo_index()?);
    match request(&msg)? {
        0 => Ok(()),
        e if e == libc::EEXIST => Ok(()),
        e => Err(Error::runtime(format!(
            "adding route 'local {p} dev lo table local': {}",
            std::io::Error::from_raw_os_error(e)
        ))),
    }
}

/// Remove the route `add_local` made; a missing route is not an error.
pub fn del_local(p: &Prefix) -> Result<()> {
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    let msg = message(libc::RTM_DELROUTE, flags, p, lo_index()?);
    match request(&msg)? {
        0 => Ok(()),
        e if e == libc::ESRCH || e == libc::ENOENT => Ok(()),
        e => Err(Error::runtime(format!(
            "removing route 'local {p} dev lo table local': {}",
            std::io::Error::from_raw_os_error(e)
        ))),
    }
}
