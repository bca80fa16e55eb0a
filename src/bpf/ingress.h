/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ingress.h - TC ingress prio 1: the verdict for every arriving packet.
 * The steps are numbered as in docs/ARCHITECTURE.md §3, in code order.
 */
#ifndef ZFW_INGRESS_H
#define ZFW_INGRESS_H

#include "maps.h"
#include "parse.h"
#include "events.h"
#include "iface.h"
#include "conntrack.h"
#include "flowcache.h"
#include "policy.h"
#include "sock.h"
#include "icmp.h"
#include "tun.h"
#include "ddos.h"
#include "ot.h"
#include "nat.h"
#include "natfast.h"

/* skb->cb[0]: magic << 16 | ZFW_CB_* flags, read by prio 2 (track). */
#define ZFW_CB_NEW_FLOW 1 /* policy admitted a new inbound flow: track it */

struct zfw_ictx {
	struct zfw_pkt p;
	__u32 flags;          /* interface settings */
	struct zfw_xlat xlat; /* what masquerade did (zfw_nat_in) */
};

/*
 * Remember the verdict of a known flow in the flow cache, with what
 * masquerade did to the packet (a DNAT slot is keyed by the tuple the
 * packet arrived with, so that the fast path can redo both).  The global
 * zfw_fc_remember_once: verified once, not on every path here.
 */
ZFW_INLINE void zfw_known_fill(struct zfw_ictx *c, struct zfw_flow_cache *slot,
			       const struct zfw_flow *f, int inbound, int from_orig, __u32 gen,
			       __u32 epoch)
{
	struct zfw_fc_req r = {
		.gen = gen,
		.epoch = epoch,
		.dir = ZFW_DIR_INGRESS,
		.inbound = inbound,
		.from_orig = from_orig,
	};

	zfw_fc_remember_once(slot, f, &r, &c->p.k, &c->xlat);
}

/*
 * Remember in flow cache slot @s (the one the fast path probed for this
 * packet and missed) that flow @k goes into tun @tun_ifindex: a tunnel rule
 * of generation @gen matched.  A global function: the verifier checks it
 * once, on its own, instead of once per path of the policy program that
 * reaches it.
 */
__attribute__((noinline)) int zfw_tun_cache_flow(struct __sk_buff *skb, struct zfw_flow_cache *s,
						 const struct zfw_flow_key *k, __u32 tun_ifindex,
						 __u32 gen)
{
	if (!skb || !s || !k)
		return 0;
	zfw_fc_fill_tun(s, k, ZFW_SKB_DATA(skb), ZFW_SKB_DATA_END(skb), tun_ifindex, gen);
	return 0;
}

ZFW_INLINE int zfw_drop(struct zfw_ictx *c, __u16 reason)
{
	zfw_note(&c->p, c->flags, ZFW_DIR_INGRESS, reason, 1);
	return TC_ACT_SHOT;
}

ZFW_INLINE int zfw_pass(struct zfw_ictx *c, __u16 reason)
{
	zfw_note(&c->p, c->flags, ZFW_DIR_INGRESS, reason, 0);
	return TC_ACT_OK;
}

/* Admit a new flow: continue to prio 2, which creates its inbound state. */
ZFW_INLINE int zfw_admit(struct __sk_buff *skb, struct zfw_ictx *c, __u16 reason)
{
	zfw_note(&c->p, c->flags, ZFW_DIR_INGRESS, reason, 0);
	skb->cb[0] = ((__u32)ZFW_CB_MAGIC << 16) | ZFW_CB_NEW_FLOW;
	skb->cb[1] = reason;
	return TC_ACT_UNSPEC;
}

/* Step 1: frames that are not IPv4/IPv6. */
ZFW_INLINE int zfw_non_ip(struct zfw_ictx *c)
{
	__u16 proto = c->p.eth_proto;

	if (proto == ZFW_ETH_P_ARP)
		return zfw_pass(c, ZFW_R_PASS_ARP);
	if (proto == ZFW_ETH_P_PAE && (c->flags & ZFW_IF_EAPOL))
		return zfw_pass(c, ZFW_R_PASS_EAPOL);
	if (c->flags & ZFW_IF_PASS_NON_TUPLE)
		return zfw_pass(c, ZFW_R_PASS_NON_TUPLE);
	return zfw_drop(c, ZFW_R_DROP_NON_TUPLE);
}

/*
 * IPv6 control traffic the host needs to keep its addresses and neighbours:
 * router/neighbour solicitation and advertisement, redirect, and DHCPv6
 * replies (server port 547 -> client port 546).
 */
