//! range_map and service_map hold chunks only where rules are
//! (ARCHITECTURE.md §6 "Chunks", README "Memory"): an empty policy costs
//! their outer arrays, a rule set the chunks its ranges fill, and a set
//! that shrinks or goes gives its chunks back.  Verdicts are those of the
//! rules also for a key whose ranges straddle two chunks.

mod common;

use common::fixture::*;
use common::packet::*;
use common::rulemodel::rule;
use zfw::maps::chunked::{split, SLOTS};
use zfw::maps::defs::{RANGE_MAP, SERVICE_MAP};
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
