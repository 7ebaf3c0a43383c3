/* SPDX-License-Identifier: MIT */
/*
 * PROXY protocol v1/v2 codec: the encoders smtpfront uses towards its
 * backends and the strict, incremental decoder for upstream headers
 * (accept_proxy), which reads v1 lines, v2 addresses and TLVs and checks
 * a CRC32C when one is sent.
 * Pure functions over caller memory: no allocation, no I/O, no globals.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "smtp/crc32c.h"
#include "smtp/proxy.h"

#define PP2_SIG_LEN	12
#define PP2_HDR_LEN	16
#define PP2_VERSION	0x20
#define PP2_CMD_LOCAL	0x00
#define PP2_CMD_PROXY	0x01
#define PP2_FAM_TCP4	0x11
#define PP2_FAM_TCP6	0x21
#define PP2_LEN_INET	12
#define PP2_LEN_INET6	36
#define PP2_LEN_UNIX	216
#define PP2_UNIX_PATH	108
#define PP2_TLV_HDR	3
#define PP2_TYPE_CRC32C	0x03
#define PP2_TYPE_SSL	0x20
#define PP2_SSL_HDR	5	/* client (1) and verify (4) before sub-TLVs */

static const uint8_t proxy_v2_sig[PP2_SIG_LEN] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};
static const char proxy_v1_magic[] = "PROXY ";
#define PROXY_V1_MAGIC_LEN (sizeof(proxy_v1_magic) - 1)

const char *const proxy_result_names[PROXY_RESULT_COUNT] = {
	[PROXY_OK] = "ok",
	[PROXY_NEED_MORE] = "need more",
	[PROXY_ERR_NOT_PROXY] = "not a PROXY header",
	[PROXY_ERR_TRUNCATED] = "truncated",
	[PROXY_ERR_BAD_ADDRESS] = "bad address",
	[PROXY_ERR_BAD_CRC] = "bad CRC32C",
	[PROXY_ERR_TOO_LONG] = "too long",
	[PROXY_ERR_MALFORMED] = "malformed header",
};

/* Not IN6_IS_ADDR_V4MAPPED: header bytes need not be aligned. */
static bool
proxy_is_v4mapped(const uint8_t *a)
{
	static const uint8_t prefix[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
	};

	return memcmp(a, prefix, sizeof(prefix)) == 0;
}

/* An endpoint reduced to what a header carries, after unmapping. */
struct proxy_ep {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];	/* 4 bytes used for AF_INET */
	uint16_t port;		/* network byte order */
};

static int
proxy_get_ep(const struct sockaddr *sa, struct proxy_ep *ep)
{
	if (sa == NULL)
		return -1;
	memset(ep, 0, sizeof(*ep));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		ep->family = AF_INET;
		memcpy(ep->addr, &sin->sin_addr, 4);
		ep->port = sin->sin_port;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		ep->port = sin6->sin6_port;
		if (proxy_is_v4mapped(sin6->sin6_addr.s6_addr)) {
			ep->family = AF_INET;
			memcpy(ep->addr, &sin6->sin6_addr.s6_addr[12], 4);
		} else {
			ep->family = AF_INET6;
			memcpy(ep->addr, &sin6->sin6_addr, 16);
		}
		return 0;
	}
	return -1;
}

/* A mixed pair is promoted to IPv6: the IPv4 side becomes ::ffff:a.b.c.d. */
static void
proxy_promote_ep(struct proxy_ep *ep)
{
	uint8_t v4[4];

	if (ep->family != AF_INET)
		return;
	memcpy(v4, ep->addr, 4);
	memset(ep->addr, 0, 10);
	ep->addr[10] = 0xff;
	ep->addr[11] = 0xff;
	memcpy(&ep->addr[12], v4, 4);
	ep->family = AF_INET6;
}

static int
proxy_get_pair(const struct sockaddr *src, const struct sockaddr *dst,
    struct proxy_ep *s, struct proxy_ep *d)
{
	if (proxy_get_ep(src, s) == -1 || proxy_get_ep(dst, d) == -1)
		return -1;
	if (s->family != d->family) {
		proxy_promote_ep(s);
		proxy_promote_ep(d);
	}
	return 0;
}

