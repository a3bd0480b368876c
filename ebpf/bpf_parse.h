/* Parsing helpers shared by Tandem's XDP programs (steer.bpf.c, decap.bpf.c). BPF-side only.
 *
 * Every helper takes the frame's end pointer and bounds-checks before it reads, in the form the
 * verifier accepts (pointer + constant or bounded offset compared against data_end). Nothing
 * here validates checksums: the programs only decide where a frame goes, and the receiver (the
 * kernel, or tandemd's fast path) validates what it receives. */
#ifndef TANDEM_BPF_PARSE_H
#define TANDEM_BPF_PARSE_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TANDEM_ARP_HTYPE_ETHER 1
#define TANDEM_IP_MF 0x2000     /* more fragments */
#define TANDEM_IP_OFFMASK 0x1fff

/* ICMP error types that quote the offending packet (RFC 792). <linux/icmp.h> is not used: it
 * drags in glibc's headers, which do not build for -target bpf. */
#define TANDEM_ICMP_DEST_UNREACH 3
#define TANDEM_ICMP_TIME_EXCEEDED 11
#define TANDEM_ICMP_PARAMETER_PROBLEM 12

/* The 8 bytes every ICMP message starts with; errors continue with the quoted IPv4 header. */
struct tandem_icmp_hdr {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 rest; /* unused, or pointer / next-hop MTU, by type */
};

/* Ethernet/IPv4 ARP (RFC 826 with htype 1, ptype 0x0800): 28 bytes. The addresses are byte
 * arrays because spa and tpa are not 4-byte aligned in the frame. */
struct tandem_arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
};

/* Counts one event in a per-CPU array of __u64 (one slot per verdict). */
static __always_inline void tandem_count(void *stats_map, __u32 verdict)
{
	__u64 *n = bpf_map_lookup_elem(stats_map, &verdict);

	if (n)
		*n += 1; /* per-CPU slot: no other writer */
}

/* The Ethernet header, or NULL when the frame is shorter than 14 bytes. */
static __always_inline struct ethhdr *tandem_parse_eth(void *data, void *data_end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return NULL;
	return eth;
}

/* A minimally valid IPv4 header at ip: the fixed 20 bytes are in the frame, version 4,
 * ihl >= 5 and the ihl*4 bytes of header (options included) are in the frame. Returns the
 * header length in bytes (20..60), or 0 when the header is not valid. */
static __always_inline __u32 tandem_ipv4_header_len(struct iphdr *ip, void *data_end)
{
	__u32 hlen;

	if ((void *)(ip + 1) > data_end)
		return 0;
	if (ip->version != 4 || ip->ihl < 5)
		return 0;
	hlen = (__u32)ip->ihl * 4;
	if ((void *)ip + hlen > data_end)
		return 0;
	return hlen;
}

/* The Ethernet/IPv4 ARP body at p, or NULL when it is truncated or not Ethernet/IPv4 ARP. */
static __always_inline struct tandem_arp_eth_ipv4 *tandem_parse_arp(void *p, void *data_end)
{
	struct tandem_arp_eth_ipv4 *arp = p;

	if ((void *)(arp + 1) > data_end)
		return NULL;
	if (arp->htype != bpf_htons(TANDEM_ARP_HTYPE_ETHER) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4)
		return NULL;
	return arp;
}

#endif /* TANDEM_BPF_PARSE_H */
