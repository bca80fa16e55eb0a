// SPDX-License-Identifier: GPL-2.0
/* empty.bpf.c - do-nothing TC and XDP programs: the benchmark floor. */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int empty_tc(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

SEC("xdp")
int empty_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}
