//! rtnetlink notifications of interface addresses and links, for
//! `zfw watch` (ARCHITECTURE.md §6, watch_map).
//!
//! The socket joins the RTMGRP_LINK, RTMGRP_IPV4_IFADDR and
//! RTMGRP_IPV6_IFADDR groups; messages are parsed by `netlink-packet-route`.
//! An event only says *which* interface changed: the watcher then reads that
//! interface's addresses from the kernel, so a lost, reordered or repeated
//! notification can never leave a wrong address behind.  When the kernel
//! could not queue a notification (ENOBUFS) or a message does not parse,
//! `read` says `Resync`: the caller must re-read everything.

use std::os::fd::{AsFd, BorrowedFd};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::libc;

use crate::error::{Error, Result};

/// What a notification says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An address of `ifindex` was added, removed or changed.
    Addr { ifindex: u32 },
    /// Link `ifindex` exists (created, renamed or its state changed).
    LinkNew { ifindex: u32, name: String },
    /// Link `ifindex` was deleted.
    LinkGone { ifindex: u32, name: String },
}

/// The outcome of one `read`.
#[derive(Debug)]
pub enum Batch {
    /// Every notification queued so far (possibly none).
    Events(Vec<Event>),
    /// Notifications were lost (`why`): re-read the whole state.
    Resync(String),
}

/// A non-blocking socket subscribed to link and address notifications.
pub struct Subscription {
    sock: Socket,
    buf: Vec<u8>,
}

const GROUPS: u32 =
    (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;

/// Receive buffer asked of the kernel: room for thousands of notifications
/// between two reads (a burst beyond it is an ENOBUFS and a re-sync).
const RCVBUF: usize = 1 << 20;

impl Subscription {
    pub fn open() -> Result<Self> {
        let io = |what: &str, e: std::io::Error| Error::runtime(format!("{what}: {e}"));
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| io("opening a netlink socket", e))?;
        sock.bind(&SocketAddr::new(0, GROUPS))
            .map_err(|e| io("subscribing to link and address notifications", e))?;
        // best effort: without it the default buffer is used
        let _ = sock.set_rx_buf_sz(RCVBUF);
        sock.set_non_blocking(true)
            .map_err(|e| io("making the netlink socket non-blocking", e))?;
        Ok(Subscription {
            sock,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// The socket, for poll(2).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Drain the socket: every queued notification, or `Resync`.
    pub fn read(&mut self) -> Result<Batch> {
        let mut events = Vec::new();
        let mut resync = None;
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // the kernel dropped notifications; keep draining what
                    // it did queue, then re-read everything
                    resync = Some("the kernel dropped notifications (ENOBUFS)".to_string());
                    continue;
                }
                Err(e) => return Err(Error::runtime(format!("reading netlink: {e}"))),
            };
            if n > self.buf.len() {
                resync = Some(format!("a {n}-byte netlink message was truncated"));
                continue;
            }
            if let Err(why) = parse(&self.buf[..n], &mut events) {
                resync = Some(why);
            }
        }
        Ok(match resync {
            Some(why) => Batch::Resync(why),
            None => Batch::Events(events),
        })
    }
}

/// The events of one datagram (several netlink messages back to back).
fn parse(mut bytes: &[u8], out: &mut Vec<Event>) -> std::result::Result<(), String> {
    while !bytes.is_empty() {
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
            .map_err(|e| format!("an rtnetlink message did not parse ({e})"))?;
        let len = msg.header.length as usize;
        if len == 0 || len > bytes.len() {
            return Err(format!("an rtnetlink message has length {len}"));
        }
        if let NetlinkPayload::InnerMessage(m) = msg.payload {
            if let Some(e) = event(m) {
                out.push(e);
            }
        }
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    Ok(())
}

fn event(m: RouteNetlinkMessage) -> Option<Event> {
    let link_name = |attrs: &[LinkAttribute]| {
        attrs.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
    };
    Some(match m {
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => Event::Addr {
            ifindex: a.header.index,
        },
        RouteNetlinkMessage::NewLink(l) => Event::LinkNew {
            ifindex: l.header.index,
            name: link_name(&l.attributes).unwrap_or_default(),
        },
        RouteNetlinkMessage::DelLink(l) => Event::LinkGone {
            ifindex: l.header.index,
            name: link_name(&l.attributes).unwrap_or_default(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::address::AddressMessage;
    use netlink_packet_route::link::LinkMessage;

    fn bytes(m: RouteNetlinkMessage) -> Vec<u8> {
        let mut p = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(m));
        p.finalize();
        let mut b = vec![0u8; p.buffer_len()];
        p.serialize(&mut b);
        b
    }

    #[test]
    fn address_and_link_messages_become_events() {
        let mut a = AddressMessage::default();
        a.header.index = 7;
        let mut l = LinkMessage::default();
        l.header.index = 9;
        l.attributes.push(LinkAttribute::IfName("eth1".into()));
        let mut buf = bytes(RouteNetlinkMessage::DelAddress(a));
        buf.extend(bytes(RouteNetlinkMessage::DelLink(l.clone())));
        buf.extend(bytes(RouteNetlinkMessage::NewLink(l)));
        let mut ev = Vec::new();
        parse(&buf, &mut ev).unwrap();
        assert_eq!(
            ev,
            vec![
                Event::Addr { ifindex: 7 },
                Event::LinkGone {
                    ifindex: 9,
                    name: "eth1".into()
                },
                Event::LinkNew {
                    ifindex: 9,
                    name: "eth1".into()
                },
            ]
        );
    }

    #[test]
    fn a_broken_message_asks_for_a_resync() {
        let mut ev = Vec::new();
        let e = parse(&[0x40, 0, 0, 0, 0x14, 0, 0, 0], &mut ev).unwrap_err();
        assert!(e.contains("did not parse") || e.contains("length"), "{e}");
    }
}
