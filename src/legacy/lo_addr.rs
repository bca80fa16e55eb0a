//! Prefixes made local the C zfw's way (`-B`, `-J`, `-I/-D -r`): an address
//! of scope host on lo, over rtnetlink.  zfw marks its addresses with its
//! own address protocol (IFA_PROTO, Linux >= 5.18; older kernels ignore
//! it), so `-F -j` and `-Q` remove only the ones zfw added.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{recv, send, MsgFlags};

use crate::error::{Context, Error, Result};
use crate::netlink::route::{lo_index, open_socket, push_attr, request, RTPROT_ZFW};
use crate::rules::model::Prefix;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_PROTO: u16 = 11;
const IFA_F_NODAD: u8 = 0x02;

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn message(kind: u16, flags: u16, p: &Prefix, lo: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    // struct ifaddrmsg
    b.push(p.family().af());
    b.push(p.len);
    b.push(if p.addr.is_ipv6() { IFA_F_NODAD } else { 0 });
    b.push(libc::RT_SCOPE_HOST);
    b.extend_from_slice(&lo.to_ne_bytes());
    let a = addr_bytes(p.addr);
    push_attr(&mut b, IFA_LOCAL, &a);
    push_attr(&mut b, IFA_ADDRESS, &a);
    if kind == libc::RTM_NEWADDR {
        push_attr(&mut b, IFA_PROTO, &[RTPROT_ZFW]);
    }
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&kind.to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&1u32.to_ne_bytes());
    b
}

fn os_err(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

/// Add `p` to lo (scope host).  Ok(false): it was there already.
pub fn add(p: &Prefix) -> Result<bool> {
    let flags =
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    match request(&message(libc::RTM_NEWADDR, flags, p, lo_index()?))? {
        0 => Ok(true),
        e if e == libc::EEXIST => Ok(false),
        e => Err(Error::runtime(format!("adding {p} to lo: {}", os_err(e)))),
    }
}

/// Remove `p` from lo.  Ok(false): it was not there.
pub fn del(p: &Prefix) -> Result<bool> {
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    match request(&message(libc::RTM_DELADDR, flags, p, lo_index()?))? {
        0 => Ok(true),
        e if e == libc::EADDRNOTAVAIL || e == libc::ENOENT || e == libc::ESRCH => Ok(false),
        e => Err(Error::runtime(format!(
            "removing {p} from lo: {}",
            os_err(e)
        ))),
    }
}

/// The addresses of one RTM_NEWADDR message: (ifindex, prefix, proto).
fn parse_addr(m: &[u8]) -> Option<(u32, Prefix, u8)> {
    if m.len() < 24 {
        return None;
    }
    let (fam, plen) = (m[16], m[17]);
    let idx = u32::from_ne_bytes([m[20], m[21], m[22], m[23]]);
    let mut off = 24;
    let (mut addr, mut proto) = (None, 0u8);
    while off + 4 <= m.len() {
        let len = usize::from(u16::from_ne_bytes([m[off], m[off + 1]]));
        let ty = u16::from_ne_bytes([m[off + 2], m[off + 3]]);
        if len < 4 || off + len > m.len() {
            break;
        }
        let d = &m[off + 4..off + len];
        match (ty, fam as i32, d.len()) {
            (IFA_LOCAL | IFA_ADDRESS, libc::AF_INET, 4) => {
                addr = Some(IpAddr::from([d[0], d[1], d[2], d[3]]));
            }
            (IFA_LOCAL | IFA_ADDRESS, libc::AF_INET6, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(d);
                addr = Some(IpAddr::from(o));
            }
            (IFA_PROTO, _, 1) => proto = d[0],
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Some((idx, Prefix::new(addr?, plen), proto))
}

/// The prefixes zfw added to lo.
pub fn ours() -> Result<Vec<Prefix>> {
    let lo = lo_index()?;
    let fd = open_socket()?;
    let raw = fd.as_raw_fd();
    let mut req = vec![0u8; 16];
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0]);
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETADDR.to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    send(raw, &req, MsgFlags::empty()).ctx(|| "asking for lo's addresses".into())?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32768];
    loop {
        let n = recv(raw, &mut buf, MsgFlags::empty()).ctx(|| "reading netlink".into())?;
        let mut off = 0;
        while off + 16 <= n {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if len < 16 || off + len > n {
                return Err(Error::runtime("a malformed netlink address dump"));
            }
            match ty {
                t if t == libc::NLMSG_DONE as u16 => return Ok(out),
                t if t == libc::NLMSG_ERROR as u16 => {
                    return Err(Error::runtime("the kernel refused the address dump"))
                }
                t if t == libc::RTM_NEWADDR => {
                    if let Some((idx, p, proto)) = parse_addr(&buf[off..off + len]) {
                        if idx == lo && proto == RTPROT_ZFW {
                            out.push(p);
                        }
                    }
                }
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
}

/// Remove every prefix zfw added to lo; returns them.
pub fn flush() -> Result<Vec<Prefix>> {
    let v = ours()?;
    for p in &v {
        del(p)?;
    }
    Ok(v)
}
