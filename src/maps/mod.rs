//! Typed access to the pinned maps under a bpffs root.  Keys and values are
//! the skeleton's generated ABI types (plain data), never hand-copied
//! mirrors; which map holds which types is the registry's (src/maps/defs.rs,
//! docs/ARCHITECTURE.md §6), and every pinned map is checked against it when
//! the maps are opened.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use crate::bpffs::Root;
use crate::error::{Context, Error, Result};
use crate::skel::{bytes_of, from_bytes, types};

pub mod batch;
pub mod chunked;
pub mod defs;
pub mod grown;
pub mod pending;
pub mod registry;

pub use registry::{Count, Decode, KeyedBy, MapDef, MapId, MapInfo, MapOf, Size};

/// Whether zfw is loaded under a root is a question about its pins, so it
/// is answered here, beside the registry (src/bpffs.rs stays below maps).
impl Root {
    /// Is zfw loaded here (the global config map is pinned)?
    pub fn is_loaded(&self) -> bool {
        self.map_path(defs::CONFIG_MAP.info.name).exists()
    }

    /// Fail with "zfw is not loaded" unless maps are pinned here.
    pub fn require_loaded(&self) -> Result<()> {
        if self.is_loaded() {
            Ok(())
        } else {
            Err(Error::NotLoaded(self.dir.clone()))
        }
    }
}

/// Elements per batch write (put_many, del_many).
const WRITE_BATCH: u32 = 8192;

/// The pinned maps of one root, opened once.
pub struct Maps {
    pub root: Root,
    handles: BTreeMap<&'static str, MapHandle>,
    /// Pinned maps whose layout differs from this build's registry row:
    /// name -> how.
    mismatched: BTreeMap<&'static str, String>,
    /// Chunks of the chunked maps opened so far (src/maps/chunked.rs).
    chunks: Mutex<ChunkCache>,
}

