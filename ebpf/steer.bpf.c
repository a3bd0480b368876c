// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* tandem_steer: XDP program for AF_XDP data ports.
 *
 * DPDK's af_xdp PMD loads this object (devarg xdp_prog=<path>), attaches its first program to
 * the interface and puts the XSK of each queue it owns into xsks_map at key = queue index.
 * Per frame, exactly one verdict of enum tandem_steer_verdict is counted in steer_stats:
 *   IPv4 whose source is in the blocklist             -> XDP_DROP (blocklist_hits[slot] too)
 *   IPv4 to a fast-path address (steer_addrs)         -> the queue's XSK (tandemd)
 *   IPv4 reply of a backend (steer_sources, unless to
 *     one of the host's own addresses: host_addrs)    -> the queue's XSK
 *   Ethernet/IPv4 ARP whose target is a fast-path one -> the queue's XSK
 *   everything else (the host's own traffic, IPv6, VLAN-tagged, malformed) -> XDP_PASS,
 *   untouched, so the kernel handles it as if no program were attached.
 * When no XSK is bound on the queue, bpf_redirect_map's fallback is XDP_PASS: the kernel gets
 * the frame rather than losing it. Maps and verdicts: ebpf/tandem_xdp.h. */
#include "ebpf/bpf_parse.h"
#include "ebpf/tandem_xdp.h"

/* Queue indices the XSKMAP can hold. A queue at or beyond this index cannot get a socket; its
 * fast-path frames fall back to XDP_PASS. */
#define TANDEM_XSKS_MAX 256

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, TANDEM_XSKS_MAX);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct tandem_steer_value);
	__uint(max_entries, TANDEM_STEER_MAX_ADDRS);
} steer_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct tandem_steer_source_key);
	__type(value, struct tandem_steer_source_value);
	__uint(max_entries, TANDEM_STEER_MAX_SOURCES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} steer_sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct tandem_steer_value);
	__uint(max_entries, TANDEM_HOST_ADDRS_MAX);
} host_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct tandem_lpm_v4_key);
	__type(value, __u32);
	__uint(max_entries, TANDEM_BLOCKLIST_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct tandem_hit_counter);
	__uint(max_entries, TANDEM_BLOCKLIST_MAX);
} blocklist_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, TANDEM_STEER_VERDICT_COUNT);
} steer_stats SEC(".maps");

static __always_inline int verdict(__u32 v, int action)
{
	tandem_count(&steer_stats, v);
	return action;
}

static __always_inline int to_xsk(struct xdp_md *ctx, __u32 v)
{
	tandem_count(&steer_stats, v);
	return (int)bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

static __always_inline int is_steered(__u32 addr)
{
	return bpf_map_lookup_elem(&steer_addrs, &addr) != NULL;
}

static __always_inline int is_fragment(struct iphdr *ip)
{
	return (ip->frag_off & bpf_htons(TANDEM_IP_MF | TANDEM_IP_OFFMASK)) != 0;
}

/* The backend (address, protocol, port) a frame from the backend side is about, in `key`:
 *   TCP/UDP   its source: (saddr, proto, sport)
 *   ICMP error (unreachable, time exceeded, parameter problem) quoting a TCP/UDP packet: the
 *             quoted packet's destination (inner daddr, inner proto, inner dport), i.e. the
 *             backend the client's packet went to.
 * Returns 0 when the frame is none of these (or is cut short). */
static __always_inline int reply_key(struct iphdr *ip, __u32 hlen, void *data_end,
				     struct tandem_steer_source_key *key)
{
	void *l4 = (void *)ip + hlen;
	struct tandem_icmp_hdr *icmp;
	struct iphdr *inner;
	__be16 *ports;
	__u32 inner_hlen;

	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		ports = l4;
		if ((void *)(ports + 2) > data_end)
			return 0;
		key->addr = ip->saddr;
		key->port = ports[0];
		key->proto = ip->protocol;
		return 1;
	}
	if (ip->protocol != IPPROTO_ICMP)
		return 0;
	icmp = l4;
	if ((void *)(icmp + 1) > data_end)
		return 0;
	if (icmp->type != TANDEM_ICMP_DEST_UNREACH && icmp->type != TANDEM_ICMP_TIME_EXCEEDED &&
	    icmp->type != TANDEM_ICMP_PARAMETER_PROBLEM)
		return 0;
	inner = (struct iphdr *)(icmp + 1);
	inner_hlen = tandem_ipv4_header_len(inner, data_end);
	if (!inner_hlen || (inner->frag_off & bpf_htons(TANDEM_IP_OFFMASK)))
		return 0; /* no quoted header, or a quoted non-first fragment (no ports) */
	if (inner->protocol != IPPROTO_TCP && inner->protocol != IPPROTO_UDP)
		return 0;
	ports = (void *)inner + inner_hlen;
	if ((void *)(ports + 2) > data_end)
		return 0;
	key->addr = inner->daddr;
	key->port = ports[1];
	key->proto = inner->protocol;
	return 1;
}

