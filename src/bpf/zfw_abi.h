/* SPDX-License-Identifier: GPL-2.0 */
/*
 * zfw_abi.h - every struct, enum and constant shared between the BPF
 * programs and user space.  This is the ONLY definition: the Rust side uses
 * the types libbpf-cargo generates from the skeleton's BTF, and build.rs
 * turns the enums below into name tables.  Rules for this file:
 *   - fixed-width types only, explicit padding so that no byte is undefined
 *     (user space implements plain::Plain for these structs);
 *   - every enum member gets an explicit value; build.rs parses
 *     "NAME = VALUE," lines;
 *   - bump ZFW_ABI_VERSION whenever a pinned map's key, value or a fixed
 *     size (e.g. counters_map: ZFW_R_MAX) changes.
 */
#ifndef ZFW_ABI_H
#define ZFW_ABI_H

enum zfw_limits {
	ZFW_ABI_VERSION = 10,
	ZFW_MAX_IF_ADDRS = 8,        /* addresses per interface in ifindex_ip(6)_map */
	ZFW_MAX_RULE_IFACES = 4,     /* interfaces one rule may list */
	/* port ranges under one (dst, src, proto) key: the datapath scans them
	 * in a loop that stops at the key's count, so the bound costs
	 * nothing per packet (README "Limits") */
	ZFW_MAX_RANGES_PER_KEY = 1024,
	ZFW_MAX_PAIRS = 62,          /* (dst len, src len) pairs on one address's path */
	/* the rule walk's plain loops: its first pairs, and the first ranges
	 * of each of their keys; the rest goes on in bpf_loop (policy.h) */
	ZFW_WALK_INLINE_PAIRS = 4,
	ZFW_WALK_INLINE_RANGES = 16,
	ZFW_SERVICE_ID_LEN = 32,
	ZFW_IFNAME_LEN = 16,
	ZFW_MATCH_SLOTS = 16384,     /* matched_map slots per CPU (a power of two) */
	ZFW_CHUNK_SHIFT = 14,        /* range_map and service_map are arrays of maps whose
				      * chunks hold 1 << ZFW_CHUNK_SHIFT slots each, made
				      * as rules need them (ARCHITECTURE.md §6 "Chunks") */
	ZFW_CHUNK_SLOTS = 16384,     /* 1 << ZFW_CHUNK_SHIFT */
	ZFW_RANGE_CHUNKS = 64,       /* default chunks: 1,048,576 slots, two rule sets */
	ZFW_RULE_KEYS_MIN = 1024,    /* tproxy_map's table is made for at least this many keys */
	ZFW_RULE_KEYS_MAX = 800000,  /* ... and grows up to zfw_config.rule_keys_max, by default this */
	ZFW_FLOW_CACHE_SLOTS = 4096, /* flow_cache_map slots per CPU (a power of two) */
	ZFW_FLOW_CACHE_JIFFIES = 32, /* a cached flow verdict is trusted this many ticks */
	ZFW_CT_EPOCH_BUCKETS = 1024, /* ct_epoch_map: per-bucket epochs, then one global */
	ZFW_TUN_CACHE_SLOTS = 1024,  /* tun_cache_map slots per CPU (a power of two) */
	ZFW_RULE_STATS_SLOTS = 65536, /* rule_stats_map's default size: counter ids 1..N-1 */
	/* rule_ids_map's default size: one bit per counter id, 64 to a word
	 * (sized at load to cover rule_stats_map: ARCHITECTURE.md §7 "Counters") */
	ZFW_RULE_IDS_WORDS = ZFW_RULE_STATS_SLOTS / 64,
	ZFW_CB_MAGIC = 0x7a66,       /* skb->cb[0] high half: prio 1 handed this packet on */
	ZFW_NAT_PORT_MIN = 1024,     /* masquerade: allocated ports / echo ids in MIN..65535 */
	ZFW_NAT_RETRIES = 10,        /* port candidates (the inside port, then random) per new mapping */
	ZFW_NAT_TIME_WAIT_S = 120,   /* a closed TCP mapping's port goes to another inside host
				      * for the same destination only after this (the peer's
				      * TIME_WAIT; conntrack keeps TIME_WAIT 120 s) */
};

/* IP protocol and address family numbers the datapath's keys carry (the
 * kernel's IPPROTO_* and AF_*; VRRP is IANA protocol 112). */
