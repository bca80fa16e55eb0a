//! Handshake segments must carry the numbers the handshake so far fixes
//! (ARCHITECTURE.md §5, "Handshake numbers"): an off-path sender who knows
//! the tuple but not the sequence numbers can neither complete, advance nor
//! reset a connection being opened.  BPF_PROG_TEST_RUN on the real ingress
//! and egress programs, one table of cases.

mod common;

use common::fixture::*;
use common::packet::*;
use common::*;
use zfw::maps::{defs, MapDef};
use zfw::skel::types::{zfw_flow, zfw_flow_key};

const C: &str = "10.0.0.1"; // remote peer
const S: &str = "10.0.0.2"; // this host

/// Where a case starts: the flow's direction and how far its handshake got.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// C opened SSH to this host: SYN 100 seen.
    InSynSent,
    /// ... and this host answered SYN+ACK 500, ack 101.
    InSynRecv,
    /// This host opened C:443: SYN 10 seen.
    OutSynSent,
    /// ... and C answered SYN+ACK 900, ack 11.
    OutSynRecv,
}

#[derive(Clone, Copy)]
enum Hook {
    Ingress,
    Egress,
}

struct Case {
    name: &'static str,
    start: Start,
    hook: Hook,
    frame: fn(u16) -> Vec<u8>,
    want: u32,
    /// The flow's state after the packet; None: the entry is gone.
    state: Option<&'static str>,
    /// The packet is refused as contradicting the handshake: the entry
    /// must be byte for byte what it was.
    invalid: bool,
}

// Each case has its own flow: the client port `p` (C's for SSH in, this
// host's for connections out), so that the cases share one fixture.
fn cin(p: u16, fl: u8, seq: u32, ack: u32) -> Vec<u8> {
    tcp_full(C, p, S, 22, fl, seq, ack, &[])
}
fn sout(p: u16, fl: u8, seq: u32, ack: u32) -> Vec<u8> {
    tcp_full(S, 22, C, p, fl, seq, ack, &[])
}
fn out(p: u16, fl: u8, seq: u32, ack: u32) -> Vec<u8> {
    tcp_full(S, p, C, 443, fl, seq, ack, &[])
}
fn back(p: u16, fl: u8, seq: u32, ack: u32) -> Vec<u8> {
    tcp_full(C, 443, S, p, fl, seq, ack, &[])
}

fn table(start: Start) -> &'static MapDef<zfw_flow_key, zfw_flow> {
    match start {
        Start::InSynSent | Start::InSynRecv => &defs::TCP_INGRESS_MAP,
        Start::OutSynSent | Start::OutSynRecv => &defs::TCP_MAP,
    }
}

/// The flow of client port `p` on `start`'s side, in its assured or
/// unassured table.
fn the_flow(f: &Fixture, start: Start, p: u16) -> Option<zfw_flow> {
    let maps = f.root.maps();
    let all: Vec<_> = defs::flow_tables_of(table(start))
        .flat_map(|t| maps.entries(t.def).unwrap())
        .filter(|(k, _)| k.sport == p || k.dport == p)
        .collect();
    assert!(all.len() <= 1, "{} entries", all.len());
    all.first().map(|(_, v)| *v)
}

fn set_up(f: &Fixture, start: Start, p: u16) {
    match start {
        Start::InSynSent | Start::InSynRecv => {
            assert_eq!(f.ingress(&cin(p, TCP_SYN, 100, 0)), TC_ACT_UNSPEC);
            if let Start::InSynRecv = start {
                assert_eq!(f.egress(&sout(p, TCP_SYN | TCP_ACK, 500, 101)), TC_ACT_OK);
            }
        }
        Start::OutSynSent | Start::OutSynRecv => {
            assert_eq!(f.egress(&out(p, TCP_SYN, 10, 0)), TC_ACT_OK);
            if let Start::OutSynRecv = start {
                assert_eq!(f.ingress(&back(p, TCP_SYN | TCP_ACK, 900, 11)), TC_ACT_OK);
            }
        }
    }
}

