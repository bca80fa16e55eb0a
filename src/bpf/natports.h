/* SPDX-License-Identifier: GPL-2.0 */
/*
 * natports.h - choosing the outside port of a new masquerade mapping (the
 * port rule is in README "Masquerade"; the maps in docs/ARCHITECTURE.md §6).  Part
 * of nat.h: included by it only, after the scratch, map and timeout
 * helpers these functions use.
 */
#ifndef ZFW_NATPORTS_H
#define ZFW_NATPORTS_H

/**
 * zfw_nat_forget - delete the mapping @k / @rk after a packet ended it;
 * @gone ZFW_NAT_GONE_CLOSED also records the port as recently closed for
 * its peer, with the inside endpoint @addr / @port that used it.
 */
ZFW_INLINE void zfw_nat_forget(struct zfw_nat_scratch *s, void *map, const struct zfw_nat_key *k,
			       const struct zfw_flow_key *rk, int gone, const __u32 *addr,
			       __u16 port)
{
	if (gone == ZFW_NAT_GONE_CLOSED) {
		__builtin_memset(&s->c, 0, sizeof(s->c));
		__builtin_memcpy(s->c.addr, addr, 16);
		s->c.port = port;
		s->c.closed_ns = zfw_nat_now();
		bpf_map_update_elem(&masquerade_closed_map, k, &s->c, BPF_ANY);
	}
	bpf_map_delete_elem(map, k);
	bpf_map_delete_elem(&masquerade_reverse_map, rk);
	zfw_ct_epoch_bump(rk); /* flow caches holding the translation */
}

/* Is (naddr:port <- raddr:rport) already a flow of a local socket? */
ZFW_INLINE int zfw_nat_port_busy(struct __sk_buff *skb, const struct zfw_pkt *p,
				 struct zfw_nat_scratch *s, __u32 naddr, __u16 port)
{
	struct bpf_sock_tuple *t = &s->t;
	struct bpf_sock *sk;

	__builtin_memset(t, 0, sizeof(*t));
	t->ipv4.saddr = p->k.daddr[0];
	t->ipv4.daddr = naddr;
	t->ipv4.sport = bpf_htons(p->k.dport);
	t->ipv4.dport = bpf_htons(port);
	if (p->k.proto == ZFW_P_TCP)
		sk = bpf_skc_lookup_tcp(skb, t, sizeof(t->ipv4), BPF_F_CURRENT_NETNS, 0);
	else if (p->k.proto == ZFW_P_UDP)
		sk = bpf_sk_lookup_udp(skb, t, sizeof(t->ipv4), BPF_F_CURRENT_NETNS, 0);
	else
		return 0;
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/**
 * zfw_nat_take_over - delete the mapping @e at @k of @map with its reverse
 * twin (using @rk), if it is idle past its timeout or, with @any, in any
 * case.  Returns 1 when this call removed it.
 */
ZFW_INLINE int zfw_nat_take_over(void *map, const struct zfw_nat_key *k, const struct zfw_nat_val *e,
				 struct zfw_flow_key *rk, __u64 now, int any)
{
	struct zfw_nat_rev *r;
	__u64 last = e->last_ns;
	__u8 state = e->state;

	zfw_nat_rev_key(k, e, rk);
	r = bpf_map_lookup_elem(&masquerade_reverse_map, rk);
	if (r && r->last_ns > last)
		last = r->last_ns;
	if (!any && (last >= now || now - last <= zfw_nat_timeout_ns(k->proto, state)))
		return 0;
	if (bpf_map_delete_elem(map, k))
		return 0; /* another CPU was first */
	if (r && r->nport == k->nport)
		bpf_map_delete_elem(&masquerade_reverse_map, rk);
	zfw_ct_epoch_bump(rk); /* flow caches holding its translation */
	return 1;
}

/**
 * zfw_nat_try_port - claim @port for the new mapping in @s (key and value
 * prepared) if it is free, taking over an expired mapping that holds it.
 * Returns 1 when claimed; else notes in @pk what the port could still be.
 */
ZFW_INLINE int zfw_nat_try_port(struct __sk_buff *skb, const struct zfw_pkt *p,
				struct zfw_nat_scratch *s, __u16 port)
{
	struct zfw_nat_pick *pk = &s->pk;
	struct zfw_nat_key *k = &s->k;
	void *map = zfw_nat_map(p->k.proto);
	struct zfw_nat_closed *c;
	struct zfw_nat_val *e;
	__u64 now = pk->now;

