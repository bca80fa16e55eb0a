//! What one row of the map registry (src/maps/defs.rs) says about a map,
//! and how a map is named in a call: by its typed row, so that key and
//! value types are checked by the compiler (`maps.get(&defs::TCP_MAP, &k)`),
//! or, in code not converted yet, by its name (checked at run time against
//! the same row).  See docs/ARCHITECTURE.md §6.

use std::marker::PhantomData;

use libbpf_rs::MapType;

use crate::error::{Error, Result};

/// Whether and how a map is sized and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Pinned; `zfw load --map-size NAME=N` sets its capacity at creation.
    Resizable,
    /// Pinned; its size is fixed by the datapath (one config slot, one
    /// counter per reason, power-of-two caches indexed by hash, ...).
    Fixed,
    /// Working memory of one program load (per-CPU scratch): never pinned,
    /// not shown by `status` or `dump`.
    Scratch,
}

/// How `status` (and `dump`, for maps that are not arrays) counts the
/// entries of a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Keys present (hash maps, tries).
    Keys,
    /// Every slot (arrays always hold max_entries values).
    Slots,
    /// Interfaces user space configured (diag_map slots in use).
    Ifaces,
    /// Distinct cached decisions over all CPUs (matched_map).
    Decisions,
    /// Nothing to count (ring buffers).
    Nothing,
}

/// How `zfw dump` shows a map's entries (src/dump/decoders.rs turns each
/// into JSON; maps that share a layout and a meaning share a decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    Config,
    Ifaces,
    Addrs4,
    Addrs6,
    RuleKeys,
    Ranges,
    ServiceIds,
    DstPrefixes,
    Decisions,
    /// rule_stats_map: the live rules' counters.
    RuleStats,
    /// A conntrack table (see `defs::FLOW_TABLES`).
    Flows,
    FlowCache,
    CtEpochs,
    Fragments,
    /// masquerade_map / icmp_masquerade_map.
    NatForward,
    NatReverse,
    Tunnels,
    TunCache,
    TunIface,
    Ports,
    Sources,
    SynCounts,
    SynBuckets,
    FunctionCodes,
    Modbus,
    Counters,
    /// stats_map: one named counter per enum zfw_stat member.
    Stats,
    /// A ring buffer: events are read by `zfw monitor`, nothing to dump.
    Events,
    /// Keys and values in hex.
    Raw,
}

/// One registry row without its types: what status, dump, load and the
/// size checks need to know about a map.
#[derive(Debug)]
pub struct MapInfo {
    /// The map's name in the BPF object, its pin under DIR/maps/ and the
    /// name `dump --map` and `--map-size` take.
    pub name: &'static str,
    pub kind: MapType,
    /// The inner maps' type of an array of maps: `Array` for chunks
    /// (src/maps/chunked.rs), `Hash` for a grown table (src/maps/grown.rs).
    pub inner: Option<MapType>,
    pub size: Size,
    pub count: Count,
    pub decode: Decode,
    pub key_size: usize,
    pub value_size: usize,
    /// The Rust types' names, for error messages and the docs.
    pub key_type: &'static str,
    pub value_type: &'static str,
}

impl MapInfo {
    pub fn pinned(&self) -> bool {
        self.size != Size::Scratch
    }

    pub fn resizable(&self) -> bool {
        self.size == Size::Resizable
    }

    /// An array of maps of `chunked::SLOTS`-slot arrays (range_map,
    /// service_map: src/maps/chunked.rs): key and value are a chunk's.
    pub fn chunked(&self) -> bool {
        self.inner == Some(MapType::Array)
    }

    /// One hash table in slot 0 of an array of maps (tproxy_map): key and
    /// value are the table's.
    pub fn grown(&self) -> bool {
        self.inner == Some(MapType::Hash)
    }

    pub fn is_array(&self) -> bool {
        matches!(self.kind, MapType::Array | MapType::PercpuArray)
    }

