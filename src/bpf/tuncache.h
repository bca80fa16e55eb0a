/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tuncache.h - the per-CPU cache of the XDP tun fast path (tun_cache_map):
 * where the replies of a tunnelled client flow go, without a tun_map lookup
 * or a clock read per reply.
 *
 * A slot is used while it matches the reply and was filled less than
 * ZFW_FLOW_CACHE_JIFFIES ticks ago; refilling goes through tun_map and
 * refreshes the entry's timestamp.  When ingress rewrites a tun_map entry
 * (the client came back with another MAC or interface) it makes every CPU's
 * slot of that flow stale at once (zfw_tun_forget), so the hit path reads
 * no epoch.  A fill that races with such a rewrite is caught by the flow's
 * epoch bucket, read before and after (zfw_tun_fill).
 *
 * Replies are read by the fast paths' one parser (parse.h,
 * zfw_parse_fast).  Plain IPv4 replies (20-byte header) are matched on the
 * words they carry, in a slot chosen by a hash of those words: no key is
 * built on a hit.  Other replies (IPv6, IPv4 with options) are matched on
 * their tun_map key.  Redirects are counted in the slot and added to
 * counters_map when it is refilled; readers add the pending ones.
 */
#ifndef ZFW_TUNCACHE_H
#define ZFW_TUNCACHE_H

#include <bpf/bpf_core_read.h>
#include "maps.h"
#include "parse.h"
#include "events.h"
#include "conntrack.h"
#include "flowcache.h"

#define ZFW_TUN_FRESH (30 * ZFW_NSEC)
#define ZFW_TUN_CACHE_SHIFT 10 /* log2(ZFW_TUN_CACHE_SLOTS) */
#define ZFW_TUN_FORGET_MAX_CPUS 4096
_Static_assert((1 << ZFW_TUN_CACHE_SHIFT) == ZFW_TUN_CACHE_SLOTS, "tun cache size");
_Static_assert(__builtin_offsetof(struct zfw_tun_cache, eth) % 8 == 0 &&
		       __builtin_offsetof(struct zfw_tun_cache, wire) % 8 == 0,
	       "tun cache alignment");

/* The tun_map key of the client flow a reply with tuple @t belongs to:
 * the tuple reversed. */
ZFW_INLINE void zfw_tun_reply_key(const struct zfw_tuple *t, struct zfw_flow_key *key)
{
	key->family = t->family;
	key->proto = t->proto;
	if (t->family == ZFW_AF_INET) {
		key->saddr[0] = t->daddr[0];
		key->daddr[0] = t->saddr[0];
	} else {
		__builtin_memcpy(key->saddr, t->daddr, 16);
		__builtin_memcpy(key->daddr, t->saddr, 16);
	}
	key->sport = t->dport;
	key->dport = t->sport;
}

/* tun_cache_map slot of tun_map key @k (replies matched on their key). */
ZFW_INLINE __u32 zfw_tun_cache_index(const struct zfw_flow_key *k)
{
	struct zfw_tuple q;

	zfw_fc_probe_key(k, &q);
	return zfw_fc_hash(&q, 0) & (ZFW_TUN_CACHE_SLOTS - 1);
}

/* tun_cache_map slot of a plain IPv4 reply: a multiplicative hash of its
 * address pair (the header's 8 bytes) and port word, top bits. */
ZFW_INLINE __u32 zfw_tun_wire_index(__u64 addrs, __u32 ports)
{
	return ((addrs ^ ports) * 0x9e3779b97f4a7c15ULL) >> (64 - ZFW_TUN_CACHE_SHIFT);
}

/* The words a plain IPv4 reply of client flow @k carries (as in memory). */
ZFW_INLINE void zfw_tun_wire_of_key(const struct zfw_flow_key *k, __u32 w[4])
{
	__u16 ports[2] = { bpf_htons(k->dport), bpf_htons(k->sport) };

	w[0] = k->daddr[0];
	w[1] = k->saddr[0];
	__builtin_memcpy(&w[2], ports, 4);
	w[3] = k->proto;
}

