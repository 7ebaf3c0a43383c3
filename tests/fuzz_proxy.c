/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the PROXY decoder and the log escaper. Any input
 * must decode without a fault; the answer must not depend on how the bytes
 * were split across reads (every prefix is decoded from an exact-size heap
 * copy, so a read past the bytes given is an ASan report); an accepted
 * header must re-encode to the same endpoints; a dump must un-escape to
 * the bytes it shows. Built by scripts/fuzz.sh (clang, -fsanitize=fuzzer);
 * tests/fuzz_replay.c runs the same checks over the seed corpus with gcc.
 */
#include <netinet/in.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) do { if (!(cond)) abort(); } while (0)

static bool
fuzz_same_ep(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return memcmp(a, b, sizeof(struct sockaddr_in)) == 0;
	return memcmp(a, b, sizeof(struct sockaddr_in6)) == 0;
}

static bool
fuzz_same_info(const struct proxy_info *a, const struct proxy_info *b)
{
	return a->version == b->version && a->command == b->command &&
	    a->family == b->family && a->socktype == b->socktype &&
	    a->usable == b->usable && a->header_len == b->header_len &&
	    memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
	    memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

/* Decode exactly data[0..len) from a heap copy of that size. */
static enum proxy_result
fuzz_decode(const uint8_t *data, size_t len, struct proxy_info *info,
    bool final)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	enum proxy_result r;

	FUZZ_CHECK(copy != NULL);
	if (len > 0)
		memcpy(copy, data, len);
	r = final ? proxy_decode_final(copy, len, info) :
	    proxy_decode(copy, len, info);
	free(copy);
	return r;
}

static void
fuzz_check_result(enum proxy_result r, const struct proxy_info *info,
    size_t size)
{
	FUZZ_CHECK(r >= PROXY_OK && r < PROXY_RESULT_COUNT);
	FUZZ_CHECK(proxy_result_names[r] != NULL);
	FUZZ_CHECK(r != PROXY_ERR_TRUNCATED);
	if (r == PROXY_NEED_MORE)
		FUZZ_CHECK(size < PROXY_HEADER_MAX);
	if (r != PROXY_OK) {
		FUZZ_CHECK(info->why != NULL && info->why[0] != '\0');
		FUZZ_CHECK(info->header_len == 0 && !info->usable);
		FUZZ_CHECK(info->src.ss_family == AF_UNSPEC);
		return;
	}
	FUZZ_CHECK(info->why == NULL);
	FUZZ_CHECK(info->header_len > 0 && info->header_len <= size &&
	    info->header_len <= PROXY_HEADER_MAX);
	FUZZ_CHECK(info->version == 1 || info->version == 2);
	if (info->version == 1)
		FUZZ_CHECK(info->header_len <= PROXY_V1_MAX &&
		    info->command == PROXY_CMD_PROXY);
	if (info->command == PROXY_CMD_LOCAL)
		FUZZ_CHECK(info->family == AF_UNSPEC && !info->usable);
	if (info->family == AF_UNSPEC)
		FUZZ_CHECK(info->src.ss_family == AF_UNSPEC &&
		    info->dst.ss_family == AF_UNSPEC && !info->usable);
	if (info->usable)
		FUZZ_CHECK(info->command == PROXY_CMD_PROXY &&
		    info->socktype == SOCK_STREAM &&
		    (info->family == AF_INET || info->family == AF_INET6) &&
		    (info->src.ss_family == AF_INET ||
		    info->src.ss_family == AF_INET6) &&
		    (info->dst.ss_family == AF_INET ||
		    info->dst.ss_family == AF_INET6));
}

/*
 * A reader feeding byte by byte stops at the first answer: it must come at
 * exactly the header's end for OK, never past 536 bytes, and be the answer
 * the whole input gets. Every earlier prefix is truncated at EOF.
 */
static void
fuzz_check_splits(const uint8_t *data, size_t size, enum proxy_result whole,
    const struct proxy_info *winfo)
{
	struct proxy_info info;
	enum proxy_result r = PROXY_NEED_MORE;
	size_t k;

	for (k = 0; k <= size && k <= PROXY_HEADER_MAX; k++) {
		r = fuzz_decode(data, k, &info, false);
		if (r != PROXY_NEED_MORE)
			break;
		FUZZ_CHECK(fuzz_decode(data, k, &info, true) ==
		    PROXY_ERR_TRUNCATED);
	}
	FUZZ_CHECK(r == whole);
	if (r == PROXY_NEED_MORE)
		return;
	FUZZ_CHECK(k <= PROXY_HEADER_MAX);
	if (r == PROXY_OK)
		FUZZ_CHECK(k == winfo->header_len && fuzz_same_info(&info,
		    winfo));
}

