//! The map registry: one row per map of the BPF object (src/bpf/maps.h and
//! the scratch maps of policy.h and nat.h), with its key and value types
//! from the skeleton.  Pinning (`zfw load`), `--map-size`, `status`, `dump`,
//! the size checks on open and the tests all derive from this table; it is
//! the only place a map's name is written in Rust.  Adding a map = its C
//! definition + one row here (docs/ARCHITECTURE.md §8).
//!
//! Row: `STATIC: "name", MapType<Key, Value>, Size, Count, Decode;` — see
//! src/maps/registry.rs for what each column means.  Rows are in the order
//! `status` and `dump` show the maps.

use libbpf_rs::MapType;

use super::registry::{Count, Decode, MapDef, MapInfo, Size};
use crate::skel::types;

/// A row's inner map type: `ArrayOfMaps of Array<K, V>` (chunks) or `of
/// Hash` (a grown table); none for a plain map.
macro_rules! inner {
    () => {
        None
    };
    ($t:ident) => {
        Some(MapType::$t)
    };
}

macro_rules! registry {
    ($(
        $(#[$doc:meta])*
        $id:ident: $name:literal, $kind:ident $(of $inner:ident)? <$k:ty, $v:ty>, $size:ident, $count:ident, $decode:ident;
    )*) => {
        $(
            $(#[$doc])*
            pub static $id: MapDef<$k, $v> = MapDef::new(MapInfo {
                name: $name,
                kind: MapType::$kind,
                inner: inner!($($inner)?),
                size: Size::$size,
                count: Count::$count,
                decode: Decode::$decode,
                key_size: std::mem::size_of::<$k>(),
                value_size: std::mem::size_of::<$v>(),
                key_type: stringify!($k),
                value_type: stringify!($v),
            });
        )*
        /// Every map of the BPF object, in registry order.
        pub static ALL: &[&MapInfo] = &[$(&$id.info),*];
    };
}

registry! {
    /// Global settings, policy generation, ABI version and build id (one slot).
    CONFIG_MAP: "config_map", Array<u32, types::zfw_config>, Fixed, Slots, Config;
    /// Per-interface settings and hooks, indexed by ifindex.
    DIAG_MAP: "diag_map", Array<u32, types::zfw_iface>, Resizable, Ifaces, Ifaces;
    IFINDEX_IP_MAP: "ifindex_ip_map", Hash<u32, types::zfw_if_addrs4>, Resizable, Keys, Addrs4;
    IFINDEX_IP6_MAP: "ifindex_ip6_map", Hash<u32, types::zfw_if_addrs6>, Resizable, Keys, Addrs6;
    /// The address watcher's lease (`zfw watch`, ARCHITECTURE.md §6).
    WATCH_MAP: "watch_map", Array<u32, types::zfw_watch_lease>, Fixed, Slots, Raw;
    MONITOR_MAP: "monitor_map", Array<u32, types::zfw_monitor_lease>, Fixed, Slots, Raw;
    /// Rule keys of both rule sets, each pointing at its port ranges.
    /// (one table in the outer array's slot, replaced by a larger or
    /// smaller copy as rules come and go: src/maps/grown.rs)
    TPROXY_MAP: "tproxy_map", ArrayOfMaps of Hash<types::zfw_rule_key, types::zfw_rule_span>, Resizable, Keys, RuleKeys;
    /// Port ranges by slot, in chunks made as rules need them
    /// (src/maps/chunked.rs); `--map-size` counts slots.
    RANGE_MAP: "range_map", ArrayOfMaps of Array<u32, types::zfw_range>, Resizable, Slots, Ranges;
    /// The service id of each range slot, chunked like range_map.
    SERVICE_MAP: "service_map", ArrayOfMaps of Array<u32, types::zfw_service_id>, Resizable, Keys, ServiceIds;
    /// The destination trie that prunes the rule lookup.
    DST_LPM_MAP: "dst_lpm_map", LpmTrie<types::zfw_lpm_key, types::zfw_lpm_val>, Resizable, Keys, DstPrefixes;
    /// The rule store's journal: the change in progress (ARCHITECTURE.md §7).
    JOURNAL_MAP: "journal_map", Array<u32, types::zfw_journal>, Fixed, Slots, Raw;
    /// Per-CPU decision cache of the rule lookup.
    MATCHED_MAP: "matched_map", PercpuArray<u32, types::zfw_match_slot>, Fixed, Decisions, Decisions;
    /// Per-rule hit counters, per CPU, indexed by `zfw_range.stat`
    /// (ARCHITECTURE.md §7 "Counters").
    RULE_STATS_MAP: "rule_stats_map", PercpuArray<u32, types::zfw_rule_stats>, Resizable, Slots, RuleStats;
    /// The counter ids in use, one bit each, 64 to a word (src/rules/ids.rs;
    /// sized at load from rule_stats_map).
    RULE_IDS_MAP: "rule_ids_map", Array<u32, u64>, Fixed, Slots, Raw;
    TCP_MAP: "tcp_map", Hash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    UDP_MAP: "udp_map", Hash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    TCP_INGRESS_MAP: "tcp_ingress_map", Hash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    UDP_INGRESS_MAP: "udp_ingress_map", Hash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    /// Flows not assured yet (seen one way; TCP before its handshake
    /// completed): a flood evicts these, not the tables above (README
    /// "Table pressure", src/bpf/conntrack.h).
    TCP_UNASSURED_MAP: "tcp_unassured_map", LruHash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    UDP_UNASSURED_MAP: "udp_unassured_map", LruHash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    TCP_INGRESS_UNASSURED_MAP: "tcp_ingress_unassured_map", LruHash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    UDP_INGRESS_UNASSURED_MAP: "udp_ingress_unassured_map", LruHash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    ICMP_ECHO_MAP: "icmp_echo_map", LruHash<types::zfw_flow_key, types::zfw_flow>, Resizable, Keys, Flows;
    /// Per-CPU verdicts of established flows (src/bpf/flowcache.h).
    FLOW_CACHE_MAP: "flow_cache_map", PercpuArray<u32, types::zfw_flow_cache>, Fixed, Slots, FlowCache;
    /// Epochs that end cached verdicts: per bucket, then one global slot.
    CT_EPOCH_MAP: "ct_epoch_map", Array<u32, u32>, Fixed, Slots, CtEpochs;
    FRAG_MAP: "frag_map", LruHash<types::zfw_frag_key, u32>, Resizable, Keys, Fragments;
    MASQUERADE_MAP: "masquerade_map", Hash<types::zfw_nat_key, types::zfw_nat_val>, Resizable, Keys, NatForward;
    MASQUERADE_REVERSE_MAP: "masquerade_reverse_map", Hash<types::zfw_flow_key, types::zfw_nat_rev>, Resizable, Keys, NatReverse;
    ICMP_MASQUERADE_MAP: "icmp_masquerade_map", Hash<types::zfw_nat_key, types::zfw_nat_val>, Resizable, Keys, NatForward;
    /// Recently closed TCP mappings: ports the chooser keeps from other inside hosts.
    MASQUERADE_CLOSED_MAP: "masquerade_closed_map", LruHash<types::zfw_nat_key, types::zfw_nat_closed>, Resizable, Keys, Raw;
    TUN_MAP: "tun_map", LruHash<types::zfw_flow_key, types::zfw_tun_state>, Resizable, Keys, Tunnels;
    /// Per-CPU reply routes of tunnelled flows (src/bpf/tuncache.h).
    TUN_CACHE_MAP: "tun_cache_map", PercpuArray<u32, types::zfw_tun_cache>, Fixed, Slots, TunCache;
    IFINDEX_TUN_MAP: "ifindex_tun_map", Hash<u32, types::zfw_tun_iface>, Resizable, Keys, TunIface;
    DDOS_DPORT_MAP: "ddos_dport_map", Hash<u32, u32>, Resizable, Keys, Ports;
    DDOS_SADDR_MAP: "ddos_saddr_map", Hash<types::zfw_addr_key, u32>, Resizable, Keys, Sources;
    SYN_COUNT_MAP: "syn_count_map", Hash<u32, u64>, Resizable, Keys, SynCounts;
    SYN_BUCKET_MAP: "syn_bucket_map", LruHash<types::zfw_addr_key, types::zfw_bucket>, Resizable, Keys, SynBuckets;
    DNP3_FCODE_MAP: "dnp3_fcode_map", Hash<u32, u32>, Resizable, Keys, FunctionCodes;
    MODBUS_STATE_MAP: "modbus_state_map", LruHash<types::zfw_modbus_key, types::zfw_modbus_val>, Resizable, Keys, Modbus;
    /// Packets per verdict reason, per CPU.
    COUNTERS_MAP: "counters_map", PercpuArray<u32, u64>, Fixed, Slots, Counters;
    /// Datapath statistics other than verdicts (index: enum zfw_stat), per CPU.
    STATS_MAP: "stats_map", PercpuArray<u32, u64>, Fixed, Slots, Stats;
    /// Datapath events for `zfw monitor` (records are `zfw_event`); its
    /// size in bytes (a power of two, at least a page) may be set at load.
    RB_MAP: "rb_map", RingBuf<(), types::zfw_event>, Resizable, Nothing, Events;
    /// The pair walk of the rule lookup (too big for the stack).
    POLICY_SCRATCH_MAP: "policy_scratch_map", PercpuArray<u32, types::zfw_pair_walk>, Scratch, Slots, Raw;
    /// Masquerade's working state between two helpers of one packet.
    NAT_SCRATCH_MAP: "nat_scratch_map", PercpuArray<u32, types::zfw_nat_scratch>, Scratch, Slots, Raw;
    /// Conntrack's working memory: a new entry, a SYN's options (src/bpf/conntrack.h).
    CT_SCRATCH_MAP: "ct_scratch_map", PercpuArray<u32, types::zfw_ct_scratch>, Scratch, Slots, Raw;
}

/// A conntrack table: its row, the side its flows were opened from, and
/// whether its flows are assured (seen both ways; src/bpf/conntrack.h).
#[derive(Debug, Clone, Copy)]
pub struct FlowTable {
    pub def: &'static MapDef<types::zfw_flow_key, types::zfw_flow>,
    pub direction: &'static str,
    pub assured: bool,
    /// The assured table of the same protocol and side (itself for an
    /// assured table): where the flow cache adds pending counts first.
    pub main: &'static MapDef<types::zfw_flow_key, types::zfw_flow>,
}

type FlowDef = MapDef<types::zfw_flow_key, types::zfw_flow>;

/// An assured table.
const fn assured(def: &'static FlowDef, direction: &'static str) -> FlowTable {
    FlowTable {
        def,
        direction,
        assured: true,
        main: def,
    }
}

/// The unassured table of `main`'s protocol and side.
const fn unassured(def: &'static FlowDef, main: &'static FlowTable) -> FlowTable {
    FlowTable {
        def,
        direction: main.direction,
        assured: false,
        main: main.def,
    }
}

/// The conntrack tables, in the order `conntrack list` shows them.
pub static FLOW_TABLES: [FlowTable; 9] = [
    TCP_OUT,
    UDP_OUT,
    assured(&ICMP_ECHO_MAP, "outbound"),
    TCP_IN,
    UDP_IN,
    unassured(&TCP_UNASSURED_MAP, &TCP_OUT),
    unassured(&UDP_UNASSURED_MAP, &UDP_OUT),
    unassured(&TCP_INGRESS_UNASSURED_MAP, &TCP_IN),
    unassured(&UDP_INGRESS_UNASSURED_MAP, &UDP_IN),
];
const TCP_OUT: FlowTable = assured(&TCP_MAP, "outbound");
const UDP_OUT: FlowTable = assured(&UDP_MAP, "outbound");
const TCP_IN: FlowTable = assured(&TCP_INGRESS_MAP, "inbound");
const UDP_IN: FlowTable = assured(&UDP_INGRESS_MAP, "inbound");

/// The conntrack table of row `info`, if it is one.
pub fn flow_table(info: &MapInfo) -> Option<&'static FlowTable> {
    FLOW_TABLES.iter().find(|t| std::ptr::eq(&t.def.info, info))
}

/// The assured table `main` and its unassured twin: where a flow of that
/// protocol and side lives, whether assured or not (tests and tools that
/// follow one flow look in both).
pub fn flow_tables_of(main: &FlowDef) -> impl Iterator<Item = &'static FlowTable> + '_ {
    FLOW_TABLES
        .iter()
        .filter(move |t| std::ptr::eq(t.main, main))
}

/// The two tables of masquerade mappings keyed by the outside view: TCP
/// and UDP, then ICMP echo.
pub static NAT_FORWARD: [&MapDef<types::zfw_nat_key, types::zfw_nat_val>; 2] =
    [&MASQUERADE_MAP, &ICMP_MASQUERADE_MAP];

/// The row of a map by name (for `dump --map NAME`, and name-based calls).
pub fn by_name(name: &str) -> Option<&'static MapInfo> {
    ALL.iter().copied().find(|i| i.name == name)
}

