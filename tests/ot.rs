//! OT filtering (ot_filtering on): DNP3 responses from outstations and
//! Modbus responses matched against requests seen on egress, run with
//! BPF_PROG_TEST_RUN on crafted frames; plus the `ot dnp3` CLI.

mod common;

use common::catch_all::*;
use common::fixture::*;
use common::packet::*;
use common::*;
use zfw::skel::types;

const HOST: &str = "10.0.0.2";
const OUTSTATION: &str = "10.0.0.5";
const PLC: &str = "10.0.0.7";
const PSH_ACK: u8 = TCP_PSH | TCP_ACK;

fn ot_fixture(extra: &[&str]) -> Fixture {
    let f = Fixture::new();
    let mut flags = zfw::iface_state::default_flags() | Fixture::flag("ot_filtering");
    for e in extra {
        flags |= Fixture::flag(e);
    }
    f.set_flags(flags);
    f
}

/// A DNP3 link frame: header (start, len, ctrl, dst, src, crc) and, when
/// `fcode` is given, transport + application control + function code + IIN.
fn dnp3(ctrl: u8, fcode: Option<u8>) -> Vec<u8> {
    let user: Vec<u8> = match fcode {
        Some(fc) => vec![0xc0, 0xc0, fc, 0x00, 0x00],
        None => vec![],
    };
    let mut b = vec![
        0x05,
        0x64,
        5 + user.len() as u8,
        ctrl,
        1,
        0,
        10,
        0,
        0xaa,
        0xbb,
    ];
    b.extend_from_slice(&user);
    if !user.is_empty() {
        b.extend_from_slice(&[0xcc, 0xdd]); // data block CRC
    }
    b
}

/// Open the host's DNP3 connection to the outstation (egress SYN).
fn dnp3_flow(f: &Fixture) {
    assert_eq!(
        f.egress(&tcp(HOST, 40000, OUTSTATION, 20000, TCP_SYN)),
        TC_ACT_OK
    );
}

fn dnp3_resp(payload: &[u8]) -> Vec<u8> {
    tcp_full(OUTSTATION, 20000, HOST, 40000, PSH_ACK, 5000, 1001, payload)
}

fn allow_fcode(f: &Fixture, c: u32) {
    f.root
        .maps()
        .put(&zfw::maps::defs::DNP3_FCODE_MAP, &c, &1u32)
        .unwrap();
}

