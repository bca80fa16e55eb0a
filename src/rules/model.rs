//! The rule model: one rule as the CLI, `apply` and `rule list --json` see
//! it, its parsing and validation, and the RULE JSON object of README.md "Policy files".

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::error::{shown, Error, Result};
pub use crate::net::{addr_words, mask_addr, words_addr, Family, Prefix};
use crate::skel::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => nix::libc::IPPROTO_TCP as u8,
            Proto::Udp => nix::libc::IPPROTO_UDP as u8,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        if n == nix::libc::IPPROTO_TCP as u8 {
            Some(Proto::Tcp)
        } else if n == nix::libc::IPPROTO_UDP as u8 {
            Some(Proto::Udp)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A service id is 1 to ZFW_SERVICE_ID_LEN printable ASCII characters
/// (no NUL, newline or other control character).
pub fn service_id_ok(id: &str) -> bool {
    let max = names::ZFW_SERVICE_ID_LEN as usize;
    !id.is_empty() && id.len() <= max && id.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Proto, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(format!("protocol '{}': expected tcp or udp", shown(s))),
        }
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ports {
    pub lo: u16,
    pub hi: u16,
}

impl FromStr for Ports {
    type Err = String;
    /// `80` or `80-90`; ports 1-65535, lo <= hi.
    fn from_str(s: &str) -> std::result::Result<Ports, String> {
        let p = |x: &str| {
            x.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("ports '{}': expected P or P-Q with ports 1-65535", shown(s))
                })
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (p(a)?, p(b)?),
            None => {
                let v = p(s)?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(format!(
                "ports '{}': the range is backwards ({lo} > {hi})",
                shown(s)
            ));
        }
        Ok(Ports { lo, hi })
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
    Tproxy(u16),
    Tunnel,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Allow => write!(f, "allow"),
            Action::Deny => write!(f, "deny"),
            Action::Tproxy(p) => write!(f, "tproxy:{p}"),
            Action::Tunnel => write!(f, "tunnel"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// One rule.  `dst`/`src` share the family; `interfaces` are names (the
/// maps store ifindexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub direction: Direction,
    pub dst: Prefix,
    pub src: Prefix,
    pub proto: Proto,
    pub ports: Ports,
    pub action: Action,
    pub interfaces: Vec<String>,
    pub service_id: Option<String>,
}

/// What identifies a rule for `rule del` and duplicate detection: its key
/// and port range (action, interfaces and service id are attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId {
    pub direction: Direction,
    pub dst: Prefix,
    pub src: Prefix,
    pub proto: Proto,
    pub ports: Ports,
}

impl Rule {
    pub fn family(&self) -> Family {
        self.dst.family()
    }

    pub fn id(&self) -> RuleId {
        RuleId {
            direction: self.direction,
            dst: self.dst,
            src: self.src,
            proto: self.proto,
            ports: self.ports,
        }
    }

    /// Check everything that does not need the kernel.
    pub fn validate(&self) -> Result<()> {
        if self.dst.family() != self.src.family() {
            return Err(Error::usage(format!(
                "--src {} and --dst {} are of different address families",
                self.src, self.dst
            )));
        }
        let max_if = names::ZFW_MAX_RULE_IFACES as usize;
        if self.interfaces.len() > max_if {
            return Err(Error::usage(format!(
                "a rule may list at most {max_if} interfaces ({} given)",
                self.interfaces.len()
            )));
        }
        if let Some(id) = &self.service_id {
            let max = names::ZFW_SERVICE_ID_LEN as usize;
            if !service_id_ok(id) {
                return Err(Error::usage(format!(
                    "service id '{}': 1-{max} printable ASCII characters",
                    shown(id)
                )));
            }
        }
        match self.action {
            Action::Tproxy(0) => Err(Error::usage("--tproxy-port: port must be 1-65535")),
            Action::Tproxy(_) if self.direction == Direction::Egress => Err(Error::usage(
                "--tproxy-port applies to ingress rules only (not with --egress)",
            )),
            Action::Tunnel if self.direction == Direction::Egress => Err(Error::usage(
                "--tunnel applies to ingress rules only (not with --egress)",
            )),
            _ => Ok(()),
        }
    }
}

/// The RULE object of README.md "Policy files", field for field (unknown fields rejected).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleJson {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    pub proto: String,
    pub ports: String,
    #[serde(default = "default_action")]
    pub action: ActionJson,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
}

