// SPDX-License-Identifier: GPL-2.0
/*
 * bench.bpf.c - benchmark-only entry point, never attached.  zfw-bench
 * loads it against the pinned maps of a bench root.  It forgets the cached
 * decision of the packet (clears its matched_map slot) and then runs the real
 * ingress verdict, so that every BPF_PROG_TEST_RUN repetition is a first
 * packet measured with warm caches.  The cost of the forgetting itself is
 * reported separately by the benchmark.
 *
 * bench_xdp_tun runs the real XDP tun fast path and, when it redirected,
 * pops the Ethernet header it pushed: BPF_PROG_TEST_RUN does not reset the
 * frame between repetitions, and without this every repetition after the
 * first would time a parse failure.  The figure therefore includes one
 * bpf_xdp_adjust_head more than the real path: an upper bound.
 */
#include "common.h"
#include "maps.h"
#include "ingress.h"
#include "tun.h"

char LICENSE[] SEC("license") = "GPL";

/* Parse the packet the way the ingress program will; 1 when it is IP. */
static __always_inline int bench_parse(struct __sk_buff *skb, struct zfw_pkt *p)
{
	p->k.ifindex = skb->ifindex;
	p->wire_len = skb->len;
	zfw_skb_linearize_head(skb);
	return zfw_parse_eth(ZFW_SKB_DATA(skb), ZFW_SKB_DATA_END(skb), p) == ZFW_PARSE_OK;
}

SEC("tc")
int bench_first_packet(struct __sk_buff *skb)
{
	struct zfw_pkt p = {};

	if (bench_parse(skb, &p)) {
		struct zfw_match_slot *ms;

		ms = zfw_match_slot(&p, ZFW_DIR_INGRESS);
		if (ms)
			ms->key.family = 0; /* forget the cached decision */
	}
	return zfw_ingress(skb);
}

/*
 * Steps of the first-packet path alone, for the per-step rows (README
 * "make bench"): the parse every row includes; the known-flow check of a
 * bare SYN (zfw_known_flow, the lookup that finds no flow); the rules'
 * decision with no cache in front (zfw_rules_decide: the trie, the pairs'
 * keys, their ranges).  Each returns TC_ACT_OK when its step found
 * something (a flow, a rule), else TC_ACT_SHOT.
 */
SEC("tc")
int bench_step_parse(struct __sk_buff *skb)
{
	struct zfw_pkt p = {};

	return bench_parse(skb, &p) ? TC_ACT_OK : TC_ACT_SHOT;
}

SEC("tc")
int bench_step_known(struct __sk_buff *skb)
{
	struct zfw_config *cfg = zfw_cfg();
	struct zfw_ictx c = {};

	c.flags = zfw_if_flags(skb->ifindex);
	if (!bench_parse(skb, &c.p))
		return TC_ACT_SHOT;
	return zfw_known_flow(skb, &c, cfg, 0) ? TC_ACT_OK : TC_ACT_SHOT;
}

SEC("tc")
int bench_step_rules(struct __sk_buff *skb)
{
	struct zfw_config *cfg = zfw_cfg();
	struct zfw_decision d = {};
	struct zfw_pkt p = {};
	__u32 how = ZFW_DIR_INGRESS;

	if (cfg && (cfg->active_set & 1))
		how |= ZFW_WALK_SET1;
	if (!bench_parse(skb, &p))
		return TC_ACT_SHOT;
	return zfw_rules_decide(&p, how, &d) ? TC_ACT_OK : TC_ACT_SHOT;
}

/* The flow cache forgets the packet's flow, then the real ingress runs:
 * what a flow the cache does not hold costs (its first packets, and one
 * packet every ZFW_FLOW_CACHE_JIFFIES ticks), rule cache still warm. */
SEC("tc")
int bench_flow_uncached(struct __sk_buff *skb)
{
	struct zfw_pkt p = {};

	if (bench_parse(skb, &p)) {
		struct zfw_tuple q;
		struct zfw_flow_cache *s;
		__u32 idx;

		zfw_fc_probe_of(&p, &q);
		idx = zfw_fc_index(&q, ZFW_DIR_INGRESS);
		s = bpf_map_lookup_elem(&flow_cache_map, &idx);
		if (s)
			s->dir = 0; /* forget the flow */
	}
	return zfw_ingress(skb);
}

SEC("xdp")
int bench_xdp_tun(struct xdp_md *ctx)
{
	int rc = zfw_xdp_tun(ctx);

	if (rc == XDP_REDIRECT)
		bpf_xdp_adjust_head(ctx, (int)sizeof(struct ethhdr));
	return rc;
}

/* What bench_xdp_tun's restore costs: push and pop an Ethernet header. */
SEC("xdp")
int bench_xdp_head_pair(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ethhdr)))
		return XDP_ABORTED;
	bpf_xdp_adjust_head(ctx, (int)sizeof(struct ethhdr));
	return XDP_PASS;
}

/* The least any tun fast-path hit costs: push a header, write it, redirect,
 * and pop it again as bench_xdp_tun does; no parsing, no lookup. */
SEC("xdp")
int bench_xdp_push_redirect(struct xdp_md *ctx)
{
	void *data, *data_end;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ethhdr)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(struct ethhdr) > data_end)
		return XDP_ABORTED;
	__builtin_memset(data, 0x02, 12);
	*(__u16 *)(data + 12) = bpf_htons(ZFW_ETH_P_IP);
	bpf_redirect(1, 0);
	bpf_xdp_adjust_head(ctx, (int)sizeof(struct ethhdr));
	return XDP_REDIRECT;
}
