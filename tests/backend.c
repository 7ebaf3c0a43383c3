/* SPDX-License-Identifier: MIT */
/*
 * smtpfront-test-backend: a small single-threaded SMTP server for end-to-end
 * tests and benchmarks. It decodes PROXY headers (smtp/proxy.h), shows the
 * client address it learned in its greeting, hashes every message it takes
 * (FNV-1a 64 over the raw bytes) and misbehaves on demand (--mode).
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <netdb.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "smtp/proxy.h"

#define BE_LISTEN_MAX	16
#define BE_LINE_MAX	4096		/* longest command line we accept */
#define BE_OUT_MAX	(64 * 1024)	/* stop reading while replies pile up */
#define BE_IN_MAX	(1024 * 1024)	/* read high watermark */
#define BE_READ_MAX	(256 * 1024)	/* bytes per read() for big messages */
#define BE_HELD_MAX	(64 * 1024)	/* pregreet bytes kept before greeting */
#define BE_PROXY_TIMEOUT_MS 5000	/* like Postfix's upstream_proxy_timeout */
#define BE_DRAIN_TIMEOUT_MS 5000	/* wait for the client's FIN after ours */

#define FNV_OFFSET	UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME	UINT64_C(0x100000001b3)

enum be_mode {
	BE_MODE_NORMAL,
	BE_MODE_CLOSE,
	BE_MODE_GREET_421,
	BE_MODE_GREET_421_CLIENT,
	BE_MODE_GREET_554,
	BE_MODE_NO_GREET,
	BE_MODE_TEASER,
	BE_MODE_REJECT_PROXY,
	BE_MODE_CLOSE_AFTER_EHLO,
	BE_MODE_STALL,
	BE_MODE_SLOW_GREET,
	BE_MODE_COUNT,
};
static const char *const be_mode_names[BE_MODE_COUNT] = {
	"normal", "close", "greet-421", "greet-421-client", "greet-554",
	"no-greet", "teaser", "reject-proxy", "close-after-ehlo", "stall",
	"slow-greet",
};

enum be_proxy {
	BE_PROXY_NONE,
	BE_PROXY_V1,
	BE_PROXY_V2,
	BE_PROXY_ANY,
	BE_PROXY_COUNT,
};
static const char *const be_proxy_names[BE_PROXY_COUNT] = {
	"none", "v1", "v2", "any",
};

enum be_state {
	BE_ST_PROXY,		/* waiting for the PROXY header */
	BE_ST_PREGREET,		/* greeting delayed: hold what the client sends */
	BE_ST_SILENT,		/* no-greet: swallow input */
	BE_ST_CMD,		/* reading command lines */
	BE_ST_DATA,		/* inside DATA, until CRLF.CRLF */
	BE_ST_BDAT,		/* inside a BDAT chunk */
	BE_ST_STALLED,		/* stall mode: never read again */
	BE_ST_CLOSING,		/* last reply queued: flush, then half-close */
	BE_ST_DRAINING,		/* half-closed: discard input until EOF */
};

/* Where the DATA scanner stands relative to a "." CR LF terminator line. */
enum be_data_state {
	BE_DS_BOL,		/* at the beginning of a line */
	BE_DS_MID,		/* inside a line */
	BE_DS_DOT,		/* "." at the beginning of a line */
	BE_DS_DOTCR,		/* ".\r" at the beginning of a line */
};

struct backend;

struct be_session {
	struct be_session *prev, *next;
	struct backend *be;
	struct bufferevent *bev;
	struct event *timer;		/* lazily made: proxy wait, greeting, drain */
	enum be_state state;
	enum be_data_state data_state;
	bool out_blocked;		/* reads paused until replies drain */
	bool pregreet;			/* client spoke before the final 220 */
	bool mail;
	unsigned rcpts;
	bool bdat_last;
	uint64_t bdat_left;
	uint64_t hash;			/* FNV-1a of the current message */
	uint64_t msg_bytes;
	unsigned messages;
	uint64_t bytes;
	const char *proxy;		/* v1 | v2 | local | none */
	const char *result;
	char client_ip[INET6_ADDRSTRLEN];
	char client[INET6_ADDRSTRLEN + 16];	/* "[ip]:port" */
};

