/* SPDX-License-Identifier: GPL-2.0 */
/*
 * icmp.h - ICMP/ICMPv6 verdicts (echo, replies, errors) and the fragment
 * follow-up table.
 */
#ifndef ZFW_ICMP_H
#define ZFW_ICMP_H

#include "maps.h"
#include "parse.h"
#include "iface.h"
#include "conntrack.h"

ZFW_INLINE int zfw_icmp_is_echo_req(const struct zfw_pkt *p)
{
	return p->k.family == ZFW_AF_INET ? p->icmp_type == 8 : p->icmp_type == 128;
}

ZFW_INLINE int zfw_icmp_is_echo_reply(const struct zfw_pkt *p)
{
	return p->k.family == ZFW_AF_INET ? p->icmp_type == 0 : p->icmp_type == 129;
}

ZFW_INLINE int zfw_icmp_is_error(const struct zfw_pkt *p)
{
	if (p->k.family == ZFW_AF_INET)
		return p->icmp_type == 3 || p->icmp_type == 11 || p->icmp_type == 12;
	return p->icmp_type >= 1 && p->icmp_type <= 4;
}

/**
 * zfw_icmp_embedded - parse the IP header + 8 bytes an ICMP error quotes.
 * @inner gets the quoted packet's tuple (the packet that caused the error,
 * i.e. one that left this side), with ifindex copied from @p.
 */
ZFW_INLINE int zfw_icmp_embedded(void *data, void *data_end, const struct zfw_pkt *p,
				 struct zfw_pkt *inner)
{
	int rc;

	inner->k.ifindex = p->k.ifindex;
	inner->wire_len = p->wire_len;
	if (p->k.family == ZFW_AF_INET)
		rc = zfw_parse_ipv4_quoted(data, data_end, p->pay_off, inner);
	else
		rc = zfw_parse_ipv6_quoted(data, data_end, p->pay_off, inner);
	if (rc != ZFW_PARSE_OK || inner->k.family != p->k.family)
		return -1;
	return 0;
}

/* Is the echo reply @p the answer to a request that left through egress? */
ZFW_INLINE int zfw_echo_reply_known(const struct zfw_pkt *p)
{
	struct zfw_flow_key rev;

	zfw_flow_reverse(&p->k, &rev);
	rev.sport = p->k.sport; /* echo id in sport both ways */
	rev.dport = 0;
	return zfw_ct_touch(&icmp_echo_map, &rev, p, 0, 0) != ZFW_CT_MISS;
}

/* Does the quoted packet belong to a tracked flow? */
ZFW_INLINE int zfw_error_known(const struct zfw_pkt *in)
{
	struct zfw_flow_key rev;
	void *out_map, *in_map;

	if (in->k.proto == ZFW_P_ICMP || in->k.proto == ZFW_P_ICMPV6)
		return bpf_map_lookup_elem(&icmp_echo_map, &in->k) != 0;
	out_map = zfw_ct_map(in->k.proto, 0);
	in_map = zfw_ct_map(in->k.proto, 1);
	if (!out_map || !in_map)
		return 0;
	/* quoted packet left as part of an outbound flow (assured or not) */
	if (zfw_ct_tracked(out_map, zfw_ct_new_map(in->k.proto, 0), &in->k))
		return 1;
	/* quoted packet was our reply in an inbound flow */
	zfw_flow_reverse(&in->k, &rev);
	return zfw_ct_tracked(in_map, zfw_ct_new_map(in->k.proto, 1), &rev);
}

/**
 * zfw_icmp_verdict - step 7 (docs/ARCHITECTURE.md §3) for ICMP/ICMPv6.
 * Returns a ZFW_R_PASS_* reason (> 0) or minus a ZFW_R_DROP_* reason.
 */
ZFW_INLINE int zfw_icmp_verdict(void *data, void *data_end, const struct zfw_pkt *p,
				__u32 flags)
{
	if (zfw_icmp_is_echo_req(p)) {
		if ((flags & ZFW_IF_ICMP_ECHO) &&
		    zfw_if_addr_exempt(p->k.ifindex, p->k.family, p->k.daddr))
			return ZFW_R_PASS_ICMP_ECHO;
		return -ZFW_R_DROP_ICMP;
	}
	if (zfw_icmp_is_echo_reply(p))
		return zfw_echo_reply_known(p) ? ZFW_R_PASS_ICMP_REPLY : -ZFW_R_DROP_ICMP;
	if (zfw_icmp_is_error(p)) {
		struct zfw_pkt in = {};

		if (zfw_icmp_embedded(data, data_end, p, &in) < 0)
			return -ZFW_R_DROP_MALFORMED;
		return zfw_error_known(&in) ? ZFW_R_PASS_ICMP_ERROR : -ZFW_R_DROP_ICMP;
	}
	return -ZFW_R_DROP_ICMP;
}

/* Fragments: the first fragment's verdict admits the ones that follow. */
ZFW_INLINE void zfw_frag_key(const struct zfw_pkt *p, struct zfw_frag_key *fk)
{
	__builtin_memcpy(fk->saddr, p->k.saddr, 16);
	__builtin_memcpy(fk->daddr, p->k.daddr, 16);
	fk->id = p->frag_id;
	fk->ifindex = p->k.ifindex;
	fk->family = p->k.family;
	fk->proto = p->k.proto;
}

ZFW_INLINE void zfw_frag_note(const struct zfw_pkt *p)
{
	struct zfw_frag_key fk = {};
	__u32 one = 1;

	if (p->frag != ZFW_FRAG_FIRST)
		return;
	zfw_frag_key(p, &fk);
	bpf_map_update_elem(&frag_map, &fk, &one, BPF_ANY);
}

ZFW_INLINE int zfw_frag_allowed(const struct zfw_pkt *p)
{
	struct zfw_frag_key fk = {};

	zfw_frag_key(p, &fk);
	return bpf_map_lookup_elem(&frag_map, &fk) != 0;
}

#endif /* ZFW_ICMP_H */