	k->nport = port;
	if (p->k.family == ZFW_AF_INET && zfw_nat_port_busy(skb, p, s, s->nr.naddr[0], port))
		return 0;
	if (p->k.proto == ZFW_P_TCP) {
		c = bpf_map_lookup_elem(&masquerade_closed_map, k);
		if (c && (__s64)(now - c->closed_ns) < (__s64)ZFW_NAT_TIME_WAIT_S * ZFW_NSEC &&
		    (c->port != p->k.sport || c->addr[0] != p->k.saddr[0] ||
		     c->addr[1] != p->k.saddr[1] || c->addr[2] != p->k.saddr[2] ||
		     c->addr[3] != p->k.saddr[3])) {
			if (!pk->closed)
				pk->closed = port;
			return 0;
		}
	}
	if (bpf_map_update_elem(map, k, &s->v, BPF_NOEXIST) == 0)
		return 1;
	e = bpf_map_lookup_elem(map, k);
	if (!e)
		return 0;
	if (zfw_nat_take_over(map, k, e, &s->rk, now, 0))
		return bpf_map_update_elem(map, k, &s->v, BPF_NOEXIST) == 0;
	if (zfw_nat_half_open(k->proto, e->state) && (!pk->evict || e->last_ns < pk->evict_ns)) {
		pk->evict = port;
		pk->evict_ns = e->last_ns;
	}
	return 0;
}

/**
 * zfw_nat_alloc - create the mapping of the inside flow @p (first packet),
 * choosing its port as the header of this file says.  Fills @s->nr with
 * the translation; returns 0 or a ZFW_NAT_E_* code.
 */
ZFW_INLINE int zfw_nat_alloc(struct __sk_buff *skb, const struct zfw_pkt *p,
			     struct zfw_nat_scratch *s)
{
	struct zfw_nat_key *k = &s->k;
	struct zfw_nat_val *v = &s->v;
	struct zfw_nat_rev *nr = &s->nr;
	struct zfw_nat_pick *pk = &s->pk;
	struct zfw_nat_rev *old;
	struct zfw_nat_val *e;
	void *map = zfw_nat_map(p->k.proto);
	__u64 now = zfw_nat_now();
	int i, n, claimed = 0;
	__u16 port;

	__builtin_memset(nr, 0, sizeof(*nr));
	if (zfw_nat_addr(p->k.ifindex, p->k.family, nr->naddr) < 0)
		return ZFW_NAT_E_NO_ADDR;
	__builtin_memset(pk, 0, sizeof(*pk));
	pk->now = now;
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->raddr, p->k.daddr, 16);
	k->rport = p->k.dport;
	k->ifindex = p->k.ifindex;
	k->family = p->k.family;
	k->proto = p->k.proto;
	__builtin_memset(v, 0, sizeof(*v));
	__builtin_memcpy(v->addr, p->k.saddr, 16);
	v->port = p->k.sport;
	v->state = p->k.proto == ZFW_P_TCP ? ZFW_TCP_SYN_SENT : ZFW_TCP_UDP;
	v->last_ns = now;
	v->naddr4 = p->k.family == ZFW_AF_INET ? nr->naddr[0] : 0;
	/* IPv6 static PAT: the port stays, so it must be free for this peer */
	n = p->k.family == ZFW_AF_INET6 ? 1 : ZFW_NAT_RETRIES;
	for (i = 0; i < ZFW_NAT_RETRIES && !claimed; i++) {
		if (i >= n)
			break;
		port = p->k.sport;
		if (p->k.family == ZFW_AF_INET && (i > 0 || port < ZFW_NAT_PORT_MIN))
			port = ZFW_NAT_PORT_MIN + bpf_get_prandom_u32() % (65536 - ZFW_NAT_PORT_MIN);
		claimed = zfw_nat_try_port(skb, p, s, port);
	}
	if (!claimed && pk->closed) {
		k->nport = pk->closed;
		claimed = bpf_map_update_elem(map, k, v, BPF_NOEXIST) == 0;
	}
	if (!claimed && pk->evict && p->k.family == ZFW_AF_INET) {
		k->nport = pk->evict;
		e = bpf_map_lookup_elem(map, k);
		if (e && zfw_nat_half_open(k->proto, e->state) &&
		    zfw_nat_take_over(map, k, e, &s->rk, now, 1) &&
		    bpf_map_update_elem(map, k, v, BPF_NOEXIST) == 0) {
			claimed = 1;
			zfw_count(ZFW_R_NAT_EVICTED);
		}
	}
	if (!claimed)
		return p->k.family == ZFW_AF_INET6 ? ZFW_NAT_E_CONFLICT : ZFW_NAT_E_EXHAUSTED;
	nr->nport = k->nport;
	nr->state = v->state;
	nr->syn_seq = p->k.proto == ZFW_P_TCP ? zfw_tcp_end(p) : 0;
	nr->last_ns = now;
	if (bpf_map_update_elem(&masquerade_reverse_map, &p->k, nr, BPF_NOEXIST) == 0)
		return 0;
	/* another CPU mapped the same flow first (or the map is full): use its */
	bpf_map_delete_elem(map, k);
	old = bpf_map_lookup_elem(&masquerade_reverse_map, &p->k);
	if (!old)
		return ZFW_NAT_E_EXHAUSTED;
	*nr = *old;
	return 0;
}

#endif /* ZFW_NATPORTS_H */
