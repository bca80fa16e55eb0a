//! The rule maps' memory follows the rules (ARCHITECTURE.md §6 "Chunks",
//! "Grown tables"; README "Memory"): range_map and service_map hold chunks
//! only where rules' ranges are, tproxy_map's table is made for the keys
//! present and replaced by a larger or smaller copy as they come and go.
//! An empty policy costs the outer arrays; a set that shrinks or goes
//! gives its memory back.  Verdicts are those of the rules also for a key
//! whose ranges straddle two chunks, and across a table's replacement.

mod common;

use libbpf_rs::MapCore;

use common::fixture::*;
use common::packet::*;
use common::rulemodel::rule;
use zfw::maps::chunked::{split, SLOTS};
use zfw::maps::defs::{RANGE_MAP, SERVICE_MAP, TPROXY_MAP};
use zfw::maps::Maps;
use zfw::rules::live;
use zfw::rules::model::{Action, Rule};
use zfw::rules::store;

/// Bytes of one range chunk (32-byte slots).
const CHUNK_BYTES: u64 = SLOTS as u64 * 32;

fn chunks(maps: &Maps) -> (usize, usize) {
    (
        maps.chunk_numbers(&RANGE_MAP.info).unwrap().len(),
        maps.chunk_numbers(&SERVICE_MAP.info).unwrap().len(),
    )
}

fn verdict(f: &Fixture, dst: &str, port: u16) -> bool {
    f.allowed(&tcp("198.51.100.1", 40000, dst, port, TCP_SYN))
}

/// Key `k`'s destination.
fn dst(k: u32) -> String {
    format!("10.{}.{}.{}", 1 + k / 62500, (k / 250) % 250, k % 250 + 1)
}

/// `keys` keys of three port ranges each (ports 1000, 2000, 3000); the
/// third range of key `labelled` has a service id.
fn rules(keys: u32, labelled: u32) -> Vec<Rule> {
    let mut v = Vec::new();
    for k in 0..keys {
        for p in [1000, 2000, 3000] {
            let mut r = rule(
                &format!("{}/32", dst(k)),
                "0.0.0.0/0",
                &p.to_string(),
                Action::Allow,
            );
            if k == labelled && p == 3000 {
                r.service_id = Some("straddler".into());
            }
            v.push(r);
        }
    }
    v
}

#[test]
fn rule_maps_hold_chunks_only_where_ranges_are_and_give_them_back() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    assert_eq!(chunks(&maps), (0, 0), "an empty policy has no chunks");
    let idle = maps.memlock(&RANGE_MAP).unwrap() + maps.memlock(&SERVICE_MAP).unwrap();
    assert!(idle < 16 * 1024, "idle rule maps hold {idle} bytes");

    // 5,462 keys of 3 ranges fill one chunk and 2 slots of the next: the key
    // whose span starts at the chunk's last slot straddles the two
    let n = SLOTS / 3 + 1;
    let straddler = SLOTS / 3;
    store::replace_all(&maps, &rules(n, straddler)).unwrap();
    let set = store::active_set(&maps).unwrap();
    let keys = live::set_keys(&maps, set).unwrap();
    let crossing: Vec<_> = keys
        .iter()
        .filter(|(_, sp)| split(sp.first).0 != split(sp.first + sp.count - 1).0)
        .collect();
    assert_eq!(crossing.len(), 1, "one key straddles two chunks");
    assert_eq!(
        chunks(&maps),
        (2, 1),
        "range chunks for 16,386 slots; one service chunk"
    );
    let used = maps.memlock(&RANGE_MAP).unwrap();
    assert!(
        (2 * CHUNK_BYTES..2 * CHUNK_BYTES + 64 * 1024).contains(&used),
        "range_map holds {used} bytes for two chunks"
    );
    // every range of the straddling key decides, in both chunks, and its
    // service id (in the second chunk) is listed
    let k = crossing[0].0;
    let dp = live::decode_key(&k).unwrap().3.to_string();
    let d = dp.trim_end_matches("/32").to_string();
    for p in [1000, 2000, 3000] {
        assert!(verdict(&f, &d, p), "{d}:{p}");
    }
    assert!(!verdict(&f, &d, 4000), "{d}:4000 has no rule");
    assert!(
        verdict(&f, &dst(n - 1), 3000),
        "the last key, in the second chunk"
    );
    let listed = store::read_live(&maps).unwrap();
    assert_eq!(listed.len(), 3 * n as usize);
    assert!(listed
        .iter()
        .any(|r| r.service_id.as_deref() == Some("straddler") && r.dst.to_string() == dp));

    // ten rules: the new set takes one chunk, the old set's go
    store::replace_all(&maps, &rules(3, u32::MAX)[..9]).unwrap();
    assert_eq!(chunks(&maps), (1, 0));
    assert!(verdict(&f, &dst(2), 3000));
    assert!(!verdict(&f, &d, 1000), "the old rules are gone");
    store::replace_all(&maps, &[]).unwrap();
    assert_eq!(chunks(&maps), (0, 0), "no rules, no chunks");
    let after = maps.memlock(&RANGE_MAP).unwrap() + maps.memlock(&SERVICE_MAP).unwrap();
    assert_eq!(after, idle);
}

