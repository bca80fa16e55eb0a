//! The typed result of reading a C zfw command line ([`Request`]), the
//! option values as the C zfw's parse_opt() takes them one at a time
//! ([`Opts::take`]), and the ways reading can fail ([`Fail`]).
//! The combination rules live in `combine.rs`.

use std::net::{IpAddr, Ipv4Addr};

use crate::rules::model::{Direction, Prefix, Proto};
use crate::skel::names;

use super::argp::Key;
use super::text::shown;

/// `IF` or `all`.  Names are the kernel's (an altname resolves to the
/// interface's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    If(String),
}

/// The per-interface settings the C zfw toggles with one flag each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    /// `-e`
    IcmpEcho,
    /// `-v`
    Verbose,
    /// `-x` (on = SSH refused)
    DisableSsh,
    /// `-P`
    PerInterfaceRules,
    /// `-T`
    TunMode,
    /// `-R`
    Vrrp,
    /// `-w`
    Eapol,
    /// `-q`
    PassNonTuple,
    /// `-a`
    Ddos,
    /// `-b`
    OutboundFilter,
    /// `-k`
    Masquerade,
    /// `-S`
    OtFiltering,
    /// `-6`
    Ipv6,
}

/// What `-I` / `-D` name.  `high` and `tproxy` are None for `-D` (ignored
/// there, as in C); `deny` is `-d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleArgs {
    pub dir: Direction,
    pub dst: Prefix,
    pub src: Prefix,
    pub proto: Proto,
    pub low: u16,
    pub high: Option<u16>,
    pub tproxy: Option<u16>,
    pub deny: bool,
    pub service: Option<String>,
    pub ifaces: Vec<String>,
    pub route: bool,
}

/// Which rules `-L` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    All,
    /// `-i`: rules that redirect (TPROXY or tunnel)
    Intercepts,
    /// `-f`: rules that pass (or deny) without a redirect
    Passthrough,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListArgs {
    pub dir: Direction,
    /// IPv6 rules (`-L -6 all`, or an IPv6 `-c`)
    pub v6: bool,
    /// `-c -m [-o -n]`: only this (dst, src) pair
    pub key: Option<(Prefix, Prefix)>,
    pub proto: Option<Proto>,
    pub only: Only,
}

/// One C zfw invocation, fully checked: what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `-?`, `--help`
    Help,
    /// `--usage`
    Usage,
    /// `-V`
    Version,
    /// `-A`
    UserRules,
    /// `-H IF|all`
    InitTc(Target),
    /// `-Z IF`
    InitXdp(String),
    /// `-F -j`
    FlushBinds,
    /// `-B` / `-J` ADDR `-m LEN`
    Bind { prefix: Prefix, remove: bool },
    /// `-Q`
    Disable,
    /// `-I`
    Insert(RuleArgs),
    /// `-D`
    Delete(RuleArgs),
    /// `-F -C`
    FlushDnp3,
    /// `-F [-z DIR]`
    Flush(Vec<Direction>),
    /// `-L -E`
    ListDiag,
    /// `-L -G`
    Gc,
    /// `-L -Y`
    ListDdosAddrs,
    /// `-L -U`
    ListDdosPorts,
    /// `-L -C`
    ListDnp3,
    /// `-L ...`
    List(ListArgs),
    /// `-e`, `-v`, ... IF|all, off with `-d`
    Toggles {
        set: Vec<(Toggle, Target)>,
        on: bool,
    },
    /// `-X IF|all -O FILE -z DIR [-d]`
    TcFilter {
        target: Target,
        dir: Direction,
        detach: bool,
    },
    /// `-M IF|all [-W FILE]`
    Monitor { target: Target, log: Option<String> },
    /// `-y ADDR [-d]`
    DdosAddr { ip: Ipv4Addr, remove: bool },
    /// `-u PORT [-d]`
    DdosPort { port: u16, remove: bool },
    /// `-g FCODE [-d]`
    Dnp3 { code: u8, remove: bool },
}

/// Why a command line was refused.  Every variant exits non-zero before
/// anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// getopt's message (bad option, missing argument): exit 64
    Argp(String),
    /// words that are not options: exit 64
    TooMany,
    /// a combination the C zfw refuses: `zfw : MSG` and the short usage
    /// on stderr, exit 1
    Usage(String),
    /// a bad option value: the message (on stderr when `stderr`, then
    /// "zfw --help for more info"; else on stdout), exit 1
    Value { msg: String, stderr: bool },
}