struct backend {
	struct event_base *base;
	struct evconnlistener *listeners[BE_LISTEN_MAX];
	size_t nlisteners;
	struct event *sigterm, *sigint;
	struct be_session *sessions;
	enum be_mode mode;
	enum be_proxy proxy;
	const char *name;
	unsigned teaser_ms;
	unsigned proxy_wait_ms;
	bool quiet;
};

static void be_session_process(struct be_session *s);
static void be_on_timer(evutil_socket_t fd, short what, void *arg);

static void
be_session_free(struct be_session *s)
{
	struct backend *be;

	if (s == NULL)
		return;
	be = s->be;
	if (!be->quiet) {
		printf("session client=%s proxy=%s messages=%u bytes=%" PRIu64
		    " result=%s%s\n", s->client, s->proxy, s->messages, s->bytes,
		    s->result != NULL ? s->result : "closed",
		    s->pregreet ? " pregreet=yes" : "");
		fflush(stdout);
	}
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		be->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	free(s);
}

static void
be_set_client(struct be_session *s, const struct sockaddr *sa)
{
	unsigned port = 0;

	s->client_ip[0] = '\0';
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, s->client_ip,
		    sizeof(s->client_ip));
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, s->client_ip,
		    sizeof(s->client_ip));
		port = ntohs(in6->sin6_port);
	} else {
		snprintf(s->client_ip, sizeof(s->client_ip), "unknown");
	}
	snprintf(s->client, sizeof(s->client), "[%s]:%u", s->client_ip, port);
}

static int
be_timer_arm(struct be_session *s, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (s->timer == NULL)
		s->timer = evtimer_new(s->be->base, be_on_timer, s);
	if (s->timer == NULL)
		return -1;
	return evtimer_add(s->timer, &tv);
}

static void
be_timer_cancel(struct be_session *s)
{
	if (s->timer != NULL)
		evtimer_del(s->timer);
}

