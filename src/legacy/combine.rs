//! Which options go together: the C zfw v0.9.21's checks, in its order
//! (the first failing check names the error), then what the survivors
//! ask for.  Where the C text names the wrong flag (`Y, --ddos-dport-add`
//! for `-u`), the message names the right one.

use std::net::IpAddr;

use crate::rules::model::{Direction, Prefix};

use super::request::{Fail, ListArgs, Only, Opts, Request, RuleArgs, Target, Toggle};

fn usage<T>(m: &str) -> Result<T, Fail> {
    Err(Fail::Usage(m.to_string()))
}

/// The interface toggles given, in the C zfw's order.
fn toggles(o: &Opts) -> Vec<(Toggle, Target)> {
    [
        (Toggle::OtFiltering, &o.ot_filter),
        (Toggle::Vrrp, &o.vrrp),
        (Toggle::Verbose, &o.verbose),
        (Toggle::DisableSsh, &o.ssh_disable),
        (Toggle::IcmpEcho, &o.echo),
        (Toggle::PerInterfaceRules, &o.per_interface),
        (Toggle::TunMode, &o.tun),
        (Toggle::Eapol, &o.eapol),
        (Toggle::Ddos, &o.ddos),
        (Toggle::Ipv6, &o.v6),
        (Toggle::OutboundFilter, &o.outbound),
        (Toggle::Masquerade, &o.masquerade),
        (Toggle::PassNonTuple, &o.non_tuple),
    ]
    .into_iter()
    .filter_map(|(t, v)| v.clone().map(|v| (t, v)))
    .collect()
}

/// `-c -m [-o -n]` as the (dst, src) prefixes of a rule, with the C zfw's
/// checks and messages.  Host bits beyond the length are cleared (the C
/// zfw stores them and its rule never matches).
fn prefixes(o: &Opts, dst: IpAddr) -> Result<(Prefix, Prefix), Fail> {
    let dl = o.dplen.unwrap_or(0);
    let dmax = if dst.is_ipv4() { 32 } else { 128 };
    if dl > dmax
        || o.src
            .is_some_and(|s| o.splen.unwrap_or(0) > if s.is_ipv4() { 32 } else { 128 })
    {
        return usage(if dst.is_ipv4() {
            "Invalid combination IP4 can't have prefix len greater than 32 bits"
        } else {
            "Invalid combination IP6 can't have prefix len greater than 128 bits"
        });
    }
    let d = Prefix::new(dst, dl as u8);
    let s = match o.src {
        None => Prefix::any(d.family()),
        Some(src) => {
            let Some(sl) = o.splen else {
                return usage("Missing argument -n, --sprefix-len");
            };
            if src.is_ipv4() != dst.is_ipv4() {
                return usage("Invalid combination can't mix IP4 and IP6 prefixes");
            }
            Prefix::new(src, sl as u8)
        }
    };
    Ok((d, s))
}

fn rule_args(o: &Opts, insert: bool) -> Result<RuleArgs, Fail> {
    let Some(dst) = o.dst else {
        return usage("Missing argument -c, --cider-block");
    };
    if o.dplen.is_none() {
        return usage("Missing argument -m, --prefix-len");
    }
    let Some(low) = o.low_port else {
        return usage("Missing argument -l, --low-port");
    };
    if insert && o.high_port.is_none() {
        return usage("Missing argument -h, --high-port");
    }
    if insert && o.tproxy.is_none() {
        return usage("Missing argument -t, --tproxy-port");
    }
    let Some(proto) = o.protocol else {
        return usage("Missing argument -p, --protocol");
    };
    let (dst, src) = prefixes(o, dst)?;
    if insert && o.egress && o.tproxy != Some(0) {
        return usage("-t, tproxy-port 0 is currently the only supported value in egress filters");
    }
    Ok(RuleArgs {
        dir: o.dir(),
        dst,
        src,
        proto,
        low,
        high: if insert { o.high_port } else { None },
        tproxy: if insert { o.tproxy } else { None },
        deny: insert && o.disable,
        service: o.service.clone(),
        ifaces: o.ifaces.clone(),
        route: o.route,
    })
}

