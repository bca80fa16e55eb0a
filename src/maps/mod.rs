//! Typed access to the pinned maps under a bpffs root.  Keys and values are
//! the skeleton's generated ABI types (plain data), never hand-copied mirrors.

use std::collections::BTreeMap;
use std::fs;

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use crate::bpffs::Root;
use crate::error::{Context, Error, Result};
use crate::skel::{bytes_of, from_bytes, types};

pub mod batch;

/// Names of the pinned maps, in the order `dump` and `status` show them.
pub const MAP_NAMES: &[&str] = &[
    "config_map",
    "diag_map",
    "ifindex_ip_map",
    "ifindex_ip6_map",
    "tproxy_map",
    "range_map",
    "service_map",
    "dst_lpm_map",
    "matched_map",
    "tcp_map",
    "udp_map",
    "tcp_ingress_map",
    "udp_ingress_map",
    "icmp_echo_map",
    "flow_cache_map",
    "ct_epoch_map",
    "frag_map",
    "masquerade_map",
    "masquerade_reverse_map",
    "icmp_masquerade_map",
    "tun_map",
    "tun_cache_map",
    "ifindex_tun_map",
    "ddos_dport_map",
    "ddos_saddr_map",
    "syn_count_map",
    "syn_bucket_map",
    "dnp3_fcode_map",
    "modbus_state_map",
    "counters_map",
    "rb_map",
];

/// The pinned maps of one root, opened once.
pub struct Maps {
    pub root: Root,
    handles: BTreeMap<String, MapHandle>,
}

