/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for smtp/proxy.c and smtp/crc32c.c: byte-exact encoder
 * vectors; a table of decoder vectors (Postfix's haproxy_srvr_test.c cases,
 * HAProxy's and an AWS NLB's v2 headers among them), each fed whole, split
 * at every byte and byte by byte through a simulated non-blocking reader;
 * CRC32C against an independent bitwise CRC; round trips; the log escaper.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "smtp/crc32c.h"
#include "smtp/proxy.h"

/* ---- helpers ---------------------------------------------------------- */

static void
make_sa(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') == NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	}
}

/* "ip port" of a decoded sockaddr, e.g. "1.2.3.4 123" or "fc::1 80". */
static void
sa_str(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(out, cap, "%s %u", ip, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(out, cap, "[%s] %u", ip, ntohs(sin6->sin6_port));
	} else if (ss->ss_family == AF_UNIX) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)ss;

		snprintf(out, cap, "unix %.*s",
		    (int)strnlen(un->sun_path, sizeof(un->sun_path)),
		    un->sun_path);
	} else {
		snprintf(out, cap, "family %d", ss->ss_family);
	}
}

/*
 * Hex string to bytes; spaces are ignored, "00*96" is 96 bytes of 00 and
 * "CRC" four zero bytes whose offset goes to *crc_at (when not NULL).
 * Returns the length.
 */
static size_t
unhex_crc(const char *hex, uint8_t *out, size_t cap, size_t *crc_at)
{
	size_t n = 0;

	while (*hex != '\0') {
		unsigned v, rep = 1;
		int used = 0;

		if (*hex == ' ') {
			hex++;
			continue;
		}
		if (strncmp(hex, "CRC", 3) == 0) {
			ck_assert_ptr_nonnull(crc_at);
			ck_assert_uint_le(n + 4, cap);
			*crc_at = n;
			memset(out + n, 0, 4);
			n += 4;
			hex += 3;
			continue;
		}
		ck_assert_int_eq(sscanf(hex, "%2x", &v), 1);
		hex += 2;
		if (*hex == '*') {
			ck_assert_int_eq(sscanf(hex + 1, "%u%n", &rep, &used), 1);
			hex += 1 + used;
		}
		ck_assert_uint_le(n + rep, cap);
		memset(out + n, (int)v, rep);
		n += rep;
	}
	return n;
}

static size_t
unhex(const char *hex, uint8_t *out, size_t cap)
{
	return unhex_crc(hex, out, cap, NULL);
}

/* An independent CRC32C: bit by bit, no table. */
static uint32_t
crc32c_bitwise(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

#define SIG "0d0a0d0a000d0a515549540a "

/* ---- encoders --------------------------------------------------------- */

struct enc_vec {
	const char *src, *dst;
	unsigned sport, dport;
	const char *v1;		/* NULL: encoding must fail */
	const char *v2hex;
};

static const struct enc_vec enc_vecs[] = {
	{ "192.0.2.1", "198.51.100.2", 51234, 25,
	  "PROXY TCP4 192.0.2.1 198.51.100.2 51234 25\r\n",
	  SIG "21 11 000c c0000201 c6336402 c822 0019" },
	{ "2001:db8::1", "2001:db8::2", 1234, 25,
	  "PROXY TCP6 2001:db8::1 2001:db8::2 1234 25\r\n",
	  SIG "21 21 0024 20010db8000000000000000000000001"
	  " 20010db8000000000000000000000002 04d2 0019" },
	/* Both mapped: plain TCP4. */
	{ "::ffff:192.0.2.1", "::ffff:10.0.0.11", 40000, 10024,
	  "PROXY TCP4 192.0.2.1 10.0.0.11 40000 10024\r\n",
	  SIG "21 11 000c c0000201 0a00000b 9c40 2728" },
	/* One mapped, one real IPv6: TCP6, the IPv4 side mapped. */
	{ "::ffff:192.0.2.1", "2001:db8::12", 40000, 10024,
	  "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::12 40000 10024\r\n",
	  SIG "21 21 0024 00000000000000000000ffffc0000201"
	  " 20010db8000000000000000000000012 9c40 2728" },
	/* Pure IPv4 with IPv6: promoted. */
	{ "2001:db8::7", "192.0.2.25", 65535, 0,
	  "PROXY TCP6 2001:db8::7 ::ffff:192.0.2.25 65535 0\r\n",
	  SIG "21 21 0024 20010db8000000000000000000000007"
	  " 00000000000000000000ffffc0000219 ffff 0000" },
	/* The longest v1 line: exactly PROXY_V1_MAX bytes. */
	{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535, 65535,
	  "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n",
	  SIG "21 21 0024 ffffffffffffffffffffffffffffffff"
	  " fffffffffffffffffffffffffffffffe ffff ffff" },
};

START_TEST(test_v1_encode)
{
	const struct enc_vec *v = &enc_vecs[_i];
	struct sockaddr_storage s, d;
	char buf[PROXY_V1_MAX + 1];
	size_t want = strlen(v->v1);
	int n;

	make_sa(&s, v->src, v->sport);
	make_sa(&d, v->dst, v->dport);
	n = proxy_v1_encode(buf, sizeof(buf), (struct sockaddr *)&s,
	    (struct sockaddr *)&d);
	ck_assert_int_eq(n, (int)want);
	ck_assert_mem_eq(buf, v->v1, want);
	/* Exactly enough room (no NUL) works, one byte less does not. */
	ck_assert_int_eq(proxy_v1_encode(buf, want, (struct sockaddr *)&s,
	    (struct sockaddr *)&d), (int)want);
	ck_assert_mem_eq(buf, v->v1, want);
	ck_assert_int_eq(proxy_v1_encode(buf, want - 1, (struct sockaddr *)&s,
	    (struct sockaddr *)&d), -1);
}
END_TEST

/*
 * Two full-length IPv6 addresses and ports make 104 bytes; PROXY_V1_MAX is
 * the protocol's worst case, "PROXY UNKNOWN" with the same fields.
 */
START_TEST(test_v1_encode_longest)
{
	const struct enc_vec *v = &enc_vecs[5];

	ck_assert_uint_eq(strlen(v->v1), 104);
	ck_assert_uint_eq(strlen(v->v1) + strlen("UNKNOWN") - strlen("TCP6"),
	    PROXY_V1_MAX);
}
END_TEST

START_TEST(test_v2_encode)
{
	const struct enc_vec *v = &enc_vecs[_i];
	struct sockaddr_storage s, d;
	uint8_t want[64], buf[64];
	size_t wn = unhex(v->v2hex, want, sizeof(want));
	int n;

	make_sa(&s, v->src, v->sport);
	make_sa(&d, v->dst, v->dport);
	n = proxy_v2_encode(buf, sizeof(buf), (struct sockaddr *)&s,
	    (struct sockaddr *)&d);
	ck_assert_int_eq(n, (int)wn);
	ck_assert_mem_eq(buf, want, wn);
	ck_assert_int_eq(proxy_v2_encode(buf, wn, (struct sockaddr *)&s,
	    (struct sockaddr *)&d), (int)wn);
	ck_assert_int_eq(proxy_v2_encode(buf, wn - 1, (struct sockaddr *)&s,
	    (struct sockaddr *)&d), -1);
}
END_TEST

START_TEST(test_v2_encode_local)
{
	uint8_t want[16], buf[32];

	ck_assert_uint_eq(unhex(SIG "20 00 0000", want, sizeof(want)), 16);
	ck_assert_int_eq(proxy_v2_encode_local(buf, sizeof(buf)), 16);
	ck_assert_mem_eq(buf, want, 16);
	ck_assert_int_eq(proxy_v2_encode_local(buf, 16), 16);
	ck_assert_int_eq(proxy_v2_encode_local(buf, 15), -1);
}
END_TEST

START_TEST(test_encode_non_ip)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX, .sun_path = "/x" };
	struct sockaddr_storage ip;
	char buf[128];
	uint8_t bin[64];

	make_sa(&ip, "192.0.2.1", 25);
	ck_assert_int_eq(proxy_v1_encode(buf, sizeof(buf),
	    (struct sockaddr *)&un, (struct sockaddr *)&ip), -1);
	ck_assert_int_eq(proxy_v1_encode(buf, sizeof(buf),
	    (struct sockaddr *)&ip, (struct sockaddr *)&un), -1);
	ck_assert_int_eq(proxy_v2_encode(bin, sizeof(bin),
	    (struct sockaddr *)&un, (struct sockaddr *)&ip), -1);
	ck_assert_int_eq(proxy_v2_encode(bin, sizeof(bin),
	    (struct sockaddr *)&ip, (struct sockaddr *)&un), -1);
}
END_TEST

