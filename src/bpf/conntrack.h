/* SPDX-License-Identifier: GPL-2.0 */
/*
 * conntrack.h - flow state for both directions.
 *
 * Outbound flows (opened from this side of the interface, seen first on
 * egress) live in tcp_map / udp_map / icmp_echo_map, keyed by the tuple as it
 * leaves.  Inbound flows (admitted by ingress policy) live in
 * tcp_ingress_map / udp_ingress_map, keyed by the tuple as it arrives.  The
 * reply direction of either is found with the reversed key.  The flow's
 * "orig" side is always the side that created the entry.
 *
 * TCP: SYN -> SYN_SENT, SYN+ACK from the responder -> SYN_RECV, ACK from the
 * originator -> ESTABLISHED; the first FIN -> FIN_WAIT, the second ->
 * CLOSING, the ACK of the second FIN -> CLOSED (entry removed); RST from
 * either side removes the entry.  Idle limits below; LRU eviction besides.
 *
 * During the handshake every sequence number is known exactly, so a
 * segment that would move the state must carry them (ARCHITECTURE.md §5,
 * "Handshake numbers"): the SYN+ACK acknowledges the SYN, the ACK that
 * establishes acknowledges the SYN+ACK, a RST in SYN_SENT acknowledges the
 * SYN and one in SYN_RECV carries its sender's next sequence number.
 * Anything else is ZFW_CT_INVALID: dropped on ingress as
 * ZFW_R_DROP_TCP_INVALID, and it changes nothing.  Once established, every
 * segment must fall in its flow's window ("Windows" below), so that a RST
 * or FIN an off-path sender guesses almost never ends it.
 */
#ifndef ZFW_CONNTRACK_H
#define ZFW_CONNTRACK_H

#include "maps.h"
#include "parse.h"

#define ZFW_TCP_EST_TIMEOUT (ZFW_TCP_EST_TIMEOUT_S * ZFW_NSEC)
#define ZFW_TCP_OPEN_TIMEOUT (ZFW_TCP_OPEN_TIMEOUT_S * ZFW_NSEC)
#define ZFW_TCP_CLOSE_TIMEOUT (ZFW_TCP_CLOSE_TIMEOUT_S * ZFW_NSEC)
#define ZFW_UDP_TIMEOUT (ZFW_UDP_TIMEOUT_S * ZFW_NSEC)

enum zfw_ct_rc {
	ZFW_CT_MISS = 0,  /* no live entry */
	ZFW_CT_HIT = 1,   /* entry found and updated: the packet belongs to a flow */
	ZFW_CT_CLOSED = 2, /* entry found, this packet ended the flow (still allowed) */
	ZFW_CT_INVALID = 4, /* entry found, the packet's numbers do not fit it: unchanged */
};

ZFW_INLINE void zfw_flow_reverse(const struct zfw_flow_key *in, struct zfw_flow_key *out)
{
	__builtin_memcpy(out->saddr, in->daddr, 16);
	__builtin_memcpy(out->daddr, in->saddr, 16);
	out->sport = in->dport;
	out->dport = in->sport;
	out->ifindex = in->ifindex;
	out->family = in->family;
	out->proto = in->proto;
	out->pad[0] = 0;
	out->pad[1] = 0;
}

