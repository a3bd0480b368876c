/* Maps and records shared by Tandem's XDP programs (ebpf/<name>.bpf.c) and their user-space side.
 * Plain C, included by BPF code (clang -target bpf) and by C++. Byte order of every address
 * field: network order, exactly as in the packet. */
#ifndef TANDEM_XDP_H
#define TANDEM_XDP_H

#include <linux/types.h>

/* --- steer.bpf.c: on an AF_XDP data port ------------------------------------------------
 *
 * Map names are part of the interface: tandemd finds the maps of the attached program by name.
 *   xsks_map        XSKMAP, key rx queue index -> AF_XDP socket (filled by DPDK's af_xdp PMD)
 *   steer_addrs     HASH, key __u32 IPv4 address -> struct tandem_steer_value
 *   steer_sources   HASH, key struct tandem_steer_source_key -> struct tandem_steer_source_value
 *   host_addrs      HASH, key __u32 IPv4 address -> struct tandem_steer_value (flags 0)
 *   blocklist       LPM_TRIE, key struct tandem_lpm_v4_key (source prefix) -> __u32 slot
 *   blocklist_hits  PERCPU_ARRAY[TANDEM_BLOCKLIST_MAX], slot -> struct tandem_hit_counter
 *   steer_stats     PERCPU_ARRAY[TANDEM_STEER_VERDICT_COUNT], verdict -> __u64 packets
 *
 * IPv4, in this order (first match wins):
 *   1. source in blocklist                                        -> XDP_DROP
 *   2. destination in steer_addrs                                 -> XSK (STEER_IPV4, or
 *      STEER_REPLY when the address is a fullnat local address: TANDEM_STEER_FLAG_LOCAL)
 *   3. a backend's reply (nat: backend:port -> client), STEER_REPLY  -> XSK, when all hold:
 *      - not a fragment (the fast path does not reassemble; the L4 ports are needed);
 *      - TCP or UDP, and (saddr, proto, sport) is in steer_sources, or (saddr, proto, 0) is
 *        (a backend of an all-ports service: any port of that protocol);
 *        or an ICMP error (destination unreachable, time exceeded, parameter problem) whose
 *        quoted packet went TO such a backend (inner daddr, proto, dport): the error a backend,
 *        or a router in front of it, sends back about a client's packet;
 *      - the destination is not the host's (host_addrs: every address and broadcast address
 *        the unit's kernel holds, on any interface), not multicast, not 255.255.255.255.
 *      So a backend's other traffic stays the kernel's: ssh or ping to the unit's kernel
 *      address, the replies to the unit's own health checks of backend:port (to a kernel
 *      address), anything from another port. What is steered without being a reply of a
 *      tandemd connection: traffic from a backend's service port to a non-local address that
 *      did not come through the VIP (e.g. somebody reaching backend:port directly, routed by the
 *      unit's kernel): tandemd drops it.
 *   4. anything else                                              -> XDP_PASS (PASS_IPV4)
 */
#define TANDEM_STEER_MAX_ADDRS 4096
#define TANDEM_STEER_MAX_SOURCES 65536
#define TANDEM_HOST_ADDRS_MAX 4096
#define TANDEM_BLOCKLIST_MAX 4096

/* steer_addrs value flags */
#define TANDEM_STEER_FLAG_LOCAL 0x1u /* a fullnat local address: backends' replies come to it */

struct tandem_steer_value {
	__u32 flags; /* TANDEM_STEER_FLAG_*; other bits reserved (0) */
};

/* A backend's (address, protocol, port) whose traffic is a reply of a load-balanced flow. 8
 * bytes, no implicit padding: user space and BPF hash the same bytes. */
struct tandem_steer_source_key {
	__u32 addr;  /* backend IPv4 address, network order */
	__u16 port;  /* backend port, network order; 0: every port (backend of an all-ports service) */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;    /* 0 */
};

struct tandem_steer_source_value {
	/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of a recent match, refreshed at most once a second
	 * (TANDEM_STEER_SEEN_GRANULARITY_NS). tandemd keeps a source that left the configuration
	 * steered while its established connections may still send (until it has been idle longer
	 * than the longest conntrack timeout), and sets it to "now" when the source leaves. */
	__u64 last_seen_ns;
};
#define TANDEM_STEER_SEEN_GRANULARITY_NS 1000000000ull

struct tandem_lpm_v4_key {
	__u32 prefixlen; /* 0..32 */
	__u32 addr;      /* network order; bits beyond prefixlen are zero */
};

struct tandem_hit_counter {
	__u64 packets;
	__u64 bytes;
};

enum tandem_steer_verdict {
	TANDEM_STEER_IPV4 = 0,   /* IPv4 to a fast-path address: redirected to the queue's XSK */
	TANDEM_STEER_ARP,        /* ARP whose target is a fast-path address: redirected */
	TANDEM_PASS_IPV4,        /* IPv4 to any other address (the kernel's): XDP_PASS */
	TANDEM_PASS_ARP,         /* ARP for any other address: XDP_PASS */
	TANDEM_PASS_OTHER,       /* other EtherTypes (IPv6, LLDP, VLAN-tagged, ...): XDP_PASS */
	TANDEM_PASS_MALFORMED,   /* truncated or malformed Ethernet/ARP/IPv4: XDP_PASS untouched,
	                          * the kernel validates and counts it as it always does */
	TANDEM_DROP_BLOCKED,     /* IPv4 source inside a blocklist prefix: XDP_DROP */
	TANDEM_STEER_REPLY,      /* IPv4 from a backend's service port (nat) or to a fullnat local
	                          * address: a backend's reply, redirected (rules 2 and 3 above) */
	TANDEM_STEER_VERDICT_COUNT
};

/* --- decap.bpf.c: on a backend host, for tunnel-mode services ----------------------------
 *   decap_vips    HASH, key __u32 VIP -> __u32 (0)
 *   decap_stats   PERCPU_ARRAY[TANDEM_DECAP_VERDICT_COUNT], verdict -> __u64 packets
 */
#define TANDEM_DECAP_MAX_VIPS 4096

enum tandem_decap_verdict {
	TANDEM_DECAP_DONE = 0,        /* IPv4-in-IPv4 to a configured VIP: outer header removed */
	TANDEM_DECAP_PASS_NOT_IPIP,   /* anything that is not IPv4 protocol 4: XDP_PASS */
	TANDEM_DECAP_PASS_NOT_VIP,    /* IPIP whose inner destination is not a VIP: XDP_PASS */
	TANDEM_DECAP_PASS_MALFORMED,  /* truncated/malformed outer or inner header, or an outer
	                               * fragment: XDP_PASS untouched */
	TANDEM_DECAP_DROP_ERROR,      /* bpf_xdp_adjust_head failed: XDP_DROP */
	TANDEM_DECAP_VERDICT_COUNT
};

#endif /* TANDEM_XDP_H */