fn default_action() -> ActionJson {
    ActionJson(Action::Allow)
}

/// `"allow" | "deny" | "tunnel" | {"tproxy": PORT}`.
#[derive(Debug, Clone, Copy)]
pub struct ActionJson(pub Action);

impl Serialize for ActionJson {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Action::Allow => s.serialize_str("allow"),
            Action::Deny => s.serialize_str("deny"),
            Action::Tunnel => s.serialize_str("tunnel"),
            Action::Tproxy(p) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("tproxy", &p)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for ActionJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tp {
            tproxy: u16,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Tp(Tp),
        }
        match Raw::deserialize(d)? {
            Raw::Name(n) => match n.as_str() {
                "allow" => Ok(ActionJson(Action::Allow)),
                "deny" => Ok(ActionJson(Action::Deny)),
                "tunnel" => Ok(ActionJson(Action::Tunnel)),
                other => Err(de::Error::custom(format!(
                    "action '{}': expected allow, deny, tunnel or {{\"tproxy\": PORT}}",
                    shown(other)
                ))),
            },
            Raw::Tp(t) => Ok(ActionJson(Action::Tproxy(t.tproxy))),
        }
    }
}

impl Rule {
    pub fn to_json(&self) -> RuleJson {
        RuleJson {
            dst: self.dst.to_string(),
            src: Some(self.src.to_string()),
            proto: self.proto.name().to_string(),
            ports: self.ports.to_string(),
            action: ActionJson(self.action),
            interfaces: self.interfaces.clone(),
            service_id: self.service_id.clone(),
        }
    }

    /// Parse and validate a RULE object; errors name the field.
    pub fn from_json(j: &RuleJson, direction: Direction) -> Result<Rule> {
        let dst: Prefix = j
            .dst
            .parse()
            .map_err(|e| Error::usage(format!("field dst: {e}")))?;
        let src = match &j.src {
            Some(s) => s
                .parse()
                .map_err(|e| Error::usage(format!("field src: {e}")))?,
            None => Prefix::any(dst.family()),
        };
        let r = Rule {
            direction,
            dst,
            src,
            proto: j
                .proto
                .parse()
                .map_err(|e| Error::usage(format!("field proto: {e}")))?,
            ports: j
                .ports
                .parse()
                .map_err(|e| Error::usage(format!("field ports: {e}")))?,
            action: j.action.0,
            interfaces: j.interfaces.clone(),
            service_id: j.service_id.clone(),
        };
        r.validate()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        assert_eq!("80".parse::<Ports>().unwrap(), Ports { lo: 80, hi: 80 });
        assert_eq!("80-90".parse::<Ports>().unwrap(), Ports { lo: 80, hi: 90 });
        for bad in ["0", "90-80", "x", "1-70000", ""] {
            assert!(bad.parse::<Ports>().is_err(), "{bad}");
        }
    }

    #[test]
    fn json_round_trip_and_unknown_fields() {
        let j: RuleJson = serde_json::from_str(
            r#"{"dst":"10.0.0.0/24","src":"0.0.0.0/0","proto":"tcp","ports":"80-90","action":{"tproxy":7777},"interfaces":["eth0"],"service_id":"x"}"#,
        )
        .unwrap();
        let r = Rule::from_json(&j, Direction::Ingress).unwrap();
        assert_eq!(r.action, Action::Tproxy(7777));
        let back = serde_json::to_value(r.to_json()).unwrap();
        assert_eq!(back["action"]["tproxy"], 7777);
        assert_eq!(back["ports"], "80-90");
        assert!(serde_json::from_str::<RuleJson>(
            r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"80","bogus":1}"#
        )
        .is_err());
        let j: RuleJson = serde_json::from_str(
            r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"80","src":"fd00::/8"}"#,
        )
        .unwrap();
        assert!(Rule::from_json(&j, Direction::Ingress).is_err());
    }
}
