/* SPDX-License-Identifier: GPL-2.0 */
/*
 * natfast.h - masquerade on the flow-cache fast path: a packet that
 * zfw_fc_fast admitted from a slot carrying a translation (filled by
 * zfw_nat_out / zfw_nat_in on the full path) is rewritten here with the
 * same checksum helpers the full path uses, so CHECKSUM_PARTIAL and
 * CHECKSUM_COMPLETE packets stay right.
 */
#ifndef ZFW_NATFAST_H
#define ZFW_NATFAST_H

#include "nat.h"
#include "flowcache.h"

/**
 * zfw_fc_nat_apply - translate the packet of probe @q with slot @s: the
 * source on egress (@dst 0), the destination on ingress (@dst 1).
 * Returns 0, or -1 when the packet could not be rewritten.
 */
ZFW_INLINE int zfw_fc_nat_apply(struct __sk_buff *skb, const struct zfw_flow_cache *s,
				const struct zfw_fc_probe *q, int dst)
{
	__u32 l4 = q->l4_off & 0x7f;
	__u32 csum_off = l4 + (q->proto == ZFW_P_TCP ? 16 : 6);
	__u64 fl = q->proto == ZFW_P_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u32 old, na = s->naddr[0];
	__u16 oldp, np = bpf_htons(s->nport);

	if (q->family == ZFW_AF_INET6) {
		if (bpf_l4_csum_replace(skb, csum_off, 0, s->csum_diff, fl | BPF_F_PSEUDO_HDR))
			return -1;
		return bpf_skb_store_bytes(skb, ZFW_ETH_HLEN + (dst ? 24 : 8), s->naddr, 16, 0) ? -1
											 : 0;
	}
	/* packet pointers do not survive the helpers: read the old values first */
	old = dst ? q->daddr[0] : q->saddr[0];
	oldp = bpf_htons(dst ? q->dport : q->sport);
	if (bpf_l4_csum_replace(skb, csum_off, old, na, fl | BPF_F_PSEUDO_HDR | 4))
		return -1;
	if (zfw_ip4_put(skb, ZFW_ETH_HLEN, ZFW_ETH_HLEN + (dst ? 16 : 12), old, na))
		return -1;
	if (bpf_l4_csum_replace(skb, csum_off, oldp, np, fl | 2))
		return -1;
	return zfw_put16(skb, l4 + (dst ? 2 : 0), np);
}

#endif /* ZFW_NATFAST_H */
