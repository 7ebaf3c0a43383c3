/* SPDX-License-Identifier: MIT */
/*
 * The SMTP health-check dialog: a non-blocking connect, the PROXY header
 * the pool sends, the whole greeting (postscreen's 220- teaser included),
 * EHLO, QUIT, and a human reason for every outcome.
 */
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "smtp/check.h"
#include "smtp/proxy.h"
#include "smtp/reply.h"

#define CHECK_HELO_MAX		255
#define CHECK_REASON_MAX	320
#define CHECK_DUMP_MAX		64
/* Twice a reply line: the parser answers before the buffer is full. */
#define CHECK_IN_MAX		(2 * REPLY_LINE_MAX)
#define CHECK_OUT_MAX		(PROXY_HEADER_MAX + CHECK_HELO_MAX + 16)

/* Postfix's answer to a PROXY line it does not expect, or the reverse. */
#define CHECK_HINT " (does the backend expect a PROXY header?)"

enum check_state {
	CHECK_CONNECTING,
	CHECK_HEADER_ONLY,	/* "connect" check: writing the header */
	CHECK_GREETING,
	CHECK_EHLO,
	CHECK_QUIT,
	CHECK_FINISHED,
};

struct check {
	enum check_state state;
	int fd;
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_timer;
	check_done_cb cb;
	void *arg;

	enum check_proxy proxy;
	bool dialog;
	bool greeting_seen;	/* a greeting line (220-) has arrived */
	char helo[CHECK_HELO_MAX + 1];
	struct timespec started;
	char early[CHECK_REASON_MAX];	/* failure found inside check_start */

	struct reply_parser parser;
	char in[CHECK_IN_MAX];
	size_t in_len;
	char out[CHECK_OUT_MAX];
	size_t out_len, out_off;
};

static void check_on_read(evutil_socket_t fd, short what, void *arg);
static void check_on_write(evutil_socket_t fd, short what, void *arg);
static void check_on_timer(evutil_socket_t fd, short what, void *arg);

static double
check_elapsed_ms(const struct check *c)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - c->started.tv_sec) * 1e3 +
	    (double)(now.tv_nsec - c->started.tv_nsec) / 1e6;
}

/* "Connection refused" reads as "connection refused" after a colon. */
static void
check_strerror(char *buf, size_t cap, int err)
{
	char tmp[128];
	const char *s = strerror_r(err, tmp, sizeof(tmp));

	snprintf(buf, cap, "%s", s);
	if (buf[0] != '\0')
		buf[0] = (char)tolower((unsigned char)buf[0]);
}

/* A backend's text goes into logs and JSON: keep it printable. */
static void
check_clean_text(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* Drain what the server sent, so close() sends a FIN and not a RST. */
static void
check_close_fd(struct check *c)
{
	char sink[4096];

	if (c->fd == -1)
		return;
	for (int i = 0; i < 16; i++)
		if (recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) <= 0)
			break;
	close(c->fd);
	c->fd = -1;
}

static void
check_stop(struct check *c)
{
	if (c->ev_read != NULL)
		event_del(c->ev_read);
	if (c->ev_write != NULL)
		event_del(c->ev_write);
	if (c->ev_timer != NULL)
		event_del(c->ev_timer);
	check_close_fd(c);
}

/*
 * End the check and report. The callback may free `c`: callers return at
 * once without touching it.
 */
__attribute__((format(printf, 3, 4)))
static void
check_finish(struct check *c, bool ok, const char *fmt, ...)
{
	char reason[CHECK_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	c->state = CHECK_FINISHED;
	check_stop(c);
	c->cb(ok, reason, check_elapsed_ms(c), c->arg);
}

static void
check_fail_errno(struct check *c, const char *what, int err)
{
	char msg[128];

	check_strerror(msg, sizeof(msg), err);
	check_finish(c, false, "%s: %s", what, msg);
}

/* Returns false when the check has finished (and may be freed). */
static bool
check_flush(struct check *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
		    c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(c->ev_write, NULL);
				return true;
			}
			check_fail_errno(c, "write", errno);
			return false;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	if (c->state == CHECK_HEADER_ONLY) {
		check_finish(c, true, "connect ok");
		return false;
	}
	return true;
}

static bool
check_send(struct check *c, const char *verb, const char *arg)
{
	int n = snprintf(c->out + c->out_len, sizeof(c->out) - c->out_len,
	    "%s%s%s\r\n", verb, arg != NULL ? " " : "", arg != NULL ? arg : "");

	if (n < 0 || (size_t)n >= sizeof(c->out) - c->out_len) {
		check_finish(c, false, "internal error: command too long");
		return false;
	}
	c->out_len += (size_t)n;
	return check_flush(c);
}