fn cases() -> Vec<Case> {
    use Hook::*;
    use Start::*;
    let c = |name, start, hook, frame, want, state, invalid| Case {
        name,
        start,
        hook,
        frame,
        want,
        state,
        invalid,
    };
    vec![
        // the SYN+ACK must acknowledge the SYN
        c(
            "spoofed syn+ack, wrong ack",
            OutSynSent,
            Ingress,
            |p| back(p, TCP_SYN | TCP_ACK, 900, 12),
            TC_ACT_SHOT,
            Some("syn_sent"),
            true,
        ),
        c(
            "syn+ack acking the syn",
            OutSynSent,
            Ingress,
            |p| back(p, TCP_SYN | TCP_ACK, 900, 11),
            TC_ACT_OK,
            Some("syn_recv"),
            false,
        ),
        // a RST in SYN_SENT must acknowledge the SYN
        c(
            "rst without ack in syn_sent",
            OutSynSent,
            Ingress,
            |p| back(p, TCP_RST, 0, 0),
            TC_ACT_SHOT,
            Some("syn_sent"),
            true,
        ),
        c(
            "rst+ack, wrong ack, in syn_sent",
            OutSynSent,
            Ingress,
            |p| back(p, TCP_RST | TCP_ACK, 0, 99),
            TC_ACT_SHOT,
            Some("syn_sent"),
            true,
        ),
        c(
            "rst+ack acking the syn",
            OutSynSent,
            Ingress,
            |p| back(p, TCP_RST | TCP_ACK, 0, 11),
            TC_ACT_OK,
            None,
            false,
        ),
        // the ACK that establishes must acknowledge the SYN+ACK
        c(
            "spoofed establishing ack, wrong ack",
            InSynRecv,
            Ingress,
            |p| cin(p, TCP_ACK, 101, 777),
            TC_ACT_SHOT,
            Some("syn_recv"),
            true,
        ),
        c(
            "spoofed ack+data, wrong ack",
            InSynRecv,
            Ingress,
            |p| tcp_full(C, p, S, 22, TCP_ACK | TCP_PSH, 101, 502, b"x"),
            TC_ACT_SHOT,
            Some("syn_recv"),
            true,
        ),
        c(
            "ack acking the syn+ack",
            InSynRecv,
            Ingress,
            |p| cin(p, TCP_ACK, 101, 501),
            TC_ACT_OK,
            Some("established"),
            false,
        ),
        // a RST in SYN_RECV must carry its sender's next number
        c(
            "client rst, wrong seq, in syn_recv",
            InSynRecv,
            Ingress,
            |p| cin(p, TCP_RST, 5000, 0),
            TC_ACT_SHOT,
            Some("syn_recv"),
            true,
        ),
        c(
            "client rst at its next seq",
            InSynRecv,
            Ingress,
            |p| cin(p, TCP_RST, 101, 0),
            TC_ACT_OK,
            None,
            false,
        ),
        c(
            "server rst, wrong seq, in syn_recv",
            OutSynRecv,
            Ingress,
            |p| back(p, TCP_RST | TCP_ACK, 12345, 11),
            TC_ACT_SHOT,
            Some("syn_recv"),
            true,
        ),
        c(
            "server rst at its next seq",
            OutSynRecv,
            Ingress,
            |p| back(p, TCP_RST | TCP_ACK, 901, 11),
            TC_ACT_OK,
            None,
            false,
        ),
        // this host's own segments are not dropped on egress, but a wrong
        // one moves nothing either
        c(
            "own syn+ack with a wrong ack",
            InSynSent,
            Egress,
            |p| sout(p, TCP_SYN | TCP_ACK, 500, 7),
            TC_ACT_OK,
            Some("syn_sent"),
            true,
        ),
        c(
            "own syn+ack acking the syn",
            InSynSent,
            Egress,
            |p| sout(p, TCP_SYN | TCP_ACK, 500, 101),
            TC_ACT_OK,
            Some("syn_recv"),
            false,
        ),
        // the originator's new SYN on the tuple renumbers the handshake
        c(
            "a new syn renumbers syn_sent",
            OutSynSent,
            Egress,
            |p| out(p, TCP_SYN, 70, 0),
            TC_ACT_OK,
            Some("syn_sent"),
            false,
        ),
    ]
}

#[test]
fn handshake_segments_with_numbers_the_flow_contradicts_are_dropped_and_change_nothing() {
    require_priv!();
    let f = Fixture::new();
    for (i, case) in cases().into_iter().enumerate() {
        let p = 41000 + i as u16;
        set_up(&f, case.start, p);
        let before = the_flow(&f, case.start, p).expect("flow set up");
        let invalid = f.counter("drop_tcp_invalid");
        let frame = (case.frame)(p);
        let got = match case.hook {
            Hook::Ingress => f.ingress(&frame),
            Hook::Egress => f.egress(&frame),
        };
        assert_eq!(got, case.want, "{}: verdict", case.name);
        let after = the_flow(&f, case.start, p);
        assert_eq!(
            after.map(|v| zfw::decode::tcp_state(v.state)).as_deref(),
            case.state,
            "{}: state",
            case.name
        );
        assert_eq!(
            f.counter("drop_tcp_invalid") - invalid,
            u64::from(case.invalid && case.want == TC_ACT_SHOT),
            "{}: counted as drop_tcp_invalid",
            case.name
        );
        if case.invalid {
            let after = after.unwrap();
            assert_eq!(
                zfw::skel::bytes_of(&after),
                zfw::skel::bytes_of(&before),
                "{}: the entry changed",
                case.name
            );
        }
    }
}