enum zfw_proto {
	ZFW_P_ICMP = 1,
	ZFW_P_TCP = 6,
	ZFW_P_UDP = 17,
	ZFW_P_ICMPV6 = 58,
	ZFW_P_VRRP = 112,
};

enum zfw_family {
	ZFW_AF_INET = 2,
	ZFW_AF_INET6 = 10,
};

/* Idle limits in seconds of flow entries and of masquerade mappings, by
 * state (the datapath and `zfw gc` share them).  A masquerade mapping is
 * half-open until the inside host acknowledged the peer's SYN-ACK. */
enum zfw_timeouts {
	ZFW_TCP_EST_TIMEOUT_S = 3600,  /* established TCP */
	ZFW_TCP_OPEN_TIMEOUT_S = 60,   /* handshake not complete */
	ZFW_TCP_CLOSE_TIMEOUT_S = 120, /* FIN seen, final ACK pending */
	ZFW_UDP_TIMEOUT_S = 30,        /* UDP, and ICMP echo (flows and mappings) */
};

/* Per-interface settings (diag_map value flags). */
enum zfw_if_flag {
	ZFW_IF_ICMP_ECHO = 1,
	ZFW_IF_SSH = 2,
	ZFW_IF_PASS_NON_TUPLE = 4,
	ZFW_IF_IPV6 = 8,
	ZFW_IF_VERBOSE = 16,
	ZFW_IF_PER_INTERFACE_RULES = 32,
	ZFW_IF_OUTBOUND_FILTER = 64,
	ZFW_IF_MASQUERADE = 128,
	ZFW_IF_VRRP = 256,
	ZFW_IF_EAPOL = 512,
	ZFW_IF_DDOS = 1024,
	ZFW_IF_OT_FILTERING = 2048,
};

/* Hooks user space attached to an interface (diag_map value hooks). */
enum zfw_hook {
	ZFW_HOOK_INGRESS = 1,
	ZFW_HOOK_TRACK = 2,
	ZFW_HOOK_EGRESS = 4,
	ZFW_HOOK_XDP_TUN = 8,
	ZFW_HOOK_OWN_CLSACT = 16, /* zfw created the clsact qdisc: remove it on unload */
	ZFW_HOOK_CONFIGURED = 32, /* settings written by user space (slot in use) */
	ZFW_HOOK_TUN_MODE = 64,   /* the C zfw's tun mode (-T): later -I with a tproxy port make tunnel rules */
};

/* What a matching rule does. */
enum zfw_action {
	ZFW_ACT_NONE = 0,   /* no rule matched */
	ZFW_ACT_ALLOW = 1,  /* pass to the host stack / forward */
	ZFW_ACT_DENY = 2,
	ZFW_ACT_TPROXY = 3, /* bpf_sk_assign to the local listener on tproxy_port */
	ZFW_ACT_TUNNEL = 4, /* redirect into the registered tun interface */
};

enum zfw_dir {
	ZFW_DIR_INGRESS = 0,
	ZFW_DIR_EGRESS = 1,
};

