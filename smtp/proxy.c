/* SPDX-License-Identifier: MIT */
/*
 * PROXY protocol v1/v2 codec: the encoders smtpfront uses towards its
 * backends and the strict, incremental decoder for upstream headers.
 * Pure functions over caller memory: no allocation, no I/O, no globals.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
#define PP2_TYPE_CRC32C	0x03

static const uint8_t proxy_v2_sig[PP2_SIG_LEN] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};
static const char proxy_v1_magic[] = "PROXY ";
#define PROXY_V1_MAGIC_LEN (sizeof(proxy_v1_magic) - 1)

const char *const proxy_result_names[] = {
	[PROXY_OK] = "ok",
	[PROXY_NEED_MORE] = "need more",
	[PROXY_ERR_NOT_PROXY] = "not a PROXY header",
	[PROXY_ERR_TRUNCATED] = "truncated",
	[PROXY_ERR_BAD_ADDRESS] = "bad address",
	[PROXY_ERR_BAD_CRC] = "bad CRC32C",
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

/* CRC32C (Castagnoli, reflected), four bits at a time. */
static uint32_t
proxy_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	static const uint32_t tab[16] = {
		0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1,
		0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
		0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
		0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
	};

	crc = ~crc;
	while (n-- > 0) {
		crc ^= *p++;
		crc = (crc >> 4) ^ tab[crc & 0x0f];
		crc = (crc >> 4) ^ tab[crc & 0x0f];
	}
	return ~crc;
}

/* Set an unmapped sockaddr from raw v2 address bytes. */
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

/*
 * Walk the TLVs in hdr[off..total): every one must fit exactly. A CRC32C
 * TLV is checked over the whole header with its value zeroed.
 */
static enum proxy_result
proxy_v2_check_tlvs(const uint8_t *hdr, size_t off, size_t total)
{
	size_t crc_off = 0;
	bool have_crc = false;

	while (off < total) {
		size_t vlen;

		if (total - off < 3)
			return PROXY_ERR_MALFORMED;
		vlen = ((size_t)hdr[off + 1] << 8) | hdr[off + 2];
		if (vlen > total - off - 3)
			return PROXY_ERR_MALFORMED;
		if (hdr[off] == PP2_TYPE_CRC32C) {
			if (vlen != 4 || have_crc)
				return PROXY_ERR_MALFORMED;
			have_crc = true;
			crc_off = off + 3;
		}
		off += 3 + vlen;
	}
	if (have_crc) {
		static const uint8_t zero[4];
		uint32_t want, got;

		want = ((uint32_t)hdr[crc_off] << 24) |
		    ((uint32_t)hdr[crc_off + 1] << 16) |
		    ((uint32_t)hdr[crc_off + 2] << 8) | hdr[crc_off + 3];
		got = proxy_crc32c(0, hdr, crc_off);
		got = proxy_crc32c(got, zero, 4);
		got = proxy_crc32c(got, hdr + crc_off + 4,
		    total - crc_off - 4);
		if (got != want)
			return PROXY_ERR_BAD_CRC;
	}
	return PROXY_OK;
}

/* Size of the address block for a v2 family byte, or -1 when unknown. */
static int
proxy_v2_addr_len(uint8_t fam)
{
	switch (fam) {
	case 0x00:		/* UNSPEC */
		return 0;
	case 0x11: case 0x12:	/* INET stream, dgram */
		return PP2_LEN_INET;
	case 0x21: case 0x22:	/* INET6 stream, dgram */
		return PP2_LEN_INET6;
	case 0x31: case 0x32:	/* UNIX stream, dgram */
		return PP2_LEN_UNIX;
	default:
		return -1;
	}
}