/* ---- decoder vectors -------------------------------------------------- */

enum crc_fill {
	CRC_NONE,
	CRC_GOOD,	/* "CRC" gets the reference CRC32C of the header */
	CRC_BAD,	/* ... with its last bit flipped */
};

struct dec_vec {
	const char *name;
	const char *in;		/* text, or hex when `hex` */
	bool hex;
	enum crc_fill crc;
	enum proxy_result want;	/* for the whole input */
	size_t hlen;		/* PROXY_OK: header length; 0 = all of `in` */
	int version;
	enum proxy_command cmd;
	int family, socktype;
	bool usable;
	const char *src, *dst;	/* sa_str() forms; NULL: not checked */
	const char *why;	/* errors: a substring of info.why */
};

#define TCP(n, v, t, f, s, d) { .name = n, .in = t, .hex = (v) == 2, \
	.want = PROXY_OK, .version = v, .cmd = PROXY_CMD_PROXY, .family = f, \
	.socktype = SOCK_STREAM, .usable = true, .src = s, .dst = d }
#define V1_TCP4(n, t, s, d)	TCP(n, 1, t, AF_INET, s, d)
#define V1_TCP6(n, t, s, d)	TCP(n, 1, t, AF_INET6, s, d)
#define V2_TCP4(n, h, s, d)	TCP(n, 2, h, AF_INET, s, d)
#define V2_TCP6(n, h, s, d)	TCP(n, 2, h, AF_INET6, s, d)
/* Valid, but the caller passes on the real endpoints. */
#define V1_UNKNOWN(n, t) { .name = n, .in = t, .want = PROXY_OK, \
	.version = 1, .cmd = PROXY_CMD_PROXY, .family = AF_UNSPEC }
#define V2_LOCAL(n, h) { .name = n, .in = h, .hex = true, .want = PROXY_OK, \
	.version = 2, .cmd = PROXY_CMD_LOCAL, .family = AF_UNSPEC }
#define V2_OTHER(n, h, f, t, s, d) { .name = n, .in = h, .hex = true, \
	.want = PROXY_OK, .version = 2, .cmd = PROXY_CMD_PROXY, .family = f, \
	.socktype = t, .src = s, .dst = d }
#define V1_ERR(n, t, r, w) { .name = n, .in = t, .want = r, .why = w }
#define V2_ERR(n, h, r, w) { .name = n, .in = h, .hex = true, .want = r, \
	.why = w }

#define FF39 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
#define V2_TCP4_BLOCK "c0000201 c6336402 c822 0019"
#define V2_TCP6_BLOCK "20010db8000000000000000000000001" \
	" 20010db8000000000000000000000002 04d2 0019"
/* As an AWS NLB sends: CRC32C, NOOP padding, 0xEA (VPC endpoint id). */
#define NLB_V2 SIG "21 11 0035 0a000117 0a000205 c3cb 0019" \
	" 03 0004 CRC 04 0005 0000000000" \
	" ea 0017 01 767063652d3031323334353637383961626364656630"
/* As HAProxy sends with `proxy-v2-options ssl,crc32c`: ALPN, SSL, CRC. */
#define HAPROXY_V2 SIG "21 21 0044 " V2_TCP6_BLOCK \
	" 01 0004 736d7470" \
	" 20 000f 01 00000000 21 0007 544c5376312e33" \
	" 03 0004 CRC"

