/* SPDX-License-Identifier: GPL-2.0 */
/*
 * egress.h - TC egress prio 1: outbound flow state, the reply direction of
 * inbound flows, and egress rules on interfaces with outbound_filter on.
 */
#ifndef ZFW_EGRESS_H
#define ZFW_EGRESS_H

#include "maps.h"
#include "parse.h"
#include "events.h"
#include "iface.h"
#include "conntrack.h"
#include "policy.h"
#include "icmp.h"
#include "ot.h"
#include "nat.h"

ZFW_INLINE int zfw_egress_drop(const struct zfw_pkt *p, __u32 flags,
			       const struct zfw_config *cfg, __u16 reason)
{
	zfw_note(p, flags, cfg, ZFW_DIR_EGRESS, reason, 1);
	return TC_ACT_SHOT;
}

ZFW_INLINE int zfw_egress(struct __sk_buff *skb)
{
	struct zfw_pkt p = {};
	struct zfw_config *cfg;
	struct zfw_flow_key rev;
	struct zfw_decision d;
	struct zfw_flow *f;
	__u32 gen = 0;
	void *data, *data_end, *in_map, *out_map;
	__u32 flags;
	int rc;

	p.k.ifindex = skb->ifindex;
	p.wire_len = skb->len;
	zfw_skb_linearize_head(skb);
	data = ZFW_SKB_DATA(skb);
	data_end = ZFW_SKB_DATA_END(skb);
	rc = zfw_parse_eth(data, data_end, &p);
	if (rc != ZFW_PARSE_OK)
		return TC_ACT_OK; /* the host's own non-IP or odd frames are not ours to judge */
	if (p.frag == ZFW_FRAG_LATER)
		return zfw_nat_out(skb, &p);

	if (p.k.proto == ZFW_P_ICMP || p.k.proto == ZFW_P_ICMPV6) {
		if (zfw_icmp_is_echo_req(&p) &&
		    zfw_ct_touch(&icmp_echo_map, &p.k, &p, 1, 1) == ZFW_CT_MISS)
			zfw_ct_create(&icmp_echo_map, &p.k, &p);
		return zfw_nat_out(skb, &p);
	}
	if (p.k.dport == ZFW_MODBUS_PORT)
		zfw_ot_egress(skb, &p);
	in_map = zfw_ct_map(p.k.proto, 1);
	out_map = zfw_ct_map(p.k.proto, 0);
	if (!in_map || !out_map)
		return zfw_nat_out(skb, &p);

	/* the reply direction of an inbound flow prio 1 admitted */
	zfw_flow_reverse(&p.k, &rev);
	if (zfw_ct_touch(in_map, &rev, &p, 0, 0) != ZFW_CT_MISS)
		return zfw_nat_out(skb, &p);
	flags = zfw_if_flags(p.k.ifindex);
	cfg = zfw_cfg();
	/* more of an outbound flow (its creator may revive an idle UDP flow);
	 * one an egress rule admitted ends if an egress deny now matches it */
	if (zfw_ct_touch_get(out_map, &p.k, &p, 1, 1, &f) != ZFW_CT_MISS) {
		if (f && f->policy_gen && cfg && f->policy_gen != cfg->policy_gen) {
			d = zfw_policy_lookup(&p, ZFW_DIR_EGRESS,
					      !!(flags & ZFW_IF_PER_INTERFACE_RULES), cfg);
			if (d.action == ZFW_ACT_DENY) {
				bpf_map_delete_elem(out_map, &p.k);
				return zfw_egress_drop(&p, flags, cfg, ZFW_R_DROP_EGRESS_RULE);
			}
			f->policy_gen = cfg->policy_gen;
		}
		return zfw_nat_out(skb, &p);
	}

	if (flags & ZFW_IF_OUTBOUND_FILTER) {
		d = zfw_policy_lookup(&p, ZFW_DIR_EGRESS, !!(flags & ZFW_IF_PER_INTERFACE_RULES), cfg);
		if (d.action != ZFW_ACT_ALLOW)
			return zfw_egress_drop(&p, flags, cfg, ZFW_R_DROP_EGRESS_RULE);
		gen = cfg ? cfg->policy_gen : 0;
	}
	if (zfw_ct_create_gen(out_map, &p.k, &p, gen) == 0) {
		zfw_count(ZFW_R_TRACK_NEW);
		if (flags & ZFW_IF_VERBOSE)
			zfw_emit(&p, ZFW_DIR_EGRESS, ZFW_EV_STATE, ZFW_R_TRACK_NEW,
				 p.k.proto == ZFW_P_TCP ? ZFW_TCP_SYN_SENT : ZFW_TCP_UDP);
	}
	return zfw_nat_out(skb, &p);
}

#endif /* ZFW_EGRESS_H */
