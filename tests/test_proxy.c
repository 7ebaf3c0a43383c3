/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for smtp/proxy.c: byte-exact encoder vectors, decoder vectors
 * (Postfix's haproxy_srvr_test.c cases among them), v2 TLVs with a CRC32C
 * checked by an independent bitwise CRC, truncation at every length, round
 * trips and the log escaper.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

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
	} else {
		snprintf(out, cap, "family %d", ss->ss_family);
	}
}

/* Hex string (spaces ignored) to bytes; returns the length. */
static size_t
unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (*hex != '\0') {
		unsigned v;

		if (*hex == ' ') {
			hex++;
			continue;
		}
		ck_assert_int_eq(sscanf(hex, "%2x", &v), 1);
		ck_assert_uint_lt(n, cap);
		out[n++] = (uint8_t)v;
		hex += 2;
	}
	return n;
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

/* ---- v1 decoder ------------------------------------------------------- */

struct dec_vec {
	const char *in;			/* v1 text, or hex when `hex` */
	bool hex;
	enum proxy_result want;
	enum proxy_command cmd;
	const char *src, *dst;		/* sa_str() forms */
};

#define V1_OK(in, s, d) { in, false, PROXY_OK, PROXY_CMD_PROXY, s, d }
#define V1_LOCAL(in) { in, false, PROXY_OK, PROXY_CMD_LOCAL, NULL, NULL }
#define V1_ERR(in, r) { in, false, r, 0, NULL, NULL }
#define V2_OK(in, s, d) { in, true, PROXY_OK, PROXY_CMD_PROXY, s, d }
#define V2_LOCAL(in) { in, true, PROXY_OK, PROXY_CMD_LOCAL, NULL, NULL }
#define V2_ERR(in, r) { in, true, r, 0, NULL, NULL }

#define FF39 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