/* Why a packet got its verdict: counters_map index, event reason. */
enum zfw_reason {
	ZFW_R_NONE = 0,
	ZFW_R_PASS_ARP = 1,
	ZFW_R_PASS_EAPOL = 2,
	ZFW_R_PASS_NON_TUPLE = 3,
	ZFW_R_DROP_NON_TUPLE = 4,
	ZFW_R_DROP_MALFORMED = 5,
	ZFW_R_DROP_FRAGMENT = 6,
	ZFW_R_PASS_FRAGMENT = 7,
	ZFW_R_DROP_IPV6_OFF = 8,
	ZFW_R_PASS_ND = 9,
	ZFW_R_PASS_KNOWN_FLOW = 10,
	ZFW_R_PASS_LOCAL_SOCKET = 11,
	ZFW_R_PASS_ICMP_ECHO = 12,
	ZFW_R_DROP_ICMP = 13,
	ZFW_R_PASS_ICMP_REPLY = 14,
	ZFW_R_PASS_ICMP_ERROR = 15,
	ZFW_R_PASS_VRRP = 16,
	ZFW_R_PASS_SSH = 17,
	ZFW_R_DROP_DDOS = 18,
	ZFW_R_PASS_RULE = 19,
	ZFW_R_DROP_RULE_DENY = 20,
	ZFW_R_DROP_NO_RULE = 21,
	ZFW_R_TPROXY = 22,
	ZFW_R_DROP_NO_LISTENER = 23,
	ZFW_R_TUNNEL = 24,
	ZFW_R_DROP_NO_TUNNEL = 25,
	ZFW_R_DROP_OT_DNP3 = 26,
	ZFW_R_DROP_OT_MODBUS = 27,
	ZFW_R_PASS_OT = 28,
	ZFW_R_DROP_NO_STATE = 29,
	ZFW_R_DROP_EGRESS_RULE = 30,
	ZFW_R_PASS_EGRESS = 31,
	ZFW_R_DROP_NAT_EXHAUSTED = 32,
	ZFW_R_NAT = 33,
	ZFW_R_TRACK_NEW = 34,
	ZFW_R_TRACK_UPDATE = 35,
	ZFW_R_TRACK_CLOSE = 36,
	ZFW_R_XDP_REDIRECT = 37,
	ZFW_R_XDP_PASS = 38,
	ZFW_R_DROP_SYN_RATE = 39,
	ZFW_R_PASS_NOT_IP_TUPLE = 40,
	ZFW_R_DROP_NAT_UNTRANSLATABLE = 41, /* masquerade cannot translate: dropped, never leaked */
	ZFW_R_NAT_EVICTED = 42,      /* ports exhausted: a half-open mapping gave way to a new one */
	ZFW_R_DROP_NAT_NO_ADDR = 43, /* masquerade: the interface has no address of the family */
	ZFW_R_DROP_TCP_INVALID = 44, /* a TCP segment whose numbers the flow contradicts (handshake, window) */
	ZFW_R_CT_MAIN_FULL = 45,     /* a flow was assured but its main table is full: it stays unassured */
	ZFW_R_MAX = 46,
};

/* Datapath statistics that are not packet verdicts: stats_map index. */
enum zfw_stat {
	ZFW_STAT_EVENTS_LOST = 0, /* rb_map reservations that failed (ring full) */
	ZFW_STAT_MAX = 1,
};

/* TCP connection states kept in tcp_map / tcp_ingress_map. */
enum zfw_tcp_state {
	ZFW_TCP_NONE = 0,
	ZFW_TCP_SYN_SENT = 1,
	ZFW_TCP_SYN_RECV = 2,
	ZFW_TCP_ESTABLISHED = 3,
	ZFW_TCP_FIN_WAIT = 4,  /* one side sent FIN */
	ZFW_TCP_CLOSING = 5,   /* both sides sent FIN, waiting for the final ACK */
	ZFW_TCP_CLOSED = 6,    /* final ACK or RST seen; entry is about to go */
	ZFW_TCP_UDP = 7,       /* not TCP: udp/icmp flow entries */
};

/* Event kinds in rb_map. */
enum zfw_event_kind {
	ZFW_EV_VERDICT = 1,
	ZFW_EV_STATE = 2,
	ZFW_EV_OT = 3,
	ZFW_EV_NAT = 4,
};

/* Why masquerade dropped a packet: zfw_event.code of a ZFW_EV_NAT event. */
enum zfw_nat_err {
	ZFW_NAT_E_EXHAUSTED = 1, /* no free port after ZFW_NAT_RETRIES picks */
	ZFW_NAT_E_NO_ADDR = 2,   /* the interface has no address to use */
	ZFW_NAT_E_NOT_START = 3, /* no mapping, and the packet cannot start one */
	ZFW_NAT_E_CONFLICT = 4,  /* IPv6 static PAT: the port is taken by another host */
	ZFW_NAT_E_REWRITE = 5,   /* a helper failed to rewrite the packet */
};

/* `zfw watch` (ARCHITECTURE.md §6, watch_map): how often the watcher renews
 * its lease, and how long a lease is good for.  A datapath that finds the
 * lease expired stops granting the SSH and ICMP echo exceptions of
 * interface addresses (its copy of them may be stale). */
enum zfw_watch_consts {
	ZFW_WATCH_RENEW_MS = 1000,
	ZFW_WATCH_LEASE_MS = 3000, /* 3 renew periods */
};

/* watch_map[0]: the watcher's lease.  expires_ns == 0: no watcher (static
 * mode: the addresses are trusted as written, as without `zfw watch`). */