ZFW_INLINE int zfw_v6_control(const struct zfw_pkt *p)
{
	if (p->k.proto == ZFW_P_ICMPV6)
		return p->icmp_type >= 133 && p->icmp_type <= 137;
	if (p->k.proto == ZFW_P_UDP)
		return p->k.sport == 547 && p->k.dport == 546;
	return 0;
}

/*
 * Step 6: does the packet belong to a flow we know?  Returns 1 (allow),
 * 0 (not a known flow) or minus the drop reason: ZFW_R_DROP_RULE_DENY (a
 * rule change since the flow was admitted now denies it: the flow is
 * ended), ZFW_R_DROP_TCP_INVALID (the segment contradicts the flow's
 * handshake numbers: conntrack.h; the flow is unchanged).  Rule changes apply to new flows at once;
 * an established flow keeps running unless an explicit deny now matches it.
 * @slot: the packet's flow cache slot when the fast path already looked it
 * up and missed (NULL: looked up here).  (@cfg and @slot are arguments, not
 * zfw_ictx members: the stack is tight.)
 */
ZFW_INLINE int zfw_known_flow(struct __sk_buff *skb, struct zfw_ictx *c, struct zfw_config *cfg,
			      struct zfw_flow_cache *slot)
{
	struct zfw_pkt *p = &c->p;
	struct zfw_flow_key rev;
	struct zfw_flow *f;
	int inbound, rc;
	void *in_map = zfw_ct_map(p->k.proto, 1);
	void *out_map = zfw_ct_map(p->k.proto, 0);
	__u32 gen = cfg ? cfg->policy_gen : 0;
	__u32 epoch;

	if (!in_map || !out_map)
		return 0;
	/* a bare SYN is never cached nor cacheable: no slot, no epoch; it is
	 * a known flow only if tcp_ingress_map holds it.  Asked of the map by
	 * name first: a lookup in a map chosen at run time (in_map) is a call
	 * through the map's ops, one in a constant map the verifier inlines,
	 * and most bare SYNs find nothing (README "make bench", the per-step
	 * rows) */
	if (zfw_is_bare_syn(p)) {
		if (!bpf_map_lookup_elem(&tcp_ingress_map, &p->k))
			return 0;
		slot = 0;
		epoch = 0;
	} else {
		struct zfw_tuple q;

		if (!slot && c->xlat.kind == ZFW_XLAT_NONE && zfw_fc_hit(p, ZFW_DIR_INGRESS, gen, &slot, &q) &&
		    !slot->tun_ifindex)
			return 1; /* (a tunnelled flow is no known flow: the rules decide) */
		epoch = zfw_ct_epoch(zfw_ct_bucket(&p->k));
	}
	/* an inbound flow admitted earlier (the packet comes from its
	 * originator), or the reply of a flow opened from this side (egress
	 * created it): assured flows first, then unassured ones, which a bare
	 * SYN skips (conntrack.h, zfw_ct_open) */
	zfw_flow_reverse(&p->k, &rev);
	inbound = 1;
	rc = zfw_ct_touch_get(in_map, &p->k, p, 1, 1, &f);
	if (rc == ZFW_CT_MISS) {
		if (zfw_is_bare_syn(p))
			return 0;
		inbound = 0;
		rc = zfw_ct_touch_get(out_map, &rev, p, 0, 0, &f);
		if (rc == ZFW_CT_MISS) {
			inbound = 1;
			rc = zfw_ct_unassured(1, &p->k, p, 1, 1, &f);
			if (rc == ZFW_CT_MISS) {
				inbound = 0;
				rc = zfw_ct_unassured(0, &rev, p, 0, 0, &f);
				if (rc == ZFW_CT_MISS)
					return 0;
			}
		}
	}
	if (rc == ZFW_CT_INVALID)
		return -ZFW_R_DROP_TCP_INVALID;
	if (inbound && f && f->policy_gen && f->policy_gen != gen) {
		struct zfw_decision d;

		d = zfw_policy_lookup(p, ZFW_DIR_INGRESS, !!(c->flags & ZFW_IF_PER_INTERFACE_RULES),
				      cfg);
		if (d.action == ZFW_ACT_DENY) {
			zfw_rule_hit(&d, p);
			zfw_ct_forget(in_map, 1, &p->k);
			zfw_ct_epoch_bump(&p->k);
			return -ZFW_R_DROP_RULE_DENY;
		}
		f->policy_gen = gen;
	}
	if (inbound)
		zfw_known_fill(c, slot, f, 1, 1, gen, epoch);
	else
		zfw_known_fill(c, slot, f, 0, 0, gen, epoch);
	return 1;
}

