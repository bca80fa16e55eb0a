//! Crafted frames (Ethernet + IPv4/IPv6 + TCP/UDP/ICMP) with correct
//! checksums, for BPF_PROG_TEST_RUN.

use std::net::IpAddr;

use crate::net::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Internet checksum over `data`, starting from `sum`.
pub fn csum(mut sum: u32, data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut b = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
            b.extend_from_slice(&[0, proto]);
            b.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
            b.extend_from_slice(&(len as u32).to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("address family mix"),
    }
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    sum
}

/// Verify the L4 checksum of an IP packet (no Ethernet header).
pub fn l4_checksum_ok(ip: &[u8]) -> bool {
    let (src, dst, proto, l4) = match ip[0] >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0xf) * 4;
            let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let s: [u8; 4] = ip[12..16].try_into().unwrap();
            let d: [u8; 4] = ip[16..20].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), ip[9], &ip[ihl..tot])
        }
        _ => {
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let s: [u8; 16] = ip[8..24].try_into().unwrap();
            let d: [u8; 16] = ip[24..40].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), ip[6], &ip[40..40 + plen])
        }
    };
    if proto == IPPROTO_UDP && l4[6] == 0 && l4[7] == 0 && src.is_ipv4() {
        return true; // no UDP checksum
    }
    let sum = if proto == IPPROTO_ICMP {
        0
    } else {
        pseudo_sum(src, dst, proto, l4.len())
    };
    csum(sum, l4) == 0
}

/// IPv4 header checksum valid?
pub fn ipv4_checksum_ok(ip: &[u8]) -> bool {
    let ihl = usize::from(ip[0] & 0xf) * 4;
    csum(0, &ip[..ihl]) == 0
}

/// An L4 segment with its checksum filled in.
fn l4(src: IpAddr, dst: IpAddr, proto: u8, mut seg: Vec<u8>, csum_off: usize) -> Vec<u8> {
    let sum = if proto == IPPROTO_ICMP {
        0
    } else {
        pseudo_sum(src, dst, proto, seg.len())
    };
    let c = csum(sum, &seg);
    let c = if proto == IPPROTO_UDP && c == 0 {
        0xffff
    } else {
        c
    };
    seg[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
    seg
}

#[allow(clippy::too_many_arguments)]
pub fn tcp_segment(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let w = TcpWindow::DEFAULT;
    tcp_segment_win(src, dst, sport, dport, flags, seq, ack, w, payload)
}

/// A segment's window field and the window scale option it carries
/// (a SYN's offer; RFC 7323).
#[derive(Clone, Copy, Debug)]
pub struct TcpWindow {
    pub win: u16,
    pub wscale: Option<u8>,
}

impl TcpWindow {
    /// What [`tcp_segment`] and [`tcp_full`] send: 64,240, no scale offered.
    pub const DEFAULT: TcpWindow = TcpWindow {
        win: 64240,
        wscale: None,
    };
}

/// [`tcp_segment`] with a chosen window, and the options Linux puts in a
/// SYN (MSS, SACK permitted, timestamps, then NOP + window scale) when
/// `w.wscale` is set.
#[allow(clippy::too_many_arguments)]
pub fn tcp_segment_win(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    w: TcpWindow,
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = Vec::new();
    if let Some(ws) = w.wscale {
        opts.extend_from_slice(&[2, 4, 0x05, 0xb4, 4, 2, 8, 10]);
        opts.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
        opts.extend_from_slice(&[1, 3, 3, ws]);
    }
    let mut s = Vec::with_capacity(20 + opts.len() + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(((5 + opts.len() / 4) as u8) << 4);
    s.push(flags);
    s.extend_from_slice(&w.win.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(&opts);
    s.extend_from_slice(payload);
    l4(src, dst, IPPROTO_TCP, s, 16)
}

pub fn udp_datagram(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    l4(src, dst, IPPROTO_UDP, s, 6)
}

/// ICMP (v4) or ICMPv6 message: type, code, 4 bytes of rest-of-header, body.
pub fn icmp_message(
    src: IpAddr,
    dst: IpAddr,
    ty: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut s = vec![ty, code, 0, 0];
    s.extend_from_slice(&rest);
    s.extend_from_slice(body);
    let proto = if src.is_ipv4() {
        IPPROTO_ICMP
    } else {
        IPPROTO_ICMPV6
    };
    l4(src, dst, proto, s, 2)
}

/// Wrap an L4 payload in an IP header.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = csum(0, &h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h.extend_from_slice(l4);
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            h.push(proto);
            h.push(64);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(l4);
            h
        }
        _ => panic!("address family mix"),
    }
}

