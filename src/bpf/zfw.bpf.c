// SPDX-License-Identifier: GPL-2.0
/*
 * zfw.bpf.c - the four datapath entry points.  Each hook's verdict order is
 * in its own header; this file only names the programs.
 */
#include "common.h"
#include "maps.h"
#include "ingress.h"
#include "track.h"
#include "egress.h"
#include "tun.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * Anchor the ABI types in BTF so that the skeleton generates Rust mirrors of
 * all of them, including those no map or program mentions.
 */
struct zfw_btf_anchor {
	struct zfw_event ev;
	struct zfw_modbus_key mk;
	/* the chunks' values (maps.h) */
	struct zfw_range range;
	struct zfw_service_id service_id;
	struct zfw_rule_key rule_key;
	struct zfw_rule_span rule_span;
	enum zfw_reason reason;
	enum zfw_tcp_state tcp_state;
	enum zfw_action action;
	enum zfw_if_flag if_flag;
	enum zfw_hook hook;
	enum zfw_dir dir;
	enum zfw_event_kind kind;
	enum zfw_limits limits;
	enum zfw_timeouts timeouts;
	enum zfw_nat_fin nat_fin;
	enum zfw_nat_err nat_err;
};
struct zfw_btf_anchor zfw_btf_anchor_unused SEC(".bss");

SEC("tc")
int zfw_policy(struct __sk_buff *skb)
{
	return zfw_ingress(skb);
}

SEC("tc")
int zfw_track_flow(struct __sk_buff *skb)
{
	return zfw_track(skb);
}

SEC("tc")
int zfw_egress_flow(struct __sk_buff *skb)
{
	return zfw_egress(skb);
}

SEC("xdp")
int zfw_xdp_tun_fast(struct xdp_md *ctx)
{
	return zfw_xdp_tun(ctx);
}