ZFW_INLINE int zfw_flow_key_eq(const struct zfw_flow_key *a, const struct zfw_flow_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	__u32 diff = 0;
	int i;

#pragma unroll
	for (i = 0; i < (int)(sizeof(*a) / 4); i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

ZFW_INLINE __u64 zfw_flow_timeout(const struct zfw_flow *f)
{
	switch (f->state) {
	case ZFW_TCP_ESTABLISHED:
		return ZFW_TCP_EST_TIMEOUT;
	case ZFW_TCP_SYN_SENT:
	case ZFW_TCP_SYN_RECV:
		return ZFW_TCP_OPEN_TIMEOUT;
	case ZFW_TCP_FIN_WAIT:
	case ZFW_TCP_CLOSING:
	case ZFW_TCP_CLOSED:
		return ZFW_TCP_CLOSE_TIMEOUT;
	default:
		return ZFW_UDP_TIMEOUT;
	}
}

ZFW_INLINE int zfw_flow_expired(const struct zfw_flow *f, __u64 now)
{
	return now - f->last_ns > zfw_flow_timeout(f);
}

/* Payload length of a TCP segment (for FIN sequence bookkeeping). */
ZFW_INLINE __u32 zfw_tcp_paylen(const struct zfw_pkt *p)
{
	__u32 hdr = p->pay_off - p->l3_off;

	return p->ip_len > hdr ? p->ip_len - hdr : 0;
}

/* The sequence number after segment @p: its payload plus one for SYN and
 * for FIN. */
ZFW_INLINE __u32 zfw_tcp_end(const struct zfw_pkt *p)
{
	return p->tcp_seq + zfw_tcp_paylen(p) + !!(p->tcp_flags & ZFW_TCP_SYN) +
	       !!(p->tcp_flags & ZFW_TCP_FIN);
}

/*
 * Windows (ARCHITECTURE.md §5, "Windows").  From the handshake on each side
 * of a TCP flow has its furthest sequence number (next_seq_*: the end of
 * the furthest segment it sent), its largest advertised window in bytes
 * (maxwin_*) and its window scale.  Once established, a segment from side
 * S to peer R is in the window when its end lies in
 *     [next_seq_S - W, next_seq_S + 2 W + ZFW_TCP_WIN_SLACK],  W = maxwin_R:
 * at most one window behind what S sent (retransmissions), and ahead by
 * what R allows S to send (one window) plus the window the flow cache may
 * have admitted without the table: a cache slot admits a segment only while
 * its end is within one window of the entry's next_seq and its window is
 * no larger than the entry's largest (zfw_fc_fill), so the entry is never
 * further behind than that.  The slack covers one segment whose update
 * raced with another CPU's.  A segment outside is ZFW_CT_INVALID (dropped
 * on ingress, left alone on egress); one inside moves next_seq and maxwin
 * forward, never back.  A SYN in an established flow moves nothing and
 * passes, as Linux conntrack lets it: the host answers it with the ACK that
 * lets a rebooted peer reset the old connection (RFC 5961).  An entry with
 * a zero window on either side (made by an older zfw) is not tracked.
 */
#define ZFW_TCP_WSCALE_NONE 0xff
#define ZFW_TCP_WSCALE_MAX 14              /* RFC 7323 */
#define ZFW_TCP_WIN_MAX (1u << 29)         /* W is capped: the bounds stay inside 2^31 */
#define ZFW_TCP_WIN_SLACK 65536

/* Sequence numbers compare modulo 2^32. */
ZFW_INLINE int zfw_seq_after(__u32 a, __u32 b)
{
	return (__s32)(a - b) > 0;
}

ZFW_INLINE __u32 zfw_tcp_win_bound(__u32 maxwin)
{
	return maxwin > ZFW_TCP_WIN_MAX ? ZFW_TCP_WIN_MAX : maxwin;
}

/* Is the flow's window tracked (established or closing, both windows known)? */
ZFW_INLINE int zfw_tcp_tracked(const struct zfw_flow *f)
{
	return f->state >= ZFW_TCP_ESTABLISHED && f->state <= ZFW_TCP_CLOSING && f->maxwin_orig &&
	       f->maxwin_reply;
}

/* Is segment @p (from the originator when @from_orig) in @f's window? */
ZFW_INLINE int zfw_tcp_in_window(const struct zfw_flow *f, const struct zfw_pkt *p,
				 int from_orig)
{
	__u32 next = from_orig ? f->next_seq_orig : f->next_seq_reply;
	__u32 w = zfw_tcp_win_bound(from_orig ? f->maxwin_reply : f->maxwin_orig);
	__u32 end = zfw_tcp_end(p);

	return !zfw_seq_after(next - w, end) &&
	       !zfw_seq_after(end, next + 2 * w + ZFW_TCP_WIN_SLACK);
}

/* An in-window segment @p moves its side's next_seq and maxwin forward. */
ZFW_INLINE void zfw_tcp_window_advance(struct zfw_flow *f, const struct zfw_pkt *p,
				       int from_orig)
{
	__u32 end = zfw_tcp_end(p);
	__u8 sc = (from_orig ? f->wscale_orig : f->wscale_reply) & 15;
	__u32 win;

	if (sc > ZFW_TCP_WSCALE_MAX)
		sc = ZFW_TCP_WSCALE_MAX;
	win = (__u32)p->tcp_win << sc;
	if (from_orig) {
		if (zfw_seq_after(end, f->next_seq_orig))
			f->next_seq_orig = end;
		if (win > f->maxwin_orig)
			f->maxwin_orig = win;
	} else {
		if (zfw_seq_after(end, f->next_seq_reply))
			f->next_seq_reply = end;
		if (win > f->maxwin_reply)
			f->maxwin_reply = win;
	}
}

/* The window step of an established flow @f for segment @p: 1 when it is
 * in the window (and advanced it), else 0. */
ZFW_INLINE int zfw_tcp_window(struct zfw_flow *f, const struct zfw_pkt *p, int from_orig)
{
	if (!zfw_tcp_in_window(f, p, from_orig))
		return 0;
	zfw_tcp_window_advance(f, p, from_orig);
	return 1;
}

/* @v & 63, masked in the program as written: the compiler would drop a
 * mask that bounds checks above make redundant, and the verifier needs it
 * to see a stack index in bounds. */
ZFW_INLINE __u64 zfw_idx63(__u64 v)
{
	asm volatile("%[v] &= 63" : [v] "+r"(v));
	return v;
}

/* The option walk of zfw_tcp_wscale, one option per bpf_loop step. */
struct zfw_tcp_opts {
	__u8 o[64]; /* the SYN's options (at most 40 bytes), zero after them */
	__u32 i;    /* where the next option starts */
	__u32 len;  /* bytes of options */
	__u32 wscale;
	__u32 pad;
};

/* Conntrack's working memory off the stack, which the programs fill: the
 * entry zfw_ct_create_gen writes and zfw_tcp_wscale's walk. */
struct zfw_ct_scratch {
	struct zfw_flow f;
	struct zfw_tcp_opts opts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct zfw_ct_scratch);
	__uint(max_entries, 1);
} ct_scratch_map SEC(".maps");

ZFW_INLINE struct zfw_ct_scratch *zfw_ct_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ct_scratch_map, &zero);
}