/// After a refused segment the real one still completes the handshake, and
/// a SYN+ACK that acks a renumbered SYN is accepted (the old number no longer).
#[test]
fn the_real_handshake_completes_after_refused_segments() {
    require_priv!();
    let (f, p) = (Fixture::new(), 50000);
    set_up(&f, Start::OutSynSent, p);
    assert_eq!(f.ingress(&back(p, TCP_SYN | TCP_ACK, 900, 99)), TC_ACT_SHOT);
    assert_eq!(f.ingress(&back(p, TCP_RST, 0, 0)), TC_ACT_SHOT);
    assert_eq!(f.egress(&out(p, TCP_SYN, 70, 0)), TC_ACT_OK);
    assert_eq!(f.ingress(&back(p, TCP_SYN | TCP_ACK, 900, 11)), TC_ACT_SHOT);
    assert_eq!(f.ingress(&back(p, TCP_SYN | TCP_ACK, 900, 71)), TC_ACT_OK);
    assert_eq!(
        f.ingress(&back(p, TCP_ACK, 901, 777)),
        TC_ACT_OK,
        "reply-side data is no establishing ACK"
    );
    assert_eq!(f.egress(&out(p, TCP_ACK, 71, 901)), TC_ACT_OK);
    let v = the_flow(&f, Start::OutSynSent, p).unwrap();
    assert_eq!(zfw::decode::tcp_state(v.state), "established");
    // once established, a RST must fall in the window (tests/tcp_window.rs)
    assert_eq!(
        f.ingress(&back(p, TCP_RST, 901 ^ 0x8000_0000, 0)),
        TC_ACT_SHOT
    );
    assert_eq!(f.ingress(&back(p, TCP_RST, 901, 0)), TC_ACT_OK);
    assert!(the_flow(&f, Start::OutSynSent, p).is_none());
}

/// The masquerade mapping of a connection being opened follows the same
/// rule (nat.h, zfw_nat_in via zfw_tcp_handshake_ok): a segment from outside with numbers
/// the handshake contradicts is dropped before it can advance or remove
/// the mapping.
#[test]
fn masquerade_half_open_mappings_take_only_segments_with_the_handshake_numbers() {
    require_priv!();
    const IN: &str = "192.168.1.10";
    const OUT: &str = "10.0.0.2";
    const REMOTE: &str = "198.51.100.7";
    let f = Fixture::new();
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("masquerade"));
    // the inside host opens REMOTE:80 from `sport` with SYN 0: the mapping's port
    let open = |sport: u16| -> u16 {
        let r = f.egress_out(&tcp_full(IN, sport, REMOTE, 80, TCP_SYN, 0, 0, b""));
        assert_eq!(r.retval, TC_ACT_OK);
        let l4 = &strip_ether(&r.data)[20..];
        u16::from_be_bytes([l4[0], l4[1]])
    };
    let state = |nport: u16| -> Option<String> {
        let maps = f.root.maps();
        maps.entries(&defs::MASQUERADE_MAP)
            .unwrap()
            .into_iter()
            .find(|(k, _)| k.nport == nport)
            .map(|(_, v)| zfw::decode::tcp_state(v.state))
    };
    let from_out = |nport: u16, fl: u8, seq: u32, ack: u32| {
        f.ingress(&tcp_full(REMOTE, 80, OUT, nport, fl, seq, ack, b""))
    };
    // (name, SYN+ACK first?, flags, seq, ack, verdict, mapping state after)
    type Row = (&'static str, bool, u8, u32, u32, u32, Option<&'static str>);
    let rows: [Row; 7] = [
        (
            "syn+ack, wrong ack",
            false,
            TCP_SYN | TCP_ACK,
            99,
            5,
            TC_ACT_SHOT,
            Some("syn_sent"),
        ),
        (
            "rst without ack, syn_sent",
            false,
            TCP_RST,
            0,
            0,
            TC_ACT_SHOT,
            Some("syn_sent"),
        ),
        (
            "rst+ack, wrong ack, syn_sent",
            false,
            TCP_RST | TCP_ACK,
            0,
            9,
            TC_ACT_SHOT,
            Some("syn_sent"),
        ),
        (
            "rst+ack acking the syn",
            false,
            TCP_RST | TCP_ACK,
            0,
            1,
            TC_ACT_OK,
            None,
        ),
        (
            "syn+ack acking the syn",
            false,
            TCP_SYN | TCP_ACK,
            99,
            1,
            TC_ACT_OK,
            Some("syn_recv"),
        ),
        (
            "rst, wrong seq, syn_recv",
            true,
            TCP_RST | TCP_ACK,
            4242,
            1,
            TC_ACT_SHOT,
            Some("syn_recv"),
        ),
        (
            "rst at the peer's next seq",
            true,
            TCP_RST | TCP_ACK,
            100,
            1,
            TC_ACT_OK,
            None,
        ),
    ];
    for (i, (name, synack_first, fl, seq, ack, want, after)) in rows.into_iter().enumerate() {
        let nport = open(42000 + i as u16);
        if synack_first {
            assert_eq!(
                from_out(nport, TCP_SYN | TCP_ACK, 99, 1),
                TC_ACT_OK,
                "{name}"
            );
        }
        let invalid = f.counter("drop_tcp_invalid");
        assert_eq!(from_out(nport, fl, seq, ack), want, "{name}: verdict");
        assert_eq!(state(nport).as_deref(), after, "{name}: mapping");
        assert_eq!(
            f.counter("drop_tcp_invalid") - invalid,
            u64::from(want == TC_ACT_SHOT),
            "{name}: counted"
        );
    }
}
