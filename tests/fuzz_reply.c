/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the SMTP reply parser: consume the input line by line
 * as a client would, whole and in two chunks, and check that both ways agree
 * and that every reported line is well-formed.
 * Build: clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *        tests/fuzz_reply.c smtp/reply.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_LINES 4096

struct fuzz_out {
	size_t n;
	enum reply_status last;
	int codes[FUZZ_MAX_LINES];
};

/* Feed buf with at most `chunk` new bytes visible per call. */
static void
fuzz_run(const char *buf, size_t size, size_t chunk, struct fuzz_out *o)
{
	struct reply_parser p;
	struct reply_line line;
	size_t off = 0, have = chunk < size ? chunk : size;

	reply_parser_init(&p);
	o->n = 0;
	for (;;) {
		size_t used = 0;
		enum reply_status st;

		st = reply_parse_line(&p, buf + off, have - off, &used, &line);
		if (st == REPLY_NEED_MORE) {
			if (used != 0)
				abort();
			if (have == size) {
				o->last = st;
				return;
			}
			have = have + chunk < size ? have + chunk : size;
			continue;
		}
		if (st != REPLY_LINE && st != REPLY_DONE) {
			if (used != 0)
				abort();
			o->last = st;
			return;
		}
		if (used == 0 || used > have - off || buf[off + used - 1] != '\n' ||
		    line.code < 100 || line.code > 599 ||
		    strlen(line.text) > REPLY_TEXT_MAX ||
		    line.last != (st == REPLY_DONE) ||
		    used > REPLY_LINE_MAX)
			abort();
		(void)reply_is_server_busy(&line);
		if (o->n < FUZZ_MAX_LINES)
			o->codes[o->n++] = line.code * 2 + line.last;
		off += used;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_out whole, parts;

	fuzz_run((const char *)data, size, size, &whole);
	fuzz_run((const char *)data, size, size / 2 + 1, &parts);
	/*
	 * Too long depends on how much was visible at once; everything else
	 * must not depend on how the bytes were cut.
	 */
	if (whole.last != REPLY_ERR_TOO_LONG && parts.last != REPLY_ERR_TOO_LONG &&
	    (whole.n != parts.n || whole.last != parts.last ||
	    memcmp(whole.codes, parts.codes, whole.n * sizeof(int)) != 0))
		abort();
	return 0;
}