struct zfw_watch_lease {
	__u64 expires_ns; /* CLOCK_MONOTONIC */
	__u32 pid;        /* the watcher, for `status` and `dump` */
	__u32 pad;
};

/* `zfw monitor` (ARCHITECTURE.md §6, monitor_map): rb_map has one reader
 * (two would split its events between them), which holds this lease and
 * renews it every ZFW_MONITOR_RENEW_MS.  With `--all-drops` the datapath
 * emits an event for every drop while the lease is fresh: a reader that is
 * killed leaves it to lapse within ZFW_MONITOR_LEASE_MS. */
enum zfw_monitor_consts {
	ZFW_MONITOR_RENEW_MS = 1000,
	ZFW_MONITOR_LEASE_MS = 3000, /* 3 renew periods */
};

/* monitor_map[0]: the reader's lease (expires_ns 0: no reader). */
struct zfw_monitor_lease {
	__u64 expires_ns; /* CLOCK_MONOTONIC */
	__u32 pid;        /* the reading monitor */
	__u8 all_drops;   /* it asked for every drop */
	__u8 pad[3];
};

/* journal_map[0]: the rule-store change in progress (ARCHITECTURE.md §7).
 * Written before a rule change's first map write and cleared after its
 * last; a record the next writing command finds is an interrupted change,
 * which it finishes or rolls back.  op == ZFW_JOURNAL_NONE: nothing pending. */
enum zfw_journal_op {
	ZFW_JOURNAL_NONE = 0,
	ZFW_JOURNAL_RULE_ADD = 1,
	ZFW_JOURNAL_RULE_DEL = 2,
	ZFW_JOURNAL_REPLACE = 3, /* apply, rule flush, a full two-set rewrite */
};

struct zfw_journal {
	__u32 op;       /* enum zfw_journal_op */
	__u32 pid;      /* the writing process */
	__u64 started;  /* CLOCK_REALTIME seconds */
	__u32 from_set; /* active_set when the change started */
	__u32 pad;
};

/* Global settings, config_map[0]. */
struct zfw_config {
	__u32 abi_version;
	__u32 policy_gen;   /* bumped on every rule change: invalidates matched_map */
	__u8 active_set;    /* which rule set (0/1) the datapath reads */
	__u8 pad[3];
	__u32 syn_rate;     /* per-source SYN tokens per second (0 = off) */
	__u32 syn_burst;
	/* user space only: the policy_gen at which rule_ids_map last held every
	 * counter id the live ranges name (ARCHITECTURE.md §7 "Counters");
	 * was padding, which older builds copy unchanged when they bump
	 * policy_gen, so a change of theirs makes the record untrusted */
	__u32 rule_ids_gen;
	__u64 build_id;     /* hash of the loaded BPF object */
	/* user space only: how many keys tproxy_map's table may grow to
	 * (`--map-size tproxy_map=N` at the first load; ARCHITECTURE.md §6
	 * "Grown tables") */
	__u32 rule_keys_max;
	__u32 pad2;
};

/* diag_map value, indexed by ifindex (an all-zero slot: not configured). */
struct zfw_iface {
	__u32 flags;  /* enum zfw_if_flag */
	__u32 hooks;  /* enum zfw_hook, user space bookkeeping */
	char name[ZFW_IFNAME_LEN];
};

/* ifindex_ip_map value. */
struct zfw_if_addrs4 {
	__u32 count;
	__u32 addr[ZFW_MAX_IF_ADDRS]; /* network byte order */
};

struct zfw_in6 {
	__u32 a[4];
};

/* ifindex_ip6_map value. */
struct zfw_if_addrs6 {
	__u32 count;
	__u32 pad;
	struct zfw_in6 addr[ZFW_MAX_IF_ADDRS];
};

/*
 * A flow: conntrack key (tcp_map, udp_map, *_ingress_map, icmp_echo_map,
 * tun_map).  Addresses in network byte order, IPv4 in [0]; ports in host
 * byte order (ICMP echo: sport = echo id, dport = 0).
 */
struct zfw_flow_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u8 family; /* AF_INET / AF_INET6 */
	__u8 proto;
	__u8 pad[2];
};

