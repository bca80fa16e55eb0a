//! The traffic of `make bench-traffic`: servers in the server namespace,
//! clients in the client namespace, all threads of this one process (each
//! joins its namespace with setns and, when asked, pins itself to a CPU).
//!
//! - connections/s: W client workers (to port 5201 for the baseline, 5202
//!   for zfw) each loop connect (from one of K client
//!   addresses, kernel-chosen port), send a 64-byte request, read the 64-byte
//!   response and the server's FIN, close.  The server closes first, so
//!   TIME_WAIT sits on the server, as with HTTP servers (docs/BENCH.md).
//! - Gbit/s: one TCP stream, 256 KiB writes for the trial length; the server
//!   counts bytes until EOF.
//! - UDP packets/s: 18-byte payloads (64-byte frames) from one connected
//!   socket, sent in batches of 64 with sendmmsg; the figure is what the
//!   server received (recvmmsg), per second of sending.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{self as ns, sockopt, MsgFlags, MultiHeaders, SockaddrIn};
use nix::sys::time::TimeVal;

use super::lab::{stopped, Res, SERVER};

/// Connection-rate servers: one port for the baseline's trials, one for
/// zfw's.  The server's TIME_WAIT sockets of one side's trials then never
/// meet the other side's SYNs: each side sees only its own history, as if
/// it ran alone (docs/BENCH.md).
pub const CPS_PORTS: [u16; 2] = [5201, 5202];
pub const STREAM_PORT: u16 = 5203;
pub const UDP_PORT: u16 = 5203;
/// A listener no rule admits: zfw must drop connections to it.
pub const PROBE_PORT: u16 = 5299;
const MSG: usize = 64;
const UDP_PAYLOAD: usize = 18;
const BATCH: usize = 64;

/// Spawn a thread that joins the network namespace `ns` (and CPU `cpu`).
pub fn in_ns<T: Send + 'static>(
    ns: &Path,
    cpu: Option<usize>,
    f: impl FnOnce() -> Res<T> + Send + 'static,
) -> JoinHandle<Res<T>> {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&ns).map_err(|e| format!("{}: {e}", ns.display()))?;
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {}: {e}", ns.display()))?;
        if let Some(c) = cpu {
            let mut set = nix::sched::CpuSet::new();
            set.set(c).map_err(|e| format!("cpu {c}: {e}"))?;
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(|e| format!("pinning to cpu {c}: {e}"))?;
        }
        f()
    })
}

fn join<T>(h: JoinHandle<Res<T>>) -> Res<T> {
    h.join()
        .map_err(|_| "a traffic thread panicked".to_string())?
}

fn timeval(d: Duration) -> TimeVal {
    TimeVal::new(d.as_secs() as _, d.subsec_micros() as _)
}

fn tcp_listener(port: u16) -> Res<TcpListener> {
    let fd = ns::socket(
        ns::AddressFamily::Inet,
        ns::SockType::Stream,
        ns::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    ns::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    let addr = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    ns::bind(fd.as_raw_fd(), &addr).map_err(|e| format!("bind :{port}: {e}"))?;
    ns::listen(&fd, ns::Backlog::MAXCONN).map_err(|e| format!("listen :{port}: {e}"))?;
    // accept() honours SO_RCVTIMEO: the accept loops can see `quit`
    ns::setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &timeval(Duration::from_millis(200)),
    )
    .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    Ok(TcpListener::from(fd))
}

/// What the servers saw, shared with the trials.
#[derive(Default)]
pub struct Seen {
    /// connections/datagram batches whose source was the router's outside
    /// address (translated), and the others (the client's own addresses)
    pub from_router: AtomicU64,
    pub from_client: AtomicU64,
    pub udp_packets: AtomicU64,
    stream: Mutex<Option<(u64, Instant)>>,
}

