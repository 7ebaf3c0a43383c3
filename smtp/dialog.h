/* SPDX-License-Identifier: MIT */
/*
 * dialog: follows the SMTP dialog a session relays, both directions, to say
 * how it stood when a side went away (SPEC.md "Session log": ok only after
 * 221 or a client hang-up with every command answered and no message open).
 * It never changes a byte; it only reads what passes. Commands are matched
 * to replies in order (pipelining), DATA bodies are scanned for the end
 * line, BDAT chunks are skipped by their size, and after STARTTLS the dialog
 * is opaque. Bytes the relay moved without looking (spliced bodies) are
 * reported by count: within a body the end line is then recognised by the
 * server's reply instead.
 */
#ifndef SMTPFRONT_DIALOG_H
#define SMTPFRONT_DIALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIALOG_PENDING_MAX	32	/* commands remembered in flight */
#define DIALOG_REPLY_MAX	120	/* text kept of the last reply line */

enum dialog_client_state {
	DIALOG_C_COMMAND,	/* command lines */
	DIALOG_C_BODY,		/* a DATA body, until "." alone on a line */
	DIALOG_C_CHUNK,		/* a BDAT chunk, by its size */
	DIALOG_C_OPAQUE,	/* after STARTTLS (or implicit TLS): not SMTP */
};

/*
 * One sits in every session, so it is kept small: a command line is parsed
 * as it goes by (nothing of it is stored but what it turned out to be and,
 * for BDAT, the size), the commands in flight are 4-bit kinds.
 */
struct dialog {
	uint64_t chunk_left;		/* BDAT bytes still to come (while a
					 * BDAT line is parsed: its size) */
	uint32_t nlost;			/* commands past the ring's size */
	/* client -> server */
	uint8_t cstate;			/* enum dialog_client_state */
	uint8_t body_at;		/* body end scanner: 0 mid-line, 1 BOL,
					 * 2 "." at BOL, 3 ".\r" at BOL */
	uint8_t cmd_at;			/* command line parser: where it is */
	uint8_t cmd_pos;		/* bytes of the current word */
	uint8_t cmd_kind;		/* verbs still possible, then what the
					 * line is */
	/* commands awaiting a reply, oldest first: kinds, two a byte */
	uint8_t head;
	uint8_t nstored;		/* in the ring, from `head` */
	uint8_t sline_len;		/* bytes of the reply line so far,
					 * DIALOG_REPLY_MAX + 1 at most */
	bool body_blind : 1;		/* body bytes went by unseen */
	bool message_open : 1;		/* between 354/first BDAT and the end */
	bool quit_sent : 1;
	bool goodbye : 1;		/* a final 221 was relayed */
	uint8_t pending[DIALOG_PENDING_MAX / 2];
	/* server -> client */
	char sline[DIALOG_REPLY_MAX + 1];	/* the newest line, whole or
					 * not yet: what the server said last */
};

/* A fresh dialog: the greeting is the first reply expected. `opaque` for
 * an implicit-TLS listener, where nothing can be followed. */
void dialog_init(struct dialog *d, bool opaque);
/* Bytes relayed client -> server / server -> client, in order. */
void dialog_client(struct dialog *d, const char *p, size_t n);
void dialog_server(struct dialog *d, const char *p, size_t n);
/* n bytes went that way without being looked at (splice). */
void dialog_client_unseen(struct dialog *d, uint64_t n);
void dialog_server_unseen(struct dialog *d, uint64_t n);

/*
 * May bytes from this side go by unseen (spliced) without losing track?
 * Only a message body from the client, or anything once opaque: commands
 * and replies are always looked at.
 */
bool dialog_may_skip(const struct dialog *d, bool from_client);
/* The server said 221 (or the dialog is opaque and nothing can be said). */
bool dialog_goodbye(const struct dialog *d);
bool dialog_opaque(const struct dialog *d);
/*
 * Could the client hang up now without leaving anything half done? No
 * partial command line, no message open, every command answered (a QUIT
 * the client sent counts as answered: it asked to end).
 */
bool dialog_quiet(const struct dialog *d);
/* In a DATA body or BDAT chunk, or a message not yet acknowledged. */
bool dialog_in_message(const struct dialog *d);
/* The server's output stands at the start of a line (nothing half sent). */
bool dialog_server_at_line_start(const struct dialog *d);
/* The newest reply line from the server, its start if it is not whole
 * yet ("" when none); control bytes blanked, at most DIALOG_REPLY_MAX. */
const char *dialog_last_reply(const struct dialog *d);

#endif