/// Ethernet frame around `payload`.
pub fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ethertype(a: IpAddr) -> u16 {
    if a.is_ipv4() {
        0x0800
    } else {
        0x86dd
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad address {s}"))
}

/// A TCP frame from `src:sport` to `dst:dport` (client MAC -> server MAC).
/// Both sides number from 1000 and acknowledge 1001, so a SYN, SYN+ACK,
/// ACK built with it is a handshake whose numbers agree (the datapath
/// checks them: ARCHITECTURE.md §5, "Handshake numbers").
pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    tcp_full(src, sport, dst, dport, flags, 1000, 1001, &[])
}

#[allow(clippy::too_many_arguments)]
pub fn tcp_full(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let w = TcpWindow::DEFAULT;
    tcp_win(src, sport, dst, dport, flags, seq, ack, w, payload)
}

/// [`tcp_full`] with the window of [`tcp_segment_win`].
#[allow(clippy::too_many_arguments)]
pub fn tcp_win(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    w: TcpWindow,
    payload: &[u8],
) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    let seg = tcp_segment_win(s, d, sport, dport, flags, seq, ack, w, payload);
    ether(
        SERVER_MAC,
        CLIENT_MAC,
        ethertype(s),
        &ip_packet(s, d, IPPROTO_TCP, &seg),
    )
}

pub fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    let seg = udp_datagram(s, d, sport, dport, payload);
    ether(
        SERVER_MAC,
        CLIENT_MAC,
        ethertype(s),
        &ip_packet(s, d, IPPROTO_UDP, &seg),
    )
}

/// ICMP echo request (v4 type 8 / v6 type 128) or reply (0 / 129).
pub fn icmp_echo(src: &str, dst: &str, reply: bool, id: u16, seq: u16) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    let ty = match (s.is_ipv4(), reply) {
        (true, false) => 8,
        (true, true) => 0,
        (false, false) => 128,
        (false, true) => 129,
    };
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&id.to_be_bytes());
    rest[2..].copy_from_slice(&seq.to_be_bytes());
    let m = icmp_message(s, d, ty, 0, rest, b"zfw-ping");
    let proto = if s.is_ipv4() {
        IPPROTO_ICMP
    } else {
        IPPROTO_ICMPV6
    };
    ether(
        SERVER_MAC,
        CLIENT_MAC,
        ethertype(s),
        &ip_packet(s, d, proto, &m),
    )
}

/// An ICMP error from `src` to `dst` quoting `quoted` (an IP packet).
pub fn icmp_error(src: &str, dst: &str, ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    let q = &quoted[..quoted.len().min(if s.is_ipv4() { 28 } else { 48 })];
    let m = icmp_message(s, d, ty, code, [0; 4], q);
    let proto = if s.is_ipv4() {
        IPPROTO_ICMP
    } else {
        IPPROTO_ICMPV6
    };
    ether(
        SERVER_MAC,
        CLIENT_MAC,
        ethertype(s),
        &ip_packet(s, d, proto, &m),
    )
}

/// The IP packet inside an Ethernet frame.
pub fn strip_ether(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// An ARP request frame.
pub fn arp() -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1];
    p.extend_from_slice(&CLIENT_MAC);
    p.extend_from_slice(&[10, 0, 0, 1]);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&[10, 0, 0, 2]);
    ether([0xff; 6], CLIENT_MAC, 0x0806, &p)
}
