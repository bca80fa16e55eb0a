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
#include "flowcache.h"
#include "policy.h"
#include "icmp.h"
#include "ot.h"
#include "nat.h"
#include "natfast.h"

ZFW_INLINE int zfw_egress_drop(const struct zfw_pkt *p, __u32 flags, __u16 reason)
{
	zfw_note(p, flags, ZFW_DIR_EGRESS, reason, 1);
	return TC_ACT_SHOT;
}

/*
 * The last step for a packet of known flow @f: masquerade, then the flow
 * cache (@slot, the packet's slot) remembers the flow with what masquerade
 * did.  A global function: verified once, not on each of the egress
 * program's many paths to it (docs/ARCHITECTURE.md §5); the two calls keep
 * their stack frames apart.
 */
__attribute__((noinline)) int zfw_egress_known(struct __sk_buff *skb, struct zfw_pkt *p,
					       struct zfw_flow_cache *slot,
					       const struct zfw_flow *f,
					       const struct zfw_fc_req *req)
{
	struct zfw_xlat x = {};
	int rc;

	if (!skb || !p || !req)
		return TC_ACT_OK;
	rc = zfw_nat_out(skb, p, &x);
	zfw_fc_remember_once(slot, f, req, &p->k, &x);
	return rc;
}

/* @slot: the packet's flow cache slot when the fast path already looked
 * it up and missed (NULL: look it up here). */
ZFW_INLINE int zfw_egress_full(struct __sk_buff *skb, struct zfw_flow_cache *slot,
				   struct zfw_tuple *q)
{
	struct zfw_pkt p = {};
	struct zfw_config *cfg;
	struct zfw_flow_key rev;
	struct zfw_decision d;
	struct zfw_fc_req req = {};
	struct zfw_xlat x = {};
	struct zfw_flow *f;
	__u32 gen, epoch;
	void *data, *data_end, *in_map, *out_map, *out_new;
	__u32 flags;
	int rc, inbound;

	p.k.ifindex = skb->ifindex;
	p.wire_len = skb->len;
	zfw_skb_linearize_head(skb);
	data = ZFW_SKB_DATA(skb);
	data_end = ZFW_SKB_DATA_END(skb);
	rc = zfw_parse_eth(data, data_end, &p);
	if (rc != ZFW_PARSE_OK)
		return TC_ACT_OK; /* the host's own non-IP or odd frames are not ours to judge */
	zfw_tcp_syn_opts(skb, &p); /* conntrack.h, "Windows" */
	if (p.frag == ZFW_FRAG_LATER)
		return zfw_nat_out(skb, &p, &x);

	if (p.k.proto == ZFW_P_ICMP || p.k.proto == ZFW_P_ICMPV6) {
		if (zfw_icmp_is_echo_req(&p) &&
		    zfw_ct_touch(&icmp_echo_map, &p.k, &p, 1, 1) == ZFW_CT_MISS)
			zfw_ct_create(&icmp_echo_map, &p.k, &p);
		return zfw_nat_out(skb, &p, &x);
	}
	if (p.k.dport == ZFW_MODBUS_PORT)
		zfw_ot_egress(skb, &p);
	in_map = zfw_ct_map(p.k.proto, 1);
	out_map = zfw_ct_map(p.k.proto, 0);
	out_new = zfw_ct_new_map(p.k.proto, 0);
	if (!in_map || !out_map || !out_new)
		return zfw_nat_out(skb, &p, &x);
	cfg = zfw_cfg();
	gen = cfg ? cfg->policy_gen : 0;
	if (!slot && zfw_fc_hit(&p, ZFW_DIR_EGRESS, gen, &slot, q))
		return zfw_nat_out(skb, &p, &x);
	epoch = zfw_ct_epoch(zfw_ct_bucket(&p.k));

	req.gen = gen;
	req.epoch = epoch;
	req.dir = ZFW_DIR_EGRESS;