fn list(o: &Opts) -> Result<Request, Fail> {
    let cidr = o.dst.is_some() || o.dplen.is_some() || o.src.is_some() || o.splen.is_some();
    let cidr_p = cidr || o.protocol.is_some();
    if o.list_diag {
        if cidr_p || o.ddos_saddr_list {
            return usage(
                "-E, --list-diag cannot be combined with cidr list arguments -c,-o, -m, -n, -p, -Y",
            );
        }
        return Ok(Request::ListDiag);
    }
    if o.list_gc {
        if cidr_p || o.ddos_saddr_list {
            return usage("-G, --list-gc-sessions cannot be combined with other list arguments -E,-c,-o, -m, -n, -p, -Y");
        }
        return Ok(Request::Gc);
    }
    if o.ddos_saddr_list {
        if cidr_p || o.ddos_dport_list {
            return usage("-Y, --list-ddos-saddr cannot be combined with cidr list arguments -c,-o, -m, -n, -p, -E, -U");
        }
        return Ok(Request::ListDdosAddrs);
    }
    if o.ddos_dport_list {
        if cidr_p {
            return usage("-U, --list-ddos-dports cannot be combined with cidr list arguments -c,-o, -m, -n, -p, -E");
        }
        return Ok(Request::ListDdosPorts);
    }
    if o.dnp3_fcode_list {
        if cidr_p {
            return usage("-C, --list-dnp3-fcodes cannot be combined with cidr list arguments -c,-o, -m, -n, -p, -E");
        }
        return Ok(Request::ListDnp3);
    }
    let only = match (o.intercept, o.passthru) {
        (true, false) => Only::Intercepts,
        (false, true) => Only::Passthrough,
        _ => Only::All,
    };
    // listing everything ignores -p, as in C
    let all = |v6| {
        Ok(Request::List(ListArgs {
            dir: o.dir(),
            v6,
            key: None,
            proto: None,
            only,
        }))
    };
    if o.dst.is_none() && o.dplen.is_none() {
        return all(o.v6.is_some() && o.all_interface);
    }
    let Some(dst) = o.dst else {
        return usage("Missing argument -c, --cider-block");
    };
    if o.dplen.is_none() {
        return usage("Missing argument -m, --prefix-len");
    }
    let (d, s) = prefixes(o, dst)?;
    Ok(Request::List(ListArgs {
        dir: o.dir(),
        v6: dst.is_ipv6(),
        key: Some((d, s)),
        proto: o.protocol,
        only,
    }))
}

/// Was option `c` (its C letter) given?
fn has(o: &Opts, c: char) -> bool {
    match c {
        'A' => o.user_rules,
        'B' => o.bind_saddr,
        'C' => o.dnp3_fcode_list,
        'D' => o.delete,
        'E' => o.list_diag,
        'F' => o.flush,
        'G' => o.list_gc,
        'H' => o.init_tc.is_some(),
        'I' => o.add,
        'J' => o.unbind_saddr,
        'L' => o.list,
        'M' => o.monitor.is_some(),
        'N' => !o.ifaces.is_empty(),
        'O' => o.object,
        'P' => o.per_interface.is_some(),
        'Q' => o.ebpf_disable,
        'R' => o.vrrp.is_some(),
        'S' => o.ot_filter.is_some(),
        'T' => o.tun.is_some(),
        'U' => o.ddos_dport_list,
        'W' => o.logging.is_some(),
        'X' => o.tcfilter.is_some(),
        'Y' => o.ddos_saddr_list,
        'Z' => o.init_xdp.is_some(),
        'a' => o.ddos.is_some(),
        'b' => o.outbound.is_some(),
        '6' => o.v6.is_some(),
        'd' => o.disable,
        'e' => o.echo.is_some(),
        'f' => o.passthru,
        'g' => o.dnp3fc.is_some(),
        'i' => o.intercept,
        'j' => o.bind_flush,
        'k' => o.masquerade.is_some(),
        'q' => o.non_tuple.is_some(),
        'r' => o.route,
        's' => o.service.is_some(),
        'u' => o.ddport.is_some(),
        'v' => o.verbose.is_some(),
        'w' => o.eapol.is_some(),
        'x' => o.ssh_disable.is_some(),
        'y' => o.dsip.is_some(),
        'z' => o.direction,
        _ => false,
    }
}

/// Was any of the options `cs` (C letters) given?
fn any(o: &Opts, cs: &str) -> bool {
    cs.chars().any(|c| has(o, c))
}