int
proxy_v1_encode(char *buf, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst)
{
	struct proxy_ep s, d;
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
	char line[PROXY_V1_MAX + 1];
	int n;

	if (proxy_get_pair(src, dst, &s, &d) == -1)
		return -1;
	if (inet_ntop(s.family, s.addr, sa, sizeof(sa)) == NULL ||
	    inet_ntop(d.family, d.addr, da, sizeof(da)) == NULL)
		return -1;
	n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
	    s.family == AF_INET ? "TCP4" : "TCP6", sa, da,
	    (unsigned)ntohs(s.port), (unsigned)ntohs(d.port));
	if (n < 0 || (size_t)n >= sizeof(line) || (size_t)n > cap)
		return -1;
	memcpy(buf, line, (size_t)n);
	/* A NUL only when it fits: callers send exactly n bytes. */
	if ((size_t)n < cap)
		buf[n] = '\0';
	return n;
}

static void
proxy_v2_put_header(uint8_t *buf, uint8_t ver_cmd, uint8_t fam, uint16_t len)
{
	memcpy(buf, proxy_v2_sig, PP2_SIG_LEN);
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = (uint8_t)(len >> 8);
	buf[15] = (uint8_t)(len & 0xff);
}

int
proxy_v2_encode(uint8_t *buf, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst)
{
	struct proxy_ep s, d;
	size_t alen, total;
	uint8_t *p;

	if (proxy_get_pair(src, dst, &s, &d) == -1)
		return -1;
	alen = s.family == AF_INET ? 4 : 16;
	total = PP2_HDR_LEN + 2 * alen + 4;
	if (cap < total)
		return -1;
	proxy_v2_put_header(buf, PP2_VERSION | PP2_CMD_PROXY,
	    s.family == AF_INET ? PP2_FAM_TCP4 : PP2_FAM_TCP6,
	    (uint16_t)(total - PP2_HDR_LEN));
	p = buf + PP2_HDR_LEN;
	memcpy(p, s.addr, alen);
	p += alen;
	memcpy(p, d.addr, alen);
	p += alen;
	/* Ports are already in network order. */
	memcpy(p, &s.port, 2);
	memcpy(p + 2, &d.port, 2);
	return (int)total;
}

int
proxy_v2_encode_local(uint8_t *buf, size_t cap)
{
	if (cap < PP2_HDR_LEN)
		return -1;
	proxy_v2_put_header(buf, PP2_VERSION | PP2_CMD_LOCAL, 0x00, 0);
	return PP2_HDR_LEN;
}

/* ---- decoder ---------------------------------------------------------- */

static enum proxy_result
proxy_fail(struct proxy_info *info, enum proxy_result r, const char *why)
{
	info->why = why;
	return r;
}

static size_t
proxy_get16(const uint8_t *p)
{
	return ((size_t)p[0] << 8) | p[1];
}

/* Set a sockaddr from raw address bytes; an IPv4-mapped IPv6 is unmapped. */
static void
proxy_set_sockaddr(struct sockaddr_storage *ss, int family,
    const uint8_t *addr, const uint8_t *port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6 && proxy_is_v4mapped(addr)) {
		addr += 12;
		family = AF_INET;
	}
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		memcpy(&sin->sin_port, port, 2);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		memcpy(&sin6->sin6_port, port, 2);
	}
}

_Static_assert(sizeof(((struct sockaddr_un *)0)->sun_path) >= PP2_UNIX_PATH,
    "a v2 AF_UNIX path fits sun_path");

static void
proxy_set_unix(struct sockaddr_storage *ss, const uint8_t *path)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;

	memset(ss, 0, sizeof(*ss));
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, PP2_UNIX_PATH);
}

/* The seven family/transport bytes v2 defines; any other is invalid. */
struct proxy_v2_family {
	uint8_t byte;
	int family;
	int socktype;
	size_t addr_len;
};

static const struct proxy_v2_family proxy_v2_families[] = {
	{ 0x00, AF_UNSPEC, 0, 0 },
	{ 0x11, AF_INET, SOCK_STREAM, PP2_LEN_INET },
	{ 0x12, AF_INET, SOCK_DGRAM, PP2_LEN_INET },
	{ 0x21, AF_INET6, SOCK_STREAM, PP2_LEN_INET6 },
	{ 0x22, AF_INET6, SOCK_DGRAM, PP2_LEN_INET6 },
	{ 0x31, AF_UNIX, SOCK_STREAM, PP2_LEN_UNIX },
	{ 0x32, AF_UNIX, SOCK_DGRAM, PP2_LEN_UNIX },
};