/* Slot @c was filled recently (and not made stale since). */
ZFW_INLINE int zfw_tun_cache_current(const struct zfw_tun_cache *c)
{
	return bpf_jiffies64() - c->jiffies < ZFW_FLOW_CACHE_JIFFIES;
}

/* A jiffies value that zfw_tun_cache_current never takes for current. */
ZFW_INLINE __u64 zfw_tun_stale(void)
{
	return bpf_jiffies64() - ZFW_FLOW_CACHE_JIFFIES;
}

struct zfw_tun_forget_ctx {
	__u32 idx[2];
	__u64 stale;
};

/* bpf_loop body: make CPU @cpu's slots of the flow stale; 1 stops the loop
 * past the last possible CPU. */
static int zfw_tun_forget_cpu(__u32 cpu, void *ctx)
{
	struct zfw_tun_forget_ctx *f = ctx;
	struct zfw_tun_cache *s;

	s = bpf_map_lookup_percpu_elem(&tun_cache_map, &f->idx[0], cpu);
	if (!s)
		return 1;
	__sync_lock_test_and_set(&s->jiffies, f->stale);
	s = bpf_map_lookup_percpu_elem(&tun_cache_map, &f->idx[1], cpu);
	if (s)
		__sync_lock_test_and_set(&s->jiffies, f->stale);
	return 0;
}

/**
 * zfw_tun_forget - tun_map entry @key was rewritten: no CPU may send
 * replies by its old copy.  Bumps the flow's epoch bucket (for fills in
 * flight, see zfw_tun_fill), then marks both slots the flow can occupy stale
 * on every CPU (an exchange: ordered after the bump).  Kernels without
 * bpf_loop or bpf_map_lookup_percpu_elem (< 5.19) keep only the bump, and
 * other CPUs' slots age out within ZFW_FLOW_CACHE_JIFFIES ticks.
 */
ZFW_INLINE void zfw_tun_forget(const struct zfw_flow_key *key)
{
	struct zfw_tun_forget_ctx f = {};
	__u32 w[4];
	__u64 addrs;

	zfw_ct_epoch_bump(key);
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop) ||
	    !bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_map_lookup_percpu_elem))
		return;
	zfw_tun_wire_of_key(key, w);
	__builtin_memcpy(&addrs, w, 8);
	f.idx[0] = key->family == ZFW_AF_INET ? zfw_tun_wire_index(addrs, w[2])
					      : zfw_tun_cache_index(key);
	f.idx[1] = zfw_tun_cache_index(key);
	f.stale = zfw_tun_stale();
	bpf_loop(ZFW_TUN_FORGET_MAX_CPUS, zfw_tun_forget_cpu, &f, 0);
}

/*
 * Fill slot @c for the reply with client-flow key @key from a fresh tun_map
 * entry (refreshing it); @wire: the reply's match words, NULL to match on
 * the key.  Returns 0 when there is no fresh entry (slow path).
 * A zfw_tun_forget racing with the fill: the epoch is read before the lookup
 * and again after the slot is written (the exchange orders the two), so
 * either this check sees the bump or the forget's exchange lands after ours.
 */
ZFW_INLINE int zfw_tun_fill(struct zfw_tun_cache *c, const struct zfw_flow_key *key,
			    const __u32 *wire)
{
	__u32 bucket = zfw_ct_bucket(key);
	__u32 epoch = zfw_ct_bucket_epoch(bucket);
	struct zfw_tun_state *st = bpf_map_lookup_elem(&tun_map, key);
	__u32 reason = ZFW_R_XDP_REDIRECT;
	__u64 now, *cnt;

	if (!st)
		return 0;
	now = bpf_ktime_get_coarse_ns();
	if (now - st->last_ns > ZFW_TUN_FRESH && now > st->last_ns)
		return 0;
	st->last_ns = now;
	if (c->pkts) { /* redirects counted in the slot so far */
		cnt = bpf_map_lookup_elem(&counters_map, &reason);
		if (cnt)
			*cnt += c->pkts;
		c->pkts = 0;
	}
	c->key = *key;
	c->ifindex = st->ifindex;
	__builtin_memcpy(c->eth, st->client_mac, 6);
	__builtin_memcpy(c->eth + 6, st->our_mac, 6);
	*(__u16 *)(c->eth + 12) = key->family == ZFW_AF_INET ? bpf_htons(ZFW_ETH_P_IP)
							     : bpf_htons(ZFW_ETH_P_IPV6);
	c->wire[0] = wire ? wire[0] : 0;
	c->wire[1] = wire ? wire[1] : 0;
	c->wire[2] = wire ? wire[2] : 0;
	c->wire[3] = wire ? wire[3] : 0;
	c->valid = 1;
	__sync_lock_test_and_set(&c->jiffies, bpf_jiffies64());
	if (zfw_ct_bucket_epoch(bucket) != epoch) {
		c->jiffies = zfw_tun_stale();
		return 0;
	}
	return 1;
}

