/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nat.h - masquerade on interfaces with ZFW_IF_MASQUERADE.
 *
 * Egress (zfw_nat_out, the last step of the egress program): a forwarded
 * packet -- its source is not an address of the outgoing interface -- gets
 * the interface's primary address as source.  Port choice (IPv4; the echo
 * id for ICMP), as Linux NAT does it: the inside source port when it is
 * free for that destination (>= ZFW_NAT_PORT_MIN), otherwise random ports
 * in ZFW_NAT_PORT_MIN..65535, ZFW_NAT_RETRIES candidates in all.  A port is
 * free when no mapping to the same (peer, peer port) holds it, no local
 * socket uses the tuple, and no TCP mapping of another inside host closed
 * on it within ZFW_NAT_TIME_WAIT_S (masquerade_closed_map: the peer may
 * still hold TIME_WAIT for that 4-tuple and would reject a SYN whose
 * timestamp is older; the same inside host and port may take it back, its
 * timestamps continue).  A mapping idle past its timeout is taken over.
 * When no candidate is free: a recently closed port if one was seen, else
 * the oldest half-open mapping among the candidates is evicted
 * (ZFW_R_NAT_EVICTED), else the packet is dropped (exhausted).  BPF_NOEXIST
 * makes every claim atomic.  IPv6 is static PAT: the address changes, the
 * port stays (one candidate, the same rules, but another host's half-open
 * mapping is never evicted for it).  masquerade_reverse_map
 * remembers the translation of the inside flow, so every later packet of
 * the flow reuses it.
 *
 * TCP mappings are half-open (SYN_SENT, then SYN_RECV after the peer's
 * SYN-ACK) until the inside host's ACK acknowledges the SYN-ACK; only then
 * ESTABLISHED.  Half-open mappings time out after ZFW_TCP_OPEN_TIMEOUT_S
 * counted from the inside host's last packet (the peer's SYN-ACK
 * retransmissions do not prolong them), are evicted first under
 * exhaustion, and are never put in the flow cache.
 *
 * Ingress (zfw_nat_in, before the known-flow step): a packet to the
 * interface address whose (remote, remote port, our port) is in
 * masquerade_map / icmp_masquerade_map gets the inside destination back;
 * the in-memory tuple is updated so that the verdict path that follows
 * sees the flow exactly as egress tracked it (conntrack is keyed pre-NAT,
 * by the inside tuple).
 *
 * ICMP errors are translated both ways, outer and quoted headers, so the
 * inside address never leaves and errors reach the inside host.
 * Checksums: bpf_l3_csum_replace for the IPv4 header, bpf_l4_csum_replace
 * with BPF_F_PSEUDO_HDR for address changes (TCP, UDP, ICMPv6) and without
 * it for ports, BPF_F_MARK_MANGLED_0 for UDP (a zero checksum stays zero).
 * These helpers also keep CHECKSUM_PARTIAL / CHECKSUM_COMPLETE skbs right.
 *
 * Removal: TCP mappings go after RST, or after the final ACK once both sides
 * sent FIN (leaving a masquerade_closed_map record); UDP and echo mappings
 * expire after ZFW_UDP_TIMEOUT_S idle (an expired one no longer admits
 * replies).  Expired mappings are deleted by `zfw gc` or taken over by a new
 * flow that picks their port; `zfw conntrack flush` deletes all.
 */
#ifndef ZFW_NAT_H
#define ZFW_NAT_H

#include "maps.h"
#include "parse.h"
#include "events.h"
#include "iface.h"
#include "icmp.h"
#include "flowcache.h" /* struct zfw_xlat: what a step did, for the caller to remember */

#define ZFW_NAT_SIDE_IN ZFW_NAT_FIN_INSIDE
#define ZFW_NAT_SIDE_OUT ZFW_NAT_FIN_OUTSIDE

/* Mapping timestamps: the coarse clock is plenty for 30 s+ idle limits
 * (same CLOCK_MONOTONIC base user space compares against) and cheaper. */
ZFW_INLINE __u64 zfw_nat_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* What the candidates of one allocation left behind for the fallbacks. */
struct zfw_nat_pick {
	__u64 now;
	__u64 evict_ns; /* creation of the oldest half-open mapping seen */
	__u16 evict;    /* its port (0: none) */
	__u16 closed;   /* a free port another host closed recently (0: none) */
	__u32 pad;
};

