/* SPDX-License-Identifier: GPL-2.0 */
/*
 * track.h - TC ingress prio 2: a packet that reaches this filter was let in
 * by prio 1.  When prio 1 marked it as the first packet of a new inbound
 * flow (skb->cb[0]), create the flow's inbound state so that the rest of the
 * flow takes prio 1's known-flow fast path.
 */
#ifndef ZFW_TRACK_H
#define ZFW_TRACK_H

#include "maps.h"
#include "parse.h"
#include "events.h"
#include "iface.h"
#include "conntrack.h"
#include "ingress.h"

ZFW_INLINE int zfw_track(struct __sk_buff *skb)
{
	struct zfw_pkt p = {};
	void *data, *data_end, *map;
	__u32 cb0 = skb->cb[0];
	__u32 gen = 0;

	if ((cb0 >> 16) != ZFW_CB_MAGIC || !(cb0 & ZFW_CB_NEW_FLOW))
		return TC_ACT_OK;
	skb->cb[0] = 0;
	p.k.ifindex = skb->ifindex;
	p.wire_len = skb->len;
	data = ZFW_SKB_DATA(skb);
	data_end = ZFW_SKB_DATA_END(skb);
	if (zfw_parse_eth(data, data_end, &p) != ZFW_PARSE_OK)
		return TC_ACT_OK;
	zfw_tcp_syn_opts(skb, &p); /* the SYN's window scale (conntrack.h, "Windows") */
	/* a new flow starts unassured (conntrack.h, zfw_ct_new_map) */
	map = zfw_ct_new_map(p.k.proto, 1);
	if (!map)
		return TC_ACT_OK;
	/* flows a rule admitted remember the rule generation (see zfw_known_flow) */
	if (skb->cb[1] == ZFW_R_PASS_RULE) {
		struct zfw_config *cfg = zfw_cfg();

		gen = cfg ? cfg->policy_gen : 0;
	}
	if (zfw_ct_open(map, 1, &p.k, &p, gen) == 0) {
		zfw_count(ZFW_R_TRACK_NEW);
		if (zfw_if_flags(p.k.ifindex) & ZFW_IF_VERBOSE)
			zfw_emit(&p, ZFW_DIR_INGRESS, ZFW_EV_STATE, ZFW_R_TRACK_NEW,
				 p.k.proto == ZFW_P_TCP ? ZFW_TCP_SYN_SENT : ZFW_TCP_UDP);
	}
	return TC_ACT_OK;
}

#endif /* ZFW_TRACK_H */
