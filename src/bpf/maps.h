/* SPDX-License-Identifier: GPL-2.0 */
/*
 * maps.h - every map of the datapath.  Names are part of the audit
 * interface (zfw dump, bpftool).  max_entries here are defaults; user space
 * overrides them at load time (zfw load --max-*).
 */
#ifndef ZFW_MAPS_H
#define ZFW_MAPS_H

#include "common.h"

/* Every plain hash map is BPF_F_NO_PREALLOC: its elements are allocated as
 * entries are added, so it costs its bucket array plus what is in it, not
 * max_entries elements (README "Memory", ARCHITECTURE.md §6).  That covers
 * the maps only user space writes and the masquerade mappings, which the
 * datapath inserts once per new mapping (the kernel's per-CPU element cache
 * serves TC programs; a failed insert is a failed mapping, as when full).
 * LRU hashes and arrays are preallocated by the kernel: their default
 * capacities are chosen for an idle host, and --map-size raises them. */
#define ZFW_HASH(_name, _type, _key, _val, _max, _flags)                      \
	struct {                                                                \
		__uint(type, _type);                                            \
		__type(key, _key);                                              \
		__type(value, _val);                                            \
		__uint(max_entries, _max);                                      \
		__uint(map_flags, _flags);                                      \
	} _name SEC(".maps")

/* global settings and policy generation */
ZFW_HASH(config_map, BPF_MAP_TYPE_ARRAY, __u32, struct zfw_config, 1, 0);
/* per-interface settings */
/* per-interface settings, indexed by ifindex: an array lookup is inlined by the
 * verifier, a hash lookup costs ~35 ns on every packet */
ZFW_HASH(diag_map, BPF_MAP_TYPE_ARRAY, __u32, struct zfw_iface, 65536, 0);
ZFW_HASH(ifindex_ip_map, BPF_MAP_TYPE_HASH, __u32, struct zfw_if_addrs4, 256,
	 BPF_F_NO_PREALLOC);
ZFW_HASH(ifindex_ip6_map, BPF_MAP_TYPE_HASH, __u32, struct zfw_if_addrs6, 256,
	 BPF_F_NO_PREALLOC);
/* the address watcher's lease (zfw watch): while it is expired the two maps
 * above are not trusted for the SSH / ICMP echo exceptions */
ZFW_HASH(watch_map, BPF_MAP_TYPE_ARRAY, __u32, struct zfw_watch_lease, 1, 0);
ZFW_HASH(monitor_map, BPF_MAP_TYPE_ARRAY, __u32, struct zfw_monitor_lease, 1, 0);
/* the rule store's journal (user space only: ARCHITECTURE.md §7) */
ZFW_HASH(journal_map, BPF_MAP_TYPE_ARRAY, __u32, struct zfw_journal, 1, 0);

/* policy: rule keys, their port ranges, the dst pruning trie, decision cache */
/* tproxy_map: the rule keys of both sets in one hash table, held in the
 * outer array's only slot so that user space can replace it by a larger
 * or smaller copy as the rules grow or shrink: a hash table's bucket
 * array is sized when it is made (16 bytes a key), 16.8 MB for 800k keys
 * with no rule loaded (src/maps/grown.rs, ARCHITECTURE.md §6 "Grown
 * tables").  No table: no rule. */
struct zfw_rule_key_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(struct zfw_rule_key));
	__uint(value_size, sizeof(struct zfw_rule_span));
	__uint(max_entries, ZFW_RULE_KEYS_MIN);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(values, struct zfw_rule_key_table);
} tproxy_map SEC(".maps");
/* range_map and service_map are indexed by range slot, split into chunks of
 * ZFW_CHUNK_SLOTS slots: the outer array holds a chunk (an inner array) only
 * where some rule's ranges lie, so an empty policy costs one array of map
 * pointers, not a million slots.  User space makes and drops the chunks
 * (src/maps/chunked.rs, ARCHITECTURE.md §6 "Chunks"); a slot without a chunk
 * reads as the end of its key's ranges. */
/* A chunked map: the outer array of up to ZFW_RANGE_CHUNKS chunks of
 * ZFW_CHUNK_SLOTS @_val slots.  The chunks are sized, not typed: clang
 * leaves a nested map's value type a forward declaration (zfw.bpf.c
 * anchors the types for the skeleton). */
#define ZFW_CHUNKED(_name, _val)                                              \
	struct _name##_chunk {                                                \
		__uint(type, BPF_MAP_TYPE_ARRAY);                             \
		__uint(key_size, sizeof(__u32));                              \
		__uint(value_size, sizeof(_val));                             \
		__uint(max_entries, ZFW_CHUNK_SLOTS);                         \
	};                                                                    \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                     \
		__type(key, __u32);                                           \
		__uint(max_entries, ZFW_RANGE_CHUNKS);                        \
		__array(values, struct _name##_chunk);                        \
	} _name SEC(".maps")

ZFW_CHUNKED(range_map, struct zfw_range);
/* the service id of each range slot (user space only: audit labels) */
ZFW_CHUNKED(service_map, struct zfw_service_id);
ZFW_HASH(dst_lpm_map, BPF_MAP_TYPE_LPM_TRIE, struct zfw_lpm_key, struct zfw_lpm_val,
	 800000, BPF_F_NO_PREALLOC);
ZFW_HASH(matched_map, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, struct zfw_match_slot,
	 ZFW_MATCH_SLOTS, 0);
/* per-rule counters, indexed by zfw_range.stat (ARCHITECTURE.md §7 "Counters") */
ZFW_HASH(rule_stats_map, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, struct zfw_rule_stats,
	 ZFW_RULE_STATS_SLOTS, 0);
