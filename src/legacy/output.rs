//! `-L` and `-L -E` in the C zfw's columns.  Ours may add information,
//! never drop it: the rows carry the same fields in the same places, the
//! footer counts against this zfw's capacities.

use crate::rules::model::{Action, Direction, Family, Prefix, Proto, Rule};

use super::request::{ListArgs, Only};

/// Rule-set capacities shown in the footer: (rules, keys) a set may use.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub rules: usize,
    pub keys: usize,
}

fn ifs(r: &Rule) -> String {
    format!("[{}]", r.interfaces.join(","))
}

fn type_of(r: &Rule) -> &'static str {
    if r.action == Action::Deny {
        "deny"
    } else {
        "accept"
    }
}

/// Does the rule redirect (the C zfw: a non-zero tproxy port)?
fn intercepts(r: &Rule) -> bool {
    matches!(r.action, Action::Tproxy(_) | Action::Tunnel)
}

fn shown_by(only: Only, r: &Rule) -> bool {
    match only {
        Only::All => true,
        Only::Intercepts => intercepts(r),
        Only::Passthrough => !intercepts(r),
    }
}

fn dpts(r: &Rule) -> String {
    format!("dpts={}:{}", r.ports.lo, r.ports.hi)
}

fn header_v4() -> String {
    format!(
        "{:<7}{:<22}\t{:<3}\t{:<20}\t{:<32}{:<24}\t\t\t\t{:<31}\n{}\n",
        "type",
        "service id",
        "proto",
        "origin",
        "destination",
        "mapping:",
        "interface list",
        "------ ----------------------\t-----\t-----------------\t------------------\t\t-------------------------------------------------------\t-----------------"
    )
}

fn header_v6() -> String {
    format!(
        "{:<7}{:<23}{:<6}{:<43}{:<45}{:<28}{}\n{}\n",
        "type",
        "service id",
        "proto",
        "origin",
        "destination",
        "mapping:",
        "interface list",
        "------ ---------------------- ----- ------------------------------------------ ------------------------------------------   -------------------------   --------------"
    )
}

/// One rule as the C zfw prints it (IPv4 and IPv6 rows differ there).
pub fn row(r: &Rule, tun: Option<&str>) -> String {
    let svc = r.service_id.as_deref().unwrap_or("");
    let tun = tun.unwrap_or("tun");
    if r.family() == Family::V4 {
        let mapping = match r.action {
            Action::Tproxy(p) => format!("TPROXY redirect 127.0.0.1:{p:<6}"),
            Action::Tunnel => format!("TUNMODE redirect:{tun:<15}"),
            Action::Allow | Action::Deny => format!("PASSTHRU to {:<20}", r.dst.to_string()),
        };
        format!(
            "{:<6} {:<22}\t{:<3}\t{:<20}\t{:<32}{:<17}\t{mapping}{}\n",
            type_of(r),
            svc,
            r.proto.name(),
            r.src.to_string(),
            r.dst.to_string(),
            dpts(r),
            ifs(r)
        )
    } else {
        let mapping = match r.action {
            Action::Tproxy(p) => format!("TP:{p:<5}"),
            Action::Tunnel => format!("TU:{tun:<5}"),
            Action::Allow | Action::Deny => format!("{:<5}", "PASSTHRU"),
        };
        format!(
            "{:<6}|{:<22}|{:<5}|{:<42}|{:<42} | {:<17}{mapping} | {}\n",
            type_of(r),
            svc,
            r.proto.name(),
            r.src.to_string(),
            r.dst.to_string(),
            dpts(r),
            ifs(r)
        )
    }
}

fn family_of(v6: bool) -> Family {
    if v6 {
        Family::V6
    } else {
        Family::V4
    }
}

fn same_key(r: &Rule, dir: Direction, dst: &Prefix, src: &Prefix, proto: Proto) -> bool {
    r.direction == dir && r.dst == *dst && r.src == *src && r.proto == proto
}