/* Per-CPU working state: the ingress hook's stack is nearly full. */
struct zfw_nat_scratch {
	struct zfw_pkt in;      /* the header an ICMP error quotes */
	struct zfw_nat_key k;
	struct zfw_nat_val v;
	struct zfw_flow_key rk;
	struct zfw_nat_rev nr;
	struct zfw_nat_closed c; /* a closing mapping's masquerade_closed_map record */
	struct zfw_nat_pick pk;  /* zfw_nat_alloc: fallbacks seen among the candidates */
	struct bpf_sock_tuple t; /* zfw_nat_port_busy: off the stack */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct zfw_nat_scratch);
	__uint(max_entries, 1);
} nat_scratch_map SEC(".maps");

ZFW_INLINE struct zfw_nat_scratch *zfw_nat_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&nat_scratch_map, &zero);
}

ZFW_INLINE int zfw_nat_drop(const struct zfw_pkt *p, __u8 dir, __u16 reason, __u16 why)
{
	zfw_count(reason);
	zfw_emit(p, dir, ZFW_EV_NAT, reason, why);
	return TC_ACT_SHOT;
}

/* The address masquerade uses on @ifindex: the first IPv4 address, or the
 * first IPv6 address that is not link-local.  Returns -1 when none. */
ZFW_INLINE int zfw_nat_addr(__u32 ifindex, __u8 family, __u32 *out)
{
	int i;

	if (family == ZFW_AF_INET) {
		struct zfw_if_addrs4 *a = bpf_map_lookup_elem(&ifindex_ip_map, &ifindex);

		if (!a || a->count == 0)
			return -1;
		out[0] = a->addr[0];
		return 0;
	} else {
		struct zfw_if_addrs6 *a = bpf_map_lookup_elem(&ifindex_ip6_map, &ifindex);

		if (!a)
			return -1;
		for (i = 0; i < ZFW_MAX_IF_ADDRS; i++) {
			if (i >= a->count)
				break;
			if ((a->addr[i].a[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
				continue;
			__builtin_memcpy(out, a->addr[i].a, 16);
			return 0;
		}
		return -1;
	}
}

/* Offset of the L4 checksum an address change touches (0: none, ICMPv4). */
ZFW_INLINE __u32 zfw_nat_addr_csum(const struct zfw_pkt *p, __u64 *fl)
{
	*fl = BPF_F_PSEUDO_HDR;
	switch (p->k.proto) {
	case ZFW_P_TCP:
		return p->l4_off + 16;
	case ZFW_P_UDP:
		*fl |= BPF_F_MARK_MANGLED_0;
		return p->l4_off + 6;
	case ZFW_P_ICMPV6:
		return p->l4_off + 2;
	default:
		return 0;
	}
}

#include "natcsum.h"

ZFW_INLINE void *zfw_nat_map(__u8 proto)
{
	if (proto == ZFW_P_ICMP || proto == ZFW_P_ICMPV6)
		return &icmp_masquerade_map;
	return &masquerade_map;
}

/* The inside flow (masquerade_reverse_map key) of a mapping. */
ZFW_INLINE void zfw_nat_rev_key(const struct zfw_nat_key *k, const struct zfw_nat_val *v,
				struct zfw_flow_key *rk)
{
	__builtin_memcpy(rk->saddr, v->addr, 16);
	__builtin_memcpy(rk->daddr, k->raddr, 16);
	rk->sport = v->port;
	rk->dport = k->rport;
	rk->ifindex = k->ifindex;
	rk->family = k->family;
	rk->proto = k->proto;
	rk->pad[0] = 0;
	rk->pad[1] = 0;
}

/* What zfw_nat_tcp_step says about the mapping after a packet. */
#define ZFW_NAT_KEEP 0
#define ZFW_NAT_GONE_RST 1    /* reset: delete */
#define ZFW_NAT_GONE_CLOSED 2 /* closed with FINs: delete, remember the port */

/* Idle limit of a mapping in @state (nat::timeout_ns is the same rule). */
ZFW_INLINE __u64 zfw_nat_timeout_ns(__u8 proto, __u8 state)
{
	__u64 s = ZFW_TCP_CLOSE_TIMEOUT_S;

	if (proto != ZFW_P_TCP)
		s = ZFW_UDP_TIMEOUT_S;
	else if (state == ZFW_TCP_ESTABLISHED)
		s = ZFW_TCP_EST_TIMEOUT_S;
	else if (state == ZFW_TCP_SYN_SENT || state == ZFW_TCP_SYN_RECV)
		s = ZFW_TCP_OPEN_TIMEOUT_S;
	return s * ZFW_NSEC;
}

ZFW_INLINE int zfw_nat_half_open(__u8 proto, __u8 state)
{
	return proto == ZFW_P_TCP && (state == ZFW_TCP_SYN_SENT || state == ZFW_TCP_SYN_RECV);
}

/**
 * zfw_nat_tcp_step - advance a TCP mapping's state by one packet from
 * @side: the handshake (@acks_synack: an inside ACK that acknowledges the
 * peer's SYN-ACK completes it) and the close bookkeeping.  Returns
 * ZFW_NAT_GONE_* when the mapping must go after this packet (RST, or the
 * ACK that answers the last FIN), else ZFW_NAT_KEEP.
 */
ZFW_INLINE int zfw_nat_tcp_step(__u8 *state, __u8 *fin, __u8 fl, __u8 side, int acks_synack)
{
	if (fl & ZFW_TCP_RST)
		return ZFW_NAT_GONE_RST;
	if (fl & ZFW_TCP_SYN) {
		if (!(fl & ZFW_TCP_ACK) && side == ZFW_NAT_SIDE_IN &&
		    (*state == ZFW_TCP_FIN_WAIT || *state == ZFW_TCP_CLOSING)) {
			/* the inside host reuses the tuple: a new connection */
			*state = ZFW_TCP_SYN_SENT;
			*fin = 0;
		} else if ((fl & ZFW_TCP_ACK) && side == ZFW_NAT_SIDE_OUT &&
			   *state == ZFW_TCP_SYN_SENT) {
			*state = ZFW_TCP_SYN_RECV; /* half-open until the inside ACK */
		}
		return ZFW_NAT_KEEP;
	}
	if (*state == ZFW_TCP_SYN_RECV && side == ZFW_NAT_SIDE_IN && (fl & ZFW_TCP_ACK) &&
	    acks_synack)
		*state = ZFW_TCP_ESTABLISHED;
	if (fl & ZFW_TCP_FIN) {
		__u8 f = (*fin & (ZFW_NAT_FIN_INSIDE | ZFW_NAT_FIN_OUTSIDE)) | side;

		if (side == ZFW_NAT_SIDE_OUT)
			f |= ZFW_NAT_FIN_LAST_OUT;
		*fin = f;
		*state = (f & 3) == 3 ? ZFW_TCP_CLOSING : ZFW_TCP_FIN_WAIT;
		return ZFW_NAT_KEEP;
	}
	if (*state == ZFW_TCP_CLOSING && (fl & ZFW_TCP_ACK)) {
		__u8 last = (*fin & ZFW_NAT_FIN_LAST_OUT) ? ZFW_NAT_SIDE_OUT : ZFW_NAT_SIDE_IN;

		return side != last ? ZFW_NAT_GONE_CLOSED : ZFW_NAT_KEEP;
	}
	return ZFW_NAT_KEEP;
}

/**
 * zfw_nat_tcp_event - egress side of an inside TCP packet @p that may
 * change a mapping's state (FIN, RST, any packet while half-open or
 * closing).  Updates both entries; returns ZFW_NAT_GONE_* when they must
 * go, which the caller does with zfw_nat_forget once the packet is
 * translated.
 */
ZFW_INLINE int zfw_nat_tcp_event(const struct zfw_nat_key *k, const struct zfw_pkt *p)
{
	struct zfw_nat_val *v = bpf_map_lookup_elem(&masquerade_map, k);
	struct zfw_nat_rev *r;
	int gone;

	if (!v)
		return ZFW_NAT_KEEP;
	r = bpf_map_lookup_elem(&masquerade_reverse_map, &p->k);
	gone = zfw_nat_tcp_step(&v->state, &v->fin, p->tcp_flags, ZFW_NAT_SIDE_IN,
				r && p->tcp_ack == r->synack_seq);
	if (r) {
		r->state = v->state;
		r->fin = v->fin;
		/* a new SYN of the inside host: the number the peer must ack */
		if ((p->tcp_flags & (ZFW_TCP_SYN | ZFW_TCP_ACK)) == ZFW_TCP_SYN)
			r->syn_seq = zfw_tcp_end(p);
	}
	return gone;
}

#include "natports.h"

/* May the packet @p, of a flow without a mapping, start one? */
ZFW_INLINE int zfw_nat_may_start(const struct zfw_pkt *p)
{
	if (p->k.proto == ZFW_P_TCP)
		return (p->tcp_flags & (ZFW_TCP_SYN | ZFW_TCP_ACK | ZFW_TCP_RST)) == ZFW_TCP_SYN;
	if (p->k.proto == ZFW_P_UDP)
		return p->has_ports;
	return zfw_icmp_is_echo_req(p) && p->has_ports;
}

/* SNAT of a forwarded TCP / UDP / ICMP echo packet of the mapping @r;
 * *@x says whether later packets may be translated from the flow cache. */
ZFW_INLINE int zfw_snat(struct __sk_buff *skb, struct zfw_pkt *p, struct zfw_nat_scratch *s,
			struct zfw_nat_rev *r, struct zfw_xlat *x)
{
	struct zfw_nat_rev *nr = &s->nr;
	struct zfw_nat_key *k = &s->k;
	__u32 csum_off, off;
	__u64 fl;
	int gone = 0;

	r->last_ns = zfw_nat_now();
	nr = r;
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->raddr, p->k.daddr, 16);
	k->rport = p->k.dport;
	k->nport = nr->nport;
	k->ifindex = p->k.ifindex;
	k->family = p->k.family;
	k->proto = p->k.proto;
	if (p->k.proto == ZFW_P_TCP &&
	    ((p->tcp_flags & (ZFW_TCP_FIN | ZFW_TCP_RST)) || nr->state != ZFW_TCP_ESTABLISHED))
		gone = zfw_nat_tcp_event(k, p);

	csum_off = zfw_nat_addr_csum(p, &fl);
	if (zfw_nat_set_addr(skb, p->k.family, p->l3_off, 0, p->k.saddr, nr->naddr, csum_off, fl))
		return zfw_nat_drop(p, ZFW_DIR_EGRESS, ZFW_R_DROP_NAT_UNTRANSLATABLE,
				    ZFW_NAT_E_REWRITE);
	off = zfw_nat_port_off(p, 0, &csum_off, &fl);
	if (p->k.family == ZFW_AF_INET &&
	    zfw_nat_set_port(skb, off, p->k.sport, nr->nport, csum_off, fl))
		return zfw_nat_drop(p, ZFW_DIR_EGRESS, ZFW_R_DROP_NAT_UNTRANSLATABLE,
				    ZFW_NAT_E_REWRITE);
	if (gone)
		zfw_nat_forget(s, zfw_nat_map(p->k.proto), k, &p->k, gone, p->k.saddr, p->k.sport);
	else if (nr->state == ZFW_TCP_ESTABLISHED || nr->state == ZFW_TCP_UDP) {
		/* later packets of the flow may be translated from the flow
		 * cache (the reverse entry tracks FIN/RST; half-open mappings
		 * stay on the full path, which sees the ACK that completes them) */
		x->kind = ZFW_XLAT_SNAT;
		__builtin_memcpy(x->addr, nr->naddr, 16);
		x->port = nr->nport;
	}
	zfw_count(ZFW_R_NAT);
	return TC_ACT_OK;
}

/**
 * zfw_snat_icmp_error - an ICMP error leaving through the outside interface
 * that quotes a translated flow (sent by the inside host, or by this host
 * about a packet it had un-translated): quoted destination and, when the
 * error comes from the inside host, the outer source get the outside view.
 */
ZFW_INLINE int zfw_snat_icmp_error(struct __sk_buff *skb, struct zfw_pkt *p, int own_src,
				   struct zfw_nat_scratch *s)
{
	struct zfw_flow_key *rk = &s->rk;
	struct zfw_nat_rev *nr = &s->nr;
	struct zfw_pkt *in = &s->in;
	struct zfw_nat_rev *r;
	void *data = ZFW_SKB_DATA(skb), *data_end = ZFW_SKB_DATA_END(skb);
	__u32 csum = p->l4_off + 2;
	int v4 = p->k.family == ZFW_AF_INET;

	__builtin_memset(in, 0, sizeof(*in));
	if (zfw_icmp_embedded(data, data_end, p, in) < 0 ||
	    (in->k.proto != ZFW_P_TCP && in->k.proto != ZFW_P_UDP)) {
		if (own_src)
			return TC_ACT_OK;
		return zfw_nat_drop(p, ZFW_DIR_EGRESS, ZFW_R_DROP_NAT_UNTRANSLATABLE,
				    ZFW_NAT_E_NOT_START);
	}
	zfw_flow_reverse(&in->k, rk);
	r = bpf_map_lookup_elem(&masquerade_reverse_map, rk);
	if (!r) {
		if (own_src)
			return TC_ACT_OK;
		return zfw_nat_drop(p, ZFW_DIR_EGRESS, ZFW_R_DROP_NAT_UNTRANSLATABLE,
				    ZFW_NAT_E_NOT_START);
	}
	*nr = *r;
	/* quoted destination: IPv4 fixes the quoted header checksum (the ICMP
	 * sum of a header with a valid checksum does not change); IPv6 has
	 * none, so the ICMPv6 checksum takes the difference */
	if (zfw_nat_set_addr(skb, p->k.family, in->l3_off, 1, in->k.daddr, nr->naddr,
			     v4 ? 0 : csum, 0))
		goto fail;
	if (v4 && zfw_nat_set_port(skb, in->l4_off + 2, in->k.dport, nr->nport, csum, 0))
		goto fail;
	if (!own_src && zfw_nat_set_addr(skb, p->k.family, p->l3_off, 0, p->k.saddr, nr->naddr,
					 v4 ? 0 : csum, BPF_F_PSEUDO_HDR))
		goto fail;
	zfw_count(ZFW_R_NAT);
	return TC_ACT_OK;
fail:
	return zfw_nat_drop(p, ZFW_DIR_EGRESS, ZFW_R_DROP_NAT_UNTRANSLATABLE, ZFW_NAT_E_REWRITE);
}

/*
 * Packets no router forwards, which this host sends before (or without)
 * having an address of its own: DHCP from 0.0.0.0, limited broadcast,
 * IPv6 from :: (DAD, MLD) or a link-local address.  Never translated.
 */
ZFW_INLINE int zfw_nat_local_scope(const struct zfw_pkt *p)
{
	if (p->k.family == ZFW_AF_INET)
		return p->k.saddr[0] == 0 || p->k.daddr[0] == 0xffffffff;
	if ((p->k.saddr[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
		return 1;
	return (p->k.saddr[0] | p->k.saddr[1] | p->k.saddr[2] | p->k.saddr[3]) == 0;
}

/* zfw_nat_out_map's answer for a packet that may start a mapping. */
#define ZFW_NAT_NEED_MAPPING 1000

/**
 * zfw_nat_out_map - the masquerade step for packets of existing mappings,
 * ICMP errors and untranslated packets; ZFW_NAT_NEED_MAPPING when the
 * packet starts a flow that needs a mapping first.  *@x (ZFW_XLAT_UNCACHED
 * on entry) gets what was done where later packets may repeat it.
 */
__attribute__((noinline)) int zfw_nat_out_map(struct __sk_buff *skb, struct zfw_pkt *p,
					      struct zfw_xlat *x)
{
	struct zfw_nat_scratch *s;
	struct zfw_nat_rev *r;
	int own;

	if (!skb || !p || !x)
		return TC_ACT_SHOT;

	if (!(zfw_if_flags(p->k.ifindex) & ZFW_IF_MASQUERADE)) {
		x->kind = ZFW_XLAT_NONE;
		return TC_ACT_OK;
	}
	s = zfw_nat_scratch();
	if (!s)
		return TC_ACT_SHOT;
	if ((p->k.proto == ZFW_P_ICMP || p->k.proto == ZFW_P_ICMPV6) && p->frag != ZFW_FRAG_LATER &&
	    zfw_icmp_is_error(p)) {
		own = zfw_is_if_addr(p->k.ifindex, p->k.family, p->k.saddr);
		return zfw_snat_icmp_error(skb, p, own, s);
	}
	/* a flow with a mapping is forwarded by definition: the own-address
	 * check is needed only before creating one */
	if (p->frag != ZFW_FRAG_LATER && p->has_ports) {
		r = bpf_map_lookup_elem(&masquerade_reverse_map, &p->k);
		if (r)
			return zfw_snat(skb, p, s, r, x);
	}
	if (zfw_is_if_addr(p->k.ifindex, p->k.family, p->k.saddr) || zfw_nat_local_scope(p)) {
		x->kind = ZFW_XLAT_NONE; /* never translated */
		return TC_ACT_OK;
	}
	/* no ports to translate (later fragments, other protocols): never let
	 * the inside address out */
	if (p->frag == ZFW_FRAG_LATER || !p->has_ports || !zfw_nat_may_start(p))
		return zfw_nat_drop(p, ZFW_DIR_EGRESS, ZFW_R_DROP_NAT_UNTRANSLATABLE,
				    ZFW_NAT_E_NOT_START);
	return ZFW_NAT_NEED_MAPPING;
}

/* Create the mapping of the new flow @p: 0, or TC_ACT_SHOT (dropped). */
static __attribute__((noinline, unused)) int zfw_nat_new(struct __sk_buff *skb, struct zfw_pkt *p)
{
	struct zfw_nat_scratch *s = zfw_nat_scratch();
	int rc;

	if (!s || !skb || !p)
		return TC_ACT_SHOT;
	rc = zfw_nat_alloc(skb, p, s);
	if (rc)
		return zfw_nat_drop(p, ZFW_DIR_EGRESS,
				    rc == ZFW_NAT_E_EXHAUSTED  ? ZFW_R_DROP_NAT_EXHAUSTED
				    : rc == ZFW_NAT_E_NO_ADDR ? ZFW_R_DROP_NAT_NO_ADDR
							      : ZFW_R_DROP_NAT_UNTRANSLATABLE,
				    rc);
	return 0;
}

/**
 * zfw_nat_out - masquerade step of the egress program, after its state
 * bookkeeping (which is keyed by the inside tuple).  The host's own
 * packets (source = an address of the interface) leave unchanged.  A new
 * flow's mapping is made by zfw_nat_new, called beside zfw_nat_out_map
 * rather than from it: nested, their stack frames and the egress
 * program's would pass the verifier's 512 bytes.  *@x describes the
 * translation for the caller's flow cache slot (flowcache.h,
 * zfw_fc_remember); a flow's first translated packet is never remembered.
 */
ZFW_INLINE int zfw_nat_out(struct __sk_buff *skb, struct zfw_pkt *p, struct zfw_xlat *x)
{
	int rc;

	x->kind = ZFW_XLAT_UNCACHED;
	rc = zfw_nat_out_map(skb, p, x);
	if (rc != ZFW_NAT_NEED_MAPPING)
		return rc;
	if (zfw_nat_new(skb, p))
		return TC_ACT_SHOT;
	rc = zfw_nat_out_map(skb, p, x);
	x->kind = ZFW_XLAT_UNCACHED;
	return rc;
}

/* DNAT of an ICMP error quoting a translated flow: outer destination,
 * quoted source address and port go back to the inside host.  Returns 1
 * when translated, 0 when the error quotes no mapping, or minus a reason. */
ZFW_INLINE int zfw_dnat_icmp_error(struct __sk_buff *skb, struct zfw_pkt *p,
				   struct zfw_nat_scratch *s)
{
	struct zfw_pkt *in = &s->in;
	struct zfw_nat_key *k = &s->k;
	struct zfw_nat_val *v = &s->v;
	struct zfw_nat_val *vp;
	void *data = ZFW_SKB_DATA(skb), *data_end = ZFW_SKB_DATA_END(skb);
	__u32 csum = p->l4_off + 2, off;
	int v4 = p->k.family == ZFW_AF_INET;

	__builtin_memset(in, 0, sizeof(*in));
	if (zfw_icmp_embedded(data, data_end, p, in) < 0 || !in->has_ports)
		return 0; /* the verdict path judges it */
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->raddr, in->k.daddr, 16);
	k->rport = in->k.dport;
	k->nport = in->k.sport;
	k->ifindex = p->k.ifindex;
	k->family = in->k.family;
	k->proto = in->k.proto;
	vp = bpf_map_lookup_elem(zfw_nat_map(in->k.proto), k);
	if (!vp || !zfw_is_if_addr(p->k.ifindex, p->k.family, p->k.daddr))
		return 0;
	*v = *vp;
	if (zfw_nat_set_addr(skb, p->k.family, p->l3_off, 1, p->k.daddr, v->addr, v4 ? 0 : csum,
			     BPF_F_PSEUDO_HDR))
		return -ZFW_R_DROP_NAT_UNTRANSLATABLE;
	if (zfw_nat_set_addr(skb, p->k.family, in->l3_off, 0, in->k.saddr, v->addr,
			     v4 ? 0 : csum, 0))
		return -ZFW_R_DROP_NAT_UNTRANSLATABLE;
	off = in->k.proto == ZFW_P_TCP || in->k.proto == ZFW_P_UDP ? in->l4_off : in->l4_off + 4;
	if (v4 && zfw_nat_set_port(skb, off, in->k.sport, v->port, csum, 0))
		return -ZFW_R_DROP_NAT_UNTRANSLATABLE;
	__builtin_memcpy(p->k.daddr, v->addr, 16);
	zfw_count(ZFW_R_NAT);
	return 1;
}

/**
 * zfw_nat_in - masquerade step of the ingress program, before the
 * known-flow step.  Returns what it did, or minus a ZFW_R_DROP_* reason:
 * ZFW_XLAT_NONE, not a reply to a translated flow; ZFW_XLAT_DNAT,
 * translated from the destination the packet arrived with, and the flow
 * cache may repeat it; ZFW_XLAT_UNCACHED, translated, but not that way.
 * When translated, the caller reloads its packet pointers and @p holds the
 * inside tuple.  (A global function with few arguments: its stack and the
 * ingress program's share the verifier's 512 bytes.)
 */
__attribute__((noinline)) int zfw_nat_in(struct __sk_buff *skb, struct zfw_pkt *p)
{
	struct zfw_nat_scratch *s = zfw_nat_scratch();
	struct zfw_nat_key *k;
	struct zfw_nat_val *v;
	struct zfw_nat_val *vp;
	struct zfw_flow_key *rk;
	__u32 csum_off, off;
	__u64 fl, now;
	int gone = 0, echo = 0, rc;

	if (!s || !skb || !p)
		return ZFW_XLAT_NONE;
	k = &s->k;
	v = &s->v;
	rk = &s->rk;
	if (p->k.proto == ZFW_P_ICMP || p->k.proto == ZFW_P_ICMPV6) {
		if (zfw_icmp_is_error(p)) {
			rc = zfw_dnat_icmp_error(skb, p, s);
			return rc > 0 ? ZFW_XLAT_UNCACHED : rc;
		}
		if (!zfw_icmp_is_echo_reply(p))
			return ZFW_XLAT_NONE;
		echo = 1;
	} else if (p->k.proto != ZFW_P_TCP && p->k.proto != ZFW_P_UDP) {
		return ZFW_XLAT_NONE;
	}
	if (!p->has_ports)
		return ZFW_XLAT_NONE;
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->raddr, p->k.saddr, 16);
	k->rport = echo ? 0 : p->k.sport;
	k->nport = echo ? p->k.sport : p->k.dport;
	k->ifindex = p->k.ifindex;
	k->family = p->k.family;
	k->proto = p->k.proto;
	vp = bpf_map_lookup_elem(zfw_nat_map(p->k.proto), k);
	if (!vp)
		return ZFW_XLAT_NONE;
	/* the mapping is for replies to our translated address only */
	if (p->k.family == ZFW_AF_INET ? vp->naddr4 != p->k.daddr[0]
				       : !zfw_is_if_addr(p->k.ifindex, p->k.family, p->k.daddr))
		return ZFW_XLAT_NONE;
	now = zfw_nat_now();
	if (p->k.proto != ZFW_P_TCP && now - vp->last_ns > ZFW_UDP_TIMEOUT_S * ZFW_NSEC) {
		/* an idle mapping admits nothing from outside until the inside renews it */
		struct zfw_nat_rev *r;

		zfw_nat_rev_key(k, vp, rk);
		r = bpf_map_lookup_elem(&masquerade_reverse_map, rk);

		if (!r || now - r->last_ns > ZFW_UDP_TIMEOUT_S * ZFW_NSEC)
			return ZFW_XLAT_NONE;
	}
	if (p->k.proto == ZFW_P_TCP) {
		__u8 st = vp->state, fin = vp->fin;
		struct zfw_nat_rev *r = 0;

		/* a half-open mapping moves only on a segment with the
		 * handshake's numbers, as a conntrack entry does (conntrack.h,
		 * zfw_tcp_handshake_ok; ARCHITECTURE.md §5): the peer is the
		 * responder, syn_seq and synack_seq the two sides' numbers */
		if (zfw_nat_half_open(p->k.proto, st)) {
			zfw_nat_rev_key(k, vp, rk);
			r = bpf_map_lookup_elem(&masquerade_reverse_map, rk);
			if (r && !zfw_tcp_handshake_ok(st, r->syn_seq, r->synack_seq, p, 0))
				return -ZFW_R_DROP_TCP_INVALID;
		}
		/* a RST or FIN may end or close an established mapping only
		 * inside the flow's window, which the conntrack entry the egress
		 * step keeps under the inside tuple tracks (conntrack.h,
		 * "Windows"): the known-flow step would drop the segment after
		 * the mapping had already gone */
		if ((p->tcp_flags & (ZFW_TCP_RST | ZFW_TCP_FIN)) && !zfw_nat_half_open(p->k.proto, st)) {
			struct zfw_flow *f;

			zfw_nat_rev_key(k, vp, rk);
			f = bpf_map_lookup_elem(&tcp_map, rk);
			if (f && zfw_tcp_tracked(f) && !zfw_tcp_in_window(f, p, 0))
				return -ZFW_R_DROP_TCP_INVALID;
		}
		gone = zfw_nat_tcp_step(&st, &fin, p->tcp_flags, ZFW_NAT_SIDE_OUT, 0);
		if (st != vp->state || fin != vp->fin || gone) {
			if (!r) {
				zfw_nat_rev_key(k, vp, rk);
				r = bpf_map_lookup_elem(&masquerade_reverse_map, rk);
			}
			if (r) {
				r->state = st;
				r->fin = fin;
				if (st == ZFW_TCP_SYN_RECV)
					r->synack_seq = p->tcp_seq + 1;
			}
		}
		vp->state = st;
		vp->fin = fin;
	}
	/* a half-open mapping ages from the inside host's last packet */
	if (!zfw_nat_half_open(p->k.proto, vp->state))
		vp->last_ns = now;
	*v = *vp;
	csum_off = zfw_nat_addr_csum(p, &fl);
	if (zfw_nat_set_addr(skb, p->k.family, p->l3_off, 1, p->k.daddr, v->addr, csum_off, fl))
		return -ZFW_R_DROP_NAT_UNTRANSLATABLE;
	off = zfw_nat_port_off(p, 1, &csum_off, &fl);
	if (p->k.family == ZFW_AF_INET &&
	    zfw_nat_set_port(skb, off, k->nport, v->port, csum_off, fl))
		return -ZFW_R_DROP_NAT_UNTRANSLATABLE;
	__builtin_memcpy(p->k.daddr, v->addr, 16);
	if (echo)
		p->k.sport = v->port;
	else
		p->k.dport = v->port;
	if (gone)
		zfw_nat_forget(s, zfw_nat_map(p->k.proto), k, rk, gone, v->addr, v->port);
	zfw_count(ZFW_R_NAT);
	if (gone || echo || (v->state != ZFW_TCP_ESTABLISHED && v->state != ZFW_TCP_UDP))
		return ZFW_XLAT_UNCACHED;
	return ZFW_XLAT_DNAT;
}

#endif /* ZFW_NAT_H */
