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
 *     one hash lookup in tproxy_map's table with the packet's addresses masked to the
 *     pair's lengths.  A hit gives a span of range_map (chunked arrays, maps.h) holding the
 *     key's ranges in insertion order, scanned in order: the first pairs and
 *     ranges in plain loops, the rest in bpf_loop (zfw_policy_walk).
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
 * Cost (zfw-bench, "first packet" rows, shared 2-core VM, empty program
 * 27 ns): about 210 ns for a hit and 255 for a miss at 250,000 rules, flat
 * from 10 (195 and 225); of that the trie lookup is about 40 ns and each
 * tproxy_map probe 35, the known-flow lookup before the policy 25 (the
 * per-step rows, README "make bench").  A cache hit costs what the steps
 * before the policy cost: about 85-100 ns.
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
	/* zfw_scan_ranges' lookup key and span, off the stack (in memory
	 * its loop keeps its values in registers: the stack is zfw_policy's) */
	__u32 key;
	__u32 at;
	__u32 n;
};

/* State of the walk over the (dst len, src len) pairs of one address. */
struct zfw_pair_walk {
	struct zfw_lpm_key lk;
	struct zfw_lpm_val lv;
	__u16 pair0; /* the pair the walk's bpf_loop starts at */
	__u32 daddr[4];
	__u32 saddr[4];
	struct zfw_rule_key rk;
	struct zfw_range_scan scan;
	/* zfw_hit_now's clock: the jiffy it last read the coarse clock in,
	 * and what it read (per-CPU state, like the walk's) */
	__u64 clock_jiffies;
	__u64 clock_ns;
	__u32 keys_slot; /* 0: tproxy_map's slot, a lookup key off the stack */
	__u32 pad;
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

/* Does range @r decide for a packet to @port on @ifindex?  With @per_if
 * only a range that lists the interface counts. */
ZFW_INLINE int zfw_range_fits(const struct zfw_range *r, __u16 port, __u32 ifindex, int per_if)
{
	int hit = 0;
	int j;

	if (port < r->lo || port > r->hi)
		return 0;
	if (!per_if)
		return 1;
#pragma unroll
	for (j = 0; j < ZFW_MAX_RULE_IFACES; j++)
		if (j < r->nif && r->ifindex[j] == ifindex)
			hit = 1;
	return hit;
}

ZFW_INLINE void zfw_range_decide(struct zfw_decision *d, const struct zfw_range *r)
{
	d->action = r->action;
	d->tproxy_port = r->tproxy_port;
	d->stat = r->stat;
}

/* range_map slot @idx: its chunk, then the slot in it (both array lookups
 * are inlined by the verifier); NULL past the map or where no chunk is
 * (ARCHITECTURE.md §6 "Chunks"). */
ZFW_INLINE struct zfw_range *zfw_range_at(__u32 idx)
{
	__u32 c = idx >> ZFW_CHUNK_SHIFT, i = idx & (ZFW_CHUNK_SLOTS - 1);
	void *chunk = bpf_map_lookup_elem(&range_map, &c);

	if (!chunk)
		return NULL;
	return bpf_map_lookup_elem(chunk, &i);
}

static long zfw_range_cb(__u32 i, void *ctx)
{
	struct zfw_pair_walk *w = ((struct zfw_walk_ref *)ctx)->w;
	struct zfw_range_scan *s;
	struct zfw_range *r;
	__u32 idx;

	if (!w)
		return 1;
	s = &w->scan;
	idx = s->first + i;
	if (i >= s->count)
		return 1;
	r = zfw_range_at(idx);
	if (!r)
		return 1;
	if (!zfw_range_fits(r, s->port, s->ifindex, s->per_if))
		return 0;
	zfw_range_decide(&s->d, r);
	s->found = 1;
	return 1;
}

/* One (dst len, src len) pair, the walk's pair w->pair0 + @i: probe its
 * key, scan its ranges. */
static long zfw_pair_cb(__u32 i, void *ctx)
{
	struct zfw_walk_ref *ref = ctx;
	struct zfw_pair_walk *w = ref->w;
	struct zfw_rule_span *sp;
	void *keys;
	__u32 j;

	if (!w)
		return 1;
	j = (w->pair0 + i) & 0x3f;
	if (w->pair0 + i >= w->lv.npairs)
		return 1;
	asm volatile("" : "+r"(j));
	if (j >= ZFW_MAX_PAIRS)
		return 1;
	w->rk.dst_len = w->lv.dst_len[j];
	w->rk.src_len = w->lv.src_len[j];
	zfw_mask(w->daddr, w->rk.dst, w->rk.dst_len, w->rk.family);
	zfw_mask(w->saddr, w->rk.src, w->rk.src_len, w->rk.family);
	keys = bpf_map_lookup_elem(&tproxy_map, &w->keys_slot);
	if (!keys)
		return 1;
	sp = bpf_map_lookup_elem(keys, &w->rk);
	if (!sp)
		return 0;
	w->scan.first = sp->first;
	w->scan.count = sp->count;
	bpf_loop(ZFW_MAX_RANGES_PER_KEY, zfw_range_cb, ref, 0);
	return w->scan.found ? 1 : 0;
}

/*
 * The walk's first ZFW_WALK_INLINE_PAIRS pairs, and the first
 * ZFW_WALK_INLINE_RANGES ranges of each of their keys, run as plain loops
 * in two global functions (each verified once, on its own): a bpf_loop
 * callback costs a function call per pair and per range, about as much as
 * the rest of the walk together.  What lies beyond (a key with more
 * ranges, an address with more pairs) goes on in the bpf_loop walk, in the
 * same order.  ZFW_WALK_INLINE_* are in zfw_abi.h (the tests probe both
 * sides of the line).
 */

/* zfw_policy_walk's @how: ZFW_DIR_* | per_interface_rules | rule set 1. */
#define ZFW_WALK_PER_IF 0x100
#define ZFW_WALK_SET1 0x200

/**
 * zfw_scan_ranges - the first ZFW_WALK_INLINE_RANGES of the @count ranges
 * from range_map[@first] (one key's), in order, for the packet @s
 * describes: 1 with s->d set by the first that fits (and s->found), 0 when
 * none of them does, -1 when the key has more ranges to scan.
 */
__attribute__((noinline)) int zfw_scan_ranges(struct zfw_range_scan *s, __u32 first, __u32 count)
{
	void *chunk;
	__u32 i;

	if (!s || !count)
		return 0;
	/* the chunk is looked up once, and again only where the span enters
	 * the next one: two dependent loads less per range.  The lookup key
	 * lives in @s: this function's stack adds to zfw_policy's. */
	s->at = first;
	s->n = count;
	s->key = first >> ZFW_CHUNK_SHIFT;
	chunk = bpf_map_lookup_elem(&range_map, &s->key);
	if (!chunk)
		return 0; /* past range_map or no chunk: the key's scan ends */
	for (i = 0; i < ZFW_WALK_INLINE_RANGES; i++) {
		struct zfw_range *r;

		if (i >= s->n)
			return 0;
		s->key = (s->at + i) & (ZFW_CHUNK_SLOTS - 1);
		if (!s->key && i) {
			s->key = (s->at + i) >> ZFW_CHUNK_SHIFT;
			chunk = bpf_map_lookup_elem(&range_map, &s->key);
			if (!chunk)
				return 0;
			s->key = 0;
		}
		r = bpf_map_lookup_elem(chunk, &s->key);
		if (!r)
			return 0;
		if (zfw_range_fits(r, s->port, s->ifindex, s->per_if)) {
			zfw_range_decide(&s->d, r);
			s->found = 1;
			return 1;
		}
	}
	return s->n > ZFW_WALK_INLINE_RANGES ? -1 : 0;
}

/**
 * zfw_policy_walk - the rule lookup proper for packet @p (the trie, then
 * the pairs' keys and their ranges); @how: ZFW_DIR_* | ZFW_WALK_*.  Its
 * answer is in the per-CPU walk state @w: w->scan.found, w->scan.d.
 * Returns -1 when the walk goes on past the inline part (zfw_walk_rest:
 * @w says where), else 0.
 */
__attribute__((noinline)) int zfw_policy_walk(const struct zfw_pkt *p, struct zfw_pair_walk *w,
					      __u32 how)
{
	const struct zfw_lpm_val *lv;
	struct zfw_rule_span *sp;
	__u32 npairs, j;
	void *keys;
	int rc;

	if (!p || !w)
		return 0;
	__builtin_memset(&w->scan, 0, sizeof(w->scan));
	w->scan.ifindex = p->k.ifindex;
	w->scan.port = p->k.dport;
	w->scan.per_if = !!(how & ZFW_WALK_PER_IF);
	/* the keys live in the walk state, not on the stack, which this
	 * function shares with its callers */
	__builtin_memset(&w->lk, 0, sizeof(w->lk));
	w->lk.prefixlen = 32 + (p->k.family == ZFW_AF_INET ? 32 : 128);
	w->lk.family = p->k.family;
	w->lk.proto = p->k.proto;
	w->lk.dir = how & 0xff;
	w->lk.set = !!(how & ZFW_WALK_SET1);
	__builtin_memcpy(w->lk.addr, p->k.daddr, 16);
	lv = bpf_map_lookup_elem(&dst_lpm_map, &w->lk);
	if (!lv)
		return 0;
	w->keys_slot = 0;
	/* the addresses from the walk state: @p is then dead in the loop,
	 * which keeps its values in registers (the stack is shared) */
	__builtin_memcpy(w->daddr, p->k.daddr, 16);
	__builtin_memcpy(w->saddr, p->k.saddr, 16);
	npairs = lv->npairs;
	__builtin_memset(&w->rk, 0, sizeof(w->rk));
	w->rk.family = p->k.family;
	w->rk.proto = p->k.proto;
	w->rk.dir = how & 0xff;
	w->rk.set = !!(how & ZFW_WALK_SET1);
	for (j = 0; j < ZFW_WALK_INLINE_PAIRS; j++) {
		if (j >= npairs)
			return 0;
		w->rk.dst_len = lv->dst_len[j];
		w->rk.src_len = lv->src_len[j];
		zfw_mask(w->daddr, w->rk.dst, w->rk.dst_len, w->rk.family);
		zfw_mask(w->saddr, w->rk.src, w->rk.src_len, w->rk.family);
		/* the table per pair, not once: a pointer kept across
		 * zfw_scan_ranges would take a stack slot the callers need */
		keys = bpf_map_lookup_elem(&tproxy_map, &w->keys_slot);
		if (!keys)
			return 0; /* no table: no rule */
		sp = bpf_map_lookup_elem(keys, &w->rk);
		if (!sp)
			continue;
		rc = zfw_scan_ranges(&w->scan, sp->first, sp->count);
		if (rc > 0)
			return 0;
		if (rc < 0) {
			/* the rest of this key's ranges first */
			w->scan.first = sp->first + ZFW_WALK_INLINE_RANGES;
			w->scan.count = sp->count - ZFW_WALK_INLINE_RANGES;
			break;
		}
	}
	if (!w->scan.count && npairs <= ZFW_WALK_INLINE_PAIRS)
		return 0;
	w->pair0 = w->scan.count ? j + 1 : ZFW_WALK_INLINE_PAIRS;
	__builtin_memcpy(&w->lv, lv, sizeof(w->lv));
	return -1;
}

/* The walk past its inline part, in bpf_loop: the rest of the key
 * w->scan names (if any), then the pairs from w->pair0 on. */
ZFW_INLINE void zfw_walk_rest(struct zfw_pair_walk *w)
{
	struct zfw_walk_ref ref = { .w = w };

	if (w->scan.count)
		bpf_loop(ZFW_MAX_RANGES_PER_KEY, zfw_range_cb, &ref, 0);
	if (!w->scan.found)
		bpf_loop(ZFW_MAX_PAIRS, zfw_pair_cb, &ref, 0);
}

/* The rules' decision for packet @p (@how as for zfw_policy_walk), no
 * cache: action, tproxy_port and stat of *@d, left as they are when no
 * rule matches.  Returns 1 when a rule matched. */
ZFW_INLINE int zfw_rules_decide(const struct zfw_pkt *p, __u32 how, struct zfw_decision *d)
{
	struct zfw_pair_walk *w;
	__u32 zero = 0;

	w = bpf_map_lookup_elem(&policy_scratch_map, &zero);
	if (!w)
		return 0;
	if (zfw_policy_walk(p, w, how) < 0)
		zfw_walk_rest(w);
	if (!w->scan.found)
		return 0;
	d->action = w->scan.d.action;
	d->tproxy_port = w->scan.d.tproxy_port;
	d->stat = w->scan.d.stat;
	return 1;
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
 * that no key copy is needed on the (tight) stack.  Every word gets its own
 * multiplier and the products are folded and mixed once at the end: the
 * slot is on the path of every decision, and a chain of multiplies, one
 * word after the other, costs its whole length in latency.
 */
ZFW_INLINE __u32 zfw_match_slot_of(const struct zfw_pkt *p, __u8 dir)
{
	const __u32 *d = p->k.daddr, *s = p->k.saddr;
	/* dport | family << 16 | proto << 24: the key's last words but dir */
	__u32 tail = (__u32)p->k.dport | ((__u32)p->k.family << 16) | ((__u32)p->k.proto << 24);
	__u32 h;

	h = (d[0] * 0x9e3779b1) ^ (s[0] * 0x85ebca6b) ^ (d[1] * 0xc2b2ae35) ^
	    (s[1] * 0x27d4eb2f) ^ (d[2] * 0x165667b1) ^ (s[2] * 0xd3a2646d) ^
	    (d[3] * 0xfd7046c5) ^ (s[3] * 0xb55a4f09) ^
	    ((p->k.ifindex ^ ((__u32)dir << 31)) * 0x2545f491) ^ (tail * 0x68e31da5);
	h ^= h >> 16;
	h *= 0x7feb352d;
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

	zfw_rules_decide(p, dir | (per_if ? ZFW_WALK_PER_IF : 0) | (set ? ZFW_WALK_SET1 : 0), &d);
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

/*
 * The time of a rule hit: bpf_ktime_get_coarse_ns(), read once per tick
 * on each CPU.  The helper call cost a cached decision of a counted rule
 * about 11 ns of its ~100 on the bench VM (README "make bench");
 * bpf_jiffies64 is inlined.  The coarse clock moves in the tick that moves
 * jiffies, so the time keeps its tick resolution (it can be one tick
 * behind when read right as the tick moves jiffies).
 */
ZFW_INLINE __u64 zfw_hit_now(void)
{
	__u32 zero = 0;
	struct zfw_pair_walk *w = bpf_map_lookup_elem(&policy_scratch_map, &zero);
	__u64 j = bpf_jiffies64();

	if (!w)
		return bpf_ktime_get_coarse_ns();
	if (w->clock_jiffies != j || !w->clock_ns) {
		w->clock_ns = bpf_ktime_get_coarse_ns();
		w->clock_jiffies = j;
	}
	return w->clock_ns;
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
	s->last_ns = zfw_hit_now();
}

#endif /* ZFW_POLICY_H */
