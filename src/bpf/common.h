/* SPDX-License-Identifier: GPL-2.0 */
/* common.h - kernel types, libbpf helpers, constants vmlinux.h lacks. */
#ifndef ZFW_COMMON_H
#define ZFW_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "zfw_abi.h"

/* vmlinux.h carries no #defines: the few we need, spelled our way. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7

#define ZFW_ETH_P_IP 0x0800
#define ZFW_ETH_P_IPV6 0x86DD
#define ZFW_ETH_P_ARP 0x0806
#define ZFW_ETH_P_8021Q 0x8100
#define ZFW_ETH_P_8021AD 0x88A8
#define ZFW_ETH_P_PAE 0x888E /* EAPOL */
#define ZFW_ETH_HLEN 14

/* ZFW_AF_* and ZFW_P_* are in zfw_abi.h (shared with user space). */

#define ZFW_TCP_FIN 0x01
#define ZFW_TCP_SYN 0x02
#define ZFW_TCP_RST 0x04
#define ZFW_TCP_ACK 0x10

#define ZFW_NSEC 1000000000ULL

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define ZFW_INLINE static __always_inline

/*
 * Read skb->data / skb->data_end with one load each.  Plain field reads let
 * clang fold the context pointer arithmetic across a helper call, which the
 * verifier rejects ("dereference of modified ctx ptr").
 */
#define ZFW_CTX_LOAD(_ctx, _type, _field)                                          \
	({                                                                         \
		void *__v;                                                         \
		asm volatile("%0 = *(u32 *)(%1 + %2)"                              \
			     : "=r"(__v)                                           \
			     : "r"(_ctx), "i"(__builtin_offsetof(_type, _field))); \
		__v;                                                               \
	})
#define ZFW_SKB_DATA(skb) ZFW_CTX_LOAD(skb, struct __sk_buff, data)
#define ZFW_SKB_DATA_END(skb) ZFW_CTX_LOAD(skb, struct __sk_buff, data_end)

/* Make the headers we read part of the linear buffer (GRO/frag skbs). */
ZFW_INLINE void zfw_skb_linearize_head(struct __sk_buff *skb)
{
	__u32 want = skb->len < 128 ? skb->len : 128;

	if ((long)(ZFW_SKB_DATA_END(skb) - ZFW_SKB_DATA(skb)) < (long)want)
		bpf_skb_pull_data(skb, want);
}

#endif /* ZFW_COMMON_H */
