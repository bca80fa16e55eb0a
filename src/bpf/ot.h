/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ot.h - OT protocol filtering (interfaces with `ot_filtering` on).
 *
 * DNP3 (outstation port 20000): an inbound segment whose payload starts
 * with the link-layer start bytes 0x05 0x64 and carries user data (length
 * field > 5) must have the DIR bit of the link control byte clear (sent by
 * an outstation, not a master) and an application function code listed in
 * dnp3_fcode_map.  Layout: start(2) len(1) ctrl(1) dst(2) src(2) crc(2),
 * then transport(1) app-ctrl(1) function(1).
 *
 * Modbus/TCP (server port 502): egress records every request (MBAP
 * transaction id, unit id, function code) in modbus_state_map keyed by the
 * request's flow; an inbound response must match a request recorded in the
 * last ZFW_MODBUS_TIMEOUT with the same function code (an exception
 * response, code | 0x80, maps to its request's code).  Entries are not
 * removed on a match, so TCP retransmissions of a response still pass; a
 * later request with the same transaction id replaces its entry.
 *
 * Only the first DNP3 frame / Modbus ADU of a segment is inspected.
 */
#ifndef ZFW_OT_H
#define ZFW_OT_H

#include "maps.h"
#include "parse.h"
#include "events.h"
#include "iface.h"
#include "conntrack.h"

#define ZFW_DNP3_PORT 20000
#define ZFW_MODBUS_PORT 502
#define ZFW_OT_PEEK 16
#define ZFW_DNP3_MIN_APP 13  /* bytes up to and including the function code */
#define ZFW_MODBUS_MIN 8     /* MBAP header (7) + function code */
#define ZFW_MODBUS_TIMEOUT (30 * ZFW_NSEC)

/* Copy up to ZFW_OT_PEEK payload bytes into @buf; returns how many (0: none or error). */
ZFW_INLINE __u32 zfw_ot_peek(struct __sk_buff *skb, const struct zfw_pkt *p, __u8 *buf)
{
	__u32 n = zfw_tcp_paylen(p);

	if (n > ZFW_OT_PEEK)
		n = ZFW_OT_PEEK;
	if (n < 1)
		return 0;
	/* hide the range from clang so that the verifier sees n in [1, 16] */
	asm volatile("" : "+r"(n));
	n = ((n - 1) & (ZFW_OT_PEEK - 1)) + 1;
	if (bpf_skb_load_bytes(skb, p->pay_off & 0x3ff, buf, n))
		return 0;
	return n;
}

/* DNP3 response check: 0 = allowed, else the drop reason; *code = function code. */
ZFW_INLINE __u16 zfw_dnp3_check(const __u8 *b, __u32 n, __u16 *code)
{
	__u32 fc;

	if (n < 2 || b[0] != 0x05 || b[1] != 0x64)
		return 0; /* not a DNP3 link frame */
	if (n < 10)
		return ZFW_R_DROP_OT_DNP3; /* truncated link header */
	if (b[2] <= 5)
		return 0; /* link-layer only frame: no application layer */
	if (b[2] < 8 || n < ZFW_DNP3_MIN_APP)
		return ZFW_R_DROP_OT_DNP3; /* truncated application header */
	fc = b[12];
	*code = fc;
	if (b[3] & 0x80)
		return ZFW_R_DROP_OT_DNP3; /* DIR set: a master's frame from port 20000 */
	if (!bpf_map_lookup_elem(&dnp3_fcode_map, &fc))
		return ZFW_R_DROP_OT_DNP3;
	return 0;
}

ZFW_INLINE void zfw_modbus_key(struct zfw_modbus_key *k, const __u8 *b)
{
	k->tid = ((__u16)b[0] << 8) | b[1];
	k->unit = b[6];
}

/* Modbus response check: 0 = it answers a recorded request, else the drop reason. */
ZFW_INLINE __u16 zfw_modbus_check(const struct zfw_pkt *p, const __u8 *b, __u32 n, __u16 *code)
{
	struct zfw_modbus_key k = {};
	struct zfw_modbus_val *v;
	__u8 fc;

	if (n < ZFW_MODBUS_MIN || b[2] || b[3])
		return ZFW_R_DROP_OT_MODBUS; /* truncated, or not Modbus (protocol id) */
	fc = b[7];
	*code = fc;
	zfw_flow_reverse(&p->k, &k.flow);
	zfw_modbus_key(&k, b);
	v = bpf_map_lookup_elem(&modbus_state_map, &k);
	if (!v || bpf_ktime_get_ns() - v->ts_ns > ZFW_MODBUS_TIMEOUT)
		return ZFW_R_DROP_OT_MODBUS;
	if ((fc & 0x7f) != v->fcode)
		return ZFW_R_DROP_OT_MODBUS;
	return 0;
}

/**
 * zfw_ot_ingress - inspect an inbound TCP segment from an OT server port.
 * Runs before the known-flow exit: the responses belong to flows the host
 * opened itself.  Returns 0 to go on, else the drop reason.
 */
ZFW_INLINE __u16 zfw_ot_ingress(struct __sk_buff *skb, const struct zfw_pkt *p, __u32 flags)
{
	__u8 buf[ZFW_OT_PEEK] = {};
	__u16 code = 0, rc;
	__u32 n;

	if (p->k.sport != ZFW_DNP3_PORT && p->k.sport != ZFW_MODBUS_PORT)
		return 0;
	if (!zfw_tcp_paylen(p))
		return 0; /* handshake, bare ACK, FIN: nothing to inspect */
	n = zfw_ot_peek(skb, p, buf);
	if (!n) /* a payload we could not read is not let through uninspected */
		rc = p->k.sport == ZFW_DNP3_PORT ? ZFW_R_DROP_OT_DNP3 : ZFW_R_DROP_OT_MODBUS;
	else if (p->k.sport == ZFW_DNP3_PORT)
		rc = zfw_dnp3_check(buf, n, &code);
	else
		rc = zfw_modbus_check(p, buf, n, &code);
	if (!rc)
		zfw_count(ZFW_R_PASS_OT);
	if (flags & ZFW_IF_VERBOSE)
		zfw_emit(p, ZFW_DIR_INGRESS, ZFW_EV_OT, rc ? rc : ZFW_R_PASS_OT, code);
	return rc;
}

/**
 * zfw_ot_egress - record a Modbus request leaving an interface with
 * `ot_filtering` on, for zfw_modbus_check.
 */
ZFW_INLINE void zfw_ot_egress(struct __sk_buff *skb, const struct zfw_pkt *p)
{
	struct zfw_modbus_key k = {};
	struct zfw_modbus_val v = {};
	__u8 buf[ZFW_OT_PEEK] = {};
	__u32 flags;

	if (p->k.dport != ZFW_MODBUS_PORT || p->k.proto != ZFW_P_TCP)
		return;
	flags = zfw_if_flags(p->k.ifindex);
	if (!(flags & ZFW_IF_OT_FILTERING))
		return;
	if (zfw_ot_peek(skb, p, buf) < ZFW_MODBUS_MIN || buf[2] || buf[3])
		return;
	k.flow = p->k;
	zfw_modbus_key(&k, buf);
	v.ts_ns = bpf_ktime_get_ns();
	v.fcode = buf[7];
	bpf_map_update_elem(&modbus_state_map, &k, &v, BPF_ANY);
	if (flags & ZFW_IF_VERBOSE)
		zfw_emit(p, ZFW_DIR_EGRESS, ZFW_EV_OT, ZFW_R_PASS_OT, v.fcode);
}

#endif /* ZFW_OT_H */
