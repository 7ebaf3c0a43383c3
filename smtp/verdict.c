/* SPDX-License-Identifier: MIT */
/*
 * verdict: the greeting judgement and the session's result=, pure code
 * over what the session saw (SPEC.md "Greeting-gated failover", "Session
 * log"). The session path asks; nothing here knows sockets or time.
 */
#include <stdio.h>
#include <string.h>

#include "smtp/verdict.h"

const char *const verdict_greeting_names[] = {
	[VERDICT_GREETING_MORE] = "more",
	[VERDICT_GREETING_RELAY] = "relay",
	[VERDICT_GREETING_BUSY] = "busy",
	[VERDICT_GREETING_CLOSED] = "closed",
};

enum verdict_greeting
verdict_greeting(const char *buf, size_t len, bool closed,
    struct reply_line *line)
{
	struct reply_parser rp;
	enum reply_status st;
	const char *lf = memchr(buf, '\n', len);
	size_t consumed;

	if (lf == NULL) {
		if (len >= VERDICT_LINE_MAX)
			return VERDICT_GREETING_RELAY;
		return closed ? VERDICT_GREETING_CLOSED :
		    VERDICT_GREETING_MORE;
	}
	reply_parser_init(&rp);
	st = reply_parse_line(&rp, buf, (size_t)(lf - buf) + 1, &consumed,
	    line);
	if ((st == REPLY_LINE || st == REPLY_DONE) &&
	    reply_is_server_busy(line))
		return VERDICT_GREETING_BUSY;
	/* Any other line, junk included, is the backend's to say. */
	return VERDICT_GREETING_RELAY;
}

static const char *const who_names[] = { "nobody", "client", "server" };

static const char *
verdict_dir(bool writing)
{
	return writing ? "write" : "read";
}

const char *
verdict_result(const struct verdict_in *in, char *why, size_t len)
{
	const struct dialog *d = in->dialog;
	enum verdict_who first = in->first_gone;
	bool clean = in->first_clean;
	int ferr = in->first_err;
	const char *who, *last;

	why[0] = '\0';
	switch (in->cause) {
	case VERDICT_OVERLOAD:
		return "overload";
	case VERDICT_CLIENT_LIMIT:
		return "client-limit";
	case VERDICT_CLIENT_RATE:
		return "client-rate";
	case VERDICT_DENIED:
	case VERDICT_DENIED_RUNTIME:
		return "denied";
	case VERDICT_SHUTDOWN:
		snprintf(why, len, "shutdown_timeout expired");
		return "shutdown";
	case VERDICT_NO_BACKEND:
		/* Some server took the connection but never greeted it
		 * properly: that is worth telling apart from none at all. */
		return in->gate_failures > 0 ? "greeting-failed" :
		    "no-backend";
	case VERDICT_BAD_PROXY:
		/* The reader explained the class and what was wrong. */
		return "bad-proxy-header";
	case VERDICT_UNTRUSTED:
		snprintf(why, len, "untrusted source");
		return "untrusted-proxy";
	default:
		break;
	}
	if (in->stage == VERDICT_AT_HEADER) {
		/* Gone without a byte of a header (a balancer's TCP check
		 * does that): nothing was malformed. */
		if (in->err != 0)
			snprintf(why, len, "client: %s before the PROXY header",
			    strerror(in->err));
		else
			snprintf(why, len, "client closed before the PROXY "
			    "header");
		return "client-closed";
	}
	if (in->stage == VERDICT_AT_GATE || d == NULL) {
		/* Nothing was relayed: the client left or idled at the gate. */
		if (in->cause == VERDICT_CLIENT_TIMEOUT) {
			snprintf(why, len, "client read timeout before the "
			    "greeting");
			return "client-timeout";
		}
		if (in->err != 0)
			snprintf(why, len, "client: %s before the greeting",
			    strerror(in->err));
		else
			snprintf(why, len, "client closed before the greeting");
		return "client-closed";
	}
	if (dialog_goodbye(d))
		return "ok";
	if (first == VERDICT_NOBODY) {
		if (in->cause == VERDICT_CLIENT_TIMEOUT) {
			snprintf(why, len, "client %s timeout",
			    verdict_dir(in->client_writing));
			return "client-timeout";
		}
		if (in->cause == VERDICT_SERVER_TIMEOUT) {
			snprintf(why, len, "server %s timeout",
			    verdict_dir(in->server_writing));
			return "server-timeout";
		}
		/* Nobody said who left: the cause tells. */
		first = in->cause == VERDICT_SERVER_GONE ? VERDICT_SERVER :
		    VERDICT_CLIENT;
		clean = in->err == 0;
		ferr = in->err;
	}
	who = who_names[first];
	if (dialog_opaque(d)) {
		/* After STARTTLS nothing can be followed: a FIN is a normal
		 * end, a reset is not. */
		if (clean)
			return "ok";
		snprintf(why, len, "%s: %s (TLS)", who, strerror(ferr));
		return first == VERDICT_CLIENT ? "client-closed" :
		    "server-closed";
	}
	if (first == VERDICT_CLIENT) {
		if (in->client_quiet)
			return "ok";
		if (clean)
			snprintf(why, len, "client closed mid-%s",
			    in->client_in_message ? "DATA" : "command");
		else
			snprintf(why, len, "client: %s mid-%s", strerror(ferr),
			    in->client_in_message ? "DATA" : "command");
		return "client-closed";
	}
	last = dialog_last_reply(d);
	if (clean && !dialog_in_message(d) && last[0] != '\0')
		snprintf(why, len, "%s", last);
	else if (clean)
		snprintf(why, len, "server closed%s; last reply: %s",
		    dialog_in_message(d) ? " mid-DATA" : "",
		    last[0] != '\0' ? last : "none");
	else
		snprintf(why, len, "server: %s%s; last reply: %s",
		    strerror(ferr), dialog_in_message(d) ? " mid-DATA" : "",
		    last[0] != '\0' ? last : "none");
	return "server-closed";
}