/*
 * Check that the TLVs in hdr[off..end) tile it exactly. At the top level a
 * CRC32C TLV's value offset goes to *crc_off (one at most) and an SSL TLV's
 * sub-TLVs are checked the same way inside its value; every other type
 * (NOOP, ALPN, vendor 0xE0-0xEF such as AWS's 0xEA) is skipped unread.
 */
static enum proxy_result
proxy_v2_walk_tlvs(const uint8_t *hdr, size_t off, size_t end, bool top,
    size_t *crc_off, struct proxy_info *info)
{
	while (off < end) {
		uint8_t type;
		size_t vlen;
		enum proxy_result r;

		if (end - off < PP2_TLV_HDR)
			return proxy_fail(info, PROXY_ERR_MALFORMED, top ?
			    "v2: TLV header cut off by the end of the header" :
			    "v2: SSL sub-TLV header cut off by the end of "
			    "its TLV");
		type = hdr[off];
		vlen = proxy_get16(hdr + off + 1);
		if (vlen > end - off - PP2_TLV_HDR)
			return proxy_fail(info, PROXY_ERR_MALFORMED, top ?
			    "v2: TLV runs past the end of the header" :
			    "v2: SSL sub-TLV runs past the end of its TLV");
		if (top && type == PP2_TYPE_CRC32C) {
			if (vlen != 4)
				return proxy_fail(info, PROXY_ERR_MALFORMED,
				    "v2: CRC32C TLV is not 4 bytes long");
			if (*crc_off != 0)
				return proxy_fail(info, PROXY_ERR_MALFORMED,
				    "v2: more than one CRC32C TLV");
			*crc_off = off + PP2_TLV_HDR;
		} else if (top && type == PP2_TYPE_SSL) {
			if (vlen < PP2_SSL_HDR)
				return proxy_fail(info, PROXY_ERR_MALFORMED,
				    "v2: SSL TLV shorter than 5 bytes");
			r = proxy_v2_walk_tlvs(hdr,
			    off + PP2_TLV_HDR + PP2_SSL_HDR,
			    off + PP2_TLV_HDR + vlen, false, crc_off, info);
			if (r != PROXY_OK)
				return r;
		}
		off += PP2_TLV_HDR + vlen;
	}
	return PROXY_OK;
}

/* CRC32C over the whole header with the CRC value read as zero. */
static bool
proxy_v2_crc_ok(const uint8_t *hdr, size_t total, size_t crc_off)
{
	static const uint8_t zero[4];
	uint32_t want, got;

	want = ((uint32_t)hdr[crc_off] << 24) |
	    ((uint32_t)hdr[crc_off + 1] << 16) |
	    ((uint32_t)hdr[crc_off + 2] << 8) | hdr[crc_off + 3];
	got = crc32c_update(0, hdr, crc_off);
	got = crc32c_update(got, zero, sizeof(zero));
	got = crc32c_update(got, hdr + crc_off + 4, total - crc_off - 4);
	return got == want;
}

/*
 * Everything is decided from the first 16 bytes except the TLVs, which are
 * looked at only once the whole header (16 + len bytes) is there.
 */
