/* SPDX-License-Identifier: GPL-2.0 */
/*
 * events.h - per-CPU verdict counters and ring-buffer events.
 * Counting is unconditional and cheap (one per-CPU array slot); events are
 * emitted only for interfaces with `verbose` on, or for every drop when the
 * global log_all_drops switch is set.  An event that finds rb_map full is
 * counted in stats_map[ZFW_STAT_EVENTS_LOST], so that `monitor` can say how
 * many it missed (docs/ARCHITECTURE.md §6).
 */
#ifndef ZFW_EVENTS_H
#define ZFW_EVENTS_H

#include "maps.h"
#include "parse.h"

ZFW_INLINE void zfw_count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&counters_map, &reason);

	if (c)
		*c += 1;
}

/**
 * zfw_emit - send one event to rb_map.
 * @p: the packet (tuple as it arrived)
 * @dir: ZFW_DIR_*  @kind: ZFW_EV_*  @reason: ZFW_R_*  @code: kind-specific
 */
ZFW_INLINE void zfw_emit(const struct zfw_pkt *p, __u8 dir, __u8 kind, __u16 reason,
			 __u16 code)
{
	struct zfw_event *e = bpf_ringbuf_reserve(&rb_map, sizeof(*e), 0);

	if (!e) {
		__u32 slot = ZFW_STAT_EVENTS_LOST;
		__u64 *lost = bpf_map_lookup_elem(&stats_map, &slot);

		if (lost)
			*lost += 1;
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->ifindex = p->k.ifindex;
	__builtin_memcpy(e->saddr, p->k.saddr, 16);
	__builtin_memcpy(e->daddr, p->k.daddr, 16);
	e->sport = p->k.sport;
	e->dport = p->k.dport;
	e->family = p->k.family;
	e->proto = p->k.proto;
	e->dir = dir;
	e->kind = kind;
	e->reason = reason;
	e->code = code;
	e->extra = 0;
	e->pad = 0;
	bpf_ringbuf_submit(e, 0);
}

/* Is a `monitor --all-drops` reading (its lease in monitor_map fresh)?
 * Asked for drops only: one array lookup and a clock read. */
ZFW_INLINE int zfw_all_drops(void)
{
	__u32 zero = 0;
	struct zfw_monitor_lease *l = bpf_map_lookup_elem(&monitor_map, &zero);

	return l && l->all_drops && bpf_ktime_get_ns() <= l->expires_ns;
}

/* Verdict bookkeeping: count always, emit when the interface asks for it
 * or, for a drop, while a monitor --all-drops holds the lease. */
ZFW_INLINE void zfw_note(const struct zfw_pkt *p, __u32 if_flags, __u8 dir, __u16 reason,
			 int is_drop)
{
	zfw_count(reason);
	if ((if_flags & ZFW_IF_VERBOSE) || (is_drop && zfw_all_drops()))
		zfw_emit(p, dir, ZFW_EV_VERDICT, reason, 0);
}

#endif /* ZFW_EVENTS_H */