/* Add the PROXY header the pool sends; false when finished. */
static bool
check_put_header(struct check *c)
{
	struct sockaddr_storage local, peer;
	socklen_t llen = sizeof(local), plen = sizeof(peer);
	int n;

	switch (c->proxy) {
	case CHECK_PROXY_NONE:
		return true;
	case CHECK_PROXY_V2:
		n = proxy_v2_encode_local((uint8_t *)c->out, sizeof(c->out));
		break;
	case CHECK_PROXY_V1:
	default:
		/* Postfix rejects "PROXY UNKNOWN": send the real endpoints. */
		if (getsockname(c->fd, (struct sockaddr *)&local, &llen) == -1) {
			check_fail_errno(c, "getsockname", errno);
			return false;
		}
		if (getpeername(c->fd, (struct sockaddr *)&peer, &plen) == -1) {
			check_fail_errno(c, "getpeername", errno);
			return false;
		}
		n = proxy_v1_encode(c->out, sizeof(c->out),
		    (struct sockaddr *)&local, (struct sockaddr *)&peer);
		break;
	}
	if (n < 0) {
		check_finish(c, false, "cannot encode a PROXY header");
		return false;
	}
	c->out_len = (size_t)n;
	return true;
}

static void
check_on_connected(struct check *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		check_fail_errno(c, "connect", err);
		return;
	}
	if (!check_put_header(c))
		return;
	if (!c->dialog) {
		c->state = CHECK_HEADER_ONLY;
		(void)check_flush(c);
		return;
	}
	/* The server speaks first: the header goes out, nothing else. */
	c->state = CHECK_GREETING;
	event_add(c->ev_read, NULL);
	(void)check_flush(c);
}

static void
check_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;

	if (c->state == CHECK_CONNECTING)
		check_on_connected(c);
	else
		(void)check_flush(c);
}

static bool
check_is_500(int code)
{
	return code == 500 || code == 502;
}

/* Handle one parsed line; false when the check has finished. */
static bool
check_on_line(struct check *c, enum reply_status st,
    const struct reply_line *l)
{
	char text[REPLY_TEXT_MAX + 1];
	const char *hint = "";

	memcpy(text, l->text, sizeof(text));
	check_clean_text(text);
	switch (c->state) {
	case CHECK_GREETING:
		if (l->code != 220) {
			if ((check_is_500(l->code) && c->proxy != CHECK_PROXY_NONE) ||
			    (l->code == 421 && strncmp(text, "4.3.0", 5) == 0 &&
			    c->proxy == CHECK_PROXY_NONE))
				hint = CHECK_HINT;
			check_finish(c, false, "greeting %d %s%s", l->code, text,
			    hint);
			return false;
		}
		c->greeting_seen = true;
		if (st != REPLY_DONE)
			return true;
		c->state = CHECK_EHLO;
		return check_send(c, "EHLO", c->helo);
	case CHECK_EHLO:
		if (l->code != 250) {
			if (check_is_500(l->code) && c->proxy != CHECK_PROXY_NONE)
				hint = CHECK_HINT;
			check_finish(c, false, "EHLO answered %d %s%s", l->code,
			    text, hint);
			return false;
		}
		if (st != REPLY_DONE)
			return true;
		c->state = CHECK_QUIT;
		return check_send(c, "QUIT", NULL);
	case CHECK_QUIT:
		if (l->code != 221) {
			check_finish(c, false, "QUIT answered %d %s", l->code, text);
			return false;
		}
		if (st != REPLY_DONE)
			return true;
		check_finish(c, true, "EHLO ok");
		return false;
	default:
		return true;
	}
}

static void
check_on_eof(struct check *c)
{
	switch (c->state) {
	case CHECK_GREETING:
		if (c->greeting_seen)
			check_finish(c, false, "connection closed during greeting");
		else
			check_finish(c, false, "connection closed before greeting%s",
			    c->proxy == CHECK_PROXY_NONE ? CHECK_HINT : "");
		break;
	case CHECK_EHLO:
		check_finish(c, false, "connection closed after EHLO");
		break;
	default:
		check_finish(c, false, "connection closed after QUIT");
		break;
	}
}