/* the counter ids in use, one bit each (user space only: ARCHITECTURE.md §7
 * "Counters"); zfw load sizes it to cover rule_stats_map */
ZFW_HASH(rule_ids_map, BPF_MAP_TYPE_ARRAY, __u32, __u64, ZFW_RULE_IDS_WORDS, 0);

/* connection state: the assured flows (ARCHITECTURE.md §5 "Assured and
 * unassured flows").  Plain hashes that allocate an entry when a flow is
 * assured and free it when the flow goes, so that their memory follows the
 * flows present (an LRU map is always preallocated), and so that no new
 * flow, however many, can evict an assured one: when a table is full, the
 * flow that would move in stays in its unassured table (counter
 * ct_main_full).  Expired entries leave on their next packet, by `zfw gc`
 * and by `zfw watch`'s periodic gc. */
ZFW_HASH(tcp_map, BPF_MAP_TYPE_HASH, struct zfw_flow_key, struct zfw_flow, 65535,
	 BPF_F_NO_PREALLOC);
ZFW_HASH(udp_map, BPF_MAP_TYPE_HASH, struct zfw_flow_key, struct zfw_flow, 65535,
	 BPF_F_NO_PREALLOC);
ZFW_HASH(tcp_ingress_map, BPF_MAP_TYPE_HASH, struct zfw_flow_key, struct zfw_flow, 65535,
	 BPF_F_NO_PREALLOC);
ZFW_HASH(udp_ingress_map, BPF_MAP_TYPE_HASH, struct zfw_flow_key, struct zfw_flow, 65535,
	 BPF_F_NO_PREALLOC);
/* flows not assured yet (seen one way only; TCP before its handshake
 * completed), same keys as the four tables above: a flood of new flows
 * evicts these, never an assured flow (ARCHITECTURE.md §5, README "Table
 * pressure") */
ZFW_HASH(tcp_unassured_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_flow_key, struct zfw_flow,
	 16384, 0);
ZFW_HASH(udp_unassured_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_flow_key, struct zfw_flow,
	 16384, 0);
ZFW_HASH(tcp_ingress_unassured_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_flow_key,
	 struct zfw_flow, 16384, 0);
ZFW_HASH(udp_ingress_unassured_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_flow_key,
	 struct zfw_flow, 16384, 0);
ZFW_HASH(icmp_echo_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_flow_key, struct zfw_flow,
	 16384, 0);
/* per-CPU cache of established flows' verdicts, and the epochs that
 * invalidate it (see flowcache.h) */
ZFW_HASH(flow_cache_map, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, struct zfw_flow_cache,
	 ZFW_FLOW_CACHE_SLOTS, 0);
ZFW_HASH(ct_epoch_map, BPF_MAP_TYPE_ARRAY, __u32, __u32, ZFW_CT_EPOCH_BUCKETS + 1, 0);
ZFW_HASH(frag_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_frag_key, __u32, 8192, 0);

/* masquerade */
ZFW_HASH(masquerade_map, BPF_MAP_TYPE_HASH, struct zfw_nat_key, struct zfw_nat_val,
	 65536, BPF_F_NO_PREALLOC);
ZFW_HASH(masquerade_reverse_map, BPF_MAP_TYPE_HASH, struct zfw_flow_key,
	 struct zfw_nat_rev, 65536, BPF_F_NO_PREALLOC);
ZFW_HASH(icmp_masquerade_map, BPF_MAP_TYPE_HASH, struct zfw_nat_key, struct zfw_nat_val,
	 65536, BPF_F_NO_PREALLOC);
/* recently closed TCP mappings: ports not to reuse for the same peer yet */
ZFW_HASH(masquerade_closed_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_nat_key,
	 struct zfw_nat_closed, 65536, 0);

/* tunnel */
ZFW_HASH(tun_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_flow_key, struct zfw_tun_state,
	 10000, 0);
ZFW_HASH(tun_cache_map, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, struct zfw_tun_cache,
	 ZFW_TUN_CACHE_SLOTS, 0);
ZFW_HASH(ifindex_tun_map, BPF_MAP_TYPE_HASH, __u32, struct zfw_tun_iface, 16,
	 BPF_F_NO_PREALLOC);

/* DDoS */
ZFW_HASH(ddos_dport_map, BPF_MAP_TYPE_HASH, __u32, __u32, 1024, BPF_F_NO_PREALLOC);
ZFW_HASH(ddos_saddr_map, BPF_MAP_TYPE_HASH, struct zfw_addr_key, __u32, 65536,
	 BPF_F_NO_PREALLOC);
ZFW_HASH(syn_count_map, BPF_MAP_TYPE_HASH, __u32, __u64, 256, BPF_F_NO_PREALLOC);
ZFW_HASH(syn_bucket_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_addr_key, struct zfw_bucket,
	 16384, 0);

/* OT */
ZFW_HASH(dnp3_fcode_map, BPF_MAP_TYPE_HASH, __u32, __u32, 256, BPF_F_NO_PREALLOC);
ZFW_HASH(modbus_state_map, BPF_MAP_TYPE_LRU_HASH, struct zfw_modbus_key,
	 struct zfw_modbus_val, 16384, 0);

/* observability */
ZFW_HASH(counters_map, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, __u64, ZFW_R_MAX, 0);
ZFW_HASH(stats_map, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, __u64, ZFW_STAT_MAX, 0);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb_map SEC(".maps");

#endif /* ZFW_MAPS_H */