/// (option, the options it cannot go with, message): the C zfw's "cannot
/// be used in combination" checks, in its order, each run at its place
/// in [`resolve`] (index into this table).
#[rustfmt::skip]
const EXCLUSIVE: &[(char, &str, &str)] = &[
    ('S', "CgHZqyexvPIDwaRMWukLbBJX", "-S, --ot-filtering cannot be used in non related combination calls"),
    ('A', "qyexvPIDwaRMWukLbBJZX", "-A, --add-user-rules cannot be used in non related combination calls"),
    ('H', "qyexvPIDwaRMWukLbBJZX", "-H, --init-tc cannot be used in non related combination calls"),
    ('Z', "HqyexvPIDwaRMWukLbBJX", "-Z, --init-xdp cannot be used in non related combination calls"),
    ('q', "yXexvPIDwaRMWukLbBJ", "-q, --pass-non-tuple cannot be used in non related combination calls"),
    ('j', "yXexvPIDwaRMWukLbBJ", "-j, --bind-flush cannot be used in non related combination calls"),
    ('B', "yXexvPIDFwaRMWukLbJ", "-B, --bind-saddr-add can not be used in combination call"),
    ('J', "yXexvPIDFwaRMWukLbB", "-J, --bind-saddr-delete can not be used in combination call"),
    ('k', "yXexvPIDFwaRMWu", "-k, --masquerade can not be used in combination call"),
    ('6', "yXexvPIDFwaRMWu", "-6, --ipv6-enable can not be used in combination call"),
    ('u', "yXexvPIDLFwaRMW", "-u, --ddos-dport-add can not be used in combination call"),
    ('g', "uk6XBJjqAsyexvPIDLFwaRMW", "-g, --dnp3-fcode-add can not be used in combination call"),
    ('y', "XexvPIDLFwaRMW", "-y, --ddos-saddr-add can not be used in combination call"),
    ('Q', "uyXexvPIDLFMwRaW", "-Q, --disable-ebpf cannot be used in combination call"),
    ('T', "exvPIDLFX", "-T, --set-tun-mode cannot be set as a part of combination call to zfw"),
    ('a', "MTexvPIDLFXRw", "-a, --ddos-filtering cannot be set as a part of combination call to zfw"),
    ('w', "MTexvPIDLFXR", "-w, --enable-eapol cannot be set as a part of combination call to zfw"),
    ('M', "TexvPIDLFXR", "-M, --monitor cannot be set as a part of combination call to zfw"),
    ('R', "TexvPIDLFX", "-R, --vrrp-enable cannot be set as a part of combination call to zfw"),
    ('X', "exvPIDLF", "-X, --set-tc-filter cannot be set as a part of combination call to zfw"),
    ('e', "xvPIDLF", "-e, --icmp-echo cannot be set as a part of combination call to zfw"),
    ('v', "xePIDLF", "-v, --verbose cannot be set as a part of combination call to zfw"),
    ('P', "xveIDLF", "-P, --per-interface-rules cannot be set as a part of combination call to zfw"),
    ('x', "evPIDLF", "-x, --disable-ssh cannot be set as a part of combination call to zfw"),
];

/// Run the EXCLUSIVE checks of options `which`, in table order.
fn exclusive(o: &Opts, which: &str) -> Result<(), Fail> {
    for (c, others, msg) in EXCLUSIVE.iter().filter(|(c, _, _)| which.contains(*c)) {
        if has(o, *c) && any(o, others) {
            return usage(msg);
        }
    }
    Ok(())
}

/// (option, what it needs, message): "requires" checks, in C order.
#[rustfmt::skip]
const REQUIRES: &[(char, &str, &str)] = &[
    ('N', "ID", "Missing argument -I, --insert"),
    ('Y', "L", "-Y, --list-ddos-saddr requires -L --list"),
    ('U', "L", "-U, --list-ddos-dports requires -L --list"),
    ('C', "LF", "-C, --list-dnp3-fcodes requires -L --list or -F, --flush"),
    ('E', "L", "-E, --list-diag requires -L --list"),
    ('G', "L", "-G, --list-gc-sessions requires -L --list"),
];

#[rustfmt::skip]
const LATE_REQUIRES: &[(char, &str, &str)] = &[
    ('i', "L", "Missing argument -L, --list"),
    ('f', "L", "Missing argument -L, --list"),
    ('r', "IDF", "Missing argument -r, --route requires -I --insert, -D --delete or -F --flush"),
    ('d', "xevPXTRwayu6bIDkqgS", "Missing argument at least one of -a,-b, -g,-6,-e, -k, -u, -v, -w, -x, -y, or -E, -P, -R, -T, -X"),
    ('z', "XLFDI", "missing argument -z, --direction requires -X, --set-tc-filter or -D, --delete or --I, --insert or -L, --list or -F, --flush"),
    ('O', "X", "missing argument -O, --object-file requires -X, --set-tc-filter"),
];

fn requires(o: &Opts, table: &[(char, &str, &str)]) -> Result<(), Fail> {
    for (c, needs, msg) in table {
        if has(o, *c) && !any(o, needs) {
            return usage(msg);
        }
    }
    Ok(())
}

