//! The kernel's SNMP/netstat counters of one namespace, named as `nstat`
//! names them (TcpExtPAWSTimewait, TcpRetransSegs, ...).  Read from
//! /proc/thread-self/net by a thread that joined the namespace: the same
//! files nstat reads, without its history files.

use std::collections::BTreeMap;
use std::path::Path;

use super::lab::Res;
use super::traffic::in_ns;

/// The counters a trial records (deltas), per namespace.
pub const KEPT: &[&str] = &[
    "TcpExtPAWSTimewait",
    "TcpExtTCPSynRetrans",
    "TcpExtTW",
    "TcpExtTCPTimeWaitOverflow",
    "TcpExtListenOverflows",
    "TcpExtListenDrops",
    "TcpActiveOpens",
    "TcpPassiveOpens",
    "TcpAttemptFails",
    "TcpEstabResets",
    "TcpRetransSegs",
    "TcpOutRsts",
    "UdpInDatagrams",
    "UdpRcvbufErrors",
    "UdpSndbufErrors",
];

/// "Tcp: A B\nTcp: 1 2" pairs of lines -> {"TcpA": 1, "TcpB": 2}.
fn parse(text: &str, out: &mut BTreeMap<String, u64>) {
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((p1, n)), Some((p2, v))) = (names.split_once(':'), values.split_once(':')) else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        for (name, val) in n.split_whitespace().zip(v.split_whitespace()) {
            if let Ok(x) = val.parse::<u64>() {
                out.insert(format!("{p1}{name}"), x);
            }
        }
    }
}

pub fn read(ns: &Path) -> Res<BTreeMap<String, u64>> {
    in_ns(ns, None, || {
        let mut m = BTreeMap::new();
        for f in ["netstat", "snmp"] {
            let p = format!("/proc/thread-self/net/{f}");
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
            parse(&text, &mut m);
        }
        Ok(m)
    })
    .join()
    .map_err(|_| "nstat thread panicked".to_string())?
}

/// `after - before` for the KEPT counters.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    KEPT.iter()
        .map(|k| {
            let d = after.get(*k).copied().unwrap_or(0);
            let b = before.get(*k).copied().unwrap_or(0);
            (k.to_string(), d.saturating_sub(b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pairs_of_lines_become_prefixed_names() {
        let mut m = Default::default();
        super::parse(
            "TcpExt: SyncookiesSent PAWSTimewait\nTcpExt: 0 7\nTcp: RtoAlgorithm RetransSegs\nTcp: 1 42\n",
            &mut m,
        );
        assert_eq!(m["TcpExtPAWSTimewait"], 7);
        assert_eq!(m["TcpRetransSegs"], 42);
    }
}
