//! Test harness: network namespaces joined by veth (removed on drop), a
//! bpffs root per test, the real `zfw` binary run inside a namespace with
//! `nsenter --net=` semantics (the mount namespace, and so the bpffs pins,
//! stay visible), and sockets opened inside a namespace.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[allow(unused_imports)]
pub use zfw::testkit::packet;
pub use zfw::testkit::run::*;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: fits IFNAMSIZ with room.
pub fn unique(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id() % 100_000;
    format!("{}{}{}", &tag[..tag.len().min(3)], pid, n)
}

/// True when the test may run.  Without root: fail under
/// ZFW_REQUIRE_PRIV=1 (CI), otherwise print why it is skipped.
pub fn privileged(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let netns = Path::new("/proc/self/ns/net").exists();
    if root && netns {
        return true;
    }
    if std::env::var("ZFW_REQUIRE_PRIV").as_deref() == Ok("1") {
        panic!("{test}: needs root (BPF, netns); ZFW_REQUIRE_PRIV=1 forbids skipping");
    }
    eprintln!("SKIP {test}: needs root for BPF and network namespaces");
    false
}

#[macro_export]
macro_rules! require_priv {
    () => {
        if !$crate::common::privileged(module_path!()) {
            return;
        }
    };
}

pub fn sh(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    out
}