static const struct dec_vec v1_vecs[] = {
	/* Postfix haproxy_srvr_test.c, with the CRLF the protocol requires. */
	V1_OK("PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1 123 321\r\n",
	    "[fc::1:2:3:4] 123", "[fc::4:3:2:1] 321"),
	V1_OK("PROXY TCP6 FC:00:00:00:1:2:3:4 FC:00:00:00:4:3:2:1 123 321\r\n",
	    "[fc::1:2:3:4] 123", "[fc::4:3:2:1] 321"),
	V1_ERR("PROXY TCP6 1.2.3.4 4.3.2.1 123 321\r\n", PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP6 fc:00:00:00:1:2:3:4 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_OK("PROXY TCP6 ::ffff:1.2.3.4 ::ffff:4.3.2.1 123 321\r\n",
	    "1.2.3.4 123", "4.3.2.1 321"),
	V1_OK("PROXY TCP6 ::FFFF:1.2.3.4 ::FFFF:4.3.2.1 123 321\r\n",
	    "1.2.3.4 123", "4.3.2.1 321"),
	V1_ERR("PROXY TCP4 ::ffff:1.2.3.4 ::ffff:4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.4 ::ffff:4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_OK("PROXY TCP4 1.2.3.4 4.3.2.1 123 321\r\n",
	    "1.2.3.4 123", "4.3.2.1 321"),
	/* Postfix takes leading zeros here; inet_pton (and we) do not. */
	V1_ERR("PROXY TCP4 01.02.03.04 04.03.02.01 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123456 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 654321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 0123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 0321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1 123\r\n",
	    PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP6 fc:00:00:00:1:2:3:4 fc:00:00:00:4:3:2:1\r\n",
	    PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP6 fc:00:00:00:1:2:3:4\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP6\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4 1.2.3.4\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY BLAH\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY\r\n", PROXY_ERR_NOT_PROXY),
	V1_ERR("BLAH\r\n", PROXY_ERR_NOT_PROXY),
	V1_ERR("\n", PROXY_ERR_NOT_PROXY),
	/* Ours. */
	V1_OK("PROXY TCP4 1.2.3.4 4.3.2.1 0 65535\r\n",
	    "1.2.3.4 0", "4.3.2.1 65535"),
	V1_OK("PROXY TCP6 " FF39 " " FF39 " 65535 65535\r\n",
	    "[" FF39 "] 65535", "[" FF39 "] 65535"),
	V1_LOCAL("PROXY UNKNOWN\r\n"),
	V1_LOCAL("PROXY UNKNOWN " FF39 " " FF39 " 65535 65535\r\n"),
	V1_ERR("PROXY UNKNOWN " FF39 " " FF39 " 65535 655355\r\n",
	    PROXY_ERR_MALFORMED),	/* 108 bytes */
	V1_ERR("PROXY UNKNOWN " FF39 " " FF39 " 65535 6553555",
	    PROXY_ERR_MALFORMED),	/* 107 bytes, no room for CRLF */
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 321\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 321\rX", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 65536\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 +123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 -1 321\r\n", PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 12a 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3.256 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 1.2.3 4.3.2.1 123 321\r\n", PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4 localhost 4.3.2.1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP6 fe80::1%eth0 ::1 123 321\r\n",
	    PROXY_ERR_BAD_ADDRESS),
	V1_ERR("PROXY TCP4  1.2.3.4 4.3.2.1 123 321\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 321 \r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 321 7\r\n",
	    PROXY_ERR_MALFORMED),
	V1_ERR("PROXY tcp4 1.2.3.4 4.3.2.1 123 321\r\n", PROXY_ERR_MALFORMED),
	V1_ERR("PROXY TCP4\t1.2.3.4 4.3.2.1 123 321\r\n",
	    PROXY_ERR_MALFORMED),
	V1_ERR("PROXY \r\n", PROXY_ERR_MALFORMED),
	V1_ERR("proxy TCP4 1.2.3.4 4.3.2.1 123 321\r\n", PROXY_ERR_NOT_PROXY),
	V1_ERR("EHLO client.example\r\n", PROXY_ERR_NOT_PROXY),
	V1_ERR("GET / HTTP/1.0\r\n", PROXY_ERR_NOT_PROXY),
	V1_ERR("PROXX", PROXY_ERR_NOT_PROXY),
	V1_ERR("X", PROXY_ERR_NOT_PROXY),
	V1_ERR("PROXY TCP4 1.2.3.4 \xc3\xa9", PROXY_ERR_MALFORMED),
	/* Valid prefixes. */
	V1_ERR("", PROXY_NEED_MORE),
	V1_ERR("P", PROXY_NEED_MORE),
	V1_ERR("PROXY", PROXY_NEED_MORE),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 321", PROXY_NEED_MORE),
	V1_ERR("PROXY TCP4 1.2.3.4 4.3.2.1 123 321\r", PROXY_NEED_MORE),
};

static void
check_decode(const struct dec_vec *v)
{
	uint8_t buf[1024];
	size_t n;
	struct proxy_info info;
	enum proxy_result r;
	char got[128];

	if (v->hex) {
		n = unhex(v->in, buf, sizeof(buf));
	} else {
		n = strlen(v->in);
		memcpy(buf, v->in, n);
	}
	memset(&info, 0xa5, sizeof(info));
	r = proxy_decode(buf, n, &info);
	ck_assert_msg(r == v->want, "%s: got %s, want %s", v->in,
	    proxy_result_names[r], proxy_result_names[v->want]);
	if (r != PROXY_OK)
		return;
	ck_assert_int_eq(info.version, v->hex ? 2 : 1);
	ck_assert_int_eq(info.command, v->cmd);
	ck_assert_uint_eq(info.header_len, n);
	if (v->cmd == PROXY_CMD_PROXY) {
		sa_str(&info.src, got, sizeof(got));
		ck_assert_str_eq(got, v->src);
		sa_str(&info.dst, got, sizeof(got));
		ck_assert_str_eq(got, v->dst);
	}
	/* What follows the header is the session's, never the header's. */
	memcpy(buf + n, "EHLO x\r\n", 8);
	ck_assert_int_eq(proxy_decode(buf, n + 8, &info), PROXY_OK);
	ck_assert_uint_eq(info.header_len, n);
	/* Every shorter prefix is a valid one: read more, or truncated. */
	for (size_t k = 0; k < n; k++) {
		ck_assert_msg(proxy_decode(buf, k, &info) == PROXY_NEED_MORE,
		    "%s: prefix %zu", v->in, k);
		ck_assert_int_eq(proxy_decode_final(buf, k, &info),
		    PROXY_ERR_TRUNCATED);
	}
	ck_assert_int_eq(proxy_decode_final(buf, n, &info), PROXY_OK);
}

START_TEST(test_v1_decode)
{
	check_decode(&v1_vecs[_i]);
}
END_TEST

/* ---- v2 decoder ------------------------------------------------------- */

static const struct dec_vec v2_vecs[] = {
	V2_OK(SIG "21 11 000c c0000201 c6336402 c822 0019",
	    "192.0.2.1 51234", "198.51.100.2 25"),
	V2_OK(SIG "21 21 0024 20010db8000000000000000000000001"
	    " 20010db8000000000000000000000002 04d2 0019",
	    "[2001:db8::1] 1234", "[2001:db8::2] 25"),
	/* Mapped addresses in TCP6 come out as IPv4, each on its own. */
	V2_OK(SIG "21 21 0024 00000000000000000000ffff01020304"
	    " 00000000000000000000ffff04030201 007b 0141",
	    "1.2.3.4 123", "4.3.2.1 321"),
	V2_OK(SIG "21 21 0024 00000000000000000000ffffc0000201"
	    " 20010db8000000000000000000000012 9c40 2728",
	    "192.0.2.1 40000", "[2001:db8::12] 10024"),
	/* Postfix: a bare LOCAL header. */
	V2_LOCAL(SIG "20 00 0000"),
	/* LOCAL ignores the family and its block. */
	V2_LOCAL(SIG "20 11 000c c0000201 c6336402 c822 0019"),
	V2_LOCAL(SIG "20 41 0003 000000"),
	V2_LOCAL(SIG "20 11 0002 0000"),
	/* Families Postfix cannot take: use the real endpoints. */
	V2_LOCAL(SIG "21 00 0000"),
	V2_LOCAL(SIG "21 12 000c c0000201 c6336402 c822 0019"),
	V2_LOCAL(SIG "21 22 0024 20010db8000000000000000000000001"
	    " 20010db8000000000000000000000002 04d2 0019"),
	/* TLVs after the address block are skipped. */
	V2_OK(SIG "21 11 0018 c0000201 c6336402 c822 0019"
	    " 01 0004 736d7470 04 0002 0000",
	    "192.0.2.1 51234", "198.51.100.2 25"),
	V2_OK(SIG "21 11 000f c0000201 c6336402 c822 0019 04 0000",
	    "192.0.2.1 51234", "198.51.100.2 25"),
	/* Version, command and family checks. */
	V2_ERR(SIG "11 11 000c c0000201 c6336402 c822 0019",
	    PROXY_ERR_MALFORMED),
	V2_ERR(SIG "31 11 000c c0000201 c6336402 c822 0019",
	    PROXY_ERR_MALFORMED),
	V2_ERR(SIG "22 11 000c c0000201 c6336402 c822 0019",
	    PROXY_ERR_MALFORMED),
	V2_ERR(SIG "2f 11 000c", PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 41 000c c0000201 c6336402 c822 0019",
	    PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 13 000c c0000201 c6336402 c822 0019",
	    PROXY_ERR_MALFORMED),
	/* Lengths below the family's block, or over the cap. */
	V2_ERR(SIG "21 11 000b c0000201 c6336402 c822 00", PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 11 0000", PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 21 0023", PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 21 000c c0000201 c6336402 c822 0019",
	    PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 31 00d7", PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 11 ffff", PROXY_ERR_MALFORMED),
	V2_ERR(SIG "20 00 0209", PROXY_ERR_MALFORMED),
	/* TLVs that do not fit. */
	V2_ERR(SIG "21 11 000e c0000201 c6336402 c822 0019 0400",
	    PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 11 0010 c0000201 c6336402 c822 0019 01 0002 61",
	    PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 11 0012 c0000201 c6336402 c822 0019 03 0003 000000",
	    PROXY_ERR_MALFORMED),
	V2_ERR(SIG "21 11 001a c0000201 c6336402 c822 0019"
	    " 03 0004 00000000 03 0004 00000000", PROXY_ERR_MALFORMED),
	/* Not the signature. */
	V2_ERR("0d0a0d0a000d0a5155495820", PROXY_ERR_NOT_PROXY),
	V2_ERR("0d0a0d0a01", PROXY_ERR_NOT_PROXY),
	V2_ERR("0d0d", PROXY_ERR_NOT_PROXY),
	V2_ERR("00", PROXY_ERR_NOT_PROXY),
	V2_ERR("ff", PROXY_ERR_NOT_PROXY),
	V2_ERR("16030100", PROXY_ERR_NOT_PROXY),	/* a TLS ClientHello */
	V2_ERR("0d0a", PROXY_NEED_MORE),
	V2_ERR(SIG "21", PROXY_NEED_MORE),
	V2_ERR(SIG "21 11 000c c0000201", PROXY_NEED_MORE),
};

START_TEST(test_v2_decode)
{
	check_decode(&v2_vecs[_i]);
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
	ck_assert_int_eq(proxy_decode(buf, 16, &info), PROXY_ERR_MALFORMED);
	ck_assert_int_eq(proxy_decode(buf, sizeof(buf), &info),
	    PROXY_ERR_MALFORMED);
}
END_TEST

START_TEST(test_crc32c_reference)
{
	/* The check value of CRC-32C (RFC 3720 B.4). */
	ck_assert_uint_eq(crc32c_bitwise((const uint8_t *)"123456789", 9),
	    0xe3069283u);
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
	for (size_t k = 0; k < n; k++)
		ck_assert_int_eq(proxy_decode(buf, k, &info), PROXY_NEED_MORE);

	/* Any flipped bit in the addresses, ports or ALPN is caught. */
	for (size_t i = 16; i < 59; i++) {
		if (i >= 52 && i < 55)
			continue;	/* the ALPN TLV's type and length */
		buf[i] ^= 0x01;
		ck_assert_int_eq(proxy_decode(buf, n, &info),
		    PROXY_ERR_BAD_CRC);
		buf[i] ^= 0x01;
	}
	/* And so is a flipped bit of the CRC itself. */
	buf[off + 3] ^= 0x80;
	ck_assert_int_eq(proxy_decode(buf, n, &info), PROXY_ERR_BAD_CRC);
	buf[off + 3] ^= 0x80;
	ck_assert_int_eq(proxy_decode(buf, n, &info), PROXY_OK);
}
END_TEST

/* The same with LOCAL (a health check through HAProxy): still checked. */
START_TEST(test_v2_decode_crc32c_local)
{
	uint8_t buf[64];
	size_t n = unhex(SIG "20 00 0007 03 0004 00000000", buf, sizeof(buf));
	uint32_t crc = crc32c_bitwise(buf, n);
	struct proxy_info info;

	buf[19] = (uint8_t)(crc >> 24);
	buf[20] = (uint8_t)(crc >> 16);
	buf[21] = (uint8_t)(crc >> 8);
	buf[22] = (uint8_t)crc;
	ck_assert_int_eq(proxy_decode(buf, n, &info), PROXY_OK);
	ck_assert_int_eq(info.command, PROXY_CMD_LOCAL);
	buf[22] ^= 1;
	ck_assert_int_eq(proxy_decode(buf, n, &info), PROXY_ERR_BAD_CRC);
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

	n = proxy_v2_encode_local(bin, sizeof(bin));
	ck_assert_int_eq(proxy_decode(bin, (size_t)n, &info), PROXY_OK);
	ck_assert_int_eq(info.command, PROXY_CMD_LOCAL);
}
END_TEST

/* ---- names and escaping ----------------------------------------------- */

START_TEST(test_result_names)
{
	ck_assert_str_eq(proxy_result_names[PROXY_OK], "ok");
	ck_assert_str_eq(proxy_result_names[PROXY_NEED_MORE], "need more");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_NOT_PROXY],
	    "not a PROXY header");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_TRUNCATED], "truncated");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_BAD_ADDRESS],
	    "bad address");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_BAD_CRC], "bad CRC32C");
	ck_assert_str_eq(proxy_result_names[PROXY_ERR_MALFORMED],
	    "malformed header");
}
END_TEST