static enum proxy_result
proxy_v2_decode(const uint8_t *buf, size_t len, struct proxy_info *info)
{
	const struct proxy_v2_family *fam = NULL;
	const uint8_t *a = buf + PP2_HDR_LEN;
	size_t plen, total, crc_off = 0;
	uint8_t cmd;
	enum proxy_result r;

	/* Each byte is judged as it arrives: junk is refused early. */
	if (len > 12 && (buf[12] & 0xf0) != PP2_VERSION)
		return proxy_fail(info, PROXY_ERR_MALFORMED,
		    "v2: version is not 2");
	cmd = len > 12 ? buf[12] & 0x0f : 0;
	if (cmd != PP2_CMD_LOCAL && cmd != PP2_CMD_PROXY)
		return proxy_fail(info, PROXY_ERR_MALFORMED,
		    "v2: command is neither LOCAL nor PROXY");
	for (size_t i = 0; len > 13 && i < sizeof(proxy_v2_families) /
	    sizeof(proxy_v2_families[0]); i++)
		if (proxy_v2_families[i].byte == buf[13])
			fam = &proxy_v2_families[i];
	if (len > 13 && fam == NULL)
		return proxy_fail(info, PROXY_ERR_MALFORMED,
		    "v2: undefined address family or transport");
	if (len < PP2_HDR_LEN)
		return proxy_fail(info, PROXY_NEED_MORE,
		    "v2: input ends inside the first 16 bytes");
	plen = proxy_get16(buf + 14);
	total = PP2_HDR_LEN + plen;
	if (total > PROXY_HEADER_MAX)
		return proxy_fail(info, PROXY_ERR_TOO_LONG,
		    "v2: length field makes the header longer than 536 bytes");
	/* LOCAL ignores its addresses, but TLVs still follow a whole block. */
	if (plen < fam->addr_len)
		return proxy_fail(info, PROXY_ERR_BAD_ADDRESS,
		    "v2: length is shorter than its family's address block");
	if (len < total)
		return proxy_fail(info, PROXY_NEED_MORE,
		    "v2: input ends before the length the header gives");
	r = proxy_v2_walk_tlvs(buf, PP2_HDR_LEN + fam->addr_len, total, true,
	    &crc_off, info);
	if (r != PROXY_OK)
		return r;
	if (crc_off != 0 && !proxy_v2_crc_ok(buf, total, crc_off))
		return proxy_fail(info, PROXY_ERR_BAD_CRC,
		    "v2: CRC32C does not match the header");

	info->version = 2;
	info->header_len = total;
	if (cmd == PP2_CMD_LOCAL) {
		info->command = PROXY_CMD_LOCAL;
		info->family = AF_UNSPEC;
		return PROXY_OK;
	}
	info->command = PROXY_CMD_PROXY;
	info->family = fam->family;
	info->socktype = fam->socktype;
	switch (fam->family) {
	case AF_INET:
		proxy_set_sockaddr(&info->src, AF_INET, a, a + 8);
		proxy_set_sockaddr(&info->dst, AF_INET, a + 4, a + 10);
		break;
	case AF_INET6:
		proxy_set_sockaddr(&info->src, AF_INET6, a, a + 32);
		proxy_set_sockaddr(&info->dst, AF_INET6, a + 16, a + 34);
		break;
	case AF_UNIX:
		proxy_set_unix(&info->src, a);
		proxy_set_unix(&info->dst, a + PP2_UNIX_PATH);
		break;
	default:
		break;
	}
	info->usable = fam->socktype == SOCK_STREAM &&
	    (fam->family == AF_INET || fam->family == AF_INET6);
	return PROXY_OK;
}

/* Bytes after "PROXY UNKNOWN " are the sender's business (but not CR/LF). */
static bool
proxy_v1_in_unknown(const uint8_t *buf, size_t i)
{
	static const char unknown_sp[] = "UNKNOWN ";
	size_t n = sizeof(unknown_sp) - 1;

	return i >= PROXY_V1_MAGIC_LEN + n &&
	    memcmp(buf + PROXY_V1_MAGIC_LEN, unknown_sp, n) == 0;
}

/*
 * Find the CRLF that ends a v1 line within PROXY_V1_MAX bytes. Each byte is
 * judged only by the bytes before it, so a prefix that gets an answer gets
 * the same one however many more bytes follow.
 */
static enum proxy_result
proxy_v1_find_eol(const uint8_t *buf, size_t len, size_t *eol,
    struct proxy_info *info)
{
	size_t lim = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;

	for (size_t i = PROXY_V1_MAGIC_LEN; i < lim; i++) {
		uint8_t c = buf[i];

		if (c == '\r') {
			if (i + 1 == PROXY_V1_MAX)
				break;
			if (i + 1 == len)
				return proxy_fail(info, PROXY_NEED_MORE,
				    "v1: input ends between CR and LF");
			if (buf[i + 1] != '\n')
				return proxy_fail(info, PROXY_ERR_MALFORMED,
				    "v1: CR not followed by LF");
			*eol = i;
			return PROXY_OK;
		}
		if (c == '\n')
			return proxy_fail(info, PROXY_ERR_MALFORMED,
			    "v1: LF without CR");
		if ((c < 0x20 || c > 0x7e) && !proxy_v1_in_unknown(buf, i))
			return proxy_fail(info, PROXY_ERR_MALFORMED,
			    "v1: control or non-ASCII byte in the line");
	}
	if (len >= PROXY_V1_MAX)
		return proxy_fail(info, PROXY_ERR_TOO_LONG,
		    "v1: no CRLF within 107 bytes");
	return proxy_fail(info, PROXY_NEED_MORE, "v1: input ends before CRLF");
}