ZFW_INLINE int zfw_ingress_full(struct __sk_buff *skb, struct zfw_config *cfg, __u32 flags,
				struct zfw_flow_cache *slot)
{
	struct zfw_ictx c = {};
	struct zfw_decision d;
	void *data, *data_end;
	__u32 tun_if = 0;
	int rc, tun_only;

	c.flags = flags;
	c.p.k.ifindex = skb->ifindex;
	c.p.wire_len = skb->len;

	zfw_skb_linearize_head(skb);
	data = ZFW_SKB_DATA(skb);
	data_end = ZFW_SKB_DATA_END(skb);

	rc = zfw_parse_eth(data, data_end, &c.p);
	if (rc == ZFW_PARSE_NOT_IP)
		return zfw_non_ip(&c);
	if (rc != ZFW_PARSE_OK)
		return zfw_drop(&c, ZFW_R_DROP_MALFORMED);
	zfw_tcp_syn_opts(skb, &c.p); /* a SYN+ACK's window scale (conntrack.h, "Windows") */

	/* Step 2: neighbour discovery always passes; other IPv6 needs `ipv6` */
	if (c.p.k.family == ZFW_AF_INET6) {
		if (zfw_v6_control(&c.p))
			return zfw_pass(&c, ZFW_R_PASS_ND);
		if (!(c.flags & ZFW_IF_IPV6))
			return zfw_drop(&c, ZFW_R_DROP_IPV6_OFF);
	}

	/* Step 3: a fragment without its first fragment's verdict */
	if (c.p.frag == ZFW_FRAG_LATER) {
		if (zfw_frag_allowed(&c.p))
			return zfw_pass(&c, ZFW_R_PASS_FRAGMENT);
		return zfw_drop(&c, ZFW_R_DROP_FRAGMENT);
	}

	/* Step 4, masquerade: replies to translated flows get the inside destination back */
	if (c.flags & ZFW_IF_MASQUERADE) {
		/* a DNAT's description: from the destination the packet arrived with */
		__builtin_memcpy(c.xlat.addr, c.p.k.daddr, 16);
		c.xlat.port = c.p.k.dport;
		rc = zfw_nat_in(skb, &c.p);
		if (rc < 0)
			return zfw_drop(&c, -rc);
		c.xlat.kind = rc;
		data = ZFW_SKB_DATA(skb);
		data_end = ZFW_SKB_DATA_END(skb);
	}

	/* Step 5: OT responses, inspected before a known flow can admit them */
	if ((c.flags & ZFW_IF_OT_FILTERING) && c.p.k.proto == ZFW_P_TCP) {
		rc = zfw_ot_ingress(skb, &c.p, c.flags);
		if (rc)
			return zfw_drop(&c, rc);
	}

	/* Step 6: known flows, the cheapest path */
	rc = zfw_known_flow(skb, &c, cfg, slot);
	if (rc > 0) {
		zfw_frag_note(&c.p);
		return zfw_pass(&c, ZFW_R_PASS_KNOWN_FLOW);
	}
	if (rc < 0)
		return zfw_drop(&c, -rc);
	/* a local socket's existing connection (opened before zfw tracked it);
	 * a bare SYN cannot belong to one, so it skips the socket lookup */
	if (!zfw_is_bare_syn(&c.p) && zfw_local_flow(skb, &c.p)) {
		zfw_frag_note(&c.p);
		return zfw_pass(&c, ZFW_R_PASS_LOCAL_SOCKET);
	}

	/* Step 7: ICMP and VRRP */
	if (c.p.k.proto == ZFW_P_ICMP || c.p.k.proto == ZFW_P_ICMPV6) {
		rc = zfw_icmp_verdict(data, data_end, &c.p, c.flags);
		if (rc > 0)
			return zfw_pass(&c, rc);
		return zfw_drop(&c, -rc);
	}
	if (c.p.k.proto == ZFW_P_VRRP && (c.flags & ZFW_IF_VRRP))
		return zfw_pass(&c, ZFW_R_PASS_VRRP);
	if (c.p.k.proto != ZFW_P_TCP && c.p.k.proto != ZFW_P_UDP)
		return zfw_drop(&c, ZFW_R_DROP_NO_RULE);

	/* Step 8: a TCP segment that is not a SYN cannot start a flow; it may still
	 * belong to a tunnelled connection (no state here: the tunneler
	 * terminates it), which only a tunnel rule lets on */
	tun_only = c.p.k.proto == ZFW_P_TCP && !zfw_is_bare_syn(&c.p);
	if (tun_only && !zfw_tun_flow_known(&c.p))
		return zfw_drop(&c, ZFW_R_DROP_NO_STATE);

