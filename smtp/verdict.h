/* SPDX-License-Identifier: MIT */
/*
 * verdict: the two judgements a session makes, as pure functions over what
 * it saw. The greeting gate's (is the backend's first line relayed, or a
 * reason to try the next server unseen by the client; SPEC.md
 * "Greeting-gated failover") and the session's `result=` (SPEC.md
 * "Session log": how the SMTP dialog ended, who left first and why).
 */
#ifndef SMTPFRONT_VERDICT_H
#define SMTPFRONT_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp/dialog.h"
#include "smtp/reply.h"

/* A first line longer than this is passed on as it is. */
#define VERDICT_LINE_MAX	4096

enum verdict_greeting {
	VERDICT_GREETING_MORE,		/* no whole line yet: wait */
	VERDICT_GREETING_RELAY,		/* the backend's answer: relay it */
	VERDICT_GREETING_BUSY,		/* 421 4.3.x: try the next server */
	VERDICT_GREETING_CLOSED,	/* closed before its first line */
};
extern const char *const verdict_greeting_names[];

/*
 * Judge the first bytes a backend sent, buf[0..len) (all of them so far),
 * `closed` when its FIN came after them. For BUSY, *line holds the line.
 */
enum verdict_greeting verdict_greeting(const char *buf, size_t len,
    bool closed, struct reply_line *line);

/* Why a session ends, as the place that saw it says. */
enum verdict_cause {
	VERDICT_CLIENT_GONE,	/* client FIN, reset or socket error */
	VERDICT_SERVER_GONE,	/* server FIN, reset or socket error */
	VERDICT_FINISHED,	/* both directions done */
	VERDICT_CLIENT_TIMEOUT,
	VERDICT_SERVER_TIMEOUT,
	VERDICT_NO_BACKEND,	/* every attempt failed, or none usable */
	VERDICT_OVERLOAD,	/* max_connections or no descriptor */
	VERDICT_CLIENT_LIMIT,	/* max_connections_per_client */
	VERDICT_CLIENT_RATE,	/* max_connection_rate_per_client */
	VERDICT_DENIED,		/* a listener's deny list: 554 */
	VERDICT_DENIED_RUNTIME,	/* a runtime deny entry: 421 */
	VERDICT_SHUTDOWN,	/* shutdown_timeout expired */
	VERDICT_BAD_PROXY,	/* upstream header malformed or late */
	VERDICT_UNTRUSTED,	/* accept_proxy, source not trusted */
};

/* How far the session got. */
enum verdict_stage {
	VERDICT_AT_HEADER,	/* reading the upstream PROXY header */
	VERDICT_AT_GATE,	/* connecting or awaiting the first line */
	VERDICT_RELAYED,	/* the gate opened */
};

enum verdict_who {
	VERDICT_NOBODY,
	VERDICT_CLIENT,
	VERDICT_SERVER,
};

/* What the verdict reads. */
struct verdict_in {
	enum verdict_cause cause;
	int err;			/* errno of the cause, 0: none or a FIN */
	enum verdict_stage stage;
	unsigned gate_failures;		/* attempts connected, not greeted */
	const struct dialog *dialog;	/* NULL: nothing relayed */
	enum verdict_who first_gone;	/* who left first, if known */
	bool first_clean;		/* ... with a FIN */
	int first_err;			/* ... or this error */
	bool client_quiet;		/* nothing open when the client left */
	bool client_in_message;		/* ... or a message was */
	bool client_writing;		/* bytes waited to go to the client */
	bool server_writing;		/* ... to the server */
};

/*
 * The session's result= (a static string) and in why[0..len) what explains
 * it for last_error ("" when nothing does).
 */
const char *verdict_result(const struct verdict_in *in, char *why,
    size_t len);

#endif