static void
check_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;
	ssize_t n;
	size_t off = 0;

	n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
	if (n == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			check_fail_errno(c, "read", errno);
		return;
	}
	if (n == 0) {
		check_on_eof(c);
		return;
	}
	c->in_len += (size_t)n;
	for (;;) {
		struct reply_line line;
		size_t used;
		enum reply_status st;

		st = reply_parse_line(&c->parser, c->in + off, c->in_len - off,
		    &used, &line);
		if (st == REPLY_NEED_MORE)
			break;
		if (st == REPLY_ERR_TOO_LONG) {
			check_finish(c, false, "bad reply: line too long");
			return;
		}
		if (st == REPLY_ERR_SYNTAX) {
			const char *p = c->in + off;
			const char *lf = memchr(p, '\n', c->in_len - off);
			size_t len = lf != NULL ? (size_t)(lf - p) : c->in_len - off;

			if (len > 0 && p[len - 1] == '\r')
				len--;
			char dump[CHECK_DUMP_MAX * 4 + 1];

			proxy_escape(dump, sizeof(dump), (const uint8_t *)p, len,
			    CHECK_DUMP_MAX);
			check_finish(c, false, "bad reply: %s", dump);
			return;
		}
		off += used;
		if (!check_on_line(c, st, &line))
			return;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
}

static void
check_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;

	if (c->early[0] != '\0') {
		check_finish(c, false, "%s", c->early);
		return;
	}
	switch (c->state) {
	case CHECK_CONNECTING:
		check_finish(c, false, "timeout connecting");
		break;
	case CHECK_HEADER_ONLY:
		check_finish(c, false, "timeout sending PROXY header");
		break;
	case CHECK_GREETING:
		/* Silence, not a slow teaser, is what a missing header gives. */
		check_finish(c, false, "timeout waiting for greeting%s",
		    !c->greeting_seen && c->proxy == CHECK_PROXY_NONE ?
		    CHECK_HINT : "");
		break;
	case CHECK_EHLO:
		check_finish(c, false, "timeout waiting for EHLO reply");
		break;
	case CHECK_QUIT:
		check_finish(c, false, "timeout waiting for QUIT reply");
		break;
	default:
		break;
	}
}

/* Record a failure found before the loop runs; the timer reports it. */
static void
check_fail_early(struct check *c, const char *what, int err)
{
	char msg[128];

	check_strerror(msg, sizeof(msg), err);
	snprintf(c->early, sizeof(c->early), "%s: %s", what, msg);
	check_close_fd(c);
	event_active(c->ev_timer, EV_TIMEOUT, 1);
}

struct check *
check_start(struct event_base *base, const struct check_params *p,
    check_done_cb cb, void *arg)
{
	struct check *c;
	struct timeval tv;
	const char *helo = p->helo != NULL ? p->helo : "localhost";

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->fd = -1;
	c->cb = cb;
	c->arg = arg;
	c->proxy = p->proxy;
	c->dialog = p->dialog;
	c->state = CHECK_CONNECTING;
	reply_parser_init(&c->parser);
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	snprintf(c->helo, sizeof(c->helo), "%s", helo);

	c->ev_timer = evtimer_new(base, check_on_timer, c);
	if (c->ev_timer == NULL)
		goto fail;
	/* The loop's cached time may be stale: start the bound from now. */
	event_base_update_cache_time(base);
	tv.tv_sec = p->timeout_ms / 1000;
	tv.tv_usec = (suseconds_t)(p->timeout_ms % 1000) * 1000;
	if (evtimer_add(c->ev_timer, &tv) == -1)
		goto fail;

	if (strcspn(helo, "\r\n") != strlen(helo) ||
	    strlen(helo) > CHECK_HELO_MAX) {
		snprintf(c->early, sizeof(c->early), "invalid helo name");
		event_active(c->ev_timer, EV_TIMEOUT, 1);
		return c;
	}
	if (p->addr == NULL || p->addrlen == 0 ||
	    p->addrlen > sizeof(struct sockaddr_storage)) {
		check_fail_early(c, "connect", EINVAL);
		return c;
	}
	c->fd = socket(p->addr->sa_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		check_fail_early(c, "socket", errno);
		return c;
	}
	c->ev_read = event_new(base, c->fd, EV_READ | EV_PERSIST,
	    check_on_read, c);
	c->ev_write = event_new(base, c->fd, EV_WRITE, check_on_write, c);
	if (c->ev_read == NULL || c->ev_write == NULL)
		goto fail;
	if (connect(c->fd, p->addr, p->addrlen) == -1 && errno != EINPROGRESS) {
		check_fail_early(c, "connect", errno);
		return c;
	}
	/* Connected or not, writability reports the outcome. */
	if (event_add(c->ev_write, NULL) == -1)
		goto fail;
	return c;
fail:
	check_stop(c);
	check_free(c);
	return NULL;
}

void
check_free(struct check *c)
{
	if (c == NULL)
		return;
	check_stop(c);
	if (c->ev_read != NULL)
		event_free(c->ev_read);
	if (c->ev_write != NULL)
		event_free(c->ev_write);
	if (c->ev_timer != NULL)
		event_free(c->ev_timer);
	free(c);
}
