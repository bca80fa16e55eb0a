//! The policy file (README.md "Policy files"): parsing and validation with
//! JSON paths.  Everything here is pure (no maps, no kernel) except
//! [`Policy::check_system`], which checks the names of interfaces against
//! the live state; both run before anything is changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::error::{shown, Error, Result};
use crate::iface_state::flag_table;
use crate::ifaddr::check_name;
use crate::rules::model::{ActionJson, Direction, Ports, Prefix, Proto, Rule};
use crate::rules::store;
use crate::skel::names;

/// Top-level keys, in the order `export` writes them.
pub const TOP_KEYS: &[&str] = &["interfaces", "ingress", "egress", "ddos", "dnp3_fcodes"];
/// Keys of a RULE object.
pub const RULE_KEYS: &[&str] = &[
    "dst",
    "src",
    "proto",
    "ports",
    "action",
    "interfaces",
    "service_id",
];
const DDOS_KEYS: &[&str] = &["ports", "allow"];

/// A parsed, validated policy file.  `None` sections were absent.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    /// interface name -> (setting -> on), only the settings the file names
    pub interfaces: Option<BTreeMap<String, BTreeMap<String, bool>>>,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    pub ddos_ports: Option<BTreeSet<u16>>,
    pub ddos_allow: Option<BTreeSet<IpAddr>>,
    pub dnp3_fcodes: Option<BTreeSet<u8>>,
}

impl Policy {
    pub fn rules(&self, dir: Direction) -> Option<&Vec<Rule>> {
        match dir {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }

    pub fn rule_count(&self) -> usize {
        self.ingress.as_ref().map_or(0, Vec::len) + self.egress.as_ref().map_or(0, Vec::len)
    }
}

/// A validation error at a JSON path of the file named `file`.
fn at(file: &str, path: &str, msg: impl std::fmt::Display) -> Error {
    Error::usage(format!("{file}: {path}: {msg}"))
}

fn expected(keys: &[&str]) -> String {
    keys.join(", ")
}

fn check_keys(file: &str, path: &str, obj: &Map<String, Value>, keys: &[&str]) -> Result<()> {
    for k in obj.keys() {
        if !keys.contains(&k.as_str()) {
            let p = if path.is_empty() {
                shown(k)
            } else {
                format!("{path}.{}", shown(k))
            };
            return Err(at(
                file,
                &p,
                format!("unknown field (expected one of {})", expected(keys)),
            ));
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_obj<'a>(file: &str, path: &str, v: &'a Value) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        at(
            file,
            path,
            format!("expected an object, got {}", type_name(v)),
        )
    })
}

fn as_arr<'a>(file: &str, path: &str, v: &'a Value) -> Result<&'a Vec<Value>> {
    v.as_array().ok_or_else(|| {
        at(
            file,
            path,
            format!("expected an array, got {}", type_name(v)),
        )
    })
}

fn as_str<'a>(file: &str, path: &str, v: &'a Value) -> Result<&'a str> {
    v.as_str().ok_or_else(|| {
        at(
            file,
            path,
            format!("expected a string, got {}", type_name(v)),
        )
    })
}