/* Rule 3 of tandem_xdp.h: a backend's reply that is not for the host itself. */
static __always_inline int is_backend_reply(struct iphdr *ip, __u32 hlen, void *data_end)
{
	struct tandem_steer_source_key key = {};
	struct tandem_steer_source_value *seen;
	__u32 daddr = ip->daddr;
	__u64 now;

	if (is_fragment(ip))
		return 0;
	/* Multicast and limited broadcast are never a client's address. */
	if ((daddr & bpf_htonl(0xf0000000)) == bpf_htonl(0xe0000000) || daddr == 0xffffffff)
		return 0;
	if (!reply_key(ip, hlen, data_end, &key))
		return 0;
	seen = bpf_map_lookup_elem(&steer_sources, &key);
	if (!seen) {
		key.port = 0; /* a backend of an all-ports service */
		seen = bpf_map_lookup_elem(&steer_sources, &key);
		if (!seen)
			return 0;
	}
	if (bpf_map_lookup_elem(&host_addrs, &daddr))
		return 0; /* to the unit's kernel, e.g. a reply to its own health check */
	/* Written rarely: the value's cache line is shared by every CPU that matches it. */
	now = bpf_ktime_get_ns();
	if (now - seen->last_seen_ns > TANDEM_STEER_SEEN_GRANULARITY_NS)
		seen->last_seen_ns = now;
	return 1;
}

static __always_inline int steer_ipv4(struct xdp_md *ctx, struct iphdr *ip, void *data_end)
{
	struct tandem_lpm_v4_key key;
	struct tandem_hit_counter *hits;
	struct tandem_steer_value *dst;
	__u32 daddr;
	__u32 *slot;
	__u32 hlen = tandem_ipv4_header_len(ip, data_end);

	if (!hlen)
		return verdict(TANDEM_PASS_MALFORMED, XDP_PASS);

	key.prefixlen = 32;
	key.addr = ip->saddr;
	slot = bpf_map_lookup_elem(&blocklist, &key);
	if (slot) {
		__u32 s = *slot;

		/* An out-of-range slot is a user-space bug: still drop, count no hit. */
		if (s < TANDEM_BLOCKLIST_MAX) {
			hits = bpf_map_lookup_elem(&blocklist_hits, &s);
			if (hits) {
				hits->packets += 1;
				hits->bytes += (__u64)(ctx->data_end - ctx->data);
			}
		}
		return verdict(TANDEM_DROP_BLOCKED, XDP_DROP);
	}

	daddr = ip->daddr;
	dst = bpf_map_lookup_elem(&steer_addrs, &daddr);
	if (dst)
		return to_xsk(ctx, (dst->flags & TANDEM_STEER_FLAG_LOCAL) ? TANDEM_STEER_REPLY : TANDEM_STEER_IPV4);
	if (is_backend_reply(ip, hlen, data_end))
		return to_xsk(ctx, TANDEM_STEER_REPLY);
	return verdict(TANDEM_PASS_IPV4, XDP_PASS);
}

static __always_inline int steer_arp(struct xdp_md *ctx, void *body, void *data_end)
{
	struct tandem_arp_eth_ipv4 *arp = tandem_parse_arp(body, data_end);
	__u32 target;

	if (!arp)
		return verdict(TANDEM_PASS_MALFORMED, XDP_PASS);
	__builtin_memcpy(&target, arp->tpa, sizeof(target));
	/* A request for a fast-path address, or a reply to the fast path's own request (its target
	 * is the fast path's address): tandemd's neighbour logic needs both. */
	if (is_steered(target))
		return to_xsk(ctx, TANDEM_STEER_ARP);
	return verdict(TANDEM_PASS_ARP, XDP_PASS);
}

SEC("xdp")
int tandem_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = tandem_parse_eth(data, data_end);

	if (!eth)
		return verdict(TANDEM_PASS_MALFORMED, XDP_PASS);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return steer_ipv4(ctx, (struct iphdr *)(eth + 1), data_end);
	case bpf_htons(ETH_P_ARP):
		return steer_arp(ctx, eth + 1, data_end);
	default:
		/* IPv6, LLDP, 802.1Q/802.1ad-tagged frames, ...: the kernel's. */
		return verdict(TANDEM_PASS_OTHER, XDP_PASS);
	}
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