/* Dotted quad, each octet 0..255 in 1-3 digits without a leading zero. */
static bool
proxy_v1_ipv4(const char *s, size_t n, uint8_t out[4])
{
	size_t i = 0;

	for (int k = 0; k < 4; k++) {
		size_t start;
		unsigned v = 0;

		if (k > 0) {
			if (i >= n || s[i] != '.')
				return false;
			i++;
		}
		start = i;
		while (i < n && i - start < 3 && s[i] >= '0' && s[i] <= '9')
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
			return false;
		out[k] = (uint8_t)v;
	}
	return i == n;
}

/* RFC 4291 text (inet_pton: no zone, no leading zeros in a dotted tail). */
static bool
proxy_v1_ipv6(const char *s, size_t n, uint8_t out[16])
{
	char tmp[INET6_ADDRSTRLEN];

	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, out) == 1;
}

/*
 * Decimal 0..65535 without sign or leading zero (Postfix rejects "0123").
 * Port 0 is taken: v2 can carry it too, and Postfix and HAProxy take it.
 */
static bool
proxy_v1_port(const char *s, size_t n, uint8_t out[2])
{
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	out[0] = (uint8_t)(v >> 8);
	out[1] = (uint8_t)v;
	return true;
}

struct proxy_v1_field {
	const char *p;
	size_t n;
};

#define PROXY_V1_FIELDS	4	/* after TCP4/TCP6: src dst sport dport */

/* Split [p, end) at single spaces into exactly PROXY_V1_FIELDS fields. */
static enum proxy_result
proxy_v1_split(const char *p, const char *end, struct proxy_v1_field *f,
    struct proxy_info *info)
{
	for (size_t k = 0;; k++) {
		const char *s = p;

		while (p < end && *p != ' ')
			p++;
		if (p == s)
			return proxy_fail(info, PROXY_ERR_MALFORMED,
			    p == end ? "v1: space before CRLF" :
			    "v1: two spaces in a row");
		if (k == PROXY_V1_FIELDS)
			return proxy_fail(info, PROXY_ERR_MALFORMED,
			    "v1: a field after the destination port");
		f[k].p = s;
		f[k].n = (size_t)(p - s);
		if (p == end) {
			if (k + 1 < PROXY_V1_FIELDS)
				return proxy_fail(info, PROXY_ERR_MALFORMED,
				    "v1: too few fields (TCP4|TCP6 src dst "
				    "sport dport)");
			return PROXY_OK;
		}
		p++;
	}
}

static enum proxy_result
proxy_v1_decode(const uint8_t *buf, size_t len, struct proxy_info *info)
{
	struct proxy_v1_field f[PROXY_V1_FIELDS];
	uint8_t sa[16], da[16], sp[2], dp[2];
	const char *p, *end, *proto;
	size_t eol = 0, plen;
	bool v6, ok;
	enum proxy_result r;

	r = proxy_v1_find_eol(buf, len, &eol, info);
	if (r != PROXY_OK)
		return r;
	p = (const char *)buf + PROXY_V1_MAGIC_LEN;
	end = (const char *)buf + eol;
	proto = p;
	while (p < end && *p != ' ')
		p++;
	plen = (size_t)(p - proto);
	info->version = 1;
	info->command = PROXY_CMD_PROXY;
	info->header_len = eol + 2;
	if (plen == 7 && memcmp(proto, "UNKNOWN", 7) == 0) {
		info->family = AF_UNSPEC;
		return PROXY_OK;
	}
	if (plen == 4 && memcmp(proto, "TCP4", 4) == 0)
		v6 = false;
	else if (plen == 4 && memcmp(proto, "TCP6", 4) == 0)
		v6 = true;
	else
		return proxy_fail(info, PROXY_ERR_MALFORMED,
		    "v1: protocol is not TCP4, TCP6 or UNKNOWN");
	if (p == end)
		return proxy_fail(info, PROXY_ERR_MALFORMED,
		    "v1: too few fields (TCP4|TCP6 src dst sport dport)");
	r = proxy_v1_split(p + 1, end, f, info);
	if (r != PROXY_OK)
		return r;

	ok = v6 ? proxy_v1_ipv6(f[0].p, f[0].n, sa) :
	    proxy_v1_ipv4(f[0].p, f[0].n, sa);
	if (!ok)
		return proxy_fail(info, PROXY_ERR_BAD_ADDRESS, v6 ?
		    "v1: TCP6 source is not an IPv6 address" :
		    "v1: TCP4 source is not an IPv4 address");
	ok = v6 ? proxy_v1_ipv6(f[1].p, f[1].n, da) :
	    proxy_v1_ipv4(f[1].p, f[1].n, da);
	if (!ok)
		return proxy_fail(info, PROXY_ERR_BAD_ADDRESS, v6 ?
		    "v1: TCP6 destination is not an IPv6 address" :
		    "v1: TCP4 destination is not an IPv4 address");
	if (!proxy_v1_port(f[2].p, f[2].n, sp))
		return proxy_fail(info, PROXY_ERR_BAD_ADDRESS,
		    "v1: source port is not 0..65535 without leading zeros");
	if (!proxy_v1_port(f[3].p, f[3].n, dp))
		return proxy_fail(info, PROXY_ERR_BAD_ADDRESS,
		    "v1: destination port is not 0..65535 without leading "
		    "zeros");

	info->family = v6 ? AF_INET6 : AF_INET;
	info->socktype = SOCK_STREAM;
	info->usable = true;
	proxy_set_sockaddr(&info->src, info->family, sa, sp);
	proxy_set_sockaddr(&info->dst, info->family, da, dp);
	return PROXY_OK;
}

