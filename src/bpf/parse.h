/* SPDX-License-Identifier: GPL-2.0 */
/*
 * parse.h - bounds-checked parsing of Ethernet / IPv4 / IPv6 / TCP / UDP /
 * ICMP into struct zfw_pkt.  Works on any (data, data_end) window, so the TC
 * programs (frames start at Ethernet) and XDP on tun (frames start at the IP
 * header) share it.
 */
#ifndef ZFW_PARSE_H
#define ZFW_PARSE_H

#include "common.h"

enum zfw_parse_rc {
	ZFW_PARSE_OK = 0,
	ZFW_PARSE_NOT_IP = 1, /* not IPv4/IPv6: caller decides (ARP, EAPOL, ...) */
	ZFW_PARSE_BAD = 2,    /* truncated or malformed: drop */
};

enum zfw_frag {
	ZFW_FRAG_NONE = 0,
	ZFW_FRAG_FIRST = 1, /* offset 0, more fragments: has the L4 header */
	ZFW_FRAG_LATER = 2, /* no L4 header */
};

/* Everything the verdict code needs to know about one packet. */
struct zfw_pkt {
	struct zfw_flow_key k;  /* the tuple as it arrives, ifindex set by caller */
	__u32 l3_off;           /* offset of the IP header in the window */
	__u32 l4_off;           /* offset of the L4 header (0 if none) */
	__u32 pay_off;          /* offset of the L4 payload */
	__u32 ip_len;           /* bytes from IP header to end of the IP packet */
	__u32 wire_len;         /* set by the caller: frame length from the window start */
	__u32 frag_id;
	__u32 tcp_seq;          /* host byte order */
	__u32 tcp_ack;
	__u16 eth_proto;        /* host byte order */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 frag;              /* enum zfw_frag */
	__u8 has_ports;         /* TCP/UDP with ports parsed, or ICMP echo id */
	__u8 ttl;
	__u8 quoted;            /* header quoted inside an ICMP error: may be cut short */
	__u8 tcp_wscale;        /* SYN: the window scale it offers (zfw_tcp_syn_opts) */
	__u16 tcp_win;          /* the window field, host order, unscaled */
};

#define ZFW_MAX_EXT_OFF 512 /* how far into IPv6 extension headers we follow */

/**
 * zfw_parse_l4 - parse TCP/UDP/ICMP at @off.
 * Returns ZFW_PARSE_BAD when the header does not fit.
 */
ZFW_INLINE int zfw_parse_l4(void *data, void *data_end, __u32 off, struct zfw_pkt *p)
{
	off &= 0x3ff;
	p->l4_off = off;
	if (p->frag == ZFW_FRAG_LATER) {
		p->l4_off = 0;
		return ZFW_PARSE_OK;
	}
	switch (p->k.proto) {
	case ZFW_P_TCP: {
		struct tcphdr *th = data + off;
		__u32 doff;

		if (p->quoted) {
			/* an ICMP error quotes only the first 8 bytes: the ports */
			if (data + off + 8 > data_end)
				return ZFW_PARSE_BAD;
			p->k.sport = bpf_ntohs(th->source);
			p->k.dport = bpf_ntohs(th->dest);
			p->has_ports = 1;
			return ZFW_PARSE_OK;
		}
		if ((void *)(th + 1) > data_end)
			return ZFW_PARSE_BAD;
		doff = th->doff * 4;
		if (doff < sizeof(*th) || data + off + doff > data_end)
			return ZFW_PARSE_BAD;
		p->k.sport = bpf_ntohs(th->source);
		p->k.dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		p->tcp_seq = bpf_ntohl(th->seq);
		p->tcp_ack = bpf_ntohl(th->ack_seq);
		p->tcp_win = bpf_ntohs(th->window);
		p->pay_off = off + doff;
		p->has_ports = 1;
		return ZFW_PARSE_OK;
	}
	case ZFW_P_UDP: {
		struct udphdr *uh = data + off;

		if ((void *)(uh + 1) > data_end)
			return ZFW_PARSE_BAD;
		if (bpf_ntohs(uh->len) < sizeof(*uh))
			return ZFW_PARSE_BAD;
		p->k.sport = bpf_ntohs(uh->source);
		p->k.dport = bpf_ntohs(uh->dest);
		p->pay_off = off + sizeof(*uh);
		p->has_ports = 1;
		return ZFW_PARSE_OK;
	}
	case ZFW_P_ICMP:
	case ZFW_P_ICMPV6: {
		__u8 *ih = data + off;

		/* type, code, checksum, and the 4 bytes of id/seq or unused */
		if ((void *)(ih + 8) > data_end)
			return ZFW_PARSE_BAD;
		p->icmp_type = ih[0];
		p->icmp_code = ih[1];
		p->pay_off = off + 8;
		/* echo request/reply: the identifier plays the source port */
		if (ih[0] == 0 || ih[0] == 8 || ih[0] == 128 || ih[0] == 129) {
			if ((p->k.proto == ZFW_P_ICMP) == (ih[0] < 128)) {
				p->k.sport = ((__u16)ih[4] << 8) | ih[5];
				p->has_ports = 1;
			}
		}
		return ZFW_PARSE_OK;
	}
	default:
		p->pay_off = off;
		return ZFW_PARSE_OK;
	}
}

