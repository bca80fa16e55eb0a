//! The C zfw's option table and the GNU argp/getopt_long rules it is read
//! with: short flags (bundled, `-LE`; an argument attached, `-c10.0.0.1`, or
//! in the next word), long spellings and their unambiguous prefixes
//! (`--outbound-filter`), `--opt=val` or `--opt val`, `--` ending the
//! options, and words that are not options permuted to the end (where
//! argp rejects them: "Too many arguments").  Errors of this layer exit 64,
//! argp's code.

/// One option of the C zfw, plus the ones argp itself adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A short flag of the C table (`-I`, `-c`, ...).
    Flag(char),
    /// argp's `-?`, `--help`
    Help,
    /// argp's `--usage`
    Usage,
    /// argp's `-V`, `--version`
    Version,
    /// argp's hidden `--program-name NAME`
    ProgramName,
    /// argp's hidden `--HANG[=SECS]` (a debugging aid; not supported)
    Hang,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    No,
    Required,
    /// only as `--opt=value`
    Optional,
}

pub struct Spec {
    pub key: Key,
    pub long: &'static str,
    pub arg: Arg,
    /// argument name and description for `zfw -?` (our own words)
    pub meta: &'static str,
    pub doc: &'static str,
}

const fn f(c: char, long: &'static str, arg: Arg, meta: &'static str, doc: &'static str) -> Spec {
    Spec {
        key: Key::Flag(c),
        long,
        arg,
        meta,
        doc,
    }
}

use Arg::{No, Required as R};

/// The option table of C zfw v0.9.21 (same letters, long names and
/// argument rules), followed by argp's own options.
#[rustfmt::skip]
pub const SPECS: &[Spec] = &[
    f('A', "add-user-rules", No, "", "run /opt/openziti/bin/user/user_rules.sh (if present)"),
    f('B', "bind-saddr-add", R, "ADDR", "make ADDR/-m LEN local (scope host address on lo)"),
    f('C', "list-dnp3-fcodes", No, "", "with -L: list the allowed DNP3 function codes; with -F: remove them"),
    f('D', "delete", No, "", "delete a rule (-c -m -l -p; -o -n; -z egress)"),
    f('E', "list-diag", No, "", "with -L: per-interface settings (exit 1 when zfw is not loaded)"),
    f('F', "flush", No, "", "remove all rules (-z: one direction; -j: the -B addresses instead; -C: DNP3 codes)"),
    f('G', "list-gc-sessions", No, "", "with -L: remove expired flows and stale masquerade mappings"),
    f('I', "insert", No, "", "insert a rule (-c -m -l -h -t -p; -o -n -s -N -r -d -z)"),
    f('H', "init-tc", R, "IF|all", "attach both directions to IF"),
    f('J', "bind-saddr-delete", R, "ADDR", "undo -B ADDR -m LEN"),
    f('L', "list", No, "", "list rules (-c -m [-o -n] [-p], -i, -f, -z egress, -6 all)"),
    f('M', "monitor", R, "IF|all", "print datapath events of IF (interfaces with -v on)"),
    f('N', "interface", R, "IF", "with -I: the rule applies on IF (repeatable)"),
    f('O', "object-file", R, "FILE", "with -X: accepted and ignored (the programs are built in)"),
    f('P', "per-interface-rules", R, "IF|all", "honour only rules that list the interface (-d: off)"),
    f('Q', "disable-ebpf", No, "", "detach everything and remove the pins (exit 1 when not loaded)"),
    f('R', "vrrp-enable", R, "IF|all", "pass VRRP (-d: off)"),
    f('S', "ot-filtering", R, "IF|all", "DNP3/Modbus response filtering (-d: off)"),
    f('T', "set-tun-mode", R, "IF|all", "tun mode: later -I with a non-zero -t go into the tun (-d: off)"),
    f('U', "list-ddos-dports", No, "", "with -L: list the DDoS-protected ports"),
    f('W', "write-log", R, "FILE", "with -M: append the events to FILE"),
    f('X', "set-tc-filter", R, "IF|all", "attach (-d: detach) the direction -z on IF"),
    f('Y', "list-ddos-saddr", No, "", "with -L: list the DDoS whitelist"),
    f('Z', "init-xdp", R, "IF", "register IF as the tun (XDP fast path)"),
    f('a', "ddos-filtering", R, "IF|all", "SYN-flood protection (-d: off)"),
    f('b', "outbound-filtering", R, "IF|all", "apply egress rules (-d: off)"),
    f('6', "ipv6-enable", R, "IF|all", "accept IPv6 (-d: off); with -L: `-6 all` lists IPv6 rules"),
    f('c', "dcidr-block", R, "ADDR", "destination address"),
    f('d', "disable", No, "", "turn the setting off; with -I: a deny rule"),
    f('e', "icmp-echo", R, "IF|all", "answer ICMP echo (-d: off)"),
    f('f', "passthrough", No, "", "with -L: only rules without a redirect"),
    f('h', "high-port", R, "PORT", "last destination port"),
    f('i', "intercepts", No, "", "with -L: only redirecting rules"),
    f('j', "bind-flush", No, "", "with -F: remove every -B address"),
    f('k', "masquerade", R, "IF|all", "masquerade traffic leaving IF (-d: off)"),
    f('l', "low-port", R, "PORT", "first destination port"),
    f('m', "dprefix-len", R, "LEN", "destination prefix length"),
    f('n', "oprefix-len", R, "LEN", "source prefix length"),
    f('o', "ocidr-block", R, "ADDR", "source address (default: any)"),
    f('p', "protocol", R, "tcp|udp", "protocol"),
    f('q', "pass-non-tuple", R, "IF|all", "pass non-IP frames (-d: off)"),
    f('r', "route", No, "", "with -I/-D: make the destination local on lo"),
    f('s', "service-id", R, "ID", "service id shown by -L"),
    f('t', "tproxy-port", R, "PORT", "0: pass to the host; N: TPROXY to 127.0.0.1:N (the tun in tun mode)"),
    f('u', "ddos-dport-add", R, "PORT", "protect PORT (-d: remove)"),
    f('g', "dnp3-fcode-add", R, "FCODE", "allow DNP3 function code FCODE (-d: remove)"),
    f('v', "verbose", R, "IF|all", "emit events for IF (-d: off)"),
    f('w', "enable-eapol", R, "IF|all", "pass 802.1X EAPOL (-d: off)"),
    f('x', "disable-ssh", R, "IF|all", "refuse SSH to IF's addresses (-d: allow again)"),
    f('y', "ddos-saddr-add", R, "ADDR", "add ADDR to the DDoS whitelist (-d: remove)"),
    f('z', "direction", R, "ingress|egress", "direction"),
    Spec {
        key: Key::ProgramName,
        long: "program-name",
        arg: R,
        meta: "",
        doc: "",
    },
    Spec {
        key: Key::Hang,
        long: "HANG",
        arg: Arg::Optional,
        meta: "",
        doc: "",
    },
    Spec {
        key: Key::Help,
        long: "help",
        arg: No,
        meta: "",
        doc: "this list",
    },
    Spec {
        key: Key::Usage,
        long: "usage",
        arg: No,
        meta: "",
        doc: "a short usage message",
    },
    Spec {
        key: Key::Version,
        long: "version",
        arg: No,
        meta: "",
        doc: "print the version",
    },
];

