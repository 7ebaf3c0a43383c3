/* SPDX-License-Identifier: MIT */
/*
 * dialog: the SMTP dialog as a relay sees it go by, for the session's
 * verdict on how it ended. Commands are queued as they are sent and taken
 * off by final reply lines; only the verbs that change the framing (DATA,
 * BDAT, STARTTLS) or the meaning of an ending (QUIT) are told apart.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "smtp/dialog.h"

enum dialog_cmd {
	DIALOG_CMD_OTHER,
	DIALOG_CMD_GREETING,	/* not a command: the server speaks first */
	DIALOG_CMD_DATA,
	DIALOG_CMD_DOT,		/* the end of a DATA body */
	DIALOG_CMD_BDAT,
	DIALOG_CMD_BDAT_LAST,
	DIALOG_CMD_STARTTLS,
	DIALOG_CMD_QUIT,
};

/* Body end scanner positions (struct dialog.body_at). */
#define BODY_MID	0
#define BODY_BOL	1
#define BODY_DOT	2
#define BODY_DOTCR	3

static void
dialog_push(struct dialog *d, enum dialog_cmd c)
{
	/* Once the ring overflowed, later commands are only counted (as
	 * "other") until it drained, so replies still match in order. */
	if (d->nlost > 0 || d->nstored == DIALOG_PENDING_MAX) {
		d->nlost++;
		return;
	}
	d->pending[(d->head + d->nstored) % DIALOG_PENDING_MAX] = (uint8_t)c;
	d->nstored++;
}

static enum dialog_cmd
dialog_pop(struct dialog *d)
{
	enum dialog_cmd c;

	if (d->nstored == 0) {
		if (d->nlost > 0)
			d->nlost--;
		return DIALOG_CMD_OTHER;
	}
	c = (enum dialog_cmd)d->pending[d->head];
	d->head = (d->head + 1) % DIALOG_PENDING_MAX;
	d->nstored--;
	return c;
}

static unsigned
dialog_npending(const struct dialog *d)
{
	return d->nstored + d->nlost;
}

void
dialog_init(struct dialog *d, bool opaque)
{
	memset(d, 0, sizeof(*d));
	d->cstate = opaque ? DIALOG_C_OPAQUE : DIALOG_C_COMMAND;
	dialog_push(d, DIALOG_CMD_GREETING);
}

static bool
dialog_verb_is(const struct dialog *d, size_t len, const char *verb)
{
	size_t vl = strlen(verb);

	if (len < vl || strncasecmp(d->verb, verb, vl) != 0)
		return false;
	/* The verb alone, or followed by a space or the line end. */
	return len == vl || d->verb[vl] == ' ' || d->verb[vl] == '\r';
}

/* "BDAT <size> [LAST]": the chunk size, or -1 when not a valid line. */
static int
dialog_parse_bdat(const struct dialog *d, size_t len, uint64_t *size,
    bool *last)
{
	size_t i = 5;
	int digits = 0;

	*size = 0;
	*last = false;
	while (i < len && d->verb[i] >= '0' && d->verb[i] <= '9') {
		if (++digits > 12)
			return -1;
		*size = *size * 10 + (uint64_t)(d->verb[i] - '0');
		i++;
	}
	if (digits == 0)
		return -1;
	while (i < len && d->verb[i] == ' ')
		i++;
	if (i + 4 <= len && strncasecmp(d->verb + i, "LAST", 4) == 0)
		*last = true;
	return 0;
}