/// `-B`/`-J ADDR -m LEN`.
fn bind(o: &Opts, remove: bool) -> Result<Request, Fail> {
    let Some(addr) = o.dst else {
        return usage("Missing argument -c, --cider-block");
    };
    let Some(len) = o.dplen else {
        return usage("Missing argument -m, --prefix-len");
    };
    if len > if addr.is_ipv4() { 32 } else { 128 } {
        return usage(if addr.is_ipv4() {
            "Invalid IPv4 cidr len"
        } else {
            "Invalid IPv6 cidr len"
        });
    }
    Ok(Request::Bind {
        prefix: Prefix::new(addr, len as u8),
        remove,
    })
}

/// Check the combination of options read into `o` and say what it asks
/// for.
pub fn resolve(o: &Opts) -> Result<Request, Fail> {
    exclusive(o, "S")?;
    exclusive(o, "A")?;
    if o.user_rules {
        return Ok(Request::UserRules);
    }
    exclusive(o, "H")?;
    if let Some(t) = &o.init_tc {
        return Ok(Request::InitTc(t.clone()));
    }
    exclusive(o, "Z")?;
    if let Some(x) = &o.init_xdp {
        return Ok(Request::InitXdp(x.clone()));
    }
    exclusive(o, "qj")?;
    if o.bind_flush {
        if !o.flush {
            return usage("-j, --bind-flush requires -F, --flush");
        }
        return Ok(Request::FlushBinds);
    }
    exclusive(o, "B")?;
    if o.bind_saddr {
        return bind(o, false);
    }
    exclusive(o, "J")?;
    if o.unbind_saddr {
        return bind(o, true);
    }
    if has(o, 's') && !any(o, "ID") {
        return usage("-s, --service-id requires -I, --insert or -D, --delete");
    }
    if o.list && o.flush {
        return usage("-L, --list and -F, --flush not be used in combination call");
    }
    if has(o, 'X') && !o.object && !o.disable {
        return usage("-X, --set-tc-filter requires -O, --object-file for add operation");
    }
    if has(o, 'X') && !o.direction {
        return usage("-X, --set-tc-filter requires -z, --direction for add operation");
    }
    exclusive(o, "k6")?;
    if has(o, '6') && o.list && !o.all_interface {
        return usage(
            "-6, --ipv6-enable when used in combination with -L --list requires the argument 'all'",
        );
    }
    exclusive(o, "ugy")?;
    if has(o, 'W') && (any(o, "XexvPIDLFwaR") || !has(o, 'M')) {
        return usage("-W, --write-log can only be used in combination call to -M, --monitor");
    }
    exclusive(o, "Q")?;
    if o.ebpf_disable {
        return Ok(Request::Disable);
    }
    requires(o, REQUIRES)?;
    exclusive(o, "TawMRXevPx")?;
    requires(o, LATE_REQUIRES)?;
    let (add, delete, flush) = (o.add, o.delete, o.flush);
    let ts = toggles(o);
    if add {
        return Ok(Request::Insert(rule_args(o, true)?));
    }
    if delete {
        return Ok(Request::Delete(rule_args(o, false)?));
    }
    if flush {
        if o.dnp3_fcode_list {
            return Ok(Request::FlushDnp3);
        }
        let dirs = match (o.ingress, o.egress) {
            (false, false) => vec![Direction::Ingress, Direction::Egress],
            (_, true) => vec![Direction::Egress],
            (true, false) => vec![Direction::Ingress],
        };
        return Ok(Request::Flush(dirs));
    }
    if o.list {
        return list(o);
    }
    if !ts.is_empty() {
        return Ok(Request::Toggles {
            set: ts,
            on: !o.disable,
        });
    }
    if let Some(t) = &o.tcfilter {
        return Ok(Request::TcFilter {
            target: t.clone(),
            dir: o.dir(),
            detach: o.disable,
        });
    }
    if let Some(t) = &o.monitor {
        return Ok(Request::Monitor {
            target: t.clone(),
            log: o.logging.clone(),
        });
    }
    if let Some(ip) = o.dsip {
        return Ok(Request::DdosAddr {
            ip,
            remove: o.disable,
        });
    }
    if let Some(p) = &o.ddport {
        let port = crate::ddos::parse_port(p).map_err(|_| Fail::Value {
            msg: format!("Invalid Port: {}", super::text::shown(p)),
            stderr: false,
        })?;
        return Ok(Request::DdosPort {
            port,
            remove: o.disable,
        });
    }
    if let Some(c) = &o.dnp3fc {
        let code = super::request::c_number(c, 255).ok_or_else(|| Fail::Value {
            msg: format!("Invalid fcode: {}", super::text::shown(c)),
            stderr: false,
        })?;
        return Ok(Request::Dnp3 {
            code: code as u8,
            remove: o.disable,
        });
    }
    usage("No arguments specified")
}