ZFW_INLINE int zfw_parse_ipv4(void *data, void *data_end, __u32 off, struct zfw_pkt *p)
{
	struct iphdr *ip;
	__u32 ihl, tot;
	__u16 frag;

	off &= 0x1ff;
	ip = data + off;
	if ((void *)(ip + 1) > data_end)
		return ZFW_PARSE_BAD;
	if (ip->version != 4)
		return ZFW_PARSE_BAD;
	ihl = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	if (ihl < sizeof(*ip) || tot < ihl)
		return ZFW_PARSE_BAD;
	if (data + off + ihl > data_end)
		return ZFW_PARSE_BAD;
	/* tot_len beyond what arrived means a truncated packet */
	if (!p->quoted && p->wire_len < off + tot)
		return ZFW_PARSE_BAD;
	p->l3_off = off;
	p->ip_len = tot;
	p->k.family = ZFW_AF_INET;
	p->k.proto = ip->protocol;
	p->k.saddr[0] = ip->saddr;
	p->k.daddr[0] = ip->daddr;
	p->ttl = ip->ttl;
	frag = bpf_ntohs(ip->frag_off);
	p->frag_id = bpf_ntohs(ip->id);
	if (frag & 0x1fff)
		p->frag = ZFW_FRAG_LATER;
	else if (frag & 0x2000)
		p->frag = ZFW_FRAG_FIRST;
	return zfw_parse_l4(data, data_end, off + ihl, p);
}

ZFW_INLINE int zfw_parse_ipv6(void *data, void *data_end, __u32 off, struct zfw_pkt *p)
{
	struct ipv6hdr *ip6;
	__u8 next;
	int i;

	off &= 0x1ff;
	ip6 = data + off;
	if ((void *)(ip6 + 1) > data_end)
		return ZFW_PARSE_BAD;
	if (ip6->version != 6)
		return ZFW_PARSE_BAD;
	if (!p->quoted && p->wire_len < off + sizeof(*ip6) + bpf_ntohs(ip6->payload_len))
		return ZFW_PARSE_BAD;
	p->l3_off = off;
	p->ip_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	p->k.family = ZFW_AF_INET6;
	__builtin_memcpy(p->k.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->k.daddr, &ip6->daddr, 16);
	p->ttl = ip6->hop_limit;
	next = ip6->nexthdr;
	off += sizeof(*ip6);

	/* follow extension headers: hop-by-hop, routing, fragment, dst opts, AH */
#pragma unroll
	for (i = 0; i < 6; i++) {
		__u8 *eh;

		if (next != 0 && next != 43 && next != 44 && next != 60 && next != 51)
			break;
		off &= 0x1ff;
		eh = data + off;
		if ((void *)(eh + 8) > data_end)
			return ZFW_PARSE_BAD;
		if (next == 44) {
			__u16 fo = ((__u16)eh[2] << 8) | eh[3];

			p->frag_id = ((__u32)eh[4] << 24) | ((__u32)eh[5] << 16) |
				     ((__u32)eh[6] << 8) | eh[7];
			if (fo & 0xfff8)
				p->frag = ZFW_FRAG_LATER;
			else if (fo & 1)
				p->frag = ZFW_FRAG_FIRST;
			next = eh[0];
			off += 8;
		} else if (next == 51) {
			next = eh[0];
			off += ((__u32)eh[1] + 2) * 4;
		} else {
			next = eh[0];
			off += ((__u32)eh[1] + 1) * 8;
		}
		if (off > ZFW_MAX_EXT_OFF)
			return ZFW_PARSE_BAD;
	}
	if (next == 0 || next == 43 || next == 44 || next == 60 || next == 51)
		return ZFW_PARSE_BAD; /* deeper chain than we follow */
	p->k.proto = next;
	return zfw_parse_l4(data, data_end, off, p);
}