#[test]
fn dnp3_response_needs_an_allowed_function_code() {
    require_priv!();
    let f = ot_fixture(&[]);
    dnp3_flow(&f);
    allow_fcode(&f, 129);
    // 129 (response) with DIR clear: allowed, and on to the known-flow exit
    assert_eq!(f.ingress(&dnp3_resp(&dnp3(0x44, Some(129)))), TC_ACT_OK);
    assert_eq!(f.counter("pass_ot"), 1);
    assert_eq!(f.counter("pass_known_flow"), 1);
    // 130 (unsolicited response) not listed: dropped although the flow is known
    assert_eq!(f.ingress(&dnp3_resp(&dnp3(0x44, Some(130)))), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_ot_dnp3"), 1);
    allow_fcode(&f, 130);
    assert_eq!(f.ingress(&dnp3_resp(&dnp3(0x44, Some(130)))), TC_ACT_OK);
}

#[test]
fn dnp3_direction_bit_set_is_dropped() {
    require_priv!();
    let f = ot_fixture(&[]);
    dnp3_flow(&f);
    allow_fcode(&f, 129);
    // DIR (0x80) set: a master's frame coming from the outstation port
    assert_eq!(f.ingress(&dnp3_resp(&dnp3(0xc4, Some(129)))), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_ot_dnp3"), 1);
}

#[test]
fn dnp3_truncated_headers_are_dropped() {
    require_priv!();
    let f = ot_fixture(&[]);
    dnp3_flow(&f);
    allow_fcode(&f, 129);
    let full = dnp3(0x44, Some(129));
    // inside the link header
    assert_eq!(f.ingress(&dnp3_resp(&full[..6])), TC_ACT_SHOT);
    // link header says user data follows, but the function code is missing
    assert_eq!(f.ingress(&dnp3_resp(&full[..12])), TC_ACT_SHOT);
    // length field too small for transport + application header
    let mut short = full.clone();
    short[2] = 7;
    assert_eq!(f.ingress(&dnp3_resp(&short)), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_ot_dnp3"), 3);
}

#[test]
fn dnp3_frames_without_application_layer_and_other_payloads_pass() {
    require_priv!();
    let f = ot_fixture(&[]);
    dnp3_flow(&f);
    // link-layer only frame (length 5, e.g. link status)
    assert_eq!(f.ingress(&dnp3_resp(&dnp3(0x0b, None))), TC_ACT_OK);
    // not DNP3 at all
    assert_eq!(f.ingress(&dnp3_resp(b"hello")), TC_ACT_OK);
    // the handshake reply carries no payload
    assert_eq!(
        f.ingress(&tcp(OUTSTATION, 20000, HOST, 40000, TCP_SYN | TCP_ACK)),
        TC_ACT_OK
    );
    assert_eq!(f.counter("drop_ot_dnp3"), 0);
}

#[test]
fn without_ot_filtering_dnp3_is_not_inspected() {
    require_priv!();
    let f = Fixture::new();
    dnp3_flow(&f);
    assert_eq!(f.ingress(&dnp3_resp(&dnp3(0xc4, Some(130)))), TC_ACT_OK);
    assert_eq!(f.counter("drop_ot_dnp3"), 0);
    assert_eq!(f.counter("pass_ot"), 0);
}

// ---- Modbus ----------------------------------------------------------------

/// MBAP header + PDU.
fn modbus(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut b = tid.to_be_bytes().to_vec();
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    b.push(unit);
    b.extend_from_slice(pdu);
    b
}

fn modbus_req(f: &Fixture, sport: u16, tid: u16, unit: u8, fc: u8) {
    let req = modbus(tid, unit, &[fc, 0, 0, 0, 10]);
    assert_eq!(
        f.egress(&tcp_full(HOST, sport, PLC, 502, PSH_ACK, 1001, 5001, &req)),
        TC_ACT_OK
    );
}

fn modbus_resp(dport: u16, payload: &[u8]) -> Vec<u8> {
    tcp_full(PLC, 502, HOST, dport, PSH_ACK, 5001, 1013, payload)
}

fn modbus_flow(f: &Fixture, sport: u16) {
    assert_eq!(f.egress(&tcp(HOST, sport, PLC, 502, TCP_SYN)), TC_ACT_OK);
}

#[test]
fn modbus_response_must_match_a_recorded_request() {
    require_priv!();
    let f = ot_fixture(&[]);
    modbus_flow(&f, 40100);
    modbus_req(&f, 40100, 7, 1, 3);
    let entries: Vec<(types::zfw_modbus_key, types::zfw_modbus_val)> = f
        .root
        .maps()
        .entries(&zfw::maps::defs::MODBUS_STATE_MAP)
        .unwrap();
    assert_eq!(entries.len(), 1);
    let (k, v) = &entries[0];
    assert_eq!((k.tid, k.unit, v.fcode), (7, 1, 3));
    assert_eq!((k.flow.sport, k.flow.dport), (40100, 502));

    // the matching response
    let ok = modbus(7, 1, &[3, 2, 0x12, 0x34]);
    assert_eq!(f.ingress(&modbus_resp(40100, &ok)), TC_ACT_OK);
    assert_eq!(f.counter("pass_ot"), 1);
    // and its TCP retransmission
    assert_eq!(f.ingress(&modbus_resp(40100, &ok)), TC_ACT_OK);
    // another transaction id, unit, or function code: no such request
    for bad in [
        modbus(8, 1, &[3, 2, 0x12, 0x34]),
        modbus(7, 2, &[3, 2, 0x12, 0x34]),
        modbus(7, 1, &[4, 2, 0x12, 0x34]),
    ] {
        assert_eq!(f.ingress(&modbus_resp(40100, &bad)), TC_ACT_SHOT);
    }
    assert_eq!(f.counter("drop_ot_modbus"), 3);
}

#[test]
fn modbus_response_without_request_is_dropped() {
    require_priv!();
    let f = ot_fixture(&[]);
    modbus_flow(&f, 40200);
    // a known flow, but no request was ever sent on it
    let resp = modbus(1, 1, &[3, 2, 0, 1]);
    assert_eq!(f.ingress(&modbus_resp(40200, &resp)), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_ot_modbus"), 1);
    // a request on another connection does not cover this one
    modbus_flow(&f, 40201);
    modbus_req(&f, 40201, 1, 1, 3);
    assert_eq!(f.ingress(&modbus_resp(40200, &resp)), TC_ACT_SHOT);
    assert_eq!(f.ingress(&modbus_resp(40201, &resp)), TC_ACT_OK);
}

#[test]
fn modbus_exception_response_maps_to_the_request_code() {
    require_priv!();
    let f = ot_fixture(&[]);
    modbus_flow(&f, 40300);
    modbus_req(&f, 40300, 9, 1, 6);
    // exception (0x80 | 6), code 2 (illegal data address)
    assert_eq!(
        f.ingress(&modbus_resp(40300, &modbus(9, 1, &[0x86, 2]))),
        TC_ACT_OK
    );
    // an exception for another function is not an answer to this request
    assert_eq!(
        f.ingress(&modbus_resp(40300, &modbus(9, 1, &[0x83, 2]))),
        TC_ACT_SHOT
    );
}

#[test]
fn modbus_truncated_or_foreign_payload_is_dropped() {
    require_priv!();
    let f = ot_fixture(&[]);
    modbus_flow(&f, 40400);
    modbus_req(&f, 40400, 5, 1, 3);
    let full = modbus(5, 1, &[3, 2, 0, 1]);
    // cut inside the MBAP header
    assert_eq!(f.ingress(&modbus_resp(40400, &full[..6])), TC_ACT_SHOT);
    // MBAP header without function code
    assert_eq!(f.ingress(&modbus_resp(40400, &full[..7])), TC_ACT_SHOT);
    // protocol id not 0: not Modbus
    let mut foreign = full.clone();
    foreign[3] = 1;
    assert_eq!(f.ingress(&modbus_resp(40400, &foreign)), TC_ACT_SHOT);
    assert_eq!(f.counter("drop_ot_modbus"), 3);
    // bare ACKs of the connection are not inspected
    assert_eq!(f.ingress(&tcp(PLC, 502, HOST, 40400, TCP_ACK)), TC_ACT_OK);
}

#[test]
fn modbus_requests_are_recorded_only_with_ot_filtering() {
    require_priv!();
    let f = Fixture::new();
    modbus_flow(&f, 40500);
    modbus_req(&f, 40500, 1, 1, 3);
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::MODBUS_STATE_MAP)
            .unwrap(),
        0
    );
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("ot_filtering"));
    modbus_req(&f, 40500, 2, 1, 3);
    assert_eq!(
        f.root
            .maps()
            .count(&zfw::maps::defs::MODBUS_STATE_MAP)
            .unwrap(),
        1
    );
}

// ---- events ----------------------------------------------------------------

fn ot_events(f: &Fixture) -> Vec<types::zfw_event> {
    let maps = f.root.maps();
    let rb = maps.handle(&zfw::maps::defs::RB_MAP).unwrap();
    let events = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = events.clone();
    let mut b = libbpf_rs::RingBufferBuilder::new();
    b.add(rb, move |data: &[u8]| {
        sink.borrow_mut()
            .push(zfw::skel::from_bytes::<types::zfw_event>(data).expect("a zfw_event record"));
        0
    })
    .unwrap();
    b.build().unwrap().consume().unwrap();
    let kind = zfw::skel::names::ZFW_EVENT_KIND
        .iter()
        .find(|(n, _)| *n == "ZFW_EV_OT")
        .unwrap()
        .1 as u8;
    let v = events
        .borrow()
        .iter()
        .filter(|e| e.kind == kind)
        .copied()
        .collect();
    v
}

#[test]
fn verbose_interfaces_emit_an_event_per_ot_decision() {
    require_priv!();
    let f = ot_fixture(&["verbose"]);
    dnp3_flow(&f);
    allow_fcode(&f, 129);
    modbus_flow(&f, 40600);
    ot_events(&f); // drain
    f.ingress(&dnp3_resp(&dnp3(0x44, Some(129))));
    f.ingress(&dnp3_resp(&dnp3(0x44, Some(131))));
    modbus_req(&f, 40600, 3, 1, 16);
    f.ingress(&modbus_resp(40600, &modbus(3, 1, &[16, 0, 1, 0, 2])));
    f.ingress(&modbus_resp(40600, &modbus(4, 1, &[1, 1, 0])));
    let ev = ot_events(&f);
    let got: Vec<(u16, u16, u8)> = ev.iter().map(|e| (e.code, e.reason, e.dir)).collect();
    assert_eq!(
        got,
        vec![
            (129, reason("pass_ot") as u16, 0),
            (131, reason("drop_ot_dnp3") as u16, 0),
            (16, reason("pass_ot") as u16, 1),
            (16, reason("pass_ot") as u16, 0),
            (1, reason("drop_ot_modbus") as u16, 0),
        ]
    );
    // not verbose: no OT events
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("ot_filtering"));
    f.ingress(&dnp3_resp(&dnp3(0x44, Some(131))));
    assert!(ot_events(&f).is_empty());
}