enum proxy_result
proxy_decode(const uint8_t *buf, size_t len, struct proxy_info *info)
{
	enum proxy_result r;
	size_t n;

	memset(info, 0, sizeof(*info));
	if (len == 0)
		return proxy_fail(info, PROXY_NEED_MORE, "no input");
	if (buf[0] == 'P') {
		n = len < PROXY_V1_MAGIC_LEN ? len : PROXY_V1_MAGIC_LEN;
		if (memcmp(buf, proxy_v1_magic, n) != 0)
			return proxy_fail(info, PROXY_ERR_NOT_PROXY,
			    "neither \"PROXY \" nor the v2 signature");
		if (len < PROXY_V1_MAGIC_LEN)
			return proxy_fail(info, PROXY_NEED_MORE,
			    "v1: input ends inside \"PROXY \"");
		r = proxy_v1_decode(buf, len, info);
	} else {
		n = len < PP2_SIG_LEN ? len : PP2_SIG_LEN;
		if (memcmp(buf, proxy_v2_sig, n) != 0)
			return proxy_fail(info, PROXY_ERR_NOT_PROXY,
			    "neither \"PROXY \" nor the v2 signature");
		if (len < PP2_SIG_LEN)
			return proxy_fail(info, PROXY_NEED_MORE,
			    "v2: input ends inside the signature");
		r = proxy_v2_decode(buf, len, info);
	}
	if (r != PROXY_OK) {
		/* A failed header leaves nothing half-filled behind. */
		const char *why = info->why;

		memset(info, 0, sizeof(*info));
		info->why = why;
	}
	return r;
}

enum proxy_result
proxy_decode_final(const uint8_t *buf, size_t len, struct proxy_info *info)
{
	enum proxy_result r = proxy_decode(buf, len, info);

	return r == PROXY_NEED_MORE ? PROXY_ERR_TRUNCATED : r;
}

void
proxy_escape(char *out, size_t outcap, const uint8_t *buf, size_t len,
    size_t max)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, n = len < max ? len : max;

	if (outcap == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char tmp[4];
		size_t tl = 0;
		uint8_t c = buf[i];

		if (c == '\\' || c == '"') {
			tmp[tl++] = '\\';
			tmp[tl++] = (char)c;
		} else if (c >= 0x20 && c <= 0x7e) {
			tmp[tl++] = (char)c;
		} else {
			tmp[tl++] = '\\';
			tmp[tl++] = 'x';
			tmp[tl++] = hex[c >> 4];
			tmp[tl++] = hex[c & 0x0f];
		}
		/* Never cut an escape in half; keep room for the NUL. */
		if (tl >= outcap - o)
			break;
		memcpy(out + o, tmp, tl);
		o += tl;
	}
	out[o] = '\0';
}