static void
be_reply(struct be_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
be_reply(struct be_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

/*
 * End the session politely: the queued reply goes out, then a FIN, then we
 * read until the client's FIN so that unread bytes never turn into a RST.
 */
static void
be_close_after_reply(struct be_session *s, const char *result)
{
	s->result = result;
	s->state = BE_ST_CLOSING;
	be_timer_cancel(s);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
		shutdown(bufferevent_getfd(s->bev), SHUT_WR);
		s->state = BE_ST_DRAINING;
		(void)be_timer_arm(s, BE_DRAIN_TIMEOUT_MS);
	}
	bufferevent_enable(s->bev, EV_READ);
}

static void
be_txn_reset(struct be_session *s)
{
	s->mail = false;
	s->rcpts = 0;
	s->hash = FNV_OFFSET;
	s->msg_bytes = 0;
}

static void
be_send_greeting(struct be_session *s)
{
	be_reply(s, "220 %s ESMTP test-backend client=%s proxy=%s\r\n",
	    s->be->name, s->client, s->proxy);
	s->state = BE_ST_CMD;
}

/* The header (if any) is done: greet, or misbehave as the mode says. */
static void
be_greet_start(struct be_session *s)
{
	struct backend *be = s->be;

	switch (be->mode) {
	case BE_MODE_GREET_421:
		be_reply(s, "421 4.3.2 All server ports are busy\r\n");
		be_close_after_reply(s, "greet-421");
		return;
	case BE_MODE_GREET_421_CLIENT:
		be_reply(s, "421 4.7.0 Error: too many connections from %s\r\n",
		    s->client_ip);
		be_close_after_reply(s, "greet-421-client");
		return;
	case BE_MODE_GREET_554:
		be_reply(s, "554 5.7.1 Service unavailable; client blocked\r\n");
		be_close_after_reply(s, "greet-554");
		return;
	case BE_MODE_NO_GREET:
		s->state = BE_ST_SILENT;
		return;
	case BE_MODE_TEASER:
		be_reply(s, "220-%s ESMTP teaser\r\n", be->name);
		/* fall through */
	case BE_MODE_SLOW_GREET:
		s->state = BE_ST_PREGREET;
		if (be_timer_arm(s, be->teaser_ms) == -1) {
			fprintf(stderr, "backend: cannot arm greeting timer\n");
			be_send_greeting(s);
		}
		return;
	default:
		be_send_greeting(s);
		return;
	}
}

/* Returns false when the session was freed. */
static bool
be_read_proxy(struct be_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t len = evbuffer_get_length(in);
	struct proxy_info info;
	enum proxy_result r;
	const uint8_t *p;
	char dump[4 * 64 + 1];

	if (len == 0)
		return true;
	if (len > PROXY_HEADER_MAX)
		len = PROXY_HEADER_MAX;
	p = evbuffer_pullup(in, (ev_ssize_t)len);
	if (p == NULL)
		return true;
	r = proxy_decode(p, len, &info);
	if (r == PROXY_NEED_MORE && len < PROXY_HEADER_MAX)
		return true;
	if (r == PROXY_ERR_NOT_PROXY && s->be->proxy == BE_PROXY_ANY) {
		/* A plain client that spoke first. */
		be_timer_cancel(s);
		s->pregreet = true;
		be_greet_start(s);
		return true;
	}
	if (r == PROXY_OK && ((s->be->proxy == BE_PROXY_V1 && info.version != 1)
	    || (s->be->proxy == BE_PROXY_V2 && info.version != 2))) {
		fprintf(stderr, "backend: %s: PROXY v%d header, expected %s\n",
		    s->client, info.version, be_proxy_names[s->be->proxy]);
		s->result = "bad-proxy";
		be_session_free(s);
		return false;
	}
	if (r != PROXY_OK) {
		proxy_escape(dump, sizeof(dump), p, len, 64);
		fprintf(stderr, "backend: %s: bad PROXY header (%s): %s\n",
		    s->client, r == PROXY_NEED_MORE ? "too long" :
		    proxy_result_names[r], dump);
		s->result = "bad-proxy";
		be_session_free(s);
		return false;
	}
	be_timer_cancel(s);
	evbuffer_drain(in, info.header_len);
	if (info.command == PROXY_CMD_PROXY) {
		be_set_client(s, (const struct sockaddr *)&info.src);
		s->proxy = info.version == 1 ? "v1" : "v2";
	} else {
		s->proxy = "local";
	}
	if (evbuffer_get_length(in) > 0)
		s->pregreet = true;
	be_greet_start(s);
	return true;
}

static void
be_cmd_ehlo(struct be_session *s, const char *arg)
{
	if (*arg == '\0') {
		be_reply(s, "501 5.5.4 Syntax: EHLO hostname\r\n");
		return;
	}
	be_txn_reset(s);
	be_reply(s, "250-%s\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n"
	    "250-8BITMIME\r\n250 CHUNKING\r\n", s->be->name);
	if (s->be->mode == BE_MODE_CLOSE_AFTER_EHLO)
		be_close_after_reply(s, "close-after-ehlo");
}

static void
be_message_done(struct be_session *s)
{
	be_reply(s, "250 2.0.0 Ok: queued bytes=%" PRIu64 " fnv1a=%016" PRIx64
	    "\r\n", s->msg_bytes, s->hash);
	s->messages++;
	s->bytes += s->msg_bytes;
	be_txn_reset(s);
}

static void
be_cmd_bdat(struct be_session *s, const char *arg)
{
	char *end;
	unsigned long long n;

	if (*arg < '0' || *arg > '9') {
		be_reply(s, "501 5.5.4 Syntax: BDAT count [LAST]\r\n");
		return;
	}
	errno = 0;
	n = strtoull(arg, &end, 10);
	while (*end == ' ')
		end++;
	if (errno != 0 || (*end != '\0' && strcasecmp(end, "LAST") != 0)) {
		be_reply(s, "501 5.5.4 Syntax: BDAT count [LAST]\r\n");
		return;
	}
	s->bdat_left = n;
	s->bdat_last = *end != '\0';
	s->state = BE_ST_BDAT;
}

/* Called when a BDAT chunk has been read completely. */
static void
be_bdat_done(struct be_session *s)
{
	s->state = BE_ST_CMD;
	if (!s->mail) {
		be_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
		s->hash = FNV_OFFSET;
		s->msg_bytes = 0;
	} else if (s->rcpts == 0) {
		be_reply(s, "554 5.5.1 Error: no valid recipients\r\n");
		s->hash = FNV_OFFSET;
		s->msg_bytes = 0;
	} else if (s->bdat_last) {
		be_message_done(s);
	} else {
		be_reply(s, "250 2.0.0 Ok: %" PRIu64 " octets received\r\n",
		    s->msg_bytes);
	}
}

static bool
be_verb_is(const char *line, const char *verb, const char **arg)
{
	size_t n = strlen(verb);

	if (strncasecmp(line, verb, n) != 0)
		return false;
	if (line[n] != '\0' && line[n] != ' ')
		return false;
	*arg = line + n;
	while (**arg == ' ')
		(*arg)++;
	return true;
}

static void
be_command(struct be_session *s, const char *line)
{
	const char *arg;

	if (be_verb_is(line, "EHLO", &arg)) {
		be_cmd_ehlo(s, arg);
	} else if (be_verb_is(line, "HELO", &arg)) {
		be_txn_reset(s);
		be_reply(s, "250 %s\r\n", s->be->name);
	} else if (be_verb_is(line, "MAIL", &arg)) {
		if (strncasecmp(arg, "FROM:", 5) != 0)
			be_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
		else if (s->mail)
			be_reply(s, "503 5.5.1 Error: nested MAIL command\r\n");
		else {
			be_txn_reset(s);
			s->mail = true;
			be_reply(s, "250 2.1.0 Ok\r\n");
		}
	} else if (be_verb_is(line, "RCPT", &arg)) {
		if (strncasecmp(arg, "TO:", 3) != 0)
			be_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
		else if (!s->mail)
			be_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
		else {
			s->rcpts++;
			be_reply(s, "250 2.1.5 Ok\r\n");
		}
	} else if (be_verb_is(line, "DATA", &arg)) {
		if (*arg != '\0')
			be_reply(s, "501 5.5.4 Syntax: DATA\r\n");
		else if (!s->mail)
			be_reply(s, "503 5.5.1 Error: need MAIL command\r\n");
		else if (s->rcpts == 0)
			be_reply(s, "554 5.5.1 Error: no valid recipients\r\n");
		else {
			be_reply(s, "354 End data with <CR><LF>.<CR><LF>\r\n");
			s->hash = FNV_OFFSET;
			s->msg_bytes = 0;
			s->data_state = BE_DS_BOL;
			s->state = BE_ST_DATA;
			if (s->be->mode == BE_MODE_STALL) {
				/* Let the sender fill every buffer on the way. */
				s->state = BE_ST_STALLED;
				s->result = "stalled";
				bufferevent_disable(s->bev, EV_READ);
			}
		}
	} else if (be_verb_is(line, "BDAT", &arg)) {
		be_cmd_bdat(s, arg);
	} else if (be_verb_is(line, "RSET", &arg)) {
		be_txn_reset(s);
		be_reply(s, "250 2.0.0 Ok\r\n");
	} else if (be_verb_is(line, "NOOP", &arg)) {
		be_reply(s, "250 2.0.0 Ok\r\n");
	} else if (be_verb_is(line, "QUIT", &arg)) {
		be_reply(s, "221 2.0.0 Bye\r\n");
		be_close_after_reply(s, "quit");
	} else {
		be_reply(s, "500 5.5.2 Error: command not recognized\r\n");
	}
}

/* Takes one command line off the input; false when no whole line is there. */
static bool
be_read_command(struct be_session *s, struct evbuffer *in)
{
	char line[BE_LINE_MAX + 1];
	struct evbuffer_ptr eol;
	size_t eol_len = 0;
	size_t n;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos == -1) {
		if (evbuffer_get_length(in) <= BE_LINE_MAX)
			return false;
		evbuffer_drain(in, evbuffer_get_length(in));
		be_reply(s, "500 5.5.2 Error: line too long\r\n");
		return true;
	}
	n = (size_t)eol.pos;
	if (n > BE_LINE_MAX) {
		evbuffer_drain(in, n + eol_len);
		be_reply(s, "500 5.5.2 Error: line too long\r\n");
		return true;
	}
	evbuffer_remove(in, line, n);
	line[n] = '\0';
	evbuffer_drain(in, eol_len);
	be_command(s, line);
	return true;
}