static const struct dec_vec dec_vecs[] = {
	/* v1, from Postfix's haproxy_srvr_test.c (with the CRLF). */
	V1_TCP6("v1 TCP6", "PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1"
	    " 123 321\r\n", "[fc::1:2:3:4] 123", "[fc::4:3:2:1] 321"),
	V1_TCP6("v1 TCP6 upper case", "PROXY TCP6 FC:00:00:00:1:2:3:4"
	    " FC:00:00:00:4:3:2:1 123 321\r\n",
	    "[fc::1:2:3:4] 123", "[fc::4:3:2:1] 321"),
	V1_ERR("v1 TCP6 with IPv4 addresses",
	    "PROXY TCP6 1.2.3.4 4.3.2.1 123 321\r\n", PROXY_ERR_BAD_ADDRESS,
	    "TCP6 source"),
	V1_ERR("v1 TCP6 with an IPv4 destination",
	    "PROXY TCP6 fc:00:00:00:1:2:3:4 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP6 destination"),
	V1_TCP6("v1 TCP6 mapped, unmapped",
	    "PROXY TCP6 ::ffff:1.2.3.4 ::ffff:4.3.2.1 123 321\r\n",
	    "1.2.3.4 123", "4.3.2.1 321"),
	V1_TCP6("v1 TCP6 mapped, upper case",
	    "PROXY TCP6 ::FFFF:1.2.3.4 ::FFFF:4.3.2.1 123 321\r\n",
	    "1.2.3.4 123", "4.3.2.1 321"),
	V1_ERR("v1 TCP4 with mapped addresses",
	    "PROXY TCP4 ::ffff:1.2.3.4 ::ffff:4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 source"),
	V1_ERR("v1 TCP4 with a mapped destination",
	    "PROXY TCP4 1.2.3.4 ::ffff:4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 destination"),
	V1_TCP4("v1 TCP4", "PROXY TCP4 1.2.3.4 4.3.2.1 123 321\r\n",
	    "1.2.3.4 123", "4.3.2.1 321"),
	/* Postfix takes leading zeros in octets; we do not. */
	V1_ERR("v1 leading zeros in octets",
	    "PROXY TCP4 01.02.03.04 04.03.02.01 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 source"),
	V1_ERR("v1 source port 123456",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 123456 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "source port"),
	V1_ERR("v1 destination port 654321",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 123 654321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "destination port"),
	V1_ERR("v1 source port with a leading zero",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 0123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "source port"),
	V1_ERR("v1 destination port with a leading zero",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 123 0321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "destination port"),
	V1_ERR("v1 TCP6 without destination port",
	    "PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1 123\r\n",
	    PROXY_ERR_MALFORMED, "too few fields"),
	V1_ERR("v1 TCP6 without ports",
	    "PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1\r\n",
	    PROXY_ERR_MALFORMED, "too few fields"),
	V1_ERR("v1 TCP6 with one address",
	    "PROXY TCP6 fc:00:00:00:1:2:3:4\r\n", PROXY_ERR_MALFORMED,
	    "too few fields"),
	V1_ERR("v1 TCP6 alone", "PROXY TCP6\r\n", PROXY_ERR_MALFORMED,
	    "too few fields"),
	V1_ERR("v1 TCP4 without destination port",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 123\r\n", PROXY_ERR_MALFORMED,
	    "too few fields"),
	V1_ERR("v1 TCP4 alone", "PROXY TCP4\r\n", PROXY_ERR_MALFORMED,
	    "too few fields"),
	V1_ERR("v1 protocol BLAH", "PROXY BLAH\r\n", PROXY_ERR_MALFORMED,
	    "protocol"),
	V1_ERR("v1 PROXY without space", "PROXY\r\n", PROXY_ERR_NOT_PROXY,
	    "signature"),
	V1_ERR("not PROXY: BLAH", "BLAH\r\n", PROXY_ERR_NOT_PROXY, NULL),
	V1_ERR("not PROXY: LF", "\n", PROXY_ERR_NOT_PROXY, NULL),

	/* v1, ours. */
	V1_TCP4("v1 port 0 and 65535, 0.0.0.0 and broadcast",
	    "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
	    "0.0.0.0 0", "255.255.255.255 65535"),
	V1_TCP6("v1 TCP6, longest (104 bytes)",
	    "PROXY TCP6 " FF39 " " FF39 " 65535 65535\r\n",
	    "[" FF39 "] 65535", "[" FF39 "] 65535"),
	V1_TCP6("v1 TCP6, one side mapped",
	    "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::12 40000 10024\r\n",
	    "192.0.2.1 40000", "[2001:db8::12] 10024"),
	V1_UNKNOWN("v1 UNKNOWN", "PROXY UNKNOWN\r\n"),
	V1_UNKNOWN("v1 UNKNOWN with addresses, 107 bytes",
	    "PROXY UNKNOWN " FF39 " " FF39 " 65535 65535\r\n"),
	V1_UNKNOWN("v1 UNKNOWN with any bytes",
	    "PROXY UNKNOWN \x01\x7f\xff\" \\ anything\r\n"),
	V1_UNKNOWN("v1 UNKNOWN and a space", "PROXY UNKNOWN \r\n"),
	V1_ERR("v1 UNKNOWNX", "PROXY UNKNOWNX\r\n", PROXY_ERR_MALFORMED,
	    "protocol"),
	V1_ERR("v1 UNKNOWN with a byte before its space",
	    "PROXY UNKNOWN\x01 x\r\n", PROXY_ERR_MALFORMED, "control"),
	V1_ERR("v1 CR at byte 107 (108-byte line)",
	    "PROXY UNKNOWN " FF39 " " FF39 " 65535 655355\r\n",
	    PROXY_ERR_TOO_LONG, "107"),
	V1_ERR("v1 no CRLF in 107 bytes",
	    "PROXY UNKNOWN " FF39 " " FF39 " 65535 6553555",
	    PROXY_ERR_TOO_LONG, "107"),
	V1_ERR("v1 LF as byte 108",
	    "PROXY UNKNOWN " FF39 " " FF39 " 65535 6553555\n",
	    PROXY_ERR_TOO_LONG, "107"),
	V1_ERR("v1 no CRLF in 200 bytes",
	    "PROXY TCP6 " FF39 " " FF39 " " FF39 " " FF39 " 1 1\r\n",
	    PROXY_ERR_TOO_LONG, "107"),
	V1_ERR("v1 LF without CR", "PROXY TCP4 1.2.3.4 4.3.2.1 123 321\n",
	    PROXY_ERR_MALFORMED, "LF without CR"),
	V1_ERR("v1 CR then X", "PROXY TCP4 1.2.3.4 4.3.2.1 123 321\rX",
	    PROXY_ERR_MALFORMED, "CR not followed by LF"),
	V1_ERR("v1 CR CR LF", "PROXY TCP4 1.2.3.4 4.3.2.1 123 321\r\r\n",
	    PROXY_ERR_MALFORMED, "CR not followed by LF"),
	V1_ERR("v1 port 65536", "PROXY TCP4 1.2.3.4 4.3.2.1 123 65536\r\n",
	    PROXY_ERR_BAD_ADDRESS, "destination port"),
	V1_ERR("v1 port +123", "PROXY TCP4 1.2.3.4 4.3.2.1 +123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "source port"),
	V1_ERR("v1 port -1", "PROXY TCP4 1.2.3.4 4.3.2.1 -1 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "source port"),
	V1_ERR("v1 port 12a", "PROXY TCP4 1.2.3.4 4.3.2.1 12a 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "source port"),
	V1_ERR("v1 octet 256", "PROXY TCP4 1.2.3.256 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 source"),
	V1_ERR("v1 octet 0 with a leading zero",
	    "PROXY TCP4 1.2.3.4 4.3.2.00 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 destination"),
	V1_ERR("v1 three octets", "PROXY TCP4 1.2.3 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 source"),
	V1_ERR("v1 five octets", "PROXY TCP4 1.2.3.4.5 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 source"),
	V1_ERR("v1 host name", "PROXY TCP4 localhost 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 source"),
	V1_ERR("v1 TCP4 with an IPv6 address",
	    "PROXY TCP4 2001:db8::1 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP4 source"),
	V1_ERR("v1 IPv6 zone", "PROXY TCP6 fe80::1%eth0 ::1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP6 source"),
	V1_ERR("v1 mapped with a leading zero",
	    "PROXY TCP6 ::ffff:1.2.3.04 ::1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS, "TCP6 source"),
	V1_ERR("v1 double space after TCP4",
	    "PROXY TCP4  1.2.3.4 4.3.2.1 123 321\r\n", PROXY_ERR_MALFORMED,
	    "two spaces"),
	V1_ERR("v1 double space between ports",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 123  321\r\n", PROXY_ERR_MALFORMED,
	    "two spaces"),
	V1_ERR("v1 double space after PROXY",
	    "PROXY  TCP4 1.2.3.4 4.3.2.1 123 321\r\n", PROXY_ERR_MALFORMED,
	    "protocol"),
	V1_ERR("v1 space before CRLF",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 123 321 \r\n", PROXY_ERR_MALFORMED,
	    "space before CRLF"),
	V1_ERR("v1 a sixth field", "PROXY TCP4 1.2.3.4 4.3.2.1 123 321 7\r\n",
	    PROXY_ERR_MALFORMED, "after the destination port"),
	V1_ERR("v1 tcp4 in lower case",
	    "PROXY tcp4 1.2.3.4 4.3.2.1 123 321\r\n", PROXY_ERR_MALFORMED,
	    "protocol"),
	V1_ERR("v1 tab", "PROXY TCP4\t1.2.3.4 4.3.2.1 123 321\r\n",
	    PROXY_ERR_MALFORMED, "control"),
	V1_ERR("v1 nothing after PROXY", "PROXY \r\n", PROXY_ERR_MALFORMED,
	    "protocol"),
	V1_ERR("v1 UTF-8 before the CRLF arrives", "PROXY TCP4 1.2.3.4 \xc3\xa9",
	    PROXY_ERR_MALFORMED, "non-ASCII"),
	{ .name = "v1 NUL in the line", .hex = true, .want = PROXY_ERR_MALFORMED,
	  .in = "50524f5859205443503420 00 0d0a", .why = "control" },
	V1_ERR("not PROXY: lower case", "proxy TCP4 1.2.3.4 4.3.2.1 123 321\r\n",
	    PROXY_ERR_NOT_PROXY, NULL),
	V1_ERR("not PROXY: EHLO", "EHLO client.example\r\n",
	    PROXY_ERR_NOT_PROXY, NULL),
	V1_ERR("not PROXY: HTTP", "GET / HTTP/1.0\r\n", PROXY_ERR_NOT_PROXY,
	    NULL),
	V1_ERR("not PROXY: PROXX", "PROXX", PROXY_ERR_NOT_PROXY, NULL),
	V1_ERR("not PROXY: X", "X", PROXY_ERR_NOT_PROXY, NULL),
	/* Valid prefixes: read more, or truncated at EOF. */
	V1_ERR("truncated: nothing", "", PROXY_NEED_MORE, "no input"),
	V1_ERR("truncated: P", "P", PROXY_NEED_MORE, "PROXY"),
	V1_ERR("truncated: PROXY", "PROXY", PROXY_NEED_MORE, "PROXY"),
	V1_ERR("truncated: v1 before CR",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 123 321", PROXY_NEED_MORE, "CRLF"),
	V1_ERR("truncated: v1 between CR and LF",
	    "PROXY TCP4 1.2.3.4 4.3.2.1 123 321\r", PROXY_NEED_MORE,
	    "between CR and LF"),

	/* v2 */
	V2_TCP4("v2 TCP4", SIG "21 11 000c " V2_TCP4_BLOCK,
	    "192.0.2.1 51234", "198.51.100.2 25"),
	V2_TCP6("v2 TCP6", SIG "21 21 0024 " V2_TCP6_BLOCK,
	    "[2001:db8::1] 1234", "[2001:db8::2] 25"),
	V2_TCP6("v2 TCP6 mapped, unmapped", SIG "21 21 0024"
	    " 00000000000000000000ffff01020304"
	    " 00000000000000000000ffff04030201 007b 0141",
	    "1.2.3.4 123", "4.3.2.1 321"),
	V2_TCP6("v2 TCP6 one side mapped", SIG "21 21 0024"
	    " 00000000000000000000ffffc0000201"
	    " 20010db8000000000000000000000012 9c40 2728",
	    "192.0.2.1 40000", "[2001:db8::12] 10024"),
	V2_TCP4("v2 TCP4, ports 0 and 65535", SIG "21 11 000c"
	    " 00000000 ffffffff 0000 ffff", "0.0.0.0 0", "255.255.255.255 65535"),
	V2_LOCAL("v2 LOCAL (Postfix)", SIG "20 00 0000"),
	V2_LOCAL("v2 LOCAL with a TCP4 block", SIG "20 11 000c " V2_TCP4_BLOCK),
	{ .name = "v2 LOCAL with len 7, bytes after it kept", .hex = true,
	  .in = SIG "20 00 0007 04 0004 deadbeef 45484c4f20780d0a",
	  .want = PROXY_OK, .hlen = 23, .version = 2, .cmd = PROXY_CMD_LOCAL,
	  .family = AF_UNSPEC },
	{ .name = "v2 LOCAL with a good CRC32C", .hex = true, .crc = CRC_GOOD,
	  .in = SIG "20 00 0007 03 0004 CRC", .want = PROXY_OK, .version = 2,
	  .cmd = PROXY_CMD_LOCAL, .family = AF_UNSPEC },
	V2_ERR("v2 LOCAL with an undefined family", SIG "20 41 0003 000000",
	    PROXY_ERR_MALFORMED, "family"),
	V2_ERR("v2 LOCAL shorter than its TCP4 block", SIG "20 11 0002 0000",
	    PROXY_ERR_BAD_ADDRESS, "address block"),
	V2_OTHER("v2 UNSPEC", SIG "21 00 0000", AF_UNSPEC, 0, NULL, NULL),
	V2_OTHER("v2 UNSPEC with a NOOP", SIG "21 00 0005 04 0002 0000",
	    AF_UNSPEC, 0, NULL, NULL),
	V2_OTHER("v2 UDP over IPv4", SIG "21 12 000c " V2_TCP4_BLOCK,
	    AF_INET, SOCK_DGRAM, "192.0.2.1 51234", "198.51.100.2 25"),
	V2_OTHER("v2 UDP over IPv6", SIG "21 22 0024 " V2_TCP6_BLOCK,
	    AF_INET6, SOCK_DGRAM, "[2001:db8::1] 1234", "[2001:db8::2] 25"),
	V2_OTHER("v2 AF_UNIX stream", SIG "21 31 00d8"
	    " 2f72756e2f6c622e736f636b 00*96"
	    " 2f72756e2f736d747066726f6e742e736f636b 00*89",
	    AF_UNIX, SOCK_STREAM, "unix /run/lb.sock",
	    "unix /run/smtpfront.sock"),
	V2_OTHER("v2 AF_UNIX datagram, full paths", SIG "21 32 00d8"
	    " 61*108 62*108", AF_UNIX, SOCK_DGRAM, NULL, NULL),
	V2_TCP4("v2 ALPN and NOOP", SIG "21 11 0018 " V2_TCP4_BLOCK
	    " 01 0004 736d7470 04 0002 0000",
	    "192.0.2.1 51234", "198.51.100.2 25"),
	V2_TCP4("v2 empty NOOP", SIG "21 11 000f " V2_TCP4_BLOCK " 04 0000",
	    "192.0.2.1 51234", "198.51.100.2 25"),
	V2_TCP4("v2 vendor TLVs 0xe0 and 0xef", SIG "21 11 0014 " V2_TCP4_BLOCK
	    " e0 0001 00 ef 0001 ff", "192.0.2.1 51234", "198.51.100.2 25"),
	{ .name = "v2 AWS NLB: CRC32C, NOOP, 0xEA", .in = NLB_V2, .hex = true,
	  .crc = CRC_GOOD, .want = PROXY_OK, .version = 2,
	  .cmd = PROXY_CMD_PROXY, .family = AF_INET, .socktype = SOCK_STREAM,
	  .usable = true, .src = "10.0.1.23 50123", .dst = "10.0.2.5 25" },
	{ .name = "v2 AWS NLB with a wrong CRC32C", .in = NLB_V2, .hex = true,
	  .crc = CRC_BAD, .want = PROXY_ERR_BAD_CRC, .why = "CRC32C" },
	{ .name = "v2 AWS NLB with a zero CRC32C", .in = NLB_V2, .hex = true,
	  .want = PROXY_ERR_BAD_CRC, .why = "CRC32C" },
	{ .name = "v2 HAProxy: ALPN, SSL, CRC32C", .in = HAPROXY_V2,
	  .hex = true, .crc = CRC_GOOD, .want = PROXY_OK, .version = 2,
	  .cmd = PROXY_CMD_PROXY, .family = AF_INET6, .socktype = SOCK_STREAM,
	  .usable = true, .src = "[2001:db8::1] 1234",
	  .dst = "[2001:db8::2] 25" },
	{ .name = "v2 HAProxy with a wrong CRC32C", .in = HAPROXY_V2,
	  .hex = true, .crc = CRC_BAD, .want = PROXY_ERR_BAD_CRC },
	{ .name = "v2 LOCAL with a wrong CRC32C", .hex = true, .crc = CRC_BAD,
	  .in = SIG "20 00 0007 03 0004 CRC", .want = PROXY_ERR_BAD_CRC },
	/* The sub-TLV would fit in the header, not in its SSL TLV. */
	V2_ERR("v2 SSL sub-TLV past its TLV", SIG "21 11 001b " V2_TCP4_BLOCK
	    " 20 0009 01 00000000 21 0003 41 04 0000", PROXY_ERR_MALFORMED,
	    "SSL sub-TLV runs past"),
	/* Sub-TLV types are their own: 0x03 in an SSL TLV is not a CRC. */
	V2_TCP4("v2 SSL sub-TLV of type 3", SIG "21 11 001e " V2_TCP4_BLOCK
	    " 20 000f 01 00000000 03 0004 00000000 03 0000",
	    "192.0.2.1 51234", "198.51.100.2 25"),
	V2_ERR("v2 SSL sub-TLV header cut", SIG "21 11 0016 " V2_TCP4_BLOCK
	    " 20 0007 01 00000000 21 00", PROXY_ERR_MALFORMED,
	    "SSL sub-TLV header"),
	V2_ERR("v2 SSL TLV of 4 bytes", SIG "21 11 0013 " V2_TCP4_BLOCK
	    " 20 0004 01000000", PROXY_ERR_MALFORMED, "SSL TLV shorter"),
	V2_ERR("v2 version 1", SIG "11 11 000c " V2_TCP4_BLOCK,
	    PROXY_ERR_MALFORMED, "version"),
	V2_ERR("v2 version 3", SIG "31 11 000c " V2_TCP4_BLOCK,
	    PROXY_ERR_MALFORMED, "version"),
	V2_ERR("v2 command 2", SIG "22 11 000c " V2_TCP4_BLOCK,
	    PROXY_ERR_MALFORMED, "command"),
	/* Refused as soon as the byte arrives, not at byte 16. */
	V2_ERR("v2 command 15, 13 bytes", SIG "2f", PROXY_ERR_MALFORMED,
	    "command"),
	V2_ERR("v2 version 0, 13 bytes", SIG "01", PROXY_ERR_MALFORMED,
	    "version"),
	V2_ERR("v2 family 0xff, 14 bytes", SIG "21 ff", PROXY_ERR_MALFORMED,
	    "family"),
	V2_ERR("v2 family 0x41", SIG "21 41 000c " V2_TCP4_BLOCK,
	    PROXY_ERR_MALFORMED, "family"),
	V2_ERR("v2 family 0x13", SIG "21 13 000c " V2_TCP4_BLOCK,
	    PROXY_ERR_MALFORMED, "family"),
	V2_ERR("v2 family 0x10", SIG "21 10 000c " V2_TCP4_BLOCK,
	    PROXY_ERR_MALFORMED, "family"),
	V2_ERR("v2 family 0x01", SIG "21 01 0000", PROXY_ERR_MALFORMED,
	    "family"),
	V2_ERR("v2 TCP4 with len 11", SIG "21 11 000b c0000201 c6336402 c822 00",
	    PROXY_ERR_BAD_ADDRESS, "address block"),
	V2_ERR("v2 TCP4 with len 0", SIG "21 11 0000", PROXY_ERR_BAD_ADDRESS,
	    "address block"),
	V2_ERR("v2 TCP6 with len 35", SIG "21 21 0023", PROXY_ERR_BAD_ADDRESS,
	    "address block"),
	V2_ERR("v2 TCP6 with a TCP4 block", SIG "21 21 000c " V2_TCP4_BLOCK,
	    PROXY_ERR_BAD_ADDRESS, "address block"),
	V2_ERR("v2 AF_UNIX with len 215", SIG "21 31 00d7",
	    PROXY_ERR_BAD_ADDRESS, "address block"),
	V2_ERR("v2 len 65535", SIG "21 11 ffff", PROXY_ERR_TOO_LONG, "536"),
	V2_ERR("v2 LOCAL, 537 bytes", SIG "20 00 0209", PROXY_ERR_TOO_LONG,
	    "536"),
	V2_ERR("v2 TLV header cut", SIG "21 11 000e " V2_TCP4_BLOCK " 0400",
	    PROXY_ERR_MALFORMED, "TLV header cut"),
	V2_ERR("v2 TLV past the end", SIG "21 11 0010 " V2_TCP4_BLOCK
	    " 01 0002 61", PROXY_ERR_MALFORMED, "TLV runs past"),
	V2_ERR("v2 TLV length 0xffff", SIG "21 11 000f " V2_TCP4_BLOCK
	    " 04 ffff", PROXY_ERR_MALFORMED, "TLV runs past"),
	V2_ERR("v2 CRC32C of 3 bytes", SIG "21 11 0012 " V2_TCP4_BLOCK
	    " 03 0003 000000", PROXY_ERR_MALFORMED, "4 bytes"),
	V2_ERR("v2 two CRC32C", SIG "21 11 001a " V2_TCP4_BLOCK
	    " 03 0004 00000000 03 0004 00000000", PROXY_ERR_MALFORMED,
	    "more than one"),
	V2_ERR("not PROXY: v2 signature off by one", "0d0a0d0a000d0a5155495820",
	    PROXY_ERR_NOT_PROXY, NULL),
	V2_ERR("not PROXY: 0d0a0d0a01", "0d0a0d0a01", PROXY_ERR_NOT_PROXY, NULL),
	V2_ERR("not PROXY: 0d0d", "0d0d", PROXY_ERR_NOT_PROXY, NULL),
	V2_ERR("not PROXY: NUL", "00", PROXY_ERR_NOT_PROXY, NULL),
	V2_ERR("not PROXY: 0xff", "ff", PROXY_ERR_NOT_PROXY, NULL),
	V2_ERR("not PROXY: TLS ClientHello", "16030100", PROXY_ERR_NOT_PROXY,
	    NULL),
	V2_ERR("truncated: in the signature", "0d0a", PROXY_NEED_MORE,
	    "signature"),
	V2_ERR("truncated: in the first 16 bytes", SIG "21",
	    PROXY_NEED_MORE, "16 bytes"),
	V2_ERR("truncated: in the addresses", SIG "21 11 000c c0000201",
	    PROXY_NEED_MORE, "length"),

	/* Whatever follows the header stays with the caller. */
	{ .name = "v1 followed by another v1 line", .in =
	  "PROXY TCP4 1.2.3.4 4.3.2.1 123 321\r\n"
	  "PROXY TCP4 6.6.6.6 4.3.2.1 666 25\r\n", .want = PROXY_OK,
	  .hlen = 36, .version = 1, .cmd = PROXY_CMD_PROXY, .family = AF_INET,
	  .socktype = SOCK_STREAM, .usable = true, .src = "1.2.3.4 123",
	  .dst = "4.3.2.1 321" },
	{ .name = "v2 followed by a v2 header", .hex = true, .in =
	  SIG "21 11 000c " V2_TCP4_BLOCK " " SIG "21 11 000c 06060606"
	  " 04030201 029a 0019", .want = PROXY_OK, .hlen = 28, .version = 2,
	  .cmd = PROXY_CMD_PROXY, .family = AF_INET, .socktype = SOCK_STREAM,
	  .usable = true, .src = "192.0.2.1 51234", .dst = "198.51.100.2 25" },
	{ .name = "v1 UNKNOWN followed by a pregreeting client", .in =
	  "PROXY UNKNOWN\r\nEHLO early\r\n", .want = PROXY_OK, .hlen = 15,
	  .version = 1, .cmd = PROXY_CMD_PROXY, .family = AF_UNSPEC },
};

/* The bytes of a vector, with its CRC32C filled in as it asks. */
static size_t
vec_bytes(const struct dec_vec *v, uint8_t *buf, size_t cap)
{
	size_t n, crc_at = SIZE_MAX, hdr;
	uint32_t crc;

	if (!v->hex) {
		n = strlen(v->in);
		ck_assert_uint_le(n, cap);
		memcpy(buf, v->in, n);
		return n;
	}
	n = unhex_crc(v->in, buf, cap, &crc_at);
	if (v->crc == CRC_NONE)
		return n;
	ck_assert_msg(crc_at != SIZE_MAX, "%s: no CRC in the vector", v->name);
	hdr = 16 + ((size_t)buf[14] << 8) + buf[15];
	ck_assert_uint_le(hdr, n);
	crc = crc32c_bitwise(buf, hdr);
	if (v->crc == CRC_BAD)
		crc ^= 1;
	buf[crc_at] = (uint8_t)(crc >> 24);
	buf[crc_at + 1] = (uint8_t)(crc >> 16);
	buf[crc_at + 2] = (uint8_t)(crc >> 8);
	buf[crc_at + 3] = (uint8_t)crc;
	return n;
}

/*
 * Decode exactly buf[0..len) from a heap copy of that size, so that a read
 * past len is an AddressSanitizer error, not a silent look at the future.
 */
static enum proxy_result
decode_exact(const uint8_t *buf, size_t len, struct proxy_info *info,
    bool final)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	enum proxy_result r;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, buf, len);
	memset(info, 0xa5, sizeof(*info));
	r = final ? proxy_decode_final(copy, len, info) :
	    proxy_decode(copy, len, info);
	free(copy);
	return r;
}

/* What a simulated reader ended with. */
struct feed_out {
	enum proxy_result r;
	struct proxy_info info;
	size_t decided_at;	/* bytes in its buffer at the answer */
	uint8_t rest[1024];	/* the client's bytes after the header */
	size_t nrest;
};

/*
 * Read in[0..n) as a non-blocking reader does: each read() ends at the next
 * offset in cuts[] (ascending) or when its 536-byte buffer is full; decode
 * after every read; at EOF finalize. What follows the header, in its buffer
 * and still unread, is what the session gets.
 */
static void
feed(const uint8_t *in, size_t n, const size_t *cuts, size_t ncuts,
    struct feed_out *o)
{
	uint8_t rbuf[PROXY_HEADER_MAX];
	size_t have = 0, pos = 0, ci = 0;

	for (;;) {
		size_t until, take;

		while (ci < ncuts && cuts[ci] <= pos)
			ci++;
		until = ci < ncuts ? cuts[ci] : n;
		take = until - pos;
		if (take > sizeof(rbuf) - have)
			take = sizeof(rbuf) - have;
		memcpy(rbuf + have, in + pos, take);
		have += take;
		pos += take;
		o->r = decode_exact(rbuf, have, &o->info, false);
		if (o->r != PROXY_NEED_MORE)
			break;
		/* Never a full buffer without an answer. */
		ck_assert_uint_lt(have, sizeof(rbuf));
		if (pos == n) {
			o->r = decode_exact(rbuf, have, &o->info, true);
			break;
		}
	}
	o->decided_at = have;
	o->nrest = 0;
	if (o->r != PROXY_OK)
		return;
	ck_assert_uint_le(o->info.header_len, have);
	o->nrest = have - o->info.header_len + (n - pos);
	ck_assert_uint_le(o->nrest, sizeof(o->rest));
	memcpy(o->rest, rbuf + o->info.header_len, have - o->info.header_len);
	memcpy(o->rest + have - o->info.header_len, in + pos, n - pos);
}

static void
check_info(const struct dec_vec *v, const struct proxy_info *info,
    size_t hlen)
{
	char got[160];

	ck_assert_msg(info->version == v->version, "%s: version %d", v->name,
	    info->version);
	ck_assert_msg(info->command == v->cmd, "%s: command %d", v->name,
	    info->command);
	ck_assert_msg(info->family == v->family, "%s: family %d", v->name,
	    info->family);
	ck_assert_msg(info->socktype == v->socktype, "%s: socktype %d",
	    v->name, info->socktype);
	ck_assert_msg(info->usable == v->usable, "%s: usable %d", v->name,
	    info->usable);
	ck_assert_msg(info->header_len == hlen, "%s: header_len %zu, want %zu",
	    v->name, info->header_len, hlen);
	ck_assert_ptr_null(info->why);
	if (v->src != NULL) {
		sa_str(&info->src, got, sizeof(got));
		ck_assert_msg(strcmp(got, v->src) == 0, "%s: src %s", v->name,
		    got);
	}
	if (v->dst != NULL) {
		sa_str(&info->dst, got, sizeof(got));
		ck_assert_msg(strcmp(got, v->dst) == 0, "%s: dst %s", v->name,
		    got);
	}
	/* Without addresses, none are made up. */
	if (v->family == AF_UNSPEC) {
		ck_assert_int_eq(info->src.ss_family, AF_UNSPEC);
		ck_assert_int_eq(info->dst.ss_family, AF_UNSPEC);
	}
	if (info->usable)
		ck_assert(info->src.ss_family == AF_INET ||
		    info->src.ss_family == AF_INET6);
}

static const char trailer[] = "EHLO client.example\r\n";

/*
 * One vector, fed whole, split at every byte and byte by byte: the same
 * answer, the same header length, and not one byte after it lost.
 */
static void
check_vector(const struct dec_vec *v, bool with_trailer)
{
	uint8_t in[1024];
	size_t n = vec_bytes(v, in, sizeof(in) - sizeof(trailer)), hlen;
	size_t cuts[1024];
	struct proxy_info info;
	struct feed_out whole, o;
	enum proxy_result want = v->want, r;

	if (with_trailer) {
		memcpy(in + n, trailer, sizeof(trailer) - 1);
		n += sizeof(trailer) - 1;
	}
	hlen = v->hlen != 0 ? v->hlen :
	    n - (with_trailer ? sizeof(trailer) - 1 : 0);

	r = decode_exact(in, n, &info, false);
	ck_assert_msg(r == want, "%s: got %s (%s), want %s", v->name,
	    proxy_result_names[r], info.why != NULL ? info.why : "-",
	    proxy_result_names[want]);
	if (r == PROXY_OK) {
		check_info(v, &info, hlen);
	} else {
		ck_assert_msg(info.why != NULL && info.why[0] != '\0',
		    "%s: no message", v->name);
		if (v->why != NULL)
			ck_assert_msg(strstr(info.why, v->why) != NULL,
			    "%s: message \"%s\" lacks \"%s\"", v->name,
			    info.why, v->why);
		/* An error never leaves addresses behind. */
		ck_assert_int_eq(info.src.ss_family, AF_UNSPEC);
		ck_assert_uint_eq(info.header_len, 0);
	}
	/* At EOF a valid prefix is truncated, anything else stays. */
	if (want == PROXY_NEED_MORE)
		want = PROXY_ERR_TRUNCATED;
	ck_assert_int_eq(decode_exact(in, n, &info, true), want);

	/* Byte by byte: answers as soon as the header is complete. */
	for (size_t k = 0; k + 1 < n; k++)
		cuts[k] = k + 1;
	feed(in, n, cuts, n > 0 ? n - 1 : 0, &whole);
	ck_assert_msg(whole.r == want, "%s: byte by byte: %s", v->name,
	    proxy_result_names[whole.r]);
	ck_assert_uint_le(whole.decided_at, PROXY_HEADER_MAX);
	if (want == PROXY_OK) {
		check_info(v, &whole.info, hlen);
		ck_assert_msg(whole.decided_at == hlen,
		    "%s: answered at %zu bytes, header is %zu", v->name,
		    whole.decided_at, hlen);
		ck_assert_uint_eq(whole.nrest, n - hlen);
		ck_assert_mem_eq(whole.rest, in + hlen, n - hlen);
	}

	/* Every split in two reads: the same answer and the same rest. */
	for (size_t k = 1; k < n; k++) {
		feed(in, n, &k, 1, &o);
		ck_assert_msg(o.r == whole.r, "%s: split at %zu: %s", v->name,
		    k, proxy_result_names[o.r]);
		if (o.r != PROXY_OK)
			continue;
		ck_assert_uint_eq(o.info.header_len, hlen);
		ck_assert_uint_eq(o.nrest, whole.nrest);
		ck_assert_mem_eq(o.rest, whole.rest, o.nrest);
		ck_assert_mem_eq(&o.info.src, &whole.info.src,
		    sizeof(o.info.src));
		ck_assert_mem_eq(&o.info.dst, &whole.info.dst,
		    sizeof(o.info.dst));
	}
}

START_TEST(test_decode_vector)
{
	check_vector(&dec_vecs[_i], false);
	/* A decided vector keeps its answer with client bytes after it. */
	if (dec_vecs[_i].want != PROXY_NEED_MORE)
		check_vector(&dec_vecs[_i], true);
}
END_TEST

/* The table covers what the decoder must get right, both ways. */
START_TEST(test_decode_table)
{
	size_t ok = 0, bad = 0, v1 = 0, v2 = 0;
	size_t n = sizeof(dec_vecs) / sizeof(dec_vecs[0]);

	for (size_t i = 0; i < n; i++) {
		if (dec_vecs[i].want == PROXY_OK)
			ok++;
		else
			bad++;
		if (dec_vecs[i].hex && strncmp(dec_vecs[i].in, SIG,
		    strlen(SIG) - 1) == 0)
			v2++;
		else if (!dec_vecs[i].hex)
			v1++;
	}
	ck_assert_uint_ge(ok + bad, 40);
	ck_assert_uint_ge(ok, 20);
	ck_assert_uint_ge(bad, 20);
	ck_assert_uint_ge(v1, 20);
	ck_assert_uint_ge(v2, 20);
}
END_TEST

/* A header of exactly PROXY_HEADER_MAX bytes is taken; one more is not. */
START_TEST(test_v2_decode_max)
{
	uint8_t buf[PROXY_HEADER_MAX + 1];
	struct proxy_info info;
	size_t plen = PROXY_HEADER_MAX - 16;

	memset(buf, 0, sizeof(buf));
	unhex(SIG "21 11", buf, 14);
	buf[14] = (uint8_t)(plen >> 8);
	buf[15] = (uint8_t)plen;
	/* After the 12-byte block, one NOOP TLV fills the rest. */
	buf[28] = 0x04;
	buf[29] = (uint8_t)((plen - 15) >> 8);
	buf[30] = (uint8_t)(plen - 15);
	ck_assert_int_eq(proxy_decode(buf, PROXY_HEADER_MAX, &info), PROXY_OK);
	ck_assert_uint_eq(info.header_len, PROXY_HEADER_MAX);
	ck_assert_int_eq(proxy_decode(buf, PROXY_HEADER_MAX - 1, &info),
	    PROXY_NEED_MORE);
	plen++;
	buf[14] = (uint8_t)(plen >> 8);
	buf[15] = (uint8_t)plen;
	buf[29] = (uint8_t)((plen - 15) >> 8);
	buf[30] = (uint8_t)(plen - 15);
	ck_assert_int_eq(proxy_decode(buf, 16, &info), PROXY_ERR_TOO_LONG);
	ck_assert_int_eq(proxy_decode(buf, sizeof(buf), &info),
	    PROXY_ERR_TOO_LONG);
}
END_TEST

/* ---- CRC32C ----------------------------------------------------------- */

START_TEST(test_crc32c_reference)
{
	/* The check value of CRC-32C (RFC 3720 B.4), both implementations. */
	ck_assert_uint_eq(crc32c_bitwise((const uint8_t *)"123456789", 9),
	    0xe3069283u);
	ck_assert_uint_eq(crc32c_update(0, (const uint8_t *)"123456789", 9),
	    0xe3069283u);
	ck_assert_uint_eq(crc32c_update(0, NULL, 0), 0);
}
END_TEST

/* The table-driven CRC agrees with the bitwise one, fed whole or in two. */
START_TEST(test_crc32c_random)
{
	uint8_t buf[600];
	uint32_t x = 2463534242u;

	for (size_t i = 0; i < sizeof(buf); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
	for (size_t n = 0; n <= sizeof(buf); n += 7) {
		uint32_t want = crc32c_bitwise(buf, n);

		ck_assert_uint_eq(crc32c_update(0, buf, n), want);
		for (size_t k = 0; k <= n; k += 13)
			ck_assert_uint_eq(crc32c_update(crc32c_update(0, buf,
			    k), buf + k, n - k), want);
	}
}
END_TEST

/*
 * As HAProxy sends with `send-proxy-v2 proxy-v2-options crc32c,ssl`: TCP6,
 * ALPN, an SSL TLV with sub-TLVs, the CRC32C, then NOOP padding.
 */
static size_t
build_haproxy_v2(uint8_t *buf, size_t cap, size_t *crc_off)
{
	size_t n = unhex(SIG "21 21 0000"
	    " 20010db8000000000000000000000001"
	    " 20010db8000000000000000000000002 c350 0019"
	    " 01 0004 736d7470"			/* ALPN "smtp" */
	    " 20 000f 01 00000000"		/* SSL: client, verify */
	    "   21 0007 544c5376312e33"		/* version "TLSv1.3" */
	    " 03 0004 00000000"			/* CRC32C, zeroed */
	    " 04 0003 000000", buf, cap);	/* NOOP */

	buf[14] = (uint8_t)((n - 16) >> 8);
	buf[15] = (uint8_t)(n - 16);
	*crc_off = n - 6 - 4;
	return n;
}

/* Any flipped bit the CRC covers is caught, and only a flipped bit. */
START_TEST(test_v2_decode_crc32c)
{
	uint8_t buf[256];
	size_t off, n = build_haproxy_v2(buf, sizeof(buf), &off);
	uint32_t crc = crc32c_bitwise(buf, n);
	struct proxy_info info;
	char got[128];

	ck_assert_uint_eq(buf[off - 3], 0x03);
	buf[off] = (uint8_t)(crc >> 24);
	buf[off + 1] = (uint8_t)(crc >> 16);
	buf[off + 2] = (uint8_t)(crc >> 8);
	buf[off + 3] = (uint8_t)crc;
	ck_assert_int_eq(proxy_decode(buf, n, &info), PROXY_OK);
	ck_assert_int_eq(info.command, PROXY_CMD_PROXY);
	ck_assert_uint_eq(info.header_len, n);
	sa_str(&info.src, got, sizeof(got));
	ck_assert_str_eq(got, "[2001:db8::1] 50000");

	/* Addresses, ports, ALPN value: each bit of them. */
	for (size_t i = 16; i < 59; i++) {
		if (i >= 52 && i < 55)
			continue;	/* the ALPN TLV's type and length */
		for (int b = 0; b < 8; b++) {
			buf[i] ^= (uint8_t)(1u << b);
			ck_assert_int_eq(proxy_decode(buf, n, &info),
			    PROXY_ERR_BAD_CRC);
			buf[i] ^= (uint8_t)(1u << b);
		}
	}
	/* And so is a flipped bit of the CRC itself. */
	buf[off + 3] ^= 0x80;
	ck_assert_int_eq(proxy_decode(buf, n, &info), PROXY_ERR_BAD_CRC);
	buf[off + 3] ^= 0x80;
	ck_assert_int_eq(proxy_decode(buf, n, &info), PROXY_OK);
}
END_TEST

/* ---- the decoder's contract ------------------------------------------- */

/* Every result has a name; an unknown one would print NULL in a log. */
START_TEST(test_result_names)
{
	for (int r = 0; r < PROXY_RESULT_COUNT; r++)
		ck_assert_ptr_nonnull(proxy_result_names[r]);
	ck_assert_str_eq(proxy_result_names[PROXY_OK], "ok");
	ck_assert_str_eq(proxy_result_names[PROXY_NEED_MORE], "need more");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_NOT_PROXY],
	    "not a PROXY header");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_TRUNCATED], "truncated");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_BAD_ADDRESS],
	    "bad address");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_BAD_CRC], "bad CRC32C");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_TOO_LONG], "too long");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_MALFORMED],
	    "malformed header");
}
END_TEST