/// Parse and validate `text` (the contents of `file`).  `progress` is told
/// how far rule validation got, for long files.
pub fn parse(file: &str, text: &str, progress: &mut dyn FnMut(&str)) -> Result<Policy> {
    let v: Value = crate::json::from_str(text).map_err(|e| Error::usage(e.message(file)))?;
    let top = v.as_object().ok_or_else(|| {
        Error::usage(format!(
            "{file}: the policy must be a JSON object with fields {}",
            expected(TOP_KEYS)
        ))
    })?;
    check_keys(file, "", top, TOP_KEYS)?;
    let mut p = Policy::default();
    if let Some(ifs) = top.get("interfaces") {
        p.interfaces = Some(parse_interfaces(file, ifs)?);
    }
    let total = ["ingress", "egress"]
        .iter()
        .filter_map(|k| top.get(*k).and_then(Value::as_array))
        .map(Vec::len)
        .sum::<usize>();
    let mut done = 0usize;
    for dir in [Direction::Ingress, Direction::Egress] {
        let Some(list) = top.get(dir.name()) else {
            continue;
        };
        let arr = as_arr(file, dir.name(), list)?;
        let mut rules = Vec::with_capacity(arr.len());
        let mut seen: HashMap<_, usize> = HashMap::with_capacity(arr.len());
        for (i, rv) in arr.iter().enumerate() {
            let path = format!("{}[{i}]", dir.name());
            let r = parse_rule(file, &path, rv, dir)?;
            if let Some(first) = seen.insert(r.id(), i) {
                return Err(at(
                    file,
                    &path,
                    format!(
                        "duplicate of {}[{first}] (same dst, src, proto and ports)",
                        dir.name()
                    ),
                ));
            }
            rules.push(r);
            done += 1;
            if done.is_multiple_of(10_000) {
                progress(&format!("validating rules {done}/{total}"));
            }
        }
        match dir {
            Direction::Ingress => p.ingress = Some(rules),
            Direction::Egress => p.egress = Some(rules),
        }
    }
    if let Some(d) = top.get("ddos") {
        let o = as_obj(file, "ddos", d)?;
        check_keys(file, "ddos", o, DDOS_KEYS)?;
        if let Some(ports) = o.get("ports") {
            let mut set = BTreeSet::new();
            for (i, pv) in as_arr(file, "ddos.ports", ports)?.iter().enumerate() {
                let port = pv
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0)
                    .ok_or_else(|| {
                        at(
                            file,
                            &format!("ddos.ports[{i}]"),
                            format!("port {pv}: expected 1-65535"),
                        )
                    })?;
                set.insert(port);
            }
            p.ddos_ports = Some(set);
        }
        if let Some(allow) = o.get("allow") {
            let mut set = BTreeSet::new();
            for (i, av) in as_arr(file, "ddos.allow", allow)?.iter().enumerate() {
                let path = format!("ddos.allow[{i}]");
                let s = as_str(file, &path, av)?;
                let ip: IpAddr = s.parse().map_err(|_| {
                    at(
                        file,
                        &path,
                        format!("'{}' is not an IPv4 or IPv6 address", shown(s)),
                    )
                })?;
                set.insert(ip);
            }
            p.ddos_allow = Some(set);
        }
    }
    if let Some(codes) = top.get("dnp3_fcodes") {
        let mut set = BTreeSet::new();
        for (i, cv) in as_arr(file, "dnp3_fcodes", codes)?.iter().enumerate() {
            let c = cv
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| {
                    at(
                        file,
                        &format!("dnp3_fcodes[{i}]"),
                        format!("function code {cv}: expected 0-255"),
                    )
                })?;
            set.insert(c);
        }
        p.dnp3_fcodes = Some(set);
    }
    Ok(p)
}

fn parse_interfaces(file: &str, v: &Value) -> Result<BTreeMap<String, BTreeMap<String, bool>>> {
    let flags: Vec<String> = flag_table().into_iter().map(|(n, _)| n).collect();
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut out = BTreeMap::new();
    for (name, sv) in as_obj(file, "interfaces", v)? {
        let path = format!("interfaces.{}", shown(name));
        check_name(name).map_err(|e| at(file, &path, e))?;
        let o = as_obj(file, &path, sv)?;
        check_keys(file, &path, o, &flag_refs)?;
        let mut settings = BTreeMap::new();
        for (k, b) in o {
            let on = b.as_bool().ok_or_else(|| {
                at(
                    file,
                    &format!("{path}.{k}"),
                    format!("expected true or false, got {}", type_name(b)),
                )
            })?;
            settings.insert(k.clone(), on);
        }
        out.insert(name.clone(), settings);
    }
    Ok(out)
}

