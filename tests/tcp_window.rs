//! Established TCP flows track each side's window (ARCHITECTURE.md §5,
//! "Windows"): a RST, FIN or data segment whose sequence number an
//! off-path sender guessed falls outside it, is dropped and changes
//! nothing; segments inside still work, the window scale the SYNs offered
//! counts, and the flow cache hands the table every segment that moves the
//! window.  BPF_PROG_TEST_RUN on the real programs, one table of cases;
//! tests/tcp_window_e2e.rs does the same with real connections.

mod common;

use common::fixture::*;
use common::packet::*;
use common::*;
use zfw::maps::{defs, MapDef};
use zfw::skel::types::{zfw_flow, zfw_flow_key};

const C: &str = "10.0.0.1"; // remote peer
const S: &str = "10.0.0.2"; // this host

/// This host opens C:443 with SYN 10; C answers SYN+ACK 900.
const ISN_S: u32 = 10;
const ISN_C: u32 = 900;
/// After the handshake: C's next number, and this host's largest window
/// (its ACK advertises 502 << 7 = 64,256 bytes).
const NEXT_C: u32 = ISN_C + 1;
const WIN_S: u32 = 502 << 7;
/// The window C's segments must end in (conntrack.h, "Windows"):
/// [NEXT_C - W, NEXT_C + 2 W + 65,536] with W = WIN_S.
const AHEAD: u32 = 2 * WIN_S + 65536;

fn win(win: u16, wscale: Option<u8>) -> TcpWindow {
    TcpWindow { win, wscale }
}

/// A segment from this host's port `p` to C:443.
fn out(p: u16, fl: u8, seq: u32, ack: u32, w: u16, data: &[u8]) -> Vec<u8> {
    tcp_win(S, p, C, 443, fl, seq, ack, win(w, None), data)
}

/// A segment from C:443 to this host's port `p`.
fn back(p: u16, fl: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    tcp_win(C, 443, S, p, fl, seq, ack, win(65160, None), data)
}

/// Open and establish the connection of local port `p`; both SYNs offer
/// window scale 7 when `scale`.
fn establish(f: &Fixture, p: u16, scale: bool) {
    let ws = scale.then_some(7);
    let syn = tcp_win(S, p, C, 443, TCP_SYN, ISN_S, 0, win(64240, ws), b"");
    assert_eq!(f.egress(&syn), TC_ACT_OK);
    let synack = tcp_win(
        C,
        443,
        S,
        p,
        TCP_SYN | TCP_ACK,
        ISN_C,
        ISN_S + 1,
        win(65160, ws),
        b"",
    );
    assert_eq!(f.ingress(&synack), TC_ACT_OK);
    assert_eq!(
        f.egress(&out(p, TCP_ACK, ISN_S + 1, NEXT_C, 502, b"")),
        TC_ACT_OK
    );
    let v = the_flow(f, p).expect("flow");
    assert_eq!(zfw::decode::tcp_state(v.state), "established");
}

const TABLE: &MapDef<zfw_flow_key, zfw_flow> = &defs::TCP_MAP;

/// The flow of local port `p`, in whichever outbound table holds it.
fn the_flow(f: &Fixture, p: u16) -> Option<zfw_flow> {
    let maps = f.root.maps();
    let all: Vec<_> = defs::flow_tables_of(TABLE)
        .flat_map(|t| maps.entries(t.def).unwrap())
        .filter(|(k, _)| k.sport == p)
        .collect();
    assert!(all.len() <= 1, "{} entries", all.len());
    all.first().map(|(_, v)| *v)
}

#[derive(Clone, Copy)]
enum Hook {
    Ingress,
    Egress,
}

struct Case {
    name: &'static str,
    hook: Hook,
    frame: fn(u16) -> Vec<u8>,
    want: u32,
    /// The flow's state after the packet; None: the entry is gone.
    state: Option<&'static str>,
    /// Refused as outside the window: the entry must be byte for byte
    /// what it was (and, when dropped, counted as drop_tcp_invalid).
    invalid: bool,
    /// C's next number after the packet, when the entry is still there.
    next_c: u32,
}