START_TEST(test_escape)
{
	static const uint8_t in[] = "PROXY\r\n\x00\xff\\\"~ ";
	char out[64];

	proxy_escape(out, sizeof(out), in, sizeof(in) - 1, 100);
	ck_assert_str_eq(out, "PROXY\\r\\n\\x00\\xff\\\\\\\"~ ");
	proxy_escape(out, sizeof(out), in, sizeof(in) - 1, 6);
	ck_assert_str_eq(out, "PROXY\\r");
	/* An escape that does not fit is left out whole. */
	proxy_escape(out, 11, in, sizeof(in) - 1, 100);
	ck_assert_str_eq(out, "PROXY\\r\\n");
	proxy_escape(out, 1, in, sizeof(in) - 1, 100);
	ck_assert_str_eq(out, "");
	proxy_escape(out, sizeof(out), in, 0, 100);
	ck_assert_str_eq(out, "");
	out[0] = 'x';
	proxy_escape(out, 0, in, sizeof(in) - 1, 100);
	ck_assert_int_eq(out[0], 'x');
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
	tcase_add_loop_test(tc, test_v1_decode, 0, NVEC(v1_vecs));
	tcase_add_loop_test(tc, test_v2_decode, 0, NVEC(v2_vecs));
	tcase_add_test(tc, test_v2_decode_max);
	tcase_add_test(tc, test_crc32c_reference);
	tcase_add_test(tc, test_v2_decode_crc32c);
	tcase_add_test(tc, test_v2_decode_crc32c_local);
	tcase_add_loop_test(tc, test_round_trip, 0, NVEC(rt_vecs));
	tcase_add_test(tc, test_result_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("proxy_escape");
	tcase_add_test(tc, test_escape);
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