fn parse_rule(file: &str, path: &str, v: &Value, dir: Direction) -> Result<Rule> {
    let o = as_obj(file, path, v)?;
    check_keys(file, path, o, RULE_KEYS)?;
    let field = |k: &str| -> Result<&Value> {
        o.get(k)
            .ok_or_else(|| at(file, path, format!("missing field '{k}'")))
    };
    let fpath = |k: &str| format!("{path}.{k}");
    let prefix = |k: &str, v: &Value| -> Result<Prefix> {
        let s = as_str(file, &fpath(k), v)?;
        s.parse::<Prefix>().map_err(|e| at(file, &fpath(k), e))
    };
    let dst = prefix("dst", field("dst")?)?;
    let src = match o.get("src") {
        Some(s) => prefix("src", s)?,
        None => Prefix::any(dst.family()),
    };
    if src.family() != dst.family() {
        return Err(at(
            file,
            &fpath("src"),
            format!("{src} and dst {dst} are of different address families"),
        ));
    }
    let proto_s = as_str(file, &fpath("proto"), field("proto")?)?;
    let proto: Proto = proto_s.parse().map_err(|e| at(file, &fpath("proto"), e))?;
    let ports: Ports = match field("ports")? {
        Value::Number(n) => n
            .to_string()
            .parse()
            .map_err(|e| at(file, &fpath("ports"), e))?,
        pv => as_str(file, &fpath("ports"), pv)?
            .parse()
            .map_err(|e| at(file, &fpath("ports"), e))?,
    };
    let action = match o.get("action") {
        None => crate::rules::model::Action::Allow,
        Some(a) => {
            serde_json::from_value::<ActionJson>(a.clone())
                .map_err(|_| {
                    at(
                        file,
                        &fpath("action"),
                        format!("{}: expected \"allow\", \"deny\", \"tunnel\" or {{\"tproxy\": PORT}} with PORT 1-65535", shown(&a.to_string())),
                    )
                })?
                .0
        }
    };
    if action == crate::rules::model::Action::Tproxy(0) {
        return Err(at(file, &fpath("action"), "tproxy port must be 1-65535"));
    }
    let mut interfaces = Vec::new();
    if let Some(iv) = o.get("interfaces") {
        for (j, n) in as_arr(file, &fpath("interfaces"), iv)?.iter().enumerate() {
            let ipath = format!("{path}.interfaces[{j}]");
            let name = as_str(file, &ipath, n)?;
            check_name(name).map_err(|e| at(file, &ipath, e))?;
            interfaces.push(name.to_string());
        }
    }
    let service_id = match o.get("service_id") {
        None => None,
        Some(s) => {
            let s = as_str(file, &fpath("service_id"), s)?;
            let max = names::ZFW_SERVICE_ID_LEN as usize;
            if !crate::rules::model::service_id_ok(s) {
                return Err(at(
                    file,
                    &fpath("service_id"),
                    format!(
                        "'{}': expected 1-{max} printable ASCII characters",
                        shown(s)
                    ),
                ));
            }
            Some(s.to_string())
        }
    };
    let r = Rule {
        direction: dir,
        dst,
        src,
        proto,
        ports,
        action,
        interfaces,
        service_id,
    };
    r.validate().map_err(|e| at(file, path, e))?;
    Ok(r)
}

