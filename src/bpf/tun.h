/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tun.h - tunnel mode: ingress redirect of `tunnel` rule flows into the
 * registered tun interface, and the XDP fast path for the replies.
 */
#ifndef ZFW_TUN_H
#define ZFW_TUN_H

#include "maps.h"
#include "parse.h"
#include "events.h"
#include "conntrack.h"
#include "tuncache.h"

/* tun_map key: the client's flow as it arrived, without ifindex. */
ZFW_INLINE void zfw_tun_key(const struct zfw_flow_key *in, struct zfw_flow_key *out)
{
	*out = *in;
	out->ifindex = 0;
}

ZFW_INLINE int zfw_mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

/*
 * Does TCP segment @p belong to a flow the tunnel carries: a fresh tun_map
 * entry recorded from the same interface?  The tunneler terminates such
 * connections, so zfw keeps no conntrack state for them, and their segments
 * after the SYN are recognised by this entry (the rules still decide).
 */
ZFW_INLINE int zfw_tun_flow_known(const struct zfw_pkt *p)
{
	struct zfw_flow_key key;
	struct zfw_tun_state *st;
	__u64 now;

	zfw_tun_key(&p->k, &key);
	st = bpf_map_lookup_elem(&tun_map, &key);
	if (!st || st->ifindex != p->k.ifindex)
		return 0;
	now = bpf_ktime_get_coarse_ns();
	return now <= st->last_ns || now - st->last_ns <= ZFW_TUN_FRESH;
}

/**
 * zfw_tun_redirect - record the client's flow, for the caller to send the packet to the tun.
 * bpf_redirect into an L3 device (no header_ops) strips the Ethernet header
 * itself (__bpf_redirect_no_mac), so the tun reader gets the IP packet.
 * The entry is refreshed in place while the client's MACs and interface
 * stay the same (one lookup, no rewrite of the value).
 * Returns 0 with *@tun_ifindex set to the tun (the caller redirects there),
 * or -ZFW_R_DROP_NO_TUNNEL when no tun is registered: a step's result, like
 * every ingress step's (ARCHITECTURE.md §3).
 */
ZFW_INLINE int zfw_tun_redirect(void *data, void *data_end, const struct zfw_pkt *p,
				    __u32 *tun_ifindex)
{
	struct ethhdr *eth = data;
	struct zfw_tun_state st = {}, *cur;
	struct zfw_tun_iface *ti;
	struct zfw_flow_key key;
	__u32 zero = 0;
	__u64 now;

	ti = bpf_map_lookup_elem(&ifindex_tun_map, &zero);
	if (!ti || !ti->ifindex || (void *)(eth + 1) > data_end)
		return -ZFW_R_DROP_NO_TUNNEL;
	zfw_tun_key(&p->k, &key);
	now = bpf_ktime_get_coarse_ns();
	cur = bpf_map_lookup_elem(&tun_map, &key);
	if (cur && cur->ifindex == p->k.ifindex &&
	    zfw_mac_eq(cur->client_mac, eth->h_source) && zfw_mac_eq(cur->our_mac, eth->h_dest)) {
		cur->last_ns = now;
	} else {
		st.last_ns = now;
		st.ifindex = p->k.ifindex;
		__builtin_memcpy(st.client_mac, eth->h_source, 6);
		__builtin_memcpy(st.our_mac, eth->h_dest, 6);
		bpf_map_update_elem(&tun_map, &key, &st, BPF_ANY);
		/* no CPU may send replies by the old entry */
		if (cur)
			zfw_tun_forget(&key);
	}
	*tun_ifindex = ti->ifindex;
	return 0;
}

/**
 * zfw_xdp_tun - XDP on the tun device: a reply whose reversed tuple has a
 * fresh tun_map entry gets an Ethernet header and goes straight out of the
 * client's interface; anything else takes the normal stack.
 * tun_map timestamps use the coarse clock (tick resolution is plenty for a
 * 30 s window); while a reply is served from the per-CPU cache the entry's
 * timestamp is refreshed each time the cache is refilled (every
 * ZFW_FLOW_CACHE_JIFFIES ticks at most).
 */
ZFW_INLINE int zfw_xdp_tun(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct zfw_tun_cache *c = zfw_tun_dest(data, data_end);

	if (!c)
		return XDP_PASS;
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ethhdr)))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(struct ethhdr) > data_end)
		return XDP_PASS;
	/* the prepared header in three stores (packet access may be unaligned) */
	*(__u64 *)data = *(__u64 *)c->eth;
	*(__u32 *)(data + 8) = *(__u32 *)(c->eth + 8);
	*(__u16 *)(data + 12) = *(__u16 *)(c->eth + 12);
	c->pkts++; /* into counters_map at the next refill */
	return bpf_redirect(c->ifindex, 0);
}

#endif /* ZFW_TUN_H */