impl Seen {
    fn peer(&self, ip: Ipv4Addr, router: Ipv4Addr) {
        let c = if ip == router {
            &self.from_router
        } else {
            &self.from_client
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// (translated, untranslated) since the last call.
    pub fn take_peers(&self) -> (u64, u64) {
        (
            self.from_router.swap(0, Ordering::SeqCst),
            self.from_client.swap(0, Ordering::SeqCst),
        )
    }
}

fn v4(a: SocketAddr) -> Ipv4Addr {
    match a {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// The server namespace's listeners and their threads (joined on drop,
/// before the lab deletes the namespace).
pub struct Servers {
    pub seen: Arc<Seen>,
    quit: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Res<()>>>,
}

impl Servers {
    pub fn start(server_ns: &Path, cpu: Option<usize>, router: Ipv4Addr) -> Res<Servers> {
        let seen = Arc::new(Seen::default());
        let quit = Arc::new(AtomicBool::new(false));
        let mut me = Servers {
            seen: seen.clone(),
            quit: quit.clone(),
            threads: Vec::new(),
        };
        // open every socket first, so a bind error is reported at once
        let (cps0, cps1, stream, udp, probe) = join(in_ns(server_ns, None, || {
            let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, UDP_PORT))
                .map_err(|e| format!("bind udp :{UDP_PORT}: {e}"))?;
            ns::setsockopt(&udp, sockopt::RcvBufForce, &(8 << 20))
                .map_err(|e| format!("SO_RCVBUFFORCE: {e}"))?;
            udp.set_read_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| format!("udp timeout: {e}"))?;
            Ok((
                tcp_listener(CPS_PORTS[0])?,
                tcp_listener(CPS_PORTS[1])?,
                tcp_listener(STREAM_PORT)?,
                udp,
                tcp_listener(PROBE_PORT)?,
            ))
        }))?;
        for cps in [Arc::new(cps0), Arc::new(cps1)] {
            for _ in 0..2 {
                let (l, s, q) = (cps.clone(), seen.clone(), quit.clone());
                me.threads.push(in_ns(server_ns, cpu, move || {
                    cps_server(&l, &s, &q, router)
                }));
            }
        }
        let (s, q) = (seen.clone(), quit.clone());
        me.threads.push(in_ns(server_ns, cpu, move || {
            stream_server(&stream, &s, &q, router)
        }));
        let (s, q) = (seen.clone(), quit.clone());
        me.threads.push(in_ns(server_ns, cpu, move || {
            udp_server(&udp, &s, &q, router)
        }));
        // the probe listener completes handshakes in the kernel; a few
        // probes never fill its backlog, so nothing needs to accept
        me.threads.push(in_ns(server_ns, None, move || {
            let _keep = probe;
            while !q_done(&quit) {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }));
        Ok(me)
    }
}

fn q_done(q: &AtomicBool) -> bool {
    q.load(Ordering::Relaxed)
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn cps_server(l: &TcpListener, seen: &Seen, quit: &AtomicBool, router: Ipv4Addr) -> Res<()> {
    let mut buf = [0u8; MSG];
    let resp = [b'r'; MSG];
    while !q_done(quit) {
        let Ok((mut s, peer)) = l.accept() else {
            continue;
        };
        seen.peer(v4(peer), router);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        if s.read_exact(&mut buf).is_ok() {
            let _ = s.write_all(&resp);
        }
        // dropping `s` closes first: TIME_WAIT on the server
    }
    Ok(())
}

fn stream_server(l: &TcpListener, seen: &Seen, quit: &AtomicBool, router: Ipv4Addr) -> Res<()> {
    let mut buf = vec![0u8; 256 << 10];
    while !q_done(quit) {
        let Ok((mut s, peer)) = l.accept() else {
            continue;
        };
        seen.peer(v4(peer), router);
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut n = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
            if q_done(quit) {
                break;
            }
        }
        *seen.stream.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, Instant::now()));
    }
    Ok(())
}

fn udp_server(s: &UdpSocket, seen: &Seen, quit: &AtomicBool, router: Ipv4Addr) -> Res<()> {
    let mut bufs = vec![[0u8; 64]; BATCH];
    let mut hdrs = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let fd = s.as_raw_fd();
    while !q_done(quit) {
        let mut iovs: Vec<[IoSliceMut; 1]> =
            bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let Ok(res) = ns::recvmmsg(fd, &mut hdrs, &mut iovs, MsgFlags::MSG_WAITFORONE, None) else {
            continue;
        };
        let mut n = 0u64;
        let mut first = None;
        for m in res {
            n += 1;
            if first.is_none() {
                first = m.address.map(|a: SockaddrIn| a.ip());
            }
        }
        if let Some(a) = first {
            seen.peer(a, router);
        }
        seen.udp_packets.fetch_add(n, Ordering::Relaxed);
    }
    Ok(())
}