/* bpf_loop wants its context on the stack: a handle to the per-CPU walk. */
struct zfw_tcp_opts_ref {
	struct zfw_tcp_opts *w;
};

static long zfw_tcp_opt_step(__u64 n, void *ctx)
{
	struct zfw_tcp_opts *w = ((struct zfw_tcp_opts_ref *)ctx)->w;
	__u8 kind, olen;
	__u32 i;

	if (!w)
		return 1;
	i = w->i;
	if (i >= w->len || i > 39)
		return 1;
	kind = w->o[zfw_idx63(i)];
	if (kind == 0) /* end of options */
		return 1;
	if (kind == 1) { /* no-op */
		w->i = i + 1;
		return 0;
	}
	if (i + 2 > w->len || i > 38)
		return 1;
	olen = w->o[zfw_idx63(i + 1)];
	if (olen < 2)
		return 1;
	if (kind == 3) {
		if (olen == 3 && i + 3 <= w->len && i <= 37) {
			olen = w->o[zfw_idx63(i + 2)];
			w->wscale = olen > ZFW_TCP_WSCALE_MAX ? ZFW_TCP_WSCALE_MAX : olen;
		}
		return 1;
	}
	w->i = i + olen;
	return 0;
}

/*
 * zfw_tcp_wscale - the window scale a SYN at @l4_off of @skb offers, or
 * ZFW_TCP_WSCALE_NONE.  A global function, and the option walk a bpf_loop:
 * both are verified once, and only SYNs pay for them (zfw_tcp_syn_opts).
 */
__attribute__((noinline)) int zfw_tcp_wscale(struct __sk_buff *skb, __u32 l4_off)
{
	struct zfw_ct_scratch *cs = zfw_ct_scratch();
	struct zfw_tcp_opts_ref ref;
	struct zfw_tcp_opts *w;
	__u32 len;
	__u8 doff;

	if (!skb || !cs)
		return ZFW_TCP_WSCALE_NONE;
	w = &cs->opts;
	l4_off &= 0x3ff;
	if (bpf_skb_load_bytes(skb, l4_off + 12, &doff, 1))
		return ZFW_TCP_WSCALE_NONE;
	len = (doff >> 4) * 4;
	if (len <= sizeof(struct tcphdr))
		return ZFW_TCP_WSCALE_NONE;
	len -= sizeof(struct tcphdr); /* 1..40 */
	__builtin_memset(w->o, 0, sizeof(w->o));
	if (bpf_skb_load_bytes(skb, l4_off + sizeof(struct tcphdr), w->o, len))
		return ZFW_TCP_WSCALE_NONE;
	w->i = 0;
	w->len = len;
	w->wscale = ZFW_TCP_WSCALE_NONE;
	/* each step moves at least one byte: 40 steps cover the longest walk */
	ref.w = w;
	bpf_loop(40, zfw_tcp_opt_step, &ref, 0);
	return w->wscale;
}