// ---- CLI -------------------------------------------------------------------

#[test]
fn ot_dnp3_cli_manages_function_codes_and_rejects_bad_input() {
    require_priv!();
    let r = BpfRoot::new();
    zfw::loader::load_detached(&r.root()).expect("load");
    let z = |a: &[&str]| zfw(None, &r, a);
    z(&["ot", "dnp3", "add", "129"]).ok();
    z(&["ot", "dnp3", "add", "0"]).ok();
    z(&["ot", "dnp3", "add", "255"]).ok();
    assert!(z(&["ot", "dnp3", "add", "129"])
        .ok()
        .stdout
        .contains("already"));
    assert_eq!(z(&["ot", "dnp3", "list"]).ok().stdout, "0\n129\n255\n");
    z(&["ot", "dnp3", "del", "0"]).ok();
    assert_eq!(
        z(&["ot", "dnp3", "list", "--json"])
            .ok()
            .stdout
            .replace([' ', '\n'], ""),
        "[129,255]"
    );
    for args in [
        &["ot", "dnp3", "add", "256"][..],
        &["ot", "dnp3", "add", "-1"],
        &["ot", "dnp3", "add", "x"],
        &["ot", "dnp3", "add"],
        &["ot", "dnp3", "del", "7"],
        &["ot", "dnp3", "flush", "7"],
        &["ot", "modbus", "add", "3"],
    ] {
        let out = z(args);
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(z(&["ot", "dnp3", "list"]).ok().stdout, "129\n255\n");
    assert!(z(&["ot", "dnp3", "flush"]).ok().stdout.contains("2"));
    assert_eq!(z(&["ot", "dnp3", "list"]).ok().stdout, "");
}

// ---- end to end: Modbus over real TCP --------------------------------------

/// A Modbus "PLC" on CLIENT_IP:502 in the client namespace answering each
/// request (read holding registers) with transaction id + `tid_skew`.
fn plc(lab: &Lab, tid_skew: u16) {
    let l = tcp_listen(&lab.client, "0.0.0.0:502");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in l.listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut req = [0u8; 12];
                if s.read_exact(&mut req).is_err() {
                    return;
                }
                let tid = u16::from_be_bytes([req[0], req[1]]).wrapping_add(tid_skew);
                let resp = modbus(tid, req[6], &[req[7], 2, 0x12, 0x34]);
                let _ = s.write_all(&resp);
                std::thread::sleep(std::time::Duration::from_secs(2));
            });
        }
    });
}

