/* SPDX-License-Identifier: MIT */
/*
 * gate: from an admitted session to a greeted one. Pick a server (the
 * balancer over the shared view of health, admin state and counters),
 * connect, write the PROXY header in one write, and hold the client until
 * the backend's first reply line: a refused connect, a close, the greeting
 * timeout or a "421 4.3.x" moves the session to the next server unseen by
 * the client (SPEC.md "Greeting-gated failover"). Up to 4 KiB of early
 * client bytes are held meanwhile and go out right after the first line.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/shm.h"
#include "core/worker/session_int.h"
#include "smtp/proxy.h"
#include "smtp/reply.h"

/* A backend's first line longer than this is passed on as is. */
#define GATE_LINE_MAX		4096

void
gate_drop_server(struct session *s)
{
	relay_side_close(&s->server);
	if (s->state == SESSION_CONNECTING || s->state == SESSION_GATE) {
		/* What this server said before its first line ended. */
		if (s->client.out != NULL) {
			evbuffer_free(s->client.out);
			s->client.out = NULL;
		}
	}
	if (s->server_counted) {
		shm_server_add(session_server_slot(s), -1);
		s->server_counted = false;
	}
}

/* Build the view the balancer needs from shared memory. */
static int
gate_pick(struct session *s)
{
	const struct cfg_pool *pc = s->pool->cfg;
	struct bal_server view_inline[16] = { 0 }, *view = view_inline;
	bool tried_inline[SESSION_TRIED_BITS], *tried = s->tried_big;
	bool need_active = pc->balance == CFG_BALANCE_LEASTCONN;
	int idx;

	if (pc->nservers > 16 &&
	    (view = calloc(pc->nservers, sizeof(*view))) == NULL)
		return -1;
	if (tried == NULL) {
		tried = tried_inline;
		for (size_t i = 0; i < pc->nservers; i++)
			tried[i] = (s->tried >> i) & 1;
	}
	for (size_t i = 0; i < pc->nservers; i++) {
		unsigned slot = s->pool->server_slot[i];

		view[i].usable = shm_health_state(slot) != SHM_HEALTH_DOWN &&
		    shm_admin_get(slot) == SHM_ADMIN_READY;
		view[i].active = 0;
		if (need_active || pc->servers[i].max_connections > 0)
			view[i].active = shm_server_active(slot);
	}
	idx = bal_pick(s->env->bal[s->listener->cfg->pool], view, tried,
	    &s->peer.sa);
	if (view != view_inline)
		free(view);
	return idx;
}

/* One failed attempt: count it (by its class `why`), note why, and go on
 * to the next server. */