impl Policy {
    /// Checks that need the system: interfaces named in the `interfaces`
    /// section must be attached (`attached`: name -> ifindex); interfaces listed by rules must exist.
    pub fn check_system(&self, file: &str, attached: &BTreeMap<String, u32>) -> Result<()> {
        if let Some(ifs) = &self.interfaces {
            for name in ifs.keys() {
                if !attached.contains_key(name) {
                    let why = match crate::ifaddr::index_of(name) {
                        Ok(_) => format!(
                            "zfw is not attached to {} (zfw load --iface {})",
                            shown(name),
                            shown(name)
                        ),
                        Err(_) => format!("no interface named '{}'", shown(name)),
                    };
                    return Err(at(file, &format!("interfaces.{}", shown(name)), why));
                }
            }
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            for (i, r) in self.rules(dir).into_iter().flatten().enumerate() {
                for (j, n) in r.interfaces.iter().enumerate() {
                    if store::iface_index(n).is_err() {
                        return Err(at(
                            file,
                            &format!("{}[{i}].interfaces[{j}]", dir.name()),
                            format!("unknown interface '{}'", shown(n)),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("p.json", text, &mut |_| {}).unwrap_err().to_string()
    }

    #[test]
    fn a_full_file_parses() {
        let p = parse(
            "p.json",
            r#"{"interfaces": {"eth0": {"icmp_echo": true, "ssh": false}},
                "ingress": [{"dst": "10.0.0.0/24", "src": "0.0.0.0/0", "proto": "tcp",
                             "ports": "80-90", "action": {"tproxy": 7777},
                             "interfaces": ["eth0"], "service_id": "x"},
                            {"dst": "fd00::/8", "proto": "udp", "ports": 53}],
                "egress": [{"dst": "0.0.0.0/0", "proto": "udp", "ports": "53", "action": "deny"}],
                "ddos": {"ports": [443], "allow": ["192.0.2.1"]},
                "dnp3_fcodes": [129]}"#,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(p.rule_count(), 3);
        assert_eq!(
            p.ingress.as_ref().unwrap()[1].ports,
            Ports { lo: 53, hi: 53 }
        );
        assert!(p.interfaces.as_ref().unwrap()["eth0"]["icmp_echo"]);
        assert!(p.ddos_ports.unwrap().contains(&443));
        assert!(p.dnp3_fcodes.unwrap().contains(&129));
    }

    #[test]
    fn errors_name_file_path_and_problem() {
        let rule = |f: &str| {
            format!(r#"{{"ingress": [{{"dst":"10.0.0.0/24","proto":"tcp","ports":"80"}}, {f}]}}"#)
        };
        let cases = [
            (
                rule(r#"{"dst":"10.0.0.300/24","proto":"tcp","ports":"80"}"#),
                "p.json: ingress[1].dst: '10.0.0.300/24'",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"70000"}"#),
                "p.json: ingress[1].ports:",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"90-80"}"#),
                "ingress[1].ports: ports '90-80': the range is backwards",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","proto":"icmp","ports":"80"}"#),
                "ingress[1].proto: protocol 'icmp'",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","src":"fd00::/8","proto":"tcp","ports":"80"}"#),
                "ingress[1].src: fd00::/8 and dst 10.0.0.0/24 are of different address families",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"80","colour":"red"}"#),
                "ingress[1].colour: unknown field",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"80"}"#),
                "ingress[1]: duplicate of ingress[0]",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","proto":"tcp"}"#),
                "ingress[1]: missing field 'ports'",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"81","action":"accept"}"#),
                "ingress[1].action:",
            ),
            (
                rule(r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"81","action":{"tproxy":0}}"#),
                "ingress[1].action: tproxy port",
            ),
            (
                r#"{"interfaces": {"eth0": {"icmp_echo": "yes"}}}"#.into(),
                "interfaces.eth0.icmp_echo: expected true or false",
            ),
            (
                r#"{"interfaces": {"eth0": {"telnet": true}}}"#.into(),
                "interfaces.eth0.telnet: unknown field",
            ),
            (
                r#"{"ddos": {"ports": [0]}}"#.into(),
                "ddos.ports[0]: port 0",
            ),
            (
                r#"{"ddos": {"allow": ["10.0.0.0/8"]}}"#.into(),
                "ddos.allow[0]: '10.0.0.0/8'",
            ),
            (
                r#"{"ddos": {"rate": 5}}"#.into(),
                "ddos.rate: unknown field",
            ),
            (
                r#"{"dnp3_fcodes": [256]}"#.into(),
                "dnp3_fcodes[0]: function code 256",
            ),
            (r#"{"rules": []}"#.into(), "p.json: rules: unknown field"),
            (r#"{"ingress": {}}"#.into(), "ingress: expected an array"),
            (
                r#"{"ingress": [{"dst":"10.0.0.0/24","#.into(),
                "p.json: line 1, column 34: truncated JSON",
            ),
            ("[1]".into(), "p.json: the policy must be a JSON object"),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "{text}\n got: {e}\nwant: {want}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let e = parse("p.json", "{\n \"ingress\": [\n", &mut |_| {}).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("p.json: line 3,"), "{e}");
    }

    #[test]
    fn a_repeated_key_is_an_error_at_its_path() {
        let rule = r#"{"dst":"10.0.0.0/24","proto":"tcp","ports":"80"}"#;
        for (text, want) in [
            (
                format!(r#"{{"ingress": [{rule}], "ingress": []}}"#),
                "p.json: ingress: duplicate key (line 1, column ",
            ),
            (
                r#"{"ingress": [{"dst":"10.0.0.0/24","dst":"10.0.1.0/24","proto":"tcp","ports":"80"}]}"#
                    .to_string(),
                "p.json: ingress[0].dst: duplicate key",
            ),
            (
                r#"{"interfaces": {"eth0": {"icmp_echo": true, "icmp_echo": false}}}"#.to_string(),
                "p.json: interfaces.eth0.icmp_echo: duplicate key",
            ),
            (
                r#"{"interfaces": {"eth0": {}, "eth0": {"ssh": false}}}"#.to_string(),
                "p.json: interfaces.eth0: duplicate key",
            ),
            (
                format!(r#"{{"egress": [{rule}, {{"dst":"10.0.0.0/24","proto":"tcp","ports":"81","action":{{"tproxy":1,"tproxy":2}}}}]}}"#),
                "p.json: egress[1].action.tproxy: duplicate key",
            ),
        ] {
            let e = err(&text);
            assert!(e.starts_with(want), "{text}\n got: {e}\nwant: {want}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn control_characters_in_names_and_ids_are_refused_and_shown_escaped() {
        let rule = |extra: &str| {
            format!(
                r#"{{"ingress": [{{"dst":"10.0.0.0/24","proto":"tcp","ports":"80",{extra}}}]}}"#
            )
        };
        for (text, want) in [
            (
                rule(r#""service_id":"a\nb""#),
                "p.json: ingress[0].service_id: 'a\\x0ab': expected 1-",
            ),
            (
                rule(r#""service_id":"a\u0000""#),
                "ingress[0].service_id: 'a\\x00'",
            ),
            (
                rule(r#""interfaces":["eth\u00000"]"#),
                "p.json: ingress[0].interfaces[0]: name 'eth\\x000'",
            ),
            (
                rule(r#""interfaces":["et h0"]"#),
                "ingress[0].interfaces[0]: name 'et h0'",
            ),
            (
                r#"{"interfaces": {"eth\r0": {"ssh": true}}}"#.replace("\r", "\\r"),
                "p.json: interfaces.eth\\x0d0: name 'eth\\x0d0'",
            ),
            (
                r#"{"ingress": [{"dst":"10.0.0.0/24","proto":"tcp","ports":"80","colo\u001bur":1}]}"#
                    .to_string(),
                "ingress[0].colo\\x1bur: unknown field",
            ),
        ] {
            let e = err(&text);
            assert!(e.contains(want), "{text}\n got: {e}\nwant: {want}");
            assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "escaped: {e:?}");
        }
    }

    #[test]
    fn a_huge_value_gives_a_short_error_line() {
        let dst = "1".repeat(100 << 20);
        let text = format!(r#"{{"ingress": [{{"dst":"{dst}","proto":"tcp","ports":"80"}}]}}"#);
        let e = err(&text);
        assert!(
            e.starts_with("p.json: ingress[0].dst: '111"),
            "{}",
            &e[..e.len().min(200)]
        );
        assert!(e.len() < 200, "{} bytes", e.len());
        let text = format!(r#"{{"ddos": {{"allow": ["{dst}"]}}}}"#);
        assert!(err(&text).len() < 200);
        let text =
            format!(r#"{{"ingress": [{{"dst":"10.0.0.0/24","proto":"{dst}","ports":"80"}}]}}"#);
        assert!(err(&text).len() < 200);
        let text =
            format!(r#"{{"ingress": [{{"dst":"10.0.0.0/24","proto":"tcp","ports":"{dst}"}}]}}"#);
        assert!(err(&text).len() < 200);
        let text = format!(
            r#"{{"ingress": [{{"dst":"10.0.0.0/24","proto":"tcp","ports":"80","action":"{dst}"}}]}}"#
        );
        assert!(err(&text).len() < 300);
    }
}
