//! Batch reads (BPF_MAP_LOOKUP_BATCH) that report their failures, and
//! batch writes (BPF_MAP_UPDATE_BATCH, BPF_MAP_DELETE_BATCH) that keep
//! the order of single writes ([`update`], [`delete`]).
//!
//! libbpf-rs 0.27's `lookup_batch` iterator ends silently on any error but
//! ENOENT, which would make a short read look like a smaller map.  This
//! loop calls libbpf directly: ENOENT ends the walk (the count returned
//! with it is valid), EINTR retries, ENOSPC (a hash bucket larger than the
//! batch) retries with a bigger batch, anything else is an error the
//! caller sees.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use nix::libc;

use crate::error::{Context, Error, Result};

/// Keys and values of a batch read, as flat buffers.
pub struct Entries {
    pub key_size: usize,
    pub value_size: usize,
    pub keys: Vec<u8>,
    pub values: Vec<u8>,
}

impl Entries {
    pub fn len(&self) -> usize {
        self.keys.len().checked_div(self.key_size).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.keys
            .chunks_exact(self.key_size)
            .zip(self.values.chunks_exact(self.value_size))
    }
}

/// Bytes of one entry's value in a batch buffer: the value, or for a
/// per-CPU map one copy per possible CPU, each rounded up to 8 bytes (the
/// kernel's layout; [`Entries::iter`] then yields all copies of an entry).
pub fn value_stride(h: &MapHandle) -> Result<usize> {
    let vs = h.value_size() as usize;
    if !h.map_type().is_percpu() {
        return Ok(vs);
    }
    let cpus = libbpf_rs::num_possible_cpus()
        .map_err(|e| Error::runtime(format!("counting the possible CPUs: {e}")))?;
    Ok(vs.div_ceil(8) * 8 * cpus)
}

/**
 * Write `count` entries (flat `keys`, and `values` laid out as
 * [`value_stride`] says) in one BPF_MAP_UPDATE_BATCH call; the error
 * names `name`.  (libbpf-rs's update_batch refuses per-CPU buffers.)
 */
pub fn write(h: &MapHandle, name: &str, keys: &[u8], values: &[u8], count: u32) -> Result<()> {
    let stride = value_stride(h)?;
    if count == 0 {
        return Ok(());
    }
    if keys.len() != h.key_size() as usize * count as usize
        || values.len() != stride * count as usize
    {
        return Err(Error::runtime(format!(
            "writing {name} in batches: buffers do not hold {count} entries"
        )));
    }
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut n = count;
    // SAFETY: both buffers hold `count` entries of the sizes the kernel
    // expects for this map (checked above), the fd is a live map.
    let ret = unsafe {
        libbpf_sys::bpf_map_update_batch(
            h.as_fd().as_raw_fd(),
            keys.as_ptr().cast(),
            values.as_ptr().cast(),
            &mut n,
            &opts,
        )
    };
    if ret < 0 {
        return Err(Error::runtime(format!(
            "writing {name} in batches: {} (after {n} entries)",
            std::io::Error::from_raw_os_error(-ret)
        )));
    }
    Ok(())
}

/**
 * Read the entries of `h` in batches of `batch`.  For an ARRAY map
 * `range` limits the read to the slots `[lo, hi)` (hash maps: None).
 * The error names `name`.
 */
pub fn read(h: &MapHandle, name: &str, batch: u32, range: Option<(u32, u32)>) -> Result<Entries> {
    let mut out = Entries {
        key_size: h.key_size() as usize,
        value_size: value_stride(h)?,
        keys: Vec::new(),
        values: Vec::new(),
    };
    walk(h, name, batch, range, |k, v| {
        out.keys.extend_from_slice(k);
        out.values.extend_from_slice(v);
        Ok(())
    })?;
    Ok(out)
}