impl Maps {
    /// Open every map pinned under `root` ("zfw is not loaded" if none).
    pub fn open(root: &Root) -> Result<Self> {
        root.require_loaded()?;
        let mut handles = BTreeMap::new();
        let dir = root.maps_dir();
        for e in fs::read_dir(&dir)
            .ctx(|| format!("reading {}", dir.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let h = MapHandle::from_pinned_path(e.path())
                .ctx(|| format!("opening pinned map {}", e.path().display()))?;
            handles.insert(name, h);
        }
        Ok(Maps {
            root: root.clone(),
            handles,
        })
    }

    pub fn handle(&self, name: &str) -> Result<&MapHandle> {
        self.handles.get(name).ok_or_else(|| {
            Error::runtime(format!(
                "map {name} is not pinned under {}",
                self.root.dir.display()
            ))
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.handles.keys().map(String::as_str)
    }

    pub fn get<K: plain::Plain, V: plain::Plain + Default>(
        &self,
        name: &str,
        key: &K,
    ) -> Result<Option<V>> {
        let v = self
            .handle(name)?
            .lookup(bytes_of(key), MapFlags::ANY)
            .ctx(|| format!("reading {name}"))?;
        Ok(v.map(|b| from_bytes(&b)))
    }

    pub fn put<K: plain::Plain, V: plain::Plain>(
        &self,
        name: &str,
        key: &K,
        val: &V,
    ) -> Result<()> {
        self.handle(name)?
            .update(bytes_of(key), bytes_of(val), MapFlags::ANY)
            .ctx(|| format!("writing {name}"))
    }

    /// Delete a key; Ok(false) when it was not there.  Array slots cannot
    /// be deleted: they are zeroed, which the datapath reads as unused.
    pub fn del<K: plain::Plain>(&self, name: &str, key: &K) -> Result<bool> {
        let h = self.handle(name)?;
        if matches!(h.map_type(), MapType::Array) {
            let zero = vec![0u8; h.value_size() as usize];
            return h
                .update(bytes_of(key), &zero, MapFlags::ANY)
                .map(|_| true)
                .ctx(|| format!("clearing {name}"));
        }
        match h.delete(bytes_of(key)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx(|| format!("deleting from {name}")),
        }
    }

    /// Every (key, value) of a hash/array map.
    pub fn entries<K: plain::Plain + Default, V: plain::Plain + Default>(
        &self,
        name: &str,
    ) -> Result<Vec<(K, V)>> {
        let h = self.handle(name)?;
        // hash tables: batch reads (one syscall per 4096 entries)
        if matches!(h.map_type(), MapType::Hash | MapType::LruHash) {
            if let Ok(e) = batch::read(h, name, 4096, None) {
                return Ok(e
                    .iter()
                    .map(|(k, v)| (from_bytes(k), from_bytes(v)))
                    .collect());
            }
        }
        let mut out = Vec::new();
        for k in h.keys() {
            if let Some(v) = h
                .lookup(&k, MapFlags::ANY)
                .ctx(|| format!("reading {name}"))?
            {
                out.push((from_bytes(&k), from_bytes(&v)));
            }
        }
        Ok(out)
    }

    /// Every slot of an ARRAY map in batch calls (one syscall per 4096
    /// slots instead of two per slot: diag_map has 65536); falls back to
    /// per-key reads when batching fails or stops short.
    pub fn array_entries<V: plain::Plain + Default>(&self, name: &str) -> Result<Vec<(u32, V)>> {
        let h = self.handle(name)?;
        let max = h.max_entries() as usize;
        if let Ok(it) = h.lookup_batch(4096, MapFlags::ANY, MapFlags::ANY) {
            let v: Vec<(u32, V)> = it
                .map(|(k, val)| (from_bytes(&k), from_bytes(&val)))
                .collect();
            if v.len() == max {
                return Ok(v);
            }
        }
        self.entries(name)
    }

    /// Raw keys of a map.
    pub fn raw_keys(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        Ok(self.handle(name)?.keys().collect())
    }

    /// Entries in use (arrays: all slots; ring buffers: 0).
    pub fn count(&self, name: &str) -> Result<usize> {
        let h = self.handle(name)?;
        if name == "diag_map" {
            return Ok(self.ifaces()?.len());
        }
        if name == "matched_map" {
            return Ok(self.cached_decisions()?.len());
        }
        Ok(match h.map_type() {
            MapType::RingBuf => 0,
            MapType::Array | MapType::PercpuArray => h.max_entries() as usize,
            // a few batch calls instead of one syscall per key (tproxy_map
            // holds up to 800k); key by key if batching fails
            MapType::Hash => batch::read(h, name, 8192, None)
                .map(|e| e.len())
                .unwrap_or_else(|_| h.keys().count()),
            _ => h.keys().count(),
        })
    }

    pub fn max_entries(&self, name: &str) -> Result<u32> {
        Ok(self.handle(name)?.max_entries())
    }

    pub fn map_type(&self, name: &str) -> Result<MapType> {
        Ok(self.handle(name)?.map_type())
    }

    /// Sum of a per-CPU u64 counter slot.
    pub fn percpu_sum(&self, name: &str, idx: u32) -> Result<u64> {
        let h = self.handle(name)?;
        let vals = h
            .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
            .ctx(|| format!("reading {name}"))?;
        Ok(vals
            .unwrap_or_default()
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or([0; 8])))
            .sum())
    }

    pub fn config(&self) -> Result<types::zfw_config> {
        Ok(self
            .get::<u32, types::zfw_config>("config_map", &0)?
            .unwrap_or_default())
    }

    pub fn set_config(&self, c: &types::zfw_config) -> Result<()> {
        self.put("config_map", &0u32, c)
    }

    /// Every (slot, CPU's value) of a per-CPU array of plain values.
    pub fn percpu_entries<V: plain::Plain + Default>(
        &self,
        name: &str,
    ) -> Result<Vec<(u32, Vec<V>)>> {
        let h = self.handle(name)?;
        let mut out = Vec::new();
        for i in 0..h.max_entries() {
            if let Some(vals) = h
                .lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                .ctx(|| format!("reading {name}"))?
            {
                out.push((i, vals.iter().map(|b| from_bytes(b)).collect()));
            }
        }
        Ok(out)
    }

    /// The distinct cached decisions of matched_map (slots are per CPU;
    /// the same decision may sit in several CPUs' slots).
    pub fn cached_decisions(&self) -> Result<Vec<types::zfw_match_slot>> {
        let mut seen: Vec<types::zfw_match_slot> = Vec::new();
        for (_, per_cpu) in self.percpu_entries::<types::zfw_match_slot>("matched_map")? {
            for s in per_cpu {
                if s.key.family != 0 && !seen.iter().any(|o| bytes_of(&o.key) == bytes_of(&s.key)) {
                    seen.push(s);
                }
            }
        }
        Ok(seen)
    }

    /// Interface settings (diag_map) keyed by ifindex.
    pub fn ifaces(&self) -> Result<Vec<(u32, types::zfw_iface)>> {
        let mut v: Vec<(u32, types::zfw_iface)> = self.array_entries("diag_map")?;
        v.retain(|(_, st)| st.hooks | st.flags != 0);
        v.sort_by_key(|(i, _)| *i);
        Ok(v)
    }
}
