/* SPDX-License-Identifier: GPL-2.0 */
/*
 * policy.h - rule matching.
 *
 * Semantics (the C zfw's): the longest dst prefix wins, then the longest src
 * prefix; inside one (dst, src, proto) key the port ranges are tried in
 * insertion order and the first one containing the dport (and, on an
 * interface with per_interface_rules, listing the interface) decides.  A key
 * with no fitting range falls through to the next less specific key.
 *
 * Why it does not slow down with the rule count.  The C zfw probes every
 * (dst len, src len) pair: up to 33 x 33 hash lookups for IPv4.  We probe only
 * keys that can match the packet:
 *
 *  1. dst_lpm_map, an LPM trie over every rule key's dst prefix (per family,
 *     proto, direction and rule set), is looked up with the packet's dst
 *     address.  It returns the longest stored dst prefix D containing the
 *     address.  Every other stored dst prefix containing the address is a
 *     prefix of D, so user space stores in D's value the list of all
 *     (dst len, src len) pairs of keys whose dst is D or one of D's stored
 *     ancestors, sorted most specific first.  No entry: no rule can match.
 *  2. For each pair of that list (bounded by ZFW_MAX_PAIRS, typically 1-3)
 *     one tproxy_map hash lookup with the packet's addresses masked to the
 *     pair's lengths.  A hit gives a span of range_map (an array) holding the
 *     key's ranges in insertion order; a bounded bpf_loop scans them.
 *
 * So a miss costs one trie lookup, a hit one trie lookup plus a lookup per
 * pair on the address's path: independent of how many rules or prefixes
 * exist elsewhere.  Decisions (also "no match") are cached in matched_map
 * (a direct-mapped per-CPU array: a hit is a hash and a compare, a miss
 * overwrites the slot with plain stores),
 * keyed by (dst, src, dport, proto, ifindex, dir), stamped with
 * zfw_config.policy_gen; user space bumps the generation on every rule change,
 * which invalidates the whole cache in O(1) without touching it.
 *
 * Interfaces: a range may list up to ZFW_MAX_RULE_IFACES ifindexes.  On an
 * interface with per_interface_rules only ranges listing it count (a range
 * with an empty list does not); elsewhere lists are ignored.  Toggling the
 * flag bumps policy_gen too, since the cache key holds the ifindex but not
 * the flag.
 *
 * Rule sets: keys carry a set bit (0/1) and zfw_config.active_set selects the
 * live one; set s owns range_map slots [s * N/2, (s + 1) * N/2).  User space
 * (src/rules/store.rs) writes `zfw apply` and `rule flush` as a complete new
 * set beside the live one, then flips active_set and bumps policy_gen in one
 * config_map update, then deletes the old set.  Both sets coexist during
 * such a change, so a rule set may use at most half of tproxy_map,
 * dst_lpm_map and range_map.  A single `rule add/del` changes the live set
 * in place, in an order (ranges into free slots, key, then the trie lists;
 * removals backwards) that never lets this code see a half-written rule.
 *
 * Cost (zfw-bench, "first packet" rows, 2-core VM): about 1 us for a hit or
 * a miss, flat from 10 to 250,000 rules; a cache hit costs what the steps
 * before the policy cost.
 */
#ifndef ZFW_POLICY_H
#define ZFW_POLICY_H

#include "maps.h"
#include "parse.h"

struct zfw_decision {
	__u32 stat;        /* the rule's counter (zfw_range.stat), 0: none */
	__u16 tproxy_port;
	__u8 action; /* enum zfw_action, ZFW_ACT_NONE = no match */
	__u32 gen;   /* the rule generation the decision was made under */
};

struct zfw_range_scan {
	__u32 first;
	__u32 count;
	__u32 ifindex;
	__u16 port;
	__u8 per_if;
	__u8 found;
	struct zfw_decision d;
};

/* State of the walk over the (dst len, src len) pairs of one address. */
struct zfw_pair_walk {
	struct zfw_lpm_val lv;
	__u16 pad;
	__u32 daddr[4];
	__u32 saddr[4];
	struct zfw_rule_key rk;
	struct zfw_range_scan scan;
};

/* bpf_loop wants its context on the stack: a handle to the per-CPU state. */
struct zfw_walk_ref {
	struct zfw_pair_walk *w;
};

