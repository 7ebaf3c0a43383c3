/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the PROXY decoder: any input must decode without a
 * fault, every prefix of an accepted header must ask for more, and an
 * accepted PROXY header must re-encode and decode to the same endpoints.
 * Build: clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *        tests/fuzz_proxy.c smtp/proxy.c
 */
#include <netinet/in.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
fuzz_same_ep(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return memcmp(a, b, sizeof(struct sockaddr_in)) == 0;
	return memcmp(a, b, sizeof(struct sockaddr_in6)) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_info info, again;
	enum proxy_result r, f;
	uint8_t bin[64];
	char line[PROXY_V1_MAX + 1];
	char esc[PROXY_HEADER_MAX * 4 + 1];
	int n;

	r = proxy_decode(data, size, &info);
	f = proxy_decode_final(data, size, &again);
	if (r > PROXY_ERR_MALFORMED || f == PROXY_NEED_MORE)
		abort();
	if (r == PROXY_NEED_MORE && (f != PROXY_ERR_TRUNCATED ||
	    size >= PROXY_HEADER_MAX))
		abort();
	proxy_escape(esc, sizeof(esc), data, size, PROXY_HEADER_MAX);
	if (strlen(esc) >= sizeof(esc))
		abort();
	if (r != PROXY_OK)
		return 0;
	if (info.header_len == 0 || info.header_len > size ||
	    info.header_len > PROXY_HEADER_MAX)
		abort();
	/* The decoder never looks past the header it accepts. */
	if (proxy_decode(data, info.header_len, &again) != PROXY_OK ||
	    again.header_len != info.header_len)
		abort();
	if (info.header_len > 1 &&
	    proxy_decode(data, info.header_len - 1, &again) != PROXY_NEED_MORE)
		abort();
	if (info.command != PROXY_CMD_PROXY)
		return 0;
	n = proxy_v2_encode(bin, sizeof(bin), (struct sockaddr *)&info.src,
	    (struct sockaddr *)&info.dst);
	if (n <= 0 || proxy_decode(bin, (size_t)n, &again) != PROXY_OK ||
	    !fuzz_same_ep(&again.src, &info.src) ||
	    !fuzz_same_ep(&again.dst, &info.dst))
		abort();
	n = proxy_v1_encode(line, sizeof(line), (struct sockaddr *)&info.src,
	    (struct sockaddr *)&info.dst);
	if (n <= 0 || proxy_decode((uint8_t *)line, (size_t)n, &again) !=
	    PROXY_OK || !fuzz_same_ep(&again.src, &info.src) ||
	    !fuzz_same_ep(&again.dst, &info.dst))
		abort();
	return 0;
}
