//! Connection state as user space sees it: `zfw conntrack list|flush` and
//! `zfw gc`.  The datapath's tables and timeouts are described in
//! src/bpf/conntrack.h; the timeouts come from zfw_abi.h.

use std::io::Write;

use serde::Serialize;

use crate::decode;
use crate::error::{Error, Result};
use crate::maps::defs::{FlowTable, CT_EPOCH_MAP, FLOW_TABLES};
use crate::maps::{pending, Maps};
use crate::net::IPPROTO_TCP;
use crate::skel::{bytes_of, types};

mod row;
pub use row::FlowRow;

/// One tracked flow as `conntrack list` and `dump` show it: its names as
/// `S` (owned, or borrowed while a list is written: [`FlowRow`]) and its
/// addresses as `A`.
#[derive(Debug, Clone, Serialize)]
pub struct Flow<S, A> {
    pub direction: S,
    pub map: S,
    /// Seen both ways (TCP: handshake completed): in a main table, which a
    /// flood of new flows cannot evict (README "Table pressure").
    pub assured: bool,
    pub family: S,
    pub proto: S,
    pub src: A,
    pub sport: u16,
    pub dst: A,
    pub dport: u16,
    pub iface: S,
    pub ifindex: u32,
    pub state: S,
    pub age_s: f64,
    pub idle_s: f64,
    pub expired: bool,
    pub packets_orig: u64,
    pub packets_reply: u64,
    pub bytes_orig: u64,
    pub bytes_reply: u64,
}

/// A flow, owned (`conntrack::list`, `dump`).
pub type FlowView = Flow<String, String>;

/// Idle limit of an entry in seconds (the datapath's rule, see conntrack.h).
pub fn timeout_s(proto: u8, state: u8) -> u64 {
    use crate::skel::names as n;
    let s = match proto {
        IPPROTO_TCP => match i64::from(state) {
            n::ZFW_TCP_ESTABLISHED => n::ZFW_TCP_EST_TIMEOUT_S,
            n::ZFW_TCP_SYN_SENT | n::ZFW_TCP_SYN_RECV => n::ZFW_TCP_OPEN_TIMEOUT_S,
            _ => n::ZFW_TCP_CLOSE_TIMEOUT_S,
        },
        // UDP and ICMP echo: the datapath's one datagram timeout
        _ => n::ZFW_UDP_TIMEOUT_S,
    };
    s as u64
}

pub(crate) fn is_expired(now: u64, k: &types::zfw_flow_key, f: &types::zfw_flow) -> bool {
    now.saturating_sub(f.last_ns) > timeout_s(k.proto, f.state) * 1_000_000_000
}

/// One flow as `conntrack list` and `dump` show it (its row, owned).
pub fn view(now: u64, table: &FlowTable, k: &types::zfw_flow_key, f: &types::zfw_flow) -> FlowView {
    row::Names::default().row(now, table, k, f).to_view()
}

/// Entries per batch read and delete of a flow table (README "Memory"):
/// a table of a million flows is a hundred-odd calls each way.
const BATCH: u32 = 8192;

/// A batch of one flow table (its index in `FLOW_TABLES`), or why the
/// reader stopped.
type Batch = Result<(usize, Vec<(types::zfw_flow_key, types::zfw_flow)>)>;

/**
 * Hand `f` every tracked flow, table by table in the order of
 * `FLOW_TABLES`, each once, its counters including packets still counted in
 * the flow caches.  The tables are read in batches (a million flows cost a
 * few hundred syscalls), by a thread of their own a few batches ahead of
 * `f`: the kernel's copying and the caller's formatting overlap (README
 * "Memory" has the figures).  A row borrows what it repeats
 * ([`row::Names`]).
 */
