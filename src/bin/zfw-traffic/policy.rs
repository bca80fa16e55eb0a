//! The rule sets of `make bench-traffic`, written as policy files for
//! `zfw apply --prune` (README.md, "Policy files").
//!
//! A set of `n` ingress rules holds:
//! - the two rules that admit the bench's traffic, client subnet -> server
//!   subnet, TCP 5201-5203 and UDP 5203, in the middle of the file and in the
//!   middle of their key's port ranges;
//! - rules whose prefixes also contain the server (a longer /28 and /32,
//!   shorter /16 and /8) on other ports, so the lookup walks several
//!   (dst, src) pairs before it finds the match;
//! - filler: distinct destination prefixes spread over the IPv4 unicast
//!   space (/16 to /32), a third of them with a source prefix, 70 % TCP,
//!   one to six port ranges each taken from common service ports, 5 % deny.
//!
//! Port 5299 (the probe listener) is in no allow rule that covers the
//! server, so zfw must drop connections to it.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Serialize;

use super::lab::{Res, CLIENT_NET, SERVER_NET};

#[derive(Serialize)]
struct Rule {
    dst: String,
    src: String,
    proto: &'static str,
    ports: String,
    action: &'static str,
}

#[derive(Serialize)]
struct Policy {
    ingress: Vec<Rule>,
}

fn r(dst: &str, src: &str, proto: &'static str, ports: &str, action: &'static str) -> Rule {
    Rule {
        dst: dst.into(),
        src: src.into(),
        proto,
        ports: ports.into(),
        action,
    }
}

/// The fewest rules a set can have: the traffic's two and the overlaps.
pub const MIN_RULES: usize = 8;

/// Port ranges filler rules draw from.
const PORTS: &[&str] = &[
    "443",
    "80",
    "22",
    "8080-8090",
    "53",
    "3306",
    "5432",
    "6379",
    "9000-9100",
    "1024-2048",
    "30000-32767",
    "8443",
    "25",
    "110-143",
    "389",
    "636",
    "5000-5010",
    "10250",
];

/// xorshift64*: a fixed sequence, so every run applies the same set.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn prefix(addr: u32, len: u8) -> String {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    format!("{}/{len}", Ipv4Addr::from(addr & mask))
}

/// A unicast address outside 0/8, 10/8 (the lab), 127/8 and 224/3.
fn unicast(rng: &mut Rng) -> u32 {
    loop {
        let a = rng.next() as u32;
        let first = a >> 24;
        if first != 0 && first != 10 && first != 127 && first < 224 {
            return a;
        }
    }
}

fn rules(n: usize) -> Res<Vec<Rule>> {
    if n < MIN_RULES {
        return Err(format!(
            "a rule set needs at least {MIN_RULES} rules, not {n}"
        ));
    }
    let any = "0.0.0.0/0";
    let overlaps = [
        r("10.91.2.0/28", any, "tcp", "8000-8100", "allow"),
        r("10.91.2.2/32", any, "udp", "53", "allow"),
        r("10.91.0.0/16", any, "tcp", "22", "allow"),
        r("10.0.0.0/8", CLIENT_NET, "tcp", "443", "allow"),
    ];
    // the traffic's key, with ranges before and after its own
    let before = r(SERVER_NET, CLIENT_NET, "tcp", "1000-1100", "allow");
    let traffic = [
        r(SERVER_NET, CLIENT_NET, "tcp", "5201-5203", "allow"),
        r(SERVER_NET, CLIENT_NET, "udp", "5203", "allow"),
    ];
    let after = r(SERVER_NET, CLIENT_NET, "tcp", "6000-6010", "deny");

    let fixed = overlaps.len() + 2 + traffic.len();
    let mut filler = Vec::with_capacity(n - fixed);
    let mut keys = HashSet::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    const LENS: [u8; 8] = [16, 20, 22, 24, 24, 24, 28, 32];
    while filler.len() < n - fixed {
        let dlen = LENS[(rng.next() % 8) as usize];
        let dst = prefix(unicast(&mut rng), dlen);
        let src = if rng.next().is_multiple_of(3) {
            let slen = [16u8, 24][(rng.next() % 2) as usize];
            prefix(unicast(&mut rng), slen)
        } else {
            any.to_string()
        };
        let proto = if rng.next() % 10 < 7 { "tcp" } else { "udp" };
        if !keys.insert((dst.clone(), src.clone(), proto)) {
            continue;
        }
        let ranges = 1 + (rng.next() % 6) as usize;
        let first = (rng.next() as usize) % PORTS.len();
        for j in 0..ranges {
            if filler.len() >= n - fixed {
                break;
            }
            let action = if rng.next().is_multiple_of(20) {
                "deny"
            } else {
                "allow"
            };
            let ports = PORTS[(first + j) % PORTS.len()];
            filler.push(r(&dst, &src, proto, ports, action));
        }
    }
    let mid = filler.len() / 2;
    let mut v: Vec<Rule> = Vec::with_capacity(n);
    let mut rest = filler.into_iter();
    v.extend(overlaps);
    v.extend(rest.by_ref().take(mid));
    v.push(before);
    v.extend(traffic);
    v.push(after);
    v.extend(rest);
    Ok(v)
}

/// Write the `n`-rule policy file to `path`.
pub fn write(path: &Path, n: usize) -> Res<()> {
    let p = Policy { ingress: rules(n)? };
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(f), &p)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sets_have_the_asked_size_distinct_rules_and_the_traffic_inside() {
        for n in [super::MIN_RULES, 10, 5000] {
            let v = super::rules(n).unwrap();
            assert_eq!(v.len(), n);
            let ids: std::collections::HashSet<_> = v
                .iter()
                .map(|r| (r.dst.clone(), r.src.clone(), r.proto, r.ports.clone()))
                .collect();
            assert_eq!(ids.len(), n, "duplicate rules");
            let at = v.iter().position(|r| r.ports == "5201-5203").unwrap();
            assert!(at > 0 && at < n - 1);
        }
        assert!(super::rules(3).is_err());
    }
}
