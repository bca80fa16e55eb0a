//! The C zfw command line, read into a request: every flag and every
//! combination rule, as tables of argv -> request or refusal.  Plain unit
//! tests (no root, no kernel): interface names resolve against the table
//! below.

use std::net::Ipv4Addr;

use zfw::legacy::request::{ListArgs, Only, RuleArgs, Target, Toggle};
use zfw::legacy::{parse, Fail, Interfaces, Request};
use zfw::rules::model::{Direction, Prefix, Proto};

#[path = "legacy/cases.rs"]
mod cases;
use cases::{COMBINATIONS, IFACE_FLAGS, VALUES};

/// eth0, eth1 (altname `lan1`), ens33, ziti0.
struct Table;

impl Interfaces for Table {
    fn canonical(&self, name: &str) -> Option<String> {
        match name {
            "eth0" | "eth1" | "ens33" | "ziti0" => Some(name.to_string()),
            "lan1" => Some("eth1".to_string()),
            _ => None,
        }
    }
}

fn words(argv: &str) -> Vec<String> {
    argv.split_whitespace().map(String::from).collect()
}

fn p(argv: &str) -> Result<Request, Fail> {
    parse("zfw", &words(argv), &Table)
}

fn ok(argv: &str) -> Request {
    p(argv).unwrap_or_else(|e| panic!("{argv}: refused: {e:?}"))
}