/* The walk state is too big for the 512-byte stack: one per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct zfw_pair_walk);
	__uint(max_entries, 1);
} policy_scratch_map SEC(".maps");

/* Mask a 4-word address to @len bits (network byte order words). */
ZFW_INLINE void zfw_mask(const __u32 *in, __u32 *out, __u32 len, __u8 family)
{
	int w;

#pragma unroll
	for (w = 0; w < 4; w++) {
		__s32 bits = (__s32)len - 32 * w;

		if (family == ZFW_AF_INET && w > 0)
			out[w] = 0;
		else if (bits >= 32)
			out[w] = in[w];
		else if (bits <= 0)
			out[w] = 0;
		else
			out[w] = in[w] & bpf_htonl(~0U << (32 - bits));
	}
}

static long zfw_range_cb(__u32 i, void *ctx)
{
	struct zfw_pair_walk *w = ((struct zfw_walk_ref *)ctx)->w;
	struct zfw_range_scan *s;
	struct zfw_range *r;
	__u32 idx;
	int j;

	if (!w)
		return 1;
	s = &w->scan;
	idx = s->first + i;
	if (i >= s->count)
		return 1;
	r = bpf_map_lookup_elem(&range_map, &idx);
	if (!r)
		return 1;
	if (s->port < r->lo || s->port > r->hi)
		return 0;
	/* per_interface_rules: only rules that list this interface count */
	if (s->per_if) {
		int hit = 0;

#pragma unroll
		for (j = 0; j < ZFW_MAX_RULE_IFACES; j++)
			if (j < r->nif && r->ifindex[j] == s->ifindex)
				hit = 1;
		if (!hit)
			return 0;
	}
	s->d.action = r->action;
	s->d.tproxy_port = r->tproxy_port;
	s->d.stat = r->stat;
	s->found = 1;
	return 1;
}

/* One (dst len, src len) pair: probe its key, scan its ranges. */
static long zfw_pair_cb(__u32 i, void *ctx)
{
	struct zfw_walk_ref *ref = ctx;
	struct zfw_pair_walk *w = ref->w;
	struct zfw_rule_span *sp;
	__u32 j = i & 0x3f;

	if (!w || i >= w->lv.npairs)
		return 1;
	asm volatile("" : "+r"(j));
	if (j >= ZFW_MAX_PAIRS)
		return 1;
	w->rk.dst_len = w->lv.dst_len[j];
	w->rk.src_len = w->lv.src_len[j];
	zfw_mask(w->daddr, w->rk.dst, w->rk.dst_len, w->rk.family);
	zfw_mask(w->saddr, w->rk.src, w->rk.src_len, w->rk.family);
	sp = bpf_map_lookup_elem(&tproxy_map, &w->rk);
	if (!sp)
		return 0;
	w->scan.first = sp->first;
	w->scan.count = sp->count;
	bpf_loop(ZFW_MAX_RANGES_PER_KEY, zfw_range_cb, ref, 0);
	return w->scan.found ? 1 : 0;
}

/* The matched_map key of packet @p in direction @dir. */
ZFW_INLINE void zfw_match_key_of(const struct zfw_pkt *p, __u8 dir, struct zfw_match_key *mk)
{
	__builtin_memcpy(mk->dst, p->k.daddr, 16);
	__builtin_memcpy(mk->src, p->k.saddr, 16);
	mk->ifindex = p->k.ifindex;
	mk->dport = p->k.dport;
	mk->family = p->k.family;
	mk->proto = p->k.proto;
	mk->dir = dir;
}

/*
 * matched_map slot of packet @p in direction @dir: a multiplicative hash
 * over the words of its zfw_match_key, computed from the packet directly so
 * that no key copy is needed on the (tight) stack.
 */
ZFW_INLINE __u32 zfw_match_tail(const struct zfw_pkt *p)
{
	/* dport | family << 16 | proto << 24: the key's last words but dir */
	return (__u32)p->k.dport | ((__u32)p->k.family << 16) | ((__u32)p->k.proto << 24);
}

ZFW_INLINE __u32 zfw_match_slot_of(const struct zfw_pkt *p, __u8 dir)
{
	__u32 h = 0x811c9dc5;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		h = (h ^ p->k.daddr[i]) * 0x9e3779b1;
		h ^= h >> 15;
		h = (h ^ p->k.saddr[i]) * 0x9e3779b1;
		h ^= h >> 15;
	}
	h = (h ^ p->k.ifindex) * 0x9e3779b1;
	h = (h ^ zfw_match_tail(p)) * 0x9e3779b1;
	h = (h ^ dir) * 0x9e3779b1;
	h ^= h >> 15;
	return h & (ZFW_MATCH_SLOTS - 1);
}