/* Fill @p's tcp_wscale when it is a SYN (the only segment that offers one). */
ZFW_INLINE void zfw_tcp_syn_opts(struct __sk_buff *skb, struct zfw_pkt *p)
{
	p->tcp_wscale = ZFW_TCP_WSCALE_NONE;
	if (p->k.proto == ZFW_P_TCP && (p->tcp_flags & ZFW_TCP_SYN) && p->l4_off)
		p->tcp_wscale = zfw_tcp_wscale(skb, p->l4_off);
}

/* Does @p, which would move a connection in @state, carry the numbers
 * the handshake so far fixes: @next_orig, the originator's number after
 * its SYN, and @next_reply, the responder's after its SYN+ACK?  The one
 * rule for conntrack entries and masquerade mappings (nat.h). */
ZFW_INLINE int zfw_tcp_handshake_ok(__u8 state, __u32 next_orig, __u32 next_reply,
				    const struct zfw_pkt *p, int from_orig)
{
	__u8 fl = p->tcp_flags;

	if (fl & ZFW_TCP_RST) {
		/* SYN_SENT: only a RST that acknowledges the SYN (from the
		 * responder); SYN_RECV: the sender's next number exactly */
		if (state == ZFW_TCP_SYN_SENT)
			return !from_orig && (fl & ZFW_TCP_ACK) && p->tcp_ack == next_orig;
		if (state == ZFW_TCP_SYN_RECV)
			return p->tcp_seq == (from_orig ? next_orig : next_reply);
		return 1;
	}
	if ((fl & ZFW_TCP_SYN) && (fl & ZFW_TCP_ACK) && !from_orig && state == ZFW_TCP_SYN_SENT)
		return p->tcp_ack == next_orig;
	if (!(fl & ZFW_TCP_SYN) && (fl & ZFW_TCP_ACK) && from_orig && state == ZFW_TCP_SYN_RECV)
		return p->tcp_ack == next_reply;
	return 1;
}

/**
 * zfw_tcp_step - advance a TCP entry by one packet.
 * @from_orig: the packet travels in the direction of the flow's first SYN
 * Returns ZFW_CT_CLOSED when the entry must be removed, ZFW_CT_INVALID
 * (entry untouched) when the packet's numbers contradict the handshake or
 * the window, else ZFW_CT_HIT.  A global function: verified once, not on
 * every path of the programs that look flows up, and its locals are not on
 * their stacks.
 */