/* Parse the IP header an ICMP error quotes (starting at @off). */
ZFW_INLINE int zfw_parse_ipv4_quoted(void *data, void *data_end, __u32 off, struct zfw_pkt *p)
{
	p->quoted = 1;
	return zfw_parse_ipv4(data, data_end, off, p);
}

ZFW_INLINE int zfw_parse_ipv6_quoted(void *data, void *data_end, __u32 off, struct zfw_pkt *p)
{
	p->quoted = 1;
	return zfw_parse_ipv6(data, data_end, off, p);
}

/**
 * zfw_parse_eth - parse a frame starting at Ethernet (VLAN tags skipped).
 * Non-IP frames return ZFW_PARSE_NOT_IP with p->eth_proto set.
 */
ZFW_INLINE int zfw_parse_eth(void *data, void *data_end, struct zfw_pkt *p)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u16 proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return ZFW_PARSE_BAD;
	proto = bpf_ntohs(eth->h_proto);
#pragma unroll
	for (i = 0; i < 2; i++) {
		__u16 *vh;

		if (proto != ZFW_ETH_P_8021Q && proto != ZFW_ETH_P_8021AD)
			break;
		vh = data + off;
		if ((void *)(vh + 2) > data_end)
			return ZFW_PARSE_BAD;
		proto = bpf_ntohs(vh[1]);
		off += 4;
	}
	p->eth_proto = proto;
	if (proto == ZFW_ETH_P_IP)
		return zfw_parse_ipv4(data, data_end, off, p);
	if (proto == ZFW_ETH_P_IPV6)
		return zfw_parse_ipv6(data, data_end, off, p);
	return ZFW_PARSE_NOT_IP;
}

/* zfw_parse_fast: which packets besides plain IPv4 may take a fast path. */
#define ZFW_FAST_V6 1      /* IPv6 without extension headers */
#define ZFW_FAST_V4_OPTS 2 /* IPv4 with options */
#define ZFW_FAST_PORTS 4   /* the caller needs the ports only (no TCP fields) */

/*
 * The tuple of a packet as a fast path or a cache sees it.  zfw_parse_fast
 * points the addresses into the packet; the flow cache's slow path points
 * them at a parsed zfw_pkt (flowcache.h, zfw_fc_probe_of).
 */
struct zfw_tuple {
	const __u32 *saddr;
	const __u32 *daddr;
	__u32 ifindex; /* set by the caller */
	__u32 ip_len;  /* bytes from the IP header to the end of the IP packet */
	__u32 tcp_end; /* TCP: the sequence number after the segment */
	__u16 sport;   /* host byte order */
	__u16 dport;
	__u16 tcp_win; /* TCP: the window field */
	__u16 l4_off;  /* where the TCP/UDP header starts in the window */
	__u8 family;
	__u8 proto;
	__u8 tcp_flags;
};

/**
 * zfw_parse_fast - the one parser of the fast paths (docs/ARCHITECTURE.md
 * §5): read the tuple of the common packet in place, with the checks
 * zfw_parse_eth makes.  The IP header starts at @l3: ZFW_ETH_HLEN for an
 * untagged Ethernet frame (its type gives the family), 0 for a tun frame
 * (the version does).  Accepted: IPv4 without options (@how may add
 * ZFW_FAST_V4_OPTS, and ZFW_FAST_V6 for IPv6 without extension headers),
 * not a fragment, TCP or UDP with a whole header (with ZFW_FAST_PORTS: its
 * ports; the TCP fields are then not read) and its ports inside the IP
 * length, and the IP packet complete within @wire_len bytes of the
 * window's start.  Returns 0, or -1 for anything else, which the caller's
 * general path handles.
 */
