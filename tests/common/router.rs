//! Three namespaces for masquerade tests: client -- router -- server.
//! client 10.81.1.2/24, fd81:1::2/64 on `cl0`, default route via the router;
//! router 10.81.1.1 + fd81:1::1 on `ri0` (inside), 10.81.2.1 + fd81:2::1 on
//! `ro0` (outside), forwarding on; server 10.81.2.2, fd81:2::2 on `sv0` with
//! NO route back to the client subnet.  zfw runs in the router on `ro0`.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

pub const R_CLIENT: &str = "10.81.1.2";
pub const R_OUTSIDE: &str = "10.81.2.1";
pub const R_SERVER: &str = "10.81.2.2";
pub const R_CLIENT6: &str = "fd81:1::2";
pub const R_OUTSIDE6: &str = "fd81:2::1";
pub const R_SERVER6: &str = "fd81:2::2";
pub const OUTSIDE_IF: &str = "ro0";

pub struct RouterLab {
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
    pub root: BpfRoot,
}

impl RouterLab {
    pub fn new() -> RouterLab {
        let client = Netns::new("cli");
        let router = Netns::new("rtr");
        let server = Netns::new("srv");
        veth(&client, "cl0", &router, "ri0");
        veth(&router, OUTSIDE_IF, &server, "sv0");
        client.ip(&["addr", "add", "10.81.1.2/24", "dev", "cl0"]);
        client.ip(&["-6", "addr", "add", "fd81:1::2/64", "dev", "cl0", "nodad"]);
        client.ip(&["route", "add", "default", "via", "10.81.1.1"]);
        client.ip(&["-6", "route", "add", "default", "via", "fd81:1::1"]);
        router.ip(&["addr", "add", "10.81.1.1/24", "dev", "ri0"]);
        router.ip(&["-6", "addr", "add", "fd81:1::1/64", "dev", "ri0", "nodad"]);
        router.ip(&["addr", "add", "10.81.2.1/24", "dev", OUTSIDE_IF]);
        router.ip(&[
            "-6",
            "addr",
            "add",
            "fd81:2::1/64",
            "dev",
            OUTSIDE_IF,
            "nodad",
        ]);
        server.ip(&["addr", "add", "10.81.2.2/24", "dev", "sv0"]);
        server.ip(&["-6", "addr", "add", "fd81:2::2/64", "dev", "sv0", "nodad"]);
        for k in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            let out = router.exec("sysctl", &["-qw", k]);
            assert!(out.status.success(), "sysctl {k} in the router");
        }
        let root = BpfRoot::in_ns(&router);
        RouterLab {
            client,
            router,
            server,
            root,
        }
    }

    /// `zfw` in the router namespace.
    pub fn zfw(&self, args: &[&str]) -> Run {
        zfw(Some(&self.router), &self.root, args)
    }

    /// `zfw load --iface ro0` in the router.
    pub fn load(&self) {
        self.zfw(&["load", "--iface", OUTSIDE_IF]).ok();
    }

    /// Turn masquerade on/off on the outside interface through diag_map
    /// (what `zfw iface set ro0 --masquerade on` does).
    pub fn set_masquerade(&self, on: bool) {
        let maps = self.root.maps();
        let bit = zfw::skel::names::ZFW_IF_MASQUERADE as u32;
        let ifaces = maps.ifaces().unwrap();
        let (idx, mut st) = ifaces
            .into_iter()
            .find(|(_, st)| zfw::iface_state::name_str(&st.name) == OUTSIDE_IF)
            .expect("ro0 in diag_map");
        if on {
            st.flags |= bit;
        } else {
            st.flags &= !bit;
        }
        maps.put(&zfw::maps::defs::DIAG_MAP, &idx, &st).unwrap();
    }
}

impl Drop for RouterLab {
    fn drop(&mut self) {
        // unload before the namespaces go
        let r = std::mem::replace(
            &mut self.root,
            BpfRoot {
                dir: PathBuf::new(),
                ns_path: None,
            },
        );
        drop(r);
    }
}

pub type Peers = Arc<Mutex<Vec<IpAddr>>>;

/// TCP echo server in `ns` that records every peer address it accepts.
pub fn tcp_echo_peers(ns: &Netns, addr: &str) -> (u16, Peers) {
    let addr: SocketAddr = addr.parse().expect("addr");
    let l = ns.enter(move || TcpListener::bind(addr).expect("bind"));
    let port = l.local_addr().expect("addr").port();
    let peers: Peers = Arc::default();
    let p = peers.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            if let Ok(a) = s.peer_addr() {
                p.lock().unwrap().push(a.ip());
            }
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 256];
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                if let Ok(n) = s.read(&mut buf) {
                    let _ = s.write_all(&buf[..n]);
                }
            });
        }
    });
    (port, peers)
}

/// UDP echo server in `ns` that records every peer address.
pub fn udp_echo_peers(ns: &Netns, addr: &str) -> (u16, Peers) {
    let addr: SocketAddr = addr.parse().expect("addr");
    let s = ns.enter(move || UdpSocket::bind(addr).expect("bind udp"));
    let port = s.local_addr().expect("addr").port();
    let peers: Peers = Arc::default();
    let p = peers.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            p.lock().unwrap().push(peer.ip());
            let _ = s.send_to(&buf[..n], peer);
        }
    });
    (port, peers)
}

/// Every recorded peer is `want` (and there is at least one).
pub fn only_peer(peers: &Peers, want: &str) -> bool {
    let v = peers.lock().unwrap();
    let want: IpAddr = want.parse().unwrap();
    !v.is_empty() && v.iter().all(|a| *a == want)
}