/*
 * Hash message bytes up to the terminator line. Returns how many bytes of
 * p[0..n) were used; *done when the terminator was among them.
 */
static size_t
be_data_scan(struct be_session *s, const unsigned char *p, size_t n,
    bool *done)
{
	enum be_data_state st = s->data_state;
	uint64_t h = s->hash;
	uint64_t count = s->msg_bytes;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (st == BE_DS_BOL && c == '.') {
			st = BE_DS_DOT;
			continue;
		}
		if (st == BE_DS_DOT) {
			if (c == '\r') {
				st = BE_DS_DOTCR;
				continue;
			}
			h = (h ^ '.') * FNV_PRIME;
			count++;
		} else if (st == BE_DS_DOTCR) {
			if (c == '\n') {
				*done = true;
				i++;
				break;
			}
			h = (h ^ '.') * FNV_PRIME;
			h = (h ^ '\r') * FNV_PRIME;
			count += 2;
		}
		h = (h ^ c) * FNV_PRIME;
		count++;
		st = c == '\n' ? BE_DS_BOL : BE_DS_MID;
	}
	s->data_state = st;
	s->hash = h;
	s->msg_bytes = count;
	return i;
}

static void
be_read_data(struct be_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[16];
	bool done = false;
	size_t used = 0;
	int nvec, i;

	nvec = evbuffer_peek(in, -1, NULL, vec, 16);
	if (nvec > 16)
		nvec = 16;
	for (i = 0; i < nvec && !done; i++)
		used += be_data_scan(s, vec[i].iov_base, vec[i].iov_len, &done);
	evbuffer_drain(in, used);
	if (done) {
		s->state = BE_ST_CMD;
		be_message_done(s);
	}
}