pub fn sh_ok(cmd: &str, args: &[&str]) {
    let out = sh(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("zfwt-{}", unique(tag));
        sh_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -n NS ARGS`, asserting success.
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        sh_ok("ip", &a);
    }

    /// Run a command inside the namespace (mount namespace unchanged).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let net = format!("--net={}", self.path().display());
        let mut a = vec![net.as_str(), cmd];
        a.extend_from_slice(args);
        sh("nsenter", &a)
    }

    /// Run `f` on a thread that has joined this namespace; sockets it opens
    /// live in the namespace.
    pub fn enter<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = self.path();
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread panicked")
    }

    /// Like `enter`, but in the background.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let path = self.path();
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}

/// Join `a` (in `na`) and `b` (in `nb`) with a veth pair, both up.
pub fn veth(na: &Netns, a: &str, nb: &Netns, b: &str) {
    sh_ok(
        "ip",
        &[
            "link", "add", a, "netns", &na.name, "type", "veth", "peer", "name", b, "netns",
            &nb.name,
        ],
    );
    na.ip(&["link", "set", a, "up"]);
    nb.ip(&["link", "set", b, "up"]);
}

/// A bpffs root of this test's own, unloaded and removed on drop (inside
/// the namespace that holds the interfaces, when one is given).
pub struct BpfRoot {
    pub dir: PathBuf,
    ns_path: Option<PathBuf>,
}

impl BpfRoot {
    pub fn new() -> BpfRoot {
        let dir = PathBuf::from(format!("/sys/fs/bpf/{}", unique("zfwroot")));
        BpfRoot { dir, ns_path: None }
    }

    /// Root whose interfaces live in `ns` (cleanup runs there).
    pub fn in_ns(ns: &Netns) -> BpfRoot {
        let mut r = BpfRoot::new();
        r.ns_path = Some(ns.path());
        r
    }

    pub fn root(&self) -> zfw::bpffs::Root {
        zfw::bpffs::Root::new(&self.dir)
    }

    pub fn maps(&self) -> zfw::maps::Maps {
        zfw::maps::Maps::open(&self.root()).expect("open pinned maps")
    }

    pub fn prog(&self, name: &str) -> TestProg {
        TestProg::open(&self.dir.join("progs").join(name)).expect("open pinned program")
    }
}

impl Drop for BpfRoot {
    fn drop(&mut self) {
        if self.dir.exists() {
            let d = self.dir.display().to_string();
            let z = env!("CARGO_BIN_EXE_zfw");
            let _ = match &self.ns_path {
                Some(p) => sh(
                    "nsenter",
                    &[
                        &format!("--net={}", p.display()),
                        z,
                        "--bpffs",
                        &d,
                        "unload",
                        "--all",
                    ],
                ),
                None => sh(z, &["--bpffs", &d, "unload", "--all"]),
            };
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // zfw keeps a root's lock file (removing it could let two commands
        // lock different files); a test root is never used again
        let _ = std::fs::remove_file(self.root().lock_path());
    }
}

/// Result of running the zfw binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "zfw failed: {}{}", self.stderr, self.stdout);
        self
    }
}

/// Run `zfw --bpffs ROOT ARGS` in `ns` (or here when None).
pub fn zfw(ns: Option<&Netns>, root: &BpfRoot, args: &[&str]) -> Run {
    let z = env!("CARGO_BIN_EXE_zfw");
    let d = root.dir.display().to_string();
    let mut a: Vec<&str> = vec!["--bpffs", &d];
    a.extend_from_slice(args);
    let out = match ns {
        Some(ns) => ns.exec(z, &a),
        None => sh(z, &a),
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Two namespaces, client and server, joined by veth: client 10.77.0.1/24
/// (fd77::1/64) on `cli0`, server 10.77.0.2/24 (fd77::2/64) on `srv0`.
pub struct Lab {
    pub client: Netns,
    pub server: Netns,
    pub root: BpfRoot,
}

pub const CLIENT_IP: &str = "10.77.0.1";
pub const SERVER_IP: &str = "10.77.0.2";
pub const CLIENT_IP6: &str = "fd77::1";
pub const SERVER_IP6: &str = "fd77::2";

impl Lab {
    pub fn new() -> Lab {
        let client = Netns::new("cli");
        let server = Netns::new("srv");
        veth(&client, "cli0", &server, "srv0");
        client.ip(&["addr", "add", "10.77.0.1/24", "dev", "cli0"]);
        server.ip(&["addr", "add", "10.77.0.2/24", "dev", "srv0"]);
        client.ip(&["-6", "addr", "add", "fd77::1/64", "dev", "cli0", "nodad"]);
        server.ip(&["-6", "addr", "add", "fd77::2/64", "dev", "srv0", "nodad"]);
        let root = BpfRoot::in_ns(&server);
        Lab {
            client,
            server,
            root,
        }
    }

    /// `zfw` in the server namespace.
    pub fn zfw(&self, args: &[&str]) -> Run {
        zfw(Some(&self.server), &self.root, args)
    }

    pub fn load(&self) {
        self.zfw(&["load", "--iface", "srv0"]).ok();
    }

    /// Mark the pinned programs as another build's, so that the next
    /// `zfw load` replaces them (keeping the pinned maps).
    pub fn pretend_another_build(&self) {
        let maps = self.root.maps();
        let mut cfg = maps.config().unwrap();
        cfg.build_id ^= 1;
        maps.set_config(&cfg).unwrap();
    }

    /// A TCP connection from the client to the server's `port` (held
    /// while the stream lives).
    pub fn connect(&self, port: u16) -> TcpStream {
        let target: SocketAddr = format!("{SERVER_IP}:{port}").parse().unwrap();
        self.client
            .enter(move || TcpStream::connect_timeout(&target, Duration::from_secs(3)))
            .expect("the client connects")
    }

    /// `n` UDP datagrams from the client to the server's `port`, 2 ms apart.
    pub fn send_udp(&self, n: usize, port: u16) {
        self.client.enter(move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..n {
                s.send_to(b"zfw", format!("{SERVER_IP}:{port}")).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // unload before the namespaces go (field order would drop them first)
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

/// Listen on `addr` (TCP) in `ns`, accepting in the background; returns
/// the port and a thread that counts accepted connections until `n` or the
/// timeout.
pub fn tcp_listen(ns: &Netns, addr: &str) -> TcpListenerHandle {
    let addr: SocketAddr = addr.parse().expect("addr");
    let l = ns.enter(move || TcpListener::bind(addr).expect("bind"));
    let port = l.local_addr().expect("addr").port();
    TcpListenerHandle { listener: l, port }
}

pub struct TcpListenerHandle {
    pub listener: TcpListener,
    pub port: u16,
}

impl TcpListenerHandle {
    /// Serve: echo everything back on each connection until it closes.
    pub fn serve_echo_forever(self) -> u16 {
        self.serve(20, true)
    }

    /// Serve: echo one read back on each connection, forever (thread).
    pub fn serve_echo(self) -> u16 {
        self.serve(5, false)
    }

    fn serve(self, timeout_s: u64, keep_going: bool) -> u16 {
        let port = self.port;
        std::thread::spawn(move || {
            for s in self.listener.incoming() {
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 256];
                    let _ = s.set_read_timeout(Some(Duration::from_secs(timeout_s)));
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() || !keep_going {
                            break;
                        }
                    }
                });
            }
        });
        port
    }
}

/// From `ns`, connect to `addr` and echo a message; true when the echo
/// came back within `timeout`.
pub fn tcp_echo_ok(ns: &Netns, addr: &str, timeout: Duration) -> bool {
    let addr: SocketAddr = addr.parse().expect("addr");
    ns.enter(move || {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(timeout));
        if s.write_all(b"zfw-hello").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(9)) && &buf[..9] == b"zfw-hello"
    })
}

/// UDP echo server in `ns` on `addr` (background thread).
pub fn udp_echo_server(ns: &Netns, addr: &str) -> u16 {
    let addr: SocketAddr = addr.parse().expect("addr");
    let s = ns.enter(move || UdpSocket::bind(addr).expect("bind udp"));
    let port = s.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], peer);
        }
    });
    port
}

/// From `ns`, send a UDP datagram to `addr`; true when echoed in time.
pub fn udp_echo_ok(ns: &Netns, addr: &str, timeout: Duration) -> bool {
    let addr: SocketAddr = addr.parse().expect("addr");
    ns.enter(move || {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .unwrap();
        let s = UdpSocket::bind(bind).expect("bind");
        s.set_read_timeout(Some(timeout)).unwrap();
        if s.send_to(b"zfw-udp", addr).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        matches!(s.recv_from(&mut buf), Ok((7, _)))
    })
}

pub mod catch_all;
pub mod fixture;
pub mod router;
pub mod rulemodel;
pub mod tun;
pub mod watch;

/// `ping -c1 -W1 dst` from `ns`.
pub fn ping_ok(ns: &Netns, dst: &str) -> bool {
    ns.exec("ping", &["-c", "1", "-W", "1", dst])
        .status
        .success()
}

/// `zfw --bpffs ROOT ARGS` in `ns`, started in the background (stdin
/// closed, output piped) so several can run at once.
pub fn zfw_spawn(ns: &Netns, root: &BpfRoot, args: &[&str]) -> Spawned {
    let net = format!("--net={}", ns.path().display());
    let d = root.dir.display().to_string();
    let child = Command::new("nsenter")
        .args([net.as_str(), env!("CARGO_BIN_EXE_zfw"), "--bpffs", &d])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn zfw");
    Spawned(Some(child))
}

/// A zfw process a test started: killed and reaped when dropped, so a
/// failing assertion does not leave a server or monitor running.
pub struct Spawned(Option<std::process::Child>);

impl Spawned {
    /// Wait for the process to end by itself, with what it printed.
    pub fn wait_with_output(mut self) -> std::io::Result<std::process::Output> {
        self.0.take().expect("running").wait_with_output()
    }
}

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("running")
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Like [`zfw`] in `ns`, with `input` on stdin.
pub fn zfw_stdin(ns: &Netns, root: &BpfRoot, args: &[&str], input: &str) -> Run {
    use std::io::Write;
    let net = format!("--net={}", ns.path().display());
    let d = root.dir.display().to_string();
    let mut child = Command::new("nsenter")
        .args([net.as_str(), env!("CARGO_BIN_EXE_zfw"), "--bpffs", &d])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn zfw");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait zfw");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A file in /tmp holding `text`, removed on drop.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(tag: &str, text: &str) -> TempFile {
        let path = PathBuf::from(format!("/tmp/zfwt-{}.json", unique(tag)));
        std::fs::write(&path, text).expect("write temp file");
        TempFile { path }
    }

    pub fn path_str(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// This thread on one CPU: per-CPU caches of the datapath (flow and tun
/// caches) are only observable from the CPU that filled them.
pub fn pin_cpu() {
    zfw::testkit::run::pin_cpu().expect("pin the test thread to one CPU");
}

/// Send `msg` on an echo connection and read it back (3 s limit).
pub fn echo_once(s: &mut std::net::TcpStream, msg: &[u8]) -> bool {
    use std::io::{Read, Write};
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(3)));
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if &buf[..n] == msg)
}

/// A raw IPv4 socket (IPPROTO_RAW: the caller writes the IP header) in the
/// calling thread's namespace; close it with `nix::libc::close`.
pub fn raw_ip_socket() -> i32 {
    // SAFETY: plain socket(2); the caller closes the fd.
    let fd = unsafe {
        nix::libc::socket(
            nix::libc::AF_INET,
            nix::libc::SOCK_RAW,
            nix::libc::IPPROTO_RAW,
        )
    };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    fd
}

/// Send the IPv4 packet `pkt` (header included) to `dst` on raw socket
/// `fd`; sendto's result.
pub fn raw_send_v4(fd: i32, pkt: &[u8], dst: std::net::Ipv4Addr) -> isize {
    let sa = nix::libc::sockaddr_in {
        sin_family: nix::libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: nix::libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: pkt and sa are live for the call; sizes match.
    unsafe {
        nix::libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&sa as *const nix::libc::sockaddr_in).cast(),
            std::mem::size_of::<nix::libc::sockaddr_in>() as u32,
        )
    }
}
