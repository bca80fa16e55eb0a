//! Audit cost: `zfw dump` of a full conntrack table.

use libbpf_rs::MapCore;
use zfw::bpffs::Root;
use zfw::maps::defs::{MATCHED_MAP, TCP_MAP};
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
        memlock_bytes: None,
    }])
}

/// `zfw status` with matched_map full on every CPU (as after a random-source
/// flood): every slot holds a decision, half of them the same on all CPUs.
pub fn status_cases(root: &Root) -> zfw::Result<Vec<Case>> {
    let maps = Maps::open(root)?;
    let h = maps.handle(&MATCHED_MAP)?;
    let cpus = libbpf_rs::num_possible_cpus()
        .map_err(|e| zfw::Error::runtime(format!("bench: counting CPUs: {e}")))?;
    let slots = h.max_entries();
    for i in 0..slots {
        let vals: Vec<Vec<u8>> = (0..cpus as u32)
            .map(|c| {
                let mut k = types::zfw_match_key {
                    family: AF_INET,
                    proto: IPPROTO_TCP,
                    dport: 443,
                    ifindex: 1,
                    ..Default::default()
                };
                // odd slots: one decision per CPU; even: shared by all CPUs
                let c = if i % 2 == 1 { c } else { 0 };
                k.src[0] = (c << 20 | i).to_be();
                let s = types::zfw_match_slot {
                    key: k,
                    ..Default::default()
                };
                bytes_of(&s).to_vec()
            })
            .collect();
        h.update_percpu(&i.to_ne_bytes(), &vals, libbpf_rs::MapFlags::ANY)
            .map_err(|e| {
                zfw::Error::runtime(format!("bench: filling {}: {e}", MATCHED_MAP.info.name))
            })?;
    }
    let want = (slots as usize).div_ceil(2) + (slots as usize / 2) * cpus;
    let t = std::time::Instant::now();
    let st = zfw::status::status(root)?;
    let ns = t.elapsed().as_nanos() as f64;
    let got = maps.cached_decisions()?.len();
    let empty = vec![vec![0u8; std::mem::size_of::<types::zfw_match_slot>()]; cpus];
    for i in 0..slots {
        h.update_percpu(&i.to_ne_bytes(), &empty, libbpf_rs::MapFlags::ANY)
            .map_err(|e| zfw::Error::runtime(format!("bench: emptying matched_map: {e}")))?;
    }
    if got != want || st.maps.is_empty() {
        return Err(zfw::Error::runtime(format!(
            "bench: status saw {got} of {want} cached decisions"
        )));
    }
    Ok(vec![Case {
        name: format!(
            "status, {} full on {cpus} CPUs ({got} decisions): ns per slot (total {:.0} ms)",
            MATCHED_MAP.info.name,
            ns / 1e6
        ),
        rules: 0,
        ns: ns / (slots as usize * cpus) as f64,
        floor_ns: None,
        memlock_bytes: None,
    }])
}