__attribute__((noinline)) int zfw_tcp_step(struct zfw_flow *f, const struct zfw_pkt *p,
					   int from_orig)
{
	int tracked;
	__u8 fl;

	if (!f || !p)
		return ZFW_CT_INVALID;
	fl = p->tcp_flags;
	tracked = zfw_tcp_tracked(f);

	if (!zfw_tcp_handshake_ok(f->state, f->next_seq_orig, f->next_seq_reply, p, from_orig))
		return ZFW_CT_INVALID;
	if (tracked) {
		/* a SYN moves nothing here ("Windows" above) */
		if ((fl & (ZFW_TCP_SYN | ZFW_TCP_RST)) == ZFW_TCP_SYN)
			return ZFW_CT_HIT;
		if (!zfw_tcp_window(f, p, from_orig))
			return ZFW_CT_INVALID;
	}
	if (fl & ZFW_TCP_RST) {
		f->rst = 1;
		f->state = ZFW_TCP_CLOSED;
		return ZFW_CT_CLOSED;
	}
	if ((fl & ZFW_TCP_SYN) && (fl & ZFW_TCP_ACK)) {
		if (!from_orig && f->state == ZFW_TCP_SYN_SENT) {
			f->state = ZFW_TCP_SYN_RECV;
			f->next_seq_reply = zfw_tcp_end(p);
			/* windows in SYNs are never scaled; later ones are when
			 * both sides offered a scale (RFC 7323) */
			f->maxwin_reply = p->tcp_win;
			if (f->wscale_orig == ZFW_TCP_WSCALE_NONE ||
			    p->tcp_wscale == ZFW_TCP_WSCALE_NONE) {
				f->wscale_orig = 0;
				f->wscale_reply = 0;
			} else {
				f->wscale_reply = p->tcp_wscale;
			}
		}
		return ZFW_CT_HIT;
	}
	if (fl & ZFW_TCP_SYN) {
		/* the originator's SYN again: a retransmission, or a new
		 * attempt on the same tuple whose number the SYN+ACK will ack */
		if (from_orig && f->state == ZFW_TCP_SYN_SENT) {
			f->next_seq_orig = zfw_tcp_end(p);
			f->maxwin_orig = p->tcp_win;
			f->wscale_orig = p->tcp_wscale;
		}
		return ZFW_CT_HIT;
	}
	if (fl & ZFW_TCP_FIN) {
		__u32 end = zfw_tcp_end(p);

		/* a tracked flow's next_seq moved above (never back) */
		if (from_orig) {
			f->fin_orig = 1;
			if (!tracked)
				f->next_seq_orig = end;
		} else {
			f->fin_reply = 1;
			if (!tracked)
				f->next_seq_reply = end;
		}
		f->state = (f->fin_orig && f->fin_reply) ? ZFW_TCP_CLOSING : ZFW_TCP_FIN_WAIT;
		return ZFW_CT_HIT;
	}
	if (!(fl & ZFW_TCP_ACK))
		return ZFW_CT_HIT;
	if (f->state == ZFW_TCP_SYN_RECV && from_orig) {
		f->state = ZFW_TCP_ESTABLISHED;
		/* the establishing ACK is the originator's first scaled window */
		zfw_tcp_window_advance(f, p, 1);
	} else if (f->state == ZFW_TCP_CLOSING) {
		/* the final ACK acknowledges the other side's FIN */
		if ((from_orig && p->tcp_ack == f->next_seq_reply) ||
		    (!from_orig && p->tcp_ack == f->next_seq_orig)) {
			f->state = ZFW_TCP_CLOSED;
			return ZFW_CT_CLOSED;
		}
	}
	return ZFW_CT_HIT;
}

ZFW_INLINE void zfw_flow_account(struct zfw_flow *f, const struct zfw_pkt *p, int from_orig,
				 __u64 now)
{
	f->last_ns = now;
	if (from_orig) {
		f->pkts_orig++;
		f->bytes_orig += p->ip_len;
	} else {
		f->pkts_reply++;
		f->bytes_reply += p->ip_len;
	}
}

/*
 * Conntrack epochs (ct_epoch_map) invalidate the per-CPU flow caches
 * (flowcache.h) of every CPU at once: a flow's bucket is a hash of its tuple
 * that is the same in both directions; the datapath bumps the bucket when a
 * cacheable flow leaves that state or its entry goes, user space bumps the
 * global slot after removing entries (gc, conntrack flush).
 */
ZFW_INLINE __u32 zfw_ct_bucket(const struct zfw_flow_key *k)
{
	__u32 a = k->saddr[0] ^ k->saddr[1] ^ k->saddr[2] ^ k->saddr[3];
	__u32 b = k->daddr[0] ^ k->daddr[1] ^ k->daddr[2] ^ k->daddr[3];
	__u32 h = (a ^ b) * 0x9e3779b1;

	h ^= ((__u32)(k->sport ^ k->dport) << 16) ^ ((__u32)k->proto << 8) ^ k->ifindex;
	h *= 0x85ebca6b;
	h ^= h >> 15;
	return h & (ZFW_CT_EPOCH_BUCKETS - 1);
}

/* The datapath's epoch of @bucket alone (bumped when one of its flows ends). */
ZFW_INLINE __u32 zfw_ct_bucket_epoch(__u32 bucket)
{
	__u32 *e = bpf_map_lookup_elem(&ct_epoch_map, &bucket);

	return e ? *(volatile __u32 *)e : 0;
}

/* The epoch a flow cache slot of a flow in @bucket must carry to be valid:
 * its bucket's plus the global one user space bumps. */
ZFW_INLINE __u32 zfw_ct_epoch(__u32 bucket)
{
	__u32 global = ZFW_CT_EPOCH_BUCKETS;
	__u32 *g = bpf_map_lookup_elem(&ct_epoch_map, &global);

	return zfw_ct_bucket_epoch(bucket) + (g ? *(volatile __u32 *)g : 0);
}