/// How many entries a map holds, read in batches into one reused buffer:
/// a full table of a million flows costs a few hundred syscalls, not two
/// per key (README "Memory").
pub fn count(h: &MapHandle, name: &str, batch: u32) -> Result<usize> {
    let ks = (h.key_size() as usize).max(1);
    let mut n = 0;
    walk(h, name, batch, None, |k, _| {
        n += k.len() / ks;
        Ok(())
    })?;
    Ok(n)
}

/**
 * Walk the entries of `h` in batches of `batch`, handing `f` each batch's
 * keys and values as flat buffers (values laid out as [`value_stride`]
 * says), reused from one batch to the next, so a walk of a million flows
 * holds one batch in memory.  `range` as for [`read`].
 */
pub fn walk(
    h: &MapHandle,
    name: &str,
    batch: u32,
    range: Option<(u32, u32)>,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let ks = h.key_size() as usize;
    let vs = value_stride(h)?;
    let (lo, hi) = range.unwrap_or((0, u32::MAX));
    if lo >= hi {
        return Ok(());
    }
    // the batch cursor: opaque for hash maps (a bucket number), the last
    // key for arrays; 8 bytes cover both
    let cur_size = ks.max(8);
    let mut prev: Option<Vec<u8>> = None;
    if lo > 0 {
        // arrays: the walk starts after `prev`
        let mut p = vec![0u8; cur_size];
        p[..4].copy_from_slice(&(lo - 1).to_ne_bytes());
        prev = Some(p);
    }
    let mut next = vec![0u8; cur_size];
    let mut want = batch.max(1);
    let mut done = 0u32;
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let fd = h.as_fd().as_raw_fd();
    loop {
        let mut count = match range {
            Some(_) => want.min(hi.saturating_sub(lo + done)),
            None => want,
        };
        if count == 0 {
            return Ok(());
        }
        keys.resize(ks * count as usize, 0);
        values.resize(vs * count as usize, 0);
        let opts = opts();
        let prev_ptr = prev
            .as_mut()
            .map_or(std::ptr::null_mut(), |p| p.as_mut_ptr());
        // SAFETY: the key/value buffers hold `count` entries, the cursors
        // hold cur_size >= what the kernel writes, and the fd is a live map
        // borrowed from `h` for the call.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                prev_ptr.cast(),
                next.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let err = if ret < 0 { -ret } else { 0 };
        if err == libc::EINTR || err == libc::ENOSPC {
            if err == libc::ENOSPC {
                want = want.saturating_mul(2);
            }
            continue;
        }
        if err != 0 && err != libc::ENOENT {
            return Err(Error::runtime(format!(
                "reading {name} in batches: {} (after {done} entries)",
                std::io::Error::from_raw_os_error(err),
            )));
        }
        let got = count as usize;
        f(&keys[..ks * got], &values[..vs * got])?;
        done += count;
        if err == libc::ENOENT {
            return Ok(());
        }
        prev = Some(next.clone());
    }
}

/// The number of elements the kernel reports done after a batch write of
/// `asked` elements that returned `ret` (an older kernel leaves the count
/// as given when it fails before its first element).
fn done(ret: i32, count: u32, asked: u32) -> usize {
    if ret != 0 && count >= asked {
        0
    } else {
        count.min(asked) as usize
    }
}

/// One batch write call: from element `at`, `count` elements asked (and
/// set to those done); returns the call's result (0 or -errno).
type BatchCall<'a> = dyn FnMut(usize, &mut u32) -> i32 + 'a;

/**
 * Drive `n` element writes in order: `call` for up to `batch` elements at a
 * time, and `single` for an element a batch stopped at (whose error is the
 * one reported; Ok(false) when there was nothing to write), after which
 * batching goes on if the batch had made progress.  With `skip_missing`, an
 * element the batch stopped at with ENOENT is passed over (a delete of a
 * key already gone).  Returns how many elements were written (passed-over
 * ones not counted).
 */