/// `-L ...`: the rules `a` selects out of `rules` (the live set), with
/// `tun` the registered tun's name.
pub fn rules(rules: &[Rule], a: &ListArgs, tun: Option<&str>, caps: Caps) -> String {
    let fam = family_of(a.v6);
    let mut out = String::from(match a.dir {
        Direction::Ingress => "INGRESS FILTERS:\n",
        Direction::Egress => "EGRESS FILTERS:\n",
    });
    let header = if a.v6 { header_v6() } else { header_v4() };
    out.push_str(&header);
    let mine: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.direction == a.dir && r.family() == fam)
        .collect();
    match a.key {
        None => {
            let mut n = 0;
            for r in mine.iter().filter(|r| shown_by(a.only, r)) {
                out.push_str(&row(r, tun));
                n += 1;
            }
            let mut keys: Vec<(Prefix, Prefix, Proto)> =
                mine.iter().map(|r| (r.dst, r.src, r.proto)).collect();
            keys.sort();
            keys.dedup();
            out.push_str(&format!("Rule Count: {n} / {}\n", caps.rules));
            out.push_str(&format!(
                "prefix_tuple_count: {} / {}\n",
                keys.len(),
                caps.keys
            ));
        }
        Some((dst, src)) => {
            // one block per protocol that has rules under this key (udp
            // first, as in C), or only the one -p names
            let protos: Vec<Proto> = match a.proto {
                Some(p) => vec![p],
                None => vec![Proto::Udp, Proto::Tcp],
            };
            let mut first = true;
            for p in protos {
                let block: Vec<&&Rule> = mine
                    .iter()
                    .filter(|r| same_key(r, a.dir, &dst, &src, p))
                    .collect();
                if block.is_empty() {
                    continue;
                }
                if !first {
                    out.push_str(&header);
                }
                first = false;
                let mut n = 0;
                for r in block.into_iter().filter(|r| shown_by(a.only, r)) {
                    out.push_str(&row(r, tun));
                    n += 1;
                }
                out.push_str(&format!("Rule Count: {n}\n"));
            }
        }
    }
    out
}

/// One interface's settings for `-L -E`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diag {
    pub name: String,
    pub ifindex: u32,
    pub icmp_echo: bool,
    pub pass_non_tuple: bool,
    pub ipv6: bool,
    pub verbose: bool,
    pub ssh_disable: bool,
    pub outbound_filter: bool,
    pub per_interface: bool,
    pub tc_ingress: bool,
    pub tc_egress: bool,
    pub tun_mode: bool,
    pub vrrp: bool,
    pub eapol: bool,
    pub ddos: bool,
    pub masquerade: bool,
    pub ot_filtering: bool,
}

/// `-L -E`: a block per interface, the 15 settings in the C zfw's order.
pub fn diag(list: &[Diag]) -> String {
    let mut s = String::new();
    let line = "--------------------------\n";
    for d in list {
        s.push_str(&format!("{}: {}\n{line}", d.name, d.ifindex));
        for (k, v) in [
            ("icmp echo", d.icmp_echo),
            ("pass non tuple", d.pass_non_tuple),
            ("ipv6 enable", d.ipv6),
            ("verbose", d.verbose),
            ("ssh disable", d.ssh_disable),
            ("outbound_filter", d.outbound_filter),
            ("per interface", d.per_interface),
            ("tc ingress filter", d.tc_ingress),
            ("tc egress filter", d.tc_egress),
            ("tun mode intercept", d.tun_mode),
            ("vrrp enable", d.vrrp),
            ("eapol enable", d.eapol),
            ("ddos filtering", d.ddos),
            ("masquerade", d.masquerade),
            ("ot filtering", d.ot_filtering),
        ] {
            s.push_str(&format!("{k:<24}:{}\n", u8::from(v)));
        }
        s.push_str(line);
        s.push('\n');
    }
    s
}