static void
be_read_bdat(struct be_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[16];
	uint64_t h = s->hash;
	size_t used = 0;
	int nvec, i;

	nvec = evbuffer_peek(in, -1, NULL, vec, 16);
	if (nvec > 16)
		nvec = 16;
	for (i = 0; i < nvec && used < s->bdat_left; i++) {
		const unsigned char *p = vec[i].iov_base;
		size_t n = vec[i].iov_len, k;

		if (n > s->bdat_left - used)
			n = (size_t)(s->bdat_left - used);
		for (k = 0; k < n; k++)
			h = (h ^ p[k]) * FNV_PRIME;
		used += n;
	}
	evbuffer_drain(in, used);
	s->hash = h;
	s->msg_bytes += used;
	s->bdat_left -= used;
}

/* Work through the input buffer; pipelined commands are answered in order. */
static void
be_session_process(struct be_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);

	for (;;) {
		if (evbuffer_get_length(out) > BE_OUT_MAX) {
			/* The client does not read its replies: wait for it. */
			s->out_blocked = true;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		switch (s->state) {
		case BE_ST_CMD:
			if (!be_read_command(s, in))
				return;
			break;
		case BE_ST_DATA:
			if (evbuffer_get_length(in) == 0)
				return;
			be_read_data(s, in);
			break;
		case BE_ST_BDAT:
			if (s->bdat_left > 0) {
				if (evbuffer_get_length(in) == 0)
					return;
				be_read_bdat(s, in);
			}
			if (s->bdat_left == 0)
				be_bdat_done(s);
			break;
		case BE_ST_CLOSING:
		case BE_ST_DRAINING:
		case BE_ST_SILENT:
			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		default:
			return;
		}
	}
}

static void
be_on_read(struct bufferevent *bev, void *arg)
{
	struct be_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	switch (s->state) {
	case BE_ST_PROXY:
		if (!be_read_proxy(s))
			return;
		if (s->state == BE_ST_PROXY)
			return;
		break;
	case BE_ST_PREGREET:
		s->pregreet = true;
		if (evbuffer_get_length(in) >= BE_HELD_MAX)
			bufferevent_disable(bev, EV_READ);
		return;
	case BE_ST_STALLED:
		return;
	default:
		break;
	}
	be_session_process(s);
}

static void
be_on_write(struct bufferevent *bev, void *arg)
{
	struct be_session *s = arg;

	if (s->state == BE_ST_CLOSING) {
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		s->state = BE_ST_DRAINING;
		if (be_timer_arm(s, BE_DRAIN_TIMEOUT_MS) == -1) {
			be_session_free(s);
			return;
		}
		bufferevent_enable(bev, EV_READ);
		return;
	}
	if (s->out_blocked) {
		s->out_blocked = false;
		bufferevent_enable(bev, EV_READ);
		be_session_process(s);
	}
}

static void
be_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct be_session *s = arg;

	if (what & BEV_EVENT_EOF) {
		if (s->result == NULL)
			s->result = "closed";
		if (s->state != BE_ST_DRAINING && s->state != BE_ST_CLOSING &&
		    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
			/* Half-closed by the client: still owed replies. */
			s->state = BE_ST_CLOSING;
			bufferevent_disable(bev, EV_READ);
			return;
		}
	} else if (what & BEV_EVENT_ERROR) {
		if (s->state != BE_ST_DRAINING)
			s->result = EVUTIL_SOCKET_ERROR() == ECONNRESET ?
			    "reset" : "error";
	}
	be_session_free(s);
}

