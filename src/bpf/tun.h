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
#include "flowcache.h"

#define ZFW_TUN_FRESH (30 * ZFW_NSEC)

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

/**
 * zfw_tun_redirect - record the client's flow and send the packet to the tun.
 * bpf_redirect into an L3 device (no header_ops) strips the Ethernet header
 * itself (__bpf_redirect_no_mac), so the tun reader gets the IP packet.
 * The entry is refreshed in place while the client's MACs and interface
 * stay the same (one lookup, no rewrite of the value).
 * Returns TC_ACT_REDIRECT, or TC_ACT_SHOT when no tun is registered.
 */
ZFW_INLINE int zfw_tun_redirect(void *data, void *data_end, const struct zfw_pkt *p)
{
	struct ethhdr *eth = data;
	struct zfw_tun_state st = {}, *cur;
	struct zfw_tun_iface *ti;
	struct zfw_flow_key key;
	__u32 zero = 0;
	__u64 now;

	ti = bpf_map_lookup_elem(&ifindex_tun_map, &zero);
	if (!ti || !ti->ifindex || (void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
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
		/* XDP caches of the old entry must not outlive it */
		if (cur)
			zfw_ct_epoch_bump(&key);
	}
	return bpf_redirect(ti->ifindex, 0);
}

/**
 * zfw_xdp_reply_key - build the tun_map key of the client flow a reply
 * (an IP packet from the tun) belongs to: its tuple reversed.  A lean parser
 * of its own: only unfragmented TCP/UDP without IPv6 extension headers can
 * be tunnel replies worth the fast path; anything else (also a packet
 * shorter than its IP length says) returns -1 and takes the stack.
 */
ZFW_INLINE int zfw_xdp_reply_key(void *data, void *data_end, struct zfw_flow_key *key)
{
	__u8 *b = data;
	__u16 *ports;
	__u32 ihl;

	if ((void *)(b + 40) > data_end) /* IPv6 header, or IPv4 + ports */
		goto v4_short;
	if ((b[0] >> 4) == 6) {
		struct ipv6hdr *ip6 = data;

		if (ip6->nexthdr != ZFW_P_TCP && ip6->nexthdr != ZFW_P_UDP)
			return -1;
		if (data + sizeof(*ip6) + bpf_ntohs(ip6->payload_len) > data_end)
			return -1; /* truncated */
		ports = data + sizeof(*ip6);
		if ((void *)(ports + 2) > data_end)
			return -1;
		key->family = ZFW_AF_INET6;
		key->proto = ip6->nexthdr;
		__builtin_memcpy(key->saddr, &ip6->daddr, 16);
		__builtin_memcpy(key->daddr, &ip6->saddr, 16);
		goto ports;
	}
v4_short:
	{
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > data_end || ip->version != 4)
			return -1;
		if (ip->protocol != ZFW_P_TCP && ip->protocol != ZFW_P_UDP)
			return -1;
		if (ip->frag_off & bpf_htons(0x3fff))
			return -1; /* a fragment: the stack reassembles it */
		ihl = (ip->ihl * 4) & 0x3c;
		if (ihl < sizeof(*ip) || data + bpf_ntohs(ip->tot_len) > data_end)
			return -1; /* bad header length or truncated */
		ports = data + ihl;
		if ((void *)(ports + 2) > data_end)
			return -1;
		key->family = ZFW_AF_INET;
		key->proto = ip->protocol;
		key->saddr[0] = ip->daddr;
		key->daddr[0] = ip->saddr;
	}
ports:
	key->sport = bpf_ntohs(ports[1]);
	key->dport = bpf_ntohs(ports[0]);
	return 0;
}

/* tun_cache_map slot of tun_map key @k. */
ZFW_INLINE __u32 zfw_tun_cache_index(const struct zfw_flow_key *k)
{
	struct zfw_fc_probe q;

	zfw_fc_probe_key(k, &q);
	return zfw_fc_hash(&q, 0) & (ZFW_TUN_CACHE_SLOTS - 1);
}

/*
 * Where does the reply with client-flow key @key go?  This CPU's
 * tun_cache_map slot answers while valid; else a fresh tun_map entry does
 * (refreshed, and copied into the slot).  Returns the slot, NULL for the
 * slow path (no fresh entry).
 */
ZFW_INLINE struct zfw_tun_cache *zfw_tun_dest(const struct zfw_flow_key *key)
{
	__u32 idx = zfw_tun_cache_index(key), bucket, epoch;
	struct zfw_tun_cache *c = bpf_map_lookup_elem(&tun_cache_map, &idx);
	struct zfw_tun_state *st;
	__u64 now;

	if (!c)
		return 0;
	if (c->valid && zfw_flow_key_eq(&c->key, key) &&
	    bpf_jiffies64() - c->jiffies < ZFW_FLOW_CACHE_JIFFIES &&
	    c->epoch == zfw_ct_epoch(c->bucket & (ZFW_CT_EPOCH_BUCKETS - 1)))
		return c;
	bucket = zfw_ct_bucket(key);
	epoch = zfw_ct_epoch(bucket); /* before the lookup: see zfw_fc_fill */
	st = bpf_map_lookup_elem(&tun_map, key);
	if (!st)
		return 0;
	now = bpf_ktime_get_coarse_ns();
	if (now - st->last_ns > ZFW_TUN_FRESH && now > st->last_ns)
		return 0;
	st->last_ns = now;
	c->key = *key;
	c->ifindex = st->ifindex;
	__builtin_memcpy(c->client_mac, st->client_mac, 6);
	__builtin_memcpy(c->our_mac, st->our_mac, 6);
	c->jiffies = bpf_jiffies64();
	c->epoch = epoch;
	c->bucket = bucket;
	c->valid = 1;
	return c;
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
	struct zfw_flow_key key = {};
	struct zfw_tun_cache *c;
	struct ethhdr *eth;
	__u16 proto;

	if (zfw_xdp_reply_key(data, data_end, &key))
		return XDP_PASS;
	c = zfw_tun_dest(&key);
	if (!c)
		return XDP_PASS;
	proto = key.family == ZFW_AF_INET ? bpf_htons(ZFW_ETH_P_IP) : bpf_htons(ZFW_ETH_P_IPV6);
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ethhdr)))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, c->client_mac, 6);
	__builtin_memcpy(eth->h_source, c->our_mac, 6);
	eth->h_proto = proto;
	zfw_count(ZFW_R_XDP_REDIRECT);
	return bpf_redirect(c->ifindex, 0);
}

#endif /* ZFW_TUN_H */