ZFW_INLINE int zfw_parse_fast(void *data, void *data_end, __u32 l3, __u32 wire_len, int how,
			      struct zfw_tuple *t)
{
	__u8 *ip = data + l3;
	__u32 l4, hl;
	__u16 *ports;
	int v6;

	if ((void *)(ip + sizeof(struct iphdr)) > data_end)
		return -1;
	if (l3) {
		__u16 type = *(__u16 *)(ip - 2);

		if (type != bpf_htons(ZFW_ETH_P_IP) && type != bpf_htons(ZFW_ETH_P_IPV6))
			return -1;
		v6 = type == bpf_htons(ZFW_ETH_P_IPV6);
	} else {
		v6 = (ip[0] >> 4) == 6;
	}
	if (!v6) {
		struct iphdr *h = (void *)ip;

		if (ip[0] == 0x45)
			hl = sizeof(*h);
		else if ((how & ZFW_FAST_V4_OPTS) && (ip[0] >> 4) == 4 && (ip[0] & 15) > 5)
			hl = (ip[0] & 15) * 4;
		else
			return -1;
		if (h->frag_off & bpf_htons(0x3fff))
			return -1;
		t->ip_len = bpf_ntohs(h->tot_len);
		t->saddr = &h->saddr;
		t->daddr = &h->daddr;
		t->family = ZFW_AF_INET;
		t->proto = h->protocol;
	} else {
		struct ipv6hdr *h6 = (void *)ip;

		if (!(how & ZFW_FAST_V6) || (void *)(h6 + 1) > data_end || h6->version != 6)
			return -1;
		hl = sizeof(*h6);
		t->ip_len = hl + bpf_ntohs(h6->payload_len);
		t->saddr = (const __u32 *)&h6->saddr;
		t->daddr = (const __u32 *)&h6->daddr;
		t->family = ZFW_AF_INET6;
		t->proto = h6->nexthdr;
	}
	if (t->ip_len < hl + 4 || wire_len < l3 + t->ip_len)
		return -1; /* no ports, or truncated */
	/* the family as a value of its own: a caller's test of it must not
	 * become a new test of the version byte, whose paths the verifier
	 * cannot tie to the header length it checked */
	v6 = t->family;
	asm volatile("" : "+r"(v6));
	t->family = v6;
	l4 = l3 + hl;
	if (how & ZFW_FAST_PORTS) {
		if (t->proto != ZFW_P_TCP && t->proto != ZFW_P_UDP)
			return -1;
		ports = data + l4;
		if ((void *)(ports + 2) > data_end)
			return -1;
	} else if (t->proto == ZFW_P_TCP) {
		struct tcphdr *th = data + l4;
		__u32 doff;

		if ((void *)(th + 1) > data_end)
			return -1;
		doff = th->doff * 4;
		if (doff < sizeof(*th) || data + l4 + doff > data_end)
			return -1;
		t->tcp_flags = ((__u8 *)th)[13];
		t->tcp_win = bpf_ntohs(th->window);
		/* a header longer than the packet gives a far end (no cache
		 * admits it) */
		t->tcp_end = bpf_ntohl(th->seq) + t->ip_len - hl - doff;
		ports = (__u16 *)th;
	} else if (t->proto == ZFW_P_UDP) {
		struct udphdr *uh = data + l4;

		if ((void *)(uh + 1) > data_end || bpf_ntohs(uh->len) < sizeof(*uh))
			return -1;
		t->tcp_flags = 0;
		t->tcp_win = 0;
		t->tcp_end = 0;
		ports = (__u16 *)uh;
	} else {
		return -1;
	}
	t->sport = bpf_ntohs(ports[0]);
	t->dport = bpf_ntohs(ports[1]);
	t->l4_off = l4;
	return 0;
}

#endif /* ZFW_PARSE_H */
