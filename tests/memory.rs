//! Memory that follows use (README "Memory"): `status` shows each map's
//! kernel memory as bpftool reports it, and the hash maps only user space
//! writes are not preallocated, so their memory grows with their entries.

mod common;

use common::fixture::*;
use common::*;

/// bpftool's view of a pinned map: (bytes_memlock, flags).
fn bpftool(root: &BpfRoot, map: &str) -> (u64, u64) {
    let pin = root.dir.join("maps").join(map);
    let o = sh(
        "bpftool",
        &["-j", "map", "show", "pinned", &pin.display().to_string()],
    );
    assert!(o.status.success(), "bpftool on {map}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        v["bytes_memlock"].as_u64().unwrap(),
        v["flags"].as_u64().unwrap_or(0),
    )
}

fn status(root: &BpfRoot) -> serde_json::Value {
    let out = zfw(None, root, &["status", "--json"]).ok().stdout;
    serde_json::from_str(&out).unwrap()
}

fn memory(st: &serde_json::Value, map: &str) -> u64 {
    st["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == map)
        .unwrap_or_else(|| panic!("status lacks {map}"))["memory_bytes"]
        .as_u64()
        .unwrap()
}

/// The plain hash maps (ARCHITECTURE.md §6): those only user space writes,
/// and those the datapath inserts into once per new mapping or interface
/// (tproxy_map's table, made as rules come, is checked in tests/chunks.rs).
const NOT_PREALLOCATED: [&str; 14] = [
    "tcp_map",
    "udp_map",
    "tcp_ingress_map",
    "udp_ingress_map",
    "ifindex_ip_map",
    "ifindex_ip6_map",
    "ifindex_tun_map",
    "ddos_dport_map",
    "ddos_saddr_map",
    "dnp3_fcode_map",
    "masquerade_map",
    "masquerade_reverse_map",
    "icmp_masquerade_map",
    "syn_count_map",
];

#[test]
fn status_shows_each_maps_memory_and_user_written_hashes_follow_use() {
    require_priv!();
    const ADDRS: u64 = 2000;
    let f = Fixture::new();
    let st = status(&f.root);
    let mut sum = 0;
    for m in st["maps"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let (bytes, _) = bpftool(&f.root, name);
        assert_eq!(m["memory_bytes"].as_u64(), Some(bytes), "{name}");
        sum += bytes;
    }
    assert_eq!(st["memory_bytes"].as_u64(), Some(sum));
    for name in NOT_PREALLOCATED {
        let (_, flags) = bpftool(&f.root, name);
        assert_eq!(
            flags & 1,
            1,
            "{name} is preallocated (BPF_F_NO_PREALLOC unset)"
        );
    }
    let text = zfw(None, &f.root, &["status"]).ok().stdout;
    assert!(text.contains("MEMORY"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("total ")), "{text}");

    // ADDRS whitelist entries: ddos_saddr_map's memory grows by at least
    // their elements (it would not move if it were preallocated)
    let before = memory(&st, "ddos_saddr_map");
    let allow: Vec<String> = (0..ADDRS)
        .map(|i| format!("\"10.9.{}.{}\"", i / 250, i % 250 + 1))
        .collect();
    let policy = format!("{{\"ddos\": {{\"allow\": [{}]}}}}", allow.join(","));
    let file = std::env::temp_dir().join(format!("{}.json", unique("zfwmem")));
    std::fs::write(&file, policy).unwrap();
    let r = zfw(None, &f.root, &["apply", &file.display().to_string()]);
    let _ = std::fs::remove_file(&file);
    r.ok();
    let after = memory(&status(&f.root), "ddos_saddr_map");
    let elem = std::mem::size_of::<zfw::skel::types::zfw_addr_key>() as u64 + 4;
    assert!(
        after >= before + ADDRS * elem,
        "ddos_saddr_map: {before} -> {after} bytes for {ADDRS} entries"
    );
    assert_eq!(after, bpftool(&f.root, "ddos_saddr_map").0);
}

/// An older zfw's map (preallocated) stays in use, entries and flags
/// kept, when a newer build replaces the programs over it: libbpf would
/// refuse to reuse a pinned map whose flags differ from the object's.
#[test]
fn a_preallocated_map_of_an_older_build_is_reused_as_it_is() {
    require_priv!();
    use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
    let lab = Lab::new();
    lab.load();
    lab.zfw(&["ddos", "allow", "add", "10.9.0.1"]).ok();
    // the pin becomes a preallocated map of the same shape and contents,
    // as zfw builds before this one created it
    let pin = lab.root.dir.join("maps").join("ddos_saddr_map");
    let old = MapHandle::from_pinned_path(&pin).unwrap();
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: 0,
        ..Default::default()
    };
    let mut prealloc = MapHandle::create(
        MapType::Hash,
        Some("ddos_saddr_map"),
        old.key_size(),
        old.value_size(),
        old.max_entries(),
        &opts,
    )
    .unwrap();
    for k in old.keys() {
        let v = old.lookup(&k, MapFlags::ANY).unwrap().unwrap();
        prealloc.update(&k, &v, MapFlags::ANY).unwrap();
    }
    drop(old);
    std::fs::remove_file(&pin).unwrap();
    prealloc.pin(&pin).unwrap();
    assert_eq!(bpftool(&lab.root, "ddos_saddr_map").1 & 1, 0);
    // pretend the pinned programs come from another build
    lab.pretend_another_build();
    let r = lab.zfw(&["load", "--iface", "srv0"]).ok();
    assert!(r.stdout.contains("programs replaced"), "{}", r.stdout);
    assert_eq!(
        bpftool(&lab.root, "ddos_saddr_map").1 & 1,
        0,
        "the old map is still the pinned one"
    );
    let list = lab.zfw(&["ddos", "allow", "list"]).ok().stdout;
    assert!(list.contains("10.9.0.1"), "{list}");
}