/* ---- round trips ------------------------------------------------------ */

struct rt_vec {
	const char *src, *dst;
	const char *want_src, *want_dst;	/* after unmapping */
};

static const struct rt_vec rt_vecs[] = {
	{ "203.0.113.7", "192.0.2.1", "203.0.113.7 51234", "192.0.2.1 25" },
	{ "2001:db8::7", "2001:db8::1", "[2001:db8::7] 51234",
	  "[2001:db8::1] 25" },
	{ "::ffff:203.0.113.7", "::ffff:192.0.2.1", "203.0.113.7 51234",
	  "192.0.2.1 25" },
	/* Promoted on the wire, unmapped again by the reader (as Postfix). */
	{ "203.0.113.7", "2001:db8::1", "203.0.113.7 51234",
	  "[2001:db8::1] 25" },
	{ "::1", "::", "[::1] 51234", "[::] 25" },
	{ "0.0.0.0", "255.255.255.255", "0.0.0.0 51234",
	  "255.255.255.255 25" },
};

START_TEST(test_round_trip)
{
	const struct rt_vec *v = &rt_vecs[_i];
	struct sockaddr_storage s, d;
	struct proxy_info info;
	char line[PROXY_V1_MAX];
	uint8_t bin[64];
	char got[128];
	int n;

	make_sa(&s, v->src, 51234);
	make_sa(&d, v->dst, 25);

	n = proxy_v1_encode(line, sizeof(line), (struct sockaddr *)&s,
	    (struct sockaddr *)&d);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(proxy_decode((uint8_t *)line, (size_t)n, &info),
	    PROXY_OK);
	ck_assert_uint_eq(info.header_len, (size_t)n);
	sa_str(&info.src, got, sizeof(got));
	ck_assert_str_eq(got, v->want_src);
	sa_str(&info.dst, got, sizeof(got));
	ck_assert_str_eq(got, v->want_dst);

	n = proxy_v2_encode(bin, sizeof(bin), (struct sockaddr *)&s,
	    (struct sockaddr *)&d);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(proxy_decode(bin, (size_t)n, &info), PROXY_OK);
	ck_assert_int_eq(info.version, 2);
	sa_str(&info.src, got, sizeof(got));
	ck_assert_str_eq(got, v->want_src);
	sa_str(&info.dst, got, sizeof(got));
	ck_assert_str_eq(got, v->want_dst);

	ck_assert(info.usable);

	n = proxy_v2_encode_local(bin, sizeof(bin));
	ck_assert_int_eq(proxy_decode(bin, (size_t)n, &info), PROXY_OK);
	ck_assert_int_eq(info.command, PROXY_CMD_LOCAL);
	ck_assert(!info.usable);
}
END_TEST