	/* the reply direction of an inbound flow prio 1 admitted, or more of
	 * an outbound flow (its creator may revive an idle UDP flow): assured
	 * flows first, then unassured ones, which a bare SYN skips
	 * (conntrack.h, zfw_ct_open) */
	zfw_flow_reverse(&p.k, &rev);
	inbound = 1;
	/* a bare SYN most often finds neither table: asked of the maps by
	 * name first, which the verifier inlines (see zfw_known_flow) */
	if (zfw_is_bare_syn(&p) && !bpf_map_lookup_elem(&tcp_ingress_map, &rev) &&
	    !bpf_map_lookup_elem(&tcp_map, &p.k)) {
		inbound = -1;
	} else if (zfw_ct_touch_get(in_map, &rev, &p, 0, 0, &f) == ZFW_CT_MISS) {
		inbound = 0;
		if (zfw_ct_touch_get(out_map, &p.k, &p, 1, 1, &f) == ZFW_CT_MISS) {
			inbound = -1;
			if (!zfw_is_bare_syn(&p)) {
				inbound = 1;
				if (zfw_ct_unassured(1, &rev, &p, 0, 0, &f) == ZFW_CT_MISS) {
					inbound = 0;
					if (zfw_ct_unassured(0, &p.k, &p, 1, 1, &f) == ZFW_CT_MISS)
						inbound = -1;
				}
			}
		}
	}
	/* one an egress rule admitted ends if an egress deny now matches it */
	if (inbound == 0 && f && f->policy_gen && f->policy_gen != gen) {
		flags = zfw_if_flags(p.k.ifindex);
		d = zfw_policy_lookup(&p, ZFW_DIR_EGRESS, !!(flags & ZFW_IF_PER_INTERFACE_RULES),
				      cfg);
		if (d.action == ZFW_ACT_DENY) {
			zfw_rule_hit(&d, &p);
			zfw_ct_forget(out_map, 0, &p.k);
			zfw_ct_epoch_bump(&p.k);
			return zfw_egress_drop(&p, flags, ZFW_R_DROP_EGRESS_RULE);
		}
		f->policy_gen = gen;
	}
	if (inbound >= 0) {
		req.inbound = inbound;
		req.from_orig = !inbound;
		return zfw_egress_known(skb, &p, slot, f, &req);
	}

	flags = zfw_if_flags(p.k.ifindex);
	if (flags & ZFW_IF_OUTBOUND_FILTER) {
		d = zfw_policy_lookup(&p, ZFW_DIR_EGRESS, !!(flags & ZFW_IF_PER_INTERFACE_RULES), cfg);
		zfw_rule_hit(&d, &p);
		if (d.action != ZFW_ACT_ALLOW)
			return zfw_egress_drop(&p, flags, ZFW_R_DROP_EGRESS_RULE);
	}
	/* a new flow starts unassured (conntrack.h, zfw_ct_new_map) */
	if (zfw_ct_open(out_new, 0, &p.k, &p, (flags & ZFW_IF_OUTBOUND_FILTER) ? gen : 0) == 0) {
		zfw_count(ZFW_R_TRACK_NEW);
		if (flags & ZFW_IF_VERBOSE)
			zfw_emit(&p, ZFW_DIR_EGRESS, ZFW_EV_STATE, ZFW_R_TRACK_NEW,
				 p.k.proto == ZFW_P_TCP ? ZFW_TCP_SYN_SENT : ZFW_TCP_UDP);
	}
	return zfw_nat_out(skb, &p, &x);
}

/* Entry point: a packet of a cached flow leaves at once (translated when
 * its slot says so), unless the interface inspects OT traffic. */
ZFW_INLINE int zfw_egress(struct __sk_buff *skb)
{
	struct zfw_config *cfg = zfw_cfg();
	__u32 flags = zfw_if_flags(skb->ifindex);
	struct zfw_flow_cache *slot = 0;
	struct zfw_tuple q;

	if (!(flags & ZFW_IF_OT_FILTERING) &&
	    zfw_fc_fast(skb, ZFW_DIR_EGRESS, cfg ? cfg->policy_gen : 0, 1, &q, &slot) && slot) {
		if (slot->nat) {
			if (zfw_fc_nat_apply(skb, slot, &q, 0) < 0) {
				zfw_count(ZFW_R_DROP_NAT_UNTRANSLATABLE);
				return TC_ACT_SHOT;
			}
			zfw_count(ZFW_R_NAT);
		}
		return TC_ACT_OK;
	}
	return zfw_egress_full(skb, slot, &q);
}

#endif /* ZFW_EGRESS_H */
