/* SPDX-License-Identifier: GPL-2.0 */
/*
 * natcsum.h - checksum-correct rewrites of addresses and ports, for the
 * masquerade (nat.h).  Needs only the parsed packet (parse.h).
 */
#ifndef ZFW_NATCSUM_H
#define ZFW_NATCSUM_H

#include "parse.h"

/* Fold a 32-bit one's complement sum to 16 bits. */
ZFW_INLINE __u16 zfw_csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/*
 * Rewrite a 4-byte IPv4 address at @off in place (direct packet access:
 * cheaper than bpf_skb_store_bytes + bpf_l3_csum_replace) and fix the
 * header checksum at @l3_off + 10 incrementally (RFC 1624; one's
 * complement sums do not depend on byte order).
 */
ZFW_INLINE int zfw_ip4_put(struct __sk_buff *skb, __u32 l3_off, __u32 off, __u32 from, __u32 to)
{
	void *data = ZFW_SKB_DATA(skb), *end = ZFW_SKB_DATA_END(skb);
	__u16 *csum;
	__u32 *a, sum;

	l3_off &= 0x3ff;
	off &= 0x3ff;
	if (data + l3_off + 12 > end || data + off + 4 > end)
		return -1;
	csum = data + l3_off + 10;
	a = data + off;
	sum = (__u16)~*csum;
	sum += (~from & 0xffff) + (~from >> 16) + (to & 0xffff) + (to >> 16);
	*csum = ~zfw_csum_fold(sum);
	*a = to;
	return 0;
}

/* Write 2 bytes at @off (direct packet access). */
ZFW_INLINE int zfw_put16(struct __sk_buff *skb, __u32 off, __u16 v)
{
	void *data = ZFW_SKB_DATA(skb), *end = ZFW_SKB_DATA_END(skb);

	off &= 0x3ff;
	if (data + off + 2 > end)
		return -1;
	*(__u16 *)(data + off) = v;
	return 0;
}

/**
 * zfw_nat_set_addr - replace the source (@dst == 0) or destination address
 * of the IP header at @l3_off with @to, fixing the IPv4 header checksum and
 * the L4 checksum at @csum_off (0: none) with flags @fl.
 */
ZFW_INLINE int zfw_nat_set_addr(struct __sk_buff *skb, __u8 family, __u32 l3_off, int dst,
				__u32 *from, __u32 *to, __u32 csum_off, __u64 fl)
{
	if (family == ZFW_AF_INET) {
		if (csum_off && bpf_l4_csum_replace(skb, csum_off, from[0], to[0], fl | 4))
			return -1;
		return zfw_ip4_put(skb, l3_off, l3_off + (dst ? 16 : 12), from[0], to[0]);
	}
	if (csum_off) {
		__s64 d = bpf_csum_diff(from, 16, to, 16, 0);

		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, d, fl))
			return -1;
	}
	return bpf_skb_store_bytes(skb, l3_off + (dst ? 24 : 8), to, 16, 0) ? -1 : 0;
}

/* Replace the 16-bit port (or echo id) at @off, fixing the checksum at
 * @csum_off.  IPv4 only: IPv6 static PAT keeps ports (callers skip it). */
ZFW_INLINE int zfw_nat_set_port(struct __sk_buff *skb, __u32 off, __u16 from, __u16 to,
				__u32 csum_off, __u64 fl)
{
	__u16 f = bpf_htons(from), t = bpf_htons(to);

	if (csum_off && bpf_l4_csum_replace(skb, csum_off, f, t, fl | 2))
		return -1;
	return zfw_put16(skb, off, t);
}

/* Offset of the port a translation rewrites and of the checksum covering it. */
ZFW_INLINE __u32 zfw_nat_port_off(const struct zfw_pkt *p, int dst, __u32 *csum_off, __u64 *fl)
{
	*fl = 0;
	if (p->k.proto == ZFW_P_TCP) {
		*csum_off = p->l4_off + 16;
	} else if (p->k.proto == ZFW_P_UDP) {
		*csum_off = p->l4_off + 6;
		*fl = BPF_F_MARK_MANGLED_0;
	} else {
		*csum_off = p->l4_off + 2;
		return p->l4_off + 4; /* echo identifier */
	}
	return p->l4_off + (dst ? 2 : 0);
}

#endif /* ZFW_NATCSUM_H */