fn pfx(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn ifname(n: &str) -> Target {
    Target::If(n.to_string())
}

fn rule(dst: &str, src: &str, proto: Proto, low: u16) -> RuleArgs {
    RuleArgs {
        dir: Direction::Ingress,
        dst: pfx(dst),
        src: pfx(src),
        proto,
        low,
        high: None,
        tproxy: None,
        deny: false,
        service: None,
        ifaces: vec![],
        route: false,
    }
}

fn ins(dst: &str, src: &str, proto: Proto, low: u16, high: u16, t: u16) -> RuleArgs {
    RuleArgs {
        high: Some(high),
        tproxy: Some(t),
        ..rule(dst, src, proto, low)
    }
}

fn list(
    dir: Direction,
    v6: bool,
    key: Option<(&str, &str)>,
    proto: Option<Proto>,
    only: Only,
) -> Request {
    Request::List(ListArgs {
        dir,
        v6,
        key: key.map(|(d, s)| (pfx(d), pfx(s))),
        proto,
        only,
    })
}

fn toggle(t: Toggle, target: Target, on: bool) -> Request {
    Request::Toggles {
        set: vec![(t, target)],
        on,
    }
}

#[test]
fn every_request_the_c_grammar_can_make() {
    use Proto::{Tcp, Udp};
    let router = RuleArgs {
        service: Some("3Ds1HqEdbbN0RxsDC2zGvn".into()),
        ifaces: vec!["eth0".into()],
        ..ins("10.10.0.0/24", "192.168.1.0/24", Tcp, 80, 90, 33381)
    };
    let cases: Vec<(&str, Request)> = vec![
        // argp's own
        ("-V", Request::Version),
        ("--version", Request::Version),
        ("--vers", Request::Version),
        ("-?", Request::Help),
        ("--help", Request::Help),
        ("--usage", Request::Usage),
        ("-V -c nonsense", Request::Version),
        // -I as the router runs it: short, long, prefixes, --opt=val, bundles
        (
            "-I -c 10.10.0.0 -m 24 -p tcp -o 192.168.1.0 -n 24 -l 80 -h 90 -t 33381 -s 3Ds1HqEdbbN0RxsDC2zGvn -N eth0",
            Request::Insert(router.clone()),
        ),
        (
            "--insert --dcidr-block=10.10.0.0 --dprefix-len 24 --protocol=tcp --ocidr-block 192.168.1.0 --oprefix-len=24 --low-port 80 --high-port=90 --tproxy-port 33381 --service-id=3Ds1HqEdbbN0RxsDC2zGvn --interface=eth0",
            Request::Insert(router.clone()),
        ),
        (
            "--ins --dcidr=10.10.0.0 --dp 24 --prot tcp --oc 192.168.1.0 --op 24 --lo 80 --hi 90 --tp 33381 --serv 3Ds1HqEdbbN0RxsDC2zGvn --interf eth0",
            Request::Insert(router.clone()),
        ),
        (
            "-Ic10.10.0.0 -m24 -ptcp -o192.168.1.0 -n24 -l80 -h90 -t33381 -s3Ds1HqEdbbN0RxsDC2zGvn -Neth0",
            Request::Insert(router),
        ),
        // defaults: any source; host bits cleared; -n without -o ignored
        ("-I -c 10.1.2.3 -m 16 -l 1 -h 65535 -t 0 -p udp -n 8", Request::Insert(ins("10.1.0.0/16", "0.0.0.0/0", Udp, 1, 65535, 0))),
        ("-I -c 0.0.0.0 -m 0 -l 1 -h 65535 -t 0 -p TCP", Request::Insert(ins("0.0.0.0/0", "0.0.0.0/0", Tcp, 1, 65535, 0))),
        ("-I -c :: -m 0 -l 1 -h 65535 -t 0 -p udp", Request::Insert(ins("::/0", "::/0", Udp, 1, 65535, 0))),
        // IPv6 sources (the C zfw refuses them)
        ("-I -c fd00:: -m 64 -o fd01:: -n 64 -l 443 -h 443 -t 0 -p tcp", Request::Insert(ins("fd00::/64", "fd01::/64", Tcp, 443, 443, 0))),
        // -d: deny; -r: route; -z egress; -N repeated (an altname is its interface)
        ("-I -c 10.0.0.0 -m 8 -l 22 -h 22 -t 0 -p tcp -d", Request::Insert(RuleArgs { deny: true, ..ins("10.0.0.0/8", "0.0.0.0/0", Tcp, 22, 22, 0) })),
        ("-I -c 10.0.0.53 -m 32 -l 53 -h 53 -t 0 -p udp -r", Request::Insert(RuleArgs { route: true, ..ins("10.0.0.53/32", "0.0.0.0/0", Udp, 53, 53, 0) })),
        ("-I -c 1.1.1.1 -m 32 -l 443 -h 443 -t 0 -p tcp -z egress", Request::Insert(RuleArgs { dir: Direction::Egress, ..ins("1.1.1.1/32", "0.0.0.0/0", Tcp, 443, 443, 0) })),
        ("-I -c 1.1.1.1 -m 32 -l 443 -h 443 -t 0 -p tcp -z ingress", Request::Insert(ins("1.1.1.1/32", "0.0.0.0/0", Tcp, 443, 443, 0))),
        (
            "-I -c 1.1.1.1 -m 32 -l 5 -h 6 -t 7 -p tcp -N eth0 -N lan1 -N eth0 -N ens33 -N ziti0",
            Request::Insert(RuleArgs {
                ifaces: vec!["eth0".into(), "eth1".into(), "ens33".into(), "ziti0".into()],
                ..ins("1.1.1.1/32", "0.0.0.0/0", Tcp, 5, 6, 7)
            }),
        ),
        // -D: -h -t -s -N accepted; -d ignored
        ("-D -c 10.10.0.0 -m 24 -p tcp -o 192.168.1.0 -n 24 -l 80 -h 90", Request::Delete(rule("10.10.0.0/24", "192.168.1.0/24", Tcp, 80))),
        ("-D -c 10.10.0.0 -m 24 -l 80 -p udp -t 5 -d", Request::Delete(rule("10.10.0.0/24", "0.0.0.0/0", Udp, 80))),
        ("-D -c 10.10.0.0 -m 24 -l 80 -p udp -s svc -N eth0", Request::Delete(RuleArgs { service: Some("svc".into()), ifaces: vec!["eth0".into()], ..rule("10.10.0.0/24", "0.0.0.0/0", Udp, 80) })),
        ("-D -c 10.10.0.0 -m 24 -l 80 -p udp -z egress -r", Request::Delete(RuleArgs { dir: Direction::Egress, route: true, ..rule("10.10.0.0/24", "0.0.0.0/0", Udp, 80) })),
        // -F
        ("-F", Request::Flush(vec![Direction::Ingress, Direction::Egress])),
        ("-F -z ingress", Request::Flush(vec![Direction::Ingress])),
        ("-F -z egress", Request::Flush(vec![Direction::Egress])),
        ("-F -z ingress -r", Request::Flush(vec![Direction::Ingress])),
        ("-F -j", Request::FlushBinds),
        ("-F -C", Request::FlushDnp3),
        // -L
        ("-L", list(Direction::Ingress, false, None, None, Only::All)),
        ("--list -p tcp", list(Direction::Ingress, false, None, None, Only::All)),
        ("-L -i", list(Direction::Ingress, false, None, None, Only::Intercepts)),
        ("-L -f", list(Direction::Ingress, false, None, None, Only::Passthrough)),
        ("-L -i -f", list(Direction::Ingress, false, None, None, Only::All)),
        ("-L -z egress", list(Direction::Egress, false, None, None, Only::All)),
        ("-L -6 all", list(Direction::Ingress, true, None, None, Only::All)),
        ("-L -6 all -z egress", list(Direction::Egress, true, None, None, Only::All)),
        ("-L -c 10.10.0.0 -m 24", list(Direction::Ingress, false, Some(("10.10.0.0/24", "0.0.0.0/0")), None, Only::All)),
        ("-L -c 10.10.0.0 -m 24 -o 192.168.1.0 -n 24 -p udp", list(Direction::Ingress, false, Some(("10.10.0.0/24", "192.168.1.0/24")), Some(Udp), Only::All)),
        ("-L -c fd00:: -m 64 -z egress -p tcp", list(Direction::Egress, true, Some(("fd00::/64", "::/0")), Some(Tcp), Only::All)),
        ("-LE", Request::ListDiag),
        ("-L --list-diag", Request::ListDiag),
        ("-L -G", Request::Gc),
        ("-L -Y", Request::ListDdosAddrs),
        ("-L -U", Request::ListDdosPorts),
        ("-L -C", Request::ListDnp3),
        ("-L -E -6 eth0", Request::ListDiag),
        // toggles: IF, all, an altname, off with -d
        ("-e eth0", toggle(Toggle::IcmpEcho, ifname("eth0"), true)),
        ("-e all -d", toggle(Toggle::IcmpEcho, Target::All, false)),
        ("-v lan1", toggle(Toggle::Verbose, ifname("eth1"), true)),
        ("-x eth0", toggle(Toggle::DisableSsh, ifname("eth0"), true)),
        ("-x eth0 -d", toggle(Toggle::DisableSsh, ifname("eth0"), false)),
        ("-P ens33", toggle(Toggle::PerInterfaceRules, ifname("ens33"), true)),
        ("-T eth0", toggle(Toggle::TunMode, ifname("eth0"), true)),
        ("-R all", toggle(Toggle::Vrrp, Target::All, true)),
        ("--vrrp-enable eth0 -d", toggle(Toggle::Vrrp, ifname("eth0"), false)),
        ("-w eth0", toggle(Toggle::Eapol, ifname("eth0"), true)),
        ("-q eth0", toggle(Toggle::PassNonTuple, ifname("eth0"), true)),
        ("-a eth0", toggle(Toggle::Ddos, ifname("eth0"), true)),
        ("-b eth0", toggle(Toggle::OutboundFilter, ifname("eth0"), true)),
        ("--outbound-filter eth0", toggle(Toggle::OutboundFilter, ifname("eth0"), true)),
        ("-k eth0", toggle(Toggle::Masquerade, ifname("eth0"), true)),
        ("-S eth0 -d", toggle(Toggle::OtFiltering, ifname("eth0"), false)),
        ("-6 eth0", toggle(Toggle::Ipv6, ifname("eth0"), true)),
        // the C zfw lets these go together
        (
            "-T eth0 -6 eth0 -q eth1",
            Request::Toggles {
                set: vec![
                    (Toggle::TunMode, ifname("eth0")),
                    (Toggle::Ipv6, ifname("eth0")),
                    (Toggle::PassNonTuple, ifname("eth1")),
                ],
                on: true,
            },
        ),
        ("-k eth0 -b eth0", Request::Toggles { set: vec![(Toggle::OutboundFilter, ifname("eth0")), (Toggle::Masquerade, ifname("eth0"))], on: true }),
        // lifecycle
        ("-X eth0 -O /opt/openziti/bin/zfw_tc_ingress.o -z ingress", Request::TcFilter { target: ifname("eth0"), dir: Direction::Ingress, detach: false }),
        ("-X eth0 -O x -z egress", Request::TcFilter { target: ifname("eth0"), dir: Direction::Egress, detach: false }),
        ("-X all -z ingress -d", Request::TcFilter { target: Target::All, dir: Direction::Ingress, detach: true }),
        ("--set-tc-filter eth0 --object-file x --direction egress --disable", Request::TcFilter { target: ifname("eth0"), dir: Direction::Egress, detach: true }),
        ("-H eth0", Request::InitTc(ifname("eth0"))),
        ("-H all", Request::InitTc(Target::All)),
        ("-Z ziti0", Request::InitXdp("ziti0".into())),
        ("-Q", Request::Disable),
        ("-A", Request::UserRules),
        // lists and others
        ("-y 192.168.1.1", Request::DdosAddr { ip: Ipv4Addr::new(192, 168, 1, 1), remove: false }),
        ("-y 192.168.1.1 -d", Request::DdosAddr { ip: Ipv4Addr::new(192, 168, 1, 1), remove: true }),
        ("-u 443", Request::DdosPort { port: 443, remove: false }),
        ("-u 443 -d", Request::DdosPort { port: 443, remove: true }),
        ("-g 129", Request::Dnp3 { code: 129, remove: false }),
        ("--dnp3-fcode-add 0 -d", Request::Dnp3 { code: 0, remove: true }),
        ("-B 100.64.0.0 -m 10", Request::Bind { prefix: pfx("100.64.0.0/10"), remove: false }),
        ("-J fd00:: -m 64", Request::Bind { prefix: pfx("fd00::/64"), remove: true }),
        ("-M eth0", Request::Monitor { target: ifname("eth0"), log: None }),
        ("-M all -W /var/log/zfw.log", Request::Monitor { target: Target::All, log: Some("/var/log/zfw.log".into()) }),
    ];
    for (argv, want) in cases {
        assert_eq!(ok(argv), want, "{argv}");
    }
}

#[test]
fn every_combination_the_c_grammar_refuses() {
    for (argv, msg) in COMBINATIONS {
        match p(argv) {
            Err(Fail::Usage(m)) => assert_eq!(m, *msg, "{argv}"),
            other => panic!("{argv}: expected usage error '{msg}', got {other:?}"),
        }
    }
}

#[test]
fn every_bad_value_the_c_grammar_refuses() {
    let mut cases: Vec<(String, String, bool)> = VALUES
        .iter()
        .map(|(a, m, e)| (a.to_string(), m.to_string(), *e))
        .collect();
    for (f, name) in IFACE_FLAGS {
        cases.push((
            format!("{f} -d"),
            format!("Interface name or all required as arg to {name}: -d"),
            true,
        ));
        cases.push((
            format!("{f} eth7"),
            "Interface not found: eth7".into(),
            false,
        ));
    }
    for (argv, msg, stderr) in &cases {
        match p(argv) {
            Err(Fail::Value { msg: m, stderr: e }) => {
                assert_eq!(m, *msg, "{argv}");
                assert_eq!(e, *stderr, "{argv}: stream");
            }
            other => panic!("{argv}: expected '{msg}', got {other:?}"),
        }
    }
    // a long value is cut, and control characters never come out raw
    let long = format!("-c {}", "9".repeat(500));
    let Err(Fail::Value { msg, .. }) = p(&long) else {
        panic!("long value accepted")
    };
    assert!(msg.len() < 140 && msg.ends_with("..."), "{msg}");
}

#[test]
fn argp_errors_and_their_order() {
    let argp = |argv: &str| match p(argv) {
        Err(Fail::Argp(m)) => m,
        other => panic!("{argv}: expected an argp error, got {other:?}"),
    };
    assert_eq!(argp("-K"), "zfw: invalid option -- 'K'");
    assert_eq!(argp("-LK"), "zfw: invalid option -- 'K'");
    assert_eq!(argp("-c"), "zfw: option requires an argument -- 'c'");
    assert_eq!(argp("-I -p"), "zfw: option requires an argument -- 'p'");
    assert_eq!(
        argp("--dcidr-block"),
        "zfw: option '--dcidr-block' requires an argument"
    );
    assert_eq!(
        argp("--insert=yes"),
        "zfw: option '--insert' doesn't allow an argument"
    );
    assert_eq!(argp("--bogus=1"), "zfw: unrecognized option '--bogus=1'");
    assert_eq!(argp("--bpffs /x"), "zfw: unrecognized option '--bpffs'");
    assert!(argp("--di")
        .starts_with("zfw: option '--di' is ambiguous; possibilities: '--disable-ebpf'"));
    assert!(argp("--list-d").contains("'--list-dnp3-fcodes' '--list-diag' '--list-ddos-dports'"));
    // exit codes: 64 for these, 1 for the C zfw's own checks
    assert_eq!(p("-K").unwrap_err().exit_code(), 64);
    assert_eq!(p("-L stray").unwrap_err(), Fail::TooMany);
    assert_eq!(p("-L -- -I").unwrap_err(), Fail::TooMany);
    assert_eq!(p("-L -").unwrap_err().exit_code(), 64);
    assert_eq!(p("-I").unwrap_err().exit_code(), 1);
    // options are taken in order: the first bad one decides
    assert!(matches!(p("-c bad -K"), Err(Fail::Value { .. })));
    assert!(matches!(p("-K -c bad"), Err(Fail::Argp(_))));
    // words that are not options are rejected only after every option
    assert!(matches!(p("stray -c bad"), Err(Fail::Value { .. })));
    assert!(matches!(p("-c bad -V"), Err(Fail::Value { .. })));
}