/// From the protected host (server namespace), send one Modbus request to
/// the PLC; true when a response came back in time.
fn modbus_poll(lab: &Lab) -> bool {
    let addr: std::net::SocketAddr = format!("{CLIENT_IP}:502").parse().unwrap();
    lab.server.enter(move || {
        use std::io::{Read, Write};
        let t = std::time::Duration::from_millis(1500);
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, t) else {
            return false;
        };
        s.set_read_timeout(Some(t)).unwrap();
        s.write_all(&modbus(0x4242, 1, &[3, 0, 0, 0, 1])).unwrap();
        let mut buf = [0u8; 64];
        matches!(s.read(&mut buf), Ok(n) if n >= 8)
    })
}

#[test]
fn modbus_end_to_end_answers_pass_and_unrequested_answers_are_dropped() {
    require_priv!();
    let honest = Lab::new();
    plc(&honest, 0);
    honest.load();
    let maps = honest.root.maps();
    let srv = maps.ifaces().unwrap()[0].0;
    set_iface_flag(&maps, srv, "ot_filtering", true);
    assert!(modbus_poll(&honest), "a matching response reaches the host");
    assert!(counter(&maps, "pass_ot") >= 1);
    assert_eq!(counter(&maps, "drop_ot_modbus"), 0);

    let liar = Lab::new();
    plc(&liar, 1);
    liar.load();
    let maps = liar.root.maps();
    let srv = maps.ifaces().unwrap()[0].0;
    // control: without OT filtering the wrong answer gets through
    assert!(modbus_poll(&liar));
    set_iface_flag(&maps, srv, "ot_filtering", true);
    assert!(
        !modbus_poll(&liar),
        "a response to no request must not reach the host"
    );
    assert!(counter(&maps, "drop_ot_modbus") >= 1);
}