static void
be_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct be_session *s = arg;

	switch (s->state) {
	case BE_ST_PROXY:
		if (s->be->proxy == BE_PROXY_ANY) {
			/* Nothing came: a plain client waiting for us. */
			be_greet_start(s);
			be_session_process(s);
			return;
		}
		fprintf(stderr, "backend: %s: timeout waiting for PROXY header\n",
		    s->client);
		s->result = "proxy-timeout";
		be_session_free(s);
		return;
	case BE_ST_PREGREET:
		be_send_greeting(s);
		bufferevent_enable(s->bev, EV_READ);
		be_session_process(s);
		return;
	default:
		be_session_free(s);
		return;
	}
}

static void
be_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct backend *be = arg;
	struct be_session *s;
	int one = 1;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		fprintf(stderr, "backend: out of memory\n");
		evutil_closesocket(fd);
		return;
	}
	s->be = be;
	s->proxy = "none";
	s->hash = FNV_OFFSET;
	be_set_client(s, sa);
	s->bev = bufferevent_socket_new(be->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		fprintf(stderr, "backend: bufferevent_socket_new failed\n");
		evutil_closesocket(fd);
		free(s);
		return;
	}
	s->next = be->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	be->sessions = s;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bufferevent_setcb(s->bev, be_on_read, be_on_write, be_on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, BE_IN_MAX);
	bufferevent_set_max_single_read(s->bev, BE_READ_MAX);
	bufferevent_enable(s->bev, EV_READ);

	if (be->mode == BE_MODE_CLOSE) {
		be_close_after_reply(s, "close");
		return;
	}
	if (be->proxy == BE_PROXY_NONE || be->mode == BE_MODE_REJECT_PROXY) {
		be_greet_start(s);
		return;
	}
	s->state = BE_ST_PROXY;
	if (be_timer_arm(s, be->proxy == BE_PROXY_ANY ? be->proxy_wait_ms :
	    BE_PROXY_TIMEOUT_MS) == -1) {
		fprintf(stderr, "backend: cannot arm proxy timer\n");
		be_session_free(s);
	}
}

static void
be_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct backend *be = arg;

	event_base_loopbreak(be->base);
}

static void
be_on_listen_error(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	fprintf(stderr, "backend: accept: %s\n",
	    evutil_socket_error_to_string(err));
}

static int
be_listen(struct backend *be, const char *spec)
{
	char host[256];
	const char *port, *colon;
	struct addrinfo hints, *res = NULL;
	struct evconnlistener *l;
	size_t hlen;
	unsigned flags;
	int rc;

	if (be->nlisteners == BE_LISTEN_MAX) {
		fprintf(stderr, "backend: too many --listen\n");
		return -1;
	}
	if (spec[0] == '[') {
		colon = strstr(spec, "]:");
		if (colon == NULL)
			goto bad;
		hlen = (size_t)(colon - spec - 1);
		port = colon + 2;
		spec++;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL)
			goto bad;
		hlen = (size_t)(colon - spec);
		port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host) || *port == '\0')
		goto bad;
	memcpy(host, spec, hlen);
	host[hlen] = '\0';

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "backend: %s: %s\n", spec, gai_strerror(rc));
		return -1;
	}
	flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
	if (res->ai_family == AF_INET6)
		flags |= LEV_OPT_BIND_IPV6ONLY;
	l = evconnlistener_new_bind(be->base, be_on_accept, be, flags, 1024,
	    res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (l == NULL) {
		fprintf(stderr, "backend: cannot listen on %s: %s\n", spec,
		    strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(l, be_on_listen_error);
	be->listeners[be->nlisteners++] = l;
	return 0;
bad:
	fprintf(stderr, "backend: bad address '%s' (HOST:PORT or [V6]:PORT)\n",
	    spec);
	return -1;
}

static unsigned
be_listener_port(struct evconnlistener *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss,
	    &len) == -1)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int
be_lookup(const char *const *names, int n, const char *value)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], value) == 0)
			return i;
	return -1;
}

static int
be_parse_ms(const char *value, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v > 3600000)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static void
be_usage(void)
{
	fprintf(stderr, "usage: smtpfront-test-backend --listen HOST:PORT "
	    "[--listen ...] [--proxy none|v1|v2|any] [--mode MODE] "
	    "[--name NAME] [--teaser-ms N] [--proxy-wait-ms N] [--quiet]\n"
	    "modes: normal close greet-421 greet-421-client greet-554 "
	    "no-greet teaser reject-proxy close-after-ehlo stall slow-greet\n");
}

