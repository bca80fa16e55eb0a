/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flowcache.h - the per-CPU flow cache in front of the conntrack tables.
 *
 * Most packets belong to an established TCP or live UDP flow, and for them
 * the conntrack step changes nothing but the idle timestamp and counters.
 * Doing it costs a hash-map lookup with a 44-byte key and a clock read,
 * which is most of the per-packet cost.  So each CPU keeps a direct-mapped
 * array (flow_cache_map) of such flows' verdicts: a hit is an inlined array
 * access, a hash of the tuple and a compare.
 *
 * A slot is trusted only while all of these hold:
 *   - the key (tuple as this hook sees it) and hook direction match;
 *   - the packet changes no TCP state (no SYN, FIN or RST);
 *   - the rule generation is the one the slot was filled under (a rule
 *     change can end a flow: zfw_known_flow's deny re-check);
 *   - the flow's conntrack epoch is unchanged: the datapath bumps the
 *     flow's bucket when an established flow closes, resets or expires on
 *     any CPU, user space bumps the global epoch after removing entries;
 *   - a TCP segment ends within one window of the entry's next_seq and
 *     advertises no larger window than the entry knows (seq_lo, seq_span,
 *     win_cap), so that the table sees every segment that moves the
 *     flow's window (conntrack.h, "Windows");
 *   - it was filled less than ZFW_FLOW_CACHE_JIFFIES ticks ago
 *     (bpf_jiffies64 is inlined: no helper call).  Refilling goes through
 *     the table, which keeps the entry's idle timestamp at most that old.
 * Packets admitted from a slot are counted in it and added to the flow's
 * counters when the slot is refilled or reused.
 */
#ifndef ZFW_FLOWCACHE_H
#define ZFW_FLOWCACHE_H

#include "maps.h"
#include "parse.h"
#include "conntrack.h"

_Static_assert(__builtin_offsetof(struct zfw_flow_cache, tun_mac) % 8 == 0, "tun_mac alignment");

/* The cache's probe is the fast tuple (parse.h): zfw_fc_fast reads it
 * from the packet, the slow path points it at a parsed zfw_pkt. */

ZFW_INLINE void zfw_fc_probe_of(const struct zfw_pkt *p, struct zfw_tuple *q)
{
	q->saddr = p->k.saddr;
	q->daddr = p->k.daddr;
	q->ifindex = p->k.ifindex;
	q->ip_len = p->ip_len;
	q->sport = p->k.sport;
	q->dport = p->k.dport;
	q->family = p->k.family;
	q->proto = p->k.proto;
	q->tcp_flags = p->tcp_flags;
	q->tcp_win = p->tcp_win;
	q->tcp_end = p->k.proto == ZFW_P_TCP ? zfw_tcp_end(p) : 0;
	q->l4_off = p->l4_off;
}

ZFW_INLINE void zfw_fc_probe_key(const struct zfw_flow_key *k, struct zfw_tuple *q)
{
	q->saddr = k->saddr;
	q->daddr = k->daddr;
	q->ifindex = k->ifindex;
	q->ip_len = 0;
	q->sport = k->sport;
	q->dport = k->dport;
	q->family = k->family;
	q->proto = k->proto;
	q->tcp_flags = 0;
	q->tcp_win = 0;
	q->tcp_end = 0;
	q->l4_off = 0;
}

/* Hash of @q's tuple at hook @dir for the direct-mapped caches: IPv6
 * addresses are folded to one word first (a collision costs a table
 * lookup, never a wrong verdict). */
ZFW_INLINE __u32 zfw_fc_hash(const struct zfw_tuple *q, __u8 dir)
{
	__u32 a = q->saddr[0], b = q->daddr[0], h;

	if (q->family == ZFW_AF_INET6) {
		a ^= q->saddr[1] ^ q->saddr[2] ^ q->saddr[3];
		b ^= q->daddr[1] ^ q->daddr[2] ^ q->daddr[3];
	}
	h = (a * 0x9e3779b1) ^ b;
	h = (h * 0x85ebca6b) ^ (((__u32)q->sport << 16) | q->dport);
	h = (h * 0xc2b2ae35) ^ (q->ifindex << 9) ^ ((__u32)q->proto << 1) ^ dir;
	h *= 0x9e3779b1;
	return h ^ (h >> 16);
}

/* flow_cache_map slot of @q at hook @dir. */
ZFW_INLINE __u32 zfw_fc_index(const struct zfw_tuple *q, __u8 dir)
{
	return zfw_fc_hash(q, dir) & (ZFW_FLOW_CACHE_SLOTS - 1);
}

/* Is @k the tuple of @q?  An IPv4 key always holds zeros past the first
 * address word (zfw_parse_ipv4 writes only that word of a zeroed key), so
 * equal families and first words decide for IPv4. */
ZFW_INLINE int zfw_fc_is(const struct zfw_flow_key *k, const struct zfw_tuple *q)
{
	__u32 diff;

	diff = (k->saddr[0] ^ q->saddr[0]) | (k->daddr[0] ^ q->daddr[0]) |
	       (k->ifindex ^ q->ifindex) |
	       ((((__u32)k->sport << 16) | k->dport) ^ (((__u32)q->sport << 16) | q->dport)) |
	       (k->family ^ q->family) | (k->proto ^ q->proto);
	if (q->family == ZFW_AF_INET6)
		diff |= (k->saddr[1] ^ q->saddr[1]) | (k->saddr[2] ^ q->saddr[2]) |
			(k->saddr[3] ^ q->saddr[3]) | (k->daddr[1] ^ q->daddr[1]) |
			(k->daddr[2] ^ q->daddr[2]) | (k->daddr[3] ^ q->daddr[3]);
	return diff == 0;
}

/**
 * zfw_fc_probe_hit - admit packet @q from this CPU's flow cache.
 * @gen: the current rule generation.  *@sp gets the packet's slot (for
 * zfw_fc_fill after a miss).  Returns 1 when the packet was admitted.
 */
ZFW_INLINE int zfw_fc_probe_hit(const struct zfw_tuple *q, __u8 dir, __u32 gen,
				struct zfw_flow_cache **sp)
{
	__u32 idx = zfw_fc_index(q, dir);
	struct zfw_flow_cache *s = bpf_map_lookup_elem(&flow_cache_map, &idx);

	*sp = s;
	if (!s || s->dir != dir + 1 || s->policy_gen != gen)
		return 0;
	if (q->proto == ZFW_P_TCP && (q->tcp_flags & (ZFW_TCP_SYN | ZFW_TCP_FIN | ZFW_TCP_RST)))
		return 0;
	if (!zfw_fc_is(&s->key, q))
		return 0;
	if (bpf_jiffies64() - s->jiffies >= ZFW_FLOW_CACHE_JIFFIES)
		return 0;
	if (s->epoch != zfw_ct_epoch(s->bucket & (ZFW_CT_EPOCH_BUCKETS - 1)))
		return 0;
	if (q->tcp_end - s->seq_lo > s->seq_span || q->tcp_win > s->win_cap)
		return 0;
	s->pkts++;
	s->bytes += q->ip_len;
	return 1;
}

/* zfw_fc_probe_hit for a parsed packet; @q is the caller's probe to fill
 * (programs that probed on their fast path pass that one: the stack is
 * tight). */
ZFW_INLINE int zfw_fc_hit(const struct zfw_pkt *p, __u8 dir, __u32 gen,
			  struct zfw_flow_cache **sp, struct zfw_tuple *q)
{
	zfw_fc_probe_of(p, q);
	return zfw_fc_probe_hit(q, dir, gen, sp);
}

/* Add the packets admitted from slot @s to its flow's entry. */
ZFW_INLINE void zfw_fc_flush(struct zfw_flow_cache *s)
{
	struct zfw_flow_key k;
	struct zfw_flow *f;
	void *map;

	if (!s->pkts)
		return;
	/* a tunnel slot's flow has no conntrack entry (its packets are
	 * counted under ZFW_R_TUNNEL as they go) */
	map = s->tun_ifindex ? 0 : zfw_ct_map(s->key.proto, s->inbound);
	if (map) {
		const __u32 *da = s->key.daddr;
		__u16 dp = s->key.dport;

		if (s->nat && s->dir == ZFW_DIR_INGRESS + 1) {
			/* a DNAT slot: conntrack saw the inside destination */
			da = s->naddr;
			dp = s->nport;
		}
		/* the entry's key, built in one place (the stack is tight) */
		k = s->key;
		if (s->from_orig) {
			__builtin_memcpy(k.daddr, da, 16);
			k.dport = dp;
		} else {
			__builtin_memcpy(k.saddr, da, 16);
			k.sport = dp;
			__builtin_memcpy(k.daddr, s->key.saddr, 16);
			k.dport = s->key.sport;
		}
		f = bpf_map_lookup_elem(map, &k);
		if (!f) {
			/* a live UDP flow not assured yet (conntrack.h) */
			map = zfw_ct_new_map(s->key.proto, s->inbound);
			if (map)
				f = bpf_map_lookup_elem(map, &k);
		}
		if (f && s->from_orig) {
			f->pkts_orig += s->pkts;
			f->bytes_orig += s->bytes;
		} else if (f) {
			f->pkts_reply += s->pkts;
			f->bytes_reply += s->bytes;
		}
	}
	s->pkts = 0;
	s->bytes = 0;
}

/* The window bounds of slot @s for packets from the originator when
 * @from_orig (the list above; conntrack.h, "Windows"): a segment may end at
 * most one window of the peer behind or ahead of the entry's next_seq.  A
 * global function: verified once, not on every path that fills a slot. */
__attribute__((noinline)) int zfw_fc_fill_window(struct zfw_flow_cache *s,
						 const struct zfw_flow *f, int from_orig)
{
	__u32 next, w;
	__u8 sc;

	if (!s)
		return 0;
	s->seq_lo = 0;
	s->seq_span = 0xffffffff;
	s->win_cap = 0xffff;
	if (!f || s->key.proto != ZFW_P_TCP || !zfw_tcp_tracked(f))
		return 0;
	next = from_orig ? f->next_seq_orig : f->next_seq_reply;
	w = zfw_tcp_win_bound(from_orig ? f->maxwin_reply : f->maxwin_orig);
	s->seq_lo = next - w;
	s->seq_span = 2 * w;
	/* the largest window this side advertised, unscaled: at most 0xffff
	 * (a SYN's is never scaled, every later one is) */
	sc = (from_orig ? f->wscale_orig : f->wscale_reply) & 15;
	s->win_cap = (from_orig ? f->maxwin_orig : f->maxwin_reply) >> sc;
	return 0;
}

/**
 * zfw_fc_fill - after the table admitted a packet of flow @f (tuple @k),
 * remember the verdict in slot @s (zfw_fc_remember's untranslated part).
 * @inbound, @from_orig: which table holds @f and which way the packet travels
 * @gen, @epoch: rule generation and zfw_ct_epoch() read BEFORE the table
 * lookup, so that a change racing with this packet leaves the slot invalid.
 * Returns 1 when @s now holds the flow.
 */
ZFW_INLINE int zfw_fc_fill(struct zfw_flow_cache *s, const struct zfw_flow_key *k, __u8 dir,
			    int inbound, int from_orig, const struct zfw_flow *f, __u32 gen,
			    __u32 epoch)
{
	if (!s)
		return 0;
	zfw_fc_flush(s);
	if (!f || !zfw_flow_cacheable(f)) {
		if (s->dir && zfw_flow_key_eq(&s->key, k))
			s->dir = 0;
		return 0;
	}
	s->key = *k;
	s->policy_gen = gen;
	s->jiffies = bpf_jiffies64();
	s->epoch = epoch;
	s->bucket = zfw_ct_bucket(k);
	s->dir = dir + 1;
	s->inbound = inbound;
	s->from_orig = from_orig;
	s->nat = 0;
	s->tun_ifindex = 0;
	zfw_fc_fill_window(s, f, from_orig);
	return 1;
}

/**
 * zfw_fc_fill_tun - remember in slot @s that the ingress frame at @data
 * (its MAC addresses) of flow @k goes into tun @tun_ifindex: a tunnel rule
 * of generation @gen matched and tun_map was updated.  @k is the tuple the
 * full path parsed; @s the slot zfw_fc_fast probed for the same frame.  The
 * fast path redirects the flow's next packets while the rule generation and
 * the epoch hold and the frame's MAC addresses are the recorded ones; a
 * client that comes back with another MAC takes the full path, which
 * rewrites tun_map.  A slot holding another flow's pending counts is left
 * to it (its flow would lose them).  The epoch is read after the rule
 * lookup: a user-space invalidation racing with this packet can leave the
 * slot current for ZFW_FLOW_CACHE_JIFFIES.
 */
ZFW_INLINE void zfw_fc_fill_tun(struct zfw_flow_cache *s, const struct zfw_flow_key *k,
				void *data, void *data_end, __u32 tun_ifindex, __u32 gen)
{
	if (s->pkts && !s->tun_ifindex)
		return;
	if (data + 12 > data_end)
		return;
	s->key = *k;
	s->bucket = zfw_ct_bucket(&s->key);
	s->epoch = zfw_ct_epoch(s->bucket);
	s->policy_gen = gen;
	s->jiffies = bpf_jiffies64();
	s->pkts = 0;
	s->bytes = 0;
	s->dir = ZFW_DIR_INGRESS + 1;
	s->inbound = 1;
	s->from_orig = 1;
	s->nat = 0;
	zfw_fc_fill_window(s, 0, 0);
	__builtin_memcpy(s->tun_mac, data, 12);
	s->tun_ifindex = tun_ifindex;
}

/* Do the frame's MAC addresses (at @data) match tunnel slot @s? */
ZFW_INLINE int zfw_fc_tun_macs(const struct zfw_flow_cache *s, void *data, void *data_end)
{
	if (data + 12 > data_end)
		return 0;
	return !((*(__u64 *)data ^ *(__u64 *)s->tun_mac) |
		 (*(__u32 *)(data + 8) ^ *(__u32 *)(s->tun_mac + 8)));
}


/* What masquerade did to a packet (nat.h fills one of these and nothing
 * of the cache), and so how zfw_fc_remember keeps its flow. */
enum zfw_xlat_kind {
	ZFW_XLAT_NONE = 0, /* not translated: remember the flow as it is */
	ZFW_XLAT_SNAT,     /* egress: the source becomes addr:port */
	ZFW_XLAT_DNAT,     /* ingress: the destination was addr:port, the key holds the inside one */
	ZFW_XLAT_UNCACHED, /* translated (or dropped): the next packets must see the full path */
};

/* A translation: the packet's key is the inside tuple, addr:port its
 * outside side (the masquerade address and port). */
struct zfw_xlat {
	__u32 addr[4];
	__u16 port;
	__u8 kind; /* enum zfw_xlat_kind */
	__u8 pad;
};

/* How a known flow's packet is remembered (zfw_fc_fill's arguments). */
struct zfw_fc_req {
	__u32 gen;
	__u32 epoch;
	__u8 dir;
	__u8 inbound;
	__u8 from_orig;
	__u8 pad;
};

/* Make a slot zfw_fc_fill just filled translate its packets: address @old
 * -> @naddr (the source on egress, the destination on ingress), port ->
 * @nport.  IPv6 slots carry the checksum difference of the address. */
ZFW_INLINE void zfw_fc_set_nat(struct zfw_flow_cache *s, __u8 family, const __u32 *old,
			       const __u32 *naddr, __u16 nport)
{
	__builtin_memcpy(s->naddr, naddr, 16);
	s->nport = nport;
	s->csum_diff = 0;
	if (family == ZFW_AF_INET6) {
		__s64 d = bpf_csum_diff((__u32 *)old, 16, (__u32 *)naddr, 16, 0);

		if (d < 0) {
			s->dir = 0;
			return;
		}
		s->csum_diff = (__u32)d;
	}
	s->nat = 1;
}

/**
 * zfw_fc_remember - the one place a known flow's verdict goes into the flow
 * cache (docs/ARCHITECTURE.md §5): the table admitted a packet of flow @f
 * (tuple @k, the inside one), and masquerade described in @x what it did
 * to the packet.  @s: the packet's
 * slot by its tuple (NULL: none).  A DNAT slot is keyed by the tuple as it
 * arrived (the fast path sees that one), which picks another slot than @s;
 * conntrack and the slot's epoch bucket keep the inside tuple.  The
 * translation goes in only if the fill took.
 */
ZFW_INLINE void zfw_fc_remember(struct zfw_flow_cache *s, const struct zfw_flow *f,
				const struct zfw_fc_req *r, const struct zfw_flow_key *k,
				const struct zfw_xlat *x)
{
	if (x->kind == ZFW_XLAT_UNCACHED)
		return;
	if (x->kind == ZFW_XLAT_DNAT) {
		struct zfw_tuple q;
		__u32 idx;

		zfw_fc_probe_key(k, &q);
		q.daddr = x->addr;
		q.dport = x->port;
		idx = zfw_fc_index(&q, r->dir);
		s = bpf_map_lookup_elem(&flow_cache_map, &idx);
	}
	if (!zfw_fc_fill(s, k, r->dir, r->inbound, r->from_orig, f, r->gen, r->epoch) ||
	    x->kind == ZFW_XLAT_NONE)
		return;
	if (x->kind == ZFW_XLAT_DNAT) {
		__builtin_memcpy(s->key.daddr, x->addr, 16);
		s->key.dport = x->port;
		zfw_fc_set_nat(s, k->family, x->addr, k->daddr, k->dport);
	} else {
		zfw_fc_set_nat(s, k->family, k->saddr, x->addr, x->port);
	}
}

/* zfw_fc_remember as a global function, which the programs call: verified
 * once rather than on each path to it, and its stack frame stays out of
 * the caller's (egress reaches it beside masquerade's deep calls). */
__attribute__((noinline)) int zfw_fc_remember_once(struct zfw_flow_cache *s,
						   const struct zfw_flow *f,
						   const struct zfw_fc_req *r,
						   const struct zfw_flow_key *k,
						   const struct zfw_xlat *x)
{
	if (r && k && x)
		zfw_fc_remember(s, f, r, k, x);
	return 0;
}

/**
 * zfw_fc_fast - the whole conntrack step for the common packet, before any
 * general parsing: an untagged Ethernet frame zfw_parse_fast accepts whose
 * flow is in this CPU's cache.  Anything else returns 0 and takes the full
 * path (which consults the same cache after its parser).
 * @allow_v6: IPv6 may take this path on this interface
 */
ZFW_INLINE int zfw_fc_fast(struct __sk_buff *skb, __u8 dir, __u32 gen, int allow_v6,
			   struct zfw_tuple *qp, struct zfw_flow_cache **sp)
{
	struct zfw_tuple q;

	if (zfw_parse_fast(ZFW_SKB_DATA(skb), ZFW_SKB_DATA_END(skb), ZFW_ETH_HLEN, skb->len,
			   allow_v6 ? ZFW_FAST_V6 : 0, &q))
		return 0;
	q.ifindex = skb->ifindex;
	/* DHCPv6 replies pass earlier in the full path, under their own reason */
	if (q.family == ZFW_AF_INET6 && q.proto == ZFW_P_UDP && q.sport == 547 && q.dport == 546)
		return 0;
	/* packets that change TCP state never come from the cache */
	if (q.tcp_flags & (ZFW_TCP_SYN | ZFW_TCP_FIN | ZFW_TCP_RST))
		return 0;
	*qp = q;
	return zfw_fc_probe_hit(&q, dir, gen, sp);
}

#endif /* ZFW_FLOWCACHE_H */