/* ---- names and escaping ----------------------------------------------- */

START_TEST(test_escape)
{
	static const uint8_t in[] = "PROXY\r\n\x00\xff\\\"~ ";
	char out[64];

	proxy_escape(out, sizeof(out), in, sizeof(in) - 1, 100);
	ck_assert_str_eq(out, "PROXY\\x0d\\x0a\\x00\\xff\\\\\\\"~ ");
	proxy_escape(out, sizeof(out), in, sizeof(in) - 1, 6);
	ck_assert_str_eq(out, "PROXY\\x0d");
	/* An escape that does not fit is left out whole. */
	proxy_escape(out, 12, in, sizeof(in) - 1, 100);
	ck_assert_str_eq(out, "PROXY\\x0d");
	proxy_escape(out, 13, in, sizeof(in) - 1, 100);
	ck_assert_str_eq(out, "PROXY\\x0d");
	proxy_escape(out, 14, in, sizeof(in) - 1, 100);
	ck_assert_str_eq(out, "PROXY\\x0d\\x0a");
	proxy_escape(out, 1, in, sizeof(in) - 1, 100);
	ck_assert_str_eq(out, "");
	proxy_escape(out, sizeof(out), in, 0, 100);
	ck_assert_str_eq(out, "");
	out[0] = 'x';
	proxy_escape(out, 0, in, sizeof(in) - 1, 100);
	ck_assert_int_eq(out[0], 'x');
}
END_TEST

