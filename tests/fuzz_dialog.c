/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the SMTP dialog follower: an input is a script of
 * steps (client bytes, server bytes, bytes that went by unseen either way),
 * played whole, one byte at a time and cut in three; after every step all
 * three must say the same about the dialog (it keeps no line, so how the
 * bytes were cut must not matter), and the last reply stays a short,
 * printable string.
 * Build: clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *        tests/fuzz_dialog.c smtp/dialog.c
 *
 * A step: one byte `op` (op % 4: 0 client bytes, 1 server bytes, 2 client
 * unseen, 3 server unseen), then for bytes a length byte and that many
 * bytes, for unseen a 16-bit little-endian count.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/dialog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_view {
	bool goodbye, quiet, in_message, opaque, at_line_start;
	bool skip_client, skip_server;
	char last[DIALOG_REPLY_MAX + 1];
};

static void
fuzz_view(const struct dialog *d, struct fuzz_view *v)
{
	const char *last = dialog_last_reply(d);
	size_t n = strlen(last);

	if (n > DIALOG_REPLY_MAX)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)last[i] < 0x20)
			abort();
	memset(v, 0, sizeof(*v));
	v->goodbye = dialog_goodbye(d);
	v->quiet = dialog_quiet(d);
	v->in_message = dialog_in_message(d);
	v->opaque = dialog_opaque(d);
	v->at_line_start = dialog_server_at_line_start(d);
	v->skip_client = dialog_may_skip(d, true);
	v->skip_server = dialog_may_skip(d, false);
	memcpy(v->last, last, n);
}

static void
fuzz_feed(struct dialog *d, bool client, const uint8_t *p, size_t n,
    size_t cut)
{
	while (n > 0) {
		size_t k = cut < n ? cut : n;

		if (client)
			dialog_client(d, (const char *)p, k);
		else
			dialog_server(d, (const char *)p, k);
		p += k;
		n -= k;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dialog d[3];
	struct fuzz_view v[3];
	size_t off = 1;

	if (size < 1)
		return 0;
	for (int m = 0; m < 3; m++)
		dialog_init(&d[m], data[0] & 1);	/* implicit TLS or not */
	while (off < size) {
		uint8_t op = data[off++];

		if (op % 4 >= 2) {
			uint64_t n;

			if (size - off < 2)
				break;
			n = (uint64_t)data[off] | (uint64_t)data[off + 1] << 8;
			off += 2;
			for (int m = 0; m < 3; m++) {
				if (op % 4 == 2)
					dialog_client_unseen(&d[m], n);
				else
					dialog_server_unseen(&d[m], n);
			}
		} else {
			size_t n;

			if (off == size)
				break;
			n = data[off++];
			if (n > size - off)
				n = size - off;
			fuzz_feed(&d[0], op % 4 == 0, data + off, n, n);
			fuzz_feed(&d[1], op % 4 == 0, data + off, n, 1);
			fuzz_feed(&d[2], op % 4 == 0, data + off, n,
			    n / 3 + 1);
			off += n;
		}
		for (int m = 0; m < 3; m++)
			fuzz_view(&d[m], &v[m]);
		if (memcmp(&v[0], &v[1], sizeof(v[0])) != 0 ||
		    memcmp(&v[0], &v[2], sizeof(v[0])) != 0)
			abort();
	}
	return 0;
}
