/* SPDX-License-Identifier: MIT */
/*
 * dialog: the SMTP dialog as a relay sees it go by, for the session's
 * verdict on how it ended. Commands are queued as they are sent and taken
 * off by final reply lines; only the verbs that change the framing (DATA,
 * BDAT, STARTTLS) or the meaning of an ending (QUIT) are told apart. A
 * command line is parsed byte by byte while it may still be one of those
 * and skipped to its LF once it cannot, so its length does not matter and
 * none of it is kept. Line ends are what Postfix takes (see dialog_blank).
 */
#include <ctype.h>
#include <string.h>

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
};				/* 4 bits each in struct dialog.pending */
_Static_assert(DIALOG_CMD_QUIT <= 0xf, "a command kind is 4 bits");
_Static_assert(DIALOG_PENDING_MAX % 2 == 0 && DIALOG_PENDING_MAX < 256,
    "the ring's counters are bytes");
_Static_assert(DIALOG_REPLY_MAX + 1 < 256, "sline_len is a byte");

/* Body end scanner positions (struct dialog.body_at). */
#define BODY_MID	0
#define BODY_BOL	1
#define BODY_DOT	2
#define BODY_DOTCR	3

/*
 * The command line parser (struct dialog.cmd_at): where in the line it
 * stands. A line is "[blanks] VERB [blanks ARGS] LF"; only DATA (no
 * arguments), BDAT <size> [LAST], STARTTLS and QUIT matter, anything else
 * is skipped to its LF with memchr, so lines of any length cost nothing.
 */
enum dialog_cmd_at {
	CMD_START,	/* nothing of this line yet */
	CMD_LEAD,	/* blanks before the verb */
	CMD_VERB,	/* in the verb: cmd_kind = the verbs still possible */
	CMD_SIZE0,	/* BDAT, blanks before the size */
	CMD_SIZE,	/* in the size (chunk_left accumulates it) */
	CMD_LAST0,	/* blanks after the size */
	CMD_LAST,	/* in the word after the size: cmd_pos bytes of LAST */
	CMD_TAIL,	/* only blanks may follow: cmd_kind says what it is */
	CMD_SKIP,	/* the rest does not matter: cmd_kind says what it is */
};

/* The verbs told apart, by bit in cmd_kind while in CMD_VERB. */
static const struct {
	const char *name;
	uint8_t len;
} dialog_verbs[] = {
	{ "DATA", 4 }, { "BDAT", 4 }, { "STARTTLS", 8 }, { "QUIT", 4 },
};
#define VERB_DATA	0x1
#define VERB_BDAT	0x2
#define VERB_STARTTLS	0x4
#define VERB_QUIT	0x8
#define VERB_ALL	0xf

#define BDAT_SIZE_MAX	INT64_MAX	/* Postfix takes it as an off_t */