/// `n` single-range keys 10.K.K.K/32 port 443.
fn keys(n: u32) -> Vec<Rule> {
    (0..n)
        .map(|k| rule(&format!("{}/32", dst(k)), "0.0.0.0/0", "443", Action::Allow))
        .collect()
}

#[test]
fn tproxy_maps_table_grows_with_the_keys_and_shrinks_after_them() {
    require_priv!();
    let f = Fixture::new();
    let maps = f.root.maps();
    assert_eq!(
        maps.table_size(&TPROXY_MAP.info).unwrap(),
        None,
        "no rule, no table"
    );
    assert!(maps.memlock(&TPROXY_MAP).unwrap() < 4096);
    // a whole set of 5,000 keys: a table with room for them
    store::replace_all(&maps, &keys(5000)).unwrap();
    let size = maps.table_size(&TPROXY_MAP.info).unwrap().unwrap();
    let flags = maps
        .table(&TPROXY_MAP.info)
        .unwrap()
        .unwrap()
        .info()
        .unwrap()
        .info
        .map_flags;
    assert_eq!(flags & 1, 1, "the table is BPF_F_NO_PREALLOC");
    assert!(
        (5000..=16384).contains(&size),
        "a table of {size} for 5,000 keys"
    );
    assert!(verdict(&f, &dst(0), 443) && verdict(&f, &dst(4999), 443));
    // ten keys: the next whole-set write leaves a table that fits them
    store::replace_all(&maps, &keys(10)).unwrap();
    assert_eq!(maps.table_size(&TPROXY_MAP.info).unwrap(), Some(1024));
    assert!(verdict(&f, &dst(9), 443));
    assert!(!verdict(&f, &dst(4999), 443), "gone with the old set");
    // single adds past the table's size: it is replaced by a larger copy,
    // every key decides all along
    for k in 10..1100 {
        store::add(&maps, keys(k + 1).pop().unwrap()).unwrap();
    }
    let size = maps.table_size(&TPROXY_MAP.info).unwrap().unwrap();
    assert!(size >= 1100, "table of {size} for 1,100 keys");
    assert_eq!(maps.count(&TPROXY_MAP).unwrap(), 1100);
    for k in [0, 9, 10, 1023, 1024, 1099] {
        assert!(verdict(&f, &dst(k), 443), "key {k}");
    }
    // a flush keeps a table at most four times the smallest (2,048 here)
    store::replace_all(&maps, &[]).unwrap();
    let size = maps.table_size(&TPROXY_MAP.info).unwrap().unwrap();
    assert!(size <= 4 * 1024, "a table of {size} for no key");
    assert_eq!(maps.count(&TPROXY_MAP).unwrap(), 0);
}

#[test]
fn tproxy_maps_capacity_is_the_map_size_of_the_first_load() {
    require_priv!();
    let f = Fixture::with_sizes(&[("tproxy_map", 50)]);
    let maps = f.root.maps();
    assert_eq!(maps.max_entries(&TPROXY_MAP).unwrap(), 50);
    store::replace_all(&maps, &keys(20)).unwrap();
    // 20 live keys and 31 new ones do not fit 50: refused, nothing changed
    let e = store::replace_all(&maps, &keys(31)).unwrap_err();
    assert!(e.to_string().contains("tproxy_map is full"), "{e}");
    assert_eq!(store::read_live(&maps).unwrap().len(), 20);
    store::replace_all(&maps, &keys(30)).unwrap();
    assert_eq!(store::read_live(&maps).unwrap().len(), 30);
}
