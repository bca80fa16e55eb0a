//! The decoders of `zfw dump`: one per kind of content (`Decode` in the
//! registry rows of src/maps/defs.rs); maps with the same layout and
//! meaning share one.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::conntrack;
use crate::decode::{self, addr, age_s, ifname, mono_now_ns};
use crate::error::Result;
use crate::iface_state;
use crate::maps::defs::{self, NAT_FORWARD};
use crate::maps::{pending, Decode, MapDef, MapInfo, Maps};
use crate::net::{AF_INET, AF_INET6, IPPROTO_TCP};
use crate::rules::counters;
use crate::skel::{names, types};

fn prefix(family: u8, w: &[u32; 4], len: u8) -> String {
    format!("{}/{}", addr(family, w), len)
}

fn dir(d: u8) -> &'static str {
    if i64::from(d) == names::ZFW_DIR_EGRESS {
        "egress"
    } else {
        "ingress"
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn iface(idx: u32) -> Value {
    json!({ "ifindex": idx, "iface": ifname(idx) })
}

/// Decoded entries of the map of registry row `info`.
pub fn entries(maps: &Maps, info: &'static MapInfo) -> Result<Vec<Value>> {
    let now = mono_now_ns();
    let v = match info.decode {
        Decode::Config => maps
            .entries(&defs::CONFIG_MAP)?
            .into_iter()
            .map(|(_, c)| {
                json!({
                    "abi_version": c.abi_version, "policy_gen": c.policy_gen, "active_set": c.active_set,
                    "syn_rate": c.syn_rate, "syn_burst": c.syn_burst,
                    "rule_ids_gen": c.rule_ids_gen,
                    "build_id": format!("{:016x}", c.build_id),
                })
            })
            .collect(),
        Decode::Ifaces => maps
            .ifaces()?
            .into_iter()
            .map(|(i, st)| {
                let settings: serde_json::Map<String, Value> = iface_state::flag_table()
                    .into_iter()
                    .map(|(n, b)| (n, Value::Bool(st.flags & b != 0)))
                    .collect();
                let hooks: Vec<String> = names::ZFW_HOOK
                    .iter()
                    .filter(|(_, b)| st.hooks & (*b as u32) != 0)
                    .map(|(n, _)| n.trim_start_matches("ZFW_HOOK_").to_ascii_lowercase())
                    .collect();
                json!({ "ifindex": i, "iface": decode::cstr(&st.name), "settings": settings, "hooks": hooks })
            })
            .collect(),
        Decode::Addrs4 => maps
            .entries(&defs::IFINDEX_IP_MAP)?
            .into_iter()
            .map(|(i, a)| {
                let list: Vec<String> =
                    a.addr.iter().take(a.count as usize).map(|w| addr(AF_INET, &[*w, 0, 0, 0]).to_string()).collect();
                json!({ "ifindex": i, "iface": ifname(i), "addresses": list })
            })
            .collect(),
        Decode::Addrs6 => maps
            .entries(&defs::IFINDEX_IP6_MAP)?
            .into_iter()
            .map(|(i, a)| {
                let list: Vec<String> =
                    a.addr.iter().take(a.count as usize).map(|w| addr(AF_INET6, &w.a).to_string()).collect();
                json!({ "ifindex": i, "iface": ifname(i), "addresses": list })
            })
            .collect(),
        Decode::RuleKeys => maps
            .entries(&defs::TPROXY_MAP)?
            .into_iter()
            .map(|(k, s)| {
                json!({
                    "family": decode::family(k.family), "proto": decode::proto(k.proto),
                    "dst": prefix(k.family, &k.dst, k.dst_len), "src": prefix(k.family, &k.src, k.src_len),
                    "direction": dir(k.dir), "set": k.set, "first_range": s.first, "ranges": s.count,
                })
            })
            .collect(),
        Decode::Ranges => range_entries(maps)?,
        Decode::ServiceIds => maps
            .entries(&defs::SERVICE_MAP)?
            .into_iter()
            .map(|(i, s)| json!({ "range": i, "service_id": decode::cstr(&s.id) }))
            .collect(),
        Decode::DstPrefixes => maps
            .entries(&defs::DST_LPM_MAP)?
            .into_iter()
            .map(|(k, v)| {
                let len = k.prefixlen.saturating_sub(32) as u8;
                let pairs: Vec<[u8; 2]> =
                    (0..v.npairs as usize).filter(|i| *i < v.dst_len.len()).map(|i| [v.dst_len[i], v.src_len[i]]).collect();
                json!({
                    "family": decode::family(k.family), "proto": decode::proto(k.proto), "direction": dir(k.dir),
                    "set": k.set, "dst": prefix(k.family, &k.addr, len), "pairs": pairs,
                })
            })
            .collect(),
        Decode::Decisions => {
            let gen = maps.config()?.policy_gen;
            maps.cached_decisions()?
                .into_iter()
                .map(|s| {
                    let (k, v) = (s.key, s.val);
                    json!({
                        "family": decode::family(k.family), "proto": decode::proto(k.proto), "direction": dir(k.dir),
                        "src": addr(k.family, &k.src).to_string(), "dst": addr(k.family, &k.dst).to_string(),
                        "dport": k.dport, "ifindex": k.ifindex, "iface": ifname(k.ifindex),
                        "action": decode::action(v.action), "tproxy_port": v.tproxy_port,
                        "rule_counter": if v.stat == 0 { Value::Null } else { json!(v.stat) },
                        "generation": v.gen, "valid": v.gen == gen,
                    })
                })
                .collect()
        }
        Decode::RuleStats => rule_stats_entries(maps, now)?,
        Decode::Flows => match defs::flow_table(info) {
            Some(t) => maps
                .entries(t.def)?
                .into_iter()
                .map(|(k, f)| serde_json::to_value(conntrack::view(now, t, &k, &f)).unwrap_or(Value::Null))
                .collect(),
            None => raw_entries(maps, info)?,
        },
        Decode::FlowCache => flow_cache_entries(maps)?,
        Decode::CtEpochs => maps
            .array_entries(&defs::CT_EPOCH_MAP)?
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(i, v)| {
                let bucket = if i64::from(i) == names::ZFW_CT_EPOCH_BUCKETS { json!("global") } else { json!(i) };
                json!({ "bucket": bucket, "epoch": v })
            })
            .collect(),
        Decode::Fragments => maps
            .entries(&defs::FRAG_MAP)?
            .into_iter()
            .map(|(k, _)| {
                json!({
                    "family": decode::family(k.family), "proto": decode::proto(k.proto),
                    "src": addr(k.family, &k.saddr).to_string(), "dst": addr(k.family, &k.daddr).to_string(),
                    "id": k.id, "ifindex": k.ifindex, "iface": ifname(k.ifindex),
                })
            })
            .collect(),
        Decode::Tunnels => maps
            .entries(&defs::TUN_MAP)?
            .into_iter()
            .map(|(k, s)| {
                json!({
                    "family": decode::family(k.family), "proto": decode::proto(k.proto),
                    "client": decode::endpoint(addr(k.family, &k.saddr), k.sport),
                    "service": decode::endpoint(addr(k.family, &k.daddr), k.dport),
                    "ifindex": s.ifindex, "iface": ifname(s.ifindex),
                    "client_mac": decode::mac(&s.client_mac), "our_mac": decode::mac(&s.our_mac),
                    "idle_s": age_s(now, s.last_ns),
                })
            })
            .collect(),
        Decode::TunCache => tun_cache_entries(maps)?,
        Decode::TunIface => maps
            .entries(&defs::IFINDEX_TUN_MAP)?
            .into_iter()
            .map(|(_, t)| json!({ "ifindex": t.ifindex, "iface": decode::cstr(&t.name) }))
            .collect(),
        Decode::Ports => {
            maps.entries(&defs::DDOS_DPORT_MAP)?.into_iter().map(|(p, _)| json!({ "port": p })).collect()
        }
        Decode::Sources => maps
            .entries(&defs::DDOS_SADDR_MAP)?
            .into_iter()
            .map(|(k, _)| json!({ "family": decode::family(k.family), "address": addr(k.family, &k.addr).to_string() }))
            .collect(),
        Decode::SynCounts => maps
            .entries(&defs::SYN_COUNT_MAP)?
            .into_iter()
            .map(|(i, c)| {
                let mut v = iface(i);
                v["syns"] = json!(c);
                v
            })
            .collect(),
        Decode::SynBuckets => maps
            .entries(&defs::SYN_BUCKET_MAP)?
            .into_iter()
            .map(|(k, b)| {
                // family 0: the shared bucket of sources seen for the first time
                let who = if k.family == 0 { "newcomers".to_string() } else { addr(k.family, &k.addr).to_string() };
                json!({
                    "address": who, "tokens": b.tokens_milli as f64 / 1000.0,
                    "idle_s": age_s(now, b.last_ns),
                })
            })
            .collect(),
        Decode::FunctionCodes => {
            maps.entries(&defs::DNP3_FCODE_MAP)?.into_iter().map(|(c, _)| json!({ "fcode": c })).collect()
        }
        Decode::Counters => {
            let mut v = Vec::new();
            for (n, r) in names::ZFW_REASON.iter().filter(|(n, _)| *n != "ZFW_R_MAX") {
                let c = pending::reason_count(maps, *r as u32)?;
                v.push(json!({ "reason": n.trim_start_matches("ZFW_R_").to_ascii_lowercase(), "packets": c }));
            }
            v
        }
        Decode::NatForward => match NAT_FORWARD.iter().find(|d| std::ptr::eq(&d.info, info)) {
            Some(def) => nat_forward_entries(maps, def, now)?,
            None => raw_entries(maps, info)?,
        },
        Decode::NatReverse => maps
            .entries(&defs::MASQUERADE_REVERSE_MAP)?
            .into_iter()
            .map(|(k, v)| {
                json!({
                    "family": decode::family(k.family), "proto": decode::proto(k.proto),
                    "inside": decode::endpoint(addr(k.family, &k.saddr), k.sport),
                    "remote": decode::endpoint(addr(k.family, &k.daddr), k.dport),
                    "translated": decode::endpoint(addr(k.family, &v.naddr), v.nport),
                    "ifindex": k.ifindex, "iface": ifname(k.ifindex),
                    "state": if k.proto == IPPROTO_TCP { decode::tcp_state(v.state) } else { "active".into() },
                    "idle_s": age_s(now, v.last_ns),
                })
            })
            .collect(),
        Decode::Modbus => maps
            .entries(&defs::MODBUS_STATE_MAP)?
            .into_iter()
            .map(|(k, v)| {
                let f = k.flow;
                json!({
                    "client": decode::endpoint(addr(f.family, &f.saddr), f.sport),
                    "server": decode::endpoint(addr(f.family, &f.daddr), f.dport),
                    "ifindex": f.ifindex, "iface": ifname(f.ifindex),
                    "transaction_id": k.tid, "unit": k.unit, "fcode": v.fcode,
                    "age_s": age_s(now, v.ts_ns),
                })
            })
            .collect(),
        Decode::Stats => {
            let mut v = Vec::new();
            for (n, i) in names::ZFW_STAT.iter().filter(|(n, _)| *n != "ZFW_STAT_MAX") {
                let c = maps.percpu_sum(&defs::STATS_MAP, *i as u32)?;
                v.push(json!({ "stat": n.trim_start_matches("ZFW_STAT_").to_ascii_lowercase(), "count": c }));
            }
            v
        }
        Decode::Events => Vec::new(),
        Decode::Raw => raw_entries(maps, info)?,
    };
    Ok(v)
}