static void
dialog_push(struct dialog *d, enum dialog_cmd c)
{
	unsigned at, shift;

	/* Once the ring overflowed, later commands are only counted (as
	 * "other") until it drained, so replies still match in order. */
	if (d->nlost > 0 || d->nstored == DIALOG_PENDING_MAX) {
		d->nlost++;
		return;
	}
	at = (d->head + d->nstored) % DIALOG_PENDING_MAX;
	shift = (at & 1) * 4;
	d->pending[at / 2] = (uint8_t)((d->pending[at / 2] & ~(0xfu << shift)) |
	    ((unsigned)c << shift));
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
	c = (enum dialog_cmd)((d->pending[d->head / 2] >>
	    ((d->head & 1) * 4)) & 0xf);
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

/*
 * Line ends as Postfix 3.7's smtpd takes them (smtp_get()): a command line
 * ends at LF, with or without the CR before it (bare LF is accepted:
 * smtpd_forbid_bare_newline is "no" by default on Debian 12's 3.7.x, and
 * where it is set the server's reply and close tell us so). A CR elsewhere
 * is taken as a blank, like the space and tab between words.
 */
static bool
dialog_blank(unsigned char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static void
dialog_cmd_decided(struct dialog *d, enum dialog_cmd kind, uint8_t at)
{
	d->cmd_kind = (uint8_t)kind;
	d->cmd_at = at;
}

/* The verb ended (a blank or the LF) after cmd_pos bytes. */
static void
dialog_verb_done(struct dialog *d)
{
	unsigned match = 0;

	for (unsigned i = 0; i < sizeof(dialog_verbs) / sizeof(dialog_verbs[0]);
	    i++)
		if ((d->cmd_kind & (1u << i)) && dialog_verbs[i].len ==
		    d->cmd_pos)
			match = 1u << i;
	switch (match) {
	case VERB_DATA:
		/* "DATA" takes no argument (Postfix: 501 Syntax: DATA). */
		dialog_cmd_decided(d, DIALOG_CMD_DATA, CMD_TAIL);
		break;
	case VERB_BDAT:
		d->cmd_at = CMD_SIZE0;
		break;
	case VERB_STARTTLS:
		/* Its reply decides (220 or not), whatever follows. */
		dialog_cmd_decided(d, DIALOG_CMD_STARTTLS, CMD_SKIP);
		break;
	case VERB_QUIT:
		dialog_cmd_decided(d, DIALOG_CMD_QUIT, CMD_SKIP);
		break;
	default:
		dialog_cmd_decided(d, DIALOG_CMD_OTHER, CMD_SKIP);
		break;
	}
}

/* One byte of a command line, not its LF. */
static void
dialog_cmd_byte(struct dialog *d, unsigned char ch)
{
	bool blank = dialog_blank(ch);
	unsigned up = (unsigned)toupper(ch);

	switch (d->cmd_at) {
	case CMD_START:
	case CMD_LEAD:
		if (blank) {
			d->cmd_at = CMD_LEAD;
			return;
		}
		d->cmd_at = CMD_VERB;
		d->cmd_kind = VERB_ALL;
		d->cmd_pos = 0;
		/* FALLTHROUGH */
	case CMD_VERB:
		if (blank) {
			dialog_verb_done(d);
			return;
		}
		for (unsigned i = 0; i < sizeof(dialog_verbs) /
		    sizeof(dialog_verbs[0]); i++)
			if (d->cmd_pos >= dialog_verbs[i].len ||
			    (unsigned char)dialog_verbs[i].name[d->cmd_pos] != up)
				d->cmd_kind &= (uint8_t)~(1u << i);
		d->cmd_pos++;
		if (d->cmd_kind == 0)
			dialog_cmd_decided(d, DIALOG_CMD_OTHER, CMD_SKIP);
		return;
	case CMD_SIZE0:
		if (blank)
			return;
		d->chunk_left = 0;
		d->cmd_at = CMD_SIZE;
		/* FALLTHROUGH */
	case CMD_SIZE:
		if (blank) {
			d->cmd_at = CMD_LAST0;
			return;
		}
		/* Digits only, and no more than an off_t holds: otherwise
		 * Postfix answers 501 and reads no chunk. */
		if (ch < '0' || ch > '9' || d->chunk_left >
		    (BDAT_SIZE_MAX - (uint64_t)(ch - '0')) / 10) {
			dialog_cmd_decided(d, DIALOG_CMD_OTHER, CMD_SKIP);
			return;
		}
		d->chunk_left = d->chunk_left * 10 + (uint64_t)(ch - '0');
		return;
	case CMD_LAST0:
		if (blank)
			return;
		d->cmd_at = CMD_LAST;
		d->cmd_pos = 0;
		/* FALLTHROUGH */
	case CMD_LAST:
		if (blank) {
			if (d->cmd_pos == 4)
				dialog_cmd_decided(d, DIALOG_CMD_BDAT_LAST,
				    CMD_TAIL);
			else
				dialog_cmd_decided(d, DIALOG_CMD_OTHER,
				    CMD_SKIP);
			return;
		}
		if (d->cmd_pos < 4 && up == (unsigned)"LAST"[d->cmd_pos])
			d->cmd_pos++;
		else
			dialog_cmd_decided(d, DIALOG_CMD_OTHER, CMD_SKIP);
		return;
	case CMD_TAIL:
		if (!blank)
			dialog_cmd_decided(d, DIALOG_CMD_OTHER, CMD_SKIP);
		return;
	default:
		return;
	}
}

/* The LF of a command line: what the line was, and what follows it. */
static void
dialog_command(struct dialog *d)
{
	enum dialog_cmd kind = DIALOG_CMD_OTHER;
	uint64_t size = d->chunk_left;

	if (d->cmd_at == CMD_VERB)
		dialog_verb_done(d);
	switch (d->cmd_at) {
	case CMD_SIZE:
	case CMD_LAST0:
		kind = DIALOG_CMD_BDAT;
		break;
	case CMD_LAST:
		if (d->cmd_pos == 4)
			kind = DIALOG_CMD_BDAT_LAST;
		break;
	case CMD_TAIL:
	case CMD_SKIP:
		kind = (enum dialog_cmd)d->cmd_kind;
		break;
	default:
		break;		/* an empty line, or BDAT without a size */
	}
	d->cmd_at = CMD_START;
	d->chunk_left = 0;
	switch (kind) {
	case DIALOG_CMD_DATA:
		dialog_push(d, DIALOG_CMD_DATA);
		/* The client must wait for 354; what it sends next is the
		 * body unless the server refuses (then we go back). */
		d->cstate = DIALOG_C_BODY;
		d->body_at = BODY_BOL;
		d->body_blind = false;
		return;
	case DIALOG_CMD_BDAT:
	case DIALOG_CMD_BDAT_LAST:
		/* Postfix reads the chunk even when it refuses it. */
		dialog_push(d, kind);
		d->message_open = true;
		if (size > 0) {
			d->chunk_left = size;
			d->cstate = DIALOG_C_CHUNK;
		}
		return;
	case DIALOG_CMD_QUIT:
		d->quit_sent = true;
		dialog_push(d, DIALOG_CMD_QUIT);
		return;
	default:
		dialog_push(d, kind);
		return;
	}
}

/* Command bytes: parsed as they come, up to and with the first LF;
 * returns the bytes used. */
static size_t
dialog_command_bytes(struct dialog *d, const char *p, size_t n)
{
	const char *lf;

	for (size_t i = 0; i < n; i++) {
		if (d->cmd_at == CMD_SKIP) {
			lf = memchr(p + i, '\n', n - i);
			if (lf == NULL)
				return n;
			i = (size_t)(lf - p);
		}
		if (p[i] == '\n') {
			dialog_command(d);
			return i + 1;
		}
		dialog_cmd_byte(d, (unsigned char)p[i]);
	}
	return n;
}

/* Scan a DATA body for "." alone on a line; returns the bytes used. The
 * end is "." then LF, with or without a CR before the LF, at the start of
 * a line begun by LF (CR LF or bare): Postfix 3.7's smtpd reads the body
 * with smtp_get() too and so ends it there (with smtpd_forbid_bare_newline
 * set it would refuse the message instead, and its reply tells). */
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
	d->cmd_at = CMD_START;
	return i + 1;
}

void
dialog_client(struct dialog *d, const char *p, size_t n)
{
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
			take = dialog_command_bytes(d, p, n);
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
		d->cmd_at = CMD_START;
		return;
	case DIALOG_C_BODY:
		/* The end line may be in there: the server's reply to it
		 * will tell (dialog_reply). */
		d->body_blind = true;
		d->body_at = BODY_MID;
		return;
	case DIALOG_C_COMMAND:
		d->cmd_at = CMD_START;
		d->chunk_left = 0;
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
			d->cmd_at = CMD_START;
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
			d->cmd_at = CMD_START;
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
	size_t take, keep, total;

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
		/* Counted up to one past the cap: enough to tell a line
		 * that was cut. */
		total = d->sline_len + take;
		d->sline_len = (uint8_t)(total > DIALOG_REPLY_MAX ?
		    DIALOG_REPLY_MAX + 1 : total);
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
	return d->cstate == DIALOG_C_COMMAND && d->cmd_at == CMD_START &&
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