fn short_spec(c: char) -> Option<&'static Spec> {
    match c {
        '?' => SPECS.iter().find(|s| s.key == Key::Help),
        'V' => SPECS.iter().find(|s| s.key == Key::Version),
        _ => SPECS.iter().find(|s| s.key == Key::Flag(c)),
    }
}

/// The long option a (possibly abbreviated) name means, getopt_long's way:
/// an exact name wins, else the one option the prefix starts.
fn long_spec(name: &str) -> std::result::Result<&'static Spec, Vec<&'static Spec>> {
    if let Some(s) = SPECS.iter().find(|s| s.long == name) {
        return Ok(s);
    }
    let c: Vec<&'static Spec> = if name.is_empty() {
        Vec::new()
    } else {
        SPECS.iter().filter(|s| s.long.starts_with(name)).collect()
    };
    match c.len() {
        1 => Ok(c[0]),
        _ => Err(c),
    }
}

/// What the scan of argv found, in order, up to the first error.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub opts: Vec<(Key, Option<String>)>,
    /// words that are not options (argp rejects them after the options)
    pub words: Vec<String>,
    /// getopt's message for the first bad option (exit 64)
    pub error: Option<String>,
}

/// Scan `args` (argv without argv[0]); `prog` names the program in
/// getopt's messages.  Values are kept as given; [`super::text`] escapes
/// them wherever they are shown.
pub fn scan(prog: &str, args: &[String]) -> Scan {
    let mut s = Scan::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            s.words.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let spec = match long_spec(name) {
                Ok(sp) => sp,
                Err(c) if c.is_empty() => {
                    s.error = Some(format!(
                        "{prog}: unrecognized option '--{}'",
                        super::text::shown(body)
                    ));
                    return s;
                }
                Err(c) => {
                    let mut m = format!(
                        "{prog}: option '--{}' is ambiguous; possibilities:",
                        super::text::shown(name)
                    );
                    for sp in c {
                        m.push_str(&format!(" '--{}'", sp.long));
                    }
                    s.error = Some(m);
                    return s;
                }
            };
            let val = match (spec.arg, inline) {
                (Arg::No, Some(_)) => {
                    s.error = Some(format!(
                        "{prog}: option '--{}' doesn't allow an argument",
                        spec.long
                    ));
                    return s;
                }
                (Arg::No, None) | (Arg::Optional, None) => None,
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => {
                        s.error = Some(format!(
                            "{prog}: option '--{}' requires an argument",
                            spec.long
                        ));
                        return s;
                    }
                },
            };
            s.opts.push((spec.key, val));
            continue;
        }
        if a.len() < 2 || !a.starts_with('-') {
            s.words.push(a.clone());
            continue;
        }
        // a bundle of short flags; the first one taking an argument takes
        // the rest of the word, or the next word
        let chars: Vec<char> = a[1..].chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            k += 1;
            let Some(spec) = short_spec(c) else {
                s.error = Some(format!(
                    "{prog}: invalid option -- '{}'",
                    super::text::shown(&c.to_string())
                ));
                return s;
            };
            if spec.arg != Arg::Required {
                s.opts.push((spec.key, None));
                continue;
            }
            let rest: String = chars[k..].iter().collect();
            let val = if !rest.is_empty() {
                rest
            } else if let Some(v) = args.get(i) {
                i += 1;
                v.clone()
            } else {
                s.error = Some(format!(
                    "{prog}: option requires an argument -- '{}'",
                    super::text::shown(&c.to_string())
                ));
                return s;
            };
            s.opts.push((spec.key, Some(val)));
            break;
        }
    }
    s
}
