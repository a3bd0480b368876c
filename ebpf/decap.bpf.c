// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* tandem_decap: XDP program for backend hosts of tunnel-mode services.
 *
 * Tandem sends a tunnel-mode flow to its backend as IPv4-in-IPv4 (protocol 4): outer source =
 * the unit, outer destination = the backend, inner packet = the client's packet to the VIP,
 * unchanged. On the backend, this program strips the outer header of such packets whose inner
 * destination is a configured VIP (decap_vips) and passes the inner packet to the kernel's
 * stack, which answers the client directly (direct server return) from the VIP configured on
 * a local interface (e.g. lo). No ipip module needed.
 *
 *   Ethernet | outer IPv4 (+ options) | inner IPv4 ...   ->   Ethernet | inner IPv4 ...
 *
 * The MAC addresses are kept, the EtherType stays IPv4. Exactly one verdict of enum
 * tandem_decap_verdict is counted in decap_stats per frame. Everything that is not a valid,
 * unfragmented IPIP packet to a VIP is passed untouched. Checksums are not verified here: the
 * outer header is discarded, and the kernel verifies the inner one as for any packet. */
#include "ebpf/bpf_parse.h"
#include "ebpf/tandem_xdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, TANDEM_DECAP_MAX_VIPS);
} decap_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, TANDEM_DECAP_VERDICT_COUNT);
} decap_stats SEC(".maps");

static __always_inline int verdict(__u32 v, int action)
{
	tandem_count(&decap_stats, v);
	return action;
}

SEC("xdp")
int tandem_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = tandem_parse_eth(data, data_end);
	struct ethhdr *new_eth;
	struct iphdr *outer, *inner;
	__u32 outer_len, inner_len, tot_len;

	if (!eth)
		return verdict(TANDEM_DECAP_PASS_MALFORMED, XDP_PASS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return verdict(TANDEM_DECAP_PASS_NOT_IPIP, XDP_PASS);

	outer = (struct iphdr *)(eth + 1);
	if ((void *)(outer + 1) > data_end || outer->version != 4 || outer->ihl < 5)
		return verdict(TANDEM_DECAP_PASS_MALFORMED, XDP_PASS);
	if (outer->protocol != IPPROTO_IPIP)
		return verdict(TANDEM_DECAP_PASS_NOT_IPIP, XDP_PASS);

	/* From here on the frame claims to be IPIP: anything inconsistent is malformed. */
	outer_len = tandem_ipv4_header_len(outer, data_end);
	if (!outer_len)
		return verdict(TANDEM_DECAP_PASS_MALFORMED, XDP_PASS);
	/* An outer fragment (MF set or offset != 0) is left to the kernel's reassembly. */
	if (outer->frag_off & bpf_htons(TANDEM_IP_MF | TANDEM_IP_OFFMASK))
		return verdict(TANDEM_DECAP_PASS_MALFORMED, XDP_PASS);

	inner = (struct iphdr *)((void *)outer + outer_len);
	inner_len = tandem_ipv4_header_len(inner, data_end);
	if (!inner_len)
		return verdict(TANDEM_DECAP_PASS_MALFORMED, XDP_PASS);

	/* The outer total length covers both headers and does not claim more than the frame
	 * holds (the frame may be longer: Ethernet padding). */
	tot_len = bpf_ntohs(outer->tot_len);
	if (tot_len < outer_len + inner_len ||
	    (void *)outer + tot_len > data_end)
		return verdict(TANDEM_DECAP_PASS_MALFORMED, XDP_PASS);

	if (!bpf_map_lookup_elem(&decap_vips, &inner->daddr))
		return verdict(TANDEM_DECAP_PASS_NOT_VIP, XDP_PASS);

	/* Rewrite the Ethernet header just in front of the inner header, then move the start of
	 * the frame there. outer_len >= 20 > ETH_HLEN, so the two headers do not overlap. */
	new_eth = (struct ethhdr *)((void *)inner - sizeof(struct ethhdr));
	if ((void *)(new_eth + 1) > data_end)
		return verdict(TANDEM_DECAP_PASS_MALFORMED, XDP_PASS); /* cannot happen: verifier */
	__builtin_memcpy(new_eth->h_dest, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(new_eth->h_source, eth->h_source, ETH_ALEN);
	new_eth->h_proto = bpf_htons(ETH_P_IP);

	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return verdict(TANDEM_DECAP_DROP_ERROR, XDP_DROP);
	return verdict(TANDEM_DECAP_DONE, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