/// (map, chunk) -> (the chunk's map id, its handle).
type ChunkCache = BTreeMap<(&'static str, u32), (u32, Arc<MapHandle>)>;

impl Maps {
    /// Open every map of the registry pinned under `root` ("zfw is not
    /// loaded" if none); fails when a pinned map's type or key/value sizes
    /// differ from this build's (another zfw build's maps).
    pub fn open(root: &Root) -> Result<Self> {
        let maps = Self::open_matching(root)?;
        maps.require_match()?;
        Ok(maps)
    }

    /// Like `open`, but leave out maps whose layout differs (using one
    /// then fails with the difference): for `unload --all` and the ABI
    /// check of `load`, which must work on another build's maps.
    pub fn open_matching(root: &Root) -> Result<Self> {
        root.require_loaded()?;
        root.check_root()?;
        let mut handles = BTreeMap::new();
        let mut mismatched = BTreeMap::new();
        for info in defs::pinned() {
            let path = root.map_path(info.name);
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if md.file_type().is_symlink() {
                return Err(Error::runtime(format!(
                    "{} is a symbolic link; zfw's pins never are (it uses no pin it did not make)",
                    crate::bpffs::shown_path(&path)
                )));
            }
            let h = MapHandle::from_pinned_path(&path)
                .ctx(|| format!("opening pinned map {}", path.display()))?;
            match info.check_layout(h.map_type(), h.key_size(), h.value_size()) {
                Ok(()) => {
                    handles.insert(info.name, h);
                }
                Err(e) => {
                    mismatched.insert(info.name, e);
                }
            }
        }
        Ok(Maps {
            root: root.clone(),
            handles,
            mismatched,
            chunks: Mutex::new(BTreeMap::new()),
        })
    }

    /// Err naming every pinned map whose layout differs from this build's.
    pub fn require_match(&self) -> Result<()> {
        if self.mismatched.is_empty() {
            return Ok(());
        }
        let why: Vec<&str> = self.mismatched.values().map(String::as_str).collect();
        let dir = self.root.dir.display();
        Err(Error::runtime(format!(
            "the maps pinned under {dir} do not match this zfw build ({}); run `zfw --bpffs {dir} unload --all` first",
            why.join("; ")
        )))
    }

    pub fn handle(&self, m: impl MapId) -> Result<&MapHandle> {
        let info = m.info()?;
        if let Some(h) = self.handles.get(info.name) {
            return Ok(h);
        }
        Err(Error::runtime(match self.mismatched.get(info.name) {
            Some(why) => format!("cannot use {why}"),
            None => format!(
                "map {} is not pinned under {}",
                info.name,
                self.root.dir.display()
            ),
        }))
    }

    fn chunk_cache(&self) -> MutexGuard<'_, ChunkCache> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle of a map the caller reads or writes as K -> V.
    fn typed<K, V>(&self, m: impl MapOf<K, V>) -> Result<(&'static MapInfo, &MapHandle)> {
        let info = m.info()?;
        info.check_types::<K, V>()?;
        Ok((info, self.handle(info)?))
    }

    /// The value under `key`.  Named by its registry row, the map's key and
    /// value types are the row's, checked by the compiler:
    ///
    /// ```no_run
    /// # fn f(maps: &zfw::maps::Maps) -> zfw::Result<()> {
    /// use zfw::maps::defs::TCP_MAP;
    /// use zfw::skel::types::{zfw_flow, zfw_flow_key};
    /// let flow: Option<zfw_flow> = maps.get(&TCP_MAP, &zfw_flow_key::default())?;
    /// # Ok(()) }
    /// ```
    ///
    /// ```compile_fail
    /// # fn f(maps: &zfw::maps::Maps) -> zfw::Result<()> {
    /// use zfw::maps::defs::TCP_MAP;
    /// use zfw::skel::types::{zfw_flow, zfw_nat_key};
    /// // tcp_map's keys are zfw_flow_key: this does not compile
    /// let flow: Option<zfw_flow> = maps.get(&TCP_MAP, &zfw_nat_key::default())?;
    /// # Ok(()) }
    /// ```
    pub fn get<K: plain::Plain, V: plain::Plain + Default>(
        &self,
        m: impl MapOf<K, V>,
        key: &K,
    ) -> Result<Option<V>> {
        let (info, h) = self.typed(m)?;
        let v = if info.chunked() {
            self.chunked_get(info, bytes_of(key))?
        } else if info.grown() {
            self.grown_get(info, bytes_of(key))?
        } else {
            h.lookup(bytes_of(key), MapFlags::ANY)
                .ctx(|| format!("reading {}", info.name))?
        };
        v.map(|b| named(from_bytes(&b), info.name)).transpose()
    }

    pub fn put<K: plain::Plain, V: plain::Plain>(
        &self,
        m: impl MapOf<K, V>,
        key: &K,
        val: &V,
    ) -> Result<()> {
        let (info, h) = self.typed(m)?;
        if info.chunked() {
            return self.chunked_put(info, &[slot(bytes_of(key))?], bytes_of(val));
        }
        if info.grown() {
            return self.grown_put(info, bytes_of(key), bytes_of(val));
        }
        h.update(bytes_of(key), bytes_of(val), MapFlags::ANY)
            .ctx(|| format!("writing {}", info.name))
    }

    /// Delete a key; Ok(false) when it was not there.  Array slots cannot
    /// be deleted: they are zeroed, which the datapath reads as unused.
    pub fn del<K: plain::Plain>(&self, m: impl KeyedBy<K>, key: &K) -> Result<bool> {
        let info = m.info()?;
        info.check_key::<K>()?;
        let h = self.handle(info)?;
        if info.chunked() {
            let had = self.chunked_get(info, bytes_of(key))?.is_some();
            self.chunked_del(info, &[slot(bytes_of(key))?])?;
            return Ok(had);
        }
        if info.grown() {
            return Ok(self.grown_del(info, bytes_of(key))? > 0);
        }
        if matches!(h.map_type(), MapType::Array) {
            let zero = vec![0u8; h.value_size() as usize];
            return h
                .update(bytes_of(key), &zero, MapFlags::ANY)
                .map(|_| true)
                .ctx(|| format!("clearing {}", info.name));
        }
        match h.delete(bytes_of(key)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx(|| format!("deleting from {}", info.name)),
        }
    }

    /// Write every (key, value) of `items` in batch calls, in order
    /// (maps::batch::update: the states between are those of single puts).
    pub fn put_many<K: plain::Plain, V: plain::Plain>(
        &self,
        m: impl MapOf<K, V>,
        items: &[(K, V)],
    ) -> Result<()> {
        let (info, h) = self.typed(m)?;
        let mut ks = Vec::with_capacity(std::mem::size_of::<K>() * items.len());
        let mut vs = Vec::with_capacity(std::mem::size_of::<V>() * items.len());
        for (k, v) in items {
            ks.extend_from_slice(bytes_of(k));
            vs.extend_from_slice(bytes_of(v));
        }
        if info.chunked() {
            let slots = ks.chunks_exact(4).map(slot).collect::<Result<Vec<u32>>>()?;
            return self.chunked_put(info, &slots, &vs);
        }
        if info.grown() {
            return self.grown_put(info, &ks, &vs);
        }
        batch::update(h, info.name, &ks, &vs, WRITE_BATCH)
    }

    /// Delete `keys` in batch calls, in order; a key that is not there is
    /// passed over.  Array slots are zeroed, as by `del`.
    pub fn del_many<K: plain::Plain>(&self, m: impl KeyedBy<K>, keys: &[K]) -> Result<()> {
        let info = m.info()?;
        info.check_key::<K>()?;
        let h = self.handle(info)?;
        let mut ks = Vec::with_capacity(std::mem::size_of_val(keys));
        for k in keys {
            ks.extend_from_slice(bytes_of(k));
        }
        if info.chunked() {
            let slots = ks.chunks_exact(4).map(slot).collect::<Result<Vec<u32>>>()?;
            return self.chunked_del(info, &slots);
        }
        if info.grown() {
            return self.grown_del(info, &ks).map(drop);
        }
        if matches!(h.map_type(), MapType::Array) {
            let zero = vec![0u8; h.value_size() as usize * keys.len()];
            return batch::update(h, info.name, &ks, &zero, WRITE_BATCH);
        }
        batch::delete(h, info.name, &ks, WRITE_BATCH).map(drop)
    }

    /// Every (key, value) of a hash/array map.
    pub fn entries<K: plain::Plain + Default, V: plain::Plain + Default>(
        &self,
        m: impl MapOf<K, V>,
    ) -> Result<Vec<(K, V)>> {
        let (info, h) = self.typed(m)?;
        let name = info.name;
        if info.chunked() {
            return self
                .chunked_entries(info, 0, self.chunked_max(info)?)?
                .iter()
                .map(|(k, v)| pair(name, &k.to_ne_bytes(), v))
                .collect();
        }
        if info.grown() {
            let e = self.grown_entries(info)?;
            return e.iter().map(|(k, v)| pair(name, k, v)).collect();
        }
        // hash tables and tries: batch reads (one syscall per 4096 entries)
        if matches!(
            h.map_type(),
            MapType::Hash | MapType::LruHash | MapType::LpmTrie
        ) {
            if let Ok(e) = batch::read(h, name, 4096, None) {
                return e.iter().map(|(k, v)| pair(name, k, v)).collect();
            }
        }
        keywise(h, name)
    }

    /**
     * Every (key, value) of a hash map, handed to `f` one batch of up to
     * `batch` entries at a time (BPF_MAP_LOOKUP_BATCH into one reused
     * buffer): a walk of a million flows holds one batch, and costs a few
     * hundred syscalls (README "Memory").  Each entry is handed over once.
     * `f` may delete the entries it was handed (a hash walk's cursor is a
     * bucket, already behind them).  When the kernel refuses the first
     * batch read, the map is read key by key, whole, and `f` gets it in
     * one call (deleting under a key-by-key walk would restart it).
     */
    pub fn for_each_batch<K: plain::Plain + Default, V: plain::Plain + Default>(
        &self,
        m: impl MapOf<K, V>,
        batch: u32,
        mut f: impl FnMut(&[(K, V)]) -> Result<()>,
    ) -> Result<()> {
        let (info, h) = self.typed(m)?;
        let name = info.name;
        let mut buf: Vec<(K, V)> = Vec::new();
        let mut delivered = false;
        let walked = batch::walk(h, name, batch, None, |ks, vs| {
            buf.clear();
            for (k, v) in ks
                .chunks_exact(info.key_size.max(1))
                .zip(vs.chunks_exact(info.value_size.max(1)))
            {
                buf.push(pair(name, k, v)?);
            }
            delivered = true;
            f(&buf)
        });
        match walked {
            Err(e) if delivered => Err(e),
            Err(_) => f(&keywise(h, name)?),
            Ok(()) => Ok(()),
        }
    }

    /// Every slot of an ARRAY map in batch calls (one syscall per 4096
    /// slots instead of two per slot: diag_map has 65536); falls back to
    /// per-key reads when batching fails or stops short.
    pub fn array_entries<V: plain::Plain + Default>(
        &self,
        m: impl MapOf<u32, V> + Copy,
    ) -> Result<Vec<(u32, V)>> {
        let (info, h) = self.typed(m)?;
        let max = h.max_entries() as usize;
        if let Ok(it) = h.lookup_batch(4096, MapFlags::ANY, MapFlags::ANY) {
            let v = it
                .map(|(k, val)| pair(info.name, &k, &val))
                .collect::<Result<Vec<(u32, V)>>>()?;
            if v.len() == max {
                return Ok(v);
            }
        }
        self.entries::<u32, V>(m)
    }

    /// Raw keys of a map.
    pub fn raw_keys(&self, m: impl MapId) -> Result<Vec<Vec<u8>>> {
        Ok(self.handle(m)?.keys().collect())
    }

    /// Entries in use, the way the registry row says to count them.
    pub fn count(&self, m: impl MapId) -> Result<usize> {
        let info = m.info()?;
        let h = self.handle(info)?;
        if info.chunked() {
            return self.chunked_count(info);
        }
        if info.grown() {
            return self.grown_count(info);
        }
        Ok(match info.count {
            Count::Nothing => 0,
            Count::Slots => h.max_entries() as usize,
            Count::Ifaces => self.ifaces()?.len(),
            Count::Decisions => self.cached_decisions()?.len(),
            // a few batch calls into one reused buffer instead of two
            // syscalls per key (tproxy_map may hold 250k keys, a flow table
            // millions); key by key only when batching fails
            Count::Keys
                if matches!(
                    h.map_type(),
                    MapType::Hash | MapType::LruHash | MapType::LpmTrie
                ) =>
            {
                batch::count(h, info.name, 8192).unwrap_or_else(|_| h.keys().count())
            }
            Count::Keys => h.keys().count(),
        })
    }

    /// Capacity in entries (a chunked map's: slots, not chunks).
    pub fn max_entries(&self, m: impl MapId) -> Result<u32> {
        let info = m.info()?;
        if info.chunked() {
            return self.chunked_max(info);
        }
        if info.grown() {
            return self.grown_cap();
        }
        Ok(self.handle(info)?.max_entries())
    }

    /// The kernel memory the map holds in bytes, as `bpftool map show`
    /// reports it (`bytes_memlock`: the memlock line of the map fd's
    /// fdinfo; for a hash map without preallocation, its buckets plus the
    /// elements present).
    /// (A chunked map: its outer array and every chunk.)
    pub fn memlock(&self, m: impl MapId) -> Result<u64> {
        let info = m.info()?;
        if info.chunked() {
            return self.chunked_memlock(info);
        }
        if info.grown() {
            return self.grown_memlock(info);
        }
        fd_memlock(self.handle(info)?, info.name)
    }

    pub fn map_type(&self, m: impl MapId) -> Result<MapType> {
        Ok(self.handle(m)?.map_type())
    }

    /// Sum of a per-CPU u64 counter slot.
    pub fn percpu_sum(&self, m: impl MapOf<u32, u64>, idx: u32) -> Result<u64> {
        let (info, h) = self.typed(m)?;
        let vals = h
            .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
            .ctx(|| format!("reading {}", info.name))?;
        let mut n = 0u64;
        for v in vals.unwrap_or_default() {
            n += named(from_bytes::<u64>(&v), info.name)?;
        }
        Ok(n)
    }

    pub fn config(&self) -> Result<types::zfw_config> {
        Ok(self.get(&defs::CONFIG_MAP, &0)?.unwrap_or_default())
    }

    pub fn set_config(&self, c: &types::zfw_config) -> Result<()> {
        self.put(&defs::CONFIG_MAP, &0, c)
    }

    /// Every (slot, CPU's value) of a per-CPU array of plain values.
    pub fn percpu_entries<V: plain::Plain + Default>(
        &self,
        m: impl MapOf<u32, V>,
    ) -> Result<Vec<(u32, Vec<V>)>> {
        let (info, h) = self.typed(m)?;
        let mut out = Vec::new();
        for i in 0..h.max_entries() {
            if let Some(vals) = h
                .lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                .ctx(|| format!("reading {}", info.name))?
            {
                let per_cpu = vals
                    .iter()
                    .map(|b| named(from_bytes(b), info.name))
                    .collect::<Result<Vec<V>>>()?;
                out.push((i, per_cpu));
            }
        }
        Ok(out)
    }

    /// The distinct cached decisions of matched_map (slots are per CPU;
    /// the same decision may sit in several CPUs' slots).
    pub fn cached_decisions(&self) -> Result<Vec<types::zfw_match_slot>> {
        // a set of the keys seen: linear in slots × CPUs (a list search
        // here made `status` after a flood quadratic)
        let mut keys: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let mut seen: Vec<types::zfw_match_slot> = Vec::new();
        for (_, per_cpu) in self.percpu_entries(&defs::MATCHED_MAP)? {
            for s in per_cpu {
                if s.key.family != 0 && keys.insert(bytes_of(&s.key).to_vec()) {
                    seen.push(s);
                }
            }
        }
        Ok(seen)
    }

    /// Interface settings (diag_map) keyed by ifindex.
    pub fn ifaces(&self) -> Result<Vec<(u32, types::zfw_iface)>> {
        let mut v = self.array_entries(&defs::DIAG_MAP)?;
        v.retain(|(_, st)| st.hooks | st.flags != 0);
        v.sort_by_key(|(i, _)| *i);
        Ok(v)
    }
}

/// Every (key, value) of map `h`, read key by key (when batch reads are
/// refused).
fn keywise<K: plain::Plain + Default, V: plain::Plain + Default>(
    h: &MapHandle,
    name: &str,
) -> Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    for k in h.keys() {
        if let Some(v) = h
            .lookup(&k, MapFlags::ANY)
            .ctx(|| format!("reading {name}"))?
        {
            out.push(pair(name, &k, &v)?);
        }
    }
    Ok(out)
}

/// The memlock figure of map `h`'s fdinfo (what bpftool shows as
/// bytes_memlock).
fn fd_memlock(h: &MapHandle, name: &str) -> Result<u64> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = h.as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ctx(|| format!("reading the fdinfo of {name}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::runtime(format!("no memlock figure for {name}")))
}

/// A chunked map's key: its slot number.
fn slot(key: &[u8]) -> Result<u32> {
    key.try_into()
        .map(u32::from_ne_bytes)
        .map_err(|_| Error::runtime("a chunked map's key is a 4-byte slot number"))
}

/// One (key, value) out of map bytes; the error names the map.
fn pair<K: plain::Plain + Default, V: plain::Plain + Default>(
    name: &str,
    k: &[u8],
    v: &[u8],
) -> Result<(K, V)> {
    Ok((named(from_bytes(k), name)?, named(from_bytes(v), name)?))
}

/// A decoding error, naming the map it came from.
fn named<T>(r: Result<T>, name: &str) -> Result<T> {
    r.map_err(|e| Error::runtime(format!("reading {name}: {e}")))
}