fn drive(
    n: usize,
    batch: u32,
    skip_missing: bool,
    call: &mut BatchCall,
    single: &mut dyn FnMut(usize) -> Result<bool>,
) -> Result<usize> {
    let mut batching = true;
    let mut at = 0;
    let mut written = 0;
    while at < n {
        if batching {
            let asked = (n - at).min(batch.max(1) as usize) as u32;
            let mut count = asked;
            let ret = call(at, &mut count);
            let d = done(ret, count, asked);
            at += d;
            written += d;
            if ret == 0 {
                continue;
            }
            if skip_missing && -ret == libc::ENOENT {
                at += 1;
                continue;
            }
            batching = d > 0;
        }
        if single(at)? {
            written += 1;
        }
        at += 1;
    }
    Ok(written)
}

fn opts() -> libbpf_sys::bpf_map_batch_opts {
    libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    }
}

/**
 * Write `keys[i] -> values[i]` (flat buffers of the map's key and value
 * size) in BPF_MAP_UPDATE_BATCH calls of at most `batch` elements, in
 * order.  The kernel's batch loop (generic_map_update_batch) applies one
 * element at a time with the single-update code, and stops only at an
 * element boundary (an element that fails; a process killed meanwhile
 * returns when the call does): every state a reader sees, and every state
 * a kill leaves, is one of the sequence of single updates
 * (ARCHITECTURE.md §7).  An element the batch refuses is written alone,
 * whose error names `name`; a kernel without batch writes gets single
 * updates throughout.
 */
pub fn update(h: &MapHandle, name: &str, keys: &[u8], values: &[u8], batch: u32) -> Result<()> {
    let (ks, vs) = (h.key_size() as usize, h.value_size() as usize);
    let n = keys.len().checked_div(ks).unwrap_or(0);
    if values.len() != n * vs {
        return Err(Error::runtime(format!(
            "writing {name}: {n} keys, {} bytes of values",
            values.len()
        )));
    }
    let fd = h.as_fd().as_raw_fd();
    let o = opts();
    drive(
        n,
        batch,
        false,
        // SAFETY: both buffers hold `count` elements from element `at`
        // (checked above, and drive asks at most n - at); the kernel only
        // reads them, and the fd is a live map borrowed from `h`.
        &mut |at, count| unsafe {
            libbpf_sys::bpf_map_update_batch(
                fd,
                keys[at * ks..].as_ptr().cast(),
                values[at * vs..].as_ptr().cast(),
                count,
                &o,
            )
        },
        &mut |at| {
            h.update(
                &keys[at * ks..(at + 1) * ks],
                &values[at * vs..(at + 1) * vs],
                MapFlags::ANY,
            )
            .map(|()| true)
            .ctx(|| format!("writing {name}"))
        },
    )
    .map(drop)
}

/**
 * Delete `keys` (a flat buffer of the map's key size) in
 * BPF_MAP_DELETE_BATCH calls of at most `batch` elements, in order, with
 * the guarantees of [`update`].  A key that is not there is passed over
 * (the kernel's batch stops at it; the next call starts after it).
 * Returns how many keys were deleted (those passed over not counted).
 */
pub fn delete(h: &MapHandle, name: &str, keys: &[u8], batch: u32) -> Result<usize> {
    let ks = h.key_size() as usize;
    let n = keys.len().checked_div(ks).unwrap_or(0);
    let fd = h.as_fd().as_raw_fd();
    let o = opts();
    drive(
        n,
        batch,
        true,
        // SAFETY: `keys` holds `count` keys from element `at`; the kernel
        // only reads them; the fd is borrowed from `h`.
        &mut |at, count| unsafe {
            libbpf_sys::bpf_map_delete_batch(fd, keys[at * ks..].as_ptr().cast(), count, &o)
        },
        &mut |at| match h.delete(&keys[at * ks..(at + 1) * ks]) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx(|| format!("deleting from {name}")),
        },
    )
}