ZFW_INLINE void zfw_ct_epoch_bump(const struct zfw_flow_key *k)
{
	__u32 bucket = zfw_ct_bucket(k);
	__u32 *e = bpf_map_lookup_elem(&ct_epoch_map, &bucket);

	if (e)
		__sync_fetch_and_add(e, 1);
}

/* Flows whose packets the flow cache may admit without the table. */
ZFW_INLINE int zfw_flow_cacheable(const struct zfw_flow *f)
{
	return f->state == ZFW_TCP_ESTABLISHED || f->state == ZFW_TCP_UDP;
}

/* Flow clock: CLOCK_MONOTONIC at tick resolution, much cheaper than the
 * precise clock and plenty for idle timeouts measured in seconds. */
ZFW_INLINE __u64 zfw_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

/**
 * zfw_ct_touch_get - find @key in @map and advance it with packet @p.
 * An expired entry counts as absent; with @revive it is renewed instead
 * (the side that created a UDP/ICMP flow may bring it back).  On a hit that
 * keeps the entry, *@fp points at it.
 */
ZFW_INLINE int zfw_ct_touch_get(void *map, const struct zfw_flow_key *key,
				const struct zfw_pkt *p, int from_orig, int revive,
				struct zfw_flow **fp)
{
	struct zfw_flow *f = bpf_map_lookup_elem(map, key);
	__u64 now;
	int rc = ZFW_CT_HIT;
	__u8 was;

	*fp = 0;
	if (!f)
		return ZFW_CT_MISS;
	now = zfw_now();
	if (zfw_flow_expired(f, now)) {
		if (!revive || p->k.proto == ZFW_P_TCP) {
			bpf_map_delete_elem(map, key);
			zfw_ct_epoch_bump(key);
			return ZFW_CT_MISS;
		}
	}
	was = f->state;
	if (p->k.proto == ZFW_P_TCP)
		rc = zfw_tcp_step(f, p, from_orig);
	if (rc == ZFW_CT_INVALID)
		return rc;
	zfw_flow_account(f, p, from_orig, now);
	/* a flow other CPUs may have cached leaves the state they cached */
	if (was == ZFW_TCP_ESTABLISHED && f->state != was)
		zfw_ct_epoch_bump(key);
	if (rc == ZFW_CT_CLOSED)
		bpf_map_delete_elem(map, key);
	else
		*fp = f;
	return rc;
}

ZFW_INLINE int zfw_ct_touch(void *map, const struct zfw_flow_key *key, const struct zfw_pkt *p,
			    int from_orig, int revive)
{
	struct zfw_flow *f;

	return zfw_ct_touch_get(map, key, p, from_orig, revive, &f);
}

/**
 * zfw_ct_create - start tracking a flow whose first packet is @p.
 * TCP entries start only from a SYN; returns 0 on success.  @policy_gen is
 * the rule generation that admitted the flow (0: admitted by something
 * other than a rule, e.g. the SSH default; never re-checked); @how is
 * BPF_ANY or BPF_NOEXIST.
 */
ZFW_INLINE int zfw_ct_create_gen(void *map, const struct zfw_flow_key *key,
				 const struct zfw_pkt *p, __u32 policy_gen, __u64 how)
{
	struct zfw_ct_scratch *cs = zfw_ct_scratch();
	struct zfw_flow *f;
	__u64 now = zfw_now();

	if (!cs)
		return -1;
	f = &cs->f;
	__builtin_memset(f, 0, sizeof(*f));
	if (p->k.proto == ZFW_P_TCP) {
		if ((p->tcp_flags & (ZFW_TCP_SYN | ZFW_TCP_ACK | ZFW_TCP_RST)) != ZFW_TCP_SYN)
			return -1;
		f->state = ZFW_TCP_SYN_SENT;
		f->next_seq_orig = zfw_tcp_end(p);
		f->maxwin_orig = p->tcp_win;
		f->wscale_orig = p->tcp_wscale;
	} else {
		f->state = ZFW_TCP_UDP;
	}
	f->first_ns = now;
	f->policy_gen = policy_gen;
	zfw_flow_account(f, p, 1, now);
	return bpf_map_update_elem(map, key, f, how) ? -1 : 0;
}

ZFW_INLINE int zfw_ct_create(void *map, const struct zfw_flow_key *key, const struct zfw_pkt *p)
{
	return zfw_ct_create_gen(map, key, p, 0, BPF_ANY);
}