/* The slot of a reply that is not plain IPv4 (IPv6, IPv4 with options):
 * matched on its client-flow key.  NULL: slow path. */
ZFW_INLINE struct zfw_tun_cache *zfw_tun_dest_key(const struct zfw_tuple *t)
{
	struct zfw_flow_key key = {};
	struct zfw_tun_cache *c;
	__u32 idx;

	zfw_tun_reply_key(t, &key);
	idx = zfw_tun_cache_index(&key);
	c = bpf_map_lookup_elem(&tun_cache_map, &idx);
	if (!c)
		return 0;
	if (c->valid && zfw_flow_key_eq(&c->key, &key) && zfw_tun_cache_current(c))
		return c;
	return zfw_tun_fill(c, &key, 0) ? c : 0;
}

/* The slot of a plain IPv4 reply (20-byte header), matched on the words
 * the packet carries.  NULL: slow path. */
ZFW_INLINE struct zfw_tun_cache *zfw_tun_dest_v4(const struct zfw_tuple *t)
{
	struct zfw_tun_cache *c;
	__u64 addrs = *(const __u64 *)t->saddr; /* saddr, daddr as in the header */
	__u32 w[4], idx, pw;
	__u16 ports[2] = { bpf_htons(t->sport), bpf_htons(t->dport) };

	__builtin_memcpy(&pw, ports, 4); /* the port word as the packet carries it */
	idx = zfw_tun_wire_index(addrs, pw);
	c = bpf_map_lookup_elem(&tun_cache_map, &idx);
	if (!c)
		return 0;
	if (!((*(__u64 *)c->wire ^ addrs) | ((c->wire[2] ^ pw) | (c->wire[3] ^ t->proto))) &&
	    zfw_tun_cache_current(c))
		return c;
	w[0] = t->saddr[0];
	w[1] = t->daddr[0];
	w[2] = pw;
	w[3] = t->proto;
	{
		struct zfw_flow_key key = {};

		zfw_tun_reply_key(t, &key);
		return zfw_tun_fill(c, &key, w) ? c : 0;
	}
}

/**
 * zfw_tun_dest - the tun cache slot of a reply (an IP packet from the tun):
 * only TCP/UDP replies zfw_parse_fast accepts (IPv4 options and IPv6 too;
 * the ports are all a reply is matched on) can be tunnel replies worth the
 * fast path.  NULL: anything else, which takes the stack.
 */
ZFW_INLINE struct zfw_tun_cache *zfw_tun_dest(void *data, void *data_end)
{
	__u32 len = data_end - data;
	struct zfw_tuple t;

	/* IPv4 options asked for only when the common header failed: the
	 * header length stays a constant on the common path */
	if (!zfw_parse_fast(data, data_end, 0, len, ZFW_FAST_V6 | ZFW_FAST_PORTS, &t)) {
		if (t.family == ZFW_AF_INET)
			return zfw_tun_dest_v4(&t);
		return zfw_tun_dest_key(&t);
	}
	if (zfw_parse_fast(data, data_end, 0, len, ZFW_FAST_V4_OPTS | ZFW_FAST_PORTS, &t))
		return 0;
	return zfw_tun_dest_key(&t);
}

#endif /* ZFW_TUNCACHE_H */