/// One trial's traffic figures.
#[derive(Default, Clone, serde::Serialize)]
pub struct Measured {
    /// the figure: connections/s, Gbit/s or packets/s
    pub value: f64,
    /// measured span (s)
    pub secs: f64,
    /// connections completed / bytes / packets received
    pub done: u64,
    /// UDP: packets sent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    /// connections that failed (connect timeout or refusal, short reply)
    pub errors: u64,
    /// the slowest connection of the trial (ms); 1000+ means a SYN retry
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_conn_ms: Option<f64>,
    /// the stream broke off: the figure is 0
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Client {
    pub ns: PathBuf,
    pub cpu: Option<usize>,
    pub addrs: Vec<Ipv4Addr>,
    pub workers: usize,
}

/// connect (bound to `src`, port chosen by the kernel for this 4-tuple),
/// request, response, the server's FIN, close.  Ok(elapsed) or Err.
fn one_connection(src: Ipv4Addr, dst: SocketAddrV4) -> Result<Duration, ()> {
    let t = Instant::now();
    let fd: OwnedFd = ns::socket(
        ns::AddressFamily::Inet,
        ns::SockType::Stream,
        ns::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|_| ())?;
    // the port is picked at connect() time, unique per destination, so K
    // addresses x 64k ports are usable (docs/BENCH.md)
    ns::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true).map_err(|_| ())?;
    ns::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0))).map_err(|_| ())?;
    // a blocking connect() gives up after SO_SNDTIMEO
    ns::setsockopt(&fd, sockopt::SendTimeout, &timeval(Duration::from_secs(3))).map_err(|_| ())?;
    ns::connect(fd.as_raw_fd(), &SockaddrIn::from(dst)).map_err(|_| ())?;
    let mut s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|_| ())?;
    s.write_all(&[b'q'; MSG]).map_err(|_| ())?;
    let mut buf = [0u8; MSG];
    s.read_exact(&mut buf).map_err(|_| ())?;
    match s.read(&mut buf) {
        Ok(0) => Ok(t.elapsed()),
        _ => Err(()),
    }
}