/* The first packet of a TCP flow (a SYN without ACK, RST or FIN). */
ZFW_INLINE int zfw_is_bare_syn(const struct zfw_pkt *p)
{
	return p->k.proto == ZFW_P_TCP &&
	       (p->tcp_flags & (ZFW_TCP_SYN | ZFW_TCP_ACK | ZFW_TCP_RST | ZFW_TCP_FIN)) == ZFW_TCP_SYN;
}

/* Which table holds the assured flows of @proto opened from @inbound side. */
ZFW_INLINE void *zfw_ct_map(__u8 proto, int inbound)
{
	if (proto == ZFW_P_TCP)
		return inbound ? (void *)&tcp_ingress_map : (void *)&tcp_map;
	if (proto == ZFW_P_UDP)
		return inbound ? (void *)&udp_ingress_map : (void *)&udp_map;
	return 0;
}

/*
 * Assured and unassured flows (ARCHITECTURE.md §5, README "Table
 * pressure"), the way Linux conntrack tells them apart: a flow's first
 * packet creates its entry in the small unassured table of its protocol and
 * side; the entry moves to the main table (zfw_ct_map) once the flow is
 * assured -- UDP: a packet was seen in each direction; TCP: the handshake
 * completed (SYN, the responder's SYN+ACK, the originator's ACK), so that a
 * SYN flood answered by a real server stays unassured.  Lookups try the
 * main tables of both directions first, then the unassured ones, so an
 * assured flow costs what it did before the split; a bare SYN skips the
 * unassured tables (zfw_ct_open).  A flood of new flows therefore evicts unassured
 * entries (LRU) and never an assured one: the main tables are no LRU
 * (maps.h); when one is full, a flow that is assured stays in its
 * unassured table, counted as ct_main_full.
 */
ZFW_INLINE void *zfw_ct_new_map(__u8 proto, int inbound)
{
	if (proto == ZFW_P_TCP)
		return inbound ? (void *)&tcp_ingress_unassured_map : (void *)&tcp_unassured_map;
	if (proto == ZFW_P_UDP)
		return inbound ? (void *)&udp_ingress_unassured_map : (void *)&udp_unassured_map;
	return 0;
}

/* Has unassured flow @f (just advanced by a packet) become assured? */
ZFW_INLINE int zfw_ct_assured(const struct zfw_flow *f, __u8 proto)
{
	if (proto == ZFW_P_TCP)
		return f->state == ZFW_TCP_ESTABLISHED;
	return f->pkts_orig && f->pkts_reply;
}

/* zfw_ct_unassured's answer when the packet assured the flow: the entry
 * moved to the main table. */
#define ZFW_CT_HIT_ASSURED 3

/**
 * zfw_ct_unassured_step - zfw_ct_touch_get's work on entry @f, which the
 * caller found under @key in the unassured table of @p's protocol and side
 * (@how: ZFW_CT_STEP_* -- inbound side, from the originator, may revive;
 * one argument, as a BPF function takes at most five); when this packet assures the flow the entry moves to the
 * main table (ZFW_CT_HIT_ASSURED: @f is then no longer the flow's entry).
 * A global function: the verifier checks it once, not once per path of
 * each program that looks a flow up (inlined twice per program they passed
 * its 1,000,000 limit).  The caller looks the entry up itself, so a hit
 * costs one lookup and the entry pointer needs no second one.
 */
#define ZFW_CT_STEP_INBOUND 1
#define ZFW_CT_STEP_FROM_ORIG 2
#define ZFW_CT_STEP_REVIVE 4

