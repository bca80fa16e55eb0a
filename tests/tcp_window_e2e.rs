//! A blind RST or FIN cannot end a real connection through the router
//! (ARCHITECTURE.md §5, "Windows"): client -> router (zfw on its outside
//! veth) -> server, forwarded and masqueraded.  An off-path sender on the
//! server's side who knows the tuple but not the numbers spoofs the
//! server's RSTs and FINs with numbers far from the real ones; the
//! connection must keep working, and the server's real RST must still end
//! it (and zfw's state with it).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::packet::*;
use common::router::*;
use common::watch::wait_until;
use common::*;
use zfw::maps::defs;

/// An echo server in the server namespace for one connection: it sends
/// back what it reads, and resets the connection (SO_LINGER 0, close) when
/// told to.
fn echo_server(lab: &RouterLab) -> (u16, mpsc::Receiver<SocketAddr>, mpsc::Sender<()>) {
    let l = lab
        .server
        .enter(|| TcpListener::bind("0.0.0.0:0").expect("bind"));
    let port = l.local_addr().unwrap().port();
    let (peer_tx, peer_rx) = mpsc::channel();
    let (reset_tx, reset_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut s, peer)) = l.accept() else {
            return;
        };
        peer_tx.send(peer).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 512];
        loop {
            if reset_rx.try_recv().is_ok() {
                let _ = linger_zero(&s);
                return; // dropped: the kernel sends a RST
            }
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(_) => continue,
            }
        }
    });
    (port, peer_rx, reset_tx)
}

/// SO_LINGER {on, 0}: closing the socket resets the connection.
fn linger_zero(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a live socket with a correctly sized linger.
    let rc = unsafe {
        nix::libc::setsockopt(
            s.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_LINGER,
            (&l as *const nix::libc::linger).cast(),
            std::mem::size_of::<nix::libc::linger>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Send a spoofed IPv4 TCP segment from the server namespace (raw socket).
fn spoof(lab: &RouterLab, src: SocketAddr, dst: SocketAddr, flags: u8, seq: u32) {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only")
    };
    let seg = tcp_segment(
        s.into(),
        d.into(),
        src.port(),
        dst.port(),
        flags,
        seq,
        0,
        &[],
    );
    let pkt = ip_packet(s.into(), d.into(), 6, &seg);
    lab.server.enter(move || {
        let fd = raw_ip_socket();
        let rc = raw_send_v4(fd, &pkt, d);
        assert_eq!(rc as usize, pkt.len(), "sendto");
        // SAFETY: fd came from socket() above and is closed once.
        unsafe { nix::libc::close(fd) };
    });
}

fn drops_invalid(lab: &RouterLab) -> u64 {
    zfw::status::reason_count(
        &lab.root.maps(),
        zfw::skel::names::ZFW_R_DROP_TCP_INVALID as u32,
    )
    .unwrap()
}

/// zfw's entry of the client's flow on the outside interface: the server's
/// next number, or None when there is none.
fn server_next(lab: &RouterLab, cport: u16) -> Option<u32> {
    let maps = lab.root.maps();
    defs::flow_tables_of(&defs::TCP_MAP)
        .flat_map(|t| maps.entries(t.def).unwrap())
        .find(|(k, _)| k.sport == cport)
        .map(|(_, v)| v.next_seq_reply)
}

fn blind_resets_do_not_end_the_connection(masquerade: bool) {
    let lab = RouterLab::new();
    if !masquerade {
        lab.server
            .ip(&["route", "add", "10.81.1.0/24", "via", R_OUTSIDE]);
    }
    lab.load();
    lab.set_masquerade(masquerade);
    let (port, peer_rx, reset) = echo_server(&lab);
    let server: SocketAddr = format!("{R_SERVER}:{port}").parse().unwrap();
    let mut c = lab.client.enter(move || {
        TcpStream::connect_timeout(&server, Duration::from_secs(5)).expect("connect")
    });
    let cport = c.local_addr().unwrap().port();
    assert!(echo_once(&mut c, b"hello"), "echo before");
    // where the server sees the client: the router's address when masqueraded
    let peer = peer_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let want_peer: IpAddr = if masquerade { R_OUTSIDE } else { R_CLIENT }
        .parse()
        .unwrap();
    assert_eq!(peer.ip(), want_peer);
    let next = server_next(&lab, cport).expect("zfw tracks the flow");

    let before = drops_invalid(&lab);
    let blind = [
        next ^ 0x8000_0000,
        next.wrapping_add(0x1000_0000),
        next.wrapping_sub(0x0400_0000),
    ];
    for seq in blind {
        spoof(&lab, server, peer, TCP_RST, seq);
        spoof(&lab, server, peer, TCP_FIN | TCP_ACK, seq);
    }
    assert!(
        wait_until(Duration::from_secs(3), || drops_invalid(&lab) - before
            >= 2 * blind.len() as u64)
        .is_some(),
        "every blind segment dropped as drop_tcp_invalid ({} of {})",
        drops_invalid(&lab) - before,
        2 * blind.len()
    );
    for i in 0..3 {
        assert!(
            echo_once(&mut c, format!("after {i}").as_bytes()),
            "the connection still works after blind RSTs (round {i})"
        );
    }
    assert!(
        server_next(&lab, cport).is_some(),
        "zfw's state is still there"
    );
    if masquerade {
        let maps = lab.root.maps();
        let mapped = maps
            .entries(&defs::MASQUERADE_MAP)
            .unwrap()
            .into_iter()
            .any(|(k, _)| k.nport == peer.port());
        assert!(mapped, "the masquerade mapping is still there");
    }

    // the server's real RST still ends the connection, and zfw's state
    reset.send(()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 16];
    let r = c.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the client sees the server's reset: {r:?}"
    );
    assert!(
        wait_until(Duration::from_secs(2), || server_next(&lab, cport)
            .is_none())
        .is_some(),
        "the real RST ends zfw's state"
    );
}

#[test]
fn blind_resets_and_fins_cannot_end_a_forwarded_connection() {
    require_priv!();
    blind_resets_do_not_end_the_connection(false);
}

#[test]
fn blind_resets_and_fins_cannot_end_a_masqueraded_connection() {
    require_priv!();
    blind_resets_do_not_end_the_connection(true);
}