/* Conntrack value. */
struct zfw_flow {
	__u64 first_ns;  /* bpf_ktime_get_ns() at creation */
	__u64 last_ns;
	__u64 pkts_orig;
	__u64 pkts_reply;
	__u64 bytes_orig;
	__u64 bytes_reply;
	__u32 next_seq_orig;  /* TCP: the originator's number after its SYN; once established,
			       * after the furthest in-window segment it sent (its FIN last) */
	__u32 next_seq_reply; /* ... the responder's, after its SYN+ACK, then the same */
	__u8 state;      /* enum zfw_tcp_state */
	__u8 fin_orig;   /* originator sent FIN */
	__u8 fin_reply;  /* responder sent FIN */
	__u8 rst;
	__u32 policy_gen; /* zfw_config.policy_gen when the policy last admitted it */
	__u32 maxwin_orig;  /* TCP: the largest window the originator advertised, in bytes
			     * (scaled); 0 in either: the flow's windows are not tracked */
	__u32 maxwin_reply; /* ... the responder's */
	__u8 wscale_orig;   /* TCP: the shift of the originator's windows (RFC 7323; 0 unless
			     * both SYNs offered one; ZFW_TCP_WSCALE_NONE until the SYN+ACK) */
	__u8 wscale_reply;  /* ... of the responder's */
	__u8 pad[6];
};

/*
 * flow_cache_map value (per-CPU, direct-mapped by a hash of the tuple): the
 * verdict of an established TCP or live UDP flow, so that its next packets
 * skip the conntrack hash lookup and the clock.  Valid while the rule
 * generation and the flow's conntrack epoch are unchanged and for at most
 * ZFW_FLOW_CACHE_JIFFIES ticks after it was filled from the flow table.
 * Packets admitted from the slot are counted here and added to the flow
 * entry when the slot is refilled (`conntrack list` adds them too).
 */
struct zfw_flow_cache {
	struct zfw_flow_key key; /* the packet's tuple as this hook sees it */
	__u32 policy_gen; /* zfw_config.policy_gen when filled */
	__u64 jiffies;    /* bpf_jiffies64() when filled */
	__u64 pkts;       /* admitted from this slot, not yet in the flow entry */
	__u64 bytes;
	__u32 epoch;      /* ct_epoch_map[bucket] + ct_epoch_map[global] when filled */
	__u16 bucket;     /* the flow's ct_epoch_map bucket */
	__u8 dir;         /* enum zfw_dir + 1; 0: empty slot */
	__u8 inbound;     /* the flow lives in tcp_ingress_map / udp_ingress_map */
	__u8 from_orig;   /* the packet travels in the flow's original direction */
	__u8 nat;         /* masquerade: egress SNAT / ingress DNAT the packet */
	__u16 nport;      /* ... to this port (host order) */
	__u32 naddr[4];   /* ... and this address (an ingress slot's key is the
			   * tuple as it arrives; conntrack sees naddr:nport as
			   * its destination) */
	__u32 csum_diff;  /* IPv6: one's complement difference old -> new address */
	__u8 tun_mac[12]; /* tunnel slot: the frame's destination and source MAC
			   * (ours, the client's) when it was filled */
	__u32 tun_ifindex; /* tunnel slot: redirect into this tun; 0: no tunnel */
	__u32 seq_lo;     /* admit TCP segments that end in [seq_lo, seq_lo + seq_span]
			   * (the entry's window: conntrack.h, "Windows") ... */
	__u32 seq_span;
	__u16 win_cap;    /* ... and advertise at most this window (unscaled); anything else
			   * takes the full path, which tracks it.  Untracked: all of both */
	__u8 pad[6];
};

/* Rule key: tproxy_map.  One key per (dir, set, family, proto, dst, src). */
struct zfw_rule_key {
	__u32 dst[4];  /* masked to dst_len */
	__u32 src[4];  /* masked to src_len */
	__u8 family;
	__u8 proto;
	__u8 dst_len;
	__u8 src_len;
	__u8 dir;      /* enum zfw_dir */
	__u8 set;      /* rule set 0/1 (apply builds the new set beside the live one) */
	__u8 pad[2];
};

/* tproxy_map value: this key's port ranges live in range_map[first, first+count). */
struct zfw_rule_span {
	__u32 first;
	__u32 count;
};

