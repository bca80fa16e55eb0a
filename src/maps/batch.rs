//! Batch reads (BPF_MAP_LOOKUP_BATCH) that report their failures.
//!
//! libbpf-rs 0.27's `lookup_batch` iterator ends silently on any error but
//! ENOENT, which would make a short read look like a smaller map.  This
//! loop calls libbpf directly: ENOENT ends the walk (the count returned
//! with it is valid), EINTR retries, ENOSPC (a hash bucket larger than the
//! batch) retries with a bigger batch, anything else is an error the
//! caller sees.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapHandle};
use nix::libc;

use crate::error::{Error, Result};

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

/**
 * Read the entries of `h` in batches of `batch`.  For an ARRAY map
 * `range` limits the read to the slots `[lo, hi)` (hash maps: None).
 * The error names `name`.
 */
pub fn read(h: &MapHandle, name: &str, batch: u32, range: Option<(u32, u32)>) -> Result<Entries> {
    let ks = h.key_size() as usize;
    let vs = h.value_size() as usize;
    let mut out = Entries {
        key_size: ks,
        value_size: vs,
        keys: Vec::new(),
        values: Vec::new(),
    };
    let (lo, hi) = range.unwrap_or((0, u32::MAX));
    if lo >= hi {
        return Ok(out);
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
    let fd = h.as_fd().as_raw_fd();
    loop {
        let mut count = match range {
            Some(_) => want.min(hi.saturating_sub(lo + out.len() as u32)),
            None => want,
        };
        if count == 0 {
            return Ok(out);
        }
        let kbuf_at = out.keys.len();
        let vbuf_at = out.values.len();
        out.keys.resize(kbuf_at + ks * count as usize, 0);
        out.values.resize(vbuf_at + vs * count as usize, 0);
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        let prev_ptr = prev
            .as_mut()
            .map_or(std::ptr::null_mut(), |p| p.as_mut_ptr());
        // SAFETY: the key/value buffers hold `count` entries past their
        // offsets, the cursors hold cur_size >= what the kernel writes, and
        // the fd is a live map borrowed from `h` for the call.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                prev_ptr.cast(),
                next.as_mut_ptr().cast(),
                out.keys.as_mut_ptr().add(kbuf_at).cast(),
                out.values.as_mut_ptr().add(vbuf_at).cast(),
                &mut count,
                &opts,
            )
        };
        let err = if ret < 0 { -ret } else { 0 };
        if err == libc::EINTR || err == libc::ENOSPC {
            out.keys.truncate(kbuf_at);
            out.values.truncate(vbuf_at);
            if err == libc::ENOSPC {
                want = want.saturating_mul(2);
            }
            continue;
        }
        if err != 0 && err != libc::ENOENT {
            return Err(Error::runtime(format!(
                "reading {name} in batches: {} (after {} entries)",
                std::io::Error::from_raw_os_error(err),
                kbuf_at / ks.max(1)
            )));
        }
        out.keys.truncate(kbuf_at + ks * count as usize);
        out.values.truncate(vbuf_at + vs * count as usize);
        if err == libc::ENOENT {
            return Ok(out);
        }
        prev = Some(next.clone());
    }
}