impl Fail {
    pub fn exit_code(&self) -> i32 {
        match self {
            Fail::Argp(_) | Fail::TooMany => 64,
            _ => 1,
        }
    }

    /// (stdout, stderr) text.
    pub fn render(&self, prog: &str) -> (String, String) {
        let try_help = format!("Try `{prog} --help' or `{prog} --usage' for more information.\n");
        match self {
            Fail::Argp(m) => (String::new(), format!("{m}\n{try_help}")),
            Fail::TooMany => (
                String::new(),
                format!("{prog}: Too many arguments\n{try_help}"),
            ),
            Fail::Usage(m) => (
                String::new(),
                format!("{prog} : {m}\n{}", super::text::short_usage()),
            ),
            Fail::Value { msg, stderr: true } => (
                String::new(),
                format!("{msg}\n{prog} --help for more info\n"),
            ),
            Fail::Value { msg, stderr: false } => (format!("{msg}\n"), String::new()),
        }
    }
}

fn bad(msg: String) -> Fail {
    Fail::Value { msg, stderr: true }
}

fn bad_out(msg: String) -> Fail {
    Fail::Value { msg, stderr: false }
}

/// How interface names are checked while reading (the C zfw resolves
/// them as it reads each option).
pub trait Interfaces {
    /// The kernel's name of interface `name` (itself, or the interface an
    /// altname belongs to); None when there is no such interface.
    fn canonical(&self, name: &str) -> Option<String>;
}

/// The interfaces of the current network namespace.
pub struct Kernel;

impl Interfaces for Kernel {
    fn canonical(&self, name: &str) -> Option<String> {
        crate::ifaddr::index_of(name)
            .ok()
            .and_then(crate::ifaddr::name_of)
    }
}

/// Interfaces one rule may list: ours (the C zfw allows 3).
pub fn max_rule_ifaces() -> usize {
    names::ZFW_MAX_RULE_IFACES as usize
}

/// Longest service id: ours (the C zfw allows 22).
pub fn max_service_id() -> usize {
    names::ZFW_SERVICE_ID_LEN as usize
}

/// The option values read so far: one field per variable of the C zfw's
/// parse_opt().  Flags that take `IF|all` keep their target.
#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub user_rules: bool,
    pub bind_saddr: bool,
    pub unbind_saddr: bool,
    /// `-c`, `-B`, `-J` (one destination address, as in C)
    pub dst: Option<IpAddr>,
    pub dnp3_fcode_list: bool,
    pub delete: bool,
    pub list_diag: bool,
    /// some option named `all` (or `-E`)
    pub all_interface: bool,
    pub flush: bool,
    pub list_gc: bool,
    pub init_tc: Option<Target>,
    pub add: bool,
    pub list: bool,
    pub monitor: Option<Target>,
    /// `-N`
    pub ifaces: Vec<String>,
    pub object: bool,
    pub per_interface: Option<Target>,
    pub ebpf_disable: bool,
    pub vrrp: Option<Target>,
    pub ot_filter: Option<Target>,
    pub tun: Option<Target>,
    pub ddos_dport_list: bool,
    pub logging: Option<String>,
    pub tcfilter: Option<Target>,
    pub ddos_saddr_list: bool,
    pub init_xdp: Option<String>,
    pub ddos: Option<Target>,
    pub outbound: Option<Target>,
    pub v6: Option<Target>,
    pub echo: Option<Target>,
    pub disable: bool,
    pub passthru: bool,
    pub high_port: Option<u16>,
    pub intercept: bool,
    pub bind_flush: bool,
    pub masquerade: Option<Target>,
    pub low_port: Option<u16>,
    pub dplen: Option<u16>,
    pub splen: Option<u16>,
    pub src: Option<IpAddr>,
    pub protocol: Option<Proto>,
    pub non_tuple: Option<Target>,
    pub route: bool,
    pub service: Option<String>,
    pub tproxy: Option<u16>,
    /// `-u` (checked when used, as in C)
    pub ddport: Option<String>,
    /// `-g` (checked when used, as in C)
    pub dnp3fc: Option<String>,
    pub verbose: Option<Target>,
    pub eapol: Option<Target>,
    pub ssh_disable: Option<Target>,
    pub dsip: Option<Ipv4Addr>,
    pub ingress: bool,
    pub egress: bool,
    pub direction: bool,
}

