/* SPDX-License-Identifier: GPL-2.0 */
/*
 * natfast.h - masquerade on the flow-cache fast path: a packet that
 * zfw_fc_fast admitted from a slot carrying a translation (remembered by
 * zfw_fc_remember from what zfw_nat_out / zfw_nat_in described on the full
 * path) is rewritten here with the
 * same checksum helpers the full path uses, so CHECKSUM_PARTIAL and
 * CHECKSUM_COMPLETE packets stay right.
 */
#ifndef ZFW_NATFAST_H
#define ZFW_NATFAST_H

#include <bpf/bpf_core_read.h>
#include "nat.h"
#include "flowcache.h"

/*
 * How the L4 checksum of an skb is kept (include/linux/skbuff.h).  With
 * NONE / UNNECESSARY the field holds the real checksum and PARTIAL the
 * folded pseudo-header sum (the device or the stack sums the rest); both
 * are plain one's complement updates done here without a helper.  COMPLETE
 * also needs skb->csum adjusted, which only the helpers can do.
 */
#define ZFW_CSUM_NONE 0
#define ZFW_CSUM_UNNECESSARY 1
#define ZFW_CSUM_COMPLETE 2
#define ZFW_CSUM_PARTIAL 3

/* a kernel without it (< 6.2) resolves this to 0: the helpers are used */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* skb->ip_summed, or -1 when this kernel cannot tell. */
ZFW_INLINE int zfw_skb_ip_summed(struct __sk_buff *skb)
{
	struct sk_buff *k;

	if (!bpf_ksym_exists(bpf_cast_to_kern_ctx))
		return -1;
	k = bpf_cast_to_kern_ctx(skb);
	return (int)BPF_CORE_READ_BITFIELD(k, ip_summed);
}

/* Add the 16-bit halves of @w to a one's complement sum. */
ZFW_INLINE __u32 zfw_csum_add32(__u32 sum, __u32 w)
{
	return sum + (w & 0xffff) + (w >> 16);
}

/**
 * zfw_nat4_direct - the IPv4 rewrite of zfw_fc_nat_apply without helpers
 * (NONE / UNNECESSARY / PARTIAL skbs): address @old -> @na at @addr_off,
 * port -> @np at @port_off (both network order), IP header checksum, and
 * the L4 checksum at @csum_off.  Returns 0 or -1.
 */
ZFW_INLINE int zfw_nat4_direct(struct __sk_buff *skb, int summed, __u32 addr_off, __u32 port_off,
			       __u32 csum_off, int udp, __u32 old, __u32 na, __u16 np)
{
	void *data = ZFW_SKB_DATA(skb), *end = ZFW_SKB_DATA_END(skb);
	__u16 *csum, *port;
	__u32 sum;

	csum_off &= 0x7f;
	port_off &= 0x7f;
	if (data + csum_off + 2 > end || data + port_off + 2 > end)
		return -1;
	csum = data + csum_off;
	port = data + port_off;
	if (!(udp && *csum == 0)) { /* a UDP checksum of 0 means none: keep it */
		if (summed == ZFW_CSUM_PARTIAL) {
			/* the pseudo-header sum: the address only, not complemented */
			sum = zfw_csum_add32(zfw_csum_add32(*csum, ~old), na);
			*csum = zfw_csum_fold(sum);
		} else {
			sum = zfw_csum_add32(zfw_csum_add32((__u16)~*csum, ~old), na);
			sum += (__u16)~*port + np;
			*csum = ~zfw_csum_fold(sum);
		}
		if (udp && *csum == 0)
			*csum = 0xffff; /* as the helpers do (BPF_F_MARK_MANGLED_0) */
	}
	*port = np;
	return zfw_ip4_put(skb, ZFW_ETH_HLEN, addr_off, old, na);
}

/**
 * zfw_fc_nat_apply - translate the packet of probe @q with slot @s: the
 * source on egress (@dst 0), the destination on ingress (@dst 1).
 * Returns 0, or -1 when the packet could not be rewritten.
 */
ZFW_INLINE int zfw_fc_nat_apply(struct __sk_buff *skb, const struct zfw_flow_cache *s,
				const struct zfw_tuple *q, int dst)
{
	__u32 l4 = q->l4_off & 0x7f;
	__u32 csum_off = l4 + (q->proto == ZFW_P_TCP ? 16 : 6);
	__u64 fl = q->proto == ZFW_P_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u32 old, na = s->naddr[0];
	__u16 oldp, np = bpf_htons(s->nport);
	int summed;

	if (q->family == ZFW_AF_INET6) {
		if (bpf_l4_csum_replace(skb, csum_off, 0, s->csum_diff, fl | BPF_F_PSEUDO_HDR))
			return -1;
		return bpf_skb_store_bytes(skb, ZFW_ETH_HLEN + (dst ? 24 : 8), s->naddr, 16, 0) ? -1
											 : 0;
	}
	/* packet pointers do not survive the helpers: read the old values first */
	old = dst ? q->daddr[0] : q->saddr[0];
	oldp = bpf_htons(dst ? q->dport : q->sport);
	summed = zfw_skb_ip_summed(skb);
	if (summed == ZFW_CSUM_NONE || summed == ZFW_CSUM_UNNECESSARY ||
	    summed == ZFW_CSUM_PARTIAL)
		return zfw_nat4_direct(skb, summed, ZFW_ETH_HLEN + (dst ? 16 : 12),
				       l4 + (dst ? 2 : 0), csum_off, q->proto == ZFW_P_UDP, old,
				       na, np);
	if (bpf_l4_csum_replace(skb, csum_off, old, na, fl | BPF_F_PSEUDO_HDR | 4))
		return -1;
	if (zfw_ip4_put(skb, ZFW_ETH_HLEN, ZFW_ETH_HLEN + (dst ? 16 : 12), old, na))
		return -1;
	if (bpf_l4_csum_replace(skb, csum_off, oldp, np, fl | 2))
		return -1;
	return zfw_put16(skb, l4 + (dst ? 2 : 0), np);
}

#endif /* ZFW_NATFAST_H */