/// masquerade_map / icmp_masquerade_map: mappings keyed by the outside view.
fn nat_forward_entries(
    maps: &Maps,
    def: &'static MapDef<types::zfw_nat_key, types::zfw_nat_val>,
    now: u64,
) -> Result<Vec<Value>> {
    Ok(maps
        .entries(def)?
        .into_iter()
        .map(|(k, v)| {
            let outside = if k.family == AF_INET {
                addr(k.family, &[v.naddr4, 0, 0, 0]).to_string()
            } else {
                String::new()
            };
            json!({
                "family": decode::family(k.family), "proto": decode::proto(k.proto),
                "remote": decode::endpoint(addr(k.family, &k.raddr), k.rport),
                "outside_port": k.nport, "outside_address": outside,
                "inside": decode::endpoint(addr(k.family, &v.addr), v.port),
                "ifindex": k.ifindex, "iface": ifname(k.ifindex),
                "state": if k.proto == IPPROTO_TCP { decode::tcp_state(v.state) } else { "active".into() },
                "fin_bits": v.fin, "idle_s": age_s(now, v.last_ns),
            })
        })
        .collect())
}

/// flow_cache_map: the filled slots of every CPU.  "current" says the rule
/// generation and conntrack epoch still match (the datapath also limits a
/// slot's age to ZFW_FLOW_CACHE_JIFFIES ticks, which user space cannot see).
fn flow_cache_entries(maps: &Maps) -> Result<Vec<Value>> {
    let gen = maps.config()?.policy_gen;
    let epochs: Vec<u32> = maps
        .array_entries(&defs::CT_EPOCH_MAP)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let epoch_of = |b: u16| {
        let global = epochs.last().copied().unwrap_or(0);
        epochs
            .get(usize::from(b))
            .copied()
            .unwrap_or(0)
            .wrapping_add(global)
    };
    let mut out = Vec::new();
    for (slot, per_cpu) in maps.percpu_entries(&defs::FLOW_CACHE_MAP)? {
        for (cpu, s) in per_cpu.iter().enumerate().filter(|(_, s)| s.dir != 0) {
            let k = &s.key;
            out.push(json!({
                "cpu": cpu, "slot": slot, "hook": dir(s.dir - 1),
                "family": decode::family(k.family), "proto": decode::proto(k.proto),
                "src": decode::endpoint(addr(k.family, &k.saddr), k.sport),
                "dst": decode::endpoint(addr(k.family, &k.daddr), k.dport),
                "ifindex": k.ifindex, "iface": ifname(k.ifindex),
                "flow_direction": if s.inbound != 0 { "inbound" } else { "outbound" },
                "packet_direction": if s.from_orig != 0 { "original" } else { "reply" },
                "pending_packets": s.pkts, "pending_bytes": s.bytes,
                "current": s.policy_gen == gen && s.epoch == epoch_of(s.bucket),
                "translate_to": if s.nat != 0 {
                    json!(decode::endpoint(addr(k.family, &s.naddr), s.nport))
                } else {
                    Value::Null
                },
                "tunnel_to": if s.tun_ifindex != 0 { json!(ifname(s.tun_ifindex)) } else { Value::Null },
            }));
        }
    }
    Ok(out)
}