/* range_map value: one rule's port range and action, in insertion order. */
struct zfw_range {
	__u16 lo;          /* host byte order, inclusive */
	__u16 hi;
	__u16 tproxy_port; /* host byte order */
	__u8 action;       /* enum zfw_action */
	__u8 nif;          /* 0 = any interface */
	__u32 ifindex[ZFW_MAX_RULE_IFACES];
	__u32 stat;        /* the rule's rule_stats_map slot, 0: none (ARCHITECTURE.md §7
			    * "Counters": stable while the rule is unchanged) */
	__u32 pad;
};

/*
 * rule_stats_map value (per-CPU, indexed by zfw_range.stat): what the rule
 * decided.  Counted on the first packet of each flow the rule admits or
 * denies (and when a deny ends a flow an older rule set admitted), never
 * on the packets of established flows (README "Rule counters").
 */
struct zfw_rule_stats {
	__u64 packets;
	__u64 bytes;   /* skb->len of those packets */
	__u64 last_ns; /* bpf_ktime_get_coarse_ns() of the latest, 0: never */
};

/* service_map value, keyed by range index. */
struct zfw_service_id {
	char id[ZFW_SERVICE_ID_LEN];
};

/*
 * dst_lpm_map: LPM trie over destination prefixes.  prefixlen counts the 32
 * bits of (family, proto, dir, set) plus the dst length.
 */
struct zfw_lpm_key {
	__u32 prefixlen;
	__u8 family;
	__u8 proto;
	__u8 dir;
	__u8 set;
	__u32 addr[4];
};

/*
 * dst_lpm_map value: every (dst len, src len) pair of rule keys whose dst
 * prefix contains this node's prefix, most specific first.  A lookup with
 * the packet's dst address returns the longest stored prefix containing it,
 * whose list is then exactly the keys that can match the packet.
 */
struct zfw_lpm_val {
	__u16 npairs;
	__u8 dst_len[ZFW_MAX_PAIRS];
	__u8 src_len[ZFW_MAX_PAIRS];
};

/* matched_map: decision cache. */
struct zfw_match_key {
	__u32 dst[4];
	__u32 src[4];
	__u32 ifindex;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 dir;
	__u8 pad[3];
};

struct zfw_match_val {
	__u32 gen;         /* zfw_config.policy_gen at the time of the decision */
	__u32 stat;        /* the rule's zfw_range.stat (0: none, or no match), so that a
			    * cached decision counts on its rule too */
	__u16 tproxy_port;
	__u8 action;       /* enum zfw_action */
	__u8 pad;
};

/*
 * matched_map value: a direct-mapped, per-CPU decision cache.  The slot is
 * a hash of the key; the key is stored to tell a hit from a collision.
 * Writing a slot is a plain store (no allocation, no lock), and per-CPU
 * slots cannot be torn by another CPU's write.  An empty slot has family 0.
 */
struct zfw_match_slot {
	struct zfw_match_key key;
	struct zfw_match_val val;
};

/*
 * Masquerade.  masquerade_map (TCP/UDP) and icmp_masquerade_map (ICMP echo)
 * map the outside view of a translated flow -- remote peer, remote port
 * (0 for echo), allocated port / echo id, outside interface -- to the inside
 * source.  masquerade_reverse_map maps the inside flow as it leaves
 * (zfw_flow_key: inside src, remote dst, ifindex = outside interface) to
 * the translation.  Both entries are created together on the flow's first
 * packet and removed together.  IPv6 (static PAT): nport = the inside port.
 */
struct zfw_nat_key {
	__u32 raddr[4];  /* remote peer */
	__u16 rport;     /* remote port, 0 for ICMP echo */
	__u16 nport;     /* allocated source port (or echo id) */
	__u32 ifindex;   /* outside interface */
	__u8 family;
	__u8 proto;
	__u8 pad[2];
};

/* Bits of zfw_nat_val.fin / zfw_nat_rev.fin (TCP close bookkeeping). */
enum zfw_nat_fin {
	ZFW_NAT_FIN_INSIDE = 1,    /* the inside host sent FIN */
	ZFW_NAT_FIN_OUTSIDE = 2,   /* the remote peer sent FIN */
	ZFW_NAT_FIN_LAST_OUT = 4,  /* the latest FIN came from outside */
};

struct zfw_nat_val {
	__u32 addr[4];   /* original inside source address */
	__u16 port;      /* original inside source port / echo id */
	__u8 state;      /* enum zfw_tcp_state (ZFW_TCP_UDP for UDP/ICMP) */
	__u8 fin;        /* enum zfw_nat_fin bits */
	__u32 naddr4;    /* IPv4: the translated address (0 for IPv6) */
	__u64 last_ns;   /* last packet from outside (or creation) */
};