static void
fuzz_check_round_trip(const struct proxy_info *info)
{
	struct proxy_info again;
	uint8_t bin[64];
	char line[PROXY_V1_MAX + 1];
	int n;

	n = proxy_v2_encode(bin, sizeof(bin), (const struct sockaddr *)&info->src,
	    (const struct sockaddr *)&info->dst);
	FUZZ_CHECK(n > 0 && proxy_decode(bin, (size_t)n, &again) == PROXY_OK);
	FUZZ_CHECK(again.usable && fuzz_same_ep(&again.src, &info->src) &&
	    fuzz_same_ep(&again.dst, &info->dst));
	n = proxy_v1_encode(line, sizeof(line),
	    (const struct sockaddr *)&info->src,
	    (const struct sockaddr *)&info->dst);
	FUZZ_CHECK(n > 0 && proxy_decode((const uint8_t *)line, (size_t)n,
	    &again) == PROXY_OK);
	FUZZ_CHECK(again.usable && fuzz_same_ep(&again.src, &info->src) &&
	    fuzz_same_ep(&again.dst, &info->dst));
}

static int
fuzz_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static size_t
fuzz_esc_len(uint8_t c)
{
	if (c == '\\' || c == '"')
		return 2;
	return c >= 0x20 && c <= 0x7e ? 1 : 4;
}

/*
 * The dump un-escapes to a prefix of the input, and stops short of the
 * bytes it may show only when the next escape would not fit.
 */
static void
fuzz_check_escape(const uint8_t *data, size_t size, size_t cap, size_t max)
{
	char *out = malloc(cap > 0 ? cap : 1);
	size_t o = 0, m = 0, want = size < max ? size : max;

	FUZZ_CHECK(out != NULL);
	out[0] = 'x';
	proxy_escape(out, cap, data, size, max);
	if (cap == 0) {
		FUZZ_CHECK(out[0] == 'x');
		free(out);
		return;
	}
	FUZZ_CHECK(memchr(out, '\0', cap) != NULL);
	while (out[o] != '\0') {
		uint8_t c;

		if (out[o] == '\\' && out[o + 1] == 'x') {
			int hi = fuzz_hex(out[o + 2]), lo;

			FUZZ_CHECK(hi >= 0);
			lo = fuzz_hex(out[o + 3]);
			FUZZ_CHECK(lo >= 0);
			c = (uint8_t)(hi << 4 | lo);
			FUZZ_CHECK(fuzz_esc_len(c) == 4);
			o += 4;
		} else if (out[o] == '\\') {
			c = (uint8_t)out[o + 1];
			FUZZ_CHECK(c == '\\' || c == '"');
			o += 2;
		} else {
			c = (uint8_t)out[o];
			FUZZ_CHECK(c >= 0x20 && c <= 0x7e && c != '"');
			o++;
		}
		FUZZ_CHECK(m < want && data[m] == c);
		m++;
	}
	if (m < want)
		FUZZ_CHECK(o + fuzz_esc_len(data[m]) >= cap);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_info info, fin;
	enum proxy_result r, f;

	r = proxy_decode(data, size, &info);
	fuzz_check_result(r, &info, size);
	f = proxy_decode_final(data, size, &fin);
	FUZZ_CHECK(f == (r == PROXY_NEED_MORE ? PROXY_ERR_TRUNCATED : r));
	if (r == PROXY_OK)
		FUZZ_CHECK(fuzz_same_info(&info, &fin));
	fuzz_check_splits(data, size, r, &info);
	if (r == PROXY_OK && info.usable)
		fuzz_check_round_trip(&info);

	/* Dumps: the size a log line uses, and sizes the input picks. */
	fuzz_check_escape(data, size, 4 * 64 + 1, 64);
	if (size > 0)
		fuzz_check_escape(data, size, data[0] % 40, data[size - 1]);
	return 0;
}