pub fn for_each_row(maps: &Maps, mut f: impl FnMut(&FlowRow) -> Result<()>) -> Result<()> {
    let now = decode::mono_now_ns();
    let pending = pending::flows(maps)?;
    let mut names = row::Names::default();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
    std::thread::scope(|s| {
        s.spawn(move || {
            for (i, t) in FLOW_TABLES.iter().enumerate() {
                // a send fails only when the consumer stopped: so does this
                let r = maps.for_each_batch(t.def, BATCH, |b| {
                    tx.send(Ok((i, b.to_vec())))
                        .map_err(|_| Error::runtime("the flow list stopped"))
                });
                if let Err(e) = r {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        });
        for msg in rx {
            let (i, batch) = msg?;
            let t = &FLOW_TABLES[i];
            // the flow caches count under the assured table's name (pending.rs)
            let map = t.main.info.name;
            for (k, f0) in &batch {
                let mut fl = *f0;
                if !pending.is_empty() {
                    if let Some(p) = pending.get(&(map, bytes_of(k).to_vec())) {
                        fl.pkts_orig += p[0];
                        fl.bytes_orig += p[1];
                        fl.pkts_reply += p[2];
                        fl.bytes_reply += p[3];
                    }
                }
                f(&names.row(now, t, k, &fl))?;
            }
        }
        Ok(())
    })
}

/// Every tracked flow (see [`for_each_row`]), owned.
pub fn list(maps: &Maps) -> Result<Vec<FlowView>> {
    let mut out = Vec::new();
    for_each_row(maps, |r| {
        out.push(r.to_view());
        Ok(())
    })?;
    Ok(out)
}

/**
 * `conntrack list --json`: the JSON array of every flow, written to `w` as
 * the tables are read (the document serde makes of a `Vec<FlowView>`,
 * pretty, then a newline: [`FlowRow::write_json`]), never built whole in
 * memory.  A failed write is `Error::Output` (src/out.rs).
 */
pub fn write_json(maps: &Maps, w: &mut impl Write) -> Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    buf.push(b'[');
    let mut n = 0;
    for_each_row(maps, |r| {
        r.write_json(&mut buf, n);
        n += 1;
        if buf.len() >= 1 << 16 {
            w.write_all(&buf).map_err(Error::Output)?;
            buf.clear();
        }
        Ok(())
    })?;
    buf.extend_from_slice(if n == 0 { b"]\n" } else { b"\n]\n" });
    w.write_all(&buf)
        .and_then(|()| w.flush())
        .map_err(Error::Output)
}

/**
 * Make every CPU's flow cache forget what it holds: after user space removed
 * flow entries, their cached verdicts must not outlive them.  The global
 * slot of ct_epoch_map is written only here (under the root's lock), so a
 * read-add-write cannot undo a bump of the datapath's (it bumps buckets).
 */
pub fn invalidate_flow_caches(maps: &Maps) -> Result<()> {
    let global = crate::skel::names::ZFW_CT_EPOCH_BUCKETS as u32;
    let v = maps.get(&CT_EPOCH_MAP, &global)?.unwrap_or(0);
    maps.put(&CT_EPOCH_MAP, &global, &v.wrapping_add(1))
}

/// Delete from every flow table the entries `doomed` picks, a batch read
/// at a time, each batch's picks in one batch delete (no call per entry);
/// returns how many were deleted (an entry gone meanwhile is not counted).
fn remove_where(
    maps: &Maps,
    mut doomed: impl FnMut(&types::zfw_flow_key, &types::zfw_flow) -> bool,
) -> Result<usize> {
    let mut n = 0;
    let mut keys = Vec::new();
    for t in &FLOW_TABLES {
        let h = maps.handle(t.def)?;
        let name = t.def.info.name;
        maps.for_each_batch(t.def, BATCH, |batch| {
            keys.clear();
            for (k, f) in batch {
                if doomed(k, f) {
                    keys.extend_from_slice(bytes_of(k));
                }
            }
            n += crate::maps::batch::delete(h, name, &keys, BATCH)?;
            Ok(())
        })?;
    }
    Ok(n)
}

/// Remove every flow; returns how many.
pub fn flush(maps: &Maps) -> Result<usize> {
    let n = remove_where(maps, |_, _| true)?;
    invalidate_flow_caches(maps)?;
    Ok(n)
}

/// Remove flows past their idle limit; returns how many.
pub fn gc(maps: &Maps) -> Result<usize> {
    let now = decode::mono_now_ns();
    let n = remove_where(maps, |k, f| is_expired(now, k, f))?;
    if n > 0 {
        invalidate_flow_caches(maps)?;
    }
    Ok(n)
}

/// `conntrack list`: the table for people, written to `w` row by row as
/// the tables are read.  A failed write is `Error::Output`.
pub fn write_table(maps: &Maps, w: &mut impl Write) -> Result<()> {
    let out = |w: &mut dyn Write, s: String| w.write_all(s.as_bytes()).map_err(Error::Output);
    out(
        w,
        format!(
            "{:<9} {:<6} {:<44} {:<44} {:<12} {:<12} {:<9} {:>8} {:>8} {:>10}\n",
            "DIR",
            "PROTO",
            "SOURCE",
            "DESTINATION",
            "IFACE",
            "STATE",
            "ASSURED",
            "AGE",
            "IDLE",
            "PKTS"
        ),
    )?;
    let mut n = 0usize;
    for_each_row(maps, |f| {
        n += 1;
        out(w, table_row(f))
    })?;
    out(
        w,
        format!("{n} flows (* = expired, removed by `zfw gc` or the next packet)\n"),
    )?;
    w.flush().map_err(Error::Output)
}

fn table_row(f: &FlowRow) -> String {
    format!(
        "{:<9} {:<6} {:<44} {:<44} {:<12} {:<12} {:<9} {:>8.1} {:>8.1} {:>10}\n",
        f.direction,
        f.proto,
        endpoint(f.src, f.sport),
        endpoint(f.dst, f.dport),
        f.iface,
        if f.expired {
            format!("{}*", f.state)
        } else {
            f.state.to_string()
        },
        if f.assured { "assured" } else { "unassured" },
        f.age_s,
        f.idle_s,
        f.packets_orig + f.packets_reply
    )
}

fn endpoint(a: std::net::IpAddr, p: u16) -> String {
    if a.is_ipv6() {
        format!("[{a}]:{p}")
    } else {
        format!("{a}:{p}")
    }
}