/// tun_cache_map: the filled slots of every CPU.  Whether a slot is still
/// current depends on its age in ticks, which user space cannot see.
fn tun_cache_entries(maps: &Maps) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (slot, per_cpu) in maps.percpu_entries(&defs::TUN_CACHE_MAP)? {
        for (cpu, s) in per_cpu.iter().enumerate().filter(|(_, s)| s.valid != 0) {
            let k = &s.key;
            out.push(json!({
                "cpu": cpu, "slot": slot,
                "match": if s.wire[3] != 0 { "ipv4 header" } else { "key" },
                "family": decode::family(k.family), "proto": decode::proto(k.proto),
                "client": decode::endpoint(addr(k.family, &k.saddr), k.sport),
                "service": decode::endpoint(addr(k.family, &k.daddr), k.dport),
                "ifindex": s.ifindex, "iface": ifname(s.ifindex),
                "client_mac": decode::mac(&s.eth[0..6]), "our_mac": decode::mac(&s.eth[6..12]),
                "pending_redirects": s.pkts,
            }));
        }
    }
    Ok(out)
}

/// range_map is an array: show the slots rule keys point at.
fn range_entries(maps: &Maps) -> Result<Vec<Value>> {
    let mut used = BTreeSet::new();
    for (_, s) in maps.entries(&defs::TPROXY_MAP)? {
        used.extend(s.first..s.first.saturating_add(s.count));
    }
    let mut out = Vec::new();
    for i in used {
        let Some(r) = maps.get(&defs::RANGE_MAP, &i)? else {
            continue;
        };
        let ifs: Vec<Value> = r
            .ifindex
            .iter()
            .take(r.nif as usize)
            .map(|i| iface(*i))
            .collect();
        out.push(json!({
            "index": i, "ports": format!("{}-{}", r.lo, r.hi), "action": decode::action(r.action),
            "tproxy_port": r.tproxy_port, "interfaces": ifs,
            "counter": if r.stat == 0 { Value::Null } else { json!(r.stat) },
        }));
    }
    Ok(out)
}