    /// Does a map the kernel (or the BPF object) describes with these
    /// figures match this row?  Err says how it differs.  Ring buffers have
    /// no key or value (the kernel reports 0 and 0).  The value size is the
    /// element's size also for per-CPU maps: the kernel rounds each CPU's
    /// copy up to 8 bytes only in lookup buffers, which libbpf-rs cuts back.
    pub fn check_layout(
        &self,
        kind: MapType,
        key_size: u32,
        value_size: u32,
    ) -> std::result::Result<(), String> {
        if kind != self.kind {
            return Err(format!(
                "{} is a {kind:?} map, this zfw expects {:?}",
                self.name, self.kind
            ));
        }
        if kind == MapType::RingBuf {
            return Ok(());
        }
        // an array of maps: u32 slots holding map ids; its inner maps are
        // checked against the row as they are opened (maps::chunked,
        // maps::grown)
        if self.inner.is_some() {
            if key_size != 4 || value_size != 4 {
                return Err(format!(
                    "{} has {key_size}-byte keys and {value_size}-byte values, an array of maps has 4 and 4",
                    self.name
                ));
            }
            return Ok(());
        }
        let (k, v) = (key_size as usize, value_size as usize);
        if k != self.key_size || v != self.value_size {
            return Err(format!(
                "{} has {k}-byte keys and {v}-byte values, this zfw expects {} ({} bytes) and {} ({} bytes)",
                self.name, self.key_type, self.key_size, self.value_type, self.value_size
            ));
        }
        Ok(())
    }

    /// A caller's key/value types against this row (name-based calls only:
    /// typed rows match by construction).
    pub(crate) fn check_key<K>(&self) -> Result<()> {
        let k = std::mem::size_of::<K>();
        if k != self.key_size {
            return Err(Error::runtime(format!(
                "{} has {} keys ({} bytes), not {} ({k})",
                self.name,
                self.key_type,
                self.key_size,
                crate::skel::short_type_name::<K>()
            )));
        }
        Ok(())
    }

    pub(crate) fn check_types<K, V>(&self) -> Result<()> {
        let (k, v) = (std::mem::size_of::<K>(), std::mem::size_of::<V>());
        if k != self.key_size || v != self.value_size {
            return Err(Error::runtime(format!(
                "{} holds {} ({} bytes) -> {} ({} bytes), not {} ({k}) -> {} ({v})",
                self.name,
                self.key_type,
                self.key_size,
                self.value_type,
                self.value_size,
                crate::skel::short_type_name::<K>(),
                crate::skel::short_type_name::<V>()
            )));
        }
        Ok(())
    }
}

/// A registry row with its key and value types.
#[derive(Debug)]
pub struct MapDef<K, V> {
    pub info: MapInfo,
    _kv: PhantomData<fn() -> (K, V)>,
}

impl<K, V> MapDef<K, V> {
    pub const fn new(info: MapInfo) -> Self {
        MapDef {
            info,
            _kv: PhantomData,
        }
    }
}

/// Maps libbpf makes for a program's global data (`zfw_bpf.bss`, ...):
/// private to one load, never pinned, not in the registry.
pub fn is_libbpf_internal(name: &str) -> bool {
    name.contains('.')
}

/// Names a map in a call.
pub trait MapId {
    fn info(&self) -> Result<&'static MapInfo>;
}

/// Names a map whose keys are `K` and values `V`.
pub trait MapOf<K, V>: MapId {}

/// Names a map whose keys are `K` (for deletes, which need no value type).
pub trait KeyedBy<K>: MapId {}

impl<K, V> MapId for &'static MapDef<K, V> {
    fn info(&self) -> Result<&'static MapInfo> {
        Ok(&self.info)
    }
}
impl<K, V> MapOf<K, V> for &'static MapDef<K, V> {}
impl<K, V> KeyedBy<K> for &'static MapDef<K, V> {}

impl MapId for &'static MapInfo {
    fn info(&self) -> Result<&'static MapInfo> {
        Ok(self)
    }
}
