/* SPDX-License-Identifier: MIT */
/*
 * SMTP reply-line parser (RFC 5321 4.2): a strict, incremental reader of
 * "NNN-text" / "NNN text" lines. Pure code over caller-supplied bytes, so it
 * serves the health checks and the greeting gate alike.
 */
#ifndef SMTPFRONT_REPLY_H
#define SMTPFRONT_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define REPLY_LINE_MAX 1000	/* RFC 5321: 512 octets, tolerate more */
#define REPLY_TEXT_MAX 512	/* text kept for reasons / logs (truncated) */

enum reply_status {
	REPLY_NEED_MORE,	/* no complete line yet */
	REPLY_LINE,		/* one line parsed; not the last of its reply */
	REPLY_DONE,		/* the last line ("NNN " or "NNN") of a reply */
	REPLY_ERR_SYNTAX,	/* not "NNN[ -]..." or code changed mid-reply */
	REPLY_ERR_TOO_LONG,	/* no line end within REPLY_LINE_MAX */
};
extern const char *const reply_status_names[];

struct reply_line {
	int code;			/* 100..599 */
	bool last;			/* separator was ' ' (or none) */
	char text[REPLY_TEXT_MAX + 1];	/* after the separator, no CR/LF, NUL-term */
};

/* Incremental reader state across lines of one multi-line reply. */
struct reply_parser {
	int code;			/* code of the reply in progress, 0 if none */
};

void reply_parser_init(struct reply_parser *p);

/*
 * Parse one line from buf[0..len). Accepts CRLF and bare LF line ends.
 * On REPLY_LINE / REPLY_DONE, *consumed is the bytes of the line including
 * its end, and *out is filled. On NEED_MORE *consumed is 0. Errors leave
 * *consumed 0.
 */
enum reply_status reply_parse_line(struct reply_parser *p, const char *buf,
    size_t len, size_t *consumed, struct reply_line *out)
    __attribute__((warn_unused_result));

/*
 * The greeting gate's decision on a backend's first reply line: true when
 * it means "this server cannot take a session now, try another" (421 4.3.x,
 * SPEC.md "Greeting-gated failover"), false for any answer about this client
 * (220, 220-, 421 4.7.x, 421 without an enhanced code, 5xx ...).
 */
bool reply_is_server_busy(const struct reply_line *line);

#endif