static void
be_free(struct backend *be)
{
	size_t i;

	while (be->sessions != NULL) {
		if (be->sessions->state != BE_ST_DRAINING &&
		    be->sessions->state != BE_ST_CLOSING)
			be->sessions->result = "shutdown";
		be_session_free(be->sessions);
	}
	for (i = 0; i < be->nlisteners; i++)
		evconnlistener_free(be->listeners[i]);
	if (be->sigterm != NULL)
		event_free(be->sigterm);
	if (be->sigint != NULL)
		event_free(be->sigint);
	if (be->base != NULL)
		event_base_free(be->base);
}

int
main(int argc, char **argv)
{
	struct backend be = {
		.mode = BE_MODE_NORMAL,
		.proxy = BE_PROXY_ANY,
		.name = "backend.test",
		.teaser_ms = 6000,
		.proxy_wait_ms = 200,
	};
	const char *listens[BE_LISTEN_MAX];
	size_t nlistens = 0, i;
	struct event_config *ecfg;
	int k, v, rc = 1;

	for (k = 1; k < argc; k++) {
		const char *opt = argv[k];
		const char *val = k + 1 < argc ? argv[k + 1] : NULL;

		if (strcmp(opt, "--quiet") == 0) {
			be.quiet = true;
			continue;
		}
		if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
			be_usage();
			return 0;
		}
		if (val == NULL) {
			be_usage();
			return 2;
		}
		k++;
		if (strcmp(opt, "--listen") == 0) {
			if (nlistens == BE_LISTEN_MAX) {
				fprintf(stderr, "backend: too many --listen\n");
				return 2;
			}
			listens[nlistens++] = val;
		} else if (strcmp(opt, "--proxy") == 0) {
			v = be_lookup(be_proxy_names, BE_PROXY_COUNT, val);
			if (v < 0) {
				be_usage();
				return 2;
			}
			be.proxy = (enum be_proxy)v;
		} else if (strcmp(opt, "--mode") == 0) {
			v = be_lookup(be_mode_names, BE_MODE_COUNT, val);
			if (v < 0) {
				fprintf(stderr, "backend: unknown mode '%s'\n", val);
				be_usage();
				return 2;
			}
			be.mode = (enum be_mode)v;
		} else if (strcmp(opt, "--name") == 0) {
			be.name = val;
		} else if (strcmp(opt, "--teaser-ms") == 0) {
			if (be_parse_ms(val, &be.teaser_ms) == -1) {
				be_usage();
				return 2;
			}
		} else if (strcmp(opt, "--proxy-wait-ms") == 0) {
			if (be_parse_ms(val, &be.proxy_wait_ms) == -1) {
				be_usage();
				return 2;
			}
		} else {
			be_usage();
			return 2;
		}
	}
	if (nlistens == 0) {
		be_usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	ecfg = event_config_new();
	if (ecfg == NULL)
		return 1;
	event_config_set_flag(ecfg, EVENT_BASE_FLAG_NOLOCK |
	    EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	be.base = event_base_new_with_config(ecfg);
	event_config_free(ecfg);
	if (be.base == NULL) {
		fprintf(stderr, "backend: event_base_new failed\n");
		return 1;
	}
	be.sigterm = evsignal_new(be.base, SIGTERM, be_on_signal, &be);
	be.sigint = evsignal_new(be.base, SIGINT, be_on_signal, &be);
	if (be.sigterm == NULL || be.sigint == NULL ||
	    evsignal_add(be.sigterm, NULL) == -1 ||
	    evsignal_add(be.sigint, NULL) == -1) {
		fprintf(stderr, "backend: cannot set signal handlers\n");
		goto out;
	}
	for (i = 0; i < nlistens; i++)
		if (be_listen(&be, listens[i]) == -1)
			goto out;

	printf("ready");
	for (i = 0; i < be.nlisteners; i++)
		printf(" %u", be_listener_port(be.listeners[i]));
	printf("\n");
	fflush(stdout);

	if (event_base_dispatch(be.base) == -1) {
		fprintf(stderr, "backend: event loop failed\n");
		goto out;
	}
	rc = 0;
out:
	be_free(&be);
	libevent_global_shutdown();
	return rc;
}
