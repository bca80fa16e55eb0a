//! `zfw export`: the live state in exactly the format `apply` reads.  Rules
//! are the same RULE objects as `rule list --json` (`Rule::to_json`);
//! every setting of every attached interface is written, so applying the
//! export changes nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::apply::state::State;
use crate::iface_state::flag_table;
use crate::rules::model::{Direction, Rule, RuleJson};

#[derive(Serialize)]
pub struct DdosDoc {
    pub ports: Vec<u16>,
    pub allow: Vec<String>,
}

/// The policy document; fields in the order README.md "Policy files" lists them.
#[derive(Serialize)]
pub struct PolicyDoc {
    pub interfaces: BTreeMap<String, BTreeMap<String, bool>>,
    pub ingress: Vec<RuleJson>,
    pub egress: Vec<RuleJson>,
    pub ddos: DdosDoc,
    pub dnp3_fcodes: Vec<u8>,
}

fn rules(s: &State, dir: Direction) -> Vec<RuleJson> {
    s.rules
        .iter()
        .filter(|r| r.direction == dir)
        .map(Rule::to_json)
        .collect()
}

pub fn document(s: &State) -> PolicyDoc {
    let table = flag_table();
    PolicyDoc {
        interfaces: s
            .ifaces
            .iter()
            .map(|(name, (_, flags))| {
                let settings = table
                    .iter()
                    .map(|(n, bit)| (n.clone(), flags & bit != 0))
                    .collect();
                (name.clone(), settings)
            })
            .collect(),
        ingress: rules(s, Direction::Ingress),
        egress: rules(s, Direction::Egress),
        ddos: DdosDoc {
            ports: s.ddos_ports.iter().copied().collect(),
            allow: s.ddos_allow.iter().map(|a| a.to_string()).collect(),
        },
        dnp3_fcodes: s.dnp3.iter().copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{file, state};
    use crate::rules::model::{Action, Ports, Proto};

    #[test]
    fn an_exported_document_parses_back_to_the_same_state() {
        let r = Rule {
            direction: Direction::Egress,
            dst: "fd00::/8".parse().unwrap(),
            src: "fd01::/16".parse().unwrap(),
            proto: Proto::Udp,
            ports: "53-54".parse::<Ports>().unwrap(),
            action: Action::Deny,
            interfaces: vec![],
            service_id: Some("dns".into()),
        };
        let live = State {
            rules: vec![r],
            ddos_ports: [443u16, 8443].into(),
            ddos_allow: ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()].into(),
            dnp3: [129u8].into(),
            ..Default::default()
        };
        let text = serde_json::to_string(&document(&live)).unwrap();
        let p = file::parse("x", &text, &mut |_| {}).unwrap();
        for prune in [false, true] {
            let d = state::desired(&live, &p, prune);
            assert!(state::diff(&live, &d).is_empty(), "prune {prune}: {text}");
        }
    }
}