/* A whole command line went by (its first bytes are in d->verb). */
static void
dialog_command(struct dialog *d)
{
	size_t len = d->cline_len < DIALOG_VERB_MAX ? d->cline_len :
	    DIALOG_VERB_MAX;
	uint64_t size;
	bool last;

	d->cline_len = 0;
	if (dialog_verb_is(d, len, "DATA")) {
		dialog_push(d, DIALOG_CMD_DATA);
		/* The client must wait for 354; what it sends next is the
		 * body unless the server refuses (then we go back). */
		d->cstate = DIALOG_C_BODY;
		d->body_at = BODY_BOL;
		d->body_blind = false;
		return;
	}
	if (len > 5 && strncasecmp(d->verb, "BDAT ", 5) == 0 &&
	    dialog_parse_bdat(d, len, &size, &last) == 0) {
		dialog_push(d, last ? DIALOG_CMD_BDAT_LAST : DIALOG_CMD_BDAT);
		d->message_open = true;
		if (size > 0) {
			d->chunk_left = size;
			d->cstate = DIALOG_C_CHUNK;
		}
		return;
	}
	if (dialog_verb_is(d, len, "STARTTLS")) {
		dialog_push(d, DIALOG_CMD_STARTTLS);
		return;
	}
	if (dialog_verb_is(d, len, "QUIT")) {
		d->quit_sent = true;
		dialog_push(d, DIALOG_CMD_QUIT);
		return;
	}
	dialog_push(d, DIALOG_CMD_OTHER);
}

/* Scan a DATA body for "." alone on a line; returns the bytes used. */
static size_t
dialog_body(struct dialog *d, const char *p, size_t n)
{
	const char *lf;
	size_t i = 0;

	while (i < n) {
		unsigned char ch = (unsigned char)p[i];

		switch (d->body_at) {
		case BODY_MID:
			lf = memchr(p + i, '\n', n - i);
			if (lf == NULL)
				return n;
			i = (size_t)(lf - p) + 1;
			d->body_at = BODY_BOL;
			continue;
		case BODY_BOL:
			d->body_at = ch == '.' ? BODY_DOT : ch == '\n' ?
			    BODY_BOL : BODY_MID;
			break;
		case BODY_DOT:
			if (ch == '\n')
				goto end;
			d->body_at = ch == '\r' ? BODY_DOTCR : BODY_MID;
			break;
		case BODY_DOTCR:
			if (ch == '\n')
				goto end;
			d->body_at = BODY_MID;
			break;
		}
		i++;
	}
	return n;
end:
	dialog_push(d, DIALOG_CMD_DOT);
	d->cstate = DIALOG_C_COMMAND;
	d->cline_len = 0;
	return i + 1;
}

void
dialog_client(struct dialog *d, const char *p, size_t n)
{
	const char *lf;
	size_t take;

	while (n > 0) {
		switch (d->cstate) {
		case DIALOG_C_OPAQUE:
			return;
		case DIALOG_C_CHUNK:
			take = d->chunk_left < n ? (size_t)d->chunk_left : n;
			d->chunk_left -= take;
			if (d->chunk_left == 0)
				d->cstate = DIALOG_C_COMMAND;
			break;
		case DIALOG_C_BODY:
			take = dialog_body(d, p, n);
			break;
		default:
			lf = memchr(p, '\n', n);
			take = lf != NULL ? (size_t)(lf - p) + 1 : n;
			if (d->cline_len < DIALOG_VERB_MAX) {
				size_t room = DIALOG_VERB_MAX - d->cline_len;

				memcpy(d->verb + d->cline_len, p,
				    take < room ? take : room);
			}
			d->cline_len += take;
			if (lf != NULL)
				dialog_command(d);
			break;
		}
		p += take;
		n -= take;
	}
}

void
dialog_client_unseen(struct dialog *d, uint64_t n)
{
	switch (d->cstate) {
	case DIALOG_C_CHUNK:
		if (n < d->chunk_left) {
			d->chunk_left -= n;
			return;
		}
		/* What followed the chunk is unknown: assume a clean start. */
		d->chunk_left = 0;
		d->cstate = DIALOG_C_COMMAND;
		d->cline_len = 0;
		return;
	case DIALOG_C_BODY:
		/* The end line may be in there: the server's reply to it
		 * will tell (dialog_reply). */
		d->body_blind = true;
		d->body_at = BODY_MID;
		return;
	case DIALOG_C_COMMAND:
		d->cline_len = 0;
		return;
	default:
		return;
	}
}