static enum proxy_result
proxy_decode_v2(const uint8_t *buf, size_t len, struct proxy_info *info)
{
	uint8_t cmd, fam;
	size_t plen, total;
	int alen;
	enum proxy_result r;

	if (len < PP2_HDR_LEN)
		return PROXY_NEED_MORE;
	if ((buf[12] & 0xf0) != PP2_VERSION)
		return PROXY_ERR_MALFORMED;
	cmd = buf[12] & 0x0f;
	if (cmd != PP2_CMD_LOCAL && cmd != PP2_CMD_PROXY)
		return PROXY_ERR_MALFORMED;
	fam = buf[13];
	plen = ((size_t)buf[14] << 8) | buf[15];
	total = PP2_HDR_LEN + plen;
	if (total > PROXY_HEADER_MAX)
		return PROXY_ERR_MALFORMED;
	alen = proxy_v2_addr_len(fam);
	/*
	 * LOCAL means "discard the address block, family included", so only a
	 * PROXY command is held to its family; known ones still get their
	 * TLVs checked.
	 */
	if (cmd == PP2_CMD_PROXY && (alen < 0 || plen < (size_t)alen))
		return PROXY_ERR_MALFORMED;
	if (len < total)
		return PROXY_NEED_MORE;
	if (alen >= 0 && plen >= (size_t)alen) {
		r = proxy_v2_check_tlvs(buf, PP2_HDR_LEN + (size_t)alen, total);
		if (r != PROXY_OK)
			return r;
	}
	memset(info, 0, sizeof(*info));
	info->version = 2;
	info->header_len = total;
	info->command = PROXY_CMD_LOCAL;
	if (cmd == PP2_CMD_PROXY && fam == PP2_FAM_TCP4) {
		info->command = PROXY_CMD_PROXY;
		proxy_set_sockaddr(&info->src, AF_INET, buf + 16, buf + 24);
		proxy_set_sockaddr(&info->dst, AF_INET, buf + 20, buf + 26);
	} else if (cmd == PP2_CMD_PROXY && fam == PP2_FAM_TCP6) {
		info->command = PROXY_CMD_PROXY;
		proxy_set_sockaddr(&info->src, AF_INET6, buf + 16, buf + 48);
		proxy_set_sockaddr(&info->dst, AF_INET6, buf + 32, buf + 50);
	}
	return PROXY_OK;
}

/* Split the next space-terminated token of [*p, end). */
static bool
proxy_v1_token(const char **p, const char *end, const char **tok,
    size_t *toklen, bool last)
{
	const char *s = *p, *e = s;

	while (e < end && *e != ' ')
		e++;
	if (e == s)
		return false;
	if (last != (e == end))
		return false;
	*tok = s;
	*toklen = (size_t)(e - s);
	*p = e < end ? e + 1 : e;
	return true;
}

static bool
proxy_v1_addr(const char *tok, size_t n, int family,
    struct sockaddr_storage *ss)
{
	char tmp[INET6_ADDRSTRLEN];
	uint8_t raw[16];

	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, tok, n);
	tmp[n] = '\0';
	if (inet_pton(family, tmp, raw) != 1)
		return false;
	proxy_set_sockaddr(ss, family, raw, (const uint8_t *)"\0\0");
	return true;
}