static void
gate_attempt_failed(struct session *s, enum metrics_reason reason,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
gate_attempt_failed(struct session *s, enum metrics_reason reason,
    const char *fmt, ...)
{
	const struct cfg_server *srv = &s->pool->cfg->servers[s->server_idx];
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	shm_server_failure(session_server_slot(s));
	metrics_count_failover(session_server_slot(s), reason);
	if (s->state == SESSION_GATE)
		s->gate_failures++;
	session_add_error(s, "%s/%s: %s", s->pool->cfg->name, srv->name, why);
	log_debug("session: server %s/%s %s: %s", s->pool->cfg->name,
	    srv->name, srv->address.text, why);
	gate_drop_server(s);
	s->state = SESSION_CONNECTING;
	gate_try_next(s);
}

/* The server's socket is connected, or may be: send the PROXY header. */
static void
gate_connect_done(struct session *s, bool eager)
{
	const struct cfg_pool *pc = s->pool->cfg;
	struct session_side *sv = &s->server;
	uint8_t hdr[PROXY_HEADER_MAX];
	socklen_t len;
	int64_t now;
	ssize_t w;
	int n = 0, err = 0;

	/* An upstream LOCAL header (or one Postfix could not take) left the
	 * real endpoints in peer/local: v2 says LOCAL, v1 sends those. */
	if (pc->proxy == CFG_PROXY_V2 && s->proxy_local)
		n = proxy_v2_encode_local(hdr, sizeof(hdr));
	else if (pc->proxy == CFG_PROXY_V1)
		n = proxy_v1_encode((char *)hdr, sizeof(hdr), &s->peer.sa,
		    &s->local.sa);
	else if (pc->proxy == CFG_PROXY_V2)
		n = proxy_v2_encode(hdr, sizeof(hdr), &s->peer.sa,
		    &s->local.sa);
	if (n < 0) {
		session_add_error(s, "cannot encode PROXY header");
		gate_drop_server(s);
		session_end(s, SESSION_END_NO_BACKEND, 0);
		return;
	}
	if (n > 0) {
		/* The header goes out in one write, before any client byte;
		 * its outcome is the connect's. */
		do
			w = send(sv->fd, hdr, (size_t)n, MSG_NOSIGNAL);
		while (w == -1 && errno == EINTR);
		if (w == -1) {
			if (relay_again()) {
				relay_update(s);	/* still connecting */
				return;
			}
			gate_attempt_failed(s, metrics_connect_reason(errno),
			    "connect: %s", strerror(errno));
			return;
		}
		if (w < n && relay_queue(sv, hdr + w, (size_t)(n - w)) == -1) {
			gate_attempt_failed(s, METRICS_OTHER, "connect: %s",
			    strerror(errno));
			return;
		}
	} else {
		if (eager) {
			relay_update(s);	/* wait for writability */
			return;
		}
		len = sizeof(err);
		if (getsockopt(sv->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0) {
			gate_attempt_failed(s, metrics_connect_reason(err),
			    "connect: %s", strerror(err));
			return;
		}
	}
	now = net_now_us();
	s->connect_ms = (float)(now - s->t_connect) / 1000.0f;
	metrics_count_connect(session_server_slot(s), now - s->t_connect);
	if (s->listener->cfg->mode == CFG_MODE_TLS) {
		/* Implicit TLS: the client speaks first, nothing to gate. */
		(void)relay_begin(s, NULL, 0);
		return;
	}
	/* The first line is due greeting_timeout after the connect, however
	 * slowly it trickles in. */
	s->state = SESSION_GATE;
	session_deadline(s, now, pc->greeting_timeout_ms);
	relay_update(s);
}

void
gate_try_next(struct session *s)
{
	const struct cfg_pool *pc = s->pool->cfg;
	const struct cfg_server *srv;
	int fd, idx, on = 1, err;

	if (s->attempts >= 1 + pc->retries) {
		session_end(s, SESSION_END_NO_BACKEND, 0);
		return;
	}
	idx = gate_pick(s);
	if (idx < 0) {
		if (s->attempts == 0)
			session_add_error(s, "no usable server in pool %s",
			    pc->name);
		session_end(s, SESSION_END_NO_BACKEND, 0);
		return;
	}
	if (s->tried_big != NULL)
		s->tried_big[idx] = true;
	else
		s->tried |= (uint64_t)1 << idx;
	s->attempts++;
	s->server_idx = idx;
	srv = &pc->servers[idx];
	shm_server_add(session_server_slot(s), +1);
	s->server_counted = true;
	s->t_connect = net_now_us();

	fd = socket(srv->address.ss.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		err = errno;
		session_add_error(s, "socket: %s", strerror(err));
		log_warnx("session: socket: %s", strerror(err));
		gate_drop_server(s);
		/* Short of descriptors is overload, not a missing backend. */
		session_end(s, err == EMFILE || err == ENFILE ||
		    err == ENOBUFS || err == ENOMEM ? SESSION_END_OVERLOAD :
		    SESSION_END_NO_BACKEND, 0);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if (connect(fd, (const struct sockaddr *)&srv->address.ss,
	    srv->address.len) == -1 && errno != EINPROGRESS) {
		err = errno;
		close(fd);
		gate_attempt_failed(s, metrics_connect_reason(err),
		    "connect: %s", strerror(err));
		return;
	}
	relay_side_init(&s->server, fd, 0);
	s->state = SESSION_CONNECTING;
	session_deadline(s, s->t_connect, pc->connect_timeout_ms);
	/* On loopback or a near network the handshake is often done by now:
	 * try the header at once rather than after a writability event. */
	gate_connect_done(s, true);
}

/*
 * Is the first line in `p` a "try another server" (421 4.3.x)? `len`
 * covers the line and its end. If so the attempt has failed.
 */
static bool
gate_busy(struct session *s, const char *p, size_t len)
{
	struct reply_parser rp;
	struct reply_line line;
	enum reply_status st;
	size_t consumed;

	reply_parser_init(&rp);
	st = reply_parse_line(&rp, p, len, &consumed, &line);
	if ((st == REPLY_LINE || st == REPLY_DONE) &&
	    reply_is_server_busy(&line)) {
		gate_attempt_failed(s, METRICS_GREETING_4XX, "greeting %d %s",
		    line.code, line.text);
		return true;
	}
	return false;
}

/* The backend spoke before its first line was judged. */
static void
gate_read(struct session *s)
{
	struct session_side *c = &s->client, *sv = &s->server;
	struct evbuffer_ptr eol;
	const char *lf;
	size_t eol_len = 0, len;
	ssize_t n;
	char *p;

	n = relay_recv(sv->fd, session_scratch, sizeof(session_scratch));
	if (n == -1) {
		if (relay_again()) {
			relay_update(s);
			return;
		}
		gate_attempt_failed(s, METRICS_CLOSED, "%s before greeting",
		    strerror(errno));
		return;
	}
	if (n == 0) {
		gate_attempt_failed(s, METRICS_CLOSED,
		    "connection closed before greeting");
		return;
	}
	if (c->out == NULL &&
	    (lf = memchr(session_scratch, '\n', (size_t)n)) != NULL) {
		/* The whole line in one read: judge it where it lies. */
		if (gate_busy(s, session_scratch,
		    (size_t)(lf - session_scratch) + 1))
			return;
		(void)relay_begin(s, session_scratch, (size_t)n);
		return;
	}
	/* Part of a line: the client's queue holds it (nothing writes there
	 * before the gate) until the rest arrives. */
	if (relay_queue(c, session_scratch, (size_t)n) == -1) {
		gate_attempt_failed(s, METRICS_OTHER, "%s", strerror(errno));
		return;
	}
	eol = evbuffer_search_eol(c->out, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(c->out) < GATE_LINE_MAX) {
			relay_update(s);	/* wait for the rest */
			return;
		}
		(void)relay_begin(s, NULL, 0);
		return;
	}
	len = (size_t)eol.pos + eol_len;
	p = (char *)evbuffer_pullup(c->out, (ev_ssize_t)len);
	if (p != NULL && gate_busy(s, p, len))
		return;
	/* Any other first line is the backend's answer to this client. */
	(void)relay_begin(s, NULL, 0);
}

void
gate_on_server(struct session *s, short what)
{
	struct session_side *sv = &s->server;

	if (s->state == SESSION_CONNECTING) {
		if (what & EV_TIMEOUT) {
			gate_attempt_failed(s, METRICS_CONNECT_TIMEOUT,
			    "connect: timeout");
			return;
		}
		gate_connect_done(s, false);
		return;
	}
	if (what & EV_TIMEOUT) {
		gate_attempt_failed(s, METRICS_GREETING_TIMEOUT,
		    "timeout waiting for greeting");
		return;
	}
	if ((what & EV_WRITE) && relay_flush(sv) == -1) {
		gate_attempt_failed(s, METRICS_CLOSED, "%s before greeting",
		    strerror(errno));
		return;
	}
	if (what & EV_READ) {
		gate_read(s);
		return;
	}
	relay_update(s);
}

/* Early client bytes, held until the gate opens (at most 4 KiB read). */
void
gate_on_client(struct session *s, short what)
{
	struct session_side *c = &s->client;
	size_t held = s->hold != NULL ? evbuffer_get_length(s->hold) : 0;
	ssize_t n;
	int err;

	if (what & EV_TIMEOUT) {
		if (relay_expired(s, c))
			session_end(s, SESSION_END_CLIENT_TIMEOUT, 0);
		return;
	}
	n = relay_recv(c->fd, session_scratch, SESSION_HOLD_MAX - held);
	if (n == -1 && relay_again()) {
		relay_update(s);
		return;
	}
	if (n <= 0) {
		/* Gone before the backend greeted it: nothing to pass on. */
		err = n == 0 ? 0 : errno;
		c->eof = n == 0;
		session_side_gone(s, c, err);
		session_end(s, SESSION_END_CLIENT_GONE, err);
		return;
	}
	c->active_us = relay_now_us();
	if ((s->hold == NULL && (s->hold = evbuffer_new()) == NULL) ||
	    evbuffer_add(s->hold, session_scratch, (size_t)n) == -1) {
		session_side_gone(s, c, ENOMEM);
		session_end(s, SESSION_END_CLIENT_GONE, ENOMEM);
		return;
	}
	relay_update(s);
}