	/* Step 9 (ahead of SSH, so that a protected port 22 stays protected): DDoS */
	if ((c.flags & ZFW_IF_DDOS) && c.p.k.proto == ZFW_P_TCP && !tun_only) {
		rc = zfw_ddos_check(&c.p, cfg);
		if (rc)
			return zfw_drop(&c, rc);
	}

	/* Step 10: SSH to an interface address */
	if (c.p.k.proto == ZFW_P_TCP && c.p.k.dport == 22 && (c.flags & ZFW_IF_SSH) && !tun_only &&
	    zfw_if_addr_exempt(c.p.k.ifindex, c.p.k.family, c.p.k.daddr))
		return zfw_admit(skb, &c, ZFW_R_PASS_SSH);

	/* Step 11: policy */
	d = zfw_policy_lookup(&c.p, ZFW_DIR_INGRESS, !!(c.flags & ZFW_IF_PER_INTERFACE_RULES), cfg);
	if (tun_only && d.action != ZFW_ACT_TUNNEL)
		return zfw_drop(&c, ZFW_R_DROP_NO_STATE);
	/* a new flow's decision (a tunnelled connection's later segments are
	 * no new flow) */
	if (!tun_only)
		zfw_rule_hit(&d, &c.p);
	switch (d.action) {
	case ZFW_ACT_ALLOW:
		zfw_frag_note(&c.p);
		return zfw_admit(skb, &c, ZFW_R_PASS_RULE);
	case ZFW_ACT_DENY:
		return zfw_drop(&c, ZFW_R_DROP_RULE_DENY);
	case ZFW_ACT_TPROXY:
		if (zfw_tproxy_assign(skb, &c.p, d.tproxy_port) < 0)
			return zfw_drop(&c, ZFW_R_DROP_NO_LISTENER);
		return zfw_pass(&c, ZFW_R_TPROXY);
	case ZFW_ACT_TUNNEL:
		rc = zfw_tun_redirect(data, data_end, &c.p, &tun_if);
		if (rc < 0)
			return zfw_drop(&c, -rc);
		zfw_note(&c.p, c.flags, ZFW_DIR_INGRESS, ZFW_R_TUNNEL, 0);
		/* the flow's way into the tun, for the fast path */
		if (slot)
			zfw_tun_cache_flow(skb, slot, &c.p.k, tun_if, d.gen);
		return bpf_redirect(tun_if, 0);
	default:
		return zfw_drop(&c, ZFW_R_DROP_NO_RULE);
	}
}

/*
 * Step 0, the entry point: a packet of a cached flow is decided before the general
 * parser (zfw_fc_fast) unless the interface wants more than the verdict of
 * it -- address translation, OT inspection, or an event per packet.
 */
ZFW_INLINE int zfw_ingress(struct __sk_buff *skb)
{
	struct zfw_config *cfg = zfw_cfg();
	__u32 flags = zfw_if_flags(skb->ifindex);
	struct zfw_flow_cache *slot = 0;

	if (!(flags & (ZFW_IF_OT_FILTERING | ZFW_IF_VERBOSE))) {
		struct zfw_tuple q; /* in this block only: the full path reuses its stack */

		if (zfw_fc_fast(skb, ZFW_DIR_INGRESS, cfg ? cfg->policy_gen : 0, flags & ZFW_IF_IPV6,
				&q, &slot) &&
		    slot) {
			if (!slot->tun_ifindex) {
				if (slot->nat) {
					/* a reply to a masqueraded flow: the inside destination back */
					if (zfw_fc_nat_apply(skb, slot, &q, 1) < 0) {
						zfw_count(ZFW_R_DROP_NAT_UNTRANSLATABLE);
						return TC_ACT_SHOT;
					}
					zfw_count(ZFW_R_NAT);
				}
				zfw_count(ZFW_R_PASS_KNOWN_FLOW);
				return TC_ACT_OK;
			}
			/* a tunnelled flow: into the tun, unless the client came
			 * back with other MACs (the full path records them) */
			if (zfw_fc_tun_macs(slot, ZFW_SKB_DATA(skb), ZFW_SKB_DATA_END(skb))) {
				zfw_count(ZFW_R_TUNNEL);
				return bpf_redirect(slot->tun_ifindex, 0);
			}
			slot->dir = 0;
		}
	}
	return zfw_ingress_full(skb, cfg, flags, slot);
}

#endif /* ZFW_INGRESS_H */
