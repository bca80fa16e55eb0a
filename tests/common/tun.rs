//! A tun device whose other end is this test: a stand-in for the OpenZiti
//! tunneler (ziti-edge-tunnel), which reads the packets zfw redirects into
//! the tun and writes the answers back into it.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Netns;

const TUNSETIFF: u64 = 0x4004_54ca;
const IFF_TUN: u16 = 0x0001;
const IFF_NO_PI: u16 = 0x1000;

/// Create tun device `name` (IFF_TUN, no packet info) in `ns`, set it up.
pub fn open_tun(ns: &Netns, name: &str) -> File {
    let n = name.to_string();
    let f = ns.enter(move || {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("open /dev/net/tun");
        let mut ifr = [0u8; 40];
        ifr[..n.len()].copy_from_slice(n.as_bytes());
        ifr[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq (40 bytes), which
        // `ifr` is, for the duration of the call; the fd is open.
        let rc = unsafe { nix::libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) };
        assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        f
    });
    ns.ip(&["link", "set", name, "up"]);
    f
}

/// Parsed IPv4/UDP packet: (src, dst, sport, dport, payload).
fn parse_udp4(p: &[u8]) -> Option<(IpAddr, IpAddr, u16, u16, Vec<u8>)> {
    if p.len() < 28 || p[0] >> 4 != 4 || p[9] != 17 {
        return None;
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    let tot = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    let s: [u8; 4] = p[12..16].try_into().ok()?;
    let d: [u8; 4] = p[16..20].try_into().ok()?;
    let u = &p[ihl..tot];
    let sport = u16::from_be_bytes([u[0], u[1]]);
    let dport = u16::from_be_bytes([u[2], u[3]]);
    Some((s.into(), d.into(), sport, dport, u[8..].to_vec()))
}

/// The tunneler: answers every UDP datagram it reads from the tun with the
/// same payload, from the service address back to the client.
pub struct Tunneler {
    stop: Arc<AtomicBool>,
    pub seen: Arc<AtomicU64>,
    /// The first packet read, as the tun delivered it (starts at the IP header).
    pub first: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    thread: Option<JoinHandle<()>>,
}

impl Tunneler {
    pub fn start(mut tun: File) -> Tunneler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let first = Arc::new(std::sync::Mutex::new(None));
        let (st, sn, fi) = (stop.clone(), seen.clone(), first.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::SeqCst) {
                let mut pfd = nix::libc::pollfd {
                    fd: tun.as_raw_fd(),
                    events: nix::libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, count 1, for the duration of the call.
                let n = unsafe { nix::libc::poll(&mut pfd, 1, 100) };
                if n <= 0 {
                    continue;
                }
                let Ok(len) = tun.read(&mut buf) else { break };
                let pkt = &buf[..len];
                let Some((src, dst, sport, dport, payload)) = parse_udp4(pkt) else {
                    continue;
                };
                sn.fetch_add(1, Ordering::SeqCst);
                fi.lock().unwrap().get_or_insert_with(|| pkt.to_vec());
                let seg = zfw::testkit::packet::udp_datagram(dst, src, dport, sport, &payload);
                let reply = zfw::testkit::packet::ip_packet(dst, src, zfw::net::IPPROTO_UDP, &seg);
                let _ = tun.write_all(&reply);
            }
        });
        Tunneler {
            stop,
            seen,
            first,
            thread: Some(thread),
        }
    }
}

impl Drop for Tunneler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
