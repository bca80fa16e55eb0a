/* SPDX-License-Identifier: GPL-2.0 */
/* iface.h - per-interface settings and interface-address checks. */
#ifndef ZFW_IFACE_H
#define ZFW_IFACE_H

#include "maps.h"
#include "parse.h"

/* Settings of an interface zfw was never told about: SSH and IPv6 on. */
#define ZFW_IF_DEFAULT_FLAGS (ZFW_IF_SSH | ZFW_IF_IPV6)

ZFW_INLINE __u32 zfw_if_flags(__u32 ifindex)
{
	struct zfw_iface *i = bpf_map_lookup_elem(&diag_map, &ifindex);

	/* an all-zero slot is an interface zfw was never told about */
	return i && (i->hooks | i->flags) ? i->flags : ZFW_IF_DEFAULT_FLAGS;
}

ZFW_INLINE struct zfw_config *zfw_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config_map, &zero);
}

/**
 * zfw_is_if_addr - is @addr (family @family) one of @ifindex's addresses?
 * ifindex_ip_map / ifindex_ip6_map are written by user space: on load, on
 * every command that refreshes interface state, and by `zfw watch` within
 * milliseconds of each address change.
 */
ZFW_INLINE int zfw_is_if_addr(__u32 ifindex, __u8 family, const __u32 *addr)
{
	int i;

	if (family == ZFW_AF_INET) {
		struct zfw_if_addrs4 *a = bpf_map_lookup_elem(&ifindex_ip_map, &ifindex);

		if (!a)
			return 0;
#pragma unroll
		for (i = 0; i < ZFW_MAX_IF_ADDRS; i++) {
			if (i >= a->count)
				break;
			if (a->addr[i] == addr[0])
				return 1;
		}
		return 0;
	} else {
		struct zfw_if_addrs6 *a = bpf_map_lookup_elem(&ifindex_ip6_map, &ifindex);

		if (!a)
			return 0;
#pragma unroll
		for (i = 0; i < ZFW_MAX_IF_ADDRS; i++) {
			if (i >= a->count)
				break;
			if (a->addr[i].a[0] == addr[0] && a->addr[i].a[1] == addr[1] &&
			    a->addr[i].a[2] == addr[2] && a->addr[i].a[3] == addr[3])
				return 1;
		}
		return 0;
	}
}

/**
 * zfw_if_addr_exempt - may @addr get an interface-address exception (SSH,
 * ICMP echo)?  Only while the copy of the addresses is trusted: no watcher
 * was ever started (static mode, expires_ns == 0), or its lease is fresh
 * (ARCHITECTURE.md §6, watch_map).  Called on those two paths only, never
 * for established flows.
 */
ZFW_INLINE int zfw_if_addr_exempt(__u32 ifindex, __u8 family, const __u32 *addr)
{
	__u32 zero = 0;
	struct zfw_watch_lease *l;

	if (!zfw_is_if_addr(ifindex, family, addr))
		return 0;
	l = bpf_map_lookup_elem(&watch_map, &zero);
	return !(l && l->expires_ns && bpf_ktime_get_ns() > l->expires_ns);
}

#endif /* ZFW_IFACE_H */
