//! Fixture for BPF_PROG_TEST_RUN packet tests: the datapath loaded (not
//! attached) into a bpffs root of the test's own, with direct access to its
//! maps.  Frames are run as
//! if they arrived on `IFINDEX` (loopback of the test process's namespace).
#![allow(dead_code)]

use super::*;
use zfw::skel::types;

pub const IFINDEX: u32 = 1;
pub const POLICY: &str = "zfw_policy";
pub const TRACK: &str = "zfw_track_flow";
pub const EGRESS: &str = "zfw_egress_flow";
pub const XDP: &str = "zfw_xdp_tun_fast";

pub struct Fixture {
    pub root: BpfRoot,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_sizes(&[])
    }

    /// A fixture whose maps get these max_entries (name, size).
    pub fn with_sizes(sizes: &[(&str, u32)]) -> Fixture {
        let root = BpfRoot::new();
        let sizes = sizes.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        zfw::loader::load_detached_with(&root.root(), &sizes).expect("load the datapath");
        let f = Fixture { root };
        f.set_flags(zfw::iface_state::default_flags());
        f.set_addrs(&["10.0.0.2"], &["fd00::2"]);
        f
    }

    /// Settings of IFINDEX (the test-run interface).
    pub fn set_flags(&self, flags: u32) {
        let mut st = types::zfw_iface {
            flags,
            hooks: zfw::skel::names::ZFW_HOOK_CONFIGURED as u32,
            ..Default::default()
        };
        zfw::iface_state::copy_name(&mut st.name, "lo");
        self.root
            .maps()
            .put(&zfw::maps::defs::DIAG_MAP, &IFINDEX, &st)
            .unwrap();
    }

    pub fn flag(name: &str) -> u32 {
        zfw::iface_state::flag_bit(name).unwrap_or_else(|| panic!("no flag {name}"))
    }

    pub fn set_addrs(&self, v4: &[&str], v6: &[&str]) {
        let maps = self.root.maps();
        let mut a4 = types::zfw_if_addrs4::default();
        for (i, a) in v4.iter().enumerate() {
            let ip: std::net::Ipv4Addr = a.parse().unwrap();
            a4.addr[i] = u32::from_ne_bytes(ip.octets());
        }
        a4.count = v4.len() as u32;
        maps.put(&zfw::maps::defs::IFINDEX_IP_MAP, &IFINDEX, &a4)
            .unwrap();
        let mut a6 = types::zfw_if_addrs6::default();
        for (i, a) in v6.iter().enumerate() {
            let ip: std::net::Ipv6Addr = a.parse().unwrap();
            for (w, c) in ip.octets().chunks(4).enumerate() {
                a6.addr[i].a[w] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        a6.count = v6.len() as u32;
        maps.put(&zfw::maps::defs::IFINDEX_IP6_MAP, &IFINDEX, &a6)
            .unwrap();
    }

    /// Run the ingress chain as the kernel would: prio 1, and prio 2 when
    /// prio 1 returned TC_ACT_UNSPEC (with the cb[] prio 1 left).
    pub fn ingress(&self, frame: &[u8]) -> u32 {
        let r = self
            .root
            .prog(POLICY)
            .run(frame, IFINDEX)
            .expect("test run");
        if r.retval == TC_ACT_UNSPEC {
            let t = self
                .root
                .prog(TRACK)
                .run_cb(frame, IFINDEX, r.cb, 1)
                .expect("test run");
            assert_eq!(
                t.retval, TC_ACT_OK,
                "prio 2 must pass what prio 1 let through"
            );
        }
        r.retval
    }

    pub fn egress(&self, frame: &[u8]) -> u32 {
        self.root
            .prog(EGRESS)
            .run(frame, IFINDEX)
            .expect("test run")
            .retval
    }

    /// Was the frame let in (pass or handed on to prio 2)?
    pub fn allowed(&self, frame: &[u8]) -> bool {
        matches!(self.ingress(frame), TC_ACT_OK | TC_ACT_UNSPEC)
    }

    /// Every verdict-reason counter, indexed by `enum zfw_reason` value.
    pub fn reason_counts(&self) -> Vec<u64> {
        let maps = self.root.maps();
        zfw::skel::names::ZFW_REASON
            .iter()
            .map(|(_, v)| zfw::status::reason_count(&maps, *v as u32).unwrap())
            .collect()
    }

    /// Run the ingress chain on `frame`: its TC action and the reasons
    /// (lower case, without `ZFW_R_`) whose counters it moved, in enum
    /// order.
    pub fn decide(&self, frame: &[u8]) -> (u32, Vec<String>) {
        let before = self.reason_counts();
        let action = self.ingress(frame);
        let after = self.reason_counts();
        let moved = zfw::skel::names::ZFW_REASON
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(_, (b, a))| a != b)
            .map(|((n, _), _)| n.trim_start_matches("ZFW_R_").to_ascii_lowercase())
            .collect();
        (action, moved)
    }

    pub fn counter(&self, reason: &str) -> u64 {
        let v = zfw::skel::names::ZFW_REASON
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&format!("ZFW_R_{reason}")))
            .unwrap_or_else(|| panic!("no reason {reason}"))
            .1;
        zfw::status::reason_count(&self.root.maps(), v as u32).unwrap()
    }
}

impl Fixture {
    /// `zfw rule ARGS` on this fixture's root; panics unless it succeeds.
    pub fn rule(&self, args: &[&str]) {
        let mut a = vec!["rule"];
        a.extend_from_slice(args);
        zfw(None, &self.root, &a).ok();
    }

    /// The filled flow_cache_map slots of every CPU, as `zfw dump` shows them.
    pub fn flow_cache_slots(&self) -> Vec<serde_json::Value> {
        let v = zfw::dump::dump(&self.root.maps(), &["flow_cache_map".to_string()]).unwrap();
        v["maps"]["flow_cache_map"]["entries"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Run the egress program; the result carries the packet as it left.
    pub fn egress_out(&self, frame: &[u8]) -> RunResult {
        self.root
            .prog(EGRESS)
            .run(frame, IFINDEX)
            .expect("test run")
    }

    /// Run ingress prio 1 (and prio 2 when handed on); the result carries
    /// the packet as prio 1 left it.
    pub fn ingress_out(&self, frame: &[u8]) -> RunResult {
        let r = self
            .root
            .prog(POLICY)
            .run(frame, IFINDEX)
            .expect("test run");
        if r.retval == TC_ACT_UNSPEC {
            let t = self
                .root
                .prog(TRACK)
                .run_cb(&r.data, IFINDEX, r.cb, 1)
                .expect("test run");
            assert_eq!(t.retval, TC_ACT_OK);
        }
        r
    }
}

impl Fixture {
    /// Drain rb_map: every event the datapath emitted so far.
    pub fn events(&self) -> Vec<types::zfw_event> {
        use std::cell::RefCell;
        use std::rc::Rc;
        let h = libbpf_rs::MapHandle::from_pinned_path(self.root.dir.join("maps/rb_map"))
            .expect("open rb_map");
        let got: Rc<RefCell<Vec<types::zfw_event>>> = Rc::default();
        let sink = got.clone();
        let mut b = libbpf_rs::RingBufferBuilder::new();
        b.add(&h, move |d: &[u8]| {
            sink.borrow_mut()
                .push(zfw::skel::from_bytes(d).expect("a zfw_event record"));
            0
        })
        .expect("ring buffer");
        b.build().expect("ring buffer").consume().expect("consume");
        let v = got.borrow().clone();
        v
    }
}