__attribute__((noinline)) int zfw_ct_unassured_step(const struct zfw_flow_key *key,
						    struct zfw_flow *f, const struct zfw_pkt *p,
						    int how)
{
	int inbound = !!(how & ZFW_CT_STEP_INBOUND);
	int from_orig = !!(how & ZFW_CT_STEP_FROM_ORIG);
	int revive = !!(how & ZFW_CT_STEP_REVIVE);
	void *main, *unassured;
	int rc = ZFW_CT_HIT;
	__u64 now;

	if (!key || !f || !p)
		return ZFW_CT_MISS;
	main = zfw_ct_map(p->k.proto, inbound);
	unassured = zfw_ct_new_map(p->k.proto, inbound);
	if (!main || !unassured)
		return ZFW_CT_MISS;
	now = zfw_now();
	if (zfw_flow_expired(f, now) && (!revive || p->k.proto == ZFW_P_TCP)) {
		bpf_map_delete_elem(unassured, key);
		zfw_ct_epoch_bump(key);
		return ZFW_CT_MISS;
	}
	if (p->k.proto == ZFW_P_TCP)
		rc = zfw_tcp_step(f, p, from_orig);
	if (rc == ZFW_CT_INVALID)
		return rc;
	zfw_flow_account(f, p, from_orig, now);
	if (rc == ZFW_CT_CLOSED) {
		bpf_map_delete_elem(unassured, key);
		return rc;
	}
	if (zfw_ct_assured(f, p->k.proto)) {
		if (bpf_map_update_elem(main, key, f, BPF_ANY) == 0) {
			bpf_map_delete_elem(unassured, key);
			return ZFW_CT_HIT_ASSURED;
		}
		/* the main table is full (maps.h): the flow works on from its
		 * unassured entry, and the next packet tries the move again */
		zfw_count(ZFW_R_CT_MAIN_FULL);
	}
	return rc;
}

/**
 * zfw_ct_unassured - zfw_ct_touch_get on the unassured table of @p's
 * protocol and @inbound side.  *@fp points at the entry where it now lives
 * (the main table when this packet assured the flow).
 */
ZFW_INLINE int zfw_ct_unassured(int inbound, const struct zfw_flow_key *key,
				const struct zfw_pkt *p, int from_orig, int revive,
				struct zfw_flow **fp)
{
	void *unassured = zfw_ct_new_map(p->k.proto, inbound);
	void *main = zfw_ct_map(p->k.proto, inbound);
	struct zfw_flow *f;
	int rc;

	*fp = 0;
	if (!unassured || !main)
		return ZFW_CT_MISS;
	f = bpf_map_lookup_elem(unassured, key);
	if (!f)
		return ZFW_CT_MISS;
	rc = zfw_ct_unassured_step(key, f, p,
				   (inbound ? ZFW_CT_STEP_INBOUND : 0) |
					   (from_orig ? ZFW_CT_STEP_FROM_ORIG : 0) |
					   (revive ? ZFW_CT_STEP_REVIVE : 0));
	if (rc == ZFW_CT_HIT_ASSURED) {
		*fp = bpf_map_lookup_elem(main, key);
		return ZFW_CT_HIT;
	}
	if (rc == ZFW_CT_HIT)
		*fp = f;
	return rc;
}

/**
 * zfw_ct_open - start tracking a flow whose first packet is @p in the
 * unassured table @map of its protocol and @inbound side (@policy_gen as
 * for zfw_ct_create_gen).  The lookups before the policy step skip the
 * unassured table for a bare SYN (the common first packet pays one missed
 * lookup, not two), so an entry may already be there: the SYN is then a
 * retransmission, or it follows an expired attempt, and it advances that
 * entry instead of replacing it.  Returns 0 when a new entry was created,
 * 1 when an existing one took the packet, -1 on failure.
 */
ZFW_INLINE int zfw_ct_open(void *map, int inbound, const struct zfw_flow_key *key,
			   const struct zfw_pkt *p, __u32 policy_gen)
{
	struct zfw_flow *f;

	if (zfw_ct_create_gen(map, key, p, policy_gen, BPF_NOEXIST) == 0)
		return 0;
	if (zfw_ct_unassured(inbound, key, p, 1, 1, &f) != ZFW_CT_MISS)
		return 1;
	return zfw_ct_create_gen(map, key, p, policy_gen, BPF_ANY);
}

/* Is @key tracked in either table (no update)? */
ZFW_INLINE int zfw_ct_tracked(void *main, void *unassured, const struct zfw_flow_key *key)
{
	if (!main || !unassured)
		return 0;
	return bpf_map_lookup_elem(main, key) || bpf_map_lookup_elem(unassured, key);
}

/* Forget @key in both tables of its side (@main: the assured one). */
ZFW_INLINE void zfw_ct_forget(void *main, int inbound, const struct zfw_flow_key *key)
{
	void *unassured = zfw_ct_new_map(key->proto, inbound);

	bpf_map_delete_elem(main, key);
	if (unassured)
		bpf_map_delete_elem(unassured, key);
}

#endif /* ZFW_CONNTRACK_H */