/// The C zfw's strtol()-based number check: an optional sign and decimal
/// digits filling the whole word, in `0..=max`.
pub fn c_number(s: &str, max: i64) -> Option<i64> {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if s.is_empty() {
        return Some(0); // strtol reads nothing and stops at the end
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    let v = if neg { -v } else { v };
    (0..=max).contains(&v).then_some(v)
}

fn port(s: &str) -> Result<u16, Fail> {
    c_number(s, 65535)
        .map(|v| v as u16)
        .ok_or_else(|| bad_out(format!("Invalid Port: {}", shown(s))))
}

fn prefix_len(s: &str) -> Result<u16, Fail> {
    c_number(s, 255)
        .map(|v| v as u16)
        .ok_or_else(|| bad_out(format!("Invalid Prefix Length: {}", shown(s))))
}

/// An IPv4 or IPv6 address (the C zfw tries inet_aton, then inet_pton).
fn address(s: &str, flag: &str) -> Result<IpAddr, Fail> {
    s.parse::<IpAddr>()
        .map_err(|_| bad(format!("Invalid IP Address for arg {flag}: {}", shown(s))))
}

impl Opts {
    /// An `IF|all` argument of option `flag` (e.g. `-e, --icmp-echo`).
    fn target(&mut self, arg: &str, flag: &str, ifs: &dyn Interfaces) -> Result<Target, Fail> {
        if arg.starts_with('-') {
            return Err(bad(format!(
                "Interface name or all required as arg to {flag}: {}",
                shown(arg)
            )));
        }
        if arg == "all" {
            self.all_interface = true;
            return Ok(Target::All);
        }
        ifs.canonical(arg)
            .map(Target::If)
            .ok_or_else(|| bad_out(format!("Interface not found: {}", shown(arg))))
    }

    /// Take one option, as the C zfw's parse_opt() does: check its value
    /// and remember it.  `Help`/`Usage`/`Version` are argp's and end the
    /// reading (the caller handles them).
    pub fn take(&mut self, key: Key, arg: Option<&str>, ifs: &dyn Interfaces) -> Result<(), Fail> {
        let a = arg.unwrap_or("");
        let c = match key {
            Key::Flag(c) => c,
            Key::Hang => {
                return Err(bad(
                    "--HANG (an argp debugging aid) is not supported".to_string()
                ))
            }
            _ => return Ok(()),
        };
        match c {
            'A' => self.user_rules = true,
            'B' | 'J' => {
                let flag = if c == 'B' {
                    "-B, --bind-saddr-add"
                } else {
                    "-J, --bind-saddr-delete"
                };
                self.dst = Some(address(a, flag)?);
                if c == 'B' {
                    self.bind_saddr = true;
                } else {
                    self.unbind_saddr = true;
                }
            }
            'C' => self.dnp3_fcode_list = true,
            'D' => self.delete = true,
            'E' => {
                self.list_diag = true;
                self.all_interface = true;
            }
            'F' => self.flush = true,
            'G' => self.list_gc = true,
            'H' => self.init_tc = Some(self.target(a, "-H, --init-tc", ifs)?),
            'I' => self.add = true,
            'L' => self.list = true,
            'M' => self.monitor = Some(self.target(a, "-M, --monitor", ifs)?),
            'N' => {
                if a.starts_with('-') {
                    return Err(bad(format!(
                        "Interface name required as arg to -N, --interface: {}",
                        shown(a)
                    )));
                }
                let name = ifs
                    .canonical(a)
                    .ok_or_else(|| bad_out(format!("Interface not found: {}", shown(a))))?;
                if self.ifaces.len() >= max_rule_ifaces() {
                    return Err(bad_out(format!(
                        "A rule can be assigned to a maximum of {} interfaces",
                        max_rule_ifaces()
                    )));
                }
                if !self.ifaces.contains(&name) {
                    self.ifaces.push(name);
                }
            }
            'O' => {
                if a.starts_with('-') {
                    return Err(bad(format!(
                        "object file name required as arg to -O, --object-file: {}",
                        shown(a)
                    )));
                }
                self.object = true;
            }
            'P' => self.per_interface = Some(self.target(a, "-P, --per-interface-rules", ifs)?),
            'Q' => self.ebpf_disable = true,
            'R' => self.vrrp = Some(self.target(a, "-R, --vrrp-enable", ifs)?),
            'S' => self.ot_filter = Some(self.target(a, "-S, --ot-filtering", ifs)?),
            'T' => self.tun = Some(self.target(a, "-T, --set-tun-mode", ifs)?),
            'U' => self.ddos_dport_list = true,
            'W' => {
                if a.starts_with('-') {
                    return Err(bad(format!("logfile name -W, --write-log: {}", shown(a))));
                }
                self.logging = Some(a.to_string());
            }
            'X' => self.tcfilter = Some(self.target(a, "-X, --set-tc-filter", ifs)?),
            'Y' => self.ddos_saddr_list = true,
            'Z' => {
                // `all` passes the C zfw's check too; there is no tun named all
                let t = self.target(a, "-Z, --init-xdp", ifs)?;
                self.init_xdp = Some(match t {
                    Target::All => "all".to_string(),
                    Target::If(n) => n,
                });
            }
            'a' => self.ddos = Some(self.target(a, "-a, --ddos-filtering", ifs)?),
            'b' => self.outbound = Some(self.target(a, "-b, --outbound-filtering", ifs)?),
            '6' => self.v6 = Some(self.target(a, "-6, --ipv6-enable", ifs)?),
            'c' => self.dst = Some(address(a, "-c, --dcidr-block")?),
            'e' => self.echo = Some(self.target(a, "-e, --icmp-echo", ifs)?),
            'd' => self.disable = true,
            'f' => self.passthru = true,
            'g' => self.dnp3fc = Some(a.to_string()),
            'h' => self.high_port = Some(port(a)?),
            'i' => self.intercept = true,
            'j' => self.bind_flush = true,
            'k' => self.masquerade = Some(self.target(a, "-k, --masquerade", ifs)?),
            'l' => self.low_port = Some(port(a)?),
            'm' => self.dplen = Some(prefix_len(a)?),
            'n' => self.splen = Some(prefix_len(a)?),
            'o' => self.src = Some(address(a, "-o, --ocidr-block")?),
            'p' => {
                self.protocol = Some(match a {
                    "tcp" | "TCP" => Proto::Tcp,
                    "udp" | "UDP" => Proto::Udp,
                    _ => {
                        return Err(bad(
                            "Invalid protocol for arg -p,--protocol <tcp|udp>".to_string()
                        ))
                    }
                })
            }
            'q' => self.non_tuple = Some(self.target(a, "-q, --pass-non-tuple", ifs)?),
            'r' => self.route = true,
            's' => {
                if a.starts_with('-') {
                    return Err(bad(format!(
                        "service id required as arg to -s, --service-id: {}",
                        shown(a)
                    )));
                }
                if a.len() > max_service_id() {
                    return Err(bad_out("Invalid service ID: ID too long".to_string()));
                }
                if a.is_empty() || !a.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(bad_out(format!(
                        "Invalid service ID: '{}' (printable ASCII only)",
                        shown(a)
                    )));
                }
                self.service = Some(a.to_string());
            }
            't' => self.tproxy = Some(port(a)?),
            'u' => self.ddport = Some(a.to_string()),
            'v' => self.verbose = Some(self.target(a, "-v, --verbose", ifs)?),
            'w' => self.eapol = Some(self.target(a, "-w, --enable-eapol", ifs)?),
            'x' => self.ssh_disable = Some(self.target(a, "-x, --disable-ssh", ifs)?),
            'y' => match a.parse::<Ipv4Addr>() {
                Ok(ip) => self.dsip = Some(ip),
                Err(_) => {
                    return Err(bad(format!(
                        "Invalid IP Address for arg -y, --ddos-saddr-add: {}",
                        shown(a)
                    )))
                }
            },
            'z' => {
                match a {
                    "egress" => self.egress = true,
                    "ingress" => self.ingress = true,
                    _ => {
                        return Err(bad(format!(
                            "direction ingress/egress required as arg to -z, --direction: {}",
                            shown(a)
                        )))
                    }
                }
                self.direction = true;
            }
            _ => unreachable!("argp only yields flags of its table"),
        }
        Ok(())
    }

    /// The direction `-z` chose (egress once any `-z egress` was given,
    /// as in C).
    pub fn dir(&self) -> Direction {
        if self.egress {
            Direction::Egress
        } else {
            Direction::Ingress
        }
    }
}
