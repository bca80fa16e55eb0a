/* SPDX-License-Identifier: GPL-2.0 */
/*
 * sock.h - local socket lookups: replies to connections the host itself
 * opened, and TPROXY hand-off to a local listener with bpf_sk_assign.
 */
#ifndef ZFW_SOCK_H
#define ZFW_SOCK_H

#include "parse.h"

#define ZFW_TCP_LISTEN 10

/* Build the lookup tuple of the packet as it arrived. Returns its size. */
ZFW_INLINE __u32 zfw_sock_tuple(const struct zfw_pkt *p, struct bpf_sock_tuple *t)
{
	if (p->k.family == ZFW_AF_INET) {
		t->ipv4.saddr = p->k.saddr[0];
		t->ipv4.daddr = p->k.daddr[0];
		t->ipv4.sport = bpf_htons(p->k.sport);
		t->ipv4.dport = bpf_htons(p->k.dport);
		return sizeof(t->ipv4);
	}
	__builtin_memcpy(t->ipv6.saddr, p->k.saddr, 16);
	__builtin_memcpy(t->ipv6.daddr, p->k.daddr, 16);
	t->ipv6.sport = bpf_htons(p->k.sport);
	t->ipv6.dport = bpf_htons(p->k.dport);
	return sizeof(t->ipv6);
}

/**
 * zfw_local_flow - does the packet belong to a local socket's existing flow?
 * TCP: any non-listening socket for the exact 4-tuple (established, SYN-sent,
 * request or time-wait sockets).  UDP: a connected socket whose peer is the
 * packet's source (an unconnected bound socket is a service, not a flow).
 */
ZFW_INLINE int zfw_local_flow(struct __sk_buff *skb, const struct zfw_pkt *p)
{
	struct bpf_sock_tuple t = {};
	__u32 sz = zfw_sock_tuple(p, &t);
	struct bpf_sock *sk;
	int hit = 0;

	if (p->k.proto == ZFW_P_TCP) {
		sk = bpf_skc_lookup_tcp(skb, &t, sz, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		hit = sk->state != ZFW_TCP_LISTEN;
		bpf_sk_release(sk);
		return hit;
	}
	if (p->k.proto == ZFW_P_UDP) {
		sk = bpf_sk_lookup_udp(skb, &t, sz, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		if (p->k.family == ZFW_AF_INET)
			hit = sk->dst_ip4 == p->k.saddr[0];
		else
			hit = sk->dst_ip6[0] == p->k.saddr[0] && sk->dst_ip6[1] == p->k.saddr[1] &&
			      sk->dst_ip6[2] == p->k.saddr[2] && sk->dst_ip6[3] == p->k.saddr[3];
		hit = hit && sk->dst_port == bpf_htons(p->k.sport);
		bpf_sk_release(sk);
		return hit;
	}
	return 0;
}

/**
 * zfw_tproxy_assign - hand the packet to the listener on loopback:@port.
 * Returns 0 when assigned, negative when there is no listener.
 */
ZFW_INLINE int zfw_tproxy_assign(struct __sk_buff *skb, const struct zfw_pkt *p, __u16 port)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 sz;
	long err;

	if (p->k.family == ZFW_AF_INET) {
		t.ipv4.daddr = bpf_htonl(0x7f000001);
		t.ipv4.dport = bpf_htons(port);
		sz = sizeof(t.ipv4);
	} else {
		t.ipv6.daddr[3] = bpf_htonl(1);
		t.ipv6.dport = bpf_htons(port);
		sz = sizeof(t.ipv6);
	}
	if (p->k.proto == ZFW_P_TCP) {
		sk = bpf_skc_lookup_tcp(skb, &t, sz, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return -1;
		if (sk->state != ZFW_TCP_LISTEN) {
			bpf_sk_release(sk);
			return -1;
		}
	} else {
		sk = bpf_sk_lookup_udp(skb, &t, sz, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return -1;
	}
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	return err ? -1 : 0;
}

#endif /* ZFW_SOCK_H */