/* masquerade_reverse_map value, keyed by the inside flow (zfw_flow_key). */
struct zfw_nat_rev {
	__u32 naddr[4];  /* translated source address */
	__u16 nport;
	__u8 state;      /* copy of the TCP state as of the latest FIN */
	__u8 fin;        /* enum zfw_nat_fin bits, kept in step with zfw_nat_val */
	__u32 synack_seq; /* TCP: the peer's SYN-ACK sequence + 1, which the inside host's
			   * ACK must acknowledge to complete the handshake */
	__u32 syn_seq;   /* TCP: the inside host's number after its latest SYN, which the
			  * peer's SYN-ACK (and a RST before it) must acknowledge */
	__u32 pad;
	__u64 last_ns;   /* last packet from inside */
};

/*
 * masquerade_closed_map value (LRU), keyed like masquerade_map: a TCP
 * mapping that closed with FIN/final ACK, whose peer may still hold
 * TIME_WAIT for the translated 4-tuple.  The port chooser gives the port to
 * another inside host for that destination only once ZFW_NAT_TIME_WAIT_S
 * passed (the same inside host and port may take it back at once: its
 * timestamps continue).
 */
struct zfw_nat_closed {
	__u32 addr[4];   /* the inside host that used the port */
	__u16 port;      /* its inside port */
	__u16 pad;
	__u32 pad2;
	__u64 closed_ns; /* when the mapping closed */
};

/* tun_map value, keyed by the client's flow as seen on ingress. */
struct zfw_tun_state {
	__u64 last_ns;
	__u32 ifindex;      /* interface the client came in on */
	__u8 client_mac[6];
	__u8 our_mac[6];
};

/*
 * tun_cache_map value (per-CPU, direct-mapped; see tuncache.h): where the
 * replies of a client flow go.  Plain IPv4 replies are matched on `wire`,
 * the words they carry, in a slot chosen by a hash of those words; other
 * replies on `key`, in a slot chosen by its hash.
 */
struct zfw_tun_cache {
	struct zfw_flow_key key; /* tun_map key (the client's flow, ifindex 0) */
	__u32 ifindex;           /* interface the client came in on */
	__u64 jiffies;           /* bpf_jiffies64() when filled; made stale
				  * when the tun_map entry is rewritten */
	__u64 pkts;              /* redirected from this slot, not yet in
				  * counters_map */
	__u32 wire[4];           /* reply's saddr, daddr, port word (network
				  * order) and protocol; all 0: match on key */
	__u8 eth[14];            /* header pushed onto replies: client MAC,
				  * our MAC, EtherType */
	__u8 valid;
	__u8 pad;
};

/* ifindex_tun_map value (key 0): the registered tun interface. */
struct zfw_tun_iface {
	__u32 ifindex;
	__u32 pad;
	char name[ZFW_IFNAME_LEN];
};

/* ddos_saddr_map key. */
struct zfw_addr_key {
	__u32 addr[4];
	__u8 family;
	__u8 pad[3];
};

/* syn_bucket_map value: per-source SYN token bucket. */
struct zfw_bucket {
	__u64 last_ns;
	__u64 tokens_milli;
};

/* modbus_state_map key: a request seen on egress. */
struct zfw_modbus_key {
	struct zfw_flow_key flow; /* request direction */
	__u16 tid;
	__u8 unit;
	__u8 pad;
	__u32 pad2;
};

struct zfw_modbus_val {
	__u64 ts_ns;
	__u8 fcode;
	__u8 pad[7];
};

/* frag_map: verdict of a first fragment, for the fragments that follow. */
struct zfw_frag_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 id;
	__u32 ifindex;
	__u8 family;
	__u8 proto;
	__u8 pad[2];
};

/* rb_map record. */
struct zfw_event {
	__u64 ts_ns;
	__u32 ifindex;
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 dir;      /* enum zfw_dir */
	__u8 kind;     /* enum zfw_event_kind */
	__u16 reason;  /* enum zfw_reason */
	__u16 code;    /* OT function code, TCP state, ... */
	__u32 extra;
	__u32 pad;
};

#endif /* ZFW_ABI_H */