/* Does slot key @k describe packet @p in direction @dir? */
ZFW_INLINE int zfw_match_is(const struct zfw_match_key *k, const struct zfw_pkt *p, __u8 dir)
{
	__u32 diff = 0;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++)
		diff |= (k->dst[i] ^ p->k.daddr[i]) | (k->src[i] ^ p->k.saddr[i]);
	diff |= k->ifindex ^ p->k.ifindex;
	diff |= (k->dport ^ p->k.dport) | (k->family ^ p->k.family) | (k->proto ^ p->k.proto);
	diff |= k->dir ^ dir;
	return diff == 0;
}

/* This CPU's matched_map slot for packet @p (never NULL in practice). */
ZFW_INLINE struct zfw_match_slot *zfw_match_slot(const struct zfw_pkt *p, __u8 dir)
{
	__u32 slot = zfw_match_slot_of(p, dir);

	return bpf_map_lookup_elem(&matched_map, &slot);
}

/**
 * zfw_policy_lookup - decide a new flow by the rules of direction @dir.
 * @per_if: the interface honours only rules that list it
 * Returns the decision; d.action == ZFW_ACT_NONE when no rule matched.
 */
ZFW_INLINE struct zfw_decision zfw_policy_lookup(const struct zfw_pkt *p, __u8 dir,
						 int per_if, const struct zfw_config *cfg)
{
	struct zfw_decision d = {};
	struct zfw_match_slot *ms;
	struct zfw_lpm_key lk = {};
	struct zfw_lpm_val *lv;
	struct zfw_pair_walk *w;
	struct zfw_walk_ref ref;
	__u32 zero = 0;
	__u32 gen = cfg ? cfg->policy_gen : 0;
	__u8 set = cfg ? (cfg->active_set & 1) : 0;

	d.gen = gen;
	ms = zfw_match_slot(p, dir);
	if (ms && ms->val.gen == gen && zfw_match_is(&ms->key, p, dir)) {
		d.action = ms->val.action;
		d.tproxy_port = ms->val.tproxy_port;
		d.stat = ms->val.stat;
		return d;
	}

	lk.prefixlen = 32 + (p->k.family == ZFW_AF_INET ? 32 : 128);
	lk.family = p->k.family;
	lk.proto = p->k.proto;
	lk.dir = dir;
	lk.set = set;
	__builtin_memcpy(lk.addr, p->k.daddr, 16);
	lv = bpf_map_lookup_elem(&dst_lpm_map, &lk);
	if (!lv)
		goto out;

	w = bpf_map_lookup_elem(&policy_scratch_map, &zero);
	if (!w)
		goto out;
	__builtin_memcpy(&w->lv, lv, sizeof(w->lv));
	__builtin_memcpy(w->daddr, p->k.daddr, 16);
	__builtin_memcpy(w->saddr, p->k.saddr, 16);
	__builtin_memset(&w->rk, 0, sizeof(w->rk));
	__builtin_memset(&w->scan, 0, sizeof(w->scan));
	w->rk.family = p->k.family;
	w->rk.proto = p->k.proto;
	w->rk.dir = dir;
	w->rk.set = set;
	w->scan.ifindex = p->k.ifindex;
	w->scan.port = p->k.dport;
	w->scan.per_if = per_if;
	ref.w = w;
	bpf_loop(ZFW_MAX_PAIRS, zfw_pair_cb, &ref, 0);
	if (w->scan.found) {
		d = w->scan.d;
		d.gen = gen;
	}
out:
	if (ms) {
		__builtin_memset(&ms->key, 0, sizeof(ms->key));
		zfw_match_key_of(p, dir, &ms->key);
		ms->val.gen = gen;
		ms->val.action = d.action;
		ms->val.tproxy_port = d.tproxy_port;
		ms->val.stat = d.stat;
		ms->val.pad = 0;
	}
	return d;
}

/**
 * zfw_rule_hit - count packet @p on the rule that decided it (@d).
 * Called where a decision starts or ends a flow (ARCHITECTURE.md §3 step
 * 11, §4 egress), never for established flows: their fast path stays as it
 * was.  A cached decision carries the rule's counter like a fresh one.
 */
ZFW_INLINE void zfw_rule_hit(const struct zfw_decision *d, const struct zfw_pkt *p)
{
	struct zfw_rule_stats *s;
	__u32 id = d->stat;

	if (!id)
		return;
	s = bpf_map_lookup_elem(&rule_stats_map, &id);
	if (!s)
		return;
	s->packets += 1;
	s->bytes += p->wire_len;
	/* the coarse clock (a tick's resolution) is plenty for a last-hit age
	 * and costs no clocksource read */
	s->last_ns = bpf_ktime_get_coarse_ns();
}

#endif /* ZFW_POLICY_H */
