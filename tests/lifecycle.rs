//! `zfw load / unload / status` against a real kernel, in namespaces.

mod common;

use common::*;

fn tc_filters(ns: &Netns, dev: &str, dir: &str) -> String {
    String::from_utf8_lossy(&ns.exec("tc", &["filter", "show", "dev", dev, dir]).stdout)
        .into_owned()
}

#[test]
fn load_attaches_prio_1_and_2_and_egress_and_is_idempotent() {
    require_priv!();
    let lab = Lab::new();
    let r = lab.zfw(&["load", "--iface", "srv0"]).ok();
    assert!(r.stdout.contains("programs loaded"), "{}", r.stdout);
    let ing = tc_filters(&lab.server, "srv0", "ingress");
    assert!(
        ing.contains("pref 1 bpf") && ing.contains("zfw_policy"),
        "{ing}"
    );
    assert!(
        ing.contains("pref 2 bpf") && ing.contains("zfw_track_flow"),
        "{ing}"
    );
    let eg = tc_filters(&lab.server, "srv0", "egress");
    assert!(
        eg.contains("pref 1 bpf") && eg.contains("zfw_egress_flow"),
        "{eg}"
    );

    // again: same programs, no duplicate filters
    let r = lab.zfw(&["load", "--iface", "srv0"]).ok();
    assert!(r.stdout.contains("programs reused"), "{}", r.stdout);
    let ing2 = tc_filters(&lab.server, "srv0", "ingress");
    assert_eq!(ing2.matches("name zfw_policy").count(), 1, "{ing2}");
    assert_eq!(ing2.matches("name zfw_track_flow").count(), 1, "{ing2}");
    assert_eq!(ing, ing2, "a second load must not change the filters");

    // pins where bpftool users look for them: every pinned map of the
    // registry (src/maps/defs.rs), and nothing else
    let pins: std::collections::BTreeSet<String> = std::fs::read_dir(lab.root.dir.join("maps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let want: std::collections::BTreeSet<String> = zfw::maps::defs::pinned()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(pins, want, "pinned maps");
    assert!(pins.contains("tcp_map") && !pins.contains("policy_scratch_map"));
    assert!(lab.root.dir.join("progs/zfw_policy").exists());
}

#[test]
fn status_json_shows_hooks_with_program_ids_and_map_fill() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let r = lab.zfw(&["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("status --json is JSON");
    let ifs = v["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 1);
    assert_eq!(ifs[0]["name"], "srv0");
    let policy_id = v["programs"]["zfw_policy"].as_u64().unwrap();
    assert!(policy_id > 0);
    assert_eq!(ifs[0]["hooks"]["ingress_prio1"].as_u64(), Some(policy_id));
    assert!(ifs[0]["hooks"]["ingress_prio2"].as_u64().is_some());
    assert!(ifs[0]["hooks"]["egress_prio1"].as_u64().is_some());
    assert!(ifs[0]["hooks"]["xdp"].is_null());
    assert!(ifs[0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == SERVER_IP));
    assert_eq!(ifs[0]["settings"]["ssh"], true);
    let maps = v["maps"].as_array().unwrap();
    let diag = maps.iter().find(|m| m["name"] == "diag_map").unwrap();
    assert_eq!(diag["entries"], 1);
    assert!(maps
        .iter()
        .any(|m| m["name"] == "tcp_ingress_map" && m["max_entries"] == 65535));
    // the human form names the interface too
    let t = lab.zfw(&["status"]).ok();
    assert!(t.stdout.contains("srv0"));
}

#[test]
fn no_egress_and_unload_of_one_interface() {
    require_priv!();
    let lab = Lab::new();
    lab.server
        .ip(&["link", "add", "x0", "type", "veth", "peer", "name", "x1"]);
    lab.zfw(&["load", "--iface", "srv0", "x0", "--no-egress"])
        .ok();
    assert!(!tc_filters(&lab.server, "srv0", "egress").contains("zfw_egress_flow"));
    assert!(tc_filters(&lab.server, "x0", "ingress").contains("zfw_policy"));
    lab.zfw(&["unload", "--iface", "x0"]).ok();
    assert!(!tc_filters(&lab.server, "x0", "ingress").contains("zfw_policy"));
    assert!(tc_filters(&lab.server, "srv0", "ingress").contains("zfw_policy"));
    let r = lab.zfw(&["unload", "--iface", "x0"]);
    assert_eq!(r.code, 2, "x0 is no longer attached");
}

#[test]
fn unload_all_leaves_no_filter_qdisc_or_pin() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    lab.zfw(&["unload", "--all"]).ok();
    assert!(!tc_filters(&lab.server, "srv0", "ingress").contains("bpf"));
    assert!(!tc_filters(&lab.server, "srv0", "egress").contains("bpf"));
    let q = String::from_utf8_lossy(
        &lab.server
            .exec("tc", &["qdisc", "show", "dev", "srv0"])
            .stdout,
    )
    .into_owned();
    assert!(
        !q.contains("clsact"),
        "zfw created the clsact qdisc, so it removes it: {q}"
    );
    assert!(!lab.root.dir.exists(), "bpffs root removed");
    let r = lab.zfw(&["status"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("zfw is not loaded (bpffs"),
        "{}",
        r.stderr
    );
}

#[test]
fn foreign_clsact_qdisc_survives_unload() {
    require_priv!();
    let lab = Lab::new();
    let out = lab
        .server
        .exec("tc", &["qdisc", "add", "dev", "srv0", "clsact"]);
    assert!(out.status.success());
    lab.load();
    lab.zfw(&["unload", "--all"]).ok();
    let q = String::from_utf8_lossy(
        &lab.server
            .exec("tc", &["qdisc", "show", "dev", "srv0"])
            .stdout,
    )
    .into_owned();
    assert!(q.contains("clsact"), "someone else's qdisc must stay: {q}");
}

#[test]
fn bad_input_fails_cleanly_and_changes_nothing() {
    require_priv!();
    let lab = Lab::new();
    let r = lab.zfw(&["load", "--iface", "nosuch0"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown interface 'nosuch0'"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    assert!(!lab.root.dir.exists(), "a rejected load creates nothing");
    for args in [
        &["status"][..],
        &["unload", "--all"],
        &["unload", "--iface", "srv0"],
    ] {
        let r = lab.zfw(args);
        assert_eq!(r.code, 1, "{args:?}");
        assert!(
            r.stderr.contains("zfw is not loaded"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = lab.zfw(&["load", "--iface", "srv0", "--map-size", "tcp_map=abc"]);
    assert_eq!(r.code, 2);
    assert!(!lab.root.dir.exists());
    // a load the kernel refuses half-way (a map too big to create) leaves
    // no directory, pin or filter behind
    let r = lab.zfw(&[
        "load",
        "--iface",
        "srv0",
        "--map-size",
        "tcp_map=2000000000",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(!lab.root.dir.exists(), "failed load rolled back");
    let ing = tc_filters(&lab.server, "srv0", "ingress");
    assert!(!ing.contains("bpf"), "{ing}");
}

#[test]
fn map_size_option_sizes_maps_at_creation() {
    require_priv!();
    let lab = Lab::new();
    lab.zfw(&["load", "--iface", "srv0", "--map-size", "tcp_map=4096"])
        .ok();
    assert_eq!(
        lab.root
            .maps()
            .max_entries(&zfw::maps::defs::TCP_MAP)
            .unwrap(),
        4096
    );
    // an existing map keeps its size on reload
    lab.zfw(&["load", "--iface", "srv0"]).ok();
    assert_eq!(
        lab.root
            .maps()
            .max_entries(&zfw::maps::defs::TCP_MAP)
            .unwrap(),
        4096
    );
}

#[test]
fn a_new_build_replaces_programs_in_place_and_established_flows_survive() {
    require_priv!();
    let lab = Lab::new();
    let ssh = tcp_listen(&lab.server, "[::]:22").serve_echo_forever();
    lab.load();
    let before: serde_json::Value =
        serde_json::from_str(&lab.zfw(&["status", "--json"]).ok().stdout).unwrap();
    let old_id = before["programs"]["zfw_policy"].as_u64().unwrap();
    // an established connection through the firewall
    let target: std::net::SocketAddr = format!("{SERVER_IP}:{ssh}").parse().unwrap();
    let mut conn = lab
        .client
        .enter(move || {
            std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(3))
        })
        .expect("connects");
    assert!(echo_once(&mut conn, b"one"));
    // pretend the pinned programs come from another build
    lab.pretend_another_build();
    let r = lab.zfw(&["load", "--iface", "srv0"]).ok();
    assert!(r.stdout.contains("programs replaced"), "{}", r.stdout);
    let after: serde_json::Value =
        serde_json::from_str(&lab.zfw(&["status", "--json"]).ok().stdout).unwrap();
    let new_id = after["programs"]["zfw_policy"].as_u64().unwrap();
    assert_ne!(old_id, new_id, "new programs were loaded");
    assert_eq!(
        after["interfaces"][0]["hooks"]["ingress_prio1"].as_u64(),
        Some(new_id),
        "swapped in place"
    );
    let ing = tc_filters(&lab.server, "srv0", "ingress");
    assert_eq!(ing.matches("name zfw_policy").count(), 1, "{ing}");
    // the flow state lived in the pinned maps: the connection goes on, on
    // the same conntrack entry (not merely through the local-socket check)
    // (conntrack::list: the table's counts plus the flow caches' pending ones)
    let pkts = |m: &zfw::maps::Maps| {
        let v = zfw::conntrack::list(m).unwrap();
        v.iter()
            .filter(|f| f.map == "tcp_ingress_map")
            .map(|f| f.packets_orig)
            .sum::<u64>()
    };
    let before_pkts = pkts(&lab.root.maps());
    assert!(before_pkts >= 3, "the SSH flow is tracked");
    assert!(
        echo_once(&mut conn, b"two"),
        "established flow survives the upgrade"
    );
    assert!(
        pkts(&lab.root.maps()) > before_pkts,
        "the new programs use the old entry"
    );
    assert!(!tcp_echo_ok(
        &lab.client,
        &format!("{SERVER_IP}:8080"),
        std::time::Duration::from_millis(500)
    ));
}

#[test]
fn maps_of_another_abi_are_refused_with_a_clear_message() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    let maps = lab.root.maps();
    let mut cfg = maps.config().unwrap();
    cfg.abi_version = 99;
    maps.set_config(&cfg).unwrap();
    let r = lab.zfw(&["load", "--iface", "srv0"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("ABI v99") && r.stderr.contains("unload --all"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1);
}

#[test]
fn a_pinned_map_of_another_layout_is_refused_and_unload_still_works() {
    require_priv!();
    let lab = Lab::new();
    lab.load();
    // another build's frag_map: keys of 8 bytes instead of a zfw_frag_key
    let frag = &zfw::maps::defs::FRAG_MAP.info;
    let pin = lab.root.dir.join("maps").join(frag.name);
    std::fs::remove_file(&pin).unwrap();
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let mut other = libbpf_rs::MapHandle::create(
        libbpf_rs::MapType::LruHash,
        Some(frag.name),
        8,
        frag.value_size as u32,
        16,
        &opts,
    )
    .unwrap();
    other.pin(&pin).unwrap();
    for args in [&["status"][..], &["dump"], &["load", "--iface", "srv0"]] {
        let r = lab.zfw(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("frag_map has 8-byte keys")
                && r.stderr.contains("expects types::zfw_frag_key")
                && r.stderr.contains("unload --all"),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    }
    // what `load` asks for works: everything detached and removed
    lab.zfw(&["unload", "--all"]).ok();
    assert!(!lab.root.dir.exists());
    let ing = tc_filters(&lab.server, "srv0", "ingress");
    assert!(!ing.contains("bpf"), "{ing}");
}