/* A final reply line: it answers the oldest command in flight. */
static void
dialog_reply(struct dialog *d, int code)
{
	bool in_body = d->cstate == DIALOG_C_BODY;
	enum dialog_cmd c;

	if (dialog_npending(d) == 0) {
		/* Nothing asked: the end of a body we did not see whole
		 * (its "." went by unseen), or the server speaking up. */
		if (in_body && d->message_open) {
			d->cstate = DIALOG_C_COMMAND;
			d->cline_len = 0;
			d->message_open = false;
		}
		if (code == 221)
			d->goodbye = true;
		return;
	}
	c = dialog_pop(d);
	switch (c) {
	case DIALOG_CMD_DATA:
		if (code == 354) {
			d->message_open = true;
		} else if (in_body) {
			d->cstate = DIALOG_C_COMMAND;
			d->cline_len = 0;
		}
		break;
	case DIALOG_CMD_DOT:
	case DIALOG_CMD_BDAT_LAST:
		d->message_open = false;
		break;
	case DIALOG_CMD_BDAT:
		if (code < 200 || code > 299)
			d->message_open = false;
		break;
	case DIALOG_CMD_STARTTLS:
		if (code == 220)
			d->cstate = DIALOG_C_OPAQUE;
		break;
	default:
		break;
	}
	if (code == 221)
		d->goodbye = true;
}

/* A whole line from the server is in d->sline (d->sline_len bytes). */
static void
dialog_server_line(struct dialog *d)
{
	size_t len = d->sline_len < DIALOG_REPLY_MAX ? d->sline_len :
	    DIALOG_REPLY_MAX;
	const char *l = d->sline;
	int code;

	/* The line end went in as blanks. */
	while (len > 0 && l[len - 1] == ' ' && d->sline_len <= DIALOG_REPLY_MAX)
		len--;
	d->sline[len] = '\0';
	d->sline_len = 0;
	if (len < 3 || !isdigit((unsigned char)l[0]) ||
	    !isdigit((unsigned char)l[1]) || !isdigit((unsigned char)l[2]))
		return;
	if (len > 3 && l[3] == '-')
		return;		/* more lines of this reply follow */
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	dialog_reply(d, code);
}

void
dialog_server(struct dialog *d, const char *p, size_t n)
{
	const char *lf;
	size_t take, keep;

	if (d->cstate == DIALOG_C_OPAQUE)
		return;
	while (n > 0) {
		lf = memchr(p, '\n', n);
		take = lf != NULL ? (size_t)(lf - p) + 1 : n;
		if (d->sline_len < DIALOG_REPLY_MAX) {
			keep = DIALOG_REPLY_MAX - d->sline_len;
			if (keep > take)
				keep = take;
			/* Kept for log lines: control bytes (and the CR LF)
			 * become blanks. */
			for (size_t i = 0; i < keep; i++)
				d->sline[d->sline_len + i] =
				    (unsigned char)p[i] < 0x20 ? ' ' : p[i];
			d->sline[d->sline_len + keep] = '\0';
		}
		d->sline_len += take;
		if (lf != NULL)
			dialog_server_line(d);
		/* STARTTLS: what follows its 220 is the TLS handshake. */
		if (d->cstate == DIALOG_C_OPAQUE)
			return;
		p += take;
		n -= take;
	}
}

void
dialog_server_unseen(struct dialog *d, uint64_t n)
{
	(void)n;
	d->sline_len = 0;
}

bool
dialog_may_skip(const struct dialog *d, bool from_client)
{
	if (d->cstate == DIALOG_C_OPAQUE)
		return true;
	return from_client && (d->cstate == DIALOG_C_BODY ||
	    d->cstate == DIALOG_C_CHUNK);
}

bool
dialog_goodbye(const struct dialog *d)
{
	return d->goodbye;
}

bool
dialog_opaque(const struct dialog *d)
{
	return d->cstate == DIALOG_C_OPAQUE;
}

bool
dialog_quiet(const struct dialog *d)
{
	return d->cstate == DIALOG_C_COMMAND && d->cline_len == 0 &&
	    !d->message_open && (dialog_npending(d) == 0 || d->quit_sent);
}

bool
dialog_in_message(const struct dialog *d)
{
	return d->message_open || d->cstate == DIALOG_C_BODY ||
	    d->cstate == DIALOG_C_CHUNK;
}

bool
dialog_server_at_line_start(const struct dialog *d)
{
	return d->sline_len == 0;
}

const char *
dialog_last_reply(const struct dialog *d)
{
	return d->sline;
}