/// The pinned maps, in registry order (the order `status` and `dump` show).
pub fn pinned() -> impl Iterator<Item = &'static MapInfo> {
    ALL.iter().copied().filter(|i| i.pinned())
}

/// Name-based calls (code not converted to typed rows yet): the name must
/// have a row, and the caller's types its sizes (checked at run time).
#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::mem::MaybeUninit;

    use libbpf_rs::skel::{OpenSkel, SkelBuilder};

    use super::*;
    use crate::maps::registry::is_libbpf_internal;

    /// The BPF object's own description of its maps (opened, never
    /// loaded: no privileges needed): name -> (type, key, value sizes).
    fn object_maps() -> Vec<(String, MapType, u32, u32)> {
        let mut storage = MaybeUninit::uninit();
        let open = crate::skel::zfw::ZfwSkelBuilder::default()
            .open(&mut storage)
            .expect("open the zfw BPF object");
        open.open_object()
            .maps()
            .map(|m| {
                let name = m.name().to_string_lossy().into_owned();
                (name, m.map_type(), m.key_size(), m.value_size())
            })
            .filter(|(name, ..)| !is_libbpf_internal(name))
            .collect()
    }

    #[test]
    fn every_map_of_the_bpf_object_has_a_row_and_every_row_a_map() {
        let object = object_maps();
        for (name, kind, k, v) in &object {
            let info = by_name(name)
                .unwrap_or_else(|| panic!("map {name} of the BPF object has no row here"));
            info.check_layout(*kind, *k, *v).unwrap();
        }
        let in_object: BTreeSet<&str> = object.iter().map(|(n, ..)| n.as_str()).collect();
        for info in ALL {
            assert!(
                in_object.contains(info.name),
                "row {} has no map in the BPF object",
                info.name
            );
        }
        let names: BTreeSet<&str> = ALL.iter().map(|i| i.name).collect();
        assert_eq!(names.len(), ALL.len(), "a name has two rows");
    }

    #[test]
    fn shared_decoders_know_every_table_they_serve() {
        let flows: Vec<&str> = FLOW_TABLES.iter().map(|t| t.def.info.name).collect();
        let nat: Vec<&str> = NAT_FORWARD.iter().map(|d| d.info.name).collect();
        for info in ALL {
            assert_eq!(
                info.decode == Decode::Flows,
                flows.contains(&info.name),
                "{}: Decode::Flows rows and FLOW_TABLES",
                info.name
            );
            assert_eq!(
                info.decode == Decode::NatForward,
                nat.contains(&info.name),
                "{}: Decode::NatForward rows and NAT_FORWARD",
                info.name
            );
        }
    }
}

