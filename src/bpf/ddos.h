/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ddos.h - SYN protection of selected ports on the interface's own addresses
 * (interfaces with `ddos` on).
 *
 * The C zfw's semantics: a SYN to an interface address on a port listed in
 * ddos_dport_map is counted in syn_count_map[ifindex], and admitted (to the
 * rules) only when its source is in ddos_saddr_map (the whitelist).
 *
 * Beyond that, with zfw_config.syn_rate > 0, sources that are not
 * whitelisted are not refused outright but rate limited, so that legitimate
 * clients keep working during a flood:
 *   - each source (IPv4 address, IPv6 /64) has a token bucket in
 *     syn_bucket_map (LRU): syn_rate SYNs per second, syn_burst deep;
 *   - a source seen for the first time takes its token from one shared
 *     "newcomer" bucket (same rate and burst, key family 0).  While that is
 *     empty - many fresh sources per second, i.e. a spoofed flood - the
 *     first SYN of a new source is dropped, but the source gets a full
 *     bucket: a real client retransmits its SYN (after ~1 s) and is then
 *     admitted from its own bucket; a spoofed source never comes back.
 * Bucket updates are not atomic across CPUs: the limits are approximate.
 */
#ifndef ZFW_DDOS_H
#define ZFW_DDOS_H

#include "maps.h"
#include "parse.h"
#include "iface.h"

#define ZFW_BUCKET_MAX_NS (1000 * ZFW_NSEC) /* refill horizon: keeps the math in u64 */
#define ZFW_MILLI 1000ULL

/* Count a protected SYN on its interface. */
ZFW_INLINE void zfw_syn_count(__u32 ifindex)
{
	__u64 one = 1, *c = bpf_map_lookup_elem(&syn_count_map, &ifindex);

	if (c) {
		__sync_fetch_and_add(c, 1);
		return;
	}
	if (bpf_map_update_elem(&syn_count_map, &ifindex, &one, BPF_NOEXIST)) {
		c = bpf_map_lookup_elem(&syn_count_map, &ifindex);
		if (c)
			__sync_fetch_and_add(c, 1);
	}
}

/**
 * zfw_bucket_take - refill @b up to now and take one token.
 * Returns 1 when a token was available.
 */
ZFW_INLINE int zfw_bucket_take(struct zfw_bucket *b, __u64 now, __u64 rate, __u64 cap)
{
	__u64 el = now - b->last_ns;
	__u64 t;

	if (el > ZFW_BUCKET_MAX_NS)
		el = ZFW_BUCKET_MAX_NS;
	t = b->tokens_milli + el * rate / 1000000;
	if (t > cap)
		t = cap;
	b->last_ns = now;
	if (t < ZFW_MILLI) {
		b->tokens_milli = t;
		return 0;
	}
	b->tokens_milli = t - ZFW_MILLI;
	return 1;
}

/* The rate-limit path for a source that is not whitelisted. */
ZFW_INLINE __u16 zfw_syn_rate(const struct zfw_pkt *p, const struct zfw_config *cfg)
{
	struct zfw_addr_key key = {}, nk = {};
	struct zfw_bucket *b, nb;
	__u64 now = bpf_ktime_get_ns();
	__u64 rate = cfg->syn_rate;
	__u64 cap = (__u64)(cfg->syn_burst ? cfg->syn_burst : 1) * ZFW_MILLI;
	int ok;

	key.family = p->k.family;
	key.addr[0] = p->k.saddr[0];
	if (p->k.family == ZFW_AF_INET6)
		key.addr[1] = p->k.saddr[1]; /* one bucket per /64 */
	b = bpf_map_lookup_elem(&syn_bucket_map, &key);
	if (b)
		return zfw_bucket_take(b, now, rate, cap) ? 0 : ZFW_R_DROP_SYN_RATE;

	/* a new source: the shared newcomer bucket decides */
	b = bpf_map_lookup_elem(&syn_bucket_map, &nk);
	if (!b) {
		nb.last_ns = now;
		nb.tokens_milli = cap;
		bpf_map_update_elem(&syn_bucket_map, &nk, &nb, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&syn_bucket_map, &nk);
	}
	ok = b && zfw_bucket_take(b, now, rate, cap);
	nb.last_ns = now;
	nb.tokens_milli = ok ? cap - ZFW_MILLI : cap;
	bpf_map_update_elem(&syn_bucket_map, &key, &nb, BPF_NOEXIST);
	return ok ? 0 : ZFW_R_DROP_SYN_RATE;
}

/**
 * zfw_ddos_check - step 7 for a SYN (without ACK) on an interface with
 * `ddos` on.  Returns 0 to go on to the rules, else the drop reason.
 */
ZFW_INLINE __u16 zfw_ddos_check(const struct zfw_pkt *p, const struct zfw_config *cfg)
{
	struct zfw_addr_key src = {};
	__u32 port = p->k.dport;

	if (!bpf_map_lookup_elem(&ddos_dport_map, &port))
		return 0;
	if (!zfw_is_if_addr(p->k.ifindex, p->k.family, p->k.daddr))
		return 0;
	zfw_syn_count(p->k.ifindex);
	src.family = p->k.family;
	__builtin_memcpy(src.addr, p->k.saddr, 16);
	if (bpf_map_lookup_elem(&ddos_saddr_map, &src))
		return 0;
	if (!cfg || !cfg->syn_rate)
		return ZFW_R_DROP_DDOS;
	return zfw_syn_rate(p, cfg);
}

#endif /* ZFW_DDOS_H */
