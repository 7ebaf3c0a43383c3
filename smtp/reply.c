/* SPDX-License-Identifier: MIT */
/*
 * Strict SMTP reply-line parser: one "NNN[ -]text" line at a time from
 * caller bytes, with the multi-line reply state in struct reply_parser, and
 * the greeting gate's "server busy" test.
 */
#include <string.h>

#include "smtp/reply.h"

const char *const reply_status_names[] = {
	[REPLY_NEED_MORE] = "need more",
	[REPLY_LINE] = "line",
	[REPLY_DONE] = "done",
	[REPLY_ERR_SYNTAX] = "syntax error",
	[REPLY_ERR_TOO_LONG] = "line too long",
};

void
reply_parser_init(struct reply_parser *p)
{
	p->code = 0;
}

/*
 * Can buf[0..n) (no line end in it) still begin a reply line? Checking the
 * prefix lets a peer that sends "hello" without a newline fail at once.
 */
static bool
reply_prefix_ok(const char *buf, size_t n)
{
	if (n > 0 && (buf[0] < '1' || buf[0] > '5'))
		return false;
	for (size_t i = 1; i < n && i < 3; i++)
		if (buf[i] < '0' || buf[i] > '9')
			return false;
	/* A CR here is only known to be lone once the next byte is seen. */
	if (n > 3 && buf[3] != ' ' && buf[3] != '-' && buf[3] != '\r')
		return false;
	return true;
}

enum reply_status
reply_parse_line(struct reply_parser *p, const char *buf, size_t len,
    size_t *consumed, struct reply_line *out)
{
	size_t scan = len < REPLY_LINE_MAX ? len : REPLY_LINE_MAX;
	const char *lf = memchr(buf, '\n', scan);
	size_t end, tstart, tlen;
	int code;

	*consumed = 0;
	if (lf == NULL) {
		if (!reply_prefix_ok(buf, scan < 4 ? scan : 4))
			return REPLY_ERR_SYNTAX;
		return len >= REPLY_LINE_MAX ? REPLY_ERR_TOO_LONG :
		    REPLY_NEED_MORE;
	}
	end = (size_t)(lf - buf);
	if (end > 0 && buf[end - 1] == '\r')
		end--;
	if (end < 3 || !reply_prefix_ok(buf, end < 4 ? end : 4))
		return REPLY_ERR_SYNTAX;
	/* A NUL or a lone CR would make the text ambiguous in logs. */
	for (size_t i = 3; i < end; i++)
		if (buf[i] == '\0' || buf[i] == '\r')
			return REPLY_ERR_SYNTAX;
	code = (buf[0] - '0') * 100 + (buf[1] - '0') * 10 + (buf[2] - '0');
	if (p->code != 0 && p->code != code)
		return REPLY_ERR_SYNTAX;

	out->code = code;
	out->last = end == 3 || buf[3] == ' ';
	tstart = end > 3 ? 4 : 3;
	tlen = end - tstart;
	if (tlen > REPLY_TEXT_MAX)
		tlen = REPLY_TEXT_MAX;
	memcpy(out->text, buf + tstart, tlen);
	out->text[tlen] = '\0';
	*consumed = (size_t)(lf - buf) + 1;
	if (out->last) {
		p->code = 0;
		return REPLY_DONE;
	}
	p->code = code;
	return REPLY_LINE;
}

bool
reply_is_server_busy(const struct reply_line *line)
{
	const char *t = line->text;

	return line->code == 421 && strncmp(t, "4.3.", 4) == 0 &&
	    t[4] >= '0' && t[4] <= '9';
}