#[cfg(test)]
mod layout_tests {
    //! The registry's layout and type checks, on real rows.
    use libbpf_rs::MapType;

    use crate::maps::defs;
    use crate::skel::types;

    #[test]
    fn a_map_of_another_layout_is_named_with_the_difference() {
        let tcp = &defs::TCP_MAP.info;
        let k = std::mem::size_of::<types::zfw_flow_key>() as u32;
        let v = std::mem::size_of::<types::zfw_flow>() as u32;
        assert_eq!(tcp.check_layout(MapType::Hash, k, v), Ok(()));
        assert_eq!(
            tcp.check_layout(MapType::Hash, k - 4, v).unwrap_err(),
            format!(
                "{} has {}-byte keys and {v}-byte values, this zfw expects \
                 types::zfw_flow_key ({k} bytes) and types::zfw_flow ({v} bytes)",
                tcp.name,
                k - 4
            )
        );
        assert!(tcp
            .check_layout(MapType::Hash, k, v + 8)
            .unwrap_err()
            .contains(&format!("{}-byte values", v + 8)));
        assert_eq!(
            tcp.check_layout(MapType::LruHash, k, v).unwrap_err(),
            format!("{} is a LruHash map, this zfw expects Hash", tcp.name)
        );
        // a per-CPU map's value size is the element's, not rounded to 8
        let scratch = &defs::NAT_SCRATCH_MAP.info;
        let sv = std::mem::size_of::<types::zfw_nat_scratch>() as u32;
        assert_eq!(scratch.check_layout(MapType::PercpuArray, 4, sv), Ok(()));
        assert!(scratch
            .check_layout(MapType::PercpuArray, 4, sv.next_multiple_of(8) + 8)
            .is_err());
        // ring buffers have neither keys nor values
        let rb = &defs::RB_MAP.info;
        assert_eq!(rb.check_layout(MapType::RingBuf, 0, 0), Ok(()));
        assert!(rb.check_layout(MapType::Array, 0, 0).is_err());
    }

    #[test]
    fn name_based_calls_are_checked_against_the_row() {
        let tcp = &defs::TCP_MAP.info;
        assert!(tcp
            .check_types::<types::zfw_flow_key, types::zfw_flow>()
            .is_ok());
        let e = tcp
            .check_types::<types::zfw_nat_key, types::zfw_flow>()
            .unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let nk = std::mem::size_of::<types::zfw_nat_key>();
        assert!(
            e.to_string().contains(&format!("not zfw_nat_key ({nk})")),
            "{e}"
        );
        assert!(tcp.check_key::<u32>().is_err());
        assert!(defs::DDOS_DPORT_MAP.info.check_key::<u32>().is_ok());
        // user input (`dump --map`, `--map-size`) is looked up by name
        assert!(defs::by_name(tcp.name).is_some_and(|i| std::ptr::eq(i, tcp)));
        assert!(defs::by_name(&format!("{}p", tcp.name)).is_none());
    }
}