impl Client {
    pub fn cps(&self, secs: f64, port: u16) -> Res<Measured> {
        let dst = SocketAddrV4::new(SERVER, port);
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let mut hs = Vec::new();
        for w in 0..self.workers {
            let addrs = self.addrs.clone();
            hs.push(in_ns(&self.ns, self.cpu, move || {
                let (mut ok, mut err, mut worst) = (0u64, 0u64, Duration::ZERO);
                let mut i = w;
                while Instant::now() < deadline && !stopped() {
                    let src = addrs[i % addrs.len()];
                    i += 1;
                    match one_connection(src, dst) {
                        Ok(d) => {
                            if Instant::now() <= deadline {
                                ok += 1;
                            }
                            worst = worst.max(d);
                        }
                        Err(()) => {
                            err += 1;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                Ok((ok, err, worst))
            }));
        }
        let mut m = Measured::default();
        let mut worst = Duration::ZERO;
        for h in hs {
            let (ok, err, w) = join(h)?;
            m.done += ok;
            m.errors += err;
            worst = worst.max(w);
        }
        m.secs = secs;
        m.value = m.done as f64 / secs;
        m.max_conn_ms = Some(worst.as_secs_f64() * 1e3);
        Ok(m)
    }

    /// A stream that cannot connect or stalls for 2 s measures 0 (with
    /// the error recorded); the bench goes on.
    pub fn stream(&self, secs: f64, seen: &Arc<Seen>) -> Res<Measured> {
        match self.stream_once(secs, seen) {
            Ok(m) => Ok(m),
            Err(e) if !stopped() => Ok(Measured {
                secs,
                errors: 1,
                error: Some(e),
                ..Default::default()
            }),
            Err(e) => Err(e),
        }
    }

    fn stream_once(&self, secs: f64, seen: &Arc<Seen>) -> Res<Measured> {
        *seen.stream.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // from the client's first address (the default route's source)
        let start = join(in_ns(&self.ns, self.cpu, move || {
            let dst = SocketAddr::V4(SocketAddrV4::new(SERVER, STREAM_PORT));
            let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(3))
                .map_err(|e| format!("stream connect: {e}"))?;
            s.set_write_timeout(Some(Duration::from_secs(2)))
                .map_err(|e| format!("stream: {e}"))?;
            let buf = vec![b's'; 256 << 10];
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(secs);
            while Instant::now() < deadline && !stopped() {
                s.write_all(&buf)
                    .map_err(|e| format!("stream write: {e}"))?;
            }
            s.shutdown(std::net::Shutdown::Write)
                .map_err(|e| format!("stream shutdown: {e}"))?;
            Ok(start)
        }))?;
        let give_up = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((n, end)) = *seen.stream.lock().unwrap_or_else(|p| p.into_inner()) {
                let span = end.duration_since(start).as_secs_f64();
                return Ok(Measured {
                    value: n as f64 * 8.0 / span / 1e9,
                    secs: span,
                    done: n,
                    ..Default::default()
                });
            }
            if Instant::now() > give_up {
                return Err("stream: the server never saw the end of the stream".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn udp(&self, secs: f64, seen: &Arc<Seen>) -> Res<Measured> {
        let before = seen.udp_packets.load(Ordering::SeqCst);
        let src = self.addrs[0];
        let (sent, span) = join(in_ns(&self.ns, self.cpu, move || {
            let s = UdpSocket::bind((src, 0)).map_err(|e| format!("udp bind: {e}"))?;
            s.connect((SERVER, UDP_PORT))
                .map_err(|e| format!("udp connect: {e}"))?;
            let payload = [b'u'; UDP_PAYLOAD];
            let iovs: Vec<[IoSlice; 1]> = (0..BATCH).map(|_| [IoSlice::new(&payload)]).collect();
            let addrs: Vec<Option<SockaddrIn>> = vec![None; BATCH];
            let mut hdrs = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(secs);
            let mut sent = 0u64;
            let mut round = 0u32;
            loop {
                if round.is_multiple_of(16) && (Instant::now() >= deadline || stopped()) {
                    break;
                }
                round = round.wrapping_add(1);
                if let Ok(r) = ns::sendmmsg(
                    s.as_raw_fd(),
                    &mut hdrs,
                    &iovs,
                    &addrs,
                    [],
                    MsgFlags::empty(),
                ) {
                    sent += r.count() as u64;
                }
            }
            Ok((sent, start.elapsed().as_secs_f64()))
        }))?;
        // let the last packets arrive: wait until the count stops moving
        let mut last = seen.udp_packets.load(Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(1);
        loop {
            std::thread::sleep(Duration::from_millis(30));
            let now = seen.udp_packets.load(Ordering::SeqCst);
            if now == last || Instant::now() > give_up {
                break;
            }
            last = now;
        }
        let got = last - before;
        Ok(Measured {
            value: got as f64 / span,
            secs: span,
            done: got,
            sent: Some(sent),
            ..Default::default()
        })
    }

    /// Does a TCP connection to `port` on the server complete within 400 ms?
    pub fn probe(&self, port: u16) -> Res<bool> {
        join(in_ns(&self.ns, None, move || {
            let dst = SocketAddr::V4(SocketAddrV4::new(SERVER, port));
            Ok(TcpStream::connect_timeout(&dst, Duration::from_millis(400)).is_ok())
        }))
    }
}

/// Whether the servers' peers of the last trial are what the state
/// promises: all translated to the router's address with masquerade, none
/// without.
pub fn check_peers(seen: &Seen, masq: bool, what: &str) -> Res<(u64, u64)> {
    let (router, client) = seen.take_peers();
    let ok = if masq {
        router > 0 && client == 0
    } else {
        client > 0 && router == 0
    };
    if !ok {
        return Err(format!(
            "{what}: the server saw {router} peer(s) from the router and {client} from the client; \
             masquerade {} expects only the {}",
            if masq { "on" } else { "off" },
            if masq { "router" } else { "client" }
        ));
    }
    Ok((router, client))
}
