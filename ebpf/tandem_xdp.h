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
 *   blocklist       LPM_TRIE, key struct tandem_lpm_v4_key (source prefix) -> __u32 slot
 *   blocklist_hits  PERCPU_ARRAY[TANDEM_BLOCKLIST_MAX], slot -> struct tandem_hit_counter
 *   steer_stats     PERCPU_ARRAY[TANDEM_STEER_VERDICT_COUNT], verdict -> __u64 packets
 */
#define TANDEM_STEER_MAX_ADDRS 4096
#define TANDEM_BLOCKLIST_MAX 4096

struct tandem_steer_value {
	__u32 flags; /* reserved (0): later per-address options, e.g. steer only some ports */
};

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