/// rule_stats_map: one object per live rule with a counter, with the
/// rule's fields (as `rule list --json` prints them) and its counts.
fn rule_stats_entries(maps: &Maps, now: u64) -> Result<Vec<Value>> {
    Ok(counters::live_counted(maps)?
        .into_iter()
        .filter_map(|c| {
            let h = c.hits?;
            let mut v = serde_json::to_value(c.rule.to_json()).unwrap_or(Value::Null);
            v["direction"] = json!(c.rule.direction.name());
            v["counter"] = json!(c.stat);
            v["packets"] = json!(h.packets);
            v["bytes"] = json!(h.bytes);
            v["last_hit_s"] = if h.last_ns == 0 {
                Value::Null
            } else {
                json!(age_s(now, h.last_ns))
            };
            Some(v)
        })
        .collect())
}

/// Maps without a decoder of their own: keys and values in hex.
fn raw_entries(maps: &Maps, info: &'static MapInfo) -> Result<Vec<Value>> {
    let h = maps.handle(info)?;
    let mut out = Vec::new();
    for k in maps.raw_keys(info)? {
        let v = libbpf_rs::MapCore::lookup(h, &k, libbpf_rs::MapFlags::ANY)
            .ok()
            .flatten()
            .unwrap_or_default();
        out.push(json!({ "key": hex(&k), "value": hex(&v) }));
    }
    Ok(out)
}