fn cases() -> Vec<Case> {
    use Hook::*;
    let c = |name, hook, frame, want, state, invalid, next_c| Case {
        name,
        hook,
        frame,
        want,
        state,
        invalid,
        next_c,
    };
    let est = Some("established");
    vec![
        c(
            "rst at the peer's next number",
            Ingress,
            |p| back(p, TCP_RST | TCP_ACK, NEXT_C, ISN_S + 1, b""),
            TC_ACT_OK,
            None,
            false,
            0,
        ),
        c(
            "rst at the far edge of the window",
            Ingress,
            |p| back(p, TCP_RST, NEXT_C + AHEAD, 0, b""),
            TC_ACT_OK,
            None,
            false,
            0,
        ),
        c(
            "rst one past the far edge",
            Ingress,
            |p| back(p, TCP_RST, NEXT_C + AHEAD + 1, 0, b""),
            TC_ACT_SHOT,
            est,
            true,
            NEXT_C,
        ),
        c(
            "rst one window behind",
            Ingress,
            |p| back(p, TCP_RST, NEXT_C.wrapping_sub(WIN_S), 0, b""),
            TC_ACT_OK,
            None,
            false,
            0,
        ),
        c(
            "rst one past a window behind",
            Ingress,
            |p| back(p, TCP_RST, NEXT_C.wrapping_sub(WIN_S + 1), 0, b""),
            TC_ACT_SHOT,
            est,
            true,
            NEXT_C,
        ),
        c(
            "rst half the sequence space away",
            Ingress,
            |p| back(p, TCP_RST | TCP_ACK, NEXT_C ^ 0x8000_0000, ISN_S + 1, b""),
            TC_ACT_SHOT,
            est,
            true,
            NEXT_C,
        ),
        c(
            "fin far out of the window",
            Ingress,
            |p| back(p, TCP_FIN | TCP_ACK, NEXT_C + 0x4000_0000, ISN_S + 1, b""),
            TC_ACT_SHOT,
            est,
            true,
            NEXT_C,
        ),
        c(
            "fin in the window",
            Ingress,
            |p| back(p, TCP_FIN | TCP_ACK, NEXT_C, ISN_S + 1, b""),
            TC_ACT_OK,
            Some("fin_wait"),
            false,
            NEXT_C + 1,
        ),
        c(
            "data far out of the window",
            Ingress,
            |p| back(p, TCP_ACK, NEXT_C + 0x1000_0000, ISN_S + 1, &[7; 100]),
            TC_ACT_SHOT,
            est,
            true,
            NEXT_C,
        ),
        c(
            "data in the window moves the peer's number",
            Ingress,
            |p| back(p, TCP_ACK | TCP_PSH, NEXT_C, ISN_S + 1, &[7; 100]),
            TC_ACT_OK,
            est,
            false,
            NEXT_C + 100,
        ),
        c(
            "a retransmission behind moves nothing back",
            Ingress,
            |p| back(p, TCP_ACK, NEXT_C - 50, ISN_S + 1, &[7; 10]),
            TC_ACT_OK,
            est,
            false,
            NEXT_C,
        ),
        c(
            "a syn on the established flow passes and moves nothing",
            Egress,
            |p| out(p, TCP_SYN, 0x7777_0000, 0, 64240, b""),
            TC_ACT_OK,
            est,
            false,
            NEXT_C,
        ),
        c(
            "this host's own rst out of the window leaves, changing nothing",
            Egress,
            |p| out(p, TCP_RST, ISN_S + 1 + 0x8000_0000, 0, 0, b""),
            TC_ACT_OK,
            est,
            true,
            NEXT_C,
        ),
    ]
}

#[test]
fn segments_outside_an_established_flows_window_are_dropped_and_change_nothing() {
    require_priv!();
    let f = Fixture::new();
    for (i, case) in cases().into_iter().enumerate() {
        let p = 41000 + i as u16;
        establish(&f, p, true);
        let before = the_flow(&f, p).unwrap();
        let invalid = f.counter("drop_tcp_invalid");
        let frame = (case.frame)(p);
        let got = match case.hook {
            Hook::Ingress => f.ingress(&frame),
            Hook::Egress => f.egress(&frame),
        };
        assert_eq!(got, case.want, "{}: verdict", case.name);
        let after = the_flow(&f, p);
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
        if let Some(after) = after {
            assert_eq!(
                after.next_seq_reply, case.next_c,
                "{}: C's number",
                case.name
            );
        }
        if case.invalid {
            assert_eq!(
                zfw::skel::bytes_of(&after.unwrap()),
                zfw::skel::bytes_of(&before),
                "{}: the entry changed",
                case.name
            );
        }
    }
}

/// The window this host advertises counts scaled by the shift both SYNs
/// offered (RFC 7323), and only then: a RST 500 kB ahead of C's number is in
/// the window of a 256,000-byte window and out of a 64,240-byte one.  The
/// ACK that grows the window comes after the flow's verdict is cached: the
/// cache must hand it to the table (a window above the slot's).
#[test]
fn the_window_scale_both_syns_offered_counts() {
    require_priv!();
    pin_cpu();
    let f = Fixture::new();
    let ahead = NEXT_C + 2 * (2000 << 7) + 60000;
    for (p, scale, want) in [(42001, true, TC_ACT_OK), (42002, false, TC_ACT_SHOT)] {
        establish(&f, p, scale);
        // this host's window grows to 2000 (<< 7 when scaled)
        assert_eq!(
            f.egress(&out(p, TCP_ACK, ISN_S + 1, NEXT_C, 2000, b"")),
            TC_ACT_OK
        );
        let v = the_flow(&f, p).unwrap();
        assert_eq!(v.maxwin_orig, if scale { 2000 << 7 } else { 64240 }, "{p}");
        assert_eq!(
            f.ingress(&back(p, TCP_RST, ahead, 0, b"")),
            want,
            "scale {scale}"
        );
    }
}