/* Decimal 0..65535, no sign, no leading zero (Postfix rejects "0123"). */
static bool
proxy_v1_port(const char *tok, size_t n, struct sockaddr_storage *ss)
{
	unsigned long v = 0;
	uint16_t port;

	if (n == 0 || n > 5 || (n > 1 && tok[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (tok[i] < '0' || tok[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(tok[i] - '0');
	}
	if (v > 65535)
		return false;
	port = htons((uint16_t)v);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = port;
	else
		((struct sockaddr_in6 *)ss)->sin6_port = port;
	return true;
}

static enum proxy_result
proxy_decode_v1(const uint8_t *buf, size_t len, struct proxy_info *info)
{
	size_t scan = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
	size_t eol = 0;
	bool found = false;
	const char *p, *end, *tok;
	size_t toklen;
	int family;
	struct sockaddr_storage src, dst;

	/* Reject as early as a byte shows the line cannot be a header. */
	for (size_t i = PROXY_V1_MAGIC_LEN; i < scan; i++) {
		if (buf[i] == '\r') {
			if (i + 1 < len && buf[i + 1] != '\n')
				return PROXY_ERR_MALFORMED;
			if (i + 1 < scan) {
				eol = i;
				found = true;
				break;
			}
		} else if (buf[i] < 0x20 || buf[i] > 0x7e) {
			return PROXY_ERR_MALFORMED;
		}
	}
	if (!found)
		return len >= PROXY_V1_MAX ? PROXY_ERR_MALFORMED :
		    PROXY_NEED_MORE;

	p = (const char *)buf + PROXY_V1_MAGIC_LEN;
	end = (const char *)buf + eol;
	if (!proxy_v1_token(&p, end, &tok, &toklen, false)) {
		/* "PROXY UNKNOWN\r\n" has nothing after the protocol. */
		if (end - p == 7 && memcmp(p, "UNKNOWN", 7) == 0)
			goto local;
		return PROXY_ERR_MALFORMED;
	}
	if (toklen == 7 && memcmp(tok, "UNKNOWN", 7) == 0)
		goto local;
	if (toklen == 4 && memcmp(tok, "TCP4", 4) == 0)
		family = AF_INET;
	else if (toklen == 4 && memcmp(tok, "TCP6", 4) == 0)
		family = AF_INET6;
	else
		return PROXY_ERR_MALFORMED;

	if (!proxy_v1_token(&p, end, &tok, &toklen, false))
		return PROXY_ERR_MALFORMED;
	if (!proxy_v1_addr(tok, toklen, family, &src))
		return PROXY_ERR_BAD_ADDRESS;
	if (!proxy_v1_token(&p, end, &tok, &toklen, false))
		return PROXY_ERR_MALFORMED;
	if (!proxy_v1_addr(tok, toklen, family, &dst))
		return PROXY_ERR_BAD_ADDRESS;
	if (!proxy_v1_token(&p, end, &tok, &toklen, false))
		return PROXY_ERR_MALFORMED;
	if (!proxy_v1_port(tok, toklen, &src))
		return PROXY_ERR_BAD_ADDRESS;
	if (!proxy_v1_token(&p, end, &tok, &toklen, true))
		return PROXY_ERR_MALFORMED;
	if (!proxy_v1_port(tok, toklen, &dst))
		return PROXY_ERR_BAD_ADDRESS;

	memset(info, 0, sizeof(*info));
	info->version = 1;
	info->command = PROXY_CMD_PROXY;
	info->src = src;
	info->dst = dst;
	info->header_len = eol + 2;
	return PROXY_OK;
local:
	memset(info, 0, sizeof(*info));
	info->version = 1;
	info->command = PROXY_CMD_LOCAL;
	info->header_len = eol + 2;
	return PROXY_OK;
}

enum proxy_result
proxy_decode(const uint8_t *buf, size_t len, struct proxy_info *info)
{
	size_t n;

	if (len == 0)
		return PROXY_NEED_MORE;
	if (buf[0] == 'P') {
		n = len < PROXY_V1_MAGIC_LEN ? len : PROXY_V1_MAGIC_LEN;
		if (memcmp(buf, proxy_v1_magic, n) != 0)
			return PROXY_ERR_NOT_PROXY;
		if (len < PROXY_V1_MAGIC_LEN)
			return PROXY_NEED_MORE;
		return proxy_decode_v1(buf, len, info);
	}
	n = len < PP2_SIG_LEN ? len : PP2_SIG_LEN;
	if (memcmp(buf, proxy_v2_sig, n) != 0)
		return PROXY_ERR_NOT_PROXY;
	if (len < PP2_SIG_LEN)
		return PROXY_NEED_MORE;
	return proxy_decode_v2(buf, len, info);
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
	size_t o = 0, n = len < max ? len : max;

	if (outcap == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char tmp[5];
		size_t tl;
		uint8_t c = buf[i];

		if (c == '\r')
			tl = (size_t)snprintf(tmp, sizeof(tmp), "\\r");
		else if (c == '\n')
			tl = (size_t)snprintf(tmp, sizeof(tmp), "\\n");
		else if (c == '\\' || c == '"')
			tl = (size_t)snprintf(tmp, sizeof(tmp), "\\%c", c);
		else if (c >= 0x20 && c <= 0x7e)
			tl = (size_t)snprintf(tmp, sizeof(tmp), "%c", c);
		else
			tl = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", c);
		/* Never cut an escape in half. */
		if (o + tl >= outcap)
			break;
		memcpy(out + o, tmp, tl);
		o += tl;
	}
	out[o] = '\0';
}
