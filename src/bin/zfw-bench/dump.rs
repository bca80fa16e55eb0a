//! Audit cost: `zfw dump` of a full conntrack table.

use libbpf_rs::MapCore;
use zfw::bpffs::Root;
use zfw::maps::defs::TCP_MAP;
use zfw::maps::Maps;
use zfw::net::{AF_INET, IPPROTO_TCP};
use zfw::skel::{bytes_of, names, types};

use super::Case;

/// Fill tcp_map with `n` flows, time decoding it as `zfw dump` does, clean up.
pub fn dump_cases(root: &Root, n: u32) -> zfw::Result<Vec<Case>> {
    let maps = Maps::open(root)?;
    let h = maps.handle(&TCP_MAP)?;
    let n = n.min(h.max_entries());
    let now = zfw::decode::mono_now_ns();
    let mut keys = Vec::with_capacity(n as usize * std::mem::size_of::<types::zfw_flow_key>());
    let mut vals = Vec::with_capacity(n as usize * std::mem::size_of::<types::zfw_flow>());
    for i in 0..n {
        let mut k = types::zfw_flow_key {
            sport: (i % 60000) as u16 + 1024,
            dport: 443,
            ifindex: 1,
            family: AF_INET,
            proto: IPPROTO_TCP,
            ..Default::default()
        };
        k.saddr[0] = u32::from_ne_bytes([10, 0, 0, 2]);
        k.daddr[0] = u32::from_ne_bytes((0xc000_0000u32 | (i / 60000) << 8 | 1).to_be_bytes());
        let f = types::zfw_flow {
            first_ns: now,
            last_ns: now,
            state: names::ZFW_TCP_ESTABLISHED as u8,
            pkts_orig: 1,
            ..Default::default()
        };
        keys.extend_from_slice(bytes_of(&k));
        vals.extend_from_slice(bytes_of(&f));
    }
    h.update_batch(
        &keys,
        &vals,
        n,
        libbpf_rs::MapFlags::ANY,
        libbpf_rs::MapFlags::ANY,
    )
    .map_err(|e| zfw::Error::runtime(format!("bench: filling {}: {e}", TCP_MAP.info.name)))?;
    let filled = maps.count(&TCP_MAP)?;
    let t = std::time::Instant::now();
    let v = zfw::dump::dump_map(&maps, &TCP_MAP.info)?;
    let ns = t.elapsed().as_nanos() as f64;
    let decoded = v["entries"].as_array().map(|a| a.len()).unwrap_or(0);
    zfw::conntrack::flush(&maps)?;
    if decoded != filled {
        return Err(zfw::Error::runtime(format!(
            "bench: dump decoded {decoded} of {filled} flows"
        )));
    }
    Ok(vec![Case {
        name: format!(
            "dump {}, {filled} flows: ns per flow (total {:.0} ms)",
            TCP_MAP.info.name,
            ns / 1e6
        ),
        rules: 0,
        ns: ns / filled.max(1) as f64,
        floor_ns: None,
    }])
}