/// A bulk transfer from C whose segments the flow cache admits: the table
/// still sees C's number move (every segment ending more than one window
/// past the entry's goes to it), so that C's real RST after 280 kB, four
/// windows on, is accepted, and one of an attacker far away is not.
#[test]
fn the_flow_cache_hands_the_table_every_segment_past_its_window() {
    require_priv!();
    pin_cpu();
    let f = Fixture::new();
    let p = 42100;
    establish(&f, p, true);
    let mut seq = NEXT_C;
    for _ in 0..200 {
        let seg = back(p, TCP_ACK, seq, ISN_S + 1, &[1; 1400]);
        assert_eq!(f.ingress(&seg), TC_ACT_OK);
        seq += 1400;
    }
    let v = the_flow(&f, p).unwrap();
    let cached: u64 = f
        .flow_cache_slots()
        .iter()
        .map(|s| s["pending_packets"].as_u64().unwrap())
        .sum::<u64>();
    // (pending counts go to the entry at each refill: what is left is the
    // run since the last one)
    assert!(cached > 0, "the cache admitted segments ({cached} pending)");
    // the entry is at most one window behind C
    assert!(
        seq.wrapping_sub(v.next_seq_reply) <= WIN_S,
        "entry at {} for C at {seq}",
        v.next_seq_reply
    );
    assert_eq!(
        f.ingress(&back(p, TCP_RST, seq ^ 0x8000_0000, 0, b"")),
        TC_ACT_SHOT
    );
    assert_eq!(f.ingress(&back(p, TCP_RST, seq, 0, b"")), TC_ACT_OK);
    assert!(the_flow(&f, p).is_none(), "C's real RST ends the flow");
}

/// A masqueraded connection's mapping ends only on a RST inside the window
/// too: zfw_nat_in asks the flow's conntrack entry before it lets a RST
/// remove the mapping (else the known-flow step would drop the RST after
/// the mapping was gone).
#[test]
fn a_masquerade_mapping_survives_a_blind_rst_and_ends_on_the_real_one() {
    require_priv!();
    const IN: &str = "192.168.1.10";
    const OUT: &str = "10.0.0.2";
    const REMOTE: &str = "198.51.100.7";
    let f = Fixture::new();
    f.set_flags(zfw::iface_state::default_flags() | Fixture::flag("masquerade"));
    let (ws, sport) = (Some(7), 43000);
    let syn = tcp_win(IN, sport, REMOTE, 80, TCP_SYN, 0, 0, win(64240, ws), b"");
    let r = f.egress_out(&syn);
    assert_eq!(r.retval, TC_ACT_OK);
    let l4 = &strip_ether(&r.data)[20..];
    let nport = u16::from_be_bytes([l4[0], l4[1]]);
    let from_out = |fl: u8, seq: u32, ack: u32| {
        f.ingress(&tcp_win(
            REMOTE,
            80,
            OUT,
            nport,
            fl,
            seq,
            ack,
            win(65160, ws),
            b"",
        ))
    };
    assert_eq!(from_out(TCP_SYN | TCP_ACK, 99, 1), TC_ACT_OK);
    let ack = tcp_win(IN, sport, REMOTE, 80, TCP_ACK, 1, 100, win(502, None), b"");
    assert_eq!(f.egress_out(&ack).retval, TC_ACT_OK);
    let mapped = || {
        f.root
            .maps()
            .entries(&defs::MASQUERADE_MAP)
            .unwrap()
            .into_iter()
            .find(|(k, _)| k.nport == nport)
            .map(|(_, v)| zfw::decode::tcp_state(v.state))
    };
    assert_eq!(mapped().as_deref(), Some("established"));
    for blind in [
        100 ^ 0x8000_0000,
        100 + 0x1000_0000,
        100u32.wrapping_sub(0x100_0000),
    ] {
        assert_eq!(
            from_out(TCP_RST, blind, 0),
            TC_ACT_SHOT,
            "blind rst {blind}"
        );
        assert_eq!(
            from_out(TCP_FIN | TCP_ACK, blind, 1),
            TC_ACT_SHOT,
            "blind fin"
        );
        assert_eq!(mapped().as_deref(), Some("established"));
    }
    assert_eq!(from_out(TCP_RST, 100, 0), TC_ACT_OK);
    assert_eq!(mapped(), None, "the real RST ends the mapping");
}