/* The worst case, every byte escaped, fits 4 * max + 1 exactly. */
START_TEST(test_escape_bound)
{
	uint8_t in[PROXY_HEADER_MAX];
	char out[4 * 64 + 1];

	memset(in, 0x80, sizeof(in));
	proxy_escape(out, sizeof(out), in, sizeof(in), 64);
	ck_assert_uint_eq(strlen(out), 4 * 64);
	proxy_escape(out, sizeof(out) - 1, in, sizeof(in), 64);
	ck_assert_uint_eq(strlen(out), 4 * 63);
	for (int c = 0; c < 256; c++) {
		uint8_t b = (uint8_t)c;

		proxy_escape(out, sizeof(out), &b, 1, 1);
		if (c == '\\' || c == '"')
			ck_assert(out[0] == '\\' && out[1] == c && out[2] == 0);
		else if (c >= 0x20 && c < 0x7f)
			ck_assert(out[0] == c && out[1] == '\0');
		else
			ck_assert_uint_eq(strlen(out), 4);
	}
}
END_TEST

#define NVEC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
proxy_suite(void)
{
	Suite *s = suite_create("proxy");
	TCase *tc;

	tc = tcase_create("proxy_v1_encode");
	tcase_add_loop_test(tc, test_v1_encode, 0, NVEC(enc_vecs));
	tcase_add_test(tc, test_v1_encode_longest);
	tcase_add_test(tc, test_encode_non_ip);
	suite_add_tcase(s, tc);

	tc = tcase_create("proxy_v2_encode");
	tcase_add_loop_test(tc, test_v2_encode, 0, NVEC(enc_vecs));
	tcase_add_test(tc, test_v2_encode_local);
	suite_add_tcase(s, tc);

	tc = tcase_create("proxy_decode");
	tcase_add_loop_test(tc, test_decode_vector, 0, NVEC(dec_vecs));
	tcase_add_test(tc, test_decode_table);
	tcase_add_test(tc, test_v2_decode_max);
	tcase_add_test(tc, test_v2_decode_crc32c);
	tcase_add_loop_test(tc, test_round_trip, 0, NVEC(rt_vecs));
	tcase_add_test(tc, test_result_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("crc32c_update");
	tcase_add_test(tc, test_crc32c_reference);
	tcase_add_test(tc, test_crc32c_random);
	suite_add_tcase(s, tc);

	tc = tcase_create("proxy_escape");
	tcase_add_test(tc, test_escape);
	tcase_add_test(tc, test_escape_bound);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proxy_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
